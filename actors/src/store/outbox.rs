//! SQL of the notification outbox (issue 15). Plain functions over a connection or a
//! transaction: the write paths that commit an event worth telling call the `enqueue` hooks
//! inside their own transaction, so a notification exists exactly when its event does — a
//! crash can neither lose one nor invent one. The sender (`notify::sender`) fans each stored
//! notification out to the configured targets, leases due deliveries, and records outcomes.

use crate::domain::{time, Session, Watch, WatchStatus};
use crate::error::{Error, Result};
use crate::notify::event::{ApprovalFacts, CrashFacts, Facts, SessionFacts, WatchFacts};
use crate::notify::target::Target;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

/// Stores one notification. Call it inside the transaction that commits its cause.
pub fn enqueue(tx: &Connection, facts: &Facts) -> Result<()> {
    let payload = serde_json::to_string(facts)
        .map_err(|err| Error::Internal(format!("cannot encode a notification: {err}")))?;
    tx.execute(
        "INSERT INTO outbox (event, subject, payload, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![facts.name().as_str(), facts.subject(), payload, time::now()],
    )?;
    Ok(())
}

/// Hook of the writes that end a session (finish, failure, cancel, the stale sweep).
pub fn session_finished(tx: &Connection, session: &Session) -> Result<()> {
    enqueue(
        tx,
        &Facts::Finished {
            session: SessionFacts::of(session),
        },
    )
}

/// Hook of every event insert: an `approval` event (matched by name; the approval record is
/// its data) means a person is needed.
pub fn event_inserted(tx: &Connection, session_id: &str, kind: &str, data: &str) -> Result<()> {
    // The same event type records the decision and the expiry: only a question asks a person.
    if kind != "approval" || !ApprovalFacts::is_pending(data) {
        return Ok(());
    }
    let session = super::queries::get_session(tx, session_id)?
        .map(|s| SessionFacts::of(&s))
        .unwrap_or_else(|| SessionFacts {
            id: session_id.to_owned(),
            ..Default::default()
        });
    let approval = ApprovalFacts::from_record(data);
    enqueue(tx, &Facts::Approval { session, approval })
}

/// Hook of watch updates, before the update: an active watch becoming paused (by a person or
/// by the supervisor) is told.
pub fn watch_updating(tx: &Connection, watch: &Watch) -> Result<()> {
    if watch.status != WatchStatus::Paused {
        return Ok(());
    }
    let current: Option<String> = tx
        .query_row(
            "SELECT status FROM watches WHERE id = ?1",
            params![watch.id],
            |row| row.get("status"),
        )
        .optional()?;
    if current.as_deref() != Some(WatchStatus::Active.as_str()) {
        return Ok(());
    }
    enqueue(
        tx,
        &Facts::Paused {
            watch: WatchFacts::of(watch),
        },
    )
}

