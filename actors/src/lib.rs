//! TeleCoder's actor system.
//!
//! A root [`supervisor::Supervisor`] owns one [`store::StoreActor`] (the only SQLite writer), a
//! [`queue::SessionQueue`] (the run queue, with one [`session_actor::SessionActor`] per running
//! session) and a [`watch_supervisor::WatchSupervisor`] (one [`watch_actor::WatchActor`] per
//! active watch, and event routing). [`Daemon`] is the handle the HTTP layer and the CLI use:
//! it validates requests, runs store work, and asks the actors what only they know, with
//! timeouts. Everything is scoped to one daemon instance; nothing is found by a global name.

pub mod actor;
pub mod admin;
pub mod approvals;
pub mod bus;
pub mod context;
pub mod conversation;
pub mod current;
pub mod daemon;
#[macro_use]
pub mod domain;
pub mod error;
pub mod metrics;
pub mod notify;
pub mod process;
pub mod publish;
pub mod queue;
pub mod registry;
pub mod requests;
pub mod runtime;
pub mod session_actor;
pub mod settings;
pub mod store;
pub mod supervisor;
pub mod timer;
pub mod watch_actor;
pub mod watch_supervisor;
pub mod workspace;
pub mod workspaces;

pub use daemon::Daemon;
pub use error::{Error, Result};
pub use settings::Settings;
