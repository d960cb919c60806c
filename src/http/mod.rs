//! The HTTP API. Routes parse and validate requests, then hand them to the actor system
//! through [`Daemon`]; no route touches SQLite or processes.
//!
//! Each route declares its method, path, scope and body beside its filter (`route`); the
//! browser checks (`browser`), the token gate (`auth`) and the metrics read that declaration.
//! Connections are served under the limits in `conn`; large answers are streamed from the
//! store page by page (`stream`, `events`, `sse`).

mod admin;
mod approvals;
mod auth;
pub mod browser;
mod conn;
mod errors;
mod events;
mod json;
mod route;
mod sessions;
mod sse;
mod stream;
mod ui;
mod watches;
mod webhooks;
mod wire;
mod workspaces;

use route::{declare, Route, RouteLabel, Routes, Scope};
use std::convert::Infallible;
use std::sync::Arc;
use telecoder_actors::Daemon;
use tokio::net::TcpListener;
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
    /// Which foreign origins and hosts the browser checks let through.
    pub browser: Arc<browser::BrowserPolicy>,
    /// The dashboard's logins (cookies standing in for a token), in memory only.
    pub logins: Arc<ui::Logins>,
}

fn with_state(state: AppState) -> impl Filter<Extract = (AppState,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// Every route of the API, with JSON errors for anything that does not match.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let health = declare(&state, Route::get("/health", Scope::Public), |at| {
        at.map(|| warp::reply::json(&serde_json::json!({"status": "ok"})).into_response())
    });
    // GitHub deliveries authenticate with their signature and may be form-encoded.
    let github = declare(
        &state,
        Route::post("/webhooks/github", Scope::Public).own_body(),
        |at| at.and(webhooks::routes(with_state(state.clone()))),
    );
    let app = Routes::new(&state)
        .or(health)
        .or(sessions::routes(&state))
        .or(watches::routes(&state))
        .or(approvals::routes(&state))
        .or(github)
        .or(admin::routes(&state))
        .or(workspaces::routes(&state))
        .or(ui::routes(&state))
        .or(route::fallback(state.clone()))
        .build()
        .recover(errors::recover)
        .unify();
    let metrics = state.daemon.metrics().clone();
    unread_body_closes()
        .and(app)
        .map(move |facts: BodyFacts, response: Response| {
            let label = response
                .extensions()
                .get::<RouteLabel>()
                .map_or("other", |label| label.0);
            metrics.http(label, response.status().as_u16());
            close_if_unread(facts, response)
        })
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

/// Serves the API on `listener` until `state.shutdown` fires, under the connection limits of
/// [`conn::LIMITS`].
pub async fn serve(listener: TcpListener, state: AppState) {
    let shutdown = state.shutdown.clone();
    conn::serve(listener, routes(state), shutdown, conn::LIMITS).await;
}
