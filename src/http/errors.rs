//! The one place where failures become HTTP statuses. Every error body is
//! `{"error": "<message>"}`; warp's own rejections are translated by [`recover`].

use std::convert::Infallible;
use telecoder_actors::Error;
use warp::http::StatusCode;
use warp::reply::{json, with_status, Response};
use warp::{Rejection, Reply};

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn into_response(self) -> Response {
        error_reply(self.status, &self.message)
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        let status = match &err {
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Store(_) | Error::Internal(_) => {
                tracing::error!("request failed: {err}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        Self::new(status, err.to_string())
    }
}

pub fn error_reply(status: StatusCode, message: &str) -> Response {
    with_status(json(&serde_json::json!({ "error": message })), status).into_response()
}

/// Handlers compute `Result<Response, ApiError>`; this folds both arms into a reply.
pub fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(ApiError::into_response)
}

/// Turns warp's rejections (unknown route, wrong method, oversized body…) into JSON errors.
pub async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    use warp::reject;
    let (status, message) = if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "not found".to_owned())
    } else if rejection.find::<reject::PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body is too large".to_owned(),
        )
    } else if rejection.find::<reject::LengthRequired>().is_some() {
        (
            StatusCode::LENGTH_REQUIRED,
            "a Content-Length header is required".to_owned(),
        )
    } else if rejection.find::<reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this path".to_owned(),
        )
    } else if let Some(err) = rejection.find::<reject::InvalidQuery>() {
        (StatusCode::BAD_REQUEST, format!("invalid query string: {err}"))
    } else if let Some(err) = rejection.find::<reject::InvalidHeader>() {
        (StatusCode::BAD_REQUEST, err.to_string())
    } else if let Some(err) = rejection.find::<reject::MissingHeader>() {
        (StatusCode::BAD_REQUEST, err.to_string())
    } else if let Some(err) = rejection.find::<reject::UnsupportedMediaType>() {
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, err.to_string())
    } else {
        tracing::warn!("unhandled rejection: {rejection:?}");
        (StatusCode::BAD_REQUEST, "bad request".to_owned())
    };
    Ok(error_reply(status, &message))
}
