//! The admin views: daemon status, notification test results and the actor tree.

use super::{short, table};
use serde_json::Value;
use std::fmt::Write as _;

/// `telecoder admin status` for a person.
pub fn admin_status(status: &Value) -> String {
    let mut text = String::new();
    let field = |value: &Value| match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    if let Some(object) = status.as_object() {
        for (key, value) in object {
            match value {
                Value::Object(inner) => {
                    let _ = writeln!(text, "{key}:");
                    for (k, v) in inner {
                        let _ = writeln!(text, "  {k:<22} {}", field(v));
                    }
                }
                other => {
                    let _ = writeln!(text, "{key:<24} {}", field(other));
                }
            }
        }
    }
    text
}

/// What each notification target answered to `notify-test`.
pub fn notify_results(results: &[telecoder_actors::notify::TestResult]) -> String {
    let rows = results
        .iter()
        .map(|r| {
            let result = if r.ok {
                format!("ok (HTTP {})", r.status)
            } else if r.error.is_empty() {
                format!("failed (HTTP {})", r.status)
            } else {
                format!("failed: {}", short(&r.error, 80))
            };
            vec![r.target.clone(), result, format!("{} ms", r.latency_ms)]
        })
        .collect();
    table(&["TARGET", "RESULT", "TIME"], rows)
}

/// The actor tree for a person (`telecoder admin actors`).
pub fn actor_tree(tree: &Value) -> String {
    fn line(node: &Value) -> String {
        let secs = node["uptimeMs"].as_u64().unwrap_or(0) as f64 / 1000.0;
        let mut text = format!(
            "{} {} [{}] up {secs:.1}s",
            node["kind"].as_str().unwrap_or_default(),
            node["name"].as_str().unwrap_or_default(),
            node["status"].as_str().unwrap_or_default(),
        );
        if let Some(handled) = node["messagesHandled"].as_u64() {
            let _ = write!(text, " msgs {handled}");
        }
        if let Some(restarts) = node["restarts"].as_u64().filter(|r| *r > 0) {
            let _ = write!(text, " restarts {restarts}");
        }
        let session = &node["session"];
        let text_of =
            |record: &Value, key: &str| record[key].as_str().unwrap_or_default().to_owned();
        if session.is_object() {
            let pid = session["pid"].as_u64().map(|p| p.to_string());
            let _ = write!(
                text,
                " | session {} {} agent={} pid={} heartbeat {}ms ago",
                text_of(session, "sessionId"),
                text_of(session, "state"),
                text_of(session, "agent"),
                pid.as_deref().unwrap_or("-"),
                session["lastHeartbeatAgeMs"].as_u64().unwrap_or(0),
            );
        }
        let watch = &node["watch"];
        if watch.is_object() {
            let _ = write!(
                text,
                " | watch {} {} events {}",
                text_of(watch, "watchId"),
                text_of(watch, "kind"),
                watch["eventsHandled"].as_u64().unwrap_or(0),
            );
            if let Some(next) = watch["nextFire"].as_str().filter(|n| !n.is_empty()) {
                let _ = write!(text, " next {next}");
            }
        }
        text
    }
    /// The nodes the daemon lists under the root, nested under the supervisor each names.
    fn branches(text: &mut String, nodes: &[Value], parent: &str, indent: &str) {
        let mine: Vec<&Value> = nodes
            .iter()
            .filter(|node| node["supervisor"].as_str() == Some(parent))
            .collect();
        for (i, node) in mine.iter().enumerate() {
            let last = i + 1 == mine.len();
            let _ = writeln!(
                text,
                "{indent}{} {}",
                if last { "└─" } else { "├─" },
                line(node)
            );
            let deeper = format!("{indent}{}", if last { "   " } else { "│  " });
            branches(
                text,
                nodes,
                node["name"].as_str().unwrap_or_default(),
                &deeper,
            );
        }
    }
    let mut text = format!("{}\n", line(tree));
    let children = tree["children"].as_array().cloned().unwrap_or_default();
    let root = tree["name"].as_str().unwrap_or_default();
    // A daemon that names no supervisors lists every actor right under the root.
    let named = children.iter().any(|c| c["supervisor"].is_string());
    let nodes: Vec<Value> = children
        .into_iter()
        .map(|mut c| {
            if !named {
                c["supervisor"] = Value::String(root.to_owned());
            }
            c
        })
        .collect();
    branches(&mut text, &nodes, root, "");
    text
}
