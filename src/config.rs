//! Configuration from the environment, validated once at start-up. A bad value stops the
//! program with one line naming the variable.

use crate::http::browser::{parse_list, AllowedHost, BrowserPolicy, WebOrigin};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use telecoder_actors::domain::redact::Redactor;
use telecoder_actors::domain::{PermissionMode, PolicyMode};
use telecoder_actors::notify::{self, NotifySettings};
use telecoder_actors::settings::{
    default_concurrency, RuntimeKind, Secret, Settings, DEFAULT_WORKSPACE_GC_INTERVAL,
    DEFAULT_WORKSPACE_RETENTION, SECRET_VARIABLES,
};

const AGENT_PREFIX: &str = "TELECODER_AGENT_";
const AGENT_SUFFIX: &str = "_COMMAND";

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid {variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

fn invalid(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        message: message.into(),
    }
}

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

fn flag(lookup: Lookup<'_>, name: &'static str) -> Result<bool, ConfigError> {
    match value(lookup, name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(true),
        Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(false),
        Some(v) => Err(invalid(name, format!("'{v}' is not true or false"))),
    }
}

fn api_tokens(lookup: Lookup<'_>) -> Result<Tokens, ConfigError> {
    let full = match (
        value(lookup, "TELECODER_API_TOKEN"),
        value(lookup, "TELECODER_API_TOKEN_FILE"),
    ) {
        (Some(token), _) => Some(token),
        (None, Some(path)) => {
            let token = std::fs::read_to_string(&path).map_err(|err| {
                invalid(
                    "TELECODER_API_TOKEN_FILE",
                    format!("cannot read {path}: {err}"),
                )
            })?;
            let token = token.trim().to_owned();
            if token.is_empty() {
                return Err(invalid(
                    "TELECODER_API_TOKEN_FILE",
                    format!("{path} is empty"),
                ));
            }
            Some(token)
        }
        (None, None) => None,
    };
    let tokens = Tokens {
        full,
        read: value(lookup, "TELECODER_API_READ_TOKEN"),
        admin: value(lookup, "TELECODER_ADMIN_TOKEN"),
    };
    for (name, token) in [
        ("TELECODER_API_TOKEN", &tokens.full),
        ("TELECODER_API_READ_TOKEN", &tokens.read),
        ("TELECODER_ADMIN_TOKEN", &tokens.admin),
    ] {
        if token.as_ref().is_some_and(|t| t.trim().len() < 16) {
            return Err(invalid(name, "tokens must be at least 16 characters"));
        }
    }
    Ok(tokens)
}

fn allowed_repos(lookup: Lookup<'_>) -> Result<Vec<glob::Pattern>, ConfigError> {
    value(lookup, "TELECODER_ALLOWED_REPOS")
        .unwrap_or_default()
        .split([',', ' ', '\n'])
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            glob::Pattern::new(p.trim()).map_err(|err| {
                invalid(
                    "TELECODER_ALLOWED_REPOS",
                    format!("bad pattern '{p}': {err}"),
                )
            })
        })
        .collect()
}

/// The browser checks' exceptions, each entry validated.
fn browser_policy(lookup: Lookup<'_>) -> Result<BrowserPolicy, ConfigError> {
    let list = |name: &'static str| value(lookup, name).unwrap_or_default();
    Ok(BrowserPolicy {
        allowed_origins: parse_list::<WebOrigin>(&list("TELECODER_ALLOWED_ORIGINS"))
            .map_err(|err| invalid("TELECODER_ALLOWED_ORIGINS", err))?,
        allowed_hosts: parse_list::<AllowedHost>(&list("TELECODER_ALLOWED_HOSTS"))
            .map_err(|err| invalid("TELECODER_ALLOWED_HOSTS", err))?,
    })
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Reads variables; tests pass a map instead of the process environment.
type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn value(lookup: Lookup<'_>, name: &str) -> Option<String> {
    lookup(name).filter(|v| !v.trim().is_empty())
}

fn number<T: std::str::FromStr + PartialOrd + Default>(
    lookup: Lookup<'_>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    match value(lookup, name) {
        None => Ok(default),
        Some(text) => match text.trim().parse::<T>() {
            Ok(n) if n > T::default() => Ok(n),
            _ => Err(invalid(
                name,
                format!("'{text}' is not a positive whole number"),
            )),
        },
    }
}

