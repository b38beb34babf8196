//! The usage workbook Connect takes: sheet `records` with the QT columns in the reference's
//! order, one row per record, and a `categories` sheet when records name categories.
//!
//! Written here as SpreadsheetML, straight into the zip entry, a row at a time: memory stays
//! at one 64 KiB buffer (and the set of categories named) whatever the rows, and nothing goes
//! through a temporary file. A usage workbook has one fixed shape (ten columns, text but for
//! the quantity, no styles, no formulas), so a general spreadsheet writer's per-cell bookkeeping buys nothing here, and it
//! was the run's largest cost: rust_xlsxwriter (which the sandbox and the tests still use, and
//! which serves as the reference the tests compare this writer's cells against) took 2.5 µs a
//! row in constant-memory mode, this takes about 1 µs, most of it the deflate
//! (docs/PERFORMANCE.md).
//!
//! What the bytes hold:
//! - text is an inline string (`t="inlineStr"`), never a formula: a note that starts with `=`
//!   stays text; XML's special characters are escaped, control characters XML cannot carry are
//!   written as Excel's `_xHHHH_` escapes (and a literal `_xHHHH_` keeps its underscore as
//!   `_x005F_`), leading or trailing white space is kept with `xml:space="preserve"`;
//! - a quantity is a number cell when a float holds it exactly, else text;
//! - times are `YYYY-MM-DD HH:MM:SS` in UTC;
//! - the document's creation time is the caller's and the zip entries' times are fixed, so the
//!   same rows give the same bytes;
//! - the worksheet's dimension comes first in its XML, before the rows, so the writer is told
//!   how many rows there will be and checks that it got them;
//! - zip entries are plain (no ZIP64) unless a sheet passes 4 GiB of XML: then
//!   [`WorkbookWriter::write_file`] writes the workbook again with ZIP64.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Seek, Write};
use std::path::Path;

use chrono::{DateTime, Datelike, Timelike, Utc};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::record::exact_f64;
use super::row::Row;
use super::validate::MAX_CELL_CHARS;
use crate::replace_file::Replacement;

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

/// The `categories` columns.
const CATEGORY_COLUMNS: [&str; 3] = ["category_id", "category_name", "category_description"];

/// The most rows a worksheet holds below its header.
pub const MAX_ROWS: usize = 1_048_575;

/// Deflate level 2: as fast as level 1 with zlib-rs and a third smaller (level 1 is zlib-ng's
/// "quick" strategy, 40% larger files for 10% less time).
const DEFLATE_LEVEL: i64 = 2;

/// The sheet's XML goes to the deflater in pieces of about this size.
const FLUSH_AT: usize = 64 * 1024;

/// The most XML a zip entry takes without ZIP64 (4 GiB, less a margin for the deflater's
/// output, which XML never comes near).
const ZIP32_ENTRY_LIMIT: u64 = u32::MAX as u64 - (16 << 20);

/// A workbook that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WorkbookError {
    #[error("cannot write the usage workbook: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot write the usage workbook: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("a usage workbook holds at most {MAX_ROWS} rows, {0} were asked for")]
    TooManyRows(usize),
    #[error("the usage workbook was to hold {declared} rows but was given {given}")]
    RowCount { declared: usize, given: usize },
    #[error(
        "the text of column {column} in row {row} of the usage workbook is longer than the \
         {MAX_CELL_CHARS} characters a cell holds"
    )]
    TextTooLong { column: &'static str, row: u32 },
    #[error(
        "a sheet of the usage workbook passed 4 GiB of XML, which needs a ZIP64 workbook \
         (start it with WorkbookWriter::new_zip64)"
    )]
    NeedsZip64,
}

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

/// Writes one workbook into `W`, row by row.
pub struct WorkbookWriter<W: Write + Seek> {
    zip: ZipWriter<W>,
    /// The records sheet's XML not yet given to the deflater.
    xml: Vec<u8>,
    declared: usize,
    rows: usize,
    categories: BTreeSet<String>,
    created: DateTime<Utc>,
    time: [u8; 19],
    /// The zip entries carry ZIP64 sizes.
    zip64: bool,
    /// XML given to the current entry so far, and the most it may take.
    entry_bytes: u64,
    entry_limit: u64,
    /// A sheet passed `entry_limit` without ZIP64.
    needs_zip64: bool,
}

impl<W: Write + Seek> WorkbookWriter<W> {
    /// Starts a workbook of `rows` rows in `out`. `created` becomes the document's creation
    /// time (use something derived from the data, such as the end of the period, for
    /// reproducible bytes). Its sheets take up to 4 GiB of XML each (a million rows of
    /// ordinary records take some 500 MB); past that, writing fails with
    /// [`WorkbookError::NeedsZip64`].
    pub fn new(
        out: W,
        created: DateTime<Utc>,
        rows: usize,
    ) -> Result<WorkbookWriter<W>, WorkbookError> {
        WorkbookWriter::start(out, created, rows, false, ZIP32_ENTRY_LIMIT)
    }

