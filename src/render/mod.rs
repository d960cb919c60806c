//! How the CLI shows things to a person: tables and text. (Machines get the records as JSON;
//! see `cli::output`.) The shared cell helpers and the configuration live here; sessions and
//! their events in `sessions`, watches in `watches`, the admin views in `admin`.

mod admin;
mod sessions;
mod watches;

pub use admin::{actor_tree, admin_status, notify_results};
pub use sessions::{event, event_line, inbox, outcome, session, sessions};
pub use watches::{watch, watch_runs, watches};

use crate::config::Config;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;
use telecoder_actors::domain::time;

/// The first line of `text`, cut at `max` characters with an ellipsis.
pub(crate) fn short(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

/// The end of `text` when it is too long: for paths, the end is what tells them apart.
fn tail(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().skip(count - max + 1).collect();
    format!("…{kept}")
}

/// Columns padded to their widest cell; the last column runs free.
pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(&rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// How long ago `timestamp` was, compactly: `42s`, `5m`, `3h`, `2d`.
pub fn age(timestamp: &str, now: SystemTime) -> String {
    let Some(at) = time::parse(timestamp) else {
        return "-".into();
    };
    let secs = now.duration_since(at).map(|d| d.as_secs()).unwrap_or(0);
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// A repository as a column: `owner/name` for GitHub, the end of a path or URL otherwise.
pub(crate) fn repo_cell(repo: &str) -> String {
    let key = telecoder_actors::domain::repo::repo_key(repo);
    match key.strip_prefix("github.com/") {
        Some(short) => tail(short, 30),
        None => tail(&key, 30),
    }
}

/// The resolved configuration, one `VARIABLE=value` per line.
pub fn config(config: &Config) -> String {
    config
        .describe()
        .into_iter()
        .map(|(key, value)| format!("{key}={value}\n"))
        .collect()
}

/// The resolved configuration as the reference prints it (`bun run config`): its keys, in its
/// order, with its types; then ours (marked (ext) in the README).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigView {
    data_dir: String,
    db_path: String,
    workspace_dir: String,
    listen_host: String,
    listen_port: u16,
    acpx_command: String,
    /// Agent name (lower case, `-` for `_`) → command, as the reference keys it.
    agent_commands: BTreeMap<String, String>,
    default_agent: String,
    default_policy_mode: &'static str,
    permission_mode: &'static str,
    workspace_write_policy: &'static str,
    policy_max_runtime_seconds: u64,
    prompt_timeout_seconds: u64,
    /// (ext) `TELECODER_APPROVAL_TIMEOUT`.
    approval_timeout_seconds: u64,
    session_heartbeat_seconds: u64,
    session_stale_seconds: u64,
    url: String,
    max_concurrent_sessions: usize,
    max_output_bytes: usize,
    watch_max_runs_per_hour: u32,
    allowed_repos: Vec<String>,
    shutdown_grace_seconds: u64,
    resume_interrupted: bool,
    github_webhook_secret_set: bool,
    api_token_set: bool,
    log_format: &'static str,
    runtime: &'static str,
    schedule_min_interval_seconds: u64,
    allowed_origins: Vec<String>,
    allowed_hosts: Vec<String>,
    workspace_retention_seconds: u64,
    /// `null` when there is no cap.
    workspace_max_bytes: Option<u64>,
    workspace_gc_interval_seconds: u64,
    /// (ext) notification targets, secrets masked, with their filters.
    notify_targets: Vec<String>,
    notify_secret_set: bool,
    public_url: String,
}

impl ConfigView {
    pub fn of(config: &Config) -> Self {
        let s = &config.settings;
        let policy = s.default_policy.resolve(s.prompt_timeout_seconds);
        Self {
            data_dir: s.data_dir.display().to_string(),
            db_path: s.database_path().display().to_string(),
            workspace_dir: s.workspaces_dir().display().to_string(),
            listen_host: config.listen_host.clone(),
            listen_port: config.listen_port,
            acpx_command: shell_words::join(&s.acpx_command),
            agent_commands: s
                .agent_commands
                .iter()
                .map(|(name, command)| {
                    (name.to_ascii_lowercase().replace('_', "-"), command.clone())
                })
                .collect(),
            default_agent: s.default_agent.clone(),
            default_policy_mode: s.default_policy.as_str(),
            permission_mode: policy.permission.as_str(),
            workspace_write_policy: policy.writes.as_str(),
            policy_max_runtime_seconds: policy.max_runtime_seconds,
            prompt_timeout_seconds: s.prompt_timeout_seconds,
            approval_timeout_seconds: s.approval_timeout.as_secs(),
            session_heartbeat_seconds: s.heartbeat.as_secs(),
            session_stale_seconds: s.stale.as_secs(),
            url: config.url.clone(),
            max_concurrent_sessions: s.max_concurrent_sessions,
            max_output_bytes: s.max_output_bytes,
            watch_max_runs_per_hour: s.watch_max_runs_per_hour,
            allowed_repos: s.allowed_repos.iter().map(|p| p.to_string()).collect(),
            shutdown_grace_seconds: s.shutdown_grace.as_secs(),
            resume_interrupted: s.resume_interrupted,
            github_webhook_secret_set: config.github_webhook_secret.is_some(),
            api_token_set: config.tokens.any(),
            log_format: if config.json_logs { "json" } else { "text" },
            runtime: s.runtime.as_str(),
            schedule_min_interval_seconds: s.schedule_min_interval.as_secs(),
            allowed_origins: strings(&config.browser.allowed_origins),
            allowed_hosts: strings(&config.browser.allowed_hosts),
            workspace_retention_seconds: s.workspace_retention.as_secs(),
            workspace_max_bytes: s.workspace_max_bytes,
            workspace_gc_interval_seconds: s.workspace_gc_interval.as_secs(),
            notify_targets: crate::config::notify_targets(&s.notify),
            notify_secret_set: s.notify.secret.is_some(),
            public_url: s.notify.public_url.clone().unwrap_or_default(),
        }
    }
}

fn strings<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

/// `key value` lines, the keys padded to one column after `indent`; empty values are left out.
pub(crate) fn fields(text: &mut String, indent: &str, rows: &[(&str, &str)]) {
    for (key, value) in rows {
        if !value.is_empty() {
            let _ = writeln!(text, "{indent}{key:<9} {value}");
        }
    }
}

/// `items` as a table of one row each, or `empty` when there are none.
pub(crate) fn listing<T>(
    items: &[T],
    empty: &str,
    headers: &[&str],
    row: impl Fn(&T, SystemTime) -> Vec<String>,
) -> String {
    if items.is_empty() {
        return format!("{empty}\n");
    }
    let now = SystemTime::now();
    table(headers, items.iter().map(|item| row(item, now)).collect())
}

#[cfg(test)]
mod tests;