/// Records the start of this instance (`owner`, started at `since`). When the previous
/// instance never recorded a clean stop, it crashed (or was killed): a `crash` notification is
/// stored in the same transaction, counting the sessions it left running (or that this
/// instance's sweep has already marked abandoned). Leases of deliveries a dead instance had in
/// flight are released, so they are sent again at once. True when a crash was detected.
pub fn daemon_started(conn: &mut Connection, owner: &str, since: &str) -> Result<bool> {
    let tx = conn.transaction()?;
    let previous: Option<(String, String, String)> = tx
        .query_row(
            "SELECT owner_id, started_at, stopped_at FROM daemon_marker WHERE id = 1",
            [],
            |row| {
                Ok((
                    row.get("owner_id")?,
                    row.get("started_at")?,
                    row.get("stopped_at")?,
                ))
            },
        )
        .optional()?;
    let crashed = match previous {
        Some((previous_owner, started_at, stopped_at)) if stopped_at.is_empty() => {
            let (interrupted, last_heartbeat): (i64, Option<String>) = tx.query_row(
                "SELECT COUNT(*) AS n, MAX(heartbeat_at) AS last FROM sessions \
                 WHERE owner_id = ?1 AND (status = 'running' \
                 OR (failure_kind = 'abandoned' AND finished_at >= ?2))",
                params![previous_owner, since],
                |row| Ok((row.get("n")?, row.get("last")?)),
            )?;
            let daemon = CrashFacts {
                previous_started_at: started_at,
                interrupted_sessions: u64::try_from(interrupted).unwrap_or(0),
                last_heartbeat_at: last_heartbeat.unwrap_or_default(),
            };
            enqueue(&tx, &Facts::Crash { daemon })?;
            true
        }
        _ => false,
    };
    tx.execute(
        "INSERT INTO daemon_marker (id, owner_id, started_at, stopped_at) VALUES (1, ?1, ?2, '') \
         ON CONFLICT (id) DO UPDATE SET owner_id = ?1, started_at = ?2, stopped_at = ''",
        params![owner, time::now()],
    )?;
    tx.execute(
        "UPDATE outbox_deliveries SET leased_until = '' WHERE leased_until != ''",
        [],
    )?;
    tx.commit()?;
    Ok(crashed)
}

/// Records a clean stop of this instance (the next start is then no crash).
pub fn daemon_stopped(conn: &Connection, owner: &str) -> Result<()> {
    conn.execute(
        "UPDATE daemon_marker SET stopped_at = ?2 WHERE id = 1 AND owner_id = ?1",
        params![owner, time::now()],
    )?;
    Ok(())
}

/// A delivery the sender may attempt now (leased to it).
#[derive(Clone, Debug)]
pub struct Claimed {
    pub delivery_id: String,
    pub target: String,
    /// Attempts including this one.
    pub attempts: u32,
    /// When the notification's cause was committed.
    pub created_at: String,
    pub facts: Facts,
}

/// Fans new notifications out to the targets whose filter wants them, fails deliveries whose
/// target is no longer configured, and leases up to `limit` due deliveries until
/// `lease_until` (counting the attempt now, so a crash loop cannot retry forever). One
/// transaction.
pub fn take_due(
    conn: &mut Connection,
    targets: &[Target],
    now: &str,
    lease_until: &str,
    limit: usize,
) -> Result<Vec<Claimed>> {
    let tx = conn.transaction()?;
    fan_out(&tx, targets, now)?;
    drop_unconfigured(&tx, targets, now)?;
    let due: Vec<(String, String, u32, String, String)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT d.delivery_id, d.target, d.attempts, o.created_at, o.payload \
             FROM outbox_deliveries d JOIN outbox o ON o.id = d.outbox_id \
             WHERE d.status = 'pending' AND d.next_attempt_at <= ?1 AND d.leased_until <= ?1 \
             ORDER BY d.next_attempt_at, d.outbox_id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now, limit as i64], |row| {
            Ok((
                row.get("delivery_id")?,
                row.get("target")?,
                row.get("attempts")?,
                row.get("created_at")?,
                row.get("payload")?,
            ))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut claimed = Vec::with_capacity(due.len());
    for (delivery_id, target, attempts, created_at, payload) in due {
        let Ok(facts) = serde_json::from_str::<Facts>(&payload) else {
            record(
                &tx,
                &delivery_id,
                &Outcome::Failed {
                    status: 0,
                    error: "unreadable notification (written by a newer build?)".into(),
                },
                now,
            )?;
            continue;
        };
        tx.execute(
            "UPDATE outbox_deliveries SET attempts = attempts + 1, leased_until = ?2 \
             WHERE delivery_id = ?1",
            params![delivery_id, lease_until],
        )?;
        claimed.push(Claimed {
            delivery_id,
            target,
            attempts: attempts + 1,
            created_at,
            facts,
        });
    }
    tx.commit()?;
    Ok(claimed)
}

