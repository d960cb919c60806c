//! How the CLI shows things: readable text for a person, JSON with `--json`.

use crate::cli::to_value;
use crate::config::Config;
use std::io::Write;
use telecoder_actors::domain::{Event, EventKind, Session, Triggered, Watch, WatchRun};

fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(&to_value(value)).unwrap_or_default()
    );
}

fn short(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

pub fn config(config: &Config, json: bool) {
    let rows = config.describe();
    if json {
        let map: serde_json::Map<String, serde_json::Value> =
            rows.into_iter().map(|(k, v)| (k, v.into())).collect();
        print_json(&map);
    } else {
        for (key, value) in rows {
            println!("{key}={value}");
        }
    }
}

pub fn sessions(sessions: &[Session], json: bool) {
    if json {
        return print_json(&sessions);
    }
    if sessions.is_empty() {
        println!("no sessions");
        return;
    }
    println!(
        "{:<8}  {:<9}  {:<10}  {:<8}  {:>3}  HEADLINE",
        "ID", "STATUS", "AGENT", "POLICY", "TRY"
    );
    for s in sessions {
        println!(
            "{:<8}  {:<9}  {:<10}  {:<8}  {:>3}  {}",
            s.id,
            s.status.as_str(),
            short(&s.agent, 10),
            s.policy_mode.as_str(),
            s.attempt,
            short(&s.outcome_headline, 70)
        );
    }
}

pub fn session(s: &Session, json: bool) {
    if json {
        return print_json(s);
    }
    let rows = [
        ("id", s.id.as_str()),
        ("status", s.status.as_str()),
        ("failure", s.failure_kind.as_str()),
        ("repo", &s.repo),
        ("agent", &s.agent),
        ("runtime", &s.runtime_command),
        ("policy", s.policy_mode.as_str()),
        ("parent", &s.parent_session_id),
        ("branch", &s.branch),
        ("workdir", &s.work_dir),
        ("created", &s.created_at),
        ("started", &s.started_at),
        ("finished", &s.finished_at),
        ("error", &s.error),
    ];
    for (key, value) in rows {
        if !value.is_empty() {
            println!("{key:<9} {value}");
        }
    }
    if s.pull_request_number > 0 {
        println!(
            "{:<9} #{} {}",
            "pr", s.pull_request_number, s.pull_request_url
        );
    }
    if s.queue_position > 0 {
        println!("{:<9} {}", "queue", s.queue_position);
    }
    println!("{:<9} {}", "attempt", s.attempt);
    println!("{:<9} {}", "prompt", short(&s.prompt, 100));
    outcome(s);
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

pub fn outcome(s: &Session) {
    println!("\n{}", s.outcome_headline);
    for (label, value) in sections(s) {
        println!("  {label}: {value}");
    }
}

pub fn inbox(sessions: &[Session], json: bool) {
    if json {
        return print_json(&sessions);
    }
    if sessions.is_empty() {
        println!("inbox is empty");
        return;
    }
    for s in sessions {
        println!("{} [{}] {}", s.id, s.status.as_str(), s.outcome_headline);
        for (label, value) in sections(s) {
            println!("    {label}: {}", short(value, 120));
        }
    }
}

/// One event as a listing line (`telecoder events`).
pub fn event_line(e: &Event, json: bool) {
    if json {
        println!("{}", serde_json::to_string(e).unwrap_or_default());
    } else {
        println!(
            "#{:<6} {} {:<6} {}",
            e.id,
            e.created_at,
            e.kind.as_str(),
            e.data
        );
    }
}

/// One event as it streams (`telecoder run`, `events --follow`): output text is shown as is.
pub fn event(e: &Event, json: bool) {
    if json {
        println!("{}", serde_json::to_string(e).unwrap_or_default());
        return;
    }
    match e.kind {
        EventKind::Output => {
            print!("{}", e.data);
            let _ = std::io::stdout().flush();
        }
        EventKind::Status => println!("[status] {}", e.data),
        EventKind::Done => println!("\n[done] {}", e.data),
        EventKind::Error => println!("\n[error] {}", e.data),
        EventKind::Publish => println!("[publish] {}", e.data),
        EventKind::Fetch => println!("[fetch] {}", e.data),
    }
}

pub fn watch(w: &Watch, json: bool) {
    if json {
        return print_json(w);
    }
    println!(
        "watch {} ({}, {})",
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
            println!("  {key:<9} {value}");
        }
    }
    println!("  {:<9} {}", "policy", w.policy_mode.as_str());
    println!("  {:<9} {}", "max/hour", w.max_runs_per_hour);
    if w.skip_drafts {
        println!("  {:<9} skipped", "drafts");
    }
    println!("  {:<9} {}", "do", short(&w.instructions, 100));
}

pub fn watches(watches: &[Watch], json: bool) {
    if json {
        return print_json(&watches);
    }
    if watches.is_empty() {
        println!("no watches");
        return;
    }
    println!(
        "{:<8}  {:<10}  {:<7}  {:<30}  INSTRUCTIONS",
        "ID", "KIND", "STATUS", "REPO"
    );
    for w in watches {
        println!(
            "{:<8}  {:<10}  {:<7}  {:<30}  {}",
            w.id,
            w.kind.as_str(),
            w.status.as_str(),
            short(&w.repo, 30),
            short(&w.instructions, 60)
        );
    }
}

pub fn watch_runs(runs: &[WatchRun], json: bool) {
    if json {
        return print_json(&runs);
    }
    if runs.is_empty() {
        println!("no runs");
        return;
    }
    for run in runs {
        let session = if run.session_id.is_empty() {
            "-"
        } else {
            run.session_id.as_str()
        };
        println!(
            "run {} [{}] session {} {}",
            run.id, run.event_key, session, run.created_at
        );
        println!("  {}", run.trigger_summary);
        if !run.skipped_reason.is_empty() {
            println!("  skipped: {}", run.skipped_reason);
        }
        for line in run.return_summary.lines() {
            println!("  {line}");
        }
    }
}

pub fn triggered(started: &[Triggered], json: bool) {
    if json {
        return print_json(&started);
    }
    if started.is_empty() {
        println!("no watch fired");
    }
    for t in started {
        println!(
            "watch {} started session {} (run {}): {}",
            t.watch_id, t.session_id, t.run_id, t.trigger_summary
        );
    }
}

/// The actor tree for a person (`telecoder admin actors`).
pub fn actor_tree(tree: &serde_json::Value, json: bool) {
    if json {
        return print_json(tree);
    }
    fn line(node: &serde_json::Value) -> String {
        let secs = node["uptimeMs"].as_u64().unwrap_or(0) as f64 / 1000.0;
        let mut text = format!(
            "{} {} [{}] up {secs:.1}s",
            node["kind"].as_str().unwrap_or_default(),
            node["name"].as_str().unwrap_or_default(),
            node["status"].as_str().unwrap_or_default(),
        );
        if let Some(handled) = node["messagesHandled"].as_u64() {
            text.push_str(&format!(" msgs {handled}"));
        }
        if let Some(restarts) = node["restarts"].as_u64().filter(|r| *r > 0) {
            text.push_str(&format!(" restarts {restarts}"));
        }
        let session = &node["session"];
        if session.is_object() {
            text.push_str(&format!(
                " | session {} {} agent={} pid={} heartbeat {}ms ago",
                session["sessionId"].as_str().unwrap_or_default(),
                session["state"].as_str().unwrap_or_default(),
                session["agent"].as_str().unwrap_or_default(),
                session["pid"]
                    .as_u64()
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into()),
                session["lastHeartbeatAgeMs"].as_u64().unwrap_or(0),
            ));
        }
        let watch = &node["watch"];
        if watch.is_object() {
            text.push_str(&format!(
                " | watch {} {} events {}",
                watch["watchId"].as_str().unwrap_or_default(),
                watch["kind"].as_str().unwrap_or_default(),
                watch["eventsHandled"].as_u64().unwrap_or(0),
            ));
            if let Some(next) = watch["nextFire"].as_str().filter(|n| !n.is_empty()) {
                text.push_str(&format!(" next {next}"));
            }
        }
        text
    }
    println!("{}", line(tree));
    let children = tree["children"].as_array().cloned().unwrap_or_default();
    for (i, child) in children.iter().enumerate() {
        let branch = if i + 1 == children.len() {
            "└─"
        } else {
            "├─"
        };
        println!("{branch} {}", line(child));
    }
}
