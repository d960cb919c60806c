//! Watch routes (`/api/watches*`) and the seed-compatible event endpoints
//! (`/api/watch-events/ci`, `/api/watch-events/pr`).

use super::errors::{bounded_body, respond, ApiError};
use super::json::{parse_body, parse_request, reply, reply_json, Query};
use super::route::{Route, Routes, Scope};
use super::stream::{self, Paging};
use super::{AppState, API_BODY_LIMIT};
use bytes::Bytes;
use serde_json::{json, Value};
use telecoder_actors::domain::{
    CiEvent, PrEvent, WatchEvent, WatchId, WatchKind, WatchRun, WatchStatus,
};
use telecoder_actors::requests::{NewWatch, WatchPatch};
use telecoder_actors::store::watches::WatchFilter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

type Body = Result<Bytes, ApiError>;

/// Reads a watch event of one kind from a request body.
type EventParser = fn(&Value) -> Result<WatchEvent, ApiError>;

pub fn routes(state: &AppState) -> BoxedFilter<(Response,)> {
    let body = || bounded_body(API_BODY_LIMIT);
    // The two event endpoints differ only in how the body is read.
    let event = |parse: EventParser| {
        move |at: BoxedFilter<(AppState,)>| {
            at.and(warp::query::<Query>())
                .and(body())
                .then(move |state, query, body| route_event(state, query, body, parse))
        }
    };
    Routes::new(state)
        .at(Route::post("/api/watches", Scope::Write).json(), |at| {
            at.and(body()).then(create)
        })
        .at(Route::get("/api/watches", Scope::Read), |at| {
            at.and(warp::query::<Query>()).then(list)
        })
        .handle_id(Route::get("/api/watches/:id", Scope::Read), show)
        .at_id(
            Route::patch("/api/watches/:id", Scope::Write).json(),
            |at| at.and(body()).then(update),
        )
        .handle_id(Route::delete("/api/watches/:id", Scope::Write), delete)
        .handle_id(Route::get("/api/watches/:id/runs", Scope::Read), runs)
        .at(
            Route::post("/api/watch-events/ci", Scope::Write).json(),
            event(|value| ci_event_from(value).map(WatchEvent::Ci)),
        )
        .at(
            Route::post("/api/watch-events/pr", Scope::Write).json(),
            event(|value| pr_event_from(value).map(WatchEvent::Pr)),
        )
        .build()
}

/// A path id that is not a well-formed watch id names no watch.
fn watch_id(raw: &str) -> Result<WatchId, ApiError> {
    WatchId::parse(raw).ok_or_else(|| ApiError::not_found(format!("watch {raw} not found")))
}

fn parse_kind(text: &str) -> Result<WatchKind, ApiError> {
    text.parse().map_err(ApiError::bad_request)
}

fn parse_status(text: &str) -> Result<WatchStatus, ApiError> {
    text.parse().map_err(ApiError::bad_request)
}

async fn create(state: AppState, body: Body) -> Response {
    reply(StatusCode::CREATED, async {
        let request: NewWatch = parse_request(&body?)?;
        Ok(state.daemon.create_watch(request).await?)
    })
    .await
}

async fn list(state: AppState, query: Query) -> Response {
    reply(StatusCode::OK, async {
        let text = |key: &str| query.get(key).filter(|v| !v.is_empty()).cloned();
        let filter = WatchFilter {
            kind: text("kind").as_deref().map(parse_kind).transpose()?,
            status: text("status").as_deref().map(parse_status).transpose()?,
            repo: text("repo"),
        };
        Ok(state.daemon.watches(filter).await?)
    })
    .await
}

async fn show(raw_id: String, state: AppState) -> Response {
    reply(StatusCode::OK, async {
        Ok(state.daemon.watch(&watch_id(&raw_id)?).await?)
    })
    .await
}

async fn update(raw_id: String, state: AppState, body: Body) -> Response {
    reply(StatusCode::OK, async {
        let id = watch_id(&raw_id)?;
        let patch: WatchPatch = parse_body(&body?)?;
        Ok(state.daemon.update_watch(&id, patch).await?)
    })
    .await
}

async fn delete(raw_id: String, state: AppState) -> Response {
    respond(
        async {
            let id = watch_id(&raw_id)?;
            state.daemon.delete_watch(&id).await?;
            Ok(reply_json(
                StatusCode::OK,
                &json!({"id": id.as_str(), "deleted": true}),
            ))
        }
        .await,
    )
}

/// Runs per page of the streamed runs list (a watch collects runs for as long as it lives).
const RUN_PAGE: u32 = 100;

async fn runs(raw_id: String, state: AppState) -> Response {
    respond(
        async {
            let id = watch_id(&raw_id)?;
            state.daemon.watch(&id).await?;
            let paging = Paging {
                page: RUN_PAGE,
                total: u32::MAX,
            };
            let store = state.daemon.store().clone();
            let id = id.to_string();
            let first = store.runs_page(&id, None, paging.first()).await?;
            Ok(stream::json_array(
                first,
                paging,
                move |last: &WatchRun, size| {
                    let (store, id, before) = (store.clone(), id.clone(), last.id);
                    async move { store.runs_page(&id, Some(before), size).await }
                },
            ))
        }
        .await,
    )
}

