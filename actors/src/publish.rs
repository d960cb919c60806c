//! Publishing a finished session as a GitHub pull request: commit what the agent left
//! uncommitted, push `telecoder/<id>`, open (or find) the PR, record it on the session.
//!
//! Idempotent and resumable: a published session answers with its PR; a publish that failed
//! after the push finds the pushed branch (and any PR already opened) on the next try.
//!
//! The workspace is the agent's: its `.git/config`, hooks and attributes may be traps
//! (`core.fsmonitor`, `core.hooksPath`, filters, `includeIf`, a redirected `origin`, …). So git
//! never runs in it. Publishing works in a private repository of its own (under the data
//! directory's `tmp/`, mode 0700) that borrows the workspace's objects, learns its HEAD through
//! `git fetch` (upload-pack: the safe way git reads an untrusted repository), snapshots the work
//! tree with a private index, commits with `commit-tree` (no hooks) and pushes to the GitHub URL
//! derived from the session's repo — never to the workspace's `origin`. Every git process gets a
//! scrubbed environment; only the fetch of the base and the push read the token, from a 0600
//! config file included for them alone, so it is in no process's argv or environment, never
//! logged, stored, or shown to the agent.

use crate::domain::watch::repo_key;
use crate::domain::{Session, SessionStatus};
use crate::error::{Error, Result};
use crate::settings::{Secret, Settings};
use crate::store::StoreClient;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod github;
use github::{body_for, title_for, GitHub};

/// What the caller asks for (the body of `POST /api/sessions/:id/publish`, read by the HTTP
/// route and written by the CLI).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishRequest {
    #[serde(deserialize_with = "crate::requests::text_or_null")]
    pub base: String,
    pub title: Option<String>,
    pub body: Option<String>,
}

/// The answer of a publish.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Published {
    pub session_id: String,
    pub branch: String,
    pub title: String,
    pub pull_request_number: u64,
    pub pull_request_url: String,
}

/// `(owner, name)` of a GitHub repository in https or ssh form.
pub fn github_repo(repo: &str) -> Option<(String, String)> {
    let key = repo_key(repo);
    let path = key.strip_prefix("github.com/")?;
    let (owner, name) = path.split_once('/')?;
    let valid = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (valid(owner) && valid(name)).then(|| (owner.to_owned(), name.to_owned()))
}

/// The token from the configuration, else from `gh auth token` when `gh` is installed.
async fn resolve_token(settings: &Settings) -> Option<Secret> {
    if let Some(token) = &settings.github_token {
        return Some(token.clone());
    }
    let output = tokio::process::Command::new("gh")
        .args(["auth", "token"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(10), output)
        .await
        .ok()?
        .ok()?;
    let token = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success() && !token.is_empty()).then(|| Secret::new(token))
}

/// Publishes a session; see the module docs.
pub async fn publish(
    settings: &Settings,
    store: &StoreClient,
    id: &str,
    request: PublishRequest,
) -> Result<Published> {
    let session = store.require_session(id).await?;
    let title = title_for(&session, &request);
    if session.pull_request_number > 0 {
        return Ok(Published {
            session_id: session.id.clone(),
            branch: session.branch.clone(),
            title,
            pull_request_number: session.pull_request_number,
            pull_request_url: session.pull_request_url.clone(),
        });
    }
    check_publishable(&session, &request)?;
    let (owner, name) = github_repo(&session.repo).ok_or_else(|| {
        Error::Invalid(format!(
            "repo {} is not a GitHub repository (https or ssh form); only GitHub repositories can be published",
            session.repo
        ))
    })?;
    let token = resolve_token(settings).await.ok_or_else(|| {
        Error::Invalid(
            "no GitHub token: set GITHUB_TOKEN or GH_TOKEN, or log in with `gh auth login`".into(),
        )
    })?;
    let scrub = |message: String| {
        settings
            .redactor
            .redact(&message.replace(token.expose(), crate::domain::redact::MASK))
    };
    let git = CleanRepo::create(settings, &session, &token)
        .await
        .map_err(|e| Error::Upstream(scrub(e)))?;
    let head = git
        .snapshot(&session, settings)
        .await
        .map_err(|e| Error::Upstream(scrub(e)))?;
    let remote = format!("https://github.com/{owner}/{name}");
    git.ensure_ahead_of(&remote, &request.base, &head)
        .await
        .map_err(|e| match e {
            GitRefusal::NothingToPublish => {
                Error::Invalid("no committed changes to publish".into())
            }
            GitRefusal::Failed(message) => Error::Upstream(scrub(message)),
        })?;
    git.push(&remote, &head, &session.branch)
        .await
        .map_err(|e| Error::Upstream(scrub(e)))?;
    drop(git);
    let github = GitHub::new(settings, &token, &owner, &name)?;
    let (number, url) = match github.find_pull(&owner, &session.branch).await? {
        Some(found) => found,
        None => {
            github
                .open_pull(
                    &session.branch,
                    &request.base,
                    &title,
                    &body_for(&session, &request),
                    &owner,
                )
                .await?
        }
    };
    store.record_published(id, number, &url).await?;
    tracing::info!(session = %id, pull_request = number, "session published");
    Ok(Published {
        session_id: session.id,
        branch: session.branch,
        title,
        pull_request_number: number,
        pull_request_url: url,
    })
}

