//! The agents TeleCoder knows by name, and the command each one runs.
//!
//! The table is acpx's own registry (`node_modules/acpx/dist/agent-registry-*.js`, acpx 0.19.1,
//! the version `package.json` pins), so a name means the same program under both runtimes:
//! `command` is what acpx runs, `installed` what it prefers when that adapter is already on
//! `PATH` (instead of fetching it with `npx`). `TELECODER_AGENT_<NAME>_COMMAND` overrides
//! any entry and adds new names; anything else is refused when a session is created.

use std::path::{Path, PathBuf};

/// One agent of the registry. Commands are written as acpx writes them, words separated by
/// blanks (no word of any of them contains one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownAgent {
    pub name: &'static str,
    /// What acpx runs.
    pub command: &'static str,
    /// What acpx runs instead when its first word is on `PATH`.
    pub installed: Option<&'static str>,
}

const fn agent(name: &'static str, command: &'static str) -> KnownAgent {
    KnownAgent {
        name,
        command,
        installed: None,
    }
}

const fn adapter(name: &'static str, command: &'static str, installed: &'static str) -> KnownAgent {
    KnownAgent {
        name,
        command,
        installed: Some(installed),
    }
}

/// acpx 0.19.1's `AGENT_DEFINITIONS`, in its order (the adapter package ranges are acpx's).
pub const KNOWN_AGENTS: &[KnownAgent] = &[
    adapter("pi", "npx pi-acp@^0.0.33", "pi-acp"),
    agent("openclaw", "openclaw acp"),
    adapter(
        "codex",
        "npx -y @agentclientprotocol/codex-acp@^1.1.5",
        "codex-acp",
    ),
    adapter(
        "claude",
        "npx -y @agentclientprotocol/claude-agent-acp@^0.76.0",
        "claude-agent-acp",
    ),
    agent("gemini", "gemini --acp"),
    agent("cursor", "cursor-agent acp"),
    agent("copilot", "copilot --acp --stdio"),
    agent("antigravity", "agy_acp_server.par --uid="),
    agent("devin", "devin acp"),
    agent("droid", "droid exec --output-format acp"),
    agent("fast-agent", "uvx fast-agent-mcp acp"),
    agent("fx", "fx acp"),
    agent("grok-build", "grok agent stdio"),
    agent("iflow", "iflow --experimental-acp"),
    agent("junie", "junie --acp=true"),
    adapter("kilocode", "npx -y @kilocode/cli acp", "kilo acp"),
    agent("kimi", "kimi acp"),
    agent("kiro", "kiro-cli-chat acp"),
    agent("mcode", "mcode acp"),
    agent("mux", "npx -y mux@^0.28.0 acp"),
    adapter("opencode", "npx -y opencode-ai acp", "opencode acp"),
    agent("pool", "pool acp"),
    agent("qoder", "qodercli --acp"),
    agent("qwen", "qwen --acp"),
    agent("trae", "traecli acp serve"),
    agent("zeroclaw", "zeroclaw acp"),
];

/// acpx's aliases.
const ALIASES: &[(&str, &str)] = &[("factory-droid", "droid"), ("factorydroid", "droid")];

/// The registry entry for `name` (case-insensitive, aliases resolved).
pub fn known(name: &str) -> Option<&'static KnownAgent> {
    let name = name.trim().to_ascii_lowercase();
    let canonical = ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name.as_str(), |(_, target)| target);
    KNOWN_AGENTS.iter().find(|agent| agent.name == canonical)
}

/// Why an agent cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentCommandError {
    #[error("unknown agent '{0}'")]
    Unknown(String),
    #[error("cannot split the command of agent '{agent}': {message}")]
    BadOverride { agent: String, message: String },
}

/// The argv that runs `agent`: its override when configured, else the registry's command
/// (the installed adapter when it is on `PATH`, as acpx does).
pub fn command_for(
    agent: &str,
    command_override: Option<&str>,
) -> Result<Vec<String>, AgentCommandError> {
    if let Some(command) = command_override {
        let argv = shell_words::split(command).map_err(|err| AgentCommandError::BadOverride {
            agent: agent.to_owned(),
            message: err.to_string(),
        })?;
        if argv.is_empty() {
            return Err(AgentCommandError::BadOverride {
                agent: agent.to_owned(),
                message: "the command is empty".into(),
            });
        }
        return Ok(argv);
    }
    let known = known(agent).ok_or_else(|| AgentCommandError::Unknown(agent.to_owned()))?;
    let command = match known.installed {
        Some(installed) if installed.split(' ').next().and_then(find_program).is_some() => {
            installed
        }
        _ => known.command,
    };
    Ok(command.split(' ').map(str::to_owned).collect())
}

/// Where `program` would be found: itself when it names a path, else the first executable
/// file of that name on `PATH`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = Path::new(program);
        return is_executable(path).then(|| path.to_path_buf());
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_words_separated_by_one_blank() {
        for agent in KNOWN_AGENTS {
            for command in [Some(agent.command), agent.installed].into_iter().flatten() {
                assert!(
                    !command.is_empty() && command.split(' ').all(|word| !word.trim().is_empty()),
                    "{}: {command:?}",
                    agent.name
                );
            }
        }
    }

    #[test]
    fn names_resolve_like_acpx() {
        assert_eq!(known("Codex").map(|a| a.name), Some("codex"));
        assert_eq!(known("factory-droid").map(|a| a.name), Some("droid"));
        assert!(known("evil").is_none());
        assert_eq!(
            command_for("gemini", None),
            Ok(vec!["gemini".to_owned(), "--acp".to_owned()])
        );
        assert_eq!(
            command_for("nope", None),
            Err(AgentCommandError::Unknown("nope".into()))
        );
    }

    #[test]
    fn overrides_win_and_are_shell_split() {
        assert_eq!(
            command_for("codex", Some("python3 'my agent.py' --x")),
            Ok(vec!["python3".into(), "my agent.py".into(), "--x".into()])
        );
        assert!(matches!(
            command_for("codex", Some("'open")),
            Err(AgentCommandError::BadOverride { .. })
        ));
        assert!(command_for("custom", Some("  ")).is_err());
    }

    #[test]
    fn programs_are_found_on_path_or_by_path() {
        assert!(find_program("sh").is_some());
        assert!(find_program("/bin/sh").is_some());
        assert!(find_program("definitely-not-a-program-here").is_none());
    }
}
