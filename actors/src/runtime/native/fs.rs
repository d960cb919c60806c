//! `fs/read_text_file` and `fs/write_text_file`, contained to the session's workspace.
//!
//! The agent is untrusted: a path must be absolute, name no `..`, and resolve (symlinks
//! followed) inside the workspace; `.git` is off limits for writes (hooks there would run on
//! publish); sizes are capped both ways.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// Largest file the agent may read through the client.
pub const MAX_READ_BYTES: u64 = 8 * 1024 * 1024;
/// Largest content the agent may write through the client.
pub const MAX_WRITE_BYTES: usize = 8 * 1024 * 1024;

/// Why a file request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    #[error("path must be absolute: {0}")]
    NotAbsolute(String),
    #[error("path must not contain '..': {0}")]
    ParentDir(String),
    #[error("path is outside the workspace: {0}")]
    Outside(String),
    #[error("the repository's .git directory cannot be written through the client: {0}")]
    GitDir(String),
    #[error("file not found: {0}")]
    NotFound(String),
    #[error("{0} is larger than {1} bytes")]
    TooLarge(String, u64),
    #[error("{0}")]
    Io(String),
}

/// The session's workspace as seen by the file handlers.
#[derive(Clone, Debug)]
pub struct WorkspaceFs {
    /// As the agent was told (its cwd).
    given: PathBuf,
    /// With symlinks resolved; every access must stay below it.
    root: PathBuf,
}

impl WorkspaceFs {
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        Ok(Self {
            given: dir.to_path_buf(),
            root: dir.canonicalize()?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The workspace-relative form of an absolute path, refusing `..` and other trees.
    fn relative<'a>(&self, path: &'a Path) -> Result<&'a Path, FsError> {
        let shown = || path.display().to_string();
        if !path.is_absolute() {
            return Err(FsError::NotAbsolute(shown()));
        }
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(FsError::ParentDir(shown()));
        }
        path.strip_prefix(&self.root)
            .or_else(|_| path.strip_prefix(&self.given))
            .map_err(|_| FsError::Outside(shown()))
    }

    /// Resolves `path` (symlinks followed) and checks it is still inside the workspace.
    fn inside(&self, resolved: &Path, shown: &Path) -> Result<(), FsError> {
        if resolved.starts_with(&self.root) {
            Ok(())
        } else {
            Err(FsError::Outside(shown.display().to_string()))
        }
    }

    /// A directory (or any path) the agent names, for a command's cwd: must exist inside.
    pub fn contain_existing(&self, path: &Path) -> Result<PathBuf, FsError> {
        let relative = self.relative(path)?;
        let resolved = self
            .root
            .join(relative)
            .canonicalize()
            .map_err(|err| io_error(path, &err))?;
        self.inside(&resolved, path)?;
        Ok(resolved)
    }

    /// Reads a text file, optionally from 1-based `line` for `limit` lines.
    pub fn read(
        &self,
        path: &Path,
        line: Option<u32>,
        limit: Option<u32>,
    ) -> Result<String, FsError> {
        let resolved = self.contain_existing(path)?;
        let meta = std::fs::metadata(&resolved).map_err(|err| io_error(path, &err))?;
        if !meta.is_file() {
            return Err(FsError::Io(format!("{} is not a file", path.display())));
        }
        if meta.len() > MAX_READ_BYTES {
            return Err(FsError::TooLarge(
                path.display().to_string(),
                MAX_READ_BYTES,
            ));
        }
        let bytes = std::fs::read(&resolved).map_err(|err| io_error(path, &err))?;
        let text = String::from_utf8_lossy(&bytes);
        Ok(window(&text, line, limit))
    }

    /// Writes a text file, creating missing directories inside the workspace.
    pub fn write(&self, path: &Path, content: &str) -> Result<(), FsError> {
        if content.len() > MAX_WRITE_BYTES {
            return Err(FsError::TooLarge(
                path.display().to_string(),
                MAX_WRITE_BYTES as u64,
            ));
        }
        let relative = self.relative(path)?;
        if relative.components().any(|c| c.as_os_str() == ".git") {
            return Err(FsError::GitDir(path.display().to_string()));
        }
        let target = self.writable_target(relative, path)?;
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|err| io_error(path, &err))?;
        }
        let mut file = open_nofollow(&target).map_err(|err| io_error(path, &err))?;
        file.write_all(content.as_bytes())
            .map_err(|err| io_error(path, &err))
    }

    /// Where a write lands: an existing file (or symlink) resolved, else the path below its
    /// deepest existing ancestor, which must itself resolve inside.
    fn writable_target(&self, relative: &Path, shown: &Path) -> Result<PathBuf, FsError> {
        let full = self.root.join(relative);
        if std::fs::symlink_metadata(&full).is_ok() {
            let resolved = full.canonicalize().map_err(|err| io_error(shown, &err))?;
            self.inside(&resolved, shown)?;
            return Ok(resolved);
        }
        let mut ancestor = full.as_path();
        let mut missing = Vec::new();
        while std::fs::symlink_metadata(ancestor).is_err() {
            missing.push(ancestor.file_name().map(ToOwned::to_owned));
            ancestor = ancestor
                .parent()
                .ok_or_else(|| FsError::Outside(shown.display().to_string()))?;
        }
        let mut resolved = ancestor
            .canonicalize()
            .map_err(|err| io_error(shown, &err))?;
        self.inside(&resolved, shown)?;
        for name in missing.into_iter().rev().flatten() {
            resolved.push(name);
        }
        Ok(resolved)
    }
}

