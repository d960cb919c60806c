//! Trust policies: what an agent may do, decided before it starts.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The trust level a session runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum PolicyMode {
    Locked,
    Observe,
    Standard,
}

/// How acpx answers the agent's permission requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PermissionMode {
    DenyAll,
    ApproveReads,
    ApproveAll,
}

/// Whether the agent may change files in its workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceWritePolicy {
    Blocked,
    Contained,
}

/// A policy mode resolved into the concrete limits a session records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub mode: PolicyMode,
    pub permission: PermissionMode,
    pub writes: WorkspaceWritePolicy,
    pub max_runtime_seconds: u64,
}

impl PolicyMode {
    pub const ALL: [PolicyMode; 3] = [Self::Locked, Self::Observe, Self::Standard];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Locked => "locked",
            Self::Observe => "observe",
            Self::Standard => "standard",
        }
    }

    /// The policy with the runtime capped by the global prompt timeout.
    pub fn resolve(self, prompt_timeout_seconds: u64) -> Policy {
        let (permission, writes, cap) = match self {
            Self::Locked => (PermissionMode::DenyAll, WorkspaceWritePolicy::Blocked, 60),
            Self::Observe => (
                PermissionMode::ApproveReads,
                WorkspaceWritePolicy::Blocked,
                180,
            ),
            Self::Standard => (
                PermissionMode::ApproveAll,
                WorkspaceWritePolicy::Contained,
                300,
            ),
        };
        Policy {
            mode: self,
            permission,
            writes,
            max_runtime_seconds: cap.min(prompt_timeout_seconds),
        }
    }
}

impl PermissionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DenyAll => "deny-all",
            Self::ApproveReads => "approve-reads",
            Self::ApproveAll => "approve-all",
        }
    }

    /// The acpx flag that enforces this mode.
    pub fn acpx_flag(self) -> &'static str {
        match self {
            Self::DenyAll => "--deny-all",
            Self::ApproveReads => "--approve-reads",
            Self::ApproveAll => "--approve-all",
        }
    }

    /// The policy mode the legacy `TELECODER_PERMISSION_MODE` stands for.
    pub fn policy_mode(self) -> PolicyMode {
        match self {
            Self::DenyAll => PolicyMode::Locked,
            Self::ApproveReads => PolicyMode::Observe,
            Self::ApproveAll => PolicyMode::Standard,
        }
    }
}

impl WorkspaceWritePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blocked => "blocked",
            Self::Contained => "contained",
        }
    }
}

/// The error for a policy name nobody defined.
#[derive(Debug, thiserror::Error)]
#[error("unknown policy '{0}' (expected locked, observe or standard)")]
pub struct UnknownPolicy(pub String);

impl FromStr for PolicyMode {
    type Err = UnknownPolicy;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|mode| mode.as_str() == text.trim())
            .ok_or_else(|| UnknownPolicy(text.to_owned()))
    }
}

/// The error for a permission mode nobody defined.
#[derive(Debug, thiserror::Error)]
#[error("unknown permission mode '{0}' (expected deny-all, approve-reads or approve-all)")]
pub struct UnknownPermissionMode(pub String);

impl FromStr for PermissionMode {
    type Err = UnknownPermissionMode;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [Self::DenyAll, Self::ApproveReads, Self::ApproveAll]
            .into_iter()
            .find(|mode| mode.as_str() == text.trim())
            .ok_or_else(|| UnknownPermissionMode(text.to_owned()))
    }
}

impl fmt::Display for PolicyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_match_the_contract_table() {
        let locked = PolicyMode::Locked.resolve(300);
        assert_eq!(
            (locked.permission, locked.writes, locked.max_runtime_seconds),
            (PermissionMode::DenyAll, WorkspaceWritePolicy::Blocked, 60)
        );
        let observe = PolicyMode::Observe.resolve(300);
        assert_eq!(observe.max_runtime_seconds, 180);
        assert_eq!(observe.permission.acpx_flag(), "--approve-reads");
        let standard = PolicyMode::Standard.resolve(300);
        assert_eq!(standard.writes, WorkspaceWritePolicy::Contained);
        assert_eq!(standard.max_runtime_seconds, 300);
    }

    #[test]
    fn prompt_timeout_caps_the_runtime() {
        assert_eq!(PolicyMode::Standard.resolve(42).max_runtime_seconds, 42);
        assert_eq!(PolicyMode::Locked.resolve(42).max_runtime_seconds, 42);
    }

    #[test]
    fn parses_names_and_rejects_others() {
        assert_eq!(
            "standard".parse::<PolicyMode>().ok(),
            Some(PolicyMode::Standard)
        );
        assert!("yolo".parse::<PolicyMode>().is_err());
        assert_eq!(
            "approve-all"
                .parse::<PermissionMode>()
                .ok()
                .map(PermissionMode::policy_mode),
            Some(PolicyMode::Standard)
        );
    }
}
