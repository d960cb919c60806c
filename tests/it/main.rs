//! End-to-end tests: the real daemon binary, either runtime (native, or the real acpx; see
//! `support::runtime`), the project's mock ACP agent, real SQLite files and real git
//! repositories.

mod api;
mod chaos;
mod cli;
mod cli_compat;
mod converse;
mod dashboard;
mod first_hour;
mod hooks;
mod lifecycle;
mod native;
mod notify;
mod ops;
mod publish;
mod recovery;
mod repo_paths;
mod sec_agent;
mod sec_edge;
mod sec_proc;
mod security;
mod streaming;
mod support;
mod watches;
mod webhooks;
mod workspaces;
