//! Usage from Parquet files, as data platforms export it (pyarrow, Spark, DuckDB, ...).
//!
//! Only the columns named like the usage contract are read (names match whatever their case):
//! `subscription_id`, `item_mpn`, `quantity`, `start_time`, `end_time`, and optionally
//! `record_id`, `note`, `category`. The reader decodes one row group at a time, in Arrow batches
//! of [`ARROW_BATCH`] rows, so memory holds a batch, never the file. Each column is checked
//! against the types its field can take before any row is read: a column of another type fails
//! the source as a whole (every record would be wrong alike), while a NULL or a NaN fails only
//! its record.
//!
//! Cells are handed to [`Cells::into_item`], which checks them as for every other source; text
//! is borrowed from the Arrow arrays, so the kept fields are copied once and the rest never.

use std::borrow::Cow;
use std::fs::File;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal32Type, Decimal64Type, Decimal128Type, Decimal256Type,
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Schema, TimeUnit};
use chrono::{DateTime, Utc};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::record::{Cell, Cells, FIELDS, Position, REQUIRED_FIELDS};
use super::source::SourceError;
use super::source_file::{BATCH, Sender, file_error, flush};

/// Rows decoded at a time.
pub const ARROW_BATCH: usize = 8192;

/// What a field holds, which says the column types it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Ids and free text: text, or integers as their decimal text.
    Text,
    Quantity,
    Time,
}

impl Kind {
    /// The kind of field `FIELDS[index]`.
    fn of(field: &str) -> Kind {
        match field {
            "quantity" => Kind::Quantity,
            "start_time" | "end_time" => Kind::Time,
            _ => Kind::Text,
        }
    }

    fn accepts(self, t: &DataType) -> bool {
        is_text(t)
            || match self {
                Kind::Text => t.is_integer(),
                Kind::Quantity => {
                    t.is_integer()
                        || matches!(
                            t,
                            DataType::Float32
                                | DataType::Float64
                                | DataType::Decimal32(..)
                                | DataType::Decimal64(..)
                                | DataType::Decimal128(..)
                                | DataType::Decimal256(..)
                        )
                }
                Kind::Time => matches!(
                    t,
                    DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
                ),
            }
    }

    /// The types it takes, for messages.
    fn accepted(self) -> &'static str {
        match self {
            Kind::Text => "text (Utf8, LargeUtf8, Utf8View, or a dictionary of text) or integers",
            Kind::Quantity => "decimals, integers, Float32, Float64 or text",
            Kind::Time => {
                "timestamps (any unit, with or without a time zone), Date32, Date64 or text"
            }
        }
    }
}

/// Text, plain or dictionary-encoded.
fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, values) => {
            matches!(
                values.as_ref(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            )
        }
        _ => false,
    }
}

/// The columns read: for each of [`FIELDS`], its place among the projected columns.
#[derive(Debug)]
struct Layout {
    /// Root column indices of the file, ascending (the projection).
    roots: Vec<usize>,
    /// For each field, its index in a projected batch.
    fields: [Option<usize>; FIELDS.len()],
}

fn format_error(path: &Path, reason: String) -> SourceError {
    SourceError::Format {
        path: path.display().to_string(),
        reason,
    }
}

/// Finds the fields' columns and checks their types.
fn layout(path: &Path, schema: &Schema) -> Result<Layout, SourceError> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut found: [Option<usize>; FIELDS.len()] = [None; FIELDS.len()];
    for (slot, field) in found.iter_mut().zip(FIELDS) {
        let mut matching = names
            .iter()
            .enumerate()
            .filter(|(_, n)| n.trim().eq_ignore_ascii_case(field));
        *slot = matching.next().map(|(i, _)| i);
        if let Some((j, _)) = matching.next() {
            let i = slot.unwrap_or(j);
            return Err(format_error(
                path,
                format!(
                    "columns {:?} and {:?} both name the field {field}; keep one",
                    names[i], names[j]
                ),
            ));
        }
    }
    let missing: Vec<&str> = REQUIRED_FIELDS
        .iter()
        .zip(found)
        .filter(|(_, i)| i.is_none())
        .map(|(f, _)| *f)
        .collect();
    if !missing.is_empty() {
        return Err(format_error(
            path,
            format!(
                "no column(s) {}; the file's columns are {}; a usage file has {}",
                missing.join(", "),
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                },
                FIELDS.join(", ")
            ),
        ));
    }
    for (field, index) in FIELDS.iter().zip(found) {
        let Some(index) = index else { continue };
        let kind = Kind::of(field);
        let t = schema.field(index).data_type();
        if !kind.accepts(t) {
            return Err(format_error(
                path,
                format!(
                    "column {:?} ({field}) is of type {t}; {field} takes {}",
                    names[index],
                    kind.accepted()
                ),
            ));
        }
    }
    let mut roots: Vec<usize> = found.iter().flatten().copied().collect();
    roots.sort_unstable();
    let fields = found.map(|i| i.and_then(|i| roots.iter().position(|r| *r == i)));
    Ok(Layout { roots, fields })
}

