//! Issue 15: conversations (a finished session continued in its workspace, the agent given the
//! conversation so far) and approvals (policy `ask`: the agent asks, a person answers; fail
//! closed on timeout and across a crash). Real daemon, the mock ACP agent, real git.

use crate::support::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn id_of(session: &Value) -> String {
    session["id"].as_str().unwrap_or_default().to_owned()
}

fn continue_reply(api: &Api, id: &str, body: Value) -> Reply {
    api.post(&format!("/api/sessions/{id}/continue"), &body)
}

#[track_caller]
fn continued(api: &Api, id: &str, prompt: &str) -> Value {
    let reply = continue_reply(api, id, json!({ "prompt": prompt }));
    assert_eq!(reply.status, 201, "continue {id}: {}", reply.body);
    reply.body
}

fn result_text(session: &Value) -> String {
    session["resultText"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn statuses(api: &Api, id: &str) -> Vec<String> {
    api.events(id)
        .iter()
        .filter(|e| e["type"] == "status")
        .map(|e| e["data"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A daemon whose mock agents keep their sessions on disk, so a later agent process can load
/// them; `nl` is the same mock without `loadSession`.
fn conversation_daemon(state: &tempfile::TempDir) -> TestDaemon {
    let no_load = format!("{} --no-load-session", mock_agent_command());
    let state_dir = state.path().to_string_lossy().into_owned();
    TestDaemon::start_with(&[
        ("MOCK_AGENT_STATE_DIR", state_dir.as_str()),
        ("TELECODER_AGENT_NL_COMMAND", no_load.as_str()),
    ])
}

/// A finished first turn under `standard` (so that it may write), run by `agent`.
#[track_caller]
fn first_turn(api: &Api, repo: &TestRepo, prompt: &str, agent: &str) -> Value {
    let body = json!({"policy": "standard", "agent": agent});
    let created = api.create(&repo.path_str(), prompt, body);
    let done = api.wait_finished(&id_of(&created), SHORT);
    assert_eq!(done["status"], "complete", "{done}");
    done
}

#[test]
fn a_conversation_continues_in_the_same_workspace_and_agent_session() {
    let state = tempfile::tempdir().expect("tempdir");
    let daemon = conversation_daemon(&state);
    let repo = TestRepo::new();
    let api = daemon.api();
    let first = first_turn(&api, &repo, "@mock write notes.txt first turn", "mock");
    let first_id = id_of(&first);

    let second = continued(&api, &first_id, "@mock fs-read notes.txt");
    let second_id = id_of(&second);
    assert_eq!(second["parentSessionId"], first_id.as_str());
    assert_eq!(second["continuedFrom"], first_id.as_str());
    assert_eq!(second["workDir"], first["workDir"], "no new clone");
    assert_eq!(second["branch"], first["branch"]);
    assert_eq!(
        second["policyMode"], "standard",
        "the parent's policy by default"
    );
    assert_eq!(second["attempt"], 2);
    let second = api.wait_finished(&second_id, SHORT);
    assert_eq!(second["status"], "complete", "{second}");
    assert_eq!(
        result_text(&second),
        "fs-read notes.txt: first turn",
        "the second turn sees the first turn's file"
    );
    let workspaces: Vec<_> = std::fs::read_dir(daemon.data_dir.join("workspaces"))
        .expect("workspaces")
        .flatten()
        .collect();
    assert_eq!(
        workspaces.len(),
        1,
        "one workspace for the whole conversation"
    );

    let third_id = id_of(&continued(&api, &second_id, "@mock recall"));
    let third = api.wait_finished(&third_id, SHORT);
    assert_eq!(third["status"], "complete", "{third}");
    if acpx_runtime() {
        // acpx cannot load an agent session: every turn is a new one, told the earlier turns.
        assert!(result_text(&third).starts_with("turns before: 0; last prompt: "));
        assert!(statuses(&api, &third_id)
            .iter()
            .any(|s| s.contains("this runtime cannot load agent sessions")));
    } else {
        // The same ACP session, loaded twice: the agent remembers both earlier turns.
        assert_eq!(
            result_text(&third),
            "turns before: 2; last prompt: @mock fs-read notes.txt"
        );
        assert_eq!(third["agentSessionId"], first["agentSessionId"]);
        assert!(statuses(&api, &third_id)
            .iter()
            .any(|s| s.starts_with("loaded the agent's session mock-")));
        assert!(
            !result_text(&third).contains("first turn"),
            "the replayed history is not this turn's output"
        );
    }

    let lineage = api.get(&format!("/api/sessions/{third_id}/lineage")).body;
    let turns = ids(lineage.as_array().map(Vec::as_slice).unwrap_or_default());
    assert_eq!(
        turns,
        [first_id.clone(), second_id.clone(), third_id.clone()]
    );
    let inbox = api.get("/api/inbox").body;
    let shown = ids(inbox.as_array().map(Vec::as_slice).unwrap_or_default());
    assert_eq!(
        shown,
        [third_id.as_str()],
        "the inbox shows the latest turn"
    );
    // Each turn keeps its own outcome.
    assert_eq!(api.session(&first_id)["resultText"], "wrote notes.txt");

    let out = telecoder(
        &[("TELECODER_URL", daemon.url.as_str())],
        &["lineage", &third_id, "--human"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let at = |id: &str| text.find(id).unwrap_or(usize::MAX);
    assert!(
        at(&first_id) < at(&second_id) && at(&second_id) < at(&third_id),
        "{text}"
    );
}

#[test]
fn without_load_session_the_earlier_turns_travel_in_the_prompt() {
    let state = tempfile::tempdir().expect("tempdir");
    let daemon = conversation_daemon(&state);
    let repo = TestRepo::new();
    let api = daemon.api();
    let first_id = id_of(&first_turn(
        &api,
        &repo,
        "@mock write notes.txt hello",
        "nl",
    ));
    assert_eq!(api.session(&first_id)["agentLoadSession"], false);

    let second_id = id_of(&continued(&api, &first_id, "@mock echo and the docs?"));
    let second = api.wait_finished(&second_id, SHORT);
    assert_eq!(second["status"], "complete", "{second}");
    let text = result_text(&second);
    assert!(
        text.starts_with("Echo: @mock echo and the docs?\n"),
        "{text}"
    );
    for needle in [
        "Turn 1 of 1 (complete)",
        "@mock write notes.txt hello",
        "wrote notes.txt",
    ] {
        assert!(text.contains(needle), "the prompt lacks {needle:?}: {text}");
    }
    assert_eq!(
        second["prompt"], "@mock echo and the docs?",
        "the record keeps the request"
    );
    let why = if acpx_runtime() {
        "this runtime cannot load agent sessions"
    } else {
        "the agent did not offer loadSession"
    };
    assert!(
        statuses(&api, &second_id).iter().any(|s| s.contains(why)),
        "{:?}",
        statuses(&api, &second_id)
    );
}

#[test]
fn continue_never_puts_two_agents_in_one_workspace() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let missing = continue_reply(&api, "0badcafe", json!({"prompt": "x"}));
    assert_eq!(missing.status, 404, "{}", missing.body);

    let running = id_of(&api.create(&repo.path_str(), "@mock hang", json!({})));
    api.wait_status(&running, "running", SHORT);
    let busy = continue_reply(&api, &running, json!({"prompt": "more"}));
    assert_eq!(busy.status, 409, "{}", busy.body);
    assert!(busy.body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("still running"));
    assert_eq!(
        api.post(&format!("/api/sessions/{running}/cancel"), &json!({}))
            .status,
        200
    );

    let done = id_of(&api.create(&repo.path_str(), "@mock say ok", json!({})));
    api.wait_finished(&done, SHORT);
    for (body, fragment) in [
        (json!({}), "prompt is required"),
        (json!({"prompt": "  "}), "prompt is required"),
        (json!({"prompt": "x", "policy": "yolo"}), "yolo"),
        (json!({"prompt": "x", "agent": "evil"}), "unknown agent"),
    ] {
        let reply = continue_reply(&api, &done, body.clone());
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        let message = reply.body["error"].as_str().unwrap_or_default();
        assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
    }
    let text_body = api.send(
        api.http()
            .post(format!("{}/api/sessions/{done}/continue", api.base))
            .header("content-type", "application/json")
            .body("[\"prompt\"]"),
    );
    assert_eq!(text_body.status, 400);

    // Eight continues at once: exactly one wins, in the store's transaction.
    let replies: Vec<u16> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..8)
            .map(|i| {
                let api = Api::new(&api.base);
                let done = done.clone();
                scope.spawn(move || {
                    continue_reply(
                        &api,
                        &done,
                        json!({"prompt": format!("@mock say racer {i}")}),
                    )
                    .status
                })
            })
            .collect();
        racers
            .into_iter()
            .map(|r| r.join().expect("racer"))
            .collect()
    });
    assert_eq!(
        replies.iter().filter(|s| **s == 201).count(),
        1,
        "{replies:?}"
    );
    assert_eq!(
        replies.iter().filter(|s| **s == 409).count(),
        7,
        "{replies:?}"
    );
    let next = api.list(&format!("?parent={done}"));
    assert_eq!(next.len(), 1, "one continuation stored");
    let next_id = id_of(&next[0]);
    let again = continue_reply(&api, &done, json!({"prompt": "again"}));
    assert_eq!(
        again.status, 409,
        "a continued session is not continued twice"
    );
    assert!(again.body["error"]
        .as_str()
        .unwrap_or_default()
        .contains(&format!("continued by session {next_id}")));

    let last = api.wait_finished(&next_id, SHORT);
    let work_dir = last["workDir"].as_str().unwrap_or_default().to_owned();
    std::fs::remove_dir_all(&work_dir).expect("collect the workspace");
    let gone = continue_reply(&api, &next_id, json!({"prompt": "more"}));
    assert_eq!(gone.status, 410, "{}", gone.body);
    assert!(gone.body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("collected"));
}

/// The ids of the sessions whose workspaces a collector report removed.
fn collected_ids(report: &Value) -> Vec<String> {
    report["removed"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["kind"] == "workspace")
        .map(|r| r["sessionId"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[track_caller]
fn collect_now(api: &Api) -> Value {
    let reply = api.post("/admin/gc", &json!({}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

#[test]
fn the_collector_waits_for_a_conversation_and_a_collected_one_cannot_go_on() {
    // Every finished workspace is due at once; one session at a time keeps a turn pending.
    let daemon = TestDaemon::start_with(&[
        ("TELECODER_WORKSPACE_RETENTION", "0"),
        ("TELECODER_WORKSPACE_GC_INTERVAL", "1h"),
        ("TELECODER_MAX_CONCURRENT_SESSIONS", "1"),
    ]);
    let repo = TestRepo::new();
    let api = daemon.api();
    let first = first_turn(&api, &repo, "@mock write notes.txt one", "mock");
    let first_id = id_of(&first);
    let dir = std::path::PathBuf::from(first["workDir"].as_str().unwrap_or_default());
    let blocker = id_of(&api.create(&repo.path_str(), "@mock hang", json!({})));
    api.wait_status(&blocker, "running", SHORT);
    let second_id = id_of(&continued(&api, &first_id, "@mock write more.txt two"));
    assert_eq!(api.session(&second_id)["status"], "pending");

    // The first turn is finished, but its workspace is the pending turn's: it stays.
    let report = collect_now(&api);
    assert!(
        !collected_ids(&report).contains(&first_id),
        "a workspace with a pending turn was collected: {report}"
    );
    assert!(dir.join("notes.txt").is_file());
    // Nothing else writes there meanwhile (fetch commits what is pending).
    let fetch = api.post(&format!("/api/sessions/{first_id}/fetch"), &json!({}));
    assert_eq!(fetch.status, 409, "{}", fetch.body);
    assert!(fetch.body["error"]
        .as_str()
        .unwrap_or_default()
        .contains(&second_id));

    assert_eq!(
        api.post(&format!("/api/sessions/{blocker}/cancel"), &json!({}))
            .status,
        200
    );
    let second = api.wait_finished(&second_id, SHORT);
    assert_eq!(second["status"], "complete", "{second}");
    assert_eq!(second["workspaceState"], "present");
    assert_eq!(second["baseCommit"], first["baseCommit"]);

    // Now the whole conversation is over: one workspace goes, its unsaved work bundled once.
    let report = collect_now(&api);
    let removed = collected_ids(&report);
    assert!(removed.contains(&first_id), "{report}");
    assert!(!removed.contains(&second_id), "{report}");
    assert!(!dir.exists());
    for id in [&first_id, &second_id] {
        assert_eq!(api.session(id)["workspaceState"], "archived", "{id}");
    }
    let diff = api.send(
        api.http()
            .get(format!("{}/api/sessions/{second_id}/diff", api.base))
            .header("accept", "application/json"),
    );
    assert_eq!(diff.status, 200, "{}", diff.body);
    let files: Vec<&str> = diff.body["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert!(
        files.contains(&"notes.txt") && files.contains(&"more.txt"),
        "{files:?}"
    );

    let gone = continue_reply(&api, &second_id, json!({"prompt": "@mock say more"}));
    assert_eq!(gone.status, 410, "{}", gone.body);
    assert!(gone.body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("collected"));
    let fetched = api.post(&format!("/api/sessions/{second_id}/fetch"), &json!({}));
    assert_eq!(fetched.status, 200, "{}", fetched.body);
    assert_eq!(fetched.body["fromArchive"], true);
    let branch = first["branch"].as_str().unwrap_or_default();
    assert_eq!(repo.git(&["show", &format!("{branch}:more.txt")]), "two");
}

#[test]
fn retention_counts_from_the_last_turn_of_a_conversation() {
    let daemon = TestDaemon::start_with(&[
        ("TELECODER_WORKSPACE_RETENTION", "1h"),
        ("TELECODER_WORKSPACE_GC_INTERVAL", "1h"),
    ]);
    let repo = TestRepo::new();
    let api = daemon.api();
    let first = first_turn(&api, &repo, "@mock write notes.txt one", "mock");
    let first_id = id_of(&first);
    let second_id = id_of(&continued(&api, &first_id, "@mock say two"));
    api.wait_finished(&second_id, SHORT);
    let age = |id: &str| {
        let old = "2020-01-01T00:00:00.000Z";
        daemon
            .database()
            .execute(
                "UPDATE sessions SET finished_at = ?2, updated_at = ?2 WHERE id = ?1",
                rusqlite::params![id, old],
            )
            .expect("age the session");
    };
    // The turn that made the workspace ended long ago; the conversation's last turn just now.
    age(&first_id);
    let report = collect_now(&api);
    assert!(!collected_ids(&report).contains(&first_id), "{report}");
    assert_eq!(api.session(&first_id)["workspaceState"], "present");
    age(&second_id);
    let report = collect_now(&api);
    assert_eq!(collected_ids(&report), vec![first_id.clone()], "{report}");
}

/// The pending approval of `session`, once it exists.
fn pending_approval(api: &Api, session: &str) -> Value {
    wait_for("a pending approval", SHORT, || {
        let reply = api.get(&format!("/api/approvals?status=pending&session={session}"));
        reply.body.as_array().and_then(|all| all.first().cloned())
    })
}

/// Starts a session under `ask` and waits for its approval: (session id, approval record).
fn asking(api: &Api, repo: &TestRepo, prompt: &str) -> (String, Value) {
    let id = id_of(&api.create(&repo.path_str(), prompt, json!({"policy": "ask"})));
    let approval = pending_approval(api, &id);
    (id, approval)
}

fn answer(api: &Api, approval: &str, decision: &str) -> Reply {
    api.post(
        &format!("/api/approvals/{approval}"),
        &json!({ "decision": decision }),
    )
}

fn workspace_file(session: &Value, name: &str) -> std::path::PathBuf {
    std::path::Path::new(session["workDir"].as_str().unwrap_or_default()).join(name)
}

/// Under acpx, `ask` is refused up front, naming the runtime that can do it.
fn refused_under_acpx(api: &Api, repo: &TestRepo) -> bool {
    if !acpx_runtime() {
        return false;
    }
    let reply = api.post(
        "/api/sessions",
        &json!({"repo": repo.path_str(), "prompt": "x", "policy": "ask"}),
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("TELECODER_RUNTIME=native"));
    true
}

#[test]
fn an_allowed_write_happens_and_a_denied_one_does_not() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    if refused_under_acpx(&api, &repo) {
        return;
    }
    let ask = json!({"policy": "ask"});
    let secret = format!("ghp_{}", "A1b2C3d4".repeat(5));
    let allowed_id = id_of(&api.create(&repo.path_str(), "@mock write yes.txt hello", ask.clone()));
    let denied_id = id_of(&api.create(
        &repo.path_str(),
        &format!("@mock write no.txt {secret}"),
        ask,
    ));

    let approval = pending_approval(&api, &allowed_id);
    let approval_id = approval["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(approval["sessionId"], allowed_id.as_str());
    assert_eq!(approval["status"], "pending");
    assert_eq!(approval["toolCall"]["title"], "Write yes.txt");
    assert_eq!(approval["toolCall"]["kind"], "edit");
    assert!(approval["toolCall"]["locations"][0]["path"]
        .as_str()
        .is_some_and(|p| p.ends_with("/yes.txt")));
    assert!(approval["toolCall"]["rawInput"]
        .as_str()
        .is_some_and(|raw| raw.contains("hello")));
    let kinds: Vec<&str> = approval["options"]
        .as_array()
        .map(|all| all.iter().filter_map(|o| o["kind"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(kinds, ["allow_once", "reject_once"]);
    assert_eq!(
        (
            approval["decidedAt"].as_str(),
            approval["decidedBy"].as_str()
        ),
        (Some(""), Some(""))
    );
    assert!(approval["createdAt"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));

    let waiting = api.session(&allowed_id);
    assert_eq!(waiting["status"], "running");
    assert_eq!(waiting["awaitingApproval"], true);
    let event = api
        .events(&allowed_id)
        .into_iter()
        .find(|e| e["type"] == "approval")
        .expect("an approval event");
    let recorded: Value = serde_json::from_str(event["data"].as_str().unwrap_or_default())
        .expect("the event carries the record");
    assert_eq!(recorded["id"], approval_id.as_str());
    assert!(
        !workspace_file(&waiting, "yes.txt").exists(),
        "nothing before the answer"
    );

    // Answered from the CLI (JSON into a pipe); the second answer is a conflict.
    let url = daemon.url.clone();
    let out = telecoder(
        &[("TELECODER_URL", url.as_str())],
        &["approve", &approval_id],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record: Value = serde_json::from_slice(&out.stdout).expect("JSON when piped");
    assert_eq!(record["status"], "allowed");
    assert_eq!(record["decidedBy"], "cli (no token)");
    assert_eq!(record["selectedOption"], "allow-once");
    let again = answer(&api, &approval_id, "deny");
    assert_eq!(again.status, 409, "{}", again.body);
    let finished = api.wait_finished(&allowed_id, SHORT);
    assert_eq!(finished["status"], "complete", "{finished}");
    assert_eq!(finished["awaitingApproval"], false);
    assert_eq!(
        std::fs::read_to_string(workspace_file(&finished, "yes.txt"))
            .ok()
            .as_deref(),
        Some("hello")
    );

    let denial = pending_approval(&api, &denied_id);
    let raw = denial["toolCall"]["rawInput"].as_str().unwrap_or_default();
    assert!(
        !raw.contains(&secret),
        "the agent's input is redacted: {raw}"
    );
    let reply = answer(&api, denial["id"].as_str().unwrap_or_default(), "deny");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["status"], "denied");
    assert_eq!(reply.body["decidedBy"], "api (no token)");
    let refused = api.wait_finished(&denied_id, SHORT);
    assert_eq!(refused["status"], "error");
    assert_eq!(refused["failureKind"], "policy_denied");
    assert!(
        !workspace_file(&refused, "no.txt").exists(),
        "a denied write never happens"
    );

    for (body, status) in [
        (json!({"decision": "maybe"}), 400),
        (json!({}), 400),
        (json!({"decision": "allow"}), 409),
    ] {
        let reply = api.post(
            &format!(
                "/api/approvals/{}",
                denial["id"].as_str().unwrap_or_default()
            ),
            &body,
        );
        assert_eq!(reply.status, status, "{body}: {}", reply.body);
    }
    assert_eq!(answer(&api, "0badcafe", "allow").status, 404);
    assert_eq!(api.get("/api/approvals?status=approved").status, 400);
    let all = api.get("/api/approvals").body;
    assert_eq!(all.as_array().map(Vec::len), Some(2));

    // A person reads the list on a terminal, and without a daemon too.
    let table = telecoder(
        &[("TELECODER_URL", url.as_str())],
        &["approvals", "--human"],
    );
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(&approval_id) && text.contains("allowed") && text.contains("denied"),
        "{text}"
    );
    let mut daemon = daemon;
    daemon.terminate();
    let data_dir = daemon.data_dir.to_string_lossy().into_owned();
    let offline = telecoder(
        &[
            ("TELECODER_URL", url.as_str()),
            ("TELECODER_DATA_DIR", data_dir.as_str()),
        ],
        &["approvals", "--status", "denied"],
    );
    assert!(
        offline.status.success(),
        "{}",
        String::from_utf8_lossy(&offline.stderr)
    );
    let listed: Value = serde_json::from_slice(&offline.stdout).expect("JSON");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["status"], "denied");
}

#[test]
fn a_cancelled_session_leaves_no_approval_pending() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    if refused_under_acpx(&api, &repo) {
        return;
    }
    let (id, approval) = asking(&api, &repo, "@mock write gone.txt x");
    let approval_id = approval["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        api.post(&format!("/api/sessions/{id}/cancel"), &json!({}))
            .status,
        200
    );
    let session = api.wait_finished(&id, SHORT);
    assert_eq!(session["status"], "cancelled", "{session}");
    let record = api.get(&format!("/api/approvals/{approval_id}")).body;
    assert_eq!(record["status"], "expired", "{record}");
    assert!(record["decidedBy"]
        .as_str()
        .is_some_and(|by| by.starts_with("session ended")));
    assert_eq!(answer(&api, &approval_id, "allow").status, 409);
    assert!(!workspace_file(&session, "gone.txt").exists());
    let events = api.events(&id);
    assert!(
        events.last().is_some_and(|e| e["type"] == "error"),
        "the terminal event is last"
    );
}

#[test]
fn an_unanswered_approval_expires_denied_and_does_not_spend_the_runtime_budget() {
    // A 3 s runtime budget and approvals that wait 8 s: the agent waits past its budget
    // without timing out, and nobody answers the second one.
    let daemon = TestDaemon::start_with(&[
        ("TELECODER_PROMPT_TIMEOUT_SECONDS", "3"),
        ("TELECODER_APPROVAL_TIMEOUT", "8s"),
    ]);
    let repo = TestRepo::new();
    let api = daemon.api();
    if refused_under_acpx(&api, &repo) {
        return;
    }
    let (patient, approval) = asking(&api, &repo, "@mock write late.txt ok");
    let asked = Instant::now();
    // Past the budget (3 s from the prompt, which came before the question): still waiting.
    std::thread::sleep(Duration::from_secs(4).saturating_sub(asked.elapsed()));
    let session = api.session(&patient);
    assert_eq!(session["status"], "running", "{session}");
    assert_eq!(session["awaitingApproval"], true);
    let reply = answer(&api, approval["id"].as_str().unwrap_or_default(), "allow");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let done = api.wait_finished(&patient, SHORT);
    assert_eq!(done["status"], "complete", "{done}");
    assert!(workspace_file(&done, "late.txt").exists());

    let (ignored, approval) = asking(&api, &repo, "@mock write never.txt x");
    let approval_id = approval["id"].as_str().unwrap_or_default().to_owned();
    let expires = approval["expiresAt"].as_str().unwrap_or_default();
    assert!(expires > approval["createdAt"].as_str().unwrap_or_default());
    let ended = api.wait_finished(&ignored, SHORT);
    assert_eq!(ended["status"], "error", "{ended}");
    assert_eq!(ended["failureKind"], "policy_denied");
    assert!(!workspace_file(&ended, "never.txt").exists());
    let record = api.get(&format!("/api/approvals/{approval_id}")).body;
    assert_eq!(record["status"], "expired");
    assert_eq!(record["decidedBy"], "timeout");
    assert_eq!(
        answer(&api, &approval_id, "allow").status,
        409,
        "too late is never allowed"
    );
}

#[test]
fn a_pending_approval_never_survives_a_crash() {
    let mut daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    if refused_under_acpx(&api, &repo) {
        return;
    }
    let (id, approval) = asking(&api, &repo, "@mock write crash.txt x");
    let approval_id = approval["id"].as_str().unwrap_or_default().to_owned();
    let work_dir = api.session(&id)["workDir"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    daemon.kill9();
    let daemon = daemon.restart();
    let api = daemon.api();
    let record = api.get(&format!("/api/approvals/{approval_id}")).body;
    assert_eq!(record["status"], "expired", "{record}");
    assert_eq!(record["decidedBy"], "daemon restart");
    assert_eq!(answer(&api, &approval_id, "allow").status, 409);
    let session = api.wait_finished(&id, SHORT);
    assert_eq!(session["status"], "error");
    assert_eq!(session["failureKind"], "abandoned");
    assert_eq!(session["awaitingApproval"], false);
    wait_for("the crashed session's agent to be gone", SHORT, || {
        session_processes(&id).is_empty().then_some(())
    });
    assert!(!std::path::Path::new(&work_dir).join("crash.txt").exists());
}

#[test]
fn a_watch_asks_before_it_writes() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let r = repo.path_str();
    let watch = api.post(
        "/api/watches",
        &json!({"repo": r, "instructions": "@mock write fix.txt fixed", "policy": "ask"}),
    );
    if acpx_runtime() {
        assert_eq!(watch.status, 400, "{}", watch.body);
        return;
    }
    assert_eq!(watch.status, 201, "{}", watch.body);
    let fired = api.post(
        "/api/watch-events/ci",
        &json!({"repo": r, "workflow": "build", "branch": "main", "runId": 7}),
    );
    assert_eq!(fired.status, 201, "{}", fired.body);
    let session = fired.body[0]["sessionId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(api.session(&session)["policyMode"], "ask");
    let approval = pending_approval(&api, &session);
    assert_eq!(
        answer(&api, approval["id"].as_str().unwrap_or_default(), "allow").status,
        200
    );
    let done = api.wait_finished(&session, SHORT);
    assert_eq!(done["status"], "complete", "{done}");
    assert!(workspace_file(&done, "fix.txt").exists());
}

#[test]
fn continue_from_the_cli_follows_the_new_turn() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let first = id_of(&api.create(&repo.path_str(), "@mock say one", json!({})));
    api.wait_finished(&first, SHORT);
    let url = daemon.url.clone();
    let out = telecoder(
        &[("TELECODER_URL", url.as_str())],
        &["continue", &first, "@mock", "say", "two", "-f"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record: Value = serde_json::from_slice(&out.stdout).expect("the new record as JSON");
    assert_eq!(record["continuedFrom"], first.as_str());
    let second = api.session(record["id"].as_str().unwrap_or_default());
    assert_eq!(second["status"], "complete");
    assert_eq!(second["resultText"], "two");
    let busy = telecoder(
        &[("TELECODER_URL", url.as_str())],
        &["continue", &first, "three"],
    );
    assert!(!busy.status.success());
    assert!(String::from_utf8_lossy(&busy.stderr).contains("409"));
}

/// Figures (not targets): how long an approval takes to travel. Printed with `--nocapture`.
#[test]
fn approval_round_trip_latency() {
    let timing = tempfile::tempdir().expect("tempdir");
    let log = timing.path().join("timing.jsonl");
    let log_text = log.to_string_lossy().into_owned();
    let daemon = TestDaemon::start_with(&[("MOCK_AGENT_TIMING", log_text.as_str())]);
    let repo = TestRepo::new();
    let api = daemon.api();
    if refused_under_acpx(&api, &repo) {
        return;
    }
    let epoch = |text: &str| humantime_epoch(text).unwrap_or_else(|| panic!("timestamp {text}"));
    let wall = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default()
    };
    let (mut answered, mut resumed) = (Vec::new(), Vec::new());
    for round in 0..8 {
        let (id, approval) = asking(&api, &repo, &format!("@mock write r{round}.txt x"));
        let (sent, sent_at) = (Instant::now(), wall());
        let reply = answer(&api, approval["id"].as_str().unwrap_or_default(), "allow");
        answered.push(sent.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(reply.status, 200);
        assert_eq!(api.wait_finished(&id, SHORT)["status"], "complete");
        let lines = std::fs::read_to_string(&log).unwrap_or_default();
        let events: Vec<Value> = lines
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let request = events
            .iter()
            .rev()
            .find(|e| e["event"] == "request" && e["method"] == "session/request_permission")
            .expect("the agent's request");
        let response = events
            .iter()
            .rev()
            .find(|e| e["event"] == "response" && e["id"] == request["id"])
            .expect("the client's answer");
        let asked = request["ts"].as_f64().unwrap_or_default();
        let heard = response["ts"].as_f64().unwrap_or_default();
        let created = epoch(approval["createdAt"].as_str().unwrap_or_default());
        let decided = epoch(reply.body["decidedAt"].as_str().unwrap_or_default());
        // Asked, stored, decided, heard: in that order (server stamps have 1 ms resolution).
        assert!(asked <= created + 0.001 && created <= decided && decided <= heard + 0.001);
        assert!(
            sent_at <= heard + 0.001,
            "the agent heard nothing before the answer"
        );
        resumed.push((heard - sent_at) * 1000.0);
    }
    let summary = |name: &str, values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        println!(
            "approval {name}: p50 {:.1} ms, max {:.1} ms (n={})",
            values[values.len() / 2],
            values[values.len() - 1],
            values.len()
        );
    };
    summary("POST answer round trip", &mut answered);
    summary("answer sent -> agent resumes", &mut resumed);
}

/// Seconds since the epoch of an RFC 3339 UTC timestamp with milliseconds.
fn humantime_epoch(text: &str) -> Option<f64> {
    let at: jiff::Timestamp = text.parse().ok()?;
    Some(at.as_millisecond() as f64 / 1000.0)
}
