//! SQL for watches, watch runs and webhook deliveries.

use super::columns::stored;
use crate::domain::watch::{repo_key, result_summary, return_summary};
use crate::domain::{time, Session, Watch, WatchKind, WatchRun, WatchStatus};
use crate::error::{Error, Result};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

stored! {
    /// The `watches` table: a watch's fields, each in its column (plus `repo_key`, written
    /// beside them for matching).
    WatchRow for Watch {
        id,
        kind,
        repo,
        instructions,
        agent,
        policy_mode,
        workflow_name,
        branch_name,
        base_branch,
        head_branch,
        status,
        schedule,
        timezone,
        max_runs_per_hour,
        paused_reason,
        created_at,
        updated_at,
        skip_drafts,
    }
}

/// Columns an update leaves alone: what a watch is and when it was made.
const FIXED_COLUMNS: [&str; 4] = ["id", "kind", "repo", "created_at"];

stored! {
    /// The `watch_runs` table.
    RunRow for WatchRun {
        id,
        watch_id,
        session_id,
        event_key,
        source_ref,
        trigger_summary,
        result_summary,
        return_summary,
        skipped_reason,
        created_at,
    }
}

/// `SELECT` of every watch column (and nothing else) from `watches`.
fn select_watches() -> String {
    format!("SELECT {} FROM watches", WatchRow::list())
}

pub fn insert_watch(conn: &mut Connection, watch: &Watch) -> Result<()> {
    let mut values = WatchRow::values(watch);
    values.push(Value::Text(repo_key(&watch.repo)));
    conn.execute(
        &format!(
            "INSERT INTO watches ({}, repo_key) VALUES ({}, ?{})",
            WatchRow::list(),
            WatchRow::placeholders(),
            values.len()
        ),
        params_from_iter(values),
    )?;
    Ok(())
}

/// Replaces a watch's editable fields (stamping `updated_at`); false when it does not exist.
pub fn update_watch(conn: &mut Connection, watch: &Watch) -> Result<bool> {
    let mut sets = Vec::new();
    let mut values = Vec::new();
    for (column, value) in WatchRow::COLUMNS.iter().zip(WatchRow::values(watch)) {
        if FIXED_COLUMNS.contains(column) {
            continue;
        }
        values.push(match *column {
            "updated_at" => Value::Text(time::now()),
            _ => value,
        });
        sets.push(format!("{column} = ?{}", values.len()));
    }
    values.push(Value::Text(watch.id.clone()));
    let sql = format!(
        "UPDATE watches SET {} WHERE id = ?{}",
        sets.join(", "),
        values.len()
    );
    let tx = conn.transaction()?;
    super::outbox::watch_updating(&tx, watch)?; // notify (issue 15): active → paused is told
    let updated = tx.execute(&sql, params_from_iter(values))?;
    tx.commit()?;
    Ok(updated == 1)
}

pub fn delete_watch(conn: &mut Connection, id: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM watches WHERE id = ?1", params![id])? == 1)
}

pub fn get_watch(conn: &Connection, id: &str) -> Result<Option<Watch>> {
    conn.query_row(
        &format!("{} WHERE id = ?1", select_watches()),
        params![id],
        WatchRow::read,
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
        "{} WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR status = ?2) \
         AND (?3 IS NULL OR repo_key = ?3) ORDER BY rowid DESC",
        select_watches()
    ))?;
    let rows = stmt.query_map(
        params![
            filter.kind.map(WatchKind::as_str),
            filter.status.map(WatchStatus::as_str),
            filter.repo.as_deref().map(repo_key),
        ],
        WatchRow::read,
    )?;
    rows.collect::<rusqlite::Result<_>>().map_err(Error::from)
}

/// A watch's runs, newest first.
pub fn watch_runs(conn: &Connection, watch_id: &str) -> Result<Vec<WatchRun>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM watch_runs WHERE watch_id = ?1 ORDER BY id DESC",
        RunRow::list()
    ))?;
    let rows = stmt.query_map(params![watch_id], RunRow::read)?;
    rows.collect::<rusqlite::Result<_>>().map_err(Error::from)
}

/// Up to `limit` of a watch's runs older than run `before` (all when `None`), newest first:
/// the keyset page behind the streamed runs list.
pub fn runs_page(
    conn: &Connection,
    watch_id: &str,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<WatchRun>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM watch_runs WHERE watch_id = ?1 AND (?2 IS NULL OR id < ?2) \
         ORDER BY id DESC LIMIT ?3",
        RunRow::list()
    ))?;
    let rows = stmt.query_map(params![watch_id, before, limit], RunRow::read)?;
    rows.collect::<rusqlite::Result<_>>().map_err(Error::from)
}

/// The event key of a watch's newest run (a schedule's last slot).
pub fn last_event_key(conn: &Connection, watch_id: &str) -> Result<Option<String>> {
    conn.query_row(
        "SELECT event_key FROM watch_runs WHERE watch_id = ?1 ORDER BY id DESC LIMIT 1",
        params![watch_id],
        |row| row.get("event_key"),
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
        "SELECT EXISTS (SELECT 1 FROM watch_runs WHERE watch_id = ?1 AND event_key = ?2) AS seen",
        params![run.watch_id, run.event_key],
        |row| row.get("seen"),
    )?;
    if exists {
        return Ok(Recorded::Duplicate);
    }
    let mut reason = run.skipped_reason.clone();
    if reason.is_none() {
        let hour_ago = time::ago(std::time::Duration::from_secs(3600));
        let recent: u32 = tx.query_row(
            "SELECT COUNT(*) AS recent FROM watch_runs WHERE watch_id = ?1 AND session_id != '' \
             AND created_at > ?2",
            params![run.watch_id, hour_ago],
            |row| row.get("recent"),
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
        let rows = stmt.query_map(params![session.id], |row| {
            Ok((row.get("id")?, row.get("trigger_summary")?))
        })?;
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
        Ok((
            row.get("delivery_id")?,
            row.get("event")?,
            row.get("payload")?,
        ))
    })?;
    rows.collect::<rusqlite::Result<_>>().map_err(Error::from)
}
