//! Operator routes: `/admin/actors` (the live actor tree), `/admin/status`, `/admin/faults`
//! (fault drills), `/admin/notify-test` (a test notification to every target) and `/metrics`
//! (Prometheus). They need the admin scope when tokens are set.

use super::errors::{bounded_body, respond, ApiError};
use super::json::{parse_body, reply, reply_json};
use super::route::{Route, Routes, Scope};
use super::{AppState, API_BODY_LIMIT};
use bytes::Bytes;
use serde_json::json;
use telecoder_actors::requests::FaultRequest;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

pub fn routes(state: &AppState) -> BoxedFilter<(Response,)> {
    Routes::new(state)
        .handle(Route::get("/admin/actors", Scope::Admin), actors)
        .handle(Route::get("/admin/status", Scope::Admin), status)
        .at(Route::post("/admin/faults", Scope::Admin).json(), |at| {
            at.and(bounded_body(API_BODY_LIMIT)).then(fault)
        })
        .handle(Route::post("/admin/notify-test", Scope::Admin), notify_test)
        .handle(Route::get("/metrics", Scope::Admin), metrics)
        .build()
}

async fn actors(state: AppState) -> Response {
    reply(StatusCode::OK, async {
        Ok(state.daemon.actor_tree().await?)
    })
    .await
}

async fn status(state: AppState) -> Response {
    respond(
        async {
            let database = state.daemon.database_status().await?;
            let stats = state.daemon.stats().await?;
            let workspaces = state.daemon.workspace_usage().await?;
            let settings = state.daemon.settings();
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
                    "workspaces": {
                        "count": workspaces.workspaces,
                        "bytes": workspaces.workspace_bytes,
                        "archives": workspaces.archives,
                        "archiveBytes": workspaces.archive_bytes,
                        "mirrors": workspaces.mirrors,
                        "mirrorBytes": workspaces.mirror_bytes,
                        "retentionSeconds": settings.workspace_retention.as_secs(),
                        "maxBytes": settings.workspace_max_bytes,
                    },
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

async fn fault(state: AppState, body: Result<Bytes, ApiError>) -> Response {
    respond(
        async {
            let body: FaultRequest = parse_body(&body?)?;
            state.daemon.inject_fault(&body.target).await?;
            Ok(reply_json(
                StatusCode::ACCEPTED,
                &json!({"injected": body.target}),
            ))
        }
        .await,
    )
}

/// `POST /admin/notify-test`: one test notification per target, each one's answer.
async fn notify_test(state: AppState) -> Response {
    respond(
        async {
            let results = state.daemon.notifier().test().await?;
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
    // Sets the workspace gauges as a side effect.
    let _ = daemon.workspace_usage().await;
    // Both gauges as recorded, so they agree with what the API shows at the same moment
    // (a session actor lives on for a moment after its session is finished).
    if let Ok(database) = daemon.database_status().await {
        let running = database.sessions_by_status.get("running").copied();
        let metrics = daemon.metrics();
        metrics.sessions_running.set(running.unwrap_or(0) as i64);
        metrics.sessions_queued.set(database.queue_depth as i64);
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
