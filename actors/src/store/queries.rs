//! SQL for sessions and events. Plain functions over a connection: the StoreActor decides
//! which connection (the single writer or a pooled reader) runs them.

use crate::domain::{
    time, Event, EventKind, FailureKind, Outcome, Session, SessionFilter, SessionStatus,
    StatusFilter,
};
use crate::error::{Error, Result};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use std::str::FromStr;

const SESSION_COLUMNS: &str = "id, repo, prompt, agent, parent_session_id, attempt, policy_mode, \
    permission_mode, write_policy, max_runtime_seconds, runtime_command, status, owner_id, branch, \
    work_dir, result_text, outcome_headline, outcome_changed, outcome_verified, outcome_uncertain, \
    outcome_next, error, failure_kind, claimed_at, heartbeat_at, started_at, finished_at, \
    created_at, updated_at";

/// Read-only columns after [`SESSION_COLUMNS`]: the published PR, a pending session's
/// place in the FIFO run queue (1 = next; 0 for any other status), and what the runtime
/// learned about the agent's side ([`record_agent_facts`]).
const QUEUE_POSITION: &str = "pr_number, pr_url, CASE WHEN status = 'pending' THEN \
    (SELECT COUNT(*) FROM sessions q WHERE q.status = 'pending' AND q.rowid <= sessions.rowid) \
    ELSE 0 END, agent_session_id, agent_load_session, stop_reason, token_usage";

/// Reads a text column into a type that parses from text (an enum stored by name).
pub(crate) fn parse_column<T: FromStr>(row: &Row<'_>, index: usize) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    text.parse().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            format!("unexpected value '{text}'").into(),
        )
    })
}

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id: row.get(0)?,
        repo: row.get(1)?,
        prompt: row.get(2)?,
        agent: row.get(3)?,
        parent_session_id: row.get(4)?,
        attempt: row.get(5)?,
        policy_mode: parse_column(row, 6)?,
        effective_permission_mode: parse_column(row, 7)?,
        workspace_write_policy: match row.get::<_, String>(8)?.as_str() {
            "contained" => crate::domain::WorkspaceWritePolicy::Contained,
            _ => crate::domain::WorkspaceWritePolicy::Blocked,
        },
        max_runtime_seconds: row.get::<_, i64>(9)?.max(0) as u64,
        runtime_command: row.get(10)?,
        status: parse_column(row, 11)?,
        owner_id: row.get(12)?,
        branch: row.get(13)?,
        work_dir: row.get(14)?,
        result_text: row.get(15)?,
        outcome_headline: row.get(16)?,
        outcome_changed: row.get(17)?,
        outcome_verified: row.get(18)?,
        outcome_uncertain: row.get(19)?,
        outcome_next: row.get(20)?,
        error: row.get(21)?,
        failure_kind: FailureKind::parse(&row.get::<_, String>(22)?),
        claimed_at: row.get(23)?,
        heartbeat_at: row.get(24)?,
        started_at: row.get(25)?,
        finished_at: row.get(26)?,
        created_at: row.get(27)?,
        updated_at: row.get(28)?,
        pull_request_number: row.get::<_, i64>(29)?.max(0) as u64,
        pull_request_url: row.get(30)?,
        queue_position: row.get(31)?,
        agent_session_id: row.get(32)?,
        agent_load_session: row.get(33)?,
        stop_reason: row.get(34)?,
        token_usage: serde_json::from_str(&row.get::<_, String>(35)?).ok(),
    })
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    let kind: String = row.get(2)?;
    Ok(Event {
        id: row.get(0)?,
        session_id: row.get(1)?,
        kind: EventKind::parse(&kind).unwrap_or(EventKind::Status),
        data: row.get(3)?,
        created_at: row.get(4)?,
    })
}

/// Stores a new session together with its first events, atomically.
pub fn insert_session(
    conn: &mut Connection,
    session: &Session,
    first_events: &[(EventKind, String)],
) -> Result<Vec<Event>> {
    let tx = conn.transaction()?;
    let events = insert_session_rows(&tx, session, first_events)?;
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
        &format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29)"),
        params![
            session.id,
            session.repo,
            session.prompt,
            session.agent,
            session.parent_session_id,
            session.attempt,
            session.policy_mode.as_str(),
            session.effective_permission_mode.as_str(),
            session.workspace_write_policy.as_str(),
            session.max_runtime_seconds as i64,
            session.runtime_command,
            session.status.as_str(),
            session.owner_id,
            session.branch,
            session.work_dir,
            session.result_text,
            session.outcome_headline,
            session.outcome_changed,
            session.outcome_verified,
            session.outcome_uncertain,
            session.outcome_next,
            session.error,
            session.failure_kind.as_str(),
            session.claimed_at,
            session.heartbeat_at,
            session.started_at,
            session.finished_at,
            session.created_at,
            session.updated_at,
        ],
    )?;
    first_events
        .iter()
        .map(|(kind, data)| insert_event(tx, &session.id, *kind, data))
        .collect()
}

