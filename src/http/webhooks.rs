//! Native GitHub webhooks: `POST /webhooks/github`. Deliveries are verified (HMAC-SHA256 over
//! the raw body), deduplicated on `X-GitHub-Delivery`, stored, acknowledged at once and routed
//! to the watches in the background.
//!
//! Bytes from the network are unauthenticated until the signature checks out, so the headers
//! are judged before any of the body is read (no secret, no or a malformed signature: refused
//! at once), and bodies still being verified share one memory budget and one deadline.

use super::errors::{respond, too_large, ApiError, DRAIN_LIMIT};
use super::json::reply_json;
use super::{AppState, WEBHOOK_BODY_LIMIT};
use bytes::Buf;
use futures_util::StreamExt;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use telecoder_actors::domain::watch::REVIEWABLE_PR_ACTIONS;
use telecoder_actors::domain::{CiEvent, PrEvent, WatchEvent};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

/// Memory all bodies whose signature is not yet checked may hold together. A single delivery
/// of the largest size GitHub sends fits; twenty slow strangers do not get twenty of them.
const UNVERIFIED_BODY_BUDGET: usize = 32 * 1024 * 1024;
/// Unverified bodies are kept in segments of this size, each paid for before it is allocated.
const SEGMENT: usize = 64 * 1024;
/// A body must have arrived this long after its headers. GitHub gives up on a delivery after
/// 10 s anyway, so a slower body is not GitHub's.
const BODY_DEADLINE: Duration = Duration::from_secs(10);

pub fn routes(
    state: impl Filter<Extract = (AppState,), Error = Infallible> + Clone + Send + Sync + 'static,
) -> BoxedFilter<(Response,)> {
    let budget = Arc::new(Semaphore::new(UNVERIFIED_BODY_BUDGET));
    warp::path!("webhooks" / "github")
        .and(warp::post())
        .and(state)
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(move |state, headers, body| github(state, budget.clone(), headers, body))
        .boxed()
}

/// How the payload is encoded: GitHub lets each webhook pick one of the two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ContentType {
    Json,
    /// `application/x-www-form-urlencoded`: the JSON is the form field `payload`.
    Form,
}

/// What the headers of a delivery say, checked before a byte of its body is read.
#[derive(Debug)]
struct Envelope {
    event: String,
    delivery: String,
    signature: [u8; 32],
    content_type: ContentType,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
}

/// `sha256=<64 hex digits>`, the only form GitHub sends.
fn parse_signature(header: &str) -> Option<[u8; 32]> {
    let digest = header.trim().strip_prefix("sha256=")?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(digest, &mut bytes).ok()?;
    Some(bytes)
}

fn content_type(headers: &HeaderMap) -> Result<ContentType, ApiError> {
    let Some(value) = header(headers, "content-type") else {
        return Ok(ContentType::Json);
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "" | "application/json" => Ok(ContentType::Json),
        "application/x-www-form-urlencoded" => Ok(ContentType::Form),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type {other} is not one GitHub sends (application/json or \
                 application/x-www-form-urlencoded)"
            ),
        )),
    }
}

/// Refuses a delivery on its headers alone: a missing or malformed signature (401), a content
/// type GitHub never sends (415), a missing event or delivery id (400), an announced body that
/// is far too large (413).
fn check_headers(headers: &HeaderMap) -> Result<Envelope, ApiError> {
    let signature = header(headers, "x-hub-signature-256").ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing X-Hub-Signature-256 header",
        )
    })?;
    let signature = parse_signature(signature).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "malformed X-Hub-Signature-256 header (expected sha256=<64 hex digits>)",
        )
    })?;
    let content_type = content_type(headers)?;
    let event = header(headers, "x-github-event")
        .filter(|e| !e.is_empty())
        .ok_or_else(|| ApiError::bad_request("missing X-GitHub-Event header"))?;
    let delivery = header(headers, "x-github-delivery")
        .filter(|d| !d.is_empty() && d.len() <= 128)
        .ok_or_else(|| ApiError::bad_request("missing or invalid X-GitHub-Delivery header"))?;
    if header(headers, "content-length")
        .and_then(|length| length.parse::<u64>().ok())
        .is_some_and(|length| length > DRAIN_LIMIT as u64)
    {
        return Err(too_large(WEBHOOK_BODY_LIMIT));
    }
    Ok(Envelope {
        event: event.to_owned(),
        delivery: delivery.to_owned(),
        signature,
        content_type,
    })
}

