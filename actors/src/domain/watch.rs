//! Watches: standing instructions that turn CI failures, pull-request updates and schedules
//! into sessions. Matching, event keys and summaries are pure rules here.

use super::policy::PolicyMode;
use super::session::Session;
use serde::{Deserialize, Serialize};

named_enum! {
    /// What a watch reacts to; (ext) `schedule` fires on a cron schedule.
    pub enum WatchKind ("watch kind") {
        CiFailure = "ci_failure", PrReview = "pr_review", Schedule = "schedule",
    }
}

named_enum! {
    pub enum WatchStatus ("watch status") { Active = "active", Paused = "paused" }
}

/// The watch record as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Watch {
    pub id: String,
    pub kind: WatchKind,
    pub repo: String,
    pub instructions: String,
    pub agent: String,
    pub policy_mode: PolicyMode,
    pub workflow_name: String,
    pub branch_name: String,
    pub base_branch: String,
    pub head_branch: String,
    pub status: WatchStatus,
    /// (ext) cron expression of a schedule watch
    pub schedule: String,
    /// (ext) IANA time zone the schedule is read in
    pub timezone: String,
    /// (ext) sessions this watch may start per rolling hour
    pub max_runs_per_hour: u32,
    /// (ext) why the watch was paused by the daemon itself (e.g. its actor kept failing)
    pub paused_reason: String,
    /// (ext) a PR watch that ignores draft PRs (work in progress); by default drafts are
    /// reviewed like the reference does
    pub skip_drafts: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// One event a watch acted on (or deliberately skipped).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchRun {
    pub id: i64,
    pub watch_id: String,
    pub session_id: String,
    pub event_key: String,
    pub source_ref: String,
    pub trigger_summary: String,
    pub result_summary: String,
    pub return_summary: String,
    /// (ext) why no session was started (loop guard, rate limit); `""` when one was
    pub skipped_reason: String,
    pub created_at: String,
}

/// A CI run report (`POST /api/watch-events/ci`, or a mapped `workflow_run` webhook).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CiEvent {
    pub repo: String,
    pub workflow: String,
    /// (ext) the workflow's file (`.github/workflows/test.yml`); a watch's workflow filter may
    /// name it instead of the workflow's display name
    #[serde(default)]
    pub workflow_path: String,
    pub branch: String,
    pub run_id: String,
    pub run_url: String,
    pub sha: String,
    pub status: String,
    pub conclusion: String,
    pub summary: String,
}

/// A pull-request update (`POST /api/watch-events/pr`, or a mapped `pull_request` webhook).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrEvent {
    pub repo: String,
    pub pr_number: u64,
    pub title: String,
    pub base: String,
    pub head: String,
    pub action: String,
    pub pr_url: String,
    pub head_sha: String,
    pub body: String,
    pub diff_text: Option<String>,
    /// (ext) the PR is a draft; watches with `skipDrafts` ignore it
    #[serde(default)]
    pub draft: bool,
}

/// Anything that can fire watches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum WatchEvent {
    Ci(CiEvent),
    Pr(PrEvent),
    /// A schedule slot came due (`slot` is its RFC 3339 time, the event key).
    Tick {
        slot: String,
    },
}

/// A watch's answer to an event: a session was started for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Triggered {
    pub watch_id: String,
    pub session_id: String,
    /// The new watch run's id.
    pub run_id: i64,
    pub trigger_summary: String,
}

/// The most sessions one watch may start per rolling hour, whatever its `maxRunsPerHour` says:
/// one a minute, like the shortest schedule interval by default.
pub const MAX_RUNS_PER_HOUR_LIMIT: u32 = 60;

/// (ext) A watch that was concerned by an event but started nothing, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    pub watch_id: String,
    pub reason: String,
}

/// Everything routing one event produced: the sessions started and the watches that let it
/// pass with their reasons (watches of other kinds or repositories are not listed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routed {
    pub triggered: Vec<Triggered>,
    pub skipped: Vec<Skipped>,
}

/// Prefix of the branches TeleCoder's own sessions work on; events about them never fire.
pub const OWN_BRANCH_PREFIX: &str = "telecoder/";

pub use super::repo::repo_key;

fn or_default<'a>(value: &'a str, default: &'a str) -> &'a str {
    if value.is_empty() {
        default
    } else {
        value
    }
}

/// `Some(reason)` when a set filter rejects `value`.
fn filter_rejects(name: &str, filter: &str, value: &str) -> Option<String> {
    (!filter.is_empty() && filter != value)
        .then(|| format!("{name} filter '{filter}' does not match '{value}'"))
}

