//! Reading a database without a daemon, for the CLI's read commands when none answers. The
//! connection is read-only: it never creates the file or its directory and never migrates, so
//! looking does not change anything (WAL lets it read while a daemon writes elsewhere).

use super::{approvals, queries, schema, watches};
use crate::domain::{Event, Session, SessionFilter, Watch, WatchRun};
use crate::error::{Error, Result};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// The database as an SQLite URI. With a write-ahead log present (a daemon runs, or one was
/// killed) the log is read as well; without one, every commit is in the main file, and it is
/// opened `immutable` so that SQLite creates no `-wal`/`-shm` files beside it (which, made by
/// another user such as root, would keep the daemon from opening its own database).
fn open_target(path: &Path) -> String {
    let escaped: String = path
        .to_string_lossy()
        .chars()
        .map(|c| match c {
            '%' => "%25".to_owned(),
            '?' => "%3f".to_owned(),
            '#' => "%23".to_owned(),
            c => c.to_string(),
        })
        .collect();
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    if Path::new(&wal).exists() {
        format!("file:{escaped}")
    } else {
        format!("file:{escaped}?immutable=1")
    }
}

/// A read-only view of a TeleCoder database.
pub struct Snapshot {
    conn: Connection,
}

impl Snapshot {
    /// Opens `path` read-only; `NotFound` when there is no database there.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::NotFound(format!(
                "no TeleCoder database at {}",
                path.display()
            )));
        }
        let conn = Connection::open_with_flags(
            open_target(path),
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        schema::configure_reader(&conn)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version < schema::current_version() as i64 {
            return Err(Error::Unavailable(format!(
                "the database at {} has schema version {version} and this telecoder reads {}; \
                 start `telecoder serve` once to upgrade it",
                path.display(),
                schema::current_version()
            )));
        }
        Ok(Self { conn })
    }

    pub fn sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>> {
        queries::list_sessions(&self.conn, filter)
    }

    pub fn session(&self, id: &str) -> Result<Session> {
        queries::get_session(&self.conn, id)?
            .ok_or_else(|| Error::NotFound(format!("session {id} not found")))
    }

    /// The whole rerun family of an existing session.
    pub fn lineage(&self, id: &str) -> Result<Vec<Session>> {
        self.session(id)?;
        self.sessions(&SessionFilter {
            lineage: Some(id.to_owned()),
            ..SessionFilter::default()
        })
    }

    pub fn inbox(&self, limit: u32) -> Result<Vec<Session>> {
        queries::inbox(&self.conn, limit)
    }

    /// Events of an existing session after `after`.
    pub fn events(&self, id: &str, after: i64) -> Result<Vec<Event>> {
        self.session(id)?;
        queries::events_after(&self.conn, id, after, u32::MAX)
    }

    /// Approvals matching `filter`, newest first (issue 15).
    pub fn approvals(
        &self,
        filter: &crate::domain::ApprovalFilter,
    ) -> Result<Vec<crate::domain::Approval>> {
        approvals::list(&self.conn, filter)
    }

    pub fn watches(&self, filter: &watches::WatchFilter) -> Result<Vec<Watch>> {
        watches::list_watches(&self.conn, filter)
    }

    /// Runs of an existing watch, newest first.
    pub fn watch_runs(&self, id: &str) -> Result<Vec<WatchRun>> {
        watches::get_watch(&self.conn, id)?
            .ok_or_else(|| Error::NotFound(format!("watch {id} not found")))?;
        watches::watch_runs(&self.conn, id)
    }
}
