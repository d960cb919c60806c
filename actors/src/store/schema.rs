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

const V2_WATCHES: &str = "
CREATE TABLE watches (
    id                 TEXT PRIMARY KEY NOT NULL,
    kind               TEXT NOT NULL,
    repo               TEXT NOT NULL,
    repo_key           TEXT NOT NULL,
    instructions       TEXT NOT NULL,
    agent              TEXT NOT NULL,
    policy_mode        TEXT NOT NULL,
    workflow_name      TEXT NOT NULL DEFAULT '',
    branch_name        TEXT NOT NULL DEFAULT '',
    base_branch        TEXT NOT NULL DEFAULT '',
    head_branch        TEXT NOT NULL DEFAULT '',
    status             TEXT NOT NULL,
    schedule           TEXT NOT NULL DEFAULT '',
    timezone           TEXT NOT NULL DEFAULT '',
    max_runs_per_hour  INTEGER NOT NULL,
    paused_reason      TEXT NOT NULL DEFAULT '',
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
);
CREATE INDEX watches_by_repo ON watches(repo_key, kind, status);

CREATE TABLE watch_runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    watch_id         TEXT NOT NULL REFERENCES watches(id) ON DELETE CASCADE,
    session_id       TEXT NOT NULL DEFAULT '',
    event_key        TEXT NOT NULL,
    source_ref       TEXT NOT NULL DEFAULT '',
    trigger_summary  TEXT NOT NULL DEFAULT '',
    result_summary   TEXT NOT NULL DEFAULT '',
    return_summary   TEXT NOT NULL DEFAULT '',
    skipped_reason   TEXT NOT NULL DEFAULT '',
    created_at       TEXT NOT NULL,
    UNIQUE (watch_id, event_key)
);
CREATE INDEX watch_runs_by_session ON watch_runs(session_id) WHERE session_id != '';
CREATE INDEX watch_runs_by_watch ON watch_runs(watch_id, created_at);

