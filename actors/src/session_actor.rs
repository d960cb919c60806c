//! The SessionActor: one per running session. It claims the session, lets a worker task
//! prepare the workspace and run the agent, records everything the worker reports (in order),
//! heartbeats on a timer, writes the outcome and stops.

use crate::domain::{AgentFacts, EventKind, FailureKind, Session, SessionId};
use crate::process::{kill_session_processes, terminate_group};
use crate::runtime::{AgentEvent, AgentReport, AgentRequest, AgentRuntime};
use crate::settings::Settings;
use crate::store::{Finish, StoreClient};
use crate::workspace::{self, Workspace};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

/// What every session actor shares: configuration, identity and the agent runtime.
pub struct SessionContext {
    pub settings: Settings,
    /// This daemon instance; recorded as the session's owner.
    pub owner_id: String,
    pub store: StoreClient,
    pub runtime: Arc<dyn AgentRuntime>,
    pub metrics: crate::metrics::Metrics,
    /// Approvals waited for in this daemon (policy `ask`, issue 15).
    pub approvals: Arc<crate::approvals::ApprovalHub>,
}

/// The registered name of a session's actor; a second actor for the same session cannot start.
pub fn actor_name(session_id: &str) -> String {
    format!("telecoder.session.{session_id}")
}

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
    pub ctx: Arc<SessionContext>,
}

pub struct SessionState {
    id: SessionId,
    ctx: Arc<SessionContext>,
    /// `None` when the session was no longer pending: the actor stops at once.
    session: Option<Session>,
    phase: &'static str,
    pid: Option<u32>,
    last_heartbeat: Instant,
    handled: u64,
    cancel: CancellationToken,
    /// Cancels the worker however the actor ends, even by panic.
    _cancel_on_drop: DropGuard,
    worker: Option<JoinHandle<()>>,
}

pub struct SessionActor;

