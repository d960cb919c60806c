//! Notifications (issue 15): a receiver on a loopback port started here records every request
//! and answers as each test scripts it; the real daemon delivers to it from the outbox.

use crate::support::*;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use warp::Filter;

const SECRET: &str = "notify-test-secret-0123456789abcdef";

/// How the receiver answers one request.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Status(u16),
    /// 429 with `Retry-After: <seconds>`.
    RetryAfter(u64),
    /// Holds the request for two minutes (a send in flight), then 500.
    Hang,
    /// 302 to another path of this receiver.
    Redirect(&'static str),
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Request {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
    at: SystemTime,
    answered: u16,
}

impl Request {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn delivery(&self) -> &str {
        self.header("x-telecoder-delivery")
    }

    fn accepted(&self) -> bool {
        (200..300).contains(&self.answered)
    }
}

#[derive(Default)]
struct Script {
    /// Answers per path, in order; once used up, 200.
    answers: HashMap<String, VecDeque<Answer>>,
    requests: Vec<Request>,
}

/// The test's HTTP receiver: webhook, ntfy server and Slack, all in one.
struct Receiver {
    url: String,
    state: Arc<Mutex<Script>>,
}

impl Receiver {
    fn start() -> Self {
        let state = Arc::new(Mutex::new(Script::default()));
        let shared = state.clone();
        let with_state = warp::any().map(move || shared.clone());
        let route = warp::post()
            .and(warp::path::full())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .and(with_state)
            .then(receive)
            .boxed();
        Self {
            url: serve_on_loopback(route),
            state,
        }
    }

    /// The answers `path` gets before the receiver accepts.
    fn script(&self, path: &str, answers: &[Answer]) {
        self.lock()
            .answers
            .insert(path.to_owned(), answers.iter().copied().collect());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    fn accepted(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(Request::accepted)
            .collect()
    }

    /// Waits until an accepted request satisfies `what` and returns it.
    #[track_caller]
    fn wait_accepted(&self, label: &str, what: impl Fn(&Request) -> bool) -> Request {
        wait_for(label, SHORT, || {
            self.accepted().into_iter().find(|r| what(r))
        })
    }
}

async fn receive(
    path: warp::path::FullPath,
    headers: warp::http::HeaderMap,
    body: bytes::Bytes,
    state: Arc<Mutex<Script>>,
) -> warp::reply::Response {
    use warp::Reply;
    let answer = {
        let mut script = state.lock().unwrap_or_else(|e| e.into_inner());
        script
            .answers
            .get_mut(path.as_str())
            .and_then(VecDeque::pop_front)
            .unwrap_or(Answer::Status(200))
    };
    let answered = match answer {
        Answer::Status(status) => status,
        Answer::RetryAfter(_) => 429,
        Answer::Hang => 0,
        Answer::Redirect(_) => 302,
    };
    let request = Request {
        path: path.as_str().to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
        at: SystemTime::now(),
        answered,
    };
    state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .requests
        .push(request);
    let status = |code: u16| warp::http::StatusCode::from_u16(code).expect("status");
    match answer {
        Answer::Status(code) => warp::reply::with_status("ok", status(code)).into_response(),
        Answer::RetryAfter(seconds) => warp::reply::with_header(
            warp::reply::with_status("slow down", status(429)),
            "retry-after",
            seconds.to_string(),
        )
        .into_response(),
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            warp::reply::with_status("too late", status(500)).into_response()
        }
        Answer::Redirect(to) => warp::reply::with_header(
            warp::reply::with_status("moved", status(302)),
            "location",
            to,
        )
        .into_response(),
    }
}

/// The receiver's check of a webhook delivery: HMAC-SHA256 of the body with the shared secret.
fn signature_valid(request: &Request) -> bool {
    let Some(hex_sig) = request
        .header("x-telecoder-signature-256")
        .strip_prefix("sha256=")
    else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(&request.body);
    mac.verify_slice(&expected).is_ok()
}

/// A daemon sending to `targets` (space separated), signing with [`SECRET`].
fn daemon_notifying(targets: &str, extra: &[(&str, &str)]) -> TestDaemon {
    let mut env = vec![
        ("TELECODER_NOTIFY", targets),
        ("TELECODER_NOTIFY_SECRET", SECRET),
        ("TELECODER_PUBLIC_URL", "https://tc.example.com"),
    ];
    env.extend_from_slice(extra);
    TestDaemon::start_with(&env)
}

/// Runs a session to its end and returns its id.
fn finished_session(api: &Api, repo: &TestRepo, prompt: &str) -> String {
    let session = api.create(&repo.path_str(), prompt, json!({}));
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    api.wait_finished(&id, SHORT);
    id
}

/// Whether a delivery is about this session.
fn about(request: &Request, session: &str) -> bool {
    request.json()["session"]["id"] == session
}

/// Notifications of `event` stored in the outbox.
fn stored(daemon: &TestDaemon, event: &str) -> i64 {
    daemon
        .database()
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE event = ?1",
            [event],
            |r| r.get(0),
        )
        .expect("count")
}

