//! The native runtime: TeleCoder speaks ACP to the agent itself, over the agent's stdio, with
//! the official Rust SDK (`agent-client-protocol`). No Node client per session, and the whole
//! conversation is visible: tool calls, plans, permission requests, usage.
//!
//! One run: spawn the agent in its own process group (scrubbed environment, the session
//! marker), open an ACP connection on its stdin/stdout, `initialize` → `session/new` → one
//! `session/prompt`; stream what it reports; on cancel or timeout send `session/cancel`, give
//! it a grace period, then kill the group. The SDK's futures are `Send` (5.x), so connections
//! run on the daemon's tokio runtime like everything else.

mod budget;
mod client;
pub mod fs;
pub mod permission;
mod progress;
pub mod terminal;

use super::agent_process::{self, AgentProcess};
use super::output::{
    failure, last_meaningful_line, mentions_permission, OutputBuffer, COALESCE_WINDOW,
};
use super::{
    agents, AgentEvent, AgentFailure, AgentReport, AgentRequest, AgentRun, AgentRuntime, BoxFuture,
};
use crate::domain::{AgentFacts, FailureKind};
use agent_client_protocol::Lines;
use client::{Broken, ClientContext, Opened, Resumed, Turn};
use futures_util::{SinkExt, StreamExt};
use permission::{PermissionDecider, PolicyDecider};
use progress::Shared;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;
use terminal::{TerminalSettings, Terminals};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::mpsc;
use tokio::time::{interval, sleep, sleep_until, Instant, MissedTickBehavior};
use tokio_util::codec::{FramedRead, FramedWrite, LinesCodec, LinesCodecError};
use tokio_util::sync::CancellationToken;

/// How long the agent gets to end its turn after `session/cancel` before its group is killed.
const CANCEL_GRACE: Duration = Duration::from_secs(2);
/// How long the agent gets to exit after its stdin closes at the end of a run.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// The maximum runtime counts from the prompt, as acpx's `--timeout` does; starting the agent
/// and opening its session get this much on top before the run is stopped anyway.
const STARTUP_SLACK: Duration = Duration::from_secs(10);
/// One JSON-RPC message from the agent larger than this is skipped: memory stays bounded
/// whatever the agent prints.
const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;
const OVERSIZED_LINE: &str = "\n[agent message over 8 MiB skipped]\n";

/// Runs agents by speaking ACP to them directly.
#[derive(Clone)]
pub struct NativeRuntime {
    decider: Arc<dyn PermissionDecider>,
}

impl Default for NativeRuntime {
    fn default() -> Self {
        Self::new(Arc::new(PolicyDecider))
    }
}

impl NativeRuntime {
    /// A runtime whose permission questions go to `decider`.
    pub fn new(decider: Arc<dyn PermissionDecider>) -> Self {
        Self { decider }
    }

