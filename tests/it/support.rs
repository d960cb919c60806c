//! Test harness: the real `telecoder` binary on a loopback port with a temp data dir, the
//! project's mock ACP agent and real git repos. The runtime under test is
//! `TELECODER_TEST_RUNTIME` (`native`, the default, or `acpx`: the real acpx from the
//! project's npm manifest); `scripts/test` runs the suite under both.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

pub fn acpx() -> PathBuf {
    let path = Path::new(ROOT).join("node_modules/.bin/acpx");
    assert!(
        path.exists(),
        "acpx is not installed: run scripts/test (it runs `npm ci` first)"
    );
    path
}

/// The runtime the daemons of this test run use.
pub fn runtime() -> &'static str {
    static RUNTIME: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(
        || match std::env::var("TELECODER_TEST_RUNTIME").as_deref() {
            Ok("acpx") => "acpx",
            Ok("native") | Err(_) => "native",
            Ok(other) => panic!("TELECODER_TEST_RUNTIME must be native or acpx, not {other}"),
        },
    )
}

pub fn acpx_runtime() -> bool {
    runtime() == "acpx"
}

/// The variables that select the runtime under test (and, for acpx, the pinned acpx).
pub fn runtime_env() -> Vec<(&'static str, String)> {
    let mut env = vec![("TELECODER_RUNTIME", runtime().to_owned())];
    if acpx_runtime() {
        env.push((
            "TELECODER_ACPX_COMMAND",
            acpx().to_string_lossy().into_owned(),
        ));
    }
    env
}

pub fn mock_agent_command() -> String {
    format!("python3 {ROOT}/tests/mock-agent/mock_acp_agent.py")
}

/// Runs the `telecoder` CLI with only PATH, a throwaway HOME and `env` in its environment.
pub fn telecoder(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let home = tempfile::tempdir().expect("tempdir");
    Command::new(env!("CARGO_BIN_EXE_telecoder"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .envs(env.iter().copied())
        .output()
        .expect("run telecoder")
}

/// [`telecoder`] for a command that must end by itself (`serve` refusing a bad setting):
/// killed and failed when it is still running after `limit`.
#[track_caller]
pub fn telecoder_within(
    env: &[(&str, &str)],
    args: &[&str],
    limit: Duration,
) -> std::process::Output {
    let home = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_telecoder"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run telecoder");
    let deadline = Instant::now() + limit;
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("telecoder {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("telecoder output")
}

/// `serve` with `variable=value` (data in `data_dir`) must stop at start-up with exit 2;
/// returns what it printed on stderr.
#[track_caller]
pub fn refused_setting(data_dir: &str, variable: &str, value: &str) -> String {
    let output = telecoder_within(
        &[
            ("TELECODER_DATA_DIR", data_dir),
            ("TELECODER_LISTEN_PORT", "0"),
            (variable, value),
        ],
        &["serve"],
        SHORT,
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(2),
        "{variable}={value}: {stderr}"
    );
    stderr
}

/// Serves `routes` on a loopback port from a thread of its own (a fake GitHub API, a
/// notification receiver); returns its base URL, `http://127.0.0.1:PORT`.
pub fn serve_on_loopback(routes: warp::filters::BoxedFilter<(warp::reply::Response,)>) -> String {
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let _ = url_tx.send(format!("http://{}", listener.local_addr().expect("addr")));
            warp::serve(routes).incoming(listener).run().await;
        });
    });
    url_rx.recv().expect("server url")
}

/// Polls `check` every 50 ms until it yields a value or `timeout` passes.
#[track_caller]
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A git repository with one commit on `main`.
pub struct TestRepo {
    pub dir: TempDir,
}

impl TestRepo {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Self { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        std::fs::write(repo.path().join("README.md"), "# demo\n").expect("write");
        repo.commit_all("init");
        repo
    }

    /// Commits everything in the working tree.
    pub fn commit_all(&self, message: &str) {
        self.git(&["add", "."]);
        self.git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-qm",
            message,
        ]);
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn path_str(&self) -> String {
        self.path().to_string_lossy().into_owned()
    }

    pub fn git(&self, args: &[&str]) -> String {
        git_in(self.path(), args)
    }
}