fn pause_watch(api: &Api, watch: &str) -> Reply {
    api.send(
        api.http()
            .patch(format!("{}/api/watches/{watch}", api.base))
            .json(&json!({"status": "paused"})),
    )
}

fn delivery_rows(daemon: &TestDaemon) -> Vec<(String, String, u32, String)> {
    let db = daemon.database();
    let mut stmt = db
        .prepare(
            "SELECT delivery_id, status, attempts, last_error FROM outbox_deliveries ORDER BY rowid",
        )
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn a_signed_webhook_is_retried_after_two_500s_and_accepted_once() {
    let receiver = Receiver::start();
    receiver.script("/hook", &[Answer::Status(500), Answer::Status(500)]);
    let daemon = daemon_notifying(&format!("{}/hook?events=finished", receiver.url), &[]);
    let api = daemon.api();
    let repo = TestRepo::new();
    let id = finished_session(&api, &repo, "@mock say all tests pass");

    let accepted = receiver.wait_accepted("the finished notification", |r| about(r, &id));
    let delivery = accepted.delivery().to_owned();
    let attempts: Vec<Request> = receiver
        .requests()
        .into_iter()
        .filter(|r| r.delivery() == delivery)
        .collect();
    let answers: Vec<u16> = attempts.iter().map(|r| r.answered).collect();
    assert_eq!(answers, [500, 500, 200], "two failures, then accepted");
    for attempt in &attempts {
        assert!(
            signature_valid(attempt),
            "every attempt is signed: {attempt:?}"
        );
        assert_eq!(attempt.header("x-telecoder-event"), "session.finished");
        assert_eq!(attempt.header("content-type"), "application/json");
    }
    let body = accepted.json();
    assert_eq!(body["id"], delivery.as_str(), "the body names its delivery");
    assert_eq!(body["type"], "session.finished");
    assert_eq!(body["session"]["status"], "complete");
    assert_eq!(body["session"]["agent"], "mock");
    assert_eq!(body["session"]["failureKind"], "");
    assert_eq!(body["session"]["headline"], "all tests pass");
    assert_eq!(body["commands"][0], format!("telecoder status {id}"));
    assert_eq!(body["url"], format!("https://tc.example.com/sessions/{id}"));

    // A tampered body does not verify (the check above can fail).
    let mut forged = accepted.clone();
    forged.body = forged.body.replace_first(b"complete", b"errored!");
    assert!(!signature_valid(&forged));

    // The next session's notification arrives after; the first was accepted exactly once.
    let second = finished_session(&api, &repo, "@mock say second");
    receiver.wait_accepted("the second notification", |r| about(r, &second));
    let accepted_first = receiver
        .accepted()
        .iter()
        .filter(|r| r.delivery() == delivery)
        .count();
    assert_eq!(accepted_first, 1);
    let rows = delivery_rows(&daemon);
    let first = rows
        .iter()
        .find(|r| r.0 == delivery)
        .expect("stored delivery");
    assert_eq!((first.1.as_str(), first.2), ("sent", 3));
}

trait ReplaceFirst {
    fn replace_first(self, from: &[u8], to: &[u8]) -> Vec<u8>;
}

impl ReplaceFirst for Vec<u8> {
    fn replace_first(self, from: &[u8], to: &[u8]) -> Vec<u8> {
        match self.windows(from.len()).position(|w| w == from) {
            Some(at) => [&self[..at], to, &self[at + from.len()..]].concat(),
            None => self,
        }
    }
}

#[test]
fn filters_choose_what_each_target_gets() {
    let receiver = Receiver::start();
    let targets = format!(
        "{url}/errors?events=error {url}/done?events=complete,approval",
        url = receiver.url
    );
    let daemon = daemon_notifying(&targets, &[]);
    let api = daemon.api();
    let repo = TestRepo::new();
    // The agent never sees the targets (a Slack hook URL is a credential) or the secret.
    let ok = finished_session(
        &api,
        &repo,
        "@mock env TELECODER_NOTIFY TELECODER_NOTIFY_SECRET",
    );
    let result = api.session(&ok)["resultText"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        result.contains("TELECODER_NOTIFY=(unset)")
            && result.contains("TELECODER_NOTIFY_SECRET=(unset)"),
        "{result}"
    );
    let failed = finished_session(&api, &repo, "@mock error");

    let to_errors = receiver.wait_accepted("the error notification", |r| r.path == "/errors");
    let to_done = receiver.wait_accepted("the complete notification", |r| r.path == "/done");
    assert_eq!(to_errors.json()["session"]["id"], failed.as_str());
    assert_eq!(to_errors.json()["session"]["status"], "error");
    assert_eq!(to_done.json()["session"]["id"], ok.as_str());
    // Filtered at fan-out: two sessions, two deliveries, nothing else stored or sent.
    assert_eq!(delivery_rows(&daemon).len(), 2);
    assert_eq!(receiver.requests().len(), 2);
}

#[test]
fn slack_and_ntfy_get_their_documented_shapes() {
    let receiver = Receiver::start();
    let targets = format!(
        "slack+{url}/services/T000/B000/slackHookSecret0123 \
         ntfy+{url}/telecoder-alerts?token=tk_ntfyAccessToken0123&events=finished",
        url = receiver.url
    );
    let daemon = daemon_notifying(&targets, &[]);
    let api = daemon.api();
    let repo = TestRepo::new();
    let token = "ghp_notifyLeak0123456789abcdefghijABCD";
    let id = finished_session(&api, &repo, &format!("@mock say Done <!channel> & {token}"));

    let slack = receiver.wait_accepted("the Slack message", |r| r.path.starts_with("/services/"));
    assert_eq!(slack.path, "/services/T000/B000/slackHookSecret0123");
    assert_eq!(slack.header("content-type"), "application/json");
    assert_eq!(
        slack.header("x-telecoder-signature-256"),
        "",
        "only webhooks are signed"
    );
    let message = slack.json();
    let text = message["text"].as_str().expect("Slack needs text");
    assert!(text.contains("Session complete"), "{text}");
    assert!(text.contains("&lt;!channel&gt; &amp;"), "escaped: {text}");
    assert!(!text.contains("<!channel>"), "no channel ping: {text}");
    let blocks = message["blocks"].as_array().expect("blocks");
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert!(blocks[0]["text"]["text"]
        .as_str()
        .is_some_and(|t| t.chars().count() <= 150));
    assert_eq!(blocks[1]["type"], "section");
    assert_eq!(blocks[1]["text"]["type"], "mrkdwn");
    assert!(blocks[1]["text"]["text"]
        .as_str()
        .is_some_and(|t| t.contains(&format!("`telecoder status {id}`"))));
    assert_eq!(blocks[2]["type"], "context");

    let ntfy = receiver.wait_accepted("the ntfy message", |r| r.path == "/telecoder-alerts");
    assert_eq!(
        ntfy.header("authorization"),
        "Bearer tk_ntfyAccessToken0123"
    );
    assert!(ntfy.header("content-type").starts_with("text/plain"));
    assert_eq!(ntfy.header("x-priority"), "3");
    assert_eq!(ntfy.header("x-tags"), "white_check_mark");
    assert_eq!(
        ntfy.header("x-click"),
        format!("https://tc.example.com/sessions/{id}")
    );
    assert!(ntfy.header("x-title").starts_with("Session complete"));
    let body = String::from_utf8_lossy(&ntfy.body).into_owned();
    assert!(body.starts_with("Done <!channel> &"), "{body}");
    assert!(body.contains(&format!("$ telecoder status {id}")), "{body}");
    for request in [&slack, &ntfy] {
        let sent = String::from_utf8_lossy(&request.body);
        assert!(!sent.contains(token), "redacted before it leaves: {sent}");
    }
}

#[test]
fn retry_after_is_honoured() {
    let receiver = Receiver::start();
    receiver.script("/hook", &[Answer::RetryAfter(2)]);
    let daemon = daemon_notifying(&format!("{}/hook", receiver.url), &[]);
    let api = daemon.api();
    let id = finished_session(&api, &TestRepo::new(), "@mock say ok");
    let accepted = receiver.wait_accepted("the retried notification", |r| about(r, &id));
    let first = receiver
        .requests()
        .into_iter()
        .find(|r| r.delivery() == accepted.delivery() && r.answered == 429)
        .expect("the refused attempt");
    let waited = accepted.at.duration_since(first.at).unwrap_or_default();
    assert!(waited >= Duration::from_secs(2), "waited only {waited:?}");
}

#[test]
fn a_kill_9_mid_send_still_delivers_after_restart_with_the_same_id() {
    let receiver = Receiver::start();
    receiver.script("/hook", &[Answer::Hang]);
    let targets = format!("{}/hook?events=finished,crash", receiver.url);
    let mut daemon = daemon_notifying(&targets, &[]);
    let api = daemon.api();
    let id = finished_session(&api, &TestRepo::new(), "@mock say before the crash");
    let in_flight = wait_for("the send in flight", SHORT, || {
        receiver.requests().into_iter().find(|r| r.answered == 0)
    });
    assert_eq!(in_flight.json()["session"]["id"], id.as_str());

    daemon.kill9();
    let daemon = daemon.restart();
    let delivered = receiver.wait_accepted("the notification after the restart", |r| about(r, &id));
    assert_eq!(
        delivered.delivery(),
        in_flight.delivery(),
        "a stable delivery id"
    );
    let crash = receiver.wait_accepted("the crash notification", |r| {
        r.json()["type"] == "daemon.recovered"
    });
    assert!(signature_valid(&crash));
    assert!(crash.json()["title"]
        .as_str()
        .is_some_and(|t| t.contains("after a crash")));
    let accepted_once = receiver
        .accepted()
        .iter()
        .filter(|r| r.delivery() == in_flight.delivery())
        .count();
    assert_eq!(accepted_once, 1);
    drop(daemon);
}

#[test]
fn a_clean_restart_is_no_crash() {
    let receiver = Receiver::start();
    let targets = format!("{}/hook", receiver.url);
    let mut daemon = daemon_notifying(&targets, &[]);
    let repo = TestRepo::new();
    let first = finished_session(&daemon.api(), &repo, "@mock say one");
    receiver.wait_accepted("the first notification", |r| about(r, &first));
    assert!(daemon.terminate().is_some_and(|s| s.success()));
    let daemon = daemon.restart();
    let second = finished_session(&daemon.api(), &repo, "@mock say two");
    receiver.wait_accepted("the second notification", |r| about(r, &second));
    assert_eq!(stored(&daemon, "crash"), 0);
    assert!(receiver
        .requests()
        .iter()
        .all(|r| r.json()["type"] != "daemon.recovered"));
}

#[test]
fn pausing_a_watch_is_told_whoever_pauses_it() {
    let receiver = Receiver::start();
    let daemon = daemon_notifying(&format!("{}/hook?events=paused", receiver.url), &[]);
    let api = daemon.api();
    let repo = TestRepo::new();
    let created = api.post(
        "/api/watches",
        &json!({"kind": "schedule", "repo": repo.path_str(), "instructions": "x", "schedule": "0 3 * * *"}),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let watch = created.body["id"].as_str().unwrap_or_default().to_owned();
    let paused = |label: &str, nth: usize| {
        wait_for(label, SHORT, || {
            let told: Vec<Value> = receiver
                .accepted()
                .iter()
                .map(Request::json)
                .filter(|body| body["type"] == "watch.paused")
                .collect();
            told.get(nth).cloned()
        })
    };

    // A person pauses it.
    let reply = pause_watch(&api, &watch);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = paused("the user's pause", 0);
    assert_eq!(body["watch"]["id"], watch.as_str());
    assert!(body["text"]
        .as_str()
        .is_some_and(|t| t.contains("paused by a user")));
    assert_eq!(
        body["commands"][0],
        format!("telecoder watch-resume {watch}")
    );
    // Pausing a paused watch again tells nothing new.
    assert_eq!(pause_watch(&api, &watch).status, 200);
    assert_eq!(stored(&daemon, "paused"), 1, "one pause, one notification");

    // Resumed, its actor fails whenever one runs, until the supervisor pauses the watch.
    let resumed = api.send(
        api.http()
            .patch(format!("{}/api/watches/{watch}", api.base))
            .json(&json!({"status": "active"})),
    );
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    wait_for("the supervisor to pause the watch", SHORT, || {
        api.post(
            "/admin/faults",
            &json!({"target": format!("watch:{watch}")}),
        );
        (api.get(&format!("/api/watches/{watch}")).body["status"] == "paused").then_some(())
    });
    let body = paused("the supervisor's pause", 1);
    let reason = body["watch"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("paused by the supervisor"), "{reason}");
    assert!(body["text"].as_str().is_some_and(|t| t.contains(reason)));
}

#[test]
fn giving_up_is_recorded_and_counted() {
    let receiver = Receiver::start();
    receiver.script("/down", &[Answer::Status(503); 10]);
    let daemon = daemon_notifying(
        &format!("{}/down", receiver.url),
        &[("TELECODER_NOTIFY_MAX_ATTEMPTS", "2")],
    );
    let api = daemon.api();
    finished_session(&api, &TestRepo::new(), "@mock say unheard");
    let status = wait_for("the delivery to be given up", SHORT, || {
        let status = api.get("/admin/status").body;
        (status["notifications"]["failed"] == 1).then_some(status)
    });
    assert_eq!(status["notifications"]["pending"], 0);
    assert_eq!(status["notifications"]["targets"], 1);
    let rows = delivery_rows(&daemon);
    assert_eq!(rows.len(), 1);
    let (_, state, attempts, error) = &rows[0];
    assert_eq!((state.as_str(), *attempts), ("failed", 2));
    assert!(
        error.contains("gave up after 2 attempts") && error.contains("503"),
        "{error}"
    );
    assert_eq!(receiver.requests().len(), 2);
    let metrics = api.get("/metrics").body;
    let text = metrics.as_str().unwrap_or_default();
    assert!(text.contains("telecoder_notify_outbox_failed 1"), "{text}");
    assert!(text.contains("telecoder_notify_outbox_pending 0"), "{text}");
}

#[test]
fn notify_test_reports_every_target_with_or_without_a_daemon() {
    let receiver = Receiver::start();
    receiver.script("/gone", &[Answer::Status(404); 4]);
    // A redirect is not followed: the signed body goes nowhere else.
    receiver.script("/moved", &[Answer::Redirect("/elsewhere"); 4]);
    let targets = format!("{url}/ok {url}/gone {url}/moved", url = receiver.url);
    let daemon = daemon_notifying(&targets, &[]);

    let output = telecoder(
        &[("TELECODER_URL", &daemon.url)],
        &["notify-test", "--json"],
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "a failed target fails the command"
    );
    let answer: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(answer["ok"], false);
    let results = answer["results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["ok"], true);
    assert_eq!(results[0]["status"], 200);
    assert_eq!(results[1]["ok"], false);
    assert_eq!(results[1]["status"], 404);
    assert!(results[1]["target"]
        .as_str()
        .is_some_and(|t| t.ends_with("/gone")));
    assert_eq!(
        (&results[2]["ok"], &results[2]["status"]),
        (&json!(false), &json!(302))
    );
    let tests: Vec<Request> = receiver.requests();
    assert_eq!(tests.len(), 3, "nothing went to /elsewhere: {tests:?}");
    assert!(tests
        .iter()
        .all(|r| r.header("x-telecoder-event") == "test" && signature_valid(r)));

    // With no daemon answering, the CLI sends from its own environment and says so.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("addr"))
    };
    let offline = telecoder(
        &[
            ("TELECODER_URL", &closed),
            ("TELECODER_NOTIFY", &format!("{}/ok", receiver.url)),
            ("TELECODER_NOTIFY_SECRET", SECRET),
        ],
        &["notify-test", "--json"],
    );
    assert_eq!(
        offline.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&offline.stderr)
    );
    assert!(String::from_utf8_lossy(&offline.stderr).contains("sending from this process"));
    assert_eq!(receiver.requests().len(), 4);
}

/// Each setting's refusals are unit-tested in `config`; this shows `serve` stops on them.
#[test]
fn bad_notification_settings_stop_start_up_naming_the_variable() {
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().to_string_lossy().into_owned();
    for (variable, value, named) in [
        (
            "TELECODER_NOTIFY",
            "https://example.com/hook?events=everything",
            "TELECODER_NOTIFY",
        ),
        (
            "TELECODER_NOTIFY",
            "https://example.com/hook",
            "TELECODER_NOTIFY_SECRET",
        ),
    ] {
        let stderr = refused_setting(&data_dir, variable, value);
        assert!(stderr.contains(&format!("invalid {named}")), "{stderr}");
    }
}

#[test]
fn config_shows_targets_with_secrets_masked() {
    let output = telecoder(
        &[
            (
                "TELECODER_NOTIFY",
                "https://hooks.slack.com/services/T0001/B0002/slackHookSecret0123 \
                 ntfy://ntfy.sh/private-topic-42?token=tk_ntfyAccessToken0123 \
                 http://notify.example.net/hook?events=crash",
            ),
            ("TELECODER_NOTIFY_SECRET", SECRET),
        ],
        &["config", "--json"],
    );
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for secret in [
        "slackHookSecret0123",
        "tk_ntfyAccessToken0123",
        "private-topic-42",
        SECRET,
    ] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }
    let config: Value = serde_json::from_str(&text).expect("json");
    let targets = config["notifyTargets"].as_array().expect("targets");
    assert_eq!(targets.len(), 3);
    assert!(targets[2]
        .as_str()
        .is_some_and(|t| t.contains("events: crash") && t.contains("plain http")));
    assert_eq!(config["notifySecretSet"], true);
}

