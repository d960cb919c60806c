//! Commands that start or stop sessions and follow them to the end: `run`, `rerun`,
//! `events -f`, `cancel` (and, through `watches.rs`, `trigger-*`). They exit 0 when the
//! session finished with `done` and 1 otherwise, like the reference; `--detach` returns at once.

use super::{absolute_repo, read, CliError, Ctx, Detach, RunArgs};
use crate::client::{Client, ClientError};
use crate::{render, serve};
use serde_json::json;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use telecoder_actors::domain::{Event, EventKind, NewSession, Session};

/// Where a followed session runs; decides what Ctrl-C means.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// A daemon: the session goes on without us.
    Daemon,
    /// The daemon inside this command: the session stops with us.
    Embedded,
}

/// How following a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// With `done`: exit 0.
    Done,
    /// With `error` (or no terminal event): exit 1.
    Failed,
    /// Ctrl-C: exit 130, as shells report it.
    Interrupted,
}

impl Ended {
    fn from_terminal(terminal: Option<&Event>) -> Self {
        match terminal {
            Some(event) if event.kind == EventKind::Done => Self::Done,
            _ => Self::Failed,
        }
    }
}

impl From<Ended> for ExitCode {
    fn from(ended: Ended) -> Self {
        match ended {
            Ended::Done => ExitCode::SUCCESS,
            Ended::Failed => ExitCode::FAILURE,
            Ended::Interrupted => ExitCode::from(130),
        }
    }
}

/// What a person should know when they press Ctrl-C while following `id`.
fn interrupt_hint(ctx: &Ctx, id: &str, host: Host) -> String {
    match host {
        Host::Daemon => format!(
            "\nStopped following session {id}; it keeps running in the daemon.\n  \
             re-attach: telecoder events -f {id}\n  cancel:    telecoder cancel {id}"
        ),
        Host::Embedded => format!(
            "\nStopping session {id}: it ran inside this command because no daemon answers at \
             {}.\nStart `telecoder serve` to keep sessions running without a terminal; \
             `telecoder rerun {id}` runs this one again.",
            ctx.config.url
        ),
    }
}

/// Streams a session's events as progress until it finishes (or Ctrl-C), then shows the
/// outcome to a person.
pub async fn follow(ctx: &Ctx, client: &Client, id: &str, host: Host) -> Result<Ended, CliError> {
    let out = ctx.out;
    let stream = client.follow(id, 0, |e| out.progress(&render::event(e)));
    let terminal = tokio::select! {
        terminal = stream => terminal?,
        _ = tokio::signal::ctrl_c() => {
            out.note(&interrupt_hint(ctx, id, host));
            return Ok(Ended::Interrupted);
        }
    };
    if !out.json() {
        if let Ok(finished) = client
            .get::<Session>(&format!("/api/sessions/{id}"), &[])
            .await
        {
            out.print(&render::outcome(&finished))?;
        }
    }
    Ok(Ended::from_terminal(terminal.as_ref()))
}

