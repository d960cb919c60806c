//! Domain types: plain data and pure rules, free of I/O so they can be tested in isolation.

/// Declares an enum stored and shown by name with each variant's name written once, beside
/// the variant: `ALL`, `as_str`, `Display`, serde by name, and a `FromStr` (surrounding blanks
/// ignored) whose error lists the names it knows.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        $vis enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub const ALL: [Self; [$($text),+].len()] = [$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::domain::UnknownName;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .into_iter()
                    .find(|known| known.as_str() == text.trim())
                    .ok_or_else(|| $crate::domain::UnknownName {
                        what: $what,
                        text: text.to_owned(),
                        expected: &[$($text),+],
                    })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        /// Read through `FromStr`, so a request body with an unknown name is refused with the
        /// same message as a query parameter or a CLI flag.
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A name no variant of a [`named_enum!`] has.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{text}' (expected {})", one_of(.expected))]
pub struct UnknownName {
    pub what: &'static str,
    pub text: String,
    pub expected: &'static [&'static str],
}

impl From<UnknownName> for String {
    fn from(err: UnknownName) -> String {
        err.to_string()
    }
}

/// `a, b or c`.
pub(crate) fn one_of(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

pub mod approval;
pub mod conversation;
pub mod event;
pub mod ids;
pub mod outcome;
pub mod policy;
pub mod session;
pub mod time;

pub use approval::{Approval, ApprovalFilter, ApprovalStatus};
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{de::DeserializeOwned, Serialize};
    use std::fmt::Debug;
    use std::str::FromStr;

    /// serde's name of every variant is the name `named_enum!` gives it, both ways.
    fn same_names<T>(all: &[T], as_str: fn(T) -> &'static str)
    where
        T: Copy + Debug + PartialEq + Serialize + DeserializeOwned + FromStr,
    {
        for &variant in all {
            let name = as_str(variant);
            assert_eq!(serde_json::to_value(variant).ok(), Some(name.into()));
            assert_eq!(serde_json::from_value::<T>(name.into()).ok(), Some(variant));
            assert_eq!(name.parse::<T>().ok(), Some(variant));
        }
    }

    #[test]
    fn serde_names_are_the_declared_names() {
        same_names(&SessionStatus::ALL, SessionStatus::as_str);
        same_names(&FailureKind::ALL, FailureKind::as_str);
        same_names(&ApprovalStatus::ALL, ApprovalStatus::as_str);
        same_names(&approval::Verdict::ALL, approval::Verdict::as_str);
        same_names(&WatchKind::ALL, WatchKind::as_str);
        same_names(&WatchStatus::ALL, WatchStatus::as_str);
        same_names(&PolicyMode::ALL, PolicyMode::as_str);
        same_names(&PermissionMode::ALL, PermissionMode::as_str);
        same_names(&WorkspaceWritePolicy::ALL, WorkspaceWritePolicy::as_str);
        same_names(&EventKind::ALL, EventKind::as_str);
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let err = "yolo".parse::<PolicyMode>().err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("unknown policy 'yolo' (expected locked, observe, standard or ask)")
        );
        assert_eq!(" ask ".parse::<PolicyMode>().ok(), Some(PolicyMode::Ask));
    }
}