#[test]
fn a_person_is_asked_once_per_approval_with_the_commands_to_answer() {
    if acpx_runtime() {
        return; // policy `ask` needs the native runtime (tests/it/converse.rs checks the refusal)
    }
    let receiver = Receiver::start();
    let daemon = daemon_notifying(&format!("{}/ask?events=approval", receiver.url), &[]);
    let api = daemon.api();
    let repo = TestRepo::new();
    let created = api.create(
        &repo.path_str(),
        "@mock write asked.txt hello",
        json!({"policy": "ask"}),
    );
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let approval = wait_for("a pending approval", SHORT, || {
        let reply = api.get(&format!("/api/approvals?status=pending&session={id}"));
        reply.body.as_array().and_then(|all| all.first().cloned())
    });
    let approval_id = approval["id"].as_str().unwrap_or_default().to_owned();
    let asked = receiver.wait_accepted("the approval notification", |r| r.path == "/ask");
    let body = asked.json();
    assert_eq!(body["type"], "approval.requested", "{body}");
    assert!(signature_valid(&asked));
    let commands = body["commands"].to_string();
    assert!(
        commands.contains(&format!("telecoder approve {approval_id}")),
        "{body}"
    );
    let reply = api.post(
        &format!("/api/approvals/{approval_id}"),
        &json!({"decision": "allow"}),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(api.wait_finished(&id, SHORT)["status"], "complete");
    // The decision is an `approval` event too; it asks nobody anything. The session's end is
    // stored in the outbox before its session reads as finished, so nothing is still to come.
    assert_eq!(stored(&daemon, "approval"), 1);
    assert_eq!(receiver.requests().len(), 1, "{:?}", receiver.requests());
}
