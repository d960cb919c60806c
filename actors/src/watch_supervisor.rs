//! The WatchSupervisor: one WatchActor per active watch, and the routing of events to them.
//!
//! * A watch actor failed → restarted after 200 ms, doubling per failure; after
//!   [`MAX_FAILURES`] failures within [`FAILURE_WINDOW`] the watch is paused with a reason
//!   instead (no restart loop).
//! * A watch was created, edited, paused, resumed or deleted → its actor is started, updated
//!   or stopped ([`WatchesMsg::Changed`]).
//! * Events are routed by asking every watch actor at once ([`route`]); webhook deliveries
//!   that a previous run stored but never routed are routed once the watches are up, and again
//!   on a timer.
//!
//! Store work runs in tracked tasks that report back; handlers never await the store.

use crate::actor::{answer, Behaviour, Handled, Started};
use crate::admin::{Child, ChildKind};
use crate::context::Context;
use crate::domain::watch::{Routed, Skipped};
use crate::domain::{time, Watch, WatchEvent, WatchStatus};
use crate::error::Result;
use crate::registry::Registry;
use crate::store::watches::WatchFilter;
use crate::watch_actor::{Verdict, WatchArgs, WatchMsg, WatchState};
use ractor::{ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A watch actor that failed this many times within [`FAILURE_WINDOW`] is paused.
pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(600);
/// How long a route waits for watch actors before answering with what it has.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(30);
/// A delivery still pending this long after it arrived lost its routing (a crash between
/// storing and routing); the retry timer routes it again.
const DELIVERY_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Messages of the watch supervisor.
pub enum WatchesMsg {
    /// Watches to run actors for (start-up, creation, resume, restart).
    Start(Vec<Watch>),
    /// A watch changed (`Some`) or was removed (`None`): update, start or stop its actor.
    Changed {
        id: String,
        watch: Option<Box<Watch>>,
    },
    /// Restart a failed watch actor (after its backoff).
    Restart(String),
    /// Every running watch actor with its watch id, for routing an event.
    Actors(RpcReplyPort<Vec<(String, ActorRef<WatchMsg>)>>),
    /// The watches are loaded: route the deliveries a previous run stored but never routed.
    RecoverDeliveries,
    /// Timer: route deliveries that have been pending too long.
    RetryDeliveries,
    /// Fail a watch's actor on purpose (fault drills and tests).
    InjectFailure {
        id: String,
        reply: RpcReplyPort<Result<()>>,
    },
    /// Active watch actors and their restarts.
    Stats(RpcReplyPort<WatchStats>),
    /// The watch actors, for the admin tree.
    Children(RpcReplyPort<Vec<Child>>),
    /// Messages handled, for the admin tree.
    Inspect(RpcReplyPort<u64>),
    /// Stop restarting watch actors (shutdown).
    Drain,
}

/// What the watch supervisor reports about itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct WatchStats {
    pub active: usize,
    /// Watch actor restarts since start-up.
    pub restarts: u32,
}

/// What to do about a watch actor that just failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// Start it again after this long.
    Restart(Duration),
    /// It failed this many times within the window: pause the watch.
    Pause(usize),
}

/// One watch's failures and restarts (kept across its actors).
#[derive(Debug, Default)]
pub struct History {
    failures: Vec<Instant>,
    restarts: u32,
}

impl History {
    /// Records a failure at `now` and decides: restart with a doubling backoff, or pause.
    pub fn failed(&mut self, now: Instant) -> AfterFailure {
        self.failures
            .retain(|at| now.saturating_duration_since(*at) < FAILURE_WINDOW);
        self.failures.push(now);
        let count = self.failures.len();
        if count >= MAX_FAILURES {
            self.failures.clear();
            AfterFailure::Pause(count)
        } else {
            AfterFailure::Restart(Duration::from_millis(200) * 2u32.pow(count as u32 - 1))
        }
    }
}

pub struct WatchesState {
    ctx: Arc<Context>,
    /// Active watch id → its actor.
    watches: Registry<WatchMsg>,
    /// Failures and restarts per watch id.
    history: HashMap<String, History>,
    restarts: u32,
    handled: u64,
    /// Watches are loaded, so stored webhook deliveries may be routed.
    deliveries_ready: bool,
    draining: bool,
}

pub type WatchSupervisor = crate::actor::Run<WatchesState>;

impl WatchesState {
    async fn spawn_watch(&mut self, myself: &ActorRef<WatchesMsg>, watch: Watch) {
        let id = watch.id.clone();
        if watch.status != WatchStatus::Active || self.watches.contains(&id) || self.draining {
            return;
        }
        let args = WatchArgs {
            watch,
            ctx: self.ctx.clone(),
        };
        match crate::actor::spawn_child::<WatchState>(args, myself.get_cell()).await {
            Ok(actor) => self.watches.insert(id, actor, ()),
            Err(err) => {
                tracing::error!(watch = %id, "cannot start watch: {err}");
                self.failed(myself, id, err.to_string());
            }
        }
    }

