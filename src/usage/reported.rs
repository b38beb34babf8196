//! The records a usage file holds, read back from the workbook uploaded to Connect.
//!
//! Connect's records API does not give back the vendor's `record_id`, so what a submitted file
//! holds is known from its workbook (downloaded from the file's `usage_file_uri`). A file can
//! hold a million rows: the sheet is read as a stream of cells, one row at a time, never as a
//! whole range.
//!
//! The workbook is read as Connect reads it (reference section 6): sheet `records`, else
//! `usage_records`; the first row with a value (row 1 of any file Connect took) names the
//! columns (case and surrounding spaces ignored, `usage_record_id` for `record_id`); other
//! columns are ignored; rows without a value are skipped. Values are read leniently,
//! since the file may have been made by hand: numbers where text is expected, quantities as
//! number or text cells, times as text (`YYYY-MM-DD HH:MM:SS`, unpadded hours, ISO with `T`,
//! a date alone), Excel date cells or serial day numbers.
//!
//! Reading takes two steps because calamine's cell reader borrows the workbook:
//!
//! ```no_run
//! # fn demo(path: &std::path::Path) -> Result<(), connect_usage::usage::reported::ReportedError> {
//! let mut book = connect_usage::usage::reported::open(path)?;
//! let mut rows = book.rows()?;
//! while let Some(row) = rows.next()? {
//!     println!("row {}: {}", row.row, row.record_id);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Memory: the sheet's XML is inflated and parsed as it is read, a row's cells at a time.
//! calamine reads the shared-string table whole when the workbook is opened: the workbooks
//! this extension writes have none (its writer, `super::workbook`, writes inline
//! strings), and a million of their rows read in about 10 MB; a hand-made workbook keeps its
//! shared strings (one per distinct text, some 60 MB for a million distinct record ids) in
//! memory while it is read.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use calamine::{
    Cell, DataRef, ExcelDateTime, ExcelDateTimeType, Reader, Xlsx, XlsxCellReader, XlsxError,
};
use chrono::{DateTime, NaiveDateTime, Utc};

use super::record::{Quantity, parse_utc};

/// One row of a usage file as Connect holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedRow {
    /// Spreadsheet row number (the header is row 1).
    pub row: u32,
    /// `record_id` (or `usage_record_id`), trimmed; empty when the row has none.
    pub record_id: String,
    /// `record_note` as written (not trimmed); `None` when blank.
    pub note: Option<String>,
    /// `item_search_value`, trimmed.
    pub item: String,
    /// `item_search_criteria`, trimmed, e.g. `item.mpn`.
    pub item_criteria: String,
    /// Normalised like [`Quantity`] (a number cell as [`Quantity::from_f64`]); the cell's text
    /// as written when it is not a number; empty when the cell is.
    pub quantity: String,
    /// `start_time_utc` in Unix seconds (UTC, rounded to the second); `None` when absent or
    /// unreadable.
    pub start: Option<i64>,
    /// `end_time_utc`, as `start`.
    pub end: Option<i64>,
    /// `asset_search_value`, trimmed.
    pub asset: String,
    /// `asset_search_criteria`, trimmed, e.g. `asset.id`.
    pub asset_criteria: String,
    /// `category_id`, trimmed; `None` when blank or when the sheet has no such column.
    pub category: Option<String>,
}

/// A workbook that cannot be read as a usage file.
#[derive(Debug, thiserror::Error)]
pub enum ReportedError {
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a readable .xlsx workbook: {0}")]
    NotXlsx(#[source] XlsxError),
    #[error(
        "the workbook has no sheet \"records\" (or \"usage_records\"); it has: {}",
        list(found)
    )]
    NoRecordsSheet { found: Vec<String> },
    #[error("sheet {sheet:?} cannot be read: {source}")]
    Sheet { sheet: String, source: XlsxError },
    #[error(
        "sheet {sheet:?}: missing required column(s) {}; the header has: {}",
        missing.join(", "),
        list(found)
    )]
    MissingColumns {
        sheet: String,
        missing: Vec<&'static str>,
        /// The header's names, in column order.
        found: Vec<String>,
    },
    #[error(
        "sheet {sheet:?}: column {name:?} appears twice in the header (columns {first} and {second})"
    )]
    DuplicateColumn {
        sheet: String,
        name: String,
        /// Column letters, e.g. `E`.
        first: String,
        second: String,
    },
    /// The sheet's data could not be read; `row` is the row of the last cell read (the bad
    /// cell is there or in the next row).
    #[error("sheet {sheet:?}: unreadable cell at row {row}: {source}")]
    Cell {
        sheet: String,
        row: u32,
        source: XlsxError,
    },
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

/// Sheets holding the records, in order of preference.
const RECORD_SHEETS: [&str; 2] = ["records", "usage_records"];

/// The columns read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    RecordId,
    Note,
    ItemCriteria,
    Item,
    Quantity,
    Start,
    End,
    AssetCriteria,
    Asset,
    Category,
}

const FIELDS: [(&str, Field); 10] = [
    ("record_id", Field::RecordId),
    ("record_note", Field::Note),
    ("item_search_criteria", Field::ItemCriteria),
    ("item_search_value", Field::Item),
    ("quantity", Field::Quantity),
    ("start_time_utc", Field::Start),
    ("end_time_utc", Field::End),
    ("asset_search_criteria", Field::AssetCriteria),
    ("asset_search_value", Field::Asset),
    ("category_id", Field::Category),
];

