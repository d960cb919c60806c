//! End-to-end tests: the real daemon binary, real acpx, the project's mock ACP agent, real
//! SQLite files and real git repositories.

mod api;
mod chaos;
mod cli;
mod hooks;
mod lifecycle;
mod ops;
mod publish;
mod recovery;
mod security;
mod streaming;
mod support;
mod watches;
mod webhooks;
mod workspaces;
