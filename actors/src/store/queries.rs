//! SQL for sessions and events. Plain functions over a connection: the StoreActor decides
//! which connection (the single writer or a pooled reader) runs them.

use super::columns::stored;
use crate::domain::{time, Event, EventKind, Session, SessionFilter};
use crate::error::{Error, Result};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

stored! {
    /// The `sessions` table: a session's fields, each in its column.
    SessionRow for Session {
        id,
        repo,
        prompt,
        agent,
        parent_session_id,
        attempt,
        policy_mode,
        effective_permission_mode = "permission_mode",
        workspace_write_policy = "write_policy",
        max_runtime_seconds,
        runtime_command,
        status,
        owner_id,
        branch,
        work_dir,
        result_text,
        outcome_headline,
        outcome_changed,
        outcome_verified,
        outcome_uncertain,
        outcome_next,
        error,
        failure_kind,
        claimed_at,
        heartbeat_at,
        started_at,
        finished_at,
        created_at,
        updated_at,
        continued_from,
    }
    reads {
        pull_request_number = "pr_number",
        pull_request_url = "pr_url",
        queue_position = "queue_position",
        agent_session_id = "agent_session_id",
        agent_load_session = "agent_load_session",
        stop_reason = "stop_reason",
        token_usage = "token_usage",
        base_commit = "base_commit",
        fetched_at = "fetched_at",
        workspace_state = "workspace_state",
        awaiting_approval = "awaiting_approval",
    }
}

/// Every column a session is read from: its own, the published PR, a pending session's place
/// in the FIFO run queue (1 = next; 0 for any other status), and what the runtime learned
/// about the agent's side ([`record_agent_facts`]), the workspace's facts, and whether an
/// approval of it is pending (derived, so it can never disagree with `approvals`).
pub(crate) fn session_select() -> String {
    format!(
        "{}, pr_number, pr_url, CASE WHEN status = 'pending' THEN \
         (SELECT COUNT(*) FROM sessions q WHERE q.status = 'pending' AND q.rowid <= sessions.rowid) \
         ELSE 0 END AS queue_position, agent_session_id, agent_load_session, stop_reason, \
         token_usage, base_commit, fetched_at, workspace_state, EXISTS (SELECT 1 FROM approvals a \
         WHERE a.session_id = sessions.id AND a.status = 'pending') AS awaiting_approval",
        SessionRow::list()
    )
}

pub(crate) fn session_from_row(row: &Row<'_>) -> rusqlite::Result<Session> {
    SessionRow::read(row)
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    let kind: String = row.get("type")?;
    Ok(Event {
        id: row.get("id")?,
        session_id: row.get("session_id")?,
        kind: EventKind::parse(&kind).unwrap_or(EventKind::Status),
        data: row.get("data")?,
        created_at: row.get("created_at")?,
    })
}

/// Stores a new session together with its first events, atomically. A session that continues
/// another is stored only if that one may take another turn (see
/// [`super::conversations::insert_continuation_rows`]).
pub fn insert_session(
    conn: &mut Connection,
    session: &Session,
    first_events: &[(EventKind, String)],
) -> Result<Vec<Event>> {
    let tx = conn.transaction()?;
    let events = if session.continued_from.is_empty() {
        insert_session_rows(&tx, session, first_events)?
    } else {
        super::conversations::insert_continuation_rows(&tx, session, first_events)?
    };
    tx.commit()?;
    Ok(events)
}

/// The inserts of [`insert_session`], for callers that already hold a transaction.
pub fn insert_session_rows(
    tx: &Connection,
    session: &Session,
    first_events: &[(EventKind, String)],
) -> Result<Vec<Event>> {
    tx.execute(
        &format!(
            "INSERT INTO sessions ({}) VALUES ({})",
            SessionRow::list(),
            SessionRow::placeholders()
        ),
        params_from_iter(SessionRow::values(session)),
    )?;
    first_events
        .iter()
        .map(|(kind, data)| insert_event(tx, &session.id, *kind, data))
        .collect()
}

