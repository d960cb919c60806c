//! SQL for watches, watch runs and webhook deliveries.

use super::queries::parse_column;
use crate::domain::watch::{repo_key, result_summary, return_summary};
use crate::domain::{time, Session, Watch, WatchKind, WatchRun, WatchStatus};
use crate::error::{Error, Result};
use rusqlite::{params, Connection, OptionalExtension, Row};

const WATCH_COLUMNS: &str = "id, kind, repo, instructions, agent, policy_mode, workflow_name, \
    branch_name, base_branch, head_branch, status, schedule, timezone, max_runs_per_hour, \
    paused_reason, created_at, updated_at, skip_drafts";
const RUN_COLUMNS: &str = "id, watch_id, session_id, event_key, source_ref, trigger_summary, \
    result_summary, return_summary, skipped_reason, created_at";

fn watch_from_row(row: &Row<'_>) -> rusqlite::Result<Watch> {
    Ok(Watch {
        id: row.get(0)?,
        kind: parse_column::<WatchKind>(row, 1)?,
        repo: row.get(2)?,
        instructions: row.get(3)?,
        agent: row.get(4)?,
        policy_mode: parse_column(row, 5)?,
        workflow_name: row.get(6)?,
        branch_name: row.get(7)?,
        base_branch: row.get(8)?,
        head_branch: row.get(9)?,
        status: parse_column::<WatchStatus>(row, 10)?,
        schedule: row.get(11)?,
        timezone: row.get(12)?,
        max_runs_per_hour: row.get(13)?,
        paused_reason: row.get(14)?,
        created_at: row.get(15)?,
        updated_at: row.get(16)?,
        skip_drafts: row.get(17)?,
    })
}

fn run_from_row(row: &Row<'_>) -> rusqlite::Result<WatchRun> {
    Ok(WatchRun {
        id: row.get(0)?,
        watch_id: row.get(1)?,
        session_id: row.get(2)?,
        event_key: row.get(3)?,
        source_ref: row.get(4)?,
        trigger_summary: row.get(5)?,
        result_summary: row.get(6)?,
        return_summary: row.get(7)?,
        skipped_reason: row.get(8)?,
        created_at: row.get(9)?,
    })
}

pub fn insert_watch(conn: &mut Connection, watch: &Watch) -> Result<()> {
    conn.execute(
        &format!("INSERT INTO watches ({WATCH_COLUMNS}, repo_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"),
        params![
            watch.id,
            watch.kind.as_str(),
            watch.repo,
            watch.instructions,
            watch.agent,
            watch.policy_mode.as_str(),
            watch.workflow_name,
            watch.branch_name,
            watch.base_branch,
            watch.head_branch,
            watch.status.as_str(),
            watch.schedule,
            watch.timezone,
            watch.max_runs_per_hour,
            watch.paused_reason,
            watch.created_at,
            watch.updated_at,
            watch.skip_drafts,
            repo_key(&watch.repo),
        ],
    )?;
    Ok(())
}

/// Replaces a watch's editable fields; false when it does not exist.
pub fn update_watch(conn: &mut Connection, watch: &Watch) -> Result<bool> {
    let tx = conn.transaction()?;
    super::outbox::watch_updating(&tx, watch)?; // notify (issue 15): active → paused is told
    let updated = tx.execute(
        "UPDATE watches SET instructions = ?2, agent = ?3, policy_mode = ?4, workflow_name = ?5, \
         branch_name = ?6, base_branch = ?7, head_branch = ?8, status = ?9, schedule = ?10, \
         timezone = ?11, max_runs_per_hour = ?12, paused_reason = ?13, updated_at = ?14, \
         skip_drafts = ?15 WHERE id = ?1",
        params![
            watch.id,
            watch.instructions,
            watch.agent,
            watch.policy_mode.as_str(),
            watch.workflow_name,
            watch.branch_name,
            watch.base_branch,
            watch.head_branch,
            watch.status.as_str(),
            watch.schedule,
            watch.timezone,
            watch.max_runs_per_hour,
            watch.paused_reason,
            time::now(),
            watch.skip_drafts,
        ],
    )?;
    tx.commit()?;
    Ok(updated == 1)
}

pub fn delete_watch(conn: &mut Connection, id: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM watches WHERE id = ?1", params![id])? == 1)
}

pub fn get_watch(conn: &Connection, id: &str) -> Result<Option<Watch>> {
    conn.query_row(
        &format!("SELECT {WATCH_COLUMNS} FROM watches WHERE id = ?1"),
        params![id],
        watch_from_row,
    )
    .optional()
    .map_err(Error::from)
}

/// Filters of the watch list; all set filters must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchFilter {
    pub kind: Option<WatchKind>,
    pub status: Option<WatchStatus>,
    /// Compared in normalised form, so `owner/name` finds `https://github.com/owner/name`.
    pub repo: Option<String>,
}

pub fn list_watches(conn: &Connection, filter: &WatchFilter) -> Result<Vec<Watch>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {WATCH_COLUMNS} FROM watches WHERE (?1 IS NULL OR kind = ?1) \
         AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR repo_key = ?3) ORDER BY rowid DESC"
    ))?;
    let rows = stmt.query_map(
        params![
            filter.kind.map(WatchKind::as_str),
            filter.status.map(WatchStatus::as_str),
            filter.repo.as_deref().map(repo_key),
        ],
        watch_from_row,
    )?;
    rows.collect::<rusqlite::Result<_>>().map_err(Error::from)
}