/// Budget held by one unverified body; given back when it is dropped.
struct Reservation {
    budget: Arc<Semaphore>,
    held: usize,
}

impl Reservation {
    /// Waits for `bytes` more of the budget.
    async fn grow(&mut self, bytes: usize) -> Result<(), ApiError> {
        let wanted = u32::try_from(bytes).unwrap_or(u32::MAX);
        let permit = self.budget.acquire_many(wanted).await.map_err(|_| busy())?;
        permit.forget();
        self.held += wanted as usize;
        Ok(())
    }

    fn release(&mut self) {
        self.budget.add_permits(std::mem::take(&mut self.held));
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

fn busy() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many unverified webhook bodies are arriving at once; try the delivery again",
    )
}

/// A body on its way in: kept in budgeted segments and hashed as it arrives, so nothing is
/// copied or trusted before the signature is known to match.
struct Unverified {
    segments: Vec<Vec<u8>>,
    mac: Hmac<Sha256>,
    seen: usize,
    reservation: Reservation,
}

impl Unverified {
    fn new(secret: &[u8], budget: Arc<Semaphore>) -> Result<Self, ApiError> {
        let mac = Hmac::<Sha256>::new_from_slice(secret)
            .map_err(|_| ApiError::new(StatusCode::FORBIDDEN, "unusable webhook secret"))?;
        Ok(Self {
            segments: Vec::new(),
            mac,
            seen: 0,
            reservation: Reservation { budget, held: 0 },
        })
    }

    /// Takes one chunk; past the size limit the rest is only counted (and dropped), so the
    /// client still gets its 413 instead of a reset connection.
    async fn push(&mut self, mut chunk: impl Buf, deadline: Instant) -> Result<(), ApiError> {
        self.seen += chunk.remaining();
        if self.seen > WEBHOOK_BODY_LIMIT {
            if self.seen > DRAIN_LIMIT {
                return Err(too_large(WEBHOOK_BODY_LIMIT));
            }
            self.segments = Vec::new();
            self.reservation.release();
            chunk.advance(chunk.remaining());
            return Ok(());
        }
        while chunk.has_remaining() {
            if self.segments.last().is_none_or(|s| s.len() == SEGMENT) {
                tokio::time::timeout_at(deadline, self.reservation.grow(SEGMENT))
                    .await
                    .map_err(|_| busy())??;
                self.segments.push(Vec::with_capacity(SEGMENT));
            }
            let last = self.segments.len() - 1;
            let segment = &mut self.segments[last];
            let piece = chunk.chunk();
            let piece = &piece[..piece.len().min(SEGMENT - segment.len())];
            self.mac.update(piece);
            segment.extend_from_slice(piece);
            let taken = piece.len();
            chunk.advance(taken);
        }
        Ok(())
    }

    /// The whole body, once it is known to carry `signature`.
    fn verify(self, signature: &[u8; 32]) -> Result<Vec<u8>, ApiError> {
        if self.seen > WEBHOOK_BODY_LIMIT {
            return Err(too_large(WEBHOOK_BODY_LIMIT));
        }
        self.mac.verify_slice(signature).map_err(|_| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "signature does not match the payload (check the webhook secret)",
            )
        })?;
        Ok(self.segments.concat())
    }
}

/// Reads and verifies the body within [`BODY_DEADLINE`] and the shared budget.
async fn read_verified<S, B>(
    stream: S,
    secret: &[u8],
    signature: &[u8; 32],
    budget: Arc<Semaphore>,
) -> Result<Vec<u8>, ApiError>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let deadline = Instant::now() + BODY_DEADLINE;
    let mut body = Unverified::new(secret, budget)?;
    let mut stream = std::pin::pin!(stream);
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive within {} s",
                        BODY_DEADLINE.as_secs()
                    ),
                )
            })?;
        let Some(chunk) = next else {
            break;
        };
        let chunk = chunk
            .map_err(|err| ApiError::bad_request(format!("cannot read the request body: {err}")))?;
        body.push(chunk, deadline).await?;
    }
    body.verify(signature)
}

