//! Workspaces (issue 16): diff against the base commit, fetch into the user's repository (and
//! nothing else there), the collector (expiry, bundles, running sessions, a kill mid-pass),
//! mirror clones, and git that never runs what the agent planted.

use crate::support::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A daemon whose collector removes every finished session's workspace on the next pass
/// (the timer itself stays out of the way: passes are asked for).
fn collecting_daemon(extra: &[(&str, &str)]) -> TestDaemon {
    let mut env = vec![
        ("TELECODER_WORKSPACE_RETENTION", "0"),
        ("TELECODER_WORKSPACE_GC_INTERVAL", "1h"),
    ];
    env.extend_from_slice(extra);
    TestDaemon::start_with(&env)
}

/// Runs a session to its end under the standard policy (the mock agent may write).
#[track_caller]
fn finished(api: &Api, repo: &str, prompt: &str) -> Value {
    let id = api.create(repo, prompt, json!({"policy": "standard"}))["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let session = api.wait_finished(&id, SHORT);
    assert_eq!(session["status"], "complete", "{session}");
    session
}

fn id_of(session: &Value) -> String {
    session["id"].as_str().unwrap_or_default().to_owned()
}

fn work_dir(session: &Value) -> PathBuf {
    PathBuf::from(session["workDir"].as_str().unwrap_or_default())
}

/// Commits in a workspace as an agent with a terminal would.
fn agent_commits(dir: &Path, file: &str, text: &str, message: &str) {
    std::fs::write(dir.join(file), text).expect("write");
    git_in(dir, &["add", file]);
    git_in(
        dir,
        &[
            "-c",
            "user.name=agent",
            "-c",
            "user.email=agent@example.com",
            "commit",
            "-qm",
            message,
        ],
    );
}

/// What a user would check to see that nothing of theirs moved: HEAD, status, the index file
/// and every ref.
fn fingerprint(repo: &Path) -> Vec<String> {
    vec![
        git_in(repo, &["hash-object", ".git/index"]),
        git_in(repo, &["symbolic-ref", "HEAD"]),
        git_in(repo, &["rev-parse", "HEAD"]),
        // Without optional locks, status never rewrites the index it is compared with.
        git_in(
            repo,
            &[
                "--no-optional-locks",
                "status",
                "--porcelain",
                "--untracked-files=all",
            ],
        ),
        git_in(repo, &["for-each-ref", "--format=%(refname) %(objectname)"]),
    ]
}

fn diff_json(api: &Api, id: &str) -> Reply {
    api.send(
        api.http()
            .get(format!("{}/api/sessions/{id}/diff", api.base))
            .header("accept", "application/json"),
    )
}

fn file_entry<'a>(diff: &'a Value, path: &str) -> &'a Value {
    diff["files"]
        .as_array()
        .and_then(|files| files.iter().find(|f| f["path"] == path))
        .unwrap_or_else(|| panic!("{path} not in {diff}"))
}

