//! Answers written while they are read. A producer task fills a [`BodyWriter`] and the
//! response body drains it through a queue of [`QUEUE`] chunks, so a slow client holds at
//! most a few chunks of the daemon's memory (plus the page being written), never the whole
//! answer; a client that leaves stops the producer at its next write.

use bytes::Bytes;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use warp::http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use warp::reply::Response;
use warp::Reply;

/// Chunks waiting for a slow client.
const QUEUE: usize = 2;
/// Buffered bytes that make a chunk worth sending.
const CHUNK_BYTES: usize = 64 * 1024;

type Chunk = Result<Bytes, std::io::Error>;

/// Why a producer stopped early.
#[derive(Debug)]
pub enum End {
    /// The client went away.
    Gone,
    /// Reading the next part failed (the body is cut, so the client sees an error).
    Failed(String),
}

/// The producer's side of a streamed body.
pub struct BodyWriter {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
    /// Array elements written so far (for the commas between them).
    items: u64,
}

impl BodyWriter {
    /// Bytes to send; they go out at the next flush.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Starts the next element of a JSON array (a comma after the first).
    pub fn separate(&mut self) {
        if self.items > 0 {
            self.buf.push(b',');
        }
        self.items += 1;
    }

    /// Sends what is buffered; waits while the client is [`QUEUE`] chunks behind.
    pub async fn flush(&mut self) -> Result<(), End> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx.send(Ok(chunk)).await.map_err(|_| End::Gone)
    }

    /// Flushes once a chunk's worth is buffered.
    pub async fn flush_if_full(&mut self) -> Result<(), End> {
        if self.buf.len() >= CHUNK_BYTES {
            self.flush().await
        } else {
            Ok(())
        }
    }

    /// Resolves when the client has gone away.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }

    /// Cuts the body with an error, so the client cannot take a truncated answer for a whole
    /// one.
    pub async fn abort(self, why: String) {
        tracing::warn!("streamed answer cut short: {why}");
        let _ = self.tx.send(Err(std::io::Error::other(why))).await;
    }
}

/// The body side: the queue's receiver as a stream.
struct Drain(mpsc::Receiver<Chunk>);

impl futures_util::Stream for Drain {
    type Item = Chunk;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
        self.0.poll_recv(cx)
    }
}

/// A 200 response of `content_type` whose body `produce` writes.
pub fn streamed<F, Fut>(content_type: &'static str, produce: F) -> Response
where
    F: FnOnce(BodyWriter) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(produce(BodyWriter {
        tx,
        buf: Vec::new(),
        items: 0,
    }));
    let mut response = warp::reply::stream(Drain(rx)).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// How a streamed list is read: pages of `page` items, `total` items at most.
#[derive(Clone, Copy, Debug)]
pub struct Paging {
    pub page: u32,
    pub total: u32,
}

impl Paging {
    /// The size of the first page.
    pub fn first(&self) -> u32 {
        self.page.min(self.total)
    }
}

/// A streamed JSON array: `write_items` writes the elements (each after
/// [`BodyWriter::separate`]) and hands the writer back; a failure cuts the body.
pub fn json_stream<F, Fut>(write_items: F) -> Response
where
    F: FnOnce(BodyWriter) -> Fut + Send + 'static,
    Fut: Future<Output = (BodyWriter, Result<(), End>)> + Send + 'static,
{
    streamed("application/json", move |mut out| async move {
        out.push(b"[");
        let (mut out, result) = write_items(out).await;
        let result = match result {
            Ok(()) => {
                out.push(b"]");
                out.flush().await
            }
            failed => failed,
        };
        if let Err(End::Failed(why)) = result {
            out.abort(why).await;
        }
    })
}

/// A JSON array streamed page by page: `first` is the first page, already read (so that
/// failures before the answer starts get a proper status); `next(last, size)` reads the `size`
/// items after `last`. A short page, or `paging.total` items, ends the array.
pub fn json_array<T, F, Fut>(first: Vec<T>, paging: Paging, mut next: F) -> Response
where
    T: Serialize + Send + Sync + 'static,
    F: FnMut(&T, u32) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<T>, telecoder_actors::Error>> + Send,
{
    json_stream(move |mut out| async move {
        let result = async {
            let (mut page, mut asked, mut written) = (first, paging.first(), 0u32);
            loop {
                for item in &page {
                    out.separate();
                    serde_json::to_writer(out.buf(), item)
                        .map_err(|err| End::Failed(err.to_string()))?;
                    written += 1;
                    out.flush_if_full().await?;
                }
                let size = paging.page.min(paging.total.saturating_sub(written));
                let last = page
                    .last()
                    .filter(|_| page.len() as u32 >= asked && size > 0);
                let Some(last) = last else {
                    return Ok(());
                };
                asked = size;
                page = next(last, size)
                    .await
                    .map_err(|err| End::Failed(err.to_string()))?;
            }
        }
        .await;
        (out, result)
    })
}
