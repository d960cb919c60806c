//! Approval routes (policy `ask`, issue 15): list what waits for a person, show one, answer it.
//! The answer is recorded before the agent hears it; an approval is answered once (409 after).

use super::errors::{bounded_body, ApiError};
use super::json::{parse_body, reply, Query};
use super::route::{Route, Routes, Scope};
use super::{AppState, API_BODY_LIMIT};
use bytes::Bytes;
use telecoder_actors::domain::approval::Answer;
use telecoder_actors::domain::{ApprovalFilter, ApprovalStatus, SessionId};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

/// Approvals listed when no limit is asked for, and the most one page holds.
const LIST_DEFAULT: u32 = 100;
const LIST_MAX: u32 = 1000;

pub fn routes(state: &AppState) -> BoxedFilter<(Response,)> {
    Routes::new(state)
        .at(Route::get("/api/approvals", Scope::Read), |at| {
            at.and(warp::query::<Query>()).then(list)
        })
        .handle_id(Route::get("/api/approvals/:id", Scope::Read), show)
        .at_id(
            Route::post("/api/approvals/:id", Scope::Write).json(),
            |at| {
                at.and(warp::header::optional::<String>("authorization"))
                    .and(warp::header::optional::<String>("user-agent"))
                    .and(warp::header::optional::<String>("cookie"))
                    .and(bounded_body(API_BODY_LIMIT))
                    .then(answer)
            },
        )
        .build()
}

/// Approval ids have the session id's form; anything else names no approval.
fn approval_id(raw: &str) -> Result<String, ApiError> {
    SessionId::parse(raw)
        .map(|id| id.to_string())
        .ok_or_else(|| ApiError::not_found(format!("approval {raw} not found")))
}

fn filter(query: &Query) -> Result<ApprovalFilter, ApiError> {
    let text = |key: &str| query.get(key).filter(|v| !v.trim().is_empty());
    let status = text("status")
        .map(|s| s.parse::<ApprovalStatus>().map_err(ApiError::bad_request))
        .transpose()?;
    let session_id = text("session")
        .map(|raw| {
            SessionId::parse(raw.trim())
                .map(|id| id.to_string())
                .ok_or_else(|| {
                    ApiError::bad_request(format!("session must be a session id, got '{raw}'"))
                })
        })
        .transpose()?;
    let limit = match text("limit") {
        None => LIST_DEFAULT,
        Some(raw) => raw
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .map(|n| n.min(LIST_MAX))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "limit must be a whole number from 1 to {LIST_MAX}, got '{raw}'"
                ))
            })?,
    };
    Ok(ApprovalFilter {
        status,
        session_id,
        limit,
    })
}

async fn list(state: AppState, query: Query) -> Response {
    reply(StatusCode::OK, async {
        Ok(state.daemon.approvals(filter(&query)?).await?)
    })
    .await
}

async fn show(raw_id: String, state: AppState) -> Response {
    reply(StatusCode::OK, async {
        Ok(state.daemon.approval(&approval_id(&raw_id)?).await?)
    })
    .await
}

async fn answer(
    raw_id: String,
    state: AppState,
    authorization: Option<String>,
    user_agent: Option<String>,
    cookie: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Response {
    reply(StatusCode::OK, async {
        let id = approval_id(&raw_id)?;
        let answer: Answer = parse_body(&body?)?;
        // (dashboard) A browser's login names itself; tokens and the CLI as before.
        let by = super::ui::login_requester(&state, authorization.as_deref(), cookie.as_deref())
            .unwrap_or_else(|| {
                super::auth::requester(
                    &state.tokens,
                    authorization.as_deref(),
                    user_agent.as_deref(),
                )
            });
        Ok(state.daemon.answer_approval(&id, answer, &by).await?)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::super::sessions::tests::query;
    use super::*;

    #[test]
    fn list_filters_are_checked() {
        let parsed = filter(&query(&[("status", "pending"), ("limit", "5000")])).expect("valid");
        assert_eq!(parsed.status, Some(ApprovalStatus::Pending));
        assert_eq!(parsed.limit, LIST_MAX);
        assert_eq!(filter(&query(&[])).expect("valid").limit, LIST_DEFAULT);
        for bad in [
            ("status", "approved"),
            ("limit", "0"),
            ("limit", "x"),
            ("session", "../etc"),
        ] {
            assert!(filter(&query(&[bad])).is_err(), "{bad:?}");
        }
        assert!(approval_id("1234abcd").is_ok());
        assert!(approval_id("../../x").is_err());
    }
}
