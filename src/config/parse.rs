//! Reading one variable: the shapes settings take (flags, positive numbers, durations with
//! units, sizes), each failing with an error that names the variable.

use std::time::Duration;

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid {variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

pub(super) fn invalid(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        message: message.into(),
    }
}

/// Reads variables; tests pass a map instead of the process environment.
pub(super) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(super) fn value(lookup: Lookup<'_>, name: &str) -> Option<String> {
    lookup(name).filter(|v| !v.trim().is_empty())
}

pub(super) fn number<T: std::str::FromStr + PartialOrd + Default>(
    lookup: Lookup<'_>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    match value(lookup, name) {
        None => Ok(default),
        Some(text) => match text.trim().parse::<T>() {
            Ok(n) if n > T::default() => Ok(n),
            _ => Err(invalid(
                name,
                format!("'{text}' is not a positive whole number"),
            )),
        },
    }
}

/// A positive whole number no larger than `max`.
pub(super) fn bounded<T: std::str::FromStr + PartialOrd + Default + std::fmt::Display>(
    lookup: Lookup<'_>,
    name: &'static str,
    default: T,
    max: T,
) -> Result<T, ConfigError> {
    let n = number(lookup, name, default)?;
    if n > max {
        return Err(invalid(
            name,
            format!("{n} is more than the maximum, {max}"),
        ));
    }
    Ok(n)
}

/// A duration such as `14d`, `36h`, `90m`, `45s`, `2w`, or a number of seconds.
pub(super) fn duration(
    lookup: Lookup<'_>,
    name: &'static str,
    default: Duration,
    min: Duration,
) -> Result<Duration, ConfigError> {
    let Some(text) = value(lookup, name) else {
        return Ok(default);
    };
    let trimmed = text.trim().to_ascii_lowercase();
    let digits = trimmed.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = match &trimmed[digits.len()..] {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 24 * 3600,
        "w" => 7 * 24 * 3600,
        _ => 0,
    };
    let seconds = digits
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|_| unit > 0)
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| {
            invalid(
                name,
                format!("'{text}' is not a duration (a number with s, m, h, d or w, e.g. 14d)"),
            )
        })?;
    let duration = Duration::from_secs(seconds);
    if duration < min {
        return Err(invalid(
            name,
            format!("{text} is shorter than the minimum, {}s", min.as_secs()),
        ));
    }
    Ok(duration)
}

/// A positive size such as `20G`, `512MiB`, `1500000000`; unset means none.
pub(super) fn size(lookup: Lookup<'_>, name: &'static str) -> Result<Option<u64>, ConfigError> {
    let Some(text) = value(lookup, name) else {
        return Ok(None);
    };
    let trimmed = text.trim().to_ascii_lowercase();
    let digits = trimmed.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit: u64 = match trimmed[digits.len()..]
        .trim_end_matches("ib")
        .trim_end_matches('b')
    {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => 0,
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0 && unit > 0)
        .and_then(|n| n.checked_mul(unit))
        .map(Some)
        .ok_or_else(|| {
            invalid(
                name,
                format!("'{text}' is not a positive size (bytes, or a number with K, M, G or T, e.g. 20G)"),
            )
        })
}

pub(super) fn flag(lookup: Lookup<'_>, name: &'static str) -> Result<bool, ConfigError> {
    match value(lookup, name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(true),
        Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(false),
        Some(v) => Err(invalid(name, format!("'{v}' is not true or false"))),
    }
}
