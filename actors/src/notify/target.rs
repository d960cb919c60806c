//! Where notifications go: the targets of `TELECODER_NOTIFY`, parsed and checked once at
//! start-up, with what a person may see of them (credentials masked) and what the redactor must
//! hide (the credentials themselves).
//!
//! A target is a URL. Its kind comes from an explicit prefix (`webhook+https://`,
//! `ntfy+https://`, `slack+https://`, each also with `+http`), from the `ntfy://` scheme (an ntfy
//! topic over https), or from the host (`ntfy.sh` is ntfy, `hooks.slack.com` is Slack); any other
//! `http(s)://` URL is a generic JSON webhook. The query parameter `events` is ours (the filter);
//! an ntfy target also takes `token` (sent as a bearer token). Credentials in the URL's user
//! part are sent as HTTP Basic auth, never in the URL.

use super::event::{EventFilter, FILTER_NAMES};
use reqwest::Url;
use sha2::{Digest, Sha256};

/// How a target wants its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Signed JSON (`X-TeleCoder-Signature-256`, `X-TeleCoder-Delivery`).
    Webhook,
    /// An ntfy topic: the text as the body, title/priority/tags/click as headers.
    Ntfy,
    /// A Slack incoming webhook: Slack's `{text, blocks}` message.
    Slack,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Ntfy => "ntfy",
            Self::Slack => "slack",
        }
    }
}

/// Credentials a target's URL carried, sent as a header instead.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    Basic { user: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// One configured destination.
#[derive(Clone, Debug)]
pub struct Target {
    pub kind: Kind,
    /// Where requests go: without our parameters and without credentials.
    url: Url,
    pub auth: Option<Auth>,
    pub events: EventFilter,
    /// Stable identity across restarts (a hash of kind and URL), so a delivery stored for a
    /// target is found again after the daemon restarts with the same configuration.
    key: String,
    /// The URL as a person may see it: secrets masked.
    label: String,
}

impl Target {
    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Plain http to anything but this machine: readable (and alterable) on the way.
    pub fn is_cleartext_remote(&self) -> bool {
        self.url.scheme() == "http" && !self.url.host().is_some_and(is_loopback)
    }

    /// The strings that must never appear in stored or sent text: credentials, Slack's hook
    /// path, an ntfy topic (its name is its password), masked query values.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        match &self.auth {
            Some(Auth::Basic { password, .. }) => secrets.push(password.clone()),
            Some(Auth::Bearer(token)) => secrets.push(token.clone()),
            None => {}
        }
        secrets.extend(
            self.url
                .query_pairs()
                .map(|(_, value)| value.into_owned())
                .filter(|value| !value.is_empty()),
        );
        let segments: Vec<&str> = self.url.path_segments().into_iter().flatten().collect();
        secrets.extend(
            segments
                .iter()
                .enumerate()
                .filter(|(index, segment)| mask_segment(self.kind, *index, segment))
                .map(|(_, segment)| (*segment).to_owned()),
        );
        secrets
    }
}

fn is_loopback(host: url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(name) => name == "localhost",
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Parses `TELECODER_NOTIFY`: targets separated by white space (commas belong to `?events=`).
pub fn parse_targets(text: &str) -> Result<Vec<Target>, String> {
    let mut targets: Vec<Target> = Vec::new();
    for item in text.split_whitespace() {
        let target = parse_target(item)?;
        if targets.iter().any(|t| t.key == target.key) {
            return Err(format!("{} is listed twice", target.label));
        }
        targets.push(target);
    }
    Ok(targets)
}

/// One target URL.
pub fn parse_target(text: &str) -> Result<Target, String> {
    if let Some(at) = text.find(",http").or_else(|| text.find(",ntfy")) {
        return Err(format!(
            "'{}…' looks like two targets joined by a comma; separate targets with spaces",
            &text[..at.min(40)]
        ));
    }
    let (kind, rest) = explicit_kind(text);
    let mut url =
        Url::parse(rest).map_err(|err| format!("'{}' is not a URL: {err}", mask_text(rest)))?;
    let kind = match (kind, url.scheme()) {
        (Some(kind), "http" | "https") => kind,
        (None, "ntfy") => {
            url = with_scheme(&url, "https")?;
            Kind::Ntfy
        }
        (None, "http" | "https") => guess_kind(&url),
        (_, scheme) => {
            return Err(format!(
                "'{}': unsupported scheme '{scheme}' (use https://, http://, ntfy://, or a \
                 webhook+, ntfy+ or slack+ prefix)",
                mask_text(text)
            ))
        }
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("'{}' has no host", mask_text(text)));
    }
    url.set_fragment(None);
    let events = take_query(&mut url, "events")
        .map(|names| EventFilter::parse(&names))
        .transpose()
        .map_err(|err| {
            format!(
                "{}: {err} (known: {})",
                mask_text(text),
                FILTER_NAMES.join(", ")
            )
        })?
        .unwrap_or_default();
    let mut auth = take_userinfo(&mut url)?;
    if kind == Kind::Ntfy {
        check_topic(&url)?;
        if let Some(token) = take_query(&mut url, "token") {
            auth = Some(Auth::Bearer(token));
        }
    }
    let key = target_key(kind, &url, &auth);
    let label = label(kind, &url, auth.is_some());
    Ok(Target {
        kind,
        url,
        auth,
        events,
        key,
        label,
    })
}

