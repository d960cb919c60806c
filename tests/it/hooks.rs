//! GitHub's own webhook payloads (tests/fixtures/github/octokit, copied from octokit/webhooks)
//! replayed signed in both content types GitHub can send; unauthenticated webhook bodies that
//! try to exhaust memory; caps on schedules and run limits.

use crate::support::*;
use crate::webhooks::{runs, sign, start_mapping, watch, Hook, SECRET};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const PR_REPO: &str = "https://github.com/Codertocat/Hello-World";
const CI_REPO: &str = "https://github.com/octo-org/octo-repo";
/// GitHub waits this long for an answer before it counts a delivery as failed.
const GITHUB_TIMEOUT: Duration = Duration::from_secs(10);
/// The head commit of pull request #2 in every pull_request example.
const PR_HEAD: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

fn start() -> Hook {
    start_mapping(&[PR_REPO, CI_REPO], &[])
}

/// The example files of one event, in a stable order.
fn examples(event: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(format!("{ROOT}/tests/fixtures/github/octokit/{event}"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixture folder")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no examples in {}", dir.display());
    files
}

fn file_stem(path: &std::path::Path) -> String {
    path.file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_default()
        .trim_end_matches(".json")
        .to_owned()
}

#[derive(Clone, Copy, Debug)]
enum Encoding {
    Json,
    Form,
}

impl Encoding {
    /// Both encodings, in an order that alternates with `index` so each one is sometimes the
    /// delivery that fires and sometimes the repeat.
    fn both(index: usize) -> [Encoding; 2] {
        if index.is_multiple_of(2) {
            [Self::Json, Self::Form]
        } else {
            [Self::Form, Self::Json]
        }
    }

    /// The body and content type GitHub sends for a JSON document in this encoding.
    fn encode(self, json: &[u8]) -> (Vec<u8>, &'static str) {
        match self {
            Self::Json => (json.to_vec(), "application/json"),
            Self::Form => {
                let field: String = form_urlencoded::byte_serialize(json).collect();
                (
                    format!("payload={field}").into_bytes(),
                    "application/x-www-form-urlencoded",
                )
            }
        }
    }
}

/// Sends `json` as GitHub would in `encoding`, signed over the body exactly as sent; the
/// answer must come within GitHub's timeout.
fn deliver(api: &Api, event: &str, delivery: &str, json: &[u8], encoding: Encoding) -> Reply {
    let (body, content_type) = encoding.encode(json);
    api.send(
        api.http()
            .post(format!("{}/webhooks/github", api.base))
            .timeout(GITHUB_TIMEOUT)
            .header("content-type", content_type)
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", sign(SECRET, &body))
            .body(body),
    )
}

/// Waits until the daemon is done with a stored delivery and returns its final state.
fn routed(daemon: &TestDaemon, delivery: &str) -> String {
    wait_for(&format!("delivery {delivery} to be routed"), SHORT, || {
        let state: String = daemon
            .database()
            .query_row(
                "SELECT state FROM webhook_deliveries WHERE delivery_id = ?1",
                [delivery],
                |row| row.get(0),
            )
            .ok()?;
        (state != "pending").then_some(state)
    })
}

fn delete_watch(api: &Api, id: &str) {
    let reply = api.send(api.http().delete(format!("{}/api/watches/{id}", api.base)));
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// Replays every example of `event` against a fresh watch each (so a repeat is a repeat only
/// within one example) and checks the answer, the stored state and the runs it made.
fn replay_all(
    hook: &Hook,
    event: &str,
    new_watch: impl Fn(&Api) -> String,
    fires: impl Fn(&str) -> bool,
    mapped: impl Fn(&str) -> bool,
) -> usize {
    let api = hook.daemon.api();
    let mut fired = 0;
    for (index, path) in examples(event).into_iter().enumerate() {
        let name = file_stem(&path);
        let json = std::fs::read(&path).expect("example");
        let id = new_watch(&api);
        for encoding in Encoding::both(index) {
            let delivery = format!("{event}-{name}-{encoding:?}");
            let reply = deliver(&api, event, &delivery, &json, encoding);
            assert_eq!(reply.status, 202, "{delivery}: {}", reply.body);
            let (status, state) = if mapped(&name) {
                ("accepted", "done")
            } else {
                ("ignored", "ignored")
            };
            assert_eq!(reply.body["status"], status, "{delivery}: {}", reply.body);
            assert_eq!(routed(&hook.daemon, &delivery), state, "{delivery}");
        }
        let made = runs(&api, &id);
        let expected = usize::from(fires(&name));
        assert_eq!(made.len(), expected, "{event}/{name}: {made:?}");
        for run in &made {
            assert_ne!(run["sessionId"], "", "{event}/{name}: {run}");
        }
        fired += made.len();
        delete_watch(&api, &id);
    }
    fired
}

fn action_of(name: &str) -> &str {
    name.split('.').next().unwrap_or_default()
}

#[test]
fn every_published_example_is_acknowledged_and_only_reviewable_actions_fire() {
    let hook = start();
    let api = hook.daemon.api();

    let reviewable = |name: &str| {
        matches!(
            action_of(name),
            "opened" | "reopened" | "synchronize" | "ready_for_review"
        )
    };
    let fired = replay_all(
        &hook,
        "pull_request",
        |api| {
            watch(
                api,
                json!({"kind": "pr_review", "repo": "Codertocat/Hello-World", "instructions": "@mock say reviewed"}),
            )
        },
        reviewable,
        reviewable,
    );
    // opened ×3, reopened ×2, synchronize, ready_for_review ×3; closed, labeled, … never.
    assert_eq!(fired, 9);

    // GitHub's workflow_run examples are a success and two requested runs: none fires.
    let fired = replay_all(
        &hook,
        "workflow_run",
        |api| {
            watch(
                api,
                json!({"repo": "octo-org/octo-repo", "instructions": "@mock say fix", "workflow": "test"}),
            )
        },
        |_| false,
        |name| action_of(name) == "completed",
    );
    assert_eq!(fired, 0);

    for (index, path) in examples("ping").into_iter().enumerate() {
        let json = std::fs::read(&path).expect("example");
        for encoding in Encoding::both(index) {
            let delivery = format!("ping-{}-{encoding:?}", file_stem(&path));
            let reply = deliver(&api, "ping", &delivery, &json, encoding);
            assert_eq!(reply.status, 200, "{delivery}: {}", reply.body);
            assert_eq!(reply.body["status"], "pong");
        }
    }

    // An event type no watch handles: acknowledged and stored as ignored.
    let reply = deliver(
        &api,
        "star",
        "star-1",
        br#"{"action": "created"}"#,
        Encoding::Form,
    );
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.body["status"], "ignored");
    assert_eq!(routed(&hook.daemon, "star-1"), "ignored");
}

/// GitHub's completed run, failed: `workflow_run.name` is `""`, the workflow is `test` in
/// `.github/workflows/test.yml`.
fn failed_run() -> Vec<u8> {
    let path = format!("{ROOT}/tests/fixtures/github/octokit/workflow_run/completed.payload.json");
    let mut payload: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("example")).expect("json");
    assert_eq!(payload["workflow_run"]["name"], "");
    payload["workflow_run"]["conclusion"] = json!("failure");
    serde_json::to_vec(&payload).expect("encode")
}

