//! The extension's handlers, each declared next to its function through the
//! [registry](crate::registry) macros.
//!
//! - [`report`]: the monthly schedule that runs the QT pipeline.
//! - [`lifecycle`]: what happens when one of the extension's usage files changes status.

pub mod lifecycle;
pub mod report;
