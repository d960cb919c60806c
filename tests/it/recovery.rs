//! Crash and restart: abandoned sessions, the run queue surviving restarts, the periodic
//! stale sweep, graceful shutdown, and no agent process outliving its session.

use crate::support::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn kill9_marks_running_abandoned_runs_pending_and_reaps_agents() {
    let mut daemon = TestDaemon::start_with(&[("TELECODER_MAX_CONCURRENT_SESSIONS", "1")]);
    let repo = TestRepo::new();
    let api = daemon.api();
    let running = api.create(&repo.path_str(), "@mock spawn-tree", json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    api.wait_status(&running, "running", SHORT);
    let queued = api.create(&repo.path_str(), "@mock say after the crash", json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    wait_for("agent processes", SHORT, || {
        (session_processes(&running).len() >= 3).then_some(())
    });
    assert_eq!(
        api.session(&queued)["status"],
        "pending",
        "limit 1 keeps the second session queued"
    );

    daemon.kill9();
    assert!(
        !session_processes(&running).is_empty(),
        "agents survive a SIGKILL of the daemon"
    );
    let daemon = daemon.restart();
    let api = daemon.api();

    let abandoned = api.wait_finished(&running, Duration::from_secs(20));
    assert_eq!(abandoned["status"], "error");
    assert_eq!(abandoned["failureKind"], "abandoned");
    assert!(
        abandoned["error"]
            .as_str()
            .unwrap_or_default()
            .contains("rerun"),
        "{abandoned}"
    );
    let last = api.events(&running).last().cloned().unwrap_or_default();
    assert_eq!(last["type"], "error");

    let finished = api.wait_finished(&queued, SHORT);
    assert_eq!(finished["status"], "complete", "{finished}");
    assert_eq!(finished["resultText"], "after the crash");

    wait_for(
        "leftover agent processes to be reaped",
        Duration::from_secs(10),
        || session_processes(&running).is_empty().then_some(()),
    );
    let integrity: String = daemon
        .database()
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity check");
    assert_eq!(integrity, "ok");
}

#[test]
fn stale_sweep_runs_periodically_while_the_daemon_is_up() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    // A session some other (dead) daemon instance was running.
    let id = api.create(&repo.path_str(), "@mock say seed", json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    api.wait_finished(&id, SHORT);
    let orphan = "0badc0de";
    daemon
        .database()
        .execute(
            "INSERT INTO sessions (id, repo, prompt, agent, policy_mode, permission_mode, write_policy, \
             max_runtime_seconds, runtime_command, status, owner_id, heartbeat_at, created_at, updated_at) \
             SELECT ?1, repo, prompt, agent, policy_mode, permission_mode, write_policy, max_runtime_seconds, \
             runtime_command, 'running', 'gone', strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 second'), created_at, updated_at \
             FROM sessions WHERE id = ?2",
            rusqlite::params![orphan, id],
        )
        .expect("insert orphan");
    assert_eq!(api.session(orphan)["status"], "running");
    let swept = api.wait_finished(orphan, Duration::from_secs(15));
    assert_eq!(swept["failureKind"], "abandoned");
    assert_eq!(api.get("/health").status, 200);
}

#[test]
fn sigterm_stops_agents_and_marks_running_sessions() {
    let mut daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let id = api.create(&repo.path_str(), "@mock spawn-tree", json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    wait_for("agent processes", SHORT, || {
        (session_processes(&id).len() >= 3).then_some(())
    });
    let status = daemon.terminate().expect("exit status");
    assert!(status.success(), "clean exit: {status}");
    assert!(
        session_processes(&id).is_empty(),
        "no agent outlives a graceful shutdown"
    );
    let daemon = daemon.restart();
    let session = daemon.api().session(&id);
    assert_eq!(session["status"], "error");
    assert_eq!(session["failureKind"], "abandoned");
    assert!(
        session["error"]
            .as_str()
            .unwrap_or_default()
            .contains("shut down"),
        "{session}"
    );
}

#[test]
fn interrupted_sessions_are_queued_again_when_asked_to() {
    let mut daemon = TestDaemon::start_with(&[
        ("TELECODER_RESUME_INTERRUPTED", "true"),
        ("TELECODER_SHUTDOWN_GRACE_SECONDS", "1"),
    ]);
    let repo = TestRepo::new();
    let api = daemon.api();
    let crashed = api.create(&repo.path_str(), "@mock sleep 4", json!({}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    api.wait_status(&crashed, "running", SHORT);
    daemon.kill9();
    let mut daemon = daemon.restart();
    let api = daemon.api();
    assert_eq!(
        api.wait_finished(&crashed, SHORT)["failureKind"],
        "abandoned"
    );
    let rerun = wait_for("the crashed session to be queued again", SHORT, || {
        api.list(&format!("?parent={crashed}")).into_iter().next()
    });
    assert_eq!(rerun["attempt"], 2);
    assert_eq!(rerun["prompt"], "@mock sleep 4");
    let rerun_id = rerun["id"].as_str().unwrap_or_default().to_owned();
    api.wait_status(&rerun_id, "running", SHORT);

    // A graceful stop with a short grace period does the same.
    let stopped = daemon.terminate().expect("exit status");
    assert!(stopped.success());
    let daemon = daemon.restart();
    let api = daemon.api();
    let session = api.session(&rerun_id);
    assert_eq!(session["failureKind"], "abandoned");
    let again = wait_for("the interrupted rerun to be queued again", SHORT, || {
        api.list(&format!("?parent={rerun_id}")).into_iter().next()
    });
    assert_eq!(again["attempt"], 3);
    let finished = api.wait_finished(again["id"].as_str().unwrap_or_default(), SHORT);
    assert_eq!(finished["status"], "complete");
    assert_eq!(ids(&api.list(&format!("?lineage={crashed}"))).len(), 3);
}