/// `webhook+https://…`, `ntfy+http://…`, `slack+https://…`: the kind and the real URL.
fn explicit_kind(text: &str) -> (Option<Kind>, &str) {
    for (prefix, kind) in [
        ("webhook+", Kind::Webhook),
        ("ntfy+", Kind::Ntfy),
        ("slack+", Kind::Slack),
    ] {
        if let Some(rest) = text.strip_prefix(prefix) {
            return (Some(kind), rest);
        }
    }
    (None, text)
}

/// The well-known hosts; everything else is a generic webhook.
fn guess_kind(url: &Url) -> Kind {
    match url.host_str() {
        Some("hooks.slack.com") => Kind::Slack,
        Some("ntfy.sh") => Kind::Ntfy,
        _ => Kind::Webhook,
    }
}

/// `ntfy://host/topic` means `https://host/topic` (the url crate keeps special and custom
/// schemes apart, so the URL is rebuilt rather than re-schemed).
fn with_scheme(url: &Url, scheme: &str) -> Result<Url, String> {
    let rest = &url.as_str()[url.scheme().len()..];
    Url::parse(&format!("{scheme}{rest}"))
        .map_err(|err| format!("{}: {err}", mask_text(url.as_str())))
}

fn take_query(url: &mut Url, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let found = pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone());
    if found.is_some() {
        let kept: Vec<&(String, String)> = pairs.iter().filter(|(k, _)| k != name).collect();
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    found
}

/// Credentials in the URL become a header (never logged, never part of the URL sent).
fn take_userinfo(url: &mut Url) -> Result<Option<Auth>, String> {
    let user = percent_decode(url.username());
    let password = url.password().map(percent_decode);
    if user.is_empty() && password.is_none() {
        return Ok(None);
    }
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok(Some(Auth::Basic {
        user,
        password: password.unwrap_or_default(),
    }))
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// ntfy topics are one path segment of letters, digits, `-` and `_`, at most 64 long.
fn check_topic(url: &Url) -> Result<(), String> {
    let segments: Vec<&str> = url
        .path_segments()
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect();
    let ok = match segments.as_slice() {
        [topic] => {
            topic.len() <= 64
                && topic
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{}': an ntfy target is https://host/topic (topic: letters, digits, - and _)",
            mask_text(url.as_str())
        ))
    }
}

fn target_key(kind: Kind, url: &Url, auth: &Option<Auth>) -> String {
    let mut hash = Sha256::new();
    hash.update(kind.as_str().as_bytes());
    hash.update(b"\n");
    hash.update(url.as_str().as_bytes());
    if let Some(Auth::Basic { user, .. }) = auth {
        hash.update(b"\n");
        hash.update(user.as_bytes());
    }
    hex::encode(&hash.finalize()[..8])
}

/// Whether a path segment may carry a secret: everything after Slack's `/services/`, an ntfy
/// topic, and anything in a webhook path that does not read like a word (ids, tokens).
fn mask_segment(kind: Kind, index: usize, segment: &str) -> bool {
    match kind {
        Kind::Slack => index > 0,
        Kind::Ntfy => true,
        Kind::Webhook => {
            let wordlike = segment.len() < 24
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_' || b == b'.');
            !segment.is_empty() && !wordlike
        }
    }
}

