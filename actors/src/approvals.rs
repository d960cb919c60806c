//! Approvals (policy `ask`, issue 15): the agent asks, a person answers from anywhere.
//!
//! A session under `ask` runs with a [`SessionDecider`]: reads are approved at once; anything
//! else the agent asks for becomes an approval record, stored (with its `approval` event)
//! before anyone can see it, while the agent waits. The person's answer comes through
//! [`ApprovalHub::answer`] (HTTP, CLI). The store's conditional update decides exactly once
//! between the person, the timeout and the end of the session; the hub's waiter map decides
//! who may try first, so an answer is recorded before the agent hears it, and a lost race
//! never leaves the agent waiting.
//!
//! Fail closed, always: no answer before `TELECODER_APPROVAL_TIMEOUT` (and never later than
//! the session's own bound, its max runtime plus that timeout) → denied, recorded `expired`;
//! the session ends first (cancel, timeout, crash, daemon restart) → `expired`; the record
//! cannot be stored → denied.

use crate::domain::approval::{
    clip, pick, Answer, Approval, ApprovalOption, ApprovalStatus, Location, ToolCallView, Verdict,
    RAW_INPUT_LIMIT,
};
use crate::domain::redact::Redactor;
use crate::domain::{time, SessionId};
use crate::error::{Error, Result};
use crate::runtime::native::permission::{
    asks_a_person, policy_decision, Action, Decision, PermissionDecider, Question,
};
use crate::runtime::BoxFuture;
use crate::store::approvals::{self as sql, Resolved};
use crate::store::StoreClient;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Who recorded an expiry when nobody answered in time.
pub const BY_TIMEOUT: &str = "timeout";
/// Who recorded an expiry when the question was dropped because its turn ended.
pub const BY_SESSION_END: &str = "session ended";
/// Who recorded an expiry when a person's answer could not be stored (the agent was denied).
pub const BY_UNRECORDED: &str = "answer not recorded (store unavailable)";

/// An approval some run in this process waits for.
struct Waiter {
    /// The agent's options, to answer with the one the person's answer means.
    options: Vec<ApprovalOption>,
    answer: oneshot::Sender<Decision>,
}

/// The approvals this daemon waits for, by id. Whoever takes an approval's waiter out of the
/// map (an answer, the timeout, the end of the turn) is the one who records its end.
#[derive(Default)]
pub struct ApprovalHub {
    waiters: Mutex<HashMap<String, Waiter>>,
}

impl ApprovalHub {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Waiter>> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, id: &str, options: Vec<ApprovalOption>) -> oneshot::Receiver<Decision> {
        let (answer, receiver) = oneshot::channel();
        self.lock()
            .insert(id.to_owned(), Waiter { options, answer });
        receiver
    }

    fn take(&self, id: &str) -> Option<Waiter> {
        self.lock().remove(id)
    }

    /// A person's answer: recorded first, then the waiting agent hears it. `Conflict` once
    /// decided (or expired), `NotFound` for an unknown id.
    pub async fn answer(
        &self,
        store: &StoreClient,
        id: &str,
        answer: Answer,
        decided_by: &str,
    ) -> Result<Approval> {
        let Some(waiter) = self.take(id) else {
            return self.not_waiting(store, id).await;
        };
        let selected = pick(&waiter.options, answer)
            .map(|option| option.option_id.clone())
            .unwrap_or_default();
        let decision = sql::Decision {
            status: answer.status(),
            decided_by: decided_by.to_owned(),
            selected_option: selected,
        };
        match store.resolve_approval(id, decision).await {
            Ok(Resolved::Decided(approval, _)) => {
                let _ = waiter.answer.send(decision_for(answer));
                Ok(approval)
            }
            // Its session ended in the meantime and expired it; the agent is gone.
            Ok(Resolved::Already(approval)) => Err(already(&approval)),
            // Not recorded: the agent is told no (fail closed; dropping the waiter does it) and
            // its decider tries to record that.
            Err(err) => Err(err),
        }
    }

    /// The answer for an approval nothing in this process waits for.
    async fn not_waiting(&self, store: &StoreClient, id: &str) -> Result<Approval> {
        let Some(approval) = store.approval(id).await? else {
            return Err(Error::NotFound(format!("approval {id} not found")));
        };
        if approval.status != ApprovalStatus::Pending {
            return Err(already(&approval));
        }
        // Pending in the database, but nobody waits: its run ended a moment ago, or it was
        // left by an earlier daemon. It can only expire.
        let expired = sql::Decision {
            status: ApprovalStatus::Expired,
            decided_by: BY_SESSION_END.into(),
            selected_option: String::new(),
        };
        let approval = match store.resolve_approval(id, expired).await? {
            Resolved::Decided(approval, _) | Resolved::Already(approval) => approval,
        };
        Err(already(&approval))
    }
}

