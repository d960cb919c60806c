//! Bringing a session's work into the user's own repository: commit what the agent left
//! uncommitted, then create or fast-forward branch `telecoder/<id>` there with `git fetch` —
//! the only write TeleCoder ever makes to the user's repository. Their HEAD, index, working
//! tree, other refs and `FETCH_HEAD` are never touched; a branch of that name with commits the
//! session does not have is refused (409), as is the branch while it is checked out.

use super::git::{Git, GitError, Reach, LONG_TIMEOUT};
use super::{commit_pending, git_error, locate, locked_record, open, Location};
use crate::error::{Error, Result};
use crate::settings::Settings;
use crate::store::StoreClient;
use crate::workspace::is_remote;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The answer of `POST /api/sessions/:id/fetch`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fetched {
    pub session_id: String,
    /// `telecoder/<id>`, now in the user's repository.
    pub branch: String,
    /// The user's repository.
    pub repo: String,
    /// The commit the branch points at.
    pub commit: String,
    /// Where the branch pointed before (`""` when it was created).
    pub previous: String,
    /// Whether the branch moved (false when it was up to date already).
    pub updated: bool,
    /// True when the agent's uncommitted changes were committed first.
    pub committed_pending: bool,
    /// Fetched from the bundle of a collected workspace.
    pub from_archive: bool,
    pub fetched_at: String,
}

/// See the module docs.
pub async fn fetch(settings: &Settings, store: &StoreClient, id: &str) -> Result<Fetched> {
    let (record, _held) = locked_record(store, id).await?;
    let session = &record.session;
    if is_remote(&session.repo) {
        return Err(Error::Invalid(format!(
            "session {id} works on {}, which is not a local repository; fetch brings work into \
             local repositories (publish-session opens a pull request instead)",
            session.repo
        )));
    }
    if !session.status.is_finished() && !session.workspace_state.is_empty() {
        return Err(Error::Conflict(format!(
            "session {id} is still {}; fetch it once it has finished",
            session.status.as_str()
        )));
    }
    let location = locate(settings, &record)?;
    // The repository as resolved (absolute, symlinks followed) and allowed, like a clone.
    let resolved = crate::requests::clone_source(settings, &session.repo)
        .map_err(|err| Error::Conflict(format!("cannot fetch into {}: {err}", session.repo)))?;
    let user_repo = Path::new(&resolved);
    let branch = session.branch.clone();
    let (source, tip, committed_pending) = match &location {
        Location::Present(dir) => {
            let git = open(dir).await?;
            let committed = commit_pending(&git, session, settings).await?;
            if committed {
                super::usage::forget(dir);
            }
            let tip = super::branch_tip(&git, &branch).await?;
            (dir.join(".git"), tip, committed)
        }
        Location::Archived { bundle, .. } => {
            let tip = bundle_tip(user_repo, bundle, &branch).await?;
            (bundle.clone(), tip, false)
        }
    };
    let user = Git::at(user_repo, Reach::Local).with_timeout(LONG_TIMEOUT);
    let branch_ref = format!("refs/heads/{branch}");
    let previous = user
        .line(&[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{branch_ref}^{{commit}}"),
        ])
        .await
        .unwrap_or_default();
    if !previous.is_empty() && previous != tip {
        refuse_divergence(&location, &previous, &tip, session).await?;
    }
    if previous != tip {
        let source = source.to_string_lossy().into_owned();
        let refspec = format!("{branch_ref}:{branch_ref}");
        user.run(&[
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
            "--upload-pack=git-upload-pack",
            "--",
            &source,
            &refspec,
        ])
        .await
        .map_err(|err| fetch_error(err, session))?;
    }
    let message = format!("fetched {branch} at {} into {}", short(&tip), session.repo);
    let event = store.record_fetch(id, &tip, &message).await?;
    tracing::info!(session = %id, commit = %tip, "session fetched into the user's repository");
    Ok(Fetched {
        session_id: session.id.clone(),
        branch,
        repo: session.repo.clone(),
        updated: previous != tip,
        commit: tip,
        previous,
        committed_pending,
        from_archive: matches!(location, Location::Archived { .. }),
        fetched_at: event.created_at,
    })
}

/// The branch in the user's repository must be an ancestor of the session's (a fast-forward).
/// Checked in the workspace, which has every ancestor of its tip; a bundle is left to git's
/// own fast-forward check during the fetch.
async fn refuse_divergence(
    location: &Location,
    previous: &str,
    tip: &str,
    session: &crate::domain::Session,
) -> Result<()> {
    let Location::Present(dir) = location else {
        return Ok(());
    };
    let git = open(dir).await?;
    let ancestor = git
        .run(&["merge-base", "--is-ancestor", previous, tip])
        .await
        .is_ok();
    if ancestor {
        Ok(())
    } else {
        Err(diverged(session))
    }
}

fn diverged(session: &crate::domain::Session) -> Error {
    Error::Conflict(format!(
        "branch {} in {} has commits that are not in the session's branch; rename or delete it \
         there to fetch the session again",
        session.branch, session.repo
    ))
}

/// Git's refusals, in words the user can act on.
fn fetch_error(err: GitError, session: &crate::domain::Session) -> Error {
    let GitError::Failed(message) = &err else {
        return git_error("cannot fetch", err);
    };
    if message.contains("non-fast-forward") || message.contains("[rejected]") {
        diverged(session)
    } else if message.contains("checked out") {
        Error::Conflict(format!(
            "branch {} is checked out in {}; switch to another branch there to fetch it",
            session.branch, session.repo
        ))
    } else if message.contains("dubious ownership") {
        Error::Conflict(format!(
            "git refuses to write to {}: it belongs to another user than the daemon's (see git's \
             safe.directory)",
            session.repo
        ))
    } else if message.contains("prerequisite") {
        Error::Conflict(format!(
            "{} no longer has the commit session {} started from ({}), which its saved bundle \
             needs",
            session.repo, session.id, session.base_commit
        ))
    } else {
        git_error("cannot fetch", err)
    }
}

/// The commit a bundle holds for the branch (`git bundle list-heads`, read in the user's
/// repository).
async fn bundle_tip(user_repo: &Path, bundle: &Path, branch: &str) -> Result<String> {
    let bundle_arg = bundle.to_string_lossy().into_owned();
    let heads = Git::at(user_repo, Reach::Local)
        .line(&["bundle", "list-heads", &bundle_arg])
        .await
        .map_err(|err| git_error("cannot read the saved bundle", err))?;
    let wanted = format!("refs/heads/{branch}");
    heads
        .lines()
        .find_map(|line| {
            let (commit, name) = line.split_once(' ')?;
            (name == wanted).then(|| commit.to_owned())
        })
        .ok_or_else(|| {
            Error::Internal(format!(
                "the saved bundle {} holds no {wanted}",
                bundle.display()
            ))
        })
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}