/// A positive whole number no larger than `max`.
fn bounded<T: std::str::FromStr + PartialOrd + Default + std::fmt::Display>(
    lookup: Lookup<'_>,
    name: &'static str,
    default: T,
    max: T,
) -> Result<T, ConfigError> {
    let n = number(lookup, name, default)?;
    if n > max {
        return Err(invalid(
            name,
            format!("{n} is more than the maximum, {max}"),
        ));
    }
    Ok(n)
}

/// A duration such as `14d`, `36h`, `90m`, `45s`, `2w`, or a number of seconds.
fn duration(
    lookup: Lookup<'_>,
    name: &'static str,
    default: Duration,
    min: Duration,
) -> Result<Duration, ConfigError> {
    let Some(text) = value(lookup, name) else {
        return Ok(default);
    };
    let trimmed = text.trim().to_ascii_lowercase();
    let digits = trimmed.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = match &trimmed[digits.len()..] {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 24 * 3600,
        "w" => 7 * 24 * 3600,
        _ => 0,
    };
    let seconds = digits
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|_| unit > 0)
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| {
            invalid(
                name,
                format!("'{text}' is not a duration (a number with s, m, h, d or w, e.g. 14d)"),
            )
        })?;
    let duration = Duration::from_secs(seconds);
    if duration < min {
        return Err(invalid(
            name,
            format!("{text} is shorter than the minimum, {}s", min.as_secs()),
        ));
    }
    Ok(duration)
}

/// A positive size such as `20G`, `512MiB`, `1500000000`; unset means none.
fn size(lookup: Lookup<'_>, name: &'static str) -> Result<Option<u64>, ConfigError> {
    let Some(text) = value(lookup, name) else {
        return Ok(None);
    };
    let trimmed = text.trim().to_ascii_lowercase();
    let digits = trimmed.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit: u64 = match trimmed[digits.len()..]
        .trim_end_matches("ib")
        .trim_end_matches('b')
    {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => 0,
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0 && unit > 0)
        .and_then(|n| n.checked_mul(unit))
        .map(Some)
        .ok_or_else(|| {
            invalid(
                name,
                format!("'{text}' is not a positive size (bytes, or a number with K, M, G or T, e.g. 20G)"),
            )
        })
}

