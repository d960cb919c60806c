//! Workspaces beyond the run (task "workspaces", issue 16): see a session's changes, bring them
//! into the user's own repository, keep the disk bounded, and clone fast.
//!
//! * [`clone`]: per-repository mirrors for remote repositories, hard links for local ones.
//! * [`diff`]: the session's changes against the commit its workspace started from.
//! * [`fetch`]: branch `telecoder/<id>` into the user's repository — the only write TeleCoder
//!   makes there.
//! * [`gc`]: the collector: expired and over-the-cap workspaces go, oldest first; unsaved work
//!   is kept as a bundle first; unreferenced mirrors go too.
//! * [`usage`]: what workspaces, archives and mirrors take on disk.
//! * [`git`]: the hardened way every one of them runs git.
//!
//! A session's workspace lock ([`locks::session`]) serialises diff, fetch and collection of it.

pub mod clone;
pub mod diff;
pub mod fetch;
pub mod gc;
pub mod git;
pub mod locks;
pub mod usage;

use crate::domain::{Session, SessionStatus};
use crate::error::{Error, Result};
use crate::settings::Settings;
use crate::store::workspaces::{WorkspaceRecord, WorkspaceState};
use crate::store::StoreClient;
use git::{Git, GitError};
use std::path::{Path, PathBuf};

/// Where a session's work is now.
#[derive(Clone, Debug)]
pub enum Location {
    /// Its workspace directory.
    Present(PathBuf),
    /// Collected; the bundle and the diff saved beside it.
    Archived { bundle: PathBuf, diff: PathBuf },
}

/// `archive/<id>.bundle` and `archive/<id>.diff.json`.
pub fn archive_paths(settings: &Settings, id: &str) -> (PathBuf, PathBuf) {
    let dir = settings.archive_dir();
    (
        dir.join(format!("{id}.bundle")),
        dir.join(format!("{id}.diff.json")),
    )
}

/// The directory of a session's workspace.
pub fn workspace_dir(settings: &Settings, session: &Session) -> PathBuf {
    if session.work_dir.is_empty() {
        settings.workspaces_dir().join(&session.id)
    } else {
        PathBuf::from(&session.work_dir)
    }
}

/// Where the work of a session is, or why there is none to look at: 409 while it has not run
/// (or never got a workspace), 404 once its workspace is gone with nothing kept.
pub fn locate(settings: &Settings, record: &WorkspaceRecord) -> Result<Location> {
    let session = &record.session;
    let id = &session.id;
    match (record.state(), session.status) {
        (_, SessionStatus::Pending) => Err(Error::Conflict(format!(
            "session {id} has not run yet (it is pending)"
        ))),
        (WorkspaceState::None, SessionStatus::Running) => Err(Error::Conflict(format!(
            "session {id} is still setting up its workspace"
        ))),
        (WorkspaceState::None, _) => Err(Error::Conflict(format!(
            "session {id} never got a workspace (it ended before its clone was made)"
        ))),
        (WorkspaceState::Present, _) => {
            let dir = workspace_dir(settings, session);
            if dir.is_dir() {
                Ok(Location::Present(dir))
            } else {
                Err(Error::NotFound(format!(
                    "the workspace of session {id} is missing from disk ({})",
                    dir.display()
                )))
            }
        }
        (WorkspaceState::Archived, _) => {
            let (bundle, diff) = archive_paths(settings, id);
            if bundle.is_file() {
                Ok(Location::Archived { bundle, diff })
            } else {
                Err(Error::NotFound(format!(
                    "the workspace of session {id} was collected and its bundle {} is missing",
                    bundle.display()
                )))
            }
        }
        (WorkspaceState::Collected, _) => Err(Error::NotFound(format!(
            "the workspace of session {id} was collected: its work had been fetched or published \
             (or there was none), so nothing was kept"
        ))),
    }
}

/// A session's record, read again once its lock is held (the collector may have just moved
/// its workspace).
pub async fn locked_record(
    store: &StoreClient,
    id: &str,
) -> Result<(WorkspaceRecord, locks::Held)> {
    store.require_workspace_record(id).await?;
    let held = locks::session(id).await;
    let record = store.require_workspace_record(id).await?;
    Ok((record, held))
}

