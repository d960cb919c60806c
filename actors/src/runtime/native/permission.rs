//! Who decides what the agent may do. The runtime asks a [`PermissionDecider`] for every
//! permission request, file access and command; [`PolicyDecider`] answers from the session's
//! policy exactly as acpx's `--deny-all` / `--approve-reads` / `--approve-all` do. The answer
//! is a future, so a decider that waits for a person (approvals) plugs in without touching
//! the runtime.

use crate::domain::approval::ApprovalOption;
use crate::domain::PermissionMode;
use crate::runtime::BoxFuture;
use agent_client_protocol::v1::schema::{
    PermissionOption, PermissionOptionKind, RequestPermissionOutcome, SelectedPermissionOutcome,
};
use std::path::PathBuf;

/// What the agent wants to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `session/request_permission` for one of its tool calls.
    ToolCall {
        tool_call_id: String,
        title: String,
        /// The kind the agent gave, or the one inferred from the title as acpx does.
        kind: Option<String>,
        locations: Vec<String>,
        /// The call's input as JSON text (`""` when the agent sent none), for a person to read.
        raw_input: String,
    },
    /// `fs/read_text_file` (already contained to the workspace).
    ReadFile { path: PathBuf },
    /// `fs/write_text_file` (already contained to the workspace), with the start of the
    /// content for a person to read.
    WriteFile { path: PathBuf, preview: String },
    /// `terminal/create`: the command line it would run in the workspace.
    Execute { command: String },
}

impl Action {
    /// A short description for messages ("write notes.txt", "run `make`").
    pub fn describe(&self) -> String {
        match self {
            Self::ToolCall { title, kind, .. } => match kind {
                Some(kind) => format!("{title} [{kind}]"),
                None => title.clone(),
            },
            Self::ReadFile { path } => format!("read {}", path.display()),
            Self::WriteFile { path, .. } => format!("write {}", path.display()),
            Self::Execute { command } => format!("run `{command}`"),
        }
    }
}

/// One question to the decider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    pub session_id: String,
    /// The session's permission mode.
    pub mode: PermissionMode,
    pub action: Action,
    /// The answers the agent offered (permission requests only; empty for files and commands).
    pub options: Vec<ApprovalOption>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    /// Allow, and pick the agent's `allow_always` option when it offered one.
    AllowAlways,
    /// Deny, and pick the agent's `reject_always` option when it offered one.
    DenyAlways,
}

impl Decision {
    pub fn allows(self) -> bool {
        matches!(self, Self::Allow | Self::AllowAlways)
    }
}

/// Decides what an agent may do. Implementations may take their time (a person answering);
/// the runtime keeps serving the agent meanwhile and cancels the question when the turn ends.
pub trait PermissionDecider: Send + Sync + 'static {
    fn decide(&self, question: Question) -> BoxFuture<'static, Decision>;
}

/// Answers from the policy alone, like acpx without a terminal to ask on.
#[derive(Clone, Copy, Debug, Default)]
pub struct PolicyDecider;

impl PermissionDecider for PolicyDecider {
    fn decide(&self, question: Question) -> BoxFuture<'static, Decision> {
        let decision = policy_decision(&question);
        Box::pin(std::future::ready(decision))
    }
}

/// acpx's rules: `approve-all` allows everything, `deny-all` nothing; `approve-reads` allows
/// tool calls of kind `read` or `search` and file reads, and refuses writes and commands
/// (acpx would prompt for them, and with no terminal it denies).
pub fn policy_decision(question: &Question) -> Decision {
    let allowed = match (question.mode, &question.action) {
        (PermissionMode::ApproveAll, _) => true,
        (PermissionMode::DenyAll, _) => false,
        // Without a person to ask, `ask` fails closed to approve-reads.
        (PermissionMode::ApproveReads | PermissionMode::Ask, action) => is_read(action),
    };
    if allowed {
        Decision::Allow
    } else {
        Decision::Deny
    }
}

/// What approve-reads (and `ask`, without asking anyone) allows: tool calls of kind `read` or
/// `search`, and file reads.
pub fn is_read(action: &Action) -> bool {
    match action {
        Action::ToolCall { kind, .. } => matches!(kind.as_deref(), Some("read" | "search")),
        Action::ReadFile { .. } => true,
        Action::WriteFile { .. } | Action::Execute { .. } => false,
    }
}

/// Whether `question` waits for a person: under `ask`, anything but a read.
pub fn asks_a_person(question: &Question) -> bool {
    question.mode == PermissionMode::Ask && !is_read(&question.action)
}

