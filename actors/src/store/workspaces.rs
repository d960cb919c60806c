//! SQL for workspaces (task "workspaces", issue 16): the commit a workspace started from, what
//! was fetched out of it, and what the collector did with its directory. Plain functions over a
//! connection, like `queries.rs`.

use super::queries::{insert_event, session_from_row, session_select};
use crate::domain::{time, Event, EventKind, Session};
use crate::error::Result;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection};

named_enum! {
    /// What a session's workspace is on disk: `None` before it exists (pending, or the clone
    /// failed), `Present` under `workspaces/`, and once collected `Archived` (the work that was
    /// neither fetched nor published is kept as a git bundle) or `Collected` (nothing was left
    /// that had not been fetched or published).
    pub enum WorkspaceState ("workspace state") {
        None = "", Present = "present", Archived = "archived", Collected = "collected",
    }
}

impl WorkspaceState {
    /// Unknown text reads as no workspace.
    pub fn parse(text: &str) -> Self {
        text.parse().unwrap_or(Self::None)
    }
}

/// A session with the workspace facts the API does not show.
#[derive(Clone, Debug)]
pub struct WorkspaceRecord {
    pub session: Session,
    /// The commit the last fetch delivered: a workspace still at it holds nothing unsaved.
    pub fetched_commit: String,
}

impl WorkspaceRecord {
    pub fn state(&self) -> WorkspaceState {
        WorkspaceState::parse(&self.session.workspace_state)
    }
}

/// Records the workspace once it exists, with the commit it started from.
pub fn set_workspace(
    conn: &mut Connection,
    id: &str,
    branch: &str,
    work_dir: &str,
    base_commit: &str,
) -> Result<()> {
    conn.execute(
        "UPDATE sessions SET branch = ?2, work_dir = ?3, base_commit = ?4, \
         workspace_state = 'present', updated_at = ?5 WHERE id = ?1",
        params![id, branch, work_dir, base_commit, time::now()],
    )?;
    Ok(())
}

/// Records a fetch into the user's repository (`fetchedAt`) with its `fetch` event.
pub fn record_fetch(conn: &mut Connection, id: &str, commit: &str, message: &str) -> Result<Event> {
    let tx = conn.transaction()?;
    let now = time::now();
    tx.execute(
        "UPDATE sessions SET fetched_at = ?2, fetched_commit = ?3, updated_at = ?2 WHERE id = ?1",
        params![id, now, commit],
    )?;
    let event = insert_event(&tx, id, EventKind::Fetch, message)?;
    tx.commit()?;
    Ok(event)
}

/// Records what the collector did with a workspace directory: on its session and on the later
/// turns of its conversation that worked in it (issue 15).
pub fn set_workspace_state(conn: &mut Connection, id: &str, state: WorkspaceState) -> Result<()> {
    conn.execute(
        "UPDATE sessions SET workspace_state = ?2, workspace_collected_at = ?3 WHERE id = ?1 \
         OR (workspace_state = 'present' AND work_dir != '' \
             AND work_dir = (SELECT work_dir FROM sessions WHERE id = ?1))",
        params![id, state.as_str(), time::now()],
    )?;
    Ok(())
}

/// Whether `session`'s workspace is gone for good: the collector recorded it (archived or
/// collected), or its directory is missing. A conversation cannot continue then (410).
pub fn workspace_gone(session: &Session) -> bool {
    matches!(
        WorkspaceState::parse(&session.workspace_state),
        WorkspaceState::Archived | WorkspaceState::Collected
    ) || (!session.work_dir.is_empty() && !std::path::Path::new(&session.work_dir).is_dir())
}

/// A row of `SELECT {session_select()}, fetched_commit`.
pub(crate) fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<WorkspaceRecord> {
    Ok(WorkspaceRecord {
        session: session_from_row(row)?,
        fetched_commit: row.get("fetched_commit")?,
    })
}

/// The records of `ids`, plus every session whose workspace is recorded as present when
/// `with_present` is set (the collector compares them with what is on disk).
pub fn workspace_records(
    conn: &Connection,
    ids: &[String],
    with_present: bool,
) -> Result<Vec<WorkspaceRecord>> {
    let mut records = Vec::new();
    let read = |sql: &str, values: Vec<Value>, records: &mut Vec<WorkspaceRecord>| -> Result<()> {
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map(params_from_iter(values), record_from_row)?;
        for row in rows {
            records.push(row?);
        }
        Ok(())
    };
    let select = format!("SELECT {}, fetched_commit FROM sessions", session_select());
    // SQLite allows 32766 parameters; stay far below.
    for chunk in ids.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let values = chunk.iter().cloned().map(Value::Text).collect();
        read(
            &format!("{select} WHERE id IN ({marks})"),
            values,
            &mut records,
        )?;
    }
    if with_present {
        read(
            &format!("{select} WHERE workspace_state = 'present' ORDER BY rowid"),
            Vec::new(),
            &mut records,
        )?;
        let mut seen = std::collections::HashSet::new();
        records.retain(|r| seen.insert(r.session.id.clone()));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema;

    #[test]
    fn states_round_trip() {
        for state in [
            WorkspaceState::None,
            WorkspaceState::Present,
            WorkspaceState::Archived,
            WorkspaceState::Collected,
        ] {
            assert_eq!(WorkspaceState::parse(state.as_str()), state);
        }
    }

    #[test]
    fn records_follow_the_workspace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = schema::open_writer(&dir.path().join("t.sqlite")).expect("open");
        let settings = crate::Settings::new(dir.path());
        let request = crate::domain::NewSession {
            repo: dir.path().display().to_string(),
            prompt: "p".into(),
            ..Default::default()
        };
        let _ = std::fs::create_dir(dir.path().join(".git"));
        let session =
            crate::requests::new_session_record(&settings, &request, None).expect("record");
        super::super::queries::insert_session(&mut conn, &session, &[]).expect("insert");
        let id = session.id.clone();
        assert!(workspace_records(&conn, &[], true)
            .expect("read")
            .is_empty());
        set_workspace(&mut conn, &id, "telecoder/x", "/w", "abc").expect("set");
        let present = workspace_records(&conn, &[], true).expect("read");
        assert_eq!(present.len(), 1);
        assert_eq!(present[0].state(), WorkspaceState::Present);
        assert_eq!(present[0].session.base_commit, "abc");
        let event = record_fetch(&mut conn, &id, "def", "fetched").expect("fetch");
        assert_eq!(event.kind, EventKind::Fetch);
        set_workspace_state(&mut conn, &id, WorkspaceState::Archived).expect("state");
        let records = workspace_records(&conn, std::slice::from_ref(&id), true).expect("read");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].fetched_commit, "def");
        assert!(!records[0].session.fetched_at.is_empty());
        assert_eq!(records[0].state(), WorkspaceState::Archived);
    }
}
