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

use crate::admin::{Child, ChildKind};
use crate::context::{Context, STOP_GRACE};
use crate::domain::{time, EventKind, FailureKind, NewSession, Session, SessionId};
use crate::error::{Error, Result};
use crate::requests;
use crate::session_actor::{kill_leftovers, SessionActor, SessionArgs, SessionMsg};
use crate::store::finish::Abandoned;
use crate::store::queries::RunQueue;
use crate::store::Finish;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

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
    Children(RpcReplyPort<Vec<Child>>),
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

/// A session actor this queue runs.
struct Running {
    actor: ActorRef<SessionMsg>,
    /// The agent's process group, once it started.
    pid: Option<u32>,
    started: Instant,
}

pub struct QueueState {
    ctx: Arc<Context>,
    /// Running session id → its actor.
    sessions: HashMap<String, Running>,
    /// Actor → session id, for supervision events.
    by_actor: HashMap<ActorId, String>,
    failures: u32,
    handled: u64,
    /// Draining for shutdown: nothing starts any more.
    draining: bool,
    /// A sweep is marking sessions abandoned and killing their agents; nothing starts until it
    /// is done.
    sweeping: bool,
}

pub struct SessionQueue;

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
        match Actor::spawn_linked(None, SessionActor, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                self.by_actor.insert(actor.get_id(), id.to_string());
                let running = Running {
                    actor,
                    pid: None,
                    started: Instant::now(),
                };
                self.sessions.insert(id.to_string(), running);
            }
            // Still pending in the database: the next kick retries it.
            Err(err) => tracing::warn!(session = %id, "cannot start session: {err}"),
        }
    }

    /// Reads the run queue in a task; the answer comes back as [`QueueMsg::Start`].
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

    async fn start(&mut self, myself: &ActorRef<QueueMsg>, queue: RunQueue) {
        // Read before a sweep began; the sweep's own kick reads it again.
        if self.sweeping {
            return;
        }
        for id in queue.pending.iter().filter_map(|id| SessionId::parse(id)) {
            let free = self.free_slots().saturating_sub(queue.running_elsewhere);
            if self.draining || free == 0 {
                break;
            }
            if !self.sessions.contains_key(id.as_str()) {
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

    /// Forgets a session actor that ended; its session id if it was one of ours.
    fn forget(&mut self, actor: &ActorId) -> Option<(String, Option<u32>)> {
        let id = self.by_actor.remove(actor)?;
        let running = self.sessions.remove(&id)?;
        Some((id, running.pid))
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

    fn children(&self) -> Vec<Child> {
        self.sessions
            .iter()
            .map(|(id, running)| Child {
                cell: running.actor.get_cell(),
                kind: ChildKind::Session(id.clone()),
                started: running.started,
                restarts: 0,
            })
            .collect()
    }

    fn inject_failure(&self, id: &str) -> Result<()> {
        let running = self
            .sessions
            .get(id)
            .ok_or_else(|| Error::NotFound(format!("session {id} is not running here")))?;
        running
            .actor
            .cast(SessionMsg::InjectFailure("drill".into()))
            .map_err(|_| Error::Unavailable(format!("session {id} actor is gone")))
    }
}

impl Actor for SessionQueue {
    type Msg = QueueMsg;
    type State = QueueState;
    type Arguments = Arc<Context>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        ctx: Arc<Context>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(QueueState {
            ctx,
            sessions: HashMap::new(),
            by_actor: HashMap::new(),
            failures: 0,
            handled: 0,
            draining: false,
            sweeping: false,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Start-up recovery: stale running sessions become abandoned, pending ones run again.
        // Both then repeat on the timer for as long as the daemon runs. The sweep kicks the
        // queue when it is done: a crashed instance's agents die before pending sessions take
        // their slots.
        state.sweep(&myself);
        myself.send_interval(state.ctx.settings.heartbeat, || QueueMsg::Sweep);
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
            QueueMsg::Kick => state.kick(&myself),
            QueueMsg::Start(queue) => state.start(&myself, queue).await,
            QueueMsg::Sweep => state.sweep(&myself),
            QueueMsg::Swept(abandoned) => state.swept(&myself, abandoned),
            QueueMsg::AgentStarted { session_id, pid } => {
                if let Some(running) = state.sessions.get_mut(&session_id) {
                    running.pid = Some(pid);
                }
            }
            QueueMsg::Cancel { id, reply } => {
                let running = state.sessions.get(&id);
                if let Some(running) = running {
                    let _ = running.actor.cast(SessionMsg::Cancel);
                }
                let _ = reply.send(running.is_some());
            }
            QueueMsg::InjectFailure { id, reply } => {
                let _ = reply.send(state.inject_failure(&id));
            }
            QueueMsg::Stats(reply) => {
                let _ = reply.send(QueueStats {
                    running: state.sessions.len(),
                    failures: state.failures,
                });
            }
            QueueMsg::Children(reply) => {
                let _ = reply.send(state.children());
            }
            QueueMsg::Inspect(reply) => {
                let _ = reply.send(state.handled);
            }
            QueueMsg::Drain => state.draining = true,
            QueueMsg::Shutdown(reply) => {
                state.draining = true;
                state.by_actor.clear();
                let running = state.sessions.drain().map(|(id, r)| (id, r.actor));
                let _ = reply.send(running.collect());
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
            SupervisionEvent::ActorTerminated(cell, _, _)
                if state.forget(&cell.get_id()).is_some() =>
            {
                state.kick(&myself);
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some((id, pid)) = state.forget(&cell.get_id()) {
                    state.failed(&myself, id, pid, err.to_string());
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
