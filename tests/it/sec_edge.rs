//! The HTTP edge under attack (issue 11): cross-site requests and DNS rebinding, silent
//! connections, scope bypass through path variants, slow readers of large answers, malformed
//! input, and the stream endings. Each test performs the attack against the real daemon.

use crate::support::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const FULL: &str = "full-token-0123456789abcdef";
const READ: &str = "read-token-0123456789abcdef";
const ADMIN: &str = "admin-token-0123456789abcdef";

fn addr(daemon: &TestDaemon) -> String {
    daemon.url.trim_start_matches("http://").to_owned()
}

/// An answer read off the wire.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends `request` as is on a fresh connection and reads until the daemon closes it (the
/// request should say `Connection: close`) or 30 s pass.
fn raw(addr: &str, request: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Raw {
        status: head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0),
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// A request with the given method, path, extra header lines and body, closing after.
fn request(method: &str, path: &str, host: &str, headers: &[&str], body: &str) -> Vec<u8> {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for header in headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    if !body.is_empty() || method == "POST" {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text.into_bytes()
}

#[track_caller]
fn assert_json_error(answer: &Raw, status: u16, mentions: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    let message = answer.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains(mentions),
        "{message:?} should mention {mentions:?}"
    );
}

#[test]
fn cross_site_requests_and_dns_rebinding_are_refused() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let at = addr(&daemon);
    let session =
        json!({"repo": repo.path_str(), "prompt": "@mock say pwned", "policy": "standard"})
            .to_string();

    // A web page's "simple" cross-site POSTs: no preflight, so only the content type stops them.
    for content_type in [
        "Content-Type: text/plain",
        "Content-Type: application/x-www-form-urlencoded",
        "Content-Type: multipart/form-data; boundary=x",
    ] {
        let answer = raw(
            &at,
            &request("POST", "/api/sessions", &at, &[content_type], &session),
        );
        assert_json_error(&answer, 415, "application/json");
    }
    let no_type = raw(&at, &request("POST", "/api/sessions", &at, &[], &session));
    assert_json_error(&no_type, 415, "application/json");
    let fault = raw(
        &at,
        &request(
            "POST",
            "/admin/faults",
            &at,
            &["Content-Type: text/plain"],
            r#"{"target":"store"}"#,
        ),
    );
    assert_json_error(&fault, 415, "application/json");
    assert!(api.list("").is_empty(), "no session was started");

    // The same from a page that names itself: a foreign Origin is refused whatever the body.
    let json_type = "Content-Type: application/json";
    for origin in [
        "Origin: https://evil.example",
        "Origin: null",
        "Origin: http://127.0.0.1:1",
    ] {
        let answer = raw(
            &at,
            &request("POST", "/api/sessions", &at, &[json_type, origin], &session),
        );
        assert_json_error(&answer, 403, "TELECODER_ALLOWED_ORIGINS");
        let read = raw(&at, &request("GET", "/api/sessions", &at, &[origin], ""));
        assert_json_error(&read, 403, "Origin");
    }
    assert!(api.list("").is_empty(), "no session was started");
    let own = format!("Origin: http://{at}");
    let mine = raw(
        &at,
        &request("POST", "/api/sessions", &at, &[json_type, &own], &session),
    );
    assert_eq!(
        mine.status, 201,
        "the daemon's own origin is fine: {mine:?}"
    );
    let id = mine.json()["id"].as_str().unwrap_or_default().to_owned();

    // DNS rebinding: the page's own name now resolves to 127.0.0.1, so the browser sends it
    // as Host and would let the page read the answers.
    let port = at.rsplit(':').next().unwrap_or_default();
    let rebound = format!("attacker.example:{port}");
    for path in [
        "/api/sessions".to_owned(),
        format!("/api/sessions/{id}"),
        "/api/nope".into(),
    ] {
        let answer = raw(&at, &request("GET", &path, &rebound, &[], ""));
        assert_json_error(&answer, 403, "TELECODER_ALLOWED_HOSTS");
        assert!(!answer.body.contains("pwned"), "{answer:?}");
    }
    for host in [
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "127.0.0.1".into(),
    ] {
        let answer = raw(
            &at,
            &request("GET", &format!("/api/sessions/{id}"), &host, &[], ""),
        );
        assert_eq!(answer.status, 200, "{host}: {answer:?}");
    }
    // Routes that authenticate themselves keep working from any name (tunnels, proxies).
    assert_eq!(
        raw(&at, &request("GET", "/health", &rebound, &[], "")).status,
        200
    );
    for content_type in [json_type, "Content-Type: application/x-www-form-urlencoded"] {
        let hook = raw(
            &at,
            &request("POST", "/webhooks/github", &rebound, &[content_type], "{}"),
        );
        assert_json_error(&hook, 403, "TELECODER_GITHUB_WEBHOOK_SECRET");
    }
    api.wait_finished(&id, SHORT);
}

