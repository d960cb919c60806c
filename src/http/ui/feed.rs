//! `GET /ui/feed`: one SSE stream of every session's activity, so the dashboard's list and its
//! approval count change without a reload. A frame says which session has a new event and of
//! which type — never the event's data (the session's own stream carries that) — and the page
//! re-reads what it shows. Output chunks are left out: they change no list row, and a busy
//! agent would otherwise wake every open dashboard many times a second.
//!
//! Frames: `ready` first (the page re-reads what it shows: it may have missed activity while
//! it was away), `activity` (`{"sessionId", "type"}`), `lagged` when this reader fell behind
//! the bus (re-read everything), a `:` comment every 15 s, and the SSE module's `shutdown`
//! frame when the daemon stops.

use crate::http::sse::{KEEP_ALIVE, SHUTDOWN_FRAME};
use crate::http::stream::{streamed, BodyWriter, End};
use crate::http::AppState;
use serde::Serialize;
use telecoder_actors::bus::Activity;
use telecoder_actors::domain::EventKind;
use tokio::sync::broadcast::error::RecvError;
use warp::reply::Response;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Frame<'a> {
    session_id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

pub fn stream(state: AppState) -> Response {
    // Subscribed before the answer starts, so nothing after `ready` is missed.
    let activity = state.daemon.bus().watch_all();
    streamed("text/event-stream", move |out| feed(state, activity, out))
}

fn frame(activity: &Activity) -> Option<Vec<u8>> {
    if activity.kind == EventKind::Output {
        return None;
    }
    let data = serde_json::to_string(&Frame {
        session_id: &activity.session_id,
        kind: activity.kind.as_str(),
    })
    .ok()?;
    Some(format!("event: activity\ndata: {data}\n\n").into_bytes())
}

async fn feed(
    state: AppState,
    mut activity: tokio::sync::broadcast::Receiver<Activity>,
    mut out: BodyWriter,
) {
    out.push(b"event: ready\ndata: {}\n\n");
    if out.flush().await.is_err() {
        return;
    }
    let result: Result<(), End> = async {
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => {
                    out.push(SHUTDOWN_FRAME);
                    return out.flush().await;
                }
                _ = out.closed() => return Err(End::Gone),
                _ = tokio::time::sleep(KEEP_ALIVE) => out.push(b":\n\n"),
                received = activity.recv() => match received {
                    Ok(activity) => match frame(&activity) {
                        Some(bytes) => out.push(&bytes),
                        None => continue,
                    },
                    Err(RecvError::Lagged(_)) => out.push(b"event: lagged\ndata: {}\n\n"),
                    Err(RecvError::Closed) => return Ok(()),
                },
            }
            out.flush().await?;
        }
    }
    .await;
    if let Err(End::Failed(why)) = result {
        tracing::warn!("dashboard feed ended early: {why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_name_the_session_and_type_but_carry_no_data() {
        let status = Activity {
            event_id: 7,
            session_id: "abcdef12".into(),
            kind: EventKind::Done,
        };
        let bytes = frame(&status).expect("a frame");
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            "event: activity\ndata: {\"sessionId\":\"abcdef12\",\"type\":\"done\"}\n\n"
        );
        let output = Activity {
            kind: EventKind::Output,
            ..status
        };
        assert!(frame(&output).is_none());
    }
}
