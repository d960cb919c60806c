//! The SessionQueue: the FIFO run queue and the session actors it runs, at most
//! `max_concurrent_sessions` at once. It spawns one SessionActor per started session (keyed
//! by session id, with the agent's pid once known), sweeps stale sessions on a timer, and
//! decides what a session actor's end means:
//!
//! * stopped normally → free its slot and start the next pending session;
//! * failed → kill its agent's process group and mark the session `error`, saying the
//!   supervisor caught the failure. Nothing is left `running`.
//!
//! Its handlers never await the store (the store may be the thing that is restarting): store
//! work runs in tracked tasks that report back with messages, and a session claims itself in
//! its own actor once the queue has registered it.

use crate::actor::{answer, Behaviour, Handled, Started};
use crate::admin::ChildKind;
use crate::context::{Context, STOP_GRACE};
use crate::domain::{time, EventKind, FailureKind, NewSession, Session, SessionId};
use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::requests;
use crate::session_actor::{kill_leftovers, SessionArgs, SessionMsg, SessionState};
use crate::store::finish::Abandoned;
use crate::store::queries::RunQueue;
use crate::store::Finish;
use ractor::{ActorRef, RpcReplyPort, SupervisionEvent};
use std::sync::Arc;

/// Messages of the session queue.
pub enum QueueMsg {
    /// Start pending sessions while slots are free.
    Kick,
    /// The run queue, read by a task; start those not yet running while slots are free.
    Start(RunQueue),
    /// Timer: mark stale running sessions abandoned and kill what is left of their agents.
    Sweep,
    /// A sweep is done (its abandoned sessions' processes are dead); stop any of them we still
    /// run, and start pending sessions again.
    Swept(Vec<Abandoned>),
    /// Timer: a tracked task runs the workspace collector (`workspaces::gc`), which never
    /// touches a pending or running session's workspace.
    CollectWorkspaces,
    /// A session's agent process started (so a failure can kill its group).
    AgentStarted { session_id: String, pid: u32 },
    /// Cancel a running session; the reply says whether one ran here.
    Cancel {
        id: String,
        reply: RpcReplyPort<bool>,
    },
    /// Fail a running session's actor on purpose (fault drills and tests).
    InjectFailure {
        id: String,
        reply: RpcReplyPort<Result<()>>,
    },
    /// Running sessions and caught failures.
    Stats(RpcReplyPort<QueueStats>),
    /// The session actors, for the admin tree.
    Children(RpcReplyPort<Vec<crate::admin::Child>>),
    /// Messages handled, for the admin tree.
    Inspect(RpcReplyPort<u64>),
    /// Stop starting sessions (the first step of a graceful shutdown).
    Drain,
    /// Stop starting sessions and hand every running session over to be stopped.
    Shutdown(RpcReplyPort<Vec<(String, ActorRef<SessionMsg>)>>),
}

/// What the queue reports about itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueueStats {
    pub running: usize,
    /// Session actors that failed (and were caught) since start-up.
    pub failures: u32,
}

pub struct QueueState {
    ctx: Arc<Context>,
    /// Running session id → its actor, with its agent's process group once it started.
    sessions: Registry<SessionMsg, Option<u32>>,
    failures: u32,
    handled: u64,
    /// Draining for shutdown: nothing starts any more.
    draining: bool,
    /// A sweep is marking sessions abandoned and killing their agents; nothing starts until it
    /// is done.
    sweeping: bool,
}

pub type SessionQueue = crate::actor::Run<QueueState>;

impl QueueState {
    fn free_slots(&self) -> usize {
        self.ctx
            .settings
            .max_concurrent_sessions
            .saturating_sub(self.sessions.len())
    }

    async fn spawn_session(&mut self, myself: &ActorRef<QueueMsg>, id: SessionId) {
        let args = SessionArgs {
            id: id.clone(),
            ctx: self.ctx.clone(),
        };
        match crate::actor::spawn_child::<SessionState>(args, myself.get_cell()).await {
            Ok(actor) => self.sessions.insert(id.to_string(), actor, None),
            // Still pending in the database: the next kick retries it.
            Err(err) => tracing::warn!(session = %id, "cannot start session: {err}"),
        }
    }