/// One delivery row per target that wants each new notification.
fn fan_out(tx: &Connection, targets: &[Target], now: &str) -> Result<()> {
    let fresh: Vec<(i64, String)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT id, payload FROM outbox WHERE fanned_out = 0 ORDER BY id LIMIT 500",
        )?;
        let rows = stmt.query_map([], |row| Ok((row.get("id")?, row.get("payload")?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (id, payload) in fresh {
        let facts = serde_json::from_str::<Facts>(&payload).ok();
        for target in targets {
            if facts
                .as_ref()
                .is_none_or(|facts| target.events.matches(facts))
            {
                tx.execute(
                    "INSERT OR IGNORE INTO outbox_deliveries (delivery_id, outbox_id, target, \
                     target_label, next_attempt_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    params![delivery_id(), id, target.key(), target.label(), now],
                )?;
            }
        }
        tx.execute(
            "UPDATE outbox SET fanned_out = 1 WHERE id = ?1",
            params![id],
        )?;
    }
    Ok(())
}

/// Pending deliveries to targets that were removed from `TELECODER_NOTIFY` cannot be sent.
fn drop_unconfigured(tx: &Connection, targets: &[Target], now: &str) -> Result<()> {
    let keys: Vec<Value> = targets
        .iter()
        .map(|t| Value::Text(t.key().to_owned()))
        .collect();
    let places = (3..keys.len() + 3)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut values = vec![
        Value::Text(now.to_owned()),
        Value::Text("its target is no longer configured (TELECODER_NOTIFY)".into()),
    ];
    values.extend(keys);
    tx.execute(
        &format!(
            "UPDATE outbox_deliveries SET status = 'failed', last_error = ?2, finished_at = ?1, \
             leased_until = '' WHERE status = 'pending' AND target NOT IN ({places})"
        ),
        params_from_iter(values),
    )?;
    Ok(())
}

/// A fresh delivery id: random, stored once, the same on every retry.
fn delivery_id() -> String {
    let mut bytes = [0u8; 12];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes.copy_from_slice(&nanos.to_le_bytes()[..12]);
    }
    hex::encode(bytes)
}

/// When there is work: `""` (now) while a notification waits to be fanned out, else the
/// earliest pending delivery's next attempt or lease end; `None` when nothing is pending.
pub fn next_due(conn: &Connection) -> Result<Option<String>> {
    let fresh: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM outbox WHERE fanned_out = 0)")?
        .query_row([], |row| row.get(0))?;
    if fresh {
        return Ok(Some(String::new()));
    }
    conn.prepare_cached(
        "SELECT MIN(MAX(next_attempt_at, leased_until)) FROM outbox_deliveries \
         WHERE status = 'pending'",
    )?
    .query_row([], |row| row.get(0))
    .map_err(Error::from)
}

/// How an attempt ended, as the sender decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent {
        status: u16,
    },
    Retry {
        status: u16,
        error: String,
        next_attempt_at: String,
    },
    Failed {
        status: u16,
        error: String,
    },
}

/// Stores an attempt's outcome and ends the lease.
pub fn record(conn: &Connection, delivery_id: &str, outcome: &Outcome, now: &str) -> Result<()> {
    let (state, status, error, next) = match outcome {
        Outcome::Sent { status } => ("sent", status, "", ""),
        Outcome::Retry {
            status,
            error,
            next_attempt_at,
        } => ("pending", status, error.as_str(), next_attempt_at.as_str()),
        Outcome::Failed { status, error } => ("failed", status, error.as_str(), ""),
    };
    conn.execute(
        "UPDATE outbox_deliveries SET status = ?2, last_status = ?3, last_error = ?4, \
         next_attempt_at = CASE WHEN ?5 = '' THEN next_attempt_at ELSE ?5 END, \
         finished_at = CASE WHEN ?2 = 'pending' THEN '' ELSE ?6 END, leased_until = '' \
         WHERE delivery_id = ?1",
        params![delivery_id, state, status, error, next, now],
    )?;
    Ok(())
}

