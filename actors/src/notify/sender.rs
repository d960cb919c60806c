//! The sender: one task per daemon that delivers what the outbox holds. It is a background
//! task tracked by the daemon's [`Context`] (it supervises nothing and owns no state an actor
//! would restart), started by [`crate::Daemon::start`] and stopped after the sessions at
//! shutdown.
//!
//! It wakes when a commit may have queued a notification (the [`EventBus`] pokes it),
//! when a send finishes, when the next retry falls due, and every few seconds anyway. Looking
//! is a read; only when something is due does one store write fan new notifications out to the
//! targets and lease as many due deliveries as there are free send slots. The sends run as
//! their own tasks, at most [`MAX_IN_FLIGHT`] at once, each within [`REQUEST_TIMEOUT`], and
//! record their outcome. Sessions never wait for any of it: the store write that queued a
//! notification was already part of their own.

use super::event::Facts;
use super::format::{self, Delivery};
use super::message::compose;
use super::retry::{self, Verdict};
use super::target::Target;
use super::NotifySettings;
#[cfg(doc)]
use crate::bus::EventBus;
use crate::context::{Context, STOP_GRACE};
use crate::domain::redact::Redactor;
use crate::domain::time;
use crate::error::{Error, Result};
use crate::store::outbox::{Claimed, OutboxCounts, Outcome};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Mutex, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// Sends running at once: a slow receiver holds a slot, never the daemon.
pub const MAX_IN_FLIGHT: usize = 4;
/// One attempt's bound, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a leased delivery stays ours: far longer than one attempt may take (only as many
/// deliveries are leased as there are free send slots), so one daemon never sends a delivery
/// twice at once.
const LEASE: Duration = Duration::from_secs(120);
/// The sender looks at the outbox at least this often, woken or not: a safety net, since every
/// commit that queues a notification wakes it.
const POLL: Duration = Duration::from_secs(10);
/// A notification older than this when its retries run out of patience is given up.
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// At shutdown, sends in flight (and what is due) get this long before they are left for the
/// next start.
const DRAIN: Duration = Duration::from_secs(3);
/// Sent deliveries are kept this long, given-up ones longer (an operator may ask why).
const KEEP_SENT: Duration = Duration::from_secs(7 * 24 * 3600);
const KEEP_FAILED: Duration = Duration::from_secs(30 * 24 * 3600);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// The part of a refusing answer kept as the error (receivers' bodies are untrusted).
const ERROR_BODY: usize = 200;

/// What `notify-test` reports per target.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    /// The target, secrets masked.
    pub target: String,
    pub kind: String,
    pub ok: bool,
    /// The HTTP status, 0 when none came back.
    pub status: u16,
    pub error: String,
    pub delivery_id: String,
    pub latency_ms: u64,
}

/// The handle on a daemon's sender. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Arc<Context>,
    http: reqwest::Client,
    /// When this daemon started (before its first stale sweep).
    started_at: String,
    wake: Arc<Notify>,
    cancel: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// What a send came to, before it is judged.
struct Answer {
    status: u16,
    verdict: Verdict,
    error: String,
}

impl Notifier {
    /// Starts the sender as a tracked task: it records this instance's start (`started_at`:
    /// before the first stale sweep; a crash of the previous instance is told), then delivers
    /// until [`Notifier::stop`]. `wake` is what the [`EventBus`] pokes.
    pub fn start(ctx: &Arc<Context>, wake: Arc<Notify>, started_at: &str) -> Result<Self> {
        let notify = &ctx.settings.notify;
        for target in notify.targets.iter().filter(|t| t.is_cleartext_remote()) {
            tracing::warn!(
                to = target.label(),
                "notification target uses plain http to another machine: anyone on the way can read (and change) what is sent"
            );
        }
        let inner = Arc::new(Inner {
            http: http_client()?,
            ctx: ctx.clone(),
            started_at: started_at.to_owned(),
            wake,
            cancel: CancellationToken::new(),
            task: Mutex::new(None),
        });
        let task = ctx.tasks.spawn(run(inner.clone()));
        if let Ok(mut slot) = inner.task.try_lock() {
            *slot = Some(task);
        }
        Ok(Self { inner })
    }

    pub fn targets(&self) -> &[Target] {
        &self.inner.settings().targets
    }

    /// Pending, failed and sent deliveries.
    pub async fn counts(&self) -> Result<OutboxCounts> {
        self.inner.ctx.store.outbox_counts().await
    }

