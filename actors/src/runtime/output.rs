//! Assistant text as both runtimes collect it: bounded, streamed in coalesced bursts, with
//! diagnostics kept aside for error messages.

use super::{AgentEvent, AgentFailure, AgentReport};
use crate::domain::FailureKind;
use std::time::Duration;
use tokio::sync::mpsc;

/// Output chunks arriving within this window are sent as one event.
pub(crate) const COALESCE_WINDOW: Duration = Duration::from_millis(100);
/// How much diagnostics (stderr, JSON-RPC errors) is kept for the error message.
pub(crate) const DIAGNOSTICS_LIMIT: usize = 16 * 1024;

/// Accumulates assistant text (bounded), remembers what is not yet streamed, and keeps
/// diagnostics for error classification.
pub(crate) struct OutputBuffer {
    pub(crate) text: String,
    pending: String,
    /// When text was last sent; `None` before the first send.
    last_flush: Option<std::time::Instant>,
    pub(crate) diagnostics: String,
    limit: usize,
    truncated: bool,
}

impl OutputBuffer {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            text: String::new(),
            pending: String::new(),
            last_flush: None,
            diagnostics: String::new(),
            limit,
            truncated: false,
        }
    }

    /// True when nothing was sent for at least `window`.
    pub(crate) fn quiet_for(&self, window: Duration) -> bool {
        self.last_flush.is_none_or(|at| at.elapsed() >= window)
    }

    /// Keeps a line of diagnostics, up to [`DIAGNOSTICS_LIMIT`].
    pub(crate) fn note(&mut self, message: &str) {
        if self.diagnostics.len() < DIAGNOSTICS_LIMIT {
            self.diagnostics.push_str(message);
            self.diagnostics.push('\n');
        }
    }

    pub(crate) fn push_text(&mut self, text: &str) {
        if self.truncated {
            return;
        }
        let room = self.limit.saturating_sub(self.text.len());
        if text.len() <= room {
            self.text.push_str(text);
            self.pending.push_str(text);
            return;
        }
        let mut cut = room;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let marker = format!("\n[output truncated: more than {} bytes]\n", self.limit);
        for piece in [&text[..cut], marker.as_str()] {
            self.text.push_str(piece);
            self.pending.push_str(piece);
        }
        self.truncated = true;
    }

    /// The text not yet streamed, marking it sent now.
    pub(crate) fn take_pending(&mut self) -> Option<String> {
        if self.pending.is_empty() {
            return None;
        }
        self.last_flush = Some(std::time::Instant::now());
        Some(std::mem::take(&mut self.pending))
    }

    pub(crate) async fn flush(&mut self, events: &mpsc::Sender<AgentEvent>) {
        if let Some(chunk) = self.take_pending() {
            let _ = events.send(AgentEvent::Output(chunk)).await;
        }
    }

    pub(crate) fn failed(self, kind: FailureKind, message: String) -> AgentReport {
        self.finish(Err(failure(kind, message)))
    }

    pub(crate) fn finish(self, outcome: Result<(), AgentFailure>) -> AgentReport {
        AgentReport {
            text: self.text,
            outcome,
        }
    }
}

pub(crate) fn failure(kind: FailureKind, message: String) -> AgentFailure {
    AgentFailure { kind, message }
}

/// The last non-empty line of `text`, trimmed.
pub(crate) fn last_meaningful_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rfind(|line| !line.is_empty())
}

/// acpx counts a run as refused by policy when its diagnostics say so; the native runtime
/// classifies agent errors the same way, so both runtimes agree.
pub(crate) fn mentions_permission(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    ["permission", "denied", "approval"]
        .iter()
        .any(|word| text.contains(word))
}

/// Keeps the last part of a stream (stderr) for error messages.
pub(crate) async fn read_tail(mut stream: impl tokio::io::AsyncRead + Unpin) -> String {
    use tokio::io::AsyncReadExt;
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > DIAGNOSTICS_LIMIT {
            tail.drain(..tail.len() - DIAGNOSTICS_LIMIT);
        }
    }
    String::from_utf8_lossy(&tail).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_capped_with_a_marker() {
        let mut buffer = OutputBuffer::new(10);
        buffer.push_text("12345");
        buffer.push_text("67890abc");
        buffer.push_text("zzz");
        assert!(buffer.text.starts_with("1234567890\n[output truncated"));
        assert!(!buffer.text.contains("zzz"));
    }

    #[test]
    fn pending_text_is_taken_once() {
        let mut buffer = OutputBuffer::new(100);
        assert!(buffer.quiet_for(COALESCE_WINDOW));
        buffer.push_text("a");
        buffer.push_text("b");
        assert_eq!(buffer.take_pending().as_deref(), Some("ab"));
        assert_eq!(buffer.take_pending(), None);
        assert!(!buffer.quiet_for(COALESCE_WINDOW));
    }
}
