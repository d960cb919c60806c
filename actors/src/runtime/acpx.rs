//! The acpx runtime: runs `acpx … exec <prompt>` in the workspace and turns its JSON-lines
//! stdout into a live stream of assistant text.

use super::agent_process::{self, AgentProcess};
use super::output::{
    failure, last_meaningful_line, mentions_permission, OutputBuffer, COALESCE_WINDOW,
};
use super::{
    AgentEvent, AgentFailure, AgentReport, AgentRequest, AgentRun, AgentRuntime, BoxFuture,
};
use crate::domain::FailureKind;
use futures_util::StreamExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio::time::{interval, sleep_until, Instant, MissedTickBehavior};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::sync::CancellationToken;

/// Linux caps one argv string at 128 KiB; above this the prompt goes through a file.
const MAX_PROMPT_ARG_BYTES: usize = 100 * 1024;
/// Arguments acpx 0.19.1 looks for anywhere in its argv, even after `--`: `--skill` hands the
/// run to its skill installer before options are parsed. A prompt equal to one goes through
/// the file instead.
const ARGV_WIDE_FLAGS: [&str; 1] = ["--skill"];
/// acpx enforces `--timeout` itself; our own deadline is the backstop if it does not.
const DEADLINE_SLACK: Duration = Duration::from_secs(10);
/// One JSON line from acpx larger than this is skipped (memory stays bounded whatever the
/// agent prints).
const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;
const OVERSIZED_LINE: &str = "\n[output line over 4 MiB skipped]\n";

/// acpx exit codes we interpret.
const EXIT_TIMEOUT: i32 = 3;
const EXIT_PERMISSION_DENIED: i32 = 5;

/// Runs agents through the acpx CLI.
#[derive(Clone, Debug)]
pub struct AcpxRuntime {
    /// The acpx program and its leading arguments (`TELECODER_ACPX_COMMAND`, shell-split).
    command: Vec<String>,
}

impl AcpxRuntime {
    pub fn new(command: Vec<String>) -> Self {
        Self { command }
    }

    /// The full argv for one run, as the contract's "acpx invocation" section spells it.
    pub fn argv(&self, request: &AgentRequest, prompt_file: Option<&Path>) -> Vec<String> {
        let mut argv = self.command.clone();
        argv.extend([
            "--cwd".into(),
            request.work_dir.to_string_lossy().into_owned(),
            request.permission.acpx_flag().into(),
            "--timeout".into(),
            request.max_runtime.as_secs().to_string(),
            "--format".into(),
            "json".into(),
            "--json-strict".into(),
        ]);
        match &request.command_override {
            Some(command) => argv.extend(["--agent".into(), command.clone()]),
            None => argv.push(request.agent.clone()),
        }
        argv.push("exec".into());
        match prompt_file {
            Some(path) => argv.extend(["--file".into(), path.to_string_lossy().into_owned()]),
            // `--` ends acpx's options: a prompt such as `--file=/etc/shadow` or `--version` is
            // text for the agent, never an option.
            None => argv.extend(["--".into(), request.prompt.clone()]),
        }
        argv
    }

    async fn run_inner(&self, run: AgentRun) -> AgentReport {
        let (request, events, cancel) = (run.request, run.events, run.cancel);
        let output = OutputBuffer::new(request.max_output_bytes);
        let quarantined = match quarantine_project_config(&request).await {
            Ok(moved) => moved,
            Err(message) => return output.failed(FailureKind::RuntimeError, message),
        };
        if quarantined.is_some() {
            let _ = events
                .send(AgentEvent::Notice(QUARANTINE_NOTICE.into()))
                .await;
        }
        let report = match write_prompt_file(&request).await {
            Ok(prompt_file) => {
                let report = self
                    .spawn_and_stream(&request, prompt_file.as_deref(), output, &events, &cancel)
                    .await;
                if let Some(file) = &prompt_file {
                    let _ = tokio::fs::remove_file(file).await;
                }
                report
            }
            Err(message) => output.failed(FailureKind::RuntimeError, message),
        };
        if let Some(moved) = quarantined {
            restore_project_config(&request, &moved).await;
        }
        report
    }

