//! Cron schedules in a time zone, for scheduled watches.

use croner::parser::{CronParser, Seconds};
use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// A parsed cron expression (5 fields, or 6 with seconds) read in an IANA time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    zone: TimeZone,
    /// The expression as written, for messages.
    expression: String,
}

/// How many upcoming slots [`Schedule::check_spacing`] looks at.
const SPACING_SAMPLES: usize = 1000;

impl Schedule {
    /// Parses `expression` in `timezone` (`""` means UTC); the error says what is wrong.
    pub fn parse(expression: &str, timezone: &str) -> Result<Self, String> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expression.trim())
            .map_err(|err| format!("invalid cron expression '{expression}': {err}"))?;
        let zone = match timezone.trim() {
            "" | "UTC" | "utc" => TimeZone::UTC,
            name => {
                TimeZone::get(name).map_err(|err| format!("unknown time zone '{name}': {err}"))?
            }
        };
        let schedule = Self {
            cron,
            zone,
            expression: expression.trim().to_owned(),
        };
        if schedule.next_after(Timestamp::now()).is_none() {
            return Err(format!("cron expression '{expression}' never fires"));
        }
        Ok(schedule)
    }

    fn zoned(&self, at: Timestamp) -> Zoned {
        at.to_zoned(self.zone.clone())
    }

    /// The first slot strictly after `at`.
    pub fn next_after(&self, at: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_next_occurrence(&self.zoned(at), false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// Refuses a schedule whose slots come closer together than `min`, judged on its actual
    /// next slots (not on the text: `0,30 * * * * *` and `* * * * * *` both fire more than once
    /// a minute). A sub-minute gap always shows within the first minute that fires, so
    /// [`SPACING_SAMPLES`] slots (or a year) are enough for every minimum up to an hour.
    pub fn check_spacing(&self, min: std::time::Duration) -> Result<(), String> {
        let start = Timestamp::now();
        let horizon = start + jiff::SignedDuration::from_hours(24 * 366);
        let Some(mut previous) = self.next_after(start) else {
            return Ok(());
        };
        for _ in 0..SPACING_SAMPLES {
            let Some(next) = self.next_after(previous).filter(|next| *next < horizon) else {
                break;
            };
            let gap = next.duration_since(previous);
            if gap < jiff::SignedDuration::try_from(min).unwrap_or(jiff::SignedDuration::MAX) {
                return Err(format!(
                    "cron expression '{}' fires {} s apart ({} and {}); schedules must leave at \
                     least {} s between runs (TELECODER_SCHEDULE_MIN_INTERVAL_SECONDS)",
                    self.expression,
                    gap.as_secs(),
                    slot_key(previous),
                    slot_key(next),
                    min.as_secs()
                ));
            }
            previous = next;
        }
        Ok(())
    }

    /// The latest slot at or before `now` that is after `since`: the one run owed after
    /// downtime (never one per missed slot).
    pub fn due(&self, since: Timestamp, now: Timestamp) -> Option<Timestamp> {
        let slot = self
            .cron
            .find_previous_occurrence(&self.zoned(now), true)
            .ok()?
            .timestamp();
        (slot > since).then_some(slot)
    }
}

/// A slot as the event key of its run: RFC 3339 UTC with milliseconds.
pub fn slot_key(slot: Timestamp) -> String {
    slot.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Reads back a slot key or any RFC 3339 timestamp.
pub fn parse_instant(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn next_slot_in_a_time_zone() {
        let daily_9 = Schedule::parse("0 9 * * *", "Europe/Berlin").expect("valid");
        let next = daily_9
            .next_after(at("2026-01-10T12:00:00Z"))
            .expect("next");
        assert_eq!(slot_key(next), "2026-01-11T08:00:00.000Z");
    }

    #[test]
    fn downtime_owes_one_run_for_the_latest_slot() {
        let hourly = Schedule::parse("0 * * * *", "").expect("valid");
        let due = hourly.due(at("2026-01-10T03:00:00Z"), at("2026-01-10T07:30:00Z"));
        assert_eq!(
            due.map(slot_key).as_deref(),
            Some("2026-01-10T07:00:00.000Z")
        );
        assert_eq!(
            hourly.due(at("2026-01-10T07:00:00Z"), at("2026-01-10T07:30:00Z")),
            None
        );
    }

    #[test]
    fn spacing_is_judged_on_the_actual_slots() {
        let minute = std::time::Duration::from_secs(60);
        let spaced = |expression: &str| {
            Schedule::parse(expression, "Europe/Berlin")
                .expect("valid")
                .check_spacing(minute)
        };
        for too_often in [
            "* * * * * *",
            "*/30 * * * * *",
            "0,59 * * * * *",
            "0,1 */5 * * * *",
            // Every second, but only on New Year's Day: still every second when it fires.
            "* * * 1 1 *",
        ] {
            let err = spaced(too_often).expect_err(too_often);
            assert!(err.contains("at least 60 s"), "{err}");
        }
        for fine in [
            "* * * * *",
            "0 * * * * *",
            "30 */2 * * * *",
            "0 9 * * 1-5",
            "0 0 29 2 *",
        ] {
            assert_eq!(spaced(fine), Ok(()), "{fine}");
        }
        let err = spaced("*/10 * * * * *").expect_err("every 10 s");
        assert!(err.contains("10 s apart"), "{err}");
        let hourly = std::time::Duration::from_secs(3600);
        let every_minute = Schedule::parse("* * * * *", "").expect("valid");
        assert!(every_minute.check_spacing(hourly).is_err());
        let one_second = std::time::Duration::from_secs(1);
        assert_eq!(
            Schedule::parse("* * * * * *", "")
                .expect("valid")
                .check_spacing(one_second),
            Ok(())
        );
    }

    #[test]
    fn rejects_bad_expressions_and_zones() {
        assert!(Schedule::parse("every day", "").is_err());
        assert!(Schedule::parse("0 9 * * *", "Mars/Olympus").is_err());
        assert!(Schedule::parse("*/2 * * * * *", "UTC").is_ok());
        assert_eq!(
            slot_key(at("2026-01-10T07:00:00Z")),
            "2026-01-10T07:00:00.000Z"
        );
        assert!(parse_instant("2026-01-10T07:00:00.000Z").is_some());
    }
}