/// Why a watch let an event pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// Paused, another kind of watch, or another repository: not this watch's business.
    NotConcerned,
    /// One of the watch's filters rejects the event; the text says which.
    Filtered(String),
    /// The event itself does not fire (a run that did not fail, a closed PR).
    Ignored(String),
}

/// The actions of a `pull_request` that ask for a review: new commits to look at, or a draft
/// that became ready (its head may have been reviewed already; the event key dedupes that).
pub const REVIEWABLE_PR_ACTIONS: [&str; 4] =
    ["opened", "reopened", "synchronize", "ready_for_review"];

impl CiEvent {
    /// Only completed, failed runs fire (`completed` / `failure` when not given; any case).
    pub fn is_failure(&self) -> bool {
        self.ignored_because().is_none()
    }

    /// Why this run does not fire any watch, if it does not.
    fn ignored_because(&self) -> Option<String> {
        let status = or_default(&self.status, "completed");
        let conclusion = or_default(&self.conclusion, "failure");
        if !status.eq_ignore_ascii_case("completed") {
            Some(format!("status '{status}' is not completed"))
        } else if !conclusion.eq_ignore_ascii_case("failure") {
            Some(format!("conclusion '{conclusion}' is not failure"))
        } else {
            None
        }
    }

    pub fn event_key(&self) -> String {
        self.run_id.clone()
    }

    /// A workflow filter names the workflow (`test`), its file (`.github/workflows/test.yml`)
    /// or the file's name (`test.yml`): GitHub's runs may carry an empty run name.
    fn workflow_matches(&self, filter: &str) -> bool {
        let file_name = self.workflow_path.rsplit('/').next().unwrap_or_default();
        filter.is_empty()
            || filter == self.workflow
            || (!self.workflow_path.is_empty()
                && (filter == self.workflow_path || filter == file_name))
    }

    pub fn trigger_summary(&self) -> String {
        format!(
            "CI failure: workflow {} on branch {} (run {})",
            self.workflow, self.branch, self.run_id
        )
    }

    pub fn source_ref(&self) -> String {
        first_non_empty(&[&self.run_url, &self.sha, &self.run_id])
    }
}

impl PrEvent {
    /// [`REVIEWABLE_PR_ACTIONS`] fire, in any case; an event without an action is a
    /// `synchronize`.
    pub fn is_reviewable(&self) -> bool {
        self.ignored_because().is_none()
    }

    fn ignored_because(&self) -> Option<String> {
        let action = or_default(&self.action, "synchronize");
        let fires = REVIEWABLE_PR_ACTIONS
            .iter()
            .any(|a| action.eq_ignore_ascii_case(a));
        (!fires).then(|| {
            format!(
                "action '{action}' does not fire (only {})",
                REVIEWABLE_PR_ACTIONS.join(", ")
            )
        })
    }

    pub fn event_key(&self) -> String {
        let head = if self.head_sha.is_empty() {
            &self.head
        } else {
            &self.head_sha
        };
        format!("{}:{head}", self.pr_number)
    }

    pub fn trigger_summary(&self) -> String {
        let action = if self.action.is_empty() {
            "synchronize"
        } else {
            &self.action
        };
        format!(
            "PR #{} {action}: {} ({} -> {})",
            self.pr_number, self.title, self.head, self.base
        )
    }

    pub fn source_ref(&self) -> String {
        first_non_empty(&[&self.pr_url, &self.head_sha, &self.head])
    }
}

fn first_non_empty(candidates: &[&str]) -> String {
    candidates
        .iter()
        .find(|c| !c.is_empty())
        .map(|c| (*c).to_owned())
        .unwrap_or_default()
}

impl WatchEvent {
    pub fn event_key(&self) -> String {
        match self {
            Self::Ci(ci) => ci.event_key(),
            Self::Pr(pr) => pr.event_key(),
            Self::Tick { slot } => slot.clone(),
        }
    }

    pub fn trigger_summary(&self) -> String {
        match self {
            Self::Ci(ci) => ci.trigger_summary(),
            Self::Pr(pr) => pr.trigger_summary(),
            Self::Tick { slot } => format!("Scheduled run for {slot}"),
        }
    }

    pub fn source_ref(&self) -> String {
        match self {
            Self::Ci(ci) => ci.source_ref(),
            Self::Pr(pr) => pr.source_ref(),
            Self::Tick { slot } => slot.clone(),
        }
    }