    /// The same with ZIP64 entries, whatever their size: for a sheet that needs them (every
    /// reader of workbooks today handles ZIP64, but a file that does not need it is better
    /// written without).
    pub fn new_zip64(
        out: W,
        created: DateTime<Utc>,
        rows: usize,
    ) -> Result<WorkbookWriter<W>, WorkbookError> {
        WorkbookWriter::start(out, created, rows, true, u64::MAX)
    }

    fn start(
        out: W,
        created: DateTime<Utc>,
        rows: usize,
        zip64: bool,
        entry_limit: u64,
    ) -> Result<WorkbookWriter<W>, WorkbookError> {
        if rows > MAX_ROWS {
            return Err(WorkbookError::TooManyRows(rows));
        }
        let mut zip = ZipWriter::new(out);
        zip.start_file("xl/worksheets/sheet1.xml", entry_options(zip64))?;
        let mut xml = Vec::with_capacity(FLUSH_AT + 4096);
        open_sheet(&mut xml, &COLUMNS, rows, true);
        Ok(WorkbookWriter {
            zip,
            xml,
            declared: rows,
            rows: 0,
            categories: BTreeSet::new(),
            created,
            time: [0; 19],
            zip64,
            entry_bytes: 0,
            entry_limit,
            needs_zip64: false,
        })
    }

    /// Gives the pending XML to the current entry's deflater.
    fn flush(&mut self) -> Result<(), WorkbookError> {
        self.entry_bytes += self.xml.len() as u64;
        if self.entry_bytes > self.entry_limit {
            self.needs_zip64 = true;
            return Err(WorkbookError::NeedsZip64);
        }
        self.zip.write_all(&self.xml)?;
        self.xml.clear();
        Ok(())
    }