#[test]
fn allowed_origins_and_hosts_are_the_only_exceptions() {
    let daemon = TestDaemon::start_with(&[
        ("TELECODER_ALLOWED_ORIGINS", "https://dash.example"),
        ("TELECODER_ALLOWED_HOSTS", "telecoder.lan"),
    ]);
    let at = addr(&daemon);
    let ok = |host: &str, origin: &str| {
        let headers: Vec<&str> = [origin].into_iter().filter(|h| !h.is_empty()).collect();
        raw(&at, &request("GET", "/api/inbox", host, &headers, "")).status
    };
    assert_eq!(ok(&at, "Origin: https://dash.example"), 200);
    assert_eq!(ok(&at, "Origin: https://dash.example:8443"), 403);
    assert_eq!(ok(&at, "Origin: http://dash.example"), 403);
    assert_eq!(ok("telecoder.lan:7080", ""), 200);
    assert_eq!(ok("telecoder.lan.attacker.example", ""), 403);

    // With a token the Host check gives way to the token; the Origin check does not.
    let guarded = TestDaemon::start_with(&[("TELECODER_API_TOKEN", FULL)]);
    let at = addr(&guarded);
    let bearer = format!("Authorization: Bearer {FULL}");
    let proxied = raw(
        &at,
        &request("GET", "/api/inbox", "telecoder.example.com", &[&bearer], ""),
    );
    assert_eq!(proxied.status, 200, "{proxied:?}");
    let same_site = raw(
        &at,
        &request(
            "GET",
            "/api/inbox",
            "telecoder.example.com",
            &[&bearer, "Origin: https://telecoder.example.com"],
            "",
        ),
    );
    assert_eq!(
        same_site.status, 200,
        "behind a TLS proxy that keeps Host: {same_site:?}"
    );
    let foreign = raw(
        &at,
        &request(
            "GET",
            "/api/inbox",
            "telecoder.example.com",
            &[&bearer, "Origin: https://evil.example"],
            "",
        ),
    );
    assert_json_error(&foreign, 403, "Origin");
}

#[test]
fn bad_browser_settings_stop_start_up_and_config_shows_them() {
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().to_string_lossy().into_owned();
    for (variable, value) in [
        (
            "TELECODER_ALLOWED_ORIGINS",
            "https://ok.example,evil.example/path",
        ),
        ("TELECODER_ALLOWED_ORIGINS", "*"),
        ("TELECODER_ALLOWED_HOSTS", "*.example.com"),
        ("TELECODER_ALLOWED_HOSTS", "https://host.example"),
    ] {
        let stderr = refused_setting(&data_dir, variable, value);
        assert!(stderr.contains(variable), "{stderr}");
    }
    let output = telecoder(
        &[
            ("TELECODER_DATA_DIR", data_dir.as_str()),
            ("TELECODER_ALLOWED_ORIGINS", "https://Dash.example:443"),
            ("TELECODER_ALLOWED_HOSTS", "telecoder.lan:8080"),
        ],
        &["config"],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("https://dash.example"), "{stdout}");
    assert!(stdout.contains("telecoder.lan:8080"), "{stdout}");
}

