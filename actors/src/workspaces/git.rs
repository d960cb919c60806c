//! The one way the workspace code runs git — in a workspace, a mirror or the user's own
//! repository — without running anything the agent planted.
//!
//! A workspace belongs to the agent: its `.git/config`, hooks, attributes and even the layout
//! of `.git` may be traps, and a mirror is reachable from it through `objects/info/alternates`.
//! Every command built by [`command`]:
//!
//! * starts from an empty environment plus a short allow-list (PATH, HOME, locale, the
//!   operator's git configuration; for [`Reach::Network`] also the ssh agent, proxies and CA
//!   settings) — no `GIT_DIR`, no tokens, no inherited `GIT_CONFIG_PARAMETERS`;
//! * gets `-c` overrides, which beat every configuration file: hooks off (`core.hooksPath`),
//!   no fsmonitor, no signing (and so no `gpg.program`), no auto-gc or maintenance, no
//!   submodule recursion, no `ext::` transport; for [`Reach::Local`] also no credential helper
//!   and no transport but local files (so no `core.sshCommand`, and no lazy fetch of a
//!   partial clone);
//! * runs in its own process group, killed on timeout, cancellation or drop.
//!
//! [`Git::workspace`] adds what a workspace needs: `--git-dir`/`--work-tree` given explicitly
//! (a `core.worktree` or a `.git` file cannot redirect us), a check that `.git` is a real
//! directory without symlinks or a `commondir` file (which could point our writes at the
//! user's repository), and every filter driver the workspace's own configuration defines
//! switched off (an attribute could otherwise run `filter.<name>.clean` on `git add`). Diffs
//! are taken with `--no-ext-diff --no-textconv`. Publishing (sec-agent) hardens its git calls
//! the same way; the two are meant to become this one function.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// What a git command may reach beyond the repository it runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Local files only: no network transport, no credentials.
    Local,
    /// The operator's remotes, with the operator's credentials (mirror clones and fetches).
    Network,
}

/// Overrides every command gets, whatever the repository's configuration says.
const HARDENED: &[(&str, &str)] = &[
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("core.splitIndex", "false"),
    ("core.pager", "cat"),
    ("color.ui", "false"),
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    ("submodule.recurse", "false"),
    ("fetch.recurseSubmodules", "false"),
    ("protocol.ext.allow", "never"),
];

/// Further overrides for [`Reach::Local`].
const LOCAL_ONLY: &[(&str, &str)] = &[
    ("credential.helper", ""),
    ("protocol.allow", "never"),
    ("protocol.file.allow", "always"),
    ("core.alternateRefsCommand", "true"),
];

/// Variables passed through from the daemon's environment.
const KEEP: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "TZ",
    "XDG_CONFIG_HOME",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM",
    "GIT_CONFIG_NOSYSTEM",
];

/// Further variables for [`Reach::Network`]: how the operator reaches their remotes.
const KEEP_NETWORK: &[&str] = &[
    "SSH_AUTH_SOCK",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_SSH_VARIANT",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
];

/// Builds a hardened git command (see the module docs). `config` is added as
/// `GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n` after any the operator set in the daemon's
/// environment (which stay: they are the operator's); names there may contain any character.
pub fn command(reach: Reach, config: &[(String, String)]) -> Command {
    let mut command = Command::new("git");
    command.env_clear();
    let kept = KEEP.iter().chain(if reach == Reach::Network {
        KEEP_NETWORK
    } else {
        &[]
    });
    for name in kept {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    let mut counted: Vec<(String, String)> = operator_config();
    counted.extend(config.iter().cloned());
    if !counted.is_empty() {
        command.env("GIT_CONFIG_COUNT", counted.len().to_string());
        for (i, (key, value)) in counted.iter().enumerate() {
            command.env(format!("GIT_CONFIG_KEY_{i}"), key);
            command.env(format!("GIT_CONFIG_VALUE_{i}"), value);
        }
    }
    command
        .env("LC_ALL", "C")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("GIT_EDITOR", "true")
        .env("GIT_PAGER", "cat")
        .env("GIT_NO_REPLACE_OBJECTS", "1");
    if reach == Reach::Local {
        command.env("GIT_NO_LAZY_FETCH", "1");
    }
    let overrides = HARDENED.iter().chain(if reach == Reach::Local {
        LOCAL_ONLY
    } else {
        &[]
    });
    for (key, value) in overrides {
        command.arg("-c").arg(format!("{key}={value}"));
    }
    command
        .arg("--no-pager")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    command
}

/// `GIT_CONFIG_COUNT` entries of the daemon's own environment (the operator's settings, such as
/// an `insteadOf` rule).
fn operator_config() -> Vec<(String, String)> {
    let count = std::env::var("GIT_CONFIG_COUNT")
        .ok()
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    (0..count.min(1000))
        .filter_map(|i| {
            Some((
                std::env::var(format!("GIT_CONFIG_KEY_{i}")).ok()?,
                std::env::var(format!("GIT_CONFIG_VALUE_{i}")).unwrap_or_default(),
            ))
        })
        .collect()
}

/// Most commands finish in well under a second; this bounds a stuck one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Clones, fetches and bundles of big repositories take longer.
pub const LONG_TIMEOUT: Duration = Duration::from_secs(600);
/// Output beyond this is refused rather than held in memory.
pub const DEFAULT_OUTPUT_LIMIT: usize = 16 * 1024 * 1024;

/// Why a git command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitError {
    /// It ran and exited non-zero; git's message.
    Failed(String),
    /// Its output was larger than the limit.
    TooLarge(usize),
    /// It could not start, timed out or was cancelled.
    NotRun(String),
    /// The repository is laid out to redirect our writes; nothing was run.
    Untrusted(String),
}

