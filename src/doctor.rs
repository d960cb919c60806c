//! `telecoder doctor`: checks that this machine can run TeleCoder, one line per check (or one
//! JSON object). It looks without touching: nothing is created, not even the data directory.

use crate::cli::output::Out;
use crate::cli::CliError;
use crate::client::Client;
use crate::config::Config;
use serde::Serialize;
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::Duration;
use telecoder_actors::runtime::agents;
use telecoder_actors::settings::RuntimeKind;

/// One check's result.
#[derive(Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

/// Runs `program args` and returns its first line of output.
async fn version_of(program: &str, args: &[&str]) -> Result<String, String> {
    let output = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(20), output).await {
        Err(_) => Err(format!("{program} did not answer within 20 s")),
        Ok(Err(err)) => Err(format!("{program}: {err}")),
        Ok(Ok(out)) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned()),
        Ok(Ok(out)) => Err(format!("{program} exited with {}", out.status)),
    }
}

/// Whether the daemon can use its data directory: writable if it exists, else creatable
/// (its nearest existing parent is a writable directory). Probes with `access(2)` only.
fn data_dir_usable(config: &Config) -> Result<String, String> {
    let dir = &config.settings.data_dir;
    if dir.is_dir() {
        return writable(dir)
            .map(|()| dir.display().to_string())
            .map_err(|err| format!("cannot write in {}: {err}", dir.display()));
    }
    if dir.exists() {
        return Err(format!("{} exists but is not a directory", dir.display()));
    }
    let parent = dir
        .ancestors()
        .skip(1)
        .find(|p| p.is_dir())
        .ok_or_else(|| format!("no parent directory of {} exists", dir.display()))?;
    writable(parent)
        .map(|()| format!("{} (created at first start)", dir.display()))
        .map_err(|err| {
            format!(
                "cannot create {}: {} is not writable ({err})",
                dir.display(),
                parent.display()
            )
        })
}

fn writable(path: &Path) -> Result<(), nix::Error> {
    nix::unistd::access(
        path,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    )
}

/// A running daemon is good news, not a busy port.
async fn daemon_or_port(config: &Config) -> (&'static str, Result<String, String>) {
    if let Ok(client) = Client::new(&config.url, config.tokens.for_cli()) {
        if client.healthy().await {
            return ("daemon", Ok(format!("daemon reachable at {}", config.url)));
        }
    }
    let address = format!("{}:{}", config.listen_host, config.listen_port);
    let port = match tokio::net::TcpListener::bind((
        config.listen_host.as_str(),
        config.listen_port,
    ))
    .await
    {
        Ok(_) => Ok(format!(
            "{address} is free (no daemon answers at {}: start one with `telecoder serve`)",
            config.url
        )),
        Err(err) => Err(format!(
            "cannot listen on {address}: {err}; something that is not a TeleCoder daemon \
             holds it: set TELECODER_LISTEN_PORT to another port"
        )),
    };
    ("port", port)
}

/// Every configured agent (the default and each `TELECODER_AGENT_<NAME>_COMMAND`) must name a
/// known agent whose program exists.
fn agents(config: &Config) -> Result<String, String> {
    let s = &config.settings;
    let mut names: Vec<String> = s
        .agent_commands
        .keys()
        .map(|key| key.to_ascii_lowercase().replace('_', "-"))
        .collect();
    if !names.contains(&s.default_agent) {
        names.insert(0, s.default_agent.clone());
    }
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for name in &names {
        match agents::command_for(name, s.agent_command(name)) {
            Ok(argv) => match agents::find_program(&argv[0]) {
                Some(_) => found.push(format!("{name} -> {}", shell_words::join(&argv))),
                None => problems.push(format!("{name}: {} not found", argv[0])),
            },
            Err(err) => problems.push(err.to_string()),
        }
    }
    if problems.is_empty() {
        Ok(format!("default {}; {}", s.default_agent, found.join(", ")))
    } else {
        Err(problems.join("; "))
    }
}

fn token(config: &Config) -> Result<String, String> {
    config
        .check_exposure()
        .map(|()| {
            if config.tokens.any() {
                "set".to_owned()
            } else {
                format!("not set (fine: {} is loopback only)", config.listen_host)
            }
        })
        .map_err(|err| err.to_string())
}

/// Prints each check and exits 0 when all pass.
pub async fn run(config: &Config, out: Out) -> Result<ExitCode, CliError> {
    let (listener, listening) = daemon_or_port(config).await;
    let runtime = config.settings.runtime;
    let mut results: Vec<(&'static str, Result<String, String>)> = vec![
        (listener, listening),
        ("runtime", Ok(runtime.as_str().to_owned())),
    ];
    if runtime == RuntimeKind::Acpx {
        let acpx = &config.settings.acpx_command;
        let acpx_args: Vec<&str> = acpx[1..]
            .iter()
            .map(String::as_str)
            .chain(["--version"])
            .collect();
        results.push((
            "acpx",
            version_of(&acpx[0], &acpx_args)
                .await
                .map(|v| format!("{} {v}", acpx[0])),
        ));
        results.push(("node", version_of("node", &["--version"]).await));
    }
    results.extend([
        ("git", version_of("git", &["--version"]).await),
        ("agents", agents(config)),
        ("data dir", data_dir_usable(config)),
        ("token", token(config)),
    ]);
    let checks: Vec<Check> = results
        .into_iter()
        .map(|(name, result)| {
            let ok = result.is_ok();
            let detail = result.unwrap_or_else(|problem| problem);
            Check { name, ok, detail }
        })
        .collect();
    let all_ok = checks.iter().all(|c| c.ok);
    let report = serde_json::json!({"ok": all_ok, "checks": checks});
    out.data(&report, || {
        checks
            .iter()
            .map(|c| {
                let mark = if c.ok { "ok  " } else { "FAIL" };
                format!("{mark}  {:<9} {}\n", c.name, c.detail)
            })
            .collect()
    })?;
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