/// Opens `count` connections that send nothing; the ones the daemon closed are reopened.
struct SilentFlood {
    addr: String,
    sockets: Vec<TcpStream>,
}

impl SilentFlood {
    fn open(addr: &str, count: usize) -> Self {
        let mut flood = Self {
            addr: addr.to_owned(),
            sockets: Vec::new(),
        };
        while flood.sockets.len() < count {
            if let Ok(socket) = TcpStream::connect(addr) {
                let _ = socket.set_nonblocking(true);
                flood.sockets.push(socket);
            }
        }
        flood
    }

    /// Replaces every socket the daemon has closed with a fresh silent one.
    fn refill(&mut self) -> usize {
        let mut reopened = 0;
        for socket in &mut self.sockets {
            let mut byte = [0u8; 1];
            let closed = match socket.peek(&mut byte) {
                Ok(0) => true,
                Ok(_) => false,
                Err(err) => err.kind() != std::io::ErrorKind::WouldBlock,
            };
            if closed {
                if let Ok(fresh) = TcpStream::connect(&self.addr) {
                    let _ = fresh.set_nonblocking(true);
                    *socket = fresh;
                    reopened += 1;
                }
            }
        }
        reopened
    }
}

/// `/health` answers, or `None` when the connection was refused or dropped.
fn probe_health(addr: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok()?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn silent_connections_cannot_lock_out_the_api() {
    let daemon = TestDaemon::start();
    let at = addr(&daemon);
    // More silent sockets than the daemon has connection slots (1024), kept topped up.
    let mut flood = SilentFlood::open(&at, 1100);
    let started = Instant::now();
    // The policy bound: a silent socket holds its slot for at most the 10 s first-byte
    // timeout, and a new request may evict it at once. The 30 s margin is for a loaded machine.
    let answered = wait_for("/health during the flood", Duration::from_secs(40), || {
        flood.refill();
        probe_health(&at).filter(|status| *status == 200)
    });
    assert_eq!(answered, 200);
    eprintln!(
        "/health answered {:?} into a flood of 1100 silent sockets",
        started.elapsed()
    );
    for _ in 0..20 {
        flood.refill();
        assert_eq!(probe_health(&at), Some(200), "every request gets through");
    }

    // A lone silent socket is closed after the first-byte timeout.
    drop(flood);
    let mut silent = TcpStream::connect(&at).expect("connect");
    silent
        .set_read_timeout(Some(Duration::from_secs(40)))
        .expect("timeout");
    let opened = Instant::now();
    let mut byte = [0u8; 1];
    let read = silent.read(&mut byte);
    let closed = match &read {
        Ok(n) => *n == 0,
        Err(err) => err.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(closed, "the silent socket was not closed: {read:?}");
    eprintln!("a silent socket was closed after {:?}", opened.elapsed());

    // Thousands of evictions, a handful of log lines.
    let warnings = daemon.log().matches("connection limit").count();
    assert!(
        (1..=6).contains(&warnings),
        "{warnings} 'connection limit' lines in {:?}",
        started.elapsed()
    );
}

#[test]
fn keep_alive_connections_survive_a_pause_longer_than_the_header_timeout() {
    let daemon = TestDaemon::start();
    let mut stream = TcpStream::connect(addr(&daemon)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let ask = |stream: &mut TcpStream| -> String {
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .expect("write");
        let mut answer = Vec::new();
        let mut chunk = [0u8; 1024];
        while !String::from_utf8_lossy(&answer).contains("{\"status\":\"ok\"}") {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    };
    assert!(ask(&mut stream).starts_with("HTTP/1.1 200"));
    // The pause is the scenario (a client reusing its connection later), not a wait.
    std::thread::sleep(Duration::from_secs(12));
    let again = ask(&mut stream);
    assert!(again.starts_with("HTTP/1.1 200"), "{again:?}");
}

#[test]
fn path_variants_never_get_past_a_weaker_scope() {
    let daemon = TestDaemon::start_with(&[
        ("TELECODER_API_TOKEN", FULL),
        ("TELECODER_API_READ_TOKEN", READ),
        ("TELECODER_ADMIN_TOKEN", ADMIN),
    ]);
    let at = addr(&daemon);
    let get = |path: &str, token: &str| {
        raw(
            &at,
            &request(
                "GET",
                path,
                "127.0.0.1",
                &[&format!("Authorization: Bearer {token}")],
                "",
            ),
        )
    };
    assert_eq!(get("/metrics", ADMIN).status, 200);
    assert_eq!(
        get("/metrics/", ADMIN).status,
        200,
        "the route itself takes a trailing slash"
    );
    assert_eq!(get("/admin/actors/", ADMIN).status, 200);
    let variants = [
        "/metrics",
        "/metrics/",
        "/metrics//",
        "//metrics",
        "/METRICS",
        "/Metrics/",
        "/metrics?x=1",
        "/metrics/.",
        "/./metrics",
        "/%6detrics",
        "/metrics%2F",
        "/admin/actors",
        "/admin/actors/",
        "/admin//actors",
        "//admin/actors",
        "/ADMIN/actors",
        "/admin/./actors",
        "/admin/actors/.",
        "/admin/x/../actors",
        "/%61dmin/actors",
        "/admin%2Factors",
        "/admin/status/",
        "/admin/Status",
    ];
    for path in variants {
        for token in [FULL, READ] {
            let answer = get(path, token);
            assert!(
                matches!(answer.status, 403 | 404),
                "GET {path} with a non-admin token: {answer:?}"
            );
            assert!(answer.json()["error"].is_string(), "{answer:?}");
            assert!(
                !answer.body.contains("telecoder_"),
                "metrics leaked via {path}"
            );
            assert!(
                !answer.body.contains("supervisor"),
                "actor tree leaked via {path}"
            );
        }
    }
    let post = |path: &str, token: &str| {
        raw(
            &at,
            &request(
                "POST",
                path,
                "127.0.0.1",
                &[
                    &format!("Authorization: Bearer {token}"),
                    "Content-Type: application/json",
                ],
                r#"{"target":"store","repo":"/nope","prompt":"x"}"#,
            ),
        )
    };
    for path in ["/admin/faults/", "//admin/faults", "/admin/faults"] {
        assert!(matches!(post(path, FULL).status, 403 | 404), "POST {path}");
    }
    for path in ["/api/sessions/", "/api/sessions", "//api/sessions"] {
        assert!(
            matches!(post(path, READ).status, 403 | 404),
            "POST {path} with the read token"
        );
    }
    // Unknown paths and methods still need a token before they say 404 or 405.
    let anonymous = raw(&at, &request("PUT", "/api/sessions/", "127.0.0.1", &[], ""));
    assert_json_error(&anonymous, 401, "bearer");
    assert_json_error(&get("/api/nope/", READ), 404, "not found");
    let wrong_method = raw(
        &at,
        &request(
            "PUT",
            "/api/sessions/",
            "127.0.0.1",
            &[&format!("Authorization: Bearer {READ}")],
            "",
        ),
    );
    assert_json_error(&wrong_method, 405, "method");
    assert_eq!(
        raw(&at, &request("GET", "/admin/actors", "127.0.0.1", &[], "")).status,
        401
    );
}

#[test]
fn slow_readers_of_a_large_session_keep_memory_bounded() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let id = api.create_id(&repo.path_str(), "@mock flood 8");
    let session = api.wait_finished(&id, Duration::from_secs(180));
    assert_eq!(session["status"], "complete", "{}", session["error"]);
    let result = session["resultText"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(result.len() >= 8 * 1024 * 1024, "{}", result.len());

    let at = addr(&daemon);
    let before_kb = rss_kb(daemon.pid());
    // Readers that take the first bytes of the answer and then stop reading.
    let readers = 80;
    let mut stalled = Vec::new();
    for i in 0..readers {
        let mut stream = TcpStream::connect(&at).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let accept = if i % 2 == 0 {
            "application/json"
        } else {
            "text/event-stream"
        };
        let head = format!(
            "GET /api/sessions/{id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).expect("write");
        let mut first = [0u8; 4096];
        let got = stream.read(&mut first).expect("first bytes");
        assert!(String::from_utf8_lossy(&first[..got]).starts_with("HTTP/1.1 200"));
        stalled.push(stream);
    }
    let mut peak_kb = 0;
    for _ in 0..30 {
        peak_kb = peak_kb.max(rss_kb(daemon.pid()));
        std::thread::sleep(Duration::from_millis(100));
    }
    let grown_mb = peak_kb.saturating_sub(before_kb) / 1024;
    eprintln!(
        "{readers} stalled readers of an 8 MiB session: RSS {} MB -> peak {} MB (+{grown_mb} MB)",
        before_kb / 1024,
        peak_kb / 1024
    );
    // Whole answers in memory are ~8 MB per reader (the code before streaming: see the note
    // of issue 11); streamed ones a few hundred kB.
    assert!(grown_mb < 150, "RSS grew by {grown_mb} MB");
    assert_eq!(api.get("/health").status, 200);

    // The streamed answers are whole: JSON and SSE carry every byte of the output.
    let events = api.events(&id);
    let output: String = events
        .iter()
        .filter(|e| e["type"] == "output")
        .filter_map(|e| e["data"].as_str())
        .collect();
    assert_eq!(output.len(), result.len());
    assert!(output == result, "JSON events differ from the result");
    assert_eq!(
        events.last().map(|e| e["type"].clone()),
        Some(json!("done"))
    );
    let sse = api.block_on(async {
        let response = api
            .http()
            .get(format!("{}/api/sessions/{id}/events", daemon.url))
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("stream");
        response.text().await.expect("whole stream")
    });
    let sse_output: String = sse
        .split("\n\n")
        .filter(|frame| frame.contains("event:output"))
        .map(|frame| {
            frame
                .lines()
                .filter_map(|line| line.strip_prefix("data: "))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    assert!(sse_output == result, "SSE data differs from the result");
    drop(stalled);
}

#[test]
fn malformed_input_gets_json_errors() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let at = addr(&daemon);
    let r = repo.path_str();
    for (path, body) in [
        (
            "/api/sessions",
            json!({"repo": r, "prompt": "say\u{0}--upload-pack=touch /tmp/x"}),
        ),
        (
            "/api/sessions",
            json!({"repo": format!("{r}\u{0}x"), "prompt": "hi"}),
        ),
        (
            "/api/sessions",
            json!({"repo": r, "prompt": "hi", "agent": "mock\u{0}"}),
        ),
        (
            "/api/watches",
            json!({"repo": r, "instructions": "fix\u{0}"}),
        ),
        (
            "/api/watches",
            json!({"repo": r, "instructions": "x", "branch": "main\u{0}"}),
        ),
        (
            "/api/watch-events/ci",
            json!({"repo": r, "workflow": "w", "branch": "b\u{0}", "runId": 1}),
        ),
    ] {
        let reply = api.post(path, &body);
        assert_eq!(reply.status, 400, "{path} {body}: {}", reply.body);
        assert!(
            reply.body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("NUL"),
            "{}",
            reply.body
        );
    }
    assert!(api.list("").is_empty(), "nothing was created");
    assert_eq!(api.get("/api/watches").body, json!([]));

    // Requests hyper cannot parse get JSON bodies too.
    let mut crowded = String::from("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for i in 0..150 {
        crowded.push_str(&format!("X-Filler-{i}: {i}\r\n"));
    }
    crowded.push_str("\r\n");
    assert_json_error(&raw(&at, crowded.as_bytes()), 431, "too large");
    assert_json_error(&raw(&at, b"NOT HTTP AT ALL\r\n\r\n"), 400, "malformed");

    // HEAD answers like GET, without the body.
    for path in ["/health", "/api/sessions", "/api/inbox"] {
        let head = raw(&at, &request("HEAD", path, "127.0.0.1", &[], ""));
        assert_eq!(head.status, 200, "HEAD {path}: {head:?}");
        assert!(head.body.is_empty(), "HEAD {path} sent a body: {head:?}");
    }
    let head = raw(&at, &request("HEAD", "/health", "127.0.0.1", &[], ""));
    assert!(
        head.head
            .to_ascii_lowercase()
            .contains("content-length: 15"),
        "{head:?}"
    );
    assert_eq!(
        raw(
            &at,
            &request("HEAD", "/api/sessions/deadbeef", "127.0.0.1", &[], "")
        )
        .status,
        404
    );
}

#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let daemon = TestDaemon::start_with(&[("TELECODER_API_TOKEN", FULL)]);
    let at = addr(&daemon);
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let header = format!("Authorization: {scheme} {FULL}");
        assert_eq!(
            raw(
                &at,
                &request("GET", "/api/inbox", "127.0.0.1", &[&header], "")
            )
            .status,
            200,
            "{scheme}"
        );
    }
    let wrong_case = format!("Authorization: Bearer {}", FULL.to_uppercase());
    assert_eq!(
        raw(
            &at,
            &request("GET", "/api/inbox", "127.0.0.1", &[&wrong_case], "")
        )
        .status,
        401,
        "the token itself is case-sensitive"
    );
}

/// Reads an SSE stream to its end, calling `on_bytes` with all bytes so far after each chunk;
/// returns the text and whether the stream ended cleanly (not cut).
async fn read_sse(
    http: &reqwest::Client,
    url: String,
    last_event_id: Option<i64>,
    mut on_bytes: impl FnMut(&[u8]),
) -> (String, bool) {
    let mut request = http.get(url).header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    let mut response = request.send().await.expect("stream opens");
    assert_eq!(response.status(), 200);
    // Bytes, not text: a chunk may end inside a character.
    let mut bytes = Vec::new();
    let clean = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                bytes.extend_from_slice(&chunk);
                on_bytes(&bytes);
            }
            Ok(None) => break true,
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&bytes).into_owned(), clean)
}

#[test]
fn a_stream_resumed_after_the_last_event_of_a_finished_session_ends_at_once() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let id = api.create_id(&repo.path_str(), "@mock say done soon");
    api.wait_finished(&id, SHORT);
    let last = api
        .events(&id)
        .last()
        .and_then(|e| e["id"].as_i64())
        .unwrap_or_default();
    let url = format!("{}/api/sessions/{id}/events", daemon.url);
    for (url, last_event_id) in [
        (url.clone(), Some(last)),
        (format!("{url}?after={last}"), None),
        (format!("{url}?after={}", last + 1000), None),
    ] {
        // The bound is a guard against a hang, not a timing claim.
        let (text, clean) = api.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(30),
                read_sse(api.http(), url.clone(), last_event_id, |_| {}),
            )
            .await
            .expect("the stream ends instead of hanging")
        });
        assert!(clean, "{url}");
        assert!(!text.contains("id:"), "no event repeats: {text:?}");
    }
}