impl std::fmt::Display for GitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failed(message) | Self::NotRun(message) | Self::Untrusted(message) => {
                f.write_str(message)
            }
            Self::TooLarge(limit) => write!(f, "git's output is larger than {limit} bytes"),
        }
    }
}

/// Where commands run.
#[derive(Clone, Debug)]
enum Place {
    /// A workspace: explicit `--git-dir` and `--work-tree`.
    Workspace {
        git_dir: PathBuf,
        work_tree: PathBuf,
    },
    /// A repository found from this directory (the user's repository, a mirror).
    Dir(PathBuf),
    /// No repository (clone).
    Nowhere,
}

/// A hardened git runner for one place.
#[derive(Clone, Debug)]
pub struct Git {
    place: Place,
    reach: Reach,
    config: Vec<(String, String)>,
    env: Vec<(String, String)>,
    timeout: Duration,
    limit: usize,
    cancel: CancellationToken,
}

impl Git {
    fn new(place: Place, reach: Reach) -> Self {
        Self {
            place,
            reach,
            config: Vec::new(),
            env: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            limit: DEFAULT_OUTPUT_LIMIT,
            cancel: CancellationToken::new(),
        }
    }

    /// Git in a repository found from `dir` (the user's repository, or a mirror with
    /// [`Reach::Network`]).
    pub fn at(dir: &Path, reach: Reach) -> Self {
        Self::new(Place::Dir(dir.to_owned()), reach)
    }

    /// Git in a workspace TeleCoder just cloned, before any agent ran in it (so without the
    /// checks of [`Self::workspace`]).
    pub fn fresh_workspace(dir: &Path) -> Self {
        Self::new(
            Place::Workspace {
                git_dir: dir.join(".git"),
                work_tree: dir.to_owned(),
            },
            Reach::Local,
        )
    }

    /// Git outside any repository (clone).
    pub fn nowhere(reach: Reach) -> Self {
        Self::new(Place::Nowhere, reach)
    }

    /// Git in a session's workspace, after checking its `.git` and switching off the filter
    /// drivers its configuration defines. Errors say why the workspace cannot be trusted.
    pub async fn workspace(dir: &Path) -> Result<Self, GitError> {
        let git_dir = dir.join(".git");
        let checked = git_dir.clone();
        tokio::task::spawn_blocking(move || check_git_dir(&checked))
            .await
            .map_err(|err| GitError::NotRun(format!("cannot check the workspace: {err}")))??;
        let mut git = Self::new(
            Place::Workspace {
                git_dir,
                work_tree: dir.to_owned(),
            },
            Reach::Local,
        );
        let drivers = git.own_filter_drivers().await?;
        for name in drivers {
            for (key, value) in [
                ("clean", ""),
                ("smudge", ""),
                ("process", ""),
                ("required", "false"),
            ] {
                git.config
                    .push((format!("filter.{name}.{key}"), value.to_owned()));
            }
        }
        Ok(git)
    }

