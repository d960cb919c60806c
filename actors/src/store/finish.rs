//! Finishing sessions: how a run ended ([`Finish`]), and the writes that end a session with
//! its terminal event in one transaction (a normal finish, a failure or cancel whoever owns
//! it, the stale sweep).

use super::queries::{get_session, insert_event};
use crate::domain::{time, Event, EventKind, FailureKind, Outcome, Session, SessionStatus};
use crate::error::Result;
use rusqlite::{params, Connection};

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
#[derive(Clone, Debug)]
pub enum Guard {
    /// Only a running session of this owner (the normal end of a run).
    RunningFor(String),
    /// Any running session (the stale sweep).
    Running,
    /// Any pending or running session (supervisor clean-up, shutdown, cancel).
    Active,
}

impl Guard {
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
    guard: &Guard,
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
    // Issue 15: an approval never outlives its session's run (cancel, timeout, crash sweep):
    // it ends expired in the same transaction, before the terminal event.
    super::approvals::expire_for_session(tx, id, finish.failure_kind)?;
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

/// Ends a session the guard allows (a normal finish; a failure, shutdown or cancel whoever
/// owns it) with its terminal event in the same transaction. `None` when the guard did not
/// hold (the session had already finished: swept as abandoned, say).
pub fn end(
    conn: &mut Connection,
    id: &str,
    finish: &Finish,
    guard: &Guard,
) -> Result<Option<Finished>> {
    let tx = conn.transaction()?;
    let event = write_finish(&tx, id, finish, guard)?;
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
        let rows = stmt.query_map(params![cutoff], |row| {
            Ok((row.get("id")?, row.get("agent_pid")?))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let finish = Finish::failed(
        FailureKind::Abandoned,
        ABANDONED_MESSAGE.to_owned(),
        String::new(),
    );
    let mut abandoned = Vec::new();
    for (id, agent_pid) in stale {
        if let Some(finished) = write_finish(&tx, &id, &finish, &Guard::Running)? {
            abandoned.push(Abandoned {
                finished,
                agent_pid,
            });
        }
    }
    tx.commit()?;
    Ok(abandoned)
}
