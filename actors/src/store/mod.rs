//! The StoreActor: the only owner of the SQLite write connection.
//!
//! Writes run one at a time, in arrival order, on a dedicated thread that opened the write
//! connection; reads run on pooled read-only connections in blocking tasks so they never queue
//! behind a write. Every write is acknowledged only after commit, and committed events are then
//! published on the [`EventBus`]. A write that hits a fatal database error fails the actor, and
//! the supervisor restarts it (which reopens the database).

pub mod client;
pub mod outbox;
mod pool;
pub mod queries;
pub mod schema;
pub mod snapshot;
pub mod watches;

pub use client::StoreClient;
pub use queries::{DatabaseStatus, Finish};

use crate::bus::EventBus;
use crate::domain::redact::Redactor;
use crate::domain::{Event, EventKind, Session, SessionFilter, Watch, WatchRun};
use crate::error::{Error, Result};
use pool::ReadPool;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use watches::{NewRun, Recorded, WatchFilter};

/// The registered name; callers resolve the current store through it, since a restarted store
/// is a new actor.
pub const STORE_NAME: &str = "telecoder.store";

/// A unit of work for the writer thread. Returns a message when the database failed in a way
/// that needs a reopen.
type WriteJob = Box<dyn FnOnce(&mut Connection) -> Option<String> + Send>;

/// A typed read on the pool that sends its own reply (see [`StoreClient::read`]).
type ReadJob = Box<dyn FnOnce(&ReadPool) + Send>;

/// Messages the store understands. Each request carries its reply port.
pub enum StoreMsg {
    /// Run a job on the writer thread (see [`StoreClient::write`]).
    Write(WriteJob),
    /// Run a read-only job on a pooled connection (see [`StoreClient::read`]).
    Read(ReadJob),
    /// Insert a new session with its first events.
    InsertSession {
        session: Box<Session>,
        first_events: Vec<(EventKind, String)>,
        reply: RpcReplyPort<Result<Vec<Event>>>,
    },
    /// Claim a pending session for an owner; `None` if it is not pending any more.
    Claim {
        id: String,
        owner: String,
        reply: RpcReplyPort<Result<Option<Session>>>,
    },
    /// Refresh a running session's heartbeat; false if the session is no longer ours.
    Heartbeat {
        id: String,
        owner: String,
        reply: RpcReplyPort<Result<bool>>,
    },
    /// Record the workspace directory and branch.
    SetWorkspace {
        id: String,
        branch: String,
        work_dir: String,
        reply: RpcReplyPort<Result<()>>,
    },
    /// Record the agent's process id (`None` once it has exited).
    SetAgentPid {
        id: String,
        pid: Option<u32>,
        reply: RpcReplyPort<Result<()>>,
    },
    /// Record what the runtime learned about the agent's side (session id, stop reason, usage).
    RecordAgentFacts {
        id: String,
        facts: Box<crate::domain::AgentFacts>,
        reply: RpcReplyPort<Result<()>>,
    },
    /// Append one event.
    AppendEvent {
        session_id: String,
        kind: EventKind,
        data: String,
        reply: RpcReplyPort<Result<Event>>,
    },
    /// Finish a running session of `owner`; `None` if it was already finished.
    Finish {
        id: String,
        owner: String,
        finish: Box<Finish>,
        reply: RpcReplyPort<Result<Option<Event>>>,
    },
    /// Fail a pending or running session regardless of owner.
    FailActive {
        id: String,
        finish: Box<Finish>,
        reply: RpcReplyPort<Result<Option<Event>>>,
    },
    /// Mark running sessions whose heartbeat is older than `cutoff` abandoned.
    SweepStale {
        cutoff: String,
        reply: RpcReplyPort<Result<Vec<queries::Abandoned>>>,
    },
    /// One session by id.
    GetSession {
        id: String,
        reply: RpcReplyPort<Result<Option<Session>>>,
    },
    /// Sessions matching a filter.
    ListSessions {
        filter: SessionFilter,
        reply: RpcReplyPort<Result<Vec<Session>>>,
    },
    /// Finished sessions, most recent first.
    Inbox {
        limit: u32,
        reply: RpcReplyPort<Result<Vec<Session>>>,
    },
    /// A session's events after an id.
    Events {
        session_id: String,
        after: i64,
        limit: u32,
        reply: RpcReplyPort<Result<Vec<Event>>>,
    },
    /// The oldest pending session ids, and how many sessions run for other owners.
    RunQueue {
        limit: usize,
        owner: String,
        reply: RpcReplyPort<Result<queries::RunQueue>>,
    },
    /// Record the pull request a session was published as (with a `publish` event).
    RecordPublished {
        id: String,
        number: u64,
        url: String,
        reply: RpcReplyPort<Result<Event>>,
    },
    /// Store a new watch.
    InsertWatch {
        watch: Box<Watch>,
        reply: RpcReplyPort<Result<()>>,
    },
    /// Replace a watch's editable fields; false if it does not exist.
    UpdateWatch {
        watch: Box<Watch>,
        reply: RpcReplyPort<Result<bool>>,
    },
    /// Delete a watch and its runs; false if it did not exist.
    DeleteWatch {
        id: String,
        reply: RpcReplyPort<Result<bool>>,
    },
    /// Record a watch run (and its session) exactly once per event key.
    RecordRun {
        run: Box<NewRun>,
        reply: RpcReplyPort<Result<Recorded>>,
    },
    /// Store a webhook delivery once; false for a redelivery.
    InsertDelivery {
        id: String,
        event: String,
        payload: String,
        reply: RpcReplyPort<Result<bool>>,
    },
    /// Mark a delivery routed (`done`) or not routable (`ignored`).
    FinishDelivery {
        id: String,
        state: String,
        reply: RpcReplyPort<Result<()>>,
    },
    /// One watch by id.
    GetWatch {
        id: String,
        reply: RpcReplyPort<Result<Option<Watch>>>,
    },
    /// Watches matching a filter, newest first.
    ListWatches {
        filter: WatchFilter,
        reply: RpcReplyPort<Result<Vec<Watch>>>,
    },
    /// A watch's runs, newest first.
    WatchRuns {
        watch_id: String,
        reply: RpcReplyPort<Result<Vec<WatchRun>>>,
    },
    /// The event key of a watch's newest run.
    LastEventKey {
        watch_id: String,
        reply: RpcReplyPort<Result<Option<String>>>,
    },
    /// Deliveries received before a time but not yet routed.
    PendingDeliveries {
        received_before: String,
        reply: RpcReplyPort<Result<Vec<(String, String, String)>>>,
    },
    /// How many messages this store has handled (admin view).
    Inspect(RpcReplyPort<u64>),
    /// The database's schema version, file size (with WAL) and sessions by status.
    Status(RpcReplyPort<Result<DatabaseStatus>>),
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
    /// Applied to every text written from an agent or an error, so secrets never land on disk.
    pub redactor: Redactor,
}

