//! Watch commands: adding and managing watches, and `trigger-ci` / `trigger-pr`, which report
//! an event, print the reference's `[{watch, run, session}]`, say why nothing fired when
//! nothing did, and follow the sessions started.

use super::follow::{follow, Ended, Host};
use super::{absolute_repo, with_fields, CliError, Command, Ctx, Detach, WatchArgs};
use crate::render;
use clap::Args;
use serde::Deserialize;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::process::ExitCode;
use telecoder_actors::domain::watch::{Routed, Skipped};
use telecoder_actors::domain::{Session, Triggered, Watch, WatchRun};

#[derive(Args, Debug)]
pub struct TriggerCi {
    #[arg(long)]
    repo: String,
    #[arg(long)]
    workflow: String,
    #[arg(long)]
    branch: String,
    #[arg(long)]
    run_id: String,
    #[arg(long)]
    run_url: Option<String>,
    #[arg(long)]
    sha: Option<String>,
    /// Fires when completed (the default; any case).
    #[arg(long)]
    status: Option<String>,
    /// Fires when failure (the default; any case).
    #[arg(long)]
    conclusion: Option<String>,
    #[arg(long)]
    summary: Option<String>,
    #[command(flatten)]
    detach: Detach,
}

#[derive(Args, Debug)]
pub struct TriggerPr {
    #[arg(long)]
    repo: String,
    #[arg(long)]
    pr_number: u64,
    #[arg(long)]
    title: String,
    #[arg(long)]
    base: String,
    #[arg(long)]
    head: String,
    /// opened, reopened or synchronize (the default) fire; any case.
    #[arg(long)]
    action: Option<String>,
    #[arg(long)]
    url: Option<String>,
    #[arg(long)]
    head_sha: Option<String>,
    #[arg(long)]
    body: Option<String>,
    #[arg(long)]
    diff_text: Option<String>,
    #[command(flatten)]
    detach: Detach,
}

impl WatchArgs {
    fn body(&self, kind: &str) -> Value {
        json!({
            "kind": kind,
            "repo": absolute_repo(&self.target.repo),
            "instructions": self.instructions.join(" "),
            "agent": self.target.agent,
            "policy": self.target.policy.map(|p| p.to_string()),
            "maxRunsPerHour": self.max_runs_per_hour,
        })
    }
}

/// Adding, pausing, resuming and removing watches.
pub async fn manage(ctx: &Ctx, command: Command) -> Result<(), CliError> {
    let (client, out) = (&ctx.client, ctx.out);
    let watch: Watch = match command {
        Command::WatchAddCi {
            common,
            workflow,
            branch,
        } => {
            let body = with_fields(
                common.body("ci_failure"),
                &[("workflow", &workflow), ("branch", &branch)],
            );
            client.post("/api/watches", &body).await?
        }
        Command::WatchAddPr {
            common,
            base,
            head,
            skip_drafts,
        } => {
            let mut body = with_fields(
                common.body("pr_review"),
                &[("base", &base), ("head", &head)],
            );
            body["skipDrafts"] = Value::Bool(skip_drafts);
            client.post("/api/watches", &body).await?
        }
        Command::WatchAddSchedule {
            common,
            cron,
            timezone,
        } => {
            let body = with_fields(
                common.body("schedule"),
                &[("schedule", &Some(cron)), ("timezone", &timezone)],
            );
            client.post("/api/watches", &body).await?
        }
        Command::WatchPause { id } => {
            let body = json!({"status": "paused"});
            client.patch(&format!("/api/watches/{id}"), &body).await?
        }
        Command::WatchResume { id } => {
            let body = json!({"status": "active"});
            client.patch(&format!("/api/watches/{id}"), &body).await?
        }
        Command::WatchRm { id } => {
            let deleted: Value = client.delete(&format!("/api/watches/{id}")).await?;
            out.data(&deleted, || format!("watch {id} deleted\n"))?;
            return Ok(());
        }
        other => {
            return Err(CliError::Failed(format!(
                "internal: {other:?} is not a watch command"
            )))
        }
    };
    out.data(&watch, || render::watch(&watch))?;
    Ok(())
}

