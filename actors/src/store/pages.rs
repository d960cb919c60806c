//! Read paths for answers that are streamed page by page (a session's events, the session
//! list, a watch's runs). Each call reads one bounded page, so a client costs the daemon one
//! page of memory however large the whole answer is; event data too long for a page is read
//! in byte slices straight from the row, never whole.

use super::queries::{inbox_after, select_sessions};
use crate::domain::{EventKind, Session, SessionFilter};
use crate::error::Result;
use rusqlite::{params, Connection};

/// Event data up to this many bytes comes inline with its page; longer data is read in
/// slices with [`event_bytes`].
pub const INLINE_EVENT_BYTES: usize = 16 * 1024;

/// An event as a page lists it: everything but long data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventHead {
    pub id: i64,
    pub session_id: String,
    pub kind: EventKind,
    pub created_at: String,
    /// Length of the data in bytes (UTF-8).
    pub len: usize,
    /// The data when it is at most [`INLINE_EVENT_BYTES`] long; `None` means "read it in
    /// slices".
    pub data: Option<String>,
}

/// Up to `limit` events of a session after id `after`, oldest first, stopping early once the
/// inline data read reaches `budget` bytes (at least one event per page).
pub fn event_heads(
    conn: &Connection,
    session_id: &str,
    after: i64,
    limit: u32,
    budget: usize,
) -> Result<Vec<EventHead>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, session_id, type, created_at, octet_length(data), \
         CASE WHEN octet_length(data) <= ?4 THEN data END \
         FROM events WHERE session_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    )?;
    let mut rows = stmt.query(params![session_id, after, limit, INLINE_EVENT_BYTES as i64])?;
    let (mut page, mut bytes) = (Vec::new(), 0usize);
    while let Some(row) = rows.next()? {
        let kind: String = row.get(2)?;
        let head = EventHead {
            id: row.get(0)?,
            session_id: row.get(1)?,
            kind: EventKind::parse(&kind).unwrap_or(EventKind::Status),
            created_at: row.get(3)?,
            len: row.get::<_, i64>(4)?.max(0) as usize,
            data: row.get(5)?,
        };
        bytes += head.data.as_ref().map_or(0, String::len);
        page.push(head);
        if bytes >= budget {
            break;
        }
    }
    Ok(page)
}

/// Bytes `offset..offset + len` (clipped to the end) of one event's data, read through
/// SQLite's incremental blob I/O so the rest of the value is never loaded. A slice may end
/// inside a UTF-8 character; the caller joins slices.
pub fn event_bytes(conn: &Connection, event_id: i64, offset: usize, len: usize) -> Result<Vec<u8>> {
    let blob = conn.blob_open(rusqlite::MAIN_DB, c"events", c"data", event_id, true)?;
    let end = offset.saturating_add(len).min(blob.len());
    let mut buf = vec![0u8; end.saturating_sub(offset)];
    blob.read_at_exact(&mut buf, offset)?;
    Ok(buf)
}

/// Up to `limit` sessions matching `filter` after session `after` in the list's order (the
/// filter's own `offset` applies to the first page only; its `limit` is the caller's to count).
pub fn sessions_page(
    conn: &Connection,
    filter: &SessionFilter,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<Session>> {
    let offset = match after {
        None => i64::from(filter.offset.unwrap_or(0)),
        Some(_) => 0,
    };
    select_sessions(conn, filter, after, Some((i64::from(limit), offset)))
}

/// Up to `limit` finished sessions of the inbox after session `after` (most recently updated
/// first; ties by newest row).
pub fn inbox_page(conn: &Connection, after: Option<&str>, limit: u32) -> Result<Vec<Session>> {
    inbox_after(conn, after, limit)
}
