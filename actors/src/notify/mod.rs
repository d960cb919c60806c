//! Notifications (issue 15): telling a person when a session finishes, when an agent waits for
//! an approval, when a watch is paused, and when the daemon restarted after a crash.
//!
//! * [`target`]: the destinations of `TELECODER_NOTIFY` (webhook, ntfy, Slack), their filters,
//!   what may be shown of them and what must be redacted.
//! * [`event`]: the facts of one notification, as the outbox stores them.
//! * [`message`] and [`format`]: the text a person reads, and the request each kind of target
//!   gets (signed JSON, ntfy headers, Slack blocks). Pure.
//! * [`retry`]: what an answer means and how long to wait before the next attempt. Pure.
//! * [`sender`]: the task that delivers what the outbox holds (the only I/O here).
//!
//! Durability: the store writes a notification in the transaction of the event that causes it
//! (`store::outbox`); the sender delivers at least once, with the same delivery id on every
//! attempt, so receivers can drop duplicates.

pub mod event;
pub mod format;
pub mod message;
pub mod retry;
pub mod sender;
pub mod target;

pub use sender::{Notifier, TestResult};
pub use target::Target;

use crate::settings::Secret;

/// How notifications are sent; part of [`crate::Settings`].
#[derive(Clone, Debug)]
pub struct NotifySettings {
    /// `TELECODER_NOTIFY`; empty sends nothing.
    pub targets: Vec<Target>,
    /// `TELECODER_NOTIFY_SECRET`: the HMAC key of webhook signatures.
    pub secret: Option<Secret>,
    /// `TELECODER_PUBLIC_URL`: where a person reaches this daemon, for links.
    pub public_url: Option<String>,
    /// `TELECODER_NOTIFY_MAX_ATTEMPTS`: attempts per delivery before it is given up.
    pub max_attempts: u32,
}

/// Attempts before a delivery is given up: with the backoff's doubling from one second (capped
/// at ten minutes), twelve attempts span about 37 minutes.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 12;

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            secret: None,
            public_url: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }
}
