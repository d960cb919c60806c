//! SQL for conversations (issue 15): a session continued by the next turn in its workspace.
//! The rules that keep one workspace to one running agent are checked in the transaction that
//! stores the new turn, and the unique index on `continued_from` makes the database itself
//! refuse a second continuation: of two racing continues exactly one wins.

use super::queries::{get_session, insert_session_rows, session_select};
use super::workspaces::{record_from_row, workspace_gone, WorkspaceRecord};
use super::StoreClient;
use crate::domain::{Event, EventKind, Session};
use crate::error::{Error, Result};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashSet;

/// Conversations deeper than this are not followed further back (a cycle cannot exist, since a
/// turn continues an older session, but a bound costs nothing).
const MAX_DEPTH: i64 = 10_000;

/// The inbox's condition for conversations (issue 15): a conversation shows once, as its
/// latest finished turn, so a turn whose continuation is itself finished is left out.
pub(crate) const LATEST_FINISHED_TURN: &str = "NOT EXISTS (SELECT 1 FROM sessions c \
    WHERE c.continued_from = sessions.id AND c.continued_from != '' \
    AND c.status IN ('complete', 'error'))";

/// Stores `session`, which continues `session.continued_from`, with its first events, if and
/// only if that session is finished, has not been continued yet, its workspace is still there
/// and nothing else is pending or running in it.
pub(super) fn insert_continuation_rows(
    tx: &Connection,
    session: &Session,
    first_events: &[(EventKind, String)],
) -> Result<Vec<Event>> {
    let parent_id = session.continued_from.as_str();
    let parent = get_session(tx, parent_id)?
        .ok_or_else(|| Error::NotFound(format!("session {parent_id} not found")))?;
    check_continuable(tx, &parent)?;
    // The unique index on `continued_from` refuses a second continuation even if two
    // transactions raced past the check.
    insert_session_rows(tx, session, first_events).map_err(|err| match err {
        Error::Store(rusqlite::Error::SqliteFailure(failure, _))
            if failure.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Error::Conflict(format!(
                "session {parent_id} was continued by another request at the same moment"
            ))
        }
        other => other,
    })
}

/// Why `parent` cannot take another turn now, if it cannot: 409 while it or anything else in
/// its workspace is active, once it was continued, or when it never got a workspace; 410 once
/// its workspace was collected.
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
    if workspace_gone(parent) {
        return Err(Error::Gone(format!(
            "the workspace of session {id} was collected (workspaceState '{}'); its work stays \
             reachable with `telecoder diff {id}` and `telecoder fetch {id}` when it was saved; \
             start a new session to go on",
            parent.workspace_state
        )));
    }
    if let Some((other, status)) = active_in(conn, &parent.work_dir)? {
        return Err(Error::Conflict(format!(
            "session {other} is {status} in the workspace of session {id}; continue once it has \
             finished"
        )));
    }
    Ok(())
}

/// A pending or running session in `work_dir`, if there is one.
fn active_in(conn: &Connection, work_dir: &str) -> Result<Option<(String, String)>> {
    Ok(conn
        .query_row(
            "SELECT id, status FROM sessions WHERE work_dir = ?1 \
             AND status IN ('pending', 'running') LIMIT 1",
            params![work_dir],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?)
}

/// The workspace directories a pending or running session works in. A pending continuation
/// names its parent's directory from the moment it is stored, so the collector leaves it be.
pub fn busy_work_dirs(conn: &Connection) -> Result<HashSet<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT work_dir FROM sessions WHERE status IN ('pending', 'running') \
         AND work_dir != ''",
    )?;
    let dirs = stmt
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(dirs)
}

/// Every session that works in `work_dir` (the turns of one conversation share it), oldest
/// first, with its workspace facts.
pub fn workspace_sharers(conn: &Connection, work_dir: &str) -> Result<Vec<WorkspaceRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {}, fetched_commit FROM sessions WHERE work_dir = ?1 ORDER BY rowid",
        session_select()
    ))?;
    let records = stmt
        .query_map(params![work_dir], record_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(records)
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
    /// (dashboard) Why `parent` cannot take another turn now ([`check_continuable`], the rule
    /// the continue route applies), `None` when it can: so a page offers only what will work.
    pub async fn why_not_continuable(&self, parent: Session) -> Result<Option<String>> {
        self.read(move |conn| match check_continuable(conn, &parent) {
            Ok(()) => Ok(None),
            Err(Error::Conflict(why) | Error::Gone(why)) => Ok(Some(why)),
            Err(other) => Err(other),
        })
        .await
    }

    /// See [`busy_work_dirs`].
    pub async fn busy_work_dirs(&self) -> Result<HashSet<String>> {
        self.read(busy_work_dirs).await
    }

    /// See [`workspace_sharers`].
    pub async fn workspace_sharers(&self, work_dir: &str) -> Result<Vec<WorkspaceRecord>> {
        self.read_by(work_dir, workspace_sharers).await
    }

    /// The conversation ending with `id` (see [`conversation`]).
    pub async fn conversation(&self, id: &str, keep: usize) -> Result<(usize, Vec<Session>)> {
        self.read_by(id, move |conn, id| conversation(conn, id, keep))
            .await
    }
}
