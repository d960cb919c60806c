//! Native GitHub webhooks: real GitHub-shaped payloads (tests/fixtures/github), signed with a
//! test secret; the repository URL is mapped to a local repository through git's insteadOf.

use crate::support::*;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::Duration;

pub const SECRET: &str = "test-webhook-secret";
const GITHUB_URL: &str = "https://github.com/octo-org/octo-repo";

fn fixture(name: &str) -> Value {
    let path = format!("{ROOT}/tests/fixtures/github/{name}.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture json")
}

pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub struct Hook {
    pub daemon: TestDaemon,
    pub repo: TestRepo,
    _git_config: tempfile::TempDir,
}

/// A daemon with the webhook secret set, where cloning the GitHub URL clones a local repo.
fn start() -> Hook {
    start_mapping(&[GITHUB_URL], &[])
}

/// A daemon with the webhook secret set (and `env`), where cloning any of `urls` clones one
/// local repo.
pub fn start_mapping(urls: &[&str], env: &[(&str, &str)]) -> Hook {
    let repo = TestRepo::new();
    let git_config = tempfile::tempdir().expect("tempdir");
    let config_path = git_config.path().join("gitconfig");
    let rules: String = urls
        .iter()
        .map(|url| format!("\tinsteadOf = {url}\n"))
        .collect();
    std::fs::write(
        &config_path,
        format!("[url \"{}\"]\n{rules}", repo.path_str()),
    )
    .expect("gitconfig");
    let config = config_path.to_string_lossy().into_owned();
    let mut all = vec![
        ("TELECODER_GITHUB_WEBHOOK_SECRET", SECRET),
        ("GIT_CONFIG_GLOBAL", config.as_str()),
    ];
    all.extend_from_slice(env);
    let daemon = TestDaemon::start_with(&all);
    Hook {
        daemon,
        repo,
        _git_config: git_config,
    }
}

fn deliver(
    api: &Api,
    event: &str,
    delivery: &str,
    body: &[u8],
    signature: Option<String>,
) -> Reply {
    let mut request = api
        .http()
        .post(format!("{}/webhooks/github", api.base))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .body(body.to_vec());
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    api.send(request)
}

fn signed(api: &Api, event: &str, delivery: &str, payload: &Value) -> Reply {
    let body = serde_json::to_vec(payload).expect("encode");
    deliver(api, event, delivery, &body, Some(sign(SECRET, &body)))
}

pub fn watch(api: &Api, body: Value) -> String {
    let reply = api.post("/api/watches", &body);
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body["id"].as_str().unwrap_or_default().to_owned()
}