    /// The branch whose change caused this event, for the loop guard.
    pub fn cause_branch(&self) -> &str {
        match self {
            Self::Ci(ci) => &ci.branch,
            Self::Pr(pr) => &pr.head,
            Self::Tick { .. } => "",
        }
    }
}

impl Watch {
    /// An active watch with no filters, observing (watches act while nobody is looking, so
    /// they default to observe, not to the global mode): what a new watch starts from before
    /// its request's fields are set.
    pub fn unfiltered(id: String, kind: WatchKind, repo: String, max_runs_per_hour: u32) -> Self {
        Watch {
            id,
            kind,
            repo,
            instructions: String::new(),
            agent: String::new(),
            policy_mode: PolicyMode::Observe,
            workflow_name: String::new(),
            branch_name: String::new(),
            base_branch: String::new(),
            head_branch: String::new(),
            status: WatchStatus::Active,
            schedule: String::new(),
            timezone: String::new(),
            max_runs_per_hour,
            paused_reason: String::new(),
            skip_drafts: false,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    /// Whether this watch reacts to `event` at all (kind, repo, filters, event state).
    pub fn matches(&self, event: &WatchEvent) -> bool {
        self.mismatch(event).is_none()
    }

    /// Why this watch does not react to `event`; `None` when it does.
    pub fn mismatch(&self, event: &WatchEvent) -> Option<Mismatch> {
        let (kind, repo) = match event {
            WatchEvent::Ci(ci) => (WatchKind::CiFailure, ci.repo.as_str()),
            WatchEvent::Pr(pr) => (WatchKind::PrReview, pr.repo.as_str()),
            WatchEvent::Tick { .. } => (WatchKind::Schedule, self.repo.as_str()),
        };
        if self.status != WatchStatus::Active
            || self.kind != kind
            || repo_key(&self.repo) != repo_key(repo)
        {
            return Some(Mismatch::NotConcerned);
        }
        let filtered = match event {
            WatchEvent::Ci(ci) => (!ci.workflow_matches(&self.workflow_name))
                .then(|| {
                    format!(
                        "workflow filter '{}' does not match '{}'",
                        self.workflow_name, ci.workflow
                    )
                })
                .or_else(|| filter_rejects("branch", &self.branch_name, &ci.branch)),
            WatchEvent::Pr(pr) => filter_rejects("base", &self.base_branch, &pr.base)
                .or_else(|| filter_rejects("head", &self.head_branch, &pr.head))
                .or_else(|| {
                    (self.skip_drafts && pr.draft)
                        .then(|| "the PR is a draft and the watch skips drafts".to_owned())
                }),
            WatchEvent::Tick { .. } => None,
        };
        if let Some(reason) = filtered {
            return Some(Mismatch::Filtered(reason));
        }
        let ignored = match event {
            WatchEvent::Ci(ci) => ci.ignored_because(),
            WatchEvent::Pr(pr) => pr.ignored_because(),
            WatchEvent::Tick { .. } => None,
        };
        ignored.map(Mismatch::Ignored)
    }
}

/// `resultSummary`: the outcome headline, at most 280 characters.
pub fn result_summary(session: &Session) -> String {
    session
        .outcome_headline
        .chars()
        .take(super::outcome::HEADLINE_MAX_CHARS)
        .collect()
}

/// `returnSummary`: six lines to post back to the PR or issue.
pub fn return_summary(trigger_summary: &str, session: &Session) -> String {
    let or = |value: &str, fallback: &str| {
        if value.trim().is_empty() {
            fallback.to_owned()
        } else {
            value.to_owned()
        }
    };
    [
        format!("Trigger: {}", or(trigger_summary, "Watch event.")),
        format!(
            "Runtime: acpx -> {} as {}; policy={}; workspace-writes={}",
            session.runtime_command,
            session.agent,
            session.policy_mode.as_str(),
            session.workspace_write_policy.as_str()
        ),
        format!(
            "Changed: {}",
            or(&session.outcome_changed, "No changes were reported.")
        ),
        format!(
            "Verified: {}",
            or(
                &session.outcome_verified,
                "Nothing was reported as verified."
            )
        ),
        format!(
            "Uncertain: {}",
            or(
                &session.outcome_uncertain,
                "Nothing was flagged as uncertain."
            )
        ),
        format!(
            "Next: {}",
            or(&session.outcome_next, "No follow-up was suggested.")
        ),
    ]
    .join("\n")
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
