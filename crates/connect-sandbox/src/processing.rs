//! Processing of an uploaded usage workbook, as Connect does after `upload`: read the sheet
//! `records` (or the older `usage_records`) by header name, check every row against the
//! file's product, contract and period, and produce the usage records, valid or invalid with
//! the reason. The processed workbook (the upload with each bad cell annotated) is rebuilt
//! from the same checks when someone downloads it.

use std::collections::{HashMap, HashSet};
use std::io::Cursor;

use calamine::{Data, Range, Reader, Xlsx, open_workbook_from_rs};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value as Json, json};

use super::query::parse_datetime;
use connect_client::models::{Precision, UsageRecordStatus};

/// What an upload is checked against.
#[derive(Debug, Clone)]
pub struct FileContext {
    /// `qt`, `tr`, `cr` or `pr`.
    pub schema: String,
    /// The file's period; rows must fall inside it when there is one.
    pub period: Option<(NaiveDate, NaiveDate)>,
    pub contract_id: String,
    pub product_id: String,
    /// Items of the file's product.
    pub items: Vec<Json>,
    /// `capabilities.reservation.consumption`: reservation items may report usage.
    pub reservation_consumption: bool,
    /// `capabilities.ppu.dynamic`: rows may bring items the product does not have.
    pub dynamic_items: bool,
    /// Assets of the file's product (every contract, to explain a wrong contract).
    pub assets: Vec<Json>,
}

/// The record fields of a row, as read from the workbook.
#[derive(Debug, Clone, Default)]
pub struct RowData {
    /// Spreadsheet row (the header is row 1).
    pub row: u32,
    /// The vendor's `record_id` column.
    pub record_id: String,
    pub record_note: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    /// The quantity as written (decimal text).
    pub usage: Option<String>,
    pub amount: Option<String>,
    pub tier: Option<i64>,
    pub item: Option<Json>,
    pub asset: Option<Json>,
    pub category: Option<String>,
    pub params: Vec<Json>,
}

/// A row as read, and what is wrong with it.
#[derive(Debug, Clone)]
pub struct ParsedRow {
    pub data: RowData,
    pub problems: Vec<Problem>,
}

impl ParsedRow {
    pub fn status(&self) -> UsageRecordStatus {
        if self.problems.is_empty() {
            UsageRecordStatus::Valid
        } else {
            UsageRecordStatus::Invalid
        }
    }

    /// `row 5: quantity: -1 is negative; ...`
    pub fn error_details(&self) -> Option<String> {
        (!self.problems.is_empty()).then(|| {
            let parts: Vec<String> = self.problems.iter().map(Problem::to_string).collect();
            format!("row {}: {}", self.data.row, parts.join("; "))
        })
    }

    pub fn error_codes(&self) -> Vec<String> {
        let mut codes: Vec<String> = self.problems.iter().map(|p| p.code.to_owned()).collect();
        codes.dedup();
        codes
    }
}