/// `TELECODER_NOTIFY` and its companions (issue 15). A webhook target needs the secret its
/// receivers verify signatures with; plain http to another machine is allowed (a warning is
/// logged at start-up).
fn notify_settings(lookup: Lookup<'_>) -> Result<NotifySettings, ConfigError> {
    let targets = match value(lookup, "TELECODER_NOTIFY") {
        Some(text) => {
            notify::target::parse_targets(&text).map_err(|err| invalid("TELECODER_NOTIFY", err))?
        }
        None => Vec::new(),
    };
    let secret = value(lookup, "TELECODER_NOTIFY_SECRET");
    if secret.as_ref().is_some_and(|s| s.trim().len() < 16) {
        return Err(invalid(
            "TELECODER_NOTIFY_SECRET",
            "must be at least 16 characters (e.g. `openssl rand -hex 32`)",
        ));
    }
    if let Some(webhook) = targets
        .iter()
        .find(|t| t.kind == notify::target::Kind::Webhook)
    {
        if secret.is_none() {
            return Err(invalid(
                "TELECODER_NOTIFY_SECRET",
                format!(
                    "not set, but TELECODER_NOTIFY has a webhook target ({}) whose receiver needs it to verify deliveries; generate one with `openssl rand -hex 32`",
                    webhook.label()
                ),
            ));
        }
    }
    let public_url = match value(lookup, "TELECODER_PUBLIC_URL") {
        None => None,
        Some(text) => {
            let url = text.trim().trim_end_matches('/').to_owned();
            let parsed = reqwest::Url::parse(&url).map_err(|err| {
                invalid(
                    "TELECODER_PUBLIC_URL",
                    format!("'{url}' is not a URL: {err}"),
                )
            })?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(invalid(
                    "TELECODER_PUBLIC_URL",
                    format!("'{url}' is not an http(s) URL"),
                ));
            }
            Some(url)
        }
    };
    Ok(NotifySettings {
        targets,
        secret: secret.map(|s| Secret::new(s.trim())),
        public_url,
        max_attempts: bounded(
            lookup,
            "TELECODER_NOTIFY_MAX_ATTEMPTS",
            notify::DEFAULT_MAX_ATTEMPTS,
            50,
        )?,
    })
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

    /// Every resolved value, for `telecoder config`.
    pub fn describe(&self) -> Vec<(String, String)> {
        let s = &self.settings;
        let mut rows = vec![
            ("TELECODER_DATA_DIR", s.data_dir.display().to_string()),
            ("TELECODER_LISTEN_HOST", self.listen_host.clone()),
            ("TELECODER_LISTEN_PORT", self.listen_port.to_string()),
            ("TELECODER_URL", self.url.clone()),
            ("TELECODER_DEFAULT_AGENT", s.default_agent.clone()),
            ("TELECODER_POLICY_MODE", s.default_policy.to_string()),
            ("TELECODER_RUNTIME", s.runtime.as_str().to_owned()),
            ("TELECODER_ACPX_COMMAND", shell_words::join(&s.acpx_command)),
            (
                "TELECODER_PROMPT_TIMEOUT_SECONDS",
                s.prompt_timeout_seconds.to_string(),
            ),
            (
                "TELECODER_APPROVAL_TIMEOUT",
                format!("{}s", s.approval_timeout.as_secs()),
            ),
            (
                "TELECODER_SESSION_HEARTBEAT_SECONDS",
                s.heartbeat.as_secs().to_string(),
            ),
            (
                "TELECODER_SESSION_STALE_SECONDS",
                s.stale.as_secs().to_string(),
            ),
            (
                "TELECODER_MAX_CONCURRENT_SESSIONS",
                s.max_concurrent_sessions.to_string(),
            ),
            ("TELECODER_MAX_OUTPUT_BYTES", s.max_output_bytes.to_string()),
            (
                "TELECODER_LOG_FORMAT",
                if self.json_logs { "json" } else { "text" }.to_owned(),
            ),
            (
                "TELECODER_WATCH_MAX_RUNS_PER_HOUR",
                s.watch_max_runs_per_hour.to_string(),
            ),
            (
                "TELECODER_SCHEDULE_MIN_INTERVAL_SECONDS",
                s.schedule_min_interval.as_secs().to_string(),
            ),
            (
                "TELECODER_WORKSPACE_RETENTION",
                format!("{}s", s.workspace_retention.as_secs()),
            ),
            (
                "TELECODER_WORKSPACE_MAX_BYTES",
                s.workspace_max_bytes
                    .map_or_else(|| "(no cap)".to_owned(), |n| n.to_string()),
            ),
            (
                "TELECODER_WORKSPACE_GC_INTERVAL",
                format!("{}s", s.workspace_gc_interval.as_secs()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect::<Vec<_>>();
        rows.extend(s.agent_commands.iter().map(|(agent, command)| {
            (
                format!("{AGENT_PREFIX}{agent}{AGENT_SUFFIX}"),
                command.clone(),
            )
        }));
        let joined = |items: Vec<String>| {
            if items.is_empty() {
                "(none)".to_owned()
            } else {
                items.join(",")
            }
        };
        rows.push((
            "TELECODER_ALLOWED_ORIGINS".into(),
            joined(
                self.browser
                    .allowed_origins
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
        ));
        rows.push((
            "TELECODER_ALLOWED_HOSTS".into(),
            joined(
                self.browser
                    .allowed_hosts
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
        ));
        let set = |is_set: bool| if is_set { "(set)" } else { "(not set)" };
        rows.push((
            "TELECODER_GITHUB_WEBHOOK_SECRET".into(),
            set(self.github_webhook_secret.is_some()).into(),
        ));
        rows.push((
            "TELECODER_NOTIFY".into(),
            notify_targets(&s.notify).join(" "),
        ));
        rows.push((
            "TELECODER_NOTIFY_SECRET".into(),
            set(s.notify.secret.is_some()).into(),
        ));
        rows.push((
            "TELECODER_NOTIFY_MAX_ATTEMPTS".into(),
            s.notify.max_attempts.to_string(),
        ));
        rows.push((
            "TELECODER_PUBLIC_URL".into(),
            s.notify.public_url.clone().unwrap_or_default(),
        ));
        rows.push(("database".into(), s.database_path().display().to_string()));
        rows
    }
}

/// The targets as `config` shows them: kind, masked URL, filter, and a warning for plain http
/// to another machine.
pub fn notify_targets(notify: &NotifySettings) -> Vec<String> {
    notify
        .targets
        .iter()
        .map(|t| {
            let mut shown = format!("{} (events: {})", t.label(), t.events.describe());
            if t.is_cleartext_remote() {
                shown.push_str(" (warning: plain http to another machine)");
            }
            shown
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let all: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("HOME".to_string(), "/home/u".to_string())])
            .collect();
        Config::from_lookup(&|name| all.get(name).cloned(), &all)
    }

    #[test]
    fn defaults_match_the_contract() {
        let config = config(&[]).expect("defaults are valid");
        assert_eq!(config.listen_port, 7080);
        assert_eq!(config.url, "http://127.0.0.1:7080");
        assert_eq!(
            config.settings.data_dir,
            PathBuf::from("/home/u/.telecoder")
        );
        assert_eq!(config.settings.default_policy, PolicyMode::Observe);
        assert_eq!(config.settings.stale, Duration::from_secs(30));
        assert_eq!(config.settings.runtime, RuntimeKind::Native);
        assert_eq!(config.settings.approval_timeout, Duration::from_secs(1800));
    }

    #[test]
    fn approval_timeouts_take_units() {
        for (text, seconds) in [("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200)] {
            let config = config(&[("TELECODER_APPROVAL_TIMEOUT", text)]).expect("valid");
            assert_eq!(
                config.settings.approval_timeout,
                Duration::from_secs(seconds)
            );
        }
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (pairs, variable) in [
            (
                vec![("TELECODER_LISTEN_PORT", "abc")],
                "TELECODER_LISTEN_PORT",
            ),
            (
                vec![("TELECODER_POLICY_MODE", "yolo")],
                "TELECODER_POLICY_MODE",
            ),
            (
                vec![
                    ("TELECODER_SESSION_HEARTBEAT_SECONDS", "10"),
                    ("TELECODER_SESSION_STALE_SECONDS", "10"),
                ],
                "TELECODER_SESSION_STALE_SECONDS",
            ),
            (
                vec![("TELECODER_ACPX_COMMAND", "'unbalanced")],
                "TELECODER_ACPX_COMMAND",
            ),
            (
                vec![("TELECODER_PROMPT_TIMEOUT_SECONDS", "-1")],
                "TELECODER_PROMPT_TIMEOUT_SECONDS",
            ),
            (
                vec![("TELECODER_WATCH_MAX_RUNS_PER_HOUR", "100000")],
                "TELECODER_WATCH_MAX_RUNS_PER_HOUR",
            ),
            (
                vec![("TELECODER_SCHEDULE_MIN_INTERVAL_SECONDS", "0")],
                "TELECODER_SCHEDULE_MIN_INTERVAL_SECONDS",
            ),
            (vec![("TELECODER_RUNTIME", "node")], "TELECODER_RUNTIME"),
            (
                vec![("TELECODER_APPROVAL_TIMEOUT", "0")],
                "TELECODER_APPROVAL_TIMEOUT",
            ),
            (
                vec![("TELECODER_APPROVAL_TIMEOUT", "soon")],
                "TELECODER_APPROVAL_TIMEOUT",
            ),
            (
                vec![
                    ("TELECODER_POLICY_MODE", "ask"),
                    ("TELECODER_RUNTIME", "acpx"),
                ],
                "TELECODER_POLICY_MODE",
            ),
            (
                vec![(
                    "TELECODER_ALLOWED_ORIGINS",
                    "https://ok.example, evil.example/x",
                )],
                "TELECODER_ALLOWED_ORIGINS",
            ),
            (
                vec![("TELECODER_ALLOWED_HOSTS", "*.example.com")],
                "TELECODER_ALLOWED_HOSTS",
            ),
            (
                vec![("TELECODER_WORKSPACE_RETENTION", "14 days")],
                "TELECODER_WORKSPACE_RETENTION",
            ),
            (
                vec![("TELECODER_WORKSPACE_MAX_BYTES", "0")],
                "TELECODER_WORKSPACE_MAX_BYTES",
            ),
            (
                vec![("TELECODER_WORKSPACE_MAX_BYTES", "12X")],
                "TELECODER_WORKSPACE_MAX_BYTES",
            ),
            (
                vec![("TELECODER_WORKSPACE_GC_INTERVAL", "0")],
                "TELECODER_WORKSPACE_GC_INTERVAL",
            ),
            (
                vec![("TELECODER_NOTIFY", "ftp://example.com/x")],
                "TELECODER_NOTIFY",
            ),
            (
                vec![("TELECODER_NOTIFY", "https://example.com/h?events=done")],
                "TELECODER_NOTIFY",
            ),
            (
                vec![("TELECODER_NOTIFY", "https://example.com/hook")],
                "TELECODER_NOTIFY_SECRET",
            ),
            (
                vec![
                    ("TELECODER_NOTIFY", "ntfy://ntfy.sh/alerts"),
                    ("TELECODER_NOTIFY_SECRET", "short"),
                ],
                "TELECODER_NOTIFY_SECRET",
            ),
            (
                vec![("TELECODER_PUBLIC_URL", "tc.example.com")],
                "TELECODER_PUBLIC_URL",
            ),
            (
                vec![("TELECODER_NOTIFY_MAX_ATTEMPTS", "0")],
                "TELECODER_NOTIFY_MAX_ATTEMPTS",
            ),
        ] {
            let err = config(&pairs).expect_err("must be rejected");
            assert_eq!(err.variable, variable);
            assert!(err.to_string().starts_with(&format!("invalid {variable}:")));
        }
    }

    #[test]
    fn workspace_limits_read_units() {
        let configured = config(&[
            ("TELECODER_WORKSPACE_RETENTION", "36h"),
            ("TELECODER_WORKSPACE_MAX_BYTES", "20G"),
            ("TELECODER_WORKSPACE_GC_INTERVAL", "90"),
        ])
        .expect("valid");
        let s = &configured.settings;
        assert_eq!(s.workspace_retention, Duration::from_secs(36 * 3600));
        assert_eq!(s.workspace_max_bytes, Some(20 << 30));
        assert_eq!(s.workspace_gc_interval, Duration::from_secs(90));
        let defaults = config(&[]).expect("valid");
        assert_eq!(
            defaults.settings.workspace_retention,
            Duration::from_secs(14 * 24 * 3600)
        );
        assert_eq!(defaults.settings.workspace_max_bytes, None);
        let zero = config(&[
            ("TELECODER_WORKSPACE_RETENTION", "0"),
            ("TELECODER_WORKSPACE_MAX_BYTES", "512MiB"),
        ])
        .expect("valid");
        assert_eq!(zero.settings.workspace_retention, Duration::ZERO);
        assert_eq!(zero.settings.workspace_max_bytes, Some(512 << 20));
    }

    #[test]
    fn legacy_permission_mode_maps_to_a_policy() {
        let config = config(&[("TELECODER_PERMISSION_MODE", "approve-all")]).expect("valid");
        assert_eq!(config.settings.default_policy, PolicyMode::Standard);
    }

    #[test]
    fn agent_commands_are_discovered() {
        let config =
            config(&[("TELECODER_AGENT_MY_AGENT_COMMAND", "python3 a.py")]).expect("valid");
        assert_eq!(
            config.settings.agent_command("my-agent"),
            Some("python3 a.py")
        );
        assert_eq!(config.settings.agent_command("other"), None);
    }

    #[test]
    fn notification_secrets_are_redacted_and_masked() {
        let config = config(&[
            (
                "TELECODER_NOTIFY",
                "https://hooks.slack.com/services/T0001/B0002/slackSecretPart0123456 \
                 ntfy://ntfy.sh/alerts-topic?token=tk_ntfyToken0123456789&events=error",
            ),
            ("TELECODER_PUBLIC_URL", "https://tc.example.com/"),
        ])
        .expect("valid");
        let notify = &config.settings.notify;
        assert_eq!(notify.targets.len(), 2);
        assert_eq!(notify.public_url.as_deref(), Some("https://tc.example.com"));
        let redacted = config
            .settings
            .redactor
            .redact("posting to slackSecretPart0123456 with tk_ntfyToken0123456789");
        assert!(!redacted.contains("slackSecret"), "{redacted}");
        assert!(!redacted.contains("tk_ntfyToken"), "{redacted}");
        let shown: String = config
            .describe()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        assert!(!shown.contains("slackSecret"), "{shown}");
        assert!(!shown.contains("tk_ntfyToken"), "{shown}");
        assert!(shown.contains("(events: error)"), "{shown}");
        let blocked = &config.settings.agent_env_blocklist;
        assert!(blocked.iter().any(|v| v == "TELECODER_NOTIFY"));
    }
}