/// Reads running at once; matches the idle connections the pool keeps.
const MAX_CONCURRENT_READS: usize = 8;

pub struct StoreState {
    read_slots: Arc<tokio::sync::Semaphore>,
    handled: u64,
    path: PathBuf,
    writer: mpsc::Sender<WriteJob>,
    reads: Arc<ReadPool>,
    bus: EventBus,
    metrics: crate::metrics::Metrics,
    redactor: Redactor,
}

/// The store actor; stateless itself, everything lives in [`StoreState`].
pub struct StoreActor;

impl StoreState {
    /// Queues a write; `job` runs on the writer thread and its result goes to `reply`.
    fn write<T: Send + 'static>(
        &self,
        reply: RpcReplyPort<Result<T>>,
        job: impl FnOnce(&mut Connection, &EventBus) -> Result<T> + Send + 'static,
    ) {
        let bus = self.bus.clone();
        let boxed: WriteJob = Box::new(move |conn| {
            let result = job(conn, &bus);
            let fatal = match &result {
                Err(Error::Store(err)) if is_fatal(err) => Some(err.to_string()),
                _ => None,
            };
            let _ = reply.send(result);
            fatal
        });
        // A send only fails when the writer thread is gone; the dropped reply tells the caller.
        let _ = self.writer.send(boxed);
    }

    /// Runs a read on a pooled connection in a blocking task; the actor moves on at once. At
    /// most [`MAX_CONCURRENT_READS`] run at once (100 SSE clients replaying at the same moment
    /// would otherwise take 100 threads); the rest wait their turn.
    fn read<T: Send + 'static>(
        &self,
        reply: RpcReplyPort<Result<T>>,
        query: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) {
        let (reads, slots) = (self.reads.clone(), self.read_slots.clone());
        tokio::spawn(async move {
            let Ok(slot) = slots.acquire_owned().await else {
                return;
            };
            let _ = tokio::task::spawn_blocking(move || {
                let _ = reply.send(reads.with(query));
                drop(slot);
            })
            .await;
        });
    }
}

