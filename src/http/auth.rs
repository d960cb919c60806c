//! Bearer-token authentication against the scope a route declares (`route::declare`), so the
//! scope always belongs to the route that serves the request. `/health` is public and GitHub
//! webhooks authenticate with their HMAC signature instead. Tokens are compared in constant
//! time.

use super::errors::ApiError;
use super::route::Scope;
use crate::config::Tokens;
use warp::http::StatusCode;

fn matches(expected: &Option<String>, presented: &str) -> bool {
    expected.as_deref().is_some_and(|token| {
        constant_time_eq::constant_time_eq(token.as_bytes(), presented.as_bytes())
    })
}

/// The scopes a presented token grants (also read by the dashboard's logins).
pub(super) fn granted(tokens: &Tokens, presented: &str) -> Option<&'static [Scope]> {
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

/// The credentials of an `Authorization: Bearer <token>` header. The scheme name is
/// case-insensitive (RFC 7235), the token is not.
pub(super) fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(char::is_whitespace)?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

fn refused(status: StatusCode, message: &str) -> ApiError {
    ApiError::new(status, message)
}

/// Passes when a request with this `Authorization` header may use a route of `scope`: 401
/// for a missing or unknown token, 403 for a token of too small a scope.
pub fn check(tokens: &Tokens, scope: Scope, header: Option<&str>) -> Result<(), ApiError> {
    if scope == Scope::Public || !tokens.any() {
        return Ok(());
    }
    let presented = header.and_then(bearer).ok_or_else(|| {
        refused(
            StatusCode::UNAUTHORIZED,
            "missing bearer token (Authorization: Bearer <TELECODER_API_TOKEN>)",
        )
    })?;
    match granted(tokens, presented) {
        None => Err(refused(StatusCode::UNAUTHORIZED, "invalid bearer token")),
        Some(scopes) if scopes.contains(&scope) => Ok(()),
        Some(_) => Err(refused(
            StatusCode::FORBIDDEN,
            "this token's scope does not allow this request",
        )),
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
    let token = match authorization.and_then(bearer) {
        _ if !tokens.any() => "no token",
        Some(token) => token_kind(tokens, token),
        None => "unknown token",
    };
    format!("{via} ({token})")
}

/// Which configured token `presented` is, as records name it (`full token`; also what a
/// dashboard login remembers of the token it was made with).
pub(super) fn token_kind(tokens: &Tokens, presented: &str) -> &'static str {
    if matches(&tokens.admin, presented) {
        "admin token"
    } else if matches(&tokens.full, presented) {
        "full token"
    } else if matches(&tokens.read, presented) {
        "read token"
    } else {
        "unknown token"
    }
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

    fn status(scope: Scope, header: Option<&str>) -> Option<StatusCode> {
        check(&tokens(), scope, header).err().map(|e| e.status)
    }

    #[test]
    fn scopes_are_enforced() {
        let (read, full, admin) = (
            Some("read-token-0123456789"),
            Some("full-token-0123456789"),
            Some("admin-token-0123456789"),
        );
        for (scope, token, expected) in [
            (Scope::Public, None, None),
            (Scope::Read, None, Some(StatusCode::UNAUTHORIZED)),
            (Scope::Read, read, None),
            (Scope::Write, read, Some(StatusCode::FORBIDDEN)),
            (Scope::Write, full, None),
            (Scope::Admin, full, Some(StatusCode::FORBIDDEN)),
            (Scope::Admin, admin, None),
            (
                Scope::Read,
                Some("nope-nope-nope-nope"),
                Some(StatusCode::UNAUTHORIZED),
            ),
        ] {
            let header = token.map(|token| format!("Bearer {token}"));
            assert_eq!(
                status(scope, header.as_deref()),
                expected,
                "{scope:?} with {token:?}"
            );
        }
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
            requester(&t, Some("bearer admin-token-0123456789"), Some("curl/8")),
            "api (admin token)"
        );
        assert_eq!(requester(&Tokens::default(), None, None), "api (no token)");
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_is_not() {
        for header in [
            "bearer read-token-0123456789",
            "BEARER read-token-0123456789",
            "BeArEr   read-token-0123456789 ",
        ] {
            assert_eq!(status(Scope::Read, Some(header)), None, "{header}");
        }
        for header in [
            "Bearer READ-TOKEN-0123456789",
            "Basic read-token-0123456789",
            "Bearerread-token-0123456789",
            "Bearer",
        ] {
            assert_eq!(
                status(Scope::Read, Some(header)),
                Some(StatusCode::UNAUTHORIZED),
                "{header}"
            );
        }
    }

    #[test]
    fn no_tokens_means_open_loopback_api() {
        assert!(check(&Tokens::default(), Scope::Write, None).is_ok());
    }
}
