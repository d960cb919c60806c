//! The web dashboard (issue 17) in a real browser: Debian's chromium driven by the pinned
//! playwright-core (`tests/ui/run.mjs`) against the real daemon and the mock agent. Each test
//! starts a daemon, prepares what the scenario needs through the API, runs one scenario and
//! checks through the API what a user would check. One browser at a time (they are heavy on
//! a 2-core machine); a scenario that fails or hangs has its whole process group killed.
//!
//! The dashboard does not depend on the runtime, so these run once, under the default one.

use crate::support::*;
use serde_json::{json, Value};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One browser at a time.
static BROWSER: Mutex<()> = Mutex::new(());
/// A scenario's own waits are 30 s each; this bounds the whole run.
const SCENARIO_LIMIT: Duration = Duration::from_secs(300);
const CHROMIUM: &str = "/usr/bin/chromium";
const WAIT: Duration = Duration::from_secs(60);

fn shots_dir() -> PathBuf {
    Path::new(ROOT).join("target").join("ui-screenshots")
}

/// Whether these tests run in this pass (the acpx pass of `scripts/test` skips them).
fn enabled() -> bool {
    if acpx_runtime() {
        eprintln!("dashboard tests run under the native runtime only; skipped under acpx");
        return false;
    }
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/setup (it installs Debian's chromium package)"
    );
    assert!(
        Path::new(ROOT)
            .join("node_modules/playwright-core/package.json")
            .exists(),
        "playwright-core is not installed: run scripts/setup (npm ci)"
    );
    true
}

/// A running scenario: node in its own process group, its chromium (which playwright starts
/// in a process group of its own) and the fresh profile both use. Dropping it — the scenario
/// ended, timed out, or the test panicked — kills node's group, then every process that still
/// names the profile on its command line (the browser, its helpers, its crash handler), by
/// pid, and removes the profile.
struct Scenario {
    node: std::process::Child,
    profile: tempfile::TempDir,
}

impl Scenario {
    fn start(daemon: &TestDaemon, scenario: &str, args: &Value) -> Self {
        let profile = tempfile::Builder::new()
            .prefix("telecoder-ui-")
            .tempdir()
            .expect("profile dir");
        let mut node = Command::new("node");
        node.arg(Path::new(ROOT).join("tests/ui/run.mjs"))
            .arg(scenario)
            .current_dir(ROOT)
            .env("UI_URL", &daemon.url)
            .env("UI_ARGS", args.to_string())
            .env("UI_SHOTS", shots_dir())
            .env("UI_PROFILE", profile.path())
            // Kept open by this process: node ends itself when it reads EOF (this test died).
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let node = node.spawn().expect("start node");
        Self { node, profile }
    }

    /// Pids of live processes whose command line names the profile.
    fn browser_pids(&self) -> Vec<i32> {
        let profile = self.profile.path().as_os_str().as_encoded_bytes();
        all_pids()
            .into_iter()
            .filter(|pid| {
                // A zombie's command line is empty: it is dead, only not yet reaped.
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmd| cmd.windows(profile.len()).any(|w| w == profile))
            })
            .collect()
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, killpg, Signal};
        use nix::unistd::Pid;
        let _ = killpg(Pid::from_raw(self.node.id() as i32), Signal::SIGKILL);
        let _ = self.node.wait();
        // Until none is left: a helper forked just before its parent was killed is found on
        // the next pass, and every process killed has finished dying (a dying process loses
        // its command line before it is a zombie, so it may no longer be named but still run).
        let mut killed = std::collections::HashSet::new();
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let left = self.browser_pids();
            for &pid in &left {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            killed.extend(left.iter().copied());
            if left.is_empty() && !killed.iter().any(|pid| process_alive(*pid)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Runs `scenario` against `daemon` with `args` for at most `limit`: its result, or why not
/// (with everything it printed).
fn run_scenario(
    daemon: &TestDaemon,
    scenario: &str,
    args: Value,
    limit: Duration,
) -> Result<Value, String> {
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let mut run = Scenario::start(daemon, scenario, &args);
    let readers = [
        run.node.stdout.take().map(read_all),
        run.node.stderr.take().map(read_all),
    ];
    let deadline = Instant::now() + limit;
    let status = loop {
        match run.node.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => break None,
        }
    };
    drop(run);
    let [out, err] = readers.map(|r| r.and_then(|r| r.join().ok()).unwrap_or_default());
    let status = status.ok_or_else(|| {
        format!("scenario {scenario} still running after {limit:?}\n{out}\n{err}")
    })?;
    if !status.success() {
        return Err(format!(
            "scenario {scenario} failed ({status}):\n{out}\n{err}"
        ));
    }
    let line = out
        .lines()
        .find_map(|line| line.strip_prefix("RESULT "))
        .ok_or_else(|| format!("scenario {scenario} printed no result:\n{out}\n{err}"))?;
    serde_json::from_str(line).map_err(|e| format!("scenario {scenario}: bad result {e}: {line}"))
}

fn read_all(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = from.read_to_string(&mut text);
        text
    })
}