/// Shows what was started (the record, for machines), then follows it unless detached.
async fn started(
    ctx: &Ctx,
    client: &Client,
    session: &Session,
    header: String,
    detach: Detach,
    host: Host,
) -> Result<ExitCode, CliError> {
    ctx.out.data(session, || header)?;
    if detach.detach {
        if !ctx.out.json() {
            ctx.out
                .line(&format!("follow it: telecoder events -f {}", session.id))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    Ok(follow(ctx, client, &session.id, host).await?.into())
}

pub async fn run_session(ctx: &Ctx, args: RunArgs) -> Result<ExitCode, CliError> {
    let target = &args.target;
    let body = NewSession {
        repo: absolute_repo(&target.repo),
        prompt: args.prompt.join(" "),
        agent: target.agent.clone(),
        policy: target.policy,
    };
    let header = |s: &Session| {
        format!(
            "session {} ({}, policy {}) on branch telecoder/{}\n",
            s.id, s.agent, s.policy_mode, s.id
        )
    };
    match ctx.client.post::<Session>("/api/sessions", &body).await {
        Ok(session) => {
            let header = header(&session);
            started(ctx, &ctx.client, &session, header, args.detach, Host::Daemon).await
        }
        Err(ClientError::Unreachable { .. }) if args.detach.detach => Err(CliError::Failed(
            format!(
                "no daemon answers at {}; --detach needs one to run the session (start `telecoder serve`)",
                ctx.config.url
            ),
        )),
        Err(ClientError::Unreachable { .. }) => {
            ctx.out.note(&format!(
                "No daemon at {}; running the session in this process.",
                ctx.config.url
            ));
            let embedded = serve::Embedded::start(ctx.config.clone()).await?;
            let client = Client::new(&embedded.url, ctx.config.tokens.for_cli())?;
            let result = match client.post::<Session>("/api/sessions", &body).await {
                Ok(session) => {
                    let header = header(&session);
                    started(ctx, &client, &session, header, args.detach, Host::Embedded).await
                }
                Err(err) => Err(err.into()),
            };
            embedded.stop().await;
            result
        }
        Err(err) => Err(err.into()),
    }
}

pub async fn rerun(ctx: &Ctx, id: &str, detach: Detach) -> Result<ExitCode, CliError> {
    let session: Session = ctx
        .client
        .post(&format!("/api/sessions/{id}/rerun"), &json!({}))
        .await?;
    let header = format!(
        "session {} created from {id} (attempt {})\n",
        session.id, session.attempt
    );
    started(ctx, &ctx.client, &session, header, detach, Host::Daemon).await
}

/// `events -f`: the stored events, then live ones until the session ends; JSON is one event
/// per line. Without a daemon, the stored events and the session's end if it has one.
pub async fn events(ctx: &Ctx, id: &str, after: i64) -> Result<ExitCode, CliError> {
    let out = ctx.out;
    let show = |e: &Event| {
        if out.json() {
            out.line(&serde_json::to_string(e).unwrap_or_default())
        } else {
            out.print(&render::event(e))
        }
    };
    let stream = ctx.client.follow(id, after, show);
    let terminal = tokio::select! {
        terminal = stream => terminal,
        _ = tokio::signal::ctrl_c() => return Ok(Ended::Interrupted.into()),
    };
    match terminal {
        Ok(terminal) => Ok(Ended::from_terminal(terminal.as_ref()).into()),
        Err(ClientError::Unreachable { .. }) => {
            let events = read::stored_events(ctx, id, after).await?;
            for event in &events {
                show(event)?;
            }
            match events.iter().rev().find(|e| e.kind.is_terminal()) {
                Some(terminal) => Ok(Ended::from_terminal(Some(terminal)).into()),
                None => Err(CliError::Failed(format!(
                    "session {id} has not finished, and no daemon answers at {} to run it; \
                     start `telecoder serve`",
                    ctx.config.url
                ))),
            }
        }
        Err(err) => Err(err.into()),
    }
}

/// Asks the daemon to cancel, then waits (at most the shutdown grace) until the session has
/// really stopped, so that a script can rely on it once `cancel` returns 0.
pub async fn cancel(ctx: &Ctx, id: &str) -> Result<ExitCode, CliError> {
    let out = ctx.out;
    out.progress(&format!("cancelling {id}…\n"))?;
    let mut session: Session = ctx
        .client
        .post(&format!("/api/sessions/{id}/cancel"), &json!({}))
        .await?;
    let wait = ctx
        .config
        .settings
        .shutdown_grace
        .max(Duration::from_secs(5));
    let deadline = Instant::now() + wait;
    while !session.status.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        session = ctx.client.get(&format!("/api/sessions/{id}"), &[]).await?;
    }
    if !session.status.is_finished() {
        out.note(&format!(
            "session {id} is still {} after {} s; `telecoder status {id}` shows when it stops",
            session.status.as_str(),
            wait.as_secs()
        ));
        return Ok(ExitCode::FAILURE);
    }
    out.data(&session, || {
        format!("session {id} {}\n", session.status.as_str())
    })?;
    Ok(ExitCode::SUCCESS)
}