    async fn spawn_and_stream(
        &self,
        request: &AgentRequest,
        prompt_file: Option<&Path>,
        mut output: OutputBuffer,
        events: &mpsc::Sender<AgentEvent>,
        cancel: &CancellationToken,
    ) -> AgentReport {
        let argv = self.argv(request, prompt_file);
        let Some((program, args)) = argv.split_first() else {
            return output.failed(FailureKind::RuntimeError, "acpx command is empty".into());
        };
        let child = match agent_process::spawn(request, program, args, Stdio::null()) {
            Ok(child) => child,
            Err(err) => {
                return output.failed(
                    FailureKind::RuntimeError,
                    format!("cannot start acpx ({program}): {err}"),
                )
            }
        };
        let Some(mut acpx) = AgentProcess::adopt(child, events).await else {
            return output.failed(FailureKind::RuntimeError, "acpx exited at once".into());
        };
        let Some(stdout) = acpx.child.stdout.take() else {
            return output.failed(FailureKind::RuntimeError, "acpx stdout unavailable".into());
        };
        let deadline = Instant::now() + request.max_runtime + DEADLINE_SLACK;
        let stop = pump_stdout(stdout, &mut output, events, cancel, deadline).await;
        let status = match stop {
            Stop::Eof => {
                let give_up = async {
                    tokio::select! {
                        () = sleep_until(deadline) => {}
                        () = cancel.cancelled() => {}
                    }
                };
                acpx.end_within(give_up).await
            }
            Stop::Cancelled | Stop::Deadline => {
                acpx.stop().await;
                None
            }
        };
        let stderr_tail = acpx.stderr_tail().await;
        output.flush(events).await;
        let outcome = match (stop, status) {
            (Stop::Cancelled, _) => {
                Err(failure(FailureKind::Cancelled, "session cancelled".into()))
            }
            (_, None) if cancel.is_cancelled() => {
                Err(failure(FailureKind::Cancelled, "session cancelled".into()))
            }
            (_, None) => Err(failure(
                FailureKind::Timeout,
                format!(
                    "agent exceeded its maximum runtime of {} s and was stopped",
                    request.max_runtime.as_secs()
                ),
            )),
            (_, Some(status)) => classify(status, &output.diagnostics, &stderr_tail, request),
        };
        output.finish(outcome)
    }
}

impl AgentRuntime for AcpxRuntime {
    fn name(&self) -> &'static str {
        "acpx"
    }

    fn run(&self, run: AgentRun) -> BoxFuture<'_, AgentReport> {
        Box::pin(self.run_inner(run))
    }
}

/// acpx reads `<cwd>/.acpxrc.json`, which can redefine agent commands or add MCP servers: a
/// repository could run code on this machine before any permission is asked. The file is moved
/// out of the workspace while acpx runs and put back afterwards.
const PROJECT_CONFIG: &str = ".acpxrc.json";
const QUARANTINE_NOTICE: &str =
    "ignored the repository's .acpxrc.json while the agent runs (untrusted: it could change agent commands, MCP servers or permissions)";

async fn quarantine_project_config(
    request: &AgentRequest,
) -> Result<Option<std::path::PathBuf>, String> {
    let source = request.work_dir.join(PROJECT_CONFIG);
    if tokio::fs::symlink_metadata(&source).await.is_err() {
        return Ok(None);
    }
    let target = request
        .scratch_dir
        .join(format!("{}.acpxrc.json", request.session_id));
    let moved = async {
        tokio::fs::create_dir_all(&request.scratch_dir).await?;
        tokio::fs::rename(&source, &target).await
    }
    .await;
    moved
        .map(|()| Some(target))
        .map_err(|err| format!("cannot set aside the repository's {PROJECT_CONFIG}: {err}"))
}

async fn restore_project_config(request: &AgentRequest, moved: &Path) {
    let original = request.work_dir.join(PROJECT_CONFIG);
    if tokio::fs::symlink_metadata(&original).await.is_ok() {
        // The agent wrote a new one; keep the agent's work and drop ours.
        let _ = tokio::fs::remove_file(moved).await;
    } else {
        let _ = tokio::fs::rename(moved, &original).await;
    }
}

