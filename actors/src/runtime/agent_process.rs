//! The agent's process as both runtimes run it: it leads its own process group in the
//! workspace, without the credentials, carrying the session marker; it ends by its own exit or
//! by the group being killed, and nothing it started outlives the [`AgentProcess`].

use super::output::read_tail;
use super::{AgentEvent, AgentRequest};
use crate::process::{terminate_group, GroupGuard, SessionSpawn};
use std::future::Future;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Time the agent gets to exit after SIGTERM before the group is killed.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// Starts `program args` for `request`: in the workspace, as the leader of a new process group,
/// without the variables of `env_remove`, carrying the session marker.
pub(super) fn spawn(
    request: &AgentRequest,
    program: &str,
    args: &[String],
    stdin: Stdio,
) -> std::io::Result<Child> {
    let session = SessionSpawn {
        session_id: &request.session_id,
        env_remove: &request.env_remove,
        process_group: 0,
    };
    session.spawn(program, |command| {
        command
            .args(args)
            .current_dir(&request.work_dir)
            .stdin(stdin)
    })
}

/// A started agent. Its group is killed when this is dropped, whatever way the run ends.
pub(super) struct AgentProcess {
    /// The agent; its stdin and stdout are the runtime's to take.
    pub child: Child,
    /// The agent's pid, which is also its process group.
    pub pid: u32,
    _group: GroupGuard,
    /// The tail of the agent's stderr, for error messages.
    stderr: Option<JoinHandle<String>>,
}

impl AgentProcess {
    /// Takes charge of a spawned agent and reports it; `None` when it is already gone.
    pub async fn adopt(mut child: Child, events: &mpsc::Sender<AgentEvent>) -> Option<Self> {
        let pid = child.id()?;
        let group = GroupGuard(pid);
        let _ = events.send(AgentEvent::Spawned { pid }).await;
        let stderr = child.stderr.take().map(|s| tokio::spawn(read_tail(s)));
        Some(Self {
            child,
            pid,
            _group: group,
            stderr,
        })
    }

    /// Waits for the agent to exit on its own until `give_up` resolves, then (or when waiting
    /// fails) stops it. Returns the exit status only when the agent exited on its own.
    pub async fn end_within(&mut self, give_up: impl Future<Output = ()>) -> Option<ExitStatus> {
        tokio::select! {
            status = self.child.wait() => {
                if let Ok(status) = status {
                    return Some(status);
                }
            }
            () = give_up => {}
        }
        self.stop().await;
        None
    }

    /// Terminates the agent's group (SIGTERM, a grace period, SIGKILL) and reaps the agent.
    pub async fn stop(&mut self) {
        terminate_group(self.pid, TERM_GRACE).await;
        let _ = self.child.wait().await;
    }

    /// The last part of what the agent wrote to stderr; call it once the agent is gone.
    pub async fn stderr_tail(&mut self) -> String {
        match self.stderr.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => String::new(),
        }
    }
}