impl Actor for SessionActor {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: SessionArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let session = args
            .ctx
            .store
            .claim(args.id.as_str(), &args.ctx.owner_id)
            .await?;
        let cancel = CancellationToken::new();
        Ok(SessionState {
            id: args.id,
            ctx: args.ctx,
            session,
            phase: "claimed",
            pid: None,
            last_heartbeat: Instant::now(),
            handled: 0,
            _cancel_on_drop: cancel.clone().drop_guard(),
            cancel,
            worker: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let Some(session) = state.session.clone() else {
            myself.stop(Some("session is no longer pending".into()));
            return Ok(());
        };
        tracing::info!(session = %state.id, agent = %session.agent, "session started");
        myself.send_interval(state.ctx.settings.heartbeat, || SessionMsg::Heartbeat);
        let worker = run_worker(
            session,
            state.ctx.clone(),
            myself.clone(),
            state.cancel.clone(),
        );
        state.worker = Some(tokio::spawn(worker));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.handled += 1;
        let store = &state.ctx.store;
        let id = state.id.as_str();
        match message {
            SessionMsg::Heartbeat => {
                state.last_heartbeat = Instant::now();
                if !store.heartbeat(id, &state.ctx.owner_id).await? {
                    tracing::warn!(session = %id, "session was taken away (marked stale); stopping its agent");
                    state.cancel.cancel();
                    myself.stop(Some("session no longer owned".into()));
                }
            }
            SessionMsg::Status(line) => {
                store.append_event(id, EventKind::Status, &line).await?;
            }
            SessionMsg::WorkspaceReady(workspace) => {
                state.phase = "running";
                let dir = workspace.dir.to_string_lossy();
                store.set_workspace(id, &workspace.branch, &dir).await?;
            }
            SessionMsg::AgentSpawned(pid) => {
                state.pid = Some(pid);
                store.set_agent_pid(id, Some(pid)).await?;
                if let Ok(supervisor) = crate::supervisor::resolve() {
                    let _ = supervisor.cast(crate::supervisor::SupervisorMsg::AgentStarted {
                        session_id: id.to_owned(),
                        pid,
                    });
                }
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
                state.phase = "finishing";
                // The runtime already killed the group; never signal a pid that may be reused.
                state.pid = None;
                let status = finish.status;
                store.finish(id, &state.ctx.owner_id, *finish).await?;
                tracing::info!(session = %id, status = status.as_str(), "session finished");
                myself.stop(None);
            }
            SessionMsg::Cancel => {
                state.phase = "cancelling";
                state.cancel.cancel();
            }
            SessionMsg::Inspect(reply) => {
                let _ = reply.send(SessionSnapshot {
                    session_id: id.to_owned(),
                    state: state.phase.to_owned(),
                    agent: state
                        .session
                        .as_ref()
                        .map(|s| s.agent.clone())
                        .unwrap_or_default(),
                    pid: state.pid,
                    process_group: state.pid,
                    last_heartbeat_age_ms: state.last_heartbeat.elapsed().as_millis() as u64,
                    messages_handled: state.handled,
                });
            }
            SessionMsg::InjectFailure(reason) => {
                return Err(format!("injected session failure: {reason}").into());
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.cancel.cancel();
        if let Some(worker) = state.worker.take() {
            worker.abort();
        }
        if let Some(pid) = state.pid {
            terminate_group(pid, Duration::from_secs(2)).await;
        }
        // Only a session this actor ran: an actor that lost the claim must not touch processes
        // of a session another daemon runs.
        if state.session.is_some() {
            kill_leftovers(state.id.as_str()).await;
        }
        Ok(())
    }
}

/// Kills the processes of a session that left its agent's process group (`setsid`, double
/// forks), found by their environment marker; off the async threads, since it reads `/proc`.
/// Used when a session ends, whatever the runtime, and by the supervisor's reapers.
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
    ctx: Arc<SessionContext>,
    actor: ActorRef<SessionMsg>,
    cancel: CancellationToken,
) {
    let report = |message: SessionMsg| {
        let _ = actor.cast(message);
    };
    report(SessionMsg::Status(session.policy_line()));
    // Issue 15: a continuation runs in its parent's workspace and carries the conversation.
    let continuation = !session.continued_from.is_empty();
    let workspace = if continuation {
        report(SessionMsg::Status(format!(
            "continuing in the workspace of session {}",
            session.continued_from
        )));
        crate::conversation::reuse_workspace(&session)
    } else {
        report(SessionMsg::Status("setting up workspace".into()));
        clone_workspace(&session, &ctx, &cancel).await
    };
    let workspace = match workspace {
        Ok(workspace) => workspace,
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
    let carried = if continuation {
        let can_load = ctx.runtime.loads_sessions();
        match crate::conversation::carry(&ctx.store, &session, can_load).await {
            Ok(carried) => Some(carried),
            Err(err) => {
                let message = format!("cannot read the conversation: {err}");
                report(failed(FailureKind::RuntimeError, message));
                return;
            }
        }
    } else {
        None
    };
    let decider =
        crate::approvals::decider_for(&session, &ctx.approvals, &ctx.store, &ctx.settings);
    if decider.is_some() && !ctx.runtime.asks_people() {
        report(SessionMsg::Status(
            "policy ask needs TELECODER_RUNTIME=native: nobody can be asked, so everything \
             beyond reading is denied"
                .into(),
        ));
    }
    report(SessionMsg::WorkspaceReady(workspace.clone()));
    report(SessionMsg::Status(format!(
        "running {}",
        ctx.runtime.name()
    )));
    if let Some(carried) = &carried {
        report(SessionMsg::Status(carried.notice.clone()));
    }
    let (prompt, resume) = match carried {
        Some(carried) => (carried.prompt, carried.resume),
        None => (session.prompt.clone(), None),
    };
    let request = AgentRequest {
        session_id: session.id.clone(),
        work_dir: workspace.dir,
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
        decider,
    };
    let (events_tx, mut events_rx) = mpsc::channel(64);
    let run = ctx.runtime.run(request, events_tx, cancel);
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
    ctx: &SessionContext,
    cancel: &CancellationToken,
) -> Result<Workspace, String> {
    let id = SessionId::parse(&session.id).ok_or("invalid session id")?;
    let source = crate::requests::clone_source(&ctx.settings, &session.repo)
        .map_err(|err| err.to_string())?;
    workspace::prepare(&source, &ctx.settings.workspaces_dir(), &id, cancel).await
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
