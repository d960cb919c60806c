//! Native GitHub webhooks: `POST /webhooks/github`. Deliveries are verified (HMAC-SHA256 over
//! the raw body), deduplicated on `X-GitHub-Delivery`, stored, acknowledged at once and routed
//! to the watches in the background.

use super::errors::{bounded_body, respond, ApiError};
use super::sessions::reply_json;
use super::{AppState, WEBHOOK_BODY_LIMIT};
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::convert::Infallible;
use telecoder_actors::domain::{CiEvent, PrEvent, WatchEvent};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

pub fn routes(
    state: impl Filter<Extract = (AppState,), Error = Infallible> + Clone + Send + Sync + 'static,
) -> BoxedFilter<(Response,)> {
    warp::path!("webhooks" / "github")
        .and(warp::post())
        .and(state)
        .and(warp::header::optional::<String>("x-github-event"))
        .and(warp::header::optional::<String>("x-github-delivery"))
        .and(warp::header::optional::<String>("x-hub-signature-256"))
        .and(bounded_body(WEBHOOK_BODY_LIMIT))
        .then(github)
        .boxed()
}

/// Checks `sha256=<hex>` against the body in constant time.
pub fn signature_valid(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_digest) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_digest) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .fold(value, |v, key| &v[*key])
        .as_str()
        .unwrap_or_default()
}

fn id_at(value: &Value, path: &[&str]) -> String {
    let field = path.iter().fold(value, |v, key| &v[*key]);
    match field {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => String::new(),
    }
}

/// The repository a payload is about: `owner/name`, which matches every GitHub URL form.
fn repository(payload: &Value) -> String {
    let full_name = str_at(payload, &["repository", "full_name"]);
    if full_name.is_empty() {
        str_at(payload, &["repository", "clone_url"]).to_owned()
    } else {
        full_name.to_owned()
    }
}

/// Maps a delivery to a watch event; `None` for events watches do not react to.
pub fn map_event(name: &str, payload: &Value) -> Option<WatchEvent> {
    match name {
        "workflow_run" => {
            let run = &payload["workflow_run"];
            if str_at(payload, &["action"]) != "completed" || run.is_null() {
                return None;
            }
            Some(WatchEvent::Ci(CiEvent {
                repo: repository(payload),
                workflow: str_at(run, &["name"]).to_owned(),
                branch: str_at(run, &["head_branch"]).to_owned(),
                run_id: id_at(run, &["id"]),
                run_url: str_at(run, &["html_url"]).to_owned(),
                sha: str_at(run, &["head_sha"]).to_owned(),
                status: str_at(run, &["status"]).to_owned(),
                conclusion: str_at(run, &["conclusion"]).to_owned(),
                summary: String::new(),
            }))
        }
        "pull_request" => {
            let action = str_at(payload, &["action"]);
            let pr = &payload["pull_request"];
            if !matches!(action, "opened" | "reopened" | "synchronize") || pr.is_null() {
                return None;
            }
            Some(WatchEvent::Pr(PrEvent {
                repo: repository(payload),
                pr_number: pr["number"]
                    .as_u64()
                    .or_else(|| payload["number"].as_u64())?,
                title: str_at(pr, &["title"]).to_owned(),
                base: str_at(pr, &["base", "ref"]).to_owned(),
                head: str_at(pr, &["head", "ref"]).to_owned(),
                action: action.to_owned(),
                pr_url: str_at(pr, &["html_url"]).to_owned(),
                head_sha: str_at(pr, &["head", "sha"]).to_owned(),
                body: str_at(pr, &["body"]).to_owned(),
                diff_text: None,
            }))
        }
        _ => None,
    }
}

async fn github(
    state: AppState,
    event: Option<String>,
    delivery: Option<String>,
    signature: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Response {
    let metrics = state.daemon.metrics().clone();
    let result = handle_delivery(state, event, delivery, signature, body).await;
    let outcome = match &result {
        Ok((_, outcome)) => *outcome,
        Err(_) => "rejected",
    };
    metrics.delivery(outcome);
    respond(result.map(|(response, _)| response))
}

/// Verifies, stores and acknowledges one delivery; also says what became of it.
async fn handle_delivery(
    state: AppState,
    event: Option<String>,
    delivery: Option<String>,
    signature: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Result<(Response, &'static str), ApiError> {
    let Some(secret) = state.github_secret.clone() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "GitHub webhooks are disabled: set TELECODER_GITHUB_WEBHOOK_SECRET to the webhook's secret",
        ));
    };
    let body = body?;
    let signature = signature.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing X-Hub-Signature-256 header",
        )
    })?;
    if !signature_valid(secret.as_bytes(), &body, &signature) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "signature does not match the payload (check the webhook secret)",
        ));
    }
    let event = event
        .filter(|e| !e.is_empty())
        .ok_or_else(|| ApiError::bad_request("missing X-GitHub-Event header"))?;
    let delivery = delivery
        .filter(|d| !d.is_empty() && d.len() <= 128)
        .ok_or_else(|| ApiError::bad_request("missing or invalid X-GitHub-Delivery header"))?;
    let payload: Value = serde_json::from_slice(&body)
        .map_err(|err| ApiError::bad_request(format!("payload is not valid JSON: {err}")))?;
    if !payload.is_object() {
        return Err(ApiError::bad_request("payload must be a JSON object"));
    }
    if event == "ping" {
        let pong = json!({"status": "pong", "delivery": delivery});
        return Ok((reply_json(StatusCode::OK, &pong), "ping"));
    }
    let mapped = map_event(&event, &payload);
    let relevant = mapped.is_some();
    if !state
        .daemon
        .accept_delivery(&delivery, &event, mapped)
        .await?
    {
        let duplicate = json!({"status": "duplicate", "delivery": delivery});
        return Ok((reply_json(StatusCode::OK, &duplicate), "duplicate"));
    }
    let status = if relevant { "accepted" } else { "ignored" };
    let answer = json!({"status": status, "delivery": delivery, "event": event});
    Ok((reply_json(StatusCode::ACCEPTED, &answer), status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_github_signatures() {
        // The example from GitHub's documentation on validating webhook deliveries.
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(signature_valid(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            header
        ));
        assert!(!signature_valid(b"wrong secret", b"Hello, World!", header));
        assert!(!signature_valid(
            b"It's a Secret to Everybody",
            b"Hello, World?",
            header
        ));
        assert!(!signature_valid(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            "sha1=abc"
        ));
        assert!(!signature_valid(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            "sha256=zz"
        ));
    }
}
