//! A session's life: claim, workspace, agent, outcome; failure kinds; policy enforcement.

use crate::support::*;
use serde_json::{json, Value};
use std::path::Path;

fn event_types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn session_runs_to_a_structured_outcome() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let created = api.create(&repo.path_str(), "@mock outcome", json!({}));
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(
        id.len() == 8
            && id
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(created["status"], "pending");
    assert_eq!(created["attempt"], 1);
    assert_eq!(created["parentSessionId"], "");
    assert_eq!(created["policyMode"], "observe");
    assert_eq!(created["effectivePermissionMode"], "approve-reads");
    assert_eq!(created["workspaceWritePolicy"], "blocked");
    assert_eq!(created["maxRuntimeSeconds"], 180);
    assert_eq!(created["runtimeCommand"], mock_agent_command());
    assert_eq!(created["finishedAt"], "");

    let done = api.wait_finished(&id, SHORT);
    assert_eq!(done["status"], "complete", "{done}");
    assert_eq!(done["failureKind"], "");
    assert_eq!(done["outcomeHeadline"], "updated README.md");
    assert_eq!(done["outcomeChanged"], "updated README.md");
    assert_eq!(done["outcomeVerified"], "ran the tests all green");
    assert_eq!(done["outcomeUncertain"], "nothing");
    assert_eq!(done["outcomeNext"], "publish it");
    assert!(done["resultText"]
        .as_str()
        .unwrap_or_default()
        .contains("Looked at the repo."));
    assert_eq!(done["branch"], format!("telecoder/{id}"));
    assert_ne!(done["ownerId"], "");
    for field in ["claimedAt", "startedAt", "heartbeatAt", "finishedAt"] {
        assert!(
            done[field].as_str().unwrap_or_default().ends_with('Z'),
            "{field}: {done}"
        );
    }

    let work_dir = done["workDir"].as_str().expect("workDir");
    assert_eq!(
        Path::new(work_dir),
        daemon.data_dir.join("workspaces").join(&id)
    );
    assert_eq!(
        git_in(Path::new(work_dir), &["rev-parse", "--abbrev-ref", "HEAD"]),
        format!("telecoder/{id}")
    );

    let events = api.events(&id);
    let types = event_types(&events);
    assert_eq!(types.first().map(String::as_str), Some("status"));
    assert_eq!(types.last().map(String::as_str), Some("done"));
    assert!(types.contains(&"output".to_owned()));
    let statuses: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "status")
        .filter_map(|e| e["data"].as_str())
        .collect();
    assert!(statuses[0].contains("policy=observe"), "{statuses:?}");
    assert!(statuses.contains(&"setting up workspace"));
    assert!(statuses.contains(&format!("running {}", runtime()).as_str()));
    let event_ids: Vec<i64> = events.iter().filter_map(|e| e["id"].as_i64()).collect();
    assert!(
        event_ids.windows(2).all(|w| w[0] < w[1]),
        "ids increase: {event_ids:?}"
    );
    assert!(events.iter().all(|e| e["sessionId"] == id.as_str()));

    let inbox = api.get("/api/inbox");
    assert_eq!(inbox.body[0]["id"], id.as_str());
}