/// One thing wrong with a row, and the column it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub column: Option<String>,
    pub code: &'static str,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.column {
            Some(c) => write!(f, "{c}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The result of processing an upload.
#[derive(Debug, Clone)]
pub struct ProcessingOutcome {
    pub rows: Vec<ParsedRow>,
    pub categories: Vec<Json>,
    /// Set when the file is invalid: a problem with the whole workbook, or a summary of the
    /// bad rows (Connect limits it to 200 characters).
    pub error_detail: Option<String>,
}

impl ProcessingOutcome {
    pub fn is_valid(&self) -> bool {
        self.error_detail.is_none()
    }

    fn workbook_error(message: impl Into<String>) -> ProcessingOutcome {
        ProcessingOutcome {
            rows: Vec::new(),
            categories: Vec::new(),
            error_detail: Some(truncate(&message.into(), 200)),
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max - 3).collect();
    out.push_str("...");
    out
}

/// True when the bytes look like an `.xlsx` (a zip archive).
pub fn looks_like_xlsx(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}

const RECORD_SHEETS: [&str; 2] = ["records", "usage_records"];

const ITEM_CRITERIA: [&str; 4] = ["item.mpn", "item.local_id", "item.global_id", "item.id"];

/// The sheet, its cells and its formulas.
struct Sheet {
    name: String,
    cells: Range<Data>,
    formulas: Range<String>,
}

fn open_records_sheet(bytes: &[u8]) -> Result<(Sheet, Option<Range<Data>>), String> {
    let mut book: Xlsx<_> = open_workbook_from_rs(Cursor::new(bytes))
        .map_err(|e| format!("The file is not a readable .xlsx workbook: {e}."))?;
    let names = book.sheet_names();
    let Some(name) = RECORD_SHEETS.iter().find_map(|want| {
        names
            .iter()
            .find(|n| n.trim().eq_ignore_ascii_case(want))
            .cloned()
    }) else {
        return Err(format!(
            "The workbook has no sheet named \"records\" (or \"usage_records\"); it has: {}.",
            names.join(", ")
        ));
    };
    let cells = book
        .worksheet_range(&name)
        .map_err(|e| format!("Sheet {name:?} cannot be read: {e}."))?;
    let formulas = book.worksheet_formula(&name).unwrap_or_default();
    let categories = names
        .iter()
        .find(|n| n.trim().eq_ignore_ascii_case("categories"))
        .and_then(|n| book.worksheet_range(n).ok());
    Ok((
        Sheet {
            name,
            cells,
            formulas,
        },
        categories,
    ))
}

/// Text of a cell as the vendor meant it (numbers without a trailing `.0`).
fn cell_text(cell: &Data) -> Option<String> {
    match cell {
        Data::Empty => None,
        Data::String(s) => {
            let t = s.trim();
            (!t.is_empty()).then(|| t.to_owned())
        }
        Data::Int(i) => Some(i.to_string()),
        Data::Float(f) => Some(float_text(*f)),
        Data::Bool(b) => Some(b.to_string()),
        Data::DateTime(d) => d
            .as_datetime()
            .map(|dt| dt.format("%Y-%m-%d %H:%M:%S").to_string()),
        Data::DateTimeIso(s) | Data::DurationIso(s) => Some(s.clone()),
        Data::Error(e) => Some(format!("#{e:?}")),
    }
}

fn float_text(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// A decimal number as text: sign, digits, optional fraction. Returns (negative, text).
fn decimal_text(cell: &Data) -> Result<String, String> {
    let text = match cell {
        Data::Int(i) => i.to_string(),
        Data::Float(f) if f.is_finite() => float_text(*f),
        Data::Float(_) => return Err("is not a finite number".into()),
        Data::String(s) => s.trim().to_owned(),
        Data::Bool(_) => return Err("is a boolean, not a number".into()),
        other => {
            return Err(format!(
                "{:?} is not a number",
                cell_text(other).unwrap_or_default()
            ));
        }
    };
    let body = text.strip_prefix(['-', '+']).unwrap_or(&text);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits_ok = !int.is_empty()
        && int.chars().all(|c| c.is_ascii_digit())
        && frac.chars().all(|c| c.is_ascii_digit())
        && !(body.contains('.') && frac.is_empty());
    if !digits_ok {
        return Err(format!("{text:?} is not a number"));
    }
    Ok(text)
}

fn decimals(text: &str) -> usize {
    text.split_once('.')
        .map(|(_, f)| f.trim_end_matches('0').len())
        .unwrap_or(0)
}

/// Times as writers put them: `YYYY-MM-DD HH:MM:SS` (hours may be unpadded), ISO with `T`
/// and an optional offset, a date alone, or an Excel date cell.
fn cell_time(cell: &Data) -> Result<DateTime<Utc>, String> {
    match cell {
        Data::DateTime(d) => d
            .as_datetime()
            .map(|dt| dt.and_utc())
            .ok_or_else(|| "is not a valid date".into()),
        Data::Float(f) => excel_serial(*f).ok_or_else(|| format!("{f} is not a date")),
        Data::Int(i) => excel_serial(*i as f64).ok_or_else(|| format!("{i} is not a date")),
        Data::String(s) | Data::DateTimeIso(s) => parse_datetime(s)
            .ok_or_else(|| format!("{s:?} is not a time in the format YYYY-MM-DD HH:MM:SS")),
        other => Err(format!(
            "{:?} is not a time",
            cell_text(other).unwrap_or_default()
        )),
    }
}

/// Excel serial day number (1900 date system) to a time.
fn excel_serial(days: f64) -> Option<DateTime<Utc>> {
    if !(1.0..2_958_466.0).contains(&days) {
        return None;
    }
    let base = NaiveDate::from_ymd_opt(1899, 12, 30)?.and_hms_opt(0, 0, 0)?;
    let secs = (days * 86_400.0).round() as i64;
    Some((base + chrono::Duration::seconds(secs)).and_utc())
}

/// Processes an upload against its file.
pub fn process(bytes: &[u8], ctx: &FileContext) -> ProcessingOutcome {
    match open_records_sheet(bytes) {
        Err(message) => ProcessingOutcome::workbook_error(message),
        Ok((sheet, categories)) => process_sheet(&sheet, categories.as_ref(), ctx),
    }
}

/// Column positions by header name.
struct Columns {
    by_name: HashMap<String, u32>,
    /// `(column, header)` of `v.*` and `p.*` custom fields.
    params: Vec<(u32, String)>,
}

impl Columns {
    fn get(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }
}

fn required_columns(schema: &str) -> Vec<&'static str> {
    let mut cols = vec![
        "record_id",
        "item_search_criteria",
        "item_search_value",
        "start_time_utc",
        "end_time_utc",
        "asset_search_criteria",
        "asset_search_value",
    ];
    match schema {
        "qt" => cols.push("quantity"),
        "tr" => cols.extend(["amount", "tier"]),
        _ => cols.push("amount"),
    }
    cols
}

fn process_sheet(
    sheet: &Sheet,
    categories: Option<&Range<Data>>,
    ctx: &FileContext,
) -> ProcessingOutcome {
    let cells = &sheet.cells;
    let Some((first_row, first_col)) = cells.start() else {
        return ProcessingOutcome::workbook_error(format!("Sheet {:?} is empty.", sheet.name));
    };
    let Some((last_row, last_col)) = cells.end() else {
        return ProcessingOutcome::workbook_error(format!("Sheet {:?} is empty.", sheet.name));
    };
    if first_row != 0 {
        return ProcessingOutcome::workbook_error(format!(
            "Sheet {:?}: the header must be in row 1.",
            sheet.name
        ));
    }
    let mut columns = Columns {
        by_name: HashMap::new(),
        params: Vec::new(),
    };
    for col in first_col..=last_col {
        let Some(name) = cells.get_value((0, col)).and_then(cell_text) else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let name = if name == "usage_record_id" {
            "record_id".to_owned()
        } else {
            name
        };
        if name.starts_with("v.") || name.starts_with("p.") {
            columns.params.push((col, name.clone()));
        }
        if columns.by_name.insert(name.clone(), col).is_some() {
            return ProcessingOutcome::workbook_error(format!(
                "Sheet {:?}: column {name:?} appears twice in the header.",
                sheet.name
            ));
        }
    }
    let missing: Vec<&str> = required_columns(&ctx.schema)
        .into_iter()
        .filter(|c| columns.get(c).is_none())
        .collect();
    if !missing.is_empty() {
        return ProcessingOutcome::workbook_error(format!(
            "Sheet {:?}: missing required column(s): {}.",
            sheet.name,
            missing.join(", ")
        ));
    }

    let category_list = read_categories(categories);
    let category_ids: HashSet<String> = category_list
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_owned))
        .collect();
    let items = ItemIndex::new(&ctx.items);
    let assets: HashMap<&str, &Json> = ctx
        .assets
        .iter()
        .filter_map(|a| a["id"].as_str().map(|id| (id, a)))
        .collect();
    let period_start = ctx
        .period
        .and_then(|p| p.0.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc());
    let period_end = ctx
        .period
        .and_then(|p| p.1.and_hms_opt(23, 59, 59))
        .map(|d| d.and_utc());

    let mut rows = Vec::new();
    let mut seen_ids: HashMap<String, u32> = HashMap::new();
    for r in 1..=last_row {
        let excel_row = r + 1;
        let row_is_empty = (first_col..=last_col).all(|c| {
            cells
                .get_value((r, c))
                .is_none_or(|v| cell_text(v).is_none())
        });
        if row_is_empty {
            continue;
        }
        let mut row = ParsedRow {
            data: RowData {
                row: excel_row,
                ..RowData::default()
            },
            problems: Vec::new(),
        };
        let cell = |name: &str| -> Option<&Data> {
            columns
                .get(name)
                .and_then(|c| cells.get_value((r, c)))
                .filter(|d| !matches!(d, Data::Empty))
        };
        let problem = |row: &mut ParsedRow, column: &str, code: &'static str, message: String| {
            row.problems.push(Problem {
                column: Some(column.to_owned()),
                code,
                message,
            });
        };

        // Formulas are never evaluated: a cell holding one makes the row invalid.
        for (name, &col) in &columns.by_name {
            if let Some(f) = sheet.formulas.get_value((r, col))
                && !f.is_empty()
            {
                problem(
                    &mut row,
                    name,
                    "formula",
                    format!("formulas are not allowed (={f})"),
                );
            }
        }

        match cell("record_id").and_then(cell_text) {
            None => problem(&mut row, "record_id", "required", "is required".into()),
            Some(id) => {
                if let Some(first) = seen_ids.get(&id) {
                    problem(
                        &mut row,
                        "record_id",
                        "duplicate",
                        format!("{id:?} is already used in row {first}"),
                    );
                } else {
                    seen_ids.insert(id.clone(), excel_row);
                }
                row.data.record_id = id;
            }
        }
        row.data.record_note = cell("record_note").and_then(cell_text);

        // Item
        let criteria = cell("item_search_criteria").and_then(cell_text);
        let value = cell("item_search_value").and_then(cell_text);
        let mut precision = None;
        match (criteria, value) {
            (None, _) => problem(
                &mut row,
                "item_search_criteria",
                "required",
                "is required".into(),
            ),
            (_, None) => problem(
                &mut row,
                "item_search_value",
                "required",
                "is required".into(),
            ),
            (Some(c), Some(_)) if !ITEM_CRITERIA.contains(&c.as_str()) => problem(
                &mut row,
                "item_search_criteria",
                "criteria",
                format!("{c:?} is not one of {}", ITEM_CRITERIA.join(", ")),
            ),
            (Some(c), Some(v)) => match items.find(&c, &v) {
                None if ctx.dynamic_items => {
                    let p = cell("item_precision").and_then(cell_text);
                    precision = p.as_deref().and_then(Precision::parse);
                    if precision.is_none() {
                        problem(
                            &mut row,
                            "item_precision",
                            "dynamic_item",
                            "a new (dynamic) item needs integer or decimal(1|2|4|8)".into(),
                        );
                    }
                    row.data.item = Some(json!({
                        "id": v, "mpn": cell("item_mpn").and_then(cell_text).unwrap_or(v.clone()),
                        "name": cell("item_name").and_then(cell_text), "precision": p, "type": "ppu",
                        "unit": cell("item_unit").and_then(cell_text), "local_id": null,
                    }));
                }
                None => problem(
                    &mut row,
                    "item_search_value",
                    "unknown_item",
                    format!("no item of product {} has {c} {v:?}", ctx.product_id),
                ),
                Some(item) => {
                    let kind = item["type"]
                        .as_str()
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    let allowed =
                        kind == "ppu" || (kind == "reservation" && ctx.reservation_consumption);
                    if !allowed {
                        problem(
                            &mut row,
                            "item_search_value",
                            "item_type",
                            format!(
                                "item {} is a {kind} item; usage is reported for pay-as-you-go items",
                                item["id"].as_str().unwrap_or_default()
                            ),
                        );
                    }
                    precision = item["precision"].as_str().and_then(Precision::parse);
                    row.data.item = Some(json!({
                        "id": item["id"], "local_id": item["local_id"], "name": item["name"],
                        "unit": item["unit"]["unit"], "mpn": item["mpn"], "precision": item["precision"],
                        "type": item["type"],
                    }));
                }
            },
        }

        // Asset
        let criteria = cell("asset_search_criteria").and_then(cell_text);
        let value = cell("asset_search_value").and_then(cell_text);
        match (criteria, value) {
            (None, _) => problem(
                &mut row,
                "asset_search_criteria",
                "required",
                "is required".into(),
            ),
            (_, None) => problem(
                &mut row,
                "asset_search_value",
                "required",
                "is required".into(),
            ),
            (Some(c), Some(v)) => {
                let found: Result<&Json, String> = if c == "asset.id" {
                    assets
                        .get(v.as_str())
                        .copied()
                        .ok_or_else(|| format!("no asset {v} of product {}", ctx.product_id))
                } else if let Some(param) = c.strip_prefix("parameter.") {
                    let matching: Vec<&Json> = ctx
                        .assets
                        .iter()
                        .filter(|a| a["contract"]["id"] == ctx.contract_id.as_str())
                        .filter(|a| {
                            a["params"].as_array().is_some_and(|ps| {
                                ps.iter()
                                    .any(|p| p["id"] == param && p["value"] == v.as_str())
                            })
                        })
                        .collect();
                    match matching.as_slice() {
                        [one] => Ok(*one),
                        [] => Err(format!(
                            "no asset of contract {} has parameter {param} = {v:?}",
                            ctx.contract_id
                        )),
                        _ => Err(format!(
                            "{} assets have parameter {param} = {v:?}",
                            matching.len()
                        )),
                    }
                } else {
                    Err(format!(
                        "{c:?} is not supported; use asset.id or parameter.<parameter id>"
                    ))
                };
                match found {
                    Err(message) => {
                        let column = if c == "asset.id" || c.starts_with("parameter.") {
                            "asset_search_value"
                        } else {
                            "asset_search_criteria"
                        };
                        problem(&mut row, column, "unknown_asset", message)
                    }
                    Ok(asset) => {
                        let contract = asset["contract"]["id"].as_str().unwrap_or_default();
                        if contract != ctx.contract_id {
                            problem(
                                &mut row,
                                "asset_search_value",
                                "asset_contract",
                                format!(
                                    "asset {} belongs to contract {contract}, not to the file's contract {}",
                                    asset["id"].as_str().unwrap_or_default(),
                                    ctx.contract_id
                                ),
                            );
                        }
                        row.data.asset = Some(json!({
                            "id": asset["id"], "external_id": asset["external_id"], "external_uid": asset["external_uid"],
                        }));
                    }
                }
            }
        }

        // Quantity / amount
        let number_column = if ctx.schema == "qt" {
            "quantity"
        } else {
            "amount"
        };
        match cell(number_column) {
            None => problem(&mut row, number_column, "required", "is required".into()),
            Some(c) => match decimal_text(c) {
                Err(why) => problem(&mut row, number_column, "number", why),
                Ok(text) => {
                    let negative = text.starts_with('-')
                        && !text.trim_start_matches(['-', '0', '.']).is_empty();
                    if negative {
                        problem(
                            &mut row,
                            number_column,
                            "negative",
                            format!("{text} is negative"),
                        );
                    } else if let Some(p) = precision.filter(|_| ctx.schema == "qt")
                        && decimals(&text) > p.places() as usize
                    {
                        problem(
                            &mut row,
                            number_column,
                            "precision",
                            format!(
                                "{text} has more decimals than the item's precision {p} allows"
                            ),
                        );
                    }
                    let text = text.trim_start_matches('+').to_owned();
                    if ctx.schema == "qt" {
                        row.data.usage = Some(text);
                    } else {
                        row.data.amount = Some(text);
                        row.data.usage = cell("quantity").and_then(|c| decimal_text(c).ok());
                    }
                }
            },
        }
        if ctx.schema == "tr" {
            match cell("tier").and_then(cell_text).map(|t| t.parse::<i64>()) {
                Some(Ok(t)) if t >= 0 => row.data.tier = Some(t),
                _ => problem(
                    &mut row,
                    "tier",
                    "tier",
                    "a tier level (0, 1, 2) is required".into(),
                ),
            }
        }

        // Times
        for (column, slot) in [("start_time_utc", 0), ("end_time_utc", 1)] {
            match cell(column) {
                None => problem(&mut row, column, "required", "is required".into()),
                Some(c) => match cell_time(c) {
                    Err(why) => problem(&mut row, column, "time", why),
                    Ok(t) => {
                        let outside = period_start.is_some_and(|s| t < s)
                            || period_end.is_some_and(|e| t > e);
                        if outside {
                            problem(
                                &mut row,
                                column,
                                "period",
                                format!(
                                    "{} is outside the file's period {} to {}",
                                    t.format("%Y-%m-%d %H:%M:%S"),
                                    ctx.period.map(|p| p.0).unwrap_or_default(),
                                    ctx.period.map(|p| p.1).unwrap_or_default()
                                ),
                            );
                        }
                        if slot == 0 {
                            row.data.start = Some(t);
                        } else {
                            row.data.end = Some(t);
                        }
                    }
                },
            }
        }
        if let (Some(s), Some(e)) = (row.data.start, row.data.end)
            && e < s
        {
            problem(
                &mut row,
                "end_time_utc",
                "time_order",
                "is before start_time_utc".into(),
            );
        }

        // Category and custom fields
        match cell("category_id").and_then(cell_text) {
            None => row.data.category = Some("generic_category".into()),
            Some(c)
                if category_ids.contains(&c)
                    || (category_ids.is_empty() && c == "generic_category") =>
            {
                row.data.category = Some(c)
            }
            Some(c) => problem(
                &mut row,
                "category_id",
                "category",
                format!("{c:?} is not in the categories sheet"),
            ),
        }
        for (col, name) in &columns.params {
            if let Some(v) = cells.get_value((r, *col)).and_then(cell_text) {
                row.data
                    .params
                    .push(json!({"parameter_name": name, "parameter_value": v}));
            }
        }
        rows.push(row);
    }

    let bad: Vec<&ParsedRow> = rows.iter().filter(|r| !r.problems.is_empty()).collect();
    let error_detail = if rows.is_empty() {
        Some(format!("Sheet {:?} has no usage records.", sheet.name))
    } else {
        bad.first().map(|first| {
            truncate(
                &format!(
                    "{} of {} records are invalid. First: {}",
                    bad.len(),
                    rows.len(),
                    first.error_details().unwrap_or_default()
                ),
                200,
            )
        })
    };
    ProcessingOutcome {
        rows,
        categories: category_list,
        error_detail,
    }
}

