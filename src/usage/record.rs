//! A vendor's usage record, as every usage source delivers it, and the rejection of one that
//! cannot be read.
//!
//! Sources read the same fields whatever their format (JSON from the Vendor API, CSV or JSON
//! Lines files): `subscription_id` (asset id or the asset's `external_uid`), `item_mpn`,
//! `quantity`, `start_time`, `end_time` (UTC), and optionally `record_id`, `note` and
//! `category`. A record that is malformed is never dropped: it becomes a [`Rejection`] that says
//! where it was and what was wrong.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, NaiveDate, NaiveTime, SecondsFormat, Utc};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
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
    // A decimal of 309 digits or more parses as infinity: no number cell holds it.
    let v: f64 = text.parse().ok().filter(|v: &f64| v.is_finite())?;
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
pub struct VendorRecord {
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
    Record(VendorRecord),
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
        Texts {
            subscription_id: self.subscription_id.map(Cow::Owned),
            item_mpn: self.item_mpn.map(Cow::Owned),
            quantity: self.quantity.map(Cow::Owned),
            start_time: self.start_time.map(|t| When::Text(Cow::Owned(t))),
            end_time: self.end_time.map(|t| When::Text(Cow::Owned(t))),
            record_id: self.record_id.map(Cow::Owned),
            note: self.note.map(Cow::Owned),
            category: self.category.map(Cow::Owned),
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

impl TextFieldsRef<'_> {
    /// Checks the fields, adding to `problems` found while reading them.
    pub fn into_item(self, position: Position, problems: Vec<String>) -> SourceItem {
        Texts {
            subscription_id: self.subscription_id.map(Cow::Borrowed),
            item_mpn: self.item_mpn.map(Cow::Borrowed),
            quantity: self.quantity.map(Cow::Borrowed),
            start_time: self.start_time.map(|t| When::Text(Cow::Borrowed(t))),
            end_time: self.end_time.map(|t| When::Text(Cow::Borrowed(t))),
            record_id: self.record_id.map(Cow::Borrowed),
            note: self.note.map(Cow::Borrowed),
            category: self.category.map(Cow::Borrowed),
        }
        .into_item(position, problems)
    }
}

/// A field as a typed source holds it: a database column's value, a columnar file's cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    /// Text, or a number as its exact decimal text.
    Text(Cow<'a, str>),
    /// An instant the source has read as a time (in UTC).
    At(DateTime<Utc>),
    /// A value this field cannot take, and why (`NaN is not a number`).
    Bad(String),
}

/// A record's fields as a typed source gives them; `None` is a missing column or a NULL.
#[derive(Debug, Default, Clone)]
pub struct Cells<'a> {
    pub subscription_id: Option<Cell<'a>>,
    pub item_mpn: Option<Cell<'a>>,
    pub quantity: Option<Cell<'a>>,
    pub start_time: Option<Cell<'a>>,
    pub end_time: Option<Cell<'a>>,
    pub record_id: Option<Cell<'a>>,
    pub note: Option<Cell<'a>>,
    pub category: Option<Cell<'a>>,
}

impl<'a> Cells<'a> {
    /// Checks the fields: all problems of the record in one rejection, as for text sources.
    pub fn into_item(self, position: Position) -> SourceItem {
        let mut problems = Vec::new();
        let mut text = |name: &str, cell: Option<Cell<'a>>| match cell? {
            Cell::Text(t) => Some(t),
            Cell::At(at) => Some(Cow::Owned(at.to_rfc3339_opts(SecondsFormat::AutoSi, true))),
            Cell::Bad(why) => {
                problems.push(format!("{name}: {why}"));
                None
            }
        };
        let subscription_id = text("subscription_id", self.subscription_id);
        let item_mpn = text("item_mpn", self.item_mpn);
        let quantity = text("quantity", self.quantity);
        let record_id = text("record_id", self.record_id);
        let note = text("note", self.note);
        let category = text("category", self.category);
        let mut time = |name: &str, cell: Option<Cell<'a>>| match cell? {
            Cell::Text(t) => Some(When::Text(t)),
            Cell::At(at) => Some(When::At(at)),
            Cell::Bad(why) => {
                problems.push(format!("{name}: {why}"));
                None
            }
        };
        let start_time = time("start_time", self.start_time);
        let end_time = time("end_time", self.end_time);
        Texts {
            subscription_id,
            item_mpn,
            quantity,
            start_time,
            end_time,
            record_id,
            note,
            category,
        }
        .into_item(position, problems)
    }
}

