//! The workspace collector: keeps the disk bounded without losing work.
//!
//! A pass (the supervisor's timer, `telecoder gc`, `POST /admin/gc`):
//! 1. finishes what an interrupted pass left: deletes everything in `trash/`, temporary
//!    archive files and half-made mirrors, and marks workspaces that are recorded present but
//!    gone (moved to the trash just before a crash) as archived or collected;
//! 2. removes the workspaces of sessions that finished more than
//!    `TELECODER_WORKSPACE_RETENTION` ago, oldest first, then more (oldest finished first)
//!    while all workspaces together exceed `TELECODER_WORKSPACE_MAX_BYTES`;
//! 3. removes mirrors no workspace uses that were not used within the retention period, and
//!    repacks busy mirrors that collected many small packs (keeping unreachable objects).
//!
//! Pending and running sessions' workspaces are never touched. A workspace whose branch holds
//! work that was neither fetched nor published (commits beyond its base commit, or uncommitted
//! changes, which are committed first as publishing would) is first saved as
//! `archive/<id>.bundle` (only the commits since the base) with its diff beside it; fetch and
//! diff then answer from there. If that cannot be done safely the workspace is kept and the
//! report says why.
//!
//! Crash safety: a workspace is moved into `trash/` with one rename (atomic) only after its
//! archive is complete and synced, then the store records it, then the trash copy is deleted.
//! A kill at any point leaves each workspace either whole in `workspaces/` or in the trash,
//! which the next pass empties.

use super::clone::{mirror_lock, MIRROR_STAMP};
use super::git::{Git, GitError, LONG_TIMEOUT};
use super::usage::{self, Usage};
use super::{archive_paths, commit_pending, diff, locked_record, locks, workspace_dir};
use crate::domain::{time, SessionId};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::store::workspaces::{WorkspaceRecord, WorkspaceState};
use crate::store::StoreClient;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::SystemTime;

/// One pass at a time: the timer and an operator's `telecoder gc` may meet.
static PASS: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(Default::default);

/// What a pass did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcReport {
    pub dry_run: bool,
    pub removed: Vec<Removed>,
    /// Workspaces that were due but had to stay, with the reason.
    pub kept: Vec<Kept>,
    pub bytes_freed: u64,
    /// Disk use after the pass (as it is, in a dry run).
    pub usage: Usage,
}

/// A directory removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Removed {
    /// `workspace`, `mirror` or `leftover` (what an interrupted pass left).
    pub kind: String,
    /// The session a workspace belonged to (`""` for mirrors and leftovers).
    pub session_id: String,
    pub path: String,
    pub bytes: u64,
    /// `expired`, `over TELECODER_WORKSPACE_MAX_BYTES`, `unused mirror`, `interrupted pass`.
    pub reason: String,
    /// The bundle the workspace's unsaved work was saved as, or `""` when nothing was unsaved.
    pub archive: String,
}

/// A workspace that was due but stays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Kept {
    pub session_id: String,
    pub path: String,
    pub reason: String,
}

const EXPIRED: &str = "expired";
const OVER_CAP: &str = "over TELECODER_WORKSPACE_MAX_BYTES";

/// The supervisor's timer: one pass, logged.
pub async fn scheduled(settings: Settings, store: StoreClient, metrics: Metrics) {
    match collect(&settings, &store, &metrics, false).await {
        Ok(report) if !report.removed.is_empty() || !report.kept.is_empty() => tracing::info!(
            removed = report.removed.len(),
            kept = report.kept.len(),
            bytes_freed = report.bytes_freed,
            "workspace collection"
        ),
        Ok(_) => {}
        Err(err) => tracing::warn!("workspace collection failed: {err}"),
    }
}

