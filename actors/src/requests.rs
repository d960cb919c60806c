//! Turning requests into records: validation and defaults for new sessions and watches.

use crate::domain::repo::{self, RepoKind, RepoTarget};
use crate::domain::{time, FailureKind, NewSession, Session, SessionId, SessionStatus, WatchEvent};
use crate::error::{Error, Result};
use crate::settings::{RuntimeKind, Settings};
use crate::workspace;
use std::path::Path;

/// Resolves a repository reference the one way every part of TeleCoder uses: a local path
/// becomes absolute with symlinks and `..` resolved (relative paths are relative to this
/// process), `file://` URLs are local paths, other URLs are refused if they hide `.` or `..`
/// segments, and `owner/name` stays a GitHub name. Sessions clone and watches match on the
/// result; a session's record keeps the string as given.
pub fn resolve_repo(given: &str) -> Result<RepoTarget> {
    let trimmed = given.trim();
    if trimmed.is_empty() {
        return Err(Error::Invalid("repo must not be empty".into()));
    }
    if let Some(rest) = trimmed.strip_prefix("file://") {
        // `file:///path` or `file://host/path`: the path is what the allowlist must see. It
        // stays a URL otherwise: one that leads nowhere fails at clone time, as URLs do.
        repo::check_url(trimmed).map_err(Error::Invalid)?;
        let path = rest.find('/').map_or("", |at| &rest[at..]);
        return Ok(RepoTarget {
            kind: RepoKind::Url,
            ..resolve_local(Path::new(path))
        });
    }
    if repo::is_remote(trimmed) || repo::is_github_short(trimmed) {
        return RepoTarget::remote(trimmed).map_err(Error::Invalid);
    }
    Ok(resolve_local(Path::new(trimmed)))
}

/// An existing path with its symlinks resolved; a missing one made absolute and cleaned of
/// dots without the disk (it cannot be cloned, but it can still be compared).
fn resolve_local(path: &Path) -> RepoTarget {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let resolved =
        std::fs::canonicalize(&absolute).unwrap_or_else(|_| repo::lexical_clean(&absolute));
    RepoTarget::local(&resolved)
}

/// What a session clones, resolved again at clone time and checked against the allowlist
/// again, so a symlink swapped since the session was created cannot lead outside it.
pub fn clone_source(settings: &Settings, given: &str) -> Result<String> {
    let target = resolve_repo(given)?;
    workspace::validate_repo(&target, given)?;
    check_allowed(settings, &target, given)?;
    // A `file://` URL keeps its resolved path in `source` (for the allowlist) but is cloned as
    // the URL it is: through the mirror cache, like any remote.
    if target.kind == RepoKind::Url && !repo::is_remote(&target.source) {
        return Ok(format!("file://{}", target.source));
    }
    Ok(target.source)
}

/// Puts an incoming event's repo in resolved form, so it matches watches stored that way.
pub fn resolve_event_repo(event: &mut WatchEvent) -> Result<()> {
    let repo = match event {
        WatchEvent::Ci(ci) => &mut ci.repo,
        WatchEvent::Pr(pr) => &mut pr.repo,
        WatchEvent::Tick { .. } => return Ok(()),
    };
    *repo = resolve_repo(repo)?.source;
    Ok(())
}

pub fn validate_agent(agent: &str) -> Result<()> {
    let ok = !agent.is_empty()
        && agent.len() <= 64
        && agent
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && agent
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid agent name '{agent}' (letters, digits, '-', '_' and '.', starting with a letter or digit)"
        )))
    }
}

