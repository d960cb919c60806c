//! Browser safety. Every web page the user visits can reach a daemon on their machine: a
//! "simple" cross-site request (`text/plain` or form POST) needs no CORS preflight, and DNS
//! rebinding makes a hostile name resolve to 127.0.0.1 so that the page can read answers too.
//! Three checks close that, before any token check:
//!
//! - a body-carrying request must say `Content-Type: application/json` (415 otherwise): no
//!   browser can send that cross-site without a preflight, which we never grant;
//! - a request with an `Origin` header is refused (403) unless that origin is the daemon's own
//!   (an `http`/`https` origin whose `host[:port]` is exactly the request's `Host`) or is
//!   listed in `TELECODER_ALLOWED_ORIGINS`. Behind a reverse proxy that rewrites `Host`
//!   (`proxy_set_header Host 127.0.0.1:7080`), the browser's origin no longer matches: list
//!   the public origin (`https://telecoder.example.com`) there;
//! - on the open default (no API token) the `Host` must be a loopback name or address
//!   (`localhost`, `127.0.0.1`, `[::1]`, any port) or listed in `TELECODER_ALLOWED_HOSTS`,
//!   which defeats DNS rebinding. Routes that authenticate themselves (`/health` reveals
//!   nothing, webhooks carry a signature) skip this one.

use super::errors::ApiError;
use super::route::{Body, Scope};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use warp::http::uri::Authority;
use warp::http::{HeaderMap, Method, StatusCode, Uri};
use warp::Filter;

/// What the checks (and the token gate) read from a request.
#[derive(Clone, Debug)]
pub struct RequestFacts {
    pub method: Method,
    /// From the `Host` header or the request target; `None` when missing or malformed.
    pub host: Option<Authority>,
    headers: HeaderMap,
}

impl RequestFacts {
    /// A header's text, `None` when the request has none. Bytes that are not UTF-8 are
    /// replaced, never dropped: a malformed Origin is still an Origin, and is refused.
    pub fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        self.headers
            .get(name)
            .map(|value| String::from_utf8_lossy(value.as_bytes()))
    }
}

/// Extracts [`RequestFacts`]; never rejects (a malformed `Host` is simply no host).
pub fn facts() -> impl Filter<Extract = (RequestFacts,), Error = std::convert::Infallible> + Clone {
    warp::method()
        .and(warp::host::optional().or(warp::any().map(|| None)).unify())
        .and(warp::header::headers_cloned())
        .map(|method, host, headers| RequestFacts {
            method,
            host,
            headers,
        })
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

/// A host name or address, lower-cased, with a port where one is named: what an origin and
/// an allowed host both come down to.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HostPort {
    host: String,
    port: Option<u16>,
}

impl HostPort {
    fn new(authority: &Authority, port: Option<u16>) -> Self {
        Self {
            host: authority.host().to_ascii_lowercase(),
            port,
        }
    }

    fn names(&self, host: &Authority) -> bool {
        self.host.eq_ignore_ascii_case(host.host())
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host)?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// An `http`/`https` origin, normalised: lower-case scheme and host, the scheme's default
/// port left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebOrigin {
    scheme: String,
    at: HostPort,
}

impl FromStr for WebOrigin {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let uri: Uri = text
            .parse()
            .map_err(|_| format!("'{text}' is not an origin like https://example.com:8443"))?;
        let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!("'{text}' must start with http:// or https://"));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("'{text}' names no host"))?;
        if authority.as_str().contains('@') || authority.host().is_empty() {
            return Err(format!("'{text}' must be scheme://host[:port] only"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "'{text}' must not have a path (an origin is scheme://host[:port])"
            ));
        }
        let port = uri.port_u16().filter(|port| *port != default_port(&scheme));
        Ok(Self {
            at: HostPort::new(authority, port),
            scheme,
        })
    }
}

impl fmt::Display for WebOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.at)
    }
}

impl WebOrigin {
    /// Whether this is the origin of a page served from `host` itself (either scheme: a TLS
    /// proxy that passes `Host` through turns https into http on the way).
    fn is_served_from(&self, host: &Authority) -> bool {
        let port = host
            .port_u16()
            .filter(|port| *port != default_port(&self.scheme));
        self.at.names(host) && self.at.port == port
    }
}

/// An entry of `TELECODER_ALLOWED_HOSTS`: a name or address, with a port or for any port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedHost(HostPort);

