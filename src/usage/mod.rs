//! QT usage reporting: read a month of usage from the vendor, check it, group it per
//! distribution contract and product, and report each group to Connect exactly once.

pub mod acknowledge;
pub mod catalog;
pub mod config;
pub mod identity;
pub mod locks;
pub mod period;
pub mod pipeline;
pub mod record;
pub mod reported;
pub mod source;
pub mod source_file;
pub mod source_http;
pub mod summary;
pub mod validate;
mod vendor_http;
pub mod workbook;

pub use period::Period;
pub use pipeline::{PollPolicy, ReportOptions, RunError, report};
pub use record::{Position, Quantity, Rejection, SourceItem, UsageRecord};
pub use source::{SourceError, SourceSpec, UsageSource};
pub use summary::{FileAction, FileReport, RunResult, RunSummary};
