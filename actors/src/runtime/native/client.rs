//! The client side of ACP for one session, on the official SDK: the handlers that answer the
//! agent (permissions, files, terminals, session updates) and the conversation itself
//! (initialize, a new or loaded session, one prompt, cancel).
//!
//! Handlers run inside the connection's dispatch loop, so anything that can wait (a
//! permission decision, a file, a command's exit) is spawned; updates are absorbed at once,
//! in order.

use super::budget::Budget;
use super::fs::{FsError, WorkspaceFs};
use super::permission::{
    infer_tool_kind, pick_option, Action, Decision, PermissionDecider, Question, Verdict,
};
use super::progress::Shared;
use super::terminal::{TerminalError, Terminals};
use crate::domain::approval::{clip, ApprovalOption, RAW_INPUT_LIMIT};
use crate::domain::{PermissionMode, TokenUsage, WorkspaceWritePolicy};
use crate::runtime::Resume;
use agent_client_protocol::schema::ProtocolVersion;
use agent_client_protocol::v1::schema::{
    CancelNotification, ClientCapabilities, ContentBlock, CreateTerminalRequest,
    CreateTerminalResponse, FileSystemCapabilities, Implementation, InitializeRequest,
    KillTerminalRequest, KillTerminalResponse, LoadSessionRequest, NewSessionRequest,
    PermissionOption, PromptRequest, ReadTextFileRequest, ReadTextFileResponse,
    ReleaseTerminalRequest, ReleaseTerminalResponse, RequestPermissionRequest,
    RequestPermissionResponse, SessionId, SessionNotification, StopReason, TerminalOutputRequest,
    TerminalOutputResponse, TextContent, WaitForTerminalExitRequest, WaitForTerminalExitResponse,
    WriteTextFileRequest, WriteTextFileResponse,
};
use agent_client_protocol::v1::{ConnectionTo, Responder};
use agent_client_protocol::{
    on_receive_notification, on_receive_request, Agent, Client, ConnectTo, Error,
};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Everything the handlers need; shared by all of them.
pub(super) struct ClientContext {
    pub session_id: String,
    pub mode: PermissionMode,
    pub writes: WorkspaceWritePolicy,
    pub decider: Arc<dyn PermissionDecider>,
    pub fs: WorkspaceFs,
    pub terminals: Terminals,
    pub shared: Arc<Shared>,
    /// Fired when the turn is being stopped: questions still open are answered "cancelled".
    pub stop: CancellationToken,
    /// The runtime budget, paused while a question waits for its answer.
    pub budget: Budget,
}

/// How the prompt turn ended, as the agent answered it.
pub(super) struct Turn {
    pub stop_reason: StopReason,
    /// Token usage of the turn, when the agent reports it.
    pub usage: Option<TokenUsage>,
}

/// Why the conversation ended without an answer to the prompt.
#[derive(Debug)]
pub(super) enum Broken {
    /// The agent answered a request with an error, or the connection failed.
    Protocol { during: &'static str, error: Error },
    /// We stopped it (cancel, timeout) before the prompt was sent.
    Stopped,
}

/// What the agent told about itself once the session exists.
pub(super) struct Opened {
    pub agent_session_id: String,
    pub load_session: bool,
    /// How an earlier conversation was carried over (continuations).
    pub resumed: Resumed,
}

/// How a continuation got its conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Resumed {
    /// Not a continuation of an agent session: a new session, the prompt as given.
    Fresh,
    /// `session/load` of the earlier agent session.
    Loaded,
    /// Loading was not possible (why); a new session got the earlier turns in its prompt.
    NotLoaded(String),
}

impl ClientContext {
    /// Asks the decider, unless the turn is being stopped (then `None`: cancelled). The
    /// runtime budget stands still meanwhile (a person may be deciding).
    async fn decide(&self, action: Action, options: Vec<ApprovalOption>) -> Option<Decision> {
        let question = Question {
            session_id: self.session_id.clone(),
            mode: self.mode,
            action,
            options,
        };
        let _paused = self.budget.pause();
        tokio::select! {
            decision = self.decider.decide(question) => Some(decision),
            _ = self.stop.cancelled() => None,
        }
    }

    /// A refusal the agent is told about and the run's verdict counts.
    fn refuse(&self, what: &str, verdict: Verdict) -> Error {
        self.shared.record_permission(verdict, what);
        Error::new(
            Error::internal_error().code,
            format!(
                "Permission denied for {what} (policy {})",
                self.mode.as_str()
            ),
        )
    }