/// Runs `scenario` against `daemon` with `args`; returns its result, failing with its output
/// and the daemon's log.
#[track_caller]
fn browse(daemon: &TestDaemon, scenario: &str, args: Value) -> Value {
    run_scenario(daemon, scenario, args, SCENARIO_LIMIT)
        .unwrap_or_else(|why| panic!("{why}\ndaemon log:\n{}", daemon.log()))
}

/// A repository and a daemon (with `env`) for a browser test; `None` when this pass skips them.
fn browser_test(env: &[(&str, &str)]) -> Option<(TestRepo, TestDaemon)> {
    enabled().then(|| (TestRepo::new(), TestDaemon::start_with(env)))
}

/// [`browser_test`] with one session of `prompt`, once it is `status`.
fn with_session(prompt: &str, status: &str) -> Option<(TestRepo, TestDaemon, String)> {
    let (repo, daemon) = browser_test(&[])?;
    let api = daemon.api();
    let id = api.create_id(&repo.path_str(), prompt);
    let session = wait_for(&format!("session {id} to be {status}"), WAIT, || {
        let session = api.session(&id);
        let settled = session["status"] == status
            || !matches!(session["status"].as_str(), Some("pending" | "running"));
        settled.then_some(session)
    });
    assert_eq!(session["status"], status, "{session}");
    Some((repo, daemon, id))
}

/// The `Set-Cookie` of a fresh login with `token` (the test's client keeps no cookie jar).
fn login_cookie(api: &Api, token: &str, forwarded_proto: Option<&str>) -> String {
    let mut request = api
        .http()
        .post(format!("{}/ui/login", api.base))
        .json(&json!({ "token": token }));
    if let Some(proto) = forwarded_proto {
        request = request.header("x-forwarded-proto", proto);
    }
    api.block_on(async {
        request
            .send()
            .await
            .expect("login")
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    })
}

fn with_token(
    api: &Api,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    api.http()
        .request(method, format!("{}{path}", api.base))
        .bearer_auth(token)
}

/// `GET path` with `token`.
fn get_with(api: &Api, path: &str, token: &str) -> Reply {
    api.send(with_token(api, reqwest::Method::GET, path, token))
}

#[test]
fn the_form_starts_a_session_whose_output_arrives_live() {
    let Some((repo, daemon)) = browser_test(&[]) else {
        return;
    };
    let result = browse(
        &daemon,
        "create",
        json!({"repo": repo.path_str(), "prompt": "@mock stream 25 200", "last": "chunk 24"}),
    );
    let id = result["id"].as_str().expect("the new session's id");
    let session = daemon.api().wait_finished(id, WAIT);
    assert_eq!(session["status"], "complete");
    assert_eq!(session["prompt"], "@mock stream 25 200");
    assert_eq!(session["repo"], repo.path_str());
}

#[test]
fn the_session_page_at_phone_and_desktop_width() {
    let Some((_repo, daemon, id)) = with_session("@mock tools", "complete") else {
        return;
    };
    let result = browse(&daemon, "screenshots", json!({"id": id}));
    let shots = result["shots"].as_array().expect("screenshot paths");
    assert_eq!(shots.len(), 2);
    for shot in shots {
        let path = Path::new(shot.as_str().unwrap_or_default());
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{} is a real screenshot", path.display());
    }
}

