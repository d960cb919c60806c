//! Serving connections: who gets a connection slot and for how long.
//!
//! A connection costs nothing to open, so the policy bounds what silent ones can hold:
//! - a new connection must send its first byte within [`Limits::first_byte`]; between
//!   requests a keep-alive connection may idle for [`Limits::keep_alive`] (longer than a
//!   reverse proxy's own upstream idle timeout, so the proxy closes first); once a request has
//!   started, its headers must be complete within [`Limits::header`] and its body must not
//!   pause longer than [`Limits::body_idle`]. A request being answered (an SSE stream
//!   included) has no deadline.
//! - at most [`Limits::max_connections`] at once. When all are taken, a new connection takes
//!   the slot of an idle one — one that never sent a byte first, else the one idle longest —
//!   and only when none is idle is the new one closed. Evicting idle connections (rather than
//!   capping per peer) is what works here: every local client, the CLI included, shares the
//!   peer address 127.0.0.1, and so does everything behind a reverse proxy. A flood of silent
//!   sockets therefore never starves a real request; it only evicts itself.
//! - refusals and evictions are logged at most once per [`LOG_EVERY`], with counts.
//!
//! The socket and body wrappers that observe a connection live in `wire`.

use super::wire::{Counted, IdleBody, Tracked};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warp::http::{Request, Response};

/// The connection policy (see the module documentation).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub first_byte: Duration,
    pub keep_alive: Duration,
    pub header: Duration,
    pub body_idle: Duration,
    /// Largest request head (and read buffer) a connection may hold.
    pub max_head_bytes: usize,
}

pub const LIMITS: Limits = Limits {
    max_connections: 1024,
    first_byte: Duration::from_secs(10),
    keep_alive: Duration::from_secs(75),
    header: Duration::from_secs(10),
    body_idle: Duration::from_secs(10),
    max_head_bytes: 64 * 1024,
};

/// Refusal and eviction warnings go to the log at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// Open connections get this long to finish after shutdown starts.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What one connection is doing, shared by its reader, its requests and the accept loop.
/// Times are milliseconds since `born`.
pub(super) struct Activity {
    born: Instant,
    /// Reads that returned bytes.
    reads: AtomicU64,
    /// `reads` when the connection last came to rest (accepted, or a response finished).
    rest_reads: AtomicU64,
    rest_at: AtomicU64,
    /// When the current request's first byte arrived.
    head_at: AtomicU64,
    /// Requests handed to the service and not yet answered in full.
    in_flight: AtomicUsize,
    served: AtomicU64,
    /// Rings when the deadline may have moved closer.
    wake: Notify,
    evict: CancellationToken,
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request; `fresh` when it never sent one.
    Idle { since: u64, fresh: bool },
    /// A request's head is arriving.
    Head { since: u64 },
    /// A request is being answered.
    Busy,
}

impl Activity {
    fn new() -> Self {
        Self {
            born: Instant::now(),
            reads: AtomicU64::new(0),
            rest_reads: AtomicU64::new(0),
            rest_at: AtomicU64::new(0),
            head_at: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            wake: Notify::new(),
            evict: CancellationToken::new(),
        }
    }

    fn now(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    fn phase(&self) -> Phase {
        if self.in_flight.load(SeqCst) > 0 {
            Phase::Busy
        } else if self.reads.load(SeqCst) == self.rest_reads.load(SeqCst) {
            Phase::Idle {
                since: self.rest_at.load(SeqCst),
                fresh: self.served.load(SeqCst) == 0,
            }
        } else {
            Phase::Head {
                since: self.head_at.load(SeqCst),
            }
        }
    }

    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        let (since, allowed) = match self.phase() {
            Phase::Busy => return None,
            Phase::Idle { since, fresh: true } => (since, limits.first_byte),
            Phase::Idle {
                since,
                fresh: false,
            } => (since, limits.keep_alive),
            Phase::Head { since } => (since, limits.header),
        };
        Some(self.born + Duration::from_millis(since) + allowed)
    }