/// Builds the pending record for a request (validating it) or for a rerun.
pub fn new_session_record(
    settings: &Settings,
    request: &NewSession,
    parent: Option<&Session>,
) -> Result<Session> {
    if request.prompt.trim().is_empty() {
        return Err(Error::Invalid("prompt must not be empty".into()));
    }
    let target = resolve_repo(&request.repo)?;
    workspace::validate_repo(&target, &request.repo)?;
    check_allowed(settings, &target, &request.repo)?;
    let agent = request
        .agent
        .clone()
        .filter(|agent| !agent.trim().is_empty())
        .unwrap_or_else(|| settings.default_agent.clone());
    validate_agent(&agent)?;
    check_known_agent(settings, &agent)?;
    let mode = request.policy.unwrap_or(settings.default_policy);
    check_runtime_allows(settings, mode)?;
    let policy = mode.resolve(settings.prompt_timeout_seconds);
    let now = time::now();
    Ok(Session {
        id: SessionId::random().to_string(),
        repo: request.repo.clone(),
        prompt: request.prompt.clone(),
        runtime_command: settings
            .agent_command(&agent)
            .map(str::to_owned)
            .unwrap_or_else(|| agent.clone()),
        agent,
        parent_session_id: parent.map(|p| p.id.clone()).unwrap_or_default(),
        attempt: parent.map(|p| p.attempt + 1).unwrap_or(1),
        policy_mode: policy.mode,
        effective_permission_mode: policy.permission,
        workspace_write_policy: policy.writes,
        max_runtime_seconds: policy.max_runtime_seconds,
        status: SessionStatus::Pending,
        owner_id: String::new(),
        branch: String::new(),
        work_dir: String::new(),
        result_text: String::new(),
        outcome_headline: "Session is pending.".into(),
        outcome_changed: String::new(),
        outcome_verified: String::new(),
        outcome_uncertain: String::new(),
        outcome_next: String::new(),
        error: String::new(),
        failure_kind: FailureKind::None,
        claimed_at: String::new(),
        heartbeat_at: String::new(),
        started_at: String::new(),
        finished_at: String::new(),
        created_at: now.clone(),
        updated_at: now,
        pull_request_number: 0,
        pull_request_url: String::new(),
        queue_position: 0,
        agent_session_id: String::new(),
        agent_load_session: false,
        stop_reason: String::new(),
        token_usage: None,
        continued_from: String::new(),
        awaiting_approval: false,
        base_commit: String::new(),
        fetched_at: String::new(),
        workspace_state: String::new(),
    })
}

/// Policy `ask` needs a runtime that can wait for a person's answer (issue 15).
pub fn check_runtime_allows(settings: &Settings, mode: crate::domain::PolicyMode) -> Result<()> {
    if mode == crate::domain::PolicyMode::Ask && settings.runtime == RuntimeKind::Acpx {
        return Err(Error::Invalid(
            "policy ask waits for a person's approval, which only the native runtime can do: \
             set TELECODER_RUNTIME=native (acpx answers permission requests from the policy alone)"
                .into(),
        ));
    }
    Ok(())
}

/// An agent must be in the registry or have a command configured; refusing others at creation
/// beats a session that fails later (and acpx would run an unknown name as a command).
fn check_known_agent(settings: &Settings, agent: &str) -> Result<()> {
    if settings.agent_command(agent).is_some() || crate::runtime::agents::known(agent).is_some() {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "unknown agent '{agent}': use one of {} or configure TELECODER_AGENT_{}_COMMAND",
        crate::runtime::agents::KNOWN_AGENTS
            .iter()
            .map(|known| known.name)
            .collect::<Vec<_>>()
            .join(", "),
        crate::settings::agent_env_key(agent)
    )))
}

/// The body of `POST /api/watches` (read by the HTTP route, written by the CLI): what the
/// watch is, and the fields a patch may change later, set at creation (a `status` there is
/// ignored: new watches are active). The daemon fills in defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NewWatch {
    pub kind: Option<crate::domain::WatchKind>,
    #[serde(deserialize_with = "text_or_null")]
    pub repo: String,
    #[serde(flatten)]
    pub fields: WatchPatch,
}

/// The body of `PATCH /api/watches/:id`: a partial update, unset fields keep their value.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[serde(deny_unknown_fields)]
pub struct WatchPatch {
    pub status: Option<crate::domain::WatchStatus>,
    pub instructions: Option<String>,
    pub agent: Option<String>,
    pub policy: Option<crate::domain::PolicyMode>,
    pub workflow: Option<String>,
    pub branch: Option<String>,
    pub base: Option<String>,
    pub head: Option<String>,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub max_runs_per_hour: Option<u32>,
    pub skip_drafts: Option<bool>,
}

/// Reads a text field of a request body where `null` means absent (as a missing field does),
/// so the route can say "is required" for both.
pub fn text_or_null<'de, D: serde::Deserializer<'de>>(value: D) -> Result<String, D::Error> {
    let text: Option<String> = serde::Deserialize::deserialize(value)?;
    Ok(text.unwrap_or_default())
}

