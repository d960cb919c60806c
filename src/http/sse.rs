//! Server-sent events: stored events first (after the client's cursor), then live ones from
//! the event bus, ending after the session's terminal event.

use super::AppState;
use std::convert::Infallible;
use std::time::Duration;
use telecoder_actors::domain::{Event, SessionId};
use tokio::sync::{broadcast, mpsc};
use warp::reply::Response;
use warp::Reply;

/// Stored events are replayed in pages of this size.
const REPLAY_PAGE: u32 = 1000;
/// A quiet stream gets a comment line this often, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The SSE response for one session, starting after event id `after`.
pub fn stream(state: AppState, id: SessionId, after: i64) -> Response {
    let (tx, rx) = mpsc::channel::<Event>(256);
    tokio::spawn(feed(state, id, after, tx));
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        Some((Ok::<_, Infallible>(to_sse(&event)), rx))
    });
    warp::sse::reply(warp::sse::keep_alive().interval(KEEP_ALIVE).stream(events)).into_response()
}

/// One stored event as an SSE frame. warp writes `data:` with no space, and clients strip one
/// leading space, so each line gets one to keep indented output intact. SSE cannot carry a
/// bare CR inside data, so line endings are normalised.
fn to_sse(event: &Event) -> warp::sse::Event {
    let data = event
        .data
        .replace("\r\n", "\n")
        .replace('\r', "\n")
        .split('\n')
        .map(|line| format!(" {line}"))
        .collect::<Vec<_>>()
        .join("\n");
    warp::sse::Event::default()
        .id(event.id.to_string())
        .event(event.kind.as_str())
        .data(data)
}

/// Whether the stream is over.
enum Flow {
    Continue,
    Done,
}

/// Sends stored events after `*after`; `Done` once the terminal event went out or the
/// client left.
async fn replay(
    state: &AppState,
    id: &SessionId,
    after: &mut i64,
    tx: &mpsc::Sender<Event>,
) -> Flow {
    loop {
        let page = match state
            .daemon
            .store()
            .events(id.as_str(), *after, REPLAY_PAGE)
            .await
        {
            Ok(page) => page,
            Err(err) => {
                tracing::warn!(session = %id, "event replay failed: {err}");
                return Flow::Done;
            }
        };
        let full = page.len() as u32 == REPLAY_PAGE;
        for event in page {
            if let Flow::Done = send(event, after, tx).await {
                return Flow::Done;
            }
        }
        if !full {
            return Flow::Continue;
        }
    }
}

async fn send(event: Event, after: &mut i64, tx: &mpsc::Sender<Event>) -> Flow {
    if event.id <= *after {
        return Flow::Continue;
    }
    *after = event.id;
    let terminal = event.kind.is_terminal();
    if tx.send(event).await.is_err() || terminal {
        Flow::Done
    } else {
        Flow::Continue
    }
}

async fn feed(state: AppState, id: SessionId, mut after: i64, tx: mpsc::Sender<Event>) {
    // Subscribe before replaying, so nothing committed in between is missed.
    let mut live = state.daemon.bus().subscribe(id.as_str());
    let mut flow = replay(&state, &id, &mut after, &tx).await;
    while let Flow::Continue = flow {
        flow = tokio::select! {
            _ = state.shutdown.cancelled() => Flow::Done,
            _ = tx.closed() => Flow::Done,
            received = live.recv() => match received {
                Ok(event) => send(event, &mut after, &tx).await,
                // Fell behind the bus, or the session ended: the store has everything.
                Err(broadcast::error::RecvError::Lagged(_)) => replay(&state, &id, &mut after, &tx).await,
                Err(broadcast::error::RecvError::Closed) => {
                    replay(&state, &id, &mut after, &tx).await;
                    Flow::Done
                }
            },
        };
    }
    drop(live);
    state.daemon.bus().release(id.as_str());
}
