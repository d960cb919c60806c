//! Running the daemon: `telecoder serve`, and the embedded daemon `telecoder run` starts when
//! none is listening.

use crate::cli::CliError;
use crate::config::Config;
use crate::http::{self, AppState};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use telecoder_actors::runtime::{AcpxRuntime, AgentRuntime, NativeRuntime};
use telecoder_actors::settings::RuntimeKind;
use telecoder_actors::Daemon;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long open connections get to finish at shutdown.
const HTTP_GRACE: Duration = Duration::from_secs(5);

/// Logs go to stderr (journald picks them up), as text or one JSON object per line.
fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TELECODER_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        // The ACP SDK warns about every error answer it sends; refusing an agent's request is
        // routine here (and shows in the session's events), so only its errors are logged.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,agent_client_protocol=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
}

async fn bind(host: &str, port: u16) -> Result<TcpListener, CliError> {
    TcpListener::bind((host, port))
        .await
        .map_err(|err| CliError::Failed(format!("cannot listen on {host}:{port}: {err}")))
}

async fn start_actors(config: &Config) -> Result<Daemon, CliError> {
    let runtime: Arc<dyn AgentRuntime> = match config.settings.runtime {
        RuntimeKind::Native => Arc::new(NativeRuntime::default()),
        RuntimeKind::Acpx => Arc::new(AcpxRuntime::new(config.settings.acpx_command.clone())),
    };
    let (daemon, _) = Daemon::start(config.settings.clone(), runtime)
        .await
        .map_err(|err| CliError::Failed(err.to_string()))?;
    Ok(daemon)
}

/// Tells systemd (when it supervises us) that the database and listener are up, and feeds its
/// watchdog at half the configured interval. Without `NOTIFY_SOCKET` this does nothing.
fn systemd_ready() -> Option<JoinHandle<()>> {
    if let Err(err) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!("cannot notify systemd: {err}");
    }
    let period = sd_notify::watchdog_enabled()? / 2;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        }
    }))
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The actor system with its HTTP server.
struct Running {
    daemon: Daemon,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    grace: Duration,
}

impl Running {
    async fn launch(config: &Config, listener: TcpListener) -> Result<Self, CliError> {
        let daemon = start_actors(config).await?;
        let shutdown = CancellationToken::new();
        let state = AppState {
            daemon: daemon.clone(),
            shutdown: shutdown.clone(),
            github_secret: config.github_webhook_secret.as_deref().map(Into::into),
            tokens: Arc::new(config.tokens.clone()),
            browser: Arc::new(config.browser.clone()),
            logins: Arc::default(),
        };
        let server = tokio::spawn(http::serve(listener, state));
        Ok(Self {
            daemon,
            shutdown,
            server,
            grace: config.settings.shutdown_grace,
        })
    }

    /// Stops accepting, lets requests finish, then stops sessions and actors.
    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(HTTP_GRACE, self.server).await;
        self.daemon.shutdown(self.grace).await;
    }
}

/// Agents run as our uid, so without this they could read `/proc/<daemon>/environ` (the GitHub
/// and API tokens), `mem` and `fd`. Not dumpable, those are root's alone; the agents we spawn
/// get the flag back at exec and stay readable to us (the session-marker scan needs that).
fn hide_from_same_user() {
    if let Err(err) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!("cannot hide the daemon's memory and environment from agents: {err}");
    }
}

/// `telecoder serve`.
pub async fn serve(config: Config) -> Result<ExitCode, CliError> {
    config.check_exposure()?;
    init_tracing(config.json_logs);
    hide_from_same_user();
    let listener = bind(&config.listen_host, config.listen_port).await?;
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let running = Running::launch(&config, listener).await?;
    tracing::info!(
        data_dir = %config.settings.data_dir.display(),
        "TeleCoder listening on http://{address}"
    );
    let watchdog = systemd_ready();
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    running.stop().await;
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// A daemon inside the CLI process, on a loopback port of its own.
pub struct Embedded {
    pub url: String,
    running: Running,
}

impl Embedded {
    pub async fn start(config: Config) -> Result<Self, CliError> {
        hide_from_same_user();
        let listener = bind("127.0.0.1", 0).await?;
        let address: SocketAddr = listener
            .local_addr()
            .map_err(|err| CliError::Failed(format!("cannot read the local address: {err}")))?;
        let running = Running::launch(&config, listener).await?;
        Ok(Self {
            url: format!("http://{address}"),
            running,
        })
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}
