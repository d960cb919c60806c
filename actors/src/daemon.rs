//! The handle on a running actor system: start it, talk to it, stop it.
//!
//! Work that needs no supervision runs here, in the caller's task or a tracked one: creating
//! sessions, reruns and watches is validation plus a store write and a nudge to the actor that
//! owns the result; publishing is a tracked task (one per session at a time). Only what the
//! actors own goes through them: the run queue, running sessions, watch actors, the tree.

use crate::bus::EventBus;
use crate::context::{Context, STOP_GRACE};
use crate::current::{Current, Slot, RESTART_PATIENCE};
use crate::domain::{
    watch::Routed, Event, FailureKind, NewSession, Session, SessionFilter, Watch, WatchEvent,
    WatchId, WatchRun,
};
use crate::error::{Error, Result};
use crate::notify::Notifier;
use crate::queue::{self, QueueMsg, QueueStats};
use crate::requests::{self, NewWatch, WatchPatch};
use crate::runtime::AgentRuntime;
use crate::settings::Settings;
use crate::store::watches::WatchFilter;
use crate::store::{Finish, StoreArgs, StoreClient};
use crate::supervisor::{
    RootStats, Slots, SupervisorArgs, SupervisorMsg, SupervisorState, SupervisorStats,
};
use crate::watch_supervisor::{self, WatchStats, WatchesMsg};
use ractor::{ActorRef, RpcReplyPort};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

/// A publish pushes over the network and talks to GitHub.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a request waits for an actor before it is told the daemon is busy.
const ACTOR_TIMEOUT: Duration = Duration::from_secs(15);

/// A started actor system. Cheap to clone; holds the root and handles that always reach the
/// current children (never a child's `ActorRef`, since children are replaced on restart).
#[derive(Clone)]
pub struct Daemon {
    root: ActorRef<SupervisorMsg>,
    ctx: Arc<Context>,
    watches: Current<WatchesMsg>,
    /// Sessions being published right now (one publish per session at a time).
    publishing: Arc<Mutex<HashSet<String>>>,
    started: std::time::Instant,
    bus: EventBus,
    /// Delivers notifications from the outbox (issue 15): a tracked task, stopped after the
    /// sessions at shutdown so their notifications still go out.
    notifier: Notifier,
}

impl Daemon {
    /// Opens the database, recovers sessions and starts the supervisor.
    pub async fn start(
        settings: Settings,
        runtime: Arc<dyn AgentRuntime>,
    ) -> Result<(Self, JoinHandle<()>)> {
        // Before the queue's first stale sweep: a crash of the previous instance is told.
        let started_at = crate::domain::time::now();
        let metrics = crate::metrics::Metrics::default();
        let bus = EventBus::counting(metrics.events_written.clone());
        let slots = Slots {
            store: Slot::new("the store"),
            queue: Slot::new("the session queue"),
            watches: Slot::new("the watch supervisor"),
        };
        let store_args = StoreArgs {
            path: settings.database_path(),
            bus: bus.clone(),
            metrics: metrics.clone(),
        };
        let store = StoreClient::new(
            slots.store.current(),
            settings.redactor.clone(),
            settings.database_path(),
        );
        let ctx = Arc::new(Context {
            owner_id: crate::domain::SessionId::random().to_string(),
            settings,
            store,
            runtime,
            metrics,
            queue: slots.queue.current(),
            tasks: TaskTracker::new(),
            approvals: Arc::default(),
        });
        let watches = slots.watches.current();
        let args = SupervisorArgs {
            ctx: ctx.clone(),
            store: store_args,
            slots,
        };
        let (root, handle) = crate::actor::spawn_root::<SupervisorState>(args)
            .await
            .map_err(|err| Error::Internal(format!("cannot start: {}", startup_cause(&err))))?;
        let expired = ctx.store.expire_orphan_approvals(&ctx.owner_id).await;
        report_orphan_approvals(expired);
        let notifier = Notifier::start(&ctx, bus.notifications(), &started_at)?;
        let daemon = Self {
            root,
            ctx,
            watches,
            publishing: Arc::default(),
            started: std::time::Instant::now(),
            bus,
            notifier,
        };
        Ok((daemon, handle))
    }

