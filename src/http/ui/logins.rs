//! Dashboard logins: a browser exchanges an API token for a cookie once, and the cookie then
//! stands in for the token (with the token's scope) on every request the page makes.
//!
//! The cookie is not the token: it is a random 256-bit login id, and the daemon keeps what
//! the id grants (scope, CSRF token, age) in memory, keyed by the id's SHA-256. So a stolen
//! cookie is worth one login, ends with logout, expiry or a daemon restart (every browser logs
//! in again then — no login survives a change of tokens either), and never reveals the token.
//!
//! Cookie-authenticated writes need the login's CSRF token in `X-CSRF-Token` on top of the
//! browser checks (Origin, JSON Content-Type, SameSite=Strict). Requests with an
//! `Authorization` header never look at the cookie: bearer clients are unaffected.

use crate::config::Tokens;
use crate::http::errors::ApiError;
use crate::http::route::Scope;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use warp::http::{Method, StatusCode};

/// The cookie's name.
pub const COOKIE: &str = "telecoder_login";
/// The header that carries a login's CSRF token on writes.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A login ends this long after it was made, used or not (also the cookie's Max-Age).
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// A login unused for this long ends early (a forgotten phone does not stay logged in).
pub const IDLE: Duration = Duration::from_secs(24 * 3600);
/// Logins kept at once; making one more drops expired ones, then the least recently used.
/// Only holders of a valid token can make logins, so this bounds memory, not abuse.
const MAX_LOGINS: usize = 1024;

/// What one login grants.
#[derive(Clone, Debug)]
pub struct Login {
    pub scopes: &'static [Scope],
    /// Which token it was made with (`full token`), for the records of what it did.
    pub token: &'static str,
    /// Required in [`CSRF_HEADER`] on this login's writes.
    pub csrf: String,
    made: Instant,
    used: Instant,
}

impl Login {
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.made) >= MAX_AGE || now.duration_since(self.used) >= IDLE
    }
}

/// The logins this daemon made, in memory only.
#[derive(Default)]
pub struct Logins {
    by_hash: Mutex<HashMap<[u8; 32], Login>>,
}

/// A fresh random secret as hex; `None` when the OS has no randomness to give (a login is
/// then refused, never made from a guessable value).
fn secret() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim() == name).then(|| value.trim().trim_matches('"'))
    })
}

impl Logins {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Login>> {
        // A poisoned map still holds valid logins.
        self.by_hash.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes a login with `scopes` from a `token` of that kind; returns its id (the cookie's
    /// value) and the login.
    pub fn create(
        &self,
        scopes: &'static [Scope],
        token: &'static str,
    ) -> Result<(String, Login), ApiError> {
        let unavailable = || {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot make a login: the system's random source failed",
            )
        };
        let id = secret().ok_or_else(unavailable)?;
        let now = Instant::now();
        let login = Login {
            scopes,
            token,
            csrf: secret().ok_or_else(unavailable)?,
            made: now,
            used: now,
        };
        let mut map = self.map();
        if map.len() >= MAX_LOGINS {
            map.retain(|_, login| !login.expired(now));
        }
        if map.len() >= MAX_LOGINS {
            let oldest = map
                .iter()
                .min_by_key(|(_, login)| login.used)
                .map(|(key, _)| *key);
            if let Some(key) = oldest {
                map.remove(&key);
            }
        }
        map.insert(digest(&id), login.clone());
        Ok((id, login))
    }

    /// The live login with this id, marked as used; an expired one is dropped.
    pub fn find(&self, id: &str) -> Option<Login> {
        let key = digest(id);
        let now = Instant::now();
        let mut map = self.map();
        let login = map.get_mut(&key)?;
        if login.expired(now) {
            map.remove(&key);
            return None;
        }
        login.used = now;
        Some(login.clone())
    }

    /// Ends a login (logout).
    pub fn remove(&self, id: &str) {
        self.map().remove(&digest(id));
    }

    /// Logins kept (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }

    /// The gate for a request that carries no `Authorization` header: `None` when the login
    /// cookie does not apply (open daemon, public route, a bearer token, no cookie), else
    /// whether the login lets the request through — its scope, and on a write its CSRF token.
    pub fn admit(
        &self,
        tokens: &Tokens,
        scope: Scope,
        request: &CookieFacts<'_>,
    ) -> Option<Result<(), ApiError>> {
        if scope == Scope::Public || !tokens.any() || request.authorization {
            return None;
        }
        let id = request
            .cookie
            .and_then(|header| cookie_value(header, COOKIE))?;
        let Some(login) = self.find(id) else {
            return Some(Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "your dashboard login has ended (logged out, expired or the daemon restarted); \
                 log in again",
            )));
        };
        if !login.scopes.contains(&scope) {
            return Some(Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "this login's scope does not allow this request",
            )));
        }
        let reads = request.method == Method::GET || request.method == Method::HEAD;
        let csrf_ok = request.csrf.is_some_and(|given| {
            constant_time_eq::constant_time_eq(given.trim().as_bytes(), login.csrf.as_bytes())
        });
        if !reads && !csrf_ok {
            return Some(Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token: a logged-in browser's writes carry the login's \
                 token in X-CSRF-Token",
            )));
        }
        Some(Ok(()))
    }
}

/// What [`Logins::admit`] reads from a request.
pub struct CookieFacts<'a> {
    pub method: &'a Method,
    /// Whether an `Authorization` header was sent (then the cookie is ignored).
    pub authorization: bool,
    pub cookie: Option<&'a str>,
    pub csrf: Option<&'a str>,
}

