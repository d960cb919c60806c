//! The `telecoder` command line: `serve` runs the daemon; every other command talks to it over
//! HTTP (and `run` starts an embedded daemon when none is listening).

use crate::client::{Client, ClientError};
use crate::config::{Config, ConfigError};
use crate::{daemon, render};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use std::process::ExitCode;
use telecoder_actors::domain::{Event, PolicyMode, Session, Triggered, Watch, WatchRun};

#[derive(Parser, Debug)]
#[command(
    name = "telecoder",
    version,
    about = "Runs coding agents on your own machine, durably, under a trust policy",
    disable_help_subcommand = false
)]
pub struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
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
        /// Keep streaming until the session finishes.
        #[arg(long, short)]
        follow: bool,
    },
    /// Finished sessions with their outcomes, most recent first.
    Inbox {
        /// How many (1-200, default 20).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Run a finished session again (same repo, prompt, agent and policy).
    Rerun {
        id: String,
        /// Stream the new session's events until it finishes.
        #[arg(long, short)]
        follow: bool,
    },
    /// Show a session's whole rerun family.
    Lineage { id: String },
    /// Cancel a pending or running session.
    Cancel { id: String },
    /// Print the resolved configuration.
    Config,
    /// Operator views: the live actor tree, daemon status, fault drills.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Check this machine: acpx, agents, git, data dir, port, token.
    Doctor,
    #[command(flatten)]
    Workspaces(crate::workspaces_cli::WorkspaceCommand),
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
        /// Cron expression: 5 fields, or 6 with seconds (e.g. "0 9 * * 1-5").
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
    /// Report a CI run to the watches (as a CI system would).
    TriggerCi {
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
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        conclusion: Option<String>,
        #[arg(long)]
        summary: Option<String>,
    },
    /// Report a pull-request update to the watches.
    TriggerPr {
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
    },
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

/// What every watch needs.
#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Repository: a local path, a git URL or owner/name.
    #[arg(long)]
    pub repo: String,
    #[arg(long)]
    pub agent: Option<String>,
    /// Trust policy for its sessions (default observe).
    #[arg(long)]
    pub policy: Option<PolicyMode>,
    /// Sessions it may start per hour.
    #[arg(long)]
    pub max_runs_per_hour: Option<u32>,
    /// What the agent should do when the watch fires.
    #[arg(required = true, num_args = 1.., trailing_var_arg = true)]
    pub instructions: Vec<String>,
}

impl WatchArgs {
    fn body(&self, kind: &str) -> Value {
        json!({
            "kind": kind,
            "repo": resolve_repo(&self.repo),
            "instructions": self.instructions.join(" "),
            "agent": self.agent,
            "policy": self.policy.map(|p| p.to_string()),
            "maxRunsPerHour": self.max_runs_per_hour,
        })
    }
}

/// Adds the non-empty optional fields to a JSON object.
fn with_fields(mut body: Value, fields: &[(&str, &Option<String>)]) -> Value {
    if let Some(object) = body.as_object_mut() {
        for (key, value) in fields {
            if let Some(value) = value {
                object.insert((*key).to_owned(), Value::String(value.clone()));
            }
        }
    }
    body
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Repository to work on: a local path or a git URL.
    #[arg(long)]
    pub repo: String,
    /// Agent name (default: TELECODER_DEFAULT_AGENT).
    #[arg(long)]
    pub agent: Option<String>,
    /// Trust policy: locked, observe or standard.
    #[arg(long)]
    pub policy: Option<PolicyMode>,
    /// The task.
    #[arg(required = true, num_args = 1.., trailing_var_arg = true)]
    pub prompt: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// pending, running, complete, error, cancelled or active.
    #[arg(long)]
    pub status: Option<String>,
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
}

