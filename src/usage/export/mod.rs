//! `connect-usage sandbox --export-usage DEST --period YYYY-MM`: the sandbox's usage of a month
//! written where a vendor keeps usage, so that every usage source can be tried against the
//! sandbox: a PostgreSQL table (`postgres://...`, the default table `connect_usage_records`
//! unless the URL's fragment names another), a Parquet file, a CSV file or a JSON Lines file.
//!
//! The records are the ones the sandbox's vendor usage API serves for the month, the same
//! values in the same order; they are generated one at a time and written as they come, so a
//! month of any size is exported in bounded memory. The text formats write to any writer
//! ([`TextFormat::write`]), so the sandbox's export route streams the same bytes as these files.
//!
//! This is where the product meets the sandbox: the records and their file formats are the
//! sandbox's ([`connect_sandbox::export_formats`]); the targets, the files and the PostgreSQL
//! table (`postgres`) are the usage sources' of this crate, which read them back.

mod postgres;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

pub use postgres::{create_table_sql, write_postgres};

use crate::usage::Month;
use connect_sandbox::export_formats::{ROW_GROUP_ROWS, write_parquet_to};
use connect_sandbox::usage_universe::{ExportedRecord, MonthUsage};

/// The month's records and the text formats, as the sandbox serves them: what an export
/// writes.
pub use connect_sandbox::export_formats::{TextFormat, records};

/// Where an export goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportTarget {
    /// A PostgreSQL database (the URL as given) and the table to fill.
    Postgres {
        url: String,
        table: String,
    },
    Parquet(PathBuf),
    Csv(PathBuf),
    JsonLines(PathBuf),
}

/// The table the export fills and the PostgreSQL source reads unless told otherwise.
pub use crate::usage::source_postgres::DEFAULT_TABLE;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Target(String),
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("{0}")]
    Database(String),
}

impl ExportTarget {
    /// `postgres(ql)://...[#table]`, or a path whose extension says the format (`.parquet`,
    /// `.csv`, `.jsonl`/`.ndjson`).
    pub fn parse(dest: &str) -> Result<ExportTarget, ExportError> {
        let lower = dest.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            let (url, table) = match dest.split_once('#') {
                Some((url, table)) if !table.is_empty() => (url, table),
                _ => (dest.trim_end_matches('#'), DEFAULT_TABLE),
            };
            return Ok(ExportTarget::Postgres {
                url: url.to_owned(),
                table: table.to_owned(),
            });
        }
        let path = PathBuf::from(dest);
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("parquet") => Ok(ExportTarget::Parquet(path)),
            Some("csv") => Ok(ExportTarget::Csv(path)),
            Some("jsonl" | "ndjson") => Ok(ExportTarget::JsonLines(path)),
            _ => Err(ExportError::Target(format!(
                "{dest:?}: export to a postgres:// URL or a .parquet, .csv or .jsonl file"
            ))),
        }
    }
}

/// Writes `count` records of the month (as the usage API serves them, `bad` the share
/// defective on purpose) to `target`; returns how many were written.
pub async fn export(
    target: &ExportTarget,
    month: &MonthUsage<'_>,
    period: Month,
    count: u64,
    bad: f64,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<u64, ExportError> {
    let rows = records(month, 0..count, bad);
    match target {
        ExportTarget::Postgres { url, table } => {
            write_postgres(url, table, period, rows, lookup).await
        }
        ExportTarget::Csv(path) => write_csv(path, rows),
        ExportTarget::JsonLines(path) => write_jsonl(path, rows),
        ExportTarget::Parquet(path) => write_parquet(path, rows),
    }
}

impl std::fmt::Display for ExportTarget {
    /// Where the export went, without a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportTarget::Postgres { url, table } => {
                let shown = crate::usage::source_postgres::PostgresSpec::parse(url, &|_| None)
                    .map(|s| s.shown().to_owned())
                    .unwrap_or_else(|_| "a PostgreSQL database".into());
                write!(f, "table {table} of {shown}")
            }
            ExportTarget::Parquet(p) | ExportTarget::Csv(p) | ExportTarget::JsonLines(p) => {
                write!(f, "{}", p.display())
            }
        }
    }
}

fn write_error(path: &Path, e: impl std::fmt::Display) -> ExportError {
    ExportError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Writes a file in `format`.
fn write_file(
    path: &Path,
    format: TextFormat,
    records: impl Iterator<Item = ExportedRecord>,
) -> Result<u64, ExportError> {
    let file = File::create(path).map_err(|e| write_error(path, e))?;
    format
        .write(records, true, BufWriter::with_capacity(1 << 16, file))
        .map_err(|e| write_error(path, e))
}

/// Writes a CSV file with a header row: the columns of the usage contract.
pub fn write_csv(
    path: &Path,
    records: impl Iterator<Item = ExportedRecord>,
) -> Result<u64, ExportError> {
    write_file(path, TextFormat::Csv, records)
}

/// Writes a JSON Lines file: one record object per line, as the usage API's records.
pub fn write_jsonl(
    path: &Path,
    records: impl Iterator<Item = ExportedRecord>,
) -> Result<u64, ExportError> {
    write_file(path, TextFormat::JsonLines, records)
}

/// Writes a Parquet file of `records`; returns how many were written.
pub fn write_parquet(
    path: &Path,
    records: impl Iterator<Item = ExportedRecord>,
) -> Result<u64, ExportError> {
    write_parquet_grouped(path, records, ROW_GROUP_ROWS)
}

/// [`write_parquet`] with row groups of `row_group_rows` (tests use small ones).
pub fn write_parquet_grouped(
    path: &Path,
    records: impl Iterator<Item = ExportedRecord>,
    row_group_rows: usize,
) -> Result<u64, ExportError> {
    let file = File::create(path).map_err(|e| write_error(path, e))?;
    write_parquet_to(file, records, row_group_rows).map_err(|e| write_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_by_scheme_and_extension() {
        assert_eq!(
            ExportTarget::parse("postgres://u@h/db").ok(),
            Some(ExportTarget::Postgres {
                url: "postgres://u@h/db".into(),
                table: DEFAULT_TABLE.into()
            })
        );
        assert_eq!(
            ExportTarget::parse("postgresql://u@h/db#usage_2024").ok(),
            Some(ExportTarget::Postgres {
                url: "postgresql://u@h/db".into(),
                table: "usage_2024".into()
            })
        );
        assert_eq!(
            ExportTarget::parse("/tmp/u.PARQUET").ok(),
            Some(ExportTarget::Parquet("/tmp/u.PARQUET".into()))
        );
        assert!(ExportTarget::parse("/tmp/u.xlsx").is_err());
    }
}
