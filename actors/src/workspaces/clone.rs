//! Making a workspace fast: remote repositories go through a per-repository mirror
//! (`mirrors/<host>/<owner>/<name>.git`), fetched first, that workspaces borrow objects from
//! (`clone --shared`: an `objects/info/alternates` entry, no copy); local repositories are
//! cloned with hard links to their object files (git's default for a path: objects only, never
//! the user's configuration or hooks; a copy across filesystems).
//!
//! Mirrors never lose an object a workspace may need: every git command gets `gc.auto=0`, a
//! fetch only adds objects (branches deleted upstream stay), the collector repacks a mirror
//! only with `--keep-unreachable`, and deletes one only when no workspace's alternates name it
//! (checked under the mirror's lock, which every clone from it holds).

use super::git::{Git, GitError, Reach, LONG_TIMEOUT};
use super::locks;
use crate::domain::SessionId;
use crate::settings::Settings;
use crate::workspace::{is_remote, Workspace};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Marks a directory as a TeleCoder mirror: holds the repository it mirrors (normalised); its
/// modification time is the mirror's last use.
pub const MIRROR_STAMP: &str = "telecoder-mirror";

/// When each mirror's last fetch started: a session queued behind a fetch that started after
/// it asked needs no second one (a burst fetches once).
static LAST_FETCH: LazyLock<Mutex<HashMap<PathBuf, Instant>>> = LazyLock::new(Default::default);

/// Clones `repo` into `workspaces/<id>` on a new branch `telecoder/<id>` and notes the commit it
/// started from. A leftover directory of an interrupted attempt is removed first. Errors are
/// plain sentences for the session's error field.
pub async fn prepare(
    repo: &str,
    settings: &Settings,
    id: &SessionId,
    cancel: &CancellationToken,
) -> Result<Workspace, String> {
    let asked = Instant::now();
    let workspaces = settings.workspaces_dir();
    let dir = workspaces.join(id.as_str());
    if tokio::fs::symlink_metadata(&dir).await.is_ok() {
        tokio::fs::remove_dir_all(&dir)
            .await
            .map_err(|err| format!("cannot clear old workspace {}: {err}", dir.display()))?;
    }
    tokio::fs::create_dir_all(&workspaces)
        .await
        .map_err(|err| format!("cannot create {}: {err}", workspaces.display()))?;
    let dir_arg = dir.to_string_lossy().into_owned();
    // The clone is ours until the agent starts: no workspace checks are needed yet.
    let git = Git::fresh_workspace(&dir)
        .with_timeout(LONG_TIMEOUT)
        .with_cancel(cancel);
    if is_remote(repo) {
        let (mirror, _held) = ensure_mirror(repo, settings, asked, cancel).await?;
        let mirror_arg = mirror.to_string_lossy().into_owned();
        clone_git(cancel)
            .run(&[
                "clone",
                "--quiet",
                "--shared",
                "--no-checkout",
                "--",
                &mirror_arg,
                &dir_arg,
            ])
            .await
            .map_err(|err| format!("cannot clone {repo} from its mirror: {err}"))?;
        touch_stamp(&mirror);
        // The real origin before the checkout (below), so smudge filters such as git-lfs see it.
        git.run(&["remote", "set-url", "origin", repo])
            .await
            .map_err(|err| format!("cannot set origin to {repo}: {err}"))?;
    } else {
        clone_git(cancel)
            .run(&["clone", "--quiet", "--", repo, &dir_arg])
            .await
            .map_err(|err| format!("cannot clone {repo}: {err}"))?;
    }
    let branch = id.branch();
    // `--force` fills the index and files a `--no-checkout` clone left empty.
    git.run(&["checkout", "--quiet", "--force", "-b", &branch])
        .await
        .map_err(|err| format!("cannot create branch {branch}: {err}"))?;
    let base_commit = git
        .line(&["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])
        .await
        .unwrap_or_default();
    Ok(Workspace {
        dir,
        branch,
        base_commit,
    })
}

fn clone_git(cancel: &CancellationToken) -> Git {
    Git::nowhere(Reach::Local)
        .with_timeout(LONG_TIMEOUT)
        .with_cancel(cancel)
}

/// The mirror of `repo`, created or fetched, with its lock held (so nothing deletes or repacks
/// it before the clone from it is done).
async fn ensure_mirror(
    repo: &str,
    settings: &Settings,
    asked: Instant,
    cancel: &CancellationToken,
) -> Result<(PathBuf, locks::Held), String> {
    let key = repo_key(repo);
    let mut path = settings.mirrors_dir().join(mirror_path(&key));
    // A different repository that maps to the same path (an unusual URL) gets its own.
    if read_stamp(&path).is_some_and(|stamped| stamped != key) {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().trim_end_matches(".git").to_owned())
            .unwrap_or_default();
        path.set_file_name(format!("{name}-{:016x}.git", fnv1a(&key)));
    }
    let held = locks::lock(&mirror_lock(&path)).await;
    let network = Git::at(&path, Reach::Network)
        .with_timeout(LONG_TIMEOUT)
        .with_cancel(cancel);
    if read_stamp(&path).as_deref() == Some(key.as_str()) {
        let fetched_since = LAST_FETCH
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&path)
            .is_some_and(|started| *started >= asked);
        if !fetched_since {
            note_fetch(&path, Some(Instant::now()));
            sanitize_mirror(&path).map_err(|err| err.to_string())?;
            let fetched = network
                .run(&[
                    "fetch",
                    "--quiet",
                    "--no-tags",
                    "--no-write-fetch-head",
                    "--",
                    repo,
                    "+refs/heads/*:refs/heads/*",
                    "+refs/tags/*:refs/tags/*",
                ])
                .await;
            if let Err(err) = fetched {
                note_fetch(&path, None);
                return Err(format!("cannot fetch {repo} into its mirror: {err}"));
            }
        }
        return Ok((path, held));
    }
    let started = Instant::now();
    create_mirror(repo, &key, &path, cancel).await?;
    note_fetch(&path, Some(started));
    Ok((path, held))
}

