//! A one-shot actor timer that can be re-armed.

use ractor::concurrency::JoinHandle;
use ractor::{ActorRef, MessagingErr};
use std::time::Duration;

/// The one pending timer of an actor: arming it again cancels the previous one, so edits never
/// leave extra timer chains behind.
pub struct Timer<M>(Option<JoinHandle<Result<(), MessagingErr<M>>>>);

impl<M> Default for Timer<M> {
    fn default() -> Self {
        Self(None)
    }
}

impl<M: ractor::Message> Timer<M> {
    /// Sends `message` to `actor` after `wait`, instead of any message still pending.
    pub fn arm(
        &mut self,
        actor: &ActorRef<M>,
        wait: Duration,
        message: impl FnOnce() -> M + Send + 'static,
    ) {
        self.cancel();
        self.0 = Some(actor.send_after(wait, message));
    }
}

impl<M> Timer<M> {
    /// Cancels the pending message, if any.
    pub fn cancel(&mut self) {
        if let Some(pending) = self.0.take() {
            pending.abort();
        }
    }
}

/// A stopped actor's state is dropped: its pending timer goes with it.
impl<M> Drop for Timer<M> {
    fn drop(&mut self) {
        self.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ractor::{Actor, ActorProcessingErr, RpcReplyPort};

    /// Counts its ticks; re-arms its timer when asked.
    struct Counter;

    enum CounterMsg {
        Tick,
        Arm(Duration),
        Cancel,
        Ticks(RpcReplyPort<u32>),
    }

    impl Actor for Counter {
        type Msg = CounterMsg;
        type State = (u32, Timer<CounterMsg>);
        type Arguments = ();

        async fn pre_start(
            &self,
            _myself: ActorRef<Self::Msg>,
            _args: (),
        ) -> Result<Self::State, ActorProcessingErr> {
            Ok((0, Timer::default()))
        }

        async fn handle(
            &self,
            myself: ActorRef<Self::Msg>,
            message: Self::Msg,
            state: &mut Self::State,
        ) -> Result<(), ActorProcessingErr> {
            match message {
                CounterMsg::Tick => state.0 += 1,
                CounterMsg::Arm(wait) => state.1.arm(&myself, wait, || CounterMsg::Tick),
                CounterMsg::Cancel => state.1.cancel(),
                CounterMsg::Ticks(reply) => {
                    let _ = reply.send(state.0);
                }
            }
            Ok(())
        }
    }

    async fn ticks(actor: &ActorRef<CounterMsg>) -> u32 {
        ractor::call!(actor, CounterMsg::Ticks).expect("counter answers")
    }

    /// Lets every due timer fire and its message be handled (time is paused: no real waiting).
    async fn advance(by: Duration) {
        tokio::time::sleep(by).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn re_arming_replaces_the_pending_timer() {
        let (actor, handle) = Actor::spawn(None, Counter, ()).await.expect("spawn");
        // Three edits in a row (a watch updated three times): one timer chain, not three.
        for _ in 0..3 {
            actor
                .cast(CounterMsg::Arm(Duration::from_secs(60)))
                .expect("cast");
        }
        advance(Duration::from_secs(59)).await;
        assert_eq!(ticks(&actor).await, 0, "nothing fires early");
        advance(Duration::from_secs(2)).await;
        assert_eq!(ticks(&actor).await, 1);
        advance(Duration::from_secs(600)).await;
        assert_eq!(ticks(&actor).await, 1, "the replaced timers never fire");
        actor.stop(None);
        let _ = handle.await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_timer_never_fires() {
        let (actor, handle) = Actor::spawn(None, Counter, ()).await.expect("spawn");
        actor
            .cast(CounterMsg::Arm(Duration::from_secs(5)))
            .expect("cast");
        actor.cast(CounterMsg::Cancel).expect("cast");
        advance(Duration::from_secs(3600)).await;
        assert_eq!(ticks(&actor).await, 0);
        actor.stop(None);
        let _ = handle.await;
    }
}
