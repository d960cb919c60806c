//! Tests of the text and tables shown to a person (`render`).

use super::*;
use std::time::Duration;

#[test]
fn the_actor_tree_nests_actors_under_their_supervisors() {
    let node = |kind: &str, name: &str, supervisor: &str| serde_json::json!({"kind": kind, "name": name, "status": "running", "supervisor": supervisor});
    let root = "telecoder.supervisor";
    let tree = serde_json::json!({
        "kind": "supervisor", "name": root, "status": "running",
        "children": [
            node("queue", "telecoder.queue", root),
            node("session", "telecoder.session.abcdef12", "telecoder.queue"),
            node("store", "telecoder.store", root),
        ],
    });
    let shown = actor_tree(&tree);
    let lines: Vec<&str> = shown.lines().collect();
    assert!(lines[0].starts_with("supervisor telecoder.supervisor [running]"));
    assert!(lines[1].starts_with("├─ queue telecoder.queue"), "{shown}");
    assert!(
        lines[2].starts_with("│  └─ session telecoder.session.abcdef12"),
        "{shown}"
    );
    assert!(lines[3].starts_with("└─ store telecoder.store"), "{shown}");
}

#[test]
fn ages_are_compact() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10 * 86_400);
    let at = |secs: u64| time::format(now - Duration::from_secs(secs));
    assert_eq!(age(&at(5), now), "5s");
    assert_eq!(age(&at(300), now), "5m");
    assert_eq!(age(&at(7200), now), "2h");
    assert_eq!(age(&at(3 * 86_400), now), "3d");
    assert_eq!(age("", now), "-");
}

#[test]
fn tables_align_and_paths_keep_their_end() {
    let text = table(
        &["ID", "NAME"],
        vec![
            vec!["a".into(), "x".into()],
            vec!["bbbb".into(), "y".into()],
        ],
    );
    assert_eq!(text, "ID    NAME\na     x\nbbbb  y\n");
    assert_eq!(tail("/very/long/path/to/repo", 10), "…h/to/repo");
    assert_eq!(
        repo_cell("https://github.com/Acme/Widgets.git"),
        "acme/widgets"
    );
}
