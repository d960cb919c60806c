//! Session routes: create, list, inbox, show, rerun, continue, cancel, events (JSON or SSE),
//! lineage.

use super::errors::{bounded_body, respond, ApiError};
use super::json::{parse_request, reply, Query};
use super::route::{Route, Routes, Scope};
use super::stream::{self, Paging};
use super::{events, sse, AppState, API_BODY_LIMIT};
use bytes::Bytes;
use telecoder_actors::domain::conversation::ContinueRequest;
use telecoder_actors::domain::{
    NewSession, PolicyMode, Session, SessionFilter, SessionId, StatusFilter,
};
use telecoder_actors::publish::PublishRequest;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

/// Inbox size when none is asked for, and the most it returns.
const INBOX_DEFAULT: u32 = 20;
const INBOX_MAX: u32 = 200;

pub fn routes(state: &AppState) -> BoxedFilter<(Response,)> {
    let body = || bounded_body(API_BODY_LIMIT);
    let query = || warp::query::<Query>();
    Routes::new(state)
        .at(Route::post("/api/sessions", Scope::Write).json(), |at| {
            at.and(body()).then(create)
        })
        .at(Route::get("/api/sessions", Scope::Read), |at| {
            at.and(query()).then(list)
        })
        .at(Route::get("/api/inbox", Scope::Read), |at| {
            at.and(query()).then(inbox)
        })
        .handle_id(Route::get("/api/sessions/:id", Scope::Read), show)
        .handle_id(Route::post("/api/sessions/:id/rerun", Scope::Write), rerun)
        .at_id(
            Route::post("/api/sessions/:id/continue", Scope::Write).json(),
            |at| at.and(body()).then(continue_session),
        )
        .handle_id(
            Route::post("/api/sessions/:id/cancel", Scope::Write),
            cancel,
        )
        .at_id(Route::get("/api/sessions/:id/events", Scope::Read), |at| {
            at.and(query())
                .and(warp::header::optional::<String>("accept"))
                .and(warp::header::optional::<String>("last-event-id"))
                .then(events)
        })
        .at_id(Route::get("/api/sessions/:id/lineage", Scope::Read), |at| {
            at.and(query()).then(lineage)
        })
        .at_id(
            Route::post("/api/sessions/:id/publish", Scope::Write).json(),
            |at| at.and(body()).then(publish),
        )
        .build()
}

/// A path id that is not a well-formed session id names no session.
pub fn session_id(raw: &str) -> Result<SessionId, ApiError> {
    SessionId::parse(raw).ok_or_else(|| ApiError::not_found(format!("session {raw} not found")))
}

pub fn parse_policy(text: &str) -> Result<PolicyMode, ApiError> {
    text.parse()
        .map_err(|err: telecoder_actors::domain::policy::UnknownPolicy| {
            ApiError::bad_request(err.to_string())
        })
}

async fn create(state: AppState, body: Result<Bytes, ApiError>) -> Response {
    reply(StatusCode::CREATED, async {
        let request: NewSession = parse_request(&body?)?;
        Ok(state.daemon.create_session(request).await?)
    })
    .await
}

/// The list filters shared by the session list and lineage routes (and the dashboard's list).
pub(super) fn session_filter(query: &Query) -> Result<SessionFilter, ApiError> {
    let text = |key: &str| query.get(key).filter(|v| !v.is_empty()).cloned();
    Ok(SessionFilter {
        status: text("status")
            .map(|s| s.parse::<StatusFilter>().map_err(ApiError::bad_request))
            .transpose()?,
        agent: text("agent"),
        policy: text("policy").as_deref().map(parse_policy).transpose()?,
        parent: text("parent"),
        lineage: text("lineage"),
        limit: page_number(query, "limit", 1)?,
        offset: page_number(query, "offset", 0)?,
    })
}

/// (ext) paging of the list: a whole number of at least `min`; absent means no paging.
fn page_number(query: &Query, name: &str, min: u32) -> Result<Option<u32>, ApiError> {
    let Some(raw) = query.get(name).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    raw.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= min)
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name} must be a whole number from {min} to {}, got '{raw}'",
                u32::MAX
            ))
        })
}

/// Sessions per page of a streamed list.
const SESSION_PAGE: u32 = 32;

/// A session list streamed from the store page by page (keyset paging), honouring the
/// filter's own `limit`/`offset`.
async fn stream_sessions(state: &AppState, filter: SessionFilter) -> Result<Response, ApiError> {
    let paging = Paging {
        page: SESSION_PAGE,
        total: filter.limit.unwrap_or(u32::MAX),
    };
    let store = state.daemon.store().clone();
    let first = store.sessions_page(&filter, None, paging.first()).await?;
    Ok(stream::json_array(
        first,
        paging,
        move |last: &Session, size| {
            let (store, filter, after) = (store.clone(), filter.clone(), last.id.clone());
            async move { store.sessions_page(&filter, Some(after), size).await }
        },
    ))
}

async fn list(state: AppState, query: Query) -> Response {
    respond(
        async {
            let filter = session_filter(&query)?;
            stream_sessions(&state, filter).await
        }
        .await,
    )
}

/// `limit`: default 20, at least 1, anything above 200 means 200.
fn inbox_limit(query: &Query) -> Result<u32, ApiError> {
    let Some(raw) = query.get("limit") else {
        return Ok(INBOX_DEFAULT);
    };
    let digits = raw.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(format!(
            "limit must be a whole number from 1 to {INBOX_MAX}, got '{raw}'"
        )));
    }
    match digits.parse::<u64>() {
        Ok(0) => Err(ApiError::bad_request("limit must be at least 1")),
        Ok(n) => Ok(n.min(u64::from(INBOX_MAX)) as u32),
        // More digits than u64 holds: still "above 200".
        Err(_) => Ok(INBOX_MAX),
    }
}

