//! connect-eaas: a runner for CloudBlue Connect extensions in Rust.
//!
//! Connect runs an extension's code where the vendor hosts it: the extension holds a websocket
//! session with Connect's events platform ("EaaS") and answers the tasks it receives (usage
//! file and request events, schedules, interactive calls). This crate is that side of the
//! protocol, as Connect's official Python runner speaks it, with nothing of any particular
//! extension in it:
//!
//! - [`registry`]: what an extension declares, next to each handler, with the
//!   [`event_handler!`], [`schedulable!`], [`variable!`], [`on_startup!`] and [`on_shutdown!`]
//!   macros; collected once at start, duplicates refused.
//! - [`task`]: what a handler is given ([`TaskContext`]) and answers ([`Outcome`],
//!   [`HandlerError`]).
//! - [`protocol`]: the frames on the wire.
//! - [`runner`]: the machinery ([`Runner`], [`RunnerHandle`]): two sessions, reconnection as an
//!   explicit policy, results delivered once across reconnects, log records shipped to
//!   Connect's log service, metrics.
//! - [`probe_server`]: `/metrics`, `/healthz` and `/readyz` for an operator's monitoring.
//! - [`logging`] and [`log_text`]: the secret-safe log filter and the readable log line.
//!
//! See the crate's README for a minimal extension and how this runner differs from the
//! official one.

pub mod log_text;
pub mod logging;
pub mod probe_server;
pub mod protocol;
pub mod registry;
pub mod runner;
pub mod task;

pub use registry::{ExtensionDescriptor, Registry};
pub use runner::{Runner, RunnerConfig, RunnerHandle};
pub use task::{HandlerError, HandlerState, Outcome, TaskContext, Variables};

/// This crate's version, reported to the platform as the runner's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
