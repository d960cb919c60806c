//! SQL for approvals (policy `ask`, issue 15). Plain functions over a connection, run through
//! [`StoreClient::write`] / [`StoreClient::read`]. A pending approval changes once: the
//! conditional update below is the one arbiter between a person, the timeout and the end of
//! the session.

use super::columns::named_rows;
use super::queries::insert_event;
use super::StoreClient;
use crate::domain::approval::{Approval, ApprovalFilter, ApprovalOption, ApprovalStatus, Location};
use crate::domain::{time, Event, EventKind, FailureKind};
use crate::error::{Error, Result};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Row};

const COLUMNS: &str = "id, session_id, title, kind, locations, raw_input, options, status, \
    selected_option, decided_by, created_at, expires_at, decided_at";

fn approval_from_row(row: &Row<'_>) -> rusqlite::Result<Approval> {
    let status: String = row.get("status")?;
    let json_column = |name: &str| -> rusqlite::Result<String> { row.get(name) };
    Ok(Approval {
        id: row.get("id")?,
        session_id: row.get("session_id")?,
        status: status.parse().map_err(|err: crate::domain::UnknownName| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, err.into())
        })?,
        tool_call: crate::domain::approval::ToolCallView {
            title: row.get("title")?,
            kind: row.get("kind")?,
            locations: serde_json::from_str::<Vec<Location>>(&json_column("locations")?)
                .unwrap_or_default(),
            raw_input: row.get("raw_input")?,
        },
        options: serde_json::from_str::<Vec<ApprovalOption>>(&json_column("options")?)
            .unwrap_or_default(),
        created_at: row.get("created_at")?,
        decided_at: row.get("decided_at")?,
        decided_by: row.get("decided_by")?,
        expires_at: row.get("expires_at")?,
        selected_option: row.get("selected_option")?,
    })
}

/// A list column's text (these types always encode).
fn json_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".into())
}

/// The `approval` event's data: the record as JSON.
fn event_data(approval: &Approval) -> Result<String> {
    serde_json::to_string(approval)
        .map_err(|err| Error::Internal(format!("cannot encode approval: {err}")))
}

/// Stores a new pending approval with its `approval` event, atomically. The session must be
/// running: an approval for a session that already ended would never be answered.
pub fn insert(conn: &mut Connection, approval: &Approval, tool_call_id: &str) -> Result<Event> {
    let tx = conn.transaction()?;
    let running: Option<String> = tx
        .query_row(
            "SELECT status FROM sessions WHERE id = ?1 AND status = 'running'",
            params![approval.session_id],
            |row| row.get(0),
        )
        .optional()?;
    if running.is_none() {
        return Err(Error::Conflict(format!(
            "session {} is not running; nothing can wait for an approval",
            approval.session_id
        )));
    }
    tx.execute(
        &format!(
            "INSERT INTO approvals ({COLUMNS}, tool_call_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
        ),
        params![
            approval.id,
            approval.session_id,
            approval.tool_call.title,
            approval.tool_call.kind,
            json_text(&approval.tool_call.locations),
            approval.tool_call.raw_input,
            json_text(&approval.options),
            approval.status.as_str(),
            approval.selected_option,
            approval.decided_by,
            approval.created_at,
            approval.expires_at,
            approval.decided_at,
            tool_call_id,
        ],
    )?;
    let event = insert_event(
        &tx,
        &approval.session_id,
        EventKind::Approval,
        &event_data(approval)?,
    )?;
    tx.commit()?;
    Ok(event)
}

/// How an attempt to decide a pending approval came out.
#[derive(Clone, Debug)]
pub enum Resolved {
    /// This call decided it: the new record and its `approval` event.
    Decided(Approval, Event),
    /// It was decided before (by a person, the timeout, or the end of its session).
    Already(Approval),
}

/// What a decision writes.
#[derive(Clone, Debug)]
pub struct Decision {
    pub status: ApprovalStatus,
    pub decided_by: String,
    pub selected_option: String,
}

