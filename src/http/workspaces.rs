//! Workspace routes (ext): `GET /api/sessions/:id/diff` (a patch as `text/x-diff`, or
//! `{files, patch}` with `Accept: application/json`), `POST /api/sessions/:id/fetch` (the
//! session's branch into the user's local repository) and `POST /admin/gc {dryRun?}` (the
//! workspace collector).

use super::errors::{bounded_body, respond, ApiError};
use super::json::{parse_body, reply, reply_json};
use super::route::{Route, Routes, Scope};
use super::sessions::session_id;
use super::{AppState, API_BODY_LIMIT};
use bytes::Bytes;
use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

pub fn routes(state: &AppState) -> BoxedFilter<(Response,)> {
    let body = || bounded_body(API_BODY_LIMIT);
    Routes::new(state)
        .at_id(Route::get("/api/sessions/:id/diff", Scope::Read), |at| {
            at.and(warp::header::optional::<String>("accept"))
                .then(diff)
        })
        // Both take an empty body or a JSON object: `Body::None` still refuses a non-JSON one.
        .at_id(Route::post("/api/sessions/:id/fetch", Scope::Write), |at| {
            at.and(body()).then(fetch)
        })
        .at(Route::post("/admin/gc", Scope::Admin), |at| {
            at.and(body()).then(gc)
        })
        .build()
}

/// JSON only when asked for; a patch is what `curl` and `git apply` want.
fn wants_json(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| {
        accept
            .split(',')
            .any(|part| part.trim().starts_with("application/json"))
    })
}

async fn diff(raw_id: String, state: AppState, accept: Option<String>) -> Response {
    respond(
        async {
            let id = session_id(&raw_id)?;
            let diff = state.daemon.diff(id.as_str()).await?;
            if wants_json(accept.as_deref()) {
                return Ok(reply_json(StatusCode::OK, &diff));
            }
            Ok(
                warp::reply::with_header(diff.patch, "content-type", "text/x-diff; charset=utf-8")
                    .into_response(),
            )
        }
        .await,
    )
}

/// `POST /api/sessions/:id/fetch` takes no options: an empty body or a JSON object.
async fn fetch(raw_id: String, state: AppState, body: Result<Bytes, ApiError>) -> Response {
    reply(StatusCode::OK, async {
        let id = session_id(&raw_id)?;
        let _: NoOptions = optional_object(&body?)?;
        Ok(state.daemon.fetch(id.as_str()).await?)
    })
    .await
}

/// `POST /admin/gc`: an empty body is a real pass.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GcBody {
    #[serde(default)]
    dry_run: bool,
}

async fn gc(state: AppState, body: Result<Bytes, ApiError>) -> Response {
    reply(StatusCode::OK, async {
        let request: GcBody = optional_object(&body?)?;
        Ok(state.daemon.collect_workspaces(request.dry_run).await?)
    })
    .await
}

/// An empty body means the defaults; anything else must be the JSON object `T` reads.
fn optional_object<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_body(body)
    }
}

/// The fetch route's (empty) options.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoOptions {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_only_when_asked_for() {
        assert!(wants_json(Some("application/json")));
        assert!(wants_json(Some("text/plain, application/json;q=0.9")));
        assert!(!wants_json(Some("*/*")));
        assert!(!wants_json(Some("text/x-diff")));
        assert!(!wants_json(None));
    }

    #[test]
    fn gc_bodies_are_typed() {
        let parse = |text: &str| optional_object::<GcBody>(&Bytes::from(text.to_owned()));
        assert!(parse("").is_ok_and(|b| !b.dry_run));
        assert!(optional_object::<NoOptions>(&Bytes::from("{}")).is_ok());
        assert!(optional_object::<NoOptions>(&Bytes::from("[]")).is_err());
        assert!(parse("{\"dryRun\": true}").is_ok_and(|b| b.dry_run));
        assert!(parse("{}").is_ok_and(|b| !b.dry_run));
        assert!(parse("{\"dryRun\": \"yes\"}").is_err());
        assert!(parse("{\"dry_run\": true}").is_err());
    }
}