    async fn run_inner(&self, run: AgentRun) -> AgentReport {
        let (request, events, cancel) = (run.request, run.events, run.cancel);
        let refused =
            |message: String| OutputBuffer::new(0).failed(FailureKind::RuntimeError, message);
        let argv = match agents::command_for(&request.agent, request.command_override.as_deref()) {
            Ok(argv) => argv,
            Err(err) => return refused(err.to_string()),
        };
        let workspace = match fs::WorkspaceFs::new(&request.work_dir) {
            Ok(workspace) => workspace,
            Err(err) => {
                return refused(format!(
                    "cannot open the workspace {}: {err}",
                    request.work_dir.display()
                ))
            }
        };
        let Some((program, args)) = argv.split_first() else {
            return refused("the agent command is empty".into());
        };
        let child = match agent_process::spawn(&request, program, args, Stdio::piped()) {
            Ok(child) => child,
            Err(err) => {
                return refused(format!(
                    "cannot start agent {} ({program}): {err}",
                    request.agent
                ))
            }
        };
        let Some(mut agent) = AgentProcess::adopt(child, &events).await else {
            return refused("the agent exited at once".into());
        };
        let (Some(stdin), Some(stdout)) = (agent.child.stdin.take(), agent.child.stdout.take())
        else {
            return refused("the agent's stdio is unavailable".into());
        };

        let shared = Arc::new(Shared::new(request.max_output_bytes));
        let ctx = Arc::new(ClientContext {
            session_id: request.session_id.clone(),
            mode: request.permission,
            writes: request.write_policy,
            decider: request
                .decider
                .as_ref()
                .map_or_else(|| self.decider.clone(), |handle| handle.0.clone()),
            terminals: Terminals::new(
                TerminalSettings {
                    session_id: request.session_id.clone(),
                    process_group: agent.pid,
                    env_remove: request.env_remove.clone(),
                },
                workspace.clone(),
            ),
            fs: workspace,
            shared: shared.clone(),
            stop: CancellationToken::new(),
            budget: budget::Budget::default(),
        });
        let run = Run {
            request: &request,
            ctx: &ctx,
            events: &events,
        };
        let (ended, stopped) = run.drive(stdin, stdout, &cancel).await;
        ctx.terminals.kill_all();
        // After a finished conversation the agent's stdin is closed: it gets a moment to exit.
        let status = if ended.is_some() {
            agent.end_within(sleep(EXIT_GRACE)).await
        } else {
            agent.stop().await;
            None
        };
        let stderr_tail = agent.stderr_tail().await;
        if let Some(Ok(turn)) = &ended {
            if let Some(usage) = turn.usage.clone() {
                shared.add_turn_usage(usage);
            }
            let facts = AgentFacts {
                stop_reason: Some(wire_name(&turn.stop_reason)),
                token_usage: shared.usage(),
                ..AgentFacts::default()
            };
            let _ = events.send(AgentEvent::Facts(facts)).await;
        }
        shared.pump(&events, true).await;
        let output = shared.take_output();
        let verdict = Verdict {
            request: &request,
            status,
            stderr: &stderr_tail,
            diagnostics: &output.diagnostics,
            stats: shared.stats(),
        };
        let outcome = verdict.judge(stopped, ended);
        output.finish(outcome)
    }
}

impl AgentRuntime for NativeRuntime {
    fn name(&self) -> &'static str {
        "native"
    }

    fn loads_sessions(&self) -> bool {
        true
    }

    fn asks_people(&self) -> bool {
        true
    }

    fn run(&self, run: AgentRun) -> BoxFuture<'_, AgentReport> {
        Box::pin(self.run_inner(run))
    }
}

/// Why the run loop stopped the turn itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stopped {
    Cancelled,
    Timeout,
}

/// One run's loop: the conversation, the coalescing tick, cancel and the deadline.
struct Run<'a> {
    request: &'a AgentRequest,
    ctx: &'a Arc<ClientContext>,
    events: &'a mpsc::Sender<AgentEvent>,
}

