//! The root Supervisor. It only supervises: it starts the StoreActor, the SessionQueue and the
//! WatchSupervisor, restarts whichever fails after an exponential backoff (publishing the new
//! actor in its [`Slot`], so every handle finds it), answers the admin tree, and orchestrates
//! drain and shutdown. Sessions, watches and requests are its children's business.
//!
//! * StoreActor failed → restart it (reopening the database) after 100 ms, doubling per
//!   consecutive failure up to 10 s.
//! * SessionQueue or WatchSupervisor failed → restarted the same way (their own children went
//!   with them; the stale sweep and the watch list bring their work back).
//!
//! It never awaits the store, or any child that may be waiting on the store, in a handler.

use crate::actor::{spawn_child, Behaviour, Handled, Started};
use crate::admin::{self, ActorNode, Child, ChildKind};
use crate::context::Context;
use crate::current::Slot;
use crate::queue::{QueueMsg, QueueState};
use crate::store::{StoreArgs, StoreMsg, StoreState};
use crate::watch_supervisor::{WatchesMsg, WatchesState};
use ractor::{ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A child is restarted after 100 ms, doubling per consecutive failure up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A child that stayed up this long starts its backoff from scratch again.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// How long the root waits for the queue and the watch supervisor to list their actors.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Messages of the root supervisor.
pub enum SupervisorMsg {
    /// Start a failed child again (after its backoff).
    Restart(Role),
    /// Store restarts and uptime.
    Stats(RpcReplyPort<RootStats>),
    /// The live actor tree, asked of the actors themselves.
    Tree(RpcReplyPort<ActorNode>),
    /// Stop starting sessions and restarting actors (the first step of a graceful shutdown).
    Drain,
    /// Stop every remaining session (agents killed, sessions marked abandoned) before the
    /// daemon exits; replies once that is done.
    Shutdown(RpcReplyPort<()>),
}

/// The root's children: one of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Store,
    Queue,
    Watches,
}

/// What the root reports about itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct RootStats {
    pub store_restarts: u32,
    pub uptime_ms: u64,
}

/// A summary of what the daemon's supervisors hold (tests and `/admin/status`).
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SupervisorStats {
    pub running_sessions: usize,
    pub store_restarts: u32,
    pub session_failures: u32,
    pub active_watches: usize,
    pub watch_restarts: u32,
    pub uptime_ms: u64,
}

/// Where the root publishes its children; the daemon's handles read the same slots.
pub struct Slots {
    pub store: Slot<StoreMsg>,
    pub queue: Slot<QueueMsg>,
    pub watches: Slot<WatchesMsg>,
}

/// What the supervisor is started with.
pub struct SupervisorArgs {
    pub ctx: Arc<Context>,
    pub store: StoreArgs,
    pub slots: Slots,
}

/// Restart bookkeeping of one role.
#[derive(Default)]
struct Backoff {
    restarts: u32,
    consecutive: u32,
    started: Option<Instant>,
}

impl Backoff {
    /// Counts a failure and says how long to wait before the next start.
    fn failed(&mut self) -> Duration {
        if self.started.is_some_and(|at| at.elapsed() > STABLE_AFTER) {
            self.consecutive = 0;
        }
        self.consecutive += 1;
        let exponent = self.consecutive.saturating_sub(1).min(10);
        (Duration::from_millis(100) * 2u32.pow(exponent)).min(MAX_BACKOFF)
    }
}

pub struct SupervisorState {
    ctx: Arc<Context>,
    store_args: StoreArgs,
    slots: Slots,
    /// The current actor of each role.
    children: HashMap<ActorId, Role>,
    backoff: HashMap<Role, Backoff>,
    handled: u64,
    started: Instant,
    /// Draining: children start nothing new (a restarted queue is told so too); the store
    /// is still restarted, since running sessions finish during the grace.
    draining: bool,
    /// Shutting down: nothing is restarted any more.
    shutting_down: bool,
}

pub type Supervisor = crate::actor::Run<SupervisorState>;