/// Opens for writing without following a symlink at the last component (one swapped in after
/// the check is refused rather than followed).
fn open_nofollow(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

fn io_error(path: &Path, err: &std::io::Error) -> FsError {
    if err.kind() == std::io::ErrorKind::NotFound {
        FsError::NotFound(path.display().to_string())
    } else {
        FsError::Io(format!("{}: {err}", path.display()))
    }
}

/// Lines `line..line+limit` (1-based) of `text`, as ACP's `line`/`limit` mean.
fn window(text: &str, line: Option<u32>, limit: Option<u32>) -> String {
    if line.is_none() && limit.is_none() {
        return text.to_owned();
    }
    let skip = line.map_or(0, |l| l.max(1) as usize - 1);
    let take = limit.map_or(usize::MAX, |l| l as usize);
    text.split_inclusive('\n').skip(skip).take(take).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, tempfile::TempDir, WorkspaceFs) {
        let work = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(work.path().join("a.txt"), "one\ntwo\nthree\n").expect("write");
        std::fs::write(outside.path().join("secret"), "s3cret").expect("write");
        let fs = WorkspaceFs::new(work.path()).expect("workspace");
        (work, outside, fs)
    }

    #[test]
    fn reads_inside_and_windows_lines() {
        let (work, _outside, fs) = setup();
        let path = work.path().join("a.txt");
        assert_eq!(
            fs.read(&path, None, None).as_deref(),
            Ok("one\ntwo\nthree\n")
        );
        assert_eq!(fs.read(&path, Some(2), Some(1)).as_deref(), Ok("two\n"));
        assert!(matches!(
            fs.read(&work.path().join("missing"), None, None),
            Err(FsError::NotFound(_))
        ));
    }

    #[test]
    fn refuses_escapes() {
        let (work, outside, fs) = setup();
        let secret = outside.path().join("secret");
        assert!(matches!(
            fs.read(&secret, None, None),
            Err(FsError::Outside(_))
        ));
        let dotdot = work.path().join("../x");
        assert!(matches!(
            fs.read(&dotdot, None, None),
            Err(FsError::ParentDir(_))
        ));
        assert!(matches!(
            fs.read(Path::new("a.txt"), None, None),
            Err(FsError::NotAbsolute(_))
        ));
        std::os::unix::fs::symlink(&secret, work.path().join("link")).expect("symlink");
        assert!(matches!(
            fs.read(&work.path().join("link"), None, None),
            Err(FsError::Outside(_))
        ));
        assert!(matches!(
            fs.write(&work.path().join("link"), "pwned"),
            Err(FsError::Outside(_))
        ));
        std::os::unix::fs::symlink(outside.path(), work.path().join("dir")).expect("symlink");
        assert!(matches!(
            fs.write(&work.path().join("dir/new.txt"), "pwned"),
            Err(FsError::Outside(_))
        ));
        assert!(!outside.path().join("new.txt").exists());
        assert_eq!(
            std::fs::read_to_string(&secret).ok().as_deref(),
            Some("s3cret")
        );
        assert!(matches!(
            fs.write(&work.path().join(".git/hooks/pre-commit"), "x"),
            Err(FsError::GitDir(_))
        ));
    }

    #[test]
    fn writes_inside_with_new_directories_and_caps_sizes() {
        let (work, _outside, fs) = setup();
        let path = work.path().join("deep/new/file.txt");
        fs.write(&path, "hello").expect("write");
        assert_eq!(
            std::fs::read_to_string(&path).ok().as_deref(),
            Some("hello")
        );
        let big = "x".repeat(MAX_WRITE_BYTES + 1);
        assert!(matches!(fs.write(&path, &big), Err(FsError::TooLarge(..))));
    }
}
