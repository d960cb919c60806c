//! One way to resolve a repository, used everywhere: the allowlist cannot be bypassed with
//! `..`, symlinks or encoded dot segments (issue 11, item 7), and a local repository is the
//! same watch however it is written (issue 12).

use crate::cli_compat::{cli_at, json_of, text};
use crate::support::*;
use serde_json::json;
use std::path::{Path, PathBuf};

/// `base/allowed/repo` and `base/outside` (git repositories, the latter holding a secret file),
/// with `base/allowed/escape` a symlink to `base/outside`.
struct Layout {
    _dir: tempfile::TempDir,
    base: PathBuf,
}

impl Layout {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = std::fs::canonicalize(dir.path()).expect("canonical");
        for repo in ["allowed/repo", "outside"] {
            let path = base.join(repo);
            std::fs::create_dir_all(&path).expect("mkdir");
            git_in(&path, &["init", "-q", "-b", "main"]);
            std::fs::write(path.join("SECRET.txt"), repo).expect("write");
            git_in(&path, &["add", "."]);
            git_in(
                &path,
                &[
                    "-c",
                    "user.name=t",
                    "-c",
                    "user.email=t@example.com",
                    "commit",
                    "-qm",
                    "x",
                ],
            );
        }
        std::os::unix::fs::symlink(base.join("outside"), base.join("allowed/escape"))
            .expect("symlink");
        Self { _dir: dir, base }
    }

    fn path(&self, rest: &str) -> String {
        format!("{}/{rest}", self.base.display())
    }

    fn allowlist(&self) -> String {
        format!("{} acme/*", self.path("allowed/*"))
    }
}

