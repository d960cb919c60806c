//! Publishing a finished session as a GitHub pull request: commit what the agent left
//! uncommitted, push `telecoder/<id>`, open (or find) the PR, record it on the session.
//!
//! Idempotent and resumable: a published session answers with its PR; a publish that failed
//! after the push finds the pushed branch (and any PR already opened) on the next try. The token
//! travels only in the environment of the git process and in request headers: it is never
//! logged, stored, written to a git config or shown to the agent.

use crate::domain::watch::repo_key;
use crate::domain::{Session, SessionStatus};
use crate::error::{Error, Result};
use crate::settings::{Secret, Settings};
use crate::store::StoreClient;
use crate::workspace::run_git;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What the caller asks for.
#[derive(Clone, Debug, Default)]
pub struct PublishRequest {
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

/// The PR title: as given, else the outcome headline (GitHub caps titles at 256 characters).
fn title_for(session: &Session, request: &PublishRequest) -> String {
    let title = request
        .title
        .clone()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| session.outcome_headline.clone());
    let title = if title.trim().is_empty() {
        format!("TeleCoder session {}", session.id)
    } else {
        title
    };
    title.chars().take(256).collect()
}

/// The PR body: as given, else the structured outcome and where it came from.
fn body_for(session: &Session, request: &PublishRequest) -> String {
    if let Some(body) = request.body.clone().filter(|b| !b.trim().is_empty()) {
        return body;
    }
    let or_none = |text: &str| {
        if text.trim().is_empty() {
            "_none reported_".to_owned()
        } else {
            text.to_owned()
        }
    };
    format!(
        "## Summary\n{}\n\n## Changed\n{}\n\n## Verified\n{}\n\n## Uncertain\n{}\n\n## Next\n{}\n\n---\n\
         Session: `{}`  \nBranch: `{}`  \nRuntime: acpx -> {} as {}  \nPolicy: {} (permissions {}, workspace writes {})\n",
        or_none(&session.outcome_headline),
        or_none(&session.outcome_changed),
        or_none(&session.outcome_verified),
        or_none(&session.outcome_uncertain),
        or_none(&session.outcome_next),
        session.id,
        session.branch,
        session.runtime_command,
        session.agent,
        session.policy_mode.as_str(),
        session.effective_permission_mode.as_str(),
        session.workspace_write_policy.as_str(),
    )
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
    let git = Git::new(Path::new(&session.work_dir), &token);
    git.commit_pending(&session, settings)
        .await
        .map_err(|e| Error::Upstream(scrub(e)))?;
    git.ensure_ahead_of(&request.base)
        .await
        .map_err(|e| match e {
            GitRefusal::NothingToPublish => {
                Error::Invalid("no committed changes to publish".into())
            }
            GitRefusal::Failed(message) => Error::Upstream(scrub(message)),
        })?;
    git.push(&session.branch)
        .await
        .map_err(|e| Error::Upstream(scrub(e)))?;
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
    if session.work_dir.is_empty() || !Path::new(&session.work_dir).join(".git").exists() {
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

/// Git in a session's workspace, authenticated by an HTTP header passed in the environment.
struct Git<'a> {
    dir: &'a Path,
    auth: Vec<(String, String)>,
    never: CancellationToken,
}

impl<'a> Git<'a> {
    fn new(dir: &'a Path, token: &Secret) -> Self {
        use base64_header::basic;
        Self {
            dir,
            auth: vec![
                ("GIT_TERMINAL_PROMPT".into(), "0".into()),
                ("GIT_CONFIG_COUNT".into(), "1".into()),
                (
                    "GIT_CONFIG_KEY_0".into(),
                    "http.https://github.com/.extraheader".into(),
                ),
                (
                    "GIT_CONFIG_VALUE_0".into(),
                    format!("AUTHORIZATION: basic {}", basic(token.expose())),
                ),
            ],
            never: CancellationToken::new(),
        }
    }

    async fn run(&self, args: &[&str]) -> Result<String, String> {
        run_git(args, self.dir, &self.auth, &self.never).await
    }

    async fn commit_pending(&self, session: &Session, settings: &Settings) -> Result<(), String> {
        if self
            .run(&["status", "--porcelain"])
            .await?
            .trim()
            .is_empty()
        {
            return Ok(());
        }
        self.run(&["add", "-A"]).await?;
        let message = format!(
            "{}\n\n{}\n\nTeleCoder session {}",
            title_line(&session.outcome_headline),
            session.outcome_changed,
            session.id
        );
        let name = format!("user.name={}", settings.git_author_name);
        let email = format!("user.email={}", settings.git_author_email);
        self.run(&[
            "-c",
            &name,
            "-c",
            &email,
            "-c",
            "commit.gpgsign=false",
            "commit",
            "--quiet",
            "--no-verify",
            "-m",
            &message,
        ])
        .await
        .map(drop)
    }

    /// The base as the remote has it now (fetched), or as it was cloned.
    async fn base_ref(&self, base: &str) -> Result<String, String> {
        if base.starts_with('-') {
            return Err(format!("invalid base branch {base}"));
        }
        match self
            .run(&["fetch", "--quiet", "origin", &format!("refs/heads/{base}")])
            .await
        {
            Ok(_) => Ok("FETCH_HEAD".into()),
            Err(fetch_error) => {
                let cloned = format!("refs/remotes/origin/{base}");
                self.run(&["rev-parse", "--verify", "--quiet", &cloned])
                    .await
                    .map(|_| cloned)
                    .map_err(|_| format!("cannot find base branch {base} on origin: {fetch_error}"))
            }
        }
    }

    async fn ensure_ahead_of(&self, base: &str) -> Result<(), GitRefusal> {
        let base_ref = self.base_ref(base).await.map_err(GitRefusal::Failed)?;
        let ahead = self
            .run(&["rev-list", "--count", &format!("{base_ref}..HEAD")])
            .await
            .map_err(GitRefusal::Failed)?;
        match ahead.trim().parse::<u64>() {
            Ok(0) => Err(GitRefusal::NothingToPublish),
            Ok(_) => Ok(()),
            Err(_) => Err(GitRefusal::Failed(format!(
                "unexpected git output: {ahead}"
            ))),
        }
    }

    async fn push(&self, branch: &str) -> Result<(), String> {
        self.run(&[
            "push",
            "--quiet",
            "origin",
            &format!("HEAD:refs/heads/{branch}"),
        ])
        .await
        .map(drop)
        .map_err(|err| format!("cannot push {branch}: {err}"))
    }
}

pub(crate) fn title_line(headline: &str) -> String {
    let line = headline.lines().next().unwrap_or_default().trim();
    if line.is_empty() {
        "TeleCoder changes".into()
    } else {
        line.chars().take(72).collect()
    }
}

/// The few GitHub REST calls publishing needs.
struct GitHub {
    http: reqwest::Client,
    repo_url: String,
}

impl GitHub {
    fn new(settings: &Settings, token: &Secret, owner: &str, name: &str) -> Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut headers = reqwest::header::HeaderMap::new();
        let mut auth =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(
                |_| Error::Invalid("the GitHub token contains invalid characters".into()),
            )?;
        auth.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, auth);
        headers.insert(
            reqwest::header::ACCEPT,
            reqwest::header::HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            "x-github-api-version",
            reqwest::header::HeaderValue::from_static("2022-11-28"),
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("telecoder/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|err| Error::Internal(format!("cannot build the GitHub client: {err}")))?;
        Ok(Self {
            http,
            repo_url: format!(
                "{}/repos/{owner}/{name}",
                settings.github_api_url.trim_end_matches('/')
            ),
        })
    }

    /// Reads a GitHub answer, mapping its refusals to clear errors.
    async fn answer(
        response: std::result::Result<reqwest::Response, reqwest::Error>,
    ) -> Result<(u16, Value)> {
        let response = response.map_err(|err| {
            Error::Upstream(format!(
                "cannot reach the GitHub API: {}",
                without_url(&err)
            ))
        })?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let message = body["message"].as_str().unwrap_or("no message").to_owned();
        let details = body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| e["message"].as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        match status {
            200..=299 | 422 => Ok((status, body)),
            401 => Err(Error::Upstream("GitHub rejected the token (HTTP 401): check GITHUB_TOKEN / GH_TOKEN".into())),
            403 => Err(Error::Upstream(format!("GitHub refused the request (HTTP 403): {message}; the token needs the pull requests and contents permissions"))),
            404 => Err(Error::Upstream("GitHub does not know this repository (HTTP 404), or the token cannot see it".into())),
            _ => Err(Error::Upstream(format!("GitHub answered HTTP {status}: {message} {details}").trim().to_owned())),
        }
    }

    async fn find_pull(&self, owner: &str, branch: &str) -> Result<Option<(u64, String)>> {
        let request = self
            .http
            .get(format!("{}/pulls", self.repo_url))
            .query(&[
                ("head", format!("{owner}:{branch}")),
                ("state", "all".into()),
            ])
            .send()
            .await;
        let (_, body) = Self::answer(request).await?;
        Ok(body
            .as_array()
            .and_then(|pulls| pulls.first())
            .and_then(pull_ref))
    }

    async fn open_pull(
        &self,
        branch: &str,
        base: &str,
        title: &str,
        body: &str,
        owner: &str,
    ) -> Result<(u64, String)> {
        let request = self
            .http
            .post(format!("{}/pulls", self.repo_url))
            .json(&json!({"title": title, "head": branch, "base": base, "body": body}))
            .send()
            .await;
        match Self::answer(request).await? {
            (422, answer) => {
                let text = answer.to_string();
                if text.contains("already exists") {
                    if let Some(found) = self.find_pull(owner, branch).await? {
                        return Ok(found);
                    }
                }
                let message = answer["message"].as_str().unwrap_or("validation failed");
                Err(Error::Upstream(format!(
                    "GitHub could not open the pull request (HTTP 422): {message}: {text}"
                )))
            }
            (_, created) => pull_ref(&created).ok_or_else(|| {
                Error::Upstream("GitHub's answer had no pull request number".into())
            }),
        }
    }
}

fn pull_ref(pull: &Value) -> Option<(u64, String)> {
    Some((
        pull["number"].as_u64()?,
        pull["html_url"].as_str()?.to_owned(),
    ))
}

/// reqwest errors carry the URL; the message is enough.
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), "the API");
    }
    text
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