/// acpx's `inferToolKind`: the kind the agent gave, else one from the first word of the title.
pub fn infer_tool_kind(kind: Option<&str>, title: Option<&str>) -> Option<String> {
    if let Some(kind) = kind {
        return Some(kind.to_owned());
    }
    let title = title?.trim().to_ascii_lowercase();
    let head = title.split([':', ' ', '\t', '\n']).next()?;
    if head.is_empty() {
        return None;
    }
    const MATCHERS: [(&str, &[&str]); 8] = [
        ("read", &["read", "cat"]),
        ("search", &["search", "find", "grep"]),
        ("edit", &["write", "edit", "patch"]),
        ("delete", &["delete", "remove"]),
        ("move", &["move", "rename"]),
        ("execute", &["run", "execute", "bash"]),
        ("fetch", &["fetch", "http", "url"]),
        ("think", &["think"]),
    ];
    let kind = MATCHERS
        .iter()
        .find(|(_, names)| names.contains(&head))
        .map_or("other", |(kind, _)| kind);
    Some(kind.to_owned())
}

/// What the agent was told, for the run's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Approved,
    Denied,
    Cancelled,
}

/// The answer to a permission request, picked from the agent's options as acpx does: allow →
/// `allow_once`, else `allow_always`, else the first option; deny → `reject_once`, else
/// `reject_always`, else cancelled. The "always" decisions prefer the "always" kinds. `None`
/// (the turn is ending) and no options are cancelled.
pub fn pick_option(
    options: &[PermissionOption],
    decision: Option<Decision>,
) -> (RequestPermissionOutcome, Verdict) {
    let find = |kinds: [PermissionOptionKind; 2]| {
        kinds
            .iter()
            .find_map(|kind| options.iter().find(|option| option.kind == *kind))
    };
    let chosen = match decision {
        _ if options.is_empty() => None,
        None => None,
        Some(Decision::Allow) => find([
            PermissionOptionKind::AllowOnce,
            PermissionOptionKind::AllowAlways,
        ])
        .or_else(|| options.first()),
        Some(Decision::AllowAlways) => find([
            PermissionOptionKind::AllowAlways,
            PermissionOptionKind::AllowOnce,
        ])
        .or_else(|| options.first()),
        Some(Decision::Deny) => find([
            PermissionOptionKind::RejectOnce,
            PermissionOptionKind::RejectAlways,
        ]),
        Some(Decision::DenyAlways) => find([
            PermissionOptionKind::RejectAlways,
            PermissionOptionKind::RejectOnce,
        ]),
    };
    match chosen {
        Some(option) => {
            let verdict = match option.kind {
                PermissionOptionKind::AllowOnce | PermissionOptionKind::AllowAlways => {
                    Verdict::Approved
                }
                _ => Verdict::Denied,
            };
            let selected = SelectedPermissionOutcome::new(option.option_id.clone());
            (RequestPermissionOutcome::Selected(selected), verdict)
        }
        None => (RequestPermissionOutcome::Cancelled, Verdict::Cancelled),
    }
}

/// Counts of permission answers over a run. acpx ends a run with "permission denied" (exit 5)
/// when something was asked, nothing was approved, and something was refused; file and
/// command refusals count as denials too.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PermissionStats {
    pub requested: u32,
    pub approved: u32,
    pub denied: u32,
    pub cancelled: u32,
    /// What was refused first, for the error message.
    pub first_refusal: Option<String>,
}

impl PermissionStats {
    pub fn record(&mut self, verdict: Verdict, what: &str) {
        self.requested += 1;
        match verdict {
            Verdict::Approved => self.approved += 1,
            Verdict::Denied => self.denied += 1,
            Verdict::Cancelled => self.cancelled += 1,
        }
        if verdict != Verdict::Approved && self.first_refusal.is_none() {
            self.first_refusal = Some(what.to_owned());
        }
    }