#[test]
fn cancel_on_the_session_page_stops_the_agent() {
    let Some((_repo, daemon, id)) = with_session("@mock hang", "running") else {
        return;
    };
    browse(&daemon, "cancel", json!({"id": id}));
    let session = daemon.api().wait_finished(&id, WAIT);
    assert_eq!(session["status"], "cancelled");
    assert_eq!(session["failureKind"], "cancelled");
}

#[test]
fn a_watch_is_paused_from_the_list_and_the_form_checks_like_the_api() {
    let Some((repo, daemon)) = browser_test(&[]) else {
        return;
    };
    let api = daemon.api();
    let watch = api.post(
        "/api/watches",
        &json!({"repo": repo.path_str(), "instructions": "fix CI", "workflow": "ci"}),
    );
    assert_eq!(watch.status, 201, "{}", watch.body);
    let id = watch.body["id"].as_str().expect("watch id");
    let result = browse(&daemon, "watch", json!({"id": id, "repo": repo.path_str()}));
    let shown = api.get(&format!("/api/watches/{id}"));
    assert_eq!(shown.body["status"], "paused");
    // The API refused the bad schedule with the message the page showed; nothing was made.
    let direct = api.post(
        "/api/watches",
        &json!({"kind": "schedule", "repo": repo.path_str(), "instructions": "x",
                "schedule": "not a cron line"}),
    );
    assert_eq!(direct.status, 400);
    assert_eq!(result["message"], direct.body["error"]);
    let watches = api.get("/api/watches");
    assert_eq!(watches.body.as_array().map(Vec::len), Some(1));
}

const FULL: &str = "full-token-for-the-dashboard-0123";
const READ: &str = "read-token-for-the-dashboard-0123";

#[test]
fn a_token_logs_in_to_a_cookie_that_is_not_the_token_and_logs_out() {
    let Some((repo, daemon)) = browser_test(&[("TELECODER_API_TOKEN", FULL)]) else {
        return;
    };
    let api = daemon.api();
    let result = browse(
        &daemon,
        "login",
        json!({"token": FULL, "repo": repo.path_str()}),
    );
    let created = result["created"]
        .as_str()
        .expect("session made while logged in");
    let made = get_with(&api, &format!("/api/sessions/{created}"), FULL);
    assert_eq!(made.status, 200);
    // The logged-out cookie is dead on the server too, not only forgotten by the browser.
    let cookie = format!(
        "telecoder_login={}",
        result["cookie"].as_str().unwrap_or_default()
    );
    let after = api.send(
        api.http()
            .get(format!("{}/api/sessions", api.base))
            .header("cookie", &cookie),
    );
    assert_eq!(after.status, 401, "{}", after.body);
}

