//! The HTTP API. Routes parse and validate requests, then hand them to the actor system
//! through [`Daemon`]; no route touches SQLite or processes.

mod admin;
mod approvals;
mod auth;
mod errors;
mod sessions;
mod sse;
mod watches;
mod webhooks;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use telecoder_actors::Daemon;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Reply};

/// Bodies of API requests are small JSON documents.
pub const API_BODY_LIMIT: usize = 1024 * 1024;
/// GitHub sends webhook payloads of at most 25 MB.
pub const WEBHOOK_BODY_LIMIT: usize = 25 * 1024 * 1024;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub daemon: Daemon,
    /// Cancelled at shutdown; live streams end with it.
    pub shutdown: CancellationToken,
    /// `TELECODER_GITHUB_WEBHOOK_SECRET`; without it GitHub deliveries are refused.
    pub github_secret: Option<std::sync::Arc<str>>,
    /// Bearer tokens; none configured means an open API (loopback binds only).
    pub tokens: std::sync::Arc<crate::config::Tokens>,
}

fn with_state(state: AppState) -> impl Filter<Extract = (AppState,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// Every route of the API, with JSON errors for anything that does not match.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let health = warp::path!("health")
        .and(warp::get())
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})).into_response());
    let gate = auth::gate(state.tokens.clone());
    let routes = health
        .or(sessions::routes(with_state(state.clone())))
        .unify()
        .or(watches::routes(with_state(state.clone())))
        .unify()
        .or(approvals::routes(with_state(state.clone())))
        .unify()
        .or(webhooks::routes(with_state(state.clone())))
        .unify()
        .or(admin::routes(with_state(state.clone())))
        .unify();
    let app = gate.and(routes).recover(errors::recover).unify();
    let metrics = state.daemon.metrics().clone();
    unread_body_closes()
        .and(warp::path::full())
        .and(app)
        .map(
            move |facts: BodyFacts, path: warp::path::FullPath, response: Response| {
                metrics.http(
                    &admin::route_label(path.as_str()),
                    response.status().as_u16(),
                );
                close_if_unread(facts, response)
            },
        )
        .boxed()
}

/// What the connection-close decision needs to know about the request.
#[derive(Clone, Copy)]
struct BodyFacts {
    has_body: bool,
    body_route: bool,
}

fn unread_body_closes() -> impl Filter<Extract = (BodyFacts,), Error = Infallible> + Clone {
    warp::method()
        .and(warp::header::optional::<String>("content-length"))
        .and(warp::header::optional::<String>("transfer-encoding"))
        .map(
            |method: warp::http::Method, length: Option<String>, chunked: Option<String>| {
                BodyFacts {
                    has_body: chunked.is_some()
                        || length.is_some_and(|l| l.trim().parse::<u64>().map_or(true, |n| n > 0)),
                    body_route: matches!(
                        method,
                        warp::http::Method::POST | warp::http::Method::PATCH
                    ),
                }
            },
        )
        .or(warp::any().map(|| BodyFacts {
            has_body: true,
            body_route: false,
        }))
        .unify()
}

/// hyper closes a connection whose request body was not read, without saying so; a client
/// that reuses it then sees a dropped connection. When a body may be unread (a body-less route
/// got one, or the request was refused before its body was read), `Connection: close` up front
/// lets the client open a fresh connection instead.
fn close_if_unread(facts: BodyFacts, mut response: Response) -> Response {
    let maybe_unread = facts.has_body && (!facts.body_route || response.status().is_client_error());
    if maybe_unread {
        response.headers_mut().insert(
            warp::http::header::CONNECTION,
            warp::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Connections served at once; more are closed on accept (mini-redis style back-pressure).
const MAX_CONNECTIONS: usize = 1024;
/// A client must finish sending its request headers within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections get this long to finish after shutdown starts.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Serves the API on `listener` until `shutdown` fires. Slow or idle clients cannot pin
/// connections: headers must arrive within [`HEADER_READ_TIMEOUT`], and at most
/// [`MAX_CONNECTIONS`] are open at once.
pub async fn serve(listener: TcpListener, state: AppState) {
    let shutdown = state.shutdown.clone();
    let service = warp::service(routes(state));
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!("connection limit reached; closing a new connection");
            continue;
        };
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            // A client that sends its request and closes its side (fire-and-forget webhook
            // senders) still has its request carried out, instead of cancelled mid-way.
            .half_close(true);
        let connection = builder
            .serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(service.clone()),
            )
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!("connection ended: {err}");
            }
            drop(slot);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(CLOSE_GRACE, graceful.shutdown()).await;
}
