//! Prometheus metrics, in the text format `/metrics` serves. One [`Metrics`] per daemon,
//! shared by the actors and the HTTP layer; gauges are refreshed when scraped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FinishedLabels {
    pub status: String,
    pub failure_kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

/// Every metric the daemon exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub sessions_created: Counter,
    pub sessions_finished: Family<FinishedLabels, Counter>,
    pub sessions_running: Gauge,
    pub sessions_queued: Gauge,
    pub session_duration: Histogram,
    pub events_written: Counter,
    pub http_requests: Family<HttpLabels, Counter>,
    pub webhook_deliveries: Family<OutcomeLabels, Counter>,
    pub actor_restarts: Family<KindLabels, Counter>,
    /// Workspace directories on disk and their bytes (set when scraped).
    pub workspaces: Gauge,
    pub workspace_bytes: Gauge,
    /// Bundles of collected workspaces, and repository mirrors (bytes, set when scraped).
    pub workspace_archive_bytes: Gauge,
    pub mirror_bytes: Gauge,
    /// Workspaces the collector removed, and the bytes that freed.
    pub workspaces_collected: Counter,
    pub workspace_bytes_freed: Counter,
    /// Notification attempts by outcome: sent, retried, failed (issue 15).
    pub notify_attempts: Family<OutcomeLabels, Counter>,
    /// Deliveries waiting in the outbox and given up; refreshed when scraped.
    pub notify_outbox_pending: Gauge,
    pub notify_outbox_failed: Gauge,
    /// From the event's commit to the receiver's acceptance.
    pub notify_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("telecoder");
        let sessions_created = Counter::default();
        let sessions_finished = Family::<FinishedLabels, Counter>::default();
        let sessions_running = Gauge::default();
        let sessions_queued = Gauge::default();
        // 1 s .. ~4.5 h
        let session_duration = Histogram::new(exponential_buckets(1.0, 2.0, 15));
        let events_written = Counter::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let webhook_deliveries = Family::<OutcomeLabels, Counter>::default();
        let actor_restarts = Family::<KindLabels, Counter>::default();
        let workspaces = Gauge::default();
        let workspace_bytes = Gauge::default();
        let workspace_archive_bytes = Gauge::default();
        let mirror_bytes = Gauge::default();
        let workspaces_collected = Counter::default();
        let workspace_bytes_freed = Counter::default();
        let notify_attempts = Family::<OutcomeLabels, Counter>::default();
        let notify_outbox_pending = Gauge::default();
        let notify_outbox_failed = Gauge::default();
        // 5 ms .. ~80 s
        let notify_latency = Histogram::new(exponential_buckets(0.005, 2.0, 15));
        registry.register(
            "sessions_created",
            "Sessions created",
            sessions_created.clone(),
        );
        registry.register(
            "sessions_finished",
            "Sessions finished, by status and failure kind",
            sessions_finished.clone(),
        );
        registry.register(
            "sessions_running",
            "Sessions running now",
            sessions_running.clone(),
        );
        registry.register(
            "sessions_queued",
            "Sessions waiting to start",
            sessions_queued.clone(),
        );
        registry.register(
            "session_duration_seconds",
            "Wall time of finished sessions, from start to finish",
            session_duration.clone(),
        );
        registry.register(
            "events_written",
            "Session events stored",
            events_written.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http_requests.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "GitHub webhook deliveries by outcome",
            webhook_deliveries.clone(),
        );
        registry.register(
            "actor_restarts",
            "Actors restarted by the supervisor, by kind",
            actor_restarts.clone(),
        );
        registry.register(
            "workspaces",
            "Session workspaces on disk",
            workspaces.clone(),
        );
        registry.register(
            "workspace_bytes",
            "Bytes the session workspaces take",
            workspace_bytes.clone(),
        );
        registry.register(
            "workspace_archive_bytes",
            "Bytes of bundles kept for collected workspaces",
            workspace_archive_bytes.clone(),
        );
        registry.register(
            "mirror_bytes",
            "Bytes of the repository mirrors remote clones share",
            mirror_bytes.clone(),
        );
        registry.register(
            "workspaces_collected",
            "Workspaces removed by the collector",
            workspaces_collected.clone(),
        );
        registry.register(
            "workspace_bytes_freed",
            "Bytes freed by removing workspaces",
            workspace_bytes_freed.clone(),
        );
        registry.register(
            "notify_attempts",
            "Notification delivery attempts by outcome (sent, retried, failed)",
            notify_attempts.clone(),
        );
        registry.register(
            "notify_outbox_pending",
            "Notification deliveries waiting to be sent or retried",
            notify_outbox_pending.clone(),
        );
        registry.register(
            "notify_outbox_failed",
            "Notification deliveries given up (kept 30 days)",
            notify_outbox_failed.clone(),
        );
        registry.register(
            "notify_delivery_seconds",
            "Time from an event's commit to its notification's acceptance",
            notify_latency.clone(),
        );
        Self {
            registry: Arc::new(registry),
            sessions_created,
            sessions_finished,
            sessions_running,
            sessions_queued,
            session_duration,
            events_written,
            http_requests,
            webhook_deliveries,
            actor_restarts,
            workspaces,
            workspace_bytes,
            workspace_archive_bytes,
            mirror_bytes,
            workspaces_collected,
            workspace_bytes_freed,
            notify_attempts,
            notify_outbox_pending,
            notify_outbox_failed,
            notify_latency,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }

    /// Sets the disk-use gauges.
    pub fn workspace_usage(&self, usage: &crate::workspaces::usage::Usage) {
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.workspaces.set(gauge(usage.workspaces));
        self.workspace_bytes.set(gauge(usage.workspace_bytes));
        self.workspace_archive_bytes.set(gauge(usage.archive_bytes));
        self.mirror_bytes.set(gauge(usage.mirror_bytes));
    }

    pub fn restarted(&self, kind: &str) {
        self.actor_restarts
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    pub fn delivery(&self, outcome: &str) {
        self.webhook_deliveries
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn notification(&self, outcome: &str) {
        self.notify_attempts
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn http(&self, route: &str, status: u16) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.into(),
                status,
            })
            .inc();
    }

    /// Records a session's end (duration from its start and finish timestamps).
    pub fn finished(&self, status: &str, failure_kind: &str, started_at: &str, finished_at: &str) {
        self.sessions_finished
            .get_or_create(&FinishedLabels {
                status: status.into(),
                failure_kind: failure_kind.into(),
            })
            .inc();
        let (Some(start), Some(end)) = (
            crate::domain::time::parse(started_at),
            crate::domain::time::parse(finished_at),
        ) else {
            return;
        };
        if let Ok(duration) = end.duration_since(start) {
            self.session_duration.observe(duration.as_secs_f64());
        }
    }
}