/// One pass; see the module docs.
pub async fn collect(
    settings: &Settings,
    store: &StoreClient,
    metrics: &Metrics,
    dry_run: bool,
) -> Result<GcReport> {
    let _pass = PASS.lock().await;
    let mut report = GcReport {
        dry_run,
        ..Default::default()
    };
    if !dry_run {
        report.removed.extend(clear_leftovers(settings).await);
    }
    let dirs = usage::workspace_dirs(settings);
    let ids: Vec<String> = dirs.iter().map(|(id, _)| id.clone()).collect();
    let records = store.workspace_records(ids, true).await?;
    if !dry_run {
        reconcile(settings, store, &records).await;
    }
    let mut due = Vec::new();
    for (id, dir) in &dirs {
        match records.iter().find(|r| &r.session.id == id) {
            Some(record) if record.session.status.is_finished() => {
                due.push((ended_at(record), id.clone(), dir.clone()));
            }
            Some(_) => {}
            None => report.kept.push(Kept {
                session_id: id.clone(),
                path: dir.display().to_string(),
                reason: "no session in the database has this id".into(),
            }),
        }
    }
    due.sort();
    let cutoff = SystemTime::now()
        .checked_sub(settings.workspace_retention)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let (expired, fresh): (Vec<_>, Vec<_>) =
        due.into_iter().partition(|(ended, _, _)| *ended <= cutoff);
    for (_, id, dir) in expired {
        let outcome = collect_one(settings, store, &id, &dir, EXPIRED, dry_run).await;
        report.record(outcome, metrics);
    }
    if let Some(cap) = settings.workspace_max_bytes {
        enforce_cap(settings, store, metrics, cap, fresh, &mut report).await;
    }
    report
        .removed
        .extend(collect_mirrors(settings, dry_run).await);
    report.bytes_freed = report.removed.iter().map(|r| r.bytes).sum();
    report.usage = usage::usage(settings, store).await?;
    Ok(report)
}

impl GcReport {
    fn record(&mut self, outcome: Option<std::result::Result<Removed, Kept>>, metrics: &Metrics) {
        match outcome {
            Some(Ok(removed)) => {
                if !self.dry_run {
                    metrics.workspaces_collected.inc();
                    metrics.workspace_bytes_freed.inc_by(removed.bytes);
                }
                self.removed.push(removed);
            }
            Some(Err(kept)) => self.kept.push(kept),
            None => {}
        }
    }
}

