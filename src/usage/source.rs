//! Where usage comes from: the [`UsageSource`] abstraction and the choice, from
//! `USAGE_SOURCE`, between the Vendor API ([`super::source_http`]), export files
//! ([`super::source_file`], Parquet by [`super::source_parquet`]), export files behind a URL
//! ([`super::source_url`]) and a PostgreSQL database ([`super::source_postgres`]).
//!
//! A source yields batches of [`SourceItem`]s: records, and records it could not read (never
//! dropped). An `Err` is a failure of the source itself (unreachable, refused, unreadable
//! file) and ends the run.
//!
//! A file path or file URL may name the month: `{period}` (`YYYY-MM`), `{year}` and `{month}`
//! are filled in with the month being reported, so one setting serves every month.

use std::fmt;
use std::path::PathBuf;

use futures_util::stream::BoxStream;

use super::record::SourceItem;
use super::source_file::FileSource;
use super::source_http::VendorApiSource;
use super::source_postgres::{PostgresSource, PostgresSpec};
use super::source_url::{FileUrlSource, shown_template};
use connect_client::month::Month;
use connect_client::secret::Secret;

/// A failure of the source as a whole.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}: {reason}")]
    File { path: String, reason: String },
    #[error("{path}: {reason}")]
    Format { path: String, reason: String },
    #[error("vendor usage API {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("{url}: {reason}")]
    Download { url: String, reason: String },
    #[error("PostgreSQL {target}: {reason}")]
    Database { target: String, reason: String },
    #[error("bad usage source: {0}")]
    Config(String),
    /// The source refused the credentials it was given (a token, a password): a setting to
    /// fix, not a failure to retry.
    #[error("{source_name}: {reason}")]
    Refused { source_name: String, reason: String },
}

impl SourceError {
    /// A setting is wrong (the source's address or form, a token or password it refuses):
    /// a person must change the configuration before a run can succeed.
    pub fn is_configuration(&self) -> bool {
        matches!(self, SourceError::Config(_) | SourceError::Refused { .. })
    }
}

/// A batch of items, or the source's failure.
pub type Batches = BoxStream<'static, Result<Vec<SourceItem>, SourceError>>;

/// A source of a vendor's usage records.
pub trait UsageSource: Send + Sync + fmt::Debug {
    /// What the source is, for logs and summaries (never with secrets).
    fn describe(&self) -> String;

    /// The records of `period`, in batches.
    fn records(&self, period: Month) -> Batches;
}

pub use super::config::{PGPASSWORD, USAGE_QUERY, USAGE_SOURCE_TOKEN};

/// The extensions of export files, which make an http(s) URL a file rather than the Vendor API.
pub const FILE_EXTENSIONS: [&str; 5] = ["csv", "jsonl", "ndjson", "json", "parquet"];

/// Which source to use, as configured by `USAGE_SOURCE` (and `USAGE_SOURCE_TOKEN`,
/// `USAGE_QUERY`, `PGPASSWORD`). `Debug` shows URLs without their query (a signed link's
/// secret) and user info.
#[derive(Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// The Vendor API at this URL, with this bearer token.
    Http { url: String, token: Secret },
    /// A CSV, JSON Lines, JSON or Parquet file; the path may name the month ([`fill_in`]).
    File(PathBuf),
    /// An export file behind an http(s) URL (which may name the month), with an optional
    /// bearer token.
    FileUrl { url: String, token: Secret },
    /// A PostgreSQL database and the query that reads a month from it.
    Postgres(PostgresSpec),
}

impl fmt::Debug for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Http { url, token } => f
                .debug_struct("Http")
                .field("url", &shown_template(url))
                .field("token", token)
                .finish(),
            SourceSpec::File(path) => f.debug_tuple("File").field(path).finish(),
            SourceSpec::FileUrl { url, token } => f
                .debug_struct("FileUrl")
                .field("url", &shown_template(url))
                .field("token", token)
                .finish(),
            SourceSpec::Postgres(spec) => f.debug_tuple("Postgres").field(spec).finish(),
        }
    }
}

impl SourceSpec {
    /// Reads `USAGE_SOURCE`: `postgres(ql)://` is a database; an http(s) URL whose path ends in
    /// an export file's extension is a file to download, any other http(s) URL the Vendor API;
    /// anything else a file path. `lookup` gives the other variables.
    pub fn parse(
        source: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<SourceSpec, SourceError> {
        let source = source.trim();
        if source.is_empty() {
            return Err(SourceError::Config(
                "USAGE_SOURCE is empty: give a Vendor API URL, a file path or a postgres:// URL"
                    .into(),
            ));
        }
        let token = || {
            lookup(USAGE_SOURCE_TOKEN)
                .filter(|t| !t.is_empty())
                .map(Secret::new)
                .unwrap_or_default()
        };
        let lower = source.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return Ok(SourceSpec::Postgres(PostgresSpec::parse(source, &lookup)?));
        }
        if lower.starts_with("http://") || lower.starts_with("https://") {
            check_template(source)?;
            let path = lower.split(['?', '#']).next().unwrap_or_default();
            let is_file = path
                .rsplit_once('.')
                .is_some_and(|(_, ext)| FILE_EXTENSIONS.contains(&ext));
            return Ok(if is_file {
                SourceSpec::FileUrl {
                    url: source.to_owned(),
                    token: token(),
                }
            } else {
                SourceSpec::Http {
                    url: source.to_owned(),
                    token: token(),
                }
            });
        }
        if let Some((scheme, _)) = lower.split_once("://") {
            // Only the scheme: the rest may hold a password.
            return Err(SourceError::Config(format!(
                "{scheme}:// is not a usage source: give an http(s) URL, a postgres:// URL or a file path"
            )));
        }
        check_template(source)?;
        Ok(SourceSpec::File(PathBuf::from(source)))
    }

