//! Configuration from the environment, validated once at start-up. A bad value stops the
//! program with one line naming the variable. The parsing helpers live in `parse`, the
//! HTTP-facing settings (tokens, browser exceptions, allowed repositories) in `access`, the
//! notification settings in `notify`, and `telecoder config`'s listing in `describe`.

mod access;
mod describe;
mod notify;
mod parse;

pub use notify::notify_targets;
pub use parse::ConfigError;

use access::{allowed_repos, api_tokens, browser_policy, is_loopback};
use notify::notify_settings;
use parse::{bounded, duration, flag, invalid, number, size, value, Lookup};

use crate::http::browser::BrowserPolicy;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use telecoder_actors::domain::redact::Redactor;
use telecoder_actors::domain::{PermissionMode, PolicyMode};
use telecoder_actors::settings::{
    default_concurrency, RuntimeKind, Secret, Settings, DEFAULT_WORKSPACE_GC_INTERVAL,
    DEFAULT_WORKSPACE_RETENTION, SECRET_VARIABLES,
};

const AGENT_PREFIX: &str = "TELECODER_AGENT_";
const AGENT_SUFFIX: &str = "_COMMAND";

/// The daemon's and the CLI's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub settings: Settings,
    pub listen_host: String,
    pub listen_port: u16,
    /// Where CLI commands find the daemon.
    pub url: String,
    /// Verifies GitHub webhook deliveries; without it `/webhooks/github` refuses them.
    pub github_webhook_secret: Option<String>,
    /// Bearer tokens for the API; with none set, only loopback binds are allowed.
    pub tokens: Tokens,
    /// `TELECODER_LOG_FORMAT=json` makes every log line a JSON object.
    pub json_logs: bool,
    /// `TELECODER_ALLOWED_ORIGINS` and `TELECODER_ALLOWED_HOSTS`: the exceptions to the
    /// browser checks (see `http::browser`).
    pub browser: BrowserPolicy,
}

/// The API's bearer tokens by scope.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    /// Everything but admin routes (and admin too when no admin token is set).
    pub full: Option<String>,
    /// GET routes only.
    pub read: Option<String>,
    /// Everything, including `/admin/*` and `/metrics`.
    pub admin: Option<String>,
}

impl Tokens {
    pub fn any(&self) -> bool {
        self.full.is_some() || self.read.is_some() || self.admin.is_some()
    }

    /// The token CLI commands send: the most capable one configured.
    pub fn for_cli(&self) -> Option<&str> {
        self.admin
            .as_deref()
            .or(self.full.as_deref())
            .or(self.read.as_deref())
    }
}

/// The longest minimum spacing of schedules an operator may ask for: once a day.
const SCHEDULE_MIN_INTERVAL_MAX: u64 = 24 * 3600;

