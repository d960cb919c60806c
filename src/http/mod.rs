//! The HTTP API. Routes parse and validate requests, then hand them to the actor system
//! through [`Daemon`]; no route touches SQLite or processes.

mod auth;
mod errors;
mod sessions;
mod sse;
mod watches;
mod webhooks;

use std::convert::Infallible;
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
        .or(webhooks::routes(with_state(state)))
        .unify();
    gate.and(routes).recover(errors::recover).unify().boxed()
}

/// Serves the API on `listener` until `shutdown` fires.
pub async fn serve(listener: TcpListener, state: AppState) {
    let shutdown = state.shutdown.clone();
    warp::serve(routes(state))
        .incoming(listener)
        .graceful(async move { shutdown.cancelled().await })
        .run()
        .await;
}