    /// Opens the source; a downloaded Parquet export is kept in `WORK_DIR` (else the system's
    /// temporary directory) while it is read. [`SourceSpec::open_in`] names the directory.
    pub fn open(&self) -> Result<Box<dyn UsageSource>, SourceError> {
        self.open_in(&super::config::work_dir_from_env())
    }

    /// Opens the source, keeping a downloaded Parquet export in `work_dir` while it is read.
    pub fn open_in(&self, work_dir: &std::path::Path) -> Result<Box<dyn UsageSource>, SourceError> {
        Ok(match self {
            SourceSpec::Http { url, token } => Box::new(VendorApiSource::new(url, token.clone())?),
            SourceSpec::File(path) => Box::new(FileSource::new(path.clone())?),
            SourceSpec::FileUrl { url, token } => {
                Box::new(FileUrlSource::new(url, token.clone())?.with_download_dir(work_dir))
            }
            SourceSpec::Postgres(spec) => Box::new(PostgresSource::new(spec.clone())),
        })
    }
}

/// The placeholders a path or URL may hold.
const PLACEHOLDERS: [&str; 3] = ["{period}", "{year}", "{month}"];

/// Whether `text` names the month.
pub fn is_template(text: &str) -> bool {
    PLACEHOLDERS.iter().any(|p| text.contains(p))
}

/// Refuses a `{...}` that is not one of the placeholders (a typo would otherwise name a file
/// that never exists).
fn check_template(text: &str) -> Result<(), SourceError> {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let tail = &rest[open..];
        let Some(close) = tail.find('}') else { break };
        let name = &tail[..=close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(SourceError::Config(format!(
                "{text:?}: {name} is not a placeholder; a path or URL may hold {} (the month reported)",
                PLACEHOLDERS.join(", ")
            )));
        }
        rest = &tail[close + 1..];
    }
    Ok(())
}

/// `text` with `{period}` (`2024-04`), `{year}` (`2024`) and `{month}` (`04`) filled in.
pub fn fill_in(text: &str, period: Month) -> String {
    text.replace("{period}", &period.to_string())
        .replace("{year}", &format!("{:04}", period.year()))
        .replace("{month}", &format!("{:02}", period.month()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(source: &str, token: Option<&str>) -> Result<SourceSpec, SourceError> {
        SourceSpec::parse(source, |name| {
            (name == USAGE_SOURCE_TOKEN)
                .then(|| token.map(str::to_owned))
                .flatten()
        })
    }

    #[test]
    fn urls_are_the_api_or_files_and_paths_are_files() {
        assert!(matches!(
            parse("https://vendor.example/usage", Some("t")),
            Ok(SourceSpec::Http { .. })
        ));
        assert_eq!(
            parse("./usage-2024-04.csv", None).ok(),
            Some(SourceSpec::File("./usage-2024-04.csv".into()))
        );
        assert!(matches!(
            parse(
                "https://bucket.example/exports/usage-{period}.CSV?sig=abc",
                None
            ),
            Ok(SourceSpec::FileUrl { .. })
        ));
        assert!(matches!(
            parse("http://files.example/u.parquet", Some("t")),
            Ok(SourceSpec::FileUrl { ref token, .. }) if token.expose() == "t"
        ));
        assert!(matches!(
            parse("postgres://reader@db.example:5432/usage", None),
            Ok(SourceSpec::Postgres(_))
        ));
        let e = parse("mysql://root:hunter2@db/usage", None).expect_err("no mysql");
        assert!(
            e.to_string().contains("mysql:// is not a usage source"),
            "{e}"
        );
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let signed =
            parse("https://b.example/u-{period}.csv?X-Sig=s3cr3t", Some("tok")).expect("url");
        let debug = format!("{signed:?}");
        assert!(
            !debug.contains("s3cr3t") && !debug.contains("tok\""),
            "{debug}"
        );
        assert!(parse("  ", None).is_err());
    }

    #[test]
    fn debug_shows_no_signature_token_or_password() {
        let spec = parse(
            "https://u:pw@bucket.example/usage-{period}.csv?X-Sig=SIGNED",
            Some("TOKEN"),
        )
        .expect("spec");
        let shown = format!("{spec:?}");
        assert!(
            shown.contains("https://bucket.example/usage-{period}.csv"),
            "{shown}"
        );
        for secret in ["SIGNED", "TOKEN", "pw"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        let e = parse("ftp://u:pw@h/x?sig=SIGNED", None).expect_err("not a source");
        assert!(!e.to_string().contains("SIGNED"), "{e}");
    }

    #[test]
    fn templates_name_the_month_and_typos_are_refused() {
        let april: Month = "2024-04".parse().expect("period");
        assert_eq!(
            fill_in("/data/{year}/{month}/usage-{period}.csv", april),
            "/data/2024/04/usage-2024-04.csv"
        );
        assert!(is_template("/data/usage-{period}.csv"));
        assert!(!is_template("/data/usage.csv"));
        let e = parse("/data/usage-{perod}.csv", None).expect_err("typo");
        assert!(
            e.to_string().contains("{perod} is not a placeholder"),
            "{e}"
        );
    }
}