pub fn runs(api: &Api, watch: &str) -> Vec<Value> {
    api.get(&format!("/api/watches/{watch}/runs"))
        .body
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn workflow_run_failure_starts_one_session_and_redelivery_is_a_duplicate() {
    let hook = start();
    let api = hook.daemon.api();
    // The watch names the repository in another form than the payload does.
    let ci = watch(
        &api,
        json!({"repo": GITHUB_URL, "instructions": "@mock outcome", "workflow": "Build"}),
    );
    let payload = fixture("workflow_run_failure");
    let reply = signed(&api, "workflow_run", "delivery-1", &payload);
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.body["status"], "accepted");

    let run = wait_for("the watch run", SHORT, || {
        runs(&api, &ci).into_iter().next()
    });
    assert_eq!(run["eventKey"], "30433642");
    assert_eq!(
        run["sourceRef"],
        "https://github.com/octo-org/octo-repo/actions/runs/30433642"
    );
    let session = api.wait_finished(run["sessionId"].as_str().unwrap_or_default(), SHORT);
    assert_eq!(session["status"], "complete", "{session}");
    assert_eq!(session["repo"], GITHUB_URL);
    let prompt = session["prompt"].as_str().unwrap_or_default();
    assert!(
        prompt.contains("acb5820ced9479c074f688cc328bf03f341a511d"),
        "{prompt}"
    );

    let again = signed(&api, "workflow_run", "delivery-1", &payload);
    assert_eq!(again.status, 200);
    assert_eq!(again.body["status"], "duplicate");
    let mut success = payload.clone();
    success["workflow_run"]["conclusion"] = json!("success");
    success["workflow_run"]["id"] = json!(30433643);
    assert_eq!(
        signed(&api, "workflow_run", "delivery-2", &success).status,
        202
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(runs(&api, &ci).len(), 1);
    assert_eq!(api.list("").len(), 1);
    drop(hook.repo);
}

#[test]
fn pull_requests_fire_pr_watches_with_the_body_fenced() {
    let hook = start();
    let api = hook.daemon.api();
    let pr = watch(
        &api,
        json!({"kind": "pr_review", "repo": "octo-org/octo-repo", "instructions": "@mock say looked", "base": "main"}),
    );
    let payload = fixture("pull_request_opened");
    assert_eq!(signed(&api, "pull_request", "pr-1", &payload).status, 202);
    let run = wait_for("the PR run", SHORT, || runs(&api, &pr).into_iter().next());
    assert_eq!(
        run["eventKey"],
        "2:ec26c3e57ca3a959ca5aad62de7213c562f8c821"
    );
    let session = api.session(run["sessionId"].as_str().unwrap_or_default());
    let prompt = session["prompt"].as_str().unwrap_or_default();
    let fence = prompt.find("UNTRUSTED").expect("fenced");
    assert!(
        prompt
            .find("Ignore all previous instructions")
            .expect("body")
            > fence
    );

    // TeleCoder's own branch: recorded, never run.
    let mut own = payload.clone();
    own["pull_request"]["head"]["ref"] = json!("telecoder/0badc0de");
    own["pull_request"]["head"]["sha"] = json!("0000000000000000000000000000000000000001");
    assert_eq!(signed(&api, "pull_request", "pr-2", &own).status, 202);
    let guarded = wait_for("the loop-guard run", SHORT, || {
        runs(&api, &pr)
            .into_iter()
            .find(|run| run["skippedReason"] != "")
    });
    assert_eq!(guarded["sessionId"], "");
    assert!(guarded["skippedReason"]
        .as_str()
        .unwrap_or_default()
        .starts_with("loop guard"));

    let mut closed = payload.clone();
    closed["action"] = json!("closed");
    let ignored = signed(&api, "pull_request", "pr-3", &closed);
    assert_eq!(ignored.status, 202);
    assert_eq!(ignored.body["status"], "ignored");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(runs(&api, &pr).len(), 2);
}

#[test]
fn signatures_are_required_and_checked() {
    let hook = start();
    let api = hook.daemon.api();
    let ci = watch(
        &api,
        json!({"repo": GITHUB_URL, "instructions": "@mock say hi"}),
    );
    let body = serde_json::to_vec(&fixture("workflow_run_failure")).expect("encode");
    let missing = deliver(&api, "workflow_run", "d1", &body, None);
    assert_eq!(missing.status, 401, "{}", missing.body);
    let forged = deliver(
        &api,
        "workflow_run",
        "d2",
        &body,
        Some(sign("not-the-secret", &body)),
    );
    assert_eq!(forged.status, 401);
    let mut tampered = body.clone();
    tampered.push(b' ');
    let reused = deliver(
        &api,
        "workflow_run",
        "d3",
        &tampered,
        Some(sign(SECRET, &body)),
    );
    assert_eq!(reused.status, 401);
    assert!(reused.body["error"].is_string());

    let ping = signed(&api, "ping", "d4", &fixture("ping"));
    assert_eq!(ping.status, 200);
    let other = signed(&api, "issues", "d5", &fixture("issues_opened"));
    assert_eq!(other.status, 202);
    assert_eq!(other.body["status"], "ignored");
    let malformed = b"{not json".to_vec();
    let bad = deliver(
        &api,
        "workflow_run",
        "d6",
        &malformed,
        Some(sign(SECRET, &malformed)),
    );
    assert_eq!(bad.status, 400);
    let no_event = api.send(
        api.http()
            .post(format!("{}/webhooks/github", api.base))
            .header("x-github-delivery", "d7")
            .header("x-hub-signature-256", sign(SECRET, &body))
            .body(body.clone()),
    );
    assert_eq!(no_event.status, 400);
    let huge = vec![b' '; 26 * 1024 * 1024];
    let too_big = deliver(&api, "workflow_run", "d8", &huge, Some(sign(SECRET, &huge)));
    assert_eq!(too_big.status, 413);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        runs(&api, &ci).is_empty(),
        "nothing is created by rejected deliveries"
    );
    assert!(api.list("").is_empty());
}

