//! The agent's runtime budget, paused while one of its questions waits for an answer: the time
//! a person takes to decide an approval is not the agent's time. (What bounds the wait itself
//! is the decider's business: `TELECODER_APPROVAL_TIMEOUT`.)

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Default)]
struct State {
    /// Questions waiting for an answer right now.
    waiting: usize,
    /// When the current pause began (`waiting` went from 0 to 1).
    since: Option<Instant>,
    /// Paused time of the pauses that ended.
    paused: Duration,
}

/// Shared by the handlers (which pause it) and the run loop (which reads the deadline).
#[derive(Default)]
pub(super) struct Budget {
    state: Mutex<State>,
    changed: Notify,
}

impl Budget {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops the clock until the guard is dropped (pauses nest).
    pub(super) fn pause(&self) -> Paused<'_> {
        let mut state = self.lock();
        if state.waiting == 0 {
            state.since = Some(Instant::now());
        }
        state.waiting += 1;
        drop(state);
        self.changed.notify_one();
        Paused { budget: self }
    }

    fn resume(&self) {
        let mut state = self.lock();
        state.waiting = state.waiting.saturating_sub(1);
        if state.waiting == 0 {
            if let Some(since) = state.since.take() {
                state.paused += since.elapsed();
            }
        }
        drop(state);
        self.changed.notify_one();
    }

    /// When a run that would end at `base` without pauses ends now; `None` while paused.
    pub(super) fn deadline(&self, base: Instant) -> Option<Instant> {
        let state = self.lock();
        (state.waiting == 0).then(|| base + state.paused)
    }

    /// Resolves when a pause begins or ends.
    pub(super) async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// A pause; the clock runs again when the last one is dropped.
pub(super) struct Paused<'a> {
    budget: &'a Budget,
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.budget.resume();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pauses_move_the_deadline_by_their_length() {
        let budget = Budget::default();
        let base = Instant::now() + Duration::from_secs(10);
        assert_eq!(budget.deadline(base), Some(base));
        {
            let _outer = budget.pause();
            tokio::time::advance(Duration::from_secs(3)).await;
            {
                let _inner = budget.pause();
                assert_eq!(budget.deadline(base), None);
                tokio::time::advance(Duration::from_secs(2)).await;
            }
            assert_eq!(budget.deadline(base), None, "still one question waiting");
        }
        assert_eq!(budget.deadline(base), Some(base + Duration::from_secs(5)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(budget.deadline(base), Some(base + Duration::from_secs(5)));
    }
}