    /// Starts the next zip entry.
    fn start_entry(&mut self, name: &str) -> Result<(), WorkbookError> {
        self.zip.start_file(name, entry_options(self.zip64))?;
        self.entry_bytes = 0;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Writes the next row. A row that cannot be written leaves no trace: the writer takes
    /// the next one as if it had not been given.
    pub fn push(&mut self, r: &Row<'_>) -> Result<(), WorkbookError> {
        if self.rows == self.declared {
            return Err(WorkbookError::RowCount {
                declared: self.declared,
                given: self.rows + 1,
            });
        }
        let start = self.xml.len();
        if let Err(e) = self.row_xml(r) {
            self.xml.truncate(start);
            return Err(e);
        }
        if let Some(category) = r.category
            && !category.is_empty()
            && !self.categories.contains(category)
        {
            self.categories.insert(category.to_owned());
        }
        self.rows += 1;
        if self.xml.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    /// Appends the next row's XML.
    fn row_xml(&mut self, r: &Row<'_>) -> Result<(), WorkbookError> {
        let x = &mut self.xml;
        // The header is row 1.
        let at = Cells::start(x, &COLUMNS, self.rows as u32 + 2);
        at.text(x, 0, r.record_id)?;
        if let Some(note) = r.note {
            at.text(x, 1, note)?;
        }
        at.text(x, 2, "item.mpn")?;
        at.text(x, 3, r.item_mpn)?;
        if exact_f64(r.quantity).is_some() {
            // The normalised decimal is what the float prints as: the number cell's text.
            at.number(x, 4, r.quantity);
        } else {
            at.text(x, 4, r.quantity)?;
        }
        at.text(x, 5, format_time(r.start, &mut self.time))?;
        at.text(x, 6, format_time(r.end, &mut self.time))?;
        at.text(x, 7, "asset.id")?;
        at.text(x, 8, r.asset_id)?;
        if let Some(category) = r.category {
            at.text(x, 9, category)?;
        }
        Cells::end(x);
        Ok(())
    }

    /// Ends the records sheet, adds the `categories` sheet if rows named categories and the
    /// package's other parts, and gives back `W`.
    pub fn finish(mut self) -> Result<W, WorkbookError> {
        if self.rows != self.declared {
            return Err(WorkbookError::RowCount {
                declared: self.declared,
                given: self.rows,
            });
        }
        self.xml.extend_from_slice(WORKSHEET_END.as_bytes());
        self.flush()?;
        let sheets: &[&str] = if self.categories.is_empty() {
            &["records"]
        } else {
            self.write_categories()?;
            &["records", "categories"]
        };
        let created = self.created;
        let mut part = |name: &str, xml: &str| -> Result<(), WorkbookError> {
            self.start_entry(name)?;
            self.zip.write_all(xml.as_bytes())?;
            Ok(())
        };
        part("[Content_Types].xml", &content_types(sheets.len()))?;
        part("_rels/.rels", ROOT_RELS)?;
        part("docProps/app.xml", &app_properties(sheets))?;
        part("docProps/core.xml", &core_properties(created))?;
        part("xl/workbook.xml", &workbook(sheets))?;
        part("xl/_rels/workbook.xml.rels", &workbook_rels(sheets.len()))?;
        part("xl/styles.xml", STYLES)?;
        Ok(self.zip.finish()?)
    }

    fn write_categories(&mut self) -> Result<(), WorkbookError> {
        self.start_entry("xl/worksheets/sheet2.xml")?;
        let categories = std::mem::take(&mut self.categories);
        open_sheet(&mut self.xml, &CATEGORY_COLUMNS, categories.len(), false);
        for (i, category) in categories.iter().enumerate() {
            let x = &mut self.xml;
            let at = Cells::start(x, &CATEGORY_COLUMNS, i as u32 + 2);
            // The id names it: Connect shows the name, and the vendor has no other.
            at.text(x, 0, category)?;
            at.text(x, 1, category)?;
            Cells::end(x);
            if self.xml.len() >= FLUSH_AT {
                self.flush()?;
            }
        }
        self.xml.extend_from_slice(WORKSHEET_END.as_bytes());
        self.flush()
    }
}

impl WorkbookWriter<File> {
    /// Writes `rows` rows into a workbook at `path`; `fill` pushes them, and may be called a
    /// second time: a workbook whose sheet passes 4 GiB of XML is written again with ZIP64.
    /// The file is replaced whole ([`crate::replace_file`]): a failed or interrupted write
    /// never leaves a half workbook under its name, and an error (the writer's or `fill`'s)
    /// or a panic leaves no temporary file either.
    pub fn write_file<E: From<WorkbookError>>(
        path: &Path,
        created: DateTime<Utc>,
        rows: usize,
        fill: impl FnMut(&mut WorkbookWriter<File>) -> Result<(), E>,
    ) -> Result<(), E> {
        write_file_within(path, created, rows, ZIP32_ENTRY_LIMIT, fill)
    }
}

/// [`WorkbookWriter::write_file`] with the entry size past which ZIP64 is used.
fn write_file_within<E: From<WorkbookError>>(
    path: &Path,
    created: DateTime<Utc>,
    rows: usize,
    limit: u64,
    mut fill: impl FnMut(&mut WorkbookWriter<File>) -> Result<(), E>,
) -> Result<(), E> {
    // Err((error, whether to write the workbook again with ZIP64)).
    let mut attempt = |zip64: bool| -> Result<(), (E, bool)> {
        let fail = |e: WorkbookError| (E::from(e), false);
        let (replacement, file) = Replacement::start(path).map_err(|e| fail(e.into()))?;
        let limit = if zip64 { u64::MAX } else { limit };
        let mut w = WorkbookWriter::start(file, created, rows, zip64, limit).map_err(fail)?;
        if let Err(e) = fill(&mut w) {
            return Err((e, w.needs_zip64));
        }
        let file = w.finish().map_err(|e| {
            let again = matches!(e, WorkbookError::NeedsZip64);
            (E::from(e), again)
        })?;
        // The run reads its workbooks back at once (or a dry run writes them for a look):
        // no wait for the disk.
        replacement.finish(file, false).map_err(|e| fail(e.into()))
    };
    match attempt(false) {
        Err((_, true)) => attempt(true),
        other => other,
    }
    .map_err(|(e, _)| e)
}

/// Writes a workbook of `rows` into memory (small workbooks, tests).
pub fn write<'a>(
    rows: impl IntoIterator<Item = Row<'a>>,
    created: DateTime<Utc>,
) -> Result<Vec<u8>, WorkbookError> {
    let rows: Vec<Row<'a>> = rows.into_iter().collect();
    let mut w = WorkbookWriter::new(std::io::Cursor::new(Vec::new()), created, rows.len())?;
    for r in &rows {
        w.push(r)?;
    }
    Ok(w.finish()?.into_inner())
}

fn entry_options(zip64: bool) -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(DEFLATE_LEVEL))
        // 1980-01-01, not the time of writing: the same rows give the same bytes.
        .last_modified_time(zip::DateTime::default())
        .large_file(zip64)
}

/// The cells of one row.
struct Cells {
    /// The sheet's column names, for errors.
    names: &'static [&'static str],
    row: u32,
    /// The row's number as text, and its length.
    digits: [u8; 10],
    len: usize,
}