/// Decides `id` if it is still pending, with its `approval` event, atomically.
pub fn resolve(conn: &mut Connection, id: &str, decision: &Decision) -> Result<Resolved> {
    let tx = conn.transaction()?;
    let updated = tx.execute(
        "UPDATE approvals SET status = ?2, decided_by = ?3, selected_option = ?4, \
         decided_at = ?5 WHERE id = ?1 AND status = 'pending'",
        params![
            id,
            decision.status.as_str(),
            decision.decided_by,
            decision.selected_option,
            time::now()
        ],
    )?;
    let Some(approval) = get(&tx, id)? else {
        return Err(Error::NotFound(format!("approval {id} not found")));
    };
    if updated == 0 {
        return Ok(Resolved::Already(approval));
    }
    let event = insert_event(
        &tx,
        &approval.session_id,
        EventKind::Approval,
        &event_data(&approval)?,
    )?;
    tx.commit()?;
    Ok(Resolved::Decided(approval, event))
}

/// Expires what a session still waits for; part of the transaction that ends the session.
pub fn expire_for_session(tx: &Connection, session_id: &str, ended: FailureKind) -> Result<usize> {
    let why = match ended {
        FailureKind::None => "session ended".to_owned(),
        kind => format!("session ended ({})", kind.as_str()),
    };
    Ok(tx.execute(
        "UPDATE approvals SET status = 'expired', decided_by = ?2, decided_at = ?3 \
         WHERE session_id = ?1 AND status = 'pending'",
        params![session_id, why, time::now()],
    )?)
}

/// Expires the approvals a previous daemon instance left pending: nothing in this process waits
/// for them, so they can never be answered (and are never allowed).
pub fn expire_orphans(conn: &Connection, owner: &str) -> Result<usize> {
    Ok(conn.execute(
        "UPDATE approvals SET status = 'expired', decided_by = 'daemon restart', decided_at = ?2 \
         WHERE status = 'pending' AND session_id NOT IN \
         (SELECT id FROM sessions WHERE owner_id = ?1 AND status = 'running')",
        params![owner, time::now()],
    )?)
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Approval>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM approvals WHERE id = ?1"),
        params![id],
        approval_from_row,
    )
    .optional()
    .map_err(Error::from)
}

/// Approvals matching `filter`, newest first.
pub fn list(conn: &Connection, filter: &ApprovalFilter) -> Result<Vec<Approval>> {
    let mut clauses = Vec::new();
    let mut values: Vec<(&str, Value)> = Vec::new();
    if let Some(status) = filter.status {
        clauses.push("status = :status");
        values.push((":status", Value::Text(status.as_str().into())));
    }
    if let Some(session) = &filter.session_id {
        clauses.push("session_id = :session");
        values.push((":session", Value::Text(session.clone())));
    }
    values.push((":limit", Value::Integer(i64::from(filter.limit))));
    let where_clause = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM approvals {where_clause} \
         ORDER BY created_at DESC, rowid DESC LIMIT :limit"
    ))?;
    named_rows(&mut stmt, &values, approval_from_row)
}

impl StoreClient {
    /// Stores a pending approval and its event; answers after commit.
    pub async fn record_approval(&self, approval: Approval, tool_call_id: String) -> Result<Event> {
        self.write(move |w| {
            let event = insert(w.conn, &approval, &tool_call_id)?;
            w.published(std::slice::from_ref(&event));
            Ok(event)
        })
        .await
    }

    /// Decides a pending approval (see [`resolve`]); publishes its event.
    pub async fn resolve_approval(&self, id: &str, decision: Decision) -> Result<Resolved> {
        let id = id.to_owned();
        self.write(move |w| {
            let resolved = resolve(w.conn, &id, &decision)?;
            if let Resolved::Decided(_, event) = &resolved {
                w.published(std::slice::from_ref(event));
            }
            Ok(resolved)
        })
        .await
    }

    /// Expires approvals left pending by an earlier daemon instance (see [`expire_orphans`]).
    pub async fn expire_orphan_approvals(&self, owner: &str) -> Result<usize> {
        self.write_by(owner, |w, owner| expire_orphans(w.conn, owner))
            .await
    }

    pub async fn approval(&self, id: &str) -> Result<Option<Approval>> {
        self.read_by(id, get).await
    }

