//! The SessionActor: one per running session, a child of the session queue. It claims the
//! session once it runs (the queue never waits on the store for it), lets a worker task
//! prepare the workspace and run the agent, records everything the worker reports (in order),
//! heartbeats on a timer, writes the outcome and stops.

use crate::actor::{Behaviour, Handled, Started};
use crate::context::Context;
use crate::domain::{AgentFacts, EventKind, FailureKind, Session, SessionId};
use crate::process::{kill_session_processes, terminate_group};
use crate::queue::QueueMsg;
use crate::runtime::{AgentEvent, AgentReport, AgentRequest, AgentRun};
use crate::store::Finish;
use crate::workspace::{self, Workspace};
use ractor::{ActorRef, RpcReplyPort};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

/// Messages of a session actor.
pub enum SessionMsg {
    /// Timer tick: refresh the heartbeat.
    Heartbeat,
    /// Worker: a status line for the event stream.
    Status(String),
    /// Worker: the workspace exists.
    WorkspaceReady(Workspace),
    /// Worker: the agent process started.
    AgentSpawned(u32),
    /// Worker: a burst of assistant text.
    Output(String),
    /// Worker: a tool call or plan of the agent (native runtime), as its event.
    Activity(EventKind, String),
    /// Worker: what the runtime learned about the agent's side (its session id, usage).
    AgentFacts(Box<AgentFacts>),
    /// Worker: the run is over.
    Finished(Box<Finish>),
    /// Stop the agent; the session ends as `cancelled`.
    Cancel,
    /// A snapshot for the admin view.
    Inspect(RpcReplyPort<SessionSnapshot>),
    /// Fail on purpose (tests and fault drills prove the supervisor's strategy with it).
    InjectFailure(String),
}

/// What a session actor says about itself.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionSnapshot {
    pub session_id: String,
    pub state: String,
    pub agent: String,
    pub pid: Option<u32>,
    /// The agent's process group (it leads its own group, so this equals `pid`).
    pub process_group: Option<u32>,
    pub last_heartbeat_age_ms: u64,
    pub messages_handled: u64,
}

pub struct SessionArgs {
    pub id: SessionId,
    pub ctx: Arc<Context>,
    pub turn: ClaimTurn,
}

/// A session's place in the order of claims: it claims once the one before it has (or gave
/// up), without the queue waiting for either.
pub struct ClaimTurn {
    pub after: Option<tokio::sync::oneshot::Receiver<()>>,
    /// Dropped once this session's claim is done, however it went.
    pub done: tokio::sync::oneshot::Sender<()>,
}

pub struct SessionState {
    id: SessionId,
    ctx: Arc<Context>,
    /// Set once this actor has claimed the session (`pending → running`); until then, and
    /// for good when the claim found the session no longer pending, it touches nothing.
    session: Option<Session>,
    /// Taken by the claim.
    turn: Option<ClaimTurn>,
    phase: &'static str,
    pid: Option<u32>,
    last_heartbeat: Instant,
    handled: u64,
    cancel: CancellationToken,
    /// Cancels the worker however the actor ends, even by panic.
    _cancel_on_drop: DropGuard,
    worker: Option<JoinHandle<()>>,
}

pub type SessionActor = crate::actor::Run<SessionState>;

impl Behaviour for SessionState {
    type Msg = SessionMsg;
    type Args = SessionArgs;

    async fn start(_myself: ActorRef<SessionMsg>, args: SessionArgs) -> Started<Self> {
        let cancel = CancellationToken::new();
        Ok(SessionState {
            id: args.id,
            ctx: args.ctx,
            session: None,
            turn: Some(args.turn),
            phase: "claiming",
            pid: None,
            last_heartbeat: Instant::now(),
            handled: 0,
            _cancel_on_drop: cancel.clone().drop_guard(),
            cancel,
            worker: None,
        })
    }

    async fn started(&mut self, myself: ActorRef<SessionMsg>) -> Handled {
        // The claim runs here, after the queue registered this actor: the queue's mailbox never
        // waits on the store. A store that cannot be reached leaves the session pending; the
        // actor stops cleanly and the next kick tries again.
        let mut turn = self.turn.take();
        if let Some(after) = turn.as_mut().and_then(|turn| turn.after.take()) {
            let _ = after.await;
        }
        let claimed = self
            .ctx
            .store
            .claim(self.id.as_str(), &self.ctx.owner_id)
            .await;
        drop(turn);
        let session = match claimed {
            Ok(Some(session)) => session,
            Ok(None) => {
                myself.stop(Some("session is no longer pending".into()));
                return Ok(());
            }
            Err(err) => {
                tracing::warn!(session = %self.id, "cannot claim session: {err}");
                myself.stop(Some("claim failed".into()));
                return Ok(());
            }
        };
        self.session = Some(session.clone());
        self.phase = "claimed";
        tracing::info!(session = %self.id, agent = %session.agent, "session started");
        myself.send_interval(self.ctx.settings.heartbeat, || SessionMsg::Heartbeat);
        let worker = run_worker(
            session,
            self.ctx.clone(),
            myself.clone(),
            self.cancel.clone(),
        );
        self.worker = Some(tokio::spawn(worker));
        Ok(())
    }