/// A record's fields as text, borrowed from the document read where they can be: what every
/// source's record comes down to before it is checked.
#[derive(Debug, Default)]
struct Texts<'a> {
    subscription_id: Option<Cow<'a, str>>,
    item_mpn: Option<Cow<'a, str>>,
    quantity: Option<Cow<'a, str>>,
    start_time: Option<When<'a>>,
    end_time: Option<When<'a>>,
    record_id: Option<Cow<'a, str>>,
    note: Option<Cow<'a, str>>,
    category: Option<Cow<'a, str>>,
}

/// A time as a source gives it: text to read, or an instant a typed source has read.
#[derive(Debug)]
enum When<'a> {
    Text(Cow<'a, str>),
    At(DateTime<Utc>),
}

/// Text that is not blank.
fn nonempty(v: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    v.filter(|s| !s.trim().is_empty())
}

/// Text that is not blank, without surrounding white space.
fn nonempty_trimmed(v: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    v.map(trimmed).filter(|s| !s.is_empty())
}

/// The text without surrounding white space, copied only when there is some to remove from
/// text that is not borrowed.
fn trimmed(text: Cow<'_, str>) -> Cow<'_, str> {
    match text {
        Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
        Cow::Owned(s) if s.trim().len() == s.len() => Cow::Owned(s),
        Cow::Owned(s) => Cow::Owned(s.trim().to_owned()),
    }
}

impl<'a> Texts<'a> {
    /// Checks the fields, adding to `problems` found while reading them.
    fn into_item(self, position: Position, mut problems: Vec<String>) -> SourceItem {
        let record_id = nonempty_trimmed(self.record_id).map(Cow::into_owned);
        let mut required = |name: &str, v: Option<Cow<'a, str>>| {
            let v = nonempty_trimmed(v);
            if v.is_none() && !problems.iter().any(|p| p.starts_with(name)) {
                problems.push(format!("{name}: is required"));
            }
            v
        };
        let subscription = required("subscription_id", self.subscription_id);
        let item_mpn = required("item_mpn", self.item_mpn);
        let quantity_text = required("quantity", self.quantity);
        let mut required_time = |name: &str, v: Option<When<'a>>| {
            let v = match v {
                Some(When::Text(t)) => nonempty_trimmed(Some(t)).map(When::Text),
                at => at,
            };
            if v.is_none() && !problems.iter().any(|p| p.starts_with(name)) {
                problems.push(format!("{name}: is required"));
            }
            v
        };
        let start_text = required_time("start_time", self.start_time);
        let end_text = required_time("end_time", self.end_time);
        let quantity = quantity_text.and_then(|q| match Quantity::parse(&q) {
            Ok(q) => Some(q),
            Err(e) => {
                problems.push(format!("quantity: {e}"));
                None
            }
        });
        let mut time = |name: &str, v: Option<When<'_>>| match v? {
            When::At(at) => Some(at),
            When::Text(t) => match parse_utc(&t) {
                Some(at) => Some(at),
                None => {
                    let t: &str = &t;
                    problems.push(format!(
                        "{name}: {t:?} is not a UTC time (YYYY-MM-DDTHH:MM:SSZ)"
                    ));
                    None
                }
            },
        };
        let start = time("start_time", start_text);
        let end = time("end_time", end_text);
        match (subscription, item_mpn, quantity, start, end) {
            (Some(subscription), Some(item_mpn), Some(quantity), Some(start), Some(end))
                if problems.is_empty() =>
            {
                SourceItem::Record(VendorRecord {
                    position,
                    subscription: subscription.into_owned(),
                    item_mpn: item_mpn.into_owned(),
                    quantity,
                    start,
                    end,
                    record_id,
                    note: nonempty(self.note).map(Cow::into_owned),
                    category: nonempty_trimmed(self.category).map(Cow::into_owned),
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

/// A field of a JSON record as the document holds it, read without building a
/// [`serde_json::Value`] unless it is neither text, a number nor null.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonField<'a> {
    Null,
    /// Borrowed from the document unless it had escapes.
    Text(Cow<'a, str>),
    Number(serde_json::Number),
    /// `true`, an object, an array: not text.
    Other(Box<serde_json::Value>),
}

impl<'a> JsonField<'a> {
    /// The field as text, as [`RawRecord`] reads it: a number is its JSON text, anything
    /// else but null a problem. (Blank text is none: [`Texts`] sees to that.)
    fn text(self, name: &str, problems: &mut Vec<String>) -> Option<Cow<'a, str>> {
        match self {
            JsonField::Null => None,
            JsonField::Text(s) => Some(s),
            JsonField::Number(n) => Some(Cow::Owned(n.to_string())),
            JsonField::Other(v) => {
                problems.push(format!("{name}: {v} is not text"));
                None
            }
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonField<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for FieldVisitor<'a> {
            type Value = JsonField<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JsonField::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JsonField::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(JsonField::Text(Cow::Owned(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(JsonField::Number(v.into()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(JsonField::Number(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                // As `serde_json::Value` has it: a float without a JSON form is null.
                Ok(serde_json::Number::from_f64(v).map_or(JsonField::Null, JsonField::Number))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(JsonField::Other(Box::new(serde_json::Value::Bool(v))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(JsonField::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(JsonField::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                JsonField::deserialize(d)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|v| JsonField::Other(Box::new(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(|v| JsonField::Other(Box::new(v)))
            }
        }
        deserializer.deserialize_any(FieldVisitor(PhantomData))
    }
}

/// A record of a JSON document, read straight from it (no [`serde_json::Value`] in between):
/// an object's fields (others ignored; of a field given twice, the last), or whatever else
/// stood in the record's place.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonRecord<'a> {
    Object(JsonFields<'a>),
    /// Not an object: read as [`RawRecord`] reads it.
    NotObject(Box<serde_json::Value>),
}

/// The fields of a JSON record object.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct JsonFields<'a> {
    pub subscription_id: Option<JsonField<'a>>,
    pub item_mpn: Option<JsonField<'a>>,
    pub quantity: Option<JsonField<'a>>,
    pub start_time: Option<JsonField<'a>>,
    pub end_time: Option<JsonField<'a>>,
    pub record_id: Option<JsonField<'a>>,
    pub note: Option<JsonField<'a>>,
    pub category: Option<JsonField<'a>>,
}

impl<'a> JsonRecord<'a> {
    /// Checks the fields: all problems of the record in one rejection, as
    /// [`RawRecord::into_item`] finds them.
    pub fn into_item(self, position: Position) -> SourceItem {
        let fields = match self {
            JsonRecord::Object(fields) => fields,
            JsonRecord::NotObject(v) => {
                return match serde_json::from_value::<RawRecord>(*v) {
                    Ok(raw) => raw.into_item(position),
                    Err(e) => SourceItem::Rejected(Rejection {
                        position,
                        record_id: None,
                        reason: format!("not a usage record: {e}"),
                    }),
                };
            }
        };
        let mut problems = Vec::new();
        let mut text =
            |name: &str, v: Option<JsonField<'a>>| v.and_then(|v| v.text(name, &mut problems));
        let texts = Texts {
            subscription_id: text("subscription_id", fields.subscription_id),
            item_mpn: text("item_mpn", fields.item_mpn),
            quantity: text("quantity", fields.quantity),
            start_time: text("start_time", fields.start_time).map(When::Text),
            end_time: text("end_time", fields.end_time).map(When::Text),
            record_id: text("record_id", fields.record_id),
            note: text("note", fields.note),
            category: text("category", fields.category),
        };
        texts.into_item(position, problems)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonRecord<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// A key of a record object: the index of one of [`FIELDS`], or another.
        struct Key(Option<usize>);
        impl<'de> Deserialize<'de> for Key {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct KeyVisitor;
                impl Visitor<'_> for KeyVisitor {
                    type Value = Key;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a field name")
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                        // The order of FIELDS.
                        Ok(Key(match v {
                            "subscription_id" => Some(0),
                            "item_mpn" => Some(1),
                            "quantity" => Some(2),
                            "start_time" => Some(3),
                            "end_time" => Some(4),
                            "record_id" => Some(5),
                            "note" => Some(6),
                            "category" => Some(7),
                            _ => None,
                        }))
                    }
                }
                deserializer.deserialize_identifier(KeyVisitor)
            }
        }
        struct RecordVisitor<'a>(PhantomData<&'a ()>);
        impl<'a> RecordVisitor<'a> {
            fn other<E: de::Error>(v: serde_json::Value) -> Result<JsonRecord<'a>, E> {
                Ok(JsonRecord::NotObject(Box::new(v)))
            }
        }
        impl<'de: 'a, 'a> Visitor<'de> for RecordVisitor<'a> {
            type Value = JsonRecord<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut r = JsonFields::default();
                while let Some(Key(key)) = map.next_key::<Key>()? {
                    let slot = match key {
                        Some(0) => &mut r.subscription_id,
                        Some(1) => &mut r.item_mpn,
                        Some(2) => &mut r.quantity,
                        Some(3) => &mut r.start_time,
                        Some(4) => &mut r.end_time,
                        Some(5) => &mut r.record_id,
                        Some(6) => &mut r.note,
                        Some(7) => &mut r.category,
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value::<JsonField<'a>>()?);
                }
                Ok(JsonRecord::Object(r))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .and_then(Self::other)
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Self::other(v.into())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Self::other(v.into())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Self::other(v.into())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Self::other(v.into())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Self::other(v.into())
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Self::other(v.into())
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Self::other(serde_json::Value::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Self::other(serde_json::Value::Null)
            }
        }
        deserializer.deserialize_any(RecordVisitor(PhantomData))
    }
}

/// A time in UTC: RFC 3339 with any offset (converted), or without offset (read as UTC), with
/// `T` or a space, or a date alone (midnight).
pub fn parse_utc(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    // The quick path reads the common exact form without chrono's parsers (millions of
    // records a month); the client's reader takes every other form.
    parse_utc_exact(t).or_else(|| connect_client::utc::parse_utc(t))
}

/// `YYYY-MM-DDTHH:MM:SSZ`, the form nearly every record has, read without chrono's general
/// parser (a few times faster): the same instant as [`DateTime::parse_from_rfc3339`] finds,
/// and none for any other text (a leap second too), which [`parse_utc`] then reads by the
/// general rules.
fn parse_utc_exact(t: &str) -> Option<DateTime<Utc>> {
    let b = t.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |from: usize, to: usize| {
        b[from..to].iter().try_fold(0u32, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let date = NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 7)?, num(8, 10)?)?;
    let time = NaiveTime::from_hms_opt(num(11, 13)?, num(14, 16)?, num(17, 19)?)?;
    Some(date.and_time(time).and_utc())
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
        let huge = Quantity::parse(&format!("1{}", "0".repeat(309))).expect("valid");
        assert_eq!(huge.exact_f64(), None, "beyond f64: written as text");
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
        assert_eq!(
            t("2024-04-01T10:00:00.5Z"),
            Some("2024-04-01T10:00:00.500+00:00".to_owned())
        );
    }

    #[test]
    fn the_quick_reading_of_times_agrees_with_chrono() {
        let chrono = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|d| d.with_timezone(&Utc))
        };
        for s in [
            "2024-04-01T10:00:00Z",
            "2024-02-29T23:59:59Z",
            "2023-02-29T10:00:00Z",
            "2024-04-31T10:00:00Z",
            "2024-13-01T10:00:00Z",
            "2024-00-01T10:00:00Z",
            "2024-04-00T10:00:00Z",
            "2024-04-01T24:00:00Z",
            "2024-04-01T10:60:00Z",
            "2024-06-30T23:59:60Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2024-04-01t10:00:00z",
            "2024-04-01T10:00:0xZ",
            "2024-04-01T10:00:00+",
            "+024-04-01T10:00:00Z",
            "2024-04-01 10:00:00Z",
        ] {
            let quick = parse_utc_exact(s);
            assert!(quick.is_none() || quick == chrono(s), "{s}");
            assert_eq!(parse_utc(s), connect_client::utc::parse_utc(s), "{s}");
        }
        assert!(parse_utc_exact("2024-04-01T10:00:00Z").is_some());
        // A leap second is left to chrono.
        assert_eq!(parse_utc_exact("2016-12-31T23:59:60Z"), None);
        assert_eq!(
            parse_utc("2016-12-31T23:59:60Z"),
            chrono("2016-12-31T23:59:60Z")
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

    /// A record read straight from JSON is the record read through a `serde_json::Value`
    /// (as the sources did before), rejections and their reasons included.
    #[test]
    fn json_records_read_directly_as_through_a_value() {
        let through_value = |text: &str, position: Position| {
            let v: serde_json::Value = serde_json::from_str(text).expect("json");
            match serde_json::from_value::<RawRecord>(v) {
                Ok(raw) => raw.into_item(position),
                Err(e) => SourceItem::Rejected(Rejection {
                    position,
                    record_id: None,
                    reason: format!("not a usage record: {e}"),
                }),
            }
        };
        let good = r#""subscription_id": "AS-1", "item_mpn": "M", "quantity": "2.50",
            "start_time": "2024-04-01T00:00:00Z", "end_time": "2024-04-02T10:00:00+02:00""#;
        for text in [
            format!("{{{good}}}"),
            format!(r#"{{{good}, "record_id": " r-1 ", "note": " n ", "category": " c "}}"#),
            format!(r#"{{{good}, "record_id": 17, "note": 2.5e3, "category": -3}}"#),
            format!(r#"{{{good}, "note": {{"a": [1, {{"b": null}}], "z": true}}}}"#),
            format!(r#"{{{good}, "note": [1, "x"], "category": false, "record_id": null}}"#),
            format!(r#"{{{good}, "unknown": {{"deep": [1, 2]}}, "other": "x"}}"#),
            format!(r#"{{{good}, "quantity": "1", "quantity": "lots"}}"#),
            format!(r#"{{{good}, "item_mpn": "A\"B\u00e9\n", "subscription_id": "\u0041S-2"}}"#),
            format!(r#"{{{good}, "quan\u0074ity": "-1.5", "start_time": "2024-04-01 10:00:00"}}"#),
            format!(r#"{{{good}, "quantity": 1e400000000000000000000000000000000000000}}"#),
            r#"{"quantity": 12, "start_time": 5, "end_time": "  ", "item_mpn": ""}"#.to_owned(),
            r#"{"subscription_id": "AS-1", "quantity": 0.1, "start_time": "2024-04-01"}"#
                .to_owned(),
            "{}".to_owned(),
            "null".to_owned(),
            "true".to_owned(),
            "42".to_owned(),
            "-4.5".to_owned(),
            r#""AS-1""#.to_owned(),
            "[]".to_owned(),
            r#"["AS-1", "M", "1", "2024-04-01T00:00:00Z", "2024-04-02T00:00:00Z"]"#.to_owned(),
            r#"["AS-1", "M", 1, "2024-04-01T00:00:00Z", "2024-04-02T00:00:00Z", "r", "n", "c"]"#
                .to_owned(),
        ] {
            let position = Position {
                ordinal: 9,
                line: None,
            };
            let direct = serde_json::from_str::<JsonRecord<'_>>(&text);
            if serde_json::from_str::<serde_json::Value>(&text).is_err() {
                assert!(direct.is_err(), "{text}");
                continue;
            }
            let direct = direct.expect("json").into_item(position);
            assert_eq!(direct, through_value(&text, position), "{text}");
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
