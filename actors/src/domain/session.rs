//! The session record and the values it moves through.

use super::outcome::Outcome;
use super::policy::{PermissionMode, PolicyMode, WorkspaceWritePolicy};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

named_enum! {
    /// Where a session is in its life.
    pub enum SessionStatus ("session status") {
        Pending = "pending", Running = "running", Complete = "complete", Error = "error",
        Cancelled = "cancelled",
    }
}

impl SessionStatus {
    /// Finished sessions can be rerun; active ones cannot.
    pub fn is_finished(self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }
}

named_enum! {
    /// Why a session failed; `None` serializes as `""` as the contract wants.
    #[derive(Default)]
    pub enum FailureKind ("failure kind") {
        #[default] None = "", Abandoned = "abandoned", PolicyDenied = "policy_denied",
        RuntimeError = "runtime_error", Timeout = "timeout", Cancelled = "cancelled",
    }
}

impl FailureKind {
    /// Unknown text (an older or newer database) reads as no failure.
    pub fn parse(text: &str) -> Self {
        text.parse().unwrap_or_default()
    }
}

/// The session record exactly as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: String,
    pub repo: String,
    pub prompt: String,
    pub agent: String,
    pub parent_session_id: String,
    pub attempt: u32,
    pub policy_mode: PolicyMode,
    pub effective_permission_mode: PermissionMode,
    pub workspace_write_policy: WorkspaceWritePolicy,
    pub max_runtime_seconds: u64,
    pub runtime_command: String,
    pub status: SessionStatus,
    pub owner_id: String,
    pub branch: String,
    pub work_dir: String,
    pub result_text: String,
    pub outcome_headline: String,
    pub outcome_changed: String,
    pub outcome_verified: String,
    pub outcome_uncertain: String,
    pub outcome_next: String,
    pub error: String,
    pub failure_kind: FailureKind,
    pub claimed_at: String,
    pub heartbeat_at: String,
    pub started_at: String,
    pub finished_at: String,
    pub created_at: String,
    pub updated_at: String,
    /// (ext) the pull request this session was published as; 0 / `""` until then.
    #[serde(default)]
    pub pull_request_number: u64,
    #[serde(default)]
    pub pull_request_url: String,
    /// (ext) place in the run queue while pending (1 = next to start); 0 otherwise.
    #[serde(default)]
    pub queue_position: u32,
    /// (ext) the agent's own ACP session id (native runtime), to continue the conversation.
    #[serde(default)]
    pub agent_session_id: String,
    /// (ext) whether the agent advertised `loadSession`, i.e. can resume `agentSessionId`.
    #[serde(default)]
    pub agent_load_session: bool,
    /// (ext) why the agent ended its turn (`end_turn`, `max_tokens`, `refusal`, …); `""` when
    /// unknown (acpx runtime, or no answer).
    #[serde(default)]
    pub stop_reason: String,
    /// (ext) token usage, when the agent reports it.
    #[serde(default)]
    pub token_usage: Option<TokenUsage>,
    /// (ext) the session this one continues (a later turn of its conversation, in its
    /// workspace); `""` for a first turn. Equals `parentSessionId` when set.
    #[serde(default)]
    pub continued_from: String,
    /// (ext) an approval of this session waits for a person (policy `ask`); the session stays
    /// `running` meanwhile.
    #[serde(default)]
    pub awaiting_approval: bool,
    /// (ext) the commit the workspace was cloned at; diffs are taken against it.
    #[serde(default)]
    pub base_commit: String,
    /// (ext) when the branch was last fetched into the user's repository (`telecoder fetch`).
    #[serde(default)]
    pub fetched_at: String,
    /// (ext) what is on disk: `""` (no workspace yet), `present`, `archived` (collected, its
    /// unsaved work kept as a git bundle) or `collected`.
    #[serde(default)]
    pub workspace_state: String,
}

