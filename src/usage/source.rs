//! Where usage comes from: the [`UsageSource`] abstraction and the choice between the Vendor
//! API ([`super::source_http`]) and exported files ([`super::source_file`]).
//!
//! A source yields batches of [`SourceItem`]s: records, and records it could not read (never
//! dropped). An `Err` is a failure of the source itself (unreachable, refused, unreadable
//! file) and ends the run.

use std::fmt;
use std::path::PathBuf;

use futures_util::stream::BoxStream;

use super::period::Period;
use super::record::SourceItem;
use super::source_file::FileSource;
use super::source_http::VendorApiSource;
use crate::secret::Secret;

/// A failure of the source as a whole.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}: {reason}")]
    File { path: String, reason: String },
    #[error("{path}: {reason}")]
    Format { path: String, reason: String },
    #[error("vendor usage API {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("bad usage source: {0}")]
    Config(String),
}

/// A batch of items, or the source's failure.
pub type Batches = BoxStream<'static, Result<Vec<SourceItem>, SourceError>>;

/// A source of a vendor's usage records.
pub trait UsageSource: Send + Sync + fmt::Debug {
    /// What the source is, for logs and summaries (never with secrets).
    fn describe(&self) -> String;

    /// The records of `period`, in batches.
    fn records(&self, period: Period) -> Batches;
}

/// Which source to use, as configured by `USAGE_SOURCE` (and `USAGE_SOURCE_TOKEN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// The Vendor API at this URL, with this bearer token.
    Http { url: String, token: Secret },
    /// A CSV or JSON Lines file.
    File(PathBuf),
}

impl SourceSpec {
    /// `http(s)://...` is the Vendor API, anything else a file path.
    pub fn parse(source: &str, token: Option<Secret>) -> Result<SourceSpec, SourceError> {
        let source = source.trim();
        if source.is_empty() {
            return Err(SourceError::Config(
                "USAGE_SOURCE is empty: give a Vendor API URL or a file path".into(),
            ));
        }
        let lower = source.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            Ok(SourceSpec::Http {
                url: source.to_owned(),
                token: token.unwrap_or_default(),
            })
        } else if lower.contains("://") {
            Err(SourceError::Config(format!(
                "{source:?}: only http(s) URLs and file paths are usage sources"
            )))
        } else {
            Ok(SourceSpec::File(PathBuf::from(source)))
        }
    }

    /// Opens the source.
    pub fn open(&self) -> Result<Box<dyn UsageSource>, SourceError> {
        Ok(match self {
            SourceSpec::Http { url, token } => Box::new(VendorApiSource::new(url, token.clone())?),
            SourceSpec::File(path) => Box::new(FileSource::new(path.clone())?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_the_api_and_paths_are_files() {
        assert!(matches!(
            SourceSpec::parse("https://vendor.example/usage", Some(Secret::new("t"))),
            Ok(SourceSpec::Http { .. })
        ));
        assert_eq!(
            SourceSpec::parse("./usage-2024-04.csv", None).ok(),
            Some(SourceSpec::File("./usage-2024-04.csv".into()))
        );
        assert!(SourceSpec::parse("ftp://x/y", None).is_err());
        assert!(SourceSpec::parse("  ", None).is_err());
    }
}
