//! The `terminal/*` methods: commands the agent runs through the client. Each runs in the
//! workspace (or a directory inside it), in the session's process group (so it dies with the
//! session), with the agent's scrubbed environment; its output is bounded (the tail is kept,
//! as acpx does).

use super::fs::WorkspaceFs;
use crate::process::SessionSpawn;
use agent_client_protocol::v1::schema::{TerminalExitStatus, TerminalOutputResponse};
use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Output kept per terminal when the agent asks for no limit (acpx's default).
const DEFAULT_OUTPUT_LIMIT: u64 = 64 * 1024;
/// The most output kept per terminal, whatever the agent asks.
const MAX_OUTPUT_LIMIT: u64 = 1024 * 1024;
/// Terminals one session may hold at once.
const MAX_TERMINALS: usize = 32;

/// Why a terminal request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TerminalError {
    #[error("unknown terminal: {0}")]
    Unknown(String),
    #[error("too many terminals (at most {MAX_TERMINALS} at once); release some first")]
    TooMany,
    #[error("{0}")]
    Workspace(#[from] super::fs::FsError),
    #[error("cannot start `{0}`: {1}")]
    Spawn(String, String),
}

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    truncated: bool,
}

struct Terminal {
    pid: u32,
    limit: usize,
    buffer: Arc<Mutex<Buffer>>,
    exit: watch::Receiver<Option<TerminalExitStatus>>,
    /// Readers and the waiter; aborting the waiter drops (and so kills) the child.
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Terminal {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Where and how the session's commands run.
#[derive(Clone, Debug)]
pub struct TerminalSettings {
    pub session_id: String,
    /// The agent's process group; every command joins it.
    pub process_group: u32,
    pub env_remove: Vec<String>,
}

/// The terminals of one session.
pub struct Terminals {
    settings: TerminalSettings,
    workspace: WorkspaceFs,
    live: Mutex<HashMap<String, Terminal>>,
    next_id: AtomicU64,
}

impl Terminals {
    pub fn new(settings: TerminalSettings, workspace: WorkspaceFs) -> Self {
        Self {
            settings,
            workspace,
            live: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Terminal>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The directory a command runs in: the workspace, or a directory inside it.
    pub fn working_dir(&self, cwd: Option<&Path>) -> Result<std::path::PathBuf, TerminalError> {
        match cwd {
            Some(dir) => Ok(self.workspace.contain_existing(dir)?),
            None => Ok(self.workspace.root().to_path_buf()),
        }
    }

    /// Starts a command; returns its terminal id.
    pub fn create(
        &self,
        command: &str,
        args: &[String],
        env: &[(String, String)],
        cwd: &Path,
        output_limit: Option<u64>,
    ) -> Result<String, TerminalError> {
        if self.live().len() >= MAX_TERMINALS {
            return Err(TerminalError::TooMany);
        }
        let session = SessionSpawn {
            session_id: &self.settings.session_id,
            env_remove: &self.settings.env_remove,
            process_group: i32::try_from(self.settings.process_group).unwrap_or(0),
        };
        let spawned = session.spawn(command, |cmd| {
            cmd.args(args)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .current_dir(cwd)
                .stdin(Stdio::null())
        });
        let mut child =
            spawned.map_err(|err| TerminalError::Spawn(command.to_owned(), err.to_string()))?;
        let pid = child.id().unwrap_or_default();
        let limit = output_limit
            .unwrap_or(DEFAULT_OUTPUT_LIMIT)
            .min(MAX_OUTPUT_LIMIT) as usize;
        let buffer = Arc::new(Mutex::new(Buffer::default()));
        let mut tasks = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            tasks.push(tokio::spawn(collect(stdout, buffer.clone(), limit)));
        }
        if let Some(stderr) = child.stderr.take() {
            tasks.push(tokio::spawn(collect(stderr, buffer.clone(), limit)));
        }
        let (exit_tx, exit_rx) = watch::channel(None);
        tasks.push(tokio::spawn(async move {
            let exit = match child.wait().await {
                Ok(status) => exit_of(status),
                Err(_) => TerminalExitStatus::new(),
            };
            let _ = exit_tx.send(Some(exit));
        }));
        let id = format!("term-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        self.live().insert(
            id.clone(),
            Terminal {
                pid,
                limit,
                buffer,
                exit: exit_rx,
                tasks,
            },
        );
        Ok(id)
    }

    /// What `terminal/output` answers: the kept output, and how the command ended if it has.
    pub fn output(&self, id: &str) -> Result<TerminalOutputResponse, TerminalError> {
        let live = self.live();
        let terminal = live
            .get(id)
            .ok_or_else(|| TerminalError::Unknown(id.to_owned()))?;
        let exit = terminal.exit.borrow().clone();
        let buffer = terminal.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let output = text_of(&buffer.bytes, terminal.limit);
        Ok(TerminalOutputResponse::new(output, buffer.truncated).exit_status(exit))
    }

    /// Resolves when the command has exited.
    pub async fn wait_for_exit(&self, id: &str) -> Result<TerminalExitStatus, TerminalError> {
        let mut exit = self
            .live()
            .get(id)
            .map(|terminal| terminal.exit.clone())
            .ok_or_else(|| TerminalError::Unknown(id.to_owned()))?;
        loop {
            if let Some(done) = exit.borrow_and_update().clone() {
                return Ok(done);
            }
            if exit.changed().await.is_err() {
                return Ok(TerminalExitStatus::new().signal("SIGKILL".to_owned()));
            }
        }
    }

    /// Kills the command and whatever it started; the terminal stays readable.
    pub fn kill(&self, id: &str) -> Result<(), TerminalError> {
        let live = self.live();
        let terminal = live
            .get(id)
            .ok_or_else(|| TerminalError::Unknown(id.to_owned()))?;
        if terminal.exit.borrow().is_none() {
            kill_tree(terminal.pid);
        }
        Ok(())
    }

    /// Kills the command (if running) and forgets the terminal.
    pub fn release(&self, id: &str) -> Result<(), TerminalError> {
        let terminal = self
            .live()
            .remove(id)
            .ok_or_else(|| TerminalError::Unknown(id.to_owned()))?;
        if terminal.exit.borrow().is_none() {
            kill_tree(terminal.pid);
        }
        Ok(())
    }

    /// Kills every command (the session is over).
    pub fn kill_all(&self) {
        let live: Vec<Terminal> = self.live().drain().map(|(_, t)| t).collect();
        for terminal in &live {
            if terminal.exit.borrow().is_none() {
                kill_tree(terminal.pid);
            }
        }
    }
}

/// Appends a stream to the buffer, keeping only the last `limit` bytes.
async fn collect(mut stream: impl AsyncRead + Unpin, buffer: Arc<Mutex<Buffer>>, limit: usize) {
    let mut chunk = [0u8; 8192];
    while let Ok(n) = stream.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        let mut buffer = buffer.lock().unwrap_or_else(|e| e.into_inner());
        buffer.bytes.extend_from_slice(&chunk[..n]);
        if buffer.bytes.len() > limit {
            let excess = buffer.bytes.len() - limit;
            buffer.bytes.drain(..excess);
            buffer.truncated = true;
        }
    }
}

/// The kept bytes as text, starting at a character boundary.
fn text_of(bytes: &[u8], limit: usize) -> String {
    let start = bytes.len().saturating_sub(limit);
    let mut tail = &bytes[start..];
    while let Some((first, rest)) = tail.split_first() {
        if first & 0xC0 != 0x80 {
            break;
        }
        tail = rest;
    }
    String::from_utf8_lossy(tail).into_owned()
}

fn exit_of(status: std::process::ExitStatus) -> TerminalExitStatus {
    use std::os::unix::process::ExitStatusExt;
    let signal = status.signal().map(|signal| {
        nix::sys::signal::Signal::try_from(signal)
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|_| signal.to_string())
    });
    TerminalExitStatus::new()
        .exit_code(status.code().and_then(|code| u32::try_from(code).ok()))
        .signal(signal)
}

/// SIGKILL to `pid` and its descendants (found through `/proc`'s parent links). They share
/// the session's process group, so signalling the group would kill the agent too.
fn kill_tree(pid: u32) {
    let mut victims = vec![pid];
    let mut index = 0;
    let parents = parent_links();
    while index < victims.len() {
        let parent = victims[index];
        victims.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(child, _)| *child),
        );
        index += 1;
    }
    for victim in victims {
        if let Ok(raw) = i32::try_from(victim) {
            if raw > 1 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(raw),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// `(pid, ppid)` of every process, from `/proc/<pid>/stat`.
fn parent_links() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after_name = &stat[stat.rfind(')')? + 1..];
            let ppid = after_name.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn terminals(dir: &Path) -> Terminals {
        let settings = TerminalSettings {
            session_id: "t".into(),
            // The test process's own group: commands join it.
            process_group: nix::unistd::getpgrp().as_raw() as u32,
            env_remove: vec!["SECRET_FOR_TEST".into()],
        };
        Terminals::new(settings, WorkspaceFs::new(dir).expect("workspace"))
    }

    /// Starts `sh -c script` in the workspace; returns its terminal id.
    fn start_sh(terms: &Terminals, script: &str, output_limit: Option<u64>) -> String {
        let cwd = terms.working_dir(None).expect("cwd");
        let args = ["-c".to_owned(), script.to_owned()];
        terms
            .create("sh", &args, &[], &cwd, output_limit)
            .expect("create")
    }

    #[tokio::test]
    async fn runs_in_the_workspace_and_keeps_the_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let terms = terminals(dir.path());
        let id = start_sh(&terms, "pwd; printf 'x%.0s' $(seq 1 100); exit 3", Some(20));
        let exit = terms.wait_for_exit(&id).await.expect("exit");
        assert_eq!(exit.exit_code, Some(3));
        let snapshot = terms.output(&id).expect("output");
        assert!(snapshot.truncated);
        assert_eq!(snapshot.output, "x".repeat(20));
        terms.release(&id).expect("release");
        assert!(matches!(terms.output(&id), Err(TerminalError::Unknown(_))));
    }

    #[tokio::test]
    async fn kill_stops_the_command_and_its_children() {
        let dir = tempfile::tempdir().expect("tempdir");
        let terms = terminals(dir.path());
        let id = start_sh(&terms, "sleep 300 & echo $!; wait", None);
        let child_pid = loop {
            let out = terms.output(&id).expect("output").output;
            if let Ok(pid) = out.trim().parse::<i32>() {
                break pid;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        terms.kill(&id).expect("kill");
        let exit = terms.wait_for_exit(&id).await.expect("exit");
        assert_eq!(exit.signal.as_deref(), Some("SIGKILL"));
        for _ in 0..100 {
            let alive = std::fs::read_to_string(format!("/proc/{child_pid}/stat"))
                .is_ok_and(|stat| !stat.contains(") Z"));
            if !alive {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the command's child survived terminal/kill");
    }

    #[tokio::test]
    async fn directories_outside_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let terms = terminals(dir.path());
        assert!(terms.working_dir(Some(Path::new("/"))).is_err());
        assert!(terms.working_dir(Some(dir.path())).is_ok());
    }
}