/// Reads a Parquet file into batches of records.
pub(crate) fn read_parquet(path: &Path, tx: &Sender) -> Result<(), SourceError> {
    // A decoder that panics on a corrupt file would end the stream as if the file ended.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(path, tx))).unwrap_or_else(|_| {
        Err(format_error(
            path,
            "the Parquet decoder failed on this file (corrupt?)".into(),
        ))
    })
}

fn read(path: &Path, tx: &Sender) -> Result<(), SourceError> {
    let file = File::open(path).map_err(|e| file_error(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format_error(path, format!("not a readable Parquet file: {e}")))?;
    let layout = layout(path, builder.schema())?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), layout.roots.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(ARROW_BATCH)
        .build()
        .map_err(|e| format_error(path, format!("not a readable Parquet file: {e}")))?;
    let mut items = Vec::with_capacity(BATCH);
    let mut ordinal = 0u64;
    for batch in reader {
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                // The records before it are handed over first, as the message says.
                flush(tx, &mut items);
                return Err(format_error(
                    path,
                    format!(
                        "unreadable after record {ordinal} (the records before it were read): {e}"
                    ),
                ));
            }
        };
        let getters = getters(path, &layout, &batch)?;
        let cell = |field: usize, row: usize| getters[field].as_ref().and_then(|g| g(row));
        for row in 0..batch.num_rows() {
            ordinal += 1;
            let cells = Cells {
                subscription_id: cell(0, row),
                item_mpn: cell(1, row),
                quantity: cell(2, row),
                start_time: cell(3, row),
                end_time: cell(4, row),
                record_id: cell(5, row),
                note: cell(6, row),
                category: cell(7, row),
            };
            items.push(cells.into_item(Position {
                ordinal,
                line: None,
            }));
            if items.len() >= BATCH && !flush(tx, &mut items) {
                return Ok(());
            }
        }
    }
    flush(tx, &mut items);
    Ok(())
}

/// A column's cell at a row of a batch; `None` for NULL.
type Getter<'a> = Box<dyn Fn(usize) -> Option<Cell<'a>> + 'a>;

/// The fields' getters over one batch (the arrays downcast once).
fn getters<'a>(
    path: &Path,
    layout: &Layout,
    batch: &'a RecordBatch,
) -> Result<Vec<Option<Getter<'a>>>, SourceError> {
    FIELDS
        .iter()
        .zip(layout.fields)
        .map(|(field, index)| {
            let Some(index) = index else { return Ok(None) };
            let array = batch.column(index).as_ref();
            getter(array, Kind::of(field)).map(Some).ok_or_else(|| {
                // The schema was checked; a batch of another type is a broken file.
                format_error(
                    path,
                    format!(
                        "column {field} holds {} where the schema says otherwise",
                        array.data_type()
                    ),
                )
            })
        })
        .collect()
}

fn getter<'a>(array: &'a dyn Array, kind: Kind) -> Option<Getter<'a>> {
    text(array)
        .or_else(|| integers(array))
        .or_else(|| match kind {
            Kind::Text => None,
            Kind::Quantity => floats(array).or_else(|| decimals(array)),
            Kind::Time => times(array),
        })
}

/// `Some(f(row))` where the row is not NULL.
fn cells<'a, A: Array + ?Sized>(
    array: &'a A,
    f: impl Fn(usize) -> Cell<'a> + 'a,
) -> Option<Getter<'a>> {
    Some(Box::new(move |row| array.is_valid(row).then(|| f(row))))
}

fn text<'a>(array: &'a dyn Array) -> Option<Getter<'a>> {
    if let Some(a) = array.as_string_opt::<i32>() {
        return cells(a, |row| Cell::Text(Cow::Borrowed(a.value(row))));
    }
    if let Some(a) = array.as_string_opt::<i64>() {
        return cells(a, |row| Cell::Text(Cow::Borrowed(a.value(row))));
    }
    if let Some(a) = array.as_string_view_opt() {
        return cells(a, |row| Cell::Text(Cow::Borrowed(a.value(row))));
    }
    let dict = array.as_any_dictionary_opt()?;
    let values = dict.values();
    let inner = text(values.as_ref())?;
    if values.is_empty() {
        // Every key is NULL (there is nothing to point at).
        return Some(Box::new(|_| None));
    }
    let keys = dict.normalized_keys();
    Some(Box::new(move |row| {
        if dict.is_null(row) {
            None
        } else {
            keys.get(row).and_then(|&k| inner(k))
        }
    }))
}

