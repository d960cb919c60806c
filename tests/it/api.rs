//! The HTTP contract: status codes, JSON errors, filters, inbox bounds, rerun and lineage.

use crate::support::*;
use serde_json::{json, Value};

#[track_caller]
fn assert_error(reply: &Reply, status: u16, fragment: &str) {
    assert_eq!(reply.status, status, "body: {}", reply.body);
    assert!(
        reply.content_type.starts_with("application/json"),
        "{}",
        reply.content_type
    );
    let message = reply.body["error"].as_str().unwrap_or_default();
    assert!(
        message.to_lowercase().contains(&fragment.to_lowercase()),
        "error {message:?} should mention {fragment:?}"
    );
}

#[test]
fn health() {
    let daemon = TestDaemon::start();
    let reply = daemon.api().get("/health");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, json!({"status": "ok"}));
}

#[test]
fn bad_session_requests_get_clear_errors_and_write_nothing() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let plain_dir = tempfile::tempdir().expect("tempdir");
    let api = daemon.api();
    let r = repo.path_str();
    let cases: Vec<(String, u16, &str)> = vec![
        (json!({"prompt": "x"}).to_string(), 400, "repo is required"),
        (
            json!({"repo": "", "prompt": "x"}).to_string(),
            400,
            "repo is required",
        ),
        (json!({"repo": r}).to_string(), 400, "prompt is required"),
        (
            json!({"repo": r, "prompt": "  "}).to_string(),
            400,
            "prompt is required",
        ),
        (
            json!({"repo": 5, "prompt": "x"}).to_string(),
            400,
            "invalid type",
        ),
        (
            json!({"repo": r, "prompt": ["x"]}).to_string(),
            400,
            "invalid type",
        ),
        (
            json!({"repo": r, "prompt": "x", "policy": "yolo"}).to_string(),
            400,
            "unknown policy",
        ),
        (
            json!({"repo": r, "prompt": "x", "agent": "--evil"}).to_string(),
            400,
            "invalid agent",
        ),
        (
            json!({"repo": "/definitely/not/here", "prompt": "x"}).to_string(),
            400,
            "does not exist",
        ),
        (
            json!({"repo": plain_dir.path().to_string_lossy(), "prompt": "x"}).to_string(),
            400,
            "not a git repository",
        ),
        ("not json".into(), 400, "not valid JSON"),
        ("".into(), 400, "JSON object"),
        ("null".into(), 400, "JSON object"),
        ("[1, 2]".into(), 400, "JSON object"),
        ("\"text\"".into(), 400, "JSON object"),
        ("{\"repo\": \"\\ud800\"".into(), 400, "not valid JSON"),
    ];
    for (body, status, fragment) in &cases {
        let reply = api.post_raw("/api/sessions", body.clone());
        assert_error(&reply, *status, fragment);
    }
    let bad_utf8 = api.post_raw("/api/sessions", vec![b'{', 0xff, 0xfe, b'}']);
    assert_error(&bad_utf8, 400, "not valid JSON");
    let huge = format!(
        "{{\"repo\": \"{r}\", \"prompt\": \"{}\"}}",
        "x".repeat(2 * 1024 * 1024)
    );
    assert_error(&api.post_raw("/api/sessions", huge), 413, "too large");

    assert!(
        api.list("").is_empty(),
        "nothing may be written by bad requests"
    );
    assert_eq!(api.get("/health").status, 200, "daemon keeps serving");
}

#[test]
fn unknown_routes_ids_and_methods_are_json_errors() {
    let daemon = TestDaemon::start();
    let api = daemon.api();
    assert_error(&api.get("/nope"), 404, "not found");
    assert_error(&api.get("/api/sessions/deadbeef"), 404, "not found");
    assert_error(
        &api.get("/api/sessions/..%2F..%2Fetc%2Fpasswd"),
        404,
        "not found",
    );
    assert_error(&api.get("/api/sessions/DEADBEEF/events"), 404, "not found");
    assert_error(&api.get("/api/sessions/deadbeef/lineage"), 404, "not found");
    assert_error(
        &api.post("/api/sessions/deadbeef/rerun", &json!({})),
        404,
        "not found",
    );
    let wrong_method = api.send(api.http().delete(format!("{}/api/sessions", api.base)));
    assert!(
        matches!(wrong_method.status, 404 | 405),
        "{}",
        wrong_method.status
    );
    assert!(wrong_method.body["error"].is_string());
    assert_error(
        &api.get("/api/sessions?status=bogus"),
        400,
        "invalid status",
    );
    assert_error(
        &api.get("/api/sessions?policy=bogus"),
        400,
        "unknown policy",
    );
    assert_error(
        &api.get("/api/sessions/deadbeef/events?after=-1"),
        400,
        "after",
    );
    assert_error(
        &api.get("/api/sessions/deadbeef/events?after=99999999999999999999999"),
        400,
        "after",
    );
}