    /// Sends a test notification to every target at once (filters aside), one attempt each,
    /// and reports what each answered. Nothing goes through the outbox.
    pub async fn test(&self) -> Result<Vec<TestResult>> {
        let settings = &self.inner.ctx.settings;
        test_targets(&self.inner.http, &settings.notify, &settings.redactor).await
    }

    /// Stops the sender: what is in flight (and due) gets [`DRAIN`], the rest stays in the
    /// outbox for the next start; then this instance's clean stop is recorded.
    pub async fn stop(&self) {
        self.inner.cancel.cancel();
        let task = self.inner.task.lock().await.take();
        if let Some(task) = task {
            if tokio::time::timeout(DRAIN + STOP_GRACE, task)
                .await
                .is_err()
            {
                tracing::warn!("the notification sender did not stop in time");
            }
        }
        let ctx = &self.inner.ctx;
        if let Err(err) = ctx.store.record_daemon_stop(&ctx.owner_id).await {
            tracing::warn!("cannot record the clean stop: {err}");
        }
    }
}

/// A test notification to every configured target, without a daemon (the CLI uses this when
/// none answers).
pub async fn test_targets(
    http: &reqwest::Client,
    settings: &NotifySettings,
    redactor: &Redactor,
) -> Result<Vec<TestResult>> {
    if settings.targets.is_empty() {
        return Err(Error::Conflict(
            "no notification targets are configured (set TELECODER_NOTIFY)".into(),
        ));
    }
    let created_at = time::now();
    let sends = settings.targets.iter().map(|target| {
        let created_at = created_at.clone();
        async move {
            let delivery_id = format!("test-{}", random_hex());
            let started = Instant::now();
            let answer = attempt(
                http,
                settings,
                redactor,
                target,
                &delivery_id,
                &created_at,
                &Facts::Test,
            )
            .await;
            TestResult {
                target: target.label().to_owned(),
                kind: target.kind.as_str().to_owned(),
                ok: answer.verdict == Verdict::Accepted,
                status: answer.status,
                error: answer.error,
                delivery_id,
                latency_ms: started.elapsed().as_millis() as u64,
            }
        }
    });
    Ok(futures_util::future::join_all(sends).await)
}

/// The HTTP client of notifications: bounded in time, never following redirects (a redirect
/// would turn a POST into a GET, or send a signed body somewhere else).
pub fn http_client() -> Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|err| Error::Internal(format!("cannot build the notification client: {err}")))
}

impl Inner {
    fn settings(&self) -> &NotifySettings {
        &self.ctx.settings.notify
    }
}

async fn run(inner: Arc<Inner>) {
    let ctx = &inner.ctx;
    match ctx
        .store
        .record_daemon_start(&ctx.owner_id, &inner.started_at)
        .await
    {
        Ok(true) => tracing::warn!("the previous daemon stopped without shutting down"),
        Ok(false) => {}
        Err(err) => tracing::error!("cannot record the daemon's start: {err}"),
    }
    // Without targets there is nothing to send: notifications are only marked done (and
    // pruned) now and then, so a daemon that notifies nobody does no work per session.
    let listening = !inner.settings().targets.is_empty();
    let poll = if listening { POLL } else { PRUNE_EVERY };
    let mut sends = JoinSet::new();
    let mut pruned: Option<Instant> = None;
    while !inner.cancel.is_cancelled() {
        if pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            prune(&inner).await;
            pruned = Some(Instant::now());
        }
        while sends.try_join_next().is_some() {}
        let wait = match next_due(&inner).await {
            Some(at) => match at.duration_since(SystemTime::now()) {
                Ok(later) => later,
                Err(_) => {
                    take_and_send(&inner, &mut sends).await;
                    // A finished send wakes us; the poll covers the rest.
                    poll
                }
            },
            None => poll,
        };
        tokio::select! {
            _ = inner.cancel.cancelled() => {}
            _ = inner.wake.notified(), if listening => {}
            _ = tokio::time::sleep(wait.min(poll)) => {}
        }
    }
    // One last turn (sessions a shutdown just ended), then what is in flight gets DRAIN.
    take_and_send(&inner, &mut sends).await;
    let drained =
        tokio::time::timeout(DRAIN, async { while sends.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::info!(
            left = sends.len(),
            "notifications still in flight are left for the next start"
        );
        sends.shutdown().await;
    }
}

