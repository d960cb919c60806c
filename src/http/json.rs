//! JSON in and out of the routes: request bodies parsed into the API's request types (the same
//! types the CLI sends), replies, and the few checks every route shares.

use super::errors::{respond, ApiError};
use bytes::Bytes;
use std::collections::HashMap;
use std::future::Future;
use telecoder_actors::domain::conversation::ContinueRequest;
use telecoder_actors::domain::NewSession;
use telecoder_actors::publish::PublishRequest;
use telecoder_actors::requests::NewWatch;
use warp::http::StatusCode;
use warp::reply::{json, with_status, Response};
use warp::Reply;

/// A route's query string.
pub type Query = HashMap<String, String>;

pub fn reply_json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    with_status(json(value), status).into_response()
}

/// The answer of a handler whose work yields one JSON value: that value with `status`, or the
/// work's error as its JSON error reply.
pub async fn reply<T: serde::Serialize>(
    status: StatusCode,
    work: impl Future<Output = Result<T, ApiError>>,
) -> Response {
    respond(work.await.map(|value| reply_json(status, &value)))
}

/// Parses a JSON object body into `T`, with messages a person can act on.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("request body must be a JSON object"));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|err| ApiError::bad_request(format!("request body is not valid JSON: {err}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("request body must be a JSON object"));
    }
    if let Some(field) = field_with_nul(&value, "") {
        return Err(ApiError::bad_request(format!(
            "{field} contains a NUL character, which no prompt, path or git name can carry"
        )));
    }
    serde_json::from_value(value)
        .map_err(|err| ApiError::bad_request(format!("invalid request body: {err}")))
}

/// The first string (or key) holding a NUL, by its path in the document: every text field
/// of the API ends up in an argv, a path or a git argument, where NUL cannot go.
fn field_with_nul(value: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    let here = || {
        if path.is_empty() {
            "the body".to_owned()
        } else {
            path.to_owned()
        }
    };
    match value {
        Value::String(text) => text.contains('\0').then(here),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| field_with_nul(item, &format!("{}[{i}]", here()))),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let name = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if key.contains('\0') {
                Some(here())
            } else {
                field_with_nul(item, &name)
            }
        }),
        _ => None,
    }
}

/// A request body that cannot do without some of its text fields.
pub trait Request: serde::de::DeserializeOwned {
    /// Each text field the request must carry: its name in the body, and what was sent.
    fn needs(&self) -> Vec<(&'static str, &str)>;
}

/// Parses a request body ([`parse_body`]) and refuses it when a text field it needs is
/// missing or blank (`repo is required`).
pub fn parse_request<T: Request>(body: &Bytes) -> Result<T, ApiError> {
    let request: T = parse_body(body)?;
    for (name, text) in request.needs() {
        if text.trim().is_empty() {
            return Err(ApiError::bad_request(format!("{name} is required")));
        }
    }
    Ok(request)
}

impl Request for NewSession {
    fn needs(&self) -> Vec<(&'static str, &str)> {
        vec![("repo", &self.repo), ("prompt", &self.prompt)]
    }
}

impl Request for ContinueRequest {
    fn needs(&self) -> Vec<(&'static str, &str)> {
        vec![("prompt", &self.prompt)]
    }
}

impl Request for PublishRequest {
    fn needs(&self) -> Vec<(&'static str, &str)> {
        vec![("base", &self.base)]
    }
}

impl Request for NewWatch {
    fn needs(&self) -> Vec<(&'static str, &str)> {
        let instructions = self.fields.instructions.as_deref();
        vec![
            ("repo", &self.repo),
            ("instructions", instructions.unwrap_or_default()),
        ]
    }
}