fn check_publishable(session: &Session, request: &PublishRequest) -> Result<()> {
    if request.base.trim().is_empty() {
        return Err(Error::Invalid(
            "base is required (the branch the PR merges into)".into(),
        ));
    }
    if session.status != SessionStatus::Complete {
        return Err(Error::Invalid(format!(
            "session {} is {}; only complete sessions can be published",
            session.id,
            session.status.as_str()
        )));
    }
    // A real directory: a `.git` file or symlink would point publishing at another repository.
    let git_dir = Path::new(&session.work_dir).join(".git");
    let real_dir = std::fs::symlink_metadata(&git_dir).is_ok_and(|meta| meta.is_dir());
    if session.work_dir.is_empty() || !real_dir {
        return Err(Error::Invalid(format!(
            "session {} has no workspace to publish",
            session.id
        )));
    }
    Ok(())
}

enum GitRefusal {
    NothingToPublish,
    Failed(String),
}

/// Local git steps read the agent's files; remote steps talk to GitHub.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(600);
const REMOTE_TIMEOUT: Duration = Duration::from_secs(110);

/// Variables a push may need from the daemon's environment (the user's git configuration,
/// proxies, certificates, ssh). Nothing else is passed on: no token variable, no `GIT_DIR` or
/// other `GIT_*` that would redirect git.
const REMOTE_ENV: [&str; 20] = [
    "HOME",
    "XDG_CONFIG_HOME",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM",
    "GIT_CONFIG_NOSYSTEM",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "GIT_SSH_COMMAND",
    "SSH_AUTH_SOCK",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "http_proxy",
    "https_proxy",
    "HTTPS_PROXY",
    "no_proxy",
    "NO_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "LANG",
    "LC_ALL",
];

/// Publishing's own repository; see the module docs. Removed (token file included) when
/// dropped; a crash leaves it to [`remove_leftovers`].
struct CleanRepo {
    dir: tempfile::TempDir,
    /// `<dir>/repo.git`, as git's `--git-dir` argument.
    git_dir: String,
    /// The session's workspace: read as a work tree and an object store, never run in.
    workspace: PathBuf,
}

/// Where publishing's private repositories live.
fn scratch_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tmp")
}

const SCRATCH_PREFIX: &str = "publish-";

