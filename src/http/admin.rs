//! Operator routes: `/admin/actors` (the live actor tree), `/admin/status`, `/admin/faults`
//! (fault drills) and `/metrics` (Prometheus). They need the admin scope when tokens are set.

use super::errors::{bounded_body, respond, ApiError};
use super::sessions::{parse_body, reply_json};
use super::{AppState, API_BODY_LIMIT};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

pub fn routes(
    state: impl Filter<Extract = (AppState,), Error = Infallible> + Clone + Send + Sync + 'static,
) -> BoxedFilter<(Response,)> {
    let actors = warp::path!("admin" / "actors")
        .and(warp::get())
        .and(state.clone())
        .then(actors);
    let status = warp::path!("admin" / "status")
        .and(warp::get())
        .and(state.clone())
        .then(status);
    let faults = warp::path!("admin" / "faults")
        .and(warp::post())
        .and(state.clone())
        .and(bounded_body(API_BODY_LIMIT))
        .then(fault);
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(state)
        .then(metrics);
    actors
        .or(status)
        .unify()
        .or(faults)
        .unify()
        .or(metrics)
        .unify()
        .boxed()
}

async fn actors(state: AppState) -> Response {
    respond(
        async {
            let tree = state.daemon.actor_tree().await?;
            Ok(reply_json(StatusCode::OK, &tree))
        }
        .await,
    )
}

async fn status(state: AppState) -> Response {
    respond(
        async {
            let database = state.daemon.database_status().await?;
            let stats = state.daemon.stats().await?;
            Ok(reply_json(
                StatusCode::OK,
                &json!({
                    "version": env!("CARGO_PKG_VERSION"),
                    "uptimeSeconds": state.daemon.uptime().as_secs(),
                    "database": {
                        "path": database.path,
                        "sizeBytes": database.size_bytes,
                        "schemaVersion": database.schema_version,
                    },
                    "sessionsByStatus": database.sessions_by_status,
                    "queueDepth": database.queue_depth,
                    "runningSessions": stats.running_sessions,
                    "activeWatches": stats.active_watches,
                    "storeRestarts": stats.store_restarts,
                    "watchRestarts": stats.watch_restarts,
                    "sessionFailures": stats.session_failures,
                }),
            ))
        }
        .await,
    )
}

#[derive(Deserialize)]
struct FaultBody {
    target: String,
}

async fn fault(state: AppState, body: Result<Bytes, ApiError>) -> Response {
    respond(
        async {
            let body: FaultBody = parse_body(&body?)?;
            state.daemon.inject_fault(&body.target).await?;
            Ok(reply_json(
                StatusCode::ACCEPTED,
                &json!({"injected": body.target}),
            ))
        }
        .await,
    )
}

async fn metrics(state: AppState) -> Response {
    let daemon = &state.daemon;
    if let Ok(stats) = daemon.stats().await {
        daemon
            .metrics()
            .sessions_running
            .set(stats.running_sessions as i64);
    }
    if let Ok(database) = daemon.database_status().await {
        daemon
            .metrics()
            .sessions_queued
            .set(database.queue_depth as i64);
    }
    warp::reply::with_header(
        daemon.metrics().encode(),
        "content-type",
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
    )
    .into_response()
}

/// The route a path belongs to, with ids replaced, so metrics stay low-cardinality.
pub fn route_label(path: &str) -> String {
    let known = [
        "/health",
        "/metrics",
        "/webhooks/github",
        "/admin/actors",
        "/admin/status",
        "/admin/faults",
        "/api/sessions",
        "/api/inbox",
        "/api/watches",
        "/api/watch-events/ci",
        "/api/watch-events/pr",
        "/api/approvals",
    ];
    if known.contains(&path) {
        return path.to_owned();
    }
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["", "api", "sessions", _] => "/api/sessions/:id".into(),
        ["", "api", "sessions", _, action]
            if [
                "rerun", "continue", "cancel", "events", "lineage", "publish",
            ]
            .contains(action) =>
        {
            format!("/api/sessions/:id/{action}")
        }
        ["", "api", "watches", _] => "/api/watches/:id".into(),
        ["", "api", "approvals", _] => "/api/approvals/:id".into(),
        ["", "api", "watches", _, "runs"] => "/api/watches/:id/runs".into(),
        _ => "other".into(),
    }
}