    /// A file or command request: allowed or not (no options to choose from).
    async fn allowed(&self, action: Action) -> bool {
        self.decide(action, Vec::new())
            .await
            .is_some_and(Decision::allows)
    }

    /// Never an error: a refusal is an answer the agent gets.
    async fn permission(
        &self,
        request: RequestPermissionRequest,
    ) -> Result<RequestPermissionResponse, Error> {
        let call = &request.tool_call;
        let title = call.fields.title.clone().unwrap_or_default();
        let kind = call.fields.kind.map(|kind| wire(&kind));
        let action = Action::ToolCall {
            tool_call_id: call.tool_call_id.to_string(),
            kind: infer_tool_kind(kind.as_deref(), call.fields.title.as_deref()),
            title,
            locations: call
                .fields
                .locations
                .iter()
                .flatten()
                .map(|l| l.path.display().to_string())
                .collect(),
            raw_input: call
                .fields
                .raw_input
                .as_ref()
                .map(|input| input.to_string())
                .unwrap_or_default(),
        };
        let what = action.describe();
        let decision = self.decide(action, offered(&request.options)).await;
        let (outcome, verdict) = pick_option(&request.options, decision);
        self.shared.record_permission(verdict, &what);
        Ok(RequestPermissionResponse::new(outcome))
    }

    async fn read(&self, request: ReadTextFileRequest) -> Result<ReadTextFileResponse, Error> {
        let what = format!("fs/read_text_file {}", request.path.display());
        let action = Action::ReadFile {
            path: request.path.clone(),
        };
        if !self.allowed(action).await {
            return Err(self.refuse(&what, Verdict::Denied));
        }
        let fs = self.fs.clone();
        let content = blocking(move || fs.read(&request.path, request.line, request.limit)).await?;
        Ok(ReadTextFileResponse::new(content))
    }

    async fn write(&self, request: WriteTextFileRequest) -> Result<WriteTextFileResponse, Error> {
        let what = format!("fs/write_text_file {}", request.path.display());
        if self.writes != WorkspaceWritePolicy::Contained {
            return Err(self.refuse(&what, Verdict::Denied));
        }
        let action = Action::WriteFile {
            path: request.path.clone(),
            preview: clip(&request.content, RAW_INPUT_LIMIT),
        };
        if !self.allowed(action).await {
            return Err(self.refuse(&what, Verdict::Denied));
        }
        let fs = self.fs.clone();
        blocking(move || fs.write(&request.path, &request.content)).await?;
        Ok(WriteTextFileResponse::new())
    }

    async fn create_terminal(
        &self,
        request: CreateTerminalRequest,
    ) -> Result<CreateTerminalResponse, Error> {
        let mut line = vec![request.command.clone()];
        line.extend(request.args.iter().cloned());
        let command = shell_words::join(&line);
        let what = format!("terminal/create `{command}`");
        let cwd = self
            .terminals
            .working_dir(request.cwd.as_deref())
            .map_err(terminal_error)?;
        if !self.allowed(Action::Execute { command }).await {
            return Err(self.refuse(&what, Verdict::Denied));
        }
        let env: Vec<(String, String)> = request
            .env
            .into_iter()
            .map(|var| (var.name, var.value))
            .collect();
        let id = self
            .terminals
            .create(
                &request.command,
                &request.args,
                &env,
                &cwd,
                request.output_byte_limit,
            )
            .map_err(terminal_error)?;
        Ok(CreateTerminalResponse::new(id))
    }

    fn terminal_output(
        &self,
        request: &TerminalOutputRequest,
    ) -> Result<TerminalOutputResponse, Error> {
        self.terminals
            .output(&request.terminal_id.to_string())
            .map_err(terminal_error)
    }

    async fn wait_for_terminal_exit(
        &self,
        request: WaitForTerminalExitRequest,
    ) -> Result<WaitForTerminalExitResponse, Error> {
        let id = request.terminal_id.to_string();
        let exit = self.terminals.wait_for_exit(&id).await;
        exit.map(WaitForTerminalExitResponse::new)
            .map_err(terminal_error)
    }

    fn kill_terminal(&self, request: &KillTerminalRequest) -> Result<KillTerminalResponse, Error> {
        let killed = self.terminals.kill(&request.terminal_id.to_string());
        killed
            .map(|()| KillTerminalResponse::new())
            .map_err(terminal_error)
    }

    fn release_terminal(
        &self,
        request: &ReleaseTerminalRequest,
    ) -> Result<ReleaseTerminalResponse, Error> {
        let released = self.terminals.release(&request.terminal_id.to_string());
        released
            .map(|()| ReleaseTerminalResponse::new())
            .map_err(terminal_error)
    }
}