impl Cells {
    /// Opens row `row` of a sheet with columns `names`.
    fn start(x: &mut Vec<u8>, names: &'static [&'static str], row: u32) -> Cells {
        let mut digits = [0u8; 10];
        let mut buffer = itoa::Buffer::new();
        let text = buffer.format(row).as_bytes();
        digits[..text.len()].copy_from_slice(text);
        let cells = Cells {
            names,
            row,
            digits,
            len: text.len(),
        };
        x.extend_from_slice(b"<row r=\"");
        x.extend_from_slice(cells.row_number());
        x.extend_from_slice(b"\">");
        cells
    }

    fn row_number(&self) -> &[u8] {
        &self.digits[..self.len]
    }

    fn end(x: &mut Vec<u8>) {
        x.extend_from_slice(b"</row>");
    }

    fn open(&self, x: &mut Vec<u8>, column: usize) {
        x.extend_from_slice(b"<c r=\"");
        x.push(b'A' + column as u8);
        x.extend_from_slice(self.row_number());
        x.push(b'"');
    }

    /// An inline string cell; an empty text is no cell at all, as a spreadsheet has it.
    fn text(&self, x: &mut Vec<u8>, column: usize, text: &str) -> Result<(), WorkbookError> {
        if text.is_empty() {
            return Ok(());
        }
        // UTF-16 units, as Excel counts; no text of fewer bytes can have more.
        if text.len() > MAX_CELL_CHARS && text.encode_utf16().count() > MAX_CELL_CHARS {
            return Err(WorkbookError::TextTooLong {
                column: self.names.get(column).copied().unwrap_or("?"),
                row: self.row,
            });
        }
        self.open(x, column);
        let first = text.as_bytes()[0];
        let last = text.as_bytes()[text.len() - 1];
        if is_space(first) || is_space(last) {
            x.extend_from_slice(b" t=\"inlineStr\"><is><t xml:space=\"preserve\">");
        } else {
            x.extend_from_slice(b" t=\"inlineStr\"><is><t>");
        }
        escape_text(x, text);
        x.extend_from_slice(b"</t></is></c>");
        Ok(())
    }

    fn number(&self, x: &mut Vec<u8>, column: usize, value: &str) {
        self.open(x, column);
        x.extend_from_slice(b"><v>");
        x.extend_from_slice(value.as_bytes());
        x.extend_from_slice(b"</v></c>");
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Opens a worksheet of `rows` rows below its header of `names` (at most 26 columns), the
/// header written; `selected` is the tab a reader shows first.
fn open_sheet(x: &mut Vec<u8>, names: &'static [&'static str], rows: usize, selected: bool) {
    x.extend_from_slice(WORKSHEET_START.as_bytes());
    x.extend_from_slice(b"<dimension ref=\"A1:");
    x.push(b'A' + names.len().saturating_sub(1) as u8);
    x.extend_from_slice(itoa::Buffer::new().format(rows + 1).as_bytes());
    x.extend_from_slice(if selected {
        b"\"/><sheetViews><sheetView tabSelected=\"1\" workbookViewId=\"0\"/></sheetViews>"
    } else {
        b"\"/><sheetViews><sheetView workbookViewId=\"0\"/></sheetViews>"
    });
    x.extend_from_slice(SHEET_DATA_START.as_bytes());
    let header = Cells::start(x, names, 1);
    for (c, name) in names.iter().enumerate() {
        // Fixed names: short, plain ASCII.
        let _ = header.text(x, c, name);
    }
    Cells::end(x);
}

/// Whether a byte needs the careful path: XML's `&`, `<`, `>`, a control character, the `_`
/// of a possible `_xHHHH_`, or the first byte of U+FFFE/U+FFFF (which XML cannot carry).
fn needs_care(b: u8) -> bool {
    matches!(b, b'&' | b'<' | b'>' | b'_' | 0xEF) || (b < 0x20 && b != b'\t' && b != b'\n')
}

/// Appends `text` as XML character data in SpreadsheetML's string escaping.
fn escape_text(x: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    if !bytes.iter().any(|&b| needs_care(b)) {
        x.extend_from_slice(bytes);
        return;
    }
    let mut rest = text;
    while let Some(i) = rest.bytes().position(needs_care) {
        x.extend_from_slice(&rest.as_bytes()[..i]);
        rest = &rest[i..];
        let Some(c) = rest.chars().next() else { break };
        match c {
            '&' => x.extend_from_slice(b"&amp;"),
            '<' => x.extend_from_slice(b"&lt;"),
            '>' => x.extend_from_slice(b"&gt;"),
            '_' if is_escape_like(rest) => x.extend_from_slice(b"_x005F_"),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => {
                x.extend_from_slice(format!("_x{:04X}_", c as u32).as_bytes());
            }
            other => {
                let mut utf8 = [0u8; 4];
                x.extend_from_slice(other.encode_utf8(&mut utf8).as_bytes());
            }
        }
        rest = &rest[c.len_utf8()..];
    }
    x.extend_from_slice(rest.as_bytes());
}

/// `_xHHHH_` at the start of `s`: what a reader would take for an escape.
fn is_escape_like(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 7
        && b[0] == b'_'
        // Lower-case `x` only, as ECMA-376 has it (and readers that unescape read it).
        && b[1] == b'x'
        && b[2..6].iter().all(u8::is_ascii_hexdigit)
        && b[6] == b'_'
}

const WORKSHEET_START: &str = concat!(
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n",
    "<worksheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\" ",
    "xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships\">",
);