#[test]
fn inbox_limit_bounds() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let created: Vec<String> = (0..3)
        .map(|i| {
            api.create(&repo.path_str(), &format!("@mock say {i}"), json!({}))["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    for id in &created {
        api.wait_finished(id, SHORT);
    }
    assert_eq!(api.get("/api/inbox").body.as_array().map(Vec::len), Some(3));
    assert_eq!(
        api.get("/api/inbox?limit=2").body.as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        api.get("/api/inbox?limit=500")
            .body
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    assert_eq!(
        api.get("/api/inbox?limit=99999999999999999999999").status,
        200
    );
    for bad in ["0", "-3", "ten", "2.5"] {
        assert_error(&api.get(&format!("/api/inbox?limit={bad}")), 400, "limit");
    }
    // Most recently updated first.
    let inbox = api.get("/api/inbox").body;
    let updated: Vec<&str> = inbox
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["updatedAt"].as_str())
        .collect();
    assert!(updated.windows(2).all(|w| w[0] >= w[1]), "{updated:?}");
}

#[test]
fn list_filters() {
    let daemon =
        TestDaemon::start_with(&[("TELECODER_AGENT_OTHER_COMMAND", &mock_agent_command())]);
    let repo = TestRepo::new();
    let api = daemon.api();
    let r = repo.path_str();
    let quick = api.create(&r, "@mock say a", json!({}));
    let other = api.create(
        &r,
        "@mock say b",
        json!({"agent": "other", "policy": "standard"}),
    );
    let slow = api.create(&r, "@mock sleep 30", json!({"policy": "locked"}));
    let (quick, other, slow) = (
        quick["id"].as_str().unwrap_or_default().to_owned(),
        other["id"].as_str().unwrap_or_default().to_owned(),
        slow["id"].as_str().unwrap_or_default().to_owned(),
    );
    api.wait_finished(&quick, SHORT);
    api.wait_finished(&other, SHORT);
    api.wait_status(&slow, "running", SHORT);

    assert_eq!(
        ids(&api.list("")),
        [slow.as_str(), other.as_str(), quick.as_str()],
        "newest first"
    );
    assert_eq!(ids(&api.list("?status=active")), [slow.as_str()]);
    assert_eq!(ids(&api.list("?status=running")), [slow.as_str()]);
    assert_eq!(
        ids(&api.list("?status=complete")),
        [other.as_str(), quick.as_str()]
    );
    assert_eq!(ids(&api.list("?agent=other")), [other.as_str()]);
    assert_eq!(ids(&api.list("?policy=locked")), [slow.as_str()]);
    assert_eq!(
        ids(&api.list("?policy=observe&agent=mock")),
        [quick.as_str()]
    );
    assert!(api.list("?status=error").is_empty());
    // (ext) paging
    assert_eq!(ids(&api.list("?limit=2")), [slow.as_str(), other.as_str()]);
    assert_eq!(ids(&api.list("?limit=2&offset=2")), [quick.as_str()]);
    assert_eq!(
        ids(&api.list("?offset=1")),
        [other.as_str(), quick.as_str()]
    );
    for bad in ["?limit=0", "?limit=-1", "?offset=x", "?limit=99999999999"] {
        assert_error(
            &api.get(&format!("/api/sessions{bad}")),
            400,
            "must be a whole number",
        );
    }

    // A running session cannot be rerun.
    assert_error(
        &api.post(&format!("/api/sessions/{slow}/rerun"), &json!({})),
        409,
        "still running",
    );
    let cancelled = api.post(&format!("/api/sessions/{slow}/cancel"), &json!({}));
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    let session = api.wait_finished(&slow, SHORT);
    assert_eq!(session["status"], "cancelled");
    assert_eq!(session["failureKind"], "cancelled");
    assert_error(
        &api.post(&format!("/api/sessions/{slow}/cancel"), &json!({})),
        409,
        "already finished",
    );
}

#[test]
fn reruns_and_lineage() {
    let daemon = TestDaemon::start();
    let repo = TestRepo::new();
    let api = daemon.api();
    let root = api.create(
        &repo.path_str(),
        "@mock outcome",
        json!({"policy": "standard"}),
    );
    let root_id = root["id"].as_str().unwrap_or_default().to_owned();
    api.wait_finished(&root_id, SHORT);

    let rerun = |id: &str| -> Value {
        let reply = api.post(&format!("/api/sessions/{id}/rerun"), &json!({}));
        assert_eq!(reply.status, 201, "{}", reply.body);
        let session = reply.body;
        api.wait_finished(session["id"].as_str().unwrap_or_default(), SHORT);
        session
    };
    let child = rerun(&root_id);
    let child_id = child["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(child["parentSessionId"], root_id.as_str());
    assert_eq!(child["attempt"], 2);
    assert_eq!(child["repo"], root["repo"]);
    assert_eq!(child["prompt"], root["prompt"]);
    assert_eq!(child["policyMode"], "standard");
    let first = &api.events(&child_id)[0];
    assert_eq!(first["type"], "status");
    assert!(
        first["data"]
            .as_str()
            .unwrap_or_default()
            .contains(&root_id),
        "{first}"
    );

    let grandchild = rerun(&child_id);
    let sibling = rerun(&root_id);
    let unrelated = api.create(&repo.path_str(), "@mock echo", json!({}));
    api.wait_finished(unrelated["id"].as_str().unwrap_or_default(), SHORT);
    let grandchild_id = grandchild["id"].as_str().unwrap_or_default().to_owned();
    let sibling_id = sibling["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(grandchild["attempt"], 3);
    assert_eq!(sibling["attempt"], 2);

    let family = [
        root_id.clone(),
        child_id.clone(),
        sibling_id.clone(),
        grandchild_id.clone(),
    ];
    for member in &family {
        let lineage = api.get(&format!("/api/sessions/{member}/lineage"));
        assert_eq!(lineage.status, 200);
        assert_eq!(
            ids(lineage
                .body
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()),
            family,
            "lineage of {member}"
        );
        assert_eq!(ids(&api.list(&format!("?lineage={member}"))), family);
    }
    assert_eq!(
        ids(&api.list(&format!("?parent={root_id}"))),
        [sibling_id.as_str(), child_id.as_str()]
    );
    assert_eq!(
        ids(api
            .get(&format!(
                "/api/sessions/{grandchild_id}/lineage?attempt=1&status=complete"
            ))
            .body
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default())
        .len(),
        4
    );
}