pub(crate) fn insert_event(
    conn: &Connection,
    session_id: &str,
    kind: EventKind,
    data: &str,
) -> Result<Event> {
    let created_at = time::now();
    conn.execute(
        "INSERT INTO events (session_id, type, data, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![session_id, kind.as_str(), data, created_at],
    )?;
    let id = conn.last_insert_rowid();
    super::outbox::event_inserted(conn, session_id, kind.as_str(), data)?; // notify (issue 15)
    Ok(Event {
        id,
        session_id: session_id.to_owned(),
        kind,
        data: data.to_owned(),
        created_at,
    })
}

/// Appends one event to a session.
pub fn append_event(
    conn: &mut Connection,
    session_id: &str,
    kind: EventKind,
    data: &str,
) -> Result<Event> {
    // One transaction: the event and the notification it may cause (issue 15).
    let tx = conn.transaction()?;
    let event = insert_event(&tx, session_id, kind, data)?;
    tx.commit()?;
    Ok(event)
}

/// Moves a pending session to running for `owner`. `None` when it is no longer pending
/// (cancelled, or claimed by someone else), so the caller must not run it.
pub fn claim(conn: &mut Connection, id: &str, owner: &str) -> Result<Option<Session>> {
    let now = time::now();
    let claimed = conn.execute(
        "UPDATE sessions SET status = 'running', owner_id = ?2, claimed_at = ?3, started_at = ?3, \
         heartbeat_at = ?3, updated_at = ?3, outcome_headline = 'Session is running.' \
         WHERE id = ?1 AND status = 'pending'",
        params![id, owner, now],
    )?;
    if claimed == 0 {
        return Ok(None);
    }
    get_session(conn, id)
}

/// Proves `owner` still runs the session. False when the session was taken away (swept).
pub fn heartbeat(conn: &mut Connection, id: &str, owner: &str) -> Result<bool> {
    let now = time::now();
    let updated = conn.execute(
        "UPDATE sessions SET heartbeat_at = ?3, updated_at = ?3 \
         WHERE id = ?1 AND owner_id = ?2 AND status = 'running'",
        params![id, owner, now],
    )?;
    Ok(updated == 1)
}

/// Stores the pull request a session was published as, with a `publish` event.
pub fn record_published(conn: &mut Connection, id: &str, number: u64, url: &str) -> Result<Event> {
    let tx = conn.transaction()?;
    tx.execute(
        "UPDATE sessions SET pr_number = ?2, pr_url = ?3, updated_at = ?4 WHERE id = ?1",
        params![id, number as i64, url, time::now()],
    )?;
    let event = insert_event(
        &tx,
        id,
        EventKind::Publish,
        &format!("pull request #{number}: {url}"),
    )?;
    tx.commit()?;
    Ok(event)
}

/// Records (or clears) the agent's process id, so a later instance can find what is left.
pub fn set_agent_pid(conn: &mut Connection, id: &str, pid: Option<u32>) -> Result<()> {
    conn.execute(
        "UPDATE sessions SET agent_pid = ?2 WHERE id = ?1",
        params![id, pid],
    )?;
    Ok(())
}

/// Stores what the runtime learned about the agent's side; unset facts keep their value.
pub fn record_agent_facts(
    conn: &mut Connection,
    id: &str,
    facts: &crate::domain::AgentFacts,
) -> Result<()> {
    let usage = facts
        .token_usage
        .as_ref()
        .and_then(|usage| serde_json::to_string(usage).ok());
    conn.execute(
        "UPDATE sessions SET agent_session_id = COALESCE(?2, agent_session_id), \
         agent_load_session = COALESCE(?3, agent_load_session), \
         stop_reason = COALESCE(?4, stop_reason), token_usage = COALESCE(?5, token_usage), \
         updated_at = ?6 WHERE id = ?1",
        params![
            id,
            facts.agent_session_id,
            facts.load_session,
            facts.stop_reason,
            usage,
            time::now()
        ],
    )?;
    Ok(())
}