/// The agent's options as a person sees them.
fn offered(options: &[PermissionOption]) -> Vec<ApprovalOption> {
    options
        .iter()
        .map(|option| ApprovalOption {
            option_id: option.option_id.to_string(),
            name: option.name.clone(),
            kind: wire(&option.kind),
        })
        .collect()
}

/// The wire name of a serde enum value.
fn wire(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => "other".into(),
    }
}

fn terminal_error(error: TerminalError) -> Error {
    Error::new(Error::invalid_params().code, error.to_string())
}

fn fs_error(error: FsError) -> Error {
    let code = match error {
        FsError::NotFound(_) => agent_client_protocol::ErrorCode::RESOURCE_NOT_FOUND,
        FsError::Io(_) => Error::internal_error().code,
        _ => Error::invalid_params().code,
    };
    Error::new(code, error.to_string())
}

/// Runs file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FsError> + Send + 'static,
) -> Result<T, Error> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(fs_error),
        Err(err) => Err(Error::new(
            Error::internal_error().code,
            format!("file task failed: {err}"),
        )),
    }
}

/// Answers a request from a spawned task, so the dispatch loop keeps reading the agent.
fn answer<T, F>(cx: &ConnectionTo<Agent>, responder: Responder<T>, work: F) -> Result<(), Error>
where
    T: agent_client_protocol::JsonRpcResponse + Send + 'static,
    F: Future<Output = Result<T, Error>> + Send + 'static,
{
    cx.spawn(async move {
        // A closed connection cannot be answered; that is not the connection's failure.
        let _ = responder.respond_with_result(work.await);
        Ok(())
    })
}

/// Adds to the client builder a handler for requests of type `$request`, answered by
/// `ClientContext::$method`. A `spawned` answer may wait (on a person, a file, a command), so it
/// is worked out on its own task and the dispatch loop keeps reading the agent meanwhile; the
/// others answer at once, in order.
macro_rules! handle {
    ($client:expr, $ctx:expr, spawned $method:ident($request:ty)) => {{
        let ctx = $ctx.clone();
        $client.on_receive_request(
            async move |request: $request, responder, cx: ConnectionTo<Agent>| {
                let ctx = ctx.clone();
                answer(&cx, responder, async move { ctx.$method(request).await })
            },
            on_receive_request!(),
        )
    }};
    ($client:expr, $ctx:expr, $method:ident($request:ty)) => {{
        let ctx = $ctx.clone();
        $client.on_receive_request(
            async move |request: $request, responder: Responder<_>, _cx| {
                responder.respond_with_result(ctx.$method(&request))
            },
            on_receive_request!(),
        )
    }};
}

/// Runs the whole conversation over `transport`: handlers for the agent's requests, and the
/// foreground that opens a session and sends the prompt. `opened` hears about the session as
/// soon as it exists.
pub(super) async fn converse(
    transport: impl ConnectTo<Client> + 'static,
    ctx: Arc<ClientContext>,
    work_dir: PathBuf,
    prompt: String,
    resume: Option<Resume>,
    opened: impl FnOnce(Opened) + Send,
) -> Result<Turn, Broken> {
    let stop = ctx.stop.clone();
    let shared = ctx.shared.clone();
    let updates = ctx.clone();
    let client = Client.v1().name("telecoder").on_receive_notification(
        async move |notification: SessionNotification, _cx| {
            updates.shared.absorb(notification.update);
            Ok(())
        },
        on_receive_notification!(),
    );
    let client = handle!(client, ctx, spawned permission(RequestPermissionRequest));
    let client = handle!(client, ctx, spawned read(ReadTextFileRequest));
    let client = handle!(client, ctx, spawned write(WriteTextFileRequest));
    let client = handle!(client, ctx, spawned create_terminal(CreateTerminalRequest));
    let client = handle!(client, ctx, terminal_output(TerminalOutputRequest));
    let client = handle!(client, ctx, spawned wait_for_terminal_exit(WaitForTerminalExitRequest));
    let client = handle!(client, ctx, kill_terminal(KillTerminalRequest));
    let client = handle!(client, ctx, release_terminal(ReleaseTerminalRequest));
    client
        .connect_with(transport, async move |cx: ConnectionTo<Agent>| {
            let turn = TurnRequest {
                work_dir,
                prompt,
                resume,
            };
            Ok(run_turn(&cx, &stop, &shared, turn, opened).await)
        })
        .await
        .unwrap_or_else(|error| {
            Err(Broken::Protocol {
                during: "the connection",
                error,
            })
        })
}

