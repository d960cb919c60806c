//! The `telecoder` command line against a real daemon, and on its own.

use crate::support::*;
use std::process::Output;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn run_streams_and_exits_by_outcome() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let env = [("TELECODER_URL", daemon.url.as_str())];
    let ok = telecoder(
        &env,
        &[
            "--human",
            "run",
            "--repo",
            &repo.path_str(),
            "--agent",
            "mock",
            "@mock",
            "outcome",
        ],
    );
    assert!(ok.status.success(), "{}{}", stdout(&ok), stderr(&ok));
    let text = stdout(&ok);
    assert!(
        text.contains(&format!("[status] running {}", runtime())),
        "{text}"
    );
    assert!(text.contains("Looked at the repo."), "{text}");
    assert!(text.contains("[done] updated README.md"), "{text}");

    let failed = telecoder(
        &env,
        &["run", "--human", "--repo", &repo.path_str(), "@mock crash"],
    );
    assert_eq!(failed.status.code(), Some(1));
    assert!(stdout(&failed).contains("[error]"));

    // Into a pipe: the created session as JSON on stdout, the progress on stderr.
    let json = telecoder(&env, &["run", "--repo", &repo.path_str(), "@mock say hi"]);
    assert!(json.status.success(), "{}", stderr(&json));
    let session: serde_json::Value =
        serde_json::from_slice(&json.stdout).expect("one JSON document on stdout");
    assert_eq!(session["prompt"], "@mock say hi");
    assert!(stderr(&json).contains("[done] hi"), "{}", stderr(&json));
}

#[test]
fn run_without_a_daemon_starts_one_in_process() {
    let repo = TestRepo::new();
    let data = tempfile::tempdir().expect("tempdir");
    let mock = mock_agent_command();
    let data_dir = data.path().to_string_lossy().into_owned();
    let runtime = runtime_env();
    let mut env = vec![
        ("TELECODER_DATA_DIR", data_dir.as_str()),
        ("TELECODER_URL", "http://127.0.0.1:9"),
        ("TELECODER_AGENT_MOCK_COMMAND", mock.as_str()),
        ("TELECODER_DEFAULT_AGENT", "mock"),
    ];
    env.extend(runtime.iter().map(|(k, v)| (*k, v.as_str())));
    let output = telecoder(
        &env,
        &["run", "--repo", &repo.path_str(), "@mock say embedded"],
    );
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(stdout(&output).contains("embedded"));
    assert!(stderr(&output).contains("running the session in this process"));
    let db = rusqlite::Connection::open(data.path().join("telecoder.sqlite")).expect("db");
    let status: String = db
        .query_row("SELECT status FROM sessions", [], |row| row.get(0))
        .expect("session stored");
    assert_eq!(status, "complete");
}