/// Records when a mirror's fetch started (`None`: it failed, so nobody may rely on it).
fn note_fetch(path: &Path, started: Option<Instant>) {
    let mut fetches = LAST_FETCH.lock().unwrap_or_else(|e| e.into_inner());
    match started {
        Some(at) => fetches.insert(path.to_owned(), at),
        None => fetches.remove(path),
    };
}

/// Clones a new mirror next to its final place and renames it there, so a crash never leaves a
/// half-made mirror under the real name (the collector removes the leftover).
async fn create_mirror(
    repo: &str,
    key: &str,
    path: &Path,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let parent = path.parent().unwrap_or(path);
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(|err| format!("cannot create {}: {err}", parent.display()))?;
    if tokio::fs::symlink_metadata(path).await.is_ok() {
        // Not stamped: a mirror a crash interrupted, or something else; start afresh.
        tokio::fs::remove_dir_all(path)
            .await
            .map_err(|err| format!("cannot clear {}: {err}", path.display()))?;
    }
    let temporary = temporary_mirror(path);
    let temporary_arg = temporary.to_string_lossy().into_owned();
    let cloned = Git::nowhere(Reach::Network)
        .with_timeout(LONG_TIMEOUT)
        .with_cancel(cancel)
        .run(&["clone", "--quiet", "--mirror", "--", repo, &temporary_arg])
        .await;
    if let Err(err) = cloned {
        let _ = tokio::fs::remove_dir_all(&temporary).await;
        return Err(format!("cannot clone {repo}: {err}"));
    }
    let stamped = std::fs::write(temporary.join(MIRROR_STAMP), key)
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(err) = stamped {
        let _ = tokio::fs::remove_dir_all(&temporary).await;
        return Err(format!(
            "cannot set up the mirror {}: {err}",
            path.display()
        ));
    }
    sanitize_mirror(path).map_err(|err| err.to_string())
}

/// `<mirror>.tmp-<random>`: the collector recognises these as leftovers of a crash.
fn temporary_mirror(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp-{}", SessionId::random()));
    PathBuf::from(name)
}

/// The lock name of a mirror.
pub fn mirror_lock(path: &Path) -> String {
    format!("mirror:{}", path.display())
}