#[test]
fn shutdown_ends_open_streams_with_a_final_event() {
    let mut daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let id = api.create_id(&repo.path_str(), "@mock hang");
    api.wait_status(&id, "running", SHORT);
    let url = format!("{}/api/sessions/{id}/events", daemon.url);
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn({
        let api = Api::new(&daemon.url);
        move || {
            api.block_on(read_sse(api.http(), url, None, |bytes| {
                if bytes.windows(7).any(|w| w == b"hanging") {
                    let _ = tx.send(());
                }
            }))
        }
    });
    rx.recv_timeout(SHORT).expect("the stream is live");
    daemon.terminate();
    let (text, clean) = reader.join().expect("reader");
    assert!(clean, "the stream ended cleanly, not cut: {text:?}");
    let last_frame = text.trim_end().rsplit("\n\n").next().unwrap_or_default();
    assert!(last_frame.contains("event:shutdown"), "{text:?}");
    assert!(
        !last_frame.contains("id:"),
        "the final frame moves no cursor: {last_frame:?}"
    );
}

#[test]
fn a_panicking_test_leaves_no_agent_behind() {
    let pids = std::sync::Mutex::new(Vec::new());
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let daemon = TestDaemon::start();
        let repo = TestRepo::new();
        let api = daemon.api();
        let id = api.create_id(&repo.path_str(), "@mock spawn-tree");
        let tree = api.spawned_pids(&id);
        let mut all = session_processes(&id);
        all.extend(tree);
        *pids.lock().unwrap_or_else(|e| e.into_inner()) = all;
        panic!("a test failing with its agent running");
    }));
    assert!(outcome.is_err());
    let pids = pids.into_inner().unwrap_or_else(|e| e.into_inner());
    assert!(pids.len() >= 3, "{pids:?}");
    wait_for("the agent's processes to die", SHORT, || {
        pids.iter().all(|pid| !process_alive(*pid)).then_some(())
    });
}

