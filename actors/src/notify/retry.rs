//! When to try a delivery again: what an answer means (accepted, try later, give up) and how
//! long to wait (exponential backoff with jitter, at least what `Retry-After` asks). Pure.

use std::time::{Duration, SystemTime};

/// The first retry waits about this long; each further one doubles it.
const BASE: Duration = Duration::from_secs(1);
/// No backoff step grows beyond this.
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// A receiver's `Retry-After` is honoured up to this (a hostile or broken one cannot park a
/// notification for days).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: delivered.
    Accepted,
    /// Worth another attempt (network error, timeout, 5xx, 408, 425, 429), after at least
    /// the wait the receiver asked for.
    Retry { retry_after: Option<Duration> },
    /// The receiver refused for good (other 4xx, redirects): retrying would repeat it.
    Refused,
}

/// Judges an HTTP answer. `retry_after` is the raw `Retry-After` header, if any.
pub fn judge(status: u16, retry_after: Option<&str>, now: SystemTime) -> Verdict {
    match status {
        200..=299 => Verdict::Accepted,
        408 | 425 | 429 | 500..=599 => Verdict::Retry {
            retry_after: retry_after.and_then(|value| parse_retry_after(value, now)),
        },
        _ => Verdict::Refused,
    }
}

/// `Retry-After` as seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form servers send.
fn httpdate(value: &str) -> Option<SystemTime> {
    let text = value.split_once(", ").map_or(value, |(_, rest)| rest);
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [day, month, year, clock, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)?
        + 1;
    let stamp = format!("{year}-{month:02}-{day:0>2}T{clock}Z");
    humantime::parse_rfc3339(&stamp).ok()
}

/// How long to wait after the `attempts`-th failed attempt: `BASE × 2^(attempts-1)`, capped,
/// with "equal jitter" (half fixed, half random) so receivers that failed together are not
/// hit together again; never less than the receiver's `Retry-After` (capped).
pub fn backoff(attempts: u32, retry_after: Option<Duration>, random: f64) -> Duration {
    let exponent = attempts.saturating_sub(1).min(20);
    let step = BASE.saturating_mul(1u32 << exponent).min(MAX_BACKOFF);
    let jittered = step / 2 + step.mul_f64(random.clamp(0.0, 1.0) / 2.0);
    jittered.max(retry_after.unwrap_or_default().min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_judged_like_receivers_mean_them() {
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(judge(204, None, now), Verdict::Accepted);
        assert_eq!(judge(500, None, now), Verdict::Retry { retry_after: None });
        assert_eq!(
            judge(429, Some("7"), now),
            Verdict::Retry {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(judge(404, None, now), Verdict::Refused);
        assert_eq!(judge(301, None, now), Verdict::Refused);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = humantime::parse_rfc3339("2026-03-16T04:00:00Z").expect("time");
        assert_eq!(
            parse_retry_after("Mon, 16 Mar 2026 04:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Mon, 16 Mar 2026 03:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        for attempts in 1..=12 {
            let step = BASE.saturating_mul(1 << (attempts - 1)).min(MAX_BACKOFF);
            let low = backoff(attempts, None, 0.0);
            let high = backoff(attempts, None, 1.0);
            assert_eq!(low, step / 2);
            assert_eq!(high, step);
        }
        assert_eq!(backoff(40, None, 1.0), MAX_BACKOFF);
        assert_eq!(
            backoff(1, Some(Duration::from_secs(30)), 0.5),
            Duration::from_secs(30)
        );
        assert_eq!(
            backoff(1, Some(Duration::from_secs(86_400)), 0.5),
            MAX_RETRY_AFTER
        );
    }
}
