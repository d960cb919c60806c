//! The handle on a running actor system: start it, talk to it, stop it.

use crate::bus::EventBus;
use crate::domain::{
    watch::Routed, Event, NewSession, Session, SessionFilter, Watch, WatchEvent, WatchRun,
};
use crate::error::{Error, Result};
use crate::requests::{NewWatch, WatchPatch};
use crate::runtime::AgentRuntime;
use crate::settings::Settings;
use crate::store::watches::WatchFilter;
use crate::store::StoreClient;
use crate::supervisor::{
    Supervisor, SupervisorArgs, SupervisorMsg, SupervisorStats, SUPERVISOR_NAME,
};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef, RpcReplyPort};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// A publish pushes over the network and talks to GitHub.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a request waits for the supervisor before it is told the daemon is busy.
const SUPERVISOR_TIMEOUT: Duration = Duration::from_secs(15);

/// A started actor system. Cheap to clone; holds the root (never a child, since children are
/// replaced on restart).
#[derive(Clone)]
pub struct Daemon {
    supervisor: ActorRef<SupervisorMsg>,
    store: StoreClient,
    metrics: crate::metrics::Metrics,
    started: std::time::Instant,
    bus: EventBus,
    settings: Arc<Settings>,
    owner_id: String,
    /// Delivers notifications from the outbox (issue 15); stopped last at shutdown.
    notifier: crate::notify::Notifier,
}