/// SSE frames of a whole stream as (id, type, data), data lines joined.
fn sse_frames(text: &str) -> Vec<(i64, String, String)> {
    text.split("\n\n")
        .filter_map(|frame| {
            let (mut id, mut kind, mut data) = (None, None, Vec::new());
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    kind = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                }
            }
            Some((id?, kind?, data.join("\n")))
        })
        .collect()
}

#[test]
fn streamed_lists_page_through_the_store_whole_and_in_order() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let seed = api.create_id(&repo.path_str(), "@mock say seed");
    api.wait_finished(&seed, SHORT);
    let db = daemon.database();
    // 99 more finished sessions, some sharing an update time (ties must not repeat or vanish).
    for i in 0..99u32 {
        db.execute(
            "INSERT INTO sessions (id, repo, prompt, agent, policy_mode, permission_mode, \
             write_policy, max_runtime_seconds, runtime_command, status, created_at, updated_at) \
             SELECT ?1, repo, prompt, agent, policy_mode, permission_mode, write_policy, \
             max_runtime_seconds, runtime_command, 'complete', created_at, ?2 \
             FROM sessions WHERE id = ?3",
            rusqlite::params![
                format!("{:08x}", 0xa000_0000u32 + i),
                format!("2030-01-01T00:00:{:02}.000Z", i / 3),
                seed
            ],
        )
        .expect("insert session");
    }
    let newest_first: Vec<String> = {
        let mut stmt = db
            .prepare("SELECT id FROM sessions ORDER BY rowid DESC")
            .expect("prepare");
        stmt.query_map([], |row| row.get(0))
            .expect("query")
            .flatten()
            .collect()
    };
    assert_eq!(newest_first.len(), 100);
    assert_eq!(ids(&api.list("")), newest_first);
    assert_eq!(
        ids(&api.list("?limit=40&offset=5")),
        newest_first[5..45].to_vec()
    );
    assert_eq!(ids(&api.list("?offset=90")), newest_first[90..].to_vec());
    let inbox = api.get("/api/inbox?limit=200").body;
    let inbox_ids = ids(inbox.as_array().map(Vec::as_slice).unwrap_or_default());
    let mut expected: Vec<(String, String)> = {
        let mut stmt = db
            .prepare("SELECT updated_at, id FROM sessions ORDER BY updated_at DESC, rowid ASC")
            .expect("prepare");
        stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("query")
            .flatten()
            .collect()
    };
    assert_eq!(inbox_ids.len(), 100, "every finished session, once");
    assert_eq!(
        inbox_ids,
        expected.drain(..).map(|(_, id)| id).collect::<Vec<_>>()
    );

    // A finished session with many small events, one with a 3-byte character and one with a
    // CRLF across the 64 KiB slice boundary, so that pages and slices both split somewhere.
    let long = "0e0e0e0e";
    db.execute(
        "INSERT INTO sessions (id, repo, prompt, agent, policy_mode, permission_mode, \
         write_policy, max_runtime_seconds, runtime_command, status, created_at, updated_at) \
         SELECT ?1, repo, prompt, agent, policy_mode, permission_mode, write_policy, \
         max_runtime_seconds, runtime_command, 'complete', created_at, updated_at \
         FROM sessions WHERE id = ?2",
        rusqlite::params![long, seed],
    )
    .expect("insert session");
    let euros = "€".repeat(30_000);
    let crlf = format!("{}\r\n{}", "a".repeat(65_535), "b".repeat(100));
    for i in 0..=450 {
        let (kind, data) = match i {
            100 => ("output", euros.clone()),
            300 => ("output", crlf.clone()),
            450 => ("done", "finished".to_owned()),
            _ => ("output", format!("chunk {i}\n")),
        };
        db.execute(
            "INSERT INTO events (session_id, type, data, created_at) VALUES (?1, ?2, ?3, 'now')",
            rusqlite::params![long, kind, data],
        )
        .expect("insert event");
    }
    let seed = long;
    let stored: Vec<(i64, String)> = {
        let mut stmt = db
            .prepare("SELECT id, data FROM events WHERE session_id = ?1 ORDER BY id")
            .expect("prepare");
        stmt.query_map([seed], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("query")
            .flatten()
            .collect()
    };
    let listed: Vec<(i64, String)> = api
        .events(seed)
        .iter()
        .map(|e| {
            let data = e["data"].as_str().unwrap_or_default().to_owned();
            (e["id"].as_i64().unwrap_or_default(), data)
        })
        .collect();
    assert_eq!(listed.len(), stored.len());
    assert!(listed == stored, "the JSON events differ from the store");
    let url = format!("{}/api/sessions/{seed}/events", daemon.url);
    let (text, clean) = api.block_on(read_sse(api.http(), url, None, |_| {}));
    assert!(clean);
    // SSE carries line breaks as LF (a CR cannot travel in SSE data).
    let streamed: Vec<(i64, String)> = sse_frames(&text)
        .into_iter()
        .map(|(id, _, data)| (id, data))
        .collect();
    let expected: Vec<(i64, String)> = stored
        .iter()
        .map(|(id, data)| (*id, data.replace("\r\n", "\n")))
        .collect();
    assert_eq!(streamed.len(), expected.len());
    assert!(streamed == expected, "the SSE events differ from the store");

    // A watch's runs, newest first, across pages.
    let watch = api.post(
        "/api/watches",
        &json!({"repo": repo.path_str(), "instructions": "x"}),
    );
    let watch_id = watch.body["id"].as_str().unwrap_or_default().to_owned();
    for i in 0..250 {
        db.execute(
            "INSERT INTO watch_runs (watch_id, event_key, created_at) VALUES (?1, ?2, 'now')",
            rusqlite::params![watch_id, format!("key-{i}")],
        )
        .expect("insert run");
    }
    let runs = api.get(&format!("/api/watches/{watch_id}/runs")).body;
    let run_ids: Vec<i64> = runs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_i64())
        .collect();
    assert_eq!(run_ids.len(), 250);
    assert!(
        run_ids.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats"
    );
}