/// True when the prompt cannot travel as the last argument.
fn needs_prompt_file(prompt: &str) -> bool {
    prompt.len() > MAX_PROMPT_ARG_BYTES || ARGV_WIDE_FLAGS.contains(&prompt)
}

/// An ACP text content block. acpx reads a prompt file that holds a JSON array of content
/// blocks as exactly those blocks (other files are trimmed, and parsed as blocks when they
/// look like JSON), so the prompt is written as one text block: it arrives as given.
#[derive(serde::Serialize)]
struct TextBlock<'a> {
    r#type: &'static str,
    text: &'a str,
}

/// Prompts that cannot be an argument go through a scratch file outside the workspace.
async fn write_prompt_file(request: &AgentRequest) -> Result<Option<std::path::PathBuf>, String> {
    if !needs_prompt_file(&request.prompt) {
        return Ok(None);
    }
    let path = request
        .scratch_dir
        .join(format!("{}.prompt", request.session_id));
    let blocks = serde_json::to_string(&[TextBlock {
        r#type: "text",
        text: &request.prompt,
    }])
    .map_err(|err| format!("cannot encode the prompt: {err}"))?;
    tokio::fs::create_dir_all(&request.scratch_dir)
        .await
        .and(tokio::fs::write(&path, blocks).await)
        .map_err(|err| format!("cannot write the prompt file {}: {err}", path.display()))?;
    Ok(Some(path))
}

/// Why the stdout pump stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Eof,
    Cancelled,
    Deadline,
}

/// Reads acpx's JSON lines as they come, forwarding assistant text in coalesced bursts.
async fn pump_stdout(
    stdout: impl AsyncRead + Unpin,
    output: &mut OutputBuffer,
    events: &mpsc::Sender<AgentEvent>,
    cancel: &CancellationToken,
    deadline: Instant,
) -> Stop {
    let mut lines = FramedRead::new(stdout, LinesCodec::new_with_max_length(MAX_LINE_BYTES));
    let mut tick = interval(COALESCE_WINDOW);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            line = lines.next() => match line {
                Some(Ok(line)) => {
                    absorb_line(output, &line);
                    // Leading edge: text after a quiet spell goes out at once; a burst that
                    // follows is held until the next tick.
                    if output.quiet_for(COALESCE_WINDOW) {
                        output.flush(events).await;
                    }
                }
                // The codec drops the rest of an oversized line and carries on.
                Some(Err(LinesCodecError::MaxLineLengthExceeded)) => output.push_text(OVERSIZED_LINE),
                Some(Err(LinesCodecError::Io(_))) | None => return Stop::Eof,
            },
            _ = tick.tick() => output.flush(events).await,
            _ = cancel.cancelled() => return Stop::Cancelled,
            _ = sleep_until(deadline) => return Stop::Deadline,
        }
    }
}

/// What one JSON line from acpx contributes.
#[derive(Debug, PartialEq, Eq)]
enum LineContent {
    Text(String),
    Error(String),
    Nothing,
}

/// Assistant text is `params.update.content.text` of `agent_message_chunk` updates; JSON-RPC
/// errors are kept for the error message.
fn parse_line(line: &str) -> LineContent {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
        return LineContent::Nothing;
    };
    let update = &value["params"]["update"];
    if update["sessionUpdate"] == "agent_message_chunk" {
        if let Some(text) = update["content"]["text"].as_str() {
            return LineContent::Text(text.to_owned());
        }
    }
    if let Some(message) = value["error"]["message"].as_str() {
        return LineContent::Error(message.to_owned());
    }
    LineContent::Nothing
}

/// Adds one JSON line from acpx to the output (text) or the diagnostics (errors).
fn absorb_line(output: &mut OutputBuffer, line: &str) {
    match parse_line(line) {
        LineContent::Text(text) => output.push_text(&text),
        LineContent::Error(message) => output.note(&message),
        LineContent::Nothing => {}
    }
}