    async fn handle(&mut self, myself: ActorRef<SessionMsg>, message: SessionMsg) -> Handled {
        self.handled += 1;
        let store = &self.ctx.store;
        let id = self.id.as_str();
        match message {
            SessionMsg::Heartbeat => {
                self.last_heartbeat = Instant::now();
                if !store.heartbeat(id, &self.ctx.owner_id).await? {
                    tracing::warn!(session = %id, "session was taken away (marked stale); stopping its agent");
                    self.cancel.cancel();
                    myself.stop(Some("session no longer owned".into()));
                }
            }
            SessionMsg::Status(line) => {
                store.append_event(id, EventKind::Status, &line).await?;
            }
            SessionMsg::WorkspaceReady(workspace) => {
                self.phase = "running";
                store.set_workspace(id, &workspace).await?;
            }
            SessionMsg::AgentSpawned(pid) => {
                self.pid = Some(pid);
                store.set_agent_pid(id, Some(pid)).await?;
                self.ctx.queue.cast(QueueMsg::AgentStarted {
                    session_id: id.to_owned(),
                    pid,
                });
            }
            SessionMsg::Output(text) => {
                store.append_event(id, EventKind::Output, &text).await?;
            }
            SessionMsg::Activity(kind, data) => {
                store.append_event(id, kind, &data).await?;
            }
            SessionMsg::AgentFacts(facts) => {
                store.record_agent_facts(id, *facts).await?;
            }
            SessionMsg::Finished(finish) => {
                self.phase = "finishing";
                // The runtime already killed the group; never signal a pid that may be reused.
                self.pid = None;
                let status = finish.status;
                store.finish(id, &self.ctx.owner_id, *finish).await?;
                tracing::info!(session = %id, status = status.as_str(), "session finished");
                myself.stop(None);
            }
            SessionMsg::Cancel => {
                self.phase = "cancelling";
                self.cancel.cancel();
            }
            SessionMsg::Inspect(reply) => {
                let _ = reply.send(SessionSnapshot {
                    session_id: id.to_owned(),
                    state: self.phase.to_owned(),
                    agent: self
                        .session
                        .as_ref()
                        .map(|s| s.agent.clone())
                        .unwrap_or_default(),
                    pid: self.pid,
                    process_group: self.pid,
                    last_heartbeat_age_ms: self.last_heartbeat.elapsed().as_millis() as u64,
                    messages_handled: self.handled,
                });
            }
            SessionMsg::InjectFailure(reason) => {
                return Err(format!("injected session failure: {reason}").into());
            }
        }
        Ok(())
    }

    async fn stopped(&mut self, _myself: ActorRef<SessionMsg>) -> Handled {
        self.cancel.cancel();
        if let Some(worker) = self.worker.take() {
            worker.abort();
        }
        if let Some(pid) = self.pid {
            terminate_group(pid, Duration::from_secs(2)).await;
        }
        // Only a session this actor ran: an actor that lost the claim must not touch processes
        // of a session another daemon runs.
        if self.session.is_some() {
            kill_leftovers(self.id.as_str()).await;
        }
        Ok(())
    }
}

/// Kills the processes of a session that left its agent's process group (`setsid`, double
/// forks), found by their environment marker; off the async threads, since it reads `/proc`.
/// Used when a session ends, whatever the runtime, and by the queue's reapers.
pub async fn kill_leftovers(session_id: &str) {
    let id = session_id.to_owned();
    let killed = tokio::task::spawn_blocking(move || kill_session_processes(&id))
        .await
        .unwrap_or(0);
    if killed > 0 {
        tracing::warn!(session = %session_id, killed, "killed agent processes that outlived their session");
    }
}

