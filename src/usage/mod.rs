//! QT usage reporting: read a month of usage from the vendor, check it, group it per
//! distribution contract and product, and report each group to Connect exactly once.

pub mod acknowledge;
pub mod aggregate;
pub mod catalog;
pub mod config;
pub mod coverage;
pub mod decide;
#[cfg(feature = "sandbox")]
pub mod export;
pub mod identity;
pub mod layout;
pub mod locks;
pub mod metrics;
pub mod pipeline;
pub mod record;
pub mod reported;
pub mod row;
pub mod sort;
pub mod source;
pub mod source_file;
pub mod source_http;
pub mod source_parquet;
pub mod source_postgres;
pub mod source_url;
pub mod summary;
pub mod validate;
mod vendor_http;
pub mod workbook;
pub mod workdir;

pub use aggregate::Aggregation;
pub use connect_client::month::{Month, MonthError};
pub use pipeline::{PollPolicy, ReportOptions, RunError, Step, report};
pub use record::{Position, Quantity, Rejection, SourceItem, VendorRecord};
pub use source::{SourceError, SourceSpec, UsageSource};
pub use summary::{Conflict, FileAction, FileFailure, FileReport, RunResult, RunSummary};
