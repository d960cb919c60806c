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
}

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
        let schedule = Self { cron, zone };
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
