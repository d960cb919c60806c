//! The resolved settings the actors run with. The binary builds them from the environment;
//! tests build them directly.

use crate::domain::PolicyMode;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the supervisor and its children need to know about their environment.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Holds `telecoder.sqlite` and `workspaces/`.
    pub data_dir: PathBuf,
    /// Agent used when a request names none.
    pub default_agent: String,
    /// Policy used when a request names none.
    pub default_policy: PolicyMode,
    /// Which runtime talks to agents (`TELECODER_RUNTIME`).
    pub runtime: RuntimeKind,
    /// The acpx program and its leading arguments, already split like a shell would.
    pub acpx_command: Vec<String>,
    /// Per-agent command overrides keyed by the upper-case agent name (`-` written as `_`).
    pub agent_commands: BTreeMap<String, String>,
    /// Global cap on any session's runtime.
    pub prompt_timeout_seconds: u64,
    /// How long an approval (policy `ask`) waits for a person before it is denied
    /// (`TELECODER_APPROVAL_TIMEOUT`); never longer than the session's own bound.
    pub approval_timeout: Duration,
    /// How often a running session proves it is alive.
    pub heartbeat: Duration,
    /// How old a heartbeat may get before the session counts as abandoned.
    pub stale: Duration,
    /// Sessions allowed to run at once; the rest wait in FIFO order.
    pub max_concurrent_sessions: usize,
    /// Cap on the agent text kept per session, so a flooding agent cannot exhaust memory.
    pub max_output_bytes: usize,
    /// Default for a watch's sessions per rolling hour (a loop or a flaky CI cannot run away).
    pub watch_max_runs_per_hour: u32,
    /// Shortest time a schedule may leave between two runs (`* * * * * *` would start a
    /// session every second).
    pub schedule_min_interval: Duration,
    /// Repositories sessions and watches may use (globs); empty allows any.
    pub allowed_repos: Vec<glob::Pattern>,
    /// Masks secrets in everything stored (events, outcomes, errors).
    pub redactor: crate::domain::redact::Redactor,
    /// Variables removed from the agent's environment (tokens, secrets).
    pub agent_env_blocklist: Vec<String>,
    /// How long a shutdown waits for running sessions before stopping them.
    pub shutdown_grace: Duration,
    /// Re-queue sessions interrupted by a crash or shutdown (as reruns) instead of only
    /// marking them abandoned.
    pub resume_interrupted: bool,
    /// GitHub REST API base (`TELECODER_GITHUB_API_URL`; GitHub Enterprise, tests).
    pub github_api_url: String,
    /// `GITHUB_TOKEN` / `GH_TOKEN`; `gh auth token` is asked when unset.
    pub github_token: Option<Secret>,
    /// Author of the commit that publishing makes from uncommitted workspace changes.
    pub git_author_name: String,
    pub git_author_email: String,
    /// How long a finished session's workspace is kept before the collector removes it
    /// (`TELECODER_WORKSPACE_RETENTION`).
    pub workspace_retention: Duration,
    /// Total size the workspaces may take; the oldest finished ones go first beyond it
    /// (`TELECODER_WORKSPACE_MAX_BYTES`; `None` = no cap).
    pub workspace_max_bytes: Option<u64>,
    /// How often the supervisor runs the workspace collector
    /// (`TELECODER_WORKSPACE_GC_INTERVAL`).
    pub workspace_gc_interval: Duration,
    /// Notification targets and how to sign and link (issue 15).
    pub notify: crate::notify::NotifySettings,
}

