//! Publishing: a real local bare repository stands in for GitHub's git side (through git's
//! insteadOf), and a fake GitHub REST server started here records requests and fails on demand.

use crate::support::*;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::{Arc, Mutex};
use warp::Filter;

pub(crate) const TOKEN: &str = "ghp_publishTestToken0123456789abcdefABCD";
pub(crate) const GITHUB_REPO: &str = "https://github.com/acme/widgets";

#[derive(Default)]
pub(crate) struct FakeGitHub {
    pub(crate) pulls: Vec<Value>,
    requests: Vec<(String, String, String)>,
    fail_next_create: Option<u16>,
}

/// Starts the fake REST API; returns its base URL and its state.
fn fake_github() -> (String, Arc<Mutex<FakeGitHub>>) {
    let state = Arc::new(Mutex::new(FakeGitHub::default()));
    let shared = state.clone();
    let with_state = warp::any().map(move || shared.clone());
    let routes = warp::path!("repos" / String / String / "pulls")
        .and(warp::method())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::query::<std::collections::HashMap<String, String>>())
        .and(warp::body::bytes())
        .and(with_state)
        .map(|owner: String, name: String, method: warp::http::Method, auth: Option<String>, query: std::collections::HashMap<String, String>, body: bytes::Bytes, state: Arc<Mutex<FakeGitHub>>| {
            let mut fake = state.lock().expect("lock");
            fake.requests.push((method.to_string(), auth.clone().unwrap_or_default(), String::from_utf8_lossy(&body).into_owned()));
            let reply = |status: u16, value: Value| {
                warp::Reply::into_response(warp::reply::with_status(warp::reply::json(&value), warp::http::StatusCode::from_u16(status).expect("status")))
            };
            if auth.as_deref() != Some(&format!("Bearer {TOKEN}")) {
                return reply(401, json!({"message": "Bad credentials"}));
            }
            if method == warp::http::Method::GET {
                let head = query.get("head").cloned().unwrap_or_default();
                let found: Vec<Value> = fake.pulls.iter().filter(|p| format!("{owner}:{}", p["head"]["ref"].as_str().unwrap_or_default()) == head).cloned().collect();
                return reply(200, json!(found));
            }
            if let Some(status) = fake.fail_next_create.take() {
                return reply(status, json!({"message": "injected failure"}));
            }
            let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let head = request["head"].as_str().unwrap_or_default().to_owned();
            if fake.pulls.iter().any(|p| p["head"]["ref"] == head.as_str()) {
                return reply(422, json!({"message": "Validation Failed", "errors": [{"message": format!("A pull request already exists for {owner}:{head}.")}]}));
            }
            let number = fake.pulls.len() as u64 + 1;
            let pull = json!({"number": number, "html_url": format!("https://github.com/{owner}/{name}/pull/{number}"), "title": request["title"], "body": request["body"], "base": {"ref": request["base"]}, "head": {"ref": head}});
            fake.pulls.push(pull.clone());
            reply(201, pull)
        })
        .boxed();
    (serve_on_loopback(routes), state)
}

pub(crate) struct Setup {
    pub(crate) daemon: TestDaemon,
    pub(crate) remote: tempfile::TempDir,
    pub(crate) github: Arc<Mutex<FakeGitHub>>,
    _keep: Vec<tempfile::TempDir>,
}

fn setup(token: Option<&str>) -> Setup {
    setup_with(token, &[])
}

/// A bare "GitHub" repository with one commit on main, a git config mapping the GitHub URL to
/// it, a fake REST API, and a daemon using both (and `extra` in its environment).
pub(crate) fn setup_with(token: Option<&str>, extra: &[(&str, &str)]) -> Setup {
    let remote = tempfile::tempdir().expect("tempdir");
    git_in(remote.path(), &["init", "-q", "--bare", "-b", "main"]);
    let seed = TestRepo::new();
    seed.git(&["push", "-q", &remote.path().to_string_lossy(), "main"]);
    let config_dir = tempfile::tempdir().expect("tempdir");
    let config = config_dir.path().join("gitconfig");
    std::fs::write(
        &config,
        format!(
            "[url \"{}\"]\n\tinsteadOf = {GITHUB_REPO}\n",
            remote.path().display()
        ),
    )
    .expect("gitconfig");
    let (api_url, github) = fake_github();
    let config = config.to_string_lossy().into_owned();
    let mut env = vec![
        ("GIT_CONFIG_GLOBAL", config.as_str()),
        ("TELECODER_GITHUB_API_URL", api_url.as_str()),
    ];
    if let Some(token) = token {
        env.push(("GITHUB_TOKEN", token));
    }
    env.extend_from_slice(extra);
    let daemon = TestDaemon::start_with(&env);
    Setup {
        daemon,
        remote,
        github,
        _keep: vec![config_dir, seed.dir],
    }
}

