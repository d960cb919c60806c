//! The live actor tree for operators, built by asking the actors themselves (with a timeout:
//! an actor that does not answer is shown as unresponsive, never left out).

use serde::Serialize;

/// One actor in the tree.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActorNode {
    pub name: String,
    /// `supervisor`, `store`, `session` or `watch`.
    pub kind: String,
    pub id: String,
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

impl ActorNode {
    pub fn new(cell: &ractor::ActorCell, kind: &str, uptime_ms: u64, restarts: u32) -> Self {
        Self {
            name: cell.get_name().unwrap_or_default(),
            kind: kind.into(),
            id: cell.get_id().to_string(),
            status: format!("{:?}", cell.get_status()).to_lowercase(),
            uptime_ms,
            restarts,
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
pub(crate) async fn tree(
    mut root: ActorNode,
    children: Vec<(ractor::ActorCell, crate::supervisor::ChildKind, u64, u32)>,
) -> ActorNode {
    use crate::supervisor::ChildKind;
    let mut asks = tokio::task::JoinSet::new();
    for (cell, kind, uptime_ms, restarts) in children {
        asks.spawn(async move {
            let kind_name = match &kind {
                ChildKind::Store => "store",
                ChildKind::Session { .. } => "session",
                ChildKind::Watch { .. } => "watch",
            };
            let mut node = ActorNode::new(&cell, kind_name, uptime_ms, restarts);
            let answered = match kind {
                ChildKind::Store => {
                    let store: ractor::ActorRef<crate::store::StoreMsg> = cell.into();
                    ask(&store, crate::store::StoreMsg::Inspect)
                        .await
                        .map(|handled| {
                            node.messages_handled = Some(handled);
                        })
                }
                ChildKind::Session { .. } => {
                    let session: ractor::ActorRef<crate::session_actor::SessionMsg> = cell.into();
                    ask(&session, crate::session_actor::SessionMsg::Inspect)
                        .await
                        .map(|snapshot| {
                            node.messages_handled = Some(snapshot.messages_handled);
                            node.session = Some(snapshot);
                        })
                }
                ChildKind::Watch { .. } => {
                    let watch: ractor::ActorRef<crate::watch_actor::WatchMsg> = cell.into();
                    ask(&watch, crate::watch_actor::WatchMsg::Inspect)
                        .await
                        .map(|snapshot| {
                            node.messages_handled = Some(snapshot.messages_handled);
                            node.watch = Some(snapshot);
                        })
                }
            };
            if answered.is_none() {
                node.status = "unresponsive".into();
            }
            node
        });
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

async fn ask<M: ractor::Message, T: Send + 'static>(
    actor: &ractor::ActorRef<M>,
    build: impl FnOnce(ractor::RpcReplyPort<T>) -> M,
) -> Option<T> {
    match actor.call(build, Some(INSPECT_TIMEOUT)).await {
        Ok(ractor::rpc::CallResult::Success(value)) => Some(value),
        _ => None,
    }
}
