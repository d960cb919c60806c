//! Process-group control. Every agent runs as the leader of its own group, so one signal
//! reaches everything it started (shells, tools, grandchildren).

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::time::Duration;
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

/// The variable every agent process carries, so a later daemon can tell its leftovers apart
/// from unrelated processes that happen to reuse a pid.
pub const SESSION_ENV: &str = "TELECODER_SESSION_ID";

/// Kills what a previous daemon instance left of a session's agent: every process in group
/// `pgid` whose environment names `session_id`. Returns how many were signalled.
pub fn reap_leftovers(session_id: &str, pgid: u32) -> usize {
    let marker = format!("{SESSION_ENV}={session_id}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if process_group_of(pid) != Some(pgid) || !environment_has(pid, &marker) {
            continue;
        }
        if nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
            killed += 1;
        }
    }
    killed
}

/// The process group of `pid`, from `/proc/<pid>/stat` (field 5, after the parenthesised name).
fn process_group_of(pid: i32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(2)?.parse().ok()
}

fn environment_has(pid: i32, marker: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| {
            env.split(|b| *b == 0)
                .any(|entry| entry == marker.as_bytes())
        })
        .unwrap_or(false)
}
