//! What the agent reported so far, shared between the connection's handlers (which must never
//! wait, so the agent is read as fast as it writes) and the run loop (which streams it out).
//!
//! Assistant text goes into the bounded [`OutputBuffer`] and is coalesced like the acpx
//! runtime's; tool calls and plans become events queued in order with the text around them.

use crate::domain::TokenUsage;
use crate::runtime::output::{OutputBuffer, COALESCE_WINDOW};
use crate::runtime::AgentEvent;
use agent_client_protocol::v1::schema::{
    ContentBlock, Plan, SessionUpdate, ToolCall, ToolCallLocation, ToolCallStatus, ToolCallUpdate,
    ToolKind, UsageUpdate,
};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::{mpsc, Notify};

use super::permission::{PermissionStats, Verdict};

/// Events waiting to be sent beyond this are dropped (and counted): a runaway agent cannot
/// grow the queue while the store is slow.
const MAX_QUEUED: usize = 4096;
/// Tool calls remembered to merge their updates; later ones are reported unmerged.
const MAX_TRACKED_TOOLS: usize = 10_000;

/// The tool event's data, as the contract fixes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolView {
    tool_call_id: String,
    title: String,
    kind: String,
    status: String,
    locations: Vec<LocationView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
struct LocationView {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u32>,
}

#[derive(Default)]
struct Progress {
    output: Option<OutputBuffer>,
    queue: VecDeque<AgentEvent>,
    dropped: usize,
    tools: HashMap<String, ToolView>,
    last_plan: Option<String>,
    usage: Option<TokenUsage>,
    stats: PermissionStats,
}

/// Shared by the handlers and the run loop.
pub(super) struct Shared {
    progress: Mutex<Progress>,
    wake: Notify,
    /// The agent is replaying a loaded session's history: its updates are not this turn's.
    replaying: AtomicBool,
}

impl Shared {
    pub(super) fn new(max_output_bytes: usize) -> Self {
        Self {
            progress: Mutex::new(Progress {
                output: Some(OutputBuffer::new(max_output_bytes)),
                ..Progress::default()
            }),
            wake: Notify::new(),
            replaying: AtomicBool::new(false),
        }
    }

    /// While set, session updates are ignored (`session/load` replays the conversation).
    pub(super) fn set_replaying(&self, replaying: bool) {
        self.replaying.store(replaying, Ordering::SeqCst);
    }