/// A watch's runs, newest first.
pub fn watch_runs(conn: &Connection, watch_id: &str) -> Result<Vec<WatchRun>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM watch_runs WHERE watch_id = ?1 ORDER BY id DESC"
    ))?;
    let rows = stmt.query_map(params![watch_id], run_from_row)?;
    rows.collect::<rusqlite::Result<_>>().map_err(Error::from)
}

/// The event key of a watch's newest run (a schedule's last slot).
pub fn last_event_key(conn: &Connection, watch_id: &str) -> Result<Option<String>> {
    conn.query_row(
        "SELECT event_key FROM watch_runs WHERE watch_id = ?1 ORDER BY id DESC LIMIT 1",
        params![watch_id],
        |row| row.get(0),
    )
    .optional()
    .map_err(Error::from)
}

/// A run a watch wants recorded.
#[derive(Clone, Debug)]
pub struct NewRun {
    pub watch_id: String,
    pub event_key: String,
    pub source_ref: String,
    pub trigger_summary: String,
    /// Set when the watch decided not to start a session (loop guard).
    pub skipped_reason: Option<String>,
    /// The session to start with the run.
    pub session: Option<Session>,
    /// Sessions this watch may start per rolling hour.
    pub max_runs_per_hour: u32,
}

/// What recording a run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// A run and its pending session were stored.
    Started { run_id: i64, session_id: String },
    /// A run was stored without a session, for the given reason.
    Skipped { run_id: i64, reason: String },
    /// This (watch, event key) already has a run: nothing was stored.
    Duplicate,
}

/// Records a run exactly once per (watch, event key) and, unless skipped or over the hourly
/// limit, its session — in one transaction, so a crash leaves both or neither.
pub fn record_run(conn: &mut Connection, run: &NewRun) -> Result<Recorded> {
    let tx = conn.transaction()?;
    let exists: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM watch_runs WHERE watch_id = ?1 AND event_key = ?2)",
        params![run.watch_id, run.event_key],
        |row| row.get(0),
    )?;
    if exists {
        return Ok(Recorded::Duplicate);
    }
    let mut reason = run.skipped_reason.clone();
    if reason.is_none() {
        let hour_ago = time::ago(std::time::Duration::from_secs(3600));
        let recent: u32 = tx.query_row(
            "SELECT COUNT(*) FROM watch_runs WHERE watch_id = ?1 AND session_id != '' AND created_at > ?2",
            params![run.watch_id, hour_ago],
            |row| row.get(0),
        )?;
        if recent >= run.max_runs_per_hour {
            reason = Some(format!(
                "rate limit: this watch already started {recent} sessions in the last hour (max {})",
                run.max_runs_per_hour
            ));
        }
    }
    let session = match (&reason, &run.session) {
        (None, Some(session)) => {
            super::queries::insert_session_rows(&tx, session, &[])?;
            Some(session.id.clone())
        }
        _ => None,
    };
    tx.execute(
        "INSERT INTO watch_runs (watch_id, session_id, event_key, source_ref, trigger_summary, \
         skipped_reason, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            run.watch_id,
            session.clone().unwrap_or_default(),
            run.event_key,
            run.source_ref,
            run.trigger_summary,
            reason.clone().unwrap_or_default(),
            time::now(),
        ],
    )?;
    let run_id = tx.last_insert_rowid();
    tx.commit()?;
    Ok(match (session, reason) {
        (Some(session_id), _) => Recorded::Started { run_id, session_id },
        (None, reason) => Recorded::Skipped {
            run_id,
            reason: reason.unwrap_or_else(|| "no session to start".into()),
        },
    })
}

/// Fills in the summaries of the runs that started a session, once it has finished. Called in
/// the transaction that finishes the session.
pub fn summarise_runs(tx: &Connection, session: &Session) -> Result<()> {
    let runs: Vec<(i64, String)> = {
        let mut stmt =
            tx.prepare_cached("SELECT id, trigger_summary FROM watch_runs WHERE session_id = ?1")?;
        let rows = stmt.query_map(params![session.id], |row| Ok((row.get(0)?, row.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (id, trigger) in runs {
        tx.execute(
            "UPDATE watch_runs SET result_summary = ?2, return_summary = ?3 WHERE id = ?1",
            params![
                id,
                result_summary(session),
                return_summary(&trigger, session)
            ],
        )?;
    }
    Ok(())
}

/// Stores a webhook delivery once; false when this delivery id was seen before.
pub fn insert_delivery(
    conn: &mut Connection,
    id: &str,
    event: &str,
    payload: &str,
) -> Result<bool> {
    let inserted = conn.execute(
        "INSERT OR IGNORE INTO webhook_deliveries (delivery_id, event, payload, state, received_at) \
         VALUES (?1, ?2, ?3, 'pending', ?4)",
        params![id, event, payload, time::now()],
    )?;
    Ok(inserted == 1)
}

pub fn finish_delivery(conn: &mut Connection, id: &str, state: &str) -> Result<()> {
    conn.execute(
        "UPDATE webhook_deliveries SET state = ?2, payload = '' WHERE delivery_id = ?1",
        params![id, state],
    )?;
    Ok(())
}

/// Deliveries accepted before `received_before` but not yet routed (the daemon stopped in
/// between), oldest first.
pub fn pending_deliveries(
    conn: &Connection,
    received_before: &str,
) -> Result<Vec<(String, String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT delivery_id, event, payload FROM webhook_deliveries WHERE state = 'pending' \
         AND received_at < ?1 ORDER BY received_at",
    )?;
    let rows = stmt.query_map(params![received_before], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
    })?;
    rows.collect::<rusqlite::Result<_>>().map_err(Error::from)
}
