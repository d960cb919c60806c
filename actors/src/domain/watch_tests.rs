//! Tests of watch matching, event keys and summaries (`domain::watch`).

use super::*;

#[test]
fn ci_fires_only_on_completed_failures() {
    let mut event = CiEvent {
        run_id: "7".into(),
        ..CiEvent::default()
    };
    assert!(event.is_failure());
    event.conclusion = "success".into();
    assert!(!event.is_failure());
    event.conclusion = "FAILURE".into();
    event.status = "Completed".into();
    assert!(event.is_failure(), "compared case-insensitively");
    event.status = "in_progress".into();
    assert!(!event.is_failure());
}

#[test]
fn pr_keys_prefer_the_head_sha() {
    let mut event = PrEvent {
        pr_number: 42,
        head: "feature".into(),
        ..PrEvent::default()
    };
    assert_eq!(event.event_key(), "42:feature");
    event.head_sha = "abc123".into();
    assert_eq!(event.event_key(), "42:abc123");
    assert!(event.is_reviewable());
    event.action = "Opened".into();
    assert!(event.is_reviewable(), "compared case-insensitively");
    event.action = "closed".into();
    assert!(!event.is_reviewable());
    event.action = "ready_for_review".into();
    assert!(event.is_reviewable());
    event.action = "converted_to_draft".into();
    assert!(!event.is_reviewable());
}

fn watch(kind: WatchKind) -> Watch {
    Watch {
        instructions: "look".into(),
        agent: "mock".into(),
        ..Watch::unfiltered("w".into(), kind, "octo-org/octo-repo".into(), 10)
    }
}

#[test]
fn workflow_filters_match_the_name_the_file_or_its_path() {
    // GitHub's own example: an empty run name, the workflow named in `workflow`.
    let event = WatchEvent::Ci(CiEvent {
        repo: "octo-org/octo-repo".into(),
        workflow: "test".into(),
        workflow_path: ".github/workflows/test.yml".into(),
        run_id: "1".into(),
        ..CiEvent::default()
    });
    let mut ci = watch(WatchKind::CiFailure);
    for filter in ["", "test", "test.yml", ".github/workflows/test.yml"] {
        ci.workflow_name = filter.into();
        assert!(ci.matches(&event), "{filter}");
    }
    for filter in ["Test", "build", "test.yaml", "workflows/test.yml"] {
        ci.workflow_name = filter.into();
        assert!(!ci.matches(&event), "{filter}");
    }
    // Without a path, only the name matches (an empty path matches no filter).
    let bare = WatchEvent::Ci(CiEvent {
        repo: "octo-org/octo-repo".into(),
        workflow: "test".into(),
        run_id: "1".into(),
        ..CiEvent::default()
    });
    ci.workflow_name = "test.yml".into();
    assert!(!ci.matches(&bare));
}

#[test]
fn drafts_are_reviewed_unless_the_watch_skips_them() {
    let mut draft = PrEvent {
        repo: "octo-org/octo-repo".into(),
        pr_number: 2,
        action: "opened".into(),
        draft: true,
        ..PrEvent::default()
    };
    let mut pr = watch(WatchKind::PrReview);
    assert!(pr.matches(&WatchEvent::Pr(draft.clone())));
    pr.skip_drafts = true;
    assert!(!pr.matches(&WatchEvent::Pr(draft.clone())));
    draft.draft = false;
    draft.action = "ready_for_review".into();
    assert!(pr.matches(&WatchEvent::Pr(draft)));
}

fn ci_watch() -> Watch {
    Watch {
        instructions: "fix".into(),
        agent: "codex".into(),
        workflow_name: "build".into(),
        ..Watch::unfiltered("w1".into(), WatchKind::CiFailure, "acme/widgets".into(), 10)
    }
}

#[test]
fn mismatches_say_why() {
    let watch = ci_watch();
    let event = |repo: &str, workflow: &str, conclusion: &str| {
        WatchEvent::Ci(CiEvent {
            repo: repo.into(),
            workflow: workflow.into(),
            branch: "main".into(),
            run_id: "1".into(),
            conclusion: conclusion.into(),
            ..CiEvent::default()
        })
    };
    assert_eq!(
        watch.mismatch(&event("https://github.com/acme/widgets", "build", "")),
        None
    );
    assert_eq!(
        watch.mismatch(&event("acme/gadgets", "build", "")),
        Some(Mismatch::NotConcerned)
    );
    assert!(matches!(
        watch.mismatch(&event("acme/widgets", "test", "")),
        Some(Mismatch::Filtered(reason)) if reason.contains("workflow filter 'build'")
    ));
    assert!(matches!(
        watch.mismatch(&event("acme/widgets", "build", "success")),
        Some(Mismatch::Ignored(reason)) if reason.contains("'success' is not failure")
    ));
    let paused = Watch {
        status: WatchStatus::Paused,
        ..ci_watch()
    };
    assert_eq!(
        paused.mismatch(&event("acme/widgets", "build", "")),
        Some(Mismatch::NotConcerned)
    );
}
