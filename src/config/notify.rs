//! The notification settings: `TELECODER_NOTIFY`, its secret, the public URL links point
//! at, and the retry budget.

use super::parse::{bounded, invalid, value, ConfigError, Lookup};
use telecoder_actors::notify::{self, NotifySettings};
use telecoder_actors::settings::Secret;

/// `TELECODER_NOTIFY` and its companions (issue 15). A webhook target needs the secret its
/// receivers verify signatures with; plain http to another machine is allowed (a warning is
/// logged at start-up).
pub(super) fn notify_settings(lookup: Lookup<'_>) -> Result<NotifySettings, ConfigError> {
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
