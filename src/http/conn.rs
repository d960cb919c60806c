//! Serving connections: who gets a connection slot, for how long, and what hyper's own error
//! answers look like.
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
//! hyper answers unparsable requests itself (400, 414, 431) with an empty body; the
//! connection's writer turns those into the same `{"error": …}` JSON as every other error.

use super::errors::error_body;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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
struct Activity {
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

    fn on_read(&self) {
        if self.phase() != Phase::Busy && self.reads.load(SeqCst) == self.rest_reads.load(SeqCst) {
            self.head_at.store(self.now(), SeqCst);
            self.reads.fetch_add(1, SeqCst);
            self.wake.notify_one();
        } else {
            self.reads.fetch_add(1, SeqCst);
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, SeqCst);
        InFlight(self.clone())
    }
}

/// One request being answered; dropping it (response sent, or abandoned) may put the
/// connection at rest.
struct InFlight(Arc<Activity>);

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

/// A response body that keeps its request counted as in flight until it is dropped.
struct Counted<B> {
    inner: B,
    _request: InFlight,
}

impl<B: Body + Unpin> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails when the client pauses longer than `idle` mid-body.
struct IdleBody {
    inner: Incoming,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Body for IdleBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.timer = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let idle = self.idle;
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                        "the client sent nothing for {}s in the middle of the body",
                        idle.as_secs()
                    )
                    .into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket as hyper sees it: reads are counted, hyper's empty error answers get a body.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
    /// A rewritten answer still to be written.
    pending: Vec<u8>,
}

impl Tracked {
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let written =
                std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..written);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.drain(cx))?;
        if self.activity.in_flight.load(SeqCst) == 0 {
            if let Some(answer) = with_json_body(buf) {
                self.pending = answer;
                // The answer is ours to deliver now; flush and shutdown finish it.
                let _ = self.drain(cx)?;
                return Poll::Ready(Ok(buf.len()));
            }
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// hyper's own answer to a request it could not parse (an error status with an empty body,
/// written while no request is being served), rewritten with a JSON body. `None` for
/// anything else. Our own error answers always have a body, and none of our bodies contains
/// CR, so nothing else matches.
fn with_json_body(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?.strip_suffix("\r\n\r\n")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let code: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))?
        .get(..3)?
        .parse()
        .ok()?;
    let headers: Vec<&str> = lines.collect();
    let empty = headers
        .iter()
        .any(|line| line.eq_ignore_ascii_case("content-length: 0"));
    if !(400..600).contains(&code) || !empty {
        return None;
    }
    let message = match code {
        400 => "malformed HTTP request",
        414 => "request URI is too long",
        431 => "request headers are too large",
        _ => "the request could not be read",
    };
    let body = error_body(message);
    let mut answer = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for line in headers
        .iter()
        .filter(|line| !line.to_ascii_lowercase().starts_with("content-length:"))
    {
        answer.push_str(line);
        answer.push_str("\r\n");
    }
    answer.push_str("\r\n");
    answer.push_str(&body);
    Some(answer.into_bytes())
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
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
        pending: Vec::new(),
    });
    let requests = activity.clone();
    let handler = hyper::service::service_fn(move |request: Request<Incoming>| {
        let in_flight = requests.begin();
        let request = request.map(|inner| IdleBody {
            inner,
            idle: limits.body_idle,
            timer: None,
        });
        let answer = hyper::service::Service::call(&service, request);
        async move {
            let response: Response<_> = answer.await?;
            Ok::<_, std::convert::Infallible>(response.map(|inner| Counted {
                inner,
                _request: in_flight,
            }))
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
    fn hyper_error_answers_get_a_json_body() {
        let canned = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n";
        let answer = with_json_body(canned).map(String::from_utf8);
        let Some(Ok(answer)) = answer else {
            panic!("not rewritten");
        };
        assert!(answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(answer.contains("content-type: application/json\r\n"));
        assert!(answer.contains("date: Thu"));
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert_eq!(body, r#"{"error":"request headers are too large"}"#);
        for other in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 21\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}",
            b"{\"error\":\"HTTP/1.1 400 x\r\ncontent-length: 0\r\n\r\n\"}",
        ] {
            assert!(with_json_body(other).is_none());
        }
    }

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
