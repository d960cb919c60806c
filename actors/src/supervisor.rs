//! The root Supervisor. It owns the StoreActor and one SessionActor per running session,
//! runs the FIFO run queue, the periodic stale sweep, and decides what a child's failure means:
//!
//! * StoreActor failed → restart it (reopening the database) after an exponential backoff.
//! * SessionActor failed → kill its agent's process group and mark the session `error`, saying
//!   the supervisor caught the failure. Nothing is left `running`.
//! * SessionActor stopped normally → free its slot and start the next pending session.
//!
//! The supervisor never awaits the store inside a handler (the store may be the thing that is
//! restarting); store work runs in tasks that report back with messages.

use crate::bus::EventBus;
use crate::domain::watch::{Routed, Skipped};
use crate::domain::{
    time, EventKind, FailureKind, NewSession, Session, SessionId, Watch, WatchEvent, WatchStatus,
};
use crate::error::{Error, Result};
use crate::requests;
use crate::requests::{NewWatch, WatchPatch};
use crate::runtime::AgentRuntime;
use crate::session_actor::{self, SessionActor, SessionArgs, SessionContext, SessionMsg};
use crate::settings::Settings;
use crate::store::{Finish, StoreActor, StoreArgs, StoreClient, STORE_NAME};
use crate::watch_actor::{self, Verdict, WatchActor, WatchArgs, WatchMsg};
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The registered name of the root supervisor.
pub const SUPERVISOR_NAME: &str = "telecoder.supervisor";

/// The store is restarted after 100 ms, doubling per consecutive failure up to this.
const MAX_STORE_BACKOFF: Duration = Duration::from_secs(10);
/// A store that stayed up this long starts its backoff from scratch again.
const STORE_STABLE_AFTER: Duration = Duration::from_secs(60);

/// The current supervisor, if the daemon is up.
pub fn resolve() -> Result<ActorRef<SupervisorMsg>> {
    ActorRef::where_is(SUPERVISOR_NAME)
        .ok_or_else(|| Error::Unavailable("the supervisor is not running".into()))
}

/// Messages of the root supervisor.
pub enum SupervisorMsg {
    /// Store and queue a new session; replies with the pending record.
    CreateSession {
        request: NewSession,
        reply: RpcReplyPort<Result<Session>>,
    },
    /// Store and queue a rerun of a finished session.
    Rerun {
        id: String,
        reply: RpcReplyPort<Result<Session>>,
    },
    /// Start pending sessions while slots are free.
    Kick,
    /// The run queue, read by a queue task; start those not yet running while slots are free.
    StartSessions(crate::store::queries::RunQueue),
    /// Timer: mark stale running sessions abandoned and kill what is left of their agents.
    Sweep,
    /// A sweep is done (its abandoned sessions' processes are dead); stop any of them we still
    /// run, and start pending sessions again.
    Swept(Vec<crate::store::queries::Abandoned>),
    /// Bring the store back after a failure.
    RestartStore,
    /// A session's agent process started (so a failure can kill its group).
    AgentStarted { session_id: String, pid: u32 },
    /// Cancel a pending or running session.
    Cancel {
        id: String,
        reply: RpcReplyPort<Result<()>>,
    },
    /// Publish a finished session as a pull request (one publish per session at a time).
    Publish {
        id: String,
        request: crate::publish::PublishRequest,
        reply: RpcReplyPort<Result<crate::publish::Published>>,
    },
    /// A publish finished; the session may be published again.
    PublishDone(String),
    /// Store a new watch and start its actor.
    CreateWatch {
        request: NewWatch,
        reply: RpcReplyPort<Result<Watch>>,
    },
    /// Edit, pause or resume a watch.
    UpdateWatch {
        id: String,
        patch: WatchPatch,
        reply: RpcReplyPort<Result<Watch>>,
    },
    /// Delete a watch and stop its actor.
    DeleteWatch {
        id: String,
        reply: RpcReplyPort<Result<()>>,
    },
    /// Route an event to every watch actor; replies with the sessions started.
    RouteEvent {
        event: WatchEvent,
        reply: RpcReplyPort<Routed>,
    },
    /// Route the deliveries a previous run stored but never routed (once watches are up).
    RecoverDeliveries,
    /// Route a stored webhook delivery, then mark it done.
    RouteDelivery { id: String, event: WatchEvent },
    /// Watches to run actors for (start-up, creation, resume, restart).
    StartWatches(Vec<Watch>),
    /// A watch changed or was removed: update, start or stop its actor.
    WatchChanged { id: String, watch: Option<Watch> },
    /// Restart a failed watch actor (after its backoff).
    RestartWatch(String),
    /// Fail a watch's actor on purpose (fault drills and tests).
    InjectWatchFailure {
        id: String,
        reply: RpcReplyPort<Result<()>>,
    },
    /// Fail the given running session's actor on purpose (fault drills and tests).
    InjectSessionFailure {
        id: String,
        reply: RpcReplyPort<Result<()>>,
    },
    /// Fail the store on purpose (fault drills and tests).
    InjectStoreFailure { reply: RpcReplyPort<Result<()>> },
    /// Counters for tests and the admin view.
    Stats(RpcReplyPort<SupervisorStats>),
    /// The live actor tree, asked of the actors themselves.
    Tree(RpcReplyPort<crate::admin::ActorNode>),
    /// Stop starting sessions (the first step of a graceful shutdown).
    Drain,
    /// Stop every remaining session (agents killed, sessions marked abandoned) before the
    /// daemon exits.
    Shutdown(RpcReplyPort<()>),
}

