//! The extension's handlers, each declared next to its function through the
//! [registry](crate::registry) macros.
//!
//! - [`report`]: the monthly schedule that runs the QT pipeline.

pub mod report;
