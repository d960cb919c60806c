//! Shared fixture: a real actor tree (real SQLite, real acpx, the project's mock ACP agent,
//! real git repositories). Daemons are scoped to their instance, so a test may start several.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use telecoder_actors::domain::{NewSession, Session};
use telecoder_actors::runtime::AcpxRuntime;
use telecoder_actors::{Daemon, Settings};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

pub struct Fixture {
    pub daemon: Daemon,
    pub repo: tempfile::TempDir,
    _data: tempfile::TempDir,
}

pub async fn start() -> Fixture {
    let acpx = Path::new(ROOT).join("node_modules/.bin/acpx");
    assert!(acpx.exists(), "acpx is not installed: run scripts/test");
    let data = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::new(data.path());
    settings.acpx_command = vec![acpx.to_string_lossy().into_owned()];
    settings.default_agent = "mock".into();
    settings.agent_commands.insert(
        "MOCK".into(),
        format!("python3 {ROOT}/tests/mock-agent/mock_acp_agent.py"),
    );
    settings.heartbeat = Duration::from_secs(1);
    settings.stale = Duration::from_secs(3);
    let runtime = Arc::new(AcpxRuntime::new(settings.acpx_command.clone()));
    let (daemon, _) = Daemon::start(settings, runtime)
        .await
        .expect("daemon starts");
    let repo = tempfile::tempdir().expect("tempdir");
    for args in [
        &["init", "-q"][..],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "init",
        ],
    ] {
        let status = Command::new("git")
            .args(args)
            .current_dir(repo.path())
            .status()
            .expect("git");
        assert!(status.success());
    }
    Fixture {
        daemon,
        repo,
        _data: data,
    }
}

impl Fixture {
    pub async fn create(&self, prompt: &str) -> Session {
        self.daemon
            .create_session(NewSession {
                repo: self.repo.path().to_string_lossy().into_owned(),
                prompt: prompt.into(),
                ..NewSession::default()
            })
            .await
            .expect("session created")
    }

    pub async fn wait_until(
        &self,
        id: &str,
        what: &str,
        check: impl Fn(&Session) -> bool,
    ) -> Session {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(session) = self.daemon.session(id).await {
                if check(&session) {
                    return session;
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}