pub async fn trigger_ci(ctx: &Ctx, args: TriggerCi) -> Result<ExitCode, CliError> {
    let repo = absolute_repo(&args.repo);
    let body = with_fields(
        json!({"repo": repo, "workflow": args.workflow, "branch": args.branch, "runId": args.run_id}),
        &[
            ("runUrl", &args.run_url),
            ("sha", &args.sha),
            ("status", &args.status),
            ("conclusion", &args.conclusion),
            ("summary", &args.summary),
        ],
    );
    let event = Event {
        path: "/api/watch-events/ci",
        kind: "ci_failure",
        repo: &repo,
    };
    trigger(ctx, event, &body, args.detach).await
}

pub async fn trigger_pr(ctx: &Ctx, args: TriggerPr) -> Result<ExitCode, CliError> {
    let repo = absolute_repo(&args.repo);
    let request = with_fields(
        json!({"repo": repo, "prNumber": args.pr_number, "title": args.title, "base": args.base, "head": args.head}),
        &[
            ("action", &args.action),
            ("prUrl", &args.url),
            ("headSha", &args.head_sha),
            ("body", &args.body),
            ("diffText", &args.diff_text),
        ],
    );
    let event = Event {
        path: "/api/watch-events/pr",
        kind: "pr_review",
        repo: &repo,
    };
    trigger(ctx, event, &request, args.detach).await
}

/// Which event endpoint, for which kind of watch, about which repository.
struct Event<'a> {
    path: &'a str,
    kind: &'a str,
    repo: &'a str,
}

/// The event endpoints answer with the reasons when asked (`?explain=true`, ours); a daemon
/// that does not know the parameter answers with the contract's plain array.
#[derive(Deserialize)]
#[serde(untagged)]
enum Answer {
    Explained(Routed),
    Plain(Vec<Triggered>),
}

async fn trigger(
    ctx: &Ctx,
    event: Event<'_>,
    body: &Value,
    detach: Detach,
) -> Result<ExitCode, CliError> {
    let (client, out) = (&ctx.client, ctx.out);
    let answer: Answer = client
        .post(&format!("{}?explain=true", event.path), body)
        .await?;
    let routed = match answer {
        Answer::Explained(routed) => routed,
        Answer::Plain(triggered) => Routed {
            triggered,
            skipped: Vec::new(),
        },
    };
    let mut items = Vec::new();
    for t in &routed.triggered {
        items.push(fired(ctx, t).await?);
    }
    out.data(&items, || {
        routed
            .triggered
            .iter()
            .map(|t| {
                format!(
                    "watch {} started session {} (run {}): {}\n",
                    t.watch_id, t.session_id, t.run_id, t.trigger_summary
                )
            })
            .collect()
    })?;
    if let Some(why) = why_not(&event, &routed) {
        out.note(&why);
    }
    if detach.detach {
        return Ok(ExitCode::SUCCESS);
    }
    let mut ended = Ended::Done;
    for t in &routed.triggered {
        match follow(ctx, client, &t.session_id, Host::Daemon).await? {
            Ended::Interrupted => return Ok(Ended::Interrupted.into()),
            Ended::Failed => ended = Ended::Failed,
            Ended::Done => {}
        }
    }
    Ok(ended.into())
}

/// `{watch, run, session}` of one started session, the reference's shape.
async fn fired(ctx: &Ctx, t: &Triggered) -> Result<Value, CliError> {
    let client = &ctx.client;
    let watch: Watch = client
        .get(&format!("/api/watches/{}", t.watch_id), &[])
        .await?;
    let runs: Vec<WatchRun> = client
        .get(&format!("/api/watches/{}/runs", t.watch_id), &[])
        .await?;
    let run = runs.into_iter().find(|run| run.id == t.run_id);
    let session: Session = client
        .get(&format!("/api/sessions/{}", t.session_id), &[])
        .await?;
    Ok(json!({"watch": watch, "run": run, "session": session}))
}

/// Why watches started nothing (or what some skipped), for the person on stderr.
fn why_not(event: &Event<'_>, routed: &Routed) -> Option<String> {
    let mut text = String::new();
    if routed.triggered.is_empty() {
        text.push_str("no watch fired: ");
        if routed.skipped.is_empty() {
            let _ = write!(
                text,
                "no active {} watch for {} (see `telecoder watch-list --repo {}`)",
                event.kind, event.repo, event.repo
            );
            return Some(text);
        }
    } else if routed.skipped.is_empty() {
        return None;
    } else {
        text.push_str("also: ");
    }
    let reasons: Vec<String> = routed
        .skipped
        .iter()
        .map(|Skipped { watch_id, reason }| format!("watch {watch_id}: {reason}"))
        .collect();
    text.push_str(&reasons.join("; "));
    Some(text)
}