/// Removes what publishes interrupted by a crash left (their repositories hold a token file).
pub fn remove_leftovers(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(scratch_dir(data_dir)) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(SCRATCH_PREFIX)
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl CleanRepo {
    async fn create(
        settings: &Settings,
        session: &Session,
        token: &Secret,
    ) -> Result<Self, String> {
        let scratch = scratch_dir(&settings.data_dir);
        tokio::fs::create_dir_all(&scratch)
            .await
            .map_err(|err| format!("cannot create {}: {err}", scratch.display()))?;
        // Created 0700: the token file inside is for this daemon only.
        let dir = tempfile::Builder::new()
            .prefix(&format!("{SCRATCH_PREFIX}{}-", session.id))
            .tempdir_in(&scratch)
            .map_err(|err| format!("cannot create a publishing directory: {err}"))?;
        let repo = Self {
            git_dir: dir.path().join("repo.git").to_string_lossy().into_owned(),
            dir,
            workspace: PathBuf::from(&session.work_dir),
        };
        let prepared = async {
            tokio::fs::create_dir_all(repo.home()).await?;
            repo.write_auth(token).await
        };
        prepared
            .await
            .map_err(|err| format!("cannot prepare publishing: {err}"))?;
        repo.local(&["init", "--quiet", "--bare", "--template=", &repo.git_dir])
            .await?;
        for (key, value) in [
            ("core.hooksPath", "/dev/null"),
            ("core.fsmonitor", "false"),
            ("commit.gpgSign", "false"),
        ] {
            repo.local(&["config", key, value]).await?;
        }
        // Borrow the workspace's objects instead of copying a whole history.
        let alternates = Path::new(&repo.git_dir).join("objects/info/alternates");
        let objects = repo.workspace.join(".git/objects");
        let borrowed = async {
            tokio::fs::create_dir_all(Path::new(&repo.git_dir).join("objects/info")).await?;
            tokio::fs::write(&alternates, format!("{}\n", objects.display())).await
        };
        borrowed
            .await
            .map_err(|err| format!("cannot prepare publishing: {err}"))?;
        Ok(repo)
    }

    /// An empty home: local steps see no user or system git configuration.
    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn auth_file(&self) -> PathBuf {
        self.dir.path().join("auth.config")
    }

    /// The token as git's HTTP header for github.com, in a file only its owner can read.
    async fn write_auth(&self, token: &Secret) -> std::io::Result<()> {
        let config = format!(
            "[http \"https://github.com/\"]\n\textraHeader = AUTHORIZATION: basic {}\n",
            base64_header::basic(token.expose())
        );
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.auth_file())
            .await?;
        tokio::io::AsyncWriteExt::write_all(&mut file, config.as_bytes()).await
    }

    /// Git on publishing's repository without the user's configuration or any credential.
    async fn local(&self, args: &[&str]) -> Result<String, String> {
        self.local_with(args, &[]).await
    }

    async fn local_with(&self, args: &[&str], extra: &[(&str, &str)]) -> Result<String, String> {
        let home = self.home().to_string_lossy().into_owned();
        let index = self.dir.path().join("index").to_string_lossy().into_owned();
        let mut env: Vec<(&str, &str)> = vec![
            ("HOME", &home),
            ("XDG_CONFIG_HOME", &home),
            ("GIT_CONFIG_NOSYSTEM", "1"),
            ("GIT_CONFIG_GLOBAL", "/dev/null"),
            ("GIT_INDEX_FILE", &index),
        ];
        env.extend_from_slice(extra);
        let mut full = vec!["--git-dir", self.git_dir.as_str()];
        full.extend_from_slice(args);
        self.run(&full, &env, LOCAL_TIMEOUT).await
    }

    /// Git talking to GitHub: the user's configuration (proxies, `insteadOf`, certificates)
    /// and the token header; nothing from the workspace.
    async fn remote(&self, args: &[&str]) -> Result<String, String> {
        let inherited: Vec<(&str, String)> = REMOTE_ENV
            .iter()
            .filter_map(|name| Some((*name, std::env::var(name).ok()?)))
            .collect();
        let env: Vec<(&str, &str)> = inherited.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let include = format!("include.path={}", self.auth_file().display());
        let mut full = vec![
            "-c",
            include.as_str(),
            "-c",
            "credential.helper=",
            "-c",
            "core.hooksPath=/dev/null",
            "--git-dir",
            self.git_dir.as_str(),
        ];
        full.extend_from_slice(args);
        self.run(&full, &env, REMOTE_TIMEOUT).await
    }

    /// Runs git in publishing's directory (never the workspace) with exactly `env` (plus
    /// `PATH`), and returns its stdout, or its stderr as the error.
    async fn run(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<String, String> {
        let mut command = tokio::process::Command::new("git");
        command
            .args(args)
            .env_clear()
            .envs(std::env::var_os("PATH").map(|path| ("PATH", path)))
            .envs(env.iter().copied())
            .env("GIT_TERMINAL_PROMPT", "0")
            .current_dir(self.dir.path());
        let never = tokio_util::sync::CancellationToken::new();
        crate::workspace::output_of(command, timeout, &never)
            .await
            .map(|stdout| stdout.trim().to_owned())
    }

    /// The commit to publish: the workspace's HEAD, plus one commit for whatever the agent
    /// left uncommitted. Dated when the session finished, so a retry makes the same commit
    /// (and the push is a no-op instead of a rejected rewrite).
    async fn snapshot(&self, session: &Session, settings: &Settings) -> Result<String, String> {
        let workspace_git = self.workspace.join(".git").to_string_lossy().into_owned();
        self.local(&[
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            &workspace_git,
            "+HEAD:refs/telecoder/head",
        ])
        .await
        .map_err(|err| format!("cannot read the workspace's HEAD: {err}"))?;
        let head = self
            .local(&["rev-parse", "--verify", "refs/telecoder/head^{commit}"])
            .await?;
        let work_tree = self.workspace.to_string_lossy().into_owned();
        let tree_of = |args: &'static [&'static str]| {
            let work_tree = work_tree.clone();
            async move {
                let mut full = vec!["--work-tree", work_tree.as_str()];
                full.extend_from_slice(args);
                self.local(&full).await
            }
        };
        tree_of(&["read-tree", "refs/telecoder/head"]).await?;
        tree_of(&["add", "--all"]).await?;
        let tree = tree_of(&["write-tree"]).await?;
        if tree
            == self
                .local(&["rev-parse", &format!("{head}^{{tree}}")])
                .await?
        {
            return Ok(head);
        }
        let message = format!(
            "{}\n\n{}\n\nTeleCoder session {}",
            title_line(&session.outcome_headline),
            session.outcome_changed,
            session.id
        );
        let date = commit_date(session);
        let identity = [
            ("GIT_AUTHOR_NAME", settings.git_author_name.as_str()),
            ("GIT_AUTHOR_EMAIL", settings.git_author_email.as_str()),
            ("GIT_AUTHOR_DATE", date.as_str()),
            ("GIT_COMMITTER_NAME", settings.git_author_name.as_str()),
            ("GIT_COMMITTER_EMAIL", settings.git_author_email.as_str()),
            ("GIT_COMMITTER_DATE", date.as_str()),
        ];
        self.local_with(
            &["commit-tree", &tree, "-p", &head, "-m", &message],
            &identity,
        )
        .await
        .map_err(|err| format!("cannot commit the workspace's changes: {err}"))
    }

    /// The base as GitHub has it now, or as the workspace cloned it.
    async fn base_ref(&self, remote: &str, base: &str) -> Result<&'static str, String> {
        if base.starts_with('-') {
            return Err(format!("invalid base branch {base}"));
        }
        const BASE: &str = "refs/telecoder/base";
        let fetch = |source: String, from: String| async move {
            let refspec = format!("+{from}:{BASE}");
            let args = ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head"];
            let mut full = args.to_vec();
            full.extend([source.as_str(), refspec.as_str()]);
            if source.starts_with("https://") {
                self.remote(&full).await
            } else {
                self.local(&full).await
            }
        };
        match fetch(remote.to_owned(), format!("refs/heads/{base}")).await {
            Ok(_) => Ok(BASE),
            Err(fetch_error) => {
                let workspace_git = self.workspace.join(".git").to_string_lossy().into_owned();
                fetch(workspace_git, format!("refs/remotes/origin/{base}"))
                    .await
                    .map(|_| BASE)
                    .map_err(|_| format!("cannot find base branch {base} on origin: {fetch_error}"))
            }
        }
    }

    async fn ensure_ahead_of(
        &self,
        remote: &str,
        base: &str,
        head: &str,
    ) -> Result<(), GitRefusal> {
        let base_ref = self
            .base_ref(remote, base)
            .await
            .map_err(GitRefusal::Failed)?;
        let ahead = self
            .local(&["rev-list", "--count", &format!("{base_ref}..{head}")])
            .await
            .map_err(GitRefusal::Failed)?;
        match ahead.parse::<u64>() {
            Ok(0) => Err(GitRefusal::NothingToPublish),
            Ok(_) => Ok(()),
            Err(_) => Err(GitRefusal::Failed(format!(
                "unexpected git output: {ahead}"
            ))),
        }
    }

    async fn push(&self, remote: &str, head: &str, branch: &str) -> Result<(), String> {
        self.remote(&[
            "push",
            "--quiet",
            "--no-verify",
            remote,
            &format!("{head}:refs/heads/{branch}"),
        ])
        .await
        .map(drop)
        .map_err(|err| format!("cannot push {branch}: {err}"))
    }
}

