//! Trust policies: what an agent may do, decided before it starts.

named_enum! {
    /// The trust level a session runs under. (ext) `ask` is like `standard`, but every write,
    /// command or other non-read request the agent asks permission for waits for a person (an
    /// approval); reads are approved. Native runtime only.
    pub enum PolicyMode ("policy") {
        Locked = "locked", Observe = "observe", Standard = "standard", Ask = "ask",
    }
}

named_enum! {
    /// How acpx answers the agent's permission requests. (ext) `ask`: reads approved; anything
    /// else becomes an approval a person answers.
    pub enum PermissionMode ("permission mode") {
        DenyAll = "deny-all", ApproveReads = "approve-reads", ApproveAll = "approve-all",
        Ask = "ask",
    }
}

named_enum! {
    /// Whether the agent may change files in its workspace.
    pub enum WorkspaceWritePolicy ("workspace write policy") {
        Blocked = "blocked", Contained = "contained",
    }
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
            // Standard's limits: the person decides what goes beyond reading, and the time the
            // agent waits for them is not counted (TELECODER_APPROVAL_TIMEOUT bounds it).
            Self::Ask => (PermissionMode::Ask, WorkspaceWritePolicy::Contained, 300),
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
    /// The acpx flag that enforces this mode. acpx cannot wait for a person: `ask` is refused
    /// before a session reaches it (see `requests`), and would mean `--approve-reads` (fail
    /// closed: everything beyond reading is denied) if it ever did.
    pub fn acpx_flag(self) -> &'static str {
        match self {
            Self::DenyAll => "--deny-all",
            Self::ApproveReads | Self::Ask => "--approve-reads",
            Self::ApproveAll => "--approve-all",
        }
    }

    /// The policy mode the legacy `TELECODER_PERMISSION_MODE` stands for.
    pub fn policy_mode(self) -> PolicyMode {
        match self {
            Self::DenyAll => PolicyMode::Locked,
            Self::ApproveReads => PolicyMode::Observe,
            Self::ApproveAll => PolicyMode::Standard,
            Self::Ask => PolicyMode::Ask,
        }
    }
}

/// The error for a policy name nobody defined.
pub type UnknownPolicy = super::UnknownName;

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
        let ask = PolicyMode::Ask.resolve(300);
        assert_eq!(
            (ask.permission, ask.writes, ask.max_runtime_seconds),
            (PermissionMode::Ask, WorkspaceWritePolicy::Contained, 300)
        );
        assert_eq!("ask".parse::<PolicyMode>().ok(), Some(PolicyMode::Ask));
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
