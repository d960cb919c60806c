//! A session's changes against the commit its workspace started from, including what the
//! agent left uncommitted or untracked: a patch and per-file counts. The working tree is
//! snapshotted through a temporary index, so neither the workspace's index nor its files
//! change, and the diff itself compares two trees (no filters, no text conversion, no external
//! diff program).

use super::git::{Git, GitError, LONG_TIMEOUT};
use crate::domain::SessionId;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A patch larger than this is refused (the workspace is there to inspect directly).
pub const MAX_PATCH_BYTES: usize = 64 * 1024 * 1024;

/// What `GET /api/sessions/:id/diff` answers with `Accept: application/json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diff {
    pub files: Vec<FileChange>,
    pub patch: String,
}

/// One changed file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileChange {
    /// The path after the change (the new name of a renamed file).
    pub path: String,
    /// `added`, `modified`, `deleted`, `renamed`, `copied` or `typechange`.
    pub status: String,
    /// Lines added and removed (0 for binary files).
    pub additions: u64,
    pub deletions: u64,
}

/// The diff of a workspace: its base commit against its working tree as `git add -A` would
/// commit it.
pub async fn of_workspace(
    git: &Git,
    recorded_base: &str,
    scratch: &Path,
) -> Result<Diff, GitError> {
    let tree = snapshot_tree(git, scratch).await?;
    let base = base_of(git, recorded_base).await?;
    between(git, &base, &tree).await
}

/// The commit to diff against: the recorded one, else (a workspace from before it was
/// recorded) the commit `origin/HEAD` pointed at when cloned, else the empty tree.
pub async fn base_of(git: &Git, recorded: &str) -> Result<String, GitError> {
    for candidate in [recorded, "refs/remotes/origin/HEAD"] {
        if candidate.is_empty() || candidate.starts_with('-') {
            continue;
        }
        let spec = format!("{candidate}^{{commit}}");
        if let Ok(commit) = git.line(&["rev-parse", "--verify", "--quiet", &spec]).await {
            return Ok(commit);
        }
    }
    git.line(&["hash-object", "-t", "tree", "/dev/null"]).await
}

/// The tree of the working tree (tracked changes and untracked files that are not ignored),
/// written through a copy of the workspace's index.
pub async fn snapshot_tree(git: &Git, scratch: &Path) -> Result<String, GitError> {
    let not_run =
        |err: std::io::Error| GitError::NotRun(format!("cannot use {}: {err}", scratch.display()));
    tokio::fs::create_dir_all(scratch).await.map_err(not_run)?;
    let index = scratch.join(format!("index-{}", SessionId::random()));
    let copied = match git.git_dir().map(|dir| dir.join("index")) {
        Some(source) if std::fs::symlink_metadata(&source).is_ok_and(|m| m.is_file()) => {
            tokio::fs::copy(&source, &index).await.is_ok()
        }
        _ => false,
    };
    let with_index = git
        .clone()
        .with_env("GIT_INDEX_FILE", &index.to_string_lossy())
        .with_timeout(LONG_TIMEOUT);
    let tree = async {
        if !copied {
            // A new repository has no HEAD yet; an empty index is right then.
            let _ = with_index.run(&["read-tree", "HEAD"]).await;
        }
        with_index.run(&["add", "--all", "--", "."]).await?;
        with_index.line(&["write-tree"]).await
    }
    .await;
    let _ = tokio::fs::remove_file(&index).await;
    tree
}

/// The diff between a commit (or tree) and a tree.
pub async fn between(git: &Git, base: &str, tree: &str) -> Result<Diff, GitError> {
    const OPTIONS: [&str; 5] = [
        "-M",
        "--no-ext-diff",
        "--no-textconv",
        "--no-relative",
        "--no-color",
    ];
    let diff = |extra: &'static [&'static str]| {
        let mut args = vec!["diff"];
        args.extend(OPTIONS);
        args.extend(extra);
        args.extend([base, tree, "--"]);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>, limit: usize| {
        let git = git.clone().with_limit(limit).with_timeout(LONG_TIMEOUT);
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            git.run_bytes(&args).await
        }
    };
    let names = run(diff(&["--name-status", "-z"]), MAX_PATCH_BYTES).await?;
    let counts = run(diff(&["--numstat", "-z"]), MAX_PATCH_BYTES).await?;
    let patch = run(
        diff(&["--patch", "--src-prefix=a/", "--dst-prefix=b/"]),
        MAX_PATCH_BYTES,
    )
    .await?;
    Ok(Diff {
        files: files(&names, &counts),
        patch: String::from_utf8_lossy(&patch).into_owned(),
    })
}

