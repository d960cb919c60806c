//! Chaos: kill -9 during many running sessions, and thousands of malformed requests.

use crate::support::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

#[test]
fn kill9_during_twenty_running_sessions_loses_nothing_and_leaves_no_orphans() {
    let mut daemon = TestDaemon::start_with(&[("TELECODER_MAX_CONCURRENT_SESSIONS", "22")]);
    let repo = TestRepo::new();
    let api = daemon.api();
    let r = repo.path_str();
    let running: Vec<String> = (0..20)
        .map(|_| {
            api.create(&r, "@mock spawn-tree", json!({}))["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    wait_for("20 running agents", Duration::from_secs(90), || {
        running
            .iter()
            .all(|id| session_processes(id).len() >= 3)
            .then_some(())
    });
    // Sessions finishing, running briefly and queued at the moment of the crash. (A new client:
    // the old one's connection sat idle through the wait, long enough for the server to close
    // it on a loaded machine.)
    let api = daemon.api();
    let others: Vec<String> = (0..6)
        .map(|i| {
            api.create(&r, &format!("@mock sleep 0.{i}"), json!({}))["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    let before: HashMap<String, String> = api
        .list("")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap_or_default().to_owned(),
                s["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let last_event_before: i64 = daemon
        .database()
        .query_row("SELECT MAX(id) FROM events", [], |row| row.get(0))
        .expect("max id");
    daemon.kill9();

    let daemon = daemon.restart();
    let api = daemon.api();
    let mut lost = Vec::new();
    for id in running.iter().chain(&others) {
        let session = api.wait_finished(id, Duration::from_secs(30));
        let last = api.events(id).last().cloned().unwrap_or_default();
        let consistent = match session["status"].as_str() {
            Some("complete") => last["type"] == "done",
            Some("error") => last["type"] == "error",
            _ => false,
        };
        if !consistent {
            lost.push((id.clone(), session["status"].clone()));
        }
    }
    assert!(lost.is_empty(), "sessions lost or inconsistent: {lost:?}");
    for id in &running {
        assert_eq!(
            api.session(id)["failureKind"],
            "abandoned",
            "{id} was running at the crash"
        );
    }
    let queued_then = others
        .iter()
        .filter(|id| before.get(*id).map(String::as_str) == Some("pending"))
        .count();
    for id in others
        .iter()
        .filter(|id| before.get(*id).map(String::as_str) == Some("pending"))
    {
        assert_eq!(
            api.session(id)["status"],
            "complete",
            "{id} was queued and must run after the restart"
        );
    }
    let orphans = wait_for(
        "leftover agents to be reaped",
        Duration::from_secs(15),
        || {
            let orphans: usize = running
                .iter()
                .chain(&others)
                .map(|id| session_processes(id).len())
                .sum();
            (orphans == 0).then_some(orphans)
        },
    );
    let db = daemon.database();
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("check");
    assert_eq!(integrity, "ok");
    let first_new: i64 = db
        .query_row(
            "SELECT MIN(id) FROM events WHERE id > ?1",
            [last_event_before],
            |row| row.get(0),
        )
        .expect("new events");
    assert!(first_new > last_event_before, "event ids stay monotonic");
    eprintln!(
        "kill -9 with {} running, {queued_then} queued: lost 0, orphans {orphans}, integrity ok",
        running.len()
    );
}

/// Generates malformed requests for every route.
struct Fuzzer {
    rng: fastrand::Rng,
}

impl Fuzzer {
    fn junk_bytes(&mut self) -> Vec<u8> {
        let len = self.rng.usize(0..512);
        (0..len).map(|_| self.rng.u8(..)).collect()
    }

    fn deep_nesting(&mut self) -> Vec<u8> {
        let depth = self.rng.usize(100..20_000);
        let (open, close) = if self.rng.bool() {
            ("[", "]")
        } else {
            ("{\"a\":", "}")
        };
        format!("{}1{}", open.repeat(depth), close.repeat(depth)).into_bytes()
    }

    fn wrong_value(&mut self) -> Value {
        match self.rng.u8(0..9) {
            0 => json!(null),
            1 => json!(self.rng.i64(..)),
            2 => json!(1e308),
            3 => json!([1, "two", null]),
            4 => json!({"nested": {"deeper": []}}),
            5 => json!(true),
            6 => json!(u64::MAX),
            7 => json!(-1),
            _ => json!(""),
        }
    }

    /// A JSON object with the right field names but wrong or missing values.
    fn wrong_types(&mut self, fields: &[&str]) -> Vec<u8> {
        let mut object = serde_json::Map::new();
        for field in fields {
            if self.rng.bool() {
                object.insert((*field).to_owned(), self.wrong_value());
            }
        }
        // At least one required field is always wrong, so nothing valid slips through.
        let first = fields.first().copied().unwrap_or("field");
        object.insert(first.to_owned(), self.wrong_value());
        serde_json::to_vec(&Value::Object(object)).unwrap_or_default()
    }

    fn bad_utf8(&mut self) -> Vec<u8> {
        let mut body = b"{\"repo\": \"".to_vec();
        body.extend([0xff, 0xfe, 0xc3, 0x28, self.rng.u8(0x80..0xff)]);
        body.extend(b"\", \"prompt\": \"x\"}");
        body
    }

    fn huge_number(&mut self) -> Vec<u8> {
        format!(
            "{{\"runId\": 1{}, \"prNumber\": -{}}}",
            "0".repeat(self.rng.usize(20..400)),
            "9".repeat(50)
        )
        .into_bytes()
    }

    fn body(&mut self, fields: &[&str]) -> Vec<u8> {
        match self.rng.u8(0..5) {
            0 => self.junk_bytes(),
            1 => self.deep_nesting(),
            2 => self.wrong_types(fields),
            3 => self.bad_utf8(),
            _ => self.huge_number(),
        }
    }

    fn query(&mut self) -> String {
        let keys = [
            "status", "agent", "policy", "parent", "lineage", "limit", "after", "kind", "repo",
        ];
        let key = keys[self.rng.usize(..keys.len())];
        let values = [
            "%ff%fe",
            "-1",
            "99999999999999999999999999",
            "%00",
            "active%20x",
            "",
            "1e9",
            "%E2%28%A1",
        ];
        format!("?{key}={}", values[self.rng.usize(..values.len())])
    }

    fn header_value(&mut self) -> String {
        let values = [
            "garbage",
            "-5",
            "99999999999999999999999",
            "Bearer",
            "text/event-stream; q=bad",
            "\u{7f}x",
        ];
        values[self.rng.usize(..values.len())].to_owned()
    }
}

#[test]
fn thousands_of_malformed_requests_get_4xx_and_change_nothing() {
    let daemon = TestDaemon::start();
    let api = daemon.api();
    let routes: Vec<(&str, &str, &[&str])> = vec![
        (
            "POST",
            "/api/sessions",
            &["repo", "prompt", "agent", "policy"],
        ),
        ("GET", "/api/sessions", &[]),
        ("GET", "/api/inbox", &[]),
        ("GET", "/api/sessions/deadbeef", &[]),
        ("GET", "/api/sessions/../../etc/passwd", &[]),
        ("POST", "/api/sessions/deadbeef/rerun", &[]),
        ("POST", "/api/sessions/deadbeef/cancel", &[]),
        ("GET", "/api/sessions/deadbeef/events", &[]),
        ("GET", "/api/sessions/deadbeef/lineage", &[]),
        (
            "POST",
            "/api/watches",
            &[
                "repo",
                "instructions",
                "kind",
                "policy",
                "schedule",
                "maxRunsPerHour",
            ],
        ),
        ("GET", "/api/watches", &[]),
        ("GET", "/api/watches/deadbeef", &[]),
        (
            "PATCH",
            "/api/watches/deadbeef",
            &["status", "instructions"],
        ),
        ("DELETE", "/api/watches/deadbeef", &[]),
        ("GET", "/api/watches/deadbeef/runs", &[]),
        (
            "POST",
            "/api/watch-events/ci",
            &["repo", "workflow", "branch", "runId"],
        ),
        (
            "POST",
            "/api/watch-events/pr",
            &["repo", "prNumber", "title", "base", "head"],
        ),
        ("POST", "/webhooks/github", &["action"]),
        ("GET", "/health", &[]),
        ("PUT", "/api/sessions", &[]),
        ("GET", "/nope/%ff", &[]),
    ];
    let mut fuzzer = Fuzzer {
        rng: fastrand::Rng::with_seed(0x7e1e_c0de),
    };
    let mut requests = Vec::new();
    for i in 0..3000 {
        let (method, path, fields) = routes[i % routes.len()];
        let body = fuzzer.body(fields);
        let query = if fuzzer.rng.bool() {
            fuzzer.query()
        } else {
            String::new()
        };
        let headers = [
            ("content-type", fuzzer.header_value()),
            ("last-event-id", fuzzer.header_value()),
            (
                "accept",
                if fuzzer.rng.bool() {
                    "text/event-stream".to_owned()
                } else {
                    fuzzer.header_value()
                },
            ),
            ("x-github-event", fuzzer.header_value()),
            (
                "x-hub-signature-256",
                format!("sha256={}", fuzzer.header_value()),
            ),
        ];
        requests.push((method, format!("{path}{query}"), body, headers));
    }
    let (statuses, dropped) = api.block_on(async {
        let mut statuses: HashMap<u16, usize> = HashMap::new();
        let mut dropped = 0usize;
        for chunk in requests.chunks(16) {
            let mut tasks = Vec::new();
            for (method, path, body, headers) in chunk.iter().cloned() {
                let http = api.http().clone();
                let url = format!("{}{path}", api.base);
                tasks.push(tokio::spawn(async move {
                    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
                    let mut request = http
                        .request(method, url)
                        .body(body)
                        .timeout(Duration::from_secs(20));
                    for (name, value) in headers {
                        if let Ok(value) = reqwest::header::HeaderValue::from_str(&value) {
                            request = request.header(name, value);
                        }
                    }
                    match request.send().await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let is_stream = response
                                .headers()
                                .get("content-type")
                                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
                            if !is_stream {
                                let _ = response.bytes().await;
                            }
                            Some(status)
                        }
                        Err(err) => {
                            eprintln!("dropped: {err}");
                            None
                        }
                    }
                }));
            }
            for task in tasks {
                match task.await.expect("task") {
                    Some(status) => *statuses.entry(status).or_default() += 1,
                    None => dropped += 1,
                }
            }
        }
        (statuses, dropped)
    });
    let server_errors: usize = statuses
        .iter()
        .filter(|(s, _)| **s >= 500)
        .map(|(_, n)| n)
        .sum();
    eprintln!("malformed requests: 3000 sent, statuses {statuses:?}, dropped {dropped}");
    assert_eq!(server_errors, 0, "5xx answers: {statuses:?}");
    assert_eq!(dropped, 0, "dropped connections");
    assert_eq!(api.get("/health").status, 200);
    assert!(api.list("").is_empty(), "no session was written");
    assert_eq!(
        api.get("/api/watches").body.as_array().map(Vec::len),
        Some(0)
    );
}

/// Sends raw bytes and returns what came back before the server closed or `wait` passed.
fn raw_exchange(addr: &str, request: &[u8], wait: Duration) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(wait)).expect("timeout");
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn broken_http_and_slow_clients_cannot_hurt_the_daemon() {
    let daemon = TestDaemon::start();
    let addr = daemon.url.trim_start_matches("http://").to_owned();
    for request in [
        &b"NOT HTTP AT ALL\r\n\r\n"[..],
        b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
        b"POST /api/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
        b"POST /api/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        let answer = raw_exchange(&addr, request, Duration::from_secs(5));
        assert!(answer.starts_with("HTTP/1.1 4"), "{request:?} got {answer:?}");
    }
    let huge_header = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1024 * 1024)
    );
    let answer = raw_exchange(&addr, huge_header.as_bytes(), Duration::from_secs(5));
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "{answer:?}"
    );

    // A client that never finishes its headers is cut off; others are served meanwhile.
    let slow = std::thread::spawn({
        let addr = addr.clone();
        move || {
            let started = std::time::Instant::now();
            let answer = raw_exchange(
                &addr,
                b"GET /health HTTP/1.1\r\nHost: x\r\n",
                Duration::from_secs(30),
            );
            (started.elapsed(), answer)
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(daemon.api().get("/health").status, 200);
    let (held, answer) = slow.join().expect("slow client");
    assert!(
        held < Duration::from_secs(20),
        "a slow client held a connection for {held:?}"
    );
    assert!(!answer.contains("200 OK"), "{answer:?}");
    assert_eq!(daemon.api().get("/health").status, 200);
}
