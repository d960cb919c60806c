//! Workspaces: a private clone of the user's repository per session, on its own branch. The
//! user's repository, branch and working tree are only ever read.

use crate::domain::repo::{RepoKind, RepoTarget};
use crate::domain::SessionId;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

pub use crate::domain::repo::is_remote;

/// Checks a resolved repo before a session is stored: a local path must exist and be a git
/// repository; `owner/name` is not a path (a session names a GitHub repository by its URL).
pub fn validate_repo(target: &RepoTarget, given: &str) -> Result<()> {
    match target.kind {
        RepoKind::Url => return Ok(()),
        RepoKind::GithubShort => {
            return Err(Error::Invalid(format!(
                "repo path does not exist: {given} (name a GitHub repository by its URL)"
            )))
        }
        RepoKind::Local => {}
    }
    let path = Path::new(&target.source);
    if !path.exists() {
        return Err(Error::Invalid(format!("repo path does not exist: {given}")));
    }
    let work_tree = path.join(".git").exists();
    let bare = path.join("HEAD").is_file() && path.join("objects").is_dir();
    if !(work_tree || bare) {
        return Err(Error::Invalid(format!(
            "repo is not a git repository: {given}"
        )));
    }
    Ok(())
}

/// A prepared workspace.
#[derive(Clone, Debug)]
pub struct Workspace {
    pub dir: PathBuf,
    pub branch: String,
    /// The commit the branch started from (`""` for an empty repository).
    pub base_commit: String,
}

/// Clones `repo` into `<workspaces>/<id>` on branch `telecoder/<id>`; see
/// [`crate::workspaces::clone`] for how (mirrors for remote repositories, hard links for local
/// ones). Errors are plain sentences for the session's error field.
pub async fn prepare(
    repo: &str,
    settings: &crate::settings::Settings,
    id: &SessionId,
    cancel: &CancellationToken,
) -> Result<Workspace, String> {
    crate::workspaces::clone::prepare(repo, settings, id, cancel).await
}

/// Diff context for a pull request from the local repository: `git diff --stat` and
/// `git diff --unified=0` of `base...head` (falling back to `origin/` refs). Only reads.
pub async fn diff_context(repo: &str, base: &str, head: &str) -> String {
    if is_remote(repo) {
        return "(no diff available: the repository is remote and the event carried no diffText)"
            .into();
    }
    let never = CancellationToken::new();
    let dir = Path::new(repo);
    for (base, head) in [
        (base.to_owned(), head.to_owned()),
        (format!("origin/{base}"), format!("origin/{head}")),
    ] {
        let range = format!("{base}...{head}");
        if range.starts_with('-') {
            break;
        }
        let stat = git_output(&["diff", "--stat", &range], dir, &never).await;
        let patch = git_output(&["diff", "--unified=0", &range], dir, &never).await;
        if let (Ok(stat), Ok(patch)) = (stat, patch) {
            return format!(
                "$ git diff --stat {range}\n{stat}\n$ git diff --unified=0 {range}\n{patch}"
            );
        }
    }
    format!("(no diff available: cannot compare {base}...{head} in {repo})")
}

/// Runs a read-only git command and returns its stdout.
async fn git_output(
    args: &[&str],
    cwd: &Path,
    cancel: &CancellationToken,
) -> Result<String, String> {
    let mut command = Command::new("git");
    command
        .args(args)
        .current_dir(cwd)
        .env("GIT_TERMINAL_PROMPT", "0");
    output_of(command, Duration::from_secs(30), cancel).await
}

/// Runs a prepared git command in its own process group (killed however this ends), without
/// stdin, bounded by `timeout` and `cancel`; returns its stdout, or its stderr as the error.
pub async fn output_of(
    mut command: Command,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<String, String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let child = command
        .spawn()
        .map_err(|err| format!("cannot run git: {err}"))?;
    let _group = child.id().map(crate::process::GroupGuard);
    let output = tokio::select! {
        output = tokio::time::timeout(timeout, child.wait_with_output()) => output,
        _ = cancel.cancelled() => return Err("cancelled".into()),
    };
    let output = output
        .map_err(|_| "git timed out".to_owned())?
        .map_err(|err| format!("git failed: {err}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_missing_and_non_git_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = RepoTarget::local(&dir.path().join("nope"));
        assert!(matches!(
            validate_repo(&missing, "nope"),
            Err(Error::Invalid(msg)) if msg.contains("does not exist")
        ));
        assert!(matches!(
            validate_repo(&RepoTarget::local(dir.path()), "dir"),
            Err(Error::Invalid(msg)) if msg.contains("not a git repository")
        ));
        let short = RepoTarget::remote("acme/widgets").expect("valid");
        assert!(validate_repo(&short, "acme/widgets").is_err());
    }
}