/// A required string field.
fn text(body: &Value, name: &str) -> Result<String, ApiError> {
    match &body[name] {
        Value::String(text) if !text.trim().is_empty() => Ok(text.clone()),
        Value::Null => Err(ApiError::bad_request(format!("{name} is required"))),
        Value::String(_) => Err(ApiError::bad_request(format!("{name} must not be empty"))),
        _ => Err(ApiError::bad_request(format!("{name} must be a string"))),
    }
}

/// An optional string field (`""` when absent).
fn optional_text(body: &Value, name: &str) -> Result<String, ApiError> {
    match &body[name] {
        Value::Null => Ok(String::new()),
        Value::String(text) => Ok(text.clone()),
        _ => Err(ApiError::bad_request(format!("{name} must be a string"))),
    }
}

/// An identifier GitHub sends as a number and scripts often send as a string.
fn identifier(body: &Value, name: &str) -> Result<String, ApiError> {
    match &body[name] {
        Value::Number(n) if n.as_u64().is_some() => Ok(n.to_string()),
        Value::String(text) if !text.trim().is_empty() && !text.contains(char::is_whitespace) => {
            Ok(text.clone())
        }
        Value::Null => Err(ApiError::bad_request(format!("{name} is required"))),
        _ => Err(ApiError::bad_request(format!(
            "{name} must be a non-negative whole number or an id string"
        ))),
    }
}

fn json_object(body: &Body) -> Result<Value, ApiError> {
    let bytes = body
        .as_ref()
        .map_err(|err| ApiError::new(err.status, err.message.clone()))?;
    parse_body::<Value>(bytes)
}

/// A pull-request number: a positive whole number (its digits as a string will do too).
fn pr_number(body: &Value, name: &str) -> Result<u64, ApiError> {
    identifier(body, name)?
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad_request(format!("{name} must be a positive whole number")))
}

/// An optional string field that stays absent (`null`) when not given.
fn nullable_text(body: &Value, name: &str) -> Result<Option<String>, ApiError> {
    match &body[name] {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text.clone())),
        _ => Err(ApiError::bad_request(format!("{name} must be a string"))),
    }
}

/// An optional boolean field (`false` when absent).
fn flag(body: &Value, name: &str) -> Result<bool, ApiError> {
    match &body[name] {
        Value::Null => Ok(false),
        Value::Bool(flag) => Ok(*flag),
        _ => Err(ApiError::bad_request(format!(
            "{name} must be true or false"
        ))),
    }
}

/// The fields of an event body, checked in the order they are read (the first bad one is the
/// error) and gathered into the event's own JSON, which the event type then reads.
struct Fields<'a> {
    body: &'a Value,
    checked: serde_json::Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn of(body: &'a Value) -> Self {
        Self {
            body,
            checked: serde_json::Map::new(),
        }
    }

    /// Reads each of `names` with `read`.
    fn read<T: Into<Value>>(
        mut self,
        names: &[&str],
        read: fn(&Value, &str) -> Result<T, ApiError>,
    ) -> Result<Self, ApiError> {
        for name in names {
            let value = read(self.body, name)?;
            self.checked.insert((*name).to_owned(), value.into());
        }
        Ok(self)
    }

    /// The event, once every field it has is read.
    fn event<T: serde::de::DeserializeOwned>(self) -> Result<T, ApiError> {
        serde_json::from_value(Value::Object(self.checked)).map_err(|err| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("an event field was not read: {err}"),
            )
        })
    }
}

pub fn ci_event_from(body: &Value) -> Result<CiEvent, ApiError> {
    Fields::of(body)
        .read(&["repo", "workflow", "branch"], text)?
        .read(&["workflowPath"], optional_text)?
        .read(&["runId"], identifier)?
        .read(
            &["runUrl", "sha", "status", "conclusion", "summary"],
            optional_text,
        )?
        .event()
}

pub fn pr_event_from(body: &Value) -> Result<PrEvent, ApiError> {
    Fields::of(body)
        .read(&["prNumber"], pr_number)?
        .read(&["diffText"], nullable_text)?
        .read(&["repo", "title", "base", "head"], text)?
        .read(&["action", "prUrl", "headSha", "body"], optional_text)?
        .read(&["draft"], flag)?
        .event()
}

/// Parses an event body and routes the event to every watch; 201 with the sessions started.
/// (ext) `?explain=true` answers `{triggered, skipped}` instead, `skipped` saying why each
/// watch of the event's kind and repository started nothing.
async fn route_event(state: AppState, query: Query, body: Body, parse: EventParser) -> Response {
    respond(
        async {
            let explain = match query.get("explain").map(String::as_str) {
                None | Some("false") | Some("0") => false,
                Some("true") | Some("1") | Some("") => true,
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "explain must be true or false, got '{other}'"
                    )))
                }
            };
            let event = parse(&json_object(&body)?)?;
            let routed = state.daemon.route_event(event).await?;
            Ok(if explain {
                reply_json(StatusCode::CREATED, &routed)
            } else {
                reply_json(StatusCode::CREATED, &routed.triggered)
            })
        }
        .await,
    )
}