impl Run<'_> {
    /// Returns how the conversation ended (`None`: it was still going when its grace ran
    /// out) and whether we stopped it.
    async fn drive(
        &self,
        stdin: ChildStdin,
        stdout: ChildStdout,
        cancel: &CancellationToken,
    ) -> (Option<Result<Turn, Broken>>, Option<Stopped>) {
        let shared = self.ctx.shared.clone();
        let (prompted_tx, mut prompted) = tokio::sync::oneshot::channel::<()>();
        let on_open = {
            let shared = shared.clone();
            move |opened: Opened| {
                let notice = match &opened.resumed {
                    Resumed::Fresh => None,
                    Resumed::Loaded => Some(format!(
                        "loaded the agent's session {} (the conversation so far)",
                        opened.agent_session_id
                    )),
                    Resumed::NotLoaded(why) => Some(format!(
                        "could not load the agent's earlier session ({why}); a new session gets \
                         the earlier turns in its prompt"
                    )),
                };
                if let Some(notice) = notice {
                    shared.push_event(AgentEvent::Notice(notice));
                }
                shared.push_event(AgentEvent::Facts(AgentFacts {
                    agent_session_id: Some(opened.agent_session_id),
                    load_session: Some(opened.load_session),
                    ..AgentFacts::default()
                }));
                let _ = prompted_tx.send(());
            }
        };
        let conversation = client::converse(
            stdio_transport(stdin, stdout, shared.clone()),
            self.ctx.clone(),
            self.request.work_dir.clone(),
            self.request.prompt.clone(),
            self.request.resume.clone(),
            on_open,
        );
        let mut conversation = std::pin::pin!(conversation);
        let max_runtime = self.request.max_runtime;
        let mut deadline = Instant::now() + max_runtime + STARTUP_SLACK;
        let mut waiting_for_prompt = true;
        let mut tick = interval(COALESCE_WINDOW);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut stopped: Option<(Stopped, Instant)> = None;
        let budget = &self.ctx.budget;
        loop {
            let grace_over = stopped.map_or(deadline, |(_, at)| at);
            // The budget stands still while a question waits for an answer (a person deciding).
            let timeout = budget.deadline(deadline);
            tokio::select! {
                ended = &mut conversation => return (Some(ended), stopped.map(|(why, _)| why)),
                sent = &mut prompted, if waiting_for_prompt => {
                    waiting_for_prompt = false;
                    if sent.is_ok() {
                        deadline = Instant::now() + max_runtime;
                    }
                }
                () = shared.woken() => shared.pump(self.events, false).await,
                _ = tick.tick() => shared.pump(self.events, true).await,
                () = cancel.cancelled(), if stopped.is_none() => {
                    stopped = Some((Stopped::Cancelled, Instant::now() + CANCEL_GRACE));
                    self.ctx.stop.cancel();
                }
                () = budget.changed() => {}
                () = sleep_until(timeout.unwrap_or(deadline)), if stopped.is_none() && timeout.is_some() => {
                    stopped = Some((Stopped::Timeout, Instant::now() + CANCEL_GRACE));
                    self.ctx.stop.cancel();
                }
                () = sleep_until(grace_over), if stopped.is_some() => {
                    return (None, stopped.map(|(why, _)| why));
                }
            }
        }
    }
}

/// The agent's stdio as an ACP transport: one JSON-RPC message per line, lines bounded.
fn stdio_transport(
    stdin: ChildStdin,
    stdout: ChildStdout,
    shared: Arc<Shared>,
) -> Lines<
    impl futures_util::Sink<String, Error = std::io::Error> + Send + 'static,
    impl futures_util::Stream<Item = std::io::Result<String>> + Send + 'static,
> {
    let outgoing = SinkExt::<String>::sink_map_err(
        FramedWrite::new(stdin, LinesCodec::new()),
        |err| match err {
            LinesCodecError::Io(err) => err,
            other => std::io::Error::other(other),
        },
    );
    let incoming = FramedRead::new(stdout, LinesCodec::new_with_max_length(MAX_LINE_BYTES))
        .filter_map(move |line| {
            let item = match line {
                Ok(line) => Some(Ok(line)),
                // The codec drops the rest of an oversized line and carries on.
                Err(LinesCodecError::MaxLineLengthExceeded) => {
                    shared.push_text(OVERSIZED_LINE);
                    None
                }
                Err(LinesCodecError::Io(err)) => Some(Err(err)),
            };
            std::future::ready(item)
        });
    Lines::new(outgoing, incoming)
}

/// The wire name of a serde enum value (`end_turn`, …).
fn wire_name(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

/// Everything that decides how a run ended.
struct Verdict<'a> {
    request: &'a AgentRequest,
    status: Option<ExitStatus>,
    stderr: &'a str,
    diagnostics: &'a str,
    stats: permission::PermissionStats,
}

