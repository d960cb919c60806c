//! Watch commands: adding and managing watches, and `trigger-ci` / `trigger-pr`, which report
//! an event, print the reference's `[{watch, run, session}]`, say why nothing fired when
//! nothing did, and follow the sessions started.

use super::follow::{follow, Ended, Host};
use super::{absolute_repo, CliError, Command, Ctx, Detach, WatchArgs};
use crate::render;
use clap::Args;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::process::ExitCode;
use telecoder_actors::domain::watch::{Routed, Skipped};
use telecoder_actors::domain::{
    CiEvent, PrEvent, Session, Triggered, Watch, WatchKind, WatchRun, WatchStatus,
};
use telecoder_actors::requests::{NewWatch, WatchPatch};

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
    /// The request for a new watch of `kind`; `add` sets the command's own fields.
    fn request(&self, kind: WatchKind, add: impl FnOnce(WatchPatch) -> WatchPatch) -> NewWatch {
        NewWatch {
            kind: Some(kind),
            repo: absolute_repo(&self.target.repo),
            fields: add(WatchPatch {
                instructions: Some(self.instructions.join(" ")),
                agent: self.target.agent.clone(),
                policy: self.target.policy,
                max_runs_per_hour: self.max_runs_per_hour,
                ..WatchPatch::default()
            }),
        }
    }
}

/// Adding, pausing, resuming and removing watches.
pub async fn manage(ctx: &Ctx, command: Command) -> Result<(), CliError> {
    let (client, out) = (&ctx.client, ctx.out);
    let request = match command {
        Command::WatchAddCi {
            common,
            workflow,
            branch,
        } => common.request(WatchKind::CiFailure, |f| WatchPatch {
            workflow,
            branch,
            ..f
        }),
        Command::WatchAddPr {
            common,
            base,
            head,
            skip_drafts,
        } => common.request(WatchKind::PrReview, |f| WatchPatch {
            base,
            head,
            skip_drafts: Some(skip_drafts),
            ..f
        }),
        Command::WatchAddSchedule {
            common,
            cron,
            timezone,
        } => common.request(WatchKind::Schedule, |f| WatchPatch {
            schedule: Some(cron),
            timezone,
            ..f
        }),
        Command::WatchPause { id } => return set_status(ctx, &id, WatchStatus::Paused).await,
        Command::WatchResume { id } => return set_status(ctx, &id, WatchStatus::Active).await,
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
    let watch: Watch = client.post("/api/watches", &request).await?;
    out.data(&watch, || render::watch(&watch))?;
    Ok(())
}

/// Pauses or resumes a watch.
async fn set_status(ctx: &Ctx, id: &str, status: WatchStatus) -> Result<(), CliError> {
    let patch = WatchPatch {
        status: Some(status),
        ..WatchPatch::default()
    };
    let path = format!("/api/watches/{id}");
    let watch: Watch = ctx.client.send_json(Method::PATCH, &path, &patch).await?;
    ctx.out.data(&watch, || render::watch(&watch))?;
    Ok(())
}

pub async fn trigger_ci(ctx: &Ctx, args: TriggerCi) -> Result<ExitCode, CliError> {
    let repo = absolute_repo(&args.repo);
    let body = CiEvent {
        repo: repo.clone(),
        workflow: args.workflow,
        workflow_path: String::new(),
        branch: args.branch,
        run_id: args.run_id,
        run_url: args.run_url.unwrap_or_default(),
        sha: args.sha.unwrap_or_default(),
        status: args.status.unwrap_or_default(),
        conclusion: args.conclusion.unwrap_or_default(),
        summary: args.summary.unwrap_or_default(),
    };
    let event = Event {
        path: "/api/watch-events/ci",
        kind: "ci_failure",
        repo: &repo,
    };
    trigger(ctx, event, &body, args.detach).await
}

pub async fn trigger_pr(ctx: &Ctx, args: TriggerPr) -> Result<ExitCode, CliError> {
    let repo = absolute_repo(&args.repo);
    let request = PrEvent {
        repo: repo.clone(),
        pr_number: args.pr_number,
        title: args.title,
        base: args.base,
        head: args.head,
        action: args.action.unwrap_or_default(),
        pr_url: args.url.unwrap_or_default(),
        head_sha: args.head_sha.unwrap_or_default(),
        body: args.body.unwrap_or_default(),
        diff_text: args.diff_text,
        draft: false,
    };
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
    body: &impl serde::Serialize,
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