/// The columns a QT usage file must have (as Connect requires them).
pub const REQUIRED_COLUMNS: [&str; 8] = [
    "record_id",
    "item_search_criteria",
    "item_search_value",
    "quantity",
    "start_time_utc",
    "end_time_utc",
    "asset_search_criteria",
    "asset_search_value",
];

/// A usage workbook, opened: the records sheet is found, its rows are read by [`Self::rows`].
pub struct ReportedBook<R: Read + Seek> {
    xlsx: Xlsx<R>,
    sheet: String,
}

/// Opens a usage workbook saved to a file.
pub fn open(path: &Path) -> Result<ReportedBook<BufReader<File>>, ReportedError> {
    let file = File::open(path).map_err(|source| ReportedError::Open {
        path: path.to_owned(),
        source,
    })?;
    from_reader(BufReader::new(file))
}

/// Opens a usage workbook from any seekable reader (a file, a `Cursor` over bytes).
pub fn from_reader<R: Read + Seek>(reader: R) -> Result<ReportedBook<R>, ReportedError> {
    let xlsx: Xlsx<R> = Xlsx::new(reader).map_err(ReportedError::NotXlsx)?;
    let names = xlsx.sheet_names();
    let sheet = RECORD_SHEETS.iter().find_map(|want| {
        names
            .iter()
            .find(|n| n.trim().eq_ignore_ascii_case(want))
            .cloned()
    });
    match sheet {
        Some(sheet) => Ok(ReportedBook { xlsx, sheet }),
        None => Err(ReportedError::NoRecordsSheet { found: names }),
    }
}

/// Reads every row of the usage workbook at `path`, calling `each` with each in turn; returns
/// how many rows there were.
pub fn for_each_row(path: &Path, mut each: impl FnMut(ReportedRow)) -> Result<u64, ReportedError> {
    let mut book = open(path)?;
    let mut rows = book.rows()?;
    let mut count = 0;
    while let Some(row) = rows.next()? {
        count += 1;
        each(row);
    }
    Ok(count)
}

impl<R: Read + Seek> ReportedBook<R> {
    /// The name of the sheet read (`records` or `usage_records`, as the workbook spells it).
    pub fn sheet(&self) -> &str {
        &self.sheet
    }

    /// Starts reading the records sheet: reads its header and checks the required columns.
    /// Each call reads the sheet again from its start.
    pub fn rows(&mut self) -> Result<ReportedRows<'_, R>, ReportedError> {
        let sheet = self.sheet.clone();
        let cells = self
            .xlsx
            .worksheet_cells_reader(&self.sheet)
            .map_err(|source| ReportedError::Sheet {
                sheet: sheet.clone(),
                source,
            })?;
        let mut rows = ReportedRows {
            cells,
            sheet,
            columns: Vec::new(),
            pending: None,
            buf: Vec::new(),
            done: false,
            last_row: 0,
        };
        rows.read_header()?;
        Ok(rows)
    }
}

/// The rows of a records sheet, read one at a time (see [`ReportedRows::next`]).
pub struct ReportedRows<'a, R: Read + Seek> {
    cells: XlsxCellReader<'a, R>,
    sheet: String,
    /// Field of each column (by 0-based index), `None` for columns not read.
    columns: Vec<Option<Field>>,
    /// The first cell of the next row, read while finishing the previous one.
    pending: Option<Cell<DataRef<'a>>>,
    /// The cells of the row being read (kept to reuse its allocation).
    buf: Vec<Cell<DataRef<'a>>>,
    /// Set at the end of the sheet or after an error.
    done: bool,
    /// 1-based row of the last cell read.
    last_row: u32,
}