/// When a session ended (its last update if it has no finish time).
fn ended_at(record: &WorkspaceRecord) -> SystemTime {
    let session = &record.session;
    time::parse(&session.finished_at)
        .or_else(|| time::parse(&session.updated_at))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Removes the oldest finished sessions' workspaces while all of them together exceed `cap`.
async fn enforce_cap(
    settings: &Settings,
    store: &StoreClient,
    metrics: &Metrics,
    cap: u64,
    candidates: Vec<(SystemTime, String, PathBuf)>,
    report: &mut GcReport,
) {
    let removed_now: Vec<String> = report.removed.iter().map(|r| r.path.clone()).collect();
    let mut total = 0;
    for (_, dir) in usage::workspace_dirs(settings) {
        if !removed_now.contains(&dir.display().to_string()) {
            total += usage::size(&dir, false).await;
        }
    }
    for (_, id, dir) in candidates {
        if total <= cap {
            break;
        }
        let outcome = collect_one(settings, store, &id, &dir, OVER_CAP, report.dry_run).await;
        if let Some(Ok(removed)) = &outcome {
            total = total.saturating_sub(removed.bytes);
        }
        report.record(outcome, metrics);
    }
}

/// Collects one finished session's workspace; `None` when there was nothing to do (it went
/// away meanwhile).
async fn collect_one(
    settings: &Settings,
    store: &StoreClient,
    id: &str,
    dir: &Path,
    reason: &str,
    dry_run: bool,
) -> Option<std::result::Result<Removed, Kept>> {
    let kept = |why: String| {
        Some(Err(Kept {
            session_id: id.to_owned(),
            path: dir.display().to_string(),
            reason: why,
        }))
    };
    let (record, _held) = match locked_record(store, id).await {
        Ok(locked) => locked,
        Err(err) => return kept(err.to_string()),
    };
    if !record.session.status.is_finished() {
        return kept(format!("session is {}", record.session.status.as_str()));
    }
    if !dir.is_dir() {
        return None;
    }
    let bytes = usage::size(dir, false).await;
    let git = match Git::workspace(dir).await {
        Ok(git) => git.with_timeout(LONG_TIMEOUT),
        Err(err) => return kept(format!("{err}; its work cannot be saved safely")),
    };
    let plan = match plan_archive(&git, &record).await {
        Ok(plan) => plan,
        Err(err) => return kept(err.to_string()),
    };
    let (bundle, _) = archive_paths(settings, id);
    let archive = plan
        .as_ref()
        .map(|_| bundle.display().to_string())
        .unwrap_or_default();
    let removed = Removed {
        kind: "workspace".into(),
        session_id: id.to_owned(),
        path: dir.display().to_string(),
        bytes,
        reason: reason.to_owned(),
        archive,
    };
    if dry_run {
        return Some(Ok(removed));
    }
    if let Some(base) = &plan {
        if let Err(err) = save_archive(settings, &git, &record, base).await {
            return kept(format!("cannot save its unsaved work: {err}"));
        }
    }
    let trashed = match move_to_trash(settings, dir).await {
        Ok(trashed) => trashed,
        Err(err) => return kept(err),
    };
    let state = if plan.is_some() {
        WorkspaceState::Archived
    } else {
        WorkspaceState::Collected
    };
    if let Err(err) = store.set_workspace_state(id, state).await {
        // The next pass sees it gone from disk and records it then.
        tracing::warn!(session = %id, "cannot record the collected workspace: {err}");
    }
    usage::forget(dir);
    delete(trashed).await;
    tracing::info!(session = %id, reason, bytes, archived = plan.is_some(), "workspace collected");
    Some(Ok(removed))
}

/// `Some(base)` when the workspace holds work that was neither fetched nor published (it is
/// then archived against `base`); `None` when removing it loses nothing. Errors say why it
/// must stay.
async fn plan_archive(git: &Git, record: &WorkspaceRecord) -> Result<Option<String>> {
    let session = &record.session;
    let fail = |err: GitError| super::git_error("cannot inspect the workspace", err);
    let dirty = super::is_dirty(git).await.map_err(fail)?;
    let branch_ref = format!("refs/heads/{}", session.branch);
    let head = super::head_ref(git).await;
    let tip = super::branch_tip(git, &session.branch).await?;
    if head != branch_ref {
        if dirty {
            return Err(Error::Conflict(format!(
                "it has uncommitted changes but HEAD is not on {} (the agent switched branches)",
                session.branch
            )));
        }
        let contained = git
            .run(&["merge-base", "--is-ancestor", "HEAD", &tip])
            .await
            .is_ok();
        if !contained {
            return Err(Error::Conflict(format!(
                "HEAD is on commits that are not on {} (the agent switched branches)",
                session.branch
            )));
        }
    }
    let base = diff::base_of(git, &session.base_commit)
        .await
        .map_err(fail)?;
    if dirty {
        return Ok(Some(base));
    }
    let fetched = !record.fetched_commit.is_empty() && record.fetched_commit == tip;
    let published = session.pull_request_number > 0
        && git
            .line(&[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/remotes/origin/{}^{{commit}}", session.branch),
            ])
            .await
            .is_ok_and(|pushed| pushed == tip);
    Ok((tip != base && !fetched && !published).then_some(base))
}

/// Commits pending changes, then writes `archive/<id>.bundle` (the branch's commits since
/// `base`, or all of them when `base` is not an ancestor) and `archive/<id>.diff.json`, each
/// through a temporary file that is synced and renamed into place.
async fn save_archive(
    settings: &Settings,
    git: &Git,
    record: &WorkspaceRecord,
    base: &str,
) -> Result<()> {
    let session = &record.session;
    commit_pending(git, session, settings).await?;
    let tip = super::branch_tip(git, &session.branch).await?;
    let fail = |err: GitError| super::git_error("cannot write the bundle", err);
    let dir = settings.archive_dir();
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|err| Error::Internal(format!("cannot create {}: {err}", dir.display())))?;
    let (bundle, diff_path) = archive_paths(settings, &session.id);
    let bundle_tmp = with_suffix(&bundle, ".tmp");
    let diff_tmp = with_suffix(&diff_path, ".tmp");
    let branch_ref = format!("refs/heads/{}", session.branch);
    let thin = base != tip
        && git
            .run(&["merge-base", "--is-ancestor", base, &tip])
            .await
            .is_ok();
    let bundle_arg = bundle_tmp.to_string_lossy().into_owned();
    let exclude = format!("^{base}");
    let mut args = vec!["bundle", "create", "--quiet", &bundle_arg, &branch_ref];
    if thin {
        args.push(&exclude);
    }
    git.run(&args).await.map_err(fail)?;
    git.run(&["bundle", "verify", "--quiet", &bundle_arg])
        .await
        .map_err(fail)?;
    let saved = match diff::between(git, base, &tip).await {
        Ok(saved) => saved,
        Err(GitError::TooLarge(limit)) => diff::Diff {
            files: Vec::new(),
            patch: format!(
                "(the diff was larger than {} MiB when the workspace was collected; fetch the \
                 bundle to see the changes)\n",
                limit / (1024 * 1024)
            ),
        },
        Err(err) => return Err(super::git_error("cannot save the diff", err)),
    };
    let json = serde_json::to_vec(&saved)
        .map_err(|err| Error::Internal(format!("cannot encode the diff: {err}")))?;
    let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::write(&diff_tmp, json)?;
        for (tmp, path) in [(&bundle_tmp, &bundle), (&diff_tmp, &diff_path)] {
            std::fs::File::open(tmp)?.sync_all()?;
            std::fs::rename(tmp, path)?;
        }
        if let Some(parent) = bundle.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    })
    .await
    .map_err(|err| Error::Internal(format!("cannot save the archive: {err}")))?;
    written.map_err(|err| Error::Internal(format!("cannot save the archive: {err}")))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Moves a directory into `trash/` with one rename, so it is either still whole where it was
