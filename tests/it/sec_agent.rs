//! Attacks from the agent's side (issue 11): prompts that look like acpx options, a GitHub token
//! within reach of code the agent planted for publishing, secrets printed in pieces, processes
//! that leave their process group, and a restart that would run more agents than the limit.

use crate::publish::{publish, run_to_end, setup_with, GITHUB_REPO, TOKEN};
use crate::support::*;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn id_of(session: &Value) -> String {
    session["id"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn prompts_that_look_like_acpx_options_reach_the_agent_as_text() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let secret_dir = tempfile::tempdir().expect("tempdir");
    let secret = secret_dir.path().join("shadow");
    std::fs::write(&secret, "root:TOP-SECRET-HASH:19000:0:99999:7:::\n").expect("write");
    let file_option = format!("--file={}", secret.display());

    let mut runs: Vec<(String, String)> = Vec::new();
    for policy in ["locked", "observe", "standard"] {
        let created = api.create(&repo.path_str(), &file_option, json!({"policy": policy}));
        runs.push((id_of(&created), file_option.clone()));
    }
    for prompt in ["--help", "--version", "-V", "-x", "--skill", "--", "-f"] {
        let created = api.create(&repo.path_str(), prompt, json!({"policy": "locked"}));
        runs.push((id_of(&created), prompt.to_owned()));
    }
    for (id, prompt) in runs {
        let session = api.wait_finished(&id, SHORT);
        assert_eq!(session["status"], "complete", "{prompt}: {session}");
        let text = session["resultText"].as_str().unwrap_or_default();
        assert_eq!(
            text,
            format!("Echo: {prompt}"),
            "the agent got {prompt:?} as text"
        );
        assert!(!text.contains("TOP-SECRET"), "acpx read the file");
    }
}

/// The redaction test's token, and a configured secret that has no token shape.
const SPLIT_TOKEN: &str = "ghp_0123456789abcdefghijABCDEFGHIJ012345";
const WEBHOOK_SECRET: &str = "webhook-secret-value-42";

#[test]
fn a_secret_printed_in_pieces_is_redacted_everywhere() {
    let daemon = TestDaemon::start_with(&[("TELECODER_GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET)]);
    let repo = TestRepo::new();
    let api = daemon.api();
    // Each piece is its own agent_message_chunk, a second apart: the daemon sees them apart.
    let (token_head, token_tail) = SPLIT_TOKEN.split_at(14);
    let (secret_head, secret_tail) = WEBHOOK_SECRET.split_at(11);
    let prompt = format!(
        "@mock chunks 1000 key={token_head} {token_tail}. and={secret_head} {secret_tail}! done"
    );
    let id = id_of(&api.create(&repo.path_str(), &prompt, json!({})));
    let session = api.wait_finished(&id, SHORT);
    assert_eq!(session["status"], "complete", "{session}");

    let outputs: Vec<String> = api
        .events(&id)
        .iter()
        .filter(|e| e["type"] == "output")
        .filter_map(|e| e["data"].as_str().map(str::to_owned))
        .collect();
    assert!(
        outputs.len() >= 3,
        "the pieces were streamed apart (the attack's premise): {outputs:?}"
    );
    let expected = "key=[REDACTED].and=[REDACTED]!done";
    assert_eq!(outputs.concat(), expected);
    assert_eq!(session["resultText"], expected);

    let sse = api.block_on(async {
        api.http()
            .get(format!("{}/api/sessions/{id}/events", api.base))
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("sse")
            .text()
            .await
            .expect("sse body")
    });
    assert!(sse.contains("event:done"), "{sse}");
    let stored: String = daemon
        .database()
        .query_row(
            "SELECT group_concat(data, '') FROM events WHERE session_id = ?1",
            [&id],
            |row| row.get(0),
        )
        .expect("events");
    // The prompt is the caller's own input, kept as given; all the agent produced is masked.
    let mut record = session.clone();
    record["prompt"] = Value::Null;
    for (place, text) in [
        ("events", outputs.concat()),
        ("SSE", sse),
        ("database", stored),
        ("record", record.to_string()),
        ("daemon log", daemon.log()),
    ] {
        for leak in [token_tail, secret_tail] {
            assert!(!text.contains(leak), "{leak} in the {place}: {text}");
        }
    }
}

/// The pid the mock agent's `escape` directive reported.
fn escaped_pid(api: &Api, id: &str) -> i32 {
    wait_for("the escaped process", SHORT, || {
        api.events(id)
            .iter()
            .filter_map(|e| e["data"].as_str())
            .find_map(|d| d.strip_prefix("escaped: ")?.trim().parse().ok())
    })
}

#[track_caller]
fn assert_nothing_left(id: &str, pid: i32) {
    wait_for(
        &format!("session {id}'s escaped process to die"),
        Duration::from_secs(10),
        || (!process_alive(pid) && session_processes(id).is_empty()).then_some(()),
    );
}

#[test]
fn processes_that_leave_the_agents_group_die_with_the_session() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();

    let finished = id_of(&api.create(&repo.path_str(), "@mock escape", json!({})));
    let pid = escaped_pid(&api, &finished);
    assert_eq!(api.wait_finished(&finished, SHORT)["status"], "complete");
    assert_nothing_left(&finished, pid);

    let api = daemon.api(); // the old client's connection may have idled out meanwhile
    let cancelled = id_of(&api.create(&repo.path_str(), "@mock escape hang", json!({})));
    let pid = escaped_pid(&api, &cancelled);
    assert!(
        process_alive(pid),
        "the escaped process runs while its session does"
    );
    let reply = api.post(&format!("/api/sessions/{cancelled}/cancel"), &json!({}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(api.wait_finished(&cancelled, SHORT)["status"], "cancelled");
    assert_nothing_left(&cancelled, pid);
}

#[test]
fn after_kill9_leftovers_are_reaped_before_queued_sessions_start() {
    let mut daemon = TestDaemon::start_with(&[("TELECODER_MAX_CONCURRENT_SESSIONS", "1")]);
    let repo = TestRepo::new();
    let api = daemon.api();
    let crashed = id_of(&api.create(&repo.path_str(), "@mock escape hang", json!({})));
    let pid = escaped_pid(&api, &crashed);
    let queued = id_of(&api.create(&repo.path_str(), "@mock say after the crash", json!({})));
    assert_eq!(api.session(&queued)["status"], "pending");

    daemon.kill9();
    assert!(process_alive(pid), "the escaped process survives the crash");
    let daemon = daemon.restart();
    let api = daemon.api();
    // Until the crashed session is swept, its agents may still run: the queued one waits.
    let queued_session = wait_for("the queued session to finish", SHORT, || {
        let session = api.session(&queued);
        if session["status"] == "running" {
            assert!(
                session_processes(&crashed).is_empty(),
                "the queued session runs beside the crashed one's agents"
            );
        }
        let status = session["status"].as_str().unwrap_or_default().to_owned();
        (!matches!(status.as_str(), "pending" | "running")).then_some(session)
    });
    assert_eq!(queued_session["status"], "complete", "{queued_session}");
    let crashed_session = api.session(&crashed);
    assert_eq!(crashed_session["failureKind"], "abandoned");
    let swept_at = crashed_session["finishedAt"].as_str().unwrap_or_default();
    let started_at = queued_session["startedAt"].as_str().unwrap_or_default();
    assert!(
        started_at >= swept_at,
        "the queued session started at {started_at}, before the crashed one was swept at {swept_at}"
    );
    assert_nothing_left(&crashed, pid);
}

/// A planted executable that records that it ran, with its environment and arguments.
fn trap(markers: &Path, name: &str) -> String {
    let script = markers.join(format!("{name}.sh"));
    let body = format!(
        "#!/bin/sh\n{{ echo \"$0 $*\"; env; }} > '{}/ran-{name}'\ncat\n",
        markers.display()
    );
    write_script(&script, &body);
    script.to_string_lossy().into_owned()
}

fn write_script(path: &Path, body: &str) {
    std::fs::write(path, body).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Plants every git trap an agent could leave in its workspace: hooks, executable config, a
/// config include, attributes that name filters and diff drivers, and a redirected origin.
fn plant_traps(work_dir: &Path, markers: &Path, attacker_remote: &Path) {
    let git_dir = work_dir.join(".git");
    let hook_names = [
        "pre-commit",
        "prepare-commit-msg",
        "commit-msg",
        "post-commit",
        "pre-push",
        "reference-transaction",
        "post-index-change",
        "post-checkout",
        "pre-auto-gc",
        "post-rewrite",
        "fsmonitor-watchman",
        "push-to-checkout",
    ];
    let evil_hooks = git_dir.join("evil-hooks");
    std::fs::create_dir_all(&evil_hooks).expect("hooks dir");
    for hook in hook_names {
        let script = trap(markers, &format!("hook-{hook}"));
        for dir in [git_dir.join("hooks"), evil_hooks.clone()] {
            std::fs::copy(&script, dir.join(hook)).expect("hook");
        }
    }
    let included = git_dir.join("evil.config");
    std::fs::write(
        &included,
        format!(
            "[core]\n\teditor = {}\n[gpg]\n\tprogram = {}\n[commit]\n\tgpgSign = true\n",
            trap(markers, "included-editor"),
            trap(markers, "included-gpg")
        ),
    )
    .expect("include");
    let attacker = attacker_remote.to_string_lossy().into_owned();
    let settings: Vec<(&str, String)> = vec![
        ("core.fsmonitor", trap(markers, "fsmonitor")),
        ("core.hooksPath", evil_hooks.to_string_lossy().into_owned()),
        ("core.sshCommand", trap(markers, "ssh-command")),
        ("core.pager", trap(markers, "pager")),
        ("core.askPass", trap(markers, "askpass")),
        ("core.gitProxy", trap(markers, "git-proxy")),
        ("core.alternateRefsCommand", trap(markers, "alternate-refs")),
        ("pager.status", "true".into()),
        (
            "credential.helper",
            format!("!{}", trap(markers, "credential")),
        ),
        ("diff.external", trap(markers, "diff-external")),
        ("diff.evil.textconv", trap(markers, "textconv")),
        ("filter.evil.clean", trap(markers, "filter-clean")),
        ("filter.evil.smudge", trap(markers, "filter-smudge")),
        ("filter.evil.required", "true".into()),
        (
            "uploadpack.packObjectsHook",
            trap(markers, "pack-objects-hook"),
        ),
        (
            "alias.status",
            format!("!{}", trap(markers, "alias-status")),
        ),
        ("alias.push", format!("!{}", trap(markers, "alias-push"))),
        ("include.path", included.to_string_lossy().into_owned()),
        (
            "includeIf.gitdir:/.path",
            included.to_string_lossy().into_owned(),
        ),
        ("remote.origin.url", attacker.clone()),
        ("remote.origin.pushurl", attacker.clone()),
        ("url.ATTACKER.insteadOf", "https://github.com/".into()),
        ("http.proxy", "http://127.0.0.1:9".into()),
        ("protocol.ext.allow", "always".into()),
    ];
    let config = git_dir.join("config").to_string_lossy().into_owned();
    for (key, value) in settings {
        let key = key.replace("ATTACKER", &attacker);
        git_in(markers, &["config", "--file", &config, &key, &value]);
    }
    std::fs::write(work_dir.join(".gitattributes"), "* filter=evil diff=evil\n").expect("attrs");
}

/// A `git` first on the daemon's PATH that logs every invocation (argv, cwd, environment).
fn logging_git(dir: &Path, log: &Path) -> PathBuf {
    let real = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .expect("which git")
            .stdout,
    )
    .expect("utf-8");
    let body = format!(
        "#!/bin/sh\n{{ echo \"argv: $*\"; echo \"cwd: $PWD\"; env | sed 's/^/env: /'; echo ---; }} >> '{}'\nexec '{}' \"$@\"\n",
        log.display(),
        real.trim()
    );
    write_script(&dir.join("git"), &body);
    dir.to_path_buf()
}

#[test]
fn publishing_runs_nothing_the_agent_planted_and_shows_the_token_to_no_process() {
    let bin = tempfile::tempdir().expect("tempdir");
    let git_log = bin.path().join("git.log");
    let path = format!(
        "{}:{}",
        logging_git(bin.path(), &git_log).display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let setup = setup_with(Some(TOKEN), &[("PATH", path.as_str())]);
    let api = setup.daemon.api();
    let id = run_to_end(&api, "@mock write notes.txt planted traps around this");
    let work_dir = PathBuf::from(api.session(&id)["workDir"].as_str().unwrap_or_default());

    let markers = tempfile::tempdir().expect("tempdir");
    let attacker = tempfile::tempdir().expect("tempdir");
    git_in(attacker.path(), &["init", "-q", "--bare"]);
    plant_traps(&work_dir, markers.path(), attacker.path());
    let before = std::fs::read_to_string(&git_log).unwrap_or_default().len();

    let reply = publish(&api, &id, json!({"base": "main"}));
    assert_eq!(reply.status, 201, "{}", reply.body);

    let ran: Vec<String> = std::fs::read_dir(markers.path())
        .expect("markers")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("ran-"))
        .collect();
    assert!(ran.is_empty(), "planted code ran during publish: {ran:?}");

    // The push went to the session's GitHub repository, with the agent's work.
    let branch = format!("telecoder/{id}");
    let remote = setup.remote.path();
    assert_eq!(
        git_in(remote, &["show", &format!("{branch}:notes.txt")]),
        "planted traps around this"
    );
    assert_eq!(
        git_in(attacker.path(), &["for-each-ref"]),
        "",
        "pushed to the planted origin"
    );
    assert_eq!(setup.github.lock().expect("lock").pulls.len(), 1);

    // No git process got the token (raw or as the basic-auth header) in its argv or
    // environment, and none ran in the workspace.
    let log = std::fs::read_to_string(&git_log).expect("git log");
    let during = &log[before..];
    assert!(
        during.contains("argv: "),
        "publishing ran git through the wrapper"
    );
    let header = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("printf %s 'x-access-token:{TOKEN}' | base64 -w0"),
        ])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .expect("base64");
    assert!(header.len() > 40, "{header}");
    assert!(
        !during.contains(TOKEN),
        "the token reached a git process: {during}"
    );
    assert!(
        !during.contains(&header),
        "the auth header reached a git process"
    );
    let in_workspace = format!("cwd: {}\n", work_dir.display());
    assert!(
        !during.contains(&in_workspace),
        "publishing ran git in the workspace"
    );
    let scratch = setup.daemon.data_dir.join("tmp");
    let left = std::fs::read_dir(&scratch).map(|d| d.count()).unwrap_or(0);
    assert_eq!(
        left, 0,
        "publishing's private repository (and its token file) is removed"
    );
}

#[test]
fn publishing_stays_correct_with_a_clean_workspace_and_agent_commits() {
    let setup = setup_with(Some(TOKEN), &[]);
    let api = setup.daemon.api();
    // The agent committed its own work and left nothing else: its commit is what is pushed.
    let id = id_of(&api.create(
        GITHUB_REPO,
        "@mock shell echo one > one.txt && git add one.txt && git -c user.name=Agent -c user.email=a@example.com commit -qm 'agent commit' && echo two > two.txt",
        json!({"policy": "standard"}),
    ));
    let session = api.wait_finished(&id, SHORT);
    assert_eq!(session["status"], "complete", "{session}");
    let reply = publish(&api, &id, json!({"base": "main"}));
    assert_eq!(reply.status, 201, "{}", reply.body);
    let branch = format!("telecoder/{id}");
    let remote = setup.remote.path();
    let log = git_in(remote, &["log", "--format=%an %s", &branch]);
    let authors: Vec<&str> = log.lines().collect();
    assert_eq!(authors.len(), 3, "{log}");
    assert!(authors[0].starts_with("TeleCoder "), "{log}");
    assert_eq!(authors[1], "Agent agent commit");
    assert_eq!(
        git_in(remote, &["show", &format!("{branch}:two.txt")]),
        "two"
    );
    // The workspace itself is left as the agent left it.
    let work_dir = PathBuf::from(session["workDir"].as_str().unwrap_or_default());
    assert_eq!(git_in(&work_dir, &["status", "--porcelain"]), "?? two.txt");
}