    fn stats(&self) -> QueueStats {
        QueueStats {
            running: self.sessions.len(),
            failures: self.failures,
        }
    }

    /// Reads the run queue in a task; the answer comes back as [`QueueMsg::Start`].
    fn collect_workspaces(&self) {
        if self.draining {
            return;
        }
        let ctx = &self.ctx;
        let (settings, store) = (ctx.settings.clone(), ctx.store.clone());
        ctx.spawn(crate::workspaces::gc::scheduled(
            settings,
            store,
            ctx.metrics.clone(),
        ));
    }

    fn kick(&self, myself: &ActorRef<QueueMsg>) {
        let free = self.free_slots();
        // A sweep in progress kicks again once the agents it abandoned are dead.
        if self.draining || self.sweeping || free == 0 {
            return;
        }
        let (store, owner, me) = (
            self.ctx.store.clone(),
            self.ctx.owner_id.clone(),
            myself.clone(),
        );
        // Ask for enough to skip the ones we already run but that are not claimed yet.
        let limit = free + self.sessions.len();
        self.ctx.spawn(async move {
            match store.run_queue(limit, &owner).await {
                Ok(queue) => {
                    let _ = me.cast(QueueMsg::Start(queue));
                }
                Err(err) => tracing::warn!("cannot read the run queue: {err}"),
            }
        });
    }

    async fn start_pending(&mut self, myself: &ActorRef<QueueMsg>, queue: RunQueue) {
        // Read before a sweep began; the sweep's own kick reads it again.
        if self.sweeping {
            return;
        }
        for id in queue.pending.iter().filter_map(|id| SessionId::parse(id)) {
            let free = self.free_slots().saturating_sub(queue.running_elsewhere);
            if self.draining || free == 0 {
                break;
            }
            if !self.sessions.contains(id.as_str()) {
                self.spawn_session(myself, id).await;
            }
        }
    }

    /// Marks stale sessions abandoned and reaps their agents in a task; reports `Swept`.
    fn sweep(&mut self, myself: &ActorRef<QueueMsg>) {
        if self.sweeping {
            return;
        }
        self.sweeping = true;
        let (store, me) = (self.ctx.store.clone(), myself.clone());
        let cutoff = time::ago(self.ctx.settings.stale);
        self.ctx.spawn(async move {
            let abandoned = store.sweep_stale(cutoff).await.unwrap_or_else(|err| {
                tracing::warn!("stale sweep failed: {err}");
                Vec::new()
            });
            // Reap first, then start: the agents of abandoned sessions (a crashed daemon's
            // too) are dead before their slots are given to pending sessions.
            for session in &abandoned {
                kill_leftovers(&session.finished.session.id).await;
            }
            let _ = me.cast(QueueMsg::Swept(abandoned));
        });
    }

    fn swept(&mut self, myself: &ActorRef<QueueMsg>, abandoned: Vec<Abandoned>) {
        self.sweeping = false;
        for session in abandoned {
            let id = session.finished.session.id;
            if self.ctx.settings.resume_interrupted {
                resume(&self.ctx, id.clone());
            }
            tracing::warn!(session = %id, "session marked abandoned (stale heartbeat)");
            if let Some(running) = self.sessions.get(&id) {
                running.actor.stop(Some("abandoned".into()));
            }
        }
        self.kick(myself);
    }

    /// A session actor failed: kill its agent, mark the session failed, start the next.
    fn failed(&mut self, myself: &ActorRef<QueueMsg>, id: String, pid: Option<u32>, err: String) {
        self.failures += 1;
        tracing::error!(session = %id, "session actor failed: {err}");
        if let Some(pid) = pid {
            crate::process::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
        }
        let (store, me) = (self.ctx.store.clone(), myself.clone());
        let message = format!(
            "session actor failed ({err}); the supervisor caught the failure, \
             stopped the agent and marked the session failed"
        );
        self.ctx.spawn(async move {
            kill_leftovers(&id).await;
            let finish = Finish::failed(FailureKind::RuntimeError, message, String::new());
            if let Err(err) = store.fail_active(&id, finish).await {
                tracing::error!(session = %id, "cannot mark failed session: {err}");
            }
            let _ = me.cast(QueueMsg::Kick);
        });
    }
}

