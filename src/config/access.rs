//! The settings the HTTP edge enforces: API tokens, the browser checks' exceptions and the
//! repositories tasks may name.

use super::parse::{invalid, value, ConfigError, Lookup};
use super::Tokens;
use crate::http::browser::{parse_list, AllowedHost, BrowserPolicy, WebOrigin};

pub(super) fn api_tokens(lookup: Lookup<'_>) -> Result<Tokens, ConfigError> {
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

pub(super) fn allowed_repos(lookup: Lookup<'_>) -> Result<Vec<glob::Pattern>, ConfigError> {
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
pub(super) fn browser_policy(lookup: Lookup<'_>) -> Result<BrowserPolicy, ConfigError> {
    let list = |name: &'static str| value(lookup, name).unwrap_or_default();
    Ok(BrowserPolicy {
        allowed_origins: parse_list::<WebOrigin>(&list("TELECODER_ALLOWED_ORIGINS"))
            .map_err(|err| invalid("TELECODER_ALLOWED_ORIGINS", err))?,
        allowed_hosts: parse_list::<AllowedHost>(&list("TELECODER_ALLOWED_HOSTS"))
            .map_err(|err| invalid("TELECODER_ALLOWED_HOSTS", err))?,
    })
}

pub(super) fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
