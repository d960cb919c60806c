//! `telecoder doctor`: checks that this machine can run TeleCoder, one line per check.

use crate::config::Config;
use std::process::{ExitCode, Stdio};
use std::time::Duration;
use telecoder_actors::runtime::agents;
use telecoder_actors::settings::RuntimeKind;

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

fn data_dir_writable(config: &Config) -> Result<String, String> {
    let dir = &config.settings.data_dir;
    std::fs::create_dir_all(dir)
        .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    let probe = dir.join(".doctor-probe");
    std::fs::write(&probe, b"ok")
        .map_err(|err| format!("cannot write in {}: {err}", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(dir.display().to_string())
}

async fn port_free(config: &Config) -> Result<String, String> {
    let address = format!("{}:{}", config.listen_host, config.listen_port);
    match tokio::net::TcpListener::bind((config.listen_host.as_str(), config.listen_port)).await {
        Ok(_) => Ok(format!("{address} is free")),
        Err(err) => Err(format!(
            "cannot listen on {address}: {err} (is a daemon already running?)"
        )),
    }
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

/// Prints each check and returns 0 when all pass.
pub async fn run(config: &Config) -> ExitCode {
    let runtime = config.settings.runtime;
    let mut checks: Vec<(&str, Result<String, String>)> =
        vec![("runtime", Ok(runtime.as_str().to_owned()))];
    if runtime == RuntimeKind::Acpx {
        let acpx = &config.settings.acpx_command;
        let acpx_args: Vec<&str> = acpx[1..]
            .iter()
            .map(String::as_str)
            .chain(["--version"])
            .collect();
        checks.push((
            "acpx",
            version_of(&acpx[0], &acpx_args)
                .await
                .map(|v| format!("{} {v}", acpx[0])),
        ));
        checks.push(("node", version_of("node", &["--version"]).await));
    }
    checks.extend([
        ("git", version_of("git", &["--version"]).await),
        ("agents", agents(config)),
        ("data dir", data_dir_writable(config)),
        ("port", port_free(config).await),
        (
            "token",
            config
                .check_exposure()
                .map(|()| {
                    if config.tokens.any() {
                        "set".to_owned()
                    } else {
                        format!("not set (fine: {} is loopback only)", config.listen_host)
                    }
                })
                .map_err(|err| err.to_string()),
        ),
    ]);
    let mut failed = 0;
    for (name, result) in &checks {
        match result {
            Ok(detail) => println!("ok    {name:<9} {detail}"),
            Err(problem) => {
                failed += 1;
                println!("FAIL  {name:<9} {problem}");
            }
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