impl FromStr for AllowedHost {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let authority: Authority = text.parse().map_err(|_| {
            format!("'{text}' is not a host name like telecoder.example.com[:port]")
        })?;
        if text.contains(['@', '*', '/']) || authority.host().is_empty() {
            return Err(format!(
                "'{text}' must be a host name or address, optionally with :port (no wildcards)"
            ));
        }
        Ok(Self(HostPort::new(&authority, authority.port_u16())))
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl AllowedHost {
    fn matches(&self, host: &Authority) -> bool {
        self.0.names(host) && self.0.port.is_none_or(|port| host.port_u16() == Some(port))
    }
}

fn is_loopback(host: &Authority) -> bool {
    let name = host.host();
    name.eq_ignore_ascii_case("localhost")
        || name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The configured exceptions to the browser checks.
#[derive(Clone, Debug, Default)]
pub struct BrowserPolicy {
    /// `TELECODER_ALLOWED_ORIGINS`: cross-origin pages that may use the API.
    pub allowed_origins: Vec<WebOrigin>,
    /// `TELECODER_ALLOWED_HOSTS`: names an open daemon answers to besides loopback ones.
    pub allowed_hosts: Vec<AllowedHost>,
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, message)
}

impl BrowserPolicy {
    /// The Origin and Host checks for a request to a route of `scope`.
    pub fn check(
        &self,
        scope: Scope,
        tokens_set: bool,
        facts: &RequestFacts,
    ) -> Result<(), ApiError> {
        if let Some(origin) = facts.header("origin") {
            let parsed = origin.parse::<WebOrigin>().ok();
            let own = parsed
                .as_ref()
                .zip(facts.host.as_ref())
                .is_some_and(|(origin, host)| origin.is_served_from(host));
            let listed = parsed
                .as_ref()
                .is_some_and(|origin| self.allowed_origins.contains(origin));
            if !own && !listed {
                return Err(forbidden(format!(
                    "cross-origin request refused: Origin '{origin}' is not this daemon's own \
                     origin; list it in TELECODER_ALLOWED_ORIGINS to allow it"
                )));
            }
        }
        if scope == Scope::Public || tokens_set {
            return Ok(());
        }
        match &facts.host {
            Some(host)
                if is_loopback(host) || self.allowed_hosts.iter().any(|a| a.matches(host)) =>
            {
                Ok(())
            }
            Some(host) => Err(forbidden(format!(
                "Host '{host}' refused: without an API token the daemon answers only to \
                 localhost, 127.0.0.1 and [::1]; list the name in TELECODER_ALLOWED_HOSTS or \
                 set TELECODER_API_TOKEN"
            ))),
            None => Err(forbidden(
                "a valid Host header is required (localhost, 127.0.0.1 or [::1])".to_owned(),
            )),
        }
    }
}

fn is_json(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// The Content-Type check for a request to a route that reads `body`.
pub fn check_content_type(body: Body, facts: &RequestFacts) -> Result<(), ApiError> {
    if facts.method == Method::GET || facts.method == Method::HEAD {
        return Ok(());
    }
    let given = facts.header("content-type");
    let given = given.as_deref();
    let acceptable = match body {
        Body::Own => true,
        Body::Json => given.is_some_and(is_json),
        Body::None => given.is_none_or(is_json),
    };
    if acceptable {
        return Ok(());
    }
    let got = given.map_or("none".to_owned(), |ct| format!("'{ct}'"));
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("send the body as JSON with Content-Type: application/json (got {got})"),
    ))
}

