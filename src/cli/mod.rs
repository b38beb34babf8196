//! The commands, one file each, and what they share: exit codes and errors.

#[cfg(feature = "sandbox")]
pub mod demo;
pub mod describe;
pub mod report;
pub mod run;
#[cfg(feature = "sandbox")]
pub mod sandbox;

use std::sync::{Arc, Mutex};

use connect_eaas::runner::log_ship::LogShipper;
use connect_eaas::runner::{LogLevelHook, LogLevels};
use tracing_subscriber::EnvFilter;

/// Everything went as asked.
pub const EXIT_OK: u8 = 0;
/// Failure while running.
pub const EXIT_FAILURE: u8 = 1;
/// Bad arguments or configuration.
pub const EXIT_CONFIG: u8 = 2;
/// A report that did only part of the work (records not sent, files not reported).
pub const EXIT_PARTIAL: u8 = 3;
/// The runner stopped with results the platform did not get (it delivers those tasks again).
pub const EXIT_UNDELIVERED: u8 = 4;

/// The extension's log targets: this crate's and its REST client's. The platform's
/// `log_level` applies to them (the runner's own, `connect_eaas`, follow `runner_log_level`),
/// locally and in what is shipped to Connect.
pub const EXTENSION_TARGETS: [&str; 2] = ["connect_usage", "connect_client"];

/// The log levels, changeable while the process runs.
pub struct LogControl {
    /// Replaces the local output's filter; false when it could not.
    pub reload_local: Arc<dyn Fn(EnvFilter) -> bool + Send + Sync>,
    /// The filter given on the command line or in RUST_LOG.
    pub base: String,
    /// RUST_LOG was set: a person asked for these levels, the platform does not change them
    /// (in the local output; records shipped to Connect follow the platform).
    pub pinned: bool,
    /// Sends records to Connect's log service once the platform gives a key.
    pub shipper: LogShipper,
}

impl LogControl {
    /// The hook that applies the platform's log levels: the runner's own for
    /// `connect_eaas`, the extension's for `connect_usage` and its REST client (`connect_client`).
    pub fn platform_hook(&self) -> Option<LogLevelHook> {
        if self.pinned {
            return None;
        }
        let reload_local = self.reload_local.clone();
        let base = self.base.clone();
        let current = Arc::new(Mutex::new(LogLevels::default()));
        Some(Arc::new(move |levels: &LogLevels| {
            let mut cur = current.lock().unwrap_or_else(|e| e.into_inner());
            if levels.runner.is_some() {
                cur.runner = levels.runner.clone();
            }
            if levels.extension.is_some() {
                cur.extension = levels.extension.clone();
            }
            let mut directives = base.clone();
            if let Some(l) = &cur.extension {
                for target in EXTENSION_TARGETS {
                    directives.push_str(&format!(",{target}={l}"));
                }
            }
            if let Some(l) = &cur.runner {
                directives.push_str(&format!(",connect_eaas={l}"));
            }
            match EnvFilter::try_new(&directives) {
                Ok(filter) => {
                    if reload_local(filter) {
                        tracing::info!(filter = %directives, "log levels set by the platform");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot apply the platform's log levels"),
            }
        }))
    }
}

/// An error with the exit code it deserves.
pub struct ExitFailure {
    pub code: u8,
    pub error: anyhow::Error,
}

pub fn config_error(error: impl Into<anyhow::Error>) -> ExitFailure {
    ExitFailure {
        code: EXIT_CONFIG,
        error: error.into(),
    }
}

pub fn run_error(error: impl Into<anyhow::Error>) -> ExitFailure {
    ExitFailure {
        code: EXIT_FAILURE,
        error: error.into(),
    }
}