/// The body of `POST /admin/faults` (read by the HTTP route, written by the CLI): the actor
/// to fail on purpose (`store`, `session:<id>`, `watch:<id>`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FaultRequest {
    pub target: String,
}

/// Refuses repositories outside `TELECODER_ALLOWED_REPOS`.
fn check_allowed(settings: &Settings, target: &RepoTarget, repo: &str) -> Result<()> {
    if settings.repo_allowed(target) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "repo {repo} is not allowed here (see TELECODER_ALLOWED_REPOS)"
        )))
    }
}

/// Checks the parts of a watch that any edit can break.
fn validate_watch(settings: &Settings, watch: &crate::domain::Watch) -> Result<()> {
    use crate::domain::watch::MAX_RUNS_PER_HOUR_LIMIT;
    use crate::domain::WatchKind;
    if watch.repo.trim().is_empty() {
        return Err(Error::Invalid("repo is required".into()));
    }
    if watch.instructions.trim().is_empty() {
        return Err(Error::Invalid("instructions is required".into()));
    }
    validate_agent(&watch.agent)?;
    check_runtime_allows(settings, watch.policy_mode)?;
    if !(1..=MAX_RUNS_PER_HOUR_LIMIT).contains(&watch.max_runs_per_hour) {
        return Err(Error::Invalid(format!(
            "maxRunsPerHour must be between 1 and {MAX_RUNS_PER_HOUR_LIMIT} (got {})",
            watch.max_runs_per_hour
        )));
    }
    if watch.skip_drafts && watch.kind != WatchKind::PrReview {
        return Err(Error::Invalid(
            "skipDrafts applies to pr_review watches only".into(),
        ));
    }
    if watch.kind == WatchKind::Schedule {
        if watch.schedule.trim().is_empty() {
            return Err(Error::Invalid(
                "schedule (a cron expression) is required for a schedule watch".into(),
            ));
        }
        crate::domain::schedule::Schedule::parse(&watch.schedule, &watch.timezone)
            .and_then(|schedule| schedule.check_spacing(settings.schedule_min_interval))
            .map_err(Error::Invalid)?;
    }
    Ok(())
}

/// Builds and validates a new, active watch: the defaults, then the request's fields as a
/// patch would set them.
pub fn new_watch_record(settings: &Settings, request: NewWatch) -> Result<crate::domain::Watch> {
    use crate::domain::{Watch, WatchKind};
    let kind = request.kind.unwrap_or(WatchKind::CiFailure);
    // Stored resolved, so `--repo .` here and `trigger-ci --repo .` there are one repository.
    let target = match request.repo.trim() {
        "" => None,
        given => Some(resolve_repo(given)?),
    };
    let now = time::now();
    let repo = target
        .as_ref()
        .map(|t| t.source.clone())
        .unwrap_or_default();
    let mut watch = Watch {
        created_at: now.clone(),
        updated_at: now,
        ..Watch::unfiltered(
            crate::domain::WatchId::random().to_string(),
            kind,
            repo,
            settings.watch_max_runs_per_hour,
        )
    };
    let fields = WatchPatch {
        status: None,
        ..request.fields
    };
    set_fields(&mut watch, fields);
    // Blank means "the default" when creating (a patch keeps what it is given).
    if watch.agent.is_empty() {
        watch.agent = settings.default_agent.clone();
    }
    watch.timezone = match kind {
        WatchKind::Schedule if watch.timezone.is_empty() => "UTC".into(),
        WatchKind::Schedule => watch.timezone,
        _ => String::new(),
    };
    validate_watch(settings, &watch)?;
    check_known_agent(settings, &watch.agent)?;
    if let Some(target) = &target {
        check_allowed(settings, target, &request.repo)?;
    }
    Ok(watch)
}

/// Applies a patch to a watch and validates the result.
pub fn apply_patch(
    settings: &Settings,
    mut watch: crate::domain::Watch,
    patch: WatchPatch,
) -> Result<crate::domain::Watch> {
    set_fields(&mut watch, patch);
    watch.updated_at = time::now();
    validate_watch(settings, &watch)?;
    Ok(watch)
}

