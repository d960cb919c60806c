//! Session events: the durable, ordered story of a session.

use serde::{Deserialize, Serialize};

/// What an event tells. Clients ignore kinds they do not know, so new kinds are cheap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Status,
    Output,
    Error,
    Done,
    /// (ext) the session was published as a pull request.
    Publish,
    /// (ext) a tool call of the agent (native runtime): JSON `{toolCallId, title, kind,
    /// status, locations}`, once per change.
    Tool,
    /// (ext) the agent's plan (native runtime): JSON array of its entries.
    Plan,
    /// (ext) the session's branch was fetched into the user's repository.
    Fetch,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Output => "output",
            Self::Error => "error",
            Self::Done => "done",
            Self::Publish => "publish",
            Self::Tool => "tool",
            Self::Plan => "plan",
            Self::Fetch => "fetch",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "status" => Some(Self::Status),
            "output" => Some(Self::Output),
            "error" => Some(Self::Error),
            "done" => Some(Self::Done),
            "publish" => Some(Self::Publish),
            "tool" => Some(Self::Tool),
            "plan" => Some(Self::Plan),
            "fetch" => Some(Self::Fetch),
            _ => None,
        }
    }

    /// A session's last event is always terminal; streams end after it.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Error | Self::Done)
    }
}

/// One stored event. `id` is monotonic across the whole database, so it doubles as an
/// SSE cursor (`Last-Event-ID`, `?after=`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: i64,
    pub session_id: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub data: String,
    pub created_at: String,
}
