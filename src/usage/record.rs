//! A vendor's usage record, as every usage source delivers it, and the rejection of one that
//! cannot be read.
//!
//! Sources read the same fields whatever their format (JSON from the Vendor API, CSV or JSON
//! Lines files): `subscription_id` (asset id or the asset's `external_uid`), `item_mpn`,
//! `quantity`, `start_time`, `end_time` (UTC), and optionally `record_id`, `note` and
//! `category`. A record that is malformed is never dropped: it becomes a [`Rejection`] that says
//! where it was and what was wrong.

use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a record was in its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Position {
    /// 1-based number of the record in the source.
    pub ordinal: u64,
    /// Line in a file, when the source is a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "record {} (line {line})", self.ordinal),
            None => write!(f, "record {}", self.ordinal),
        }
    }
}

/// A non-negative-or-not decimal quantity, kept as exact decimal text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Quantity {
    /// Normalised: no sign for positives, no leading zeros, no trailing fractional zeros
    /// (`+012.500` is `12.5`, `-0.0` is `0`).
    text: String,
}

impl Quantity {
    /// Reads decimal text (`12`, `12.5`, `+0.25`, `-3`, `1e3`).
    pub fn parse(raw: &str) -> Result<Quantity, String> {
        let t = raw.trim();
        if t.is_empty() {
            return Err("is empty".into());
        }
        if t.contains(['e', 'E']) {
            return match t.parse::<f64>() {
                Ok(v) if v.is_finite() => Quantity::parse(&format!("{v}")),
                _ => Err(format!("{raw:?} is not a number")),
            };
        }
        let (negative, body) = match t.as_bytes()[0] {
            b'-' => (true, &t[1..]),
            b'+' => (false, &t[1..]),
            _ => (false, t),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (int.is_empty() && frac.is_empty())
            || !digits_only(int)
            || !digits_only(frac)
            || (body.ends_with('.') && frac.is_empty())
        {
            return Err(format!("{raw:?} is not a number"));
        }
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        let mut text = String::with_capacity(int.len() + frac.len() + 3);
        let zero = int.is_empty() && frac.is_empty();
        if negative && !zero {
            text.push('-');
        }
        text.push_str(if int.is_empty() { "0" } else { int });
        if !frac.is_empty() {
            text.push('.');
            text.push_str(frac);
        }
        Ok(Quantity { text })
    }

    pub fn from_f64(v: f64) -> Result<Quantity, String> {
        if !v.is_finite() {
            return Err(format!("{v} is not a finite number"));
        }
        Quantity::parse(&format!("{v}"))
    }

    pub fn is_negative(&self) -> bool {
        self.text.starts_with('-')
    }

    /// Digits after the decimal point.
    pub fn decimals(&self) -> u32 {
        self.text.split_once('.').map_or(0, |(_, f)| f.len() as u32)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value as a float when that float prints back as the same decimal, so that a
    /// spreadsheet number cell holds exactly the vendor's quantity.
    pub fn exact_f64(&self) -> Option<f64> {
        exact_f64(&self.text)
    }
}

/// A normalised decimal's value as a float, when that float prints back as the same decimal.
pub fn exact_f64(text: &str) -> Option<f64> {
    let v: f64 = text.parse().ok()?;
    // Up to 15 significant digits a decimal survives the trip through f64 (the common case,
    // checked without formatting); beyond, compare the float printed back.
    let significant = text
        .bytes()
        .filter(u8::is_ascii_digit)
        .skip_while(|b| *b == b'0')
        .count();
    if significant <= 15 {
        return Some(v);
    }
    (Quantity::from_f64(v).ok()?.as_str() == text).then_some(v)
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A usage record read from a source.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    pub position: Position,
    /// Asset id (`AS-...`) or the asset's `external_uid`.
    pub subscription: String,
    pub item_mpn: String,
    pub quantity: Quantity,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The vendor's own id of the record, when it has one.
    pub record_id: Option<String>,
    pub note: Option<String>,
    pub category: Option<String>,
}

/// A record that was not sent, where it was and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub position: Position,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    pub reason: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.position)?;
        if let Some(id) = &self.record_id {
            write!(f, " ({id})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// What a source yields: a record, or a record it could not read.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceItem {
    Record(UsageRecord),
    Rejected(Rejection),
}

/// A record's fields before checking, as JSON sources give them (strings, or numbers for the
/// quantity).
#[derive(Debug, Default, Deserialize)]
pub struct RawRecord {
    #[serde(default)]
    pub subscription_id: Option<serde_json::Value>,
    #[serde(default)]
    pub item_mpn: Option<serde_json::Value>,
    #[serde(default)]
    pub quantity: Option<serde_json::Value>,
    #[serde(default)]
    pub start_time: Option<serde_json::Value>,
    #[serde(default)]
    pub end_time: Option<serde_json::Value>,
    #[serde(default)]
    pub record_id: Option<serde_json::Value>,
    #[serde(default)]
    pub note: Option<serde_json::Value>,
    #[serde(default)]
    pub category: Option<serde_json::Value>,
}

/// The field names every source uses.
pub const FIELDS: [&str; 8] = [
    "subscription_id",
    "item_mpn",
    "quantity",
    "start_time",
    "end_time",
    "record_id",
    "note",
    "category",
];

/// The fields a record must have.
pub const REQUIRED_FIELDS: [&str; 5] = [
    "subscription_id",
    "item_mpn",
    "quantity",
    "start_time",
    "end_time",
];

fn json_text(v: &Option<serde_json::Value>) -> Result<Option<String>, String> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok((!s.trim().is_empty()).then(|| s.clone())),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(format!("{other} is not text")),
    }
}

impl RawRecord {
    /// Checks the fields: all problems of the record in one rejection.
    pub fn into_item(self, position: Position) -> SourceItem {
        let text = |name: &str, v: &Option<serde_json::Value>| {
            json_text(v).map_err(|e| format!("{name}: {e}"))
        };
        let fields = [
            text("subscription_id", &self.subscription_id),
            text("item_mpn", &self.item_mpn),
            text("quantity", &self.quantity),
            text("start_time", &self.start_time),
            text("end_time", &self.end_time),
            text("record_id", &self.record_id),
            text("note", &self.note),
            text("category", &self.category),
        ];
        let mut problems = Vec::new();
        let mut values: Vec<Option<String>> = Vec::with_capacity(fields.len());
        for f in fields {
            match f {
                Ok(v) => values.push(v),
                Err(e) => {
                    problems.push(e);
                    values.push(None);
                }
            }
        }
        let mut it = values.into_iter();
        let mut next = || it.next().flatten();
        let fields = TextFields {
            subscription_id: next(),
            item_mpn: next(),
            quantity: next(),
            start_time: next(),
            end_time: next(),
            record_id: next(),
            note: next(),
            category: next(),
        };
        fields.into_item(position, problems)
    }
}

/// A record's fields as text (CSV gives nothing else).
#[derive(Debug, Default, Clone)]
pub struct TextFields {
    pub subscription_id: Option<String>,
    pub item_mpn: Option<String>,
    pub quantity: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub record_id: Option<String>,
    pub note: Option<String>,
    pub category: Option<String>,
}

impl TextFields {
    /// Checks the fields, adding to `problems` found while reading them.
    pub fn into_item(self, position: Position, problems: Vec<String>) -> SourceItem {
        TextFieldsRef {
            subscription_id: self.subscription_id.as_deref(),
            item_mpn: self.item_mpn.as_deref(),
            quantity: self.quantity.as_deref(),
            start_time: self.start_time.as_deref(),
            end_time: self.end_time.as_deref(),
            record_id: self.record_id.as_deref(),
            note: self.note.as_deref(),
            category: self.category.as_deref(),
        }
        .into_item(position, problems)
    }
}

/// A record's fields as borrowed text (a CSV row's cells), checked without copying what is
/// dropped.
#[derive(Debug, Default, Clone, Copy)]
pub struct TextFieldsRef<'a> {
    pub subscription_id: Option<&'a str>,
    pub item_mpn: Option<&'a str>,
    pub quantity: Option<&'a str>,
    pub start_time: Option<&'a str>,
    pub end_time: Option<&'a str>,
    pub record_id: Option<&'a str>,
    pub note: Option<&'a str>,
    pub category: Option<&'a str>,
}