    /// The filter drivers defined by the repository's own configuration (not the operator's
    /// system or global one, whose drivers, such as git-lfs, are trusted).
    async fn own_filter_drivers(&self) -> Result<Vec<String>, GitError> {
        let listed = self
            .run_bytes(&[
                "config",
                "--show-scope",
                "-z",
                "--name-only",
                "--get-regexp",
                r"^filter\.",
            ])
            .await;
        let bytes = match listed {
            Ok(bytes) => bytes,
            // Exit code 1: no such keys.
            Err(GitError::Failed(message)) if message.is_empty() => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let fields: Vec<&[u8]> = bytes.split(|b| *b == 0).collect();
        let mut drivers = Vec::new();
        for pair in fields.chunks(2) {
            let [scope, name] = pair else { continue };
            if matches!(*scope, b"system" | b"global" | b"command") {
                continue;
            }
            let name = String::from_utf8_lossy(name);
            if let Some(driver) = name
                .strip_prefix("filter.")
                .and_then(|rest| rest.rsplit_once('.'))
                .map(|(driver, _)| driver.to_owned())
            {
                if !drivers.contains(&driver) {
                    drivers.push(driver);
                }
            }
        }
        Ok(drivers)
    }

    /// Adds configuration for the following commands (an author, say).
    pub fn with_config(mut self, key: &str, value: &str) -> Self {
        self.config.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Adds an environment variable for the following commands (`GIT_INDEX_FILE`, say).
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    pub fn with_cancel(mut self, cancel: &CancellationToken) -> Self {
        self.cancel = cancel.clone();
        self
    }

    /// The workspace's git directory, when this runs in one.
    pub fn git_dir(&self) -> Option<&Path> {
        match &self.place {
            Place::Workspace { git_dir, .. } => Some(git_dir),
            _ => None,
        }
    }

    /// Runs git and returns its stdout as text.
    pub async fn run(&self, args: &[&str]) -> Result<String, GitError> {
        self.run_bytes(args)
            .await
            .map(|out| String::from_utf8_lossy(&out).into_owned())
    }

    /// Runs git and returns its stdout, trimmed of the trailing newline.
    pub async fn line(&self, args: &[&str]) -> Result<String, GitError> {
        self.run(args).await.map(|out| out.trim_end().to_owned())
    }

    /// Runs git and returns its raw stdout (at most the limit); stderr is the error.
    pub async fn run_bytes(&self, args: &[&str]) -> Result<Vec<u8>, GitError> {
        let mut command = command(self.reach, &self.config);
        match &self.place {
            Place::Workspace { git_dir, work_tree } => {
                command
                    .arg("--git-dir")
                    .arg(git_dir)
                    .arg("--work-tree")
                    .arg(work_tree)
                    .current_dir(work_tree);
            }
            Place::Dir(dir) => {
                command.current_dir(dir);
            }
            Place::Nowhere => {}
        }
        command
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let what = args.first().copied().unwrap_or("git");
        let mut child = command
            .spawn()
            .map_err(|err| GitError::NotRun(format!("cannot run git: {err}")))?;
        let _group = child.id().map(crate::process::GroupGuard);
        let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(GitError::NotRun("git's output is not available".into()));
        };
        let limit = self.limit;
        let work = async {
            // stderr is drained beside stdout, so git never blocks on a full pipe.
            let errors = tokio::spawn(drain(stderr, 64 * 1024));
            let mut out = Vec::new();
            (&mut stdout)
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .await
                .map_err(|e| GitError::NotRun(format!("cannot read git's output: {e}")))?;
            if out.len() > limit {
                errors.abort();
                return Err(GitError::TooLarge(limit));
            }
            let err = errors.await.unwrap_or_default();
            let status = child
                .wait()
                .await
                .map_err(|e| GitError::NotRun(format!("git failed: {e}")))?;
            if status.success() {
                Ok(out)
            } else {
                Err(GitError::Failed(
                    String::from_utf8_lossy(&err).trim().to_owned(),
                ))
            }
        };
        tokio::select! {
            result = tokio::time::timeout(self.timeout, work) => result
                .unwrap_or_else(|_| Err(GitError::NotRun(format!("git {what} timed out after {}s", self.timeout.as_secs())))),
            _ = self.cancel.cancelled() => Err(GitError::NotRun("cancelled".into())),
        }
    }
}

/// Reads a stream to its end, keeping the first `cap` bytes.
async fn drain(mut stream: impl tokio::io::AsyncRead + Unpin, cap: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 8192];
    while let Ok(read) = stream.read(&mut buffer).await {
        if read == 0 {
            break;
        }
        let room = cap.saturating_sub(kept.len()).min(read);
        kept.extend_from_slice(&buffer[..room]);
    }
    kept
}

