//! `telecoder`: a self-hosted daemon that runs coding agents durably, under a trust policy.

mod cli;
mod client;
mod config;
mod doctor;
mod http;
mod render;
mod serve;

use clap::{CommandFactory, Parser};
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    limit_malloc_arenas();
    // reqwest (the CLI client, publishing) uses rustls with the ring provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    if cli.command.is_none() {
        // Like the reference: no command prints the usage and succeeds.
        let _ = cli::Cli::command().print_help();
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(cli::CliError::ClosedPipe) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "error: {err}");
            err.exit_code()
        }
    }
}

/// glibc gives every thread that allocates its own malloc arena (up to 8 per core) and keeps
/// what each arena once held: with store reads hopping between blocking threads, 80 slow
/// readers of a large session left ~200 MB resident in arenas against ~40 MB with two. A
/// daemon that idles on a small VPS trades a little allocator contention for that.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Help and version print in full and succeed. A usage error prints clap's whole message
/// (what is missing, "did you mean", the usage line) and exits 1 like the reference; an
/// unknown policy exits 2, as the contract says for an unknown mode.
fn usage_error(err: clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let _ = err.print();
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let policy = matches!(
                err.get(ContextKind::InvalidArg),
                Some(ContextValue::String(arg)) if arg.starts_with("--policy")
            );
            ExitCode::from(if policy { 2 } else { 1 })
        }
        _ => ExitCode::FAILURE,
    }
}
