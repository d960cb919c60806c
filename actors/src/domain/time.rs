//! Timestamps as the contract spells them: RFC 3339 UTC with milliseconds, `""` when unset.

use std::time::{Duration, SystemTime};

/// The current time as `2026-03-16T04:00:02.000Z`.
pub fn now() -> String {
    format(SystemTime::now())
}

/// Formats a point in time the way every record field expects it.
pub fn format(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// A timestamp `age` ago; used for the stale-heartbeat cut-off. Saturates at the epoch.
pub fn ago(age: Duration) -> String {
    format(
        SystemTime::now()
            .checked_sub(age)
            .unwrap_or(SystemTime::UNIX_EPOCH),
    )
}

/// Parses a stored timestamp; `None` for `""` or anything unreadable.
pub fn parse(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds_and_zulu() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_773_633_602_000);
        assert_eq!(format(at), "2026-03-16T04:00:02.000Z");
    }

    #[test]
    fn timestamps_sort_lexically_in_time_order() {
        let earlier = ago(Duration::from_secs(30));
        let later = now();
        assert!(earlier < later);
        assert!(parse(&later).is_some());
        assert!(parse("").is_none());
    }
}