impl Verdict<'_> {
    /// The same failure kinds as the acpx runtime for the same agent behaviour.
    fn judge(
        &self,
        stopped: Option<Stopped>,
        ended: Option<Result<Turn, Broken>>,
    ) -> Result<(), AgentFailure> {
        match (stopped, ended) {
            (Some(Stopped::Cancelled), _) => {
                Err(failure(FailureKind::Cancelled, "session cancelled".into()))
            }
            (Some(Stopped::Timeout), _) => Err(failure(
                FailureKind::Timeout,
                format!(
                    "agent timed out after {} s and was stopped",
                    self.request.max_runtime.as_secs()
                ),
            )),
            (None, Some(Ok(_))) if self.stats.all_refused() => Err(failure(
                FailureKind::PolicyDenied,
                format!(
                    "permission denied by policy ({}): {}",
                    self.request.permission.as_str(),
                    self.stats
                        .first_refusal
                        .as_deref()
                        .unwrap_or("request refused")
                ),
            )),
            (None, Some(Ok(_))) => Ok(()),
            (None, Some(Err(Broken::Protocol { during, error }))) => {
                Err(self.broken(during, &error))
            }
            (None, Some(Err(Broken::Stopped)) | None) => Err(failure(
                FailureKind::RuntimeError,
                "the agent run was stopped".into(),
            )),
        }
    }

    /// The agent failed a request, or went away before answering.
    fn broken(&self, during: &str, error: &agent_client_protocol::Error) -> AgentFailure {
        let gone = agent_client_protocol::is_incoming_transport_closed(error)
            || agent_client_protocol::is_connection_terminated(error);
        let detail = last_meaningful_line(self.diagnostics)
            .or_else(|| last_meaningful_line(self.stderr))
            .map(|line| format!(": {line}"))
            .unwrap_or_default();
        if gone {
            let how = match self.status.map(|s| (s.code(), s)) {
                Some((Some(code), _)) => format!("agent exited with code {code}"),
                Some((None, status)) => format!("agent was killed by a signal ({status})"),
                None => "agent closed its output".into(),
            };
            return failure(
                FailureKind::RuntimeError,
                format!("{how} before answering {during}{detail}"),
            );
        }
        let message = format!(
            "agent error during {during}: {} (code {}){detail}",
            error.message,
            error.code.value()
        );
        let kind = if mentions_permission(&format!("{}\n{}", error.message, self.stderr)) {
            FailureKind::PolicyDenied
        } else {
            FailureKind::RuntimeError
        };
        failure(kind, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_client_protocol::v1::schema::StopReason;
    use permission::PermissionStats;
    use std::os::unix::process::ExitStatusExt;

    fn request() -> AgentRequest {
        AgentRequest::sample()
    }

    fn turn() -> Option<Result<Turn, Broken>> {
        Some(Ok(Turn {
            stop_reason: StopReason::EndTurn,
            usage: None,
        }))
    }

    fn kind(result: Result<(), AgentFailure>) -> Option<FailureKind> {
        result.err().map(|f| f.kind)
    }

    #[test]
    fn verdicts_match_the_acpx_runtime() {
        let request = request();
        let mut verdict = Verdict {
            request: &request,
            status: Some(ExitStatus::from_raw(0)),
            stderr: "",
            diagnostics: "",
            stats: PermissionStats::default(),
        };
        assert_eq!(kind(verdict.judge(None, turn())), None);
        assert_eq!(
            kind(verdict.judge(Some(Stopped::Cancelled), turn())),
            Some(FailureKind::Cancelled)
        );
        let timeout = verdict.judge(Some(Stopped::Timeout), None).unwrap_err();
        assert_eq!(timeout.kind, FailureKind::Timeout);
        assert!(timeout.message.contains("timed out after 180 s"));

        verdict
            .stats
            .record(permission::Verdict::Denied, "Write notes.txt [edit]");
        let denied = verdict.judge(None, turn()).unwrap_err();
        assert_eq!(denied.kind, FailureKind::PolicyDenied);
        assert_eq!(
            denied.message,
            "permission denied by policy (approve-reads): Write notes.txt [edit]"
        );
        verdict
            .stats
            .record(permission::Verdict::Approved, "Read a [read]");
        assert_eq!(kind(verdict.judge(None, turn())), None);

        let failed = |message: &str| {
            Some(Err(Broken::Protocol {
                during: "session/prompt",
                error: agent_client_protocol::Error::new(
                    agent_client_protocol::ErrorCode::INTERNAL_ERROR,
                    message,
                ),
            }))
        };
        let error = verdict
            .judge(None, failed("mock agent failure"))
            .unwrap_err();
        assert_eq!(error.kind, FailureKind::RuntimeError);
        assert_eq!(
            error.message,
            "agent error during session/prompt: mock agent failure (code -32603)"
        );
        assert_eq!(
            kind(verdict.judge(None, failed("Permission denied for bash"))),
            Some(FailureKind::PolicyDenied)
        );
    }
}
