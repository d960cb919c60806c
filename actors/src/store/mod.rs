//! The StoreActor: the only owner of the SQLite write connection.
//!
//! Store work travels as typed closures ([`StoreClient::write`] / [`StoreClient::read`], the
//! tokio-rusqlite idiom): writes run one at a time, in arrival order, on a dedicated thread
//! that opened the write connection; reads run on pooled read-only connections in blocking
//! tasks so they never queue behind a write. Every write is acknowledged only after commit,
//! and committed events are then published on the [`EventBus`], in commit order. A write that
//! hits a fatal database error fails the actor, and the root supervisor restarts it (which
//! reopens the database). A new query is one function; the actor never learns its name.

pub mod approvals;
pub mod client;
pub mod columns;
pub mod conversations;
pub mod finish;
pub mod outbox;
pub mod pages;
mod pool;
pub mod queries;
pub mod schema;
pub mod snapshot;
pub mod watches;
pub mod workspaces;

pub use client::StoreClient;
pub use finish::Finish;
pub use pool::ReadPool;
pub use queries::DatabaseStatus;

use crate::actor::{Behaviour, Handled, Started};
use crate::bus::EventBus;
use crate::domain::Event;
use crate::error::{Error, Result};
use ractor::{ActorRef, RpcReplyPort};
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};

/// A unit of work for the writer thread. Returns a message when the database failed in a way
/// that needs a reopen.
type WriteJob = Box<dyn FnOnce(&mut Writer<'_>) -> Option<String> + Send>;

/// A typed read on the pool that sends its own reply (see [`StoreClient::read`]).
type ReadJob = Box<dyn FnOnce(&ReadPool) + Send>;

/// Messages the store understands.
pub enum StoreMsg {
    /// Run a job on the writer thread (see [`StoreClient::write`]).
    Write(WriteJob),
    /// Run a read-only job on a pooled connection (see [`StoreClient::read`]).
    Read(ReadJob),
    /// How many messages this store has handled (admin view).
    Inspect(RpcReplyPort<u64>),
    /// The writer thread hit a fatal database error; fail so the supervisor reopens.
    WriterFailed(String),
    /// Fail on purpose (tests and fault drills prove the restart strategy with it).
    InjectFailure(String),
}

/// How to open the store.
#[derive(Clone)]
pub struct StoreArgs {
    pub path: PathBuf,
    pub bus: EventBus,
    pub metrics: crate::metrics::Metrics,
}

/// What a write job gets on the writer thread: the one write connection, and the way to tell
/// live readers (and the metrics) about what it committed.
pub struct Writer<'a> {
    pub conn: &'a mut Connection,
    bus: &'a EventBus,
    metrics: &'a crate::metrics::Metrics,
}

impl Writer<'_> {
    /// Publishes committed events to live readers (call after commit).
    pub fn published(&self, events: &[Event]) {
        for event in events {
            self.bus.publish(event);
        }
    }

    /// Wakes the notification sender: this write may have queued a notification that no
    /// published event announces (a watch paused).
    pub fn outbox_changed(&self) {
        self.bus.outbox_changed();
    }

    /// Publishes a session's terminal event and counts the finish.
    pub fn finished(&self, finished: &finish::Finished) {
        self.bus.publish(&finished.event);
        let s = &finished.session;
        self.metrics.finished(
            s.status.as_str(),
            s.failure_kind.as_str(),
            &s.started_at,
            &s.finished_at,
        );
    }
}

/// Reads running at once; matches the idle connections the pool keeps.
const MAX_CONCURRENT_READS: usize = 8;

pub struct StoreState {
    read_slots: Arc<tokio::sync::Semaphore>,
    handled: u64,
    writer: mpsc::Sender<WriteJob>,
    /// Joined when the store stops, so a clean shutdown closes the database (and removes its
    /// write-ahead log) before the process exits.
    writer_thread: Option<std::thread::JoinHandle<()>>,
    reads: Arc<ReadPool>,
}

/// The store actor; stateless itself, everything lives in [`StoreState`].
pub type StoreActor = crate::actor::Run<StoreState>;