/// Errors after which the connection cannot be trusted and must be reopened.
pub(crate) fn is_fatal(err: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        err.sqlite_error_code(),
        Some(SystemIoFailure | DatabaseCorrupt | NotADatabase | CannotOpen | DiskFull | ReadOnly)
    )
}

/// Publishes committed events to live readers.
fn publish_all(bus: &EventBus, events: &[Event]) {
    for event in events {
        bus.publish(event);
    }
}

/// Publishes a session's terminal event and counts the finish.
fn announce(bus: &EventBus, metrics: &crate::metrics::Metrics, finished: &queries::Finished) {
    bus.publish(&finished.event);
    let s = &finished.session;
    metrics.finished(
        s.status.as_str(),
        s.failure_kind.as_str(),
        &s.started_at,
        &s.finished_at,
    );
}

/// Starts the writer thread, which opens (and migrates) the database itself.
async fn start_writer(myself: ActorRef<StoreMsg>, path: PathBuf) -> Result<mpsc::Sender<WriteJob>> {
    let (jobs_tx, jobs_rx) = mpsc::channel::<WriteJob>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("telecoder-store-writer".into())
        .spawn(move || {
            let mut conn = match schema::open_writer(&path) {
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
                if let Some(fatal) = job(&mut conn) {
                    let _ = myself.cast(StoreMsg::WriterFailed(fatal));
                    return;
                }
            }
        })
        .map_err(|err| Error::Internal(format!("cannot start the store writer thread: {err}")))?;
    ready_rx.await.map_err(|_| {
        Error::Internal("store writer thread died while opening the database".into())
    })??;
    Ok(jobs_tx)
}

