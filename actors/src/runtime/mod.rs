//! The agent runtime: how a prompt becomes a running agent. Two implementations sit behind one
//! small trait: the native runtime speaks ACP itself (the default), the acpx runtime runs the
//! acpx CLI per session (the compatibility path).

pub mod acpx;
mod agent_process;
pub mod agents;
pub mod native;
mod output;

pub use acpx::AcpxRuntime;
pub use native::NativeRuntime;

use crate::domain::{AgentFacts, FailureKind, PermissionMode, WorkspaceWritePolicy};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Everything a runtime needs to run one prompt.
#[derive(Clone, Debug)]
pub struct AgentRequest {
    pub session_id: String,
    /// The session's workspace; the agent's cwd.
    pub work_dir: PathBuf,
    pub prompt: String,
    pub agent: String,
    /// `TELECODER_AGENT_<NAME>_COMMAND`, when configured.
    pub command_override: Option<String>,
    pub permission: PermissionMode,
    /// Whether the agent may change files in the workspace through the client (`fs/write`).
    pub write_policy: WorkspaceWritePolicy,
    pub max_runtime: Duration,
    /// Where a runtime may put scratch files (never inside the workspace).
    pub scratch_dir: PathBuf,
    /// Cap on the agent text kept for this run.
    pub max_output_bytes: usize,
    /// Environment variables the agent must not inherit (credentials).
    pub env_remove: Vec<String>,
    /// A continuation whose agent can load the earlier ACP session: load it, then send
    /// `prompt`; if loading fails, send `fallback_prompt` to a new session instead. (Runtimes
    /// that cannot load get the fallback as their `prompt` and no `resume`.)
    pub resume: Option<Resume>,
    /// Who answers this run's permission questions (policy `ask`: a person); `None` leaves it
    /// to the runtime's own decider (the policy's rules).
    pub decider: Option<DeciderHandle>,
}

/// The agent session a continuation picks up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    /// The agent's ACP session id of the previous turn.
    pub agent_session_id: String,
    /// The prompt with the earlier turns, for a new session when loading fails.
    pub fallback_prompt: String,
}

/// A permission decider for one run.
#[derive(Clone)]
pub struct DeciderHandle(pub std::sync::Arc<dyn native::permission::PermissionDecider>);

impl std::fmt::Debug for DeciderHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeciderHandle")
    }
}

#[cfg(test)]
impl AgentRequest {
    /// A request as the session actor would build it, for unit tests.
    pub(crate) fn sample() -> Self {
        Self {
            session_id: "abcd1234".into(),
            work_dir: "/tmp/ws".into(),
            prompt: "fix it".into(),
            agent: "codex".into(),
            command_override: None,
            permission: PermissionMode::ApproveReads,
            write_policy: WorkspaceWritePolicy::Blocked,
            max_runtime: Duration::from_secs(180),
            scratch_dir: "/tmp/scratch".into(),
            max_output_bytes: 1024,
            env_remove: Vec::new(),
            resume: None,
            decider: None,
        }
    }
}

/// What a runtime reports while it works.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentEvent {
    /// The agent process started; `pid` leads its own process group.
    Spawned { pid: u32 },
    /// A piece of assistant text, already coalesced into readable bursts. Raw: the session
    /// redacts the stream (across pieces) before anything is stored or shown.
    Output(String),
    /// Something the runtime did that the user should know about (a status line).
    Notice(String),
    /// A tool call started or changed: JSON `{toolCallId, title, kind, status, locations}`.
    Tool(String),
    /// The agent's plan: JSON array of its entries.
    Plan(String),
    /// What the runtime learned about the agent's side of the session.
    Facts(AgentFacts),
}

/// Why a run failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentFailure {
    pub kind: FailureKind,
    pub message: String,
}

/// How a run ended, with all the assistant text it produced.
#[derive(Clone, Debug)]
pub struct AgentReport {
    pub text: String,
    pub outcome: Result<(), AgentFailure>,
}

/// One run as the session actor hands it over: what to run, where to report while it works,
/// and the token that fires on cancel.
pub struct AgentRun {
    pub request: AgentRequest,
    pub events: mpsc::Sender<AgentEvent>,
    pub cancel: CancellationToken,
}

/// A boxed future, so the trait stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs agents. Implementations must leave no process behind when the future completes or is
/// dropped, and must stop promptly when [`AgentRun::cancel`] fires. Every process they start must carry
/// `process::SESSION_ENV=<session id>` in its environment: when the session ends, the session
/// actor kills whatever still carries it (`process::kill_session_processes`), including
/// processes that left the agent's process group.
pub trait AgentRuntime: Send + Sync + 'static {
    /// Shown in logs and events.
    fn name(&self) -> &'static str;

    /// Whether the runtime can load an agent's earlier ACP session ([`AgentRequest::resume`]).
    fn loads_sessions(&self) -> bool {
        false
    }

    /// Whether the runtime can let a person answer the agent ([`AgentRequest::decider`],
    /// policy `ask`).
    fn asks_people(&self) -> bool {
        false
    }

    fn run(&self, run: AgentRun) -> BoxFuture<'_, AgentReport>;
}