/// When the outbox next has work: now for notifications not yet fanned out, else the earliest
/// pending delivery's next attempt (or lease end). `None` when nothing is pending. A read: an
/// idle sender never takes the writer.
async fn next_due(inner: &Inner) -> Option<SystemTime> {
    match inner.ctx.store.outbox_next_due().await {
        Ok(next) => next.map(|at| time::parse(&at).unwrap_or(SystemTime::UNIX_EPOCH)),
        Err(err) => {
            tracing::warn!("cannot read the notification outbox: {err}");
            None
        }
    }
}

/// Fans out and leases what is due, as many as there are free send slots, and starts a send
/// for each (so a lease never waits behind other sends).
async fn take_and_send(inner: &Arc<Inner>, sends: &mut JoinSet<()>) {
    let free = MAX_IN_FLIGHT.saturating_sub(sends.len());
    if free == 0 {
        return;
    }
    let targets = inner.settings().targets.clone();
    let now = SystemTime::now();
    let (stamp, lease) = (time::format(now), time::format(now + LEASE));
    let claimed = match inner
        .ctx
        .store
        .take_due_notifications(targets, stamp, lease, free)
        .await
    {
        Ok(claimed) => claimed,
        Err(err) => {
            tracing::warn!("cannot read the notification outbox: {err}");
            return;
        }
    };
    for delivery in claimed {
        let inner = inner.clone();
        sends.spawn(async move { deliver(&inner, delivery).await });
    }
}

/// One attempt of one delivery, and its outcome recorded.
async fn deliver(inner: &Inner, claimed: Claimed) {
    let settings = inner.settings();
    let Some(target) = settings.targets.iter().find(|t| t.key() == claimed.target) else {
        return;
    };
    let answer = attempt(
        &inner.http,
        settings,
        &inner.ctx.settings.redactor,
        target,
        &claimed.delivery_id,
        &claimed.created_at,
        &claimed.facts,
    )
    .await;
    let now = SystemTime::now();
    let outcome = decide(&claimed, answer, settings.max_attempts, now, random_unit());
    let label = match &outcome {
        Outcome::Sent { .. } => "sent",
        Outcome::Retry { .. } => "retried",
        Outcome::Failed { .. } => "failed",
    };
    let metrics = &inner.ctx.metrics;
    metrics.notification(label);
    match &outcome {
        Outcome::Sent { .. } => {
            if let Some(committed) = time::parse(&claimed.created_at) {
                metrics.notify_latency.observe(
                    now.duration_since(committed)
                        .unwrap_or_default()
                        .as_secs_f64(),
                );
            }
        }
        Outcome::Retry { error, .. } => tracing::info!(
            to = target.label(),
            delivery = %claimed.delivery_id,
            attempts = claimed.attempts,
            "notification not accepted, will retry: {error}"
        ),
        Outcome::Failed { error, .. } => tracing::warn!(
            to = target.label(),
            delivery = %claimed.delivery_id,
            attempts = claimed.attempts,
            "notification given up: {error}"
        ),
    }
    let stamp = time::format(now);
    if let Err(err) = inner
        .ctx
        .store
        .record_notification(&claimed.delivery_id, outcome, &stamp)
        .await
    {
        // The lease runs out and the delivery is attempted again: at least once.
        tracing::warn!(delivery = %claimed.delivery_id, "cannot record a notification's outcome: {err}");
    }
    inner.wake.notify_one();
}

/// Renders and sends one request; never fails, the answer says what happened.
async fn attempt(
    http: &reqwest::Client,
    settings: &NotifySettings,
    redactor: &Redactor,
    target: &Target,
    delivery_id: &str,
    created_at: &str,
    facts: &Facts,
) -> Answer {
    let facts = facts.redacted(redactor);
    let message = compose(&facts, settings.public_url.as_deref());
    let delivery = Delivery {
        id: delivery_id,
        created_at,
        facts: &facts,
        message: &message,
    };
    let secret = settings.secret.as_ref().map(|s| s.expose());
    let request = format::render(target, &delivery, secret);
    let mut builder = http.post(&request.url).body(request.body);
    for (name, value) in request.headers {
        let Ok(mut value) = reqwest::header::HeaderValue::from_str(&value) else {
            continue;
        };
        value.set_sensitive(name == "authorization");
        builder = builder.header(name, value);
    }
    match builder.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let verdict = retry::judge(status, retry_after.as_deref(), SystemTime::now());
            let error = match verdict {
                Verdict::Accepted => String::new(),
                _ => {
                    let text = body_start(response).await;
                    redactor.redact(format!("HTTP {status} {text}").trim_end())
                }
            };
            Answer {
                status,
                verdict,
                error,
            }
        }
        Err(err) => Answer {
            status: 0,
            verdict: Verdict::Retry { retry_after: None },
            error: redactor.redact(&err.without_url().to_string()),
        },
    }
}