#[test]
fn cookie_writes_need_the_csrf_token_and_bearer_clients_are_unaffected() {
    let repo = TestRepo::new();
    let daemon = TestDaemon::start_with(&[("TELECODER_API_TOKEN", FULL)]);
    let api = daemon.api();
    let login = api.post("/ui/login", &json!({"token": FULL}));
    assert_eq!(login.status, 200, "{}", login.body);
    let csrf = login.body["csrf"].as_str().expect("csrf").to_owned();
    let set_cookie = login_cookie(&api, FULL, None);
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    assert!(!set_cookie.contains("Secure"), "plain HTTP: no Secure flag");
    assert!(!set_cookie.contains(FULL), "the cookie is not the token");
    let cookie = set_cookie.split(';').next().unwrap_or_default().to_owned();
    let fresh_csrf = api
        .send(
            api.http()
                .get(format!("{}/ui/whoami", api.base))
                .header("cookie", &cookie),
        )
        .body["csrf"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_ne!(fresh_csrf, csrf, "each login has its own CSRF token");
    let body = json!({"repo": repo.path_str(), "prompt": "@mock say hi"});
    let create = |csrf: Option<&str>, origin: Option<&str>| {
        let mut request = api
            .http()
            .post(format!("{}/api/sessions", api.base))
            .header("cookie", &cookie)
            .json(&body);
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        api.send(request)
    };
    assert_eq!(create(None, None).status, 403, "no CSRF token");
    assert_eq!(
        create(Some(&csrf), None).status,
        403,
        "another login's CSRF token"
    );
    assert_eq!(
        create(Some(&fresh_csrf), Some("https://evil.example")).status,
        403,
        "a foreign page"
    );
    let made = create(Some(&fresh_csrf), None);
    assert_eq!(made.status, 201, "{}", made.body);
    // Reads need no CSRF token; bearer clients never needed one.
    let read = api.send(
        api.http()
            .get(format!("{}/api/sessions", api.base))
            .header("cookie", &cookie),
    );
    assert_eq!(read.status, 200);
    let bearer =
        api.send(with_token(&api, reqwest::Method::POST, "/api/sessions", FULL).json(&body));
    assert_eq!(bearer.status, 201, "{}", bearer.body);
    // Secure when the proxy in front says the browser came over TLS.
    let secure = login_cookie(&api, FULL, Some("https"));
    assert!(secure.ends_with("; Secure"), "{secure}");
    // The open default needs no login at all.
    let open = TestDaemon::start();
    let refused = open.api().post("/ui/login", &json!({"token": FULL}));
    assert_eq!(refused.status, 400);
    let whoami = open.api().get("/ui/whoami").body;
    assert_eq!(whoami["auth"], "open");
    // The New session form offers what the daemon takes: `ask` only under the native runtime.
    let mut policies = vec!["locked", "observe", "standard"];
    if !acpx_runtime() {
        policies.push("ask");
    }
    assert_eq!(whoami["policies"], json!(policies));
}

#[test]
fn a_read_only_login_sees_no_actions_and_the_api_refuses_them() {
    let Some((repo, daemon)) = browser_test(&[
        ("TELECODER_API_TOKEN", FULL),
        ("TELECODER_API_READ_TOKEN", READ),
    ]) else {
        return;
    };
    let api = daemon.api();
    let create = |prompt: &str, policy: &str| {
        let body = json!({"repo": repo.path_str(), "prompt": prompt, "policy": policy});
        let reply =
            api.send(with_token(&api, reqwest::Method::POST, "/api/sessions", FULL).json(&body));
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.body["id"].as_str().unwrap_or_default().to_owned()
    };
    let finished = create("@mock say done already", "observe");
    api.wait_finished_with(&finished, FULL);
    // Running and waiting for a person: the page shows the question, not the buttons.
    let running = create("@mock write ro.txt no", "ask");
    let approval = wait_for("the session to ask", WAIT, || {
        let reply = get_with(&api, &format!("/api/approvals?session={running}"), READ);
        let first = reply.body.as_array()?.first()?.clone();
        (first["status"] == "pending").then(|| first["id"].as_str().map(str::to_owned))?
    });
    let watch = api.send(
        with_token(&api, reqwest::Method::POST, "/api/watches", FULL)
            .json(&json!({"repo": repo.path_str(), "instructions": "fix CI"})),
    );
    let watch = watch.body["id"].as_str().unwrap_or_default().to_owned();
    let result = browse(
        &daemon,
        "readonly",
        json!({"token": READ, "finished": finished, "running": running, "watch": watch,
               "approval": approval}),
    );
    let statuses = result["statuses"].as_object().expect("statuses");
    assert_eq!(statuses.len(), 6, "{statuses:?}");
    for (action, status) in statuses {
        assert_eq!(status, 403, "{action} from a read-only page");
    }
    let still = get_with(&api, &format!("/api/sessions/{running}"), FULL);
    assert_eq!(still.body["status"], "running");
    assert_eq!(still.body["awaitingApproval"], true);
    let asked = get_with(&api, &format!("/api/approvals/{approval}"), FULL);
    assert_eq!(asked.body["status"], "pending", "{}", asked.body);
    let lineage = get_with(&api, &format!("/api/sessions/{finished}/lineage"), FULL);
    assert_eq!(
        lineage.body.as_array().map(Vec::len),
        Some(1),
        "not continued"
    );
    let cancel = api.send(with_token(
        &api,
        reqwest::Method::POST,
        &format!("/api/sessions/{running}/cancel"),
        FULL,
    ));
    assert_eq!(cancel.status, 200);
}

#[test]
fn agent_markup_and_pr_titles_are_shown_as_text() {
    let Some((repo, daemon)) = browser_test(&[]) else {
        return;
    };
    let api = daemon.api();
    let script = "<script>window.__pwned=1</script>";
    let id = api.create_id(
        &repo.path_str(),
        &format!("@mock say {script}<img src=x onerror=\"window.__pwned=2\"><b>bold</b>"),
    );
    api.wait_finished(&id, WAIT);
    let watch = api.post(
        "/api/watches",
        &json!({"kind": "pr_review", "repo": repo.path_str(), "instructions": "review it"}),
    );
    let watch = watch.body["id"].as_str().expect("watch id").to_owned();
    let title = "<img src=x onerror=\"window.__pwned=3\">Fix <b>it</b>";
    let fired = api.post(
        "/api/watch-events/pr",
        &json!({"repo": repo.path_str(), "prNumber": 7, "title": title, "base": "main",
                "head": "feature", "diffText": "diff --git a/x b/x"}),
    );
    assert_eq!(fired.status, 201, "{}", fired.body);
    // What an agent asks a person to allow (policy ask) is its text too.
    let asked = "<img src=x onerror=window.__pwned=4>";
    let asking = api.create(
        &repo.path_str(),
        &format!("@mock write evil.txt {asked}"),
        json!({"policy": "ask"}),
    );
    let asking = asking["id"].as_str().unwrap_or_default().to_owned();
    wait_for("the agent to ask", WAIT, || {
        api.session(&asking)["awaitingApproval"]
            .as_bool()?
            .then_some(())
    });
    let markers = json!({
        format!("/sessions/{id}"): script,
        format!("/watches/{watch}"): title,
        "/": script,
        "/inbox": script,
        "/approvals": asked,
        format!("/sessions/{asking}"): asked,
    });
    let result = browse(
        &daemon,
        "xss",
        json!({"session": id, "watch": watch, "markers": markers}),
    );
    for (path, seen) in result["seen"].as_object().expect("pages") {
        assert_eq!(
            seen["shownAsText"], true,
            "{path}: the markup is visible as text"
        );
        assert_eq!(
            seen["elements"], 0,
            "{path}: no element came from the markup"
        );
        assert_eq!(seen["pwned"], Value::Null, "{path}: no script ran");
    }
    assert_eq!(result["dialogs"], json!([]));
}

#[test]
fn a_cross_site_page_cannot_act_through_a_logged_in_browser() {
    let Some((repo, daemon)) = browser_test(&[("TELECODER_API_TOKEN", FULL)]) else {
        return;
    };
    let open = TestDaemon::start();
    let result = browse(
        &daemon,
        "crosssite",
        json!({"token": FULL, "repo": repo.path_str(), "open": open.url}),
    );
    let reached = result["reached"].as_array().expect("requests");
    for target in [&daemon.url, &open.url] {
        for attack in ["text/plain form", "logout form", "no-cors fetch"] {
            let seen = reached
                .iter()
                .find(|r| {
                    r["attack"] == attack
                        && r["url"].as_str().unwrap_or("").starts_with(target.as_str())
                })
                .unwrap_or_else(|| {
                    panic!("{attack} against {target} reached no daemon: {reached:?}")
                });
            assert_eq!(seen["status"], 403, "{attack} against {target}: {seen}");
            if attack == "text/plain form" {
                // The premise: the browser did send the login (same site, SameSite=Strict or
                // not); the daemon's checks refused it.
                assert_eq!(seen["withLogin"], true, "{seen}");
            }
        }
        let json = reached
            .iter()
            .find(|r| r["attack"] == "JSON fetch" && r["url"] == target.as_str())
            .expect("the JSON fetch");
        assert!(
            json["readable"]
                .as_str()
                .unwrap_or("")
                .starts_with("blocked"),
            "{json}"
        );
    }
    for r in reached.iter().filter(|r| r["status"].is_number()) {
        let status = r["status"].as_u64().unwrap_or(0);
        assert!(
            (400..500).contains(&status),
            "a forged request succeeded: {r}"
        );
    }
    let made = get_with(&daemon.api(), "/api/sessions", FULL);
    assert_eq!(
        made.body,
        json!([]),
        "nothing was created through the login"
    );
    assert_eq!(
        open.api().get("/api/sessions").body,
        json!([]),
        "nor on the open daemon"
    );
    assert_eq!(
        result["after"], "login",
        "the forged logout did not end the login"
    );
}

#[test]
fn a_failing_scenario_leaves_no_browser_behind() {
    let Some((_repo, daemon)) = browser_test(&[]) else {
        return;
    };
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let mut run = Scenario::start(&daemon, "hang", &json!({}));
    let lines = std::io::BufRead::lines(std::io::BufReader::new(
        run.node.stdout.take().expect("stdout"),
    ));
    let (up, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if line == "UP" {
                let _ = up.send(());
            }
        }
    });
    seen.recv_timeout(WAIT)
        .expect("the scenario's browser showed the dashboard");
    let browser = run.browser_pids();
    assert!(
        browser.len() >= 2,
        "the browser and its helpers run: {browser:?}"
    );
    let profile = run.profile.path().to_owned();
    // The test fails while the browser is up: unwinding drops the scenario.
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _run = run;
        panic!("a step of the scenario failed (on purpose)");
    }));
    assert!(failed.is_err());
    for pid in browser {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = state
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']));
        assert!(
            !alive,
            "process {pid} of the browser outlived the test: {state}"
        );
    }
    assert!(!profile.exists(), "the profile was removed");
}

