//! `connect-usage sandbox --export-usage DEST --period YYYY-MM`: the sandbox's usage of a month
//! written where a vendor keeps usage, so that every usage source can be tried against the
//! sandbox: a PostgreSQL table (`postgres://...`, the default table `connect_usage_records`
//! unless the URL's fragment names another), a Parquet file, a CSV file or a JSON Lines file.
//!
//! The records are the ones the sandbox's vendor usage API serves for the month, the same
//! values in the same order; they are generated one at a time and written as they come, so a
//! month of any size is exported in bounded memory. The text formats write to any writer
//! ([`TextFormat::write`]), so the sandbox's export route streams the same bytes as these files.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::SecondsFormat;

use super::vendor_api::{ExportedRecord, Month};

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
    month: &Month<'_>,
    period: crate::usage::Period,
    count: u64,
    bad: f64,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<u64, ExportError> {
    let rows = records(month, count, bad);
    match target {
        ExportTarget::Postgres { url, table } => {
            write_postgres(url, table, period, rows, lookup).await
        }
        ExportTarget::Csv(path) => write_csv(path, rows),
        ExportTarget::JsonLines(path) => write_jsonl(path, rows),
        ExportTarget::Parquet(path) => super::export_parquet::write_parquet(path, rows),
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

/// The month's records, one at a time.
pub fn records<'a>(
    month: &'a Month<'_>,
    count: u64,
    bad: f64,
) -> impl Iterator<Item = ExportedRecord> + 'a {
    (0..count).filter_map(move |i| month.exported(i, bad))
}

