//! Two daemons in one process, each with its own data directory, run their sessions side by
//! side and never reach each other's actors: every handle is scoped to its instance.

mod common;

use common::start;
use std::time::{Duration, Instant};
use telecoder_actors::domain::SessionStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_in_one_process_run_their_own_sessions() {
    let (a, b) = tokio::join!(start(), start());
    assert_ne!(a.daemon.owner_id(), b.daemon.owner_id());

    let (first_a, first_b) =
        tokio::join!(a.create("@mock say from a"), b.create("@mock say from b"));
    let (second_a, second_b) = tokio::join!(a.create("@mock sleep 1"), b.create("@mock sleep 1"));
    for (fx, session, text) in [
        (&a, &first_a, Some("from a")),
        (&b, &first_b, Some("from b")),
        (&a, &second_a, None),
        (&b, &second_b, None),
    ] {
        let done = fx
            .wait_until(&session.id, "a session to finish", |s| {
                s.status.is_finished()
            })
            .await;
        assert_eq!(done.status, SessionStatus::Complete, "{}", done.error);
        assert_eq!(done.owner_id, fx.daemon.owner_id(), "run by its own daemon");
        if let Some(text) = text {
            assert_eq!(done.result_text, text);
        }
    }
    // Each database holds its own sessions only.
    assert!(a.daemon.session(&first_b.id).await.is_err());
    assert!(b.daemon.session(&first_a.id).await.is_err());

    // A failure in one daemon is that daemon's business.
    a.daemon.inject_store_failure().await.expect("inject");
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.daemon.stats().await.expect("stats").store_restarts < 1 {
        assert!(Instant::now() < deadline, "store was not restarted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(b.daemon.stats().await.expect("stats").store_restarts, 0);
    let tree = b.daemon.actor_tree().await.expect("tree");
    let stores: Vec<_> = tree.children.iter().filter(|c| c.kind == "store").collect();
    assert_eq!(stores.len(), 1);
    assert_eq!(stores[0].restarts, 0);

    // Both keep serving.
    let (after_a, after_b) =
        tokio::join!(a.create("@mock say a again"), b.create("@mock say b again"));
    for (fx, session) in [(&a, &after_a), (&b, &after_b)] {
        let done = fx
            .wait_until(&session.id, "a session after the drill", |s| {
                s.status.is_finished()
            })
            .await;
        assert_eq!(done.status, SessionStatus::Complete, "{}", done.error);
    }
    tokio::join!(
        a.daemon.shutdown(Duration::from_secs(5)),
        b.daemon.shutdown(Duration::from_secs(5))
    );
}