    fn changed(&mut self, id: String, watch: Option<Box<Watch>>) -> Option<Watch> {
        match watch {
            Some(watch) if watch.status == WatchStatus::Active => match self.watches.get(&id) {
                Some(running) => {
                    let _ = running.actor.cast(WatchMsg::Update(watch));
                    None
                }
                None => Some(*watch),
            },
            _ => {
                if let Some(running) = self.watches.remove(&id) {
                    running.actor.stop(Some("watch paused or deleted".into()));
                }
                None
            }
        }
    }

    /// Restarts a failed watch with backoff, or pauses it when it keeps failing.
    fn failed(&mut self, myself: &ActorRef<WatchesMsg>, id: String, reason: String) {
        if self.draining {
            return;
        }
        match self
            .history
            .entry(id.clone())
            .or_default()
            .failed(Instant::now())
        {
            AfterFailure::Restart(delay) => {
                myself.send_after(delay, move || WatchesMsg::Restart(id));
            }
            AfterFailure::Pause(count) => {
                let store = self.ctx.store.clone();
                self.ctx.spawn(async move {
                    let paused = async {
                        let mut watch = store.require_watch(&id).await?;
                        watch.status = WatchStatus::Paused;
                        watch.paused_reason = format!(
                            "paused by the supervisor: its actor failed {count} times in 10 minutes (last: {reason})"
                        );
                        store.update_watch(watch).await
                    };
                    match paused.await {
                        Ok(_) => tracing::error!(watch = %id, "watch paused after repeated failures"),
                        Err(err) => tracing::error!(watch = %id, "cannot pause failing watch: {err}"),
                    }
                });
            }
        }
    }

    /// Reloads a failed watch in a task and starts it again (unless it was paused or deleted
    /// meanwhile).
    fn restart(&mut self, myself: &ActorRef<WatchesMsg>, id: String) {
        if self.draining || self.watches.contains(&id) {
            return;
        }
        self.restarts += 1;
        self.history.entry(id.clone()).or_default().restarts += 1;
        self.ctx.metrics.restarted("watch");
        let (store, me) = (self.ctx.store.clone(), myself.clone());
        self.ctx.spawn(async move {
            match store.get_watch(&id).await {
                Ok(Some(watch)) => {
                    let _ = me.cast(WatchesMsg::Start(vec![watch]));
                }
                Ok(None) => {}
                Err(err) => tracing::error!(watch = %id, "cannot reload watch: {err}"),
            }
        });
    }

    fn stats(&self) -> WatchStats {
        WatchStats {
            active: self.watches.len(),
            restarts: self.restarts,
        }
    }

    fn children(&self) -> Vec<Child> {
        let restarts = |id: &str| self.history.get(id).map_or(0, |h| h.restarts);
        self.watches.children(ChildKind::Watch, restarts)
    }

    /// Routes stored deliveries received before `age` ago (see [`route_pending_deliveries`]).
    fn route_pending(&self, myself: &ActorRef<WatchesMsg>, age: Duration) {
        if !self.deliveries_ready {
            return;
        }
        let (ctx, me) = (self.ctx.clone(), myself.clone());
        let before = time::ago(age);
        self.ctx
            .spawn(async move { route_pending_deliveries(&ctx, me, &before).await });
    }
}

impl Behaviour for WatchesState {
    type Msg = WatchesMsg;
    type Args = Arc<Context>;

    async fn start(_myself: ActorRef<WatchesMsg>, ctx: Arc<Context>) -> Started<Self> {
        Ok(WatchesState {
            ctx,
            watches: Registry::new("watch", WatchMsg::InjectFailure),
            history: HashMap::new(),
            restarts: 0,
            handled: 0,
            deliveries_ready: false,
            draining: false,
        })
    }

    async fn started(&mut self, myself: ActorRef<WatchesMsg>) -> Handled {
        let (store, me) = (self.ctx.store.clone(), myself.clone());
        self.ctx.spawn(async move {
            let active = WatchFilter {
                status: Some(WatchStatus::Active),
                ..Default::default()
            };
            match store.list_watches(active).await {
                Ok(watches) => {
                    let _ = me.cast(WatchesMsg::Start(watches));
                }
                Err(err) => tracing::error!("cannot load watches: {err}"),
            }
            // After the watches (messages from one sender arrive in order): a delivery routed
            // before its watch exists would be lost.
            let _ = me.cast(WatchesMsg::RecoverDeliveries);
        });
        myself.send_interval(self.ctx.settings.heartbeat, || WatchesMsg::RetryDeliveries);
        Ok(())
    }

