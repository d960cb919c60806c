//! A few idle read connections, reused across blocking tasks. Readers use WAL snapshots, so
//! they never wait for the writer.

use super::schema;
use crate::error::Result;
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::Mutex;

/// More idle connections than this are closed rather than kept.
const MAX_IDLE: usize = 8;

pub struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `query` on an idle connection (opening one if none is free). Blocking: call it
    /// from a blocking task, never from an async handler.
    pub fn with<T>(&self, query: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => schema::open_reader(&self.path)?,
        };
        let result = query(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        result
    }

    /// Closes the idle connections (at shutdown, before the writer: the last connection to
    /// close checkpoints and removes the write-ahead log, which a read-only one cannot do).
    pub fn close_idle(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