fn integers<'a>(array: &'a dyn Array) -> Option<Getter<'a>> {
    macro_rules! each {
        ($($t:ty),*) => {
            $(if let Some(a) = array.as_primitive_opt::<$t>() {
                return cells(a, |row| Cell::Text(Cow::Owned(a.value(row).to_string())));
            })*
        };
    }
    each!(
        Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type
    );
    None
}

/// A float as its shortest decimal text (Rust's `Display` round-trips: `0.1` is `0.1`).
fn float_cell<'a>(v: impl Into<f64> + std::fmt::Display + Copy) -> Cell<'a> {
    if v.into().is_finite() {
        Cell::Text(Cow::Owned(v.to_string()))
    } else {
        Cell::Bad(format!("{v} is not a number"))
    }
}

fn floats<'a>(array: &'a dyn Array) -> Option<Getter<'a>> {
    if let Some(a) = array.as_primitive_opt::<Float64Type>() {
        return cells(a, |row| float_cell(a.value(row)));
    }
    if let Some(a) = array.as_primitive_opt::<Float32Type>() {
        return cells(a, |row| float_cell(a.value(row)));
    }
    None
}

fn decimals<'a>(array: &'a dyn Array) -> Option<Getter<'a>> {
    macro_rules! each {
        ($($t:ty),*) => {
            $(if let Some(a) = array.as_primitive_opt::<$t>() {
                return cells(a, |row| Cell::Text(Cow::Owned(a.value_as_string(row))));
            })*
        };
    }
    each!(Decimal128Type, Decimal64Type, Decimal32Type, Decimal256Type);
    None
}

/// An instant, or why there is none.
fn at<'a>(t: Option<DateTime<Utc>>, raw: i64, unit: &str) -> Cell<'a> {
    t.map_or_else(
        || {
            Cell::Bad(format!(
                "{raw} {unit} from 1970 is out of the range of times"
            ))
        },
        Cell::At,
    )
}