/// Joins `--name-status -z` and `--numstat -z` output by path.
fn files(names: &[u8], counts: &[u8]) -> Vec<FileChange> {
    let counts = parse_numstat(counts);
    parse_name_status(names)
        .into_iter()
        .map(|(status, path)| {
            let (additions, deletions) = counts
                .iter()
                .find(|(p, _, _)| *p == path)
                .map(|(_, a, d)| (*a, *d))
                .unwrap_or((0, 0));
            FileChange {
                path,
                status,
                additions,
                deletions,
            }
        })
        .collect()
}

/// `M\0path\0`, `R100\0old\0new\0`, … → (status word, path after the change).
fn parse_name_status(bytes: &[u8]) -> Vec<(String, String)> {
    let mut fields = bytes
        .split(|b| *b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned());
    let mut entries = Vec::new();
    while let Some(code) = fields.next() {
        let Some(letter) = code.chars().next() else {
            break;
        };
        let two_paths = matches!(letter, 'R' | 'C');
        let mut path = fields.next().unwrap_or_default();
        if two_paths {
            path = fields.next().unwrap_or(path);
        }
        let status = match letter {
            'A' => "added",
            'D' => "deleted",
            'R' => "renamed",
            'C' => "copied",
            'T' => "typechange",
            _ => "modified",
        };
        entries.push((status.to_owned(), path));
    }
    entries
}

/// `adds\tdels\tpath\0` or, for renames, `adds\tdels\t\0old\0new\0`; `-` counts (binary) are 0.
fn parse_numstat(bytes: &[u8]) -> Vec<(String, u64, u64)> {
    let mut fields = bytes
        .split(|b| *b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned());
    let mut entries = Vec::new();
    while let Some(record) = fields.next() {
        let mut parts = record.splitn(3, '\t');
        let (Some(adds), Some(dels), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let path = if path.is_empty() {
            let _old = fields.next();
            fields.next().unwrap_or_default()
        } else {
            path.to_owned()
        };
        entries.push((path, adds.parse().unwrap_or(0), dels.parse().unwrap_or(0)));
    }
    entries
}

/// Totals for `telecoder diff --stat`.
pub fn totals(files: &[FileChange]) -> (u64, u64) {
    files
        .iter()
        .fold((0, 0), |(a, d), f| (a + f.additions, d + f.deletions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_statuses_and_counts_including_renames_and_binaries() {
        let names = b"M\0src/a.rs\0A\0new file.txt\0R087\0old.rs\0moved.rs\0D\0gone\0A\0img.png\0";
        let counts = b"3\t1\tsrc/a.rs\x002\t0\tnew file.txt\x001\t1\t\x00old.rs\x00moved.rs\x000\t4\tgone\x00-\t-\timg.png\x00";
        let files = files(names, counts);
        let summary: Vec<(&str, &str, u64, u64)> = files
            .iter()
            .map(|f| (f.path.as_str(), f.status.as_str(), f.additions, f.deletions))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("src/a.rs", "modified", 3, 1),
                ("new file.txt", "added", 2, 0),
                ("moved.rs", "renamed", 1, 1),
                ("gone", "deleted", 0, 4),
                ("img.png", "added", 0, 0),
            ]
        );
        assert_eq!(totals(&files), (6, 6));
    }

    #[test]
    fn empty_output_means_no_files() {
        assert!(files(b"", b"").is_empty());
    }

    #[test]
    fn the_json_shape_is_the_contract() {
        let diff = Diff {
            files: vec![FileChange {
                path: "a".into(),
                status: "added".into(),
                additions: 1,
                deletions: 0,
            }],
            patch: "p".into(),
        };
        assert_eq!(
            serde_json::to_value(&diff).expect("json"),
            serde_json::json!({"files": [{"path": "a", "status": "added", "additions": 1, "deletions": 0}], "patch": "p"})
        );
    }
}
