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
            Error::Upstream(_) => StatusCode::BAD_GATEWAY,
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

/// The JSON text of an error body, for answers written below warp (see `conn`).
pub fn error_body(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// Handlers compute `Result<Response, ApiError>`; this folds both arms into a reply.
pub fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(ApiError::into_response)
}

/// Turns warp's rejections (unknown route, wrong method, oversized body…) into JSON errors.
pub async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    Ok(rejection_reply(&rejection))
}

/// The JSON answer for a rejection.
pub fn rejection_reply(rejection: &Rejection) -> Response {
    use warp::reject;
    let (status, message) = if let Some(refused) = rejection.find::<ApiError>() {
        (refused.status, refused.message.clone())
    } else if rejection.find::<super::route::WrongMethod>().is_some()
        || rejection.find::<reject::MethodNotAllowed>().is_some()
    {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this path".to_owned(),
        )
    } else if rejection.is_not_found() {
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
    } else if let Some(err) = rejection.find::<reject::InvalidQuery>() {
        (
            StatusCode::BAD_REQUEST,
            format!("invalid query string: {err}"),
        )
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
    error_reply(status, &message)
}

/// Reads a request body of at most `limit` bytes, with or without a Content-Length header
/// (an empty or chunked body is still a body). Oversized bodies are a 413, not a memory bill.
pub fn bounded_body(
    limit: usize,
) -> impl warp::Filter<Extract = (Result<bytes::Bytes, ApiError>,), Error = Rejection> + Clone {
    use warp::Filter;
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .then(move |declared: Option<u64>, stream| async move {
            if declared.is_some_and(|length| length > DRAIN_LIMIT as u64) {
                return Err(too_large(limit));
            }
            collect_body(stream, limit).await
        })
}

/// An oversized body up to this size is read to its end before the 413 goes out, so the client
/// sees the answer instead of a connection reset mid-upload.
pub(super) const DRAIN_LIMIT: usize = 32 * 1024 * 1024;

pub(super) fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is too large (limit {limit} bytes)"),
    )
}

async fn collect_body<S, B>(stream: S, limit: usize) -> Result<bytes::Bytes, ApiError>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    use futures_util::StreamExt;
    let mut body = bytes::BytesMut::new();
    let mut seen = 0usize;
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk
            .map_err(|err| ApiError::bad_request(format!("cannot read the request body: {err}")))?;
        seen += chunk.remaining();
        if seen > limit {
            if seen > DRAIN_LIMIT {
                return Err(too_large(limit));
            }
            chunk.advance(chunk.remaining());
            continue;
        }
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            let len = piece.len();
            body.extend_from_slice(piece);
            chunk.advance(len);
        }
    }
    if seen > limit {
        return Err(too_large(limit));
    }
    Ok(body.freeze())
}
