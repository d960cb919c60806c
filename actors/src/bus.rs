//! Live fan-out of stored events to any number of stream readers (SSE, `telecoder run`).
//!
//! The bus only carries events that are already committed, so a reader that falls behind
//! (or subscribes late) can always catch up from the store by event id.

use crate::domain::Event;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

/// Buffered events per session before a slow reader lags and must re-read from the store.
const CHANNEL_CAPACITY: usize = 128;
/// Buffered activity notes before a slow watcher of every session lags (it then re-reads
/// whatever it shows; nothing is lost that the store does not have).
const ACTIVITY_CAPACITY: usize = 256;

/// (dashboard, issue 17) That a session has a new committed event, without its data: what a
/// view of many sessions (the dashboard's list, its approval count) needs to know to re-read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activity {
    pub event_id: i64,
    pub session_id: String,
    pub kind: crate::domain::EventKind,
}

/// Cheap to clone; all clones share the same channels.
#[derive(Clone)]
pub struct EventBus {
    channels: Arc<Mutex<HashMap<String, broadcast::Sender<Arc<Event>>>>>,
    /// Every session's activity, for watchers of all sessions (the dashboard's live list).
    activity: broadcast::Sender<Activity>,
    /// Counts every committed event (the `events_written` metric).
    written: Option<prometheus_client::metrics::counter::Counter>,
    /// Poked after a commit that may have queued a notification (a terminal event, an
    /// approval, a watch update), so the notification sender looks at the outbox at once
    /// (issue 15).
    notifications: Arc<tokio::sync::Notify>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            channels: Arc::default(),
            activity: broadcast::channel(ACTIVITY_CAPACITY).0,
            written: None,
            notifications: Arc::default(),
        }
    }
}

impl EventBus {
    /// A bus that also counts the events it sees.
    pub fn counting(written: prometheus_client::metrics::counter::Counter) -> Self {
        Self {
            written: Some(written),
            ..Self::default()
        }
    }

    fn channels(&self) -> MutexGuard<'_, HashMap<String, broadcast::Sender<Arc<Event>>>> {
        // A poisoned map still holds valid senders; keep serving.
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribe before reading history, so nothing committed in between is missed.
    pub fn subscribe(&self, session_id: &str) -> broadcast::Receiver<Arc<Event>> {
        self.channels()
            .entry(session_id.to_owned())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }

    /// Called by the store after commit. A terminal event closes the session's channel, which
    /// readers see as the end of the stream once they have drained it.
    pub fn publish(&self, event: &Event) {
        if let Some(written) = &self.written {
            written.inc();
        }
        if self.activity.receiver_count() > 0 {
            let _ = self.activity.send(Activity {
                event_id: event.id,
                session_id: event.session_id.clone(),
                kind: event.kind,
            });
        }
        if event.kind.is_terminal() || event.kind == crate::domain::EventKind::Approval {
            self.outbox_changed();
        }
        let mut channels = self.channels();
        // One shared copy however many readers: a reader's receive must not copy the data.
        if event.kind.is_terminal() {
            if let Some(sender) = channels.remove(&event.session_id) {
                let _ = sender.send(Arc::new(event.clone()));
            }
        } else if let Some(sender) = channels.get(&event.session_id) {
            if sender.send(Arc::new(event.clone())).is_err() {
                channels.remove(&event.session_id);
            }
        }
    }

    /// Every session's activity from now on (no history: a watcher re-reads what it shows
    /// when it subscribes, and again when it lags).
    pub fn watch_all(&self) -> broadcast::Receiver<Activity> {
        self.activity.subscribe()
    }

    /// Wakes the notification sender (after commit).
    pub fn outbox_changed(&self) {
        self.notifications.notify_one();
    }

    /// What the notification sender waits on (see the field).
    pub fn notifications(&self) -> Arc<tokio::sync::Notify> {
        self.notifications.clone()
    }

    /// Drops a session's channel once nobody listens, so finished sessions leave nothing behind.
    pub fn release(&self, session_id: &str) {
        let mut channels = self.channels();
        if channels
            .get(session_id)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            channels.remove(session_id);
        }
    }

    /// Number of sessions with live readers (for admin and tests).
    pub fn open_channels(&self) -> usize {
        self.channels().len()
    }
}