#[test]
fn failures_are_classified() {
    // Only the hang needs the short prompt timeout: on a loaded machine the crash and error
    // cases could otherwise lose a race against it before the agent even starts.
    let daemon = TestDaemon::start();
    let short_timeout = TestDaemon::start_with(&[("TELECODER_PROMPT_TIMEOUT_SECONDS", "2")]);
    let repo = TestRepo::new();
    let (patient, impatient) = (daemon.api(), short_timeout.api());
    let cases = [
        (
            &patient,
            "@mock crash",
            "runtime_error",
            "exited with code 1",
        ),
        (
            &patient,
            "@mock error",
            "runtime_error",
            "mock agent failure",
        ),
        // acpx's own timeout or, on a slow machine, the daemon's backstop: both say "2 s".
        (&impatient, "@mock hang", "timeout", " 2 s "),
    ];
    let ids: Vec<String> = cases
        .iter()
        .map(|(api, prompt, _, _)| {
            api.create(&repo.path_str(), prompt, json!({}))["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    for (id, (api, prompt, kind, message)) in ids.iter().zip(cases) {
        let session = api.wait_finished(id, SHORT);
        assert_eq!(session["status"], "error", "{prompt}: {session}");
        assert_eq!(session["failureKind"], kind, "{prompt}: {session}");
        let error = session["error"].as_str().unwrap_or_default();
        assert!(error.contains(message), "{prompt}: {error}");
        assert_eq!(session["outcomeHeadline"], format!("Failed: {error}"));
        assert_eq!(
            session["outcomeNext"],
            "Inspect the error and rerun or intervene manually."
        );
        let events = api.events(id);
        let last = events.last().expect("events");
        assert_eq!(last["type"], "error");
        assert_eq!(last["data"], error);
        assert!(
            session_processes(id).is_empty(),
            "{prompt} left processes behind"
        );
    }
}

#[test]
fn policies_decide_what_the_agent_may_write() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let head_before = repo.git(&["rev-parse", "HEAD"]);
    let prompt = "@mock write notes.txt written by the agent";
    let observe = api.create(&repo.path_str(), prompt, json!({}));
    let locked = api.create(&repo.path_str(), prompt, json!({"policy": "locked"}));
    let standard = api.create(&repo.path_str(), prompt, json!({"policy": "standard"}));

    for denied in [&observe, &locked] {
        let id = denied["id"].as_str().unwrap_or_default();
        let session = api.wait_finished(id, SHORT);
        assert_eq!(session["status"], "error", "{session}");
        assert_eq!(session["failureKind"], "policy_denied", "{session}");
        let work_dir = session["workDir"].as_str().unwrap_or_default();
        assert!(
            !Path::new(work_dir).join("notes.txt").exists(),
            "denied write landed"
        );
    }
    assert_eq!(locked["effectivePermissionMode"], "deny-all");
    assert_eq!(locked["maxRuntimeSeconds"], 60);

    let id = standard["id"].as_str().unwrap_or_default();
    let session = api.wait_finished(id, SHORT);
    assert_eq!(session["status"], "complete", "{session}");
    assert_eq!(session["workspaceWritePolicy"], "contained");
    let work_dir = Path::new(session["workDir"].as_str().unwrap_or_default());
    let written =
        std::fs::read_to_string(work_dir.join("notes.txt")).expect("file in the workspace");
    assert_eq!(written, "written by the agent");

    // The user's repository, branch and working tree are untouched.
    assert!(!repo.path().join("notes.txt").exists());
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    assert_eq!(repo.git(&["rev-parse", "--abbrev-ref", "HEAD"]), "main");
    assert_eq!(repo.git(&["rev-parse", "HEAD"]), head_before);
    assert_eq!(repo.git(&["branch", "--list"]), "* main");
}

#[test]
fn git_urls_clone_and_unclonable_repos_fail_the_session() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let url = format!("file://{}", repo.path_str());
    let ok = api.create(&url, "@mock say cloned from a URL", json!({}));
    let session = api.wait_finished(ok["id"].as_str().unwrap_or_default(), SHORT);
    assert_eq!(session["status"], "complete", "{session}");
    assert_eq!(session["repo"], url.as_str());

    let missing = format!("file://{}/does-not-exist", repo.path_str());
    let bad = api.create(&missing, "@mock echo", json!({}));
    let session = api.wait_finished(bad["id"].as_str().unwrap_or_default(), SHORT);
    assert_eq!(session["status"], "error");
    assert_eq!(session["failureKind"], "runtime_error");
    assert!(
        session["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("cannot clone"),
        "{session}"
    );
}

#[test]
fn agent_command_override_and_runtime_command() {
    let daemon =
        TestDaemon::start_with(&[("TELECODER_AGENT_MY_AGENT_COMMAND", &mock_agent_command())]);
    let repo = TestRepo::new();
    let api = daemon.api();
    let created = api.create(
        &repo.path_str(),
        "@mock say hi",
        json!({"agent": "my-agent"}),
    );
    assert_eq!(created["agent"], "my-agent");
    assert_eq!(created["runtimeCommand"], mock_agent_command());
    let session = api.wait_finished(created["id"].as_str().unwrap_or_default(), SHORT);
    assert_eq!(session["resultText"], "hi");
}

/// The repository's `.acpxrc.json` redefines a registry agent (one not installed here) to run
/// a command of its choosing; neither runtime may run it.
#[test]
fn a_repository_cannot_redefine_the_agent_command() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let marker_dir = tempfile::tempdir().expect("tempdir");
    let marker = marker_dir.path().join("pwned");
    let config = json!({"agents": {"zeroclaw": {"argv": ["/bin/sh", "-c", format!("touch {}", marker.display())]}}});
    std::fs::write(repo.path().join(".acpxrc.json"), config.to_string()).expect("write");
    repo.git(&["add", "."]);
    repo.git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "commit",
        "-qm",
        "acpx config",
    ]);

    let api = daemon.api();
    let id = api.create(&repo.path_str(), "hello", json!({"agent": "zeroclaw"}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let session = api.wait_finished(&id, SHORT);
    assert_eq!(session["status"], "error", "{session}");
    assert!(
        !marker.exists(),
        "the repository's .acpxrc.json ran a command"
    );
    if acpx_runtime() {
        // acpx reads the file, so the runtime sets it aside while acpx runs and says so.
        assert!(api.events(&id).iter().any(|e| e["data"]
            .as_str()
            .unwrap_or_default()
            .contains(".acpxrc.json")));
    }
    let work_dir = Path::new(session["workDir"].as_str().unwrap_or_default());
    assert!(
        work_dir.join(".acpxrc.json").exists(),
        "the file is put back after the run"
    );
    assert_eq!(git_in(work_dir, &["status", "--porcelain"]), "");
}

#[test]
fn prompts_too_large_for_one_argument_go_through_a_file() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    // Linux caps one argv string at 128 KiB.
    let prompt = format!(
        "@mock say big prompt ok\n{}",
        "context line\n".repeat(15_000)
    );
    assert!(prompt.len() > 150_000);
    let id = api.create(&repo.path_str(), &prompt, json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let session = api.wait_finished(&id, SHORT);
    assert_eq!(session["status"], "complete", "{}", session["error"]);
    assert_eq!(session["resultText"], "big prompt ok");
    assert_eq!(session["prompt"].as_str().map(str::len), Some(prompt.len()));
    let scratch = daemon.data_dir.join("tmp");
    let leftovers = std::fs::read_dir(&scratch).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leftovers, 0, "the prompt file is removed after the run");
}