const SHEET_DATA_START: &str = "<sheetFormatPr defaultRowHeight=\"15\"/><sheetData>";

const WORKSHEET_END: &str = concat!(
    "</sheetData><pageMargins left=\"0.7\" right=\"0.7\" top=\"0.75\" bottom=\"0.75\" ",
    "header=\"0.3\" footer=\"0.3\"/></worksheet>",
);

const XML_DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n";

const ROOT_RELS: &str = concat!(
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n",
    "<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">",
    "<Relationship Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/",
    "relationships/officeDocument\" Target=\"xl/workbook.xml\"/>",
    "<Relationship Id=\"rId2\" Type=\"http://schemas.openxmlformats.org/package/2006/",
    "relationships/metadata/core-properties\" Target=\"docProps/core.xml\"/>",
    "<Relationship Id=\"rId3\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/",
    "relationships/extended-properties\" Target=\"docProps/app.xml\"/>",
    "</Relationships>",
);

/// One font, no fills or borders, the one "Normal" style every cell uses.
const STYLES: &str = concat!(
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n",
    "<styleSheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\">",
    "<fonts count=\"1\"><font><sz val=\"11\"/><name val=\"Calibri\"/><family val=\"2\"/>",
    "</font></fonts>",
    "<fills count=\"2\"><fill><patternFill patternType=\"none\"/></fill>",
    "<fill><patternFill patternType=\"gray125\"/></fill></fills>",
    "<borders count=\"1\"><border><left/><right/><top/><bottom/><diagonal/></border></borders>",
    "<cellStyleXfs count=\"1\"><xf numFmtId=\"0\" fontId=\"0\" fillId=\"0\" borderId=\"0\"/>",
    "</cellStyleXfs>",
    "<cellXfs count=\"1\"><xf numFmtId=\"0\" fontId=\"0\" fillId=\"0\" borderId=\"0\" ",
    "xfId=\"0\"/></cellXfs>",
    "<cellStyles count=\"1\"><cellStyle name=\"Normal\" xfId=\"0\" builtinId=\"0\"/>",
    "</cellStyles></styleSheet>",
);

fn content_types(sheets: usize) -> String {
    let mut x = String::from(XML_DECLARATION);
    x.push_str(
        "<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">\
         <Default Extension=\"rels\" \
         ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>\
         <Default Extension=\"xml\" ContentType=\"application/xml\"/>\
         <Override PartName=\"/docProps/app.xml\" ContentType=\"application/\
         vnd.openxmlformats-officedocument.extended-properties+xml\"/>\
         <Override PartName=\"/docProps/core.xml\" \
         ContentType=\"application/vnd.openxmlformats-package.core-properties+xml\"/>\
         <Override PartName=\"/xl/styles.xml\" ContentType=\"application/\
         vnd.openxmlformats-officedocument.spreadsheetml.styles+xml\"/>\
         <Override PartName=\"/xl/workbook.xml\" ContentType=\"application/\
         vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml\"/>",
    );
    for n in 1..=sheets {
        x.push_str(&format!(
            "<Override PartName=\"/xl/worksheets/sheet{n}.xml\" ContentType=\"application/\
             vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml\"/>"
        ));
    }
    x.push_str("</Types>");
    x
}

fn app_properties(sheets: &[&str]) -> String {
    let mut x = String::from(XML_DECLARATION);
    x.push_str(&format!(
        "<Properties xmlns=\"http://schemas.openxmlformats.org/officeDocument/2006/\
         extended-properties\" \
         xmlns:vt=\"http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes\">\
         <Application>connect-usage</Application><DocSecurity>0</DocSecurity>\
         <ScaleCrop>false</ScaleCrop><HeadingPairs><vt:vector size=\"2\" baseType=\"variant\">\
         <vt:variant><vt:lpstr>Worksheets</vt:lpstr></vt:variant>\
         <vt:variant><vt:i4>{n}</vt:i4></vt:variant></vt:vector></HeadingPairs>\
         <TitlesOfParts><vt:vector size=\"{n}\" baseType=\"lpstr\">",
        n = sheets.len()
    ));
    for name in sheets {
        x.push_str(&format!("<vt:lpstr>{name}</vt:lpstr>"));
    }
    x.push_str(
        "</vt:vector></TitlesOfParts><LinksUpToDate>false</LinksUpToDate>\
         <SharedDoc>false</SharedDoc><HyperlinksChanged>false</HyperlinksChanged>\
         <AppVersion>12.0000</AppVersion></Properties>",
    );
    x
}