/// The session's finish time in git's raw date format (`<seconds> +0000`).
fn commit_date(session: &Session) -> String {
    let at =
        crate::domain::time::parse(&session.finished_at).unwrap_or_else(std::time::SystemTime::now);
    let seconds = at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!("{seconds} +0000")
}

pub(crate) fn title_line(headline: &str) -> String {
    let line = headline.lines().next().unwrap_or_default().trim();
    if line.is_empty() {
        "TeleCoder changes".into()
    } else {
        line.chars().take(72).collect()
    }
}

/// HTTP basic credentials for git's extra header.
mod base64_header {
    /// `x-access-token:<token>` in base64, as GitHub expects for token auth over HTTPS.
    pub fn basic(token: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_github_repositories() {
        for repo in [
            "https://github.com/acme/widgets",
            "https://github.com/acme/widgets.git",
            "git@github.com:acme/widgets.git",
            "ssh://git@github.com/acme/widgets.git",
        ] {
            assert_eq!(
                github_repo(repo),
                Some(("acme".into(), "widgets".into())),
                "{repo}"
            );
        }
        assert_eq!(github_repo("https://gitlab.com/acme/widgets"), None);
        assert_eq!(github_repo("/srv/repo"), None);
    }

    #[test]
    fn secrets_do_not_debug_print() {
        assert_eq!(format!("{:?}", Secret::new("ghp_x")), "[REDACTED]");
    }
}
