//! connect-usage: reports pay-as-you-go usage (the QT schema) from a vendor's systems to
//! CloudBlue Connect, and ships a local emulator of the Connect API to run and test it against.
//!
//! - [`connect`]: the Connect REST client (auth, RQL queries, paging, retries, usage files).
//! - [`rql`]: RQL expressions, rendered by the client and parsed by the sandbox.
//! - [`sandbox`]: the emulator of Connect's REST API used by tests, demos and benchmarks.
//! - [`usage`]: the QT reporting pipeline, from the vendor's usage source to submitted files.
//! - [`handlers`]: the extension's handlers (the monthly report schedule, the usage file
//!   lifecycle).
//! - [`demo`]: the whole story on an embedded sandbox (`connect-usage demo`).
//! - [`registry`]: the extension's declarations (handlers, schedulables, variables).
//! - [`runner`]: the events runner speaking Connect's EaaS websocket protocol.
//! - [`error_text`]: an error and its causes in one line, each said once.
//! - [`log_text`]: the readable log line.
//! - [`signal`]: waiting for the process's stop signal (Ctrl-C, SIGTERM).
//! - [`memory`]: how the process takes memory from the kernel.
//! - [`metrics`]: the Prometheus families and their exposition; [`probe_server`]: `/metrics`,
//!   `/healthz` and `/readyz` for an operator's monitoring.

pub mod connect;
pub mod demo;
pub mod error_text;
pub mod handlers;
pub mod log_text;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod probe_server;
pub mod registry;
pub mod rql;
pub mod runner;
pub mod sandbox;
pub mod secret;
pub mod signal;
pub mod usage;

/// This crate's version, reported to the platform as the runner's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
