//! Repository references: which strings name the same repository, and which are refused.
//! Pure rules; `requests::resolve_repo` adds what needs the disk (absolute paths, symlinks).

use std::path::{Component, Path, PathBuf};

/// A repository reference after resolution: what to clone, what to compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoTarget {
    pub kind: RepoKind,
    /// What git clones and what a watch stores: the resolved absolute path of a local
    /// repository, or the URL / `owner/name` as given (refused if it has dot segments).
    pub source: String,
    /// Identity for matching watches and the allowlist ([`repo_key`] of `source`).
    pub key: String,
}

/// How a repository is named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepoKind {
    /// A directory on this machine (also `file://` URLs).
    Local,
    /// A URL git fetches over the network (https, ssh, scp-like `user@host:path`).
    Url,
    /// `owner/name`: a GitHub repository written short.
    GithubShort,
}

impl RepoTarget {
    /// A remote reference (URL or `owner/name`); local paths go through `requests::resolve_repo`.
    pub fn remote(repo: &str) -> Result<Self, String> {
        let kind = if is_remote(repo) {
            check_url(repo)?;
            RepoKind::Url
        } else if is_github_short(repo) {
            RepoKind::GithubShort
        } else {
            return Err(format!("not a repository URL: {repo}"));
        };
        Ok(Self {
            kind,
            source: repo.to_owned(),
            key: repo_key(repo),
        })
    }

    /// A local repository at an already resolved absolute path.
    pub fn local(path: &Path) -> Self {
        let source = path.to_string_lossy().into_owned();
        Self {
            kind: RepoKind::Local,
            key: repo_key(&source),
            source,
        }
    }

    /// The forms an allowlist pattern may be written against: the resolved source, the key and,
    /// for GitHub, `owner/name`. Never the string as given, which may hide `..`.
    pub fn allowlist_forms(&self) -> Vec<&str> {
        let mut forms = vec![self.source.as_str(), self.key.as_str()];
        if let Some(short) = self.key.strip_prefix("github.com/") {
            forms.push(short);
        }
        forms
    }
}

/// True for anything git treats as a URL rather than a local path.
pub fn is_remote(repo: &str) -> bool {
    if repo.contains("://") {
        return true;
    }
    // scp-like `user@host:path` (but not a local path that merely contains a colon)
    match repo.split_once(':') {
        Some((host, _)) => !host.contains('/') && host.contains('@'),
        None => false,
    }
}

/// `owner/name` as GitHub allows them (owner: letters, digits, `-`; name: also `_` and `.`).
pub fn is_github_short(repo: &str) -> bool {
    let Some((owner, name)) = repo.split_once('/') else {
        return false;
    };
    let owner_ok = (1..=39).contains(&owner.len())
        && !owner.starts_with('-')
        && owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let name_ok = (1..=100).contains(&name.len())
        && !matches!(name, "." | "..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    owner_ok && name_ok
}

/// Refuses a URL whose path has `.` or `..` segments, written plainly or percent-encoded:
/// `https://github.com/acme/widgets/../../evil/repo` names another repository than its prefix
/// says, so it could slip past an allowlist.
pub fn check_url(url: &str) -> Result<(), String> {
    let path = url_path(url);
    let mut decoded = path.to_owned();
    // Decoding twice catches `%252e`, which a second decoder on the way would turn into `.`.
    for _ in 0..3 {
        let next = percent_decode(&decoded);
        if next == decoded {
            break;
        }
        decoded = next;
    }
    let dot_segment = decoded
        .split(['/', '\\'])
        .any(|segment| matches!(segment, "." | ".."));
    if dot_segment {
        Err(format!(
            "repo URL must not contain '.' or '..' path segments: {url}"
        ))
    } else {
        Ok(())
    }
}

/// The path part of a URL (`scheme://host/path`) or of an scp-like `user@host:path`.
fn url_path(url: &str) -> &str {
    match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |at| &rest[at..]),
        None => url.split_once(':').map_or(url, |(_, path)| path),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `path` with `.` and `..` applied without asking the disk (for paths that do not exist;
/// existing ones are resolved with symlinks by `requests::resolve_repo`).
pub fn lexical_clean(path: &Path) -> PathBuf {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                clean.pop();
            }
            other => clean.push(other.as_os_str()),
        }
    }
    clean
}