impl Config {
    /// The configuration of this process's environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let vars: BTreeMap<String, String> = std::env::vars().collect();
        Self::from_lookup(&|name| vars.get(name).cloned(), &vars)
    }

    /// Builds the configuration from any variable source; `all` lists every variable so that
    /// per-agent commands can be discovered.
    pub fn from_lookup(
        lookup: Lookup<'_>,
        all: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let data_dir = match value(lookup, "TELECODER_DATA_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => match value(lookup, "HOME") {
                Some(home) => PathBuf::from(home).join(".telecoder"),
                None => return Err(invalid("TELECODER_DATA_DIR", "not set and HOME is unknown")),
            },
        };
        let listen_host =
            value(lookup, "TELECODER_LISTEN_HOST").unwrap_or_else(|| "127.0.0.1".into());
        let listen_port = match value(lookup, "TELECODER_LISTEN_PORT") {
            None => 7080,
            Some(text) => text.trim().parse::<u16>().map_err(|_| {
                invalid(
                    "TELECODER_LISTEN_PORT",
                    format!("'{text}' is not a port number (0-65535)"),
                )
            })?,
        };
        let default_policy = match (
            value(lookup, "TELECODER_POLICY_MODE"),
            value(lookup, "TELECODER_PERMISSION_MODE"),
        ) {
            (Some(mode), _) => mode
                .parse::<PolicyMode>()
                .map_err(|err| invalid("TELECODER_POLICY_MODE", err.to_string()))?,
            (None, Some(permission)) => permission
                .parse::<PermissionMode>()
                .map_err(|err| invalid("TELECODER_PERMISSION_MODE", err.to_string()))?
                .policy_mode(),
            (None, None) => PolicyMode::Observe,
        };
        let runtime = match value(lookup, "TELECODER_RUNTIME") {
            None => RuntimeKind::Native,
            Some(text) => text
                .parse::<RuntimeKind>()
                .map_err(|err| invalid("TELECODER_RUNTIME", err))?,
        };
        if default_policy == PolicyMode::Ask && runtime == RuntimeKind::Acpx {
            return Err(invalid(
                "TELECODER_POLICY_MODE",
                "ask waits for a person's approval, which needs TELECODER_RUNTIME=native",
            ));
        }
        let acpx_text = value(lookup, "TELECODER_ACPX_COMMAND").unwrap_or_else(|| "acpx".into());
        let acpx_command = shell_words::split(&acpx_text).map_err(|err| {
            invalid(
                "TELECODER_ACPX_COMMAND",
                format!("cannot split '{acpx_text}': {err}"),
            )
        })?;
        if acpx_command.is_empty() {
            return Err(invalid("TELECODER_ACPX_COMMAND", "must name a program"));
        }
        let agent_commands = all
            .iter()
            .filter_map(|(name, command)| {
                let agent = name
                    .strip_prefix(AGENT_PREFIX)?
                    .strip_suffix(AGENT_SUFFIX)?;
                (!agent.is_empty() && !command.trim().is_empty())
                    .then(|| (agent.to_owned(), command.clone()))
            })
            .collect();
        let heartbeat: u64 = number(lookup, "TELECODER_SESSION_HEARTBEAT_SECONDS", 5)?;
        let stale: u64 = number(lookup, "TELECODER_SESSION_STALE_SECONDS", 30)?;
        if stale <= heartbeat {
            return Err(invalid(
                "TELECODER_SESSION_STALE_SECONDS",
                format!("{stale} must be greater than TELECODER_SESSION_HEARTBEAT_SECONDS ({heartbeat})"),
            ));
        }
        let default_agent =
            value(lookup, "TELECODER_DEFAULT_AGENT").unwrap_or_else(|| "codex".into());
        let tokens = api_tokens(lookup)?;
        let github_webhook_secret = value(lookup, "TELECODER_GITHUB_WEBHOOK_SECRET");
        let passthrough: Vec<String> = value(lookup, "TELECODER_AGENT_ENV_PASSTHROUGH")
            .unwrap_or_default()
            .split([',', ' '])
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect();
        let notify = notify_settings(lookup)?;
        let secrets = [
            tokens.full.clone(),
            tokens.read.clone(),
            tokens.admin.clone(),
            github_webhook_secret.clone(),
            value(lookup, "GITHUB_TOKEN"),
            value(lookup, "GH_TOKEN"),
            notify.secret.as_ref().map(|s| s.expose().to_owned()),
        ];
        let target_secrets = notify.targets.iter().flat_map(|t| t.secrets());
        let settings = Settings {
            data_dir,
            default_agent,
            default_policy,
            runtime,
            acpx_command,
            agent_commands,
            prompt_timeout_seconds: number(lookup, "TELECODER_PROMPT_TIMEOUT_SECONDS", 300)?,
            approval_timeout: duration(
                lookup,
                "TELECODER_APPROVAL_TIMEOUT",
                Duration::from_secs(30 * 60),
                Duration::from_secs(1),
            )?,
            heartbeat: Duration::from_secs(heartbeat),
            stale: Duration::from_secs(stale),
            max_concurrent_sessions: number(
                lookup,
                "TELECODER_MAX_CONCURRENT_SESSIONS",
                default_concurrency(),
            )?,
            max_output_bytes: number(lookup, "TELECODER_MAX_OUTPUT_BYTES", 8 * 1024 * 1024)?,
            watch_max_runs_per_hour: bounded(
                lookup,
                "TELECODER_WATCH_MAX_RUNS_PER_HOUR",
                10,
                telecoder_actors::domain::watch::MAX_RUNS_PER_HOUR_LIMIT,
            )?,
            schedule_min_interval: Duration::from_secs(bounded(
                lookup,
                "TELECODER_SCHEDULE_MIN_INTERVAL_SECONDS",
                60,
                SCHEDULE_MIN_INTERVAL_MAX,
            )?),
            allowed_repos: allowed_repos(lookup)?,
            redactor: Redactor::new(secrets.into_iter().flatten().chain(target_secrets)),
            agent_env_blocklist: SECRET_VARIABLES
                .iter()
                .filter(|v| !passthrough.iter().any(|p| p == *v))
                .map(|v| (*v).to_owned())
                .collect(),
            shutdown_grace: Duration::from_secs(number(
                lookup,
                "TELECODER_SHUTDOWN_GRACE_SECONDS",
                10,
            )?),
            resume_interrupted: flag(lookup, "TELECODER_RESUME_INTERRUPTED")?,
            github_api_url: value(lookup, "TELECODER_GITHUB_API_URL")
                .unwrap_or_else(|| "https://api.github.com".into()),
            github_token: value(lookup, "GITHUB_TOKEN")
                .or_else(|| value(lookup, "GH_TOKEN"))
                .map(Secret::new),
            git_author_name: value(lookup, "TELECODER_GIT_AUTHOR_NAME")
                .unwrap_or_else(|| "TeleCoder".into()),
            git_author_email: value(lookup, "TELECODER_GIT_AUTHOR_EMAIL")
                .unwrap_or_else(|| "telecoder@localhost".into()),
            workspace_retention: duration(
                lookup,
                "TELECODER_WORKSPACE_RETENTION",
                DEFAULT_WORKSPACE_RETENTION,
                Duration::ZERO,
            )?,
            workspace_max_bytes: size(lookup, "TELECODER_WORKSPACE_MAX_BYTES")?,
            workspace_gc_interval: duration(
                lookup,
                "TELECODER_WORKSPACE_GC_INTERVAL",
                DEFAULT_WORKSPACE_GC_INTERVAL,
                Duration::from_secs(1),
            )?,
            notify,
        };
        let url = value(lookup, "TELECODER_URL").unwrap_or_else(|| {
            let host = match listen_host.as_str() {
                "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
                host => host,
            };
            format!("http://{host}:{listen_port}")
        });
        let json_logs = match value(lookup, "TELECODER_LOG_FORMAT")
            .as_deref()
            .map(str::trim)
        {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                return Err(invalid(
                    "TELECODER_LOG_FORMAT",
                    format!("'{other}' is not text or json"),
                ))
            }
        };
        Ok(Self {
            settings,
            github_webhook_secret,
            tokens,
            json_logs,
            browser: browser_policy(lookup)?,
            listen_host,
            listen_port,
            url: url.trim_end_matches('/').to_owned(),
        })
    }

    /// A daemon reachable from other machines must not run without a token.
    pub fn check_exposure(&self) -> Result<(), ConfigError> {
        if is_loopback(&self.listen_host) || self.tokens.any() {
            Ok(())
        } else {
            Err(invalid(
                "TELECODER_API_TOKEN",
                format!(
                    "not set, but TELECODER_LISTEN_HOST={} is reachable from other machines; set a token or bind 127.0.0.1",
                    self.listen_host
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests;
