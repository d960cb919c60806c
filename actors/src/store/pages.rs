//! Read paths for answers that are streamed page by page (a session's events, the session
//! list, a watch's runs). Each call reads one bounded page, so a client costs the daemon one
//! page of memory however large the whole answer is; event data too long for a page is read
//! in byte slices straight from the row, never whole.

use super::columns::named_rows;
use super::queries::{session_from_row, session_select};
use crate::domain::{EventKind, Session, SessionFilter, StatusFilter};
use crate::error::Error;
use crate::error::Result;
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension};

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
        "SELECT id, session_id, type, created_at, octet_length(data) AS len, \
         CASE WHEN octet_length(data) <= ?4 THEN data END AS inline_data \
         FROM events WHERE session_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    )?;
    let mut rows = stmt.query(params![session_id, after, limit, INLINE_EVENT_BYTES as i64])?;
    let (mut page, mut bytes) = (Vec::new(), 0usize);
    while let Some(row) = rows.next()? {
        let kind: String = row.get("type")?;
        let head = EventHead {
            id: row.get("id")?,
            session_id: row.get("session_id")?,
            kind: EventKind::parse(&kind).unwrap_or(EventKind::Status),
            created_at: row.get("created_at")?,
            len: row.get::<_, i64>("len")?.max(0) as usize,
            data: row.get("inline_data")?,
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

/// Up to `limit` finished sessions of the inbox after session `after`: the order of
/// [`super::queries::inbox`], made total by the rowid the index already carries (so no sort step).
pub fn inbox_page(conn: &Connection, after: Option<&str>, limit: u32) -> Result<Vec<Session>> {
    let cursor: Option<(String, i64)> = match after {
        None => None,
        Some(id) => {
            let found = conn
                .query_row(
                    "SELECT updated_at, rowid AS position FROM sessions WHERE id = ?1",
                    params![id],
                    |row| Ok((row.get("updated_at")?, row.get("position")?)),
                )
                .optional()?;
            let Some(found) = found else {
                return Ok(Vec::new());
            };
            Some(found)
        }
    };
    let (updated_at, rowid) = cursor.unzip();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM sessions INDEXED BY sessions_inbox \
         WHERE status IN ('complete', 'error') AND {} \
         AND (?1 IS NULL OR updated_at < ?1 OR (updated_at = ?1 AND rowid > ?2)) \
         ORDER BY updated_at DESC, rowid ASC LIMIT ?3",
        session_select(),
        super::conversations::LATEST_FINISHED_TURN
    ))?;
    let rows = stmt.query_map(params![updated_at, rowid, limit], session_from_row)?;
    rows.collect::<rusqlite::Result<_>>().map_err(Error::from)
}

/// The rerun family of `id`: its root ancestor and every descendant of that root.
const FAMILY_CTE: &str = "WITH RECURSIVE
    up(id, parent) AS (
        SELECT id, parent_session_id FROM sessions WHERE id = :lineage
        UNION SELECT s.id, s.parent_session_id FROM sessions s JOIN up ON s.id = up.parent
    ),
    root(id) AS (
        SELECT id FROM up WHERE parent = '' OR parent NOT IN (SELECT id FROM sessions) LIMIT 1
    ),
    family(id) AS (
        SELECT id FROM root
        UNION SELECT s.id FROM sessions s JOIN family f ON s.parent_session_id = f.id
    ) ";

/// The query behind [`super::queries::list_sessions`], also read page by page: `after` is the
/// id of the last session already read (keyset paging, so sessions created meanwhile neither
/// repeat nor shift the pages), `page` an explicit `(limit, offset)`.
pub(super) fn select_sessions(
    conn: &Connection,
    filter: &SessionFilter,
    after: Option<&str>,
    page: Option<(i64, i64)>,
) -> Result<Vec<Session>> {
    let mut clauses: Vec<String> = Vec::new();
    let mut values: Vec<(&str, Value)> = Vec::new();
    match filter.status {
        Some(StatusFilter::Active) => clauses.push("status IN ('pending', 'running')".into()),
        Some(StatusFilter::Is(status)) => {
            clauses.push("status = :status".into());
            values.push((":status", Value::Text(status.as_str().into())));
        }
        None => {}
    }
    if let Some(agent) = &filter.agent {
        clauses.push("agent = :agent".into());
        values.push((":agent", Value::Text(agent.clone())));
    }
    if let Some(policy) = filter.policy {
        clauses.push("policy_mode = :policy".into());
        values.push((":policy", Value::Text(policy.as_str().into())));
    }
    if let Some(parent) = &filter.parent {
        clauses.push("parent_session_id = :parent".into());
        values.push((":parent", Value::Text(parent.clone())));
    }
    let (prefix, order, keyset) = match &filter.lineage {
        Some(lineage) => {
            clauses.push("id IN (SELECT id FROM family)".into());
            values.push((":lineage", Value::Text(lineage.clone())));
            (
                FAMILY_CTE,
                "attempt ASC, created_at ASC, rowid ASC",
                "(attempt, created_at, rowid) > \
                 (SELECT attempt, created_at, rowid FROM sessions WHERE id = :after)",
            )
        }
        None => (
            "",
            "rowid DESC",
            "rowid < (SELECT rowid FROM sessions WHERE id = :after)",
        ),
    };
    if let Some(after) = after {
        clauses.push(keyset.into());
        values.push((":after", Value::Text(after.to_owned())));
    }
    let where_clause = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let page = page.map_or(String::new(), |(limit, offset)| {
        format!(" LIMIT {limit} OFFSET {offset}")
    });
    let sql = format!(
        "{prefix}SELECT {} FROM sessions {where_clause} ORDER BY {order}{page}",
        session_select()
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    named_rows(&mut stmt, &values, session_from_row)
}
