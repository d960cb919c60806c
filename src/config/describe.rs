//! `telecoder config`: every resolved value, secrets shown only as set or not set.

use super::{notify_targets, Config, AGENT_PREFIX, AGENT_SUFFIX};

impl Config {
    /// Every resolved value, for `telecoder config`.
    pub fn describe(&self) -> Vec<(String, String)> {
        let s = &self.settings;
        let mut rows = vec![
            ("TELECODER_DATA_DIR", s.data_dir.display().to_string()),
            ("TELECODER_LISTEN_HOST", self.listen_host.clone()),
            ("TELECODER_LISTEN_PORT", self.listen_port.to_string()),
            ("TELECODER_URL", self.url.clone()),
            ("TELECODER_DEFAULT_AGENT", s.default_agent.clone()),
            ("TELECODER_POLICY_MODE", s.default_policy.to_string()),
            ("TELECODER_RUNTIME", s.runtime.as_str().to_owned()),
            ("TELECODER_ACPX_COMMAND", shell_words::join(&s.acpx_command)),
            (
                "TELECODER_PROMPT_TIMEOUT_SECONDS",
                s.prompt_timeout_seconds.to_string(),
            ),
            (
                "TELECODER_APPROVAL_TIMEOUT",
                format!("{}s", s.approval_timeout.as_secs()),
            ),
            (
                "TELECODER_SESSION_HEARTBEAT_SECONDS",
                s.heartbeat.as_secs().to_string(),
            ),
            (
                "TELECODER_SESSION_STALE_SECONDS",
                s.stale.as_secs().to_string(),
            ),
            (
                "TELECODER_MAX_CONCURRENT_SESSIONS",
                s.max_concurrent_sessions.to_string(),
            ),
            ("TELECODER_MAX_OUTPUT_BYTES", s.max_output_bytes.to_string()),
            (
                "TELECODER_LOG_FORMAT",
                if self.json_logs { "json" } else { "text" }.to_owned(),
            ),
            (
                "TELECODER_WATCH_MAX_RUNS_PER_HOUR",
                s.watch_max_runs_per_hour.to_string(),
            ),
            (
                "TELECODER_SCHEDULE_MIN_INTERVAL_SECONDS",
                s.schedule_min_interval.as_secs().to_string(),
            ),
            (
                "TELECODER_WORKSPACE_RETENTION",
                format!("{}s", s.workspace_retention.as_secs()),
            ),
            (
                "TELECODER_WORKSPACE_MAX_BYTES",
                s.workspace_max_bytes
                    .map_or_else(|| "(no cap)".to_owned(), |n| n.to_string()),
            ),
            (
                "TELECODER_WORKSPACE_GC_INTERVAL",
                format!("{}s", s.workspace_gc_interval.as_secs()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect::<Vec<_>>();
        rows.extend(s.agent_commands.iter().map(|(agent, command)| {
            (
                format!("{AGENT_PREFIX}{agent}{AGENT_SUFFIX}"),
                command.clone(),
            )
        }));
        let joined = |items: Vec<String>| {
            if items.is_empty() {
                "(none)".to_owned()
            } else {
                items.join(",")
            }
        };
        rows.push((
            "TELECODER_ALLOWED_ORIGINS".into(),
            joined(
                self.browser
                    .allowed_origins
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
        ));
        rows.push((
            "TELECODER_ALLOWED_HOSTS".into(),
            joined(
                self.browser
                    .allowed_hosts
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
        ));
        let set = |is_set: bool| if is_set { "(set)" } else { "(not set)" };
        rows.push((
            "TELECODER_GITHUB_WEBHOOK_SECRET".into(),
            set(self.github_webhook_secret.is_some()).into(),
        ));
        rows.push((
            "TELECODER_NOTIFY".into(),
            notify_targets(&s.notify).join(" "),
        ));
        rows.push((
            "TELECODER_NOTIFY_SECRET".into(),
            set(s.notify.secret.is_some()).into(),
        ));
        rows.push((
            "TELECODER_NOTIFY_MAX_ATTEMPTS".into(),
            s.notify.max_attempts.to_string(),
        ));
        rows.push((
            "TELECODER_PUBLIC_URL".into(),
            s.notify.public_url.clone().unwrap_or_default(),
        ));
        rows.push(("database".into(), s.database_path().display().to_string()));
        rows
    }
}
