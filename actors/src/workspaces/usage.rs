//! What workspaces, archives and mirrors take on disk, for `/admin/status`, `/metrics` and the
//! size cap. Sizes are the bytes removing a directory would free: allocated blocks of files
//! with one link (a file hard-linked with the user's repository frees nothing). Walking a big
//! workspace costs, so a finished session's size is remembered until it changes (fetch,
//! collection); an active one's for a few seconds.

use crate::error::{Error, Result};
use crate::settings::Settings;
use crate::store::StoreClient;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// How long a measured size of an active workspace or a mirror is trusted.
const FRESH_FOR: Duration = Duration::from_secs(10);

/// A remembered size.
#[derive(Clone, Copy)]
struct Measured {
    bytes: u64,
    at: Instant,
    /// A finished session's workspace: it only changes through us (fetch, collection).
    settled: bool,
}

static SIZES: LazyLock<Mutex<HashMap<PathBuf, Measured>>> = LazyLock::new(Default::default);

/// Disk use by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Workspace directories and the bytes they take.
    pub workspaces: u64,
    pub workspace_bytes: u64,
    /// Bundles of collected workspaces, and the archive's bytes (bundles and saved diffs).
    pub archives: u64,
    pub archive_bytes: u64,
    /// Repository mirrors and their bytes.
    pub mirrors: u64,
    pub mirror_bytes: u64,
}

/// Bytes removing `path` would free (blocking: walks the tree without following links).
pub fn measure(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let mut total = allocated(&meta);
    if !meta.is_dir() {
        return total;
    }
    let mut pending = vec![path.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            total += allocated(&meta);
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    total
}

fn allocated(meta: &std::fs::Metadata) -> u64 {
    if meta.is_file() && meta.nlink() > 1 {
        0
    } else {
        meta.blocks() * 512
    }
}

/// The size of `path`, measured again unless a remembered one is still good: `settled`
/// sizes (finished sessions) until [`forget`], others for [`FRESH_FOR`].
pub async fn size(path: &Path, settled: bool) -> u64 {
    let known = SIZES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(path)
        .copied();
    if let Some(known) = known {
        if (settled && known.settled) || known.at.elapsed() < FRESH_FOR {
            return known.bytes;
        }
    }
    let owned = path.to_owned();
    let bytes = tokio::task::spawn_blocking(move || measure(&owned))
        .await
        .unwrap_or(0);
    SIZES.lock().unwrap_or_else(|e| e.into_inner()).insert(
        path.to_owned(),
        Measured {
            bytes,
            at: Instant::now(),
            settled,
        },
    );
    bytes
}

/// Drops a remembered size (the directory changed or is gone).
pub fn forget(path: &Path) {
    SIZES.lock().unwrap_or_else(|e| e.into_inner()).remove(path);
}

/// Session-named directories directly under `workspaces/` (never following a symlink).
pub fn workspace_dirs(settings: &Settings) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(settings.workspaces_dir()) else {
        return Vec::new();
    };
    let mut dirs: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            crate::domain::SessionId::parse(&name)?;
            Some((name, e.path()))
        })
        .collect();
    dirs.sort();
    dirs
}

/// Mirror directories (`mirrors/<host>/<owner>/<name>.git`, stamped as ours).
pub fn mirror_dirs(settings: &Settings) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for host in subdirs(&settings.mirrors_dir()) {
        for owner in subdirs(&host) {
            found.extend(
                subdirs(&owner)
                    .into_iter()
                    .filter(|dir| super::clone::read_stamp(dir).is_some()),
            );
        }
    }
    found
}

/// Real directories (not symlinks) directly in `dir`.
pub fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

/// Disk use now.
pub async fn usage(settings: &Settings, store: &StoreClient) -> Result<Usage> {
    let dirs = workspace_dirs(settings);
    let ids = dirs.iter().map(|(id, _)| id.clone()).collect();
    let finished: HashMap<String, bool> = store
        .workspace_records(ids, false)
        .await?
        .into_iter()
        .map(|r| (r.session.id.clone(), r.session.status.is_finished()))
        .collect();
    let mut usage = Usage::default();
    for (id, dir) in &dirs {
        usage.workspaces += 1;
        usage.workspace_bytes += size(dir, finished.get(id).copied().unwrap_or(false)).await;
    }
    for mirror in mirror_dirs(settings) {
        usage.mirrors += 1;
        usage.mirror_bytes += size(&mirror, false).await;
    }
    let archive = settings.archive_dir();
    let (archives, archive_bytes) = tokio::task::spawn_blocking(move || {
        let bundles = std::fs::read_dir(&archive)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".bundle"))
                    .count() as u64
            })
            .unwrap_or(0);
        (bundles, measure(&archive))
    })
    .await
    .map_err(|err| Error::Internal(format!("cannot measure the archive: {err}")))?;
    usage.archives = archives;
    usage.archive_bytes = archive_bytes;
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_links_free_nothing_and_count_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a");
        std::fs::write(&file, vec![7u8; 64 * 1024]).expect("write");
        let alone = measure(&file);
        assert!(alone >= 64 * 1024, "{alone}");
        let other = tempfile::tempdir().expect("tempdir");
        std::fs::hard_link(&file, other.path().join("b")).expect("link");
        assert_eq!(measure(&file), 0);
        assert!(measure(dir.path()) < alone);
    }
}
