//! Operations: the admin actor tree, status, fault drills, Prometheus metrics, JSON logs,
//! systemd readiness and watchdog, `admin` and `doctor` commands.

use crate::support::*;
use serde_json::{json, Value};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

fn tree(api: &Api) -> Value {
    let reply = api.get("/admin/actors");
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

fn children_of_kind(tree: &Value, kind: &str) -> Vec<Value> {
    tree["children"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["kind"] == kind)
        .cloned()
        .collect()
}

#[test]
fn the_actor_tree_shows_live_actors_and_restarts() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let root = tree(&api);
    assert_eq!(root["kind"], "supervisor");
    assert_eq!(root["name"], "telecoder.supervisor");
    assert_eq!(children_of_kind(&root, "store").len(), 1);
    assert!(root["messagesHandled"].as_u64().unwrap_or(0) > 0);

    let id = api.create(&repo.path_str(), "@mock sleep 3", json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let session = wait_for("the session actor with its pid", SHORT, || {
        children_of_kind(&tree(&api), "session")
            .into_iter()
            .find(|node| {
                node["session"]["sessionId"] == id.as_str() && node["session"]["pid"].is_u64()
            })
    });
    assert_eq!(session["name"], format!("telecoder.session.{id}"));
    assert_eq!(session["session"]["agent"], "mock");
    assert_eq!(
        session["session"]["processGroup"],
        session["session"]["pid"]
    );
    assert!(
        session["session"]["lastHeartbeatAgeMs"]
            .as_u64()
            .unwrap_or(u64::MAX)
            < 5_000
    );
    assert!(session["uptimeMs"].is_u64());
    api.wait_finished(&id, SHORT);
    wait_for("the session actor to leave the tree", SHORT, || {
        children_of_kind(&tree(&api), "session")
            .is_empty()
            .then_some(())
    });

    let watch = api.post("/api/watches", &json!({"kind": "schedule", "repo": repo.path_str(), "instructions": "x", "schedule": "0 3 * * *"}));
    let watch_id = watch.body["id"].as_str().unwrap_or_default().to_owned();
    let node = wait_for("the watch actor", SHORT, || {
        children_of_kind(&tree(&api), "watch").into_iter().next()
    });
    assert_eq!(node["watch"]["watchId"], watch_id.as_str());
    assert!(node["watch"]["nextFire"]
        .as_str()
        .unwrap_or_default()
        .ends_with("T03:00:00.000Z"));

    for target in ["store".to_owned(), format!("watch:{watch_id}")] {
        let reply = api.post("/admin/faults", &json!({"target": target}));
        assert_eq!(reply.status, 202, "{}", reply.body);
    }
    let restarted = wait_for("restart counts", SHORT, || {
        let root = tree(&api);
        let store = children_of_kind(&root, "store").into_iter().next()?;
        let watch = children_of_kind(&root, "watch").into_iter().next()?;
        (store["restarts"] == 1 && watch["restarts"] == 1).then_some(root)
    });
    assert!(children_of_kind(&restarted, "store")[0]["status"] == "running");
    assert_eq!(
        api.post("/admin/faults", &json!({"target": "nothing"}))
            .status,
        400
    );

    let status = api.get("/admin/status").body;
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["database"]["schemaVersion"], 8);
    assert!(status["database"]["sizeBytes"].as_u64().unwrap_or(0) > 0);
    assert_eq!(status["sessionsByStatus"]["complete"], 1);
    assert_eq!(status["queueDepth"], 0);
    assert_eq!(status["storeRestarts"], 1);
}

/// `name{labels} value` lines of a Prometheus text exposition, checked as they are parsed.
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').expect("name and value");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("numeric value in {line:?}"));
            (name.to_owned(), value)
        })
        .collect()
}