impl Behaviour for QueueState {
    type Msg = QueueMsg;
    type Args = Arc<Context>;

    async fn start(_myself: ActorRef<QueueMsg>, ctx: Arc<Context>) -> Started<Self> {
        Ok(QueueState {
            ctx,
            sessions: Registry::new("session", SessionMsg::InjectFailure),
            failures: 0,
            handled: 0,
            draining: false,
            sweeping: false,
        })
    }

    async fn started(&mut self, myself: ActorRef<QueueMsg>) -> Handled {
        // Start-up recovery: stale running sessions become abandoned, pending ones run again.
        // Both then repeat on the timer for as long as the daemon runs. The sweep kicks the
        // queue when it is done: a crashed instance's agents die before pending sessions take
        // their slots.
        self.sweep(&myself);
        myself.send_interval(self.ctx.settings.heartbeat, || QueueMsg::Sweep);
        // Once now (finishing what a crash interrupted), then on the interval.
        self.collect_workspaces();
        let period = self.ctx.settings.workspace_gc_interval;
        myself.send_interval(period, || QueueMsg::CollectWorkspaces);
        Ok(())
    }

    async fn handle(&mut self, myself: ActorRef<QueueMsg>, message: QueueMsg) -> Handled {
        self.handled += 1;
        match message {
            QueueMsg::Kick => self.kick(&myself),
            QueueMsg::Start(queue) => self.start_pending(&myself, queue).await,
            QueueMsg::Sweep => self.sweep(&myself),
            QueueMsg::Swept(abandoned) => self.swept(&myself, abandoned),
            QueueMsg::CollectWorkspaces => self.collect_workspaces(),
            QueueMsg::AgentStarted { session_id, pid } => {
                if let Some(running) = self.sessions.get_mut(&session_id) {
                    running.extra = Some(pid);
                }
            }
            QueueMsg::Cancel { id, reply } => {
                answer(reply, self.sessions.cast(&id, SessionMsg::Cancel).is_some())
            }
            QueueMsg::InjectFailure { id, reply } => answer(reply, self.sessions.inject(&id)),
            QueueMsg::Stats(reply) => answer(reply, self.stats()),
            QueueMsg::Children(reply) => {
                answer(reply, self.sessions.children(ChildKind::Session, |_| 0))
            }
            QueueMsg::Inspect(reply) => answer(reply, self.handled),
            QueueMsg::Drain => self.draining = true,
            QueueMsg::Shutdown(reply) => {
                self.draining = true;
                let _ = reply.send(self.sessions.drain());
            }
        }
        Ok(())
    }