pub fn get_session(conn: &Connection, id: &str) -> Result<Option<Session>> {
    conn.query_row(
        &format!("SELECT {} FROM sessions WHERE id = ?1", session_select()),
        params![id],
        session_from_row,
    )
    .optional()
    .map_err(Error::from)
}

/// Lists sessions matching every set filter: newest first, or in family order (attempt,
/// then creation) when the lineage filter is set.
pub fn list_sessions(conn: &Connection, filter: &SessionFilter) -> Result<Vec<Session>> {
    let page = match (filter.limit, filter.offset) {
        (None, None) => None,
        (limit, offset) => Some((limit.map_or(-1, i64::from), i64::from(offset.unwrap_or(0)))),
    };
    super::pages::select_sessions(conn, filter, None, page)
}

/// Finished sessions, most recently updated first. Read straight off the partial inbox index
/// (the planner would otherwise pick the status index and sort every finished session: 163 ms
/// at 100,000 sessions instead of a fraction of a millisecond). A conversation shows once, as
/// its latest finished turn.
pub fn inbox(conn: &Connection, limit: u32) -> Result<Vec<Session>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM sessions INDEXED BY sessions_inbox \
         WHERE status IN ('complete', 'error') AND {} ORDER BY updated_at DESC LIMIT ?1",
        session_select(),
        super::conversations::LATEST_FINISHED_TURN
    ))?;
    let rows = stmt.query_map(params![limit], session_from_row)?;
    rows.collect::<rusqlite::Result<_>>().map_err(Error::from)
}

/// A session's events with ids above `after`, oldest first, at most `limit` of them.
pub fn events_after(
    conn: &Connection,
    session_id: &str,
    after: i64,
    limit: u32,
) -> Result<Vec<Event>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, session_id, type, data, created_at FROM events \
         WHERE session_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![session_id, after, limit], event_from_row)?;
    rows.collect::<rusqlite::Result<_>>().map_err(Error::from)
}

/// What the supervisor's run queue needs to start sessions.
#[derive(Clone, Debug, Default)]
pub struct RunQueue {
    /// The oldest pending session ids (FIFO).
    pub pending: Vec<String>,
    /// Sessions still `running` for another daemon instance (one that crashed and has not been
    /// swept yet, or one sharing the data directory): their agents may still be alive, so they
    /// take slots of the concurrency limit until the stale sweep ends them.
    pub running_elsewhere: usize,
}

/// The run queue as `owner` sees it.
pub fn run_queue(conn: &Connection, limit: usize, owner: &str) -> Result<RunQueue> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM sessions WHERE status = 'pending' ORDER BY rowid LIMIT ?1",
    )?;
    let rows = stmt.query_map(params_from_iter([limit as i64]), |row| row.get("id"))?;
    let pending = rows.collect::<rusqlite::Result<_>>()?;
    let running_elsewhere: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) AS running FROM sessions WHERE status = 'running' AND owner_id != ?1",
        )?
        .query_row(params![owner], |row| row.get("running"))?;
    Ok(RunQueue {
        pending,
        running_elsewhere: usize::try_from(running_elsewhere).unwrap_or(0),
    })
}

/// What `/admin/status` reports about the database.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    pub path: String,
    pub size_bytes: u64,
    pub schema_version: i64,
    pub sessions_by_status: std::collections::BTreeMap<String, u64>,
    pub queue_depth: u64,
}

pub fn database_status(conn: &Connection, path: &std::path::Path) -> Result<DatabaseStatus> {
    let schema_version = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let mut stmt =
        conn.prepare_cached("SELECT status, COUNT(*) AS n FROM sessions GROUP BY status")?;
    let sessions_by_status: std::collections::BTreeMap<String, u64> = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, String>("status")?,
                row.get::<_, i64>("n")?.max(0) as u64,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let size = |suffix: &str| {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        std::fs::metadata(file).map(|m| m.len()).unwrap_or(0)
    };
    Ok(DatabaseStatus {
        path: path.display().to_string(),
        size_bytes: size("") + size("-wal"),
        schema_version,
        queue_depth: sessions_by_status.get("pending").copied().unwrap_or(0),
        sessions_by_status,
    })
}