fn post_gc(api: &Api, body: Value) -> Value {
    let reply = api.post("/admin/gc", &body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

fn removed_sessions(report: &Value) -> Vec<String> {
    let mut ids: Vec<String> = report["removed"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["kind"] == "workspace")
        .map(|r| r["sessionId"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
fn diff_shows_committed_and_uncommitted_changes_against_the_base() {
    let daemon = TestDaemon::start();
    let api = daemon.api();
    let repo = TestRepo::new();
    let session = finished(
        &api,
        &repo.path_str(),
        "@mock write notes.txt hello\\nworld\\n",
    );
    let id = id_of(&session);
    let dir = work_dir(&session);
    assert_eq!(
        session["baseCommit"].as_str(),
        Some(repo.git(&["rev-parse", "main"]).as_str())
    );
    // The agent also committed a change; the user moved on in their own repository meanwhile
    // (that commit is not the session's).
    agent_commits(&dir, "README.md", "# demo\nby the agent\n", "agent edit");
    std::fs::write(repo.path().join("user.txt"), "mine\n").expect("write");
    repo.git(&["add", "user.txt"]);
    repo.git(&[
        "-c",
        "user.name=u",
        "-c",
        "user.email=u@e",
        "commit",
        "-qm",
        "user",
    ]);
    let status_before = git_in(&dir, &["status", "--porcelain"]);
    let index_before = git_in(&dir, &["hash-object", ".git/index"]);

    let reply = diff_json(&api, &id);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let readme = file_entry(&reply.body, "README.md");
    assert_eq!(readme["status"], "modified");
    assert_eq!(
        (readme["additions"].as_u64(), readme["deletions"].as_u64()),
        (Some(1), Some(0))
    );
    let notes = file_entry(&reply.body, "notes.txt");
    assert_eq!(notes["status"], "added");
    assert_eq!(notes["additions"], 2);
    assert_eq!(reply.body["files"].as_array().map(Vec::len), Some(2));
    let patch = reply.body["patch"].as_str().unwrap_or_default();
    assert!(patch.contains("+by the agent"), "{patch}");
    assert!(patch.contains("+++ b/notes.txt"), "{patch}");
    assert!(!patch.contains("user.txt"), "{patch}");

    let text = api.get(&format!("/api/sessions/{id}/diff"));
    assert_eq!(text.status, 200);
    assert!(
        text.content_type.starts_with("text/x-diff"),
        "{}",
        text.content_type
    );
    assert_eq!(text.body.as_str(), Some(patch));

    // Looking changed nothing in the workspace.
    assert_eq!(git_in(&dir, &["status", "--porcelain"]), status_before);
    assert_eq!(git_in(&dir, &["hash-object", ".git/index"]), index_before);

    let env = [("TELECODER_URL", daemon.url.as_str())];
    let stat = telecoder(&env, &["diff", &id, "--stat"]);
    assert!(
        stat.status.success(),
        "{}",
        String::from_utf8_lossy(&stat.stderr)
    );
    let stat = String::from_utf8_lossy(&stat.stdout).into_owned();
    assert!(
        stat.contains("notes.txt") && stat.contains("2 files changed"),
        "{stat}"
    );
    let full = telecoder(&env, &["diff", &id]);
    assert_eq!(String::from_utf8_lossy(&full.stdout), patch);
    let open = telecoder(&env, &["open", &id]);
    assert_eq!(
        String::from_utf8_lossy(&open.stdout).trim(),
        dir.to_string_lossy()
    );

    for (path, status) in [
        ("/api/sessions/deadbeef/diff", 404),
        ("/api/sessions/not-an-id/diff", 404),
    ] {
        let reply = api.get(path);
        assert_eq!(reply.status, status, "{path}: {}", reply.body);
        assert!(reply.body["error"].is_string());
    }
}

#[test]
fn a_session_that_never_ran_has_no_diff_and_nothing_to_fetch() {
    let daemon = TestDaemon::start_with(&[("TELECODER_MAX_CONCURRENT_SESSIONS", "1")]);
    let api = daemon.api();
    let repo = TestRepo::new();
    let running = id_of(&api.create(&repo.path_str(), "@mock hang", json!({})));
    api.wait_status(&running, "running", SHORT);
    let pending = id_of(&api.create(&repo.path_str(), "@mock say hi", json!({})));
    let refused = [
        diff_json(&api, &pending),
        api.post(&format!("/api/sessions/{pending}/fetch"), &json!({})),
        api.post(&format!("/api/sessions/{running}/fetch"), &json!({})),
    ];
    for reply in refused {
        assert_eq!(reply.status, 409, "{}", reply.body);
        assert!(reply.body["error"].is_string());
    }
    let cancelled = api.post(&format!("/api/sessions/{pending}/cancel"), &json!({}));
    assert_eq!(cancelled.status, 200);
    let reply = diff_json(&api, &pending);
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert!(
        reply.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("never got a workspace"),
        "{}",
        reply.body
    );
    let _ = api.post(&format!("/api/sessions/{running}/cancel"), &json!({}));
    api.wait_finished(&running, SHORT);
}

#[test]
fn fetch_creates_the_branch_and_leaves_everything_else_alone() {
    let daemon = TestDaemon::start();
    let api = daemon.api();
    let repo = TestRepo::new();
    // The user is in the middle of something: staged, unstaged and untracked changes.
    std::fs::write(repo.path().join("staged.txt"), "staged\n").expect("write");
    repo.git(&["add", "staged.txt"]);
    std::fs::write(repo.path().join("README.md"), "# demo\nunstaged\n").expect("write");
    std::fs::write(repo.path().join("scratch.txt"), "untracked\n").expect("write");
    let session = finished(
        &api,
        &repo.path_str(),
        "@mock write feature.txt from the agent",
    );
    let id = id_of(&session);
    let branch = format!("telecoder/{id}");
    let before = fingerprint(repo.path());

    let reply = api.post(&format!("/api/sessions/{id}/fetch"), &json!({}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["branch"], branch.as_str());
    assert_eq!(reply.body["updated"], true);
    assert_eq!(reply.body["committedPending"], true);
    let commit = reply.body["commit"].as_str().unwrap_or_default().to_owned();

    // The branch is in the user's repository with the agent's work, committed as TeleCoder…
    assert_eq!(repo.git(&["rev-parse", &branch]), commit);
    assert_eq!(
        repo.git(&["show", &format!("{branch}:feature.txt")]),
        "from the agent"
    );
    assert_eq!(
        repo.git(&["log", "-1", "--format=%an", &branch]),
        "TeleCoder"
    );
    // …and nothing else of theirs changed: HEAD, index, working tree, other refs, FETCH_HEAD.
    let mut after = fingerprint(repo.path());
    let refs = after.pop().unwrap_or_default();
    let expected_refs = format!("{}\nrefs/heads/{branch} {commit}", before[4]);
    let mut sorted: Vec<&str> = expected_refs.lines().collect();
    sorted.sort();
    assert_eq!(refs.lines().collect::<Vec<_>>(), sorted);
    assert_eq!(after, before[..4].to_vec());
    assert!(!repo.path().join(".git/FETCH_HEAD").exists());

    let session = api.session(&id);
    assert!(!session["fetchedAt"].as_str().unwrap_or_default().is_empty());
    assert!(api.events(&id).iter().any(|e| e["type"] == "fetch"));
    let again = api.post(&format!("/api/sessions/{id}/fetch"), &json!({}));
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["updated"], false);

    // The user adds a commit of their own on that branch: the session's branch no longer
    // contains it, so fetching again is refused and their branch stays.
    let tree = repo.git(&["rev-parse", &format!("{branch}^{{tree}}")]);
    let theirs = repo.git(&[
        "-c",
        "user.name=u",
        "-c",
        "user.email=u@e",
        "commit-tree",
        &tree,
        "-p",
        &branch,
        "-m",
        "user's own commit",
    ]);
    repo.git(&["update-ref", &format!("refs/heads/{branch}"), &theirs]);
    agent_commits(&work_dir(&session), "more.txt", "more\n", "more");
    let refused = api.post(&format!("/api/sessions/{id}/fetch"), &json!({}));
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("has commits"),
        "{}",
        refused.body
    );
    assert_eq!(repo.git(&["rev-parse", &branch]), theirs);

    // The CLI says what happened; a checked-out branch is refused rather than moved.
    repo.git(&["update-ref", &format!("refs/heads/{branch}"), &commit]);
    let env = [("TELECODER_URL", daemon.url.as_str())];
    let fetched = telecoder(&env, &["fetch", &id]);
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    assert!(String::from_utf8_lossy(&fetched.stdout).contains("updated"));
    let worktree = tempfile::tempdir().expect("tempdir");
    let checkout = worktree.path().join("wt");
    repo.git(&[
        "worktree",
        "add",
        "-q",
        &checkout.to_string_lossy(),
        &branch,
    ]);
    agent_commits(&work_dir(&session), "last.txt", "last\n", "last");
    let busy = api.post(&format!("/api/sessions/{id}/fetch"), &json!({}));
    assert_eq!(busy.status, 409, "{}", busy.body);
    assert!(busy.body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("checked out"));
}

#[test]
fn collector_removes_expired_workspaces_bundles_unsaved_work_and_spares_running_ones() {
    let daemon = collecting_daemon(&[]);
    let api = daemon.api();
    let repo = TestRepo::new();
    let unsaved = finished(&api, &repo.path_str(), "@mock write unsaved.txt keep me");
    let fetched = finished(&api, &repo.path_str(), "@mock write fetched.txt fetched");
    let idle = finished(&api, &repo.path_str(), "@mock say nothing to change");
    let reply = api.post(
        &format!("/api/sessions/{}/fetch", id_of(&fetched)),
        &json!({}),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let running = id_of(&api.create(&repo.path_str(), "@mock hang", json!({})));
    let running_dir = wait_for("the running session's workspace", SHORT, || {
        let dir = work_dir(&api.session(&running));
        (!dir.as_os_str().is_empty() && dir.join(".git").is_dir()).then_some(dir)
    });
    let diff_before = diff_json(&api, &id_of(&unsaved)).body;
    let mut expected = vec![id_of(&unsaved), id_of(&fetched), id_of(&idle)];
    expected.sort();

    // A dry run says what would go, and removes nothing.
    let dry = post_gc(&api, json!({"dryRun": true}));
    assert_eq!(dry["dryRun"], true);
    assert_eq!(removed_sessions(&dry), expected);
    for session in [&unsaved, &fetched, &idle] {
        assert!(work_dir(session).exists());
    }
    let planned: Vec<&Value> = dry["removed"].as_array().into_iter().flatten().collect();
    let archive_of = |id: &str, list: &[&Value]| {
        list.iter()
            .find(|r| r["sessionId"] == id)
            .map(|r| r["archive"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    assert!(archive_of(&id_of(&unsaved), &planned).ends_with(".bundle"));
    assert_eq!(archive_of(&id_of(&fetched), &planned), "");
    assert_eq!(archive_of(&id_of(&idle), &planned), "");

    let env = [("TELECODER_URL", daemon.url.as_str())];
    let gc = telecoder(&env, &["--json", "gc"]);
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    let report: Value = serde_json::from_slice(&gc.stdout).expect("json report");
    assert_eq!(removed_sessions(&report), expected);
    assert!(
        report["bytesFreed"].as_u64().unwrap_or_default() > 0,
        "{report}"
    );
    for session in [&unsaved, &fetched, &idle] {
        assert!(
            !work_dir(session).exists(),
            "{} still there",
            id_of(session)
        );
    }
    assert!(
        running_dir.join(".git").is_dir(),
        "a running session's workspace was touched"
    );

    // Unsaved work was bundled: diff and fetch still answer from it.
    let unsaved_id = id_of(&unsaved);
    let bundle = daemon.data_dir.join(format!("archive/{unsaved_id}.bundle"));
    assert!(bundle.is_file());
    assert_eq!(api.session(&unsaved_id)["workspaceState"], "archived");
    assert_eq!(diff_json(&api, &unsaved_id).body, diff_before);
    let from_bundle = api.post(&format!("/api/sessions/{unsaved_id}/fetch"), &json!({}));
    assert_eq!(from_bundle.status, 200, "{}", from_bundle.body);
    assert_eq!(from_bundle.body["fromArchive"], true);
    assert_eq!(
        repo.git(&["show", &format!("telecoder/{unsaved_id}:unsaved.txt")]),
        "keep me"
    );

    // Fetched work needed no bundle; the session keeps its record, events and outcome.
    let fetched_id = id_of(&fetched);
    assert!(!daemon
        .data_dir
        .join(format!("archive/{fetched_id}.bundle"))
        .exists());
    let record = api.session(&fetched_id);
    assert_eq!(record["workspaceState"], "collected");
    assert_eq!(record["status"], "complete");
    assert_eq!(record["outcomeHeadline"], fetched["outcomeHeadline"]);
    assert!(api.events(&fetched_id).iter().any(|e| e["type"] == "done"));
    let gone = diff_json(&api, &fetched_id);
    assert_eq!(gone.status, 404, "{}", gone.body);
    assert!(gone.body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("collected"));
    let open = telecoder(&env, &["open", &fetched_id]);
    assert_eq!(open.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&open.stderr).contains("collected"));

    // Operators see what is left.
    let status = api.get("/admin/status");
    assert_eq!(status.body["workspaces"]["count"], 1, "{}", status.body);
    assert_eq!(status.body["workspaces"]["archives"], 1);
    let metrics = api.get("/metrics");
    let text = metrics.body.as_str().unwrap_or_default();
    assert!(text.contains("telecoder_workspaces 1"), "{text}");
    assert!(
        text.contains("telecoder_workspaces_collected_total 3"),
        "{text}"
    );

    let _ = api.post(&format!("/api/sessions/{running}/cancel"), &json!({}));
    api.wait_finished(&running, SHORT);
}

#[test]
fn the_size_cap_removes_the_oldest_finished_workspaces_first() {
    let daemon = TestDaemon::start_with(&[
        ("TELECODER_WORKSPACE_MAX_BYTES", "1"),
        ("TELECODER_WORKSPACE_GC_INTERVAL", "1h"),
    ]);
    let api = daemon.api();
    let repo = TestRepo::new();
    let first = finished(&api, &repo.path_str(), "@mock say first");
    let second = finished(&api, &repo.path_str(), "@mock say second");
    let report = post_gc(&api, json!({}));
    let removed: Vec<&Value> = report["removed"].as_array().into_iter().flatten().collect();
    assert_eq!(removed.len(), 2, "{report}");
    assert_eq!(removed[0]["sessionId"], first["id"]);
    assert_eq!(removed[1]["sessionId"], second["id"]);
    assert_eq!(removed[0]["reason"], "over TELECODER_WORKSPACE_MAX_BYTES");
}

#[test]
fn a_kill_mid_collection_leaves_no_half_deleted_workspace_and_the_next_pass_finishes() {
    const FILES: usize = 8000;
    let mut daemon = collecting_daemon(&[]);
    let api = daemon.api();
    let repo = TestRepo::new();
    let mut sessions = Vec::new();
    for n in 0..3 {
        let session = finished(
            &api,
            &repo.path_str(),
            &format!("@mock write work{n}.txt work {n}"),
        );
        // A build tree the session left behind (ignored), so removing takes a while.
        let dir = work_dir(&session);
        std::fs::write(dir.join(".git/info/exclude"), "build/\n").expect("exclude");
        let build = dir.join("build");
        std::fs::create_dir(&build).expect("mkdir");
        for i in 0..FILES {
            std::fs::write(build.join(format!("f{i}")), "x").expect("write");
        }
        sessions.push(session);
    }
    let trash = daemon.data_dir.join("trash");
    let address = daemon.url.trim_start_matches("http://").to_owned();
    let pass = std::thread::spawn(move || {
        // Killed underneath: the answer never comes.
        if let Ok(mut stream) = std::net::TcpStream::connect(&address) {
            use std::io::{Read, Write};
            let request = "POST /admin/gc HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
            let _ = stream.write_all(request.as_bytes());
            let _ = stream.read_to_end(&mut Vec::new());
        }
    });
    // Deleting one workspace takes a moment; look often enough to catch it in the act.
    let deadline = std::time::Instant::now() + SHORT;
    while std::fs::read_dir(&trash).map_or(true, |mut d| d.next().is_none()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the collector never moved a workspace to the trash"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    daemon.kill9();
    let _ = pass.join();

    // Every workspace is whole where it was, or entirely in the trash.
    for session in &sessions {
        let dir = work_dir(session);
        if dir.exists() {
            let count = std::fs::read_dir(dir.join("build"))
                .map(|d| d.count())
                .unwrap_or(0);
            assert_eq!(count, FILES, "{} is half-deleted", dir.display());
            git_in(&dir, &["status", "--porcelain"]);
        }
    }

    let daemon = daemon.restart();
    let api = daemon.api();
    post_gc(&api, json!({}));
    assert_eq!(
        std::fs::read_dir(&trash).map(|d| d.count()).unwrap_or(0),
        0,
        "the trash was emptied"
    );
    for (n, session) in sessions.iter().enumerate() {
        let id = id_of(session);
        assert!(!work_dir(session).exists());
        assert_eq!(api.session(&id)["workspaceState"], "archived");
        let diff = diff_json(&api, &id);
        assert_eq!(diff.status, 200, "{}", diff.body);
        assert_eq!(
            file_entry(&diff.body, &format!("work{n}.txt"))["status"],
            "added"
        );
    }
}

#[test]
fn remote_repositories_clone_through_one_mirror_fetched_first() {
    let daemon = collecting_daemon(&[]);
    let api = daemon.api();
    let seed = TestRepo::new();
    let upstream = tempfile::tempdir().expect("tempdir");
    git_in(upstream.path(), &["init", "-q", "--bare", "-b", "main"]);
    seed.git(&["push", "-q", &upstream.path().to_string_lossy(), "main"]);
    let url = format!("file://{}", upstream.path().display());

    let first = finished(&api, &url, "@mock say one");
    // Upstream moves on; the next session must start from the new commit.
    agent_commits(seed.path(), "next.txt", "next\n", "upstream moves");
    seed.git(&["push", "-q", &upstream.path().to_string_lossy(), "main"]);
    let second = finished(&api, &url, "@mock write local.txt two");

    let mirrors: Vec<PathBuf> = walk_dirs(&daemon.data_dir.join("mirrors"), 3);
    assert_eq!(mirrors.len(), 1, "{mirrors:?}");
    let mirror_objects = std::fs::canonicalize(mirrors[0].join("objects")).expect("objects");
    for session in [&first, &second] {
        let dir = work_dir(session);
        let alternates =
            std::fs::read_to_string(dir.join(".git/objects/info/alternates")).expect("alternates");
        assert_eq!(
            std::fs::canonicalize(alternates.trim()).expect("path"),
            mirror_objects
        );
        assert_eq!(git_in(&dir, &["remote", "get-url", "origin"]), url);
    }
    assert_eq!(
        second["baseCommit"].as_str(),
        Some(seed.git(&["rev-parse", "main"]).as_str())
    );
    assert_eq!(
        git_in(&work_dir(&second), &["show", "HEAD:next.txt"]),
        "next"
    );
    let diff = diff_json(&api, &id_of(&second));
    assert_eq!(diff.status, 200, "{}", diff.body);
    assert_eq!(file_entry(&diff.body, "local.txt")["status"], "added");
    let fetch = api.post(
        &format!("/api/sessions/{}/fetch", id_of(&second)),
        &json!({}),
    );
    assert_eq!(fetch.status, 400, "{}", fetch.body);

    // Once no workspace uses the mirror, the collector removes it too.
    let report = post_gc(&api, json!({}));
    assert!(
        report["removed"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["kind"] == "mirror"),
        "{report}"
    );
    assert!(!mirrors[0].exists());
}

/// Directories `depth` levels below `root`.
fn walk_dirs(root: &Path, depth: usize) -> Vec<PathBuf> {
    let mut level = vec![root.to_owned()];
    for _ in 0..depth {
        level = level
            .iter()
            .flat_map(|dir| {
                std::fs::read_dir(dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
            })
            .collect();
    }
    level
}

/// The agent plants every kind of git configuration that runs a program; diff, fetch and
/// collection must run none of them.
#[test]
fn git_never_runs_what_the_agent_planted() {
    let daemon = collecting_daemon(&[]);
    let api = daemon.api();
    let repo = TestRepo::new();
    let session = finished(&api, &repo.path_str(), "@mock write planted.txt innocent");
    let id = id_of(&session);
    let dir = work_dir(&session);
    let marker = dir.parent().unwrap_or(&dir).join(format!("pwned-{id}"));
    let touch = format!("touch {}", marker.display());
    let config = dir.join(".git/config");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!(
        "[core]\n\tfsmonitor = \"{touch}; false\"\n\tpager = \"{touch}; cat\"\n\thooksPath = .git/evil-hooks\n\
         [filter \"evil\"]\n\tclean = \"{touch}; cat\"\n\tsmudge = \"{touch}; cat\"\n\tprocess = \"{touch}\"\n\trequired = true\n\
         [diff \"evil\"]\n\ttextconv = \"{touch}; cat\"\n\tcommand = \"{touch}\"\n\
         [diff]\n\texternal = \"{touch}\"\n\
         [commit]\n\tgpgSign = true\n[gpg]\n\tprogram = \"{touch}\"\n\
         [credential]\n\thelper = \"!{touch}\"\n"
    ));
    std::fs::write(&config, text).expect("config");
    std::fs::write(dir.join(".gitattributes"), "* filter=evil diff=evil\n").expect("attributes");
    for hooks in [dir.join(".git/hooks"), dir.join(".git/evil-hooks")] {
        std::fs::create_dir_all(&hooks).expect("hooks");
        for hook in [
            "pre-commit",
            "commit-msg",
            "post-commit",
            "reference-transaction",
            "pre-auto-gc",
            "post-checkout",
        ] {
            let path = hooks.join(hook);
            std::fs::write(&path, format!("#!/bin/sh\n{touch}\n")).expect("hook");
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .expect("chmod");
        }
    }
    let diff = diff_json(&api, &id);
    assert_eq!(diff.status, 200, "{}", diff.body);
    let fetched = api.post(&format!("/api/sessions/{id}/fetch"), &json!({}));
    assert_eq!(fetched.status, 200, "{}", fetched.body);
    std::fs::write(dir.join("after-fetch.txt"), "more\n").expect("write");
    let report = post_gc(&api, json!({}));
    assert_eq!(removed_sessions(&report), vec![id.clone()], "{report}");
    assert!(!marker.exists(), "a planted command ran");
    assert_eq!(
        repo.git(&["show", &format!("telecoder/{id}:planted.txt")]),
        "innocent"
    );
}

/// A workspace whose `.git` points our writes at the user's repository (symlinked refs or
/// HEAD) is refused, and the user's repository stays as it was.
#[test]
fn a_workspace_that_redirects_git_into_the_users_repository_is_refused() {
    let daemon = collecting_daemon(&[]);
    let api = daemon.api();
    let repo = TestRepo::new();
    let session = finished(&api, &repo.path_str(), "@mock write x.txt x");
    let id = id_of(&session);
    let dir = work_dir(&session);
    let before = fingerprint(repo.path());
    std::fs::remove_dir_all(dir.join(".git/refs")).expect("rm refs");
    std::os::unix::fs::symlink(repo.path().join(".git/refs"), dir.join(".git/refs"))
        .expect("symlink");
    for reply in [
        diff_json(&api, &id),
        api.post(&format!("/api/sessions/{id}/fetch"), &json!({})),
    ] {
        assert_eq!(reply.status, 409, "{}", reply.body);
        assert!(reply.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("refusing"));
    }
    let report = post_gc(&api, json!({}));
    assert!(removed_sessions(&report).is_empty(), "{report}");
    assert_eq!(report["kept"][0]["sessionId"], id.as_str(), "{report}");
    assert!(dir.exists());
    assert_eq!(fingerprint(repo.path()), before);
}
