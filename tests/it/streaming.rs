//! Server-sent events: replay, resume with Last-Event-ID, live output, many readers.

use crate::support::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Eq)]
struct SseEvent {
    id: i64,
    kind: String,
    data: String,
}

fn parse_frame(frame: &str) -> Option<SseEvent> {
    let (mut id, mut kind, mut data) = (None, None, Vec::new());
    for line in frame
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(':'))
    {
        let (field, value) = line.split_once(':')?;
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = value.parse().ok(),
            "event" => kind = Some(value.to_owned()),
            "data" => data.push(value.to_owned()),
            _ => {}
        }
    }
    Some(SseEvent {
        id: id?,
        kind: kind?,
        data: data.join("\n"),
    })
}

/// Reads an SSE stream to its end, calling `on_event` as events arrive.
async fn read_stream(
    http: &reqwest::Client,
    url: String,
    last_event_id: Option<i64>,
    mut on_event: impl FnMut(&SseEvent),
) -> Vec<SseEvent> {
    let mut request = http.get(url).header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    let mut response = request.send().await.expect("stream opens");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let (mut buffer, mut events) = (String::new(), Vec::new());
    while let Some(chunk) = response.chunk().await.expect("stream chunk") {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if let Some(event) = parse_frame(&frame) {
                on_event(&event);
                events.push(event);
            }
        }
    }
    events
}

fn stored(api: &Api, id: &str) -> Vec<SseEvent> {
    api.events(id)
        .iter()
        .map(|e| SseEvent {
            id: e["id"].as_i64().unwrap_or_default(),
            kind: e["type"].as_str().unwrap_or_default().to_owned(),
            data: e["data"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

#[test]
fn replays_a_finished_session_and_resumes_after_last_event_id() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let id = api.create(
        &repo.path_str(),
        "@mock say   indented\\nsecond line",
        json!({}),
    )["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    api.wait_finished(&id, SHORT);
    let url = format!("{}/api/sessions/{id}/events", daemon.url);
    let all = api.block_on(read_stream(api.http(), url.clone(), None, |_| {}));
    assert_eq!(
        all,
        stored(&api, &id),
        "SSE carries exactly the stored events, data intact"
    );
    assert_eq!(all.last().map(|e| e.kind.as_str()), Some("done"));
    assert!(
        all.iter().any(|e| e.data == "  indented\nsecond line"),
        "{all:?}"
    );

    let resume_from = all[1].id;
    let rest = api.block_on(read_stream(
        api.http(),
        url.clone(),
        Some(resume_from),
        |_| {},
    ));
    assert_eq!(rest, all[2..].to_vec());
    let after = api.block_on(read_stream(
        api.http(),
        format!("{url}?after={}", all[2].id),
        None,
        |_| {},
    ));
    assert_eq!(after, all[3..].to_vec());
}

#[test]
fn output_streams_live_while_the_agent_works() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let id = api.create(&repo.path_str(), "@mock stream 8 400", json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let url = format!("{}/api/sessions/{id}/events", daemon.url);
    let checker = Api::new(&daemon.url);
    let mut status_at_first_output = None;
    let mut first_output_at = None;
    let started = Instant::now();
    let events = api.block_on(read_stream(api.http(), url, None, |event| {
        if event.kind == "output" && status_at_first_output.is_none() {
            first_output_at = Some(started.elapsed());
            let session =
                std::thread::scope(|s| s.spawn(|| checker.session(&id)).join().expect("thread"));
            status_at_first_output =
                Some(session["status"].as_str().unwrap_or_default().to_owned());
        }
    }));
    let total = started.elapsed();
    assert_eq!(
        status_at_first_output.as_deref(),
        Some("running"),
        "output must arrive while the session runs"
    );
    assert!(
        first_output_at.unwrap_or(total) < total,
        "first output before the end"
    );
    let outputs = events.iter().filter(|e| e.kind == "output").count();
    assert!(
        outputs >= 3,
        "chunks 400 ms apart arrive as separate events, got {outputs}"
    );
    let text: String = events
        .iter()
        .filter(|e| e.kind == "output")
        .map(|e| e.data.as_str())
        .collect();
    assert_eq!(
        text,
        (1..=8).map(|i| format!("chunk {i}\n")).collect::<String>()
    );
    assert_eq!(events.last().map(|e| e.kind.as_str()), Some("done"));
}

#[test]
fn many_readers_all_get_every_event() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let id = api.create(&repo.path_str(), "@mock stream 30 40", json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let url = format!("{}/api/sessions/{id}/events", daemon.url);
    let readers = 25;
    let streams = api.block_on(async {
        let tasks: Vec<_> = (0..readers)
            .map(|_| {
                let (http, url) = (api.http().clone(), url.clone());
                tokio::spawn(async move { read_stream(&http, url, None, |_| {}).await })
            })
            .collect();
        let mut streams = Vec::new();
        for task in tasks {
            streams.push(
                tokio::time::timeout(Duration::from_secs(60), task)
                    .await
                    .expect("stream ends")
                    .expect("task"),
            );
        }
        streams
    });
    let expected = stored(&api, &id);
    assert_eq!(expected.last().map(|e| e.kind.as_str()), Some("done"));
    for stream in streams {
        assert_eq!(stream, expected);
    }
}
