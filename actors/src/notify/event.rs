//! What is worth telling a person: the facts of one notification, taken in the transaction that
//! commits the event causing it, and stored in the outbox as JSON. Pure data, no I/O.

use crate::domain::redact::Redactor;
use crate::domain::{Session, Watch};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest prompt excerpt a notification carries (it is a reminder, not the record).
const PROMPT_EXCERPT: usize = 280;

/// The kinds of notification, by the name the outbox stores and filters use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventName {
    /// A session ended: complete, error (abandoned included) or cancelled.
    Finished,
    /// The agent waits for a person to allow or deny a tool call.
    Approval,
    /// A watch stopped firing: paused by a user, or by the supervisor after repeated failures.
    Paused,
    /// The daemon started after an unclean stop of the previous one.
    Crash,
    /// `telecoder notify-test`.
    Test,
}

impl EventName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Finished => "finished",
            Self::Approval => "approval",
            Self::Paused => "paused",
            Self::Crash => "crash",
            Self::Test => "test",
        }
    }

    /// The `type` receivers see (and `X-TeleCoder-Event`).
    pub fn wire_type(self) -> &'static str {
        match self {
            Self::Finished => "session.finished",
            Self::Approval => "approval.requested",
            Self::Paused => "watch.paused",
            Self::Crash => "daemon.recovered",
            Self::Test => "test",
        }
    }
}

/// The names `?events=` accepts: the event names, the three finished statuses, and `all`.
pub const FILTER_NAMES: [&str; 8] = [
    "finished",
    "complete",
    "error",
    "cancelled",
    "approval",
    "paused",
    "crash",
    "all",
];

/// Which notifications a target wants; empty means all of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    names: Vec<&'static str>,
}

impl EventFilter {
    /// `finished,approval` → a filter; an unknown name is an error naming it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut names = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let known = FILTER_NAMES
                .iter()
                .find(|known| known.eq_ignore_ascii_case(name))
                .ok_or_else(|| format!("unknown event '{name}' in ?events="))?;
            if *known == "all" {
                return Ok(Self::default());
            }
            if !names.contains(known) {
                names.push(*known);
            }
        }
        if names.is_empty() {
            return Err("?events= names no event".into());
        }
        Ok(Self { names })
    }

    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// Whether a notification goes to a target with this filter.
    pub fn matches(&self, facts: &Facts) -> bool {
        if self.names.is_empty() || facts.name() == EventName::Test {
            return true;
        }
        let name = facts.name().as_str();
        let status = match facts {
            Facts::Finished { session } => session.status.as_str(),
            _ => "",
        };
        self.names.iter().any(|n| *n == name || *n == status)
    }

    /// `all`, or the names, for `config`.
    pub fn describe(&self) -> String {
        if self.names.is_empty() {
            "all".into()
        } else {
            self.names.join(",")
        }
    }
}

/// A session as a notification tells it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SessionFacts {
    pub id: String,
    pub repo: String,
    pub agent: String,
    pub status: String,
    pub failure_kind: String,
    pub headline: String,
    pub error: String,
    pub prompt: String,
    pub branch: String,
    pub pull_request_url: String,
    pub attempt: u32,
}

impl SessionFacts {
    pub fn of(session: &Session) -> Self {
        Self {
            id: session.id.clone(),
            repo: session.repo.clone(),
            agent: session.agent.clone(),
            status: session.status.as_str().to_owned(),
            failure_kind: session.failure_kind.as_str().to_owned(),
            headline: session.outcome_headline.clone(),
            error: session.error.clone(),
            prompt: excerpt(&session.prompt, PROMPT_EXCERPT),
            branch: session.branch.clone(),
            pull_request_url: session.pull_request_url.clone(),
            attempt: session.attempt,
        }
    }
}

/// What the agent asks to do, from the approval record (`approval` event data).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ApprovalFacts {
    pub id: String,
    pub title: String,
    pub kind: String,
    pub locations: Vec<String>,
    pub options: Vec<String>,
}

impl ApprovalFacts {
    /// Whether an approval record (`approval` event data) still waits for an answer.
    pub fn is_pending(data: &str) -> bool {
        let record: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        record["status"] == "pending"
    }

    /// Reads the approval record leniently: a field it lacks stays empty, so a notification
    /// is sent even for a record shape this build does not fully know.
    pub fn from_record(data: &str) -> Self {
        let record: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let call = &record["toolCall"];
        // A location is a path or `{path, line}`; an option its name or `{name | kind}`.
        let locations = strings(&call["locations"], |l| {
            let path = l["path"].as_str()?;
            Some(match l["line"].as_u64() {
                Some(line) => format!("{path}:{line}"),
                None => path.to_owned(),
            })
        });
        let options = strings(&record["options"], |o| {
            o["name"].as_str().or(o["kind"].as_str()).map(str::to_owned)
        });
        Self {
            id: text(&record["id"]),
            title: text(&call["title"]),
            kind: text(&call["kind"]),
            locations,
            options,
        }
    }
}

/// The entries of a JSON array as text: strings as they are, anything else through `read`.
fn strings(array: &Value, read: impl Fn(&Value) -> Option<String>) -> Vec<String> {
    let entries = array.as_array().into_iter().flatten();
    entries
        .filter_map(|entry| match entry {
            Value::String(text) => Some(text.clone()),
            other => read(other),
        })
        .collect()
}