named_enum! {
    /// How sessions talk to their agent: ACP spoken in-process over the agent's stdio
    /// (`native`, the default), or the acpx CLI per session (`acpx`, the compatibility path).
    #[derive(Default)]
    pub enum RuntimeKind ("runtime") { #[default] Native = "native", Acpx = "acpx" }
}

/// A credential that never shows itself in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl Settings {
    /// Sensible defaults rooted at `data_dir`; the binary overrides them from the environment.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            default_agent: "codex".into(),
            default_policy: PolicyMode::Observe,
            runtime: RuntimeKind::Native,
            acpx_command: vec!["acpx".into()],
            agent_commands: BTreeMap::new(),
            prompt_timeout_seconds: 300,
            approval_timeout: Duration::from_secs(30 * 60),
            heartbeat: Duration::from_secs(5),
            stale: Duration::from_secs(30),
            max_concurrent_sessions: default_concurrency(),
            max_output_bytes: 8 * 1024 * 1024,
            watch_max_runs_per_hour: 10,
            schedule_min_interval: Duration::from_secs(60),
            allowed_repos: Vec::new(),
            redactor: crate::domain::redact::Redactor::default(),
            agent_env_blocklist: SECRET_VARIABLES.iter().map(|v| (*v).to_owned()).collect(),
            shutdown_grace: Duration::from_secs(10),
            resume_interrupted: false,
            github_api_url: "https://api.github.com".into(),
            github_token: None,
            git_author_name: "TeleCoder".into(),
            git_author_email: "telecoder@localhost".into(),
            workspace_retention: DEFAULT_WORKSPACE_RETENTION,
            workspace_max_bytes: None,
            workspace_gc_interval: DEFAULT_WORKSPACE_GC_INTERVAL,
            notify: crate::notify::NotifySettings::default(),
        }
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("telecoder.sqlite")
    }

    pub fn workspaces_dir(&self) -> PathBuf {
        self.data_dir.join("workspaces")
    }

    /// Per-repository mirrors remote clones share objects with.
    pub fn mirrors_dir(&self) -> PathBuf {
        self.data_dir.join("mirrors")
    }

    /// Bundles of collected workspaces whose work was neither fetched nor published.
    pub fn archive_dir(&self) -> PathBuf {
        self.data_dir.join("archive")
    }

    /// Where collected directories wait to be deleted (so a crash never leaves half of one
    /// among the live workspaces).
    pub fn trash_dir(&self) -> PathBuf {
        self.data_dir.join("trash")
    }

    /// Scratch files of the daemon's own git work (temporary indexes).
    pub fn scratch_dir(&self) -> PathBuf {
        self.data_dir.join("tmp")
    }

    /// The command override for `agent`, if one is configured.
    pub fn agent_command(&self, agent: &str) -> Option<&str> {
        self.agent_commands
            .get(&agent_env_key(agent))
            .map(String::as_str)
    }
}

/// Finished sessions' workspaces are kept this long by default: 14 days.
pub const DEFAULT_WORKSPACE_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);
/// The collector runs hourly by default.
pub const DEFAULT_WORKSPACE_GC_INTERVAL: Duration = Duration::from_secs(3600);

/// Variables that carry TeleCoder's or GitHub's credentials; agents never see them unless the
/// operator passes them through explicitly.
pub const SECRET_VARIABLES: [&str; 10] = [
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "TELECODER_API_TOKEN",
    "TELECODER_API_TOKEN_FILE",
    "TELECODER_API_READ_TOKEN",
    "TELECODER_ADMIN_TOKEN",
    "TELECODER_GITHUB_WEBHOOK_SECRET",
    "GITHUB_APP_PRIVATE_KEY",
    // Notification targets carry credentials in their URLs (Slack hooks, ntfy tokens).
    "TELECODER_NOTIFY",
    "TELECODER_NOTIFY_SECRET",
];

impl Settings {
    /// Whether sessions and watches may use `repo`. Patterns are matched against the resolved
    /// forms only (symlinks and `..` applied), never against the string as given.
    pub fn repo_allowed(&self, repo: &crate::domain::repo::RepoTarget) -> bool {
        self.allowed_repos.is_empty()
            || repo
                .allowlist_forms()
                .iter()
                .any(|form| self.allowed_repos.iter().any(|p| p.matches(form)))
    }
}

/// `my-agent` → `MY_AGENT`, the NAME part of `TELECODER_AGENT_<NAME>_COMMAND`.
pub fn agent_env_key(agent: &str) -> String {
    agent.to_ascii_uppercase().replace('-', "_")
}

/// Agents mostly wait on a model, so two per core keeps a small VPS busy without thrashing.
pub fn default_concurrency() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4)
}
