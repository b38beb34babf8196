//! The sandbox's usage of a month as export files: the records the vendor usage API serves,
//! one at a time, written as CSV, JSON Lines or Parquet. The sandbox's export route
//! ([`super::vendor_exports`]) serves these bytes; a client that writes files of the same
//! month (`connect-usage sandbox --export-usage`) writes the same bytes.
//!
//! Parquet columns: `record_id`, `subscription_id`, `item_mpn`, `quantity` (text),
//! `start_time` and `end_time` (UTC timestamps in microseconds), `note` (text or NULL).
//! Records are gathered in Arrow batches of [`BATCH_ROWS`] and written in row groups of
//! [`ROW_GROUP_ROWS`], Snappy compressed: memory holds one row group, whatever the month's size.

use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::{StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::SecondsFormat;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::usage_universe::{ExportedRecord, MonthUsage};

/// The month's records numbered `range` (`0..count`: all of a month of `count`), one at a
/// time.
pub fn records<'a>(
    month: &'a MonthUsage<'_>,
    range: std::ops::Range<u64>,
    bad: f64,
) -> impl Iterator<Item = ExportedRecord> + 'a {
    range.filter_map(move |i| month.exported(i, bad))
}

/// The time as the usage API writes it.
pub fn time_text(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The text formats of an export, written to any writer: the sandbox's export route streams
/// them, an export command writes them to files, the same bytes either way.
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

/// Rows gathered before they are handed to the writer.
pub const BATCH_ROWS: usize = 8192;
/// Rows in a row group.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

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
