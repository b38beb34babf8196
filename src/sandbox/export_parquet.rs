//! The sandbox's usage exported as a Parquet file, for trying the Parquet usage source
//! ([`crate::usage::source_parquet`]) against the sandbox, and for benchmarks.
//!
//! Columns: `record_id`, `subscription_id`, `item_mpn`, `quantity` (text), `start_time` and
//! `end_time` (UTC timestamps in microseconds), `note` (text or NULL). Records are gathered in
//! Arrow batches of [`BATCH_ROWS`] and written in row groups of [`ROW_GROUP_ROWS`], Snappy
//! compressed: memory holds one row group, whatever the month's size.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::export::ExportError;
use super::vendor_api::ExportedRecord;

/// Rows gathered before they are handed to the writer.
pub const BATCH_ROWS: usize = 8192;
/// Rows in a row group.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

fn write_error(path: &Path, e: impl std::fmt::Display) -> ExportError {
    ExportError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// The file's columns. The quantity is text, not a decimal: a record defective on purpose
/// holds a quantity that is no number (`lots`), and the export keeps it as the usage API
/// serves it.
fn schema() -> SchemaRef {
    let time = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("record_id", DataType::Utf8, false),
        Field::new("subscription_id", DataType::Utf8, false),
        Field::new("item_mpn", DataType::Utf8, false),
        Field::new("quantity", DataType::Utf8, false),
        Field::new("start_time", time(), false),
        Field::new("end_time", time(), false),
        Field::new("note", DataType::Utf8, true),
    ]))
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

/// Writes the Parquet bytes of `records` to `out` (the sandbox's export route writes them into
/// memory); returns how many were written.
pub fn write_parquet_to<W: Write + Send>(
    out: W,
    records: impl Iterator<Item = ExportedRecord>,
    row_group_rows: usize,
) -> Result<u64, parquet::errors::ParquetError> {
    let schema = schema();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .set_created_by(format!("connect-usage {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut writer = ArrowWriter::try_new(out, schema.clone(), Some(props))?;
    let mut batch = Columns::new();
    let mut written = 0u64;
    for r in records {
        batch.push(&r);
        written += 1;
        if batch.rows == BATCH_ROWS {
            writer.write(&batch.finish(&schema)?)?;
        }
    }
    if batch.rows > 0 {
        writer.write(&batch.finish(&schema)?)?;
    }
    writer.close()?;
    Ok(written)
}

/// The columns of one batch being gathered.
struct Columns {
    rows: usize,
    record_id: StringBuilder,
    subscription_id: StringBuilder,
    item_mpn: StringBuilder,
    quantity: StringBuilder,
    start_time: TimestampMicrosecondBuilder,
    end_time: TimestampMicrosecondBuilder,
    note: StringBuilder,
}

impl Columns {
    fn new() -> Columns {
        let text = || StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 24);
        let time = || TimestampMicrosecondBuilder::with_capacity(BATCH_ROWS).with_timezone("UTC");
        Columns {
            rows: 0,
            record_id: text(),
            subscription_id: text(),
            item_mpn: text(),
            quantity: text(),
            start_time: time(),
            end_time: time(),
            note: text(),
        }
    }

    fn push(&mut self, r: &ExportedRecord) {
        self.record_id.append_value(&r.record_id);
        self.subscription_id.append_value(&r.subscription_id);
        self.item_mpn.append_value(&r.item_mpn);
        self.quantity.append_value(&r.quantity);
        self.start_time
            .append_value(r.start_time.timestamp_micros());
        self.end_time.append_value(r.end_time.timestamp_micros());
        self.note.append_option(r.note.as_deref());
        self.rows += 1;
    }

    /// The gathered rows as a batch; the builders start over.
    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, arrow_schema::ArrowError> {
        self.rows = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.record_id.finish()),
            Arc::new(self.subscription_id.finish()),
            Arc::new(self.item_mpn.finish()),
            Arc::new(self.quantity.finish()),
            Arc::new(self.start_time.finish()),
            Arc::new(self.end_time.finish()),
            Arc::new(self.note.finish()),
        ];
        RecordBatch::try_new(schema.clone(), columns)
    }
}
