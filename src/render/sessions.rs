//! Sessions, their outcomes and their events, for a person.

use super::{age, fields, listing, repo_cell, short};
use std::fmt::Write as _;
use std::time::SystemTime;
use telecoder_actors::domain::{Approval, ApprovalStatus, Event, EventKind, Session};

pub fn sessions(sessions: &[Session]) -> String {
    listing(
        sessions,
        "no sessions",
        &["ID", "STATUS", "AGE", "AGENT", "REPO", "HEADLINE"],
        |s, now| {
            vec![
                s.id.clone(),
                status_cell(s),
                age(&s.created_at, now),
                short(&s.agent, 12),
                repo_cell(&s.repo),
                short(&s.outcome_headline, 60),
            ]
        },
    )
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
    fields(
        &mut text,
        "",
        &[
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
        ],
    );
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
        EventKind::Approval => approval_line(&e.data),
        _ => e.data.clone(),
    }
}

/// An `approval` event as one line: what is asked, and how to answer it while it is pending.
fn approval_line(data: &str) -> String {
    let Ok(approval) = serde_json::from_str::<Approval>(data) else {
        return data.to_owned();
    };
    let what = format!("{} ({})", approval.tool_call.title, approval.tool_call.kind);
    match approval.status {
        ApprovalStatus::Pending => format!(
            "waiting for a person: {what}; telecoder approve {id} | telecoder deny {id}",
            id = approval.id
        ),
        status => format!(
            "{} {} by {}: {what}",
            approval.id,
            status.as_str(),
            approval.decided_by
        ),
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