/// Maps acpx's exit to a failure kind as the contract says.
fn classify(
    status: ExitStatus,
    diagnostics: &str,
    stderr: &str,
    request: &AgentRequest,
) -> Result<(), AgentFailure> {
    let Some(code) = status.code() else {
        return Err(failure(
            FailureKind::RuntimeError,
            format!("acpx was killed by a signal ({status})"),
        ));
    };
    let detail = last_meaningful_line(diagnostics)
        .or_else(|| last_meaningful_line(stderr))
        .map(|line| format!(": {line}"))
        .unwrap_or_default();
    match code {
        0 => Ok(()),
        EXIT_TIMEOUT => Err(failure(
            FailureKind::Timeout,
            format!(
                "agent timed out after {} s (acpx exit code 3){detail}",
                request.max_runtime.as_secs()
            ),
        )),
        EXIT_PERMISSION_DENIED => Err(failure(
            FailureKind::PolicyDenied,
            format!(
                "permission denied by policy ({}; acpx exit code 5){detail}",
                request.permission.as_str()
            ),
        )),
        _ => {
            let kind = if mentions_permission(&format!("{diagnostics}\n{stderr}")) {
                FailureKind::PolicyDenied
            } else {
                FailureKind::RuntimeError
            };
            Err(failure(
                kind,
                format!("acpx exited with code {code}{detail}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn request() -> AgentRequest {
        AgentRequest::sample()
    }

    #[test]
    fn argv_follows_the_contract() {
        let runtime = AcpxRuntime::new(vec!["npx".into(), "acpx".into()]);
        assert_eq!(
            runtime.argv(&request(), None),
            [
                "npx",
                "acpx",
                "--cwd",
                "/tmp/ws",
                "--approve-reads",
                "--timeout",
                "180",
                "--format",
                "json",
                "--json-strict",
                "codex",
                "exec",
                "--",
                "fix it"
            ]
        );
        let mut option_like = request();
        option_like.prompt = "--file=/etc/shadow".into();
        let argv = runtime.argv(&option_like, None);
        assert_eq!(
            &argv[argv.len() - 3..],
            ["exec", "--", "--file=/etc/shadow"]
        );
        let mut with_override = request();
        with_override.command_override = Some("python3 agent.py".into());
        let argv = runtime.argv(&with_override, Some(Path::new("/tmp/p")));
        assert_eq!(
            &argv[argv.len() - 5..],
            ["--agent", "python3 agent.py", "exec", "--file", "/tmp/p"]
        );
    }

    #[test]
    fn prompts_acpx_would_misread_go_through_the_file() {
        assert!(!needs_prompt_file("--file=/etc/shadow"));
        assert!(!needs_prompt_file("--help"));
        assert!(needs_prompt_file("--skill"));
        assert!(needs_prompt_file(&"x".repeat(MAX_PROMPT_ARG_BYTES + 1)));
    }

    #[test]
    fn parses_chunks_and_errors() {
        let chunk = r#"{"jsonrpc":"2.0","method":"session/update","params":{"update":{"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"hi"}}}}"#;
        assert_eq!(parse_line(chunk), LineContent::Text("hi".into()));
        let error = r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32603,"message":"boom"}}"#;
        assert_eq!(parse_line(error), LineContent::Error("boom".into()));
        assert_eq!(parse_line("not json"), LineContent::Nothing);
    }

    #[test]
    fn classifies_exit_codes() {
        let req = request();
        let exit = |code| ExitStatus::from_raw(code << 8);
        assert!(classify(exit(0), "", "", &req).is_ok());
        assert_eq!(
            classify(exit(3), "", "", &req).map_err(|f| f.kind),
            Err(FailureKind::Timeout)
        );
        assert_eq!(
            classify(exit(5), "", "", &req).map_err(|f| f.kind),
            Err(FailureKind::PolicyDenied)
        );
        assert_eq!(
            classify(exit(1), "Permission request rejected", "", &req).map_err(|f| f.kind),
            Err(FailureKind::PolicyDenied)
        );
        let crash = classify(exit(1), "", "agent crashed\n", &req).unwrap_err();
        assert_eq!(crash.kind, FailureKind::RuntimeError);
        assert_eq!(crash.message, "acpx exited with code 1: agent crashed");
    }
}
