//! Conversations and approvals (issue 15): `continue` (the next turn of a finished session, in
//! its workspace), `approvals` (what waits for a person; read without a daemon too), and
//! `approve` / `deny`.

use super::follow::{started, Host};
use super::{read, CliError, Ctx, Detach};
use crate::render::{age, listing, short};
use clap::Args;
use std::process::ExitCode;
use telecoder_actors::domain::approval::{Answer, Verdict};
use telecoder_actors::domain::conversation::ContinueRequest;
use telecoder_actors::domain::{Approval, ApprovalFilter, ApprovalStatus, PolicyMode, Session};

/// `telecoder continue ID PROMPT… [-f]`.
#[derive(Args, Debug)]
pub struct ContinueArgs {
    /// The finished session whose conversation goes on (its latest turn).
    pub id: String,
    /// Trust policy for this turn (default: the session's).
    #[arg(long)]
    pub policy: Option<PolicyMode>,
    /// Agent for this turn (default: the session's; another agent gets the earlier turns in
    /// its prompt).
    #[arg(long)]
    pub agent: Option<String>,
    /// Follow the new turn until it finishes (exit 0 done, 1 error).
    #[arg(long, short)]
    pub follow: bool,
    /// What to do next (flags may come before or after it).
    #[arg(required = true, num_args = 1..)]
    pub prompt: Vec<String>,
}

/// `telecoder approvals`.
#[derive(Args, Debug)]
pub struct ApprovalsArgs {
    /// pending, allowed, denied or expired (default: all).
    #[arg(long)]
    pub status: Option<ApprovalStatus>,
    /// Only this session's approvals.
    #[arg(long)]
    pub session: Option<String>,
    /// At most this many, newest first (1-1000, default 100).
    #[arg(long)]
    pub limit: Option<u32>,
}

/// `telecoder approve ID` / `telecoder deny ID`.
#[derive(Args, Debug)]
pub struct AnswerArgs {
    pub id: String,
    /// Answer with the agent's "always" option when it offered one, so it does not ask again.
    #[arg(long, short)]
    pub remember: bool,
}

pub async fn continue_session(ctx: &Ctx, args: ContinueArgs) -> Result<ExitCode, CliError> {
    let request = ContinueRequest {
        prompt: args.prompt.join(" "),
        policy: args.policy,
        agent: args.agent,
    };
    let body = serde_json::to_value(&request)
        .map_err(|err| CliError::Failed(format!("cannot encode the request: {err}")))?;
    let session: Session = ctx
        .client
        .post(&format!("/api/sessions/{}/continue", args.id), &body)
        .await?;
    let header = format!(
        "session {} continues {} (turn {}, policy {}) in {}\n",
        session.id, args.id, session.attempt, session.policy_mode, session.work_dir
    );
    let detach = Detach {
        detach: !args.follow,
    };
    started(ctx, &ctx.client, &session, header, detach, Host::Daemon).await
}

pub async fn list(ctx: &Ctx, args: ApprovalsArgs) -> Result<(), CliError> {
    let filter = ApprovalFilter {
        status: args.status,
        session_id: args.session.clone(),
        limit: args.limit.unwrap_or(100).clamp(1, 1000),
    };
    let query: Vec<(&str, String)> = [
        ("status", args.status.map(|s| s.as_str().to_owned())),
        ("session", args.session),
        ("limit", args.limit.map(|l| l.to_string())),
    ]
    .into_iter()
    .filter_map(|(key, value)| value.map(|v| (key, v)))
    .collect();
    let approvals: Vec<Approval> =
        read::read(ctx, ctx.client.get("/api/approvals", &query), |db| {
            db.approvals(&filter)
        })
        .await?;
    ctx.out.data(&approvals, || approvals_table(&approvals))?;
    Ok(())
}

pub async fn answer(ctx: &Ctx, args: AnswerArgs, decision: Verdict) -> Result<(), CliError> {
    let answer = Answer {
        decision,
        remember: args.remember,
    };
    let body = serde_json::to_value(answer)
        .map_err(|err| CliError::Failed(format!("cannot encode the answer: {err}")))?;
    let approval: Approval = ctx
        .client
        .post(&format!("/api/approvals/{}", args.id), &body)
        .await?;
    ctx.out.data(&approval, || {
        let option = if approval.selected_option.is_empty() {
            String::new()
        } else {
            format!(" (option {})", approval.selected_option)
        };
        format!(
            "approval {} {}{option}: {}\n",
            approval.id,
            approval.status.as_str(),
            approval.tool_call.title
        )
    })?;
    Ok(())
}

fn approvals_table(approvals: &[Approval]) -> String {
    let mut text = listing(
        approvals,
        "no approvals",
        &["ID", "SESSION", "STATUS", "AGE", "KIND", "TITLE", "DECIDED"],
        |a, now| {
            let when = match a.status {
                ApprovalStatus::Pending => format!("expires {}", a.expires_at),
                _ => format!("by {}", a.decided_by),
            };
            vec![
                a.id.clone(),
                a.session_id.clone(),
                a.status.as_str().to_owned(),
                age(&a.created_at, now),
                a.tool_call.kind.clone(),
                short(&a.tool_call.title, 50),
                when,
            ]
        },
    );
    if approvals
        .iter()
        .any(|a| a.status == ApprovalStatus::Pending)
    {
        text.push_str("answer: telecoder approve ID | telecoder deny ID (--remember: always)\n");
    }
    text
}