/// The changes of a session against the commit its workspace started from, uncommitted ones
/// included; from the bundle's saved diff once the workspace was collected.
pub async fn diff(settings: &Settings, store: &StoreClient, id: &str) -> Result<diff::Diff> {
    let (record, _held) = locked_record(store, id).await?;
    match locate(settings, &record)? {
        Location::Present(dir) => {
            let git = open(&dir).await?;
            diff::of_workspace(
                &git,
                &record.session.base_commit,
                &settings.scratch_dir().join("git"),
            )
            .await
            .map_err(|err| git_error("cannot compute the diff", err))
        }
        Location::Archived { diff, .. } => {
            let text = tokio::fs::read(&diff).await.map_err(|err| {
                Error::NotFound(format!(
                    "the workspace of session {id} was collected and its saved diff {} cannot be read: {err}",
                    diff.display()
                ))
            })?;
            serde_json::from_slice(&text).map_err(|err| {
                Error::Internal(format!(
                    "the saved diff {} is damaged: {err}",
                    diff.display()
                ))
            })
        }
    }
}

/// Hardened git in a workspace; a workspace laid out to redirect writes is a conflict.
pub async fn open(dir: &Path) -> Result<Git> {
    Git::workspace(dir)
        .await
        .map_err(|err| git_error("cannot use the workspace", err))
}

/// Maps a git failure to the library's errors: a refused workspace is a conflict, output too
/// large to hold is the caller's to narrow, anything else is ours.
pub fn git_error(context: &str, err: GitError) -> Error {
    match err {
        GitError::Untrusted(message) => Error::Conflict(message),
        GitError::TooLarge(limit) => Error::Invalid(format!(
            "{context}: the output is larger than {} MiB; inspect the workspace directly \
             (telecoder open ID)",
            limit / (1024 * 1024)
        )),
        GitError::Failed(message) | GitError::NotRun(message) => {
            Error::Internal(format!("{context}: {message}"))
        }
    }
}

/// Commits what the agent left uncommitted (untracked files too) on `telecoder/<id>`, as
/// publishing does (same author, message from the outcome). Refuses when the agent moved HEAD
/// off that branch: the changes would land somewhere the user does not look. True when a
/// commit was made.
pub async fn commit_pending(git: &Git, session: &Session, settings: &Settings) -> Result<bool> {
    let fail = |err| git_error("cannot commit the workspace's changes", err);
    if session.status.is_finished() {
        clear_stale_locks(git);
    }
    if !is_dirty(git).await.map_err(fail)? {
        return Ok(false);
    }
    let branch_ref = format!("refs/heads/{}", session.branch);
    let head = head_ref(git).await;
    if head != branch_ref {
        return Err(Error::Conflict(format!(
            "the workspace of session {} has uncommitted changes but HEAD is not on {} \
             (the agent switched to '{}'); inspect it with `telecoder open {}`",
            session.id,
            session.branch,
            if head.is_empty() {
                "a detached HEAD"
            } else {
                &head
            },
            session.id
        )));
    }
    let message = format!(
        "{}\n\n{}\n\nTeleCoder session {}",
        crate::publish::title_line(&session.outcome_headline),
        session.outcome_changed,
        session.id
    );
    git.run(&["add", "--all", "--", "."]).await.map_err(fail)?;
    git.clone()
        .with_config("user.name", &settings.git_author_name)
        .with_config("user.email", &settings.git_author_email)
        .run(&["commit", "--quiet", "--no-verify", "-m", &message])
        .await
        .map_err(fail)?;
    Ok(true)
}

/// Whether the working tree differs from HEAD (untracked files count; ignored ones do not).
pub async fn is_dirty(git: &Git) -> std::result::Result<bool, GitError> {
    let status = git
        .run(&[
            "status",
            "--porcelain",
            "--untracked-files=all",
            "--ignore-submodules=all",
        ])
        .await?;
    Ok(!status.trim().is_empty())
}

/// The branch HEAD is on (`refs/heads/…`), or `""` when it is detached.
pub async fn head_ref(git: &Git) -> String {
    git.line(&["symbolic-ref", "-q", "HEAD"])
        .await
        .unwrap_or_default()
}

/// Lock files a killed git left in a finished session's workspace (nobody else runs git there
/// once the session is over and its lock is held).
fn clear_stale_locks(git: &Git) {
    if let Some(dir) = git.git_dir() {
        for name in ["index.lock", "HEAD.lock"] {
            let path = dir.join(name);
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// The commit at the tip of the session's branch in a workspace.
pub async fn branch_tip(git: &Git, branch: &str) -> Result<String> {
    let spec = format!("refs/heads/{branch}^{{commit}}");
    git.line(&["rev-parse", "--verify", "--quiet", &spec])
        .await
        .map_err(|_| {
            Error::Conflict(format!(
                "the workspace has no branch {branch} any more (the agent deleted it)"
            ))
        })
}