/// Sets the fields a patch carries (texts trimmed, but the instructions as given); a new
/// status clears the reason the daemon paused the watch for.
fn set_fields(watch: &mut crate::domain::Watch, patch: WatchPatch) {
    if let Some(status) = patch.status {
        watch.status = status;
        watch.paused_reason.clear();
    }
    let set = |slot: &mut String, value: Option<String>| {
        if let Some(value) = value {
            *slot = value.trim().to_owned();
        }
    };
    if let Some(instructions) = patch.instructions {
        watch.instructions = instructions;
    }
    set(&mut watch.agent, patch.agent);
    set(&mut watch.workflow_name, patch.workflow);
    set(&mut watch.branch_name, patch.branch);
    set(&mut watch.base_branch, patch.base);
    set(&mut watch.head_branch, patch.head);
    set(&mut watch.schedule, patch.schedule);
    set(&mut watch.timezone, patch.timezone);
    if let Some(policy) = patch.policy {
        watch.policy_mode = policy;
    }
    if let Some(max) = patch.max_runs_per_hour {
        watch.max_runs_per_hour = max;
    }
    if let Some(skip) = patch.skip_drafts {
        watch.skip_drafts = skip;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_bodies_share_their_fields_and_only_a_patch_refuses_strangers() {
        let create: NewWatch = serde_json::from_str(
            r#"{"kind": "schedule", "repo": "/r", "instructions": "x", "schedule": "0 3 * * *",
                "maxRunsPerHour": 4, "colour": "red", "agent": null}"#,
        )
        .expect("a create body ignores fields it does not know");
        assert_eq!(create.fields.schedule.as_deref(), Some("0 3 * * *"));
        assert_eq!(create.fields.max_runs_per_hour, Some(4));
        assert_eq!(create.fields.agent, None);
        let missing: NewWatch = serde_json::from_str(r#"{"repo": null}"#).expect("null is absent");
        assert_eq!(missing.repo, "");
        assert!(serde_json::from_str::<WatchPatch>(r#"{"colour": "red"}"#).is_err());
        let bad_kind = serde_json::from_str::<NewWatch>(r#"{"kind": "nightly"}"#);
        assert!(bad_kind.is_err_and(|e| e.to_string().contains("unknown watch kind 'nightly'")));
        // What the CLI sends is what the route reads.
        let sent = serde_json::to_string(&create).expect("serializes");
        assert_eq!(serde_json::from_str::<NewWatch>(&sent).ok(), Some(create));
    }

    fn settings_allowing(pattern: &str) -> Settings {
        let mut settings = Settings::new("/nonexistent");
        settings.allowed_repos = vec![glob::Pattern::new(pattern).expect("pattern")];
        settings
    }

    #[test]
    fn local_paths_resolve_dots_and_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        let repo = root.join("repo");
        std::fs::create_dir(&repo).expect("mkdir");
        std::os::unix::fs::symlink(&repo, root.join("link")).expect("symlink");
        let expected = repo.to_string_lossy().into_owned();
        for given in [
            repo.join("../repo/./").to_string_lossy().into_owned(),
            root.join("link").to_string_lossy().into_owned(),
            format!("file://{}", root.join("link").display()),
        ] {
            let target = resolve_repo(&given).expect("resolves");
            assert_eq!(target.source, expected, "{given}");
        }
        let missing = resolve_repo(&format!("{}/gone/../other", root.display())).expect("ok");
        assert_eq!(missing.source, format!("{}/other", root.display()));
    }

    #[test]
    fn the_allowlist_sees_where_a_path_really_leads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        for sub in ["allowed", "outside"] {
            std::fs::create_dir(root.join(sub)).expect("mkdir");
        }
        std::os::unix::fs::symlink(root.join("outside"), root.join("allowed/escape"))
            .expect("symlink");
        let settings = settings_allowing(&format!("{}/allowed/*", root.display()));
        for attack in [
            format!("{}/allowed/../outside", root.display()),
            format!("{}/allowed/escape", root.display()),
        ] {
            let target = resolve_repo(&attack).expect("resolves");
            assert!(!settings.repo_allowed(&target), "{attack} must be refused");
        }
        let url = resolve_repo("https://github.com/acme/widgets/../../evil/repo");
        assert!(matches!(url, Err(Error::Invalid(msg)) if msg.contains("'..'")));
        let github = settings_allowing("acme/*");
        let ok = resolve_repo("https://github.com/acme/widgets.git").expect("valid");
        assert!(github.repo_allowed(&ok));
        let evil = resolve_repo("evil/repo").expect("valid");
        assert!(!github.repo_allowed(&evil));
    }
}