/// Whether the request reached the proxy in front of the daemon over TLS, as that proxy says
/// in `X-Forwarded-Proto` (its first entry). Only this header is trusted, and only for the
/// cookie's `Secure` flag: a client that lies about it can only keep its own cookie from
/// being sent back over plain HTTP.
pub fn came_over_tls(forwarded_proto: Option<&str>) -> bool {
    forwarded_proto
        .and_then(|value| value.split(',').next())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// The `Set-Cookie` value that hands a login to the browser.
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
        MAX_AGE.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that makes the browser forget its login.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITE: &[Scope] = &[Scope::Read, Scope::Write];
    const READ: &[Scope] = &[Scope::Read];

    fn tokens() -> Tokens {
        Tokens {
            full: Some("full-token-0123456789".into()),
            ..Tokens::default()
        }
    }

    fn facts<'a>(method: &'a Method, cookie: &'a str, csrf: Option<&'a str>) -> CookieFacts<'a> {
        CookieFacts {
            method,
            authorization: false,
            cookie: Some(cookie),
            csrf,
        }
    }

    fn status(result: Option<Result<(), ApiError>>) -> Option<StatusCode> {
        result.and_then(|r| r.err()).map(|e| e.status)
    }

    #[test]
    fn a_login_is_random_and_not_the_token() {
        let logins = Logins::default();
        let (a, login) = logins.create(WRITE, "full token").expect("login");
        let (b, _) = logins.create(WRITE, "full token").expect("login");
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_ne!(login.csrf, a);
        assert!(logins.find(&a).is_some());
        assert!(logins.find("not-a-login").is_none());
        logins.remove(&a);
        assert!(logins.find(&a).is_none());
    }

    #[test]
    fn writes_need_the_csrf_token_and_the_scope() {
        let logins = Logins::default();
        let (id, login) = logins.create(WRITE, "full token").expect("login");
        let cookie = format!("other=1; {COOKIE}={id}");
        let (get, post) = (Method::GET, Method::POST);
        let tokens = tokens();
        let admit =
            |method, csrf, scope| logins.admit(&tokens, scope, &facts(method, &cookie, csrf));
        assert!(matches!(admit(&get, None, Scope::Read), Some(Ok(()))));
        assert_eq!(
            status(admit(&post, None, Scope::Write)),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            status(admit(&post, Some("nope"), Scope::Write)),
            Some(StatusCode::FORBIDDEN)
        );
        assert!(matches!(
            admit(&post, Some(&login.csrf), Scope::Write),
            Some(Ok(()))
        ));
        assert_eq!(
            status(admit(&get, None, Scope::Admin)),
            Some(StatusCode::FORBIDDEN)
        );
        let (read_id, read) = logins.create(READ, "read token").expect("login");
        let read_cookie = format!("{COOKIE}={read_id}");
        let refused = logins.admit(
            &tokens,
            Scope::Write,
            &facts(&post, &read_cookie, Some(&read.csrf)),
        );
        assert_eq!(status(refused), Some(StatusCode::FORBIDDEN));
    }

    #[test]
    fn the_cookie_applies_only_without_a_bearer_token_on_a_tokened_daemon() {
        let logins = Logins::default();
        let post = Method::POST;
        let unknown = format!("{COOKIE}=0000");
        let mut request = facts(&post, &unknown, None);
        assert_eq!(
            status(logins.admit(&tokens(), Scope::Write, &request)),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert!(logins
            .admit(&Tokens::default(), Scope::Write, &request)
            .is_none());
        assert!(logins.admit(&tokens(), Scope::Public, &request).is_none());
        request.authorization = true;
        assert!(logins.admit(&tokens(), Scope::Write, &request).is_none());
        let no_cookie = CookieFacts {
            method: &post,
            authorization: false,
            cookie: Some("something=else"),
            csrf: None,
        };
        assert!(logins.admit(&tokens(), Scope::Write, &no_cookie).is_none());
    }

    #[test]
    fn expired_logins_are_gone_and_the_map_is_bounded() {
        let logins = Logins::default();
        let (id, _) = logins.create(READ, "read token").expect("login");
        {
            let mut map = logins.map();
            let login = map.get_mut(&digest(&id)).expect("kept");
            let long_ago = Instant::now().checked_sub(IDLE + Duration::from_secs(1));
            match long_ago {
                Some(at) => login.used = at,
                None => return, // a machine up for less than a day: nothing to age
            }
        }
        assert!(logins.find(&id).is_none());
        assert_eq!(logins.len(), 0);
        for _ in 0..MAX_LOGINS + 10 {
            logins.create(READ, "read token").expect("login");
        }
        assert_eq!(logins.len(), MAX_LOGINS);
    }

    #[test]
    fn cookies_and_proxies_are_read_strictly() {
        assert_eq!(
            cookie_value("a=1; telecoder_login=abc", COOKIE),
            Some("abc")
        );
        assert_eq!(cookie_value("xtelecoder_login=abc", COOKIE), None);
        assert!(came_over_tls(Some("https")));
        assert!(came_over_tls(Some("HTTPS, http")));
        assert!(!came_over_tls(Some("http, https")));
        assert!(!came_over_tls(None));
        assert!(set_cookie("x", true).ends_with("; Secure"));
        assert!(set_cookie("x", false).contains("HttpOnly; SameSite=Strict"));
    }
}