/// The target as `config` and the admin views show it.
fn label(kind: Kind, url: &Url, has_auth: bool) -> String {
    let mut shown = format!("{}://", url.scheme());
    if has_auth {
        shown.push_str("***@");
    }
    shown.push_str(url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    for (index, segment) in url.path_segments().into_iter().flatten().enumerate() {
        shown.push('/');
        if !mask_segment(kind, index, segment) {
            shown.push_str(segment);
        } else if kind == Kind::Ntfy {
            // Enough of the topic to tell two apart, not enough to publish or subscribe.
            shown.push_str(&segment.chars().take(3).collect::<String>());
            shown.push_str("***");
        } else {
            shown.push_str("***");
        }
    }
    let query: Vec<String> = url.query_pairs().map(|(k, _)| format!("{k}=***")).collect();
    if !query.is_empty() {
        shown.push('?');
        shown.push_str(&query.join("&"));
    }
    format!("{} {shown}", kind.as_str())
}

/// Best effort for error messages about text that did not parse: no query, no user part.
fn mask_text(text: &str) -> String {
    let no_query = text.split(['?', '#']).next().unwrap_or_default();
    match no_query.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) if !host.contains('/') || rest.find('@') < rest.find('/') => {
                format!("{scheme}://***@{host}")
            }
            _ => no_query.to_owned(),
        },
        None => no_query.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Target {
        parse_target(text).unwrap_or_else(|err| panic!("{text}: {err}"))
    }

    #[test]
    fn kinds_come_from_prefix_scheme_or_host() {
        assert_eq!(one("https://example.com/hook").kind, Kind::Webhook);
        assert_eq!(one("http://127.0.0.1:9000/hook").kind, Kind::Webhook);
        assert_eq!(one("ntfy://ntfy.example.com/alerts").kind, Kind::Ntfy);
        assert_eq!(
            one("ntfy://ntfy.example.com/alerts").url().as_str(),
            "https://ntfy.example.com/alerts"
        );
        assert_eq!(one("https://ntfy.sh/alerts").kind, Kind::Ntfy);
        assert_eq!(one("ntfy+http://127.0.0.1:8080/alerts").kind, Kind::Ntfy);
        assert_eq!(
            one("https://hooks.slack.com/services/T0/B0/abcdefghijklmnopqrstuvwx").kind,
            Kind::Slack
        );
        assert_eq!(
            one("slack+http://127.0.0.1:1/services/T0/B0/x").kind,
            Kind::Slack
        );
        assert_eq!(one("webhook+https://ntfy.sh/not-ntfy").kind, Kind::Webhook);
    }

    #[test]
    fn our_parameters_and_credentials_leave_the_url() {
        let target = one("ntfy://user:pa%40ss@ntfy.example.com/alerts?events=finished&x=1");
        assert_eq!(target.url().as_str(), "https://ntfy.example.com/alerts?x=1");
        assert_eq!(
            target.auth,
            Some(Auth::Basic {
                user: "user".into(),
                password: "pa@ss".into()
            })
        );
        let target = one("ntfy://ntfy.example.com/alerts?token=tk_abcdefghijklmnop");
        assert_eq!(target.url().as_str(), "https://ntfy.example.com/alerts");
        assert_eq!(
            target.auth,
            Some(Auth::Bearer("tk_abcdefghijklmnop".into()))
        );
    }

    #[test]
    fn labels_mask_secrets() {
        let slack = one("https://hooks.slack.com/services/T0001/B0002/abcdefghijklmnopqrstuvwx");
        assert_eq!(
            slack.label(),
            "slack https://hooks.slack.com/services/***/***/***"
        );
        assert!(slack
            .secrets()
            .contains(&"abcdefghijklmnopqrstuvwx".to_owned()));
        let ntfy = one("ntfy://ntfy.sh/telecoder-alerts-42?token=tk_secret123456789");
        assert_eq!(ntfy.label(), "ntfy https://***@ntfy.sh/tel***");
        assert!(ntfy.secrets().contains(&"tk_secret123456789".to_owned()));
        assert!(ntfy.secrets().contains(&"telecoder-alerts-42".to_owned()));
        let hook = one(
            "https://example.com/api/webhooks/1234567/aBcD3fGhIjKlMnOp?sig=xyz123456&events=error",
        );
        assert_eq!(
            hook.label(),
            "webhook https://example.com/api/webhooks/***/***?sig=***"
        );
        assert!(!hook.label().contains("aBcD3f"));
    }

    #[test]
    fn filters_parse_and_unknown_names_are_refused() {
        let target = one("https://example.com/h?events=finished,approval");
        assert!(target.events.names().contains(&"approval"));
        let err = parse_target("https://example.com/h?events=finshed").expect_err("typo");
        assert!(err.contains("finshed"), "{err}");
    }

    #[test]
    fn bad_targets_are_refused_with_a_reason() {
        for (text, needle) in [
            ("ftp://example.com/x", "unsupported scheme"),
            ("not a url", "not a URL"),
            ("ntfy://ntfy.sh/a/b", "ntfy target"),
            ("ntfy://ntfy.sh/", "ntfy target"),
            (
                "https://a.example/h,https://b.example/h",
                "separate targets with spaces",
            ),
        ] {
            let err = parse_target(text).expect_err(text);
            assert!(err.contains(needle), "{text}: {err}");
        }
        let err = parse_targets("https://a.example/h https://a.example/h").expect_err("dup");
        assert!(err.contains("twice"), "{err}");
        let err = parse_target("ftp://user:hunter2hunter2@example.com/x").expect_err("scheme");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn keys_are_stable_and_ignore_filters() {
        let a = one("https://example.com/h?events=error");
        let b = one("https://example.com/h?events=finished");
        assert_eq!(a.key(), b.key());
        assert_ne!(a.key(), one("https://example.com/other").key());
    }

    #[test]
    fn cleartext_remote_targets_are_told_apart() {
        assert!(one("http://example.com/h").is_cleartext_remote());
        assert!(!one("http://127.0.0.1:9/h").is_cleartext_remote());
        assert!(!one("http://[::1]:9/h").is_cleartext_remote());
        assert!(!one("https://example.com/h").is_cleartext_remote());
    }
}