fn read_categories(sheet: Option<&Range<Data>>) -> Vec<Json> {
    let Some(sheet) = sheet else {
        return Vec::new();
    };
    let header: Vec<String> = sheet
        .rows()
        .next()
        .map(|r| r.iter().map(|c| cell_text(c).unwrap_or_default()).collect())
        .unwrap_or_default();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let (Some(id), name, description) = (
        col("category_id"),
        col("category_name"),
        col("category_description"),
    ) else {
        return Vec::new();
    };
    sheet
        .rows()
        .skip(1)
        .filter_map(|r| {
            let text = |i: Option<usize>| i.and_then(|i| r.get(i)).and_then(cell_text);
            text(Some(id)).map(|cid| json!({"id": cid, "name": text(name).unwrap_or_default(), "description": text(description)}))
        })
        .collect()
}

/// Items of a product by each search criterion.
struct ItemIndex<'a> {
    items: &'a [Json],
}

impl<'a> ItemIndex<'a> {
    fn new(items: &'a [Json]) -> ItemIndex<'a> {
        ItemIndex { items }
    }

    fn find(&self, criteria: &str, value: &str) -> Option<&'a Json> {
        let field = match criteria {
            "item.mpn" => "mpn",
            "item.local_id" => "local_id",
            _ => "id",
        };
        self.items.iter().find(|i| i[field] == value)
    }
}