pub(crate) fn run_to_end(api: &Api, prompt: &str) -> String {
    let id = api.create(GITHUB_REPO, prompt, json!({"policy": "standard"}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let session = api.wait_finished(&id, SHORT);
    assert_eq!(session["status"], "complete", "{session}");
    id
}

pub(crate) fn publish(api: &Api, id: &str, body: Value) -> Reply {
    api.post(&format!("/api/sessions/{id}/publish"), &body)
}

#[test]
fn publishes_a_session_as_a_pull_request_once() {
    let setup = setup(Some(TOKEN));
    let api = setup.daemon.api();
    let id = run_to_end(&api, "@mock write notes.txt hello from the agent");
    let reply = publish(&api, &id, json!({"base": "main"}));
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["sessionId"], id.as_str());
    assert_eq!(reply.body["branch"], format!("telecoder/{id}"));
    assert_eq!(reply.body["title"], "wrote notes.txt");
    assert_eq!(reply.body["pullRequestNumber"], 1);
    assert_eq!(
        reply.body["pullRequestUrl"],
        "https://github.com/acme/widgets/pull/1"
    );

    // The branch landed on the remote with the agent's file, committed as TeleCoder.
    let branch = format!("telecoder/{id}");
    let remote = setup.remote.path();
    assert_eq!(
        git_in(remote, &["show", &format!("{branch}:notes.txt")]),
        "hello from the agent"
    );
    assert_eq!(
        git_in(remote, &["log", "-1", "--format=%an", &branch]),
        "TeleCoder"
    );
    let pull = setup.github.lock().expect("lock").pulls[0].clone();
    assert_eq!(pull["base"]["ref"], "main");
    let body = pull["body"].as_str().unwrap_or_default();
    for section in [
        "## Summary",
        "## Changed",
        "## Verified",
        "## Uncertain",
        "## Next",
        &id,
        "standard",
    ] {
        assert!(body.contains(section), "body lacks {section}: {body}");
    }

    let session = api.session(&id);
    assert_eq!(session["pullRequestNumber"], 1);
    assert!(api.events(&id).iter().any(|e| e["type"] == "publish"));

    let again = publish(&api, &id, json!({"base": "main"}));
    assert_eq!(again.status, 201);
    assert_eq!(again.body["pullRequestNumber"], 1);
    let posts = setup
        .github
        .lock()
        .expect("lock")
        .requests
        .iter()
        .filter(|r| r.0 == "POST")
        .count();
    assert_eq!(posts, 1, "publishing again returns the existing PR");

    // The token is nowhere but in the requests to GitHub.
    let work_dir = session["workDir"].as_str().unwrap_or_default();
    let git_config =
        std::fs::read_to_string(Path::new(work_dir).join(".git/config")).expect("config");
    for (place, text) in [
        ("workspace git config", git_config),
        ("session", session.to_string()),
        ("events", json!(api.events(&id)).to_string()),
        ("daemon log", setup.daemon.log()),
    ] {
        assert!(!text.contains(TOKEN), "token found in the {place}");
    }
}

#[test]
fn custom_title_and_body_and_retry_after_an_api_failure() {
    let setup = setup(Some(TOKEN));
    let api = setup.daemon.api();
    let id = run_to_end(&api, "@mock write a.txt A");
    setup.github.lock().expect("lock").fail_next_create = Some(500);
    let failed = publish(
        &api,
        &id,
        json!({"base": "main", "title": "Custom title", "body": "Custom body"}),
    );
    assert_eq!(failed.status, 502, "{}", failed.body);
    assert!(failed.body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("500"));
    assert_eq!(api.session(&id)["pullRequestNumber"], 0);
    // The push happened; the retry finishes the job.
    git_in(
        setup.remote.path(),
        &["rev-parse", "--verify", &format!("telecoder/{id}")],
    );
    let retried = publish(
        &api,
        &id,
        json!({"base": "main", "title": "Custom title", "body": "Custom body"}),
    );
    assert_eq!(retried.status, 201, "{}", retried.body);
    let pull = setup.github.lock().expect("lock").pulls[0].clone();
    assert_eq!(pull["title"], "Custom title");
    assert_eq!(pull["body"], "Custom body");

    // A PR that GitHub already has (opened by an earlier attempt) is found, not duplicated.
    let other = run_to_end(&api, "@mock write b.txt B");
    setup.github.lock().expect("lock").pulls.push(json!({"number": 99, "html_url": "https://github.com/acme/widgets/pull/99", "head": {"ref": format!("telecoder/{other}")}}));
    let found = publish(&api, &other, json!({"base": "main"}));
    assert_eq!(found.status, 201);
    assert_eq!(found.body["pullRequestNumber"], 99);
}

#[test]
fn refusals_say_why() {
    let setup = setup(Some(TOKEN));
    let api = setup.daemon.api();
    let nothing = run_to_end(&api, "@mock say no changes here");
    let reply = publish(&api, &nothing, json!({"base": "main"}));
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["error"], "no committed changes to publish");

    let failed = api.create(GITHUB_REPO, "@mock crash", json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    api.wait_finished(&failed, SHORT);
    let reply = publish(&api, &failed, json!({"base": "main"}));
    assert_eq!(reply.status, 400);
    assert!(reply.body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("only complete sessions"));

    let local = TestRepo::new();
    let local_id = api.create(
        &local.path_str(),
        "@mock write c.txt C",
        json!({"policy": "standard"}),
    )["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    api.wait_finished(&local_id, SHORT);
    let reply = publish(&api, &local_id, json!({"base": "main"}));
    assert_eq!(reply.status, 400);
    assert!(reply.body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("not a GitHub repository"));

    assert_eq!(
        publish(&api, &nothing, json!({})).status,
        400,
        "base is required"
    );
    assert_eq!(publish(&api, &nothing, json!({"base": 3})).status, 400);
    assert_eq!(
        publish(&api, "deadbeef", json!({"base": "main"})).status,
        404
    );
}

#[test]
fn without_a_token_or_with_a_bad_one_publishing_fails_clearly() {
    let setup_without = setup(None);
    let api = setup_without.daemon.api();
    let id = run_to_end(&api, "@mock write d.txt D");
    let reply = publish(&api, &id, json!({"base": "main"}));
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("GITHUB_TOKEN"));

    let wrong = "ghp_wrongWrongWrong0123456789abcdefABCD";
    let setup_wrong = setup(Some(wrong));
    let api = setup_wrong.daemon.api();
    let id = run_to_end(&api, "@mock write e.txt E");
    let reply = publish(&api, &id, json!({"base": "main"}));
    assert_eq!(reply.status, 502, "{}", reply.body);
    let message = reply.body["error"].as_str().unwrap_or_default();
    assert!(message.contains("rejected the token"), "{message}");
    assert!(!message.contains(wrong));
    assert_eq!(api.session(&id)["pullRequestNumber"], 0);
}

#[test]
fn publish_session_from_the_cli() {
    let setup = setup(Some(TOKEN));
    let api = setup.daemon.api();
    let id = run_to_end(&api, "@mock write cli.txt from the CLI");
    let cli = |args: &[&str]| telecoder(&[("TELECODER_URL", setup.daemon.url.as_str())], args);
    let published = cli(&[
        "--human",
        "publish-session",
        &id,
        "--base",
        "main",
        "--title",
        "From the CLI",
    ]);
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&published.stdout).trim(),
        "pull request #1 https://github.com/acme/widgets/pull/1"
    );
    assert_eq!(
        setup.github.lock().expect("lock").pulls[0]["title"],
        "From the CLI"
    );
    let status = cli(&["--human", "status", &id]);
    assert!(String::from_utf8_lossy(&status.stdout)
        .contains("#1 https://github.com/acme/widgets/pull/1"));
    let missing_base = cli(&["publish-session", &id]);
    assert_eq!(missing_base.status.code(), Some(1), "--base is required");
    assert!(
        String::from_utf8_lossy(&missing_base.stderr).contains("--base <BASE>"),
        "clap's whole message names what is missing"
    );
}