/// The JSON document of a verified body in either content type.
fn payload(content_type: ContentType, body: &[u8]) -> Result<Value, ApiError> {
    let form_field;
    let json: &[u8] = match content_type {
        ContentType::Json => body,
        ContentType::Form => {
            form_field = form_urlencoded::parse(body)
                .find(|(key, _)| key == "payload")
                .map(|(_, value)| value.into_owned())
                .ok_or_else(|| {
                    ApiError::bad_request("form-encoded delivery has no payload field")
                })?;
            form_field.as_bytes()
        }
    };
    let payload: Value = serde_json::from_slice(json)
        .map_err(|err| ApiError::bad_request(format!("payload is not valid JSON: {err}")))?;
    if !payload.is_object() {
        return Err(ApiError::bad_request("payload must be a JSON object"));
    }
    Ok(payload)
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .fold(value, |v, key| &v[*key])
        .as_str()
        .unwrap_or_default()
}

/// The first of `candidates` that is a non-empty string.
fn first_str<'a>(value: &'a Value, candidates: &[&[&str]]) -> &'a str {
    candidates
        .iter()
        .map(|path| str_at(value, path))
        .find(|text| !text.is_empty())
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
    first_str(
        payload,
        &[&["repository", "full_name"], &["repository", "clone_url"]],
    )
    .to_owned()
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
                // GitHub may leave the run's name empty; the workflow's is then the name.
                workflow: first_str(payload, &[&["workflow_run", "name"], &["workflow", "name"]])
                    .to_owned(),
                workflow_path: first_str(
                    payload,
                    &[&["workflow", "path"], &["workflow_run", "path"]],
                )
                .to_owned(),
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
            if !REVIEWABLE_PR_ACTIONS.contains(&action) || pr.is_null() {
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
                draft: pr["draft"].as_bool().unwrap_or(false),
            }))
        }
        _ => None,
    }
}

async fn github<S, B>(
    state: AppState,
    budget: Arc<Semaphore>,
    headers: HeaderMap,
    body: S,
) -> Response
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let metrics = state.daemon.metrics().clone();
    let result = handle_delivery(state, budget, headers, body).await;
    let outcome = match &result {
        Ok((_, outcome)) => *outcome,
        Err(_) => "rejected",
    };
    metrics.delivery(outcome);
    let refused_midway = result.as_ref().is_err_and(|err| {
        matches!(
            err.status,
            StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE
        )
    });
    let mut response = respond(result.map(|(response, _)| response));
    if refused_midway {
        // The rest of the body is never read; the connection cannot be reused.
        response.headers_mut().insert(
            warp::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
    }
    response
}