#[test]
fn query_commands() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let id = api.create(&repo.path_str(), "@mock outcome", serde_json::json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    api.wait_finished(&id, SHORT);
    let env = [("TELECODER_URL", daemon.url.as_str())];
    for (args, expect) in [
        (vec!["list"], id.clone()),
        (vec!["list", "--status", "complete"], id.clone()),
        (vec!["status", &id], "updated README.md".to_owned()),
        (vec!["events", &id], format!("running {}", runtime())),
        (
            vec!["inbox"],
            "Verified: ran the tests all green".to_owned(),
        ),
        (vec!["lineage", &id], id.clone()),
    ] {
        let human: Vec<&str> = std::iter::once("--human").chain(args.clone()).collect();
        let output = telecoder(&env, &human);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        assert!(
            stdout(&output).contains(&expect),
            "{args:?}: {}",
            stdout(&output)
        );
    }
    let rerun = telecoder(&env, &["rerun", &id]);
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    let session: serde_json::Value = serde_json::from_slice(&rerun.stdout).expect("json");
    assert_eq!(session["parentSessionId"], id.as_str());
    let listed: serde_json::Value =
        serde_json::from_slice(&telecoder(&env, &["--json", "list"]).stdout).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(2));

    let missing = telecoder(&env, &["status", "deadbeef"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(stderr(&missing).lines().count(), 1, "{}", stderr(&missing));
    assert!(stderr(&missing).contains("not found"));
}

#[test]
fn bad_configuration_exits_2_with_one_line() {
    for (env, needle) in [
        (
            vec![("TELECODER_LISTEN_PORT", "abc")],
            "TELECODER_LISTEN_PORT",
        ),
        (
            vec![("TELECODER_POLICY_MODE", "yolo")],
            "TELECODER_POLICY_MODE",
        ),
        (
            vec![
                ("TELECODER_SESSION_HEARTBEAT_SECONDS", "5"),
                ("TELECODER_SESSION_STALE_SECONDS", "5"),
            ],
            "TELECODER_SESSION_STALE_SECONDS",
        ),
    ] {
        for args in [vec!["serve"], vec!["list"]] {
            let output = telecoder(&env, &args);
            assert_eq!(output.status.code(), Some(2), "{env:?} {args:?}");
            let err = stderr(&output);
            assert_eq!(err.trim().lines().count(), 1, "{err}");
            assert!(err.contains(needle), "{err}");
        }
    }
    let unreachable = telecoder(&[("TELECODER_URL", "http://127.0.0.1:9")], &["list"]);
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(stderr(&unreachable).contains("cannot reach the TeleCoder daemon"));
    assert!(stderr(&unreachable).contains("no database"));
    assert_eq!(stderr(&unreachable).trim().lines().count(), 1);
}

#[test]
fn config_prints_resolved_values() {
    let output = telecoder(
        &[
            ("TELECODER_LISTEN_PORT", "7099"),
            ("TELECODER_AGENT_CLAUDE_COMMAND", "claude --model x"),
        ],
        &["config", "--human"],
    );
    assert!(output.status.success());
    let text = stdout(&output);
    for line in [
        "TELECODER_LISTEN_PORT=7099",
        "TELECODER_POLICY_MODE=observe",
        "TELECODER_SESSION_STALE_SECONDS=30",
        "TELECODER_AGENT_CLAUDE_COMMAND=claude --model x",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
}

#[test]
fn watch_commands() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let env = [("TELECODER_URL", daemon.url.as_str())];
    let r = repo.path_str();
    let added = telecoder(
        &env,
        &[
            "--json",
            "watch-add-ci",
            "--repo",
            &r,
            "--workflow",
            "build",
            "@mock",
            "outcome",
        ],
    );
    assert!(added.status.success(), "{}", stderr(&added));
    let watch: serde_json::Value = serde_json::from_slice(&added.stdout).expect("json");
    let id = watch["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(watch["workflowName"], "build");
    assert_eq!(watch["instructions"], "@mock outcome");

    let pr = telecoder(
        &env,
        &[
            "--human",
            "watch-add-pr",
            "--repo",
            &r,
            "--base",
            "main",
            "review",
            "it",
        ],
    );
    assert!(pr.status.success());
    assert!(stdout(&pr).contains("pr_review"));
    let list = telecoder(&env, &["--human", "watch-list", "--kind", "ci_failure"]);
    assert!(
        stdout(&list).contains(&id) && !stdout(&list).contains("pr_review"),
        "{}",
        stdout(&list)
    );

    let fired = telecoder(
        &env,
        &[
            "--human",
            "trigger-ci",
            "--repo",
            &r,
            "--workflow",
            "build",
            "--branch",
            "main",
            "--run-id",
            "9",
            "--conclusion",
            "failure",
        ],
    );
    assert!(fired.status.success(), "{}", stderr(&fired));
    assert!(
        stdout(&fired).contains(&format!("watch {id} started session")),
        "{}",
        stdout(&fired)
    );
    let again = telecoder(
        &env,
        &[
            "trigger-ci",
            "--repo",
            &r,
            "--workflow",
            "build",
            "--branch",
            "main",
            "--run-id",
            "9",
        ],
    );
    assert!(
        stderr(&again).contains("no watch fired: watch") && stderr(&again).contains("duplicate"),
        "{}",
        stderr(&again)
    );
    let reviewed = telecoder(
        &env,
        &[
            "--json",
            "trigger-pr",
            "--repo",
            &r,
            "--pr-number",
            "3",
            "--title",
            "T",
            "--base",
            "main",
            "--head",
            "f",
            "--diff-text",
            "+x",
        ],
    );
    let started: serde_json::Value = serde_json::from_slice(&reviewed.stdout).expect("json");
    assert_eq!(started.as_array().map(Vec::len), Some(1));

    wait_for("return summary", SHORT, || {
        let runs = telecoder(&env, &["--human", "watch-runs", &id]);
        stdout(&runs)
            .contains("Changed: updated README.md")
            .then_some(())
    });
    let paused = telecoder(&env, &["--human", "watch-pause", &id]);
    assert!(stdout(&paused).contains("paused"));
    let resumed = telecoder(&env, &["--human", "watch-resume", &id]);
    assert!(stdout(&resumed).contains("active"));
    let removed = telecoder(&env, &["watch-rm", &id]);
    assert!(removed.status.success());
    let gone = telecoder(&env, &["watch-runs", &id]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(stderr(&gone).contains("not found"));

    let bad = telecoder(
        &env,
        &[
            "watch-add-schedule",
            "--repo",
            &r,
            "--cron",
            "whenever",
            "x",
        ],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("invalid cron"), "{}", stderr(&bad));
    let scheduled = telecoder(
        &env,
        &[
            "--human",
            "watch-add-schedule",
            "--repo",
            &r,
            "--cron",
            "0 9 * * 1-5",
            "--timezone",
            "Europe/Paris",
            "standup",
            "notes",
        ],
    );
    assert!(scheduled.status.success(), "{}", stderr(&scheduled));
    assert!(stdout(&scheduled).contains("Europe/Paris"));
}