    fn lock(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves when a handler added something.
    pub(super) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Takes in one session update.
    pub(super) fn absorb(&self, update: SessionUpdate) {
        if self.replaying.load(Ordering::SeqCst) {
            return;
        }
        let mut progress = self.lock();
        match update {
            SessionUpdate::AgentMessageChunk(chunk) => {
                if let ContentBlock::Text(text) = chunk.content {
                    if let Some(output) = progress.output.as_mut() {
                        output.push_text(&text.text);
                    }
                }
            }
            SessionUpdate::ToolCall(call) => progress.tool_call(call),
            SessionUpdate::ToolCallUpdate(update) => progress.tool_update(update),
            SessionUpdate::Plan(plan) => progress.plan(&plan),
            SessionUpdate::UsageUpdate(usage) => progress.context_usage(&usage),
            _ => return,
        }
        drop(progress);
        self.wake.notify_one();
    }

    /// Adds a line the user should see in the output (the oversized-line marker).
    pub(super) fn push_text(&self, text: &str) {
        if let Some(output) = self.lock().output.as_mut() {
            output.push_text(text);
        }
        self.wake.notify_one();
    }

    /// Queues an event in order with the text around it.
    pub(super) fn push_event(&self, event: AgentEvent) {
        self.lock().enqueue(event);
        self.wake.notify_one();
    }

    pub(super) fn record_permission(&self, verdict: Verdict, what: &str) {
        self.lock().stats.record(verdict, what);
    }

    pub(super) fn add_turn_usage(&self, usage: TokenUsage) {
        let mut progress = self.lock();
        progress
            .usage
            .get_or_insert_with(TokenUsage::default)
            .merge(usage);
    }

    pub(super) fn usage(&self) -> Option<TokenUsage> {
        self.lock().usage.clone()
    }

    pub(super) fn stats(&self) -> PermissionStats {
        self.lock().stats.clone()
    }

    /// Sends what is due: queued events always; pending text when `force` (the coalescing
    /// tick) or after a quiet spell (leading edge).
    pub(super) async fn pump(&self, events: &mpsc::Sender<AgentEvent>, force: bool) {
        let batch = {
            let mut progress = self.lock();
            let mut batch: Vec<AgentEvent> = progress.queue.drain(..).collect();
            if progress.dropped > 0 {
                batch.push(AgentEvent::Notice(format!(
                    "{} tool/plan updates dropped (the agent sent them faster than they could be stored)",
                    progress.dropped
                )));
                progress.dropped = 0;
            }
            if let Some(output) = progress.output.as_mut() {
                if force || output.quiet_for(COALESCE_WINDOW) {
                    batch.extend(output.take_pending().map(AgentEvent::Output));
                }
            }
            batch
        };
        for event in batch {
            let _ = events.send(event).await;
        }
    }

    /// The collected output, once the run is over.
    pub(super) fn take_output(&self) -> OutputBuffer {
        self.lock()
            .output
            .take()
            .unwrap_or_else(|| OutputBuffer::new(0))
    }
}

impl Progress {
    /// Queues an event after the text that came before it.
    fn enqueue(&mut self, event: AgentEvent) {
        if self.queue.len() >= MAX_QUEUED {
            self.dropped += 1;
            return;
        }
        if let Some(text) = self.output.as_mut().and_then(OutputBuffer::take_pending) {
            self.queue.push_back(AgentEvent::Output(text));
        }
        self.queue.push_back(event);
    }

    fn tool_call(&mut self, call: ToolCall) {
        let view = ToolView {
            tool_call_id: call.tool_call_id.to_string(),
            title: call.title,
            kind: kind_name(call.kind),
            status: status_name(call.status),
            locations: locations(&call.locations),
        };
        self.report_tool(view);
    }

    fn tool_update(&mut self, update: ToolCallUpdate) {
        let id = update.tool_call_id.to_string();
        let mut view = self.tools.get(&id).cloned().unwrap_or_else(|| ToolView {
            tool_call_id: id,
            kind: kind_name(ToolKind::Other),
            status: status_name(ToolCallStatus::Pending),
            ..ToolView::default()
        });
        let fields = update.fields;
        if let Some(title) = fields.title {
            view.title = title;
        }
        if let Some(kind) = fields.kind {
            view.kind = kind_name(kind);
        }
        if let Some(status) = fields.status {
            view.status = status_name(status);
        }
        if let Some(found) = fields.locations {
            view.locations = locations(&found);
        }
        self.report_tool(view);
    }

    /// Emits a tool event when something the user sees changed.
    fn report_tool(&mut self, view: ToolView) {
        if self.tools.get(&view.tool_call_id) == Some(&view) {
            return;
        }
        if let Ok(json) = serde_json::to_string(&view) {
            self.enqueue(AgentEvent::Tool(json));
        }
        if self.tools.len() < MAX_TRACKED_TOOLS || self.tools.contains_key(&view.tool_call_id) {
            self.tools.insert(view.tool_call_id.clone(), view);
        }
    }

    fn plan(&mut self, plan: &Plan) {
        let Ok(json) = serde_json::to_string(&plan.entries) else {
            return;
        };
        if self.last_plan.as_ref() != Some(&json) {
            self.last_plan = Some(json.clone());
            self.enqueue(AgentEvent::Plan(json));
        }
    }

    fn context_usage(&mut self, update: &UsageUpdate) {
        let usage = TokenUsage {
            context_used: Some(update.used),
            context_size: Some(update.size),
            cost: update
                .cost
                .as_ref()
                .map(|cost| format!("{} {}", cost.amount, cost.currency)),
            ..TokenUsage::default()
        };
        self.usage
            .get_or_insert_with(TokenUsage::default)
            .merge(usage);
    }
}

/// The wire name of a serde enum value (`in_progress`, `switch_mode`, …).
fn wire_name(value: impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => "other".into(),
    }
}