/// A watch that stopped firing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WatchFacts {
    pub id: String,
    pub kind: String,
    pub repo: String,
    /// The supervisor's reason; empty when a person paused it.
    pub reason: String,
}

impl WatchFacts {
    pub fn of(watch: &Watch) -> Self {
        Self {
            id: watch.id.clone(),
            kind: watch.kind.as_str().to_owned(),
            repo: watch.repo.clone(),
            reason: watch.paused_reason.clone(),
        }
    }
}

/// What the previous, uncleanly stopped daemon left.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CrashFacts {
    /// When the previous instance started.
    pub previous_started_at: String,
    /// Sessions it was running (they are marked abandoned, each with its own notification).
    pub interrupted_sessions: u64,
    /// The last sign of life of those sessions: about when the previous instance died.
    pub last_heartbeat_at: String,
}

/// One notification's facts, as stored in the outbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Facts {
    Finished {
        session: SessionFacts,
    },
    Approval {
        session: SessionFacts,
        approval: ApprovalFacts,
    },
    Paused {
        watch: WatchFacts,
    },
    Crash {
        daemon: CrashFacts,
    },
    Test,
}

impl Facts {
    pub fn name(&self) -> EventName {
        match self {
            Self::Finished { .. } => EventName::Finished,
            Self::Approval { .. } => EventName::Approval,
            Self::Paused { .. } => EventName::Paused,
            Self::Crash { .. } => EventName::Crash,
            Self::Test => EventName::Test,
        }
    }

    /// The session or watch it is about (`""` for daemon-wide notifications).
    pub fn subject(&self) -> &str {
        match self {
            Self::Finished { session } | Self::Approval { session, .. } => &session.id,
            Self::Paused { watch } => &watch.id,
            Self::Crash { .. } | Self::Test => "",
        }
    }

    /// The same facts with every text passed through the redactor (they leave the machine).
    pub fn redacted(&self, redactor: &Redactor) -> Self {
        let Ok(mut value) = serde_json::to_value(self) else {
            return self.clone();
        };
        redact_strings(&mut value, redactor);
        serde_json::from_value(value).unwrap_or_else(|_| self.clone())
    }
}

fn redact_strings(value: &mut Value, redactor: &Redactor) {
    match value {
        Value::String(text) => *text = redactor.redact(text),
        Value::Array(items) => items.iter_mut().for_each(|v| redact_strings(v, redactor)),
        Value::Object(map) => map.values_mut().for_each(|v| redact_strings(v, redactor)),
        _ => {}
    }
}

/// At most `max` characters of `text`, on one line, with an ellipsis when cut.
pub fn excerpt(text: &str, max: usize) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(status: &str) -> Facts {
        Facts::Finished {
            session: SessionFacts {
                id: "1a2b3c4d".into(),
                status: status.into(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn filters_match_event_names_and_statuses() {
        let all = EventFilter::default();
        assert!(all.matches(&finished("error")));
        let errors = EventFilter::parse("error").expect("valid");
        assert!(errors.matches(&finished("error")));
        assert!(!errors.matches(&finished("complete")));
        assert!(!errors.matches(&Facts::Crash {
            daemon: CrashFacts::default()
        }));
        let finished_only = EventFilter::parse("finished, approval").expect("valid");
        assert!(finished_only.matches(&finished("cancelled")));
        assert!(!finished_only.matches(&Facts::Paused {
            watch: WatchFacts::default()
        }));
        assert!(errors.matches(&Facts::Test), "a test goes everywhere");
        assert_eq!(EventFilter::parse("crash,all").expect("valid"), all);
        assert!(EventFilter::parse("").is_err());
        assert!(EventFilter::parse("done").is_err());
    }

    #[test]
    fn approval_records_are_read_leniently() {
        let facts = ApprovalFacts::from_record(
            r#"{"id":"ap1","sessionId":"1a2b3c4d","status":"pending",
                "toolCall":{"title":"Write src/main.rs","kind":"edit",
                            "locations":[{"path":"src/main.rs","line":3},"README.md"]},
                "options":[{"optionId":"a","name":"Allow once","kind":"allow_once"},"Deny"]}"#,
        );
        assert_eq!(facts.id, "ap1");
        assert_eq!(facts.title, "Write src/main.rs");
        assert_eq!(facts.kind, "edit");
        assert_eq!(facts.locations, ["src/main.rs:3", "README.md"]);
        assert_eq!(facts.options, ["Allow once", "Deny"]);
        assert_eq!(
            ApprovalFacts::from_record("not json"),
            ApprovalFacts::default()
        );
    }

    #[test]
    fn facts_round_trip_and_redact() {
        let mut facts = finished("error");
        if let Facts::Finished { session } = &mut facts {
            session.error = "push failed: token ghp_abcdefghijklmnopqrstuvwxyz0123456789".into();
        }
        let text = serde_json::to_string(&facts).expect("json");
        assert!(text.contains(r#""event":"finished""#), "{text}");
        assert_eq!(serde_json::from_str::<Facts>(&text).expect("back"), facts);
        let redacted = facts.redacted(&Redactor::default());
        let Facts::Finished { session } = redacted else {
            panic!("kind kept")
        };
        assert!(!session.error.contains("ghp_abc"), "{}", session.error);
    }

    #[test]
    fn excerpts_are_one_bounded_line() {
        assert_eq!(excerpt("fix\n  the   tests", 80), "fix the tests");
        assert_eq!(excerpt("abcdef", 4), "abc…");
    }
}
