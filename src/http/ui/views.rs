//! What the dashboard reads besides the public API: a session list slim enough for a phone
//! (no result text, prompts cut), and the actions a session allows the caller — decided here,
//! once, by the same rules the routes apply, so the page never offers what the API refuses.

use serde::Serialize;
use serde_json::{Map, Value};
use telecoder_actors::domain::repo::is_remote;
use telecoder_actors::domain::Session;

/// Characters of a prompt or headline a list row carries.
const ROW_TEXT: usize = 280;

/// The fields a list row shows, by their API names; anything else is left out.
const ROW_FIELDS: &[&str] = &[
    "id",
    "repo",
    "agent",
    "policyMode",
    "status",
    "failureKind",
    "attempt",
    "parentSessionId",
    "createdAt",
    "updatedAt",
    "startedAt",
    "finishedAt",
    "queuePosition",
    "pullRequestUrl",
    // (converse, issue 15) present once approvals exist; passed through when the record has it.
    "awaitingApproval",
    "continuedFrom",
];

fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A session as a list row: [`ROW_FIELDS`] plus the prompt and headline cut to
/// [`ROW_TEXT`] characters.
pub fn row(session: &Session) -> Value {
    let Ok(Value::Object(full)) = serde_json::to_value(session) else {
        return Value::Null;
    };
    let mut row: Map<String, Value> = ROW_FIELDS
        .iter()
        .filter_map(|name| full.get(*name).map(|v| (name.to_string(), v.clone())))
        .collect();
    row.insert("prompt".into(), clip(&session.prompt, ROW_TEXT).into());
    row.insert(
        "outcomeHeadline".into(),
        clip(&session.outcome_headline, ROW_TEXT).into(),
    );
    Value::Object(row)
}

/// The actions the session page may offer (all false for a caller who cannot write).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Actions {
    pub cancel: bool,
    pub rerun: bool,
    #[serde(rename = "continue")]
    pub continue_: bool,
    pub publish: bool,
    pub fetch: bool,
    /// Whether there is a workspace branch to show a diff of (a read, so not scoped).
    pub diff: bool,
}

/// See [`Actions`]: the rules of the routes that perform them. `continuable`: whether the
/// store would take the session's next turn now (`StoreClient::why_not_continuable`).
pub fn actions(session: &Session, can_write: bool, continuable: bool) -> Actions {
    let finished = session.status.is_finished();
    let workspace = session.workspace_state.as_str();
    let has_work = matches!(workspace, "present" | "archived");
    let diff = !session.branch.is_empty() && has_work;
    if !can_write {
        return Actions {
            diff,
            ..Actions::default()
        };
    }
    Actions {
        cancel: !finished,
        // A later turn of a conversation is rerun as the next turn, so by the same rule.
        rerun: finished && (session.continued_from.is_empty() || continuable),
        // One workspace, one agent: once, when finished, while nothing else runs there, until
        // the workspace is collected.
        continue_: finished && continuable,
        // Only a complete session with a workspace, on a GitHub repository.
        publish: session.status.as_str() == "complete"
            && !session.branch.is_empty()
            && has_work
            && telecoder_actors::publish::github_repo(&session.repo).is_some(),
        // Only into a local repository, once finished, from a workspace or its bundle.
        fetch: finished && has_work && !is_remote(&session.repo),
        diff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use telecoder_actors::domain::session::SessionStatus;

    /// A local repository that exists (this one).
    const LOCAL: &str = env!("CARGO_MANIFEST_DIR");

    /// A record as the daemon makes it, then moved to `status` with its workspace in `workspace`.
    fn session(status: SessionStatus, repo: &str, workspace: &str) -> Session {
        let settings = telecoder_actors::settings::Settings::new("/nonexistent");
        let request = telecoder_actors::domain::NewSession {
            repo: repo.into(),
            prompt: "p".repeat(1000),
            agent: None,
            policy: None,
        };
        let mut s = telecoder_actors::requests::new_session_record(&settings, &request, None)
            .expect("a session");
        s.branch = format!("telecoder/{}", s.id);
        s.result_text = "big".into();
        s.status = status;
        s.workspace_state = workspace.into();
        s
    }

    #[test]
    fn rows_leave_out_the_bulk() {
        let row = row(&session(SessionStatus::Running, LOCAL, "present"));
        assert!(row.get("resultText").is_none());
        assert!(row.get("workDir").is_none());
        assert_eq!(row["prompt"].as_str().map(|p| p.chars().count()), Some(281));
        assert_eq!(row["status"], "running");
    }

    #[test]
    fn actions_follow_the_session_state_and_the_scope() {
        let running = actions(
            &session(SessionStatus::Running, LOCAL, "present"),
            true,
            false,
        );
        assert!(running.cancel && !running.rerun && !running.continue_ && !running.fetch);
        let local = actions(
            &session(SessionStatus::Complete, LOCAL, "present"),
            true,
            true,
        );
        assert!(local.rerun && local.continue_ && local.fetch && !local.publish && !local.cancel);
        let github = "https://github.com/acme/widgets.git";
        let remote = actions(
            &session(SessionStatus::Complete, github, "present"),
            true,
            true,
        );
        assert!(remote.publish && !remote.fetch);
        let collected = actions(
            &session(SessionStatus::Complete, LOCAL, "collected"),
            true,
            false,
        );
        assert!(!collected.continue_ && !collected.fetch && !collected.diff && collected.rerun);
        // A later turn that was continued already: neither continued nor rerun again.
        let mut turn = session(SessionStatus::Complete, LOCAL, "present");
        turn.continued_from = "01234567".into();
        let continued = actions(&turn, true, false);
        assert!(!continued.continue_ && !continued.rerun && continued.fetch);
        assert!(actions(&turn, true, true).rerun);
        let read_only = actions(
            &session(SessionStatus::Complete, github, "present"),
            false,
            true,
        );
        assert_eq!(
            read_only,
            Actions {
                diff: true,
                ..Actions::default()
            }
        );
    }
}
