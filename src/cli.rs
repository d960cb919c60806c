//! The `telecoder` command line: `serve` runs the daemon; every other command talks to it over
//! HTTP (and `run` starts an embedded daemon when none is listening).

use crate::client::{Client, ClientError};
use crate::config::{Config, ConfigError};
use crate::{daemon, render};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use std::process::ExitCode;
use telecoder_actors::domain::{Event, PolicyMode, Session};

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
        Command::Run(args) => run_session(&config, args, json).await,
        command => {
            let client = Client::new(&config.url)?;
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
        Command::Serve | Command::Config | Command::Run(_) => {}
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
    let client = Client::new(&config.url)?;
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
            let client = Client::new(&embedded.url)?;
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