/// Verifies, stores and acknowledges one delivery; also says what became of it.
async fn handle_delivery<S, B>(
    state: AppState,
    budget: Arc<Semaphore>,
    headers: HeaderMap,
    body: S,
) -> Result<(Response, &'static str), ApiError>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let Some(secret) = state.github_secret.clone() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "GitHub webhooks are disabled: set TELECODER_GITHUB_WEBHOOK_SECRET to the webhook's secret",
        ));
    };
    let envelope = check_headers(&headers)?;
    let body = read_verified(body, secret.as_bytes(), &envelope.signature, budget).await?;
    let payload = payload(envelope.content_type, &body)?;
    drop(body);
    let Envelope {
        event, delivery, ..
    } = envelope;
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

    /// The example from GitHub's documentation on validating webhook deliveries.
    const DOC_SECRET: &[u8] = b"It's a Secret to Everybody";
    const DOC_HEADER: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    async fn verify(
        secret: &[u8],
        chunks: &[&'static [u8]],
        header: &str,
    ) -> Result<Vec<u8>, ApiError> {
        let signature =
            parse_signature(header).ok_or_else(|| ApiError::bad_request("malformed"))?;
        let stream = futures_util::stream::iter(
            chunks
                .iter()
                .map(|chunk| Ok::<_, warp::Error>(bytes::Bytes::from_static(chunk))),
        );
        let budget = Arc::new(Semaphore::new(UNVERIFIED_BODY_BUDGET));
        read_verified(stream, secret, &signature, budget.clone()).await
    }

    #[tokio::test]
    async fn verifies_github_signatures_over_the_body_as_it_arrives() {
        let body = verify(DOC_SECRET, &[b"Hello, ", b"World!"], DOC_HEADER)
            .await
            .expect("valid");
        assert_eq!(body, b"Hello, World!");
        let wrong_secret = verify(b"wrong secret", &[b"Hello, World!"], DOC_HEADER).await;
        assert_eq!(
            wrong_secret.expect_err("forged").status,
            StatusCode::UNAUTHORIZED
        );
        let tampered = verify(DOC_SECRET, &[b"Hello, World?"], DOC_HEADER).await;
        assert_eq!(
            tampered.expect_err("tampered").status,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn only_well_formed_signatures_are_read() {
        assert!(parse_signature(DOC_HEADER).is_some());
        for malformed in [
            "sha1=abc",
            "sha256=zz",
            "sha256=",
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1700",
        ] {
            assert!(parse_signature(malformed).is_none(), "{malformed}");
        }
    }

    #[tokio::test]
    async fn the_budget_is_given_back_whatever_becomes_of_a_body() {
        let budget = Arc::new(Semaphore::new(UNVERIFIED_BODY_BUDGET));
        let signature = parse_signature(DOC_HEADER).expect("signature");
        let big = vec![b'x'; 3 * SEGMENT + 5];
        let stream = futures_util::stream::iter([Ok::<_, warp::Error>(bytes::Bytes::from(big))]);
        let refused = read_verified(stream, DOC_SECRET, &signature, budget.clone()).await;
        assert_eq!(
            refused.expect_err("forged").status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(budget.available_permits(), UNVERIFIED_BODY_BUDGET);

        // A sender that stops mid-way holds its part of the budget until the deadline only.
        tokio::time::pause();
        let stalled = futures_util::stream::iter([Ok::<_, warp::Error>(bytes::Bytes::from(vec![
                b'x';
                SEGMENT + 1
            ]))])
        .chain(futures_util::stream::pending());
        let held = budget.clone();
        let reader =
            tokio::spawn(async move { read_verified(stalled, DOC_SECRET, &signature, held).await });
        tokio::time::sleep(BODY_DEADLINE / 2).await;
        assert_eq!(
            budget.available_permits(),
            UNVERIFIED_BODY_BUDGET - 2 * SEGMENT
        );
        let timed_out = reader.await.expect("joined");
        assert_eq!(
            timed_out.expect_err("late").status,
            StatusCode::REQUEST_TIMEOUT
        );
        assert_eq!(budget.available_permits(), UNVERIFIED_BODY_BUDGET);
    }

    #[test]
    fn form_deliveries_carry_the_json_in_payload() {
        let form = format!(
            "payload={}",
            form_urlencoded::byte_serialize(br#"{"zen":"Keep it logically awesome & simple."}"#)
                .collect::<String>()
        );
        let value = payload(ContentType::Form, form.as_bytes()).expect("form");
        assert_eq!(value["zen"], "Keep it logically awesome & simple.");
        assert!(payload(ContentType::Form, b"other=1").is_err());
        assert!(payload(ContentType::Json, form.as_bytes()).is_err());
    }

    #[test]
    fn an_empty_run_name_falls_back_to_the_workflow() {
        let payload = json!({
            "action": "completed",
            "repository": {"full_name": "octo-org/octo-repo"},
            "workflow": {"name": "test", "path": ".github/workflows/test.yml"},
            "workflow_run": {"name": "", "id": 1, "head_branch": "main", "status": "completed", "conclusion": "failure"},
        });
        let Some(WatchEvent::Ci(ci)) = map_event("workflow_run", &payload) else {
            panic!("a completed run maps to a CI event");
        };
        assert_eq!(ci.workflow, "test");
        assert_eq!(ci.workflow_path, ".github/workflows/test.yml");
    }
}