/// A summary of what the supervisor holds.
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

/// What the supervisor is started with.
pub struct SupervisorArgs {
    pub settings: Settings,
    pub runtime: Arc<dyn AgentRuntime>,
    pub bus: EventBus,
    pub owner_id: String,
    pub metrics: crate::metrics::Metrics,
    /// Approvals waited for in this daemon (issue 15).
    pub approvals: Arc<crate::approvals::ApprovalHub>,
}

#[derive(Clone)]
pub(crate) enum ChildKind {
    Store,
    Session { id: String, pid: Option<u32> },
    Watch { id: String },
}

/// A watch actor that failed this many times within [`WATCH_FAILURE_WINDOW`] is paused.
const WATCH_MAX_FAILURES: usize = 5;
const WATCH_FAILURE_WINDOW: Duration = Duration::from_secs(600);
/// How long a route waits for watch actors before answering with what it has.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(30);

struct Child {
    kind: ChildKind,
    cell: ActorCell,
    started: Instant,
}

impl Child {
    fn new(kind: ChildKind, cell: ActorCell) -> Self {
        Self {
            kind,
            cell,
            started: Instant::now(),
        }
    }
}

pub struct SupervisorState {
    ctx: Arc<SessionContext>,
    store_args: StoreArgs,
    children: HashMap<ActorId, Child>,
    /// Running session id → its actor.
    sessions: HashMap<String, ActorCell>,
    /// Sessions being published right now.
    publishing: std::collections::HashSet<String>,
    /// Active watch id → its actor.
    watches: HashMap<String, ActorRef<WatchMsg>>,
    /// Recent failure times per watch, for backoff and pausing.
    watch_failures: HashMap<String, Vec<Instant>>,
    /// Watch actor restarts since start-up.
    watch_restarts: u32,
    /// Restarts per watch, for the admin view.
    watch_restart_counts: HashMap<String, u32>,
    /// Messages the supervisor has handled.
    handled: u64,
    /// Watches are loaded, so stored webhook deliveries may be routed.
    deliveries_ready: bool,
    store_restarts: u32,
    consecutive_store_failures: u32,
    store_started: Instant,
    session_failures: u32,
    started: Instant,
    shutting_down: bool,
    /// A sweep is marking sessions abandoned and killing their agents; nothing starts until it
    /// is done.
    sweeping: bool,
}

pub struct Supervisor;

impl SupervisorState {
    fn settings(&self) -> &Settings {
        &self.ctx.settings
    }

    /// Every running watch actor with its watch id, for routing an event.
    fn watch_refs(&self) -> Vec<(String, ActorRef<WatchMsg>)> {
        self.watches
            .iter()
            .map(|(id, actor)| (id.clone(), actor.clone()))
            .collect()
    }

    async fn spawn_store(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
    ) -> Result<(), ActorProcessingErr> {
        let (store, _) = Actor::spawn_linked(
            Some(STORE_NAME.to_owned()),
            StoreActor,
            self.store_args.clone(),
            myself.get_cell(),
        )
        .await?;
        self.store_started = Instant::now();
        self.children.insert(
            store.get_id(),
            Child::new(ChildKind::Store, store.get_cell()),
        );
        Ok(())
    }

