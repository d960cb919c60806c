//! Agents run as the daemon's user. Attack: an agent with shell access reads the daemon's
//! `/proc` entries (its environment holds the GitHub and API tokens; its memory map and open files are the
//! way into the rest).

use crate::support::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The user a root test run plays: root reads every process's `/proc` whatever the daemon
/// does, and a user's daemon is not root.
const NOBODY: u32 = 65534;

/// How to start the daemon as an ordinary user: as the test user when that is not root;
/// otherwise as `nobody`, from copies of the binary and the mock agent in `dir` (the checkout
/// may not be readable by other users).
fn as_a_user(dir: &Path) -> (Vec<String>, Vec<(String, String)>) {
    if !nix::unistd::geteuid().is_root() {
        return (Vec::new(), Vec::new());
    }
    let mock = dir.join("mock_acp_agent.py");
    std::fs::copy(
        format!(
            "{}/tests/mock-agent/mock_acp_agent.py",
            env!("CARGO_MANIFEST_DIR")
        ),
        &mock,
    )
    .expect("copy the mock agent");
    let binary = dir.join("telecoder");
    std::fs::copy(env!("CARGO_BIN_EXE_telecoder"), &binary).expect("copy the binary");
    let data = dir.join("data");
    std::fs::create_dir(&data).expect("data dir");
    for path in [dir, &data, &binary, &mock] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).expect("chown");
    }
    let command = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .chain([binary.to_string_lossy().into_owned()])
    .collect();
    let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|path| Path::new(path).exists())
        .unwrap_or("python3");
    let env = [
        ("TELECODER_DATA_DIR", data.to_string_lossy().into_owned()),
        ("HOME", data.to_string_lossy().into_owned()),
        ("PATH", "/usr/local/bin:/usr/bin:/bin".into()),
        (
            "TELECODER_AGENT_MOCK_COMMAND",
            format!("{python} {}", mock.display()),
        ),
        // The daemon's process is the target, whichever runtime talks to the agent; acpx's
        // node may live where `nobody` cannot reach.
        ("TELECODER_RUNTIME", "native".into()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    (command, env)
}

#[test]
fn an_agent_cannot_read_the_daemons_environment_memory_map_or_descriptors() {
    let token = format!("ghp_{}", "Z7q".repeat(12));
    let dir = tempfile::tempdir().expect("tempdir");
    let (command, env) = as_a_user(dir.path());
    let mut extra: Vec<(&str, &str)> = vec![("GITHUB_TOKEN", token.as_str())];
    extra.extend(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let daemon = TestDaemon::start_as(command, &extra);
    let pid = daemon.pid();
    let repo = TestRepo::new();
    if nix::unistd::geteuid().is_root() {
        chown_tree(repo.path());
    }
    // Each probe prints one word, so the verdict survives output redaction. The first is the
    // control: the agent reads its own environment, so a refusal below is the daemon's doing.
    let probe = |what: &str, check: &str| {
        format!("if {check} >/dev/null 2>&1; then echo {what}-READ; else echo {what}-DENIED; fi")
    };
    let prompt = format!(
        "@mock shell {}; {}; {}; {}",
        probe("SELF", "grep -qa PATH= /proc/self/environ"),
        probe(
            "ENV",
            &format!("grep -qa GITHUB_TOKEN= /proc/{pid}/environ")
        ),
        probe("MAPS", &format!("grep -q telecoder /proc/{pid}/maps")),
        probe("FD", &format!("ls /proc/{pid}/fd")),
    );
    let api = daemon.api();
    let created = api.create(&repo.path_str(), &prompt, json!({"policy": "standard"}));
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let session = api.wait_finished(&id, SHORT);
    assert_eq!(session["status"], "complete", "{session}");
    let text = session["resultText"].as_str().unwrap_or_default();
    assert!(text.contains("SELF-READ"), "the probe is broken: {text}");
    for what in ["ENV", "MAPS", "FD"] {
        assert!(
            text.contains(&format!("{what}-DENIED")),
            "the agent read the daemon's {what}: {text}"
        );
    }
}

/// The test repository, readable and cloneable by `nobody` (git refuses repositories owned by
/// another user).
fn chown_tree(path: &Path) {
    std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).expect("chown");
    if path.is_dir() && !path.is_symlink() {
        for entry in std::fs::read_dir(path).expect("read dir").flatten() {
            chown_tree(&entry.path());
        }
    }
}
