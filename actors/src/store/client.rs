//! The typed client of one daemon's store.
//!
//! It asks whichever StoreActor the root supervisor last put in its slot (a restarted store is
//! a new actor) and rides out a restart: a job the dead store never ran is sent to the next.
//! Work is a closure ([`StoreClient::write`], [`StoreClient::read`]); the methods below are
//! those closures with names, so a new query is one function here (plus its SQL when the
//! read-only [`super::snapshot::Snapshot`] shares it).

use super::outbox::{self, Claimed, OutboxCounts, Outcome};
use super::watches::{self as sql_watches, NewRun, Recorded, WatchFilter};
use super::{finish, queries, workspaces, DatabaseStatus, Finish, ReadPool, StoreMsg, Writer};
use crate::current::{Current, RESTART_PATIENCE};
use crate::domain::redact::Redactor;
use crate::domain::{Event, EventKind, Session, SessionFilter, Watch, WatchRun};
use crate::error::{Error, Result};
use crate::notify::Target;
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long one call may take before the caller gets `Unavailable`.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Cheap to clone; holds no actor reference of its own.
#[derive(Clone)]
pub struct StoreClient {
    store: Current<StoreMsg>,
    /// Applied to every text written from an agent or an error, so secrets never land on disk.
    redactor: Arc<Redactor>,
    /// The database file, for the status report.
    path: Arc<PathBuf>,
}

impl StoreClient {
    pub fn new(store: Current<StoreMsg>, redactor: Redactor, path: PathBuf) -> Self {
        Self {
            store,
            redactor: Arc::new(redactor),
            path: Arc::new(path),
        }
    }