#[test]
fn without_a_secret_every_delivery_is_refused() {
    let daemon = TestDaemon::start();
    let api = daemon.api();
    let body = serde_json::to_vec(&fixture("ping")).expect("encode");
    let reply = deliver(&api, "ping", "x", &body, Some(sign(SECRET, &body)));
    assert_eq!(reply.status, 403);
    assert!(reply.body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("TELECODER_GITHUB_WEBHOOK_SECRET"));
}

#[test]
fn deliveries_accepted_before_a_crash_are_routed_after_restart() {
    let hook = start();
    let api = hook.daemon.api();
    let ci = watch(
        &api,
        json!({"repo": GITHUB_URL, "instructions": "@mock say recovered"}),
    );
    // A delivery that was stored and acknowledged, but not routed before the daemon died.
    let event = json!({"kind": "ci", "repo": "octo-org/octo-repo", "workflow": "Build", "branch": "main", "runId": "555", "runUrl": "", "sha": "", "status": "completed", "conclusion": "failure", "summary": ""});
    hook.daemon
        .database()
        .execute(
            "INSERT INTO webhook_deliveries (delivery_id, event, payload, state, received_at) VALUES ('lost-1', 'workflow_run', ?1, 'pending', '2026-01-01T00:00:00.000Z')",
            [event.to_string()],
        )
        .expect("insert pending delivery");
    let Hook {
        daemon,
        repo,
        _git_config,
    } = hook;
    let daemon = daemon.restart();
    let api = daemon.api();
    let run = wait_for_or_log(&daemon, "the recovered run", || {
        runs(&api, &ci).into_iter().next()
    });
    assert_eq!(run["eventKey"], "555");
    let state: String = daemon
        .database()
        .query_row(
            "SELECT state FROM webhook_deliveries WHERE delivery_id = 'lost-1'",
            [],
            |row| row.get(0),
        )
        .expect("delivery");
    assert_eq!(state, "done");
    drop(repo);
}

#[test]
fn a_sender_that_hangs_up_still_gets_its_delivery_routed() {
    use std::io::Write;
    let hook = start();
    let api = hook.daemon.api();
    let ci = watch(
        &api,
        json!({"repo": GITHUB_URL, "instructions": "@mock say routed"}),
    );
    let body = serde_json::to_vec(&fixture("workflow_run_failure")).expect("encode");
    let head = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-GitHub-Event: workflow_run\r\nX-GitHub-Delivery: hangup-0\r\nX-Hub-Signature-256: {}\r\nContent-Length: {}\r\n\r\n",
        sign(SECRET, &body),
        body.len()
    );
    let addr = hook.daemon.url.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.write_all(head.as_bytes()).expect("head");
    stream.write_all(&body).expect("body");
    drop(stream);
    let run = wait_for("the run of the abandoned request", SHORT, || {
        runs(&api, &ci).into_iter().next()
    });
    assert_eq!(run["eventKey"], "30433642");
    assert_eq!(
        signed(
            &api,
            "workflow_run",
            "hangup-0",
            &fixture("workflow_run_failure")
        )
        .body["status"],
        "duplicate"
    );
}

/// [`wait_for`], printing the daemon's log when it times out.
fn wait_for_or_log<T>(daemon: &TestDaemon, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + SHORT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