/// A mirror is reachable from every workspace made from it (its path is in their alternates),
/// so a hostile agent could have written to it. Before git runs there, its configuration is
/// rewritten to what a mirror needs (keeping the object format), and anything that would point
/// it elsewhere is refused or removed.
fn sanitize_mirror(path: &Path) -> Result<(), GitError> {
    super::git::check_git_dir(path)?;
    let config = path.join("config");
    let current = std::fs::read_to_string(&config).unwrap_or_default();
    let sha256 = current.lines().any(|line| {
        line.split_whitespace()
            .collect::<String>()
            .eq_ignore_ascii_case("objectformat=sha256")
    });
    let fresh = if sha256 {
        "[core]\n\trepositoryformatversion = 1\n\tbare = true\n[extensions]\n\tobjectformat = sha256\n"
    } else {
        "[core]\n\trepositoryformatversion = 0\n\tbare = true\n"
    };
    let written = std::fs::write(&config, fresh).and_then(|()| {
        match std::fs::remove_file(path.join("objects/info/alternates")) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    });
    written.map_err(|err| GitError::Failed(format!("cannot reset {}: {err}", config.display())))
}

/// Records a use (the collector keeps mirrors used within the retention period).
fn touch_stamp(mirror: &Path) {
    let stamp = mirror.join(MIRROR_STAMP);
    if let Ok(key) = std::fs::read_to_string(&stamp) {
        let _ = std::fs::write(&stamp, key);
    }
}

/// The repository a mirror directory holds, if it is one of ours.
pub fn read_stamp(path: &Path) -> Option<String> {
    std::fs::read_to_string(path.join(MIRROR_STAMP)).ok()
}

/// A repository URL without scheme, user, port and `.git`, lower-cased host: two spellings of
/// one repository (https and ssh) share a mirror.
pub fn repo_key(repo: &str) -> String {
    let text = repo.trim().trim_end_matches('/');
    let text = text.strip_suffix(".git").unwrap_or(text);
    let (host, path) = match text.split_once("://") {
        Some((_, rest)) => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            (authority, path.to_owned())
        }
        // scp-like `user@host:path`
        None => match text.split_once(':') {
            Some((authority, path)) => (authority, path.to_owned()),
            None => ("", text.to_owned()),
        },
    };
    let host = host.rsplit('@').next().unwrap_or(host);
    let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    let host = if host.is_empty() {
        "local".to_owned()
    } else {
        host
    };
    format!("{host}/{}", path.trim_matches('/'))
}

/// `host/owner/name.git` under `mirrors/`, every part made safe as a file name (owner joins
/// any middle path segments, e.g. GitLab subgroups).
pub fn mirror_path(key: &str) -> PathBuf {
    let clean = |part: &str| {
        let part: String = part
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if part.is_empty() || part.chars().all(|c| c == '.') {
            "_".to_owned()
        } else {
            part
        }
    };
    let mut parts: Vec<&str> = key.split('/').filter(|p| !p.is_empty()).collect();
    let host = if parts.is_empty() {
        "local"
    } else {
        parts.remove(0)
    };
    let name = parts.pop().unwrap_or("repo");
    let owner = if parts.is_empty() {
        "_".to_owned()
    } else {
        parts.iter().map(|p| clean(p)).collect::<Vec<_>>().join("-")
    };
    PathBuf::from(clean(host))
        .join(owner)
        .join(format!("{}.git", clean(name)))
}

/// A stable 64-bit hash (FNV-1a) to tell apart repositories that clean to one path.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_repository_share_a_mirror() {
        for repo in [
            "https://github.com/Acme/widgets.git",
            "https://user@GitHub.com:443/Acme/widgets/",
            "git@github.com:Acme/widgets.git",
            "ssh://git@github.com/Acme/widgets",
        ] {
            assert_eq!(repo_key(repo), "github.com/Acme/widgets", "{repo}");
        }
        assert_eq!(
            mirror_path(&repo_key("https://github.com/Acme/widgets")),
            PathBuf::from("github.com/Acme/widgets.git")
        );
    }

    #[test]
    fn mirror_paths_stay_inside_the_mirror_directory() {
        for key in [
            repo_key("file:///tmp/x/../../etc/repo.git"),
            repo_key("https://h/../../a/.."),
            repo_key("https://gitlab.com/group/sub/team/project"),
            repo_key("file:///"),
        ] {
            let path = mirror_path(&key);
            assert_eq!(path.components().count(), 3, "{key} -> {path:?}");
            assert!(
                path.components()
                    .all(|c| matches!(c, std::path::Component::Normal(_))),
                "{key} -> {path:?}"
            );
        }
        assert_eq!(
            mirror_path(&repo_key("https://gitlab.com/group/sub/project")),
            PathBuf::from("gitlab.com/group-sub/project.git")
        );
    }
}