    pub(super) fn on_read(&self) {
        if self.phase() != Phase::Busy && self.reads.load(SeqCst) == self.rest_reads.load(SeqCst) {
            self.head_at.store(self.now(), SeqCst);
            self.reads.fetch_add(1, SeqCst);
            self.wake.notify_one();
        } else {
            self.reads.fetch_add(1, SeqCst);
        }
    }

    /// Whether a request is being answered (hyper's own error answers come only between).
    pub(super) fn serving(&self) -> bool {
        self.in_flight.load(SeqCst) > 0
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, SeqCst);
        InFlight(self.clone())
    }
}

/// One request being answered; dropping it (response sent, or abandoned) may put the
/// connection at rest.
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        if activity.in_flight.fetch_sub(1, SeqCst) == 1 {
            activity.served.fetch_add(1, SeqCst);
            activity.rest_at.store(activity.now(), SeqCst);
            activity
                .rest_reads
                .store(activity.reads.load(SeqCst), SeqCst);
            activity.wake.notify_one();
        }
    }
}

/// The open connections, for eviction.
#[derive(Default)]
struct Registry {
    open: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes room for one more connection: `true` when there is room (possibly by evicting
    /// the most expendable idle connection), `false` when every slot is busy.
    fn make_room(&self, limit: usize) -> Room {
        let mut open = self.lock();
        if open.len() < limit {
            return Room::Free;
        }
        let victim = open
            .iter()
            .filter_map(|(id, activity)| match activity.phase() {
                // Never-served first, then the longest idle.
                Phase::Idle { since, fresh } => {
                    Some(((!fresh, activity.born + Duration::from_millis(since)), *id))
                }
                _ => None,
            })
            .min()
            .map(|(_, id)| id);
        match victim.and_then(|id| open.remove(&id)) {
            Some(activity) => {
                activity.evict.cancel();
                Room::Evicted
            }
            None => Room::Full,
        }
    }
}

enum Room {
    Free,
    Evicted,
    Full,
}

/// Counts what the log should hear about, and says it at most once per [`LOG_EVERY`].
struct Throttled {
    last: Option<Instant>,
    evicted: u64,
    refused: u64,
    accept_errors: u64,
}

impl Throttled {
    fn note(&mut self, room: &Room, limit: usize) {
        match room {
            Room::Free => return,
            Room::Evicted => self.evicted += 1,
            Room::Full => self.refused += 1,
        }
        self.report(limit);
    }

    fn report(&mut self, limit: usize) {
        if self.last.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            return;
        }
        if self.evicted + self.refused > 0 {
            tracing::warn!(
                evicted_idle = self.evicted,
                refused = self.refused,
                "connection limit ({limit}) reached: closed {} idle connection(s) to make room \
                 and refused {} new one(s) while every connection was busy",
                self.evicted,
                self.refused
            );
        }
        if self.accept_errors > 0 {
            tracing::warn!(
                errors = self.accept_errors,
                "accepting connections failed {} time(s) (out of file descriptors?)",
                self.accept_errors
            );
        }
        (self.evicted, self.refused, self.accept_errors) = (0, 0, 0);
        self.last = Some(Instant::now());
    }
}

