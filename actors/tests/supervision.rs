//! The supervisor restarts a failed StoreActor (reopening the database) and keeps serving.

mod common;

use common::start;
use std::time::{Duration, Instant};
use telecoder_actors::domain::SessionStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_store_is_restarted_and_keeps_serving() {
    let fx = start().await;
    let before = fx.create("@mock say before").await;
    fx.wait_until(&before.id, "first session", |s| {
        s.status == SessionStatus::Complete
    })
    .await;

    fx.daemon.inject_store_failure().await.expect("inject");
    let deadline = Instant::now() + Duration::from_secs(10);
    while fx.daemon.stats().await.expect("stats").store_restarts < 1 {
        assert!(Instant::now() < deadline, "store was not restarted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let after = fx.create("@mock say after").await;
    let done = fx
        .wait_until(&after.id, "second session", |s| s.status.is_finished())
        .await;
    assert_eq!(done.status, SessionStatus::Complete);
    assert_eq!(done.result_text, "after");
    let first = fx.daemon.events(&before.id, 0, 1000).await.expect("events");
    let second = fx.daemon.events(&after.id, 0, 1000).await.expect("events");
    let last_before = first.last().map(|e| e.id).unwrap_or_default();
    assert!(
        second.iter().all(|e| e.id > last_before),
        "event ids stay monotonic across restarts"
    );
}
