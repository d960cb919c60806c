//! Process-group control. Every agent runs as the leader of its own group, so one signal
//! reaches everything it started (shells, tools, grandchildren).

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::{sleep, Instant};

/// Sends `signal` to the whole group; a group that is already gone is not an error.
pub fn signal_group(pgid: u32, signal: Signal) {
    if let Ok(pgid) = i32::try_from(pgid) {
        if pgid > 1 {
            let _ = killpg(Pid::from_raw(pgid), signal);
        }
    }
}

/// True while any process of the group is alive (zombies count until reaped).
pub fn group_alive(pgid: u32) -> bool {
    match i32::try_from(pgid) {
        Ok(pgid) if pgid > 1 => killpg(Pid::from_raw(pgid), None).is_ok(),
        _ => false,
    }
}

/// SIGTERM, then SIGKILL once `grace` has passed with the group still alive.
pub async fn terminate_group(pgid: u32, grace: Duration) {
    signal_group(pgid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while group_alive(pgid) && Instant::now() < deadline {
        sleep(Duration::from_millis(25)).await;
    }
    signal_group(pgid, Signal::SIGKILL);
}

/// Kills the group when dropped: whatever way a run ends (return, panic, abort), nothing it
/// started keeps running.
pub struct GroupGuard(pub u32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        signal_group(self.0, Signal::SIGKILL);
    }
}

/// The variable every agent process carries. A process can leave its group (`setsid`, a double
/// fork) but keeps its environment: the marker finds what the group signal misses, and tells a
/// session's leftovers apart from unrelated processes that happen to reuse a pid.
pub const SESSION_ENV: &str = "TELECODER_SESSION_ID";

/// How a session starts a process. Everything a session starts (the agent, the commands it
/// runs through the client) is spawned through this, so nothing misses the marker, the scrub
/// or the process group.
pub struct SessionSpawn<'a> {
    /// The session the process belongs to; it carries it as [`SESSION_ENV`].
    pub session_id: &'a str,
    /// Variables (credentials) the process must not inherit.
    pub env_remove: &'a [String],
    /// The process group it joins; 0 makes it lead a new one.
    pub process_group: i32,
}

impl SessionSpawn<'_> {
    /// Starts `program` with stdout and stderr piped; it is killed if its handle is dropped.
    /// `setup` adds the arguments, directory, stdin and variables: it runs after the scrub (what
    /// it sets is kept) and before the marker (it cannot replace the marker).
    pub fn spawn(
        &self,
        program: &str,
        setup: impl FnOnce(&mut Command) -> &mut Command,
    ) -> std::io::Result<Child> {
        let mut command = Command::new(program);
        for name in self.env_remove {
            command.env_remove(name);
        }
        setup(&mut command)
            .env(SESSION_ENV, self.session_id)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(self.process_group)
            .kill_on_drop(true)
            .spawn()
    }
}

/// Scans of `/proc` while new marked processes keep appearing (forks racing the scan).
const MAX_SCANS: usize = 50;
/// How long to wait for killed processes to be gone (a SIGKILL is delivered at once, but the
/// exit itself takes a moment on a busy machine).
const DEATH_WAIT: Duration = Duration::from_secs(2);

/// Kills every process whose environment carries `session_id`'s marker, wherever it is in the
/// process tree. Any runtime's processes are found this way as long as they inherit
/// [`SESSION_ENV`]; the session actor calls this when a session ends, the supervisor when a
/// session actor fails and when it reaps what a crashed daemon left.
///
/// The marked processes are stopped first (a stopped process cannot fork) and scanned for again
/// until no new one appears, then all are killed, and waited for (up to [`DEATH_WAIT`]): once
/// this returns, the session's slot can go to another without both running at once. Without
/// leftovers this is one scan of `/proc`. Blocking (reads `/proc`); run it on a blocking
/// thread. Returns how many were killed.
pub fn kill_session_processes(session_id: &str) -> usize {
    let marker = format!("{SESSION_ENV}={session_id}");
    let mut stopped: Vec<Pid> = Vec::new();
    for _ in 0..MAX_SCANS {
        let new: Vec<Pid> = marked_processes(&marker)
            .into_iter()
            .filter(|pid| !stopped.contains(pid))
            .collect();
        if new.is_empty() {
            break;
        }
        for pid in new {
            let _ = nix::sys::signal::kill(pid, Signal::SIGSTOP);
            stopped.push(pid);
        }
    }
    let killed: Vec<Pid> = stopped
        .into_iter()
        .filter(|pid| nix::sys::signal::kill(*pid, Signal::SIGKILL).is_ok())
        .collect();
    let deadline = std::time::Instant::now() + DEATH_WAIT;
    while killed.iter().any(|pid| is_alive(pid.as_raw())) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    killed.len()
}

/// Still running: neither gone nor a zombie.
fn is_alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

/// Live (not zombie) processes other than this one whose environment holds `marker`.
fn marked_processes(marker: &str) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me && environment_has(*pid, marker) && !is_zombie(*pid))
        .map(Pid::from_raw)
        .collect()
}

/// A zombie is already dead (only its exit status is left): it cannot be signalled away.
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after_name = &stat[stat.rfind(')')? + 1..];
            after_name
                .split_whitespace()
                .next()
                .map(|state| state == "Z")
        })
        .unwrap_or(true)
}

fn environment_has(pid: i32, marker: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| {
            env.split(|b| *b == 0)
                .any(|entry| entry == marker.as_bytes())
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn alive(pid: u32) -> bool {
        !is_zombie(pid as i32)
    }

    #[test]
    fn kills_marked_processes_that_left_the_group_and_nothing_else() {
        let session = format!("unit{}", std::process::id());
        let spawn = |marker: &str| {
            Command::new("setsid")
                .args(["sleep", "60"])
                .env(SESSION_ENV, marker)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn sleeper")
        };
        let mut escaped = spawn(&session);
        let mut other = spawn("someone-else");
        let escaped_pid = escaped.id();
        // `setsid` execs `sleep`: while a process is in the middle of an exec its environment
        // reads empty, so wait (bounded) until the sleeper shows its marker.
        let marker = format!("{SESSION_ENV}={session}");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !environment_has(escaped_pid as i32, &marker) {
            assert!(
                std::time::Instant::now() < deadline,
                "the sleeper never showed its marker"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(kill_session_processes(&session), 1);
        let _ = escaped.wait();
        assert!(!alive(escaped_pid));
        assert!(alive(other.id()), "an unmarked process is left alone");
        assert_eq!(kill_session_processes(&session), 0, "nothing left to kill");
        let _ = other.kill();
        let _ = other.wait();
    }
}
