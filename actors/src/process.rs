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
    !is_zombie(pid)
}

/// Live (not zombie) processes other than this one whose environment holds `marker`.
fn marked_processes(marker: &str) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    let mut buffer = vec![0; ENVIRONMENT_READ];
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me && environment_has(*pid, marker, &mut buffer) && !is_zombie(*pid))
        .map(Pid::from_raw)
        .collect()
}

/// A zombie is already dead (only its exit status is left): it cannot be signalled away.
/// A process that is gone counts as one.
fn is_zombie(pid: i32) -> bool {
    stat(pid).is_none_or(|stat| stat.zombie)
}

/// What `/proc/<pid>/stat` says that the scans need; `None` when the process is gone.
struct Stat {
    zombie: bool,
    kernel_thread: bool,
}

fn stat(pid: i32) -> Option<Stat> {
    const PF_KTHREAD: u64 = 0x0020_0000;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name may hold spaces and parentheses: the fields start after the last ')'.
    let (_, after_name) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let flags = fields
        .get(6)
        .and_then(|f| f.parse::<u64>().ok())
        .unwrap_or(0);
    Some(Stat {
        zombie: *fields.first()? == "Z",
        kernel_thread: flags & PF_KTHREAD != 0,
    })
}

/// Whether `pid`'s environment holds `marker`, read so that a process in the middle of an exec
/// cannot slip through (one that re-executes itself without end would, about one scan in
/// five). An exec shows as an empty environment: the image a read opened is gone, or the new
/// one's is not set up yet. So an empty environment is read again: for up to
/// [`EXEC_PATIENCE`] while the new image has no arguments either, for up to
/// [`SETTLED_PATIENCE`] once it has (then it may be a process started without an environment).
/// Kernel threads and zombies never have one.
fn environment_has(pid: i32, marker: &str, buffer: &mut Vec<u8>) -> bool {
    let started = std::time::Instant::now();
    loop {
        let Some(env) = read_environment(pid, buffer) else {
            return false;
        };
        if !env.is_empty() {
            return env
                .split(|b| *b == 0)
                .any(|entry| entry == marker.as_bytes());
        }
        if !may_have_environment(pid) {
            return false;
        }
        let arguments = std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty());
        let patience = if arguments {
            SETTLED_PATIENCE
        } else {
            EXEC_PATIENCE
        };
        if started.elapsed() >= patience {
            return false;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// One `read` of `/proc/<pid>/environ` into `buffer` (reused across a scan): one look at one
/// image, where reading in pieces could span an exec and end early. An environment larger
/// than the buffer is read on to its end.
fn read_environment(pid: i32, buffer: &mut Vec<u8>) -> Option<&[u8]> {
    use std::io::Read;
    if buffer.len() < ENVIRONMENT_READ {
        buffer.resize(ENVIRONMENT_READ, 0);
    }
    let mut file = std::fs::File::open(format!("/proc/{pid}/environ")).ok()?;
    let read = file.read(buffer).ok()?;
    if read == buffer.len() {
        file.read_to_end(buffer).ok()?;
        return Some(buffer);
    }
    Some(&buffer[..read])
}

/// Bytes of an environment taken in one read (environments are a few KiB).
const ENVIRONMENT_READ: usize = 64 * 1024;
/// How long a process caught in the middle of an exec is waited for: a loaded machine may
/// leave it there a while.
const EXEC_PATIENCE: Duration = Duration::from_secs(1);
/// How long an empty environment beside set-up arguments is read again before the process
/// counts as one without an environment.
const SETTLED_PATIENCE: Duration = Duration::from_millis(20);

/// Not a kernel thread (`PF_KTHREAD` in the stat flags) and not a zombie.
fn may_have_environment(pid: i32) -> bool {
    stat(pid).is_some_and(|stat| !stat.zombie && !stat.kernel_thread)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn alive(pid: u32) -> bool {
        !is_zombie(pid as i32)
    }

    /// Runs `args` under `setsid` (out of this process group) with `session`'s marker.
    fn escaped<S: AsRef<std::ffi::OsStr>>(args: &[S], session: &str) -> std::process::Child {
        Command::new("setsid")
            .args(args)
            .env(SESSION_ENV, session)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn under setsid")
    }

    /// Waits (bounded) until `pid` shows `session`'s marker: `setsid` execs its command, and
    /// in the middle of an exec the environment reads empty.
    fn wait_for_marker(pid: u32, session: &str) {
        let marker = format!("{SESSION_ENV}={session}");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !environment_has(pid as i32, &marker, &mut Vec::new()) {
            assert!(
                std::time::Instant::now() < deadline,
                "{pid} never showed its marker"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn kills_marked_processes_that_left_the_group_and_nothing_else() {
        let session = format!("unit{}", std::process::id());
        let mut escaped_sleeper = escaped(&["sleep", "60"], &session);
        let mut other = escaped(&["sleep", "60"], "someone-else");
        let escaped_pid = escaped_sleeper.id();
        wait_for_marker(escaped_pid, &session);
        assert_eq!(kill_session_processes(&session), 1);
        let _ = escaped_sleeper.wait();
        assert!(!alive(escaped_pid));
        assert!(alive(other.id()), "an unmarked process is left alone");
        assert_eq!(kill_session_processes(&session), 0, "nothing left to kill");
        let _ = other.kill();
        let _ = other.wait();
    }

    /// An agent's process that re-executes itself without end is, for a moment in every exec,
    /// a process whose environment reads empty. A single read of each process would miss it
    /// about one scan in five; it must die with its session every time.
    #[test]
    fn a_process_that_keeps_re_executing_itself_cannot_slip_through_the_scan() {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = dir.path().join("again.sh");
        std::fs::write(&script, "#!/bin/sh\nexec \"$0\"\n").expect("script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let session = format!("again{}", std::process::id());
        for attempt in 0..40 {
            let mut looper = escaped(&[&script], &session);
            wait_for_marker(looper.id(), &session);
            // Catch the looper at a different point of its cycle each time.
            std::thread::sleep(Duration::from_micros(173 * attempt));
            let killed = kill_session_processes(&session);
            let _ = looper.kill();
            let _ = looper.wait();
            assert_eq!(
                killed, 1,
                "attempt {attempt}: the re-executing process was missed"
            );
        }
    }
}
