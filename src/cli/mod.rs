//! The commands, one file each, and what they share: exit codes and errors.

pub mod report;
pub mod sandbox;

/// Everything went as asked.
pub const EXIT_OK: u8 = 0;
/// Failure while running.
pub const EXIT_FAILURE: u8 = 1;
/// Bad arguments or configuration.
pub const EXIT_CONFIG: u8 = 2;
/// A report that did only part of the work (records not sent, files not reported).
pub const EXIT_PARTIAL: u8 = 3;

/// An error with the exit code it deserves.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

pub fn config_error(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: EXIT_CONFIG,
        error: error.into(),
    }
}

pub fn run_error(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: EXIT_FAILURE,
        error: error.into(),
    }
}
