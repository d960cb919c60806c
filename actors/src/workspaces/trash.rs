//! The collector's trash: a workspace or mirror leaves its place with one rename into
//! `trash/` and is deleted from there, so a crash leaves it whole or in the trash; the next
//! pass first empties the trash and removes what an interrupted pass or clone left behind.

use super::clone::mirror_lock;
use super::gc::Removed;
use super::{locks, usage};
use crate::domain::SessionId;
use crate::settings::Settings;
use std::path::{Path, PathBuf};

/// Moves a directory into `trash/` with one rename, so it is either still whole where it was
/// or entirely in the trash.
pub(super) async fn move_to_trash(
    settings: &Settings,
    dir: &Path,
) -> std::result::Result<PathBuf, String> {
    let trash = settings.trash_dir();
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = trash.join(format!("{name}-{}", SessionId::random()));
    let source = dir.to_owned();
    let moved = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&trash)?;
        std::fs::rename(&source, &target)?;
        std::fs::File::open(&trash)?.sync_all()?;
        Ok::<_, std::io::Error>(target)
    })
    .await
    .map_err(|err| err.to_string())?;
    moved.map_err(|err| {
        format!(
            "cannot move {} to the trash ({err}); the data directory's workspaces/, mirrors/ \
             and trash/ must be on one filesystem",
            dir.display()
        )
    })
}

/// Deletes a trashed directory (off the async threads: it may hold many files).
pub(super) async fn delete(path: PathBuf) {
    let shown = path.display().to_string();
    let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&path)).await;
    if !matches!(removed, Ok(Ok(()))) {
        tracing::warn!(path = %shown, "cannot delete a collected directory; the next pass retries");
    }
}

/// Empties the trash, and removes temporary archive files and half-made mirrors (their lock is
/// free, so no clone is making them).
pub(super) async fn clear_leftovers(settings: &Settings) -> Vec<Removed> {
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || clear_leftovers_now(&settings))
        .await
        .unwrap_or_default()
}

fn clear_leftovers_now(settings: &Settings) -> Vec<Removed> {
    let mut doomed: Vec<PathBuf> = Vec::new();
    let entries = |dir: PathBuf| {
        std::fs::read_dir(dir)
            .map(|entries| entries.flatten().map(|e| e.path()).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    doomed.extend(entries(settings.trash_dir()));
    doomed.extend(
        entries(settings.archive_dir())
            .into_iter()
            .filter(|path| path.to_string_lossy().ends_with(".tmp")),
    );
    for host in usage::subdirs(&settings.mirrors_dir()) {
        for owner in usage::subdirs(&host) {
            for dir in usage::subdirs(&owner) {
                let name = dir.to_string_lossy().into_owned();
                let Some((final_path, _)) = name.rsplit_once(".tmp-") else {
                    continue;
                };
                if locks::try_lock(&mirror_lock(Path::new(final_path))).is_some() {
                    doomed.push(dir);
                }
            }
        }
    }
    let mut removed = Vec::new();
    for path in doomed {
        let bytes = usage::measure(&path);
        let result = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match result {
            Ok(()) => removed.push(Removed {
                kind: "leftover".into(),
                session_id: String::new(),
                path: path.display().to_string(),
                bytes,
                reason: "interrupted pass".into(),
                archive: String::new(),
            }),
            Err(err) => tracing::warn!(path = %path.display(), "cannot remove a leftover: {err}"),
        }
    }
    removed
}