impl SupervisorState {
    /// Starts the actor of `role` and publishes it in its slot.
    async fn spawn(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        role: Role,
    ) -> Result<(), ActorProcessingErr> {
        let parent = myself.get_cell();
        let cell = match role {
            Role::Store => {
                let args = self.store_args.clone();
                let store = spawn_child::<StoreState>(args, parent).await?;
                self.slots.store.set(Some(store.clone()));
                store.get_cell()
            }
            Role::Queue => {
                let queue = spawn_child::<QueueState>(self.ctx.clone(), parent).await?;
                self.slots.queue.set(Some(queue.clone()));
                queue.get_cell()
            }
            Role::Watches => {
                let watches = spawn_child::<WatchesState>(self.ctx.clone(), parent).await?;
                self.slots.watches.set(Some(watches.clone()));
                watches.get_cell()
            }
        };
        self.children.insert(cell.get_id(), role);
        self.backoff.entry(role).or_default().started = Some(Instant::now());
        Ok(())
    }

    /// Tells the queue and the watch supervisor to start nothing new.
    fn drain_children(&self) {
        if let Some(queue) = self.slots.queue.get() {
            let _ = queue.cast(QueueMsg::Drain);
        }
        if let Some(watches) = self.slots.watches.get() {
            let _ = watches.cast(WatchesMsg::Drain);
        }
    }

    fn is_up(&self, role: Role) -> bool {
        match role {
            Role::Store => self.slots.store.get().is_some(),
            Role::Queue => self.slots.queue.get().is_some(),
            Role::Watches => self.slots.watches.get().is_some(),
        }
    }

    /// A child ended: take it out of its slot and schedule its restart.
    fn ended(&mut self, myself: &ActorRef<SupervisorMsg>, cell: &ActorCell, why: String) {
        let Some(role) = self.children.remove(&cell.get_id()) else {
            return;
        };
        match role {
            Role::Store => self.slots.store.set(None),
            Role::Queue => self.slots.queue.set(None),
            Role::Watches => self.slots.watches.set(None),
        }
        if self.shutting_down {
            return;
        }
        let delay = self.backoff.entry(role).or_default().failed();
        tracing::error!("{role:?} actor ended ({why}); restarting in {delay:?}");
        myself.send_after(delay, move || SupervisorMsg::Restart(role));
    }

    async fn restart(&mut self, myself: &ActorRef<SupervisorMsg>, role: Role) {
        if self.shutting_down || self.is_up(role) {
            return;
        }
        match self.spawn(myself, role).await {
            Ok(()) => {
                if self.draining {
                    self.drain_children();
                }
                let backoff = self.backoff.entry(role).or_default();
                backoff.restarts += 1;
                let label = format!("{role:?}").to_lowercase();
                self.ctx.metrics.restarted(&label);
                tracing::info!(restarts = backoff.restarts, "{label} restarted");
            }
            Err(err) => {
                let delay = self.backoff.entry(role).or_default().failed();
                tracing::error!("{role:?} restart failed ({err}); retrying in {delay:?}");
                myself.send_after(delay, move || SupervisorMsg::Restart(role));
            }
        }
    }

    fn restarts(&self, role: Role) -> u32 {
        self.backoff.get(&role).map_or(0, |b| b.restarts)
    }

    /// The root's own children, for the admin tree.
    fn children(&self, myself: &ActorRef<SupervisorMsg>) -> Vec<Child> {
        let kind = |role: Role| match role {
            Role::Store => ChildKind::Store,
            Role::Queue => ChildKind::Queue,
            Role::Watches => ChildKind::Watches,
        };
        myself
            .get_children()
            .into_iter()
            .filter_map(|cell| {
                let role = *self.children.get(&cell.get_id())?;
                let started = self.backoff.get(&role)?.started?;
                let restarts = self.restarts(role);
                let kind = kind(role);
                Some(Child {
                    cell,
                    kind,
                    started,
                    restarts,
                })
            })
            .collect()
    }