/// Why a command failed; decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Config(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let config = Config::from_env()?;
    let json = cli.json;
    match cli.command {
        Command::Serve => daemon::serve(config).await,
        Command::Config => {
            render::config(&config, json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor => Ok(crate::doctor::run(&config).await),
        Command::Run(args) => run_session(&config, args, json).await,
        Command::Workspaces(command) => crate::workspaces_cli::run(&config, command, json).await,
        command => {
            let client = Client::new(&config.url, config.tokens.for_cli())?;
            query(&client, command, json).await
        }
    }
}

async fn query(client: &Client, command: Command, json: bool) -> Result<ExitCode, CliError> {
    match command {
        Command::List(args) => {
            let mut query = Vec::new();
            for (key, value) in [
                ("status", args.status),
                ("agent", args.agent),
                ("policy", args.policy.map(|p| p.to_string())),
                ("parent", args.parent),
                ("lineage", args.lineage),
            ] {
                if let Some(value) = value {
                    query.push((key, value));
                }
            }
            let sessions: Vec<Session> = client.get("/api/sessions", &query).await?;
            render::sessions(&sessions, json);
        }
        Command::Status { id } => {
            let session: Session = client.get(&format!("/api/sessions/{id}"), &[]).await?;
            render::session(&session, json);
        }
        Command::Events { id, after, follow } => {
            let after = after.unwrap_or(0);
            if follow {
                let terminal = client
                    .follow(&id, after, |e| render::event(e, json))
                    .await?;
                return Ok(exit_for(terminal.as_ref()));
            }
            let events: Vec<Event> = client
                .get(
                    &format!("/api/sessions/{id}/events"),
                    &[("after", after.to_string())],
                )
                .await?;
            for event in &events {
                render::event_line(event, json);
            }
        }
        Command::Inbox { limit } => {
            let query: Vec<(&str, String)> = limit
                .map(|l| ("limit", l.to_string()))
                .into_iter()
                .collect();
            let sessions: Vec<Session> = client.get("/api/inbox", &query).await?;
            render::inbox(&sessions, json);
        }
        Command::Rerun { id, follow } => {
            let session: Session = client
                .post(&format!("/api/sessions/{id}/rerun"), &json!({}))
                .await?;
            if follow {
                return follow_session(client, &session, json).await;
            }
            render::session(&session, json);
        }
        Command::Lineage { id } => {
            let sessions: Vec<Session> = client
                .get(&format!("/api/sessions/{id}/lineage"), &[])
                .await?;
            render::sessions(&sessions, json);
        }
        Command::Cancel { id } => {
            let session: Session = client
                .post(&format!("/api/sessions/{id}/cancel"), &json!({}))
                .await?;
            render::session(&session, json);
        }
        Command::Admin { command } => match command {
            AdminCommand::Actors => {
                let tree: Value = client.get("/admin/actors", &[]).await?;
                render::actor_tree(&tree, json);
            }
            AdminCommand::Status => {
                let status: Value = client.get("/admin/status", &[]).await?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).unwrap_or_default()
                );
            }
            AdminCommand::Fault { target } => {
                let _: Value = client
                    .post("/admin/faults", &json!({"target": target}))
                    .await?;
                println!("injected a failure into {target}");
            }
        },
        Command::PublishSession {
            id,
            base,
            title,
            body,
        } => {
            let request = with_fields(json!({"base": base}), &[("title", &title), ("body", &body)]);
            let published: Value = client
                .post(&format!("/api/sessions/{id}/publish"), &request)
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&published).unwrap_or_default()
                );
            } else {
                println!(
                    "pull request #{} {}",
                    published["pullRequestNumber"],
                    published["pullRequestUrl"].as_str().unwrap_or_default()
                );
            }
        }
        Command::WatchAddCi {
            common,
            workflow,
            branch,
        } => {
            let body = with_fields(
                common.body("ci_failure"),
                &[("workflow", &workflow), ("branch", &branch)],
            );
            let watch: Watch = client.post("/api/watches", &body).await?;
            render::watch(&watch, json);
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
            let watch: Watch = client.post("/api/watches", &body).await?;
            render::watch(&watch, json);
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
            let watch: Watch = client.post("/api/watches", &body).await?;
            render::watch(&watch, json);
        }
        Command::WatchList { kind, status, repo } => {
            let query: Vec<(&str, String)> = [("kind", kind), ("status", status), ("repo", repo)]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect();
            let watches: Vec<Watch> = client.get("/api/watches", &query).await?;
            render::watches(&watches, json);
        }
        Command::WatchRuns { id } => {
            let runs: Vec<WatchRun> = client.get(&format!("/api/watches/{id}/runs"), &[]).await?;
            render::watch_runs(&runs, json);
        }
        Command::WatchPause { id } => {
            let watch: Watch = client
                .patch(&format!("/api/watches/{id}"), &json!({"status": "paused"}))
                .await?;
            render::watch(&watch, json);
        }
        Command::WatchResume { id } => {
            let watch: Watch = client
                .patch(&format!("/api/watches/{id}"), &json!({"status": "active"}))
                .await?;
            render::watch(&watch, json);
        }
        Command::WatchRm { id } => {
            let deleted: Value = client.delete(&format!("/api/watches/{id}")).await?;
            if json {
                println!("{deleted}");
            } else {
                println!("watch {id} deleted");
            }
        }
        Command::TriggerCi {
            repo,
            workflow,
            branch,
            run_id,
            run_url,
            sha,
            status,
            conclusion,
            summary,
        } => {
            let body = with_fields(
                json!({"repo": repo, "workflow": workflow, "branch": branch, "runId": run_id}),
                &[
                    ("runUrl", &run_url),
                    ("sha", &sha),
                    ("status", &status),
                    ("conclusion", &conclusion),
                    ("summary", &summary),
                ],
            );
            let started: Vec<Triggered> = client.post("/api/watch-events/ci", &body).await?;
            render::triggered(&started, json);
        }
        Command::TriggerPr {
            repo,
            pr_number,
            title,
            base,
            head,
            action,
            url,
            head_sha,
            body,
            diff_text,
        } => {
            let request = with_fields(
                json!({"repo": repo, "prNumber": pr_number, "title": title, "base": base, "head": head}),
                &[
                    ("action", &action),
                    ("prUrl", &url),
                    ("headSha", &head_sha),
                    ("body", &body),
                    ("diffText", &diff_text),
                ],
            );
            let started: Vec<Triggered> = client.post("/api/watch-events/pr", &request).await?;
            render::triggered(&started, json);
        }
        Command::Serve
        | Command::Config
        | Command::Doctor
        | Command::Run(_)
        | Command::Workspaces(_) => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// 0 when the session finished with `done`, 1 otherwise.