/// Loads the agent session a continuation resumes, when the agent can; otherwise (or when the
/// load fails) opens a new session whose prompt carries the earlier turns. Returns the session,
/// the prompt to send, and how the conversation was carried over.
async fn open_session(
    cx: &ConnectionTo<Agent>,
    stop: &CancellationToken,
    shared: &Shared,
    turn: TurnRequest,
    load_session: bool,
) -> Result<(SessionId, String, Resumed), Broken> {
    let TurnRequest {
        work_dir,
        prompt,
        resume,
    } = turn;
    let (prompt, resumed) = match resume {
        None => (prompt, Resumed::Fresh),
        Some(resume) if !load_session => (
            resume.fallback_prompt,
            Resumed::NotLoaded("the agent does not offer loadSession any more".into()),
        ),
        Some(resume) => {
            // The agent replays the conversation as updates before it answers: that is
            // history, not this turn's output.
            shared.set_replaying(true);
            let request =
                LoadSessionRequest::new(resume.agent_session_id.clone(), work_dir.clone());
            let loaded =
                unless_stopped(stop, "session/load", cx.send_request(request).block_task()).await;
            shared.set_replaying(false);
            match loaded {
                Ok(_) => {
                    return Ok((
                        SessionId::new(resume.agent_session_id),
                        prompt,
                        Resumed::Loaded,
                    ))
                }
                Err(Broken::Stopped) => return Err(Broken::Stopped),
                Err(Broken::Protocol { error, .. }) => (
                    resume.fallback_prompt,
                    Resumed::NotLoaded(format!(
                        "session/load failed: {} (code {})",
                        error.message,
                        error.code.value()
                    )),
                ),
            }
        }
    };
    let session = unless_stopped(
        stop,
        "session/new",
        cx.send_request(NewSessionRequest::new(work_dir))
            .block_task(),
    )
    .await?;
    Ok((session.session_id, prompt, resumed))
}

/// Waits for `request`'s answer unless the turn is stopped first.
async fn unless_stopped<T>(
    stop: &CancellationToken,
    during: &'static str,
    request: impl Future<Output = Result<T, Error>>,
) -> Result<T, Broken> {
    tokio::select! {
        answer = request => answer.map_err(|error| Broken::Protocol { during, error }),
        _ = stop.cancelled() => Err(Broken::Stopped),
    }
}

/// What one turn sends.
struct TurnRequest {
    work_dir: PathBuf,
    prompt: String,
    resume: Option<Resume>,
}

/// initialize → session/new (or session/load) → session/prompt (→ session/cancel when
/// stopped).
async fn run_turn(
    cx: &ConnectionTo<Agent>,
    stop: &CancellationToken,
    shared: &Shared,
    turn: TurnRequest,
    opened: impl FnOnce(Opened),
) -> Result<Turn, Broken> {
    let capabilities = ClientCapabilities::new()
        .fs(FileSystemCapabilities::new()
            .read_text_file(true)
            .write_text_file(true))
        .terminal(true);
    let initialize = InitializeRequest::new(ProtocolVersion::V1)
        .client_capabilities(capabilities)
        .client_info(Implementation::new("telecoder", env!("CARGO_PKG_VERSION")));
    let init = unless_stopped(stop, "initialize", cx.send_request(initialize).block_task()).await?;
    let load_session = init.agent_capabilities.load_session;
    let (session_id, prompt, resumed) = open_session(cx, stop, shared, turn, load_session).await?;
    opened(Opened {
        agent_session_id: session_id.to_string(),
        load_session,
        resumed,
    });
    let blocks = vec![ContentBlock::Text(TextContent::new(prompt))];
    let mut answer = std::pin::pin!(cx
        .send_request(PromptRequest::new(session_id.clone(), blocks))
        .block_task());
    let response = tokio::select! {
        response = &mut answer => response,
        _ = stop.cancelled() => {
            let _ = cx.send_notification(CancelNotification::new(session_id));
            answer.await
        }
    };
    let response = response.map_err(|error| Broken::Protocol {
        during: "session/prompt",
        error,
    })?;
    Ok(Turn {
        stop_reason: response.stop_reason,
        usage: response.usage.map(|usage| TokenUsage {
            input_tokens: Some(usage.input_tokens),
            output_tokens: Some(usage.output_tokens),
            total_tokens: Some(usage.total_tokens),
            thought_tokens: usage.thought_tokens,
            cached_read_tokens: usage.cached_read_tokens,
            cached_write_tokens: usage.cached_write_tokens,
            ..TokenUsage::default()
        }),
    })
}
