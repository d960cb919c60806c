//! Reliability and security: tokens on every route, exposure check, repo allowlist, secret
//! redaction and agent environment scrubbing, FIFO queue, cancel, timeouts, output floods.

use crate::support::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const FULL: &str = "full-token-0123456789abcdef";
const READ: &str = "read-token-0123456789abcdef";
const ADMIN: &str = "admin-token-0123456789abcdef";

fn request(
    api: &Api,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let url = format!("{}{path}", api.base);
    let mut builder = match method {
        "GET" => api.http().get(url),
        "POST" => api.http().post(url),
        "PATCH" => api.http().patch(url),
        "DELETE" => api.http().delete(url),
        other => panic!("unknown method {other}"),
    };
    if let Some(token) = token {
        builder = builder.bearer_auth(token);
    }
    if let Some(body) = body {
        builder = builder.json(body);
    }
    api.send(builder)
}

#[test]
fn every_route_but_health_needs_a_token_with_the_right_scope() {
    let daemon = TestDaemon::start_with(&[
        ("TELECODER_API_TOKEN", FULL),
        ("TELECODER_API_READ_TOKEN", READ),
        ("TELECODER_ADMIN_TOKEN", ADMIN),
    ]);
    let repo = TestRepo::new();
    let api = daemon.api();
    let r = repo.path_str();
    let session = request(
        &api,
        "POST",
        "/api/sessions",
        Some(FULL),
        Some(&json!({"repo": r, "prompt": "@mock say hi"})),
    );
    assert_eq!(session.status, 201, "{}", session.body);
    let sid = session.body["id"].as_str().unwrap_or_default().to_owned();
    let watch = request(
        &api,
        "POST",
        "/api/watches",
        Some(FULL),
        Some(&json!({"repo": r, "instructions": "x"})),
    );
    assert_eq!(watch.status, 201);
    let wid = watch.body["id"].as_str().unwrap_or_default().to_owned();
    api.wait_finished_with(&sid, FULL);

    let reads = [
        "/api/sessions".to_owned(),
        "/api/inbox".to_owned(),
        format!("/api/sessions/{sid}"),
        format!("/api/sessions/{sid}/events"),
        format!("/api/sessions/{sid}/lineage"),
        "/api/watches".to_owned(),
        format!("/api/watches/{wid}"),
        format!("/api/watches/{wid}/runs"),
        "/api/nope".to_owned(),
    ];
    let ci = json!({"repo": r, "workflow": "w", "branch": "b", "runId": 1});
    let pr = json!({"repo": r, "prNumber": 1, "title": "t", "base": "m", "head": "h"});
    let writes: Vec<(&str, String, Value)> = vec![
        (
            "POST",
            "/api/sessions".into(),
            json!({"repo": r, "prompt": "@mock say x"}),
        ),
        ("POST", format!("/api/sessions/{sid}/rerun"), json!({})),
        ("POST", format!("/api/sessions/{sid}/cancel"), json!({})),
        (
            "POST",
            "/api/watches".into(),
            json!({"repo": r, "instructions": "y"}),
        ),
        (
            "PATCH",
            format!("/api/watches/{wid}"),
            json!({"instructions": "z"}),
        ),
        ("POST", "/api/watch-events/ci".into(), ci),
        ("POST", "/api/watch-events/pr".into(), pr),
        ("DELETE", format!("/api/watches/{wid}"), json!({})),
    ];
    for path in &reads {
        for token in [None, Some("wrong-token-0123456789")] {
            let reply = request(&api, "GET", path, token, None);
            assert_eq!(reply.status, 401, "GET {path} with {token:?}");
            assert!(reply.body["error"].is_string());
        }
        let reply = request(&api, "GET", path, Some(READ), None);
        assert!(
            !matches!(reply.status, 401 | 403),
            "GET {path} with the read token: {}",
            reply.status
        );
    }
    for (method, path, body) in &writes {
        assert_eq!(
            request(&api, method, path, None, Some(body)).status,
            401,
            "{method} {path}"
        );
        assert_eq!(
            request(&api, method, path, Some(READ), Some(body)).status,
            403,
            "{method} {path}"
        );
    }
    for (method, path, body) in &writes {
        let reply = request(&api, method, path, Some(FULL), Some(body));
        assert!(
            !matches!(reply.status, 401 | 403),
            "{method} {path} with the full token: {}",
            reply.body
        );
    }
    for token in [None, Some(FULL), Some(READ)] {
        assert!(matches!(
            request(&api, "GET", "/admin/actors", token, None).status,
            401 | 403
        ));
    }
    assert_eq!(request(&api, "GET", "/health", None, None).status, 200);
    let hook = api.send(
        api.http()
            .post(format!("{}/webhooks/github", api.base))
            .body("{}"),
    );
    assert_eq!(
        hook.status, 403,
        "webhooks use their HMAC, not bearer tokens: {}",
        hook.body
    );

    // The CLI sends the token from the same configuration.
    let output = telecoder(
        &[
            ("TELECODER_URL", daemon.url.as_str()),
            ("TELECODER_API_TOKEN", FULL),
        ],
        &["list"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains(&sid));
}

#[test]
fn a_public_bind_without_a_token_refuses_to_start() {
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().to_string_lossy().into_owned();
    let output = telecoder(
        &[
            ("TELECODER_DATA_DIR", data_dir.as_str()),
            ("TELECODER_LISTEN_HOST", "0.0.0.0"),
            ("TELECODER_LISTEN_PORT", "0"),
        ],
        &["serve"],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TELECODER_API_TOKEN"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn allowed_repos_are_enforced_on_sessions_and_watches() {
    let allowed = TestRepo::new();
    let other = TestRepo::new();
    let pattern = allowed.path_str();
    let daemon =
        TestDaemon::start_with(&[("TELECODER_ALLOWED_REPOS", &format!("{pattern} acme/*"))]);
    let api = daemon.api();
    api.create(&allowed.path_str(), "@mock say ok", json!({}));
    let denied = api.post(
        "/api/sessions",
        &json!({"repo": other.path_str(), "prompt": "x"}),
    );
    assert_eq!(denied.status, 400);
    assert!(denied.body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("TELECODER_ALLOWED_REPOS"));
    assert_eq!(
        api.post(
            "/api/watches",
            &json!({"repo": other.path_str(), "instructions": "x"})
        )
        .status,
        400
    );
    assert_eq!(
        api.post(
            "/api/watches",
            &json!({"repo": "https://github.com/acme/app.git", "instructions": "x"})
        )
        .status,
        201
    );
    assert_eq!(
        api.post(
            "/api/watches",
            &json!({"repo": "evil/app", "instructions": "x"})
        )
        .status,
        400
    );
}

#[test]
fn secrets_never_reach_the_agent_or_the_record() {
    let token = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
    let daemon = TestDaemon::start_with(&[
        ("GITHUB_TOKEN", token),
        ("TELECODER_API_TOKEN", FULL),
        ("SOME_OTHER_VAR", "visible"),
    ]);
    let repo = TestRepo::new();
    let api = daemon.api();
    let create = |prompt: &str, repo: &str| {
        let reply = request(
            &api,
            "POST",
            "/api/sessions",
            Some(FULL),
            Some(&json!({"repo": repo, "prompt": prompt})),
        );
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.body["id"].as_str().unwrap_or_default().to_owned()
    };
    let env_id = create(
        "@mock env GITHUB_TOKEN TELECODER_API_TOKEN SOME_OTHER_VAR",
        &repo.path_str(),
    );
    let leak_id = create(
        &format!("@mock say leaked {token} and {FULL} and Bearer zyxwvutsrqponmlkjihg"),
        &repo.path_str(),
    );
    let url_id = create(
        "@mock say x",
        &format!("https://x-access-token:{token}@127.0.0.1:9/repo.git"),
    );
    for id in [&env_id, &leak_id, &url_id] {
        api.wait_finished_with(id, FULL);
    }
    let get = |id: &str| {
        request(
            &api,
            "GET",
            &format!("/api/sessions/{id}"),
            Some(FULL),
            None,
        )
        .body
    };
    let events = |id: &str| {
        request(
            &api,
            "GET",
            &format!("/api/sessions/{id}/events"),
            Some(FULL),
            None,
        )
        .body
    };
    let seen = get(&env_id)["resultText"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(seen.contains("GITHUB_TOKEN=(unset)"), "{seen}");
    assert!(seen.contains("TELECODER_API_TOKEN=(unset)"), "{seen}");
    assert!(seen.contains("SOME_OTHER_VAR=visible"), "{seen}");

    for id in [&leak_id, &url_id] {
        // The prompt and repo are the caller's own input and are kept as given (the contract
        // says so); everything the agent or the system produced is masked.
        let mut record = get(id);
        record["prompt"] = Value::Null;
        record["repo"] = Value::Null;
        let everything = format!("{record}{}", events(id));
        assert!(!everything.contains(token), "token leaked: {everything}");
        assert!(!everything.contains(FULL), "API token leaked");
        assert!(
            !everything.contains("zyxwvutsrqponmlkjihg"),
            "bearer credential leaked"
        );
        assert!(everything.contains("[REDACTED]"), "{everything}");
    }
    assert_eq!(
        get(&url_id)["status"],
        "error",
        "the planted URL cannot be cloned"
    );
    let db_dump: String = daemon
        .database()
        .query_row("SELECT group_concat(data, ' ') FROM events", [], |row| {
            row.get(0)
        })
        .expect("events");
    assert!(!db_dump.contains(token));
    assert!(!daemon.log().contains(token), "token in the daemon log");
}

#[test]
fn the_queue_is_fifo_under_the_concurrency_limit() {
    let daemon = TestDaemon::start_with(&[("TELECODER_MAX_CONCURRENT_SESSIONS", "2")]);
    let repo = TestRepo::new();
    let api = daemon.api();
    let ids: Vec<String> = (0..10)
        .map(|_| {
            api.create(&repo.path_str(), "@mock sleep 0.3", json!({}))["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let last = api.session(&ids[9]);
    if last["status"] == "pending" {
        assert!(
            last["queuePosition"].as_u64().unwrap_or_default() >= 1,
            "{last}"
        );
    }
    let sessions: Vec<Value> = ids
        .iter()
        .map(|id| api.wait_finished(id, Duration::from_secs(60)))
        .collect();
    assert!(sessions.iter().all(|s| s["status"] == "complete"));
    let started: Vec<&str> = sessions
        .iter()
        .filter_map(|s| s["startedAt"].as_str())
        .collect();
    let mut sorted = started.clone();
    sorted.sort();
    assert_eq!(started, sorted, "sessions start in creation order");
    for session in &sessions {
        let start = session["startedAt"].as_str().unwrap_or_default();
        let overlapping = sessions
            .iter()
            .filter(|other| {
                other["startedAt"].as_str().unwrap_or_default() <= start
                    && other["finishedAt"].as_str().unwrap_or_default() > start
            })
            .count();
        assert!(overlapping <= 2, "more than 2 sessions ran at once");
    }
    assert!(sessions.iter().all(|s| s["queuePosition"] == 0));
}

fn spawned_pids(api: &Api, id: &str) -> Vec<i32> {
    wait_for("agent pids", SHORT, || {
        api.events(id)
            .iter()
            .filter_map(|e| e["data"].as_str())
            .find(|d| d.starts_with("pids:"))
            .map(|d| {
                d.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<i32>>()
            })
    })
}

#[test]
fn cancel_stops_pending_and_running_sessions_and_their_process_trees() {
    let daemon = TestDaemon::start_with(&[("TELECODER_MAX_CONCURRENT_SESSIONS", "1")]);
    let repo = TestRepo::new();
    let api = daemon.api();
    let running = api.create(&repo.path_str(), "@mock spawn-tree", json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let pending = api.create(&repo.path_str(), "@mock say never", json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let pids = spawned_pids(&api, &running);
    assert!(pids.iter().all(|pid| process_alive(*pid)));

    let reply = api.post(&format!("/api/sessions/{pending}/cancel"), &json!({}));
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body["status"], "cancelled",
        "pending is cancelled at once"
    );
    assert_eq!(reply.body["failureKind"], "cancelled");

    let started = Instant::now();
    assert_eq!(
        api.post(&format!("/api/sessions/{running}/cancel"), &json!({}))
            .status,
        200
    );
    wait_for("the process tree to die", Duration::from_secs(2), || {
        (pids.iter().all(|pid| !process_alive(*pid)) && session_processes(&running).is_empty())
            .then_some(())
    });
    let latency = started.elapsed();
    let session = api.wait_finished(&running, SHORT);
    assert_eq!(session["status"], "cancelled");
    assert_eq!(session["failureKind"], "cancelled");
    let last = api.events(&running).last().cloned().unwrap_or_default();
    assert_eq!(last["type"], "error");
    assert!(last["data"]
        .as_str()
        .unwrap_or_default()
        .contains("cancelled"));
    assert_eq!(
        api.post(&format!("/api/sessions/{running}/cancel"), &json!({}))
            .status,
        409
    );
    eprintln!("cancel latency (request to process tree gone): {latency:?}");
}

#[test]
fn timeouts_kill_the_whole_process_tree() {
    // Long enough for the agent to start and report its pids on a loaded machine.
    let daemon = TestDaemon::start_with(&[("TELECODER_PROMPT_TIMEOUT_SECONDS", "10")]);
    let repo = TestRepo::new();
    let api = daemon.api();
    let id = api.create(&repo.path_str(), "@mock spawn-tree", json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let pids = spawned_pids(&api, &id);
    let session = api.wait_finished(&id, SHORT);
    assert_eq!(session["failureKind"], "timeout");
    wait_for("grandchildren to die", Duration::from_secs(3), || {
        (pids.iter().all(|pid| !process_alive(*pid)) && session_processes(&id).is_empty())
            .then_some(())
    });
}

#[test]
fn a_flooding_agent_is_bounded_and_the_daemon_keeps_answering() {
    let daemon = TestDaemon::start_with(&[("TELECODER_MAX_OUTPUT_BYTES", "1048576")]);
    let repo = TestRepo::new();
    let api = daemon.api();
    let id = api.create(&repo.path_str(), "@mock flood 200", json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut peak_rss_kb = 0u64;
    let session = wait_for("the flood to end", Duration::from_secs(120), || {
        assert_eq!(api.get("/health").status, 200, "the daemon keeps answering");
        peak_rss_kb = peak_rss_kb.max(rss_kb(daemon.pid()));
        let session = api.session(&id);
        (session["status"] != "running" && session["status"] != "pending").then_some(session)
    });
    assert_eq!(session["status"], "complete", "{}", session["error"]);
    let text = session["resultText"].as_str().unwrap_or_default();
    assert!(text.len() <= 1024 * 1024 + 200, "kept {} bytes", text.len());
    assert!(text.contains("[output truncated"));
    let stored: i64 = daemon
        .database()
        .query_row(
            "SELECT SUM(length(data)) FROM events WHERE session_id = ?1",
            [&id],
            |row| row.get(0),
        )
        .expect("sum");
    assert!(stored <= 2 * 1024 * 1024, "events hold {stored} bytes");
    assert!(
        peak_rss_kb < 200 * 1024,
        "daemon RSS peaked at {peak_rss_kb} kB during a 200 MB flood"
    );
    eprintln!("daemon peak RSS during a 200 MB flood: {peak_rss_kb} kB");
}
