//! The GitHub side of publishing: the pull request's title and body, and the few REST calls
//! that find or open it.

use super::PublishRequest;
use crate::domain::Session;
use crate::error::{Error, Result};
use crate::settings::{Secret, Settings};
use serde_json::{json, Value};
use std::time::Duration;

/// The PR title: as given, else the outcome headline (GitHub caps titles at 256 characters).
pub(super) fn title_for(session: &Session, request: &PublishRequest) -> String {
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
pub(super) fn body_for(session: &Session, request: &PublishRequest) -> String {
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

/// The few GitHub REST calls publishing needs.
pub(super) struct GitHub {
    http: reqwest::Client,
    repo_url: String,
}

impl GitHub {
    pub(super) fn new(
        settings: &Settings,
        token: &Secret,
        owner: &str,
        name: &str,
    ) -> Result<Self> {
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

    pub(super) async fn find_pull(
        &self,
        owner: &str,
        branch: &str,
    ) -> Result<Option<(u64, String)>> {
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

    pub(super) async fn open_pull(
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
