//! Approvals (policy `ask`): what the agent asked to do, waiting for a person's answer. Pure
//! data and rules; the store keeps them, `crate::approvals` waits for the answers.

use serde::{Deserialize, Serialize};

named_enum! {
    /// Where an approval is in its life. Only `pending` (the agent waits for a person) ever
    /// changes, and only once: a person `allowed` or `denied` it, or it `expired` — nobody
    /// answered in time, or the session ended (cancel, crash, restart) first, and the agent was
    /// told no. Never allowed silently.
    pub enum ApprovalStatus ("approval status") {
        Pending = "pending", Allowed = "allowed", Denied = "denied", Expired = "expired",
    }
}

named_enum! {
    /// A person's answer.
    pub enum Verdict ("decision") { Allow = "allow", Deny = "deny" }
}

/// The body of `POST /api/approvals/:id`, shared by the route and the CLI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Answer {
    pub decision: Verdict,
    /// Pick the agent's "always" option (allow_always / reject_always) when it offered one.
    #[serde(default)]
    pub remember: bool,
}

impl Answer {
    /// The status an approval answered this way ends in.
    pub fn status(self) -> ApprovalStatus {
        match self.decision {
            Verdict::Allow => ApprovalStatus::Allowed,
            Verdict::Deny => ApprovalStatus::Denied,
        }
    }
}

/// One place the tool call touches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub path: String,
}

/// What the agent wants to do, as shown to the person deciding.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolCallView {
    pub title: String,
    /// ACP tool kind (`edit`, `execute`, …), given or inferred from the title.
    pub kind: String,
    pub locations: Vec<Location>,
    /// (ext) The tool call's input as JSON text (the content a write would put, the command a
    /// run would start), redacted and cut at [`RAW_INPUT_LIMIT`] bytes.
    #[serde(default)]
    pub raw_input: String,
}

/// Raw input kept for a person to read; an agent cannot fill the database through it.
pub const RAW_INPUT_LIMIT: usize = 16 * 1024;

/// One of the answers the agent offered (ACP permission option).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalOption {
    pub option_id: String,
    pub name: String,
    /// `allow_once`, `allow_always`, `reject_once` or `reject_always`.
    pub kind: String,
}

/// The approval record, exactly as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    pub id: String,
    pub session_id: String,
    pub status: ApprovalStatus,
    pub tool_call: ToolCallView,
    /// The agent's options; empty for file writes and commands (allow or deny only).
    pub options: Vec<ApprovalOption>,
    pub created_at: String,
    /// `""` while pending.
    pub decided_at: String,
    /// Who answered: `cli` or `api` with the token's scope (`cli (full token)`), `timeout`,
    /// or why the session ended first (`session ended (cancelled)`); `""` while pending.
    pub decided_by: String,
    /// (ext) When a pending approval is denied (expired) unless answered.
    #[serde(default)]
    pub expires_at: String,
    /// (ext) The option the agent was answered with (`""`: none offered, or not decided).
    #[serde(default)]
    pub selected_option: String,
}

/// The option that carries `answer` to the agent, as the approval records it: allow →
/// `allow_once` (with `remember`, `allow_always` first), falling back to the other allow kind;
/// deny likewise with the reject kinds. `None`: the agent offered no such option.
pub fn pick(options: &[ApprovalOption], answer: Answer) -> Option<&ApprovalOption> {
    let (once, always) = match answer.decision {
        Verdict::Allow => ("allow_once", "allow_always"),
        Verdict::Deny => ("reject_once", "reject_always"),
    };
    let order = if answer.remember {
        [always, once]
    } else {
        [once, always]
    };
    order
        .iter()
        .find_map(|kind| options.iter().find(|option| option.kind == *kind))
}

/// Filters of the approval list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApprovalFilter {
    pub status: Option<ApprovalStatus>,
    pub session_id: Option<String>,
    /// At most this many, newest first.
    pub limit: u32,
}

/// Cuts `text` to at most `limit` bytes on a character boundary, saying so.
pub fn clip(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…[cut at {limit} bytes]", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option(id: &str, kind: &str) -> ApprovalOption {
        ApprovalOption {
            option_id: id.into(),
            name: id.into(),
            kind: kind.into(),
        }
    }

    fn answer(decision: Verdict, remember: bool) -> Answer {
        Answer { decision, remember }
    }

    #[test]
    fn remember_picks_the_always_options_when_offered() {
        let all = [
            option("a1", "allow_once"),
            option("aa", "allow_always"),
            option("r1", "reject_once"),
            option("ra", "reject_always"),
        ];
        let id = |a: Answer| pick(&all, a).map(|o| o.option_id.as_str());
        assert_eq!(id(answer(Verdict::Allow, false)), Some("a1"));
        assert_eq!(id(answer(Verdict::Allow, true)), Some("aa"));
        assert_eq!(id(answer(Verdict::Deny, false)), Some("r1"));
        assert_eq!(id(answer(Verdict::Deny, true)), Some("ra"));
        // Not offered: the other kind of the same answer, never the opposite answer.
        let once = [option("a1", "allow_once"), option("r1", "reject_once")];
        assert_eq!(
            pick(&once, answer(Verdict::Allow, true)).map(|o| o.option_id.as_str()),
            Some("a1")
        );
        let allow_only = [option("a1", "allow_once")];
        assert_eq!(pick(&allow_only, answer(Verdict::Deny, false)), None);
        assert_eq!(pick(&[], answer(Verdict::Allow, false)), None);
    }

    #[test]
    fn statuses_and_decisions_parse_strictly() {
        for status in [
            ApprovalStatus::Pending,
            ApprovalStatus::Allowed,
            ApprovalStatus::Denied,
            ApprovalStatus::Expired,
        ] {
            assert_eq!(status.as_str().parse::<ApprovalStatus>(), Ok(status));
        }
        assert!("approved".parse::<ApprovalStatus>().is_err());
        assert_eq!("allow".parse::<Verdict>(), Ok(Verdict::Allow));
        assert!("yes".parse::<Verdict>().is_err());
        let body: Answer =
            serde_json::from_str(r#"{"decision":"deny","remember":true}"#).expect("valid body");
        assert_eq!(body, answer(Verdict::Deny, true));
        assert!(serde_json::from_str::<Answer>(r#"{"decision":"maybe"}"#).is_err());
        assert!(serde_json::from_str::<Answer>(r#"{"decision":"allow","force":1}"#).is_err());
    }

    #[test]
    fn clipping_keeps_characters_whole() {
        assert_eq!(clip("short", 10), "short");
        let clipped = clip("ééééé", 3);
        assert!(clipped.starts_with('é'));
        assert!(clipped.ends_with("[cut at 3 bytes]"));
    }
}
