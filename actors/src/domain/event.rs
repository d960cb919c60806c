//! Session events: the durable, ordered story of a session.

use serde::{Deserialize, Serialize};

named_enum! {
    /// What an event tells. Clients ignore kinds they do not know, so new kinds are cheap.
    pub enum EventKind ("event kind") {
        Status = "status", Output = "output", Error = "error", Done = "done",
        /// (ext) the session was published as a pull request.
        Publish = "publish",
        /// (ext) a tool call of the agent (native runtime): JSON `{toolCallId, title, kind,
        /// status, locations}`, once per change.
        Tool = "tool",
        /// (ext) the agent's plan (native runtime): JSON array of its entries.
        Plan = "plan",
        /// (ext) an approval was asked for or answered (policy `ask`): JSON of the approval
        /// record.
        Approval = "approval",
        /// (ext) the session's branch was fetched into the user's repository.
        Fetch = "fetch",
    }
}

impl EventKind {
    pub fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
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