impl Actor for StoreActor {
    type Msg = StoreMsg;
    type State = StoreState;
    type Arguments = StoreArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: StoreArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let writer = start_writer(myself, args.path.clone()).await?;
        Ok(StoreState {
            read_slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_READS)),
            handled: 0,
            path: args.path.clone(),
            writer,
            reads: Arc::new(ReadPool::new(args.path)),
            bus: args.bus,
            metrics: args.metrics,
            redactor: args.redactor,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.handled += 1;
        match message {
            // A send only fails when the writer thread is gone; the dropped job drops its reply
            // port, which tells the caller to try the next store.
            StoreMsg::Write(job) => {
                let _ = state.writer.send(job);
            }
            StoreMsg::Read(job) => {
                let (reads, slots) = (state.reads.clone(), state.read_slots.clone());
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
            StoreMsg::InsertSession {
                session,
                first_events,
                reply,
            } => state.write(reply, move |conn, bus| {
                let events = queries::insert_session(conn, &session, &first_events)?;
                publish_all(bus, &events);
                Ok(events)
            }),
            StoreMsg::Claim { id, owner, reply } => {
                state.write(reply, move |conn, _| queries::claim(conn, &id, &owner))
            }
            StoreMsg::Heartbeat { id, owner, reply } => {
                state.write(reply, move |conn, _| queries::heartbeat(conn, &id, &owner))
            }
            StoreMsg::SetWorkspace {
                id,
                branch,
                work_dir,
                reply,
            } => state.write(reply, move |conn, _| {
                queries::set_workspace(conn, &id, &branch, &work_dir)
            }),
            StoreMsg::SetAgentPid { id, pid, reply } => {
                state.write(reply, move |conn, _| queries::set_agent_pid(conn, &id, pid))
            }
            StoreMsg::RecordAgentFacts { id, facts, reply } => state
                .write(reply, move |conn, _| {
                    queries::record_agent_facts(conn, &id, &facts)
                }),
            StoreMsg::AppendEvent {
                session_id,
                kind,
                data,
                reply,
            } => {
                let data = state.redactor.redact(&data);
                state.write(reply, move |conn, bus| {
                    let event = queries::append_event(conn, &session_id, kind, &data)?;
                    bus.publish(&event);
                    Ok(event)
                })
            }
            StoreMsg::Finish {
                id,
                owner,
                finish,
                reply,
            } => {
                let finish = finish.redacted(&state.redactor);
                let metrics = state.metrics.clone();
                state.write(reply, move |conn, bus| {
                    let finished = queries::finish(conn, &id, &owner, &finish)?;
                    finished.iter().for_each(|f| announce(bus, &metrics, f));
                    Ok(finished.map(|f| f.event))
                })
            }
            StoreMsg::FailActive { id, finish, reply } => {
                let finish = finish.redacted(&state.redactor);
                let metrics = state.metrics.clone();
                state.write(reply, move |conn, bus| {
                    let finished = queries::fail_active(conn, &id, &finish)?;
                    finished.iter().for_each(|f| announce(bus, &metrics, f));
                    Ok(finished.map(|f| f.event))
                })
            }
            StoreMsg::SweepStale { cutoff, reply } => {
                let metrics = state.metrics.clone();
                state.write(reply, move |conn, bus| {
                    let abandoned = queries::sweep_stale(conn, &cutoff)?;
                    for session in &abandoned {
                        announce(bus, &metrics, &session.finished);
                    }
                    Ok(abandoned)
                })
            }
            StoreMsg::GetSession { id, reply } => {
                state.read(reply, move |conn| queries::get_session(conn, &id))
            }
            StoreMsg::ListSessions { filter, reply } => {
                state.read(reply, move |conn| queries::list_sessions(conn, &filter))
            }
            StoreMsg::Inbox { limit, reply } => {
                state.read(reply, move |conn| queries::inbox(conn, limit))
            }
            StoreMsg::Events {
                session_id,
                after,
                limit,
                reply,
            } => state.read(reply, move |conn| {
                queries::events_after(conn, &session_id, after, limit)
            }),
            StoreMsg::RunQueue {
                limit,
                owner,
                reply,
            } => state.read(reply, move |conn| queries::run_queue(conn, limit, &owner)),
            StoreMsg::RecordPublished {
                id,
                number,
                url,
                reply,
            } => state.write(reply, move |conn, bus| {
                let event = queries::record_published(conn, &id, number, &url)?;
                bus.publish(&event);
                Ok(event)
            }),
            StoreMsg::InsertWatch { watch, reply } => {
                state.write(reply, move |conn, _| watches::insert_watch(conn, &watch))
            }
            StoreMsg::UpdateWatch { watch, reply } => {
                state.write(reply, move |conn, _| watches::update_watch(conn, &watch))
            }
            StoreMsg::DeleteWatch { id, reply } => {
                state.write(reply, move |conn, _| watches::delete_watch(conn, &id))
            }
            StoreMsg::RecordRun { run, reply } => {
                state.write(reply, move |conn, _| watches::record_run(conn, &run))
            }
            StoreMsg::InsertDelivery {
                id,
                event,
                payload,
                reply,
            } => state.write(reply, move |conn, _| {
                watches::insert_delivery(conn, &id, &event, &payload)
            }),
            StoreMsg::FinishDelivery {
                id,
                state: done,
                reply,
            } => state.write(reply, move |conn, _| {
                watches::finish_delivery(conn, &id, &done)
            }),
            StoreMsg::GetWatch { id, reply } => {
                state.read(reply, move |conn| watches::get_watch(conn, &id))
            }
            StoreMsg::ListWatches { filter, reply } => {
                state.read(reply, move |conn| watches::list_watches(conn, &filter))
            }
            StoreMsg::WatchRuns { watch_id, reply } => {
                state.read(reply, move |conn| watches::watch_runs(conn, &watch_id))
            }
            StoreMsg::LastEventKey { watch_id, reply } => {
                state.read(reply, move |conn| watches::last_event_key(conn, &watch_id))
            }
            StoreMsg::PendingDeliveries {
                received_before,
                reply,
            } => state.read(reply, move |conn| {
                watches::pending_deliveries(conn, &received_before)
            }),
            StoreMsg::Inspect(reply) => {
                let _ = reply.send(state.handled);
            }
            StoreMsg::Status(reply) => {
                let path = state.path.clone();
                state.read(reply, move |conn| queries::database_status(conn, &path))
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
}
