//! Watches and their runs, for a person.

use super::{age, fields, listing, repo_cell, short};
use std::fmt::Write as _;
use telecoder_actors::domain::schedule::{self, Schedule};
use telecoder_actors::domain::{Watch, WatchKind, WatchRun};

/// The next `count` times a schedule watch fires, in its time zone.
pub fn next_fires(w: &Watch, count: usize) -> Vec<String> {
    let Ok(schedule) = Schedule::parse(&w.schedule, &w.timezone) else {
        return Vec::new();
    };
    let mut at = jiff::Timestamp::now();
    let mut fires = Vec::new();
    while fires.len() < count {
        let Some(next) = schedule.next_after(at) else {
            break;
        };
        let zone = jiff::tz::TimeZone::get(&w.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
        fires.push(format!(
            "{} ({})",
            next.to_zoned(zone).strftime("%a %Y-%m-%d %H:%M:%S %Z"),
            schedule::slot_key(next)
        ));
        at = next;
    }
    fires
}

pub fn watch(w: &Watch) -> String {
    let mut text = format!(
        "watch {} ({}, {})\n",
        w.id,
        w.kind.as_str(),
        w.status.as_str()
    );
    fields(
        &mut text,
        "  ",
        &[
            ("repo", &w.repo),
            ("workflow", &w.workflow_name),
            ("branch", &w.branch_name),
            ("base", &w.base_branch),
            ("head", &w.head_branch),
            ("schedule", &w.schedule),
            ("timezone", &w.timezone),
            ("agent", &w.agent),
            ("paused", &w.paused_reason),
        ],
    );
    let _ = writeln!(text, "  {:<9} {}", "policy", w.policy_mode.as_str());
    let _ = writeln!(text, "  {:<9} {}", "max/hour", w.max_runs_per_hour);
    if w.skip_drafts {
        let _ = writeln!(text, "  {:<9} skipped", "drafts");
    }
    let _ = writeln!(text, "  {:<9} {}", "do", short(&w.instructions, 100));
    if w.kind == WatchKind::Schedule {
        for (i, fire) in next_fires(w, 3).into_iter().enumerate() {
            let label = if i == 0 { "next" } else { "" };
            let _ = writeln!(text, "  {label:<9} {fire}");
        }
    }
    text
}

pub fn watches(watches: &[Watch]) -> String {
    listing(
        watches,
        "no watches",
        &["ID", "KIND", "STATUS", "AGE", "REPO", "INSTRUCTIONS"],
        |w, now| {
            vec![
                w.id.clone(),
                w.kind.as_str().to_owned(),
                w.status.as_str().to_owned(),
                age(&w.created_at, now),
                repo_cell(&w.repo),
                short(&w.instructions, 60),
            ]
        },
    )
}

pub fn watch_runs(runs: &[WatchRun]) -> String {
    if runs.is_empty() {
        return "no runs\n".into();
    }
    let mut text = String::new();
    for run in runs {
        let session = if run.session_id.is_empty() {
            "-"
        } else {
            run.session_id.as_str()
        };
        let _ = writeln!(
            text,
            "run {} [{}] session {} {}",
            run.id, run.event_key, session, run.created_at
        );
        let _ = writeln!(text, "  {}", run.trigger_summary);
        if !run.skipped_reason.is_empty() {
            let _ = writeln!(text, "  skipped: {}", run.skipped_reason);
        }
        for line in run.return_summary.lines() {
            let _ = writeln!(text, "  {line}");
        }
    }
    text
}
