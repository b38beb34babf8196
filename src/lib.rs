//! connect-usage: reports pay-as-you-go usage (the QT schema) from a vendor's systems to
//! CloudBlue Connect, as a Connect extension.
//!
//! The product stands on three crates of the workspace: `connect-client` (Connect's REST API),
//! `connect-eaas` (the extension runner) and, behind the default `sandbox` feature,
//! `connect-sandbox` (the emulator of Connect that the demo and the tests run against).
//!
//! - [`usage`]: the QT reporting pipeline, from the vendor's usage source to submitted files.
//! - [`handlers`]: the extension's handlers (the monthly report schedule, the usage file
//!   lifecycle), declared with the runner's macros.
//! - [`descriptor`]: the built-in `extension.json`.
//! - [`story`]: the demo's story on an embedded sandbox (what `connect-usage demo` tells).
//! - [`metrics_file`]: a run's figures written for node_exporter's textfile collector.
//! - [`replace_file`]: replacing a file whole (the figures, the workbooks).
//! - [`signal`]: waiting for the process's stop signal (Ctrl-C, SIGTERM).
//! - [`memory`]: how the process takes memory from the kernel.

pub mod descriptor;
pub mod handlers;
pub mod memory;
pub mod metrics_file;
pub mod replace_file;
pub mod signal;
#[cfg(feature = "sandbox")]
pub mod story;
pub mod usage;

pub use descriptor::builtin_descriptor;

/// This crate's version: the extension's (`extension.json` says the same).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