#[test]
fn the_allowlist_cannot_be_bypassed_with_dots_symlinks_or_encoded_urls() {
    let layout = Layout::new();
    let daemon = TestDaemon::start_with(&[("TELECODER_ALLOWED_REPOS", &layout.allowlist())]);
    let api = daemon.api();
    let allowed = api.create(&layout.path("allowed/repo"), "@mock say ok", json!({}));
    api.wait_finished(allowed["id"].as_str().unwrap_or_default(), SHORT);

    let attacks = [
        layout.path("allowed/../outside"),
        layout.path("allowed/repo/../../outside"),
        layout.path("allowed/escape"),
        format!("file://{}", layout.path("allowed/../outside")),
        format!("file://{}", layout.path("allowed/escape")),
        "https://github.com/acme/widgets/../../evil/repo".to_owned(),
        "https://github.com/acme/widgets/%2e%2e/%2E%2E/evil/repo".to_owned(),
        "https://github.com/acme/widgets/..%2F..%2Fevil/repo".to_owned(),
        "https://github.com/acme/widgets/%252e%252e/%252e%252e/evil/repo".to_owned(),
        "git@github.com:acme/widgets/../../evil/repo.git".to_owned(),
    ];
    for attack in &attacks {
        let session = api.post("/api/sessions", &json!({"repo": attack, "prompt": "x"}));
        assert_eq!(session.status, 400, "session {attack}: {}", session.body);
        let watch = api.post(
            "/api/watches",
            &json!({"repo": attack, "instructions": "x"}),
        );
        assert_eq!(watch.status, 400, "watch {attack}: {}", watch.body);
        for reply in [&session, &watch] {
            let error = reply.body["error"].as_str().unwrap_or_default();
            assert!(
                error.contains("not allowed") || error.contains("'..' path segments"),
                "{attack}: {error}"
            );
        }
    }
    let event = api.post(
        "/api/watch-events/ci",
        &json!({"repo": "https://github.com/acme/widgets/../../evil/repo", "workflow": "w", "branch": "main", "runId": 1}),
    );
    assert_eq!(event.status, 400, "{}", event.body);

    // What is allowed still is.
    for repo in [
        layout.path("allowed/repo"),
        "https://github.com/Acme/Widgets.git".into(),
    ] {
        let watch = api.post("/api/watches", &json!({"repo": repo, "instructions": "x"}));
        assert_eq!(watch.status, 201, "{repo}: {}", watch.body);
    }
    let sessions = api.list("");
    assert_eq!(sessions.len(), 1, "only the allowed session exists");
    let workspaces = std::fs::read_dir(daemon.data_dir.join("workspaces"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(workspaces, 1, "nothing outside was cloned");
}

#[test]
fn a_symlink_swapped_after_creation_is_checked_again_at_clone_time() {
    let layout = Layout::new();
    let link = layout.path("allowed/link");
    std::os::unix::fs::symlink(layout.path("allowed/repo"), &link).expect("symlink");
    let daemon = TestDaemon::start_with(&[
        ("TELECODER_ALLOWED_REPOS", &layout.allowlist()),
        ("TELECODER_MAX_CONCURRENT_SESSIONS", "1"),
    ]);
    let api = daemon.api();
    let blocker = api.create(&layout.path("allowed/repo"), "@mock sleep 60", json!({}));
    let blocker = blocker["id"].as_str().unwrap_or_default().to_owned();
    api.wait_status(&blocker, "running", SHORT);
    let queued = api.create(
        &link,
        "@mock read SECRET.txt",
        json!({"policy": "standard"}),
    );
    let queued = queued["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(api.session(&queued)["status"], "pending");

    // The attacker swaps the link while the session waits for a slot.
    std::fs::remove_file(&link).expect("unlink");
    std::os::unix::fs::symlink(layout.path("outside"), &link).expect("swap");
    let cancel = api.post(&format!("/api/sessions/{blocker}/cancel"), &json!({}));
    assert_eq!(cancel.status, 200, "{}", cancel.body);

    let finished = api.wait_finished(&queued, SHORT);
    assert_eq!(finished["status"], "error", "{finished}");
    assert!(
        finished["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not allowed"),
        "{finished}"
    );
    assert_eq!(
        finished["repo"],
        link.as_str(),
        "the record keeps the repo as given"
    );
    assert!(!finished["resultText"]
        .as_str()
        .unwrap_or_default()
        .contains("outside"));
    assert!(
        !daemon.data_dir.join("workspaces").join(&queued).exists(),
        "nothing was cloned"
    );
}

#[test]
fn the_same_local_repository_is_the_same_watch_however_it_is_written() {
    let daemon = TestDaemon::start();
    let api = daemon.api();
    let repo = TestRepo::new();
    let real = std::fs::canonicalize(repo.path()).expect("canonical");
    let links = tempfile::tempdir().expect("links");
    let link: PathBuf = links.path().join("via-link");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let home = tempfile::tempdir().expect("home");
    let env = [("TELECODER_URL", daemon.url.as_str())];
    let cli = |cwd: &Path, args: &[&str]| cli_at(cwd, home.path(), &env, args);

    let watch = json_of(&cli(
        &real,
        &["watch-add-ci", "--repo", ".", "@mock say fixed"],
    ));
    assert_eq!(
        watch["repo"],
        real.to_string_lossy().as_ref(),
        "stored resolved"
    );
    let fired = cli(
        &link,
        &[
            "trigger-ci",
            "--repo",
            ".",
            "--workflow",
            "build",
            "--branch",
            "main",
            "--run-id",
            "1",
            "--detach",
        ],
    );
    assert!(fired.status.success(), "{}", text(&fired.stderr));
    let fired = json_of(&fired);
    assert_eq!(
        fired.as_array().map(Vec::len),
        Some(1),
        "fires through the link: {fired}"
    );
    api.wait_finished(
        fired[0]["session"]["id"].as_str().unwrap_or_default(),
        SHORT,
    );

    let dotted = format!("{}/.git/..", real.display());
    let by_http = api.post(
        "/api/watch-events/ci",
        &json!({"repo": dotted, "workflow": "build", "branch": "main", "runId": 2}),
    );
    assert_eq!(
        by_http.body.as_array().map(Vec::len),
        Some(1),
        "{}",
        by_http.body
    );
    api.wait_finished(
        by_http.body[0]["sessionId"].as_str().unwrap_or_default(),
        SHORT,
    );

    let listed = json_of(&cli(
        home.path(),
        &["watch-list", "--repo", &link.to_string_lossy()],
    ));
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    // GitHub forms are one repository.
    let github = api.post(
        "/api/watches",
        &json!({"kind": "pr_review", "repo": "https://github.com/Acme/Widgets.git", "instructions": "x"}),
    );
    assert_eq!(github.status, 201);
    for form in [
        "acme/widgets",
        "git@github.com:acme/widgets.git",
        "https://github.com/acme/widgets",
    ] {
        let listed = json_of(&cli(home.path(), &["watch-list", "--repo", form]));
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{form}: {listed}");
    }

    // A session keeps its repo exactly as given and clones the resolved one.
    let session = api.create(&dotted, "@mock say cloned", json!({}));
    assert_eq!(session["repo"], dotted.as_str());
    let done = api.wait_finished(session["id"].as_str().unwrap_or_default(), SHORT);
    assert_eq!(done["status"], "complete", "{done}");
}