pub fn git_in(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A running `telecoder serve`.
pub struct TestDaemon {
    child: Option<Child>,
    pub url: String,
    pub data_dir: PathBuf,
    _data: Option<Arc<TempDir>>,
    env: Vec<(String, String)>,
    /// The command line before `serve`, when it is not the test binary itself.
    command: Vec<String>,
    pub log: Arc<Mutex<String>>,
    /// Set once [`Self::restart`] handed the data directory (and its sessions) to a successor.
    handed_over: bool,
}

/// The environment every test daemon gets; `extra` overrides.
fn base_env(data_dir: &Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        (
            "TELECODER_DATA_DIR",
            data_dir.to_string_lossy().into_owned(),
        ),
        ("TELECODER_LISTEN_HOST", "127.0.0.1".into()),
        ("TELECODER_LISTEN_PORT", "0".into()),
        ("TELECODER_AGENT_MOCK_COMMAND", mock_agent_command()),
        ("TELECODER_DEFAULT_AGENT", "mock".into()),
        ("TELECODER_SESSION_HEARTBEAT_SECONDS", "1".into()),
        ("TELECODER_SESSION_STALE_SECONDS", "3".into()),
        ("TELECODER_LOG", "info".into()),
    ]
    .into_iter()
    .chain(runtime_env())
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (key, value) in extra {
        env.retain(|(k, _)| k != key);
        env.push((key.to_string(), value.to_string()));
    }
    env
}

impl TestDaemon {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[(&str, &str)]) -> Self {
        let data = Arc::new(tempfile::tempdir().expect("tempdir"));
        let data_dir = data.path().to_path_buf();
        Self::spawn(base_env(&data_dir, extra), data_dir, Some(data), Vec::new())
    }

    /// A daemon started by `command` (e.g. `setpriv … -- <a copy of the binary>`) + `serve`.
    pub fn start_as(command: Vec<String>, extra: &[(&str, &str)]) -> Self {
        let data = Arc::new(tempfile::tempdir().expect("tempdir"));
        let data_dir = data.path().to_path_buf();
        Self::spawn(base_env(&data_dir, extra), data_dir, Some(data), command)
    }

    fn spawn(
        env: Vec<(String, String)>,
        data_dir: PathBuf,
        data: Option<Arc<TempDir>>,
        command: Vec<String>,
    ) -> Self {
        let mut child = match command.split_first() {
            Some((program, args)) => {
                let mut line = Command::new(program);
                line.args(args);
                line
            }
            None => Command::new(env!("CARGO_BIN_EXE_telecoder")),
        }
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "HOME",
            std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()),
        )
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start telecoder serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    // Text logs end the URL with a space, JSON logs with a quote.
                    let url = rest
                        .split(|c: char| c.is_whitespace() || c == '"')
                        .next()
                        .unwrap_or_default();
                    let _ = url_tx.send(url.to_owned());
                }
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let url = match url_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "daemon did not start: {}",
                    log.lock().unwrap_or_else(|e| e.into_inner())
                );
            }
        };
        Self {
            child: Some(child),
            url,
            data_dir,
            _data: data,
            env,
            command,
            log,
            handed_over: false,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        child.wait().ok()
    }

    /// A new daemon on the same data directory (after kill9 or terminate).
    pub fn restart(mut self) -> Self {
        self.kill9();
        self.handed_over = true;
        let data = self._data.take();
        let (env, command) = (
            std::mem::take(&mut self.env),
            std::mem::take(&mut self.command),
        );
        Self::spawn(env, self.data_dir.clone(), data, command)
    }

    pub fn database(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.data_dir.join("telecoder.sqlite")).expect("open db")
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn api(&self) -> Api {
        Api::new(&self.url)
    }
}