/// The text, unless blank.
fn nonempty(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.trim().is_empty())
}

impl TextFieldsRef<'_> {
    /// Checks the fields, adding to `problems` found while reading them.
    pub fn into_item(self, position: Position, mut problems: Vec<String>) -> SourceItem {
        let record_id = nonempty(self.record_id).map(|s| s.trim().to_owned());
        let mut required = |name: &str, v: Option<&'_ str>| -> Option<String> {
            let v = nonempty(v).map(str::trim);
            if v.is_none() && !problems.iter().any(|p| p.starts_with(name)) {
                problems.push(format!("{name}: is required"));
            }
            v.map(str::to_owned)
        };
        let subscription = required("subscription_id", self.subscription_id);
        let item_mpn = required("item_mpn", self.item_mpn);
        let quantity_present = required("quantity", self.quantity).is_some();
        let start_present = required("start_time", self.start_time).is_some();
        let end_present = required("end_time", self.end_time).is_some();
        let quantity =
            self.quantity
                .filter(|_| quantity_present)
                .and_then(|q| match Quantity::parse(q) {
                    Ok(q) => Some(q),
                    Err(e) => {
                        problems.push(format!("quantity: {e}"));
                        None
                    }
                });
        let mut time = |name: &str, present: bool, v: Option<&str>| {
            v.filter(|_| present).and_then(|t| {
                let t = t.trim();
                match parse_utc(t) {
                    Some(at) => Some(at),
                    None => {
                        problems.push(format!(
                            "{name}: {t:?} is not a UTC time (YYYY-MM-DDTHH:MM:SSZ)"
                        ));
                        None
                    }
                }
            })
        };
        let start = time("start_time", start_present, self.start_time);
        let end = time("end_time", end_present, self.end_time);
        match (subscription, item_mpn, quantity, start, end) {
            (Some(subscription), Some(item_mpn), Some(quantity), Some(start), Some(end))
                if problems.is_empty() =>
            {
                SourceItem::Record(UsageRecord {
                    position,
                    subscription,
                    item_mpn,
                    quantity,
                    start,
                    end,
                    record_id,
                    note: nonempty(self.note).map(str::to_owned),
                    category: nonempty(self.category).map(|s| s.trim().to_owned()),
                })
            }
            _ => SourceItem::Rejected(Rejection {
                position,
                record_id,
                reason: problems.join("; "),
            }),
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS` with `T` or a space and an optional `Z`: what most exports write,
/// read without the general parser.
fn parse_plain_utc(t: &str) -> Option<DateTime<Utc>> {
    let b = t.as_bytes();
    let b = match b.len() {
        19 => b,
        20 if b[19] == b'Z' || b[19] == b'z' => &b[..19],
        _ => return None,
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let time = date.and_hms_opt(num(11..13)?, num(14..16)?, num(17..19)?)?;
    Some(time.and_utc())
}

/// A time in UTC: RFC 3339 with any offset (converted), or without offset (read as UTC), with
/// `T` or a space, or a date alone (midnight).
pub fn parse_utc(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    if let Some(at) = parse_plain_utc(t) {
        return Some(at);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(dt.and_utc());
        }
    }
    if let Ok(dt) = DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Some(dt.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_normalised_exact_decimals() {
        let q = |s: &str| Quantity::parse(s).map(|q| q.to_string());
        assert_eq!(q("12"), Ok("12".into()));
        assert_eq!(q("+012.500"), Ok("12.5".into()));
        assert_eq!(q("0.25"), Ok("0.25".into()));
        assert_eq!(q(".5"), Ok("0.5".into()));
        assert_eq!(q("-0.0"), Ok("0".into()));
        assert_eq!(q("-3"), Ok("-3".into()));
        assert_eq!(q("1e3"), Ok("1000".into()));
        assert_eq!(q("0.00000001"), Ok("0.00000001".into()));
        for bad in ["", "abc", "1.2.3", "1.", "--1", "1,5", "NaN", "inf", " - "] {
            assert!(q(bad).is_err(), "{bad}");
        }
        let p = Quantity::parse("12.340").expect("valid");
        assert_eq!(p.decimals(), 2);
        assert_eq!(p.exact_f64(), Some(12.34));
        let big = Quantity::parse("12345678901234567.12345678").expect("valid");
        assert_eq!(big.exact_f64(), None, "not representable: written as text");
        for exact in [
            "0.00000001",
            "999999999999999",
            "123456789.12345",
            "0.1",
            "100000000000000000000",
        ] {
            let q = Quantity::parse(exact).expect("valid");
            let v = q.exact_f64().expect("exact");
            assert_eq!(Quantity::from_f64(v).expect("finite"), q, "{exact}");
        }
        assert_eq!(
            Quantity::parse("1234567890123456.7")
                .expect("valid")
                .exact_f64(),
            None
        );
    }

    #[test]
    fn times_are_read_as_utc() {
        let t = |s: &str| parse_utc(s).map(|d| d.to_rfc3339());
        let want = Some("2024-04-01T10:00:00+00:00".to_owned());
        assert_eq!(t("2024-04-01T10:00:00Z"), want);
        assert_eq!(t("2024-04-01T12:00:00+02:00"), want);
        assert_eq!(t("2024-04-01 10:00:00"), want);
        assert_eq!(t("2024-04-01T10:00:00"), want);
        assert_eq!(t("2024-04-01 12:00:00+02:00"), want);
        assert_eq!(
            t("2024-04-01"),
            Some("2024-04-01T00:00:00+00:00".to_owned())
        );
        assert_eq!(t("01/04/2024"), None);
        assert_eq!(t("2024-04-31T10:00:00Z"), None, "no such day");
        assert_eq!(t("2024-04-01T24:00:00Z"), None);
        assert_eq!(t("2024-04-01X10:00:00Z"), None);
        assert_eq!(t("2024-04-01 10:00:00z"), want);
        assert_eq!(
            t("2024-04-01T10:00:00.5Z"),
            Some("2024-04-01T10:00:00.500+00:00".to_owned())
        );
    }

    #[test]
    fn every_problem_of_a_record_is_named() {
        let raw: RawRecord = serde_json::from_value(serde_json::json!({
            "subscription_id": "AS-1", "quantity": "-x", "start_time": "yesterday",
            "end_time": 5, "record_id": "r-9", "note": {"a": 1}
        }))
        .expect("json");
        let pos = Position {
            ordinal: 3,
            line: Some(4),
        };
        match raw.into_item(pos) {
            SourceItem::Rejected(r) => {
                assert_eq!(r.record_id.as_deref(), Some("r-9"));
                assert_eq!(r.position, pos);
                for part in [
                    "note: {\"a\":1} is not text",
                    "item_mpn: is required",
                    "quantity: \"-x\" is not a number",
                    "start_time: \"yesterday\" is not a UTC time",
                    "end_time: \"5\" is not a UTC time",
                ] {
                    assert!(r.reason.contains(part), "{part} in {}", r.reason);
                }
                assert_eq!(
                    r.to_string().split(':').next(),
                    Some("record 3 (line 4) (r-9)")
                );
            }
            other => panic!("rejected expected, got {other:?}"),
        }
    }

    #[test]
    fn a_good_record_reads() {
        let raw: RawRecord = serde_json::from_value(serde_json::json!({
            "subscription_id": " AS-1 ", "item_mpn": "MPN", "quantity": 2.5,
            "start_time": "2024-04-01T00:00:00Z", "end_time": "2024-04-30T23:59:59Z",
            "note": "=SUM(A1)", "category": ""
        }))
        .expect("json");
        match raw.into_item(Position {
            ordinal: 1,
            line: None,
        }) {
            SourceItem::Record(r) => {
                assert_eq!(r.subscription, "AS-1");
                assert_eq!(r.quantity.as_str(), "2.5");
                assert_eq!(r.note.as_deref(), Some("=SUM(A1)"));
                assert_eq!(r.category, None);
                assert_eq!(r.record_id, None);
            }
            other => panic!("record expected, got {other:?}"),
        }
    }
}
