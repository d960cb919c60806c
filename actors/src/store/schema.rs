//! Schema migrations, tracked in `PRAGMA user_version`. Append new steps; never edit old ones.

use crate::error::Result;
use rusqlite::Connection;
use rusqlite_migration::{Migrations, M};
use std::time::Duration;

const V1_SESSIONS_AND_EVENTS: &str = "
CREATE TABLE sessions (
    id                  TEXT PRIMARY KEY NOT NULL,
    repo                TEXT NOT NULL,
    prompt              TEXT NOT NULL,
    agent               TEXT NOT NULL,
    parent_session_id   TEXT NOT NULL DEFAULT '',
    attempt             INTEGER NOT NULL DEFAULT 1,
    policy_mode         TEXT NOT NULL,
    permission_mode     TEXT NOT NULL,
    write_policy        TEXT NOT NULL,
    max_runtime_seconds INTEGER NOT NULL,
    runtime_command     TEXT NOT NULL,
    status              TEXT NOT NULL,
    owner_id            TEXT NOT NULL DEFAULT '',
    branch              TEXT NOT NULL DEFAULT '',
    work_dir            TEXT NOT NULL DEFAULT '',
    result_text         TEXT NOT NULL DEFAULT '',
    outcome_headline    TEXT NOT NULL DEFAULT '',
    outcome_changed     TEXT NOT NULL DEFAULT '',
    outcome_verified    TEXT NOT NULL DEFAULT '',
    outcome_uncertain   TEXT NOT NULL DEFAULT '',
    outcome_next        TEXT NOT NULL DEFAULT '',
    error               TEXT NOT NULL DEFAULT '',
    failure_kind        TEXT NOT NULL DEFAULT '',
    agent_pid           INTEGER,
    claimed_at          TEXT NOT NULL DEFAULT '',
    heartbeat_at        TEXT NOT NULL DEFAULT '',
    started_at          TEXT NOT NULL DEFAULT '',
    finished_at         TEXT NOT NULL DEFAULT '',
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);
CREATE INDEX sessions_by_status ON sessions(status);
CREATE INDEX sessions_by_agent ON sessions(agent);
CREATE INDEX sessions_by_parent ON sessions(parent_session_id);
CREATE INDEX sessions_inbox ON sessions(updated_at DESC) WHERE status IN ('complete', 'error');
CREATE INDEX sessions_running_heartbeat ON sessions(heartbeat_at) WHERE status = 'running';

CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    type        TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX events_by_session ON events(session_id, id);
";

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![M::up(V1_SESSIONS_AND_EVENTS)])
}

/// The schema version this build writes.
pub fn current_version() -> usize {
    1
}

/// Connection settings every connection gets: WAL so readers never wait behind the writer,
/// a busy timeout instead of instant `SQLITE_BUSY`, and enforced foreign keys.
pub fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // NORMAL is crash-safe for the process under WAL: a kill -9 never loses a commit.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

/// Opens the write connection, switching the database to WAL and migrating it to this build.
pub fn open_writer(path: &std::path::Path) -> Result<Connection> {
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    configure(&conn)?;
    migrations().to_latest(&mut conn)?;
    Ok(conn)
}

/// Opens a connection that can only read.
pub fn open_reader(path: &std::path::Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    configure(&conn)?;
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_validate() {
        assert!(migrations().validate().is_ok());
        assert_eq!(migrations_len(), current_version() as i64);
    }

    fn migrations_len() -> i64 {
        let mut conn = Connection::open_in_memory().expect("in-memory db");
        migrations().to_latest(&mut conn).expect("migrate");
        conn.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))
            .expect("user_version")
    }
}
