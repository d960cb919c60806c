//! The `telecoder` command line: `serve` runs the daemon; every other command talks to it over
//! HTTP. `run` starts an embedded daemon when none is listening, and the read commands read
//! the database directly (read-only) when none answers.
//!
//! The commands and flags are the reference TeleCoder's, so its scripts keep working; output
//! is text for a person at a terminal and the reference's JSON everywhere else (`output.rs`).

pub mod converse;
mod follow;
mod notify;
pub mod output;
mod read;
mod watches;
mod workspaces;

use crate::client::{Client, ClientError};
use crate::config::{Config, ConfigError};
use crate::{render, serve};
use clap::{Args, Parser, Subcommand};
use output::{Format, Mode, Out};
use serde_json::Value;
use std::process::ExitCode;
use telecoder_actors::domain::approval::Verdict;
use telecoder_actors::domain::{PolicyMode, StatusFilter};
use telecoder_actors::publish::PublishRequest;
use telecoder_actors::requests::FaultRequest;

#[derive(Parser, Debug)]
#[command(
    name = "telecoder",
    version,
    about = "Runs coding agents on your own machine, durably, under a trust policy",
    after_help = "Output: tables and text on a terminal, JSON (the reference TeleCoder's shapes) \
                  when stdout is a pipe or a file. --json / --human choose either."
)]
pub struct Cli {
    /// Print JSON (the default when stdout is not a terminal).
    #[arg(long, global = true, conflicts_with_all = ["human", "format"])]
    pub json: bool,
    /// Print tables and text (the default on a terminal).
    #[arg(long, global = true, conflicts_with = "format")]
    pub human: bool,
    /// Output format: json, or table (text).
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon: HTTP API, session supervisor and store.
    Serve,
    /// Start a session and stream its events until it finishes (exit 0 done, 1 error).
    Run(RunArgs),
    /// List sessions, newest first.
    List(ListArgs),
    /// Show one session.
    Status { id: String },
    /// Show a session's events.
    Events {
        id: String,
        /// Only events after this event id.
        #[arg(long)]
        after: Option<i64>,
        /// Keep streaming until the session finishes (JSON: one event per line).
        #[arg(long, short)]
        follow: bool,
    },
    /// Finished sessions with their outcomes, most recent first.
    Inbox {
        /// How many (1-200, default 20).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Run a finished session again (same repo, prompt, agent and policy) and follow it.
    Rerun {
        id: String,
        #[command(flatten)]
        detach: Detach,
        /// Kept for older scripts: following is the default.
        #[arg(long, short, hide = true)]
        follow: bool,
    },
    /// Show a session's whole rerun family, and the turns of its conversation, in order.
    Lineage { id: String },
    /// Give a finished session's agent the next request, in the same workspace and branch,
    /// with the conversation so far (returns at once; -f follows it).
    Continue(converse::ContinueArgs),
    /// Approvals (policy ask): what agents wait for a person to allow or deny.
    Approvals(converse::ApprovalsArgs),
    /// Allow what a waiting agent asked for.
    Approve(converse::AnswerArgs),
    /// Deny what a waiting agent asked for.
    Deny(converse::AnswerArgs),
    /// Cancel a pending or running session and wait until it has stopped.
    Cancel { id: String },
    /// Print the resolved configuration.
    Config,
    /// Operator views: the live actor tree, daemon status, fault drills.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Check this machine: daemon, acpx, agents, git, data dir, port, token.
    Doctor,
    #[command(flatten)]
    Workspaces(workspaces::WorkspaceCommand),
    /// Send a test notification to every TELECODER_NOTIFY target and report each answer
    /// (exit 1 when any failed).
    NotifyTest,
    /// Publish a finished session as a GitHub pull request.
    PublishSession {
        id: String,
        /// The branch the pull request merges into.
        #[arg(long)]
        base: String,
        /// Pull request title (default: the outcome headline).
        #[arg(long)]
        title: Option<String>,
        /// Pull request body (default: the structured outcome).
        #[arg(long)]
        body: Option<String>,
    },
    /// Watch a repository's CI: a failed run starts a session.
    WatchAddCi {
        #[command(flatten)]
        common: WatchArgs,
        /// Only this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only this branch.
        #[arg(long)]
        branch: Option<String>,
    },
    /// Watch a repository's pull requests: opened/updated PRs start a review session.
    WatchAddPr {
        #[command(flatten)]
        common: WatchArgs,
        /// Only PRs into this base branch.
        #[arg(long)]
        base: Option<String>,
        /// Only PRs from this head branch.
        #[arg(long)]
        head: Option<String>,
        /// Leave draft PRs alone; they are reviewed once marked ready for review.
        #[arg(long)]
        skip_drafts: bool,
    },
    /// Run instructions on a cron schedule.
    WatchAddSchedule {
        #[command(flatten)]
        common: WatchArgs,
        /// Cron expression: 5 fields (minute hour day month weekday), 6 with seconds first,
        /// 7 with a year last, or @hourly/@daily/@weekly/@monthly/@yearly.
        #[arg(long)]
        cron: String,
        /// IANA time zone the schedule is read in (default UTC).
        #[arg(long)]
        timezone: Option<String>,
    },
    /// List watches.
    WatchList {
        /// ci_failure, pr_review or schedule.
        #[arg(long)]
        kind: Option<String>,
        /// active or paused.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        repo: Option<String>,
    },
    /// A watch's runs, newest first, with their return summaries.
    WatchRuns { id: String },
    /// Stop a watch from firing (it keeps its history).
    WatchPause { id: String },
    /// Let a paused watch fire again.
    WatchResume { id: String },
    /// Delete a watch and its run history.
    WatchRm { id: String },
    /// Report a CI run to the watches (as a CI system would) and follow the sessions it starts.
    TriggerCi(watches::TriggerCi),
    /// Report a pull-request update to the watches and follow the sessions it starts.
    TriggerPr(watches::TriggerPr),
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// The live actor tree, asked of the actors themselves.
    Actors,
    /// Version, uptime, database, sessions by status, queue depth.
    Status,
    /// Fail an actor on purpose: store, session:<id> or watch:<id>.
    Fault { target: String },
}

/// `--detach`: return once the session exists instead of following it.
#[derive(Args, Debug, Clone, Copy)]
pub struct Detach {
    /// Print what was started and return at once instead of following it.
    #[arg(long, short)]
    pub detach: bool,
}

/// Where and how sessions run: shared by `run` and the watch commands.
#[derive(Args, Debug)]
pub struct Target {
    /// Repository: a local path or a git URL (for watches also owner/name).
    #[arg(long)]
    pub repo: String,
    /// Agent name (default: TELECODER_DEFAULT_AGENT).
    #[arg(long)]
    pub agent: Option<String>,
    /// Trust policy: locked, observe, standard or ask (watches default to observe).
    #[arg(long)]
    pub policy: Option<PolicyMode>,
}

/// What every watch needs.
#[derive(Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    pub target: Target,
    /// Sessions it may start per hour.
    #[arg(long)]
    pub max_runs_per_hour: Option<u32>,
    /// What the agent should do when the watch fires (flags may come before or after).
    #[arg(required = true, num_args = 1..)]
    pub instructions: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub detach: Detach,
    /// The task (flags may come before or after it; put `--` before words that start with `-`).
    #[arg(required = true, num_args = 1..)]
    pub prompt: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// pending, running, complete, error, cancelled or active.
    #[arg(long)]
    pub status: Option<StatusFilter>,
    #[arg(long)]
    pub agent: Option<String>,
    #[arg(long)]
    pub policy: Option<PolicyMode>,
    /// Only reruns of this session.
    #[arg(long)]
    pub parent: Option<String>,
    /// Only the rerun family of this session.
    #[arg(long)]
    pub lineage: Option<String>,
    /// At most this many (newest first).
    #[arg(long)]
    pub limit: Option<u32>,
}

