//! The usage workbook Connect takes: sheet `records` with the QT columns in the reference's
//! order, one row per record, and a `categories` sheet when records name categories.
//!
//! Written with rust_xlsxwriter in constant-memory mode (rows stream to a temporary file in the
//! run's work directory, so a million rows do not sit in memory) and saved to a file. Text cells
//! are always written as strings: a note that starts with `=` stays text, never a formula.
//! Times are `YYYY-MM-DD HH:MM:SS` in UTC. The document's creation time is fixed by the caller,
//! so the same rows give the same bytes.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, Datelike, Timelike, Utc};
use rust_xlsxwriter::{DocProperties, ExcelDateTime, Workbook, XlsxError};

use super::record::exact_f64;
use super::row::Row;

/// The `records` columns, in the order of the reference (section 6.2) for the QT schema.
pub const COLUMNS: [&str; 10] = [
    "record_id",
    "record_note",
    "item_search_criteria",
    "item_search_value",
    "quantity",
    "start_time_utc",
    "end_time_utc",
    "asset_search_criteria",
    "asset_search_value",
    "category_id",
];

/// The most rows a worksheet holds below its header.
pub const MAX_ROWS: usize = 1_048_575;

/// A workbook that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the usage workbook: {0}")]
pub struct WorkbookError(#[from] XlsxError);

/// `YYYY-MM-DD HH:MM:SS` into a fixed buffer (a million rows make `format!` show).
pub fn format_time(secs: i64, buf: &mut [u8; 19]) -> &str {
    let t = DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default();
    let put = |buf: &mut [u8; 19], at: usize, value: u32, width: usize| {
        let mut v = value;
        for i in (0..width).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(buf, 0, t.year().clamp(0, 9999) as u32, 4);
    buf[4] = b'-';
    put(buf, 5, t.month(), 2);
    buf[7] = b'-';
    put(buf, 8, t.day(), 2);
    buf[10] = b' ';
    put(buf, 11, t.hour(), 2);
    buf[13] = b':';
    put(buf, 14, t.minute(), 2);
    buf[16] = b':';
    put(buf, 17, t.second(), 2);
    std::str::from_utf8(buf).unwrap_or("1970-01-01 00:00:00")
}

/// Writes one workbook, row by row.
pub struct WorkbookWriter {
    book: Workbook,
    rows: u32,
    categories: BTreeSet<String>,
    start_buf: [u8; 19],
    end_buf: [u8; 19],
}

impl WorkbookWriter {
    /// `created` becomes the document's creation time (use something derived from the data,
    /// such as the end of the period, for reproducible bytes); `tempdir` holds the rows while
    /// they are written (the system's when `None`).
    pub fn new(
        created: DateTime<Utc>,
        tempdir: Option<&Path>,
    ) -> Result<WorkbookWriter, WorkbookError> {
        let mut book = Workbook::new();
        // Level 2 deflates as fast as level 1 and makes files a third smaller.
        book.set_zip_compression_level(2);
        if let Some(dir) = tempdir {
            book.set_tempdir(dir)?;
        }
        let when = ExcelDateTime::from_ymd(
            created.year().clamp(1900, 9999) as u16,
            created.month() as u8,
            created.day() as u8,
        )?
        .and_hms(
            created.hour() as u16,
            created.minute() as u8,
            created.second() as f64,
        )?;
        book.set_properties(
            &DocProperties::new()
                .set_title("Usage records")
                .set_author("connect-usage")
                .set_creation_datetime(&when),
        );
        let ws = book.add_worksheet_with_constant_memory()?;
        ws.set_name("records")?;
        for (c, name) in COLUMNS.iter().enumerate() {
            ws.write_string(0, c as u16, *name)?;
        }
        Ok(WorkbookWriter {
            book,
            rows: 0,
            categories: BTreeSet::new(),
            start_buf: [0; 19],
            end_buf: [0; 19],
        })
    }

    /// Rows written so far.
    pub fn rows(&self) -> u32 {
        self.rows
    }

    /// Writes the next row.
    pub fn push(&mut self, r: &Row<'_>) -> Result<(), WorkbookError> {
        let ws = self.book.worksheet_from_index(0)?;
        let row_no = self.rows + 1;
        ws.write_string(row_no, 0, r.record_id)?;
        if let Some(note) = r.note {
            ws.write_string(row_no, 1, note)?;
        }
        ws.write_string(row_no, 2, "item.mpn")?;
        ws.write_string(row_no, 3, r.item_mpn)?;
        match exact_f64(r.quantity) {
            Some(v) => ws.write_number(row_no, 4, v)?,
            None => ws.write_string(row_no, 4, r.quantity)?,
        };
        ws.write_string(row_no, 5, format_time(r.start, &mut self.start_buf))?;
        ws.write_string(row_no, 6, format_time(r.end, &mut self.end_buf))?;
        ws.write_string(row_no, 7, "asset.id")?;
        ws.write_string(row_no, 8, r.asset_id)?;
        if let Some(category) = r.category {
            ws.write_string(row_no, 9, category)?;
            if !self.categories.contains(category) {
                self.categories.insert(category.to_owned());
            }
        }
        self.rows = row_no;
        Ok(())
    }

    /// Adds the `categories` sheet if rows named categories, and saves the workbook to `path`.
    pub fn save(mut self, path: &Path) -> Result<(), WorkbookError> {
        self.finish_sheets()?;
        self.book.save(path)?;
        Ok(())
    }

    /// The same, into memory.
    pub fn save_to_vec(mut self) -> Result<Vec<u8>, WorkbookError> {
        self.finish_sheets()?;
        Ok(self.book.save_to_buffer()?)
    }

    fn finish_sheets(&mut self) -> Result<(), WorkbookError> {
        if self.categories.is_empty() {
            return Ok(());
        }
        let cs = self.book.add_worksheet_with_constant_memory()?;
        cs.set_name("categories")?;
        for (c, name) in ["category_id", "category_name", "category_description"]
            .iter()
            .enumerate()
        {
            cs.write_string(0, c as u16, *name)?;
        }
        for (i, category) in self.categories.iter().enumerate() {
            let r = i as u32 + 1;
            cs.write_string(r, 0, category)?;
            cs.write_string(r, 1, category)?;
        }
        Ok(())
    }
}

/// Writes a workbook of `rows` into memory (small workbooks, tests).
pub fn write<'a>(
    rows: impl IntoIterator<Item = Row<'a>>,
    created: DateTime<Utc>,
) -> Result<Vec<u8>, WorkbookError> {
    let mut w = WorkbookWriter::new(created, None)?;
    for r in rows {
        w.push(&r)?;
    }
    w.save_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::{Data, Reader};

    use crate::usage::row::test_row as row;

    #[test]
    fn times_are_written_to_the_second() {
        let mut buf = [0u8; 19];
        assert_eq!(format_time(0, &mut buf), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_714_521_599, &mut buf), "2024-04-30 23:59:59");
        assert_eq!(format_time(1_709_251_200, &mut buf), "2024-03-01 00:00:00");
    }

    #[test]
    fn writes_the_qt_sheet_with_text_that_stays_text() {
        let rows = [
            row(
                "r-1",
                Some("=SUM(A1:A9)"),
                "MPN-1",
                "2.5",
                (1_711_929_600, 1_714_521_599),
                "AS-1",
                None,
            ),
            row(
                "=1+1",
                None,
                "MPN-2",
                "7",
                (1_711_929_600, 1_711_933_200),
                "AS-2",
                Some("compute"),
            ),
            row(
                "r-3",
                Some("+cmd|' /C calc'!A0"),
                "MPN-2",
                "12345678901234567.5",
                (1_711_929_600, 1_711_933_200),
                "AS-2",
                None,
            ),
        ];
        let created = DateTime::<Utc>::from_timestamp(1_714_521_600, 0).unwrap_or_default();
        let bytes = write(rows, created).expect("writes");
        assert_eq!(bytes, write(rows, created).expect("writes"), "same bytes");

        let mut book: calamine::Xlsx<_> =
            calamine::open_workbook_from_rs(std::io::Cursor::new(bytes)).expect("xlsx");
        assert_eq!(book.sheet_names(), ["records", "categories"]);
        let cells = book.worksheet_range("records").expect("records");
        let header: Vec<String> = (0..10)
            .map(|c| {
                cells
                    .get_value((0, c))
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(header, COLUMNS);
        assert_eq!(
            cells.get_value((1, 1)),
            Some(&Data::String("=SUM(A1:A9)".into()))
        );
        assert_eq!(cells.get_value((2, 0)), Some(&Data::String("=1+1".into())));
        assert_eq!(cells.get_value((1, 4)), Some(&Data::Float(2.5)));
        assert_eq!(
            cells.get_value((3, 4)),
            Some(&Data::String("12345678901234567.5".into()))
        );
        assert_eq!(
            cells.get_value((1, 5)),
            Some(&Data::String("2024-04-01 00:00:00".into()))
        );
        assert_eq!(
            cells.get_value((1, 6)),
            Some(&Data::String("2024-04-30 23:59:59".into()))
        );
        assert_eq!(
            cells.get_value((2, 9)),
            Some(&Data::String("compute".into()))
        );
        let formulas = book.worksheet_formula("records").expect("formulas");
        assert!(
            formulas.used_cells().all(|(_, _, f)| f.is_empty()),
            "no formula anywhere"
        );
    }
}