    async fn child(&mut self, myself: ActorRef<QueueMsg>, event: SupervisionEvent) -> Handled {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _)
                if self.sessions.ended(&cell.get_id()).is_some() =>
            {
                self.kick(&myself);
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some((id, running)) = self.sessions.ended(&cell.get_id()) {
                    self.failed(&myself, id, running.extra, err.to_string());
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Validates and stores a new pending session (the caller kicks the queue).
pub(crate) async fn create_session(ctx: &Context, request: NewSession) -> Result<Session> {
    let session = requests::new_session_record(&ctx.settings, &request, None)?;
    ctx.store
        .insert_session(session.clone(), Vec::new())
        .await?;
    Ok(session)
}

/// Stores a pending rerun of a finished session (the caller kicks the queue).
pub(crate) async fn create_rerun(ctx: &Context, id: &str) -> Result<Session> {
    let parent = ctx.store.require_session(id).await?;
    if !parent.status.is_finished() {
        return Err(Error::Conflict(format!(
            "session {id} is still {}; only finished sessions can be rerun",
            parent.status.as_str()
        )));
    }
    let request = NewSession {
        repo: parent.repo.clone(),
        prompt: parent.prompt.clone(),
        agent: Some(parent.agent.clone()),
        policy: Some(parent.policy_mode),
    };
    let session = requests::new_session_record(&ctx.settings, &request, Some(&parent))?;
    let first = format!(
        "rerun of session {} (attempt {})",
        parent.id, session.attempt
    );
    ctx.store
        .insert_session(session.clone(), vec![(EventKind::Status, first)])
        .await?;
    Ok(session)
}

/// Queues an interrupted session again as a rerun (lineage keeps the history together).
async fn requeue(ctx: &Context, id: &str) {
    match create_rerun(ctx, id).await {
        Ok(rerun) => {
            tracing::info!(session = %id, rerun = %rerun.id, "interrupted session queued again")
        }
        Err(err) => {
            tracing::error!(session = %id, "cannot queue the interrupted session again: {err}")
        }
    }
}

/// [`requeue`] in a tracked task.
fn resume(ctx: &Arc<Context>, id: String) {
    let task_ctx = ctx.clone();
    ctx.spawn(async move { requeue(&task_ctx, &id).await });
}

/// The message sessions interrupted by a shutdown carry.
pub const SHUTDOWN_MESSAGE: &str =
    "daemon shut down while the session was running; a rerun is required";

/// Stops the sessions a shutdown took over (each actor kills its agent), all at once, then
/// marks each abandoned (and queues a rerun when `TELECODER_RESUME_INTERRUPTED` is on).
pub(crate) async fn stop_all(ctx: &Context, running: Vec<(String, ActorRef<SessionMsg>)>) {
    let stops = running
        .iter()
        .map(|(_, actor)| actor.stop_and_wait(Some("daemon shutdown".into()), Some(STOP_GRACE)));
    futures_util::future::join_all(stops).await;
    for (id, _) in running {
        let finish = Finish::failed(
            FailureKind::Abandoned,
            SHUTDOWN_MESSAGE.into(),
            String::new(),
        );
        if let Err(err) = ctx.store.fail_active(&id, finish).await {
            tracing::error!(session = %id, "cannot mark session interrupted: {err}");
        }
        if ctx.settings.resume_interrupted {
            requeue(ctx, &id).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::current::Slot;
    use crate::store::{StoreClient, StoreMsg};
    use std::time::{Duration, Instant};
    use tokio_util::task::TaskTracker;

    /// With no store at all (one that is restarting, say), the queue still answers at once:
    /// its sweep and its kicks wait for the store in tasks, never in a handler.
    #[tokio::test]
    async fn the_queue_answers_while_the_store_is_away() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = crate::settings::Settings::new(dir.path());
        let store: Slot<StoreMsg> = Slot::new("the store");
        let queue: Slot<QueueMsg> = Slot::new("the session queue");
        let ctx = Arc::new(Context {
            store: StoreClient::new(
                store.current(),
                Default::default(),
                settings.database_path(),
            ),
            settings,
            owner_id: "owner".into(),
            runtime: Arc::new(crate::runtime::AcpxRuntime::new(vec!["true".into()])),
            metrics: Default::default(),
            queue: queue.current(),
            tasks: TaskTracker::new(),
        });
        let (actor, _) = crate::actor::spawn_root::<QueueState>(ctx)
            .await
            .expect("spawn");
        for _ in 0..5 {
            actor.cast(QueueMsg::Kick).expect("cast");
            actor.cast(QueueMsg::Sweep).expect("cast");
            let asked = Instant::now();
            let stats = ractor::call_t!(actor, QueueMsg::Stats, 1_000).expect("answers");
            assert_eq!(stats.running, 0);
            let id = "abcdef12".to_owned();
            let cancelled = ractor::call_t!(actor, |reply| QueueMsg::Cancel { id, reply }, 1_000);
            assert_eq!(cancelled.ok(), Some(false));
            assert!(asked.elapsed() < Duration::from_secs(1));
        }
        actor.stop(None);
    }
}
