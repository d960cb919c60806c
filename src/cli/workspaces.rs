//! CLI commands for workspaces: `diff`, `fetch`, `open` and `gc`.

use super::output::{pretty, Out};
use super::{CliError, Ctx};
use crate::config::Config;
use clap::Subcommand;
use serde_json::json;
use std::process::ExitCode;
use telecoder_actors::domain::Session;
use telecoder_actors::workspaces::diff::{totals, Diff};
use telecoder_actors::workspaces::fetch::Fetched;
use telecoder_actors::workspaces::gc::GcReport;

#[derive(Subcommand, Debug)]
pub enum WorkspaceCommand {
    /// Show a session's changes against the commit it started from, uncommitted ones included.
    Diff {
        id: String,
        /// Per-file line counts instead of the patch.
        #[arg(long)]
        stat: bool,
    },
    /// Create or update branch telecoder/<id> in your local repository (nothing else there
    /// changes: not your current branch, index or working tree).
    Fetch { id: String },
    /// Print a session's workspace directory (cd "$(telecoder open ID)").
    Open { id: String },
    /// Collect expired workspaces now (work neither fetched nor published is bundled first).
    Gc {
        /// Only show what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(ctx: &Ctx, command: WorkspaceCommand) -> Result<ExitCode, CliError> {
    let (client, out) = (&ctx.client, ctx.out);
    match command {
        WorkspaceCommand::Diff { id, stat } => {
            let diff: Diff = client.get(&format!("/api/sessions/{id}/diff"), &[]).await?;
            show_diff(out, &diff, stat)?;
        }
        WorkspaceCommand::Fetch { id } => {
            let fetched: Fetched = client
                .post(&format!("/api/sessions/{id}/fetch"), &json!({}))
                .await?;
            out.data(&fetched, || fetched_text(&fetched))?;
        }
        WorkspaceCommand::Open { id } => {
            // Always the bare path, piped or not: it is made for `cd "$(telecoder open ID)"`.
            let session: Session = client.get(&format!("/api/sessions/{id}"), &[]).await?;
            out.line(&open(&ctx.config, &session)?)?;
        }
        WorkspaceCommand::Gc { dry_run } => {
            let report: GcReport = client
                .post("/admin/gc", &json!({ "dryRun": dry_run }))
                .await?;
            out.data(&report, || gc_text(&report))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn fetched_text(fetched: &Fetched) -> String {
    let what = if !fetched.updated {
        "already up to date"
    } else if fetched.previous.is_empty() {
        "created"
    } else {
        "updated"
    };
    format!(
        "{} in {} {what} at {}{}\n",
        fetched.branch,
        fetched.repo,
        short(&fetched.commit),
        if fetched.from_archive {
            " (from the collected workspace's bundle)"
        } else {
            ""
        }
    )
}

/// The workspace directory, or why there is none.
fn open(config: &Config, session: &Session) -> Result<String, CliError> {
    let id = &session.id;
    match session.workspace_state.as_str() {
        "present" => Ok(session.work_dir.clone()),
        // A daemon from before workspace states: the directory is all it knows.
        "" if !session.work_dir.is_empty() => Ok(session.work_dir.clone()),
        "" => Err(CliError::Failed(format!(
            "session {id} has no workspace (it is {} and never got one)",
            session.status.as_str()
        ))),
        "archived" => {
            let (bundle, _) = telecoder_actors::workspaces::archive_paths(&config.settings, id);
            Err(CliError::Failed(format!(
                "the workspace of session {id} was collected; its work is saved in {} \
                 (`telecoder diff {id}` and `telecoder fetch {id}` still work)",
                bundle.display()
            )))
        }
        _ => Err(CliError::Failed(format!(
            "the workspace of session {id} was collected (its work had been fetched or published)"
        ))),
    }
}

/// The patch (or `--stat` table) is text even in a pipe (`telecoder diff ID | git apply`);
/// `--json` asks for the JSON shape.
fn show_diff(out: Out, diff: &Diff, stat: bool) -> Result<(), CliError> {
    match (out.forced_json, stat) {
        (true, true) => out.line(&pretty(&diff.files))?,
        (true, false) => out.line(&pretty(diff))?,
        (false, false) => out.print(&diff.patch)?,
        (false, true) => out.print(&stat_text(diff))?,
    }
    Ok(())
}

fn stat_text(diff: &Diff) -> String {
    let mut text = String::new();
    for file in &diff.files {
        text.push_str(&format!(
            "{:>6} {:>6}  {:<10} {}\n",
            format!("+{}", file.additions),
            format!("-{}", file.deletions),
            file.status,
            file.path
        ));
    }
    let (additions, deletions) = totals(&diff.files);
    text.push_str(&format!(
        "{} file{} changed, {additions} insertion{}(+), {deletions} deletion{}(-)\n",
        diff.files.len(),
        plural(diff.files.len() as u64),
        plural(additions),
        plural(deletions)
    ));
    text
}

fn gc_text(report: &GcReport) -> String {
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut text = String::new();
    if report.removed.is_empty() {
        text.push_str(&format!("nothing to collect ({verb} nothing)\n"));
    }
    for removed in &report.removed {
        let who = if removed.session_id.is_empty() {
            removed.kind.clone()
        } else {
            format!("{} {}", removed.kind, removed.session_id)
        };
        text.push_str(&format!(
            "{verb} {who} ({}, {}): {}\n",
            human(removed.bytes),
            removed.reason,
            removed.path
        ));
        if !removed.archive.is_empty() {
            text.push_str(&format!("  unsaved work bundled as {}\n", removed.archive));
        }
    }
    for kept in &report.kept {
        text.push_str(&format!(
            "kept workspace {}: {} ({})\n",
            kept.session_id, kept.reason, kept.path
        ));
    }
    let usage = &report.usage;
    text.push_str(&format!(
        "{} {}; workspaces now: {} ({}), archives: {} ({}), mirrors: {} ({})\n",
        if report.dry_run {
            "would free"
        } else {
            "freed"
        },
        human(report.bytes_freed),
        usage.workspaces,
        human(usage.workspace_bytes),
        usage.archives,
        human(usage.archive_bytes),
        usage.mirrors,
        human(usage.mirror_bytes)
    ));
    text
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// 1536 → `1.5 KiB`.
fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
