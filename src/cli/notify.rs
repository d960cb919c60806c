//! `telecoder notify-test`: a test notification to every `TELECODER_NOTIFY` target.

use super::{CliError, Ctx};
use crate::client::ClientError;
use crate::render;
use serde_json::json;
use std::process::ExitCode;
use telecoder_actors::notify::{sender, TestResult};

/// What `POST /admin/notify-test` answers.
#[derive(serde::Deserialize, serde::Serialize)]
struct Answer {
    ok: bool,
    results: Vec<TestResult>,
}

/// Asks the daemon (whose configuration counts); with none answering, sends from this process
/// with this environment's targets, and says so. Exit 1 when a target failed.
pub async fn test(ctx: &Ctx) -> Result<ExitCode, CliError> {
    let answer: Answer = match ctx.client.post("/admin/notify-test", &json!({})).await {
        Err(unreachable @ ClientError::Unreachable { .. }) => {
            ctx.out.note(&format!(
                "note: {unreachable}; sending from this process with its TELECODER_NOTIFY"
            ));
            let settings = &ctx.config.settings;
            let http = sender::http_client()?;
            let results = sender::test_targets(&http, &settings.notify, &settings.redactor).await?;
            Answer {
                ok: results.iter().all(|r| r.ok),
                results,
            }
        }
        other => other?,
    };
    ctx.out
        .data(&answer, || render::notify_results(&answer.results))?;
    Ok(if answer.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
