//! How the CLI shows things to a person: tables and text. (Machines get the records as JSON;
//! see `cli::output`.)

use crate::config::Config;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;
use telecoder_actors::domain::schedule::{self, Schedule};
use telecoder_actors::domain::{time, Event, EventKind, Session, Watch, WatchKind, WatchRun};

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
fn repo_cell(repo: &str) -> String {
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

pub fn sessions(sessions: &[Session]) -> String {
    if sessions.is_empty() {
        return "no sessions\n".into();
    }
    let now = SystemTime::now();
    let rows = sessions
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                status_cell(s),
                age(&s.created_at, now),
                short(&s.agent, 12),
                repo_cell(&s.repo),
                short(&s.outcome_headline, 60),
            ]
        })
        .collect();
    table(&["ID", "STATUS", "AGE", "AGENT", "REPO", "HEADLINE"], rows)
}

/// A session's status, with what it waits for.
fn status_cell(s: &Session) -> String {
    if s.awaiting_approval {
        format!("{} (approval)", s.status.as_str())
    } else {
        s.status.as_str().to_owned()
    }
}

pub fn session(s: &Session) -> String {
    let mut text = String::new();
    let status = status_cell(s);
    let rows = [
        ("id", s.id.as_str()),
        ("status", status.as_str()),
        ("failure", s.failure_kind.as_str()),
        ("repo", &s.repo),
        ("agent", &s.agent),
        ("runtime", &s.runtime_command),
        ("policy", s.policy_mode.as_str()),
        ("parent", &s.parent_session_id),
        ("continues", &s.continued_from),
        ("branch", &s.branch),
        ("workdir", &s.work_dir),
        ("created", &s.created_at),
        ("started", &s.started_at),
        ("finished", &s.finished_at),
        ("error", &s.error),
    ];
    for (key, value) in rows {
        if !value.is_empty() {
            let _ = writeln!(text, "{key:<9} {value}");
        }
    }
    if s.pull_request_number > 0 {
        let _ = writeln!(
            text,
            "{:<9} #{} {}",
            "pr", s.pull_request_number, s.pull_request_url
        );
    }
    if s.queue_position > 0 {
        let _ = writeln!(text, "{:<9} {}", "queue", s.queue_position);
    }
    let _ = writeln!(text, "{:<9} {}", "attempt", s.attempt);
    let _ = writeln!(text, "{:<9} {}", "prompt", short(&s.prompt, 100));
    text.push_str(&outcome(s));
    text
}

/// The four outcome sections that have content, labelled.
fn sections(s: &Session) -> impl Iterator<Item = (&'static str, &str)> {
    [
        ("Changed", s.outcome_changed.as_str()),
        ("Verified", s.outcome_verified.as_str()),
        ("Uncertain", s.outcome_uncertain.as_str()),
        ("Next", s.outcome_next.as_str()),
    ]
    .into_iter()
    .filter(|(_, value)| !value.is_empty())
}

pub fn outcome(s: &Session) -> String {
    let mut text = format!("\n{}\n", s.outcome_headline);
    for (label, value) in sections(s) {
        let _ = writeln!(text, "  {label}: {value}");
    }
    text
}

pub fn inbox(sessions: &[Session]) -> String {
    if sessions.is_empty() {
        return "inbox is empty\n".into();
    }
    let now = SystemTime::now();
    let mut text = String::new();
    for s in sessions {
        let _ = writeln!(
            text,
            "{} [{}] {} ago {}: {}",
            s.id,
            s.status.as_str(),
            age(&s.updated_at, now),
            repo_cell(&s.repo),
            s.outcome_headline
        );
        for (label, value) in sections(s) {
            let _ = writeln!(text, "    {label}: {}", short(value, 120));
        }
    }
    text
}

/// One event as a listing line (`telecoder events`).
pub fn event_line(e: &Event) -> String {
    format!(
        "#{:<6} {} {:<6} {}\n",
        e.id,
        e.created_at,
        e.kind.as_str(),
        readable_data(e)
    )
}

/// One event as it streams (`telecoder run`, `events --follow`): output text is shown as is.
pub fn event(e: &Event) -> String {
    match e.kind {
        EventKind::Output => e.data.clone(),
        EventKind::Status => format!("[status] {}\n", e.data),
        EventKind::Done => format!("\n[done] {}\n", e.data),
        EventKind::Error => format!("\n[error] {}\n", e.data),
        EventKind::Publish => format!("[publish] {}\n", e.data),
        EventKind::Fetch => format!("[fetch] {}\n", e.data),
        EventKind::Tool | EventKind::Plan | EventKind::Approval => {
            format!("[{}] {}\n", e.kind.as_str(), readable_data(e))
        }
    }
}