/// The worker: everything slow happens here, reported to the actor as messages.
async fn run_worker(
    session: Session,
    ctx: Arc<Context>,
    actor: ActorRef<SessionMsg>,
    cancel: CancellationToken,
) {
    let report = |message: SessionMsg| {
        let _ = actor.cast(message);
    };
    report(SessionMsg::Status(session.policy_line()));
    // Issue 15: a continuation runs in its parent's workspace and carries the conversation.
    let prepared = if session.continued_from.is_empty() {
        report(SessionMsg::Status("setting up workspace".into()));
        clone_workspace(&session, &ctx, &cancel)
            .await
            .map(|workspace| (workspace, None))
    } else {
        report(SessionMsg::Status(format!(
            "continuing in the workspace of session {}",
            session.continued_from
        )));
        crate::conversation::resume(&ctx.store, &session, ctx.runtime.loads_sessions())
            .await
            .map(|(workspace, carried)| (workspace, Some(carried)))
    };
    let (workspace, carried) = match prepared {
        Ok(prepared) => prepared,
        Err(message) => {
            let kind = if cancel.is_cancelled() {
                FailureKind::Cancelled
            } else {
                FailureKind::RuntimeError
            };
            report(failed(kind, message));
            return;
        }
    };
    report(SessionMsg::WorkspaceReady(workspace.clone()));
    report(SessionMsg::Status(format!(
        "running {}",
        ctx.runtime.name()
    )));
    if let Some(carried) = &carried {
        report(SessionMsg::Status(carried.notice.clone()));
    }
    let request = agent_request(&session, &ctx, workspace.dir, carried);
    if request.decider.is_some() && !ctx.runtime.asks_people() {
        report(SessionMsg::Status(
            "policy ask needs TELECODER_RUNTIME=native: nobody can be asked, so everything \
             beyond reading is denied"
                .into(),
        ));
    }
    let (events_tx, mut events_rx) = mpsc::channel(64);
    let run = ctx.runtime.run(AgentRun {
        request,
        events: events_tx,
        cancel,
    });
    // Every runtime's output passes here: a secret the agent prints in pieces is masked before
    // any piece is stored or streamed.
    let mut redactor = ctx.settings.redactor.stream();
    let forward = async {
        while let Some(event) = events_rx.recv().await {
            match event {
                AgentEvent::Spawned { pid } => report(SessionMsg::AgentSpawned(pid)),
                AgentEvent::Output(text) => {
                    let shown = redactor.push(&text);
                    if !shown.is_empty() {
                        report(SessionMsg::Output(shown));
                    }
                }
                AgentEvent::Notice(text) => report(SessionMsg::Status(text)),
                AgentEvent::Tool(data) => report(SessionMsg::Activity(EventKind::Tool, data)),
                AgentEvent::Plan(data) => report(SessionMsg::Activity(EventKind::Plan, data)),
                AgentEvent::Facts(facts) => report(SessionMsg::AgentFacts(Box::new(facts))),
            }
        }
        let rest = redactor.finish();
        if !rest.is_empty() {
            report(SessionMsg::Output(rest));
        }
    };
    let (agent_report, ()) = tokio::join!(run, forward);
    report(SessionMsg::Finished(Box::new(finish_from(agent_report))));
}

/// Clones the session's repository into a workspace of its own.
async fn clone_workspace(
    session: &Session,
    ctx: &Context,
    cancel: &CancellationToken,
) -> Result<Workspace, String> {
    let id = SessionId::parse(&session.id).ok_or("invalid session id")?;
    let source = crate::requests::clone_source(&ctx.settings, &session.repo)
        .map_err(|err| err.to_string())?;
    workspace::prepare(&source, &ctx.settings, &id, cancel).await
}

/// What the runtime is asked to run, from the session's record and the daemon's settings; a
/// later turn of a conversation gets what `carried` says (issue 15).
fn agent_request(
    session: &Session,
    ctx: &Context,
    work_dir: std::path::PathBuf,
    carried: Option<crate::conversation::Carried>,
) -> AgentRequest {
    let (prompt, resume) = match carried {
        Some(carried) => (carried.prompt, carried.resume),
        None => (session.prompt.clone(), None),
    };
    AgentRequest {
        session_id: session.id.clone(),
        work_dir,
        prompt,
        agent: session.agent.clone(),
        command_override: ctx
            .settings
            .agent_command(&session.agent)
            .map(str::to_owned),
        permission: session.effective_permission_mode,
        write_policy: session.workspace_write_policy,
        max_runtime: Duration::from_secs(session.max_runtime_seconds),
        scratch_dir: ctx.settings.data_dir.join("tmp"),
        max_output_bytes: ctx.settings.max_output_bytes,
        env_remove: ctx.settings.agent_env_blocklist.clone(),
        resume,
        decider: crate::approvals::decider_for(session, &ctx.approvals, &ctx.store, &ctx.settings),
    }
}

fn failed(kind: FailureKind, message: String) -> SessionMsg {
    SessionMsg::Finished(Box::new(Finish::failed(kind, message, String::new())))
}

fn finish_from(report: AgentReport) -> Finish {
    match report.outcome {
        Ok(()) => Finish::complete(report.text),
        Err(failure) => Finish::failed(failure.kind, failure.message, report.text),
    }
}