impl Daemon {
    /// Opens the database, recovers sessions and starts the supervisor.
    pub async fn start(
        settings: Settings,
        runtime: Arc<dyn AgentRuntime>,
    ) -> Result<(Self, JoinHandle<()>)> {
        let started_at = crate::domain::time::now();
        let metrics = crate::metrics::Metrics::default();
        let bus = EventBus::counting(metrics.events_written.clone());
        let owner_id = crate::domain::SessionId::random().to_string();
        let args = SupervisorArgs {
            settings: settings.clone(),
            runtime,
            bus: bus.clone(),
            owner_id: owner_id.clone(),
            metrics: metrics.clone(),
        };
        let (supervisor, handle) = Actor::spawn(Some(SUPERVISOR_NAME.to_owned()), Supervisor, args)
            .await
            .map_err(|err| Error::Internal(format!("cannot start: {}", startup_cause(&err))))?;
        let notifier = crate::notify::Notifier::start(
            &settings,
            StoreClient::new(),
            &bus,
            metrics.clone(),
            &owner_id,
            &started_at,
        )?;
        Ok((
            Self {
                supervisor,
                store: StoreClient::new(),
                metrics,
                started: std::time::Instant::now(),
                bus,
                settings: Arc::new(settings),
                owner_id,
                notifier,
            },
            handle,
        ))
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    pub fn store(&self) -> &StoreClient {
        &self.store
    }

    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// How long this daemon has been up.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The notification sender (targets, outbox counts, `notify-test`).
    pub fn notifier(&self) -> &crate::notify::Notifier {
        &self.notifier
    }

    /// Sends a test notification to every target and reports each answer.
    pub async fn notify_test(&self) -> Result<Vec<crate::notify::TestResult>> {
        self.notifier.test().await
    }

    /// This instance's owner id (recorded on the sessions it runs).
    pub fn owner_id(&self) -> &str {
        &self.owner_id
    }

    async fn ask<T: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<T>) -> SupervisorMsg,
    ) -> Result<T> {
        match self.supervisor.call(build, Some(SUPERVISOR_TIMEOUT)).await {
            Ok(CallResult::Success(value)) => Ok(value),
            Ok(CallResult::Timeout) => Err(Error::Unavailable(
                "the supervisor did not answer in time".into(),
            )),
            Ok(CallResult::SenderError) | Err(_) => {
                Err(Error::Unavailable("the supervisor is not running".into()))
            }
        }
    }

    pub async fn create_session(&self, request: NewSession) -> Result<Session> {
        self.ask(|reply| SupervisorMsg::CreateSession { request, reply })
            .await?
    }

    pub async fn rerun(&self, id: &str) -> Result<Session> {
        let id = id.to_owned();
        self.ask(|reply| SupervisorMsg::Rerun { id, reply }).await?
    }

    pub async fn cancel(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.ask(|reply| SupervisorMsg::Cancel { id, reply })
            .await?
    }

    pub async fn inject_session_failure(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.ask(|reply| SupervisorMsg::InjectSessionFailure { id, reply })
            .await?
    }

    pub async fn inject_store_failure(&self) -> Result<()> {
        self.ask(|reply| SupervisorMsg::InjectStoreFailure { reply })
            .await?
    }

    /// The live actor tree (from the actors themselves).
    pub async fn actor_tree(&self) -> Result<crate::admin::ActorNode> {
        self.ask(SupervisorMsg::Tree).await
    }

    /// Database facts for `/admin/status`.
    pub async fn database_status(&self) -> Result<crate::store::DatabaseStatus> {
        self.store.call_status().await
    }

    /// Fails an actor on purpose: `store`, `session:<id>` or `watch:<id>` (fault drills).
    pub async fn inject_fault(&self, target: &str) -> Result<()> {
        match target.split_once(':') {
            None if target == "store" => self.inject_store_failure().await,
            Some(("session", id)) => self.inject_session_failure(id).await,
            Some(("watch", id)) => self.inject_watch_failure(id).await,
            _ => Err(Error::Invalid(format!(
                "unknown fault target '{target}' (expected store, session:<id> or watch:<id>)"
            ))),
        }
    }

    pub async fn stats(&self) -> Result<SupervisorStats> {
        self.ask(SupervisorMsg::Stats).await
    }

    pub async fn session(&self, id: &str) -> Result<Session> {
        self.store.require_session(id).await
    }

    pub async fn sessions(&self, filter: SessionFilter) -> Result<Vec<Session>> {
        self.store.list_sessions(filter).await
    }

    pub async fn inbox(&self, limit: u32) -> Result<Vec<Session>> {
        self.store.inbox(limit).await
    }

    /// Events after `after` of an existing session (`NotFound` otherwise).
    pub async fn events(&self, id: &str, after: i64, limit: u32) -> Result<Vec<Event>> {
        self.store.require_session(id).await?;
        self.store.events(id, after, limit).await
    }

    /// Publishes a finished session as a GitHub pull request.
    pub async fn publish(
        &self,
        id: &str,
        request: crate::publish::PublishRequest,
    ) -> Result<crate::publish::Published> {
        let id = id.to_owned();
        match self
            .supervisor
            .call(
                |reply| SupervisorMsg::Publish { id, request, reply },
                Some(PUBLISH_TIMEOUT),
            )
            .await
        {
            Ok(CallResult::Success(result)) => result,
            Ok(CallResult::Timeout) => Err(Error::Unavailable(
                "publishing is taking long; it goes on in the background: ask again later".into(),
            )),
            _ => Err(Error::Unavailable("the supervisor is not running".into())),
        }
    }

    pub async fn create_watch(&self, request: NewWatch) -> Result<Watch> {
        self.ask(|reply| SupervisorMsg::CreateWatch { request, reply })
            .await?
    }

    pub async fn update_watch(&self, id: &str, patch: WatchPatch) -> Result<Watch> {
        let id = id.to_owned();
        let watch = self
            .ask(|reply| SupervisorMsg::UpdateWatch { id, patch, reply })
            .await??;
        self.notifier.wake(); // notify (issue 15): a pause may have queued a notification
        Ok(watch)
    }

    pub async fn delete_watch(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.ask(|reply| SupervisorMsg::DeleteWatch { id, reply })
            .await?
    }

    pub async fn watch(&self, id: &str) -> Result<Watch> {
        self.store.require_watch(id).await
    }

    /// Watches matching `filter`; its repo is compared in resolved form, as watches are stored.
    pub async fn watches(&self, mut filter: WatchFilter) -> Result<Vec<Watch>> {
        if let Some(repo) = &mut filter.repo {
            *repo = crate::requests::resolve_repo(repo)?.source;
        }
        self.store.list_watches(filter).await
    }

    pub async fn watch_runs(&self, id: &str) -> Result<Vec<WatchRun>> {
        self.store.require_watch(id).await?;
        self.store.watch_runs(id).await
    }

    /// Hands an event to every watch; answers with the sessions it started and why the
    /// concerned watches that started nothing did not.
    pub async fn route_event(&self, mut event: WatchEvent) -> Result<Routed> {
        crate::requests::resolve_event_repo(&mut event)?;
        self.ask(|reply| SupervisorMsg::RouteEvent { event, reply })
            .await
    }

    /// Stores a webhook delivery (once per delivery id) and routes it in the background, so
    /// the sender gets its answer at once. False for a redelivery.
    pub async fn accept_delivery(
        &self,
        id: &str,
        name: &str,
        event: Option<WatchEvent>,
    ) -> Result<bool> {
        let payload = match &event {
            Some(event) => serde_json::to_string(event)
                .map_err(|err| crate::Error::Internal(format!("cannot encode event: {err}")))?,
            None => String::new(),
        };
        if !self.store.insert_delivery(id, name, &payload).await? {
            return Ok(false);
        }
        match event {
            Some(event) => {
                let _ = self.supervisor.cast(SupervisorMsg::RouteDelivery {
                    id: id.to_owned(),
                    event,
                });
            }
            None => self.store.finish_delivery(id, "ignored").await?,
        }
        Ok(true)
    }

    pub async fn inject_watch_failure(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.ask(|reply| SupervisorMsg::InjectWatchFailure { id, reply })
            .await?
    }

    /// Graceful stop: no new sessions start; running ones get `grace` to finish; whatever still
    /// runs then is stopped and marked abandoned (re-queued with `resume_interrupted`). Pending
    /// sessions stay queued for the next start.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.supervisor.cast(SupervisorMsg::Drain);
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            match self.stats().await {
                Ok(stats) if stats.running_sessions > 0 => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                _ => break,
            }
        }
        let _ = self
            .supervisor
            .call(SupervisorMsg::Shutdown, Some(Duration::from_secs(30)))
            .await;
        // While the store still runs: the sender drains briefly and records the clean stop.
        self.notifier.stop().await;
        let _ = self
            .supervisor
            .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(5)))
            .await;
    }
}

/// ractor wraps start-up errors; show the person the cause, not the wrapping.
fn startup_cause(err: &ractor::SpawnErr) -> String {
    match err {
        ractor::SpawnErr::StartupFailed(cause) => cause.to_string(),
        other => other.to_string(),
    }
}