/// Rebuilds the upload as the processed workbook: the records sheet with every bad cell
/// highlighted and explained in a note, and an `errors` column.
pub fn processed_workbook(bytes: &[u8], ctx: &FileContext) -> Result<Vec<u8>, String> {
    use rust_xlsxwriter::{Color, Format, Note, Workbook};
    let (sheet, categories) = open_records_sheet(bytes)?;
    let outcome = process_sheet(&sheet, categories.as_ref(), ctx);
    let xerr = |e: rust_xlsxwriter::XlsxError| e.to_string();
    let mut book = Workbook::new();
    let ws = book.add_worksheet();
    ws.set_name("records").map_err(xerr)?;
    let bad = Format::new().set_background_color(Color::RGB(0xFFC7CE));
    let cells = &sheet.cells;
    let (last_row, last_col) = cells.end().unwrap_or((0, 0));
    let mut header: HashMap<String, u16> = HashMap::new();
    for c in 0..=last_col {
        let name = cells
            .get_value((0, c))
            .and_then(cell_text)
            .unwrap_or_default();
        let key = name.to_ascii_lowercase();
        let key = if key == "usage_record_id" {
            "record_id".to_owned()
        } else {
            key
        };
        header.insert(key, c as u16);
        ws.write_string(0, c as u16, &name).map_err(xerr)?;
    }
    let errors_col = last_col as u16 + 1;
    ws.write_string(0, errors_col, "errors").map_err(xerr)?;
    let problems: HashMap<u32, &ParsedRow> = outcome.rows.iter().map(|r| (r.data.row, r)).collect();
    for r in 1..=last_row {
        let row_problems = problems.get(&(r + 1));
        for c in 0..=last_col {
            let Some(value) = cells.get_value((r, c)).and_then(cell_text) else {
                continue;
            };
            let is_bad = row_problems.is_some_and(|p| {
                p.problems
                    .iter()
                    .any(|pr| pr.column.as_deref().and_then(|n| header.get(n)) == Some(&(c as u16)))
            });
            if is_bad {
                ws.write_string_with_format(r, c as u16, &value, &bad)
                    .map_err(xerr)?;
            } else {
                ws.write_string(r, c as u16, &value).map_err(xerr)?;
            }
        }
        if let Some(p) = row_problems
            && let Some(details) = p.error_details()
        {
            ws.write_string(r, errors_col, &details).map_err(xerr)?;
            let mut notes: HashMap<u16, Vec<&str>> = HashMap::new();
            for pr in &p.problems {
                let col = pr
                    .column
                    .as_deref()
                    .and_then(|n| header.get(n).copied())
                    .unwrap_or(errors_col);
                notes.entry(col).or_default().push(pr.message.as_str());
            }
            for (col, messages) in notes {
                ws.insert_note(r, col, &Note::new(messages.join("\n")))
                    .map_err(xerr)?;
            }
        }
    }
    book.save_to_buffer().map_err(xerr)
}
