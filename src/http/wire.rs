//! What sits between hyper and the socket or a body, for the connection policy in `conn`:
//! the socket counts reads (a request has started) and gives hyper's own error answers (400,
//! 414, 431, written with an empty body) the same `{"error": …}` JSON as every other error;
//! request bodies must keep moving; response bodies keep their request counted in flight.

use super::conn::{Activity, InFlight};
use super::errors::error_body;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A response body that keeps its request counted as in flight until it is dropped.
pub(super) struct Counted<B> {
    inner: B,
    _request: InFlight,
}

impl<B> Counted<B> {
    pub(super) fn new(inner: B, request: InFlight) -> Self {
        Self {
            inner,
            _request: request,
        }
    }
}

impl<B: Body + Unpin> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails when the client pauses longer than `idle` mid-body.
pub(super) struct IdleBody {
    inner: Incoming,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl IdleBody {
    pub(super) fn new(inner: Incoming, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            timer: None,
        }
    }
}

impl Body for IdleBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.timer = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let idle = self.idle;
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                        "the client sent nothing for {}s in the middle of the body",
                        idle.as_secs()
                    )
                    .into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket as hyper sees it: reads are counted, hyper's empty error answers get a body.
pub(super) struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
    /// A rewritten answer still to be written.
    pending: Vec<u8>,
}

impl Tracked {
    pub(super) fn new(inner: TcpStream, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            activity,
            pending: Vec::new(),
        }
    }

    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let written =
                std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..written);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.drain(cx))?;
        if !self.activity.serving() {
            if let Some(answer) = with_json_body(buf) {
                self.pending = answer;
                // The answer is ours to deliver now; flush and shutdown finish it.
                let _ = self.drain(cx)?;
                return Poll::Ready(Ok(buf.len()));
            }
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// hyper's own answer to a request it could not parse (an error status with an empty body,
/// written while no request is being served), rewritten with a JSON body. `None` for
/// anything else. Our own error answers always have a body, and none of our bodies contains
/// CR, so nothing else matches.
fn with_json_body(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?.strip_suffix("\r\n\r\n")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let code: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))?
        .get(..3)?
        .parse()
        .ok()?;
    let headers: Vec<&str> = lines.collect();
    let empty = headers
        .iter()
        .any(|line| line.eq_ignore_ascii_case("content-length: 0"));
    if !(400..600).contains(&code) || !empty {
        return None;
    }
    let message = match code {
        400 => "malformed HTTP request",
        414 => "request URI is too long",
        431 => "request headers are too large",
        _ => "the request could not be read",
    };
    let body = error_body(message);
    let mut answer = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for line in headers
        .iter()
        .filter(|line| !line.to_ascii_lowercase().starts_with("content-length:"))
    {
        answer.push_str(line);
        answer.push_str("\r\n");
    }
    answer.push_str("\r\n");
    answer.push_str(&body);
    Some(answer.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_error_answers_get_a_json_body() {
        let canned = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n";
        let answer = with_json_body(canned).map(String::from_utf8);
        let Some(Ok(answer)) = answer else {
            panic!("not rewritten");
        };
        assert!(answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(answer.contains("content-type: application/json\r\n"));
        assert!(answer.contains("date: Thu"));
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert_eq!(body, r#"{"error":"request headers are too large"}"#);
        for other in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 21\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}",
            b"{\"error\":\"HTTP/1.1 400 x\r\ncontent-length: 0\r\n\r\n\"}",
        ] {
            assert!(with_json_body(other).is_none());
        }
    }
}