fn insert_event(conn: &Connection, session_id: &str, kind: EventKind, data: &str) -> Result<Event> {
    let created_at = time::now();
    conn.execute(
        "INSERT INTO events (session_id, type, data, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![session_id, kind.as_str(), data, created_at],
    )?;
    super::outbox::event_inserted(conn, session_id, kind.as_str(), data)?; // notify (issue 15)
    Ok(Event {
        id: conn.last_insert_rowid(),
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

/// Records the workspace once it exists.
pub fn set_workspace(conn: &mut Connection, id: &str, branch: &str, work_dir: &str) -> Result<()> {
    conn.execute(
        "UPDATE sessions SET branch = ?2, work_dir = ?3, updated_at = ?4 WHERE id = ?1",
        params![id, branch, work_dir, time::now()],
    )?;
    Ok(())
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

/// How a run ended, as the session actor reports it.
#[derive(Clone, Debug)]
pub struct Finish {
    pub status: SessionStatus,
    pub result_text: String,
    pub outcome: Outcome,
    pub error: String,
    pub failure_kind: FailureKind,
}

impl Finish {
    /// A successful run.
    pub fn complete(result_text: String) -> Self {
        Self {
            status: SessionStatus::Complete,
            outcome: Outcome::complete(&result_text),
            result_text,
            error: String::new(),
            failure_kind: FailureKind::None,
        }
    }

    /// A failed run; whatever text the agent produced is kept.
    pub fn failed(kind: FailureKind, error: String, result_text: String) -> Self {
        Self {
            status: if kind == FailureKind::Cancelled {
                SessionStatus::Cancelled
            } else {
                SessionStatus::Error
            },
            outcome: Outcome::failed(&error, &result_text),
            result_text,
            error,
            failure_kind: kind,
        }
    }

    /// The same finish with secrets masked in every text field.
    pub fn redacted(&self, redactor: &crate::domain::redact::Redactor) -> Self {
        let o = &self.outcome;
        Self {
            status: self.status,
            result_text: redactor.redact(&self.result_text),
            outcome: Outcome {
                headline: redactor.redact(&o.headline),
                changed: redactor.redact(&o.changed),
                verified: redactor.redact(&o.verified),
                uncertain: redactor.redact(&o.uncertain),
                next: redactor.redact(&o.next),
            },
            error: redactor.redact(&self.error),
            failure_kind: self.failure_kind,
        }
    }

    fn terminal_event(&self) -> (EventKind, &str) {
        if self.status == SessionStatus::Complete {
            (EventKind::Done, self.outcome.headline.as_str())
        } else {
            (EventKind::Error, self.error.as_str())
        }
    }
}

/// Which sessions a finishing write may touch.
enum Guard<'a> {
    /// Only a running session of this owner (the normal end of a run).
    RunningFor(&'a str),
    /// Any running session (the stale sweep).
    Running,
    /// Any pending or running session (supervisor clean-up, shutdown, cancel).
    Active,
}

impl Guard<'_> {
    fn condition(&self) -> &'static str {
        match self {
            Self::RunningFor(_) => "status = 'running' AND owner_id = ?12",
            Self::Running => "status = 'running' AND ?12 IS NOT NULL",
            Self::Active => "status IN ('pending', 'running') AND ?12 IS NOT NULL",
        }
    }

    fn owner(&self) -> &str {
        match self {
            Self::RunningFor(owner) => owner,
            _ => "",
        }
    }
}

fn write_finish(
    tx: &Connection,
    id: &str,
    finish: &Finish,
    guard: Guard<'_>,
) -> Result<Option<Finished>> {
    let now = time::now();
    let updated = tx.execute(
        &format!(
            "UPDATE sessions SET status = ?2, result_text = ?3, outcome_headline = ?4, \
             outcome_changed = ?5, outcome_verified = ?6, outcome_uncertain = ?7, outcome_next = ?8, \
             error = ?9, failure_kind = ?10, finished_at = ?11, updated_at = ?11, agent_pid = NULL \
             WHERE id = ?1 AND {}",
            guard.condition()
        ),
        params![
            id,
            finish.status.as_str(),
            finish.result_text,
            finish.outcome.headline,
            finish.outcome.changed,
            finish.outcome.verified,
            finish.outcome.uncertain,
            finish.outcome.next,
            finish.error,
            finish.failure_kind.as_str(),
            now,
            guard.owner(),
        ],
    )?;
    if updated == 0 {
        return Ok(None);
    }
    let Some(session) = get_session(tx, id)? else {
        return Ok(None);
    };
    super::watches::summarise_runs(tx, &session)?;
    let (kind, data) = finish.terminal_event();
    let event = insert_event(tx, id, kind, data)?;
    super::outbox::session_finished(tx, &session)?; // notify (issue 15)
    Ok(Some(Finished { event, session }))
}

/// A session that just finished: its terminal event and final record.
#[derive(Clone, Debug)]
pub struct Finished {
    pub event: Event,
    pub session: Session,
}

/// Finishes a session this owner runs, with its terminal event in the same transaction.
/// `None` when the session was already finished (swept as abandoned, say).
pub fn finish(
    conn: &mut Connection,
    id: &str,
    owner: &str,
    finish: &Finish,
) -> Result<Option<Finished>> {
    let tx = conn.transaction()?;
    let event = write_finish(&tx, id, finish, Guard::RunningFor(owner))?;
    tx.commit()?;
    Ok(event)
}

/// Fails a session that is still pending or running, whoever owns it (supervisor clean-up,
/// shutdown, cancel).
pub fn fail_active(conn: &mut Connection, id: &str, finish: &Finish) -> Result<Option<Finished>> {
    let tx = conn.transaction()?;
    let event = write_finish(&tx, id, finish, Guard::Active)?;
    tx.commit()?;
    Ok(event)
}

/// The message every abandoned session carries.
pub const ABANDONED_MESSAGE: &str =
    "session abandoned: no heartbeat from its daemon within the stale window; a rerun is required";

/// A session the stale sweep gave up on, with the agent process it may have left behind.
#[derive(Clone, Debug)]
pub struct Abandoned {
    pub finished: Finished,
    pub agent_pid: Option<u32>,
}

/// Marks every running session whose heartbeat is older than `cutoff` as abandoned.
pub fn sweep_stale(conn: &mut Connection, cutoff: &str) -> Result<Vec<Abandoned>> {
    let tx = conn.transaction()?;
    let stale: Vec<(String, Option<u32>)> = {
        let mut stmt = tx.prepare(
            "SELECT id, agent_pid FROM sessions WHERE status = 'running' AND heartbeat_at < ?1 \
             ORDER BY rowid",
        )?;
        let rows = stmt.query_map(params![cutoff], |row| Ok((row.get(0)?, row.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let finish = Finish::failed(
        FailureKind::Abandoned,
        ABANDONED_MESSAGE.to_owned(),
        String::new(),
    );
    let mut abandoned = Vec::new();
    for (id, agent_pid) in stale {
        if let Some(finished) = write_finish(&tx, &id, &finish, Guard::Running)? {
            abandoned.push(Abandoned {
                finished,
                agent_pid,
            });
        }
    }
    tx.commit()?;
    Ok(abandoned)
}

pub fn get_session(conn: &Connection, id: &str) -> Result<Option<Session>> {
    conn.query_row(
        &format!("SELECT {SESSION_COLUMNS}, {QUEUE_POSITION} FROM sessions WHERE id = ?1"),
        params![id],
        session_from_row,
    )
    .optional()
    .map_err(Error::from)
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

/// Lists sessions matching every set filter: newest first, or in family order (attempt,
/// then creation) when the lineage filter is set.
pub fn list_sessions(conn: &Connection, filter: &SessionFilter) -> Result<Vec<Session>> {
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
    let (prefix, order) = match &filter.lineage {
        Some(lineage) => {
            clauses.push("id IN (SELECT id FROM family)".into());
            values.push((":lineage", Value::Text(lineage.clone())));
            (FAMILY_CTE, "attempt ASC, created_at ASC, rowid ASC")
        }
        None => ("", "rowid DESC"),
    };
    let where_clause = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let page = match (filter.limit, filter.offset) {
        (None, None) => String::new(),
        (limit, offset) => format!(
            " LIMIT {} OFFSET {}",
            limit.map_or(-1, i64::from),
            offset.unwrap_or(0)
        ),
    };
    let sql = format!(
        "{prefix}SELECT {SESSION_COLUMNS}, {QUEUE_POSITION} FROM sessions {where_clause} ORDER BY {order}{page}"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let named: Vec<(&str, &dyn rusqlite::ToSql)> = values
        .iter()
        .map(|(name, value)| (*name, value as &dyn rusqlite::ToSql))
        .collect();
    let rows = stmt.query_map(named.as_slice(), session_from_row)?;
    rows.collect::<rusqlite::Result<_>>().map_err(Error::from)
}

/// Finished sessions, most recently updated first. Read straight off the partial inbox index
/// (the planner would otherwise pick the status index and sort every finished session: 163 ms
/// at 100,000 sessions instead of a fraction of a millisecond).
pub fn inbox(conn: &Connection, limit: u32) -> Result<Vec<Session>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS}, {QUEUE_POSITION} FROM sessions INDEXED BY sessions_inbox \
         WHERE status IN ('complete', 'error') ORDER BY updated_at DESC LIMIT ?1"
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
    let rows = stmt.query_map(params_from_iter([limit as i64]), |row| row.get(0))?;
    let pending = rows.collect::<rusqlite::Result<_>>()?;
    let running_elsewhere: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM sessions WHERE status = 'running' AND owner_id != ?1",
        )?
        .query_row(params![owner], |row| row.get(0))?;
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
    let mut stmt = conn.prepare_cached("SELECT status, COUNT(*) FROM sessions GROUP BY status")?;
    let sessions_by_status: std::collections::BTreeMap<String, u64> = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?.max(0) as u64,
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