fn already(approval: &Approval) -> Error {
    let by = if approval.decided_by.is_empty() {
        String::new()
    } else {
        format!(" by {}", approval.decided_by)
    };
    Error::Conflict(format!(
        "approval {} was already {}{by} at {}",
        approval.id,
        approval.status.as_str(),
        approval.decided_at
    ))
}

fn decision_for(answer: Answer) -> Decision {
    match (answer.decision, answer.remember) {
        (Verdict::Allow, false) => Decision::Allow,
        (Verdict::Allow, true) => Decision::AllowAlways,
        (Verdict::Deny, false) => Decision::Deny,
        (Verdict::Deny, true) => Decision::DenyAlways,
    }
}

/// The permission decider of one session under `ask`.
#[derive(Clone)]
pub struct SessionDecider {
    inner: Arc<Inner>,
}

struct Inner {
    session_id: String,
    hub: Arc<ApprovalHub>,
    store: StoreClient,
    redactor: Redactor,
    /// `TELECODER_APPROVAL_TIMEOUT`: the longest one approval waits.
    timeout: Duration,
    /// The session's own bound: no approval waits past it (its max runtime plus the approval
    /// timeout, from the start of its run).
    session_deadline: Instant,
    /// Files a person allowed a tool call to touch: the agent's own write to them
    /// (`fs/write_text_file`) that follows is not asked about a second time.
    allowed_paths: Mutex<HashSet<PathBuf>>,
}

/// Everything a session's decider is built from.
pub struct DeciderArgs {
    pub session_id: String,
    pub hub: Arc<ApprovalHub>,
    pub store: StoreClient,
    pub redactor: Redactor,
    pub timeout: Duration,
    pub max_runtime: Duration,
}

impl SessionDecider {
    pub fn new(args: DeciderArgs) -> Self {
        Self {
            inner: Arc::new(Inner {
                session_deadline: Instant::now() + args.max_runtime + args.timeout,
                session_id: args.session_id,
                hub: args.hub,
                store: args.store,
                redactor: args.redactor,
                timeout: args.timeout,
                allowed_paths: Mutex::new(HashSet::new()),
            }),
        }
    }
}

impl PermissionDecider for SessionDecider {
    fn decide(&self, question: Question) -> BoxFuture<'static, Decision> {
        if !asks_a_person(&question) {
            return Box::pin(std::future::ready(policy_decision(&question)));
        }
        if self.inner.already_allowed(&question.action) {
            return Box::pin(std::future::ready(Decision::Allow));
        }
        let inner = self.inner.clone();
        Box::pin(async move { inner.ask(question).await })
    }
}

impl Inner {
    fn paths(&self) -> MutexGuard<'_, HashSet<PathBuf>> {
        self.allowed_paths.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn already_allowed(&self, action: &Action) -> bool {
        matches!(action, Action::WriteFile { path, .. } if self.paths().contains(path))
    }

    /// Stores the approval, waits for the answer (or the timeout), returns the decision.
    async fn ask(self: Arc<Self>, question: Question) -> Decision {
        let id = SessionId::random().to_string();
        let wait = self.timeout.min(
            self.session_deadline
                .saturating_duration_since(Instant::now()),
        );
        let created = SystemTime::now();
        let tool_call_id = match &question.action {
            Action::ToolCall { tool_call_id, .. } => tool_call_id.clone(),
            _ => String::new(),
        };
        let approval = Approval {
            id: id.clone(),
            session_id: self.session_id.clone(),
            status: ApprovalStatus::Pending,
            tool_call: self.view(&question.action),
            options: question.options.clone(),
            created_at: time::format(created),
            decided_at: String::new(),
            decided_by: String::new(),
            expires_at: time::format(created + wait),
            selected_option: String::new(),
        };
        let mut answer = self.hub.register(&id, question.options.clone());
        // Dropped (the turn is being stopped) before an answer: expire the record.
        let guard = ExpireOnDrop {
            inner: Some(self.clone()),
            id: id.clone(),
        };
        if let Err(err) = self.store.record_approval(approval, tool_call_id).await {
            tracing::warn!(session = %self.session_id, "cannot store an approval, denying: {err}");
            self.hub.take(&id);
            guard.disarm();
            return Decision::Deny;
        }
        tracing::info!(session = %self.session_id, approval = %id, "waiting for a person's approval");
        let decision = tokio::select! {
            answered = &mut answer => match answered {
                Ok(decision) => decision,
                Err(_) => self.record_expiry(&id, BY_UNRECORDED).await,
            },
            () = tokio::time::sleep(wait) => self.expire(&id, &mut answer).await,
        };
        guard.disarm();
        if decision.allows() {
            if let Action::ToolCall { locations, .. } = &question.action {
                self.paths().extend(locations.iter().map(PathBuf::from));
            }
        }
        decision
    }

