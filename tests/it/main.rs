//! End-to-end tests: the real daemon binary, real acpx, the project's mock ACP agent, real
//! SQLite files and real git repositories.

mod api;
mod chaos;
mod cli;
mod lifecycle;
mod ops;
mod publish;
mod recovery;
mod sec_edge;
mod security;
mod streaming;
mod support;
mod watches;
mod webhooks;