    /// Builds the tree in a task: the queue and the watch supervisor list their actors there.
    fn tree(&self, myself: &ActorRef<SupervisorMsg>, reply: RpcReplyPort<ActorNode>) {
        let root = ActorNode {
            messages_handled: Some(self.handled),
            ..ActorNode::new(
                &myself.get_cell(),
                "supervisor",
                admin::ROOT_NAME.to_owned(),
                self.started.elapsed().as_millis() as u64,
            )
        };
        let mut children = self.children(myself);
        let (queue, watches) = (self.slots.queue.get(), self.slots.watches.get());
        self.ctx.spawn(async move {
            if let Some(queue) = queue {
                children
                    .extend(ractor::call_t!(queue, QueueMsg::Children, ASK_MS).unwrap_or_default());
            }
            if let Some(watches) = watches {
                children.extend(
                    ractor::call_t!(watches, WatchesMsg::Children, ASK_MS).unwrap_or_default(),
                );
            }
            let _ = reply.send(admin::tree(root, children).await);
        });
    }

    /// Hands the running sessions over from the queue and stops them, in a task.
    fn shutdown(&mut self, reply: RpcReplyPort<()>) {
        self.shutting_down = true;
        let (ctx, queue) = (self.ctx.clone(), self.slots.queue.get());
        self.ctx.spawn(async move {
            if let Some(queue) = queue {
                let running =
                    ractor::call_t!(queue, QueueMsg::Shutdown, ASK_MS).unwrap_or_default();
                crate::queue::stop_all(&ctx, running).await;
            }
            let _ = reply.send(());
        });
    }
}

/// [`ASK_TIMEOUT`] for ractor's `call_t!`.
const ASK_MS: u64 = ASK_TIMEOUT.as_millis() as u64;

impl Behaviour for SupervisorState {
    type Msg = SupervisorMsg;
    type Args = SupervisorArgs;

    async fn start(myself: ActorRef<SupervisorMsg>, args: SupervisorArgs) -> Started<Self> {
        let settings = &args.ctx.settings;
        std::fs::create_dir_all(settings.workspaces_dir()).map_err(|err| {
            format!(
                "cannot create the data directory {}: {err}",
                settings.data_dir.display()
            )
        })?;
        crate::publish::remove_leftovers(&settings.data_dir);
        let mut state = SupervisorState {
            ctx: args.ctx,
            store_args: args.store,
            slots: args.slots,
            children: HashMap::new(),
            backoff: HashMap::new(),
            handled: 0,
            started: Instant::now(),
            draining: false,
            shutting_down: false,
        };
        // The store first: the others read it as soon as they start.
        for role in [Role::Store, Role::Queue, Role::Watches] {
            state.spawn(&myself, role).await?;
        }
        Ok(state)
    }

    async fn handle(&mut self, myself: ActorRef<SupervisorMsg>, message: SupervisorMsg) -> Handled {
        self.handled += 1;
        match message {
            SupervisorMsg::Restart(role) => self.restart(&myself, role).await,
            SupervisorMsg::Stats(reply) => {
                let _ = reply.send(RootStats {
                    store_restarts: self.restarts(Role::Store),
                    uptime_ms: self.started.elapsed().as_millis() as u64,
                });
            }
            SupervisorMsg::Tree(reply) => self.tree(&myself, reply),
            SupervisorMsg::Drain => {
                self.draining = true;
                self.drain_children();
            }
            SupervisorMsg::Shutdown(reply) => self.shutdown(reply),
        }
        Ok(())
    }

    /// The store stops last and on purpose (its `stopped` closes the database), after the
    /// actors that write through it; ractor would otherwise end it with the root, unannounced.
    async fn stopped(&mut self, _myself: ActorRef<SupervisorMsg>) -> Handled {
        self.shutting_down = true;
        for child in [
            self.slots.queue.get().map(|a| a.get_cell()),
            self.slots.watches.get().map(|a| a.get_cell()),
            self.slots.store.get().map(|a| a.get_cell()),
        ]
        .into_iter()
        .flatten()
        {
            let _ = child
                .stop_and_wait(Some("shutdown".into()), Some(crate::context::STOP_GRACE))
                .await;
        }
        Ok(())
    }

    async fn child(&mut self, myself: ActorRef<SupervisorMsg>, event: SupervisionEvent) -> Handled {
        match event {
            // None of the root's children stops on its own; a clean stop is treated like a
            // failure (except during shutdown).
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                self.ended(&myself, &cell, reason.unwrap_or_else(|| "stopped".into()))
            }
            SupervisionEvent::ActorFailed(cell, err) => self.ended(&myself, &cell, err.to_string()),
            _ => {}
        }
        Ok(())
    }
}