/// Serves one connection under `limits`: each request counted in flight, its body required to
/// keep moving, the connection closed when its phase's deadline passes or it is evicted.
async fn serve_one<S>(
    stream: TcpStream,
    activity: Arc<Activity>,
    service: S,
    limits: Limits,
    shutdown: CancellationToken,
) where
    S: hyper::service::Service<
            Request<IdleBody>,
            Response = warp::reply::Response,
            Error = std::convert::Infallible,
        > + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let io = TokioIo::new(Tracked::new(stream, activity.clone()));
    let requests = activity.clone();
    let handler = hyper::service::service_fn(move |request: Request<Incoming>| {
        let in_flight = requests.begin();
        let request = request.map(|inner| IdleBody::new(inner, limits.body_idle));
        let answer = hyper::service::Service::call(&service, request);
        async move {
            let response: Response<_> = answer.await?;
            Ok::<_, std::convert::Infallible>(response.map(|inner| Counted::new(inner, in_flight)))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Our own deadlines replace hyper's header timeout, which also closed idle keep-alive
        // connections after the same 10 s and never applied before the first byte.
        .header_read_timeout(None)
        .max_buf_size(limits.max_head_bytes)
        // A client that sends its request and closes its side (fire-and-forget webhook
        // senders) still has its request carried out, instead of cancelled mid-way.
        .half_close(true);
    let connection = builder.serve_connection_with_upgrades(io, handler);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        let deadline = activity.deadline(&limits);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!("connection ended: {err}");
                }
                return;
            }
            () = activity.wake.notified() => {}
            () = activity.evict.cancelled() => return,
            () = shutdown.cancelled(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            () = sleep_until(deadline) => {
                if activity.deadline(&limits).is_some_and(|at| at <= Instant::now()) {
                    return;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Serves `filter` on `listener` until `shutdown` fires, under [`LIMITS`].
pub async fn serve(
    listener: TcpListener,
    filter: warp::filters::BoxedFilter<(warp::reply::Response,)>,
    shutdown: CancellationToken,
    limits: Limits,
) {
    let service = TowerToHyperService::new(warp::service(filter));
    let registry = Arc::new(Registry::default());
    let tasks = TaskTracker::new();
    let mut log = Throttled {
        last: None,
        evicted: 0,
        refused: 0,
        accept_errors: 0,
    };
    let mut next_id = 0u64;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    log.accept_errors += 1;
                    log.report(limits.max_connections);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let room = registry.make_room(limits.max_connections);
        log.note(&room, limits.max_connections);
        if let Room::Full = room {
            continue;
        }
        let activity = Arc::new(Activity::new());
        next_id += 1;
        let id = next_id;
        registry.lock().insert(id, activity.clone());
        let (registry, service, shutdown) = (registry.clone(), service.clone(), shutdown.clone());
        tasks.spawn(async move {
            serve_one(stream, activity, service, limits, shutdown).await;
            registry.lock().remove(&id);
        });
    }
    drop(listener);
    tasks.close();
    let _ = tokio::time::timeout(CLOSE_GRACE, tasks.wait()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connections_are_evicted_never_busy_ones() {
        let registry = Registry::default();
        let busy = Arc::new(Activity::new());
        let _request = busy.begin();
        let served = Arc::new(Activity::new());
        drop(served.begin());
        let silent = Arc::new(Activity::new());
        for (id, activity) in [(1, &busy), (2, &served), (3, &silent)] {
            registry.lock().insert(id, activity.clone());
        }
        assert!(matches!(registry.make_room(4), Room::Free));
        assert!(matches!(registry.make_room(3), Room::Evicted));
        assert!(
            silent.evict.is_cancelled(),
            "the never-served one goes first"
        );
        let reading = Arc::new(Activity::new());
        reading.on_read();
        registry.lock().insert(3, reading);
        assert!(matches!(registry.make_room(3), Room::Evicted));
        assert!(served.evict.is_cancelled(), "then the idle keep-alive one");
        let reading = Arc::new(Activity::new());
        reading.on_read();
        registry.lock().insert(2, reading);
        assert!(matches!(registry.make_room(3), Room::Full));
        assert!(!busy.evict.is_cancelled());
    }

    #[test]
    fn deadlines_follow_the_phase() {
        let activity = Arc::new(Activity::new());
        let born = activity.born;
        assert_eq!(activity.deadline(&LIMITS), Some(born + LIMITS.first_byte));
        activity.on_read();
        assert!(matches!(activity.phase(), Phase::Head { .. }));
        let request = activity.begin();
        assert_eq!(activity.deadline(&LIMITS), None);
        activity.on_read();
        drop(request);
        match activity.phase() {
            Phase::Idle { fresh: false, .. } => {}
            other => panic!("{other:?}"),
        }
        let rest = activity.deadline(&LIMITS).unwrap_or(born);
        assert!(rest >= born + LIMITS.keep_alive);
    }
}
