//! Issue 14, the native ACP runtime. The conformance table runs under whichever runtime the
//! suite runs with (`scripts/test` runs it under both), so the same agent behaviour must end
//! with the same status, failure kind and result text under native and acpx. The rest checks
//! what only the native runtime does: tool and plan events, stored agent facts, the client's
//! contained file and terminal methods.

use crate::support::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// How a session must end: status, failure kind, and its result text (exactly, or a prefix).
struct Expect {
    prompt: &'static str,
    policy: &'static str,
    status: &'static str,
    failure: &'static str,
    text: Text,
}

enum Text {
    Exactly(&'static str),
    StartsWith(&'static str),
}

fn case(
    prompt: &'static str,
    policy: &'static str,
    status: &'static str,
    failure: &'static str,
    text: Text,
) -> Expect {
    Expect {
        prompt,
        policy,
        status,
        failure,
        text,
    }
}

/// A repository with a symlink that points out of it (git stores symlinks as such).
fn repo_with_escape(outside: &Path) -> TestRepo {
    let repo = TestRepo::new();
    std::os::unix::fs::symlink(outside.join("secret.txt"), repo.path().join("escape"))
        .expect("symlink");
    std::os::unix::fs::symlink(outside, repo.path().join("outdir")).expect("symlink");
    repo.commit_all("links");
    repo
}

/// Runs every case at once on `daemon` and checks each outcome.
fn check_cases(daemon: &TestDaemon, repo: &TestRepo, cases: &[Expect]) {
    let api = daemon.api();
    let ids: Vec<String> = cases
        .iter()
        .map(|c| {
            api.create(&repo.path_str(), c.prompt, json!({"policy": c.policy}))["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    for (id, c) in ids.iter().zip(cases) {
        let session = api.wait_finished(id, Duration::from_secs(90));
        let what = format!("{} ({}) under {}: {session}", c.prompt, c.policy, runtime());
        assert_eq!(session["status"], c.status, "{what}");
        assert_eq!(session["failureKind"], c.failure, "{what}");
        let text = session["resultText"].as_str().unwrap_or_default();
        match c.text {
            Text::Exactly(expected) => assert_eq!(text, expected, "{what}"),
            Text::StartsWith(prefix) => assert!(text.starts_with(prefix), "{what}"),
        }
        assert!(session_processes(id).is_empty(), "{what}: processes left");
    }
}

#[test]
fn both_runtimes_end_every_scenario_the_same_way() {
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("secret.txt"), "s3cret").expect("write");
    let repo = repo_with_escape(outside.path());
    // Three at a time: under acpx each session is a node process, and the rest of the suite
    // runs beside this test on the same two cores.
    let daemon = TestDaemon::start_with(&[
        ("TELECODER_MAX_CONCURRENT_SESSIONS", "3"),
        ("TELECODER_MAX_OUTPUT_BYTES", "65536"),
    ]);
    use Text::{Exactly, StartsWith};
    let cases = [
        case("@mock say hi", "observe", "complete", "", Exactly("hi")),
        case(
            "@mock tools",
            "observe",
            "complete",
            "",
            Exactly("tools done"),
        ),
        case(
            "@mock plan",
            "observe",
            "complete",
            "",
            Exactly("plan done"),
        ),
        case(
            "@mock read README.md",
            "observe",
            "complete",
            "",
            Exactly("read README.md: # demo\n"),
        ),
        case(
            "@mock read README.md",
            "locked",
            "error",
            "policy_denied",
            Exactly("permission denied for README.md"),
        ),
        case(
            "@mock write notes.txt x",
            "observe",
            "error",
            "policy_denied",
            Exactly("permission denied for notes.txt"),
        ),
        case(
            "@mock write notes.txt x",
            "standard",
            "complete",
            "",
            Exactly("wrote notes.txt"),
        ),
        case(
            "@mock crash",
            "observe",
            "error",
            "runtime_error",
            Exactly("about to crash"),
        ),
        case(
            "@mock error",
            "observe",
            "error",
            "runtime_error",
            Exactly(""),
        ),
        case(
            "@mock no-such-directive",
            "observe",
            "error",
            "runtime_error",
            Exactly(""),
        ),
        case(
            "@mock fs-read README.md",
            "observe",
            "complete",
            "",
            Exactly("fs-read README.md: # demo\n"),
        ),
        case(
            "@mock fs-read README.md",
            "locked",
            "error",
            "policy_denied",
            StartsWith("fs-read README.md failed: "),
        ),
        case(
            "@mock fs-read /etc/hostname",
            "standard",
            "complete",
            "",
            StartsWith("fs-read /etc/hostname failed: "),
        ),
        case(
            "@mock fs-read escape",
            "standard",
            "complete",
            "",
            StartsWith("fs-read escape failed: "),
        ),
        case(
            "@mock fs-write ../escaped.txt x",
            "standard",
            "complete",
            "",
            StartsWith("fs-write ../escaped.txt failed: "),
        ),
        case(
            "@mock fs-write outdir/planted.txt x",
            "standard",
            "complete",
            "",
            StartsWith("fs-write outdir/planted.txt failed: "),
        ),
        case(
            "@mock fs-write sub/new.txt hello",
            "standard",
            "complete",
            "",
            Exactly("fs-wrote sub/new.txt"),
        ),
        case(
            "@mock fs-write sub/new.txt hello",
            "observe",
            "error",
            "policy_denied",
            StartsWith("fs-write sub/new.txt failed: "),
        ),
        case(
            "@mock run echo hi",
            "standard",
            "complete",
            "",
            Exactly("exit=0 signal=None output=hi\n"),
        ),
        case(
            "@mock run echo hi",
            "observe",
            "error",
            "policy_denied",
            StartsWith("run failed: "),
        ),
        case(
            "@mock flood 1",
            "observe",
            "complete",
            "",
            StartsWith("xxxxxxxx"),
        ),
    ];
    check_cases(&daemon, &repo, &cases);
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret.txt"))
            .ok()
            .as_deref(),
        Some("s3cret")
    );
    assert!(!outside.path().join("planted.txt").exists());
    assert!(!outside.path().join("escaped.txt").exists());
}

#[test]
fn both_runtimes_stop_hanging_agents_the_same_way() {
    let repo = TestRepo::new();
    // acpx's --timeout also counts its own start-up, which takes seconds on a loaded machine:
    // the limit leaves room for the agent to say "hanging" first under both runtimes.
    let daemon = TestDaemon::start_with(&[("TELECODER_PROMPT_TIMEOUT_SECONDS", "8")]);
    use Text::Exactly;
    let cases = [
        case(
            "@mock hang",
            "observe",
            "error",
            "timeout",
            Exactly("hanging"),
        ),
        case(
            "@mock hang-hard",
            "observe",
            "error",
            "timeout",
            Exactly("hanging"),
        ),
    ];
    check_cases(&daemon, &repo, &cases);

    // Cancel: an agent that ignores session/cancel is killed after the grace period.
    let daemon = TestDaemon::start();
    let api2 = daemon.api();
    let id = api2.create(&repo.path_str(), "@mock hang-hard", json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    wait_for("the agent to hang", SHORT, || {
        api2.events(&id)
            .iter()
            .any(|e| e["data"] == "hanging")
            .then_some(())
    });
    assert_eq!(
        api2.post(&format!("/api/sessions/{id}/cancel"), &json!({}))
            .status,
        200
    );
    let session = api2.wait_finished(&id, SHORT);
    assert_eq!(session["status"], "cancelled", "{session}");
    assert_eq!(session["resultText"], "hanging");
    wait_for("the agent to be gone", Duration::from_secs(10), || {
        session_processes(&id).is_empty().then_some(())
    });
}

#[test]
fn unknown_agents_are_refused_at_creation() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let reply = api.post(
        "/api/sessions",
        &json!({"repo": repo.path_str(), "prompt": "hi", "agent": "no-such-agent"}),
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    let message = reply.body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("unknown agent 'no-such-agent'"),
        "{message}"
    );
    assert!(
        message.contains("TELECODER_AGENT_NO_SUCH_AGENT_COMMAND"),
        "{message}"
    );
    assert!(api.list("").is_empty(), "nothing was stored");
    let watch = api.post(
        "/api/watches",
        &json!({"repo": repo.path_str(), "instructions": "x", "agent": "no-such-agent"}),
    );
    assert_eq!(watch.status, 400, "{}", watch.body);
    // Registry names are accepted (and fail at run time when the program is missing).
    let known = api.create(&repo.path_str(), "hi", json!({"agent": "zeroclaw"}));
    let session = api.wait_finished(known["id"].as_str().unwrap_or_default(), SHORT);
    assert_eq!(session["failureKind"], "runtime_error", "{session}");
}

/// The events of one type, with their data parsed as JSON.
fn json_events(api: &Api, id: &str, kind: &str) -> Vec<Value> {
    api.events(id)
        .iter()
        .filter(|e| e["type"] == kind)
        .map(|e| serde_json::from_str(e["data"].as_str().unwrap_or_default()).expect("JSON data"))
        .collect()
}

#[test]
fn tool_calls_plans_and_agent_facts_are_recorded() {
    if acpx_runtime() {
        return; // acpx shows only assistant text: there is nothing of this to see.
    }
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let tools = api.create(&repo.path_str(), "@mock tools", json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let plan = api.create(&repo.path_str(), "@mock plan", json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let session = api.wait_finished(&tools, SHORT);
    assert_eq!(session["status"], "complete", "{session}");
    let events = json_events(&api, &tools, "tool");
    let work_dir = session["workDir"].as_str().unwrap_or_default();
    let statuses: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["title"].as_str().unwrap_or_default(),
                e["status"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("Read README.md", "pending"),
            ("Read README.md", "in_progress"),
            ("Read README.md", "completed"),
            ("Run the tests", "pending"),
            ("Run the tests", "failed"),
        ]
    );
    let read = &events[2];
    assert_eq!(read["kind"], "read");
    assert_eq!(
        read["locations"],
        json!([{"path": format!("{work_dir}/README.md"), "line": 1}])
    );
    assert!(read["toolCallId"]
        .as_str()
        .is_some_and(|id| id.starts_with("mock-tool-read-")));
    assert_eq!(events[4]["kind"], "execute");
    let all = api.events(&tools);
    let tool_at = all.iter().position(|e| e["type"] == "tool");
    let output_at = all.iter().position(|e| e["type"] == "output");
    assert!(
        tool_at < output_at,
        "tool events keep their place before the text"
    );

    assert_eq!(session["stopReason"], "end_turn");
    assert_eq!(session["agentLoadSession"], true);
    assert!(session["agentSessionId"]
        .as_str()
        .is_some_and(|id| id.starts_with("mock-")));
    let usage = &session["tokenUsage"];
    assert_eq!(
        (
            usage["inputTokens"].as_u64(),
            usage["outputTokens"].as_u64()
        ),
        (Some(2), Some(2))
    );
    assert_eq!(usage["totalTokens"], 4);
    assert_eq!(usage["contextSize"], 200000);

    let session = api.wait_finished(&plan, SHORT);
    assert_eq!(session["status"], "complete", "{session}");
    let plans = json_events(&api, &plan, "plan");
    assert_eq!(plans.len(), 4, "{plans:?}");
    assert_eq!(
        plans[0][0],
        json!({"content": "Read the code", "priority": "high", "status": "in_progress"})
    );
    assert!(plans[3]
        .as_array()
        .is_some_and(|entries| entries.iter().all(|e| e["status"] == "completed")));

    // Clients that follow the stream see the new types too, and the CLI shows them.
    let env = [("TELECODER_URL", daemon.url.as_str())];
    let shown = telecoder(&env, &["events", "--human", &tools]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("completed read Read README.md"), "{text}");
}

#[test]
fn the_client_refuses_git_writes_and_bounds_terminals() {
    if acpx_runtime() {
        return; // acpx serves these methods itself, with its own rules.
    }
    let daemon = TestDaemon::start_with(&[("GITHUB_TOKEN", "ghp_terminalsmustnotseethis0123")]);
    let repo = TestRepo::new();
    let api = daemon.api();
    let git = api.create(
        &repo.path_str(),
        "@mock fs-write .git/hooks/pre-commit #!/bin/sh\\ntouch /tmp/pwned",
        json!({"policy": "standard"}),
    );
    let big = api.create(
        &repo.path_str(),
        "@mock run yes | head -c 200000",
        json!({"policy": "standard"}),
    );
    let env = api.create(
        &repo.path_str(),
        "@mock run echo token=$GITHUB_TOKEN marker=$TELECODER_SESSION_ID",
        json!({"policy": "standard"}),
    );
    let session = api.wait_finished(git["id"].as_str().unwrap_or_default(), SHORT);
    assert!(
        session["resultText"]
            .as_str()
            .unwrap_or_default()
            .contains(".git directory cannot be written"),
        "{session}"
    );
    let work_dir = Path::new(session["workDir"].as_str().unwrap_or_default());
    assert!(!work_dir.join(".git/hooks/pre-commit").exists());

    let session = api.wait_finished(big["id"].as_str().unwrap_or_default(), SHORT);
    let text = session["resultText"].as_str().unwrap_or_default();
    let output = text.split("output=").nth(1).unwrap_or_default();
    assert_eq!(
        output.len(),
        65536,
        "the mock asks for 64 KiB: {}",
        &text[..40]
    );

    let id = env["id"].as_str().unwrap_or_default();
    let session = api.wait_finished(id, SHORT);
    assert_eq!(
        session["resultText"],
        format!("exit=0 signal=None output=token= marker={id}\n")
    );
}

#[test]
fn terminal_commands_die_with_their_session() {
    // Under acpx the terminal runs in a session of its own (setsid): the marker-based sweep
    // that follows the group kill is what catches it there.
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let id = api.create(
        &repo.path_str(),
        "@mock run-hang sleep 1000 & echo $!; wait",
        json!({"policy": "standard"}),
    )["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let pid: i32 = wait_for("the command's pid", SHORT, || {
        api.events(&id)
            .iter()
            .filter_map(|e| e["data"].as_str())
            .find_map(|d| d.strip_prefix("terminal said: ")?.trim().parse().ok())
    });
    assert!(process_alive(pid));
    assert_eq!(
        api.post(&format!("/api/sessions/{id}/cancel"), &json!({}))
            .status,
        200
    );
    let session = api.wait_finished(&id, SHORT);
    assert_eq!(session["status"], "cancelled");
    wait_for("the command to die", Duration::from_secs(5), || {
        (!process_alive(pid) && session_processes(&id).is_empty()).then_some(())
    });
}