    /// Nobody answered in time: record the expiry, unless an answer is being recorded right
    /// now (its sender took the waiter first), in which case that answer stands.
    async fn expire(&self, id: &str, answer: &mut oneshot::Receiver<Decision>) -> Decision {
        if self.hub.take(id).is_none() {
            // Whoever took it sends the recorded answer or drops the waiter (denied) soon.
            return answer.await.unwrap_or(Decision::Deny);
        }
        tracing::info!(session = %self.session_id, approval = %id, "approval expired: denied");
        self.record_expiry(id, BY_TIMEOUT).await
    }

    /// Records that `id` ended denied without a person's answer (a no-op if it ended already).
    async fn record_expiry(&self, id: &str, by: &str) -> Decision {
        let expired = sql::Decision {
            status: ApprovalStatus::Expired,
            decided_by: by.into(),
            selected_option: String::new(),
        };
        if let Err(err) = self.store.resolve_approval(id, expired).await {
            tracing::warn!(approval = %id, "cannot record an expired approval: {err}");
        }
        Decision::Deny
    }

    /// What the person sees: the agent's own words, with secrets masked and sizes bounded.
    fn view(&self, action: &Action) -> ToolCallView {
        let redact = |text: &str| clip(&self.redactor.redact(text), RAW_INPUT_LIMIT);
        let located = |paths: Vec<String>| {
            paths
                .iter()
                .map(|path| Location { path: redact(path) })
                .collect::<Vec<_>>()
        };
        let json = |value: serde_json::Value| value.to_string();
        match action {
            Action::ToolCall {
                title,
                kind,
                locations,
                raw_input,
                ..
            } => ToolCallView {
                title: redact(title),
                kind: kind.clone().unwrap_or_else(|| "other".into()),
                locations: located(locations.clone()),
                raw_input: redact(raw_input),
            },
            Action::WriteFile { path, preview } => {
                let path = path.display().to_string();
                ToolCallView {
                    title: format!("Write {path}"),
                    kind: "edit".into(),
                    locations: located(vec![path.clone()]),
                    raw_input: redact(&json(
                        serde_json::json!({ "path": path, "content": preview }),
                    )),
                }
            }
            Action::Execute { command } => ToolCallView {
                title: redact(&format!("Run `{command}`")),
                kind: "execute".into(),
                locations: Vec::new(),
                raw_input: redact(&json(serde_json::json!({ "command": command }))),
            },
            Action::ReadFile { path } => {
                let path = path.display().to_string();
                ToolCallView {
                    title: format!("Read {path}"),
                    kind: "read".into(),
                    locations: located(vec![path]),
                    raw_input: String::new(),
                }
            }
        }
    }
}

/// Expires an approval whose question was dropped (its turn is being stopped) before it was
/// answered. The session's end expires it too, in the same transaction as its terminal event;
/// whichever comes first wins, and nothing is written after that event.
struct ExpireOnDrop {
    inner: Option<Arc<Inner>>,
    id: String,
}

impl ExpireOnDrop {
    fn disarm(mut self) {
        self.inner = None;
    }
}

impl Drop for ExpireOnDrop {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        if inner.hub.take(&self.id).is_none() {
            return;
        }
        let id = std::mem::take(&mut self.id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let expired = sql::Decision {
                    status: ApprovalStatus::Expired,
                    decided_by: BY_SESSION_END.into(),
                    selected_option: String::new(),
                };
                let _ = inner.store.resolve_approval(&id, expired).await;
            });
        }
    }
}

/// The decider for `session`'s run: a [`SessionDecider`] under policy `ask`, `None` (the
/// runtime's policy rules) otherwise.
pub fn decider_for(
    session: &crate::domain::Session,
    hub: &Arc<ApprovalHub>,
    store: &StoreClient,
    settings: &crate::settings::Settings,
) -> Option<crate::runtime::DeciderHandle> {
    if session.effective_permission_mode != crate::domain::PermissionMode::Ask {
        return None;
    }
    let decider = SessionDecider::new(DeciderArgs {
        session_id: session.id.clone(),
        hub: hub.clone(),
        store: store.clone(),
        redactor: settings.redactor.clone(),
        timeout: settings.approval_timeout,
        max_runtime: Duration::from_secs(session.max_runtime_seconds),
    });
    Some(crate::runtime::DeciderHandle(Arc::new(decider)))
}
