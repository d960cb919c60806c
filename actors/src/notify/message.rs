//! A notification as a person reads it, before any target's format: a title, a few lines, the
//! commands to act on it, a link, and how urgent it is. Pure.

use super::event::{excerpt, CrashFacts, Facts, SessionFacts, WatchFacts};

/// The neutral message every format renders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// One short line.
    pub title: String,
    /// What happened, a line each.
    pub lines: Vec<String>,
    /// CLI commands that act on it (`telecoder status ID`, `telecoder approve ID`).
    pub commands: Vec<String>,
    /// The dashboard page, when `TELECODER_PUBLIC_URL` says where the daemon is reachable.
    pub url: Option<String>,
    /// ntfy's scale: 1 (min) … 3 (default) … 5 (max).
    pub priority: u8,
    /// ntfy tags (emoji short codes); Slack shows the first as the message's emoji.
    pub tags: Vec<&'static str>,
}

/// Longest headline or error line a message carries.
const LINE: usize = 300;

/// Composes the message for `facts`; links are made below `public_url` when it is set.
pub fn compose(facts: &Facts, public_url: Option<&str>) -> Message {
    let link =
        |path: String| public_url.map(|base| format!("{}{path}", base.trim_end_matches('/')));
    match facts {
        Facts::Finished { session } => finished(session, link(format!("/sessions/{}", session.id))),
        Facts::Approval { session, approval } => {
            let mut lines = vec![format!(
                "{} asks to: {}",
                session.agent,
                excerpt(or(&approval.title, "(untitled tool call)"), LINE)
            )];
            let mut detail = Vec::new();
            if !approval.kind.is_empty() {
                detail.push(format!("kind {}", approval.kind));
            }
            if !approval.locations.is_empty() {
                detail.push(excerpt(&approval.locations.join(", "), 120));
            }
            if !detail.is_empty() {
                lines.push(detail.join(" · "));
            }
            lines.push(session_line(session));
            Message {
                title: format!("Approval needed: {}", short_repo(&session.repo)),
                lines,
                commands: vec![
                    format!("telecoder approve {}", approval.id),
                    format!("telecoder deny {}", approval.id),
                ],
                url: link(format!("/sessions/{}", session.id)),
                priority: 4,
                tags: vec!["raising_hand"],
            }
        }
        Facts::Paused { watch } => paused(watch, link(format!("/watches/{}", watch.id))),
        Facts::Crash { daemon } => crash(daemon, link(String::new())),
        Facts::Test => Message {
            title: "TeleCoder test notification".into(),
            lines: vec!["Notifications from this daemon reach this target.".into()],
            commands: vec!["telecoder notify-test".into()],
            url: link(String::new()),
            priority: 3,
            tags: vec!["test_tube"],
        },
    }
}

fn finished(session: &SessionFacts, url: Option<String>) -> Message {
    let repo = short_repo(&session.repo);
    let (title, priority, tag) = match (session.status.as_str(), session.failure_kind.as_str()) {
        ("complete", _) => (format!("Session complete: {repo}"), 3, "white_check_mark"),
        ("cancelled", _) => (format!("Session cancelled: {repo}"), 2, "no_entry"),
        (_, "abandoned") => (format!("Session abandoned: {repo}"), 4, "warning"),
        (_, "") => (format!("Session failed: {repo}"), 4, "x"),
        (_, kind) => (format!("Session failed ({kind}): {repo}"), 4, "x"),
    };
    let mut lines = vec![excerpt(
        or(&session.headline, or(&session.error, "(no outcome)")),
        LINE,
    )];
    if !session.prompt.is_empty() {
        lines.push(format!("Task: {}", excerpt(&session.prompt, 140)));
    }
    lines.push(session_line(session));
    if !session.pull_request_url.is_empty() {
        lines.push(format!("Pull request: {}", session.pull_request_url));
    }
    Message {
        title,
        lines,
        commands: vec![format!("telecoder status {}", session.id)],
        url,
        priority,
        tags: vec![tag],
    }
}

