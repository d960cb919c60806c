//! Continuing a session (issue 15): a new session, queued like any other, that runs in the
//! workspace and on the branch of the session it continues (nothing is cloned again), and
//! whose agent gets the conversation so far: its own ACP session loaded again when it can
//! (`loadSession`), otherwise the earlier turns in its first prompt.
//!
//! One workspace never has two agents: a session can be continued once, only when finished,
//! and only while nothing else is pending or running in its workspace; the store checks this
//! in the transaction that stores the new turn (`store::conversations`). The turns share their
//! first turn's workspace, its lock and its collection (`workspaces::workspace_owner`): the
//! collector leaves it while a turn is pending or running, and once it is collected the
//! conversation cannot go on (410).

use crate::domain::conversation::{prompt_with_history, ContinueRequest, MAX_TURNS_IN_PROMPT};
use crate::domain::{EventKind, NewSession, Session, SessionId};
use crate::error::Result;
use crate::runtime::Resume;
use crate::settings::Settings;
use crate::store::workspaces::workspace_gone;
use crate::store::StoreClient;
use crate::workspace::Workspace;
use crate::workspaces::{locks, workspace_owner};
use std::path::PathBuf;

/// Stores the next turn of `id`'s conversation: 404 unknown, 409 while `id` (or anything else
/// in its workspace) is pending or running or once `id` was continued, 410 when its workspace
/// was collected. The checks run in the transaction that stores the turn, under the
/// workspace's lock, so the collector cannot take the workspace in between.
pub async fn continue_session(
    settings: &Settings,
    store: &StoreClient,
    id: &str,
    request: ContinueRequest,
    first_event: Option<String>,
) -> Result<Session> {
    let parent = store.require_session(id).await?;
    let session = continuation_record(settings, &parent, request)?;
    let first = first_event.unwrap_or_else(|| {
        format!(
            "continues session {} in its workspace (branch {})",
            parent.id, parent.branch
        )
    });
    let _held = locks::session(workspace_owner(&parent)).await;
    store
        .insert_session(session.clone(), vec![(EventKind::Status, first)])
        .await?;
    Ok(session)
}

/// A rerun of a later turn: the same request again as the next turn of its conversation, in
/// the same workspace (a fresh clone would lose the conversation's work).
pub async fn rerun_turn(
    settings: &Settings,
    store: &StoreClient,
    turn: &Session,
) -> Result<Session> {
    let request = ContinueRequest {
        prompt: turn.prompt.clone(),
        policy: Some(turn.policy_mode),
        agent: Some(turn.agent.clone()),
    };
    let first = format!(
        "rerun of session {} (attempt {}) as the next turn of its conversation",
        turn.id,
        turn.attempt + 1
    );
    continue_session(settings, store, &turn.id, request, Some(first)).await
}

/// The pending record of the next turn: validated like any new session (prompt, agent, policy,
/// allowlist), in the parent's workspace and branch.
fn continuation_record(
    settings: &Settings,
    parent: &Session,
    request: ContinueRequest,
) -> Result<Session> {
    let new = NewSession {
        repo: parent.repo.clone(),
        prompt: request.prompt,
        agent: request.agent.or_else(|| Some(parent.agent.clone())),
        policy: request.policy.or(Some(parent.policy_mode)),
    };
    let mut session = crate::requests::new_session_record(settings, &new, Some(parent))?;
    session.continued_from = parent.id.clone();
    session.branch = parent.branch.clone();
    session.work_dir = parent.work_dir.clone();
    Ok(session)
}

/// What a continuation starts from: its parent's workspace (which must still be there) and
/// what its agent gets. `can_load`: the runtime can `session/load`.
pub async fn resume(
    store: &StoreClient,
    session: &Session,
    can_load: bool,
) -> std::result::Result<(Workspace, Carried), String> {
    let (omitted, mut turns) = store
        .conversation(&session.id, MAX_TURNS_IN_PROMPT + 1)
        .await
        .map_err(|err| format!("cannot read the conversation: {err}"))?;
    if turns.last().is_some_and(|last| last.id == session.id) {
        turns.pop();
    }
    let workspace = reuse_workspace(session, &turns)?;
    Ok((workspace, carry(session, omitted, &turns, can_load)))
}

/// The parent's workspace, with the commit the conversation started from (any earlier turn
/// that ran recorded it).
fn reuse_workspace(session: &Session, turns: &[Session]) -> std::result::Result<Workspace, String> {
    if session.work_dir.is_empty() || workspace_gone(session) {
        return Err(format!(
            "the workspace this session continues in ({}) was collected before it started",
            session.work_dir
        ));
    }
    let base_commit = turns
        .iter()
        .rev()
        .map(|turn| turn.base_commit.as_str())
        .find(|base| !base.is_empty())
        .unwrap_or_default();
    Ok(Workspace {
        dir: PathBuf::from(&session.work_dir),
        branch: session.branch.clone(),
        base_commit: base_commit.to_owned(),
    })
}

/// How a turn's agent gets the conversation.
pub struct Carried {
    /// What the runtime sends as the prompt.
    pub prompt: String,
    /// Load this agent session first (the runtime falls back to the history prompt).
    pub resume: Option<Resume>,
    /// A status line for the session's events.
    pub notice: String,
}

/// The prompt (and the agent session to load) for `session`, which continues `turns` (oldest
/// first, after `omitted` older ones).
fn carry(session: &Session, omitted: usize, turns: &[Session], can_load: bool) -> Carried {
    let nonce = SessionId::random().to_string();
    let fallback = prompt_with_history(&session.prompt, turns, omitted, &nonce);
    let count = omitted + turns.len();
    let loadable = turns.last().filter(|parent| {
        can_load
            && parent.agent == session.agent
            && parent.agent_load_session
            && !parent.agent_session_id.is_empty()
    });
    match loadable {
        Some(parent) => Carried {
            prompt: session.prompt.clone(),
            resume: Some(Resume {
                agent_session_id: parent.agent_session_id.clone(),
                fallback_prompt: fallback,
            }),
            notice: format!(
                "turn {} of a conversation: loading the agent's session {}",
                count + 1,
                parent.agent_session_id
            ),
        },
        None => Carried {
            prompt: fallback,
            resume: None,
            notice: format!(
                "turn {} of a conversation: the {count} earlier turns go in the prompt ({})",
                count + 1,
                why_not_loaded(turns.last(), session, can_load)
            ),
        },
    }
}

fn why_not_loaded(parent: Option<&Session>, session: &Session, can_load: bool) -> &'static str {
    match parent {
        _ if !can_load => "this runtime cannot load agent sessions",
        None => "no earlier turn",
        Some(parent) if parent.agent != session.agent => "another agent than the last turn",
        Some(parent) if !parent.agent_load_session => "the agent did not offer loadSession",
        Some(_) => "the last turn has no agent session to load",
    }
}