impl<'a, R: Read + Seek> ReportedRows<'a, R> {
    fn next_cell(&mut self) -> Result<Option<Cell<DataRef<'a>>>, ReportedError> {
        if let Some(cell) = self.pending.take() {
            return Ok(Some(cell));
        }
        if self.done {
            return Ok(None);
        }
        match self.cells.next_cell() {
            Ok(Some(cell)) => {
                self.last_row = cell.get_position().0.saturating_add(1);
                Ok(Some(cell))
            }
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(source) => {
                self.done = true;
                Err(ReportedError::Cell {
                    sheet: self.sheet.clone(),
                    row: self.last_row.max(1),
                    source,
                })
            }
        }
    }

    /// The cells of the next row that has any (0-based row index), in column order.
    fn next_raw_row(
        &mut self,
        cells: &mut Vec<Cell<DataRef<'a>>>,
    ) -> Result<Option<u32>, ReportedError> {
        cells.clear();
        let Some(first) = self.next_cell()? else {
            return Ok(None);
        };
        let row = first.get_position().0;
        cells.push(first);
        while let Some(cell) = self.next_cell()? {
            if cell.get_position().0 != row {
                self.pending = Some(cell);
                break;
            }
            cells.push(cell);
        }
        Ok(Some(row))
    }

    /// Reads the header: the first row with any value.
    fn read_header(&mut self) -> Result<(), ReportedError> {
        let mut cells = Vec::new();
        let mut found: Vec<(u32, String)> = Vec::new();
        while self.next_raw_row(&mut cells)?.is_some() {
            found = cells
                .iter()
                .filter_map(|c| cell_text(c.get_value()).map(|t| (c.get_position().1, t)))
                .collect();
            if !found.is_empty() {
                break;
            }
        }
        let mut seen: Vec<(Field, u32, String)> = Vec::new();
        for (col, name) in &found {
            let key = name.trim().to_ascii_lowercase();
            let key = if key == "usage_record_id" {
                "record_id"
            } else {
                key.as_str()
            };
            let Some(&(_, field)) = FIELDS.iter().find(|(n, _)| *n == key) else {
                continue;
            };
            if let Some((_, first, _)) = seen.iter().find(|(f, _, _)| *f == field) {
                return Err(ReportedError::DuplicateColumn {
                    sheet: self.sheet.clone(),
                    name: key.to_owned(),
                    first: column_letters(*first),
                    second: column_letters(*col),
                });
            }
            seen.push((field, *col, name.clone()));
        }
        let missing: Vec<&'static str> = REQUIRED_COLUMNS
            .into_iter()
            .filter(|want| {
                let field = FIELDS.iter().find(|(n, _)| n == want).map(|(_, f)| *f);
                !seen.iter().any(|(f, _, _)| Some(*f) == field)
            })
            .collect();
        if !missing.is_empty() {
            return Err(ReportedError::MissingColumns {
                sheet: self.sheet.clone(),
                missing,
                found: found.into_iter().map(|(_, name)| name).collect(),
            });
        }
        let width = seen
            .iter()
            .map(|(_, c, _)| *c as usize + 1)
            .max()
            .unwrap_or(0);
        self.columns = vec![None; width];
        for (field, col, _) in seen {
            self.columns[col as usize] = Some(field);
        }
        Ok(())
    }

    /// The next row that has any value, or `None` at the end of the sheet. After an error
    /// the stream ends.
    #[allow(
        clippy::should_implement_trait,
        reason = "fallible: `Result<Option<_>>`, and the rows end after an error"
    )]
    pub fn next(&mut self) -> Result<Option<ReportedRow>, ReportedError> {
        let mut cells = std::mem::take(&mut self.buf);
        let row = self.next_nonblank_row(&mut cells);
        self.buf = cells;
        row
    }

    fn next_nonblank_row(
        &mut self,
        cells: &mut Vec<Cell<DataRef<'a>>>,
    ) -> Result<Option<ReportedRow>, ReportedError> {
        loop {
            let Some(row) = self.next_raw_row(cells)? else {
                return Ok(None);
            };
            if cells.iter().all(|c| is_blank(c.get_value())) {
                continue;
            }
            let mut out = ReportedRow {
                row: row.saturating_add(1),
                record_id: String::new(),
                note: None,
                item: String::new(),
                item_criteria: String::new(),
                quantity: String::new(),
                start: None,
                end: None,
                asset: String::new(),
                asset_criteria: String::new(),
                category: None,
            };
            for cell in cells.drain(..) {
                let Some(Some(field)) = self.columns.get(cell.get_position().1 as usize) else {
                    continue;
                };
                let value = cell.get_value();
                match field {
                    Field::RecordId => out.record_id = cell_text(value).unwrap_or_default(),
                    Field::Note => out.note = note_text(value),
                    Field::ItemCriteria => out.item_criteria = cell_text(value).unwrap_or_default(),
                    Field::Item => out.item = cell_text(value).unwrap_or_default(),
                    Field::Quantity => out.quantity = quantity_text(value),
                    Field::Start => out.start = cell_time(value),
                    Field::End => out.end = cell_time(value),
                    Field::AssetCriteria => {
                        out.asset_criteria = cell_text(value).unwrap_or_default()
                    }
                    Field::Asset => out.asset = cell_text(value).unwrap_or_default(),
                    Field::Category => out.category = cell_text(value),
                }
            }
            return Ok(Some(out));
        }
    }
}