fn core_properties(created: DateTime<Utc>) -> String {
    let when = created.format("%Y-%m-%dT%H:%M:%SZ");
    format!(
        "{XML_DECLARATION}<cp:coreProperties \
         xmlns:cp=\"http://schemas.openxmlformats.org/package/2006/metadata/core-properties\" \
         xmlns:dc=\"http://purl.org/dc/elements/1.1/\" xmlns:dcterms=\"http://purl.org/dc/terms/\" \
         xmlns:dcmitype=\"http://purl.org/dc/dcmitype/\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\
         <dc:title>Usage records</dc:title><dc:creator>connect-usage</dc:creator>\
         <cp:lastModifiedBy>connect-usage</cp:lastModifiedBy>\
         <dcterms:created xsi:type=\"dcterms:W3CDTF\">{when}</dcterms:created>\
         <dcterms:modified xsi:type=\"dcterms:W3CDTF\">{when}</dcterms:modified>\
         </cp:coreProperties>"
    )
}

fn workbook(sheets: &[&str]) -> String {
    let mut x = String::from(XML_DECLARATION);
    x.push_str(
        "<workbook xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\" \
         xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships\">\
         <bookViews><workbookView/></bookViews><sheets>",
    );
    for (i, name) in sheets.iter().enumerate() {
        x.push_str(&format!(
            "<sheet name=\"{name}\" sheetId=\"{n}\" r:id=\"rId{n}\"/>",
            n = i + 1
        ));
    }
    x.push_str("</sheets></workbook>");
    x
}