/// `owner/name`, `https://github.com/owner/name(.git)` and `git@github.com:owner/name.git`
/// all name the same repository; local paths are compared as given (minus a trailing `/`).
pub fn repo_key(repo: &str) -> String {
    let trimmed = repo.trim().trim_end_matches('/');
    let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
    let github = trimmed
        .strip_prefix("https://github.com/")
        .or_else(|| trimmed.strip_prefix("http://github.com/"))
        .or_else(|| trimmed.strip_prefix("ssh://git@github.com/"))
        .or_else(|| trimmed.strip_prefix("git@github.com:"))
        .or_else(|| trimmed.strip_prefix("github.com/"));
    let owner_name = github.or_else(|| {
        let looks_short = trimmed.matches('/').count() == 1
            && !trimmed.starts_with(['/', '.', '~'])
            && !trimmed.contains(':');
        looks_short.then_some(trimmed)
    });
    match owner_name {
        Some(path) => format!("github.com/{}", path.to_ascii_lowercase()),
        None => trimmed.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_repo_forms_are_one_repo() {
        let key = repo_key("acme/widgets");
        for form in [
            "https://github.com/acme/widgets",
            "https://github.com/Acme/Widgets.git",
            "git@github.com:acme/widgets.git",
            "https://github.com/acme/widgets/",
        ] {
            assert_eq!(repo_key(form), key, "{form}");
        }
        assert_ne!(repo_key("acme/gadgets"), key);
        assert_eq!(repo_key("/srv/repos/app/"), "/srv/repos/app");
        assert_eq!(repo_key("./acme/widgets"), "./acme/widgets");
    }

    #[test]
    fn recognises_remotes_and_short_forms() {
        assert!(is_remote("https://github.com/a/b.git"));
        assert!(is_remote("git@github.com:a/b.git"));
        assert!(is_remote("file:///tmp/repo"));
        assert!(!is_remote("/tmp/repo"));
        assert!(!is_remote("./dir:with:colons"));
        assert!(is_github_short("acme/widgets.js"));
        for not_short in [
            "acme", "/acme/x", "acme/..", "acme/.", "a/b/c", "-x/y", "a b/c",
        ] {
            assert!(!is_github_short(not_short), "{not_short}");
        }
    }

    #[test]
    fn dot_segments_in_urls_are_refused_however_written() {
        for url in [
            "https://github.com/acme/widgets/../../evil/repo",
            "https://github.com/acme/widgets/%2e%2e/%2E%2E/evil/repo",
            "https://github.com/acme/widgets/.%2e/x",
            "https://github.com/acme/widgets/%252e%252e/x",
            "https://github.com/acme/widgets/..%2f..%2fevil/repo",
            "git@github.com:acme/../evil/repo.git",
            "ssh://git@github.com/acme/./widgets",
            "https://github.com/acme/widgets/..",
        ] {
            assert!(check_url(url).is_err(), "{url}");
        }
        for url in [
            "https://github.com/acme/widgets.git",
            "https://github.com/acme/wid..gets",
            "git@github.com:acme/widgets.git",
            "https://example.com:8443/a/b",
        ] {
            assert!(check_url(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn lexical_clean_applies_dots() {
        assert_eq!(
            lexical_clean(Path::new("/allowed/../outside/./x")),
            PathBuf::from("/outside/x")
        );
        assert_eq!(lexical_clean(Path::new("/../..")), PathBuf::from("/"));
    }

    #[test]
    fn allowlist_forms_never_include_the_raw_string() {
        let target = RepoTarget::remote("https://github.com/Acme/Widgets.git").expect("valid");
        assert_eq!(
            target.allowlist_forms(),
            vec![
                "https://github.com/Acme/Widgets.git",
                "github.com/acme/widgets",
                "acme/widgets"
            ]
        );
        assert!(RepoTarget::remote("https://github.com/acme/w/../../evil/r").is_err());
    }
}