    pub async fn approvals(&self, filter: ApprovalFilter) -> Result<Vec<Approval>> {
        self.read(move |conn| list(conn, &filter)).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::schema::test_database as database;
    use super::*;
    use crate::domain::approval::ToolCallView;

    fn session(conn: &Connection, id: &str, status: &str, owner: &str) {
        conn.execute(
            "INSERT INTO sessions (id, repo, prompt, agent, policy_mode, permission_mode, \
             write_policy, max_runtime_seconds, runtime_command, status, owner_id, created_at, \
             updated_at) VALUES (?1, '/r', 'p', 'mock', 'ask', 'ask', 'contained', 300, 'mock', \
             ?2, ?3, '', '')",
            params![id, status, owner],
        )
        .expect("insert session");
    }

    fn pending(id: &str, session_id: &str) -> Approval {
        Approval {
            id: id.into(),
            session_id: session_id.into(),
            status: ApprovalStatus::Pending,
            tool_call: ToolCallView {
                title: "Write notes.txt".into(),
                kind: "edit".into(),
                locations: vec![Location {
                    path: "/w/notes.txt".into(),
                }],
                raw_input: "{\"content\":\"hi\"}".into(),
            },
            options: vec![ApprovalOption {
                option_id: "allow-once".into(),
                name: "Allow".into(),
                kind: "allow_once".into(),
            }],
            created_at: time::now(),
            decided_at: String::new(),
            decided_by: String::new(),
            expires_at: time::now(),
            selected_option: String::new(),
        }
    }

    fn decision(status: ApprovalStatus, by: &str) -> Decision {
        Decision {
            status,
            decided_by: by.into(),
            selected_option: String::new(),
        }
    }

    #[test]
    fn a_pending_approval_is_decided_exactly_once() {
        let mut conn = database();
        session(&conn, "aaaaaaaa", "running", "me");
        let event = insert(&mut conn, &pending("11111111", "aaaaaaaa"), "t1").expect("insert");
        assert_eq!(event.kind, EventKind::Approval);
        let stored: Approval = serde_json::from_str(&event.data).expect("event is the record");
        assert_eq!(stored.tool_call.locations[0].path, "/w/notes.txt");
        let allowed = resolve(
            &mut conn,
            "11111111",
            &decision(ApprovalStatus::Allowed, "cli"),
        );
        let Ok(Resolved::Decided(record, _)) = allowed else {
            panic!("first decision wins: {allowed:?}");
        };
        assert_eq!(
            (record.status, record.decided_by.as_str()),
            (ApprovalStatus::Allowed, "cli")
        );
        let late = resolve(
            &mut conn,
            "11111111",
            &decision(ApprovalStatus::Expired, "timeout"),
        );
        assert!(matches!(late, Ok(Resolved::Already(r)) if r.status == ApprovalStatus::Allowed));
        assert!(matches!(
            resolve(
                &mut conn,
                "99999999",
                &decision(ApprovalStatus::Denied, "cli")
            ),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn approvals_need_a_running_session_and_never_outlive_it() {
        let mut conn = database();
        session(&conn, "bbbbbbbb", "complete", "me");
        assert!(matches!(
            insert(&mut conn, &pending("22222222", "bbbbbbbb"), "t"),
            Err(Error::Conflict(_))
        ));
        session(&conn, "cccccccc", "running", "old-daemon");
        session(&conn, "dddddddd", "running", "me");
        insert(&mut conn, &pending("33333333", "cccccccc"), "t").expect("insert");
        insert(&mut conn, &pending("44444444", "dddddddd"), "t").expect("insert");
        assert_eq!(expire_orphans(&conn, "me").expect("expire"), 1);
        let orphan = get(&conn, "33333333").expect("get").expect("exists");
        assert_eq!(
            (orphan.status, orphan.decided_by.as_str()),
            (ApprovalStatus::Expired, "daemon restart")
        );
        assert_eq!(
            expire_for_session(&conn, "dddddddd", FailureKind::Cancelled).expect("expire"),
            1
        );
        let ended = get(&conn, "44444444").expect("get").expect("exists");
        assert_eq!(ended.decided_by, "session ended (cancelled)");
        let filter = ApprovalFilter {
            status: Some(ApprovalStatus::Expired),
            session_id: None,
            limit: 10,
        };
        assert_eq!(list(&conn, &filter).expect("list").len(), 2);
    }
}