    async fn spawn_session(&mut self, myself: &ActorRef<SupervisorMsg>, id: SessionId) {
        let args = SessionArgs {
            id: id.clone(),
            ctx: self.ctx.clone(),
        };
        match Actor::spawn_linked(
            Some(session_actor::actor_name(id.as_str())),
            SessionActor,
            args,
            myself.get_cell(),
        )
        .await
        {
            Ok((actor, _)) => {
                let kind = ChildKind::Session {
                    id: id.to_string(),
                    pid: None,
                };
                self.children
                    .insert(actor.get_id(), Child::new(kind, actor.get_cell()));
                self.sessions.insert(id.to_string(), actor.get_cell());
            }
            // Still pending in the database: the next kick retries it.
            Err(err) => tracing::warn!(session = %id, "cannot start session: {err}"),
        }
    }

    async fn spawn_watch(&mut self, myself: &ActorRef<SupervisorMsg>, watch: Watch) {
        let id = watch.id.clone();
        if watch.status != WatchStatus::Active || self.watches.contains_key(&id) {
            return;
        }
        let args = WatchArgs {
            watch,
            ctx: self.ctx.clone(),
            supervisor: myself.clone(),
        };
        match Actor::spawn_linked(
            Some(watch_actor::actor_name(&id)),
            WatchActor,
            args,
            myself.get_cell(),
        )
        .await
        {
            Ok((actor, _)) => {
                let kind = ChildKind::Watch { id: id.clone() };
                self.children
                    .insert(actor.get_id(), Child::new(kind, actor.get_cell()));
                self.watches.insert(id, actor);
            }
            Err(err) => {
                tracing::error!(watch = %id, "cannot start watch: {err}");
                self.watch_failed(myself, id, err.to_string());
            }
        }
    }