fn exit_for(terminal: Option<&Event>) -> ExitCode {
    match terminal {
        Some(event) if event.kind == telecoder_actors::domain::EventKind::Done => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// Local paths are sent absolute, since the daemon's working directory is not the user's.
fn resolve_repo(repo: &str) -> String {
    if telecoder_actors::workspace::is_remote(repo) {
        return repo.to_owned();
    }
    std::fs::canonicalize(repo)
        .map(|path| path.to_string_lossy().into_owned())
        .unwrap_or_else(|_| repo.to_owned())
}

async fn run_session(config: &Config, args: RunArgs, json: bool) -> Result<ExitCode, CliError> {
    let body = json!({
        "repo": resolve_repo(&args.repo),
        "prompt": args.prompt.join(" "),
        "agent": args.agent,
        "policy": args.policy.map(|p| p.to_string()),
    });
    let client = Client::new(&config.url, config.tokens.for_cli())?;
    match client.post::<Session>("/api/sessions", &body).await {
        Ok(session) => follow_session(&client, &session, json).await,
        Err(ClientError::Unreachable { .. }) => {
            if !json {
                eprintln!(
                    "No daemon at {}; running the session in this process.",
                    config.url
                );
            }
            let embedded = daemon::Embedded::start(config.clone()).await?;
            let client = Client::new(&embedded.url, config.tokens.for_cli())?;
            let result = match client.post::<Session>("/api/sessions", &body).await {
                Ok(session) => follow_session(&client, &session, json).await,
                Err(err) => Err(err.into()),
            };
            embedded.stop().await;
            result
        }
        Err(err) => Err(err.into()),
    }
}

async fn follow_session(
    client: &Client,
    session: &Session,
    json: bool,
) -> Result<ExitCode, CliError> {
    if !json {
        println!(
            "session {} ({}, policy {}) on branch telecoder/{}",
            session.id, session.agent, session.policy_mode, session.id
        );
    }
    let terminal = client
        .follow(&session.id, 0, |e| render::event(e, json))
        .await?;
    if !json {
        let finished: Result<Session, _> = client
            .get(&format!("/api/sessions/{}", session.id), &[])
            .await;
        if let Ok(finished) = finished {
            render::outcome(&finished);
        }
    }
    Ok(exit_for(terminal.as_ref()))
}

/// Turns an unreachable-daemon JSON value into nothing; kept for symmetry with `render`.
pub fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}