async fn inbox(state: AppState, query: Query) -> Response {
    respond(
        async {
            let paging = Paging {
                page: SESSION_PAGE,
                total: inbox_limit(&query)?,
            };
            let store = state.daemon.store().clone();
            let first = store.inbox_page(None, paging.first()).await?;
            Ok(stream::json_array(
                first,
                paging,
                move |last: &Session, size| {
                    let (store, after) = (store.clone(), last.id.clone());
                    async move { store.inbox_page(Some(after), size).await }
                },
            ))
        }
        .await,
    )
}

async fn show(raw_id: String, state: AppState) -> Response {
    reply(StatusCode::OK, async {
        let id = session_id(&raw_id)?;
        Ok(state.daemon.session(id.as_str()).await?)
    })
    .await
}

async fn rerun(raw_id: String, state: AppState) -> Response {
    reply(StatusCode::CREATED, async {
        let id = session_id(&raw_id)?;
        Ok(state.daemon.rerun(id.as_str()).await?)
    })
    .await
}

/// (ext, issue 15) The next turn of a finished session's conversation, in its workspace.
async fn continue_session(
    raw_id: String,
    state: AppState,
    body: Result<Bytes, ApiError>,
) -> Response {
    reply(StatusCode::CREATED, async {
        let id = session_id(&raw_id)?;
        let request: ContinueRequest = parse_request(&body?)?;
        Ok(state.daemon.continue_session(id.as_str(), request).await?)
    })
    .await
}

async fn cancel(raw_id: String, state: AppState) -> Response {
    reply(StatusCode::OK, async {
        let id = session_id(&raw_id)?;
        let session = state.daemon.session(id.as_str()).await?;
        if session.status.is_finished() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "session {id} already finished ({})",
                    session.status.as_str()
                ),
            ));
        }
        state.daemon.cancel(id.as_str()).await?;
        Ok(state.daemon.session(id.as_str()).await?)
    })
    .await
}

/// An event cursor: a non-negative event id.
fn event_cursor(raw: Option<&str>, name: &str) -> Result<i64, ApiError> {
    match raw.map(str::trim).filter(|text| !text.is_empty()) {
        None => Ok(0),
        Some(text) => text.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name} must be an event id (a whole number from 0 to {}), got '{text}'",
                i64::MAX
            ))
        }),
    }
}

async fn events(
    raw_id: String,
    state: AppState,
    query: Query,
    accept: Option<String>,
    last_event_id: Option<String>,
) -> Response {
    respond(
        async {
            let id = session_id(&raw_id)?;
            let mut after = event_cursor(query.get("after").map(String::as_str), "after")?;
            let wants_stream = accept.is_some_and(|accept| accept.contains("text/event-stream"));
            if wants_stream {
                let resume = event_cursor(last_event_id.as_deref(), "Last-Event-ID")?;
                after = after.max(resume);
                // 404 before the stream starts, not an empty stream.
                state.daemon.session(id.as_str()).await?;
                return Ok(sse::stream(state, id, after));
            }
            state.daemon.session(id.as_str()).await?;
            let first = state
                .daemon
                .store()
                .event_heads(id.as_str(), after, events::PAGE, events::PAGE_BYTES)
                .await?;
            Ok(events::json_response(state, id, first))
        }
        .await,
    )
}

async fn publish(raw_id: String, state: AppState, body: Result<Bytes, ApiError>) -> Response {
    reply(StatusCode::CREATED, async {
        let id = session_id(&raw_id)?;
        let request: PublishRequest = parse_request(&body?)?;
        Ok(state.daemon.publish(id.as_str(), request).await?)
    })
    .await
}

async fn lineage(raw_id: String, state: AppState, query: Query) -> Response {
    respond(
        async {
            let id = session_id(&raw_id)?;
            state.daemon.session(id.as_str()).await?;
            let mut filter = session_filter(&query)?;
            filter.lineage = Some(id.to_string());
            stream_sessions(&state, filter).await
        }
        .await,
    )
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::http::json::parse_body;

    /// A query map from pairs (shared with the other routes' tests).
    pub(in crate::http) fn query(pairs: &[(&str, &str)]) -> Query {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn inbox_limit_bounds() {
        assert_eq!(inbox_limit(&query(&[])).ok(), Some(20));
        assert_eq!(inbox_limit(&query(&[("limit", "5")])).ok(), Some(5));
        assert_eq!(inbox_limit(&query(&[("limit", "500")])).ok(), Some(200));
        assert_eq!(
            inbox_limit(&query(&[("limit", "99999999999999999999999")])).ok(),
            Some(200)
        );
        for bad in ["0", "-1", "abc", "1.5", ""] {
            assert!(inbox_limit(&query(&[("limit", bad)])).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_must_be_event_ids() {
        assert_eq!(event_cursor(None, "after").ok(), Some(0));
        assert_eq!(event_cursor(Some("42"), "after").ok(), Some(42));
        assert!(event_cursor(Some("-1"), "after").is_err());
        assert!(event_cursor(Some("99999999999999999999"), "after").is_err());
    }

    #[test]
    fn bodies_must_be_objects_with_typed_fields() {
        let parse = |text: &str| parse_body::<NewSession>(&Bytes::from(text.to_owned()));
        assert!(parse("").is_err());
        assert!(parse("null").is_err());
        assert!(parse("[1,2]").is_err());
        assert!(parse("{\"repo\": 5}").is_err());
        assert!(parse("{not json").is_err());
        assert!(parse("{\"repo\": \"/r\", \"prompt\": \"p\"}").is_ok());
    }
}