/// Parses a list variable (entries separated by commas or whitespace).
pub fn parse_list<T: FromStr<Err = String>>(text: &str) -> Result<Vec<T>, String> {
    text.split([',', ' ', '\n', '\t'])
        .filter(|entry| !entry.trim().is_empty())
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(method: Method, host: &str, origin: Option<&str>, ct: Option<&str>) -> RequestFacts {
        let mut headers = HeaderMap::new();
        for (name, value) in [("origin", origin), ("content-type", ct)] {
            if let Some(value) = value.and_then(|v| v.parse().ok()) {
                headers.insert(name, value);
            }
        }
        RequestFacts {
            method,
            host: host.parse().ok(),
            headers,
        }
    }

    #[test]
    fn own_origin_is_the_host_itself_under_either_scheme() {
        let policy = BrowserPolicy::default();
        let check = |host: &str, origin: &str| {
            policy
                .check(
                    Scope::Read,
                    true,
                    &facts(Method::GET, host, Some(origin), None),
                )
                .is_ok()
        };
        assert!(check("127.0.0.1:7080", "http://127.0.0.1:7080"));
        assert!(check("t.example.com", "https://t.example.com"));
        assert!(check("t.example.com:443", "https://T.example.com"));
        assert!(!check("127.0.0.1:7080", "http://127.0.0.1:8080"));
        assert!(!check("127.0.0.1:7080", "https://evil.example"));
        assert!(!check("127.0.0.1:7080", "null"));
        assert!(!check("127.0.0.1:7080", "file://"));
    }

    #[test]
    fn listed_origins_and_hosts_are_exceptions() {
        let policy = BrowserPolicy {
            allowed_origins: parse_list("https://dash.example.com, http://localhost:3000")
                .expect("valid"),
            allowed_hosts: parse_list("telecoder.lan box:8080").expect("valid"),
        };
        let ok = |host: &str, origin: Option<&str>| {
            policy
                .check(
                    Scope::Write,
                    false,
                    &facts(Method::POST, host, origin, None),
                )
                .is_ok()
        };
        assert!(ok("127.0.0.1:7080", Some("https://dash.example.com")));
        assert!(ok("127.0.0.1:7080", Some("http://localhost:3000")));
        assert!(!ok("127.0.0.1:7080", Some("http://localhost:3001")));
        assert!(ok("localhost:7080", None));
        assert!(ok("[::1]:7080", None));
        assert!(ok("127.0.0.1", None));
        assert!(ok("telecoder.lan:7080", None));
        assert!(ok("box:8080", None));
        assert!(!ok("box:8081", None));
        assert!(!ok("attacker.example:7080", None));
        assert!(!ok("localhost.attacker.example", None));
    }

    #[test]
    fn tokens_or_public_routes_skip_the_host_check() {
        let policy = BrowserPolicy::default();
        let rebinding = facts(Method::GET, "attacker.example:7080", None, None);
        assert!(policy.check(Scope::Read, false, &rebinding).is_err());
        assert!(policy.check(Scope::Read, true, &rebinding).is_ok());
        assert!(policy.check(Scope::Public, false, &rebinding).is_ok());
    }

    #[test]
    fn bad_list_entries_are_refused() {
        for bad in [
            "*",
            "https://x.example/path",
            "ftp://x.example",
            "null",
            "x.example",
        ] {
            assert!(parse_list::<WebOrigin>(bad).is_err(), "{bad}");
        }
        for bad in ["*.example.com", "http://x", "user@x", "x/y"] {
            assert!(parse_list::<AllowedHost>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn list_entries_show_normalised() {
        let shown = |items: Vec<String>| items.join(" ");
        let origins: Vec<WebOrigin> =
            parse_list("HTTPS://Dash.Example.com:443 http://x:8080").expect("valid");
        assert_eq!(
            shown(origins.iter().map(ToString::to_string).collect()),
            "https://dash.example.com http://x:8080"
        );
        let hosts: Vec<AllowedHost> = parse_list("Box:8080 telecoder.lan").expect("valid");
        assert_eq!(
            shown(hosts.iter().map(ToString::to_string).collect()),
            "box:8080 telecoder.lan"
        );
    }

    #[test]
    fn json_routes_need_json() {
        let post = |ct: Option<&str>| facts(Method::POST, "localhost", None, ct);
        assert!(check_content_type(Body::Json, &post(Some("application/json"))).is_ok());
        assert!(
            check_content_type(Body::Json, &post(Some("Application/JSON; charset=utf-8"))).is_ok()
        );
        for bad in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let err = check_content_type(Body::Json, &post(bad)).expect_err("refused");
            assert_eq!(err.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
        assert!(check_content_type(Body::None, &post(None)).is_ok());
        assert!(check_content_type(Body::None, &post(Some("text/plain"))).is_err());
        assert!(
            check_content_type(Body::Own, &post(Some("application/x-www-form-urlencoded"))).is_ok()
        );
        let get = facts(Method::GET, "localhost", None, Some("text/plain"));
        assert!(check_content_type(Body::None, &get).is_ok());
    }
}