fn metric(samples: &[(String, f64)], name: &str) -> f64 {
    samples
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn metrics_parse_and_move() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let scrape = || {
        let response = api.send(api.http().get(format!("{}/metrics", api.base)));
        assert_eq!(response.status, 200);
        assert!(
            response.content_type.contains("openmetrics-text"),
            "{}",
            response.content_type
        );
        parse_metrics(response.body.as_str().unwrap_or_default())
    };
    let before = scrape();
    assert_eq!(metric(&before, "telecoder_sessions_created_total"), 0.0);
    let id = api.create(&repo.path_str(), "@mock say counted", json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    api.wait_finished(&id, SHORT);
    let crash = api.create(&repo.path_str(), "@mock crash", json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    api.wait_finished(&crash, SHORT);
    let after = scrape();
    assert_eq!(metric(&after, "telecoder_sessions_created_total"), 2.0);
    assert_eq!(
        metric(
            &after,
            "telecoder_sessions_finished_total{status=\"complete\",failure_kind=\"\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &after,
            "telecoder_sessions_finished_total{status=\"error\",failure_kind=\"runtime_error\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(&after, "telecoder_session_duration_seconds_count"),
        2.0
    );
    assert!(metric(&after, "telecoder_events_written_total") >= 8.0);
    assert_eq!(
        metric(
            &after,
            "telecoder_http_requests_total{route=\"/api/sessions\",status=\"201\"}"
        ),
        2.0
    );
    assert!(
        metric(
            &after,
            "telecoder_http_requests_total{route=\"/api/sessions/:id\",status=\"200\"}"
        ) >= 2.0
    );
    assert_eq!(metric(&after, "telecoder_sessions_running"), 0.0);
    assert_eq!(metric(&after, "telecoder_sessions_queued"), 0.0);
}

#[test]
fn json_logs_carry_session_ids() {
    let daemon = TestDaemon::start_with(&[("TELECODER_LOG_FORMAT", "json")]);
    let repo = TestRepo::new();
    let api = daemon.api();
    let id = api.create(&repo.path_str(), "@mock say logged", json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    api.wait_finished(&id, SHORT);
    let log = wait_for("the finish to be logged", SHORT, || {
        let log = daemon.log();
        log.contains("session finished").then_some(log)
    });
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let about_session: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("session "))
        })
        .collect();
    assert!(about_session.len() >= 2, "{log}");
    assert!(
        about_session.iter().all(|l| l["session"] == id.as_str()),
        "{log}"
    );
    assert!(lines
        .iter()
        .all(|l| l["level"].is_string() && l["timestamp"].is_string()));
}

#[test]
fn systemd_hears_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let path = socket_path.to_string_lossy().into_owned();
    let mut daemon = TestDaemon::start_with(&[
        ("NOTIFY_SOCKET", path.as_str()),
        ("WATCHDOG_USEC", "200000"),
    ]);
    let mut seen = String::new();
    let mut buffer = [0u8; 1024];
    while !(seen.contains("READY=1") && seen.contains("WATCHDOG=1")) {
        let n = socket.recv(&mut buffer).expect("a notification");
        seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
        seen.push('\n');
    }
    assert_eq!(
        daemon.api().get("/health").status,
        200,
        "ready means serving"
    );
    daemon.terminate();
    while !seen.contains("STOPPING=1") {
        let n = socket.recv(&mut buffer).expect("stopping notification");
        seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
}

#[test]
fn admin_and_doctor_commands() {
    let daemon = TestDaemon::start();
    let run = |args: &[&str], extra: &[(&str, &str)]| {
        let env: Vec<(&str, &str)> = [("TELECODER_URL", daemon.url.as_str())]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        telecoder(&env, args)
    };
    let text = run(&["--human", "admin", "actors"], &[]);
    assert!(text.status.success());
    let shown = String::from_utf8_lossy(&text.stdout);
    assert!(
        shown.starts_with("supervisor telecoder.supervisor [running]"),
        "{shown}"
    );
    assert!(shown.contains("store telecoder.store"), "{shown}");
    let json: Value = serde_json::from_slice(&run(&["--json", "admin", "actors"], &[]).stdout)
        .expect("json tree");
    assert_eq!(json["kind"], "supervisor");
    let status: Value =
        serde_json::from_slice(&run(&["admin", "status"], &[]).stdout).expect("json status");
    assert!(status["uptimeSeconds"].is_u64());

    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().to_string_lossy().into_owned();
    let mock = mock_agent_command();
    let doctor = |extra: &[(&str, &str)]| {
        let runtime = runtime_env();
        let mut env: Vec<(&str, &str)> = vec![
            ("TELECODER_DATA_DIR", &data_dir),
            ("TELECODER_LISTEN_PORT", "0"),
            ("TELECODER_DEFAULT_AGENT", "mock"),
            ("TELECODER_AGENT_MOCK_COMMAND", &mock),
        ];
        env.extend(runtime.iter().map(|(k, v)| (*k, v.as_str())));
        env.extend(extra.iter().copied());
        run(&["doctor", "--human"], &env)
    };
    let good = doctor(&[]);
    let report = String::from_utf8_lossy(&good.stdout);
    assert!(good.status.success(), "{report}");
    assert!(
        report.contains(&format!("ok    runtime   {}", runtime())),
        "{report}"
    );
    assert!(report.contains("mock -> python3"), "{report}");
    if acpx_runtime() {
        assert!(
            report.contains("acpx") && report.contains("0.19.1"),
            "{report}"
        );
        let bad = doctor(&[("TELECODER_ACPX_COMMAND", "/nonexistent/acpx")]);
        assert_eq!(bad.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&bad.stdout).contains("FAIL  acpx"));
    } else {
        assert!(!report.contains("acpx"), "native needs no acpx: {report}");
    }
    // A configured agent whose program is missing fails the check, naming it.
    let missing = doctor(&[("TELECODER_AGENT_GHOST_COMMAND", "/nonexistent/ghost --acp")]);
    let report = String::from_utf8_lossy(&missing.stdout);
    assert_eq!(missing.status.code(), Some(1), "{report}");
    assert!(
        report.contains("FAIL  agents") && report.contains("ghost: /nonexistent/ghost not found"),
        "{report}"
    );
}