#[test]
fn a_run_without_a_name_fires_watches_naming_the_workflow_its_file_or_its_path() {
    let hook = start();
    let api = hook.daemon.api();
    let ci = |filter: &str| {
        watch(
            &api,
            json!({"repo": CI_REPO, "instructions": "@mock say fix", "workflow": filter}),
        )
    };
    let firing: Vec<String> = ["test", "test.yml", ".github/workflows/test.yml", ""]
        .into_iter()
        .map(ci)
        .collect();
    let silent: Vec<String> = ["Test", "build", "other.yml", "workflows/test.yml"]
        .into_iter()
        .map(ci)
        .collect();
    let body = failed_run();
    for (index, encoding) in Encoding::both(0).into_iter().enumerate() {
        let delivery = format!("failed-{index}");
        let reply = deliver(&api, "workflow_run", &delivery, &body, encoding);
        assert_eq!(reply.status, 202, "{}", reply.body);
        assert_eq!(reply.body["status"], "accepted");
        assert_eq!(routed(&hook.daemon, &delivery), "done");
    }
    for id in &firing {
        let made = runs(&api, id);
        assert_eq!(made.len(), 1, "exactly one run per watch: {made:?}");
        assert_eq!(made[0]["eventKey"], "289782451");
        assert!(made[0]["triggerSummary"]
            .as_str()
            .unwrap_or_default()
            .contains("workflow test on branch master"));
    }
    for id in &silent {
        assert!(runs(&api, id).is_empty());
    }

    // A form delivery is signed over the form body exactly as sent, not over the JSON in it.
    let (form, _) = Encoding::Form.encode(&body);
    let over_the_json = api.send(
        api.http()
            .post(format!("{}/webhooks/github", api.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-github-event", "workflow_run")
            .header("x-github-delivery", "form-forged")
            .header("x-hub-signature-256", sign(SECRET, &body))
            .body(form),
    );
    assert_eq!(over_the_json.status, 401, "{}", over_the_json.body);
    assert!(over_the_json.body["error"].is_string());
}

#[test]
fn drafts_are_reviewed_by_default_and_skipped_on_request_until_ready() {
    let hook = start();
    let api = hook.daemon.api();
    let env = [("TELECODER_URL", hook.daemon.url.as_str())];
    let reviews_drafts = watch(
        &api,
        json!({"kind": "pr_review", "repo": "Codertocat/Hello-World", "instructions": "@mock say reviewed"}),
    );
    let added = telecoder(
        &env,
        &[
            "--json",
            "watch-add-pr",
            "--repo",
            "Codertocat/Hello-World",
            "--skip-drafts",
            "@mock",
            "say",
            "reviewed",
        ],
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let skipping: Value = serde_json::from_slice(&added.stdout).expect("watch json");
    assert_eq!(skipping["skipDrafts"], true);
    let skips_drafts = skipping["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        api.get(&format!("/api/watches/{reviews_drafts}")).body["skipDrafts"],
        false
    );

    let read = |name: &str| -> Value {
        let path = format!("{ROOT}/tests/fixtures/github/octokit/pull_request/{name}.payload.json");
        serde_json::from_str(&std::fs::read_to_string(path).expect("example")).expect("json")
    };
    let mut draft = read("opened");
    draft["pull_request"]["draft"] = json!(true);
    let body = serde_json::to_vec(&draft).expect("encode");
    assert_eq!(
        deliver(&api, "pull_request", "draft-opened", &body, Encoding::Json).status,
        202
    );
    assert_eq!(routed(&hook.daemon, "draft-opened"), "done");
    assert_eq!(runs(&api, &reviews_drafts).len(), 1, "drafts are reviewed");
    assert!(runs(&api, &skips_drafts).is_empty(), "unless skipped");

    let ready = serde_json::to_vec(&read("ready_for_review")).expect("encode");
    assert_eq!(
        deliver(&api, "pull_request", "ready", &ready, Encoding::Form).status,
        202
    );
    assert_eq!(routed(&hook.daemon, "ready"), "done");
    let made = runs(&api, &skips_drafts);
    assert_eq!(
        made.len(),
        1,
        "ready for review starts the review: {made:?}"
    );
    assert_eq!(made[0]["eventKey"], format!("2:{PR_HEAD}"));
    assert!(made[0]["triggerSummary"]
        .as_str()
        .unwrap_or_default()
        .contains("ready_for_review"));
    assert_eq!(
        runs(&api, &reviews_drafts).len(),
        1,
        "the same head commit is not reviewed twice"
    );

    // The option is the PR watches' own, and can be turned off again.
    let patched = api.send(
        api.http()
            .patch(format!("{}/api/watches/{skips_drafts}", api.base))
            .json(&json!({"skipDrafts": false})),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["skipDrafts"], false);
    let ci = api.post(
        "/api/watches",
        &json!({"repo": CI_REPO, "instructions": "x", "skipDrafts": true}),
    );
    assert_eq!(ci.status, 400, "{}", ci.body);
    assert!(ci.body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("pr_review"));
}

/// Opens a raw connection, sends `head` (no body follows) and reads one response.
fn exchange_headers_only(url: &str, head: &str) -> (u16, Value) {
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(SHORT)).expect("read timeout");
    stream.write_all(head.as_bytes()).expect("send headers");
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(answer) = parse_response(&received) {
            return answer;
        }
        match stream.read(&mut buf) {
            Ok(0) => panic!(
                "connection closed without a full answer: {}",
                String::from_utf8_lossy(&received)
            ),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(err) => panic!(
                "no answer while the body was never sent ({err}): {}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
}

/// Status and JSON body of a complete HTTP/1.1 response with a Content-Length.
fn parse_response(bytes: &[u8]) -> Option<(u16, Value)> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    (body.len() >= length).then(|| {
        (
            status,
            serde_json::from_str(&body[..length]).unwrap_or(Value::Null),
        )
    })
}

fn webhook_head(signature: Option<&str>, content_type: &str, length: usize) -> String {
    let signature = signature
        .map(|s| format!("X-Hub-Signature-256: {s}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n\
         X-GitHub-Event: workflow_run\r\nX-GitHub-Delivery: raw-1\r\n{signature}\
         Content-Length: {length}\r\n\r\n"
    )
}

const TWENTY_MIB: usize = 20 * 1024 * 1024;

/// A well-formed signature that matches nothing.
fn wrong_signature() -> String {
    format!("sha256={}", "0".repeat(64))
}

#[test]
fn unauthenticated_deliveries_are_refused_before_their_body_is_read() {
    // The body of every request below is announced (20 MiB) and never sent: only an answer
    // given on the headers alone can arrive.
    let open = TestDaemon::start();
    let (status, body) = exchange_headers_only(
        &open.url,
        &webhook_head(Some(&wrong_signature()), "application/json", TWENTY_MIB),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("TELECODER_GITHUB_WEBHOOK_SECRET"));

    let hook = start();
    let url = &hook.daemon.url;
    for (signature, content_type, expected, fragment) in [
        (None, "application/json", 401, "missing X-Hub-Signature-256"),
        (Some("sha256=abc"), "application/json", 401, "malformed"),
        (Some("sha1=0123"), "application/json", 401, "malformed"),
        (
            Some(wrong_signature().as_str()),
            "text/plain",
            415,
            "application/x-www-form-urlencoded",
        ),
    ] {
        let (status, body) =
            exchange_headers_only(url, &webhook_head(signature, content_type, TWENTY_MIB));
        assert_eq!(status, expected, "{signature:?} {content_type}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains(fragment),
            "{body}"
        );
    }
    let (status, body) = exchange_headers_only(
        url,
        &webhook_head(
            Some(&wrong_signature()),
            "application/json",
            64 * 1024 * 1024,
        ),
    );
    assert_eq!(status, 413, "{body}");
    assert!(hook.daemon.api().list("").is_empty());
}

/// What became of one slow sender.
struct Sender {
    sent: usize,
    /// The status line the daemon answered with, if the answer reached the sender.
    answer: String,
    /// The daemon let go of the connection (instead of the sender giving up).
    cut_off: bool,
}

/// Sends a 20 MiB body with a well-formed but wrong signature, slowly, and never its last byte.
fn slow_sender(addr: String, index: usize) -> Sender {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    let patience = Some(Duration::from_secs(40));
    stream.set_write_timeout(patience).expect("write timeout");
    stream.set_read_timeout(patience).expect("read timeout");
    let head = webhook_head(Some(&wrong_signature()), "application/json", TWENTY_MIB)
        .replace("raw-1", &format!("slow-{index}"));
    let mut sent = 0;
    if stream.write_all(head.as_bytes()).is_ok() {
        let piece = vec![b' '; 256 * 1024];
        while sent + piece.len() < TWENTY_MIB {
            if stream.write_all(&piece).is_err() {
                break;
            }
            sent += piece.len();
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mut answer = Vec::new();
    let ended = stream.read_to_end(&mut answer);
    let timed_out = matches!(&ended, Err(err) if matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
    Sender {
        sent,
        answer: String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        cut_off: !timed_out,
    }
}

fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with(field))
                .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn slow_unsigned_bodies_cannot_exhaust_memory_or_starve_health() {
    let hook = start();
    let api = hook.daemon.api();
    let pid = hook.daemon.pid();
    let addr = hook.daemon.url.trim_start_matches("http://").to_owned();
    let senders: Vec<_> = (0..20)
        .map(|index| {
            let addr = addr.clone();
            std::thread::spawn(move || slow_sender(addr, index))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut slowest_health, mut samples) = (Duration::ZERO, 0);
    while senders.iter().any(|sender| !sender.is_finished()) {
        assert!(
            Instant::now() < deadline,
            "the daemon still holds slow bodies after 90 s"
        );
        let asked = Instant::now();
        let health = api.send(
            api.http()
                .get(format!("{}/health", api.base))
                .timeout(Duration::from_secs(10)),
        );
        assert_eq!(health.status, 200, "{}", health.body);
        slowest_health = slowest_health.max(asked.elapsed());
        samples += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let outcomes: Vec<Sender> = senders
        .into_iter()
        .map(|sender| sender.join().expect("sender thread"))
        .collect();
    let peak_kb = proc_status_kb(pid, "VmHWM:");
    let sent: usize = outcomes.iter().map(|o| o.sent).sum();
    eprintln!(
        "20 slow unsigned 20 MiB bodies ({} MiB sent in all): daemon peak RSS {} kB, \
         slowest /health {:?} over {samples} checks; answers {:?}",
        sent / (1024 * 1024),
        peak_kb,
        slowest_health,
        outcomes
            .iter()
            .map(|o| o.answer.as_str())
            .collect::<Vec<_>>()
    );
    assert!(
        peak_kb > 0 && peak_kb < 150 * 1000,
        "daemon RSS peaked at {peak_kb} kB"
    );
    for outcome in &outcomes {
        assert!(outcome.cut_off, "a stalled body kept its connection open");
        assert!(
            outcome.answer.is_empty()
                || outcome.answer.contains(" 408 ")
                || outcome.answer.contains(" 503 "),
            "{}",
            outcome.answer
        );
    }
    assert!(
        sent > 32 * 1024 * 1024,
        "the senders got more than the budget in flight ({sent} bytes)"
    );

    // The budget is whole again: a real delivery goes through.
    let ping = deliver(
        &api,
        "ping",
        "after-the-flood",
        br#"{"zen": "x"}"#,
        Encoding::Json,
    );
    assert_eq!(ping.status, 200, "{}", ping.body);
    assert!(api.list("").is_empty());
}

#[test]
fn schedules_and_run_limits_are_capped() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let r = repo.path_str();
    let schedule = |cron: &str| json!({"kind": "schedule", "repo": r, "instructions": "@mock say tick", "schedule": cron});
    for (body, fragment) in [
        (schedule("* * * * * *"), "fires 1 s apart"),
        (schedule("*/30 * * * * *"), "fires 30 s apart"),
        (schedule("0,59 * * * * *"), "at least 60 s between runs"),
        (
            json!({"repo": r, "instructions": "x", "maxRunsPerHour": 61}),
            "between 1 and 60",
        ),
        (
            json!({"repo": r, "instructions": "x", "maxRunsPerHour": 4_000_000_000u32}),
            "between 1 and 60",
        ),
    ] {
        let reply = api.post("/api/watches", &body);
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        let message = reply.body["error"].as_str().unwrap_or_default();
        assert!(message.contains(fragment), "{message}");
    }
    assert!(api
        .get("/api/watches")
        .body
        .as_array()
        .is_some_and(Vec::is_empty));

    let every_minute = api.post(
        "/api/watches",
        &json!({"kind": "schedule", "repo": r, "instructions": "x", "schedule": "0 * * * * *", "maxRunsPerHour": 60}),
    );
    assert_eq!(every_minute.status, 201, "{}", every_minute.body);
    let id = every_minute.body["id"].as_str().unwrap_or_default();
    for patch in [
        json!({"schedule": "*/5 * * * * *"}),
        json!({"maxRunsPerHour": 1000}),
    ] {
        let reply = api.send(
            api.http()
                .patch(format!("{}/api/watches/{id}", api.base))
                .json(&patch),
        );
        assert_eq!(reply.status, 400, "{patch}: {}", reply.body);
    }
    let kept = api.get(&format!("/api/watches/{id}")).body;
    assert_eq!(kept["schedule"], "0 * * * * *");
    assert_eq!(kept["maxRunsPerHour"], 60);

    let env = [("TELECODER_URL", daemon.url.as_str())];
    let cli = telecoder(
        &env,
        &[
            "watch-add-schedule",
            "--repo",
            &r,
            "--cron",
            "* * * * * *",
            "x",
        ],
    );
    assert_eq!(cli.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&cli.stderr).contains("at least 60 s"));

    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().to_string_lossy().into_owned();
    let refused = telecoder(
        &[
            ("TELECODER_DATA_DIR", data_dir.as_str()),
            ("TELECODER_WATCH_MAX_RUNS_PER_HOUR", "100000"),
        ],
        &["config"],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("TELECODER_WATCH_MAX_RUNS_PER_HOUR"));
}