/// or entirely in the trash.
async fn move_to_trash(settings: &Settings, dir: &Path) -> std::result::Result<PathBuf, String> {
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
async fn delete(path: PathBuf) {
    let shown = path.display().to_string();
    let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&path)).await;
    if !matches!(removed, Ok(Ok(()))) {
        tracing::warn!(path = %shown, "cannot delete a collected directory; the next pass retries");
    }
}

/// Empties the trash, and removes temporary archive files and half-made mirrors (their lock is
/// free, so no clone is making them).
async fn clear_leftovers(settings: &Settings) -> Vec<Removed> {
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

/// Sessions recorded with a present workspace that is gone from disk (moved to the trash just
/// before a crash, or removed by hand) are recorded as archived (their bundle exists) or
/// collected.
async fn reconcile(settings: &Settings, store: &StoreClient, records: &[WorkspaceRecord]) {
    for record in records {
        let session = &record.session;
        if record.state() != WorkspaceState::Present
            || !session.status.is_finished()
            || workspace_dir(settings, session).exists()
        {
            continue;
        }
        let state = if archive_paths(settings, &session.id).0.is_file() {
            WorkspaceState::Archived
        } else {
            WorkspaceState::Collected
        };
        if let Err(err) = store.set_workspace_state(&session.id, state).await {
            tracing::warn!(session = %session.id, "cannot record a vanished workspace: {err}");
        }
    }
}

/// Mirrors that no workspace uses and that were not used within the retention period go;
/// busy ones with many small packs are repacked (keeping every object).
async fn collect_mirrors(settings: &Settings, dry_run: bool) -> Vec<Removed> {
    let mut removed = Vec::new();
    for mirror in usage::mirror_dirs(settings) {
        let Some(_held) = locks::try_lock(&mirror_lock(&mirror)) else {
            continue;
        };
        if referenced(settings, &mirror) {
            if !dry_run {
                repack_if_fragmented(&mirror).await;
            }
            continue;
        }
        let idle = std::fs::metadata(mirror.join(MIRROR_STAMP))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|at| at.elapsed().ok())
            .is_none_or(|age| age >= settings.workspace_retention);
        if !idle {
            continue;
        }
        let bytes = usage::size(&mirror, false).await;
        let entry = Removed {
            kind: "mirror".into(),
            session_id: String::new(),
            path: mirror.display().to_string(),
            bytes,
            reason: "no workspace uses it".into(),
            archive: String::new(),
        };
        if dry_run {
            removed.push(entry);
            continue;
        }
        match move_to_trash(settings, &mirror).await {
            Ok(trashed) => {
                usage::forget(&mirror);
                delete(trashed).await;
                for parent in mirror.ancestors().skip(1).take(2) {
                    // Only succeeds when empty.
                    let _ = std::fs::remove_dir(parent);
                }
                removed.push(entry);
            }
            Err(err) => tracing::warn!("cannot collect mirror: {err}"),
        }
    }
    removed
}

/// Whether any workspace on disk borrows objects from this mirror (its alternates name it).
fn referenced(settings: &Settings, mirror: &Path) -> bool {
    let Ok(objects) = std::fs::canonicalize(mirror.join("objects")) else {
        return false;
    };
    usage::workspace_dirs(settings).iter().any(|(_, dir)| {
        let own = dir.join(".git/objects");
        std::fs::read_to_string(own.join("info/alternates"))
            .map(|text| {
                text.lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty() && !line.starts_with('#'))
                    .any(|line| std::fs::canonicalize(own.join(line)).is_ok_and(|p| p == objects))
            })
            .unwrap_or(false)
    })
}

/// Fetches into a mirror leave one small pack (or loose objects) each; after many, reads get
/// slower. Repacks into one pack, keeping unreachable objects (a workspace may still need an
/// object a force-push upstream orphaned).
async fn repack_if_fragmented(mirror: &Path) {
    let git = Git::at(mirror, super::git::Reach::Local).with_timeout(LONG_TIMEOUT);
    let Ok(counts) = git.run(&["count-objects", "-v"]).await else {
        return;
    };
    let value = |key: &str| {
        counts
            .lines()
            .find_map(|line| line.strip_prefix(key)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    if value("count:") < 2000 && value("packs:") < 20 {
        return;
    }
    if let Err(err) = git
        .run(&["repack", "-a", "-d", "-q", "--keep-unreachable"])
        .await
    {
        tracing::warn!(mirror = %mirror.display(), "cannot repack mirror: {err}");
    } else {
        usage::forget(mirror);
    }
}