fn paused(watch: &WatchFacts, url: Option<String>) -> Message {
    let by_supervisor = !watch.reason.is_empty();
    let reason = if by_supervisor {
        excerpt(&watch.reason, LINE)
    } else {
        "paused by a user".into()
    };
    Message {
        title: format!("Watch paused: {}", short_repo(&watch.repo)),
        lines: vec![reason, format!("watch {} ({})", watch.id, watch.kind)],
        commands: vec![format!("telecoder watch-resume {}", watch.id)],
        url,
        priority: if by_supervisor { 4 } else { 3 },
        tags: vec!["pause_button"],
    }
}

fn crash(daemon: &CrashFacts, url: Option<String>) -> Message {
    let mut lines = vec![format!(
        "The previous daemon (started {}) stopped without shutting down.",
        or(&daemon.previous_started_at, "at an unknown time")
    )];
    if daemon.interrupted_sessions > 0 {
        lines.push(format!(
            "{} running session(s) are marked abandoned (last heartbeat {}).",
            daemon.interrupted_sessions,
            or(&daemon.last_heartbeat_at, "unknown")
        ));
    }
    Message {
        title: "TeleCoder restarted after a crash".into(),
        lines,
        commands: vec!["telecoder list --status error".into()],
        url,
        priority: 4,
        tags: vec!["rotating_light"],
    }
}

fn session_line(session: &SessionFacts) -> String {
    format!("session {} · agent {}", session.id, session.agent)
}

fn or<'a>(text: &'a str, fallback: &'a str) -> &'a str {
    if text.trim().is_empty() {
        fallback
    } else {
        text
    }
}

/// `owner/name` for GitHub, the last directory name for a local path, else the URL's path.
pub fn short_repo(repo: &str) -> String {
    let key = crate::domain::watch::repo_key(repo);
    if let Some(short) = key.strip_prefix("github.com/") {
        return short.to_owned();
    }
    let path = key.split_once("://").map_or(key.as_str(), |(_, rest)| rest);
    path.rsplit('/')
        .find(|part| !part.is_empty())
        .unwrap_or(path)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::event::ApprovalFacts;

    fn session(status: &str, failure: &str) -> SessionFacts {
        SessionFacts {
            id: "1a2b3c4d".into(),
            repo: "https://github.com/Acme/Widgets.git".into(),
            agent: "codex".into(),
            status: status.into(),
            failure_kind: failure.into(),
            headline: "Fixed the flaky test.".into(),
            ..Default::default()
        }
    }

    #[test]
    fn finished_sessions_say_how_they_ended() {
        let message = compose(
            &Facts::Finished {
                session: session("complete", ""),
            },
            Some("https://tc.example.com/"),
        );
        assert_eq!(message.title, "Session complete: acme/widgets");
        assert_eq!(message.lines[0], "Fixed the flaky test.");
        assert_eq!(message.commands, ["telecoder status 1a2b3c4d"]);
        assert_eq!(
            message.url.as_deref(),
            Some("https://tc.example.com/sessions/1a2b3c4d")
        );
        let failed = compose(
            &Facts::Finished {
                session: session("error", "timeout"),
            },
            None,
        );
        assert_eq!(failed.title, "Session failed (timeout): acme/widgets");
        assert_eq!(failed.priority, 4);
        assert_eq!(failed.url, None);
    }

    #[test]
    fn approvals_carry_the_commands_to_answer() {
        let message = compose(
            &Facts::Approval {
                session: session("running", ""),
                approval: ApprovalFacts {
                    id: "ap7".into(),
                    title: "Run npm test".into(),
                    kind: "execute".into(),
                    ..Default::default()
                },
            },
            None,
        );
        assert_eq!(message.title, "Approval needed: acme/widgets");
        assert_eq!(message.lines[0], "codex asks to: Run npm test");
        assert_eq!(
            message.commands,
            ["telecoder approve ap7", "telecoder deny ap7"]
        );
    }

    #[test]
    fn paused_watches_say_who_paused_them() {
        let by_user = compose(
            &Facts::Paused {
                watch: WatchFacts {
                    id: "w1".into(),
                    kind: "ci_failure".into(),
                    repo: "/home/me/proj".into(),
                    reason: String::new(),
                },
            },
            None,
        );
        assert_eq!(by_user.title, "Watch paused: proj");
        assert_eq!(by_user.lines[0], "paused by a user");
        assert_eq!(by_user.commands, ["telecoder watch-resume w1"]);
    }
}
