//! Operator routes: `/admin/actors` (the live actor tree), `/admin/status`, `/admin/faults`
//! (fault drills), `/admin/notify-test` (a test notification to every target) and `/metrics`
//! (Prometheus). They need the admin scope when tokens are set.

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
    let notify_test = warp::path!("admin" / "notify-test")
        .and(warp::post())
        .and(state.clone())
        .and(bounded_body(API_BODY_LIMIT))
        .then(notify_test);
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(state)
        .then(metrics);
    actors
        .or(status)
        .unify()
        .or(faults)
        .unify()
        .or(notify_test)
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
            let notifier = state.daemon.notifier();
            let outbox = notifier.counts().await?;
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
                    "notifications": {
                        "targets": notifier.targets().len(),
                        "pending": outbox.pending,
                        "failed": outbox.failed,
                        "sent": outbox.sent,
                    },
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

/// `POST /admin/notify-test`: one test notification per target, each one's answer. The body,
/// if any, is ignored.
async fn notify_test(state: AppState, body: Result<Bytes, ApiError>) -> Response {
    respond(
        async {
            body?;
            let results = state.daemon.notify_test().await?;
            let ok = results.iter().all(|r| r.ok);
            Ok(reply_json(
                StatusCode::OK,
                &json!({"ok": ok, "results": results}),
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
    if let Ok(outbox) = daemon.notifier().counts().await {
        let metrics = daemon.metrics();
        metrics.notify_outbox_pending.set(outbox.pending as i64);
        metrics.notify_outbox_failed.set(outbox.failed as i64);
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
        "/admin/notify-test",
        "/api/sessions",
        "/api/inbox",
        "/api/watches",
        "/api/watch-events/ci",
        "/api/watch-events/pr",
    ];
    if known.contains(&path) {
        return path.to_owned();
    }
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["", "api", "sessions", _] => "/api/sessions/:id".into(),
        ["", "api", "sessions", _, action]
            if ["rerun", "cancel", "events", "lineage", "publish"].contains(action) =>
        {
            format!("/api/sessions/:id/{action}")
        }
        ["", "api", "watches", _] => "/api/watches/:id".into(),
        ["", "api", "watches", _, "runs"] => "/api/watches/:id/runs".into(),
        _ => "other".into(),
    }
}
