//! What the actors of one daemon share. Passed down from [`crate::Daemon::start`], never found
//! by a process-wide name, so two daemons in one process never see each other's actors.

use crate::current::Current;
use crate::queue::QueueMsg;
use crate::runtime::AgentRuntime;
use crate::settings::Settings;
use crate::store::StoreClient;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::task::TaskTracker;

/// How long each step of stopping may take once the user's shutdown grace is over: actors to
/// stop, background tasks to finish, connections to close. After it the rest is forced.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Configuration, identity and the shared handles of one daemon instance.
pub struct Context {
    pub settings: Settings,
    /// This daemon instance; recorded as the owner of the sessions it runs.
    pub owner_id: String,
    pub store: StoreClient,
    pub runtime: Arc<dyn AgentRuntime>,
    pub metrics: crate::metrics::Metrics,
    /// The session queue, for nudges (`Kick`) and agent pids.
    pub queue: Current<QueueMsg>,
    /// Every background task (publishing, routing, store work that reports back), so a
    /// shutdown can wait for them with a deadline instead of cutting them off.
    pub tasks: TaskTracker,
}

impl Context {
    /// Runs `work` in the background, tracked for shutdown.
    pub fn spawn<F>(&self, work: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(work);
    }
}
