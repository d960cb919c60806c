use super::*;

fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let all: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([("HOME".to_string(), "/home/u".to_string())])
        .collect();
    Config::from_lookup(&|name| all.get(name).cloned(), &all)
}

#[test]
fn defaults_match_the_contract() {
    let config = config(&[]).expect("defaults are valid");
    assert_eq!(config.listen_port, 7080);
    assert_eq!(config.url, "http://127.0.0.1:7080");
    assert_eq!(
        config.settings.data_dir,
        PathBuf::from("/home/u/.telecoder")
    );
    assert_eq!(config.settings.default_policy, PolicyMode::Observe);
    assert_eq!(config.settings.stale, Duration::from_secs(30));
    assert_eq!(config.settings.runtime, RuntimeKind::Native);
    assert_eq!(config.settings.approval_timeout, Duration::from_secs(1800));
}

#[test]
fn approval_timeouts_take_units() {
    for (text, seconds) in [("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200)] {
        let config = config(&[("TELECODER_APPROVAL_TIMEOUT", text)]).expect("valid");
        assert_eq!(
            config.settings.approval_timeout,
            Duration::from_secs(seconds)
        );
    }
}

/// Asserts that `pairs` are refused with an error naming `variable`.
fn rejected(pairs: &[(&str, &str)], variable: &str) {
    let err = config(pairs).expect_err("must be rejected");
    assert_eq!(err.variable, variable, "{pairs:?}");
    assert!(err.to_string().starts_with(&format!("invalid {variable}:")));
}

#[test]
fn bad_values_name_their_variable() {
    for (variable, text) in [
        ("TELECODER_LISTEN_PORT", "abc"),
        ("TELECODER_POLICY_MODE", "yolo"),
        ("TELECODER_ACPX_COMMAND", "'unbalanced"),
        ("TELECODER_PROMPT_TIMEOUT_SECONDS", "-1"),
        ("TELECODER_WATCH_MAX_RUNS_PER_HOUR", "100000"),
        ("TELECODER_SCHEDULE_MIN_INTERVAL_SECONDS", "0"),
        ("TELECODER_RUNTIME", "node"),
        ("TELECODER_APPROVAL_TIMEOUT", "0"),
        ("TELECODER_APPROVAL_TIMEOUT", "soon"),
        (
            "TELECODER_ALLOWED_ORIGINS",
            "https://ok.example, evil.example/x",
        ),
        ("TELECODER_ALLOWED_HOSTS", "*.example.com"),
        ("TELECODER_WORKSPACE_RETENTION", "14 days"),
        ("TELECODER_WORKSPACE_MAX_BYTES", "0"),
        ("TELECODER_WORKSPACE_MAX_BYTES", "12X"),
        ("TELECODER_WORKSPACE_GC_INTERVAL", "0"),
        ("TELECODER_NOTIFY", "ftp://example.com/x"),
        ("TELECODER_NOTIFY", "https://example.com/h?events=done"),
        ("TELECODER_PUBLIC_URL", "tc.example.com"),
        ("TELECODER_NOTIFY_MAX_ATTEMPTS", "0"),
    ] {
        rejected(&[(variable, text)], variable);
    }
}

#[test]
fn conflicting_values_name_the_variable_to_change() {
    rejected(
        &[
            ("TELECODER_SESSION_HEARTBEAT_SECONDS", "10"),
            ("TELECODER_SESSION_STALE_SECONDS", "10"),
        ],
        "TELECODER_SESSION_STALE_SECONDS",
    );
    rejected(
        &[
            ("TELECODER_POLICY_MODE", "ask"),
            ("TELECODER_RUNTIME", "acpx"),
        ],
        "TELECODER_POLICY_MODE",
    );
    rejected(
        &[("TELECODER_NOTIFY", "https://example.com/hook")],
        "TELECODER_NOTIFY_SECRET",
    );
    rejected(
        &[
            ("TELECODER_NOTIFY", "ntfy://ntfy.sh/alerts"),
            ("TELECODER_NOTIFY_SECRET", "short"),
        ],
        "TELECODER_NOTIFY_SECRET",
    );
}

#[test]
fn workspace_limits_read_units() {
    let configured = config(&[
        ("TELECODER_WORKSPACE_RETENTION", "36h"),
        ("TELECODER_WORKSPACE_MAX_BYTES", "20G"),
        ("TELECODER_WORKSPACE_GC_INTERVAL", "90"),
    ])
    .expect("valid");
    let s = &configured.settings;
    assert_eq!(s.workspace_retention, Duration::from_secs(36 * 3600));
    assert_eq!(s.workspace_max_bytes, Some(20 << 30));
    assert_eq!(s.workspace_gc_interval, Duration::from_secs(90));
    let defaults = config(&[]).expect("valid");
    assert_eq!(
        defaults.settings.workspace_retention,
        Duration::from_secs(14 * 24 * 3600)
    );
    assert_eq!(defaults.settings.workspace_max_bytes, None);
    let zero = config(&[
        ("TELECODER_WORKSPACE_RETENTION", "0"),
        ("TELECODER_WORKSPACE_MAX_BYTES", "512MiB"),
    ])
    .expect("valid");
    assert_eq!(zero.settings.workspace_retention, Duration::ZERO);
    assert_eq!(zero.settings.workspace_max_bytes, Some(512 << 20));
}

#[test]
fn legacy_permission_mode_maps_to_a_policy() {
    let config = config(&[("TELECODER_PERMISSION_MODE", "approve-all")]).expect("valid");
    assert_eq!(config.settings.default_policy, PolicyMode::Standard);
}

#[test]
fn agent_commands_are_discovered() {
    let config = config(&[("TELECODER_AGENT_MY_AGENT_COMMAND", "python3 a.py")]).expect("valid");
    assert_eq!(
        config.settings.agent_command("my-agent"),
        Some("python3 a.py")
    );
    assert_eq!(config.settings.agent_command("other"), None);
}

#[test]
fn notification_secrets_are_redacted_and_masked() {
    let config = config(&[
        (
            "TELECODER_NOTIFY",
            "https://hooks.slack.com/services/T0001/B0002/slackSecretPart0123456 \
             ntfy://ntfy.sh/alerts-topic?token=tk_ntfyToken0123456789&events=error",
        ),
        ("TELECODER_PUBLIC_URL", "https://tc.example.com/"),
    ])
    .expect("valid");
    let notify = &config.settings.notify;
    assert_eq!(notify.targets.len(), 2);
    assert_eq!(notify.public_url.as_deref(), Some("https://tc.example.com"));
    let redacted = config
        .settings
        .redactor
        .redact("posting to slackSecretPart0123456 with tk_ntfyToken0123456789");
    assert!(!redacted.contains("slackSecret"), "{redacted}");
    assert!(!redacted.contains("tk_ntfyToken"), "{redacted}");
    let shown: String = config
        .describe()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    assert!(!shown.contains("slackSecret"), "{shown}");
    assert!(!shown.contains("tk_ntfyToken"), "{shown}");
    assert!(shown.contains("(events: error)"), "{shown}");
    let blocked = &config.settings.agent_env_blocklist;
    assert!(blocked.iter().any(|v| v == "TELECODER_NOTIFY"));
}