/// Declares a record of figures that are each optional, with its `merge`: the field list is
/// written once, so a new figure can never be left out of merging (or shown as `null`).
macro_rules! optional_figures {
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $($(#[$doc:meta])* $field:ident: $ty:ty),+ $(,)? }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $(
                $(#[$doc])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )+
        }

        impl $name {
            /// Fills what `newer` reports, keeping what it leaves out.
            pub fn merge(&mut self, newer: $name) {
                $(
                    if newer.$field.is_some() {
                        self.$field = newer.$field;
                    }
                )+
            }
        }
    };
}

optional_figures! {
    /// Token usage an agent reported for its turn (prompt response) and its context window
    /// (`usage_update`). Every figure is optional: agents report different subsets.
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct TokenUsage {
        input_tokens: u64, output_tokens: u64, total_tokens: u64, thought_tokens: u64,
        cached_read_tokens: u64, cached_write_tokens: u64,
        /// Tokens in the context window at the last `usage_update`, and its size.
        context_used: u64, context_size: u64,
        /// Cumulative cost as the agent states it, e.g. `0.0123 USD`.
        cost: String,
    }
}

/// What a runtime learned about the agent's side of a session; `None` fields are unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentFacts {
    pub agent_session_id: Option<String>,
    pub load_session: Option<bool>,
    pub stop_reason: Option<String>,
    pub token_usage: Option<TokenUsage>,
}

impl Session {
    /// The structured outcome stored on the record.
    pub fn outcome(&self) -> Outcome {
        Outcome {
            headline: self.outcome_headline.clone(),
            changed: self.outcome_changed.clone(),
            verified: self.outcome_verified.clone(),
            uncertain: self.outcome_uncertain.clone(),
            next: self.outcome_next.clone(),
        }
    }

    /// The one-line description of the policy, shown as the first status event.
    pub fn policy_line(&self) -> String {
        format!(
            "policy={} permissions={} workspace-writes={} max-runtime={}s",
            self.policy_mode.as_str(),
            self.effective_permission_mode.as_str(),
            self.workspace_write_policy.as_str(),
            self.max_runtime_seconds
        )
    }
}

/// What a caller asks for (the body of `POST /api/sessions`, read by the HTTP route and
/// written by the CLI); the daemon resolves defaults and the policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct NewSession {
    #[serde(deserialize_with = "crate::requests::text_or_null")]
    pub repo: String,
    #[serde(deserialize_with = "crate::requests::text_or_null")]
    pub prompt: String,
    pub agent: Option<String>,
    pub policy: Option<PolicyMode>,
}

/// The `status` filter, which also knows the `active` shorthand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFilter {
    Is(SessionStatus),
    /// pending or running
    Active,
}

impl FromStr for StatusFilter {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "active" {
            return Ok(Self::Active);
        }
        text.parse().map(Self::Is).map_err(|_| {
            format!(
                "invalid status filter '{text}' (expected pending, running, complete, error, cancelled or active)"
            )
        })
    }
}

/// Filters of the session list and lineage queries; all set filters must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionFilter {
    pub status: Option<StatusFilter>,
    pub agent: Option<String>,
    pub policy: Option<PolicyMode>,
    pub parent: Option<String>,
    pub lineage: Option<String>,
    /// (ext) at most this many, after skipping `offset`; unset returns all (the contract).
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::TokenUsage;

    #[test]
    fn merged_usage_keeps_what_the_newer_report_leaves_out_and_shows_no_nulls() {
        let mut usage = TokenUsage {
            input_tokens: Some(10),
            context_size: Some(1000),
            ..TokenUsage::default()
        };
        usage.merge(TokenUsage {
            input_tokens: Some(12),
            cost: Some("0.01 USD".into()),
            ..TokenUsage::default()
        });
        assert_eq!(
            serde_json::to_value(&usage).ok(),
            Some(serde_json::json!({"inputTokens": 12, "contextSize": 1000, "cost": "0.01 USD"}))
        );
    }
}