#[test]
fn approvals_arrive_live_and_are_answered_from_the_list_and_the_session_page() {
    let Some((repo, daemon)) = browser_test(&[("TELECODER_API_TOKEN", FULL)]) else {
        return;
    };
    let result = browse(
        &daemon,
        "approve",
        json!({"token": FULL, "repo": repo.path_str(),
               "allowPrompt": "@mock write allowed.txt yes",
               "denyPrompt": "@mock write denied.txt no"}),
    );
    let api = daemon.api();
    let finished = |key: &str| {
        let id = result[key].as_str().expect("session id");
        wait_for(&format!("session {id} to finish"), WAIT, || {
            let session = get_with(&api, &format!("/api/sessions/{id}"), FULL).body;
            (!matches!(session["status"].as_str(), Some("pending" | "running"))).then_some(session)
        })
    };
    let allowed = finished("allowed");
    assert_eq!(allowed["status"], "complete", "{allowed}");
    let work = Path::new(allowed["workDir"].as_str().unwrap_or_default());
    assert_eq!(
        std::fs::read_to_string(work.join("allowed.txt"))
            .ok()
            .as_deref(),
        Some("yes"),
        "the allowed write happened"
    );
    let denied = finished("denied");
    assert_eq!(denied["failureKind"], "policy_denied", "{denied}");
    let work = Path::new(denied["workDir"].as_str().unwrap_or_default());
    assert!(
        !work.join("denied.txt").exists(),
        "the denied write never happened"
    );
    assert!(result["deniedText"]
        .as_str()
        .is_some_and(|text| text.contains("permission denied for denied.txt")));
    // Each was decided once, by the person logged in to the dashboard.
    for (session, status) in [(&allowed, "allowed"), (&denied, "denied")] {
        let id = session["id"].as_str().unwrap_or_default();
        let records = get_with(&api, &format!("/api/approvals?session={id}"), FULL).body;
        let records = records.as_array().cloned().unwrap_or_default();
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0]["status"], status);
        assert_eq!(records[0]["decidedBy"], "dashboard (full token login)");
    }
    assert_eq!(result["count"], "", "nothing pending is counted");
}

#[test]
fn a_finished_session_is_continued_from_its_page() {
    let Some((repo, daemon, id)) = with_session("@mock say first turn", "complete") else {
        return;
    };
    let api = daemon.api();
    let running = api.create_id(&repo.path_str(), "@mock hang");
    api.wait_status(&running, "running", WAIT);
    let result = browse(
        &daemon,
        "continue",
        json!({"id": id, "running": running, "prompt": "@mock say second turn",
               "expect": "second turn"}),
    );
    let next = result["next"].as_str().expect("the next turn");
    let turn = api.wait_finished(next, WAIT);
    let first = api.session(&id);
    assert_eq!(turn["status"], "complete", "{turn}");
    assert_eq!(turn["continuedFrom"], id.as_str());
    assert_eq!(turn["prompt"], "@mock say second turn");
    assert_eq!(turn["workDir"], first["workDir"], "the same workspace");
    assert_eq!(turn["branch"], first["branch"]);
    // What the page no longer offered, the API refuses.
    let again = api.post(
        &format!("/api/sessions/{id}/continue"),
        &json!({"prompt": "@mock say third"}),
    );
    assert_eq!(again.status, 409, "{}", again.body);
    api.post(&format!("/api/sessions/{running}/cancel"), &json!({}));
}
