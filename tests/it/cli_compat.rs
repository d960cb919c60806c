//! A seed user switches with zero changes: the reference TeleCoder's documented CLI examples
//! run unchanged against ours and print the reference's JSON shapes into a pipe; a person at a
//! terminal gets text; read commands work without a daemon and create nothing; usage errors
//! and closed pipes behave.

use crate::support::*;
use serde_json::Value;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs the CLI in `cwd` with HOME, PATH and `env` only, stdout piped (not a terminal).
pub fn cli_at(cwd: &Path, home: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_telecoder"))
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run telecoder")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Parses stdout as one JSON document, with the command's stderr in the failure message.
#[track_caller]
pub fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "stdout is not one JSON document ({err}):\n{}\nstderr:\n{}",
            text(&output.stdout),
            text(&output.stderr)
        )
    })
}

/// Creates a session through the API, waits until it has finished, and returns its id.
pub fn finished(api: &Api, repo: &TestRepo, prompt: &str) -> String {
    let id = api.create(&repo.path_str(), prompt, serde_json::json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    api.wait_finished(&id, SHORT);
    id
}

/// The reference's record types (its `src/types.ts`): key and JSON type.
const SESSION: &[(&str, &str)] = &[
    ("id", "string"),
    ("repo", "string"),
    ("prompt", "string"),
    ("agent", "string"),
    ("parentSessionId", "string"),
    ("attempt", "number"),
    ("policyMode", "string"),
    ("effectivePermissionMode", "string"),
    ("workspaceWritePolicy", "string"),
    ("maxRuntimeSeconds", "number"),
    ("runtimeCommand", "string"),
    ("status", "string"),
    ("ownerId", "string"),
    ("branch", "string"),
    ("workDir", "string"),
    ("resultText", "string"),
    ("outcomeHeadline", "string"),
    ("outcomeChanged", "string"),
    ("outcomeVerified", "string"),
    ("outcomeUncertain", "string"),
    ("outcomeNext", "string"),
    ("error", "string"),
    ("failureKind", "string"),
    ("claimedAt", "string"),
    ("heartbeatAt", "string"),
    ("startedAt", "string"),
    ("finishedAt", "string"),
    ("createdAt", "string"),
    ("updatedAt", "string"),
];
const EVENT: &[(&str, &str)] = &[
    ("id", "number"),
    ("sessionId", "string"),
    ("type", "string"),
    ("data", "string"),
    ("createdAt", "string"),
];
const WATCH: &[(&str, &str)] = &[
    ("id", "string"),
    ("kind", "string"),
    ("repo", "string"),
    ("instructions", "string"),
    ("agent", "string"),
    ("policyMode", "string"),
    ("workflowName", "string"),
    ("branchName", "string"),
    ("baseBranch", "string"),
    ("headBranch", "string"),
    ("status", "string"),
    ("createdAt", "string"),
    ("updatedAt", "string"),
];
const RUN: &[(&str, &str)] = &[
    ("id", "number"),
    ("watchId", "string"),
    ("sessionId", "string"),
    ("eventKey", "string"),
    ("sourceRef", "string"),
    ("triggerSummary", "string"),
    ("resultSummary", "string"),
    ("returnSummary", "string"),
    ("createdAt", "string"),
];
const CONFIG: &[(&str, &str)] = &[
    ("dataDir", "string"),
    ("dbPath", "string"),
    ("workspaceDir", "string"),
    ("listenHost", "string"),
    ("listenPort", "number"),
    ("acpxCommand", "string"),
    ("agentCommands", "object"),
    ("defaultAgent", "string"),
    ("defaultPolicyMode", "string"),
    ("permissionMode", "string"),
    ("workspaceWritePolicy", "string"),
    ("policyMaxRuntimeSeconds", "number"),
    ("promptTimeoutSeconds", "number"),
    ("sessionHeartbeatSeconds", "number"),
    ("sessionStaleSeconds", "number"),
];

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every key of the reference's record is there with the reference's JSON type.
#[track_caller]
pub fn assert_shape(value: &Value, shape: &[(&str, &str)], what: &str) {
    for (key, kind) in shape {
        assert_eq!(
            type_of(&value[*key]),
            *kind,
            "{what}: field {key} in {value}"
        );
    }
}

#[track_caller]
pub fn assert_array_of(value: &Value, shape: &[(&str, &str)], what: &str) -> usize {
    let items = value
        .as_array()
        .unwrap_or_else(|| panic!("{what}: not an array: {value}"));
    for item in items {
        assert_shape(item, shape, what);
    }
    items.len()
}

/// The reference README's examples, word for word except `bun src/cli.ts` / `bun run` →
/// `telecoder` and the placeholders (`/path/to/repo`, `<session-id>`, `<watch-id>`).
#[test]
fn the_reference_readme_examples_run_unchanged_with_its_json_shapes() {
    let mock = mock_agent_command();
    let daemon = TestDaemon::start_with(&[("TELECODER_AGENT_MYAGENT_COMMAND", mock.as_str())]);
    let repo = TestRepo::new();
    let home = tempfile::tempdir().expect("home");
    let r = repo.path_str();
    let env = [
        ("TELECODER_URL", daemon.url.as_str()),
        ("TELECODER_AGENT_MYAGENT_COMMAND", mock.as_str()),
    ];
    let run = |args: &[&str]| cli_at(repo.path(), home.path(), &env, args);
    #[track_caller]
    fn ok(output: Output, what: &str) -> Output {
        assert!(
            output.status.success(),
            "{what}: exit {:?}\n{}{}",
            output.status.code(),
            text(&output.stdout),
            text(&output.stderr)
        );
        output
    }

    // Run Your First Task
    let first = json_of(&ok(
        run(&["run", "--repo", &r, "fix the failing test in auth.ts"]),
        "run",
    ));
    assert_shape(&first, SESSION, "run");
    let id = first["id"].as_str().unwrap_or_default().to_owned();

    // Check Results Later
    let listed = json_of(&ok(run(&["list"]), "list"));
    assert_eq!(assert_array_of(&listed, SESSION, "list"), 1);
    let status = json_of(&ok(run(&["status", &id]), "status"));
    assert_shape(&status, SESSION, "status");
    assert_eq!(status["status"], "complete");
    assert_eq!(
        status["resultText"],
        "Echo: fix the failing test in auth.ts"
    );
    let events = json_of(&ok(run(&["events", &id]), "events"));
    assert!(assert_array_of(&events, EVENT, "events") >= 4);
    assert_eq!(
        events
            .as_array()
            .and_then(|e| e.last())
            .map(|e| e["type"].clone()),
        Some("done".into())
    );
    let inbox = json_of(&ok(run(&["inbox"]), "inbox"));
    assert_eq!(assert_array_of(&inbox, SESSION, "inbox"), 1);
    let rerun = json_of(&ok(run(&["rerun", &id]), "rerun"));
    assert_shape(&rerun, SESSION, "rerun");
    assert_eq!(rerun["parentSessionId"], id.as_str());

    // Setting Up Watches
    let all_ci = json_of(&ok(
        run(&[
            "watch-add-ci",
            "--repo",
            &r,
            "investigate the failure and suggest a fix",
        ]),
        "watch-add-ci",
    ));
    assert_shape(&all_ci, WATCH, "watch-add-ci");
    let build_main = json_of(&ok(
        run(&[
            "watch-add-ci",
            "--repo",
            &r,
            "--workflow",
            "build",
            "--branch",
            "main",
            "investigate the failure, run tests locally, suggest a fix",
        ]),
        "watch-add-ci --workflow",
    ));
    assert_eq!(build_main["workflowName"], "build");
    let all_pr = json_of(&ok(
        run(&[
            "watch-add-pr",
            "--repo",
            &r,
            "review the code changes for correctness and style",
        ]),
        "watch-add-pr",
    ));
    assert_shape(&all_pr, WATCH, "watch-add-pr");
    let base_main = json_of(&ok(
        run(&[
            "watch-add-pr",
            "--repo",
            &r,
            "--base",
            "main",
            "review the diff, check for security issues, suggest improvements",
        ]),
        "watch-add-pr --base",
    ));
    assert_eq!(base_main["baseBranch"], "main");

    // Trigger Watches Manually: the reference's [{watch, run, session}], followed to the end.
    let ci = json_of(&ok(
        run(&[
            "trigger-ci",
            "--repo",
            &r,
            "--workflow",
            "build",
            "--branch",
            "main",
            "--run-id",
            "12345",
            "--status",
            "completed",
            "--conclusion",
            "failure",
        ]),
        "trigger-ci",
    ));
    let pr = json_of(&ok(
        run(&[
            "trigger-pr",
            "--repo",
            &r,
            "--pr-number",
            "42",
            "--title",
            "Add auth",
            "--base",
            "main",
            "--head",
            "feature/auth",
            "--action",
            "opened",
        ]),
        "trigger-pr",
    ));
    for (fired, what) in [(&ci, "trigger-ci"), (&pr, "trigger-pr")] {
        let items = fired.as_array().cloned().unwrap_or_default();
        assert_eq!(items.len(), 2, "{what}: both watches fire: {fired}");
        for item in &items {
            assert_shape(&item["watch"], WATCH, what);
            assert_shape(&item["run"], RUN, what);
            assert_shape(&item["session"], SESSION, what);
            assert_eq!(item["run"]["sessionId"], item["session"]["id"]);
        }
    }

    // Manage Watches
    let watches = json_of(&ok(run(&["watch-list"]), "watch-list"));
    assert_eq!(assert_array_of(&watches, WATCH, "watch-list"), 4);
    let ci_watches = json_of(&ok(
        run(&["watch-list", "--kind", "ci_failure", "--status", "active"]),
        "watch-list --kind",
    ));
    assert_eq!(assert_array_of(&ci_watches, WATCH, "watch-list --kind"), 2);
    let watch_id = build_main["id"].as_str().unwrap_or_default();
    let runs = json_of(&ok(run(&["watch-runs", watch_id]), "watch-runs"));
    assert_eq!(assert_array_of(&runs, RUN, "watch-runs"), 1);

    // View Resolved Config
    let config = json_of(&ok(run(&["config"]), "config"));
    assert_shape(&config, CONFIG, "config");
    assert_eq!(config["agentCommands"]["myagent"], mock.as_str());
    assert_eq!(config["defaultPolicyMode"], "observe");
    assert_eq!(config["permissionMode"], "approve-reads");

    // Policy Modes, Add a New Agent
    let standard = json_of(&ok(
        run(&[
            "run",
            "--repo",
            &r,
            "--policy",
            "standard",
            "fix the bug and commit",
        ]),
        "run --policy",
    ));
    assert_eq!(standard["policyMode"], "standard");
    let custom = json_of(&ok(
        run(&["run", "--repo", ".", "--agent", "myagent", "do the thing"]),
        "run --agent myagent",
    ));
    assert_eq!(custom["agent"], "myagent");
    assert_eq!(custom["runtimeCommand"], mock.as_str());
    let help = ok(run(&["help"]), "help");
    assert!(text(&help.stdout).contains("trigger-ci"));
}

/// Like the reference's parser, flags may follow the prompt; a failed session exits 1.
#[test]
fn prompt_flags_after_the_prompt_and_exit_codes_by_outcome() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let home = tempfile::tempdir().expect("home");
    let env = [("TELECODER_URL", daemon.url.as_str())];
    let r = repo.path_str();
    let after = cli_at(
        repo.path(),
        home.path(),
        &env,
        &["run", "@mock say after", "--repo", &r, "--policy", "locked"],
    );
    assert!(after.status.success(), "{}", text(&after.stderr));
    let session = json_of(&after);
    assert_eq!(session["policyMode"], "locked");
    assert_eq!(session["prompt"], "@mock say after");

    let crashed = cli_at(
        repo.path(),
        home.path(),
        &env,
        &["run", "--repo", &r, "@mock crash"],
    );
    assert_eq!(crashed.status.code(), Some(1));
    let crashed_id = json_of(&crashed)["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let again = cli_at(repo.path(), home.path(), &env, &["rerun", &crashed_id]);
    assert_eq!(again.status.code(), Some(1), "a rerun that fails exits 1");
    assert!(
        text(&again.stderr).contains("[error]"),
        "progress on stderr"
    );

    let detached = cli_at(
        repo.path(),
        home.path(),
        &env,
        &["rerun", "--detach", &crashed_id],
    );
    assert!(detached.status.success());
    let pending = json_of(&detached);
    assert!(
        matches!(pending["status"].as_str(), Some("pending" | "running")),
        "--detach returns at once: {pending}"
    );
    daemon
        .api()
        .wait_finished(pending["id"].as_str().unwrap_or_default(), SHORT);
}

/// Runs the CLI with stdout on a pseudo-terminal, as a person at a terminal would; returns
/// whether it succeeded and what it showed.
fn on_terminal(env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let home = tempfile::tempdir().expect("home");
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let mut child = Command::new(env!("CARGO_BIN_EXE_telecoder"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::from(pty.slave))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn on a terminal");
    let mut master = std::fs::File::from(pty.master);
    let mut shown = Vec::new();
    let mut buffer = [0u8; 4096];
    // The terminal ends with EIO once the child has exited and closed it.
    while let Ok(n) = master.read(&mut buffer) {
        if n == 0 {
            break;
        }
        shown.extend_from_slice(&buffer[..n]);
    }
    let status = child.wait().expect("wait");
    (status.success(), text(&shown).replace("\r\n", "\n"))
}

/// [`on_terminal`] for a command that must succeed.
#[track_caller]
fn shown(env: &[(&str, &str)], args: &[&str]) -> String {
    let (ok, shown) = on_terminal(env, args);
    assert!(ok, "{args:?} on a terminal failed: {shown}");
    shown
}

#[test]
fn text_on_a_terminal_json_elsewhere_and_flags_to_choose() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let id = finished(&api, &repo, "@mock outcome");
    let env = [("TELECODER_URL", daemon.url.as_str())];

    let table = shown(&env, &["list"]);
    let header = table.lines().next().unwrap_or_default();
    for column in ["ID", "STATUS", "AGE", "AGENT", "REPO", "HEADLINE"] {
        assert!(header.contains(column), "{table}");
    }
    assert!(
        table.contains(&id) && table.contains("updated README.md"),
        "{table}"
    );
    let forced: Value = serde_json::from_str(&shown(&env, &["--json", "list"]))
        .expect("--json on a terminal is JSON");
    assert_eq!(forced[0]["id"], id.as_str());
    let (_, doctor) = on_terminal(&env, &["doctor", "--json"]);
    let doctor: Value =
        serde_json::from_str(&doctor).unwrap_or_else(|err| panic!("doctor --json: {err}"));
    assert!(doctor["checks"].is_array());
    let admin: Value = serde_json::from_str(&shown(&env, &["admin", "status", "--json"]))
        .expect("admin status --json");
    assert!(admin["uptimeSeconds"].is_u64());
    let admin_text = shown(&env, &["admin", "status"]);
    assert!(
        admin_text.contains("uptimeSeconds") && serde_json::from_str::<Value>(&admin_text).is_err(),
        "{admin_text}"
    );

    for args in [vec!["list"], vec!["list", "--format", "json"]] {
        let piped = telecoder(&env, &args);
        assert_eq!(json_of(&piped)[0]["id"], id.as_str(), "{args:?}");
    }
    for args in [vec!["list", "--human"], vec!["--format", "table", "list"]] {
        let piped = telecoder(&env, &args);
        assert!(text(&piped.stdout).starts_with("ID "), "{args:?}");
    }
    let both = telecoder(&env, &["list", "--json", "--human"]);
    assert_eq!(both.status.code(), Some(1));
    assert!(text(&both.stderr).contains("cannot be used with"));
}

/// Every read command with no daemon answering, against a database a daemon is writing, one
/// it left cleanly, and one it left by dying; nothing is created on the way.
#[test]
fn read_commands_work_without_a_daemon() {
    let mut daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let id = finished(&api, &repo, "@mock outcome");
    let watch = api.post(
        "/api/watches",
        &serde_json::json!({"repo": repo.path_str(), "instructions": "@mock say fixed"}),
    );
    let watch_id = watch.body["id"].as_str().unwrap_or_default().to_owned();
    let fired = api.post(
        "/api/watch-events/ci",
        &serde_json::json!({"repo": repo.path_str(), "workflow": "ci", "branch": "main", "runId": 7}),
    );
    assert_eq!(fired.body.as_array().map(Vec::len), Some(1));
    let fired_session = fired.body[0]["sessionId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    api.wait_finished(&fired_session, SHORT);

    let data_dir = daemon.data_dir.to_string_lossy().into_owned();
    let env = [
        ("TELECODER_URL", "http://127.0.0.1:9"),
        ("TELECODER_DATA_DIR", data_dir.as_str()),
    ];
    let repo_path = repo.path_str();
    let read_all = |expect_sessions: usize| {
        for (args, shape, len) in [
            (vec!["list"], SESSION, Some(expect_sessions)),
            (vec!["inbox"], SESSION, Some(expect_sessions)),
            (vec!["lineage", &id], SESSION, Some(1)),
            (vec!["events", &id], EVENT, None),
            (vec!["watch-list"], WATCH, Some(1)),
            (vec!["watch-list", "--repo", &repo_path], WATCH, Some(1)),
            (vec!["watch-runs", &watch_id], RUN, Some(1)),
        ] {
            let output = telecoder(&env, &args);
            assert!(
                output.status.success(),
                "{args:?}: {}",
                text(&output.stderr)
            );
            let count = assert_array_of(&json_of(&output), shape, &format!("{args:?}"));
            if let Some(len) = len {
                assert_eq!(count, len, "{args:?}");
            }
            let err = text(&output.stderr);
            assert_eq!(err.matches("reading").count(), 1, "said once: {err}");
            assert!(err.contains("read-only"), "{err}");
        }
        let status = telecoder(&env, &["status", &id]);
        assert_shape(&json_of(&status), SESSION, "status");
        let missing = telecoder(&env, &["status", "deadbeef"]);
        assert_eq!(missing.status.code(), Some(1));
        assert!(text(&missing.stderr).contains("session deadbeef not found"));
        let follow = telecoder(&env, &["events", "-f", &id]);
        assert!(
            follow.status.success(),
            "a finished session ends the follow"
        );
    };
    // While the daemon writes (it does not answer at this URL).
    read_all(2);

    // After a clean stop: and reading leaves no -wal/-shm files behind.
    assert!(daemon.terminate().is_some_and(|s| s.success()));
    let files = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("data dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = files(&daemon.data_dir);
    read_all(2);
    assert_eq!(files(&daemon.data_dir), before, "reading created files");

    // After kill -9: the last commits are still in the write-ahead log, and are read.
    let daemon = daemon.restart();
    let api = daemon.api();
    let newest = finished(&api, &repo, "@mock say newest");
    let mut daemon = daemon;
    daemon.kill9();
    let listed = json_of(&telecoder(&env, &["list"]));
    assert_eq!(listed[0]["id"], newest.as_str());
}

#[test]
fn reading_doctor_and_config_never_create_the_data_dir() {
    let home = tempfile::tempdir().expect("home");
    let env = [("TELECODER_URL", "http://127.0.0.1:9")];
    for args in [
        vec!["list"],
        vec!["status", "deadbeef"],
        vec!["inbox"],
        vec!["watch-list"],
        vec!["config"],
        vec!["doctor"],
    ] {
        let output = cli_at(home.path(), home.path(), &env, &args);
        assert!(
            !home.path().join(".telecoder").exists(),
            "{args:?} created ~/.telecoder"
        );
        if args[0] == "list" {
            assert_eq!(output.status.code(), Some(1));
            assert!(text(&output.stderr).contains("no database"));
        }
    }
    let doctor = json_of(&cli_at(home.path(), home.path(), &env, &["doctor"]));
    let data_dir = doctor["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == "data dir"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(data_dir["ok"], true, "{doctor}");
    assert!(data_dir["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("created at first start"));
}

#[test]
fn usage_errors_print_clap_s_whole_message_with_the_reference_s_exit_codes() {
    let none = telecoder(&[], &[]);
    assert_eq!(
        none.status.code(),
        Some(0),
        "like the reference: usage, exit 0"
    );
    assert!(text(&none.stdout).contains("Usage: telecoder"));

    let typo = telecoder(&[], &["lsit"]);
    assert_eq!(typo.status.code(), Some(1));
    let err = text(&typo.stderr);
    assert!(err.contains("unrecognized subcommand 'lsit'"), "{err}");
    assert!(err.contains("similar subcommand exists: 'list'"), "{err}");
    assert!(err.contains("Usage:"), "{err}");

    let missing = telecoder(&[], &["trigger-ci", "--repo", "r", "--workflow", "w"]);
    assert_eq!(missing.status.code(), Some(1));
    let err = text(&missing.stderr);
    for name in [
        "--branch <BRANCH>",
        "--run-id <RUN_ID>",
        "Usage: telecoder trigger-ci",
    ] {
        assert!(err.contains(name), "{err}");
    }

    let policy = telecoder(&[], &["run", "--repo", ".", "--policy", "yolo", "task"]);
    assert_eq!(
        policy.status.code(),
        Some(2),
        "the contract: unknown mode exits 2"
    );
    assert!(text(&policy.stderr).contains("invalid value 'yolo' for '--policy"));
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let id = finished(&api, &repo, "@mock flood 2");
    let bin = env!("CARGO_BIN_EXE_telecoder");
    for command in [
        "list | head -1",
        "events ID | head -c 100",
        "--human events ID | head -1",
        "events -f ID | head -1",
        "status ID | head -1",
    ] {
        let (args, reader) = command.split_once(" | ").unwrap_or_default();
        let script = format!(
            "\"$BIN\" {} 2>\"$ERR\" | {reader} >/dev/null; echo \"${{PIPESTATUS[0]}}\"",
            args.replace("ID", &id)
        );
        let err = tempfile::NamedTempFile::new().expect("stderr file");
        let output = Command::new("bash")
            .args(["-c", &script])
            .env("BIN", bin)
            .env("ERR", err.path())
            .env("TELECODER_URL", &daemon.url)
            .output()
            .expect("bash");
        let code = text(&output.stdout).trim().to_owned();
        let stderr = std::fs::read_to_string(err.path()).unwrap_or_default();
        assert_eq!(code, "0", "{command}: exit {code}, stderr {stderr}");
        assert!(stderr.is_empty(), "{command}: {stderr}");
    }
}
