//! A failed SessionActor: the supervisor kills its agent and marks the session failed.

mod common;

use common::{alive, start};
use std::time::{Duration, Instant};
use telecoder_actors::domain::SessionStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_session_actor_is_marked_error_and_its_agent_killed() {
    let fx = start().await;
    let session = fx.create("@mock spawn-tree").await;
    let pids_line = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let events = fx
                .daemon
                .events(&session.id, 0, 1000)
                .await
                .expect("events");
            if let Some(line) = events.iter().find(|e| e.data.starts_with("pids:")) {
                break line.data.clone();
            }
            assert!(Instant::now() < deadline, "agent never reported its pids");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let pids: Vec<i32> = pids_line
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert_eq!(pids.len(), 2, "{pids_line}");
    assert!(pids.iter().all(|pid| alive(*pid)));

    fx.daemon
        .inject_session_failure(&session.id)
        .await
        .expect("inject");
    let failed = fx
        .wait_until(&session.id, "failure to be recorded", |s| {
            s.status.is_finished()
        })
        .await;
    assert_eq!(failed.status, SessionStatus::Error);
    assert_eq!(failed.failure_kind.as_str(), "runtime_error");
    assert!(
        failed.error.contains("supervisor caught the failure"),
        "{}",
        failed.error
    );
    let events = fx
        .daemon
        .events(&session.id, 0, 1000)
        .await
        .expect("events");
    assert_eq!(events.last().map(|e| e.kind.as_str()), Some("error"));

    let deadline = Instant::now() + Duration::from_secs(2);
    while pids.iter().any(|pid| alive(*pid)) {
        assert!(
            Instant::now() < deadline,
            "agent processes outlived the failed session"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = fx.daemon.stats().await.expect("stats");
    assert_eq!(stats.session_failures, 1);
    assert_eq!(stats.running_sessions, 0);

    // The supervisor itself carries on.
    let next = fx.create("@mock say still here").await;
    let done = fx
        .wait_until(&next.id, "next session", |s| s.status.is_finished())
        .await;
    assert_eq!(done.status, SessionStatus::Complete);
}