/// Why a command failed; decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Client(ClientError),
    #[error(transparent)]
    Store(#[from] telecoder_actors::Error),
    /// The reader of our output went away (`| head -1`): stop quietly.
    #[error("output closed")]
    ClosedPipe,
    #[error("{0}")]
    Failed(String),
}

impl From<std::io::Error> for CliError {
    fn from(err: std::io::Error) -> Self {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            Self::ClosedPipe
        } else {
            Self::Failed(format!("cannot write the output: {err}"))
        }
    }
}

impl From<ClientError> for CliError {
    fn from(err: ClientError) -> Self {
        match err {
            ClientError::Output(err) => err.into(),
            other => Self::Client(other),
        }
    }
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Config(_) => ExitCode::from(2),
            Self::ClosedPipe => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        }
    }
}

/// Everything a command needs: configuration, output, and a client for the daemon.
pub struct Ctx {
    pub config: Config,
    pub out: Out,
    pub client: Client,
}

pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let config = Config::from_env()?;
    let out = Out {
        mode: Mode::choose(cli.json, cli.human, cli.format),
        forced_json: cli.json || cli.format == Some(Format::Json),
    };
    let Some(command) = cli.command else {
        return Ok(ExitCode::SUCCESS);
    };
    match command {
        Command::Serve => return serve::serve(config).await,
        Command::Config => {
            out.data(&render::ConfigView::of(&config), || render::config(&config))?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Doctor => return crate::doctor::run(&config, out).await,
        _ => {}
    }
    let client = Client::new(&config.url, config.tokens.for_cli())?;
    let ctx = Ctx {
        config,
        out,
        client,
    };
    dispatch(&ctx, command).await
}