/// A workspace's `.git` must be a real directory that keeps its data to itself: no symlink
/// anywhere in it (a symlinked `HEAD`, `index`, `refs` or object directory would point our
/// commits and index writes at the user's repository) and no `commondir` redirection. Object
/// and pack files themselves are not visited: git only creates new ones, never writes through
/// existing ones.
pub fn check_git_dir(git_dir: &Path) -> Result<(), GitError> {
    let refuse = |why: String| {
        Err(GitError::Untrusted(format!(
            "refusing to run git in {}: {why}",
            git_dir.display()
        )))
    };
    match std::fs::symlink_metadata(git_dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return refuse(format!("{} is not a directory", git_dir.display())),
        Err(err) => return refuse(format!("cannot read {}: {err}", git_dir.display())),
    }
    if std::fs::symlink_metadata(git_dir.join("commondir")).is_ok() {
        return refuse(format!(
            "{} redirects to another repository (commondir)",
            git_dir.display()
        ));
    }
    let mut pending = vec![git_dir.to_owned()];
    let mut visited = 0usize;
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|err| GitError::NotRun(format!("cannot read {}: {err}", dir.display())))?;
        for entry in entries.flatten() {
            visited += 1;
            if visited > 200_000 {
                return refuse(format!("{} has too many entries", git_dir.display()));
            }
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_symlink() {
                return refuse(format!("{} is a symbolic link", path.display()));
            }
            if kind.is_dir() && !is_object_store_leaf(git_dir, &path) {
                pending.push(path);
            }
        }
    }
    Ok(())
}

/// `objects/xx` and `objects/pack` hold only files git never writes through.
fn is_object_store_leaf(git_dir: &Path, path: &Path) -> bool {
    let Ok(relative) = path.strip_prefix(git_dir.join("objects")) else {
        return false;
    };
    let mut parts = relative.components();
    matches!((parts.next(), parts.next()), (Some(_), None)) && relative != Path::new("info")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init(dir: &Path) {
        let status = std::process::Command::new("git")
            .args(["init", "-q"])
            .arg(dir)
            .status()
            .expect("git init");
        assert!(status.success());
    }

    #[test]
    fn a_plain_git_dir_passes_and_symlinks_or_redirections_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        init(dir.path());
        let git_dir = dir.path().join(".git");
        assert_eq!(check_git_dir(&git_dir), Ok(()));
        std::os::unix::fs::symlink("/etc", git_dir.join("refs/heads/evil")).expect("symlink");
        assert!(check_git_dir(&git_dir).is_err());
        std::fs::remove_file(git_dir.join("refs/heads/evil")).expect("rm");
        std::fs::write(git_dir.join("commondir"), "/elsewhere").expect("write");
        assert!(check_git_dir(&git_dir).is_err());
    }

    #[tokio::test]
    async fn output_beyond_the_limit_is_refused_without_waiting() {
        let dir = tempfile::tempdir().expect("tempdir");
        init(dir.path());
        std::fs::write(dir.path().join("big"), vec![b'x'; 256 * 1024]).expect("write");
        let git = Git::workspace(dir.path())
            .await
            .expect("workspace")
            .with_limit(1024)
            .with_timeout(Duration::from_secs(60));
        let started = std::time::Instant::now();
        let result = git.run(&["hash-object", "--stdin-paths"]).await;
        assert!(result.is_ok(), "{result:?}");
        let shown = git.run(&["diff", "--no-index", "/dev/null", "big"]).await;
        assert_eq!(shown, Err(GitError::TooLarge(1024)));
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[tokio::test]
    async fn planted_configuration_runs_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        init(dir.path());
        let marker = dir.path().join("pwned");
        let touch = format!("touch {}", marker.display());
        let config = dir.path().join(".git/config");
        let mut text = std::fs::read_to_string(&config).expect("config");
        text.push_str(&format!(
            "[core]\n\tfsmonitor = \"{touch}; false\"\n[filter \"x\"]\n\tclean = \"{touch}; cat\"\n\tprocess = \"{touch}\"\n\trequired = true\n"
        ));
        std::fs::write(&config, text).expect("config");
        std::fs::write(dir.path().join(".gitattributes"), "* filter=x\n").expect("attributes");
        std::fs::write(dir.path().join("a"), "a\n").expect("file");
        let hook = dir.path().join(".git/hooks/pre-commit");
        std::fs::write(&hook, format!("#!/bin/sh\n{touch}\n")).expect("hook");
        std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let git = Git::workspace(dir.path()).await.expect("workspace");
        git.run(&["add", "-A"]).await.expect("add");
        git.run(&["status", "--porcelain"]).await.expect("status");
        git.clone()
            .with_config("user.name", "t")
            .with_config("user.email", "t@example.com")
            .run(&["commit", "-qm", "x"])
            .await
            .expect("commit");
        assert!(!marker.exists(), "planted configuration ran");
    }
}
