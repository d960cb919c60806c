//! The library's error type. Each variant says which kind of failure it is, so the HTTP layer
//! and the CLI map it to a status or exit code in exactly one place.

/// Everything the actor system reports to its callers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller asked for something invalid (bad field, bad filter, unknown repo path).
    #[error("{0}")]
    Invalid(String),
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (rerun of a running session).
    #[error("{0}")]
    Conflict(String),
    /// The thing existed but is gone for good (a collected workspace).
    #[error("{0}")]
    Gone(String),
    /// An actor could not be reached in time; the request may be retried.
    #[error("{0}")]
    Unavailable(String),
    /// A service we depend on (GitHub) refused or failed.
    #[error("{0}")]
    Upstream(String),
    /// The database failed underneath us.
    #[error("database error: {0}")]
    Store(#[from] rusqlite::Error),
    /// Anything else that is our fault, not the caller's.
    #[error("{0}")]
    Internal(String),
}

impl From<rusqlite_migration::Error> for Error {
    fn from(err: rusqlite_migration::Error) -> Self {
        Self::Internal(format!("database migration failed: {err}"))
    }
}

/// A name no variant has is the caller's mistake.
impl From<crate::domain::UnknownName> for Error {
    fn from(err: crate::domain::UnknownName) -> Self {
        Self::Invalid(err.to_string())
    }
}

impl<T> From<ractor::RactorErr<T>> for Error {
    fn from(err: ractor::RactorErr<T>) -> Self {
        Self::Unavailable(format!("actor unavailable: {err}"))
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