/// `A` for column 0, `AA` for 26.
fn column_letters(col: u32) -> String {
    let mut n = col as u64 + 1;
    let mut out = Vec::new();
    while n > 0 {
        let rem = ((n - 1) % 26) as u8;
        out.push(b'A' + rem);
        n = (n - 1) / 26;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn is_blank(v: &DataRef<'_>) -> bool {
    match v {
        DataRef::Empty => true,
        DataRef::String(s) => s.trim().is_empty(),
        DataRef::SharedString(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// Text as the vendor meant it, trimmed; `None` when blank. Numbers lose a trailing `.0`.
fn cell_text(v: &DataRef<'_>) -> Option<String> {
    let text = match v {
        DataRef::Empty => return None,
        DataRef::String(s) => s.trim().to_owned(),
        DataRef::SharedString(s) => s.trim().to_owned(),
        DataRef::Int(i) => i.to_string(),
        DataRef::Float(f) => float_text(*f),
        DataRef::Bool(b) => b.to_string(),
        DataRef::DateTime(d) => d
            .as_datetime()
            .map(|dt| dt.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|| float_text(d.as_f64())),
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => s.trim().to_owned(),
        DataRef::Error(e) => e.to_string(),
    };
    (!text.is_empty()).then_some(text)
}

/// A note as written: not trimmed, `None` when blank.
fn note_text(v: &DataRef<'_>) -> Option<String> {
    match v {
        DataRef::String(s) => (!s.trim().is_empty()).then(|| s.clone()),
        DataRef::SharedString(s) => (!s.trim().is_empty()).then(|| (*s).to_owned()),
        other => cell_text(other),
    }
}

fn float_text(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// The quantity normalised as [`Quantity`] does, or the cell's text as written.
fn quantity_text(v: &DataRef<'_>) -> String {
    let number = |f: f64| Quantity::from_f64(f).map_or_else(|_| format!("{f}"), |q| q.to_string());
    let text = |s: &str| Quantity::parse(s).map_or_else(|_| s.to_owned(), |q| q.to_string());
    match v {
        DataRef::Empty => String::new(),
        DataRef::Float(f) => number(*f),
        DataRef::Int(i) => number(*i as f64),
        // A number cell shown with a date format is still the number written.
        DataRef::DateTime(d) => number(d.as_f64()),
        DataRef::String(s) => text(s),
        DataRef::SharedString(s) => text(s),
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => s.clone(),
        DataRef::Bool(b) => b.to_string(),
        DataRef::Error(e) => e.to_string(),
    }
}

/// Unix seconds of a time cell: text, an Excel date cell, or a serial day number (1900
/// system), read as UTC and rounded to the second.
fn cell_time(v: &DataRef<'_>) -> Option<i64> {
    match v {
        DataRef::DateTime(d) => d.as_datetime().map(naive_secs),
        DataRef::Float(f) => serial_secs(*f),
        DataRef::Int(i) => serial_secs(*i as f64),
        DataRef::String(s) | DataRef::DateTimeIso(s) => text_time(s),
        DataRef::SharedString(s) => text_time(s),
        _ => None,
    }
}

fn text_time(text: &str) -> Option<i64> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    if let Some(secs) = plain_time(t) {
        return Some(secs);
    }
    parse_utc(t)
        .or_else(|| {
            ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]
                .into_iter()
                .find_map(|fmt| NaiveDateTime::parse_from_str(t, fmt).ok())
                .map(|dt| dt.and_utc())
        })
        .map(rounded_secs)
}

/// `YYYY-MM-DD HH:MM:SS` (or with `T`), as this extension writes times, without the general
/// parser (a million rows hold two million times).
fn plain_time(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b' ' | b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 7)?, num(8, 10)?)?;
    let at = date.and_hms_opt(num(11, 13)?, num(14, 16)?, num(17, 19)?)?;
    Some(at.and_utc().timestamp())
}

fn rounded_secs(t: DateTime<Utc>) -> i64 {
    t.timestamp() + i64::from(t.timestamp_subsec_nanos() >= 500_000_000)
}

fn naive_secs(t: NaiveDateTime) -> i64 {
    rounded_secs(t.and_utc())
}

/// Excel serial day number (1900 date system, as Excel counts it) to Unix seconds.
fn serial_secs(days: f64) -> Option<i64> {
    if !(1.0..2_958_466.0).contains(&days) {
        return None;
    }
    ExcelDateTime::new(days, ExcelDateTimeType::DateTime, false)
        .as_datetime()
        .map(naive_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::record::Quantity;
    use crate::usage::row::Row;
    use crate::usage::workbook;
    use rust_xlsxwriter::{ExcelDateTime as XlDateTime, Format, Workbook};
    use std::io::Cursor;

    fn secs(text: &str) -> i64 {
        parse_utc(text).expect("time").timestamp()
    }

    /// A row of our own workbooks.
    #[allow(clippy::too_many_arguments)]
    fn wrow<'a>(
        record_id: &'a str,
        note: Option<&'a str>,
        item_mpn: &'a str,
        quantity: &'a Quantity,
        start: i64,
        end: i64,
        asset_id: &'a str,
        category: Option<&'a str>,
    ) -> Row<'a> {
        crate::usage::row::test_row(
            record_id,
            note,
            item_mpn,
            quantity.as_str(),
            (start, end),
            asset_id,
            category,
        )
    }

    fn error_of(bytes: Vec<u8>) -> ReportedError {
        match from_reader(Cursor::new(bytes)) {
            Err(e) => e,
            Ok(mut book) => match book.rows() {
                Err(e) => e,
                Ok(_) => panic!("an error expected"),
            },
        }
    }

    #[test]
    fn our_own_workbook_reads_back() {
        let q = |s: &str| Quantity::parse(s).expect("quantity");
        let (q1, q2, q3) = (q("2.5"), q("7"), q("12345678901234567.5"));
        let start = secs("2024-04-01T00:00:00Z");
        let end = secs("2024-04-30T23:59:59Z");
        let rows = [
            wrow(
                "r-1",
                Some("=SUM(A1:A9)"),
                "MPN-1",
                &q1,
                start,
                end,
                "AS-1",
                None,
            ),
            wrow(
                "=1+1",
                None,
                "MPN-2",
                &q2,
                start,
                start + 3600,
                "AS-2",
                Some("compute"),
            ),
            wrow(
                "r-3",
                Some(" +cmd|' /C calc'!A0 "),
                "MPN-2",
                &q3,
                start + 1,
                end,
                "AS-2",
                None,
            ),
        ];
        let created = DateTime::<Utc>::from_timestamp(end + 1, 0).unwrap_or_default();
        let bytes = workbook::write(rows, created).expect("writes");
        let mut book = from_reader(Cursor::new(bytes)).expect("opens");
        assert_eq!(book.sheet(), "records");
        let mut reader = book.rows().expect("header");
        let mut got = Vec::new();
        while let Some(row) = reader.next().expect("row") {
            got.push(row);
        }
        assert_eq!(reader.next().expect("end"), None, "stays at the end");
        let want = [
            ReportedRow {
                row: 2,
                record_id: "r-1".into(),
                note: Some("=SUM(A1:A9)".into()),
                item: "MPN-1".into(),
                item_criteria: "item.mpn".into(),
                quantity: "2.5".into(),
                start: Some(start),
                end: Some(end),
                asset: "AS-1".into(),
                asset_criteria: "asset.id".into(),
                category: None,
            },
            ReportedRow {
                row: 3,
                record_id: "=1+1".into(),
                note: None,
                item: "MPN-2".into(),
                item_criteria: "item.mpn".into(),
                quantity: "7".into(),
                start: Some(start),
                end: Some(start + 3600),
                asset: "AS-2".into(),
                asset_criteria: "asset.id".into(),
                category: Some("compute".into()),
            },
            ReportedRow {
                row: 4,
                record_id: "r-3".into(),
                note: Some(" +cmd|' /C calc'!A0 ".into()),
                item: "MPN-2".into(),
                item_criteria: "item.mpn".into(),
                quantity: "12345678901234567.5".into(),
                start: Some(start + 1),
                end: Some(end),
                asset: "AS-2".into(),
                asset_criteria: "asset.id".into(),
                category: None,
            },
        ];
        assert_eq!(got, want);
        for (row, record) in got.iter().zip(&rows) {
            assert_eq!(row.quantity, record.quantity, "same as the Quantity");
        }
    }

    /// A workbook made by hand: `usage_records`, shared strings, other column order, an extra
    /// column, Excel date cells, serial numbers, blank rows.
    fn hand_made() -> Vec<u8> {
        let mut book = Workbook::new();
        let ws = book.add_worksheet();
        ws.set_name("usage_records").expect("name");
        let other = book.add_worksheet();
        other.set_name("intro").expect("name");
        let ws = book.worksheet_from_name("usage_records").expect("sheet");
        let header = [
            " Usage_Record_ID ",
            "quantity",
            "asset_search_value",
            "asset_search_criteria",
            "remarks",
            "start_time_utc",
            "end_time_utc",
            "item_search_value",
            "item_search_criteria",
            "record_note",
        ];
        for (c, name) in header.iter().enumerate() {
            ws.write_string(0, c as u16, *name).expect("header");
        }
        let date = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
        let when = |y, mo, d, h, mi, s: f64| {
            XlDateTime::from_ymd(y, mo, d)
                .and_then(|t| t.and_hms(h, mi, s))
                .expect("date")
        };
        // Row 2: date cells, a quantity 3.0, a numeric record id.
        ws.write_number(1, 0, 1001.0).expect("cell");
        ws.write_number(1, 1, 3.0).expect("cell");
        ws.write_string(1, 2, "AS-1").expect("cell");
        ws.write_string(1, 3, "asset.id").expect("cell");
        ws.write_string(1, 4, "ignored").expect("cell");
        ws.write_datetime_with_format(1, 5, when(2020, 2, 25, 9, 21, 39.0), &date)
            .expect("cell");
        ws.write_datetime_with_format(1, 6, when(2020, 2, 25, 9, 25, 39.6), &date)
            .expect("cell");
        ws.write_string(1, 7, "MPN-C-PPU").expect("cell");
        ws.write_string(1, 8, "item.mpn").expect("cell");
        // Row 3: blank; only spaces and an empty formatted cell.
        ws.write_string(2, 4, "   ").expect("cell");
        ws.write_blank(2, 5, &date).expect("cell");
        // Row 4: text times (unpadded hour, ISO), text quantity, a note.
        ws.write_string(3, 0, "SAND-2").expect("cell");
        ws.write_string(3, 1, "+007.50").expect("cell");
        ws.write_string(3, 2, "AS-1").expect("cell");
        ws.write_string(3, 3, "asset.id").expect("cell");
        ws.write_string(3, 5, "2020-02-25 9:21:39").expect("cell");
        ws.write_string(3, 6, "2020-02-25T09:25:39Z").expect("cell");
        ws.write_string(3, 7, "MPN-C-PPU").expect("cell");
        ws.write_string(3, 8, "item.mpn").expect("cell");
        ws.write_string(3, 9, "a note").expect("cell");
        // Row 6: no record id, a serial number time, a date alone, a bad quantity.
        ws.write_string(5, 1, "about 3").expect("cell");
        ws.write_number(5, 5, 43886.5).expect("cell");
        ws.write_string(5, 6, "2020-02-26").expect("cell");
        ws.write_string(5, 7, "MPN-C-PPU").expect("cell");
        // Row 7: values only in an ignored column.
        ws.write_string(6, 4, "stray").expect("cell");
        // Row 8: unreadable times.
        ws.write_string(7, 0, "SAND-3").expect("cell");
        ws.write_number(7, 1, 0.1).expect("cell");
        ws.write_string(7, 5, "25/02/2020").expect("cell");
        ws.write_boolean(7, 6, true).expect("cell");
        book.save_to_buffer().expect("saves")
    }

    #[test]
    fn a_hand_made_workbook_reads_leniently() {
        let mut book = from_reader(Cursor::new(hand_made())).expect("opens");
        assert_eq!(book.sheet(), "usage_records");
        let rows = {
            let mut reader = book.rows().expect("header");
            let mut rows = Vec::new();
            while let Some(row) = reader.next().expect("row") {
                rows.push(row);
            }
            rows
        };
        assert_eq!(
            rows.iter().map(|r| r.row).collect::<Vec<_>>(),
            [2, 4, 6, 7, 8],
            "blank rows skipped"
        );
        let base = ReportedRow {
            row: 2,
            record_id: "1001".into(),
            note: None,
            item: "MPN-C-PPU".into(),
            item_criteria: "item.mpn".into(),
            quantity: "3".into(),
            start: Some(secs("2020-02-25T09:21:39Z")),
            end: Some(secs("2020-02-25T09:25:40Z")),
            asset: "AS-1".into(),
            asset_criteria: "asset.id".into(),
            category: None,
        };
        assert_eq!(rows[0], base, "date cells, 39.6 s rounded up");
        assert_eq!(
            rows[1],
            ReportedRow {
                row: 4,
                record_id: "SAND-2".into(),
                note: Some("a note".into()),
                quantity: "7.5".into(),
                end: Some(secs("2020-02-25T09:25:39Z")),
                ..base.clone()
            }
        );
        assert_eq!(
            rows[2],
            ReportedRow {
                row: 6,
                record_id: String::new(),
                item_criteria: String::new(),
                quantity: "about 3".into(),
                start: Some(secs("2020-02-25T12:00:00Z")),
                end: Some(secs("2020-02-26T00:00:00Z")),
                asset: String::new(),
                asset_criteria: String::new(),
                ..base.clone()
            },
            "kept without a record id; the bad quantity as written"
        );
        assert_eq!(rows[3].record_id, "");
        assert_eq!(rows[3].item, "");
        assert_eq!(rows[3].quantity, "");
        assert_eq!(rows[4].record_id, "SAND-3");
        assert_eq!(rows[4].quantity, "0.1");
        assert_eq!((rows[4].start, rows[4].end), (None, None));

        // The strings were in the shared-string table, as Excel and openpyxl write them.
        let bytes = hand_made();
        let mut zip = Xlsx::<_>::new(Cursor::new(bytes)).expect("opens");
        let mut cells = zip.worksheet_cells_reader("usage_records").expect("sheet");
        let mut shared = 0;
        while let Some(cell) = cells.next_cell().expect("cell") {
            shared += usize::from(matches!(cell.get_value(), DataRef::SharedString(_)));
        }
        assert!(shared > 20, "{shared} shared strings");
    }

    #[test]
    fn each_row_is_given_to_a_callback() {
        let dir = std::env::temp_dir().join(format!("reported-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("usage.xlsx");
        std::fs::write(&path, hand_made()).expect("writes");
        let mut ids = Vec::new();
        let count = for_each_row(&path, |row| ids.push(row.record_id)).expect("reads");
        assert_eq!(count, 5);
        assert_eq!(ids, ["1001", "SAND-2", "", "", "SAND-3"]);
        let missing = dir.join("absent.xlsx");
        assert!(matches!(
            open(&missing),
            Err(ReportedError::Open { ref path, .. }) if *path == missing
        ));
        std::fs::remove_dir_all(&dir).expect("cleans");
    }

    #[test]
    fn time_text_is_read_leniently() {
        let t = |s: &str| text_time(s);
        let want = Some(secs("2020-02-25T09:21:39Z"));
        assert_eq!(t("2020-02-25 09:21:39"), want);
        assert_eq!(t("2020-02-25 9:21:39"), want);
        assert_eq!(t(" 2020-02-25T09:21:39Z "), want);
        assert_eq!(t("2020-02-25T09:21:39"), want);
        assert_eq!(t("2020-02-25T11:21:39+02:00"), want);
        assert_eq!(
            t("2020-02-25 09:21:38.5"),
            want,
            "rounded to the nearest second"
        );
        assert_eq!(t("2020-02-25 09:21:39.499"), want);
        assert_eq!(t("2020-02-25 09:21"), Some(secs("2020-02-25T09:21:00Z")));
        assert_eq!(t("2020-02-25"), Some(secs("2020-02-25T00:00:00Z")));
        for bad in ["", "25/02/2020", "yesterday", "2020-02-30"] {
            assert_eq!(t(bad), None, "{bad}");
        }
        for (plain, general) in [
            ("2024-02-29 23:59:59", "2024-02-29T23:59:59Z"),
            ("1970-01-01T00:00:00", "1970-01-01T00:00:00Z"),
            ("9999-12-31 23:59:59", "9999-12-31T23:59:59Z"),
        ] {
            assert_eq!(plain_time(plain), Some(secs(general)), "{plain}");
        }
        for bad in [
            "2023-02-29 00:00:00",
            "2024-01-01 24:00:00",
            "2024-01-01 1:00:000",
        ] {
            assert_eq!(plain_time(bad), None, "{bad}");
        }
        assert_eq!(serial_secs(43886.5), Some(secs("2020-02-25T12:00:00Z")));
        assert_eq!(serial_secs(61.0), Some(secs("1900-03-01T00:00:00Z")));
        assert_eq!(serial_secs(0.0), None);
        assert_eq!(serial_secs(-5.0), None);
        assert_eq!(serial_secs(f64::NAN), None);
    }

    #[test]
    fn quantities_are_normalised_like_quantity() {
        assert_eq!(quantity_text(&DataRef::Float(3.0)), "3");
        assert_eq!(
            quantity_text(&DataRef::Float(0.1 + 0.2)),
            "0.30000000000000004"
        );
        assert_eq!(
            quantity_text(&DataRef::Float(1e21)),
            "1000000000000000000000"
        );
        assert_eq!(quantity_text(&DataRef::Int(-0)), "0");
        assert_eq!(quantity_text(&DataRef::String(" 1e3 ".into())), "1000");
        assert_eq!(quantity_text(&DataRef::SharedString("1,5")), "1,5");
        assert_eq!(quantity_text(&DataRef::Float(f64::INFINITY)), "inf");
        assert_eq!(quantity_text(&DataRef::Empty), "");
        assert_eq!(column_letters(0), "A");
        assert_eq!(column_letters(25), "Z");
        assert_eq!(column_letters(26), "AA");
        assert_eq!(column_letters(16_383), "XFD");
    }

    #[test]
    fn a_workbook_without_records_is_refused() {
        let err = error_of(b"PK\x03\x04 not a zip at all".to_vec());
        assert!(matches!(err, ReportedError::NotXlsx(_)), "{err}");
        assert!(err.to_string().starts_with("not a readable .xlsx workbook"));

        let mut book = Workbook::new();
        book.add_worksheet().set_name("Sheet1").expect("name");
        book.add_worksheet().set_name("categories").expect("name");
        let err = error_of(book.save_to_buffer().expect("saves"));
        assert_eq!(
            err.to_string(),
            "the workbook has no sheet \"records\" (or \"usage_records\"); it has: Sheet1, categories"
        );
    }

    #[test]
    fn missing_and_repeated_columns_are_named() {
        let sheet = |header: &[&str]| {
            let mut book = Workbook::new();
            let ws = book.add_worksheet();
            ws.set_name("Records").expect("name");
            for (c, name) in header.iter().enumerate() {
                ws.write_string(0, c as u16, *name).expect("header");
            }
            ws.write_string(1, 0, "r-1").expect("cell");
            book.save_to_buffer().expect("saves")
        };
        let err = error_of(sheet(&[
            "record_id",
            "item_search_value",
            "quantity",
            "start_time_utc",
            "notes",
        ]));
        match &err {
            ReportedError::MissingColumns { missing, found, .. } => {
                assert_eq!(
                    missing,
                    &[
                        "item_search_criteria",
                        "end_time_utc",
                        "asset_search_criteria",
                        "asset_search_value"
                    ]
                );
                assert_eq!(
                    found,
                    &[
                        "record_id",
                        "item_search_value",
                        "quantity",
                        "start_time_utc",
                        "notes"
                    ]
                );
            }
            other => panic!("missing columns expected, got {other}"),
        }
        assert_eq!(
            err.to_string(),
            "sheet \"Records\": missing required column(s) item_search_criteria, end_time_utc, \
             asset_search_criteria, asset_search_value; the header has: record_id, \
             item_search_value, quantity, start_time_utc, notes"
        );

        let err = error_of(sheet(&[]));
        assert!(
            err.to_string().ends_with("the header has: r-1"),
            "the first row with a value is the header: {err}"
        );

        let mut all: Vec<&str> = workbook::COLUMNS.to_vec();
        all.push("Record_ID");
        let err = error_of(sheet(&all));
        assert_eq!(
            err.to_string(),
            "sheet \"Records\": column \"record_id\" appears twice in the header (columns A and K)"
        );

        let mut empty = Workbook::new();
        empty.add_worksheet().set_name("records").expect("name");
        let err = error_of(empty.save_to_buffer().expect("saves"));
        assert!(
            err.to_string().ends_with("the header has: nothing"),
            "{err}"
        );
    }

    /// A zip archive of `files`, stored uncompressed (to write sheet XML by hand).
    fn stored_zip(files: &[(&str, String)]) -> Vec<u8> {
        fn crc32(data: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &b in data {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 {
                        (crc >> 1) ^ 0xEDB8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        let (mut out, mut central) = (Vec::new(), Vec::new());
        for (name, text) in files {
            let (data, offset) = (text.as_bytes(), out.len() as u32);
            let (crc, len) = (crc32(data), data.len() as u32);
            let fixed = |head: &mut Vec<u8>| {
                head.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
                head.extend_from_slice(&crc.to_le_bytes());
                head.extend_from_slice(&len.to_le_bytes());
                head.extend_from_slice(&len.to_le_bytes());
                head.extend_from_slice(&(name.len() as u16).to_le_bytes());
                head.extend_from_slice(&[0, 0]);
            };
            out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            fixed(&mut out);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(data);
            central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            central.extend_from_slice(&[20, 0]);
            fixed(&mut central);
            central.extend_from_slice(&[0; 10]);
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let (at, count) = (out.len() as u32, files.len() as u16);
        out.extend_from_slice(&central);
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&at.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out
    }

    /// A workbook whose sheet XML is `rows` (the `<row>` elements).
    fn raw_workbook(rows: &str) -> Vec<u8> {
        let rels = "http://schemas.openxmlformats.org/package/2006/relationships";
        let office = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
        let main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
        stored_zip(&[
            (
                "_rels/.rels",
                format!(
                    r#"<Relationships xmlns="{rels}"><Relationship Id="rId1" Type="{office}/officeDocument" Target="xl/workbook.xml"/></Relationships>"#
                ),
            ),
            (
                "xl/workbook.xml",
                format!(
                    r#"<workbook xmlns="{main}" xmlns:r="{office}"><sheets><sheet name="records" sheetId="1" r:id="rId1"/></sheets></workbook>"#
                ),
            ),
            (
                "xl/_rels/workbook.xml.rels",
                format!(
                    r#"<Relationships xmlns="{rels}"><Relationship Id="rId1" Type="{office}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#
                ),
            ),
            (
                "xl/worksheets/sheet1.xml",
                format!(r#"<worksheet xmlns="{main}"><sheetData>{rows}</sheetData></worksheet>"#),
            ),
        ])
    }

    #[test]
    fn cells_of_every_kind_and_an_unreadable_one() {
        let text =
            |r: &str, s: &str| format!(r#"<c r="{r}" t="inlineStr"><is><t>{s}</t></is></c>"#);
        let header: String = REQUIRED_COLUMNS
            .iter()
            .enumerate()
            .map(|(c, name)| text(&format!("{}1", column_letters(c as u32)), name))
            .collect();
        let row2 = [
            text("A2", "r-1"),
            text("B2", "item.mpn"),
            text("C2", "MPN-1"),
            // A formula's cached value is what the cell holds.
            r#"<c r="D2"><f>1+1</f><v>2</v></c>"#.to_owned(),
            r#"<c r="E2" t="d"><v>2024-04-01T10:00:00</v></c>"#.to_owned(),
            r#"<c r="F2" t="str"><f>TEXT(1,"0")</f><v>2024-04-01 11:00:00</v></c>"#.to_owned(),
            text("G2", "asset.id"),
            r#"<c r="H2" t="e"><v>#N/A</v></c>"#.to_owned(),
        ]
        .concat();
        let row3 = [
            text("A3", "r-2"),
            r#"<c r="B3" t="s"><v>7</v></c>"#.to_owned(),
        ]
        .concat();
        let bytes = raw_workbook(&format!(
            r#"<row r="1">{header}</row><row r="2">{row2}</row><row r="3">{row3}</row><row r="4">{}</row>"#,
            text("A4", "r-3")
        ));
        let mut book = from_reader(Cursor::new(bytes)).expect("opens");
        let mut rows = book.rows().expect("header");
        let first = rows.next().expect("row 2").expect("a row");
        assert_eq!(first.record_id, "r-1");
        assert_eq!(first.quantity, "2");
        assert_eq!(first.start, Some(secs("2024-04-01T10:00:00Z")));
        assert_eq!(first.end, Some(secs("2024-04-01T11:00:00Z")));
        assert_eq!(first.asset, "#N/A");
        let err = rows
            .next()
            .expect_err("row 3 has a bad shared-string index");
        assert!(matches!(err, ReportedError::Cell { row: 3, .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("sheet \"records\": unreadable cell at row 3: "),
            "{err}"
        );
        assert_eq!(
            rows.next().expect("ended"),
            None,
            "the stream ends after an error"
        );
    }

    /// 20,000 rows of our own workbook, read as a stream.
    #[test]
    fn a_large_workbook_streams() {
        stream_rows(20_000);
    }

    /// 200,000 rows: about 16 s in a debug build (13 s of it calamine's unoptimised XML and
    /// inflate code), so not run by default: `cargo test --lib reported -- --ignored`.
    /// (By hand, a million rows of our workbook read in 16 MB peak RSS, 9 MB over the test
    /// harness's own.)
    #[test]
    #[ignore = "about 16 s in a debug build"]
    fn a_workbook_of_200_000_rows_streams() {
        stream_rows(200_000);
    }

    fn stream_rows(n: u32) {
        let q = Quantity::parse("1.25").expect("quantity");
        let ids: Vec<String> = (0..n).map(|i| format!("rec-{i:07}")).collect();
        let start = secs("2024-04-01T00:00:00Z");
        let rows = ids.iter().enumerate().map(|(i, id)| {
            wrow(
                id,
                None,
                "MPN-1",
                &q,
                start + i as i64,
                start + i as i64 + 60,
                "AS-1",
                None,
            )
        });
        let created = DateTime::<Utc>::from_timestamp(start, 0).unwrap_or_default();
        let bytes = workbook::write(rows, created).expect("writes");
        let mut book = from_reader(Cursor::new(bytes)).expect("opens");
        let mut reader = book.rows().expect("header");
        let mut count = 0u32;
        while let Some(row) = reader.next().expect("row") {
            if count.is_multiple_of(n / 4 - 1) || count == n - 1 {
                assert_eq!(row.row, count + 2);
                assert_eq!(row.record_id, ids[count as usize]);
                assert_eq!(row.quantity, "1.25");
                assert_eq!(row.start, Some(start + i64::from(count)));
                assert_eq!(row.end, Some(start + i64::from(count) + 60));
            }
            count += 1;
        }
        assert_eq!(count, n);
    }
}