/// What `/admin/status` and `/metrics` report about the outbox.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxCounts {
    /// Deliveries not yet accepted and not given up (plus notifications not yet fanned out).
    pub pending: u64,
    /// Deliveries given up on (kept for a while so an operator can see why).
    pub failed: u64,
    /// Deliveries accepted and not yet pruned.
    pub sent: u64,
}

pub fn counts(conn: &Connection) -> Result<OutboxCounts> {
    let mut counts = OutboxCounts::default();
    let mut stmt =
        conn.prepare_cached("SELECT status, COUNT(*) AS n FROM outbox_deliveries GROUP BY status")?;
    let rows = stmt.query_map([], |row| {
        Ok((row.get::<_, String>("status")?, row.get::<_, i64>("n")?))
    })?;
    for row in rows {
        let (status, n) = row?;
        let n = u64::try_from(n).unwrap_or(0);
        match status.as_str() {
            "pending" => counts.pending += n,
            "failed" => counts.failed += n,
            "sent" => counts.sent += n,
            _ => {}
        }
    }
    let fresh: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM outbox WHERE fanned_out = 0")?
        .query_row([], |row| row.get(0))?;
    counts.pending += u64::try_from(fresh).unwrap_or(0);
    Ok(counts)
}

/// Deletes sent deliveries finished before `sent_before`, failed ones finished before
/// `failed_before`, and notifications left with no delivery. Returns the rows deleted.
pub fn prune(conn: &mut Connection, sent_before: &str, failed_before: &str) -> Result<usize> {
    let tx = conn.transaction()?;
    let mut deleted = tx.execute(
        "DELETE FROM outbox_deliveries WHERE (status = 'sent' AND finished_at < ?1) \
         OR (status = 'failed' AND finished_at < ?2)",
        params![sent_before, failed_before],
    )?;
    deleted += tx.execute(
        "DELETE FROM outbox WHERE fanned_out = 1 AND created_at < ?1 AND NOT EXISTS \
         (SELECT 1 FROM outbox_deliveries d WHERE d.outbox_id = outbox.id)",
        params![sent_before],
    )?;
    tx.commit()?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::super::schema::test_database as db;
    use super::*;
    use crate::notify::target::parse_target;

    fn finished(conn: &Connection, id: &str, status: &str) {
        let facts = Facts::Finished {
            session: SessionFacts {
                id: id.into(),
                status: status.into(),
                ..Default::default()
            },
        };
        enqueue(conn, &facts).expect("enqueue");
    }

    fn row(conn: &Connection, id: &str) -> (String, u32, String) {
        conn.query_row(
            "SELECT status, attempts, last_error FROM outbox_deliveries WHERE delivery_id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("row")
    }

    #[test]
    fn notifications_fan_out_by_filter_and_lease_once() {
        let mut conn = db();
        let all = parse_target("https://a.example/h").expect("target");
        let errors = parse_target("https://b.example/h?events=error").expect("target");
        finished(&conn, "s1", "complete");
        finished(&conn, "s2", "error");
        let now = time::now();
        let claimed =
            take_due(&mut conn, &[all.clone(), errors.clone()], &now, "9999", 10).expect("take");
        let to_errors: Vec<&Claimed> = claimed
            .iter()
            .filter(|c| c.target == errors.key())
            .collect();
        assert_eq!(claimed.len(), 3, "s1 → a; s2 → a and b");
        assert_eq!(to_errors.len(), 1);
        assert_eq!(to_errors[0].facts.subject(), "s2");
        assert!(claimed.iter().all(|c| c.attempts == 1));
        let again = take_due(&mut conn, &[all, errors], &now, "9999", 10).expect("take");
        assert!(
            again.is_empty(),
            "leased deliveries are not handed out twice"
        );
    }

    #[test]
    fn outcomes_are_recorded_and_retries_wait() {
        let mut conn = db();
        let target = parse_target("https://a.example/h").expect("target");
        assert_eq!(next_due(&conn).expect("next"), None, "nothing pending");
        finished(&conn, "s1", "complete");
        assert_eq!(
            next_due(&conn).expect("next"),
            Some(String::new()),
            "fresh: now"
        );
        let now = time::now();
        let lease = time::ago(std::time::Duration::ZERO);
        let first =
            take_due(&mut conn, std::slice::from_ref(&target), &now, &lease, 10).expect("take");
        let id = first[0].delivery_id.clone();
        let later = "9999-01-01T00:00:00.000Z".to_owned();
        record(
            &conn,
            &id,
            &Outcome::Retry {
                status: 500,
                error: "HTTP 500".into(),
                next_attempt_at: later.clone(),
            },
            &now,
        )
        .expect("record");
        assert_eq!(next_due(&conn).expect("next"), Some(later.clone()));
        let none = take_due(
            &mut conn,
            std::slice::from_ref(&target),
            &time::now(),
            &lease,
            10,
        )
        .expect("take");
        assert!(none.is_empty(), "not due before its next attempt");
        let due =
            take_due(&mut conn, std::slice::from_ref(&target), &later, &later, 10).expect("take");
        assert_eq!(due[0].delivery_id, id, "the same delivery id on retry");
        assert_eq!(due[0].attempts, 2);
        record(&conn, &id, &Outcome::Sent { status: 200 }, &later).expect("record");
        assert_eq!(row(&conn, &id), ("sent".into(), 2, String::new()));
        assert_eq!(counts(&conn).expect("counts").sent, 1);
        assert_eq!(prune(&mut conn, "9999-12-31", "0000").expect("prune"), 2);
        assert_eq!(counts(&conn).expect("counts"), OutboxCounts::default());
    }

    #[test]
    fn removed_targets_fail_their_pending_deliveries() {
        let mut conn = db();
        let target = parse_target("https://a.example/h").expect("target");
        finished(&conn, "s1", "complete");
        let now = time::now();
        let claimed = take_due(&mut conn, &[target], &now, "", 10).expect("take");
        take_due(&mut conn, &[], &now, "", 10).expect("take");
        let (status, _, error) = row(&conn, &claimed[0].delivery_id);
        assert_eq!(status, "failed");
        assert!(error.contains("no longer configured"), "{error}");
    }

    #[test]
    fn an_unclean_stop_is_a_crash_and_a_clean_one_is_not() {
        let mut conn = db();
        let since = time::now();
        assert!(
            !daemon_started(&mut conn, "one", &since).expect("start"),
            "first start"
        );
        assert!(
            daemon_started(&mut conn, "two", &since).expect("start"),
            "one never stopped"
        );
        daemon_stopped(&conn, "two").expect("stop");
        assert!(!daemon_started(&mut conn, "three", &since).expect("start"));
        let crashes: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM outbox WHERE event = 'crash'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(crashes, 1);
    }

    #[test]
    fn approval_events_are_told_by_name() {
        let conn = db();
        event_inserted(&conn, "s1", "output", "hello").expect("hook");
        let asked =
            r#"{"id":"ap1","status":"pending","toolCall":{"title":"Run make","kind":"execute"}}"#;
        event_inserted(&conn, "s1", "approval", asked).expect("hook");
        // Its decision is an `approval` event too, and asks nobody.
        let decided = asked.replace("pending", "approved");
        event_inserted(&conn, "s1", "approval", &decided).expect("hook");
        let told: i64 = conn
            .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
            .expect("count");
        assert_eq!(told, 1);
        let payload: String = conn
            .query_row("SELECT payload FROM outbox", [], |r| r.get(0))
            .expect("one notification");
        let facts: Facts = serde_json::from_str(&payload).expect("facts");
        let Facts::Approval { session, approval } = facts else {
            panic!("approval facts: {payload}")
        };
        assert_eq!(session.id, "s1");
        assert_eq!(approval.title, "Run make");
    }
}
