//! TeleCoder's actor system.
//!
//! A root [`supervisor::Supervisor`] owns one [`store::StoreActor`] (the only SQLite writer) and
//! one [`session_actor::SessionActor`] per running session. [`Daemon`] is the handle the HTTP
//! layer and the CLI use: it turns requests into actor messages with timeouts.

pub mod admin;
pub mod bus;
pub mod daemon;
pub mod domain;
pub mod error;
pub mod metrics;
pub mod notify;
pub mod process;
pub mod publish;
pub mod requests;
pub mod runtime;
pub mod session_actor;
pub mod settings;
pub mod store;
pub mod supervisor;
pub mod watch_actor;
pub mod workspace;

pub use daemon::Daemon;
pub use error::{Error, Result};
pub use settings::Settings;
