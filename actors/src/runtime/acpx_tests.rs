//! Tests of the acpx runtime's output parsing and failure classification.

use super::*;
use crate::domain::PermissionMode;
use std::os::unix::process::ExitStatusExt;

fn request() -> AgentRequest {
    AgentRequest {
        session_id: "abcd1234".into(),
        work_dir: "/tmp/ws".into(),
        prompt: "fix it".into(),
        agent: "codex".into(),
        command_override: None,
        permission: PermissionMode::ApproveReads,
        max_runtime: Duration::from_secs(180),
        scratch_dir: "/tmp/scratch".into(),
        max_output_bytes: 1024,
        env_remove: Vec::new(),
    }
}

#[test]
fn argv_follows_the_contract() {
    let runtime = AcpxRuntime::new(vec!["npx".into(), "acpx".into()]);
    assert_eq!(
        runtime.argv(&request(), None),
        [
            "npx",
            "acpx",
            "--cwd",
            "/tmp/ws",
            "--approve-reads",
            "--timeout",
            "180",
            "--format",
            "json",
            "--json-strict",
            "codex",
            "exec",
            "--",
            "fix it"
        ]
    );
    let mut option_like = request();
    option_like.prompt = "--file=/etc/shadow".into();
    let argv = runtime.argv(&option_like, None);
    assert_eq!(
        &argv[argv.len() - 3..],
        ["exec", "--", "--file=/etc/shadow"]
    );
    let mut with_override = request();
    with_override.command_override = Some("python3 agent.py".into());
    let argv = runtime.argv(&with_override, Some(Path::new("/tmp/p")));
    assert_eq!(
        &argv[argv.len() - 5..],
        ["--agent", "python3 agent.py", "exec", "--file", "/tmp/p"]
    );
}

#[test]
fn prompts_acpx_would_misread_go_through_the_file() {
    assert!(!needs_prompt_file("--file=/etc/shadow"));
    assert!(!needs_prompt_file("--help"));
    assert!(needs_prompt_file("--skill"));
    assert!(needs_prompt_file(&"x".repeat(MAX_PROMPT_ARG_BYTES + 1)));
}

#[test]
fn parses_chunks_and_errors() {
    let chunk = r#"{"jsonrpc":"2.0","method":"session/update","params":{"update":{"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"hi"}}}}"#;
    assert_eq!(parse_line(chunk), LineContent::Text("hi".into()));
    let error = r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32603,"message":"boom"}}"#;
    assert_eq!(parse_line(error), LineContent::Error("boom".into()));
    assert_eq!(parse_line("not json"), LineContent::Nothing);
}

#[test]
fn classifies_exit_codes() {
    let req = request();
    let exit = |code| ExitStatus::from_raw(code << 8);
    assert!(classify(exit(0), "", "", &req).is_ok());
    assert_eq!(
        classify(exit(3), "", "", &req).map_err(|f| f.kind),
        Err(FailureKind::Timeout)
    );
    assert_eq!(
        classify(exit(5), "", "", &req).map_err(|f| f.kind),
        Err(FailureKind::PolicyDenied)
    );
    assert_eq!(
        classify(exit(1), "Permission request rejected", "", &req).map_err(|f| f.kind),
        Err(FailureKind::PolicyDenied)
    );
    let crash = classify(exit(1), "", "agent crashed\n", &req).unwrap_err();
    assert_eq!(crash.kind, FailureKind::RuntimeError);
    assert_eq!(crash.message, "acpx exited with code 1: agent crashed");
}

#[test]
fn output_is_capped_with_a_marker() {
    let mut buffer = OutputBuffer::new(10);
    buffer.push_text("12345");
    buffer.push_text("67890abc");
    buffer.push_text("zzz");
    assert!(buffer.text.starts_with("1234567890\n[output truncated"));
    assert!(!buffer.text.contains("zzz"));
}
