//! A failing WatchActor is restarted with backoff; one that keeps failing is paused with a
//! reason instead of spinning.

mod common;

use common::start;
use std::time::{Duration, Instant};
use telecoder_actors::domain::{CiEvent, WatchEvent, WatchId, WatchStatus};
use telecoder_actors::requests::{NewWatch, WatchPatch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_watch_actors_restart_then_pause() {
    let fx = start().await;
    let repo = fx.repo.path().to_string_lossy().into_owned();
    let watch = fx
        .daemon
        .create_watch(NewWatch {
            repo: repo.clone(),
            fields: WatchPatch {
                instructions: Some("@mock say fired".into()),
                ..WatchPatch::default()
            },
            ..NewWatch::default()
        })
        .await
        .expect("watch created");

    let wait_for_actor = || async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while fx.daemon.stats().await.expect("stats").active_watches < 1 {
            assert!(Instant::now() < deadline, "watch actor did not come back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    wait_for_actor().await;
    fx.daemon
        .inject_watch_failure(&watch.id)
        .await
        .expect("inject");
    tokio::time::sleep(Duration::from_millis(50)).await;
    wait_for_actor().await;
    assert!(fx.daemon.stats().await.expect("stats").watch_restarts >= 1);

    // The restarted actor still fires.
    let event = WatchEvent::Ci(CiEvent {
        repo: repo.clone(),
        workflow: "ci".into(),
        branch: "main".into(),
        run_id: "1".into(),
        ..CiEvent::default()
    });
    let started = fx.daemon.route_event(event).await.expect("routed");
    assert_eq!(started.triggered.len(), 1);

    // Keep failing: after five failures in ten minutes the supervisor pauses the watch.
    for _ in 0..4 {
        wait_for_actor().await;
        fx.daemon
            .inject_watch_failure(&watch.id)
            .await
            .expect("inject");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = WatchId::parse(&watch.id).expect("a watch id");
    let paused = loop {
        let current = fx.daemon.watch(&id).await.expect("watch");
        if current.status == WatchStatus::Paused {
            break current;
        }
        assert!(Instant::now() < deadline, "watch was not paused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        paused.paused_reason.contains("failed 5 times"),
        "{}",
        paused.paused_reason
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        fx.daemon.stats().await.expect("stats").active_watches,
        0,
        "no restart loop"
    );
}