impl StoreState {
    /// Runs a read job on a pooled connection in a blocking task; the actor moves on at once.
    /// At most [`MAX_CONCURRENT_READS`] run at once (100 SSE clients replaying at the same
    /// moment would otherwise take 100 threads); the rest wait their turn.
    fn read(&self, job: ReadJob) {
        let (reads, slots) = (self.reads.clone(), self.read_slots.clone());
        tokio::spawn(async move {
            let Ok(slot) = slots.acquire_owned().await else {
                return;
            };
            let _ = tokio::task::spawn_blocking(move || {
                job(&reads);
                drop(slot);
            })
            .await;
        });
    }
}

/// Errors after which the connection cannot be trusted and must be reopened.
pub(crate) fn is_fatal(err: &Error) -> bool {
    use rusqlite::ErrorCode::*;
    match err {
        Error::Store(err) => matches!(
            err.sqlite_error_code(),
            Some(
                SystemIoFailure | DatabaseCorrupt | NotADatabase | CannotOpen | DiskFull | ReadOnly
            )
        ),
        _ => false,
    }
}

/// Starts the writer thread, which opens (and migrates) the database itself.
async fn start_writer(
    myself: ActorRef<StoreMsg>,
    args: StoreArgs,
) -> Result<(mpsc::Sender<WriteJob>, std::thread::JoinHandle<()>)> {
    let (jobs_tx, jobs_rx) = mpsc::channel::<WriteJob>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("telecoder-store-writer".into())
        .spawn(move || {
            let mut conn = match schema::open_writer(&args.path) {
                Ok(conn) => {
                    let _ = ready_tx.send(Ok(()));
                    conn
                }
                Err(err) => {
                    let _ = ready_tx.send(Err(err));
                    return;
                }
            };
            for job in jobs_rx {
                let mut writer = Writer {
                    conn: &mut conn,
                    bus: &args.bus,
                    metrics: &args.metrics,
                };
                if let Some(fatal) = job(&mut writer) {
                    let _ = myself.cast(StoreMsg::WriterFailed(fatal));
                    return;
                }
            }
        })
        .map_err(|err| Error::Internal(format!("cannot start the store writer thread: {err}")))?;
    ready_rx.await.map_err(|_| {
        Error::Internal("store writer thread died while opening the database".into())
    })??;
    Ok((jobs_tx, thread))
}

impl Behaviour for StoreState {
    type Msg = StoreMsg;
    type Args = StoreArgs;

    async fn start(myself: ActorRef<StoreMsg>, args: StoreArgs) -> Started<Self> {
        let path = args.path.clone();
        let (writer, thread) = start_writer(myself, args).await?;
        Ok(StoreState {
            read_slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_READS)),
            handled: 0,
            writer,
            writer_thread: Some(thread),
            reads: Arc::new(ReadPool::new(path)),
        })
    }

    async fn handle(&mut self, _myself: ActorRef<StoreMsg>, message: StoreMsg) -> Handled {
        self.handled += 1;
        match message {
            // A send only fails when the writer thread is gone; the dropped job drops its reply
            // port, which tells the caller to try the next store.
            StoreMsg::Write(job) => {
                let _ = self.writer.send(job);
            }
            StoreMsg::Read(job) => self.read(job),
            StoreMsg::Inspect(reply) => {
                let _ = reply.send(self.handled);
            }
            StoreMsg::WriterFailed(reason) => {
                return Err(format!("store writer failed: {reason}").into())
            }
            StoreMsg::InjectFailure(reason) => {
                return Err(format!("injected store failure: {reason}").into())
            }
        }
        Ok(())
    }

    async fn stopped(&mut self, _myself: ActorRef<StoreMsg>) -> Handled {
        self.reads.close_idle();
        // Closing the channel ends the writer's loop; it then closes the connection.
        drop(std::mem::replace(&mut self.writer, mpsc::channel().0));
        if let Some(thread) = self.writer_thread.take() {
            let joined = tokio::task::spawn_blocking(move || thread.join());
            let _ = tokio::time::timeout(crate::context::STOP_GRACE, joined).await;
        }
        Ok(())
    }
}