fn workbook_rels(sheets: usize) -> String {
    let mut x = String::from(XML_DECLARATION);
    x.push_str(
        "<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">",
    );
    for n in 1..=sheets {
        x.push_str(&format!(
            "<Relationship Id=\"rId{n}\" Type=\"http://schemas.openxmlformats.org/\
             officeDocument/2006/relationships/worksheet\" Target=\"worksheets/sheet{n}.xml\"/>"
        ));
    }
    x.push_str(&format!(
        "<Relationship Id=\"rId{n}\" Type=\"http://schemas.openxmlformats.org/officeDocument/\
         2006/relationships/styles\" Target=\"styles.xml\"/></Relationships>",
        n = sheets + 1
    ));
    x
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

    /// Every cell of every sheet, as calamine reads it.
    fn cells(bytes: Vec<u8>) -> Vec<(String, Vec<Vec<Data>>)> {
        let mut book: calamine::Xlsx<_> =
            calamine::open_workbook_from_rs(std::io::Cursor::new(bytes)).expect("xlsx");
        book.sheet_names()
            .into_iter()
            .map(|name| {
                let range = book.worksheet_range(&name).expect("sheet");
                (name, range.rows().map(<[Data]>::to_vec).collect())
            })
            .collect()
    }

    /// The same rows through rust_xlsxwriter, cell by cell as this module's writer used to
    /// write them (constant-memory mode, inline strings).
    fn reference(rows: &[Row<'_>], created: DateTime<Utc>) -> Vec<u8> {
        use rust_xlsxwriter::{DocProperties, ExcelDateTime, Workbook};
        let mut book = Workbook::new();
        let when = ExcelDateTime::from_timestamp(created.timestamp()).expect("time");
        book.set_properties(&DocProperties::new().set_creation_datetime(&when));
        let ws = book.add_worksheet_with_constant_memory().expect("sheet");
        ws.set_name("records").expect("name");
        for (c, name) in COLUMNS.iter().enumerate() {
            ws.write_string(0, c as u16, *name).expect("header");
        }
        let mut categories = BTreeSet::new();
        let mut buf = [0u8; 19];
        for (i, r) in rows.iter().enumerate() {
            let n = i as u32 + 1;
            ws.write_string(n, 0, r.record_id).expect("cell");
            if let Some(note) = r.note {
                ws.write_string(n, 1, note).expect("cell");
            }
            ws.write_string(n, 2, "item.mpn").expect("cell");
            ws.write_string(n, 3, r.item_mpn).expect("cell");
            match exact_f64(r.quantity) {
                Some(v) => ws.write_number(n, 4, v).expect("cell"),
                None => ws.write_string(n, 4, r.quantity).expect("cell"),
            };
            ws.write_string(n, 5, format_time(r.start, &mut buf))
                .expect("cell");
            ws.write_string(n, 6, format_time(r.end, &mut buf))
                .expect("cell");
            ws.write_string(n, 7, "asset.id").expect("cell");
            ws.write_string(n, 8, r.asset_id).expect("cell");
            if let Some(category) = r.category.filter(|c| !c.is_empty()) {
                ws.write_string(n, 9, category).expect("cell");
                categories.insert(category);
            }
        }
        if !categories.is_empty() {
            let cs = book.add_worksheet_with_constant_memory().expect("sheet");
            cs.set_name("categories").expect("name");
            for (c, name) in CATEGORY_COLUMNS.iter().enumerate() {
                cs.write_string(0, c as u16, *name).expect("header");
            }
            for (i, category) in categories.iter().enumerate() {
                cs.write_string(i as u32 + 1, 0, *category).expect("cell");
                cs.write_string(i as u32 + 1, 1, *category).expect("cell");
            }
        }
        book.save_to_buffer().expect("saves")
    }

    #[test]
    fn cells_read_back_as_the_reference_writer_s() {
        let april = (1_711_929_600, 1_714_521_599);
        let texts = [
            " leading space",
            "trailing space ",
            "\ttab first",
            "new\nline and\r\ncarriage return",
            "control \u{1} and \u{1f} characters",
            "_x0001_ looks like an escape, _X00fF_ too",
            "_x12_ and _xZZZZ_ and a lone _ do not",
            "& < > \" ' in XML",
            "=SUM(A1:A9)",
            "Zürich — 東京 🚀",
            "ends with an underscore _",
        ];
        let mut rows = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            rows.push(row(text, Some(text), text, "2.5", april, text, Some(text)));
            let quantity = [
                "-0.000001",
                "12345678901234567.5",
                "100000000000000000000",
                "7",
            ][i % 4];
            rows.push(row("plain", None, "MPN-1", quantity, april, "AS-1", None));
        }
        rows.push(row(
            "empty note",
            Some(""),
            "MPN-1",
            "1",
            april,
            "AS-1",
            Some(""),
        ));
        let created = DateTime::<Utc>::from_timestamp(1_714_521_600, 0).unwrap_or_default();
        let ours = cells(write(rows.clone(), created).expect("writes"));
        let theirs = cells(reference(&rows, created));
        assert_eq!(ours.len(), 2, "records and categories");
        assert_eq!(ours, theirs);
        // The texts came back as they went in (not only as the reference has them).
        let records = &ours[0].1;
        for (i, text) in texts.iter().enumerate() {
            assert_eq!(
                records[1 + 2 * i][1],
                Data::String((*text).to_owned()),
                "{text:?}"
            );
        }
    }

    #[test]
    fn characters_xml_cannot_carry_are_escaped() {
        let mut x = Vec::new();
        escape_text(&mut x, "a\u{fffe}b\u{ffff}c\u{0}d");
        assert_eq!(
            String::from_utf8(x).expect("utf-8"),
            "a_xFFFE_b_xFFFF_c_x0000_d"
        );
        let mut x = Vec::new();
        escape_text(&mut x, "_x00e9_ _x00e9 x_ _X00E9_ _x00e9_");
        assert_eq!(
            String::from_utf8(x).expect("utf-8"),
            "_x005F_x00e9_ _x00e9 x_ _X00E9_ _x005F_x00e9_"
        );
    }

    #[test]
    fn the_declared_number_of_rows_is_checked() {
        let created = DateTime::<Utc>::from_timestamp(1_714_521_600, 0).unwrap_or_default();
        let r = row("r-1", None, "MPN-1", "1", (0, 1), "AS-1", None);
        let out = || std::io::Cursor::new(Vec::new());

        let mut w = WorkbookWriter::new(out(), created, 1).expect("starts");
        w.push(&r).expect("first row");
        let e = w.push(&r).expect_err("a second row");
        assert!(
            matches!(
                e,
                WorkbookError::RowCount {
                    declared: 1,
                    given: 2
                }
            ),
            "{e}"
        );

        let mut w = WorkbookWriter::new(out(), created, 2).expect("starts");
        w.push(&r).expect("first row");
        let e = w.finish().expect_err("one row short");
        assert_eq!(
            e.to_string(),
            "the usage workbook was to hold 2 rows but was given 1"
        );

        let e = WorkbookWriter::new(out(), created, MAX_ROWS + 1)
            .err()
            .expect("too many");
        assert!(e.to_string().contains("at most 1048575 rows"), "{e}");

        let w = WorkbookWriter::new(out(), created, 0).expect("starts");
        assert_eq!(w.rows(), 0);
        let bytes = w.finish().expect("an empty workbook").into_inner();
        let sheets = cells(bytes);
        assert_eq!(sheets.len(), 1);
        assert_eq!(sheets[0].1.len(), 1, "the header alone");
    }

    #[test]
    fn text_longer_than_a_cell_is_refused_with_its_place() {
        let created = DateTime::<Utc>::from_timestamp(1_714_521_600, 0).unwrap_or_default();
        let fits = "€".repeat(MAX_CELL_CHARS);
        let long = "n".repeat(MAX_CELL_CHARS + 1);
        let mut w =
            WorkbookWriter::new(std::io::Cursor::new(Vec::new()), created, 2).expect("starts");
        w.push(&row("r-1", Some(&fits), "MPN-1", "1", (0, 1), "AS-1", None))
            .expect("three bytes a character, one UTF-16 unit: fits");
        let e = w
            .push(&row("r-2", Some(&long), "MPN-1", "1", (0, 1), "AS-1", None))
            .expect_err("too long");
        assert_eq!(
            e.to_string(),
            "the text of column record_note in row 3 of the usage workbook is longer than the \
             32767 characters a cell holds"
        );
        // The refused row left nothing behind: the next one takes its place.
        w.push(&row("r-3", None, "MPN-1", "1", (0, 1), "AS-1", None))
            .expect("the next row");
        let sheets = cells(w.finish().expect("finishes").into_inner());
        let ids: Vec<&Data> = sheets[0].1.iter().map(|r| &r[0]).collect();
        assert_eq!(
            ids,
            [
                &Data::String("record_id".into()),
                &Data::String("r-1".into()),
                &Data::String("r-3".into())
            ]
        );
    }

    #[test]
    fn a_file_is_whole_or_absent() {
        let dir = scratch("whole");
        let path = dir.join("usage.xlsx");
        let created = DateTime::<Utc>::from_timestamp(1_714_521_600, 0).unwrap_or_default();
        let r = row("r-1", None, "MPN-1", "1", (0, 1), "AS-1", None);

        let e = WorkbookWriter::write_file(&path, created, 2, |w| w.push(&r))
            .expect_err("one row of two");
        assert!(matches!(e, WorkbookError::RowCount { .. }), "{e}");
        let left: Vec<_> = std::fs::read_dir(&dir).expect("dir").collect();
        assert!(left.is_empty(), "nothing left behind: {left:?}");

        WorkbookWriter::write_file(&path, created, 1, |w| w.push(&r)).expect("writes");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["usage.xlsx"]);
        let sheets = cells(std::fs::read(&path).expect("read"));
        assert_eq!(sheets[0].1[1][0], Data::String("r-1".into()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("cu-workbook-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    /// Whether the first zip entry's local header carries a ZIP64 extra field.
    fn first_entry_is_zip64(bytes: &[u8]) -> bool {
        let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]) as usize;
        let (name, extra) = (u16_at(26), u16_at(28));
        extra >= 4 && u16_at(30 + name) == 0x0001
    }

    #[test]
    fn a_sheet_past_the_zip32_limit_is_written_again_with_zip64() {
        let dir = scratch("zip64");
        let created = DateTime::<Utc>::from_timestamp(1_714_521_600, 0).unwrap_or_default();
        let ids: Vec<String> = (0..300).map(|i| format!("r-{i:05}")).collect();
        let rows: Vec<Row<'_>> = ids
            .iter()
            .map(|id| row(id, Some("a note"), "MPN-1", "1.5", (0, 1), "AS-1", None))
            .collect();
        for (limit, calls_wanted, zip64) in [(ZIP32_ENTRY_LIMIT, 1, false), (20_000, 2, true)] {
            let path = dir.join(format!("limit-{limit}.xlsx"));
            let mut calls = 0;
            write_file_within(&path, created, rows.len(), limit, |w| {
                calls += 1;
                rows.iter().try_for_each(|r| w.push(r))
            })
            .expect("writes");
            assert_eq!(calls, calls_wanted, "limit {limit}");
            let bytes = std::fs::read(&path).expect("read");
            assert_eq!(first_entry_is_zip64(&bytes), zip64, "limit {limit}");
            let sheets = cells(bytes);
            assert_eq!(sheets[0].1.len(), 301, "every row, limit {limit}");
            assert_eq!(sheets[0].1[300][0], Data::String("r-00299".into()));
        }
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["limit-20000.xlsx", "limit-4278190079.xlsx"]);

        // Without ZIP64, the sheet that passes the limit is refused, saying what it needs.
        let out = std::io::Cursor::new(Vec::new());
        let mut w = WorkbookWriter::start(out, created, rows.len(), false, 20_000).expect("starts");
        let e = rows
            .iter()
            .try_for_each(|r| w.push(r))
            .expect_err("past the limit");
        assert!(matches!(e, WorkbookError::NeedsZip64), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_panic_while_writing_leaves_no_file() {
        let dir = scratch("panic");
        let path = dir.join("usage.xlsx");
        let created = DateTime::<Utc>::from_timestamp(1_714_521_600, 0).unwrap_or_default();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            WorkbookWriter::write_file(&path, created, 1, |_| -> Result<(), WorkbookError> {
                panic!("the rows could not be read")
            })
        }));
        assert!(panicked.is_err());
        assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn many_categories_stream_into_their_sheet() {
        let created = DateTime::<Utc>::from_timestamp(1_714_521_600, 0).unwrap_or_default();
        let names: Vec<String> = (0..5000)
            .map(|i| format!("category-{i:05}-{}", "c".repeat(40)))
            .collect();
        let rows: Vec<Row<'_>> = names
            .iter()
            .rev()
            .map(|c| row("r", None, "MPN-1", "1", (0, 1), "AS-1", Some(c)))
            .collect();
        let sheets = cells(write(rows, created).expect("writes"));
        let categories = &sheets[1].1;
        assert_eq!(sheets[1].0, "categories");
        assert_eq!(categories.len(), 5001);
        assert_eq!(categories[1][0], Data::String(names[0].clone()), "sorted");
        assert_eq!(categories[5000][1], Data::String(names[4999].clone()));
    }
}