/// The first bytes of an answer's body, as one line of text.
async fn body_start(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    super::event::excerpt(&String::from_utf8_lossy(&bytes), ERROR_BODY)
}

/// Turns an attempt's answer into what the outbox records: sent, another attempt later (with
/// backoff), or given up (refused, out of attempts, or too old).
fn decide(
    claimed: &Claimed,
    answer: Answer,
    max_attempts: u32,
    now: SystemTime,
    random: f64,
) -> Outcome {
    let Answer {
        status,
        verdict,
        error,
    } = answer;
    match verdict {
        Verdict::Accepted => Outcome::Sent { status },
        Verdict::Refused => Outcome::Failed {
            status,
            error: format!("refused: {error}"),
        },
        Verdict::Retry { retry_after } => {
            let age = time::parse(&claimed.created_at)
                .and_then(|at| now.duration_since(at).ok())
                .unwrap_or_default();
            if claimed.attempts >= max_attempts {
                Outcome::Failed {
                    status,
                    error: format!("gave up after {} attempts: {error}", claimed.attempts),
                }
            } else if age >= MAX_AGE {
                Outcome::Failed {
                    status,
                    error: format!("gave up: still not delivered after 24 h: {error}"),
                }
            } else {
                let wait = retry::backoff(claimed.attempts, retry_after, random);
                Outcome::Retry {
                    status,
                    error,
                    // Stored times are cut to the millisecond: round up, never retry early.
                    next_attempt_at: time::format(now + wait + Duration::from_millis(1)),
                }
            }
        }
    }
}

async fn prune(inner: &Inner) {
    let (sent, failed) = (time::ago(KEEP_SENT), time::ago(KEEP_FAILED));
    match inner.ctx.store.prune_outbox(&sent, &failed).await {
        Ok(0) => {}
        Ok(deleted) => tracing::debug!(deleted, "old notifications pruned"),
        Err(err) => tracing::warn!("cannot prune the notification outbox: {err}"),
    }
}

fn random_hex() -> String {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    hex::encode(bytes)
}

/// A number in [0, 1) for the backoff's jitter.
fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `decide` makes at `now` of attempt `attempts` of a notification created `age`
    /// before, answered with `status`, with at most 12 attempts and no jitter.
    fn decided(now: SystemTime, attempts: u32, age: Duration, answer: (u16, Verdict)) -> Outcome {
        let (status, verdict) = answer;
        let claimed = Claimed {
            delivery_id: "d".into(),
            target: "t".into(),
            attempts,
            created_at: time::format(now - age),
            facts: Facts::Test,
        };
        let answer = Answer {
            status,
            verdict,
            error: format!("HTTP {status}"),
        };
        decide(&claimed, answer, 12, now, 0.0)
    }

    #[test]
    fn retries_back_off_until_the_bound() {
        let now = SystemTime::now();
        let fresh = Duration::ZERO;
        let retry = || (500, Verdict::Retry { retry_after: None });
        // The first backoff is half a second without jitter; stored times round up.
        assert_eq!(
            decided(now, 1, fresh, retry()),
            Outcome::Retry {
                status: 500,
                error: "HTTP 500".into(),
                next_attempt_at: time::format(now + Duration::from_millis(501)),
            }
        );
        match decided(now, 12, fresh, retry()) {
            Outcome::Failed { error, .. } => {
                assert!(error.contains("after 12 attempts"), "{error}")
            }
            other => panic!("{other:?}"),
        }
        match decided(now, 2, MAX_AGE, retry()) {
            Outcome::Failed { error, .. } => assert!(error.contains("after 24 h"), "{error}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decided(now, 1, fresh, (404, Verdict::Refused)),
            Outcome::Failed { .. }
        ));
        assert_eq!(
            decided(now, 3, fresh, (202, Verdict::Accepted)),
            Outcome::Sent { status: 202 }
        );
    }

    #[test]
    fn jitter_is_a_unit_fraction() {
        for _ in 0..100 {
            let r = random_unit();
            assert!((0.0..1.0).contains(&r));
        }
    }
}
