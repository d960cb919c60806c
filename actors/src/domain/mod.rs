//! Domain types: plain data and pure rules, free of I/O so they can be tested in isolation.

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
pub use ids::SessionId;
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