    pub fn settings(&self) -> &Settings {
        &self.ctx.settings
    }

    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    pub fn store(&self) -> &StoreClient {
        &self.ctx.store
    }

    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.ctx.metrics
    }

    /// How long this daemon has been up.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The notification sender (targets, outbox counts, `notify-test`).
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// This instance's owner id (recorded on the sessions it runs).
    pub fn owner_id(&self) -> &str {
        &self.ctx.owner_id
    }

    async fn ask_root<T: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<T>) -> SupervisorMsg,
    ) -> Result<T> {
        match self.root.call(build, Some(ACTOR_TIMEOUT)).await {
            Ok(ractor::rpc::CallResult::Success(value)) => Ok(value),
            Ok(ractor::rpc::CallResult::Timeout) => Err(Error::Unavailable(
                "the supervisor did not answer in time".into(),
            )),
            _ => Err(Error::Unavailable("the supervisor is not running".into())),
        }
    }

    async fn ask_queue<T: Send + 'static>(
        &self,
        build: impl Fn(RpcReplyPort<T>) -> QueueMsg,
    ) -> Result<T> {
        self.ctx
            .queue
            .call(build, ACTOR_TIMEOUT, RESTART_PATIENCE)
            .await
    }

    async fn ask_watches<T: Send + 'static>(
        &self,
        build: impl Fn(RpcReplyPort<T>) -> WatchesMsg,
    ) -> Result<T> {
        self.watches
            .call(build, ACTOR_TIMEOUT, RESTART_PATIENCE)
            .await
    }

    /// Validates and stores a pending session, then nudges the queue.
    pub async fn create_session(&self, request: NewSession) -> Result<Session> {
        let session = queue::create_session(&self.ctx, request).await?;
        self.created();
        Ok(session)
    }

    /// Queues the next turn of `id`'s conversation (issue 15; see `conversation`).
    pub async fn continue_session(
        &self,
        id: &str,
        request: crate::domain::conversation::ContinueRequest,
    ) -> Result<Session> {
        let session = crate::conversation::continue_session(
            &self.ctx.settings,
            &self.ctx.store,
            id,
            request,
            None,
        )
        .await?;
        self.created();
        Ok(session)
    }

    /// Approvals matching `filter`, newest first.
    pub async fn approvals(
        &self,
        filter: crate::domain::ApprovalFilter,
    ) -> Result<Vec<crate::domain::Approval>> {
        self.ctx.store.approvals(filter).await
    }

    pub async fn approval(&self, id: &str) -> Result<crate::domain::Approval> {
        self.ctx
            .store
            .approval(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("approval {id} not found")))
    }

    /// A person's answer to a pending approval; `Conflict` once it was decided.
    pub async fn answer_approval(
        &self,
        id: &str,
        answer: crate::domain::approval::Answer,
        decided_by: &str,
    ) -> Result<crate::domain::Approval> {
        self.ctx
            .approvals
            .answer(&self.ctx.store, id, answer, decided_by)
            .await
    }

    /// Stores a pending rerun of a finished session, then nudges the queue.
    pub async fn rerun(&self, id: &str) -> Result<Session> {
        let session = queue::create_rerun(&self.ctx, id).await?;
        self.created();
        Ok(session)
    }

    fn created(&self) {
        self.ctx.metrics.sessions_created.inc();
        self.ctx.queue.cast(QueueMsg::Kick);
    }

    /// Cancels a running session (its actor stops the agent) or a pending one (marked
    /// cancelled in the store).
    pub async fn cancel(&self, id: &str) -> Result<()> {
        let owned = id.to_owned();
        let running = self
            .ask_queue(|reply| QueueMsg::Cancel {
                id: owned.clone(),
                reply,
            })
            .await?;
        if !running {
            let finish = Finish::failed(
                FailureKind::Cancelled,
                "session cancelled".into(),
                String::new(),
            );
            self.ctx.store.fail_active(id, finish).await?;
        }
        Ok(())
    }

    pub async fn inject_session_failure(&self, id: &str) -> Result<()> {
        self.inject_fault(&format!("session:{id}")).await
    }

    pub async fn inject_store_failure(&self) -> Result<()> {
        self.inject_fault("store").await
    }

    pub async fn inject_watch_failure(&self, id: &str) -> Result<()> {
        self.inject_fault(&format!("watch:{id}")).await
    }

    /// Fails an actor on purpose: `store`, `session:<id>` or `watch:<id>` (fault drills).
    pub async fn inject_fault(&self, target: &str) -> Result<()> {
        let id = |id: &str| id.to_owned();
        match target.split_once(':') {
            None if target == "store" => self.ctx.store.inject_failure(),
            Some(("session", key)) => {
                let build = |reply| QueueMsg::InjectFailure { id: id(key), reply };
                self.ask_queue(build).await?
            }
            Some(("watch", key)) => {
                let build = |reply| WatchesMsg::InjectFailure { id: id(key), reply };
                self.ask_watches(build).await?
            }
            _ => Err(Error::Invalid(format!(
                "unknown fault target '{target}' (expected store, session:<id> or watch:<id>)"
            ))),
        }
    }

    /// The live actor tree (from the actors themselves).
    pub async fn actor_tree(&self) -> Result<crate::admin::ActorNode> {
        self.ask_root(SupervisorMsg::Tree).await
    }

    /// Database facts for `/admin/status`.
    pub async fn database_status(&self) -> Result<crate::store::DatabaseStatus> {
        self.ctx.store.call_status().await
    }

    /// What the supervisors hold, from each of them.
    pub async fn stats(&self) -> Result<SupervisorStats> {
        let root: RootStats = self.ask_root(SupervisorMsg::Stats).await?;
        let queue: QueueStats = self.ask_queue(QueueMsg::Stats).await?;
        let watches: WatchStats = self.ask_watches(WatchesMsg::Stats).await?;
        Ok(SupervisorStats {
            running_sessions: queue.running,
            store_restarts: root.store_restarts,
            session_failures: queue.failures,
            active_watches: watches.active,
            watch_restarts: watches.restarts,
            uptime_ms: root.uptime_ms,
        })
    }

    pub async fn session(&self, id: &str) -> Result<Session> {
        self.ctx.store.require_session(id).await
    }

    pub async fn sessions(&self, filter: SessionFilter) -> Result<Vec<Session>> {
        self.ctx.store.list_sessions(filter).await
    }

    pub async fn inbox(&self, limit: u32) -> Result<Vec<Session>> {
        self.ctx.store.inbox(limit).await
    }

    /// Events after `after` of an existing session (`NotFound` otherwise).
    pub async fn events(&self, id: &str, after: i64, limit: u32) -> Result<Vec<Event>> {
        self.ctx.store.require_session(id).await?;
        self.ctx.store.events(id, after, limit).await
    }

    /// Publishes a finished session as a GitHub pull request. The publish runs as a tracked
    /// task: a caller that stops waiting (timeout) does not stop it.
    pub async fn publish(
        &self,
        id: &str,
        request: crate::publish::PublishRequest,
    ) -> Result<crate::publish::Published> {
        let guard = PublishGuard::take(&self.publishing, id)?;
        let ctx = self.ctx.clone();
        let task = self.ctx.tasks.spawn(async move {
            let result =
                crate::publish::publish(&ctx.settings, &ctx.store, &guard.id, request).await;
            drop(guard);
            result
        });
        match tokio::time::timeout(PUBLISH_TIMEOUT, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Internal("the publish task failed".into())),
            Err(_) => Err(Error::Unavailable(
                "publishing is taking long; it goes on in the background: ask again later".into(),
            )),
        }
    }

    /// A session's changes against the commit its workspace started from.
    pub async fn diff(&self, id: &str) -> Result<crate::workspaces::diff::Diff> {
        crate::workspaces::diff(&self.ctx.settings, &self.ctx.store, id).await
    }

    /// Brings a finished session's branch into the user's local repository.
    pub async fn fetch(&self, id: &str) -> Result<crate::workspaces::fetch::Fetched> {
        crate::workspaces::fetch::fetch(&self.ctx.settings, &self.ctx.store, id).await
    }

    /// One pass of the workspace collector (what it would do, with `dry_run`).
    pub async fn collect_workspaces(
        &self,
        dry_run: bool,
    ) -> Result<crate::workspaces::gc::GcReport> {
        crate::workspaces::gc::collect(
            &self.ctx.settings,
            &self.ctx.store,
            &self.ctx.metrics,
            dry_run,
        )
        .await
    }

    /// Disk use of workspaces, archives and mirrors (also sets the metrics' gauges).
    pub async fn workspace_usage(&self) -> Result<crate::workspaces::usage::Usage> {
        let usage = crate::workspaces::usage::usage(&self.ctx.settings, &self.ctx.store).await?;
        self.ctx.metrics.workspace_usage(&usage);
        Ok(usage)
    }

    /// Validates and stores a new watch, then starts its actor.
    pub async fn create_watch(&self, request: NewWatch) -> Result<Watch> {
        let watch = requests::new_watch_record(&self.ctx.settings, request)?;
        self.ctx.store.insert_watch(watch.clone()).await?;
        self.watch_changed(&watch.id, Some(watch.clone()));
        Ok(watch)
    }

    /// Edits, pauses or resumes a watch; its actor follows.
    pub async fn update_watch(&self, id: &WatchId, patch: WatchPatch) -> Result<Watch> {
        let current = self.ctx.store.require_watch(id.as_str()).await?;
        let watch = requests::apply_patch(&self.ctx.settings, current, patch)?;
        if !self.ctx.store.update_watch(watch.clone()).await? {
            return Err(Error::NotFound(format!("watch {id} not found")));
        }
        self.watch_changed(id.as_str(), Some(watch.clone()));
        Ok(watch)
    }

    /// Deletes a watch (and its runs); its actor stops.
    pub async fn delete_watch(&self, id: &WatchId) -> Result<()> {
        if !self.ctx.store.delete_watch(id.as_str()).await? {
            return Err(Error::NotFound(format!("watch {id} not found")));
        }
        self.watch_changed(id.as_str(), None);
        Ok(())
    }

    /// Tells the watch supervisor; if it is restarting, it loads the watch list itself.
    fn watch_changed(&self, id: &str, watch: Option<Watch>) {
        self.watches.cast(WatchesMsg::Changed {
            id: id.to_owned(),
            watch: watch.map(Box::new),
        });
    }

    pub async fn watch(&self, id: &WatchId) -> Result<Watch> {
        self.ctx.store.require_watch(id.as_str()).await
    }

    /// Watches matching `filter`; its repo is compared in resolved form, as watches are stored.
    pub async fn watches(&self, mut filter: WatchFilter) -> Result<Vec<Watch>> {
        if let Some(repo) = &mut filter.repo {
            *repo = requests::resolve_repo(repo)?.source;
        }
        self.ctx.store.list_watches(filter).await
    }

    pub async fn watch_runs(&self, id: &WatchId) -> Result<Vec<WatchRun>> {
        self.ctx.store.require_watch(id.as_str()).await?;
        self.ctx.store.watch_runs(id.as_str()).await
    }

    /// Hands an event to every watch; answers with the sessions it started and why the
    /// concerned watches that started nothing did not.
    pub async fn route_event(&self, mut event: WatchEvent) -> Result<Routed> {
        requests::resolve_event_repo(&mut event)?;
        let actors = self.ask_watches(WatchesMsg::Actors).await?;
        Ok(watch_supervisor::route(actors, event).await)
    }

    /// Stores a webhook delivery (once per delivery id) and routes it in a tracked task, so
    /// the sender gets its answer at once. False for a redelivery.
    pub async fn accept_delivery(
        &self,
        id: &str,
        name: &str,
        event: Option<WatchEvent>,
    ) -> Result<bool> {
        let payload = match &event {
            Some(event) => serde_json::to_string(event)
                .map_err(|err| Error::Internal(format!("cannot encode event: {err}")))?,
            None => String::new(),
        };
        if !self.ctx.store.insert_delivery(id, name, &payload).await? {
            return Ok(false);
        }
        match event {
            Some(event) => {
                let (ctx, id) = (self.ctx.clone(), id.to_owned());
                let supervisor = self.watches.get();
                self.ctx.spawn(async move {
                    watch_supervisor::route_delivery(&ctx, supervisor, &id, event).await
                });
            }
            None => self.ctx.store.finish_delivery(id, "ignored").await?,
        }
        Ok(true)
    }

    /// Graceful stop: no new sessions start; running ones get `grace` to finish; whatever still
    /// runs then is stopped and marked abandoned (re-queued with `resume_interrupted`). Pending
    /// sessions stay queued for the next start. Background tasks (publishing, routing) get
    /// [`STOP_GRACE`] to finish, then the actors stop.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.root.cast(SupervisorMsg::Drain);
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            match self.ask_queue(QueueMsg::Stats).await {
                Ok(stats) if stats.running > 0 => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                _ => break,
            }
        }
        // Stopping the sessions takes STOP_GRACE; recording them rides out a store restart.
        let recorded = STOP_GRACE + RESTART_PATIENCE;
        let _ = self
            .root
            .call(SupervisorMsg::Shutdown, Some(recorded))
            .await;
        // While the store still runs: the sender drains briefly and records the clean stop.
        self.notifier.stop().await;
        self.ctx.tasks.close();
        if tokio::time::timeout(STOP_GRACE, self.ctx.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = self.ctx.tasks.len(),
                "background tasks cut off at shutdown"
            );
        }
        let _ = self
            .root
            .stop_and_wait(Some("shutdown".into()), Some(STOP_GRACE))
            .await;
    }
}

