//! Domain types: plain data and pure rules, free of I/O so they can be tested in isolation.

/// Gives an enum stored and shown by name its names, once: `as_str`, and a `FromStr` whose
/// error lists the names it knows.
macro_rules! names {
    ($what:literal, $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($text => Ok(Self::$variant),)+
                    other => Err(format!(
                        "unknown {} '{other}' (expected {})",
                        $what,
                        $crate::domain::one_of(&[$($text),+])
                    )),
                }
            }
        }
    };
}

/// `a, b or c`.
pub(crate) fn one_of(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Lets serde read these enums through their `FromStr`, so a request body with an unknown
/// name is refused with the same message as a query parameter or a CLI flag.
macro_rules! deserialize_by_name {
    ($($name:ty),+) => {$(
        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(text: String) -> Result<Self, Self::Error> {
                text.parse().map_err(|err| format!("{err}"))
            }
        }
    )+};
}

deserialize_by_name!(PolicyMode, WatchKind, WatchStatus);

pub mod event;
pub mod ids;
pub mod outcome;
pub mod policy;
pub mod session;
pub mod time;

pub use event::{Event, EventKind};
pub use ids::{SessionId, WatchId};
pub use outcome::Outcome;
pub use policy::{PermissionMode, Policy, PolicyMode, WorkspaceWritePolicy};
pub use session::{
    AgentFacts, FailureKind, NewSession, Session, SessionFilter, SessionStatus, StatusFilter,
    TokenUsage,
};
pub mod prompt;
pub mod redact;
pub mod repo;
pub mod schedule;
pub mod watch;

pub use watch::{CiEvent, PrEvent, Triggered, Watch, WatchEvent, WatchKind, WatchRun, WatchStatus};
