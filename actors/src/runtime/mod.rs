//! The agent runtime: how a prompt becomes a running agent. Two implementations sit behind one
//! small trait: the native runtime speaks ACP itself (the default), the acpx runtime runs the
//! acpx CLI per session (the compatibility path).

pub mod acpx;
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

/// A boxed future, so the trait stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs agents. Implementations must leave no process behind when the future completes or is
/// dropped, and must stop promptly when `cancel` fires. Every process they start must carry
/// `process::SESSION_ENV=<session id>` in its environment: when the session ends, the session
/// actor kills whatever still carries it (`process::kill_session_processes`), including
/// processes that left the agent's process group.
pub trait AgentRuntime: Send + Sync + 'static {
    /// Shown in logs and events.
    fn name(&self) -> &'static str;

    fn run(
        &self,
        request: AgentRequest,
        events: mpsc::Sender<AgentEvent>,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, AgentReport>;
}
