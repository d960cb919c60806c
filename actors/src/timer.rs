//! A one-shot timer that can be re-armed: at most one pending firing at a time.

use std::time::Duration;
use tokio::task::JoinHandle;

/// The one pending timer of an actor: arming it again cancels the previous one, so edits never
/// leave extra timer chains behind. Dropped with the actor's state, it cancels what is pending.
#[derive(Default)]
pub struct Timer(Option<JoinHandle<()>>);

impl Timer {
    /// Runs `fire` after `wait`, instead of whatever was pending (typically a cast to the
    /// actor that owns the timer).
    pub fn arm(&mut self, wait: Duration, fire: impl FnOnce() + Send + 'static) {
        self.cancel();
        self.0 = Some(tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            fire();
        }));
    }

    /// Cancels the pending firing, if any.
    pub fn cancel(&mut self) {
        if let Some(pending) = self.0.take() {
            pending.abort();
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    /// A timer whose firings are counted.
    fn counted() -> (Timer, Arc<AtomicU32>) {
        (Timer::default(), Arc::new(AtomicU32::new(0)))
    }

    fn arm(timer: &mut Timer, fired: &Arc<AtomicU32>, wait: Duration) {
        let fired = fired.clone();
        timer.arm(wait, move || {
            fired.fetch_add(1, Ordering::SeqCst);
        });
    }

    /// Lets every due timer fire (time is paused: nothing really waits).
    async fn advance(by: Duration) {
        tokio::time::sleep(by).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn re_arming_replaces_the_pending_timer() {
        let (mut timer, fired) = counted();
        // Three edits in a row (a watch updated three times): one timer chain, not three.
        for _ in 0..3 {
            arm(&mut timer, &fired, Duration::from_secs(60));
        }
        advance(Duration::from_secs(59)).await;
        assert_eq!(fired.load(Ordering::SeqCst), 0, "nothing fires early");
        advance(Duration::from_secs(2)).await;
        assert_eq!(fired.load(Ordering::SeqCst), 1);
        advance(Duration::from_secs(600)).await;
        assert_eq!(
            fired.load(Ordering::SeqCst),
            1,
            "the replaced timers never fire"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_or_dropped_timer_never_fires() {
        let (mut timer, fired) = counted();
        arm(&mut timer, &fired, Duration::from_secs(5));
        timer.cancel();
        let (mut dropped, _) = counted();
        arm(&mut dropped, &fired, Duration::from_secs(5));
        drop(dropped);
        advance(Duration::from_secs(3600)).await;
        assert_eq!(fired.load(Ordering::SeqCst), 0);
    }
}
