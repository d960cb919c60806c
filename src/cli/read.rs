//! Read commands: asked of the daemon, or — when none answers — read from the database
//! directly, read-only, as the reference CLI does. Reading never creates the data directory.

use super::{absolute_repo, Ctx, ListArgs};
use crate::client::ClientError;
use crate::render;
use serde::de::DeserializeOwned;
use std::future::Future;
use telecoder_actors::domain::{Event, SessionFilter, StatusFilter};
use telecoder_actors::store::snapshot::Snapshot;
use telecoder_actors::store::watches::WatchFilter;

/// Asks the daemon; when it is unreachable, runs `offline` on the database instead and says so
/// once on stderr.
pub async fn read<T>(
    ctx: &Ctx,
    online: impl Future<Output = Result<T, ClientError>>,
    offline: impl FnOnce(&Snapshot) -> telecoder_actors::Result<T>,
) -> Result<T, super::CliError> {
    match online.await {
        Err(unreachable @ ClientError::Unreachable { .. }) => {
            let path = ctx.config.settings.database_path();
            let snapshot = match Snapshot::open(&path) {
                Ok(snapshot) => snapshot,
                Err(telecoder_actors::Error::NotFound(_)) => {
                    return Err(super::CliError::Failed(format!(
                        "{unreachable}; and there is no database at {} to read",
                        path.display()
                    )))
                }
                Err(err) => return Err(err.into()),
            };
            ctx.out.note(&format!(
                "note: no daemon answers at {}; reading {} directly (read-only)",
                ctx.config.url,
                path.display()
            ));
            Ok(offline(&snapshot)?)
        }
        other => Ok(other?),
    }
}

/// GETs `path` from the daemon, or reads the same from the database.
async fn get<T: DeserializeOwned>(
    ctx: &Ctx,
    path: &str,
    query: &[(&str, String)],
    offline: impl FnOnce(&Snapshot) -> telecoder_actors::Result<T>,
) -> Result<T, super::CliError> {
    read(ctx, ctx.client.get(path, query), offline).await
}

/// Reads like [`get`] and shows the answer: JSON, or `human` for a person.
async fn show<T, U>(
    ctx: &Ctx,
    path: &str,
    query: &[(&str, String)],
    offline: impl FnOnce(&Snapshot) -> telecoder_actors::Result<T>,
    human: fn(&U) -> String,
) -> Result<(), super::CliError>
where
    T: DeserializeOwned + serde::Serialize + std::borrow::Borrow<U>,
    U: ?Sized,
{
    let value = get(ctx, path, query, offline).await?;
    ctx.out.data(&value, || human(value.borrow()))?;
    Ok(())
}

/// The list filters as the API's query string.
fn session_query(filter: &SessionFilter) -> Vec<(&'static str, String)> {
    let status = filter.status.map(|status| match status {
        StatusFilter::Active => "active".to_owned(),
        StatusFilter::Is(status) => status.as_str().to_owned(),
    });
    [
        ("status", status),
        ("agent", filter.agent.clone()),
        ("policy", filter.policy.map(|p| p.to_string())),
        ("parent", filter.parent.clone()),
        ("lineage", filter.lineage.clone()),
        ("limit", filter.limit.map(|l| l.to_string())),
    ]
    .into_iter()
    .filter_map(|(key, value)| value.map(|v| (key, v)))
    .collect()
}

pub async fn list(ctx: &Ctx, args: ListArgs) -> Result<(), super::CliError> {
    let filter = SessionFilter {
        status: args.status,
        agent: args.agent,
        policy: args.policy,
        parent: args.parent,
        lineage: args.lineage,
        limit: args.limit,
        offset: None,
    };
    let query = session_query(&filter);
    let offline = |db: &Snapshot| db.sessions(&filter);
    show(ctx, "/api/sessions", &query, offline, render::sessions).await
}

pub async fn status(ctx: &Ctx, id: &str) -> Result<(), super::CliError> {
    let path = format!("/api/sessions/{id}");
    show(ctx, &path, &[], |db| db.session(id), render::session).await
}

/// Stored events of a session: a JSON array, or one line each for a person.
pub async fn events(ctx: &Ctx, id: &str, after: i64) -> Result<(), super::CliError> {
    let events = stored_events(ctx, id, after).await?;
    ctx.out
        .data(&events, || events.iter().map(render::event_line).collect())?;
    Ok(())
}

pub async fn stored_events(ctx: &Ctx, id: &str, after: i64) -> Result<Vec<Event>, super::CliError> {
    get(
        ctx,
        &format!("/api/sessions/{id}/events"),
        &[("after", after.to_string())],
        |db| db.events(id, after),
    )
    .await
}

pub async fn inbox(ctx: &Ctx, limit: Option<u32>) -> Result<(), super::CliError> {
    let query: Vec<(&str, String)> = limit
        .map(|l| ("limit", l.to_string()))
        .into_iter()
        .collect();
    // The API's bounds: 20 by default, at most 200.
    let offline_limit = limit.unwrap_or(20).clamp(1, 200);
    let offline = |db: &Snapshot| db.inbox(offline_limit);
    show(ctx, "/api/inbox", &query, offline, render::inbox).await
}

pub async fn lineage(ctx: &Ctx, id: &str) -> Result<(), super::CliError> {
    let path = format!("/api/sessions/{id}/lineage");
    show(ctx, &path, &[], |db| db.lineage(id), render::sessions).await
}

pub async fn watch_list(
    ctx: &Ctx,
    kind: Option<String>,
    status: Option<String>,
    repo: Option<String>,
) -> Result<(), super::CliError> {
    let repo = repo.as_deref().map(absolute_repo);
    let query: Vec<(&str, String)> = [
        ("kind", kind.clone()),
        ("status", status.clone()),
        ("repo", repo.clone()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let offline = |db: &Snapshot| {
        let filter = WatchFilter {
            kind: kind.as_deref().map(str::parse).transpose()?,
            status: status.as_deref().map(str::parse).transpose()?,
            repo: repo
                .as_deref()
                .map(telecoder_actors::requests::resolve_repo)
                .transpose()?
                .map(|target| target.source),
        };
        db.watches(&filter)
    };
    show(ctx, "/api/watches", &query, offline, render::watches).await
}

pub async fn watch_runs(ctx: &Ctx, id: &str) -> Result<(), super::CliError> {
    let path = format!("/api/watches/{id}/runs");
    show(ctx, &path, &[], |db| db.watch_runs(id), render::watch_runs).await
}
