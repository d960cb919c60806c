//! The dashboard's files, embedded in the binary: one HTML shell for every page, hand-written
//! ES modules and one stylesheet (no build step, no CDN: the daemon runs offline). Every answer
//! carries a Content-Security-Policy that allows scripts, styles and connections from the
//! daemon's own origin only and no inline script, so text an agent wrote can never run even if
//! it reached the page as markup (the modules only ever insert it as text).

use sha2::{Digest, Sha256};
use std::sync::LazyLock;
use warp::http::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

/// Own origin only; no inline script or style, no plugins, no framing, no foreign form targets.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file under `/assets/`.
pub static ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("sessions.js", JS),
    asset!("session.js", JS),
    asset!("stream.js", JS),
    asset!("approvals.js", JS),
    asset!("watches.js", JS),
    asset!("forms.js", JS),
    asset!("admin.js", JS),
];

/// The page every dashboard path serves; the modules draw the page the path names.
pub static SHELL: Asset = asset!("index.html", "text/html; charset=utf-8");

/// Strong validators, computed once: a reload revalidates (no stale dashboard after an
/// upgrade) and gets a 304 when nothing changed.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .chain(std::iter::once(&SHELL))
        .map(|asset| format!("\"{}\"", &hex::encode(Sha256::digest(asset.body))[..20]))
        .collect()
});

fn etag_of(asset: &Asset) -> &'static str {
    let index = ASSETS
        .iter()
        .position(|a| std::ptr::eq(a, asset))
        .unwrap_or(ASSETS.len());
    ETAGS.get(index).map_or("", String::as_str)
}

/// The embedded file called `name`.
pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

/// Headers every dashboard answer carries.
pub fn harden(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// `asset` with its type and validator; 304 when `if_none_match` names the same version.
pub fn serve(asset: &'static Asset, if_none_match: Option<&str>) -> Response {
    let etag = etag_of(asset);
    let fresh = if_none_match.is_some_and(|given| {
        given.split(',').any(|tag| {
            let tag = tag.trim();
            tag == etag || tag.strip_prefix("W/") == Some(etag) || tag == "*"
        })
    });
    let mut response = if fresh {
        let mut response = Response::default();
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let mut response = asset.body.into_response();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        response
    };
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(ETAG, value);
    }
    harden(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_its_own_validator() {
        let mut seen = std::collections::HashSet::new();
        for asset in ASSETS.iter().chain(std::iter::once(&SHELL)) {
            let etag = etag_of(asset);
            assert!(etag.len() > 10, "{}", asset.name);
            assert!(seen.insert(etag), "{} shares a validator", asset.name);
        }
        assert_eq!(etag_of(&SHELL), ETAGS[ASSETS.len()]);
    }

    #[test]
    fn the_first_load_stays_small_and_local() {
        let total: usize = ASSETS.iter().map(|a| a.body.len()).sum::<usize>() + SHELL.body.len();
        assert!(total < 100 * 1024, "the dashboard weighs {total} bytes");
        for asset in ASSETS.iter().chain(std::iter::once(&SHELL)) {
            let text = String::from_utf8_lossy(asset.body);
            for foreign in [
                "http://",
                "https://",
                "//cdn",
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(
                    !text.contains(foreign) || (asset.name == "icon.svg" && foreign == "http://"),
                    "{} contains {foreign}",
                    asset.name
                );
            }
        }
    }

    #[test]
    fn answers_forbid_framing_and_inline_script() {
        let response = serve(&SHELL, None);
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let csp = header(CONTENT_SECURITY_POLICY);
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(header(X_FRAME_OPTIONS), "DENY");
        assert_eq!(header(X_CONTENT_TYPE_OPTIONS), "nosniff");
    }

    #[test]
    fn a_matching_validator_is_not_modified() {
        let asset = find("app.js").expect("app.js");
        let etag = etag_of(asset).to_owned();
        assert_eq!(serve(asset, Some(&etag)).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(serve(asset, Some("\"other\"")).status(), StatusCode::OK);
        assert_eq!(serve(asset, None).status(), StatusCode::OK);
        assert!(serve(asset, None)
            .headers()
            .get(CONTENT_SECURITY_POLICY)
            .is_some());
    }
}