/// Timestamps are read as UTC instants whatever their zone: Arrow stores the instant in UTC
/// when a zone is given, and a timestamp without one is read as UTC, as text without an
/// offset is.
fn times<'a>(array: &'a dyn Array) -> Option<Getter<'a>> {
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => {
            let a = array.as_primitive_opt::<TimestampSecondType>()?;
            cells(a, |row| {
                let v = a.value(row);
                at(DateTime::from_timestamp(v, 0), v, "seconds")
            })
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            let a = array.as_primitive_opt::<TimestampMillisecondType>()?;
            cells(a, |row| {
                let v = a.value(row);
                at(DateTime::from_timestamp_millis(v), v, "milliseconds")
            })
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let a = array.as_primitive_opt::<TimestampMicrosecondType>()?;
            cells(a, |row| {
                let v = a.value(row);
                at(DateTime::from_timestamp_micros(v), v, "microseconds")
            })
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            let a = array.as_primitive_opt::<TimestampNanosecondType>()?;
            cells(a, |row| {
                Cell::At(DateTime::from_timestamp_nanos(a.value(row)))
            })
        }
        DataType::Date32 => {
            let a = array.as_primitive_opt::<Date32Type>()?;
            cells(a, |row| {
                let days = i64::from(a.value(row));
                at(DateTime::from_timestamp(days * 86_400, 0), days, "days")
            })
        }
        DataType::Date64 => {
            let a = array.as_primitive_opt::<Date64Type>()?;
            cells(a, |row| {
                let v = a.value(row);
                at(DateTime::from_timestamp_millis(v), v, "milliseconds")
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::Field;

    fn schema(fields: &[(&str, DataType)]) -> Schema {
        Schema::new(
            fields
                .iter()
                .map(|(n, t)| Field::new(*n, t.clone(), true))
                .collect::<Vec<_>>(),
        )
    }

    fn required() -> Vec<(&'static str, DataType)> {
        vec![
            ("Subscription_ID", DataType::Utf8),
            ("extra", DataType::Boolean),
            (
                "item_mpn",
                DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::LargeUtf8)),
            ),
            ("quantity", DataType::Decimal128(18, 4)),
            (
                "start_time",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("Europe/Berlin".into())),
            ),
            ("END_TIME", DataType::Date32),
        ]
    }

    #[test]
    fn columns_are_found_by_name_whatever_the_case() {
        let mut fields = required();
        fields.push(("note", DataType::Utf8View));
        let l = layout(Path::new("u.parquet"), &schema(&fields)).expect("layout");
        assert_eq!(l.roots, vec![0, 2, 3, 4, 5, 6]);
        assert_eq!(
            l.fields,
            [
                Some(0),
                Some(1),
                Some(2),
                Some(3),
                Some(4),
                None,
                Some(5),
                None
            ]
        );
    }

    #[test]
    fn wrong_types_missing_and_doubled_columns_are_refused() {
        let path = Path::new("u.parquet");
        let mut fields = required();
        fields[3].1 = DataType::Boolean;
        let e = layout(path, &schema(&fields)).expect_err("boolean quantity");
        assert_eq!(
            e.to_string(),
            "u.parquet: column \"quantity\" (quantity) is of type Boolean; quantity takes \
             decimals, integers, Float32, Float64 or text"
        );
        let mut fields = required();
        fields.remove(2);
        let e = layout(path, &schema(&fields)).expect_err("no item_mpn");
        assert!(e.to_string().contains("no column(s) item_mpn;"), "{e}");
        let mut fields = required();
        fields.push(("Quantity", DataType::Int64));
        let e = layout(path, &schema(&fields)).expect_err("two quantities");
        assert!(
            e.to_string()
                .contains("columns \"quantity\" and \"Quantity\" both name the field quantity"),
            "{e}"
        );
        let mut fields = required();
        fields.push(("record_id", DataType::Float64));
        assert!(layout(path, &schema(&fields)).is_err(), "a float id");
    }

    fn values(array: &dyn Array, kind: Kind) -> Vec<Option<Cell<'_>>> {
        let get = getter(array, kind).expect("a getter");
        (0..array.len()).map(get).collect()
    }

    #[test]
    fn cells_of_every_type_family() {
        use arrow_array::types::Int16Type;
        use arrow_array::{
            Decimal256Array, DictionaryArray, StringArray, TimestampSecondArray, UInt64Array,
        };
        let secs = TimestampSecondArray::from(vec![Some(1_711_958_400), None, Some(i64::MAX)])
            .with_timezone("Asia/Tokyo");
        let got = values(&secs, Kind::Time);
        assert_eq!(
            got[0],
            Some(Cell::At("2024-04-01T08:00:00Z".parse().expect("time")))
        );
        assert_eq!(got[1], None);
        assert!(matches!(&got[2], Some(Cell::Bad(why)) if why.contains("out of the range")));
        type I256 = <Decimal256Type as arrow_array::ArrowPrimitiveType>::Native;
        let big = Decimal256Array::from(vec![Some(I256::from_i128(-1_234_500))])
            .with_precision_and_scale(40, 6)
            .expect("decimal");
        assert_eq!(
            values(&big, Kind::Quantity),
            [Some(Cell::Text("-1.234500".into()))]
        );
        let ids = UInt64Array::from(vec![u64::MAX]);
        assert_eq!(
            values(&ids, Kind::Text),
            [Some(Cell::Text("18446744073709551615".into()))]
        );
        let empty: DictionaryArray<Int16Type> = DictionaryArray::new(
            vec![None, None].into(),
            std::sync::Arc::new(StringArray::from(Vec::<&str>::new())),
        );
        assert_eq!(values(&empty, Kind::Text), [None, None]);
        let with_null_value: DictionaryArray<Int16Type> = DictionaryArray::new(
            vec![Some(1), Some(0), None].into(),
            std::sync::Arc::new(StringArray::from(vec![None, Some("x")])),
        );
        assert_eq!(
            values(&with_null_value, Kind::Text),
            [Some(Cell::Text("x".into())), None, None]
        );
        assert!(
            getter(&ids, Kind::Time).is_some(),
            "checked by the schema, not here"
        );
        assert!(getter(&secs, Kind::Text).is_none());
    }

    #[test]
    fn floats_are_their_shortest_decimal() {
        assert_eq!(float_cell(0.1f64), Cell::Text("0.1".into()));
        assert_eq!(float_cell(0.1f32), Cell::Text("0.1".into()));
        assert_eq!(
            float_cell(1e21f64),
            Cell::Text("1000000000000000000000".into())
        );
        assert_eq!(
            float_cell(f64::NAN),
            Cell::Bad("NaN is not a number".into())
        );
        assert_eq!(
            float_cell(f64::NEG_INFINITY),
            Cell::Bad("-inf is not a number".into())
        );
    }
}