    /// Runs `job` on the writer thread and answers after commit. `job` may run again on a
    /// restarted store if the failed one never ran it.
    pub async fn write<T: Send + 'static>(
        &self,
        job: impl Fn(&mut Writer<'_>) -> Result<T> + Clone + Send + 'static,
    ) -> Result<T> {
        self.store
            .call(
                |reply| {
                    let job = job.clone();
                    StoreMsg::Write(Box::new(move |writer: &mut Writer<'_>| {
                        let result = job(writer);
                        let fatal = match &result {
                            Err(err) if super::is_fatal(err) => Some(err.to_string()),
                            _ => None,
                        };
                        let _ = reply.send(result);
                        fatal
                    }))
                },
                CALL_TIMEOUT,
                RESTART_PATIENCE,
            )
            .await?
    }

    /// [`Self::read`] of a query keyed by text the caller only lends (an id, an owner).
    pub async fn read_by<T: Send + 'static>(
        &self,
        key: &str,
        query: impl Fn(&Connection, &str) -> Result<T> + Clone + Send + 'static,
    ) -> Result<T> {
        let key = key.to_owned();
        self.read(move |conn| query(conn, &key)).await
    }

    /// [`Self::write`] of a job keyed by text the caller only lends.
    pub async fn write_by<T: Send + 'static>(
        &self,
        key: &str,
        job: impl Fn(&mut Writer<'_>, &str) -> Result<T> + Clone + Send + 'static,
    ) -> Result<T> {
        let key = key.to_owned();
        self.write(move |w| job(w, &key)).await
    }

    /// Runs `query` on a pooled read connection (`query` may run again if the store restarts
    /// meanwhile).
    pub async fn read<T: Send + 'static>(
        &self,
        query: impl Fn(&Connection) -> Result<T> + Clone + Send + 'static,
    ) -> Result<T> {
        self.store
            .call(
                |reply| {
                    let query = query.clone();
                    StoreMsg::Read(Box::new(move |pool: &ReadPool| {
                        let _ = reply.send(pool.with(query));
                    }))
                },
                CALL_TIMEOUT,
                RESTART_PATIENCE,
            )
            .await?
    }

    /// Messages the current store has handled (admin view).
    pub async fn inspect(&self) -> Result<u64> {
        self.store
            .call(StoreMsg::Inspect, CALL_TIMEOUT, Duration::ZERO)
            .await
    }

    /// Fails the current store on purpose (fault drills).
    pub fn inject_failure(&self) -> Result<()> {
        let store = self
            .store
            .get()
            .ok_or_else(|| Error::Unavailable("the store is not running".into()))?;
        store
            .cast(StoreMsg::InjectFailure("drill".into()))
            .map_err(|_| Error::Unavailable("the store is not running".into()))
    }

    /// Stores a session (a continuation only while its parent may take another turn) and
    /// publishes its first events once they are committed.
    pub async fn insert_session(
        &self,
        session: Session,
        first_events: Vec<(EventKind, String)>,
    ) -> Result<Vec<Event>> {
        self.write(move |w| {
            let events = queries::insert_session(w.conn, &session, &first_events)?;
            w.published(&events);
            Ok(events)
        })
        .await
    }

    /// Claims a pending session for `owner`; `None` if it is not pending any more.
    pub async fn claim(&self, id: &str, owner: &str) -> Result<Option<Session>> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.write(move |w| queries::claim(w.conn, &id, &owner))
            .await
    }

    /// Refreshes a running session's heartbeat; false if the session is no longer ours.
    pub async fn heartbeat(&self, id: &str, owner: &str) -> Result<bool> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.write(move |w| queries::heartbeat(w.conn, &id, &owner))
            .await
    }

    /// Records the workspace once it exists, with the commit it started from.
    pub async fn set_workspace(
        &self,
        id: &str,
        workspace: &crate::workspace::Workspace,
    ) -> Result<()> {
        let (id, branch) = (id.to_owned(), workspace.branch.clone());
        let dir = workspace.dir.to_string_lossy().into_owned();
        let base = workspace.base_commit.clone();
        self.write(move |w| workspaces::set_workspace(w.conn, &id, &branch, &dir, &base))
            .await
    }

    /// Records a fetch into the user's repository, with its `fetch` event.
    pub async fn record_fetch(&self, id: &str, commit: &str, message: &str) -> Result<Event> {
        let (id, commit, message) = (id.to_owned(), commit.to_owned(), message.to_owned());
        self.write(move |w| {
            let event = workspaces::record_fetch(w.conn, &id, &commit, &message)?;
            w.published(std::slice::from_ref(&event));
            Ok(event)
        })
        .await
    }

    /// Records what the workspace collector did with a session's directory.
    pub async fn set_workspace_state(
        &self,
        id: &str,
        state: workspaces::WorkspaceState,
    ) -> Result<()> {
        self.write_by(id, move |w, id| {
            workspaces::set_workspace_state(w.conn, id, state)
        })
        .await
    }

    /// Workspace records of these sessions (and of every present workspace, if asked).
    pub async fn workspace_records(
        &self,
        ids: Vec<String>,
        with_present: bool,
    ) -> Result<Vec<workspaces::WorkspaceRecord>> {
        self.read(move |conn| workspaces::workspace_records(conn, &ids, with_present))
            .await
    }

    /// One session's workspace record; a missing session is a `NotFound` error.
    pub async fn require_workspace_record(&self, id: &str) -> Result<workspaces::WorkspaceRecord> {
        self.workspace_records(vec![id.to_owned()], false)
            .await?
            .pop()
            .ok_or_else(|| Error::NotFound(format!("session {id} not found")))
    }

    /// Records the agent's process id (`None` once it has exited).
    pub async fn set_agent_pid(&self, id: &str, pid: Option<u32>) -> Result<()> {
        self.write_by(id, move |w, id| queries::set_agent_pid(w.conn, id, pid))
            .await
    }

    /// Records what the runtime learned about the agent's side (session id, stop reason, usage).
    pub async fn record_agent_facts(
        &self,
        id: &str,
        facts: crate::domain::AgentFacts,
    ) -> Result<()> {
        self.write_by(id, move |w, id| {
            queries::record_agent_facts(w.conn, id, &facts)
        })
        .await
    }

    pub async fn append_event(
        &self,
        session_id: &str,
        kind: EventKind,
        data: &str,
    ) -> Result<Event> {
        let (id, data) = (session_id.to_owned(), self.redactor.redact(data));
        self.write(move |w| {
            let event = queries::append_event(w.conn, &id, kind, &data)?;
            w.published(std::slice::from_ref(&event));
            Ok(event)
        })
        .await
    }

    /// Finishes a running session of `owner`; `None` if it was already finished.
    pub async fn finish(&self, id: &str, owner: &str, finish: Finish) -> Result<Option<Event>> {
        let guard = finish::Guard::RunningFor(owner.to_owned());
        self.end(id, guard, finish).await
    }

    /// Fails a pending or running session regardless of owner.
    pub async fn fail_active(&self, id: &str, finish: Finish) -> Result<Option<Event>> {
        self.end(id, finish::Guard::Active, finish).await
    }

    /// Ends a session the guard allows, with its redacted finish and terminal event.
    async fn end(&self, id: &str, guard: finish::Guard, finish: Finish) -> Result<Option<Event>> {
        let (id, finish) = (id.to_owned(), finish.redacted(&self.redactor));
        self.write(move |w| {
            let finished = finish::end(w.conn, &id, &finish, &guard)?;
            finished.iter().for_each(|f| w.finished(f));
            Ok(finished.map(|f| f.event))
        })
        .await
    }

    /// Marks running sessions whose heartbeat is older than `cutoff` abandoned.
    pub async fn sweep_stale(&self, cutoff: String) -> Result<Vec<finish::Abandoned>> {
        self.write(move |w| {
            let abandoned = finish::sweep_stale(w.conn, &cutoff)?;
            abandoned.iter().for_each(|a| w.finished(&a.finished));
            Ok(abandoned)
        })
        .await
    }

    /// A session by id; a missing one is a `NotFound` error.
    pub async fn require_session(&self, id: &str) -> Result<Session> {
        let session = self.read_by(id, queries::get_session).await?;
        session.ok_or_else(|| Error::NotFound(format!("session {id} not found")))
    }

    pub async fn list_sessions(&self, filter: SessionFilter) -> Result<Vec<Session>> {
        self.read(move |c| queries::list_sessions(c, &filter)).await
    }

    pub async fn inbox(&self, limit: u32) -> Result<Vec<Session>> {
        self.read(move |c| queries::inbox(c, limit)).await
    }

    pub async fn events(&self, session_id: &str, after: i64, limit: u32) -> Result<Vec<Event>> {
        self.read_by(session_id, move |c, id| {
            queries::events_after(c, id, after, limit)
        })
        .await
    }

    /// The oldest pending session ids, and how many sessions run for other owners.
    pub async fn run_queue(&self, limit: usize, owner: &str) -> Result<queries::RunQueue> {
        self.read_by(owner, move |c, owner| queries::run_queue(c, limit, owner))
            .await
    }

    /// The database's schema version, file size (with WAL) and sessions by status.
    pub async fn call_status(&self) -> Result<DatabaseStatus> {
        let path = self.path.clone();
        self.read(move |c| queries::database_status(c, &path)).await
    }

    /// Records the pull request a session was published as (with a `publish` event).
    pub async fn record_published(&self, id: &str, number: u64, url: &str) -> Result<Event> {
        let (id, url) = (id.to_owned(), url.to_owned());
        self.write(move |w| {
            let event = queries::record_published(w.conn, &id, number, &url)?;
            w.published(std::slice::from_ref(&event));
            Ok(event)
        })
        .await
    }

    pub async fn insert_watch(&self, watch: Watch) -> Result<()> {
        self.write(move |w| sql_watches::insert_watch(w.conn, &watch))
            .await
    }

    /// Replaces a watch's editable fields; false if it does not exist.
    pub async fn update_watch(&self, watch: Watch) -> Result<bool> {
        self.write(move |w| {
            let updated = sql_watches::update_watch(w.conn, &watch)?;
            w.outbox_changed(); // notify (issue 15): a pause is told
            Ok(updated)
        })
        .await
    }

    /// Deletes a watch and its runs; false if it did not exist.
    pub async fn delete_watch(&self, id: &str) -> Result<bool> {
        self.write_by(id, move |w, id| sql_watches::delete_watch(w.conn, id))
            .await
    }

    /// Records a watch run (and its session) exactly once per event key.
    pub async fn record_run(&self, run: NewRun) -> Result<Recorded> {
        self.write(move |w| sql_watches::record_run(w.conn, &run))
            .await
    }

    /// Stores a webhook delivery once; false for a redelivery.
    pub async fn insert_delivery(&self, id: &str, event: &str, payload: &str) -> Result<bool> {
        let (id, event, payload) = (id.to_owned(), event.to_owned(), payload.to_owned());
        self.write(move |w| sql_watches::insert_delivery(w.conn, &id, &event, &payload))
            .await
    }

    /// Marks a delivery routed (`done`) or not routable (`ignored`).
    pub async fn finish_delivery(&self, id: &str, state: &str) -> Result<()> {
        let (id, state) = (id.to_owned(), state.to_owned());
        self.write(move |w| sql_watches::finish_delivery(w.conn, &id, &state))
            .await
    }

    /// A watch by id, `None` when there is none.
    pub async fn get_watch(&self, id: &str) -> Result<Option<Watch>> {
        self.read_by(id, sql_watches::get_watch).await
    }

    /// Like [`Self::get_watch`], but a missing watch is a `NotFound` error.
    pub async fn require_watch(&self, id: &str) -> Result<Watch> {
        let found = self.get_watch(id).await?;
        found.ok_or_else(|| Error::NotFound(format!("watch {id} not found")))
    }

    /// Watches matching a filter, newest first.
    pub async fn list_watches(&self, filter: WatchFilter) -> Result<Vec<Watch>> {
        self.read(move |c| sql_watches::list_watches(c, &filter))
            .await
    }

    /// A watch's runs, newest first.
    pub async fn watch_runs(&self, watch_id: &str) -> Result<Vec<WatchRun>> {
        self.read_by(watch_id, sql_watches::watch_runs).await
    }

    /// The event key of a watch's newest run.
    pub async fn last_event_key(&self, watch_id: &str) -> Result<Option<String>> {
        self.read_by(watch_id, sql_watches::last_event_key).await
    }

    /// Deliveries received before a time but not yet routed.
    pub async fn pending_deliveries(
        &self,
        received_before: &str,
    ) -> Result<Vec<(String, String, String)>> {
        self.read_by(received_before, sql_watches::pending_deliveries)
            .await
    }

    /// A page of a session's events after `after` (see [`super::pages::event_heads`]).
    pub async fn event_heads(
        &self,
        session_id: &str,
        after: i64,
        limit: u32,
        budget: usize,
    ) -> Result<Vec<super::pages::EventHead>> {
        self.read_by(session_id, move |conn, session_id| {
            super::pages::event_heads(conn, session_id, after, limit, budget)
        })
        .await
    }

    /// A byte slice of one event's data (see [`super::pages::event_bytes`]).
    pub async fn event_bytes(&self, event_id: i64, offset: usize, len: usize) -> Result<Vec<u8>> {
        self.read(move |conn| super::pages::event_bytes(conn, event_id, offset, len))
            .await
    }

    /// A keyset page of the session list (see [`super::pages::sessions_page`]).
    pub async fn sessions_page(
        &self,
        filter: &SessionFilter,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<Session>> {
        let filter = filter.clone();
        self.read(move |conn| super::pages::sessions_page(conn, &filter, after.as_deref(), limit))
            .await
    }

    /// A keyset page of the inbox (see [`super::pages::inbox_page`]).
    pub async fn inbox_page(&self, after: Option<String>, limit: u32) -> Result<Vec<Session>> {
        self.read(move |conn| super::pages::inbox_page(conn, after.as_deref(), limit))
            .await
    }

    /// A keyset page of a watch's runs, newest first, older than run `before`.
    pub async fn runs_page(
        &self,
        watch_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<WatchRun>> {
        self.read_by(watch_id, move |conn, watch_id| {
            super::watches::runs_page(conn, watch_id, before, limit)
        })
        .await
    }

    /// Records this instance's start; true when the previous one never stopped cleanly (a
    /// crash notification is then queued, see [`outbox::daemon_started`]).
    pub async fn record_daemon_start(&self, owner: &str, since: &str) -> Result<bool> {
        let (owner, since) = (owner.to_owned(), since.to_owned());
        self.write(move |w| outbox::daemon_started(w.conn, &owner, &since))
            .await
    }

    /// Records this instance's clean stop.
    pub async fn record_daemon_stop(&self, owner: &str) -> Result<()> {
        self.write_by(owner, move |w, owner| outbox::daemon_stopped(w.conn, owner))
            .await
    }

    /// When the outbox next has work (see [`outbox::next_due`]).
    pub async fn outbox_next_due(&self) -> Result<Option<String>> {
        self.read(outbox::next_due).await
    }

    /// Pending, failed and sent notification deliveries.
    pub async fn outbox_counts(&self) -> Result<OutboxCounts> {
        self.read(outbox::counts).await
    }

    /// Fans new notifications out to `targets` and leases up to `limit` due deliveries until
    /// `lease_until` (see [`outbox::take_due`]).
    pub async fn take_due_notifications(
        &self,
        targets: Vec<Target>,
        now: String,
        lease_until: String,
        limit: usize,
    ) -> Result<Vec<Claimed>> {
        self.write(move |w| outbox::take_due(w.conn, &targets, &now, &lease_until, limit))
            .await
    }

    /// Stores a delivery attempt's outcome and ends its lease.
    pub async fn record_notification(
        &self,
        delivery_id: &str,
        outcome: Outcome,
        now: &str,
    ) -> Result<()> {
        let (id, now) = (delivery_id.to_owned(), now.to_owned());
        self.write(move |w| outbox::record(w.conn, &id, &outcome, &now))
            .await
    }

    /// Deletes sent deliveries finished before `sent_before` and given-up ones before
    /// `failed_before`; the rows deleted.
    pub async fn prune_outbox(&self, sent_before: &str, failed_before: &str) -> Result<usize> {
        let (sent, failed) = (sent_before.to_owned(), failed_before.to_owned());
        self.write(move |w| outbox::prune(w.conn, &sent, &failed))
            .await
    }
}