    /// Restarts a failed watch with backoff, or pauses it when it keeps failing.
    fn watch_failed(&mut self, myself: &ActorRef<SupervisorMsg>, id: String, reason: String) {
        let failures = self.watch_failures.entry(id.clone()).or_default();
        failures.retain(|at| at.elapsed() < WATCH_FAILURE_WINDOW);
        failures.push(Instant::now());
        let count = failures.len();
        if count >= WATCH_MAX_FAILURES {
            self.watch_failures.remove(&id);
            let store = self.ctx.store.clone();
            in_background(async move {
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
        } else {
            let delay = Duration::from_millis(200) * 2u32.pow(count as u32 - 1);
            myself.send_after(delay, move || SupervisorMsg::RestartWatch(id));
        }
    }

    fn free_slots(&self) -> usize {
        self.settings()
            .max_concurrent_sessions
            .saturating_sub(self.sessions.len())
    }

    fn store_backoff(&self) -> Duration {
        let exponent = self.consecutive_store_failures.saturating_sub(1).min(10);
        (Duration::from_millis(100) * 2u32.pow(exponent)).min(MAX_STORE_BACKOFF)
    }
}

/// Runs store work off the supervisor's mailbox and reports back with a message.
fn in_background<F>(work: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(work);
}

async fn create_session(
    settings: Settings,
    store: StoreClient,
    request: NewSession,
) -> Result<Session> {
    let session = requests::new_session_record(&settings, &request, None)?;
    store.insert_session(session.clone(), Vec::new()).await?;
    Ok(session)
}

async fn create_rerun(settings: Settings, store: StoreClient, id: String) -> Result<Session> {
    let parent = store.require_session(&id).await?;
    if !parent.status.is_finished() {
        return Err(Error::Conflict(format!(
            "session {id} is still {}; only finished sessions can be rerun",
            parent.status.as_str()
        )));
    }
    // Issue 15: a later turn of a conversation is rerun where it ran, as the next turn.
    if !parent.continued_from.is_empty() {
        return crate::conversation::rerun_turn(&settings, &store, &parent).await;
    }
    let request = NewSession {
        repo: parent.repo.clone(),
        prompt: parent.prompt.clone(),
        agent: Some(parent.agent.clone()),
        policy: Some(parent.policy_mode),
    };
    let session = requests::new_session_record(&settings, &request, Some(&parent))?;
    let first = format!(
        "rerun of session {} (attempt {})",
        parent.id, session.attempt
    );
    store
        .insert_session(session.clone(), vec![(EventKind::Status, first)])
        .await?;
    Ok(session)
}

/// Replies, then nudges the queue when a session was created.
async fn reply_and_kick(
    myself: ActorRef<SupervisorMsg>,
    reply: RpcReplyPort<Result<Session>>,
    result: Result<Session>,
    metrics: crate::metrics::Metrics,
) {
    let created = result.is_ok();
    if created {
        metrics.sessions_created.inc();
    }
    let _ = reply.send(result);
    if created {
        let _ = myself.cast(SupervisorMsg::Kick);
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        std::fs::create_dir_all(args.settings.workspaces_dir()).map_err(|err| {
            format!(
                "cannot create the data directory {}: {err}",
                args.settings.data_dir.display()
            )
        })?;
        crate::publish::remove_leftovers(&args.settings.data_dir);
        let store_args = StoreArgs {
            path: args.settings.database_path(),
            bus: args.bus,
            metrics: args.metrics.clone(),
            redactor: args.settings.redactor.clone(),
        };
        let mut state = SupervisorState {
            ctx: Arc::new(SessionContext {
                settings: args.settings,
                owner_id: args.owner_id,
                store: StoreClient::new(),
                runtime: args.runtime,
                metrics: args.metrics,
                approvals: args.approvals,
            }),
            store_args,
            children: HashMap::new(),
            sessions: HashMap::new(),
            publishing: Default::default(),
            watches: HashMap::new(),
            watch_failures: HashMap::new(),
            watch_restarts: 0,
            watch_restart_counts: HashMap::new(),
            handled: 0,
            deliveries_ready: false,
            store_restarts: 0,
            consecutive_store_failures: 0,
            store_started: Instant::now(),
            session_failures: 0,
            started: Instant::now(),
            shutting_down: false,
            sweeping: false,
        };
        state.spawn_store(&myself).await?;
        Ok(state)
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Start-up recovery: stale running sessions become abandoned, pending ones run again.
        // Both then repeat on the timer for as long as the daemon runs.
        // The sweep kicks the queue when it is done: a crashed instance's agents die before
        // pending sessions take their slots.
        let _ = myself.cast(SupervisorMsg::Sweep);
        let store = state.ctx.store.clone();
        let me = myself.clone();
        in_background(async move {
            let filter = crate::store::watches::WatchFilter {
                status: Some(WatchStatus::Active),
                ..Default::default()
            };
            match store.list_watches(filter).await {
                Ok(watches) => {
                    let _ = me.cast(SupervisorMsg::StartWatches(watches));
                }
                Err(err) => tracing::error!("cannot load watches: {err}"),
            }
            // After the watches (messages from one sender arrive in order): a delivery routed
            // before its watch exists would be lost.
            let _ = me.cast(SupervisorMsg::RecoverDeliveries);
        });
        let period = state.settings().heartbeat;
        myself.send_interval(period, || SupervisorMsg::Sweep);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.handled += 1;
        match message {
            SupervisorMsg::CreateSession { request, reply } => {
                let (settings, store) = (state.settings().clone(), state.ctx.store.clone());
                let metrics = state.ctx.metrics.clone();
                in_background(async move {
                    let result = create_session(settings, store, request).await;
                    reply_and_kick(myself, reply, result, metrics).await;
                });
            }
            SupervisorMsg::Rerun { id, reply } => {
                let (settings, store) = (state.settings().clone(), state.ctx.store.clone());
                let metrics = state.ctx.metrics.clone();
                in_background(async move {
                    let result = create_rerun(settings, store, id).await;
                    reply_and_kick(myself, reply, result, metrics).await;
                });
            }
            SupervisorMsg::Kick => {
                let free = state.free_slots();
                // A sweep in progress kicks again once the agents it abandoned are dead.
                if state.shutting_down || state.sweeping || free == 0 {
                    return Ok(());
                }
                let store = state.ctx.store.clone();
                let owner = state.ctx.owner_id.clone();
                // Ask for enough to skip the ones we already run but that are not claimed yet.
                let limit = free + state.sessions.len();
                in_background(async move {
                    match store.run_queue(limit, &owner).await {
                        Ok(queue) => {
                            let _ = myself.cast(SupervisorMsg::StartSessions(queue));
                        }
                        Err(err) => tracing::warn!("cannot read the run queue: {err}"),
                    }
                });
            }
            SupervisorMsg::StartSessions(queue) => {
                // Read before a sweep began; the sweep's own kick reads it again.
                if state.sweeping {
                    return Ok(());
                }
                for id in queue.pending.iter().filter_map(|id| SessionId::parse(id)) {
                    let free = state.free_slots().saturating_sub(queue.running_elsewhere);
                    if state.shutting_down || free == 0 {
                        break;
                    }
                    if !state.sessions.contains_key(id.as_str()) {
                        state.spawn_session(&myself, id).await;
                    }
                }
            }
            SupervisorMsg::Sweep => {
                if state.sweeping {
                    return Ok(());
                }
                state.sweeping = true;
                let store = state.ctx.store.clone();
                let deliveries_ready = state.deliveries_ready;
                let cutoff = time::ago(state.settings().stale);
                in_background(async move {
                    let abandoned = store.sweep_stale(cutoff).await.unwrap_or_else(|err| {
                        tracing::warn!("stale sweep failed: {err}");
                        Vec::new()
                    });
                    // Reap first, then start: the agents of abandoned sessions (a crashed
                    // daemon's too) are dead before their slots are given to pending sessions.
                    for session in &abandoned {
                        session_actor::kill_leftovers(&session.finished.session.id).await;
                    }
                    let _ = myself.cast(SupervisorMsg::Swept(abandoned));
                    if deliveries_ready {
                        let cutoff = time::ago(DELIVERY_RETRY_AFTER);
                        route_pending_deliveries(&store, &myself, &cutoff).await;
                    }
                });
            }
            SupervisorMsg::Swept(abandoned) => {
                state.sweeping = false;
                for session in abandoned {
                    let id = session.finished.session.id;
                    if state.settings().resume_interrupted {
                        resume(state, id.clone());
                    }
                    tracing::warn!(session = %id, "session marked abandoned (stale heartbeat)");
                    if let Some(cell) = state.sessions.get(&id) {
                        cell.stop(Some("abandoned".into()));
                    }
                }
                let _ = myself.cast(SupervisorMsg::Kick);
            }
            SupervisorMsg::RestartStore => {
                if ActorRef::<crate::store::StoreMsg>::where_is(STORE_NAME).is_some() {
                    return Ok(());
                }
                match state.spawn_store(&myself).await {
                    Ok(()) => {
                        state.store_restarts += 1;
                        state.ctx.metrics.restarted("store");
                        tracing::info!(restarts = state.store_restarts, "store restarted");
                    }
                    Err(err) => {
                        state.consecutive_store_failures += 1;
                        let delay = state.store_backoff();
                        tracing::error!("store restart failed ({err}); retrying in {delay:?}");
                        myself.send_after(delay, || SupervisorMsg::RestartStore);
                    }
                }
            }
            SupervisorMsg::AgentStarted { session_id, pid } => {
                if let Some(child) = state.children.values_mut().find(
                    |child| matches!(&child.kind, ChildKind::Session { id, .. } if *id == session_id),
                ) {
                    child.kind = ChildKind::Session { id: session_id, pid: Some(pid) };
                }
            }
            SupervisorMsg::Cancel { id, reply } => {
                if let Some(cell) = state.sessions.get(&id) {
                    let _ = cell.send_message(SessionMsg::Cancel);
                    let _ = reply.send(Ok(()));
                    return Ok(());
                }
                let store = state.ctx.store.clone();
                in_background(async move {
                    let finish = Finish::failed(
                        FailureKind::Cancelled,
                        "session cancelled".into(),
                        String::new(),
                    );
                    let result = store.fail_active(&id, finish).await.map(|_| ());
                    let _ = reply.send(result);
                });
            }
            SupervisorMsg::Publish { id, request, reply } => {
                if !state.publishing.insert(id.clone()) {
                    let _ = reply.send(Err(Error::Conflict(format!(
                        "session {id} is being published already"
                    ))));
                    return Ok(());
                }
                let (settings, store) = (state.settings().clone(), state.ctx.store.clone());
                in_background(async move {
                    let result = crate::publish::publish(&settings, &store, &id, request).await;
                    let _ = reply.send(result);
                    let _ = myself.cast(SupervisorMsg::PublishDone(id));
                });
            }
            SupervisorMsg::PublishDone(id) => {
                state.publishing.remove(&id);
            }
            SupervisorMsg::CreateWatch { request, reply } => {
                let (settings, store) = (state.settings().clone(), state.ctx.store.clone());
                in_background(async move {
                    let result = async {
                        let watch = requests::new_watch_record(&settings, request)?;
                        store.insert_watch(watch.clone()).await?;
                        Ok(watch)
                    }
                    .await;
                    if let Ok(watch) = &result {
                        let _ = myself.cast(SupervisorMsg::StartWatches(vec![watch.clone()]));
                    }
                    let _ = reply.send(result);
                });
            }
            SupervisorMsg::UpdateWatch { id, patch, reply } => {
                let (settings, store) = (state.settings().clone(), state.ctx.store.clone());
                in_background(async move {
                    let result = async {
                        let current = store.require_watch(&id).await?;
                        let watch = requests::apply_patch(&settings, current, patch)?;
                        if !store.update_watch(watch.clone()).await? {
                            return Err(Error::NotFound(format!("watch {id} not found")));
                        }
                        Ok(watch)
                    }
                    .await;
                    if let Ok(watch) = &result {
                        let _ = myself.cast(SupervisorMsg::WatchChanged {
                            id: id.clone(),
                            watch: Some(watch.clone()),
                        });
                    }
                    let _ = reply.send(result);
                });
            }
            SupervisorMsg::DeleteWatch { id, reply } => {
                let store = state.ctx.store.clone();
                in_background(async move {
                    let result = match store.delete_watch(&id).await {
                        Ok(true) => Ok(()),
                        Ok(false) => Err(Error::NotFound(format!("watch {id} not found"))),
                        Err(err) => Err(err),
                    };
                    if result.is_ok() {
                        let _ = myself.cast(SupervisorMsg::WatchChanged { id, watch: None });
                    }
                    let _ = reply.send(result);
                });
            }
            SupervisorMsg::StartWatches(watches) => {
                for watch in watches {
                    state.spawn_watch(&myself, watch).await;
                }
            }
            SupervisorMsg::WatchChanged { id, watch } => match watch {
                Some(watch) if watch.status == WatchStatus::Active => match state.watches.get(&id) {
                    Some(actor) => {
                        let _ = actor.cast(WatchMsg::Update(Box::new(watch)));
                    }
                    None => state.spawn_watch(&myself, watch).await,
                },
                _ => {
                    if let Some(actor) = state.watches.remove(&id) {
                        actor.stop(Some("watch paused or deleted".into()));
                    }
                }
            },
            SupervisorMsg::RestartWatch(id) => {
                if state.shutting_down || state.watches.contains_key(&id) {
                    return Ok(());
                }
                let store = state.ctx.store.clone();
                state.watch_restarts += 1;
                *state.watch_restart_counts.entry(id.clone()).or_default() += 1;
                state.ctx.metrics.restarted("watch");
                in_background(async move {
                    match store.get_watch(&id).await {
                        Ok(Some(watch)) => {
                            let _ = myself.cast(SupervisorMsg::StartWatches(vec![watch]));
                        }
                        Ok(None) => {}
                        Err(err) => tracing::error!(watch = %id, "cannot reload watch: {err}"),
                    }
                });
            }
            SupervisorMsg::RouteEvent { event, reply } => {
                let watches = state.watch_refs();
                in_background(async move {
                    let _ = reply.send(route(watches, event).await);
                });
            }
            SupervisorMsg::RecoverDeliveries => {
                state.deliveries_ready = true;
                let store = state.ctx.store.clone();
                in_background(async move {
                    route_pending_deliveries(&store, &myself, &time::now()).await;
                });
            }
            SupervisorMsg::RouteDelivery { id, event } => {
                let watches = state.watch_refs();
                let store = state.ctx.store.clone();
                in_background(async move {
                    let routed = route(watches, event).await;
                    tracing::info!(delivery = %id, sessions = routed.triggered.len(), skipped = ?routed.skipped, "webhook delivery routed");
                    if let Err(err) = store.finish_delivery(&id, "done").await {
                        tracing::warn!(delivery = %id, "cannot mark delivery done: {err}");
                    }
                });
            }
            SupervisorMsg::InjectWatchFailure { id, reply } => {
                let result = match state.watches.get(&id) {
                    Some(actor) => actor
                        .cast(WatchMsg::InjectFailure("drill".into()))
                        .map_err(|_| Error::Unavailable(format!("watch {id} actor is gone"))),
                    None => Err(Error::NotFound(format!("watch {id} has no running actor"))),
                };
                let _ = reply.send(result);
            }
            SupervisorMsg::InjectSessionFailure { id, reply } => {
                let result = match state.sessions.get(&id) {
                    Some(cell) => cell
                        .send_message(SessionMsg::InjectFailure("drill".into()))
                        .map_err(|_| Error::Unavailable(format!("session {id} actor is gone"))),
                    None => Err(Error::NotFound(format!("session {id} is not running here"))),
                };
                let _ = reply.send(result);
            }
            SupervisorMsg::InjectStoreFailure { reply } => {
                let result = ActorRef::<crate::store::StoreMsg>::where_is(STORE_NAME)
                    .ok_or_else(|| Error::Unavailable("the store is not running".into()))
                    .and_then(|store| {
                        store
                            .cast(crate::store::StoreMsg::InjectFailure("drill".into()))
                            .map_err(|_| Error::Unavailable("the store is not running".into()))
                    });
                let _ = reply.send(result);
            }
            SupervisorMsg::Tree(reply) => {
                let root = crate::admin::ActorNode {
                    messages_handled: Some(state.handled),
                    ..crate::admin::ActorNode::new(
                        &myself.get_cell(),
                        "supervisor",
                        state.started.elapsed().as_millis() as u64,
                        0,
                    )
                };
                let children: Vec<(ActorCell, ChildKind, u64, u32)> = state
                    .children
                    .values()
                    .map(|child| {
                        let restarts = match &child.kind {
                            ChildKind::Store => state.store_restarts,
                            ChildKind::Watch { id } => state.watch_restart_counts.get(id).copied().unwrap_or(0),
                            ChildKind::Session { .. } => 0,
                        };
                        (child.cell.clone(), child.kind.clone(), child.started.elapsed().as_millis() as u64, restarts)
                    })
                    .collect();
                in_background(async move {
                    let _ = reply.send(crate::admin::tree(root, children).await);
                });
            }
            SupervisorMsg::Stats(reply) => {
                let _ = reply.send(SupervisorStats {
                    running_sessions: state.sessions.len(),
                    store_restarts: state.store_restarts,
                    session_failures: state.session_failures,
                    active_watches: state.watches.len(),
                    watch_restarts: state.watch_restarts,
                    uptime_ms: state.started.elapsed().as_millis() as u64,
                });
            }
            SupervisorMsg::Drain => {
                state.shutting_down = true;
            }
            SupervisorMsg::Shutdown(reply) => {
                state.shutting_down = true;
                shutdown_sessions(state).await;
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                match state
                    .children
                    .remove(&cell.get_id())
                    .map(|child| child.kind)
                {
                    Some(ChildKind::Session { id, .. }) => {
                        state.sessions.remove(&id);
                        let _ = myself.cast(SupervisorMsg::Kick);
                    }
                    // Paused or deleted on purpose; forget it unless a newer actor took over.
                    Some(ChildKind::Watch { id })
                        if state
                            .watches
                            .get(&id)
                            .is_some_and(|a| a.get_id() == cell.get_id()) =>
                    {
                        state.watches.remove(&id);
                    }
                    Some(ChildKind::Store) if !state.shutting_down => {
                        // The store never stops on its own; treat a clean stop like a failure.
                        let _ = myself.cast(SupervisorMsg::RestartStore);
                    }
                    _ => {}
                }
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                match state
                    .children
                    .remove(&cell.get_id())
                    .map(|child| child.kind)
                {
                    Some(ChildKind::Store) => {
                        if state.store_started.elapsed() > STORE_STABLE_AFTER {
                            state.consecutive_store_failures = 0;
                        }
                        state.consecutive_store_failures += 1;
                        let delay = state.store_backoff();
                        tracing::error!("store failed: {err}; restarting in {delay:?}");
                        myself.send_after(delay, || SupervisorMsg::RestartStore);
                    }
                    Some(ChildKind::Session { id, pid }) => {
                        state.session_failures += 1;
                        state.sessions.remove(&id);
                        tracing::error!(session = %id, "session actor failed: {err}");
                        if let Some(pid) = pid {
                            crate::process::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
                        }
                        let store = state.ctx.store.clone();
                        let message = format!(
                            "session actor failed ({err}); the supervisor caught the failure, \
                             stopped the agent and marked the session failed"
                        );
                        in_background(async move {
                            session_actor::kill_leftovers(&id).await;
                            let finish =
                                Finish::failed(FailureKind::RuntimeError, message, String::new());
                            if let Err(err) = store.fail_active(&id, finish).await {
                                tracing::error!(session = %id, "cannot mark failed session: {err}");
                            }
                            let _ = myself.cast(SupervisorMsg::Kick);
                        });
                    }
                    Some(ChildKind::Watch { id }) => {
                        tracing::error!(watch = %id, "watch actor failed: {err}");
                        state.watches.remove(&id);
                        if !state.shutting_down {
                            state.watch_failed(&myself, id, err.to_string());
                        }
                    }
                    None => {}
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Deliveries stored before `received_before` but never routed (a crash between storing and
/// routing) are routed now; runs are exactly-once, so routing twice is harmless.
async fn route_pending_deliveries(
    store: &StoreClient,
    supervisor: &ActorRef<SupervisorMsg>,
    received_before: &str,
) {
    let pending = match store.pending_deliveries(received_before).await {
        Ok(pending) => pending,
        Err(err) => {
            tracing::error!("cannot load pending webhook deliveries: {err}");
            return;
        }
    };
    for (id, _, payload) in pending {
        match serde_json::from_str::<WatchEvent>(&payload) {
            Ok(event) => {
                let _ = supervisor.cast(SupervisorMsg::RouteDelivery { id, event });
            }
            Err(_) => {
                let _ = store.finish_delivery(&id, "ignored").await;
            }
        }
    }
}

/// A delivery still pending this long after it arrived lost its routing (see above).
const DELIVERY_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Asks every watch actor about `event` at once and collects the sessions they started and
/// the reasons of those that started nothing.
async fn route(watches: Vec<(String, ActorRef<WatchMsg>)>, event: WatchEvent) -> Routed {
    let event = Arc::new(event);
    let mut calls = tokio::task::JoinSet::new();
    for (watch_id, watch) in watches {
        let event = event.clone();
        calls.spawn(async move {
            let verdict = match watch
                .call(
                    |reply| WatchMsg::Event { event, reply },
                    Some(ROUTE_TIMEOUT),
                )
                .await
            {
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

/// The message sessions interrupted by a shutdown carry.
pub const SHUTDOWN_MESSAGE: &str =
    "daemon shut down while the session was running; a rerun is required";

/// Stops every session actor (which kills its agent) and marks its session abandoned (and
/// queues a rerun when `TELECODER_RESUME_INTERRUPTED` is on).
async fn shutdown_sessions(state: &mut SupervisorState) {
    let running: Vec<(String, ActorCell)> = state.sessions.drain().collect();
    for (id, cell) in running {
        let _ = cell
            .stop_and_wait(Some("daemon shutdown".into()), Some(Duration::from_secs(5)))
            .await;
        let finish = Finish::failed(
            FailureKind::Abandoned,
            SHUTDOWN_MESSAGE.into(),
            String::new(),
        );
        if let Err(err) = state.ctx.store.fail_active(&id, finish).await {
            tracing::error!(session = %id, "cannot mark session interrupted: {err}");
        }
        if state.settings().resume_interrupted {
            let rerun = create_rerun(
                state.settings().clone(),
                state.ctx.store.clone(),
                id.clone(),
            );
            if let Err(err) = rerun.await {
                tracing::error!(session = %id, "cannot queue the interrupted session again: {err}");
            }
        }
    }
}

/// Queues an interrupted session again as a rerun (lineage keeps the history together).
fn resume(state: &SupervisorState, id: String) {
    let (settings, store) = (state.settings().clone(), state.ctx.store.clone());
    in_background(async move {
        match create_rerun(settings, store, id.clone()).await {
            Ok(rerun) => {
                tracing::info!(session = %id, rerun = %rerun.id, "interrupted session queued again")
            }
            Err(err) => {
                tracing::error!(session = %id, "cannot queue the interrupted session again: {err}")
            }
        }
    });
}