impl Drop for TestDaemon {
    /// A test that ends (or panics) leaves nothing running: the daemon is frozen so it
    /// starts nothing new, then it, every process it started (agents run in process groups
    /// of their own) and every process carrying one of its sessions' markers (orphans of an
    /// earlier instance on the same data directory included) are killed with their groups.
    fn drop(&mut self) {
        if self.handed_over {
            // The successor's agents and the orphans it is to reap are not ours to kill.
            return;
        }
        let mut doomed = Vec::new();
        if let Some(child) = &self.child {
            let pid = child.id() as i32;
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGSTOP,
            );
            doomed = descendants(pid);
        }
        self.kill9();
        doomed.extend(marked_processes(&session_ids(&self.data_dir)));
        kill_with_groups(&doomed);
    }
}

/// Every session id in a data directory's database (none when it cannot be read).
fn session_ids(data_dir: &Path) -> Vec<String> {
    let Ok(db) = rusqlite::Connection::open_with_flags(
        data_dir.join("telecoder.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    ) else {
        return Vec::new();
    };
    let Ok(mut stmt) = db.prepare("SELECT id FROM sessions") else {
        return Vec::new();
    };
    stmt.query_map([], |row| row.get::<_, String>(0))
        .map(|rows| rows.flatten().collect())
        .unwrap_or_default()
}

/// The pid of every process in `/proc`.
pub fn all_pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .collect()
}

/// `(pid, parent pid, process group)` of every live process.
fn process_table() -> Vec<(i32, i32, i32)> {
    all_pids()
        .into_iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The command name may hold spaces and parentheses; fields follow the last ')'.
            let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(1);
            let ppid = fields.next()?.parse().ok()?;
            let pgrp = fields.next()?.parse().ok()?;
            Some((pid, ppid, pgrp))
        })
        .collect()
}

/// `(pid, process group)` of every process below `root`.
fn descendants(root: i32) -> Vec<(i32, i32)> {
    let table = process_table();
    let mut found = Vec::new();
    let mut parents = vec![root];
    while let Some(parent) = parents.pop() {
        for &(pid, ppid, pgrp) in &table {
            if ppid == parent && !found.iter().any(|(p, _)| *p == pid) {
                found.push((pid, pgrp));
                parents.push(pid);
            }
        }
    }
    found
}

/// `(pid, process group)` of live processes carrying any of these sessions' markers.
fn marked_processes(session_ids: &[String]) -> Vec<(i32, i32)> {
    if session_ids.is_empty() {
        return Vec::new();
    }
    let markers: Vec<Vec<u8>> = session_ids
        .iter()
        .map(|id| format!("TELECODER_SESSION_ID={id}").into_bytes())
        .collect();
    process_table()
        .into_iter()
        .filter(|(pid, _, _)| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|b| *b == 0)
                    .any(|entry| markers.iter().any(|m| m.as_slice() == entry))
            })
        })
        .map(|(pid, _, pgrp)| (pid, pgrp))
        .collect()
}