CREATE TABLE webhook_deliveries (
    delivery_id  TEXT PRIMARY KEY NOT NULL,
    event        TEXT NOT NULL,
    payload      TEXT NOT NULL,
    state        TEXT NOT NULL,
    received_at  TEXT NOT NULL
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries(received_at) WHERE state = 'pending';
";

const V3_PUBLISHED: &str = "
ALTER TABLE sessions ADD COLUMN pr_number INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN pr_url TEXT NOT NULL DEFAULT '';
";

/// Task "hooks" (issue 18): PR watches that skip draft pull requests.
const V4_WATCH_SKIP_DRAFTS: &str = "
ALTER TABLE watches ADD COLUMN skip_drafts INTEGER NOT NULL DEFAULT 0;
";

/// Issue 14 (native ACP runtime): the agent's own session id and whether it can load it again
/// (to continue the conversation later), why its turn ended, and the token usage it reported.
const V5_AGENT_FACTS: &str = "
ALTER TABLE sessions ADD COLUMN agent_session_id TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN agent_load_session INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN stop_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN token_usage TEXT NOT NULL DEFAULT '';
";

/// Task "workspaces" (issue 16): the commit a workspace started from, fetches into the user's
/// repository, and what the workspace collector did with the directory (`present`, `archived`
/// as a bundle, or `collected`). Workspaces that exist already are `present`.
const V6_WORKSPACES: &str = "
ALTER TABLE sessions ADD COLUMN base_commit TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN fetched_at TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN fetched_commit TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN workspace_state TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN workspace_collected_at TEXT NOT NULL DEFAULT '';
UPDATE sessions SET workspace_state = 'present' WHERE work_dir != '';
CREATE INDEX sessions_workspaces ON sessions(workspace_state) WHERE workspace_state != '';
";

/// Issue 15, task "converse": conversations (a session continued by the next turn in its
/// workspace; at most one continuation per session, so two racing continues cannot both win)
/// and approvals (policy `ask`: what the agent asked to do, waiting for a person). The turns
/// of a conversation share one workspace directory, found by `work_dir`.
const V7_CONVERSATIONS_AND_APPROVALS: &str = "
ALTER TABLE sessions ADD COLUMN continued_from TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX sessions_one_continuation ON sessions(continued_from)
    WHERE continued_from != '';
CREATE INDEX sessions_by_work_dir ON sessions(work_dir) WHERE work_dir != '';

CREATE TABLE approvals (
    id               TEXT PRIMARY KEY NOT NULL,
    session_id       TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    tool_call_id     TEXT NOT NULL DEFAULT '',
    title            TEXT NOT NULL,
    kind             TEXT NOT NULL,
    locations        TEXT NOT NULL DEFAULT '[]',
    raw_input        TEXT NOT NULL DEFAULT '',
    options          TEXT NOT NULL DEFAULT '[]',
    status           TEXT NOT NULL,
    selected_option  TEXT NOT NULL DEFAULT '',
    decided_by       TEXT NOT NULL DEFAULT '',
    created_at       TEXT NOT NULL,
    expires_at       TEXT NOT NULL DEFAULT '',
    decided_at       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX approvals_by_status ON approvals(status, created_at);
CREATE INDEX approvals_pending_by_session ON approvals(session_id) WHERE status = 'pending';
CREATE INDEX approvals_by_session ON approvals(session_id, created_at);
";

/// Task "notify" (issue 15, notifications): the outbox, written in the transaction of the event
/// that causes a notification; one delivery per (notification, target) with its retry state;
/// and the marker that tells a clean stop from a crash.
const V8_NOTIFY_OUTBOX: &str = "
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event       TEXT NOT NULL,
    subject     TEXT NOT NULL DEFAULT '',
    payload     TEXT NOT NULL,
    fanned_out  INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL
);
CREATE INDEX outbox_fresh ON outbox(id) WHERE fanned_out = 0;

CREATE TABLE outbox_deliveries (
    delivery_id      TEXT PRIMARY KEY NOT NULL,
    outbox_id        INTEGER NOT NULL REFERENCES outbox(id) ON DELETE CASCADE,
    target           TEXT NOT NULL,
    target_label     TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    leased_until     TEXT NOT NULL DEFAULT '',
    last_status      INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT NOT NULL DEFAULT '',
    created_at       TEXT NOT NULL,
    finished_at      TEXT NOT NULL DEFAULT '',
    UNIQUE (outbox_id, target)
);
CREATE INDEX outbox_deliveries_due ON outbox_deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_deliveries_done ON outbox_deliveries(finished_at) WHERE status != 'pending';

CREATE TABLE daemon_marker (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    owner_id    TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    stopped_at  TEXT NOT NULL DEFAULT ''
);
";

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(V1_SESSIONS_AND_EVENTS),
        M::up(V2_WATCHES),
        M::up(V3_PUBLISHED),
        M::up(V4_WATCH_SKIP_DRAFTS),
        M::up(V5_AGENT_FACTS),
        M::up(V6_WORKSPACES),
        M::up(V7_CONVERSATIONS_AND_APPROVALS),
        M::up(V8_NOTIFY_OUTBOX),
    ])
}

/// The schema version this build writes.
pub fn current_version() -> usize {
    8
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
    configure_reader(&conn)?;
    Ok(conn)
}

/// Settings of a connection that only reads: a busy timeout, and refusing writes.
pub fn configure_reader(conn: &Connection) -> Result<()> {
    configure(conn)?;
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(())
}

/// A migrated database in a temporary file, for the store's unit tests. The directory is
/// leaked on purpose: the file stays open after the directory handle goes.
#[cfg(test)]
pub(super) fn test_database() -> Connection {
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = open_writer(&dir.path().join("t.sqlite")).expect("open the test database");
    std::mem::forget(dir);
    conn
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
