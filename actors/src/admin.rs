//! The live actor tree for operators, built by asking the actors themselves (with a timeout:
//! an actor that does not answer is shown as unresponsive, never left out).
//!
//! The root lists every actor of the daemon as its child (the store, the session queue, the
//! watch supervisor, each session and each watch), and each node names the `supervisor` that
//! restarts it or handles its failure.

use serde::Serialize;
use std::time::Instant;

/// One actor in the tree.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActorNode {
    pub name: String,
    /// `supervisor`, `store`, `queue`, `watches`, `session` or `watch`.
    pub kind: String,
    pub id: String,
    /// The actor that supervises this one (`None` for the root).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supervisor: Option<String>,
    /// ractor's lifecycle status, or `unresponsive` when the actor did not answer in time.
    pub status: String,
    pub uptime_ms: u64,
    pub restarts: u32,
    /// Messages the actor has handled (as it counts them), when it answered.
    pub messages_handled: Option<u64>,
    /// Not exposed by ractor's tokio mailbox; always null.
    pub mailbox_depth: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<crate::session_actor::SessionSnapshot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<crate::watch_actor::WatchSnapshot>,
    pub children: Vec<ActorNode>,
}

/// The root's name in the tree.
pub const ROOT_NAME: &str = "telecoder.supervisor";

/// What a supervised actor is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChildKind {
    Store,
    Queue,
    Watches,
    Session(String),
    Watch(String),
}

impl ChildKind {
    fn kind(&self) -> &'static str {
        match self {
            Self::Store => "store",
            Self::Queue => "queue",
            Self::Watches => "watches",
            Self::Session(_) => "session",
            Self::Watch(_) => "watch",
        }
    }

    /// The name operators see (actors are not registered under process-wide names).
    fn name(&self) -> String {
        match self {
            Self::Session(id) | Self::Watch(id) => format!("telecoder.{}.{id}", self.kind()),
            other => format!("telecoder.{}", other.kind()),
        }
    }

    fn supervisor(&self) -> String {
        match self {
            Self::Session(_) => Self::Queue.name(),
            Self::Watch(_) => Self::Watches.name(),
            _ => ROOT_NAME.to_owned(),
        }
    }
}

/// A supervised actor as its supervisor knows it.
#[derive(Clone, Debug)]
pub struct Child {
    pub cell: ractor::ActorCell,
    pub kind: ChildKind,
    pub started: Instant,
    pub restarts: u32,
}

impl ActorNode {
    pub fn new(cell: &ractor::ActorCell, kind: &str, name: String, uptime_ms: u64) -> Self {
        Self {
            name,
            kind: kind.into(),
            id: cell.get_id().to_string(),
            supervisor: None,
            status: format!("{:?}", cell.get_status()).to_lowercase(),
            uptime_ms,
            restarts: 0,
            messages_handled: None,
            mailbox_depth: None,
            session: None,
            watch: None,
            children: Vec::new(),
        }
    }
}

/// How long each actor gets to describe itself.
const INSPECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Asks every child about itself at once and hangs the answers under `root`.
pub(crate) async fn tree(mut root: ActorNode, children: Vec<Child>) -> ActorNode {
    let mut asks = tokio::task::JoinSet::new();
    for child in children {
        asks.spawn(describe(child));
    }
    while let Some(node) = asks.join_next().await {
        if let Ok(node) = node {
            root.children.push(node);
        }
    }
    root.children.sort_by(|a, b| {
        (a.kind.as_str(), a.name.as_str()).cmp(&(b.kind.as_str(), b.name.as_str()))
    });
    root
}

async fn describe(child: Child) -> ActorNode {
    let uptime_ms = child.started.elapsed().as_millis() as u64;
    let mut node = ActorNode {
        supervisor: Some(child.kind.supervisor()),
        restarts: child.restarts,
        ..ActorNode::new(&child.cell, child.kind.kind(), child.kind.name(), uptime_ms)
    };
    let cell = child.cell;
    node.messages_handled = match child.kind {
        ChildKind::Store => ask(cell.into(), crate::store::StoreMsg::Inspect).await,
        ChildKind::Queue => ask(cell.into(), crate::queue::QueueMsg::Inspect).await,
        ChildKind::Watches => ask(cell.into(), crate::watch_supervisor::WatchesMsg::Inspect).await,
        ChildKind::Session(_) => {
            let snapshot = ask(cell.into(), crate::session_actor::SessionMsg::Inspect).await;
            node.session = snapshot;
            node.session.as_ref().map(|s| s.messages_handled)
        }
        ChildKind::Watch(_) => {
            node.watch = ask(cell.into(), crate::watch_actor::WatchMsg::Inspect).await;
            node.watch.as_ref().map(|w| w.messages_handled)
        }
    };
    if node.messages_handled.is_none() {
        node.status = "unresponsive".into();
    }
    node
}

async fn ask<M: ractor::Message, T: Send + 'static>(
    actor: ractor::ActorRef<M>,
    build: impl FnOnce(ractor::RpcReplyPort<T>) -> M,
) -> Option<T> {
    match actor.call(build, Some(INSPECT_TIMEOUT)).await {
        Ok(ractor::rpc::CallResult::Success(value)) => Some(value),
        _ => None,
    }
}