/// A session's place in the publishing set, given back however the publish ends.
struct PublishGuard {
    set: Arc<Mutex<HashSet<String>>>,
    id: String,
}

impl PublishGuard {
    fn take(set: &Arc<Mutex<HashSet<String>>>, id: &str) -> Result<Self> {
        let mut publishing = set.lock().unwrap_or_else(|e| e.into_inner());
        if !publishing.insert(id.to_owned()) {
            return Err(Error::Conflict(format!(
                "session {id} is being published already"
            )));
        }
        Ok(Self {
            set: set.clone(),
            id: id.to_owned(),
        })
    }
}

impl Drop for PublishGuard {
    fn drop(&mut self) {
        let mut publishing = self.set.lock().unwrap_or_else(|e| e.into_inner());
        publishing.remove(&self.id);
    }
}

/// Approvals a previous instance left pending can never be answered (their sessions are not
/// running here): expired at start, never allowed (issue 15).
fn report_orphan_approvals(expired: Result<usize>) {
    match expired {
        Ok(0) => {}
        Ok(expired) => tracing::warn!(expired, "approvals left pending by a previous run expired"),
        Err(err) => tracing::error!("cannot expire approvals left by a previous run: {err}"),
    }
}

/// ractor wraps start-up errors; show the person the cause, not the wrapping.
fn startup_cause(err: &ractor::SpawnErr) -> String {
    match err {
        ractor::SpawnErr::StartupFailed(cause) => cause.to_string(),
        other => other.to_string(),
    }
}
