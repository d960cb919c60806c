//! A new user's first hour: the demo script, doctor with a daemon running, cancel that waits,
//! Ctrl-C that explains, triggers that say why nothing fired, schedules that show when they
//! fire, a list that shows age and repository.

use crate::cli_compat::{cli_at, finished, json_of, text};
use crate::support::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Kills a spawned process group however the test ends.
struct GroupGuard(Child);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.0.wait();
    }
}

/// Sends each line of `reader` down a channel, from a thread.
fn lines_of(reader: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Collects lines until one contains `needle`; fails after `timeout` or at the end.
#[track_caller]
fn until(lines: &mpsc::Receiver<String>, needle: &str, timeout: Duration) -> String {
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(needle) {
                    return seen;
                }
            }
            Err(_) => panic!("no line with {needle:?} in:\n{seen}"),
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn demo(port: u16, demo_dir: &std::path::Path) -> Command {
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_telecoder"))
        .parent()
        .expect("binary directory")
        .to_owned();
    let mut command = Command::new("bash");
    command
        .arg(format!("{ROOT}/scripts/demo"))
        .env_remove("TELECODER_URL")
        .env_remove("TELECODER_DATA_DIR")
        .env("TELECODER_LISTEN_PORT", port.to_string())
        .env("TELECODER_DEMO_DIR", demo_dir)
        .env("TELECODER_DEMO_BIN", bin_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    command
}

#[test]
fn demo_stops_at_once_naming_the_variable_when_the_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("demo dir");
    let output = demo(port, dir.path()).output().expect("run the demo");
    assert_eq!(output.status.code(), Some(1));
    let err = text(&output.stderr);
    assert!(err.contains(&format!("port {port}")), "{err}");
    assert!(err.contains("another program listens there"), "{err}");
    assert!(err.contains("TELECODER_LISTEN_PORT="), "{err}");
    assert!(
        !text(&output.stdout).contains("installing acpx"),
        "it must stop before installing or building"
    );
}

#[test]
fn demo_runs_a_session_and_writes_an_env_file_for_other_terminals() {
    let port = free_port();
    let dir = tempfile::tempdir().expect("demo dir");
    let mut guard = GroupGuard(demo(port, dir.path()).spawn().expect("start the demo"));
    let stdout = lines_of(guard.0.stdout.take().expect("stdout"));
    let shown = until(&stdout, "Press Ctrl-C", Duration::from_secs(120));
    for step in [
        "==> using",
        "==> starting the daemon",
        "[done] updated README.md",
    ] {
        assert!(shown.contains(step), "missing {step:?} in:\n{shown}");
    }
    let env_file = dir.path().join("env");
    assert!(
        shown.contains(&format!("source {}", env_file.display())),
        "{shown}"
    );

    // Another terminal: a clean environment that sources the file.
    let doctor = Command::new("bash")
        .args([
            "-c",
            "source \"$1\" && { telecoder doctor --human; telecoder config --human; }",
            "_",
        ])
        .arg(&env_file)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .output()
        .expect("doctor");
    let report = text(&doctor.stdout);
    assert!(
        report.contains(&format!("daemon reachable at http://127.0.0.1:{port}")),
        "{report}{}",
        text(&doctor.stderr)
    );
    assert!(report.contains("TELECODER_DEFAULT_AGENT=demo"), "{report}");

    let pid = nix::unistd::Pid::from_raw(guard.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("stop the demo");
    let status = guard.0.wait().expect("demo exits");
    assert_eq!(status.code(), Some(143));
    let api = Api::new(&format!("http://127.0.0.1:{port}"));
    wait_for("the demo daemon to stop", SHORT, || {
        api.block_on(api.http().get(format!("{}/health", api.base)).send())
            .is_err()
            .then_some(())
    });
}

#[test]
fn doctor_says_the_daemon_is_reachable_instead_of_failing_on_its_port() {
    let daemon = TestDaemon::start();
    let port = daemon.url.rsplit(':').next().unwrap_or_default().to_owned();
    let env = [
        ("TELECODER_URL", daemon.url.as_str()),
        ("TELECODER_LISTEN_PORT", port.as_str()),
    ];
    let human = telecoder(&env, &["doctor", "--human"]);
    let report = text(&human.stdout);
    assert!(
        report.contains(&format!(
            "ok    daemon    daemon reachable at {}",
            daemon.url
        )),
        "{report}"
    );
    let checks = json_of(&telecoder(&env, &["doctor"]));
    let daemon_check = checks["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "daemon"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(daemon_check["ok"], true, "{checks}");

    // A port held by something else is a failure that names the variable.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let other = taken.local_addr().expect("addr").port().to_string();
    let busy = telecoder(
        &[
            ("TELECODER_URL", "http://127.0.0.1:9"),
            ("TELECODER_LISTEN_PORT", other.as_str()),
        ],
        &["doctor", "--human"],
    );
    assert_eq!(busy.status.code(), Some(1));
    let report = text(&busy.stdout);
    assert!(
        report.contains("FAIL  port") && report.contains("TELECODER_LISTEN_PORT"),
        "{report}"
    );
}

#[test]
fn cancel_says_cancelling_and_returns_once_the_session_has_stopped() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let env = [("TELECODER_URL", daemon.url.as_str())];
    let id = api.create(&repo.path_str(), "@mock sleep 60", json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    api.wait_status(&id, "running", SHORT);
    let cancelled = telecoder(&env, &["--human", "cancel", &id]);
    assert!(cancelled.status.success(), "{}", text(&cancelled.stderr));
    assert_eq!(
        text(&cancelled.stdout),
        format!("cancelling {id}…\nsession {id} cancelled\n")
    );
    assert_eq!(
        api.session(&id)["status"],
        "cancelled",
        "terminal when cancel returns"
    );

    let pending = api.create(&repo.path_str(), "@mock sleep 60", json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let record = json_of(&telecoder(&env, &["cancel", &pending]));
    assert_eq!(record["status"], "cancelled");
    assert_eq!(record["failureKind"], "cancelled");
}

#[test]
fn ctrl_c_on_run_says_how_to_reattach_or_cancel() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let mut command = Command::new(env!("CARGO_BIN_EXE_telecoder"));
    command
        .args([
            "--human",
            "run",
            "--repo",
            &repo.path_str(),
            "@mock sleep 60",
        ])
        .env("TELECODER_URL", &daemon.url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut guard = GroupGuard(command.spawn().expect("run"));
    let stdout = lines_of(guard.0.stdout.take().expect("stdout"));
    let shown = until(&stdout, "[status] running", SHORT);
    let id = shown
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let pid = nix::unistd::Pid::from_raw(guard.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("Ctrl-C");
    let status = guard.0.wait().expect("run exits");
    assert_eq!(status.code(), Some(130));
    let mut err = String::new();
    let _ = guard
        .0
        .stderr
        .take()
        .map(|mut e| e.read_to_string(&mut err));
    assert!(
        err.contains(&format!("re-attach: telecoder events -f {id}")),
        "{err}"
    );
    assert!(
        err.contains(&format!("cancel:    telecoder cancel {id}")),
        "{err}"
    );
    let api = daemon.api();
    assert_eq!(api.session(&id)["status"], "running", "the session goes on");
    let cancelled = telecoder(&[("TELECODER_URL", daemon.url.as_str())], &["cancel", &id]);
    assert!(cancelled.status.success(), "{}", text(&cancelled.stderr));
}

/// Posts a CI event with `?explain=true` and returns why each watch skipped it.
fn reasons(api: &Api, event: Value) -> Vec<String> {
    let reply = api.post("/api/watch-events/ci?explain=true", &event);
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body["skipped"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| s["reason"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn trigger_says_why_nothing_fired() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let home = tempfile::tempdir().expect("home");
    let env = [("TELECODER_URL", daemon.url.as_str())];
    let r = repo.path_str();
    let cli = |args: &[&str]| cli_at(repo.path(), home.path(), &env, args);
    let added = json_of(&cli(&[
        "watch-add-ci",
        "--repo",
        ".",
        "--workflow",
        "build",
        "--max-runs-per-hour",
        "1",
        "@mock say fixed",
    ]));
    let watch = added["id"].as_str().unwrap_or_default().to_owned();
    let trigger = |run_id: &str, extra: &[&str]| {
        let mut args = vec![
            "--human",
            "trigger-ci",
            "--repo",
            ".",
            "--workflow",
            "build",
            "--branch",
            "main",
            "--run-id",
            run_id,
        ];
        args.extend_from_slice(extra);
        cli(&args)
    };
    let why = |output: &std::process::Output| text(&output.stderr);

    let other = cli(&[
        "--human",
        "trigger-ci",
        "--repo",
        "acme/other",
        "--workflow",
        "build",
        "--branch",
        "main",
        "--run-id",
        "1",
    ]);
    assert!(other.status.success());
    assert!(
        why(&other).contains("no watch fired: no active ci_failure watch for acme/other"),
        "{}",
        why(&other)
    );
    let fired = trigger("1", &["--summary", "x"]);
    assert!(fired.status.success(), "{}", why(&fired));
    assert!(why(&fired).is_empty(), "fires: {}", why(&fired));
    for (output, reason) in [
        (
            trigger("1", &[]),
            "duplicate: this watch already handled event 1",
        ),
        (
            cli(&[
                "--human",
                "trigger-ci",
                "--repo",
                ".",
                "--workflow",
                "test",
                "--branch",
                "main",
                "--run-id",
                "2",
            ]),
            "workflow filter 'build' does not match 'test'",
        ),
        (
            trigger("3", &["--conclusion", "success"]),
            "conclusion 'success' is not failure",
        ),
        (
            trigger("4", &["--status", "in_progress"]),
            "status 'in_progress' is not completed",
        ),
        (
            cli(&[
                "--human",
                "trigger-ci",
                "--repo",
                ".",
                "--workflow",
                "build",
                "--branch",
                "telecoder/abc",
                "--run-id",
                "5",
            ]),
            "loop guard",
        ),
        (trigger("6", &[]), "rate limit"),
    ] {
        let said = why(&output);
        assert!(output.status.success(), "{said}");
        assert!(
            said.contains(&format!("no watch fired: watch {watch}: {reason}")),
            "expected {reason:?} in: {said}"
        );
    }

    // Case-insensitive like the reference, and the contract's plain array without `explain`.
    let pr_watch = api.post(
        "/api/watches",
        &json!({"kind": "pr_review", "repo": r, "instructions": "@mock say reviewed"}),
    );
    assert_eq!(pr_watch.status, 201);
    let plain = api.post(
        "/api/watch-events/pr",
        &json!({"repo": r, "prNumber": 1, "title": "T", "base": "main", "head": "f", "action": "OPENED", "diffText": "+x"}),
    );
    assert_eq!(plain.status, 201);
    assert_eq!(
        plain.body.as_array().map(Vec::len),
        Some(1),
        "{}",
        plain.body
    );
    daemon.api().wait_finished(
        plain.body[0]["sessionId"].as_str().unwrap_or_default(),
        SHORT,
    );
    let loud = reasons(
        &api,
        json!({"repo": r, "workflow": "build", "branch": "main", "runId": 99, "status": "COMPLETED", "conclusion": "Failure"}),
    );
    assert_eq!(
        loud,
        vec![
            "rate limit: this watch already started 1 sessions in the last hour (max 1)".to_owned()
        ]
    );
}

#[test]
fn watch_add_schedule_shows_when_it_fires_next() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let env = [("TELECODER_URL", daemon.url.as_str())];
    let added = telecoder(
        &env,
        &[
            "--human",
            "watch-add-schedule",
            "--repo",
            &repo.path_str(),
            "--cron",
            "0 9 * * 1-5",
            "--timezone",
            "Europe/Paris",
            "standup notes",
        ],
    );
    assert!(added.status.success(), "{}", text(&added.stderr));
    let shown = text(&added.stdout);
    let fires: Vec<&str> = shown
        .lines()
        .filter(|l| l.contains(" CET (") || l.contains(" CEST ("))
        .collect();
    assert_eq!(fires.len(), 3, "{shown}");
    assert!(fires[0].trim_start().starts_with("next"), "{shown}");
    for fire in &fires {
        assert!(fire.contains(" 09:00:00 "), "{fire}");
        assert!(!fire.contains("Sat ") && !fire.contains("Sun "), "{fire}");
    }
}

#[test]
fn list_shows_age_and_repo_and_takes_a_limit() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    for prompt in ["@mock say one", "@mock say two"] {
        finished(&api, &repo, prompt);
    }
    let env = [("TELECODER_URL", daemon.url.as_str())];
    let table = text(&telecoder(&env, &["--human", "list"]).stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    let name = repo
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for line in &lines[1..] {
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert!(
            columns[2].ends_with('s') || columns[2].ends_with('m'),
            "age column: {line}"
        );
        assert!(columns[4].ends_with(&name), "repo column: {line}");
    }
    let limited = json_of(&telecoder(&env, &["list", "--limit", "1"]));
    assert_eq!(limited.as_array().map(Vec::len), Some(1));
    assert_eq!(limited[0]["prompt"], "@mock say two", "newest first");
}