fn kind_name(kind: ToolKind) -> String {
    wire_name(kind)
}

fn status_name(status: ToolCallStatus) -> String {
    wire_name(status)
}

fn locations(found: &[ToolCallLocation]) -> Vec<LocationView> {
    found
        .iter()
        .map(|location| LocationView {
            path: location.path.display().to_string(),
            line: location.line,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_client_protocol::v1::schema::{
        ContentChunk, PlanEntry, PlanEntryPriority, PlanEntryStatus, TextContent,
        ToolCallUpdateFields,
    };

    fn text(chunk: &str) -> SessionUpdate {
        SessionUpdate::AgentMessageChunk(ContentChunk::new(ContentBlock::Text(TextContent::new(
            chunk,
        ))))
    }

    async fn drain(shared: &Shared) -> Vec<AgentEvent> {
        let (tx, mut rx) = mpsc::channel(64);
        shared.pump(&tx, true).await;
        drop(tx);
        let mut events = Vec::new();
        while let Some(event) = rx.recv().await {
            events.push(event);
        }
        events
    }

    #[tokio::test]
    async fn tool_updates_merge_and_keep_their_place_in_the_text() {
        let shared = Shared::new(1024);
        shared.absorb(text("before "));
        let call = ToolCall::new("t1", "Read a.txt")
            .kind(ToolKind::Read)
            .locations(vec![ToolCallLocation::new("/w/a.txt").line(3)]);
        shared.absorb(SessionUpdate::ToolCall(call));
        shared.absorb(text("after"));
        let update = ToolCallUpdate::new(
            "t1",
            ToolCallUpdateFields::new().status(ToolCallStatus::Completed),
        );
        shared.absorb(SessionUpdate::ToolCallUpdate(update.clone()));
        // The same update again changes nothing the user sees.
        shared.absorb(SessionUpdate::ToolCallUpdate(update));
        let events = drain(&shared).await;
        assert_eq!(events.len(), 4, "{events:?}");
        assert_eq!(events[0], AgentEvent::Output("before ".into()));
        let AgentEvent::Tool(first) = &events[1] else {
            panic!("{events:?}")
        };
        let first: serde_json::Value = serde_json::from_str(first).expect("json");
        assert_eq!(
            first,
            serde_json::json!({"toolCallId": "t1", "title": "Read a.txt", "kind": "read",
                "status": "pending", "locations": [{"path": "/w/a.txt", "line": 3}]})
        );
        assert_eq!(events[2], AgentEvent::Output("after".into()));
        let AgentEvent::Tool(second) = &events[3] else {
            panic!("{events:?}")
        };
        let second: serde_json::Value = serde_json::from_str(second).expect("json");
        assert_eq!(second["status"], "completed");
        assert_eq!(second["title"], "Read a.txt");
    }

    #[tokio::test]
    async fn plans_are_reported_when_they_change() {
        let shared = Shared::new(1024);
        let entry = PlanEntry::new("step", PlanEntryPriority::High, PlanEntryStatus::Pending);
        shared.absorb(SessionUpdate::Plan(Plan::new(vec![entry.clone()])));
        shared.absorb(SessionUpdate::Plan(Plan::new(vec![entry])));
        let events = drain(&shared).await;
        assert_eq!(
            events,
            [AgentEvent::Plan(
                r#"[{"content":"step","priority":"high","status":"pending"}]"#.into()
            )]
        );
        shared.absorb(SessionUpdate::UsageUpdate(UsageUpdate::new(10, 100)));
        shared.add_turn_usage(TokenUsage {
            output_tokens: Some(5),
            ..TokenUsage::default()
        });
        let usage = shared.usage().expect("usage");
        assert_eq!(
            (usage.context_used, usage.output_tokens),
            (Some(10), Some(5))
        );
    }
}
