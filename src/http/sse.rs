//! Server-sent events: stored events first (after the client's cursor), then live ones from
//! the event bus, ending after the session's terminal event — at once when the session had
//! already finished, even when the cursor is past its last event.
//!
//! At daemon shutdown an open stream ends with one last frame, `event: shutdown`, without an
//! `id` (so it never moves a client's `Last-Event-ID`) and with `retry: 5000`: clients see the
//! daemon went away on purpose (not a network cut) and resume from their last event id once it
//! is back. Clients that do not know the event type ignore it, as SSE requires.

use super::events::{self, head_of, write_sse};
use super::stream::{streamed, BodyWriter, End};
use super::AppState;
use std::time::Duration;
use telecoder_actors::domain::SessionId;
use tokio::sync::broadcast;
use warp::reply::Response;

/// A quiet stream gets a comment line this often, so proxies keep it open.
pub(super) const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The frame that ends every open stream when the daemon shuts down.
pub const SHUTDOWN_FRAME: &[u8] =
    b"event:shutdown\nretry:5000\ndata: the daemon is shutting down; resume with Last-Event-ID\n\n";

/// The SSE response for one session, starting after event id `after`.
pub fn stream(state: AppState, id: SessionId, after: i64) -> Response {
    streamed("text/event-stream", move |out| feed(state, id, after, out))
}

/// Whether the stream is over.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Done,
}

/// Sends stored events after `*after`; `Done` once the terminal event went out.
async fn replay(
    state: &AppState,
    id: &SessionId,
    after: &mut i64,
    out: &mut BodyWriter,
) -> Result<Flow, End> {
    let store = state.daemon.store();
    loop {
        let page = store
            .event_heads(id.as_str(), *after, events::PAGE, events::PAGE_BYTES)
            .await
            .map_err(|err| End::Failed(err.to_string()))?;
        if page.is_empty() {
            return Ok(Flow::Continue);
        }
        for head in page {
            write_sse(store, &head, out).await?;
            *after = head.id;
            if head.kind.is_terminal() {
                return Ok(Flow::Done);
            }
        }
    }
}

/// After a replay that found no terminal event: a finished session has nothing more to say
/// (the client resumed past its last event), so one more replay catches an event committed
/// meanwhile and the stream ends. Finishing writes the terminal event and the status in one
/// transaction, so "finished" means the terminal event is in the store.
async fn finished(state: &AppState, id: &SessionId) -> bool {
    state
        .daemon
        .session(id.as_str())
        .await
        .is_ok_and(|session| session.status.is_finished())
}

async fn follow(
    state: &AppState,
    id: &SessionId,
    after: &mut i64,
    live: &mut broadcast::Receiver<std::sync::Arc<telecoder_actors::domain::Event>>,
    out: &mut BodyWriter,
) -> Result<(), End> {
    if replay(state, id, after, out).await? == Flow::Done {
        return Ok(());
    }
    if finished(state, id).await {
        replay(state, id, after, out).await?;
        return Ok(());
    }
    loop {
        let flow = tokio::select! {
            _ = state.shutdown.cancelled() => {
                out.push(SHUTDOWN_FRAME);
                out.flush().await?;
                Flow::Done
            }
            _ = out.closed() => return Err(End::Gone),
            _ = tokio::time::sleep(KEEP_ALIVE) => {
                out.push(b":\n\n");
                out.flush().await?;
                Flow::Continue
            }
            received = live.recv() => match received {
                Ok(event) if event.id <= *after => Flow::Continue,
                Ok(event) => {
                    let head = head_of(&event);
                    drop(event);
                    write_sse(state.daemon.store(), &head, out).await?;
                    *after = head.id;
                    if head.kind.is_terminal() { Flow::Done } else { Flow::Continue }
                }
                // Fell behind the bus: the store has everything.
                Err(broadcast::error::RecvError::Lagged(_)) => replay(state, id, after, out).await?,
                // The session ended (its channel closes after the terminal event).
                Err(broadcast::error::RecvError::Closed) => {
                    replay(state, id, after, out).await?;
                    Flow::Done
                }
            },
        };
        if flow == Flow::Done {
            return Ok(());
        }
    }
}

async fn feed(state: AppState, id: SessionId, mut after: i64, mut out: BodyWriter) {
    // Subscribe before replaying, so nothing committed in between is missed.
    let mut live = state.daemon.bus().subscribe(id.as_str());
    let result = follow(&state, &id, &mut after, &mut live, &mut out).await;
    drop(live);
    state.daemon.bus().release(id.as_str());
    if let Err(End::Failed(why)) = result {
        tracing::warn!(session = %id, "event stream ended early: {why}");
    }
}