/// SIGKILL to each process and to its group, except the test runner's own group.
fn kill_with_groups(processes: &[(i32, i32)]) {
    use nix::sys::signal::{kill, killpg, Signal};
    use nix::unistd::{getpgrp, Pid};
    let own = getpgrp().as_raw();
    for &(pid, pgrp) in processes {
        if pgrp > 1 && pgrp != own {
            let _ = killpg(Pid::from_raw(pgrp), Signal::SIGKILL);
        }
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Resident memory of a process in kB (0 when it is gone).
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A blocking HTTP client for the API.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    http: reqwest::Client,
    runtime: Arc<tokio::runtime::Runtime>,
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub content_type: String,
}

impl Api {
    pub fn new(base: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // No pooled connections: a request never lands on a connection the daemon is closing
        // for idleness, whatever its idle timeouts are.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("http client");
        Self {
            base: base.to_owned(),
            http,
            runtime: Arc::new(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime"),
            ),
        }
    }

    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    pub fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        self.block_on(async {
            let response = request.send().await.expect("request reaches the daemon");
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let text = response.text().await.expect("read body");
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            Reply {
                status,
                body,
                content_type,
            }
        })
    }

    pub fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(format!("{}{path}", self.base)))
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
    }

    pub fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Reply {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body),
        )
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Creates a session and returns its record (asserting 201).
    #[track_caller]
    pub fn create(&self, repo: &str, prompt: &str, extra: Value) -> Value {
        let mut body = json!({ "repo": repo, "prompt": prompt });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let reply = self.post("/api/sessions", &body);
        assert_eq!(reply.status, 201, "create failed: {}", reply.body);
        reply.body
    }

    /// Creates a session with default options and returns its id (asserting 201).
    #[track_caller]
    pub fn create_id(&self, repo: &str, prompt: &str) -> String {
        self.create(repo, prompt, json!({}))["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The pids a `@mock spawn-tree` agent reported (its child and grandchild).
    #[track_caller]
    pub fn spawned_pids(&self, id: &str) -> Vec<i32> {
        wait_for("agent pids", SHORT, || {
            self.events(id)
                .iter()
                .filter_map(|e| e["data"].as_str())
                .find(|d| d.starts_with("pids:"))
                .map(|d| {
                    d.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect::<Vec<i32>>()
                })
        })
    }

    pub fn session(&self, id: &str) -> Value {
        let reply = self.get(&format!("/api/sessions/{id}"));
        assert_eq!(reply.status, 200, "get session {id}: {}", reply.body);
        reply.body
    }

    pub fn events(&self, id: &str) -> Vec<Value> {
        let reply = self.get(&format!("/api/sessions/{id}/events"));
        assert_eq!(reply.status, 200);
        reply.body.as_array().cloned().unwrap_or_default()
    }

    /// Waits until the session is finished and returns it.
    #[track_caller]
    pub fn wait_finished(&self, id: &str, timeout: Duration) -> Value {
        wait_for(&format!("session {id} to finish"), timeout, || {
            let session = self.session(id);
            let status = session["status"].as_str().unwrap_or_default().to_owned();
            (!matches!(status.as_str(), "pending" | "running")).then_some(session)
        })
    }

    /// [`Self::wait_finished`] against a daemon that requires a token.
    #[track_caller]
    pub fn wait_finished_with(&self, id: &str, token: &str) -> Value {
        wait_for(&format!("session {id} to finish"), SHORT, || {
            let reply = self.send(
                self.http
                    .get(format!("{}/api/sessions/{id}", self.base))
                    .bearer_auth(token),
            );
            let status = reply.body["status"].as_str().unwrap_or_default().to_owned();
            (!matches!(status.as_str(), "pending" | "running")).then_some(reply.body)
        })
    }

    #[track_caller]
    pub fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        wait_for(&format!("session {id} to be {status}"), timeout, || {
            let session = self.session(id);
            (session["status"] == status).then_some(session)
        })
    }

    pub fn list(&self, query: &str) -> Vec<Value> {
        let reply = self.get(&format!("/api/sessions{query}"));
        assert_eq!(reply.status, 200, "list {query}: {}", reply.body);
        reply.body.as_array().cloned().unwrap_or_default()
    }
}

pub fn ids(sessions: &[Value]) -> Vec<String> {
    sessions
        .iter()
        .map(|s| s["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// True while a process with this pid exists (and is neither a zombie nor dead).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Pids of live processes whose environment carries this session's marker.
pub fn session_processes(session_id: &str) -> Vec<i32> {
    processes_with_env(&format!("TELECODER_SESSION_ID={session_id}"))
}

/// Pids of live processes with `marker` (`NAME=value`) in their environment.
pub fn processes_with_env(marker: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| process_alive(*pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| {
                    env.split(|b| *b == 0)
                        .any(|entry| entry == marker.as_bytes())
                })
                .unwrap_or(false)
        })
        .collect()
}

/// The bound of most waits: generous, since under the acpx runtime every session starts a node
/// process (~1-2 CPU-s) and the suite shares 2 cores with other work. Passing tests never wait
/// for it.
pub const SHORT: Duration = Duration::from_secs(60);
