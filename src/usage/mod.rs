//! QT usage reporting: read a month of usage from the vendor, check it, group it per
//! distribution contract and product, and report each group to Connect exactly once.

pub mod period;
pub mod record;
pub mod source;
pub mod source_file;
pub mod source_http;

pub use period::Period;
pub use record::{Position, Quantity, Rejection, SourceItem, UsageRecord};
pub use source::{SourceError, SourceSpec, UsageSource};