fn write_error(path: &Path, e: impl std::fmt::Display) -> ExportError {
    ExportError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// The time as the usage API writes it.
pub fn time_text(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The text formats of an export: written to a file here, and streamed by the sandbox's
/// export route ([`super::vendor_exports`]), the same bytes either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFormat {
    /// A header row, then one row per record.
    Csv,
    /// One record object per line, as the usage API's records.
    JsonLines,
}

/// The CSV columns: the usage contract's.
const CSV_HEADER: [&str; 7] = [
    "record_id",
    "subscription_id",
    "item_mpn",
    "quantity",
    "start_time",
    "end_time",
    "note",
];

impl TextFormat {
    /// Writes `records` to `out` (after the CSV header row when `header`) and flushes it;
    /// returns how many were written.
    pub fn write(
        self,
        records: impl Iterator<Item = ExportedRecord>,
        header: bool,
        out: impl Write,
    ) -> std::io::Result<u64> {
        match self {
            TextFormat::Csv => write_csv_rows(records, header, out),
            TextFormat::JsonLines => write_json_lines(records, out),
        }
    }
}

fn write_csv_rows(
    records: impl Iterator<Item = ExportedRecord>,
    header: bool,
    out: impl Write,
) -> std::io::Result<u64> {
    let mut w = csv::Writer::from_writer(out);
    if header {
        w.write_record(CSV_HEADER).map_err(std::io::Error::other)?;
    }
    let mut n = 0;
    for r in records {
        w.write_record([
            r.record_id.as_str(),
            &r.subscription_id,
            &r.item_mpn,
            &r.quantity,
            &time_text(r.start_time),
            &time_text(r.end_time),
            r.note.as_deref().unwrap_or_default(),
        ])
        .map_err(std::io::Error::other)?;
        n += 1;
    }
    w.flush()?;
    Ok(n)
}

fn write_json_lines(
    records: impl Iterator<Item = ExportedRecord>,
    mut out: impl Write,
) -> std::io::Result<u64> {
    let mut n = 0;
    for r in records {
        let mut object = serde_json::json!({
            "record_id": r.record_id,
            "subscription_id": r.subscription_id,
            "item_mpn": r.item_mpn,
            "quantity": r.quantity,
            "start_time": time_text(r.start_time),
            "end_time": time_text(r.end_time),
        });
        if let Some(note) = r.note {
            object["note"] = note.into();
        }
        serde_json::to_writer(&mut out, &object)?;
        out.write_all(b"\n")?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

/// The table the export creates when it is missing: the columns of the usage contract, typed
/// as a vendor would keep them. No column is `NOT NULL`: a record defective on purpose (a
/// quantity that is not a number) is exported with that value missing, and read back as the
/// invalid record it is.
pub fn create_table_sql(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (\n    \
         subscription_id text,\n    \
         item_mpn text,\n    \
         quantity numeric,\n    \
         start_time timestamptz,\n    \
         end_time timestamptz,\n    \
         record_id text,\n    \
         note text,\n    \
         category text\n)"
    )
}

/// A table name as SQL: `name` or `schema.name`, each part a plain identifier, quoted.
fn table_sql(table: &str) -> Result<String, ExportError> {
    let plain = |part: &str| {
        !part.is_empty()
            && part.len() <= 63
            && part
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() > 2 || !parts.iter().all(|p| plain(p)) {
        return Err(ExportError::Target(format!(
            "{table:?} is not a table name: letters, digits and _ (schema.table allowed)"
        )));
    }
    Ok(parts
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join("."))
}

/// Writes the month into a PostgreSQL table (created when missing), replacing the month's rows
/// there in one transaction, so an export run twice leaves one copy. Rows go in by `COPY`.
/// `lookup` gives the password (`USAGE_SOURCE_TOKEN`, `PGPASSWORD`) when the URL has none.
pub async fn write_postgres(
    url: &str,
    table: &str,
    period: crate::usage::Period,
    records: impl Iterator<Item = ExportedRecord>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<u64, ExportError> {
    use futures_util::SinkExt;

    let table = table_sql(table)?;
    let spec = crate::usage::source_postgres::PostgresSpec::parse(url, lookup)
        .map_err(|e| ExportError::Target(e.to_string()))?;
    let shown = spec.shown().to_owned();
    let db_error = |e: tokio_postgres::Error| {
        let reason = match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => e.to_string(),
        };
        ExportError::Database(format!("PostgreSQL {shown}: {reason}"))
    };
    let mut client = spec
        .connect()
        .await
        .map_err(|e| ExportError::Database(e.to_string()))?;
    client
        .batch_execute(&create_table_sql(&table))
        .await
        .map_err(db_error)?;
    let tx = client.transaction().await.map_err(db_error)?;
    tx.execute(
        &format!("DELETE FROM {table} WHERE start_time >= $1 AND start_time < $2"),
        &[&period.start(), &period.end_exclusive()],
    )
    .await
    .map_err(db_error)?;
    let sink = tx
        .copy_in(&format!(
            "COPY {table} (record_id, subscription_id, item_mpn, quantity, start_time, end_time, note) FROM STDIN (FORMAT csv)"
        ))
        .await
        .map_err(db_error)?;
    futures_util::pin_mut!(sink);
    let mut n = 0u64;
    let numeric = |q: &str| crate::usage::Quantity::parse(q).is_ok();
    let mut records = records;
    loop {
        let mut rows = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::with_capacity(1 << 20));
        let mut in_chunk = 0;
        for r in records.by_ref() {
            // A quantity that is not a number cannot be `numeric`: it goes in as NULL.
            let quantity = if numeric(&r.quantity) {
                r.quantity.as_str()
            } else {
                ""
            };
            rows.write_record([
                r.record_id.as_str(),
                &r.subscription_id,
                &r.item_mpn,
                quantity,
                &time_text(r.start_time),
                &time_text(r.end_time),
                r.note.as_deref().unwrap_or_default(),
            ])
            .map_err(|e| ExportError::Database(e.to_string()))?;
            in_chunk += 1;
            if in_chunk == 8192 {
                break;
            }
        }
        if in_chunk == 0 {
            break;
        }
        n += in_chunk;
        let chunk = rows
            .into_inner()
            .map_err(|e| ExportError::Database(e.to_string()))?;
        sink.send(bytes::Bytes::from(chunk))
            .await
            .map_err(db_error)?;
    }
    sink.as_mut().finish().await.map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(n)
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

    #[test]
    fn table_names_are_identifiers() {
        assert_eq!(table_sql("usage").ok().as_deref(), Some("\"usage\""));
        assert_eq!(
            table_sql("billing.usage_2024").ok().as_deref(),
            Some("\"billing\".\"usage_2024\"")
        );
        assert!(table_sql("usage; DROP TABLE x").is_err());
        assert!(table_sql("a.b.c").is_err());
    }
}