async fn dispatch(ctx: &Ctx, command: Command) -> Result<ExitCode, CliError> {
    match command {
        Command::Run(args) => follow::run_session(ctx, args).await,
        Command::Rerun { id, detach, .. } => follow::rerun(ctx, &id, detach).await,
        Command::Cancel { id } => follow::cancel(ctx, &id).await,
        Command::Continue(args) => converse::continue_session(ctx, args).await,
        Command::Events {
            id,
            after,
            follow: true,
        } => follow::events(ctx, &id, after.unwrap_or(0)).await,
        Command::TriggerCi(args) => watches::trigger_ci(ctx, args).await,
        Command::TriggerPr(args) => watches::trigger_pr(ctx, args).await,
        Command::Workspaces(command) => workspaces::run(ctx, command).await,
        Command::NotifyTest => notify::test(ctx).await,
        command => {
            other(ctx, command).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Commands that print one answer and exit 0.
async fn other(ctx: &Ctx, command: Command) -> Result<(), CliError> {
    let (client, out) = (&ctx.client, ctx.out);
    match command {
        Command::List(args) => read::list(ctx, args).await?,
        Command::Status { id } => read::status(ctx, &id).await?,
        Command::Events { id, after, .. } => read::events(ctx, &id, after.unwrap_or(0)).await?,
        Command::Inbox { limit } => read::inbox(ctx, limit).await?,
        Command::Lineage { id } => read::lineage(ctx, &id).await?,
        Command::Approvals(args) => converse::list(ctx, args).await?,
        Command::Approve(args) => converse::answer(ctx, args, Verdict::Allow).await?,
        Command::Deny(args) => converse::answer(ctx, args, Verdict::Deny).await?,
        Command::WatchList { kind, status, repo } => {
            read::watch_list(ctx, kind, status, repo).await?
        }
        Command::WatchRuns { id } => read::watch_runs(ctx, &id).await?,
        Command::Admin { command } => admin(ctx, command).await?,
        Command::PublishSession {
            id,
            base,
            title,
            body,
        } => {
            let request = PublishRequest { base, title, body };
            let published: Value = client
                .post(&format!("/api/sessions/{id}/publish"), &request)
                .await?;
            out.data(&published, || {
                format!(
                    "pull request #{} {}\n",
                    published["pullRequestNumber"],
                    published["pullRequestUrl"].as_str().unwrap_or_default()
                )
            })?;
        }
        command => watches::manage(ctx, command).await?,
    }
    Ok(())
}

async fn admin(ctx: &Ctx, command: AdminCommand) -> Result<(), CliError> {
    let (client, out) = (&ctx.client, ctx.out);
    match command {
        AdminCommand::Actors => {
            let tree: Value = client.get("/admin/actors", &[]).await?;
            out.data(&tree, || render::actor_tree(&tree))?;
        }
        AdminCommand::Status => {
            let status: Value = client.get("/admin/status", &[]).await?;
            out.data(&status, || render::admin_status(&status))?;
        }
        AdminCommand::Fault { target } => {
            let answer: Value = client
                .post(
                    "/admin/faults",
                    &FaultRequest {
                        target: target.clone(),
                    },
                )
                .await?;
            out.data(&answer, || format!("injected a failure into {target}\n"))?;
        }
    }
    Ok(())
}

/// A local repository as the daemon should see it: absolute, since the daemon's working
/// directory is not the user's (the daemon resolves symlinks and `..` itself, one way for
/// every command). URLs and `owner/name` that is no local directory go as given.
fn absolute_repo(repo: &str) -> String {
    use telecoder_actors::domain::repo::{is_github_short, is_remote};
    let path = std::path::Path::new(repo);
    if is_remote(repo) || (is_github_short(repo) && !path.exists()) || path.is_absolute() {
        return repo.to_owned();
    }
    std::path::absolute(path)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| repo.to_owned())
}
