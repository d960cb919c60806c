//! A typed handle on whichever StoreActor is current.
//!
//! It resolves the store by name on every call (a restarted store is a new actor) and rides
//! out a restart by retrying for a short while when the store is missing or died mid-request.

use super::watches::{NewRun, Recorded, WatchFilter};
use super::{Finish, StoreMsg, STORE_NAME};
use crate::domain::{Event, EventKind, Session, SessionFilter, Watch, WatchRun};
use crate::error::{Error, Result};
use ractor::rpc::CallResult;
use ractor::{ActorRef, RpcReplyPort};
use std::time::Duration;
use tokio::time::{sleep, Instant};

/// How long one call may take before the caller gets `Unavailable`.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to keep retrying while the store restarts.
const RESTART_WINDOW: Duration = Duration::from_secs(15);

/// Cheap to clone; holds no actor reference.
#[derive(Clone, Debug, Default)]
pub struct StoreClient;

impl StoreClient {
    pub fn new() -> Self {
        Self
    }

    async fn call<T: Send + 'static>(
        &self,
        build: impl Fn(RpcReplyPort<Result<T>>) -> StoreMsg,
    ) -> Result<T> {
        let deadline = Instant::now() + RESTART_WINDOW;
        let mut pause = Duration::from_millis(10);
        loop {
            if let Some(store) = ActorRef::<StoreMsg>::where_is(STORE_NAME) {
                match store.call(&build, Some(CALL_TIMEOUT)).await {
                    Ok(CallResult::Success(result)) => return result,
                    Ok(CallResult::Timeout) => {
                        return Err(Error::Unavailable(
                            "the store did not answer in time".into(),
                        ))
                    }
                    // The store died with our request in hand, or before taking it: retry.
                    Ok(CallResult::SenderError) | Err(_) => {}
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(
                    "the store is not available (restarting?)".into(),
                ));
            }
            sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Runs `job` on the writer thread and answers after commit. `job` may run again on a
    /// restarted store if the failed one never ran it.
    pub async fn write<T: Send + 'static>(
        &self,
        job: impl Fn(&mut rusqlite::Connection) -> Result<T> + Clone + Send + 'static,
    ) -> Result<T> {
        self.call(|reply| {
            let job = job.clone();
            StoreMsg::Write(Box::new(move |conn: &mut rusqlite::Connection| {
                let result = job(conn);
                let fatal = match &result {
                    Err(Error::Store(err)) if super::is_fatal(err) => Some(err.to_string()),
                    _ => None,
                };
                let _ = reply.send(result);
                fatal
            }))
        })
        .await
    }

    /// Runs `query` on a pooled read connection.
    pub async fn read<T: Send + 'static>(
        &self,
        query: impl Fn(&rusqlite::Connection) -> Result<T> + Clone + Send + 'static,
    ) -> Result<T> {
        self.call(|reply| {
            let query = query.clone();
            StoreMsg::Read(Box::new(move |pool: &super::pool::ReadPool| {
                let _ = reply.send(pool.with(query));
            }))
        })
        .await
    }

    pub async fn insert_session(
        &self,
        session: Session,
        first_events: Vec<(EventKind, String)>,
    ) -> Result<Vec<Event>> {
        self.call(|reply| StoreMsg::InsertSession {
            session: Box::new(session.clone()),
            first_events: first_events.clone(),
            reply,
        })
        .await
    }

    pub async fn claim(&self, id: &str, owner: &str) -> Result<Option<Session>> {
        self.call(|reply| StoreMsg::Claim {
            id: id.to_owned(),
            owner: owner.to_owned(),
            reply,
        })
        .await
    }

    pub async fn heartbeat(&self, id: &str, owner: &str) -> Result<bool> {
        self.call(|reply| StoreMsg::Heartbeat {
            id: id.to_owned(),
            owner: owner.to_owned(),
            reply,
        })
        .await
    }

    pub async fn set_workspace(&self, id: &str, branch: &str, work_dir: &str) -> Result<()> {
        self.call(|reply| StoreMsg::SetWorkspace {
            id: id.to_owned(),
            branch: branch.to_owned(),
            work_dir: work_dir.to_owned(),
            reply,
        })
        .await
    }

    pub async fn set_agent_pid(&self, id: &str, pid: Option<u32>) -> Result<()> {
        self.call(|reply| StoreMsg::SetAgentPid {
            id: id.to_owned(),
            pid,
            reply,
        })
        .await
    }

    pub async fn record_agent_facts(
        &self,
        id: &str,
        facts: crate::domain::AgentFacts,
    ) -> Result<()> {
        self.call(|reply| StoreMsg::RecordAgentFacts {
            id: id.to_owned(),
            facts: Box::new(facts.clone()),
            reply,
        })
        .await
    }

    pub async fn append_event(
        &self,
        session_id: &str,
        kind: EventKind,
        data: &str,
    ) -> Result<Event> {
        self.call(|reply| StoreMsg::AppendEvent {
            session_id: session_id.to_owned(),
            kind,
            data: data.to_owned(),
            reply,
        })
        .await
    }

    pub async fn finish(&self, id: &str, owner: &str, finish: Finish) -> Result<Option<Event>> {
        self.call(|reply| StoreMsg::Finish {
            id: id.to_owned(),
            owner: owner.to_owned(),
            finish: Box::new(finish.clone()),
            reply,
        })
        .await
    }

    pub async fn fail_active(&self, id: &str, finish: Finish) -> Result<Option<Event>> {
        self.call(|reply| StoreMsg::FailActive {
            id: id.to_owned(),
            finish: Box::new(finish.clone()),
            reply,
        })
        .await
    }

    pub async fn sweep_stale(&self, cutoff: String) -> Result<Vec<super::queries::Abandoned>> {
        self.call(|reply| StoreMsg::SweepStale {
            cutoff: cutoff.clone(),
            reply,
        })
        .await
    }

    pub async fn get_session(&self, id: &str) -> Result<Option<Session>> {
        self.call(|reply| StoreMsg::GetSession {
            id: id.to_owned(),
            reply,
        })
        .await
    }

    /// Like [`Self::get_session`], but a missing session is a `NotFound` error.
    pub async fn require_session(&self, id: &str) -> Result<Session> {
        self.get_session(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("session {id} not found")))
    }

    pub async fn list_sessions(&self, filter: SessionFilter) -> Result<Vec<Session>> {
        self.call(|reply| StoreMsg::ListSessions {
            filter: filter.clone(),
            reply,
        })
        .await
    }

    pub async fn inbox(&self, limit: u32) -> Result<Vec<Session>> {
        self.call(|reply| StoreMsg::Inbox { limit, reply }).await
    }

    pub async fn events(&self, session_id: &str, after: i64, limit: u32) -> Result<Vec<Event>> {
        self.call(|reply| StoreMsg::Events {
            session_id: session_id.to_owned(),
            after,
            limit,
            reply,
        })
        .await
    }

    pub async fn run_queue(&self, limit: usize, owner: &str) -> Result<super::queries::RunQueue> {
        self.call(|reply| StoreMsg::RunQueue {
            limit,
            owner: owner.to_owned(),
            reply,
        })
        .await
    }

    pub async fn call_status(&self) -> Result<super::DatabaseStatus> {
        self.call(StoreMsg::Status).await
    }

    pub async fn record_published(&self, id: &str, number: u64, url: &str) -> Result<Event> {
        self.call(|reply| StoreMsg::RecordPublished {
            id: id.to_owned(),
            number,
            url: url.to_owned(),
            reply,
        })
        .await
    }

    pub async fn insert_watch(&self, watch: Watch) -> Result<()> {
        self.call(|reply| StoreMsg::InsertWatch {
            watch: Box::new(watch.clone()),
            reply,
        })
        .await
    }

    pub async fn update_watch(&self, watch: Watch) -> Result<bool> {
        self.call(|reply| StoreMsg::UpdateWatch {
            watch: Box::new(watch.clone()),
            reply,
        })
        .await
    }

    pub async fn delete_watch(&self, id: &str) -> Result<bool> {
        self.call(|reply| StoreMsg::DeleteWatch {
            id: id.to_owned(),
            reply,
        })
        .await
    }

    pub async fn record_run(&self, run: NewRun) -> Result<Recorded> {
        self.call(|reply| StoreMsg::RecordRun {
            run: Box::new(run.clone()),
            reply,
        })
        .await
    }

    pub async fn insert_delivery(&self, id: &str, event: &str, payload: &str) -> Result<bool> {
        self.call(|reply| StoreMsg::InsertDelivery {
            id: id.to_owned(),
            event: event.to_owned(),
            payload: payload.to_owned(),
            reply,
        })
        .await
    }

    pub async fn finish_delivery(&self, id: &str, state: &str) -> Result<()> {
        self.call(|reply| StoreMsg::FinishDelivery {
            id: id.to_owned(),
            state: state.to_owned(),
            reply,
        })
        .await
    }

    pub async fn get_watch(&self, id: &str) -> Result<Option<Watch>> {
        self.call(|reply| StoreMsg::GetWatch {
            id: id.to_owned(),
            reply,
        })
        .await
    }

    /// Like [`Self::get_watch`], but a missing watch is a `NotFound` error.
    pub async fn require_watch(&self, id: &str) -> Result<Watch> {
        self.get_watch(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("watch {id} not found")))
    }

    pub async fn list_watches(&self, filter: WatchFilter) -> Result<Vec<Watch>> {
        self.call(|reply| StoreMsg::ListWatches {
            filter: filter.clone(),
            reply,
        })
        .await
    }

    pub async fn watch_runs(&self, watch_id: &str) -> Result<Vec<WatchRun>> {
        self.call(|reply| StoreMsg::WatchRuns {
            watch_id: watch_id.to_owned(),
            reply,
        })
        .await
    }

    pub async fn last_event_key(&self, watch_id: &str) -> Result<Option<String>> {
        self.call(|reply| StoreMsg::LastEventKey {
            watch_id: watch_id.to_owned(),
            reply,
        })
        .await
    }

    pub async fn pending_deliveries(
        &self,
        received_before: &str,
    ) -> Result<Vec<(String, String, String)>> {
        self.call(|reply| StoreMsg::PendingDeliveries {
            received_before: received_before.to_owned(),
            reply,
        })
        .await
    }
}
