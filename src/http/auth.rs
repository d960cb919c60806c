//! Bearer-token authentication, checked before any route runs. `/health` is public and GitHub
//! webhooks authenticate with their HMAC signature instead. Tokens are compared in constant
//! time.

use crate::config::Tokens;
use std::sync::Arc;
use warp::http::{Method, StatusCode};
use warp::path::FullPath;
use warp::reject::Reject;
use warp::{Filter, Rejection};

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Public,
    Read,
    Write,
    Admin,
}

fn scope_of(method: &Method, path: &str) -> Scope {
    if path == "/health" || path == "/webhooks/github" {
        Scope::Public
    } else if path.starts_with("/admin") || path == "/metrics" {
        Scope::Admin
    } else if method == Method::GET || method == Method::HEAD {
        Scope::Read
    } else {
        Scope::Write
    }
}

/// The rejection for a missing or insufficient token; turned into 401/403 by `recover`.
#[derive(Debug)]
pub struct Unauthorized {
    pub status: StatusCode,
    pub message: &'static str,
}

impl Reject for Unauthorized {}

fn matches(expected: &Option<String>, presented: &str) -> bool {
    expected.as_deref().is_some_and(|token| {
        constant_time_eq::constant_time_eq(token.as_bytes(), presented.as_bytes())
    })
}

/// The scopes a presented token grants.
fn granted(tokens: &Tokens, presented: &str) -> Option<&'static [Scope]> {
    const ADMIN: &[Scope] = &[Scope::Read, Scope::Write, Scope::Admin];
    const FULL: &[Scope] = &[Scope::Read, Scope::Write];
    const READ: &[Scope] = &[Scope::Read];
    if matches(&tokens.admin, presented) {
        Some(ADMIN)
    } else if matches(&tokens.full, presented) {
        // Without a dedicated admin token, the full token also administers.
        Some(if tokens.admin.is_none() { ADMIN } else { FULL })
    } else if matches(&tokens.read, presented) {
        Some(READ)
    } else {
        None
    }
}

fn check(
    tokens: &Tokens,
    method: &Method,
    path: &str,
    header: Option<&str>,
) -> Result<(), Unauthorized> {
    let scope = scope_of(method, path);
    if scope == Scope::Public || !tokens.any() {
        return Ok(());
    }
    let presented = header
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or(Unauthorized {
            status: StatusCode::UNAUTHORIZED,
            message: "missing bearer token (Authorization: Bearer <TELECODER_API_TOKEN>)",
        })?;
    match granted(tokens, presented) {
        None => Err(Unauthorized {
            status: StatusCode::UNAUTHORIZED,
            message: "invalid bearer token",
        }),
        Some(scopes) if scopes.contains(&scope) => Ok(()),
        Some(_) => Err(Unauthorized {
            status: StatusCode::FORBIDDEN,
            message: "this token's scope does not allow this request",
        }),
    }
}

/// Who made a request, as an approval records it (issue 15): `cli` or `api` (the CLI says so
/// in its User-Agent), and the kind of token that let it in (`cli (full token)`,
/// `api (admin token)`, `api (no token)` on an open daemon).
pub fn requester(tokens: &Tokens, authorization: Option<&str>, user_agent: Option<&str>) -> String {
    let via = if user_agent.is_some_and(|agent| agent.starts_with(crate::client::USER_AGENT_PREFIX))
    {
        "cli"
    } else {
        "api"
    };
    let presented = authorization
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim);
    let token = match presented {
        _ if !tokens.any() => "no token",
        Some(token) if matches(&tokens.admin, token) => "admin token",
        Some(token) if matches(&tokens.full, token) => "full token",
        Some(token) if matches(&tokens.read, token) => "read token",
        _ => "unknown token",
    };
    format!("{via} ({token})")
}

/// Passes when the request may proceed; rejects with [`Unauthorized`] otherwise.
pub fn gate(tokens: Arc<Tokens>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("authorization"))
        .and_then(
            move |method: Method, path: FullPath, header: Option<String>| {
                let tokens = tokens.clone();
                async move {
                    check(&tokens, &method, path.as_str(), header.as_deref())
                        .map_err(warp::reject::custom)
                }
            },
        )
        .untuple_one()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens {
            full: Some("full-token-0123456789".into()),
            read: Some("read-token-0123456789".into()),
            admin: Some("admin-token-0123456789".into()),
        }
    }

    #[test]
    fn scopes_are_enforced() {
        let t = tokens();
        let bearer = |token: &str| format!("Bearer {token}");
        assert!(check(&t, &Method::GET, "/health", None).is_ok());
        assert!(check(&t, &Method::POST, "/webhooks/github", None).is_ok());
        assert_eq!(
            check(&t, &Method::GET, "/api/sessions", None).map_err(|e| e.status),
            Err(StatusCode::UNAUTHORIZED)
        );
        assert!(check(
            &t,
            &Method::GET,
            "/api/sessions",
            Some(&bearer("read-token-0123456789"))
        )
        .is_ok());
        assert_eq!(
            check(
                &t,
                &Method::POST,
                "/api/sessions",
                Some(&bearer("read-token-0123456789"))
            )
            .map_err(|e| e.status),
            Err(StatusCode::FORBIDDEN)
        );
        assert!(check(
            &t,
            &Method::POST,
            "/api/sessions",
            Some(&bearer("full-token-0123456789"))
        )
        .is_ok());
        assert_eq!(
            check(
                &t,
                &Method::GET,
                "/admin/actors",
                Some(&bearer("full-token-0123456789"))
            )
            .map_err(|e| e.status),
            Err(StatusCode::FORBIDDEN)
        );
        assert!(check(
            &t,
            &Method::GET,
            "/admin/actors",
            Some(&bearer("admin-token-0123456789"))
        )
        .is_ok());
        assert_eq!(
            check(
                &t,
                &Method::GET,
                "/api/sessions",
                Some(&bearer("nope-nope-nope-nope"))
            )
            .map_err(|e| e.status),
            Err(StatusCode::UNAUTHORIZED)
        );
    }

    #[test]
    fn requesters_are_named_by_client_and_token() {
        let t = tokens();
        let cli = format!("{}0.1.0", crate::client::USER_AGENT_PREFIX);
        assert_eq!(
            requester(&t, Some("Bearer full-token-0123456789"), Some(&cli)),
            "cli (full token)"
        );
        assert_eq!(
            requester(&t, Some("Bearer admin-token-0123456789"), Some("curl/8")),
            "api (admin token)"
        );
        assert_eq!(requester(&Tokens::default(), None, None), "api (no token)");
    }

    #[test]
    fn no_tokens_means_open_loopback_api() {
        assert!(check(&Tokens::default(), &Method::POST, "/api/sessions", None).is_ok());
    }
}