    pub fn all_refused(&self) -> bool {
        self.requested > 0 && self.approved == 0 && self.denied + self.cancelled > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_client_protocol::v1::schema::PermissionOptionId;

    fn question(mode: PermissionMode, action: Action) -> Question {
        Question {
            session_id: "s".into(),
            mode,
            action,
            options: Vec::new(),
        }
    }

    fn tool(kind: Option<&str>, title: &str) -> Action {
        Action::ToolCall {
            tool_call_id: "t".into(),
            title: title.into(),
            kind: infer_tool_kind(kind, Some(title)),
            locations: Vec::new(),
            raw_input: String::new(),
        }
    }

    #[test]
    fn ask_approves_reads_and_asks_a_person_for_the_rest() {
        let ask = PermissionMode::Ask;
        let read = Action::ReadFile {
            path: "/w/a".into(),
        };
        let write = Action::WriteFile {
            path: "/w/a".into(),
            preview: String::new(),
        };
        assert!(!asks_a_person(&question(ask, read.clone())));
        assert!(!asks_a_person(&question(ask, tool(None, "cat a"))));
        assert!(asks_a_person(&question(ask, write.clone())));
        assert!(asks_a_person(&question(ask, tool(None, "mystery"))));
        assert!(!asks_a_person(&question(
            PermissionMode::ApproveAll,
            write.clone()
        )));
        // With nobody to ask, `ask` is approve-reads: fail closed.
        assert_eq!(policy_decision(&question(ask, read)), Decision::Allow);
        assert_eq!(policy_decision(&question(ask, write)), Decision::Deny);
    }

    #[test]
    fn approve_reads_allows_reads_and_searches_only() {
        let mode = PermissionMode::ApproveReads;
        for (kind, title, expected) in [
            (Some("read"), "Read a.txt", Decision::Allow),
            (Some("search"), "Find things", Decision::Allow),
            (Some("edit"), "Read this but it edits", Decision::Deny),
            (None, "cat README.md", Decision::Allow),
            (None, "grep: foo", Decision::Allow),
            (None, "Write notes", Decision::Deny),
            (None, "mystery", Decision::Deny),
            (Some("execute"), "run tests", Decision::Deny),
        ] {
            let decision = policy_decision(&question(mode, tool(kind, title)));
            assert_eq!(decision, expected, "{kind:?} {title}");
        }
        let read = Action::ReadFile {
            path: "/w/a".into(),
        };
        let write = Action::WriteFile {
            path: "/w/a".into(),
            preview: String::new(),
        };
        let run = Action::Execute {
            command: "ls".into(),
        };
        assert_eq!(
            policy_decision(&question(mode, read.clone())),
            Decision::Allow
        );
        assert_eq!(
            policy_decision(&question(mode, write.clone())),
            Decision::Deny
        );
        assert_eq!(
            policy_decision(&question(mode, run.clone())),
            Decision::Deny
        );
        for action in [read, write, run, tool(Some("read"), "Read")] {
            let all = PermissionMode::ApproveAll;
            let none = PermissionMode::DenyAll;
            assert_eq!(
                policy_decision(&question(all, action.clone())),
                Decision::Allow
            );
            assert_eq!(policy_decision(&question(none, action)), Decision::Deny);
        }
    }

    fn option(id: &str, kind: PermissionOptionKind) -> PermissionOption {
        PermissionOption::new(PermissionOptionId::new(id), id, kind)
    }

    fn selected(outcome: &RequestPermissionOutcome) -> Option<String> {
        match outcome {
            RequestPermissionOutcome::Selected(s) => Some(s.option_id.to_string()),
            _ => None,
        }
    }

    #[test]
    fn options_are_picked_as_acpx_picks_them() {
        let options = [
            option("always", PermissionOptionKind::AllowAlways),
            option("once", PermissionOptionKind::AllowOnce),
            option("no", PermissionOptionKind::RejectOnce),
        ];
        let (outcome, verdict) = pick_option(&options, Some(Decision::Allow));
        assert_eq!(
            (selected(&outcome).as_deref(), verdict),
            (Some("once"), Verdict::Approved)
        );
        let (outcome, verdict) = pick_option(&options, Some(Decision::Deny));
        assert_eq!(
            (selected(&outcome).as_deref(), verdict),
            (Some("no"), Verdict::Denied)
        );
        let (outcome, verdict) = pick_option(&options, None);
        assert_eq!((selected(&outcome), verdict), (None, Verdict::Cancelled));
        let (outcome, _) = pick_option(&options, Some(Decision::AllowAlways));
        assert_eq!(selected(&outcome).as_deref(), Some("always"));
        let (outcome, verdict) = pick_option(&options, Some(Decision::DenyAlways));
        assert_eq!(
            (selected(&outcome).as_deref(), verdict),
            (Some("no"), Verdict::Denied)
        );
        // approve-all with no allow option takes the first one, whatever it is.
        let only_reject = [option("nope", PermissionOptionKind::RejectAlways)];
        let (outcome, verdict) = pick_option(&only_reject, Some(Decision::Allow));
        assert_eq!(
            (selected(&outcome).as_deref(), verdict),
            (Some("nope"), Verdict::Denied)
        );
        let only_allow = [option("yes", PermissionOptionKind::AllowOnce)];
        let (outcome, verdict) = pick_option(&only_allow, Some(Decision::Deny));
        assert_eq!((selected(&outcome), verdict), (None, Verdict::Cancelled));
        let (_, verdict) = pick_option(&[], Some(Decision::Allow));
        assert_eq!(verdict, Verdict::Cancelled);
    }

    #[test]
    fn a_run_is_refused_only_when_nothing_was_approved() {
        let mut stats = PermissionStats::default();
        assert!(!stats.all_refused());
        stats.record(Verdict::Denied, "write a");
        assert!(stats.all_refused());
        assert_eq!(stats.first_refusal.as_deref(), Some("write a"));
        stats.record(Verdict::Approved, "read b");
        assert!(!stats.all_refused());
    }
}