/// Tool and plan events carry JSON; people read one line of it.
fn readable_data(e: &Event) -> String {
    match e.kind {
        EventKind::Tool => tool_line(&e.data),
        EventKind::Plan => plan_line(&e.data),
        EventKind::Approval => crate::cli::converse::approval_line(&e.data),
        _ => e.data.clone(),
    }
}

/// `completed read Read a.txt` from a tool event's JSON (the raw data if it is not JSON).
fn tool_line(data: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(data) {
        Ok(tool) => ["status", "kind", "title"]
            .iter()
            .filter_map(|key| tool[key].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) => data.to_owned(),
    }
}

/// `2/3 done; next: write tests` from a plan event's JSON.
fn plan_line(data: &str) -> String {
    let Ok(serde_json::Value::Array(entries)) = serde_json::from_str(data) else {
        return data.to_owned();
    };
    let done = entries
        .iter()
        .filter(|e| e["status"] == "completed")
        .count();
    let next = entries
        .iter()
        .find(|e| e["status"] != "completed")
        .and_then(|e| e["content"].as_str());
    match next {
        Some(next) => format!("{done}/{} done; next: {next}", entries.len()),
        None => format!("{done}/{} done", entries.len()),
    }
}

/// The next `count` times a schedule watch fires, in its time zone.
pub fn next_fires(w: &Watch, count: usize) -> Vec<String> {
    let Ok(schedule) = Schedule::parse(&w.schedule, &w.timezone) else {
        return Vec::new();
    };
    let mut at = jiff::Timestamp::now();
    let mut fires = Vec::new();
    while fires.len() < count {
        let Some(next) = schedule.next_after(at) else {
            break;
        };
        let zone = jiff::tz::TimeZone::get(&w.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
        fires.push(format!(
            "{} ({})",
            next.to_zoned(zone).strftime("%a %Y-%m-%d %H:%M:%S %Z"),
            schedule::slot_key(next)
        ));
        at = next;
    }
    fires
}

pub fn watch(w: &Watch) -> String {
    let mut text = format!(
        "watch {} ({}, {})\n",
        w.id,
        w.kind.as_str(),
        w.status.as_str()
    );
    let filters = [
        ("repo", &w.repo),
        ("workflow", &w.workflow_name),
        ("branch", &w.branch_name),
        ("base", &w.base_branch),
        ("head", &w.head_branch),
        ("schedule", &w.schedule),
        ("timezone", &w.timezone),
        ("agent", &w.agent),
        ("paused", &w.paused_reason),
    ];
    for (key, value) in filters {
        if !value.is_empty() {
            let _ = writeln!(text, "  {key:<9} {value}");
        }
    }
    let _ = writeln!(text, "  {:<9} {}", "policy", w.policy_mode.as_str());
    let _ = writeln!(text, "  {:<9} {}", "max/hour", w.max_runs_per_hour);
    if w.skip_drafts {
        let _ = writeln!(text, "  {:<9} skipped", "drafts");
    }
    let _ = writeln!(text, "  {:<9} {}", "do", short(&w.instructions, 100));
    if w.kind == WatchKind::Schedule {
        for (i, fire) in next_fires(w, 3).into_iter().enumerate() {
            let label = if i == 0 { "next" } else { "" };
            let _ = writeln!(text, "  {label:<9} {fire}");
        }
    }
    text
}

pub fn watches(watches: &[Watch]) -> String {
    if watches.is_empty() {
        return "no watches\n".into();
    }
    let now = SystemTime::now();
    let rows = watches
        .iter()
        .map(|w| {
            vec![
                w.id.clone(),
                w.kind.as_str().to_owned(),
                w.status.as_str().to_owned(),
                age(&w.created_at, now),
                repo_cell(&w.repo),
                short(&w.instructions, 60),
            ]
        })
        .collect();
    table(
        &["ID", "KIND", "STATUS", "AGE", "REPO", "INSTRUCTIONS"],
        rows,
    )
}

pub fn watch_runs(runs: &[WatchRun]) -> String {
    if runs.is_empty() {
        return "no runs\n".into();
    }
    let mut text = String::new();
    for run in runs {
        let session = if run.session_id.is_empty() {
            "-"
        } else {
            run.session_id.as_str()
        };
        let _ = writeln!(
            text,
            "run {} [{}] session {} {}",
            run.id, run.event_key, session, run.created_at
        );
        let _ = writeln!(text, "  {}", run.trigger_summary);
        if !run.skipped_reason.is_empty() {
            let _ = writeln!(text, "  skipped: {}", run.skipped_reason);
        }
        for line in run.return_summary.lines() {
            let _ = writeln!(text, "  {line}");
        }
    }
    text
}

/// `telecoder admin status` for a person.
pub fn admin_status(status: &Value) -> String {
    let mut text = String::new();
    let field = |value: &Value| match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    if let Some(object) = status.as_object() {
        for (key, value) in object {
            match value {
                Value::Object(inner) => {
                    let _ = writeln!(text, "{key}:");
                    for (k, v) in inner {
                        let _ = writeln!(text, "  {k:<22} {}", field(v));
                    }
                }
                other => {
                    let _ = writeln!(text, "{key:<24} {}", field(other));
                }
            }
        }
    }
    text
}

/// What each notification target answered to `notify-test`.
pub fn notify_results(results: &[telecoder_actors::notify::TestResult]) -> String {
    let rows = results
        .iter()
        .map(|r| {
            let result = if r.ok {
                format!("ok (HTTP {})", r.status)
            } else if r.error.is_empty() {
                format!("failed (HTTP {})", r.status)
            } else {
                format!("failed: {}", short(&r.error, 80))
            };
            vec![r.target.clone(), result, format!("{} ms", r.latency_ms)]
        })
        .collect();
    table(&["TARGET", "RESULT", "TIME"], rows)
}

/// The actor tree for a person (`telecoder admin actors`).
pub fn actor_tree(tree: &Value) -> String {
    fn line(node: &Value) -> String {
        let secs = node["uptimeMs"].as_u64().unwrap_or(0) as f64 / 1000.0;
        let mut text = format!(
            "{} {} [{}] up {secs:.1}s",
            node["kind"].as_str().unwrap_or_default(),
            node["name"].as_str().unwrap_or_default(),
            node["status"].as_str().unwrap_or_default(),
        );
        if let Some(handled) = node["messagesHandled"].as_u64() {
            let _ = write!(text, " msgs {handled}");
        }
        if let Some(restarts) = node["restarts"].as_u64().filter(|r| *r > 0) {
            let _ = write!(text, " restarts {restarts}");
        }
        let session = &node["session"];
        if session.is_object() {
            let _ = write!(
                text,
                " | session {} {} agent={} pid={} heartbeat {}ms ago",
                session["sessionId"].as_str().unwrap_or_default(),
                session["state"].as_str().unwrap_or_default(),
                session["agent"].as_str().unwrap_or_default(),
                session["pid"]
                    .as_u64()
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into()),
                session["lastHeartbeatAgeMs"].as_u64().unwrap_or(0),
            );
        }
        let watch = &node["watch"];
        if watch.is_object() {
            let _ = write!(
                text,
                " | watch {} {} events {}",
                watch["watchId"].as_str().unwrap_or_default(),
                watch["kind"].as_str().unwrap_or_default(),
                watch["eventsHandled"].as_u64().unwrap_or(0),
            );
            if let Some(next) = watch["nextFire"].as_str().filter(|n| !n.is_empty()) {
                let _ = write!(text, " next {next}");
            }
        }
        text
    }
    /// The nodes the daemon lists under the root, nested under the supervisor each names.
    fn branches(text: &mut String, nodes: &[Value], parent: &str, indent: &str) {
        let mine: Vec<&Value> = nodes
            .iter()
            .filter(|node| node["supervisor"].as_str() == Some(parent))
            .collect();
        for (i, node) in mine.iter().enumerate() {
            let last = i + 1 == mine.len();
            let _ = writeln!(
                text,
                "{indent}{} {}",
                if last { "└─" } else { "├─" },
                line(node)
            );
            let deeper = format!("{indent}{}", if last { "   " } else { "│  " });
            branches(
                text,
                nodes,
                node["name"].as_str().unwrap_or_default(),
                &deeper,
            );
        }
    }
    let mut text = format!("{}\n", line(tree));
    let children = tree["children"].as_array().cloned().unwrap_or_default();
    let root = tree["name"].as_str().unwrap_or_default();
    // A daemon that names no supervisors lists every actor right under the root.
    let named = children.iter().any(|c| c["supervisor"].is_string());
    let nodes: Vec<Value> = children
        .into_iter()
        .map(|mut c| {
            if !named {
                c["supervisor"] = Value::String(root.to_owned());
            }
            c
        })
        .collect();
    branches(&mut text, &nodes, root, "");
    text
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