    async fn handle(&mut self, myself: ActorRef<WatchesMsg>, message: WatchesMsg) -> Handled {
        self.handled += 1;
        match message {
            WatchesMsg::Start(watches) => {
                for watch in watches {
                    self.spawn_watch(&myself, watch).await;
                }
            }
            WatchesMsg::Changed { id, watch } => {
                if let Some(watch) = self.changed(id, watch) {
                    self.spawn_watch(&myself, watch).await;
                }
            }
            WatchesMsg::Restart(id) => self.restart(&myself, id),
            WatchesMsg::Actors(reply) => answer(reply, self.watches.actors()),
            WatchesMsg::RecoverDeliveries => {
                self.deliveries_ready = true;
                self.route_pending(&myself, Duration::ZERO);
            }
            WatchesMsg::RetryDeliveries => self.route_pending(&myself, DELIVERY_RETRY_AFTER),
            WatchesMsg::InjectFailure { id, reply } => answer(reply, self.watches.inject(&id)),
            WatchesMsg::Stats(reply) => answer(reply, self.stats()),
            WatchesMsg::Children(reply) => answer(reply, self.children()),
            WatchesMsg::Inspect(reply) => answer(reply, self.handled),
            WatchesMsg::Drain => self.draining = true,
        }
        Ok(())
    }

    async fn child(&mut self, myself: ActorRef<WatchesMsg>, event: SupervisionEvent) -> Handled {
        // Paused or deleted watches were forgotten when their actor was stopped; a newer actor
        // of the same watch has its own entry.
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                self.watches.ended(&cell.get_id());
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some((id, _)) = self.watches.ended(&cell.get_id()) {
                    tracing::error!(watch = %id, "watch actor failed: {err}");
                    self.failed(&myself, id, err.to_string());
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Asks every watch actor about `event` at once and collects the sessions they started and
/// the reasons of those that started nothing.
pub async fn route(watches: Vec<(String, ActorRef<WatchMsg>)>, event: WatchEvent) -> Routed {
    let event = Arc::new(event);
    let mut calls = tokio::task::JoinSet::new();
    for (watch_id, watch) in watches {
        let event = event.clone();
        calls.spawn(async move {
            let asked = watch
                .call(
                    |reply| WatchMsg::Event { event, reply },
                    Some(ROUTE_TIMEOUT),
                )
                .await;
            let verdict = match asked {
                Ok(ractor::rpc::CallResult::Success(verdict)) => verdict,
                _ => Verdict::Skipped("the watch did not answer in time".into()),
            };
            (watch_id, verdict)
        });
    }
    let mut routed = Routed::default();
    while let Some(result) = calls.join_next().await {
        match result {
            Ok((_, Verdict::Started(triggered))) => routed.triggered.push(triggered),
            Ok((watch_id, Verdict::Skipped(reason))) => {
                routed.skipped.push(Skipped { watch_id, reason })
            }
            _ => {}
        }
    }
    routed.triggered.sort_by_key(|t| t.run_id);
    routed.skipped.sort_by(|a, b| a.watch_id.cmp(&b.watch_id));
    routed
}

/// Routes a stored webhook delivery to the watches running now, then marks it done. Without a
/// watch supervisor to ask (it is restarting) the delivery stays pending for the retry timer.
pub async fn route_delivery(
    ctx: &Context,
    supervisor: Option<ActorRef<WatchesMsg>>,
    id: &str,
    event: WatchEvent,
) {
    let asked = match supervisor {
        Some(supervisor) => ractor::call!(supervisor, WatchesMsg::Actors).ok(),
        None => None,
    };
    let Some(actors) = asked else {
        tracing::warn!(delivery = %id, "watches unavailable; the delivery is routed later");
        return;
    };
    let routed = route(actors, event).await;
    tracing::info!(delivery = %id, sessions = routed.triggered.len(), skipped = ?routed.skipped, "webhook delivery routed");
    if let Err(err) = ctx.store.finish_delivery(id, "done").await {
        tracing::warn!(delivery = %id, "cannot mark delivery done: {err}");
    }
}

/// Deliveries stored before `received_before` but never routed (a crash between storing and
/// routing) are routed now; runs are exactly-once, so routing twice is harmless.
async fn route_pending_deliveries(
    ctx: &Context,
    supervisor: ActorRef<WatchesMsg>,
    received_before: &str,
) {
    let pending = match ctx.store.pending_deliveries(received_before).await {
        Ok(pending) => pending,
        Err(err) => {
            tracing::error!("cannot load pending webhook deliveries: {err}");
            return;
        }
    };
    for (id, _, payload) in pending {
        match serde_json::from_str::<WatchEvent>(&payload) {
            Ok(event) => route_delivery(ctx, Some(supervisor.clone()), &id, event).await,
            Err(_) => {
                let _ = ctx.store.finish_delivery(&id, "ignored").await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failing_watches_back_off_then_pause_and_old_failures_expire() {
        let mut history = History::default();
        let delays: Vec<AfterFailure> = (0..4).map(|_| history.failed(Instant::now())).collect();
        let ms = |n| AfterFailure::Restart(Duration::from_millis(n));
        assert_eq!(delays, [ms(200), ms(400), ms(800), ms(1600)]);
        assert_eq!(
            history.failed(Instant::now()),
            AfterFailure::Pause(MAX_FAILURES)
        );

        // Failures spread over more than the window never add up to a pause.
        let mut history = History::default();
        for _ in 0..(MAX_FAILURES * 3) {
            assert!(matches!(
                history.failed(Instant::now()),
                AfterFailure::Restart(_)
            ));
            tokio::time::advance(FAILURE_WINDOW / 4).await;
        }
    }
}
