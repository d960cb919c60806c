//! SQL for conversations (issue 15): a session continued by the next turn in its workspace.
//! The rules that keep one workspace to one running agent are checked in the transaction that
//! stores the new turn, and the unique index on `continued_from` makes the database itself
//! refuse a second continuation: of two racing continues exactly one wins.

use super::queries::{get_session, insert_session_rows};
use super::StoreClient;
use crate::domain::{Event, EventKind, Session};
use crate::error::{Error, Result};
use rusqlite::{params, Connection, OptionalExtension};

/// Conversations deeper than this are not followed further back (a cycle cannot exist, since a
/// turn continues an older session, but a bound costs nothing).
const MAX_DEPTH: i64 = 10_000;

/// Stores `session`, which continues `session.continued_from`, with its first events, if and
/// only if that session is finished, has not been continued yet, and nothing else is pending
/// or running in its workspace.
pub fn insert_continuation(
    conn: &mut Connection,
    session: &Session,
    first_events: &[(EventKind, String)],
) -> Result<Vec<Event>> {
    let tx = conn.transaction()?;
    let parent_id = session.continued_from.as_str();
    let parent = get_session(&tx, parent_id)?
        .ok_or_else(|| Error::NotFound(format!("session {parent_id} not found")))?;
    check_continuable(&tx, &parent)?;
    let events = insert_session_rows(&tx, session, first_events)?;
    // The unique index refuses a second continuation even if two transactions raced here.
    tx.execute(
        "UPDATE sessions SET continued_from = ?2 WHERE id = ?1",
        params![session.id, parent_id],
    )
    .map_err(|err| match err {
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Error::Conflict(format!(
                "session {parent_id} was continued by another request at the same moment"
            ))
        }
        other => Error::Store(other),
    })?;
    tx.commit()?;
    Ok(events)
}

/// Why `parent` cannot take another turn now, if it cannot.
pub fn check_continuable(conn: &Connection, parent: &Session) -> Result<()> {
    let id = &parent.id;
    if !parent.status.is_finished() {
        return Err(Error::Conflict(format!(
            "session {id} is still {}; continue it once it has finished",
            parent.status.as_str()
        )));
    }
    let next: Option<String> = conn
        .query_row(
            "SELECT id FROM sessions WHERE continued_from = ?1 AND continued_from != ''",
            params![id],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(next) = next {
        return Err(Error::Conflict(format!(
            "session {id} was already continued by session {next}; continue the latest turn \
             of the conversation instead"
        )));
    }
    if parent.work_dir.is_empty() {
        return Err(Error::Conflict(format!(
            "session {id} has no workspace to continue in (it ended before one was made); \
             rerun it instead"
        )));
    }
    let busy: Option<(String, String)> = conn
        .query_row(
            "SELECT id, status FROM sessions WHERE work_dir = ?1 \
             AND status IN ('pending', 'running') LIMIT 1",
            params![parent.work_dir],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    if let Some((other, status)) = busy {
        return Err(Error::Conflict(format!(
            "session {other} is {status} in the workspace of session {id}; continue once it has \
             finished"
        )));
    }
    Ok(())
}

/// The turns of the conversation that ends with `id`, oldest first: its first session, each
/// continuation, `id` itself. Only the last `keep` are loaded (a record may be large); the
/// number left out comes first.
pub fn conversation(conn: &Connection, id: &str, keep: usize) -> Result<(usize, Vec<Session>)> {
    let mut stmt = conn.prepare_cached(
        "WITH RECURSIVE chain(id, depth) AS ( \
             SELECT ?1, 0 \
             UNION ALL SELECT s.continued_from, chain.depth + 1 FROM sessions s \
             JOIN chain ON s.id = chain.id WHERE s.continued_from != '' AND chain.depth < ?2 \
         ) SELECT id FROM chain ORDER BY depth DESC",
    )?;
    let ids: Vec<String> = stmt
        .query_map(params![id, MAX_DEPTH], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let omitted = ids.len().saturating_sub(keep);
    let mut turns = Vec::new();
    for turn in &ids[omitted..] {
        if let Some(session) = get_session(conn, turn)? {
            turns.push(session);
        }
    }
    Ok((omitted, turns))
}

impl StoreClient {
    /// Stores a continuation (see [`insert_continuation`]) and publishes its first events.
    pub async fn insert_continuation(
        &self,
        session: Session,
        first_events: Vec<(EventKind, String)>,
    ) -> Result<Vec<Event>> {
        self.write(move |w| {
            let events = insert_continuation(w.conn, &session, &first_events)?;
            w.published(&events);
            Ok(events)
        })
        .await
    }

    /// The conversation ending with `id` (see [`conversation`]).
    pub async fn conversation(&self, id: &str, keep: usize) -> Result<(usize, Vec<Session>)> {
        let id = id.to_owned();
        self.read(move |conn| conversation(conn, &id, keep)).await
    }
}
