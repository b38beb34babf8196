//! Aggregation (`USAGE_AGGREGATION`): instead of one row per vendor record, one row per
//! subscription (asset), item and UTC day or month, holding the exact sum of their quantities.
//!
//! The row's start and end are its window's; its record id is derived from the asset, the item
//! and the window (`cu-` and 32 hex digits), so the same window always has the same id; its note
//! says how many vendor records it sums. Sums are exact decimals (whole units of 10^-8, the
//! finest precision an item can have), and the item's precision is checked on the sum, not on
//! each record: two half hours of an integer item make one valid hour.
//!
//! Memory grows with the windows of one group (assets × items × days), never with records.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};

use super::record::Position;
use super::row::Row;
use super::row::content_id;
use connect_client::month::Month;

/// How records are summed before they are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Aggregation {
    /// One row per vendor record.
    #[default]
    None,
    /// One row per asset, item and UTC day.
    Day,
    /// One row per asset, item and month.
    Month,
}

impl Aggregation {
    pub fn parse(text: &str) -> Result<Aggregation, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "none" => Ok(Aggregation::None),
            "day" => Ok(Aggregation::Day),
            "month" => Ok(Aggregation::Month),
            other => Err(format!(
                "{other:?} is not an aggregation: give none, day or month"
            )),
        }
    }

    /// The window (first and last second, UTC) a record starting at `start` falls in.
    pub fn window(&self, start: i64, period: Month) -> (i64, i64) {
        match self {
            Aggregation::None => (start, start),
            Aggregation::Month => (period.start().timestamp(), period.last_second().timestamp()),
            Aggregation::Day => {
                let day = start.div_euclid(86_400) * 86_400;
                (day, day + 86_399)
            }
        }
    }
}

impl fmt::Display for Aggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Aggregation::None => "none",
            Aggregation::Day => "day",
            Aggregation::Month => "month",
        })
    }
}

/// Decimal places of the units sums are kept in.
pub const SUM_DECIMALS: u32 = 8;
const SCALE: i128 = 100_000_000;

/// An exact decimal sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sum(i128);

impl Sum {
    /// Adds a normalised decimal (see [`super::record::Quantity`]) of at most
    /// [`SUM_DECIMALS`] places.
    pub fn add(&mut self, quantity: &str) -> Result<(), String> {
        let (negative, body) = match quantity.strip_prefix('-') {
            Some(b) => (true, b),
            None => (false, quantity),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        if frac.len() > SUM_DECIMALS as usize
            || int.is_empty()
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return Err(format!(
                "quantity {quantity} has more than {SUM_DECIMALS} decimals or is not a number"
            ));
        }
        let whole: i128 = int
            .parse()
            .map_err(|_| format!("quantity {quantity} is too large to sum"))?;
        let mut units: i128 = 0;
        for (i, b) in frac.bytes().enumerate() {
            units += i128::from(b - b'0') * 10i128.pow(SUM_DECIMALS - 1 - i as u32);
        }
        let value = whole
            .checked_mul(SCALE)
            .and_then(|w| w.checked_add(units))
            .ok_or_else(|| format!("quantity {quantity} is too large to sum"))?;
        self.0 = if negative {
            self.0.checked_sub(value)
        } else {
            self.0.checked_add(value)
        }
        .ok_or_else(|| "the sum is too large".to_owned())?;
        Ok(())
    }

    /// Digits after the decimal point the sum needs.
    pub fn decimals(&self) -> u32 {
        let mut frac = (self.0 % SCALE).abs();
        if frac == 0 {
            return 0;
        }
        let mut places = SUM_DECIMALS;
        while frac % 10 == 0 {
            frac /= 10;
            places -= 1;
        }
        places
    }
}

impl fmt::Display for Sum {
    /// Normalised decimal text: no trailing zeros, no sign for zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / SCALE as u128;
        let frac = abs % SCALE as u128;
        if frac == 0 {
            return write!(f, "{sign}{whole}");
        }
        let digits = format!("{frac:08}");
        write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// The record id of an aggregated row: `cu-` and 32 hex digits of a SHA-256 of the asset, the
/// item and the window (a record id derived from content starts the same way but hashes other
/// fields, so the two never meet).
pub fn aggregate_id(asset_id: &str, item_mpn: &str, start: i64, end: i64) -> String {
    content_id(&[
        "aggregate",
        asset_id,
        item_mpn,
        &start.to_string(),
        &end.to_string(),
    ])
}

#[derive(Debug)]
struct Window {
    sum: Sum,
    records: u32,
    first: Position,
    precision: u8,
    /// The records' category when they all name the same one.
    category: Option<String>,
    mixed_categories: bool,
    /// A record could not be summed (too many decimals, too large).
    broken: Option<String>,
}

/// A window whose rows cannot be reported: the sum breaks the item's precision, or a record
/// could not be summed. Every record it sums is not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadWindow {
    /// The first record of the window.
    pub position: Position,
    pub records: u32,
    pub reason: String,
}

/// An aggregated row, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregated {
    pub record_id: String,
    pub asset_id: String,
    pub item_mpn: String,
    pub quantity: String,
    pub start: i64,
    pub end: i64,
    pub note: String,
    pub category: Option<String>,
    pub position: Position,
    pub precision: u8,
    pub sums: u32,
}

impl Aggregated {
    pub fn row(&self, group: u32) -> Row<'_> {
        Row {
            group,
            record_id: &self.record_id,
            position: self.position,
            asset_id: &self.asset_id,
            item_mpn: &self.item_mpn,
            quantity: &self.quantity,
            start: self.start,
            end: self.end,
            note: Some(&self.note),
            category: self.category.as_deref(),
            vendor_id: false,
            precision: self.precision,
            sums: self.sums,
            tag: 0,
        }
    }
}

/// Sums one group's rows per window.
#[derive(Debug)]
pub struct Aggregator {
    how: Aggregation,
    period: Month,
    windows: HashMap<(String, String, i64), Window>,
}

impl Aggregator {
    pub fn new(how: Aggregation, period: Month) -> Aggregator {
        Aggregator {
            how,
            period,
            windows: HashMap::new(),
        }
    }

    /// Adds a vendor record's row.
    pub fn add(&mut self, row: &Row<'_>) {
        let (start, _) = self.how.window(row.start, self.period);
        let key = (row.asset_id.to_owned(), row.item_mpn.to_owned(), start);
        let w = self.windows.entry(key).or_insert_with(|| Window {
            sum: Sum::default(),
            records: 0,
            first: row.position,
            precision: row.precision,
            category: row.category.map(str::to_owned),
            mixed_categories: false,
            broken: None,
        });
        w.records += row.sums.max(1);
        w.first = w.first.min(row.position);
        if w.category.as_deref() != row.category {
            w.mixed_categories = true;
        }
        if w.broken.is_none()
            && let Err(e) = w.sum.add(row.quantity)
        {
            w.broken = Some(e);
        }
    }

    /// The group's aggregated rows sorted by record id, and the windows that cannot be sent.
    pub fn finish(self) -> (Vec<Aggregated>, Vec<BadWindow>) {
        let mut rows = Vec::with_capacity(self.windows.len());
        let mut bad = Vec::new();
        let how = self.how;
        let period = self.period;
        for ((asset_id, item_mpn, start), w) in self.windows {
            let (start, end) = how.window(start, period);
            let label = match how {
                Aggregation::Day => DateTime::<Utc>::from_timestamp(start, 0)
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .unwrap_or_default(),
                _ => period.to_string(),
            };
            if let Some(reason) = w.broken {
                bad.push(BadWindow {
                    position: w.first,
                    records: w.records,
                    reason: format!(
                        "{reason}: the {} records of asset {asset_id}, item {item_mpn} on {label} are not summed",
                        w.records
                    ),
                });
                continue;
            }
            if w.sum.decimals() > u32::from(w.precision) {
                bad.push(BadWindow {
                    position: w.first,
                    records: w.records,
                    reason: format!(
                        "quantity: the sum of the {} records of asset {asset_id}, item {item_mpn} on {label} is {}, with more decimals than the item allows ({})",
                        w.records, w.sum, w.precision
                    ),
                });
                continue;
            }
            if w.sum.0 < 0 {
                bad.push(BadWindow {
                    position: w.first,
                    records: w.records,
                    reason: format!(
                        "quantity: the sum of the {} records of asset {asset_id}, item {item_mpn} on {label} is negative ({})",
                        w.records, w.sum
                    ),
                });
                continue;
            }
            rows.push(Aggregated {
                record_id: aggregate_id(&asset_id, &item_mpn, start, end),
                quantity: w.sum.to_string(),
                note: format!(
                    "sum of {} vendor record{} ({label})",
                    w.records,
                    if w.records == 1 { "" } else { "s" }
                ),
                category: if w.mixed_categories { None } else { w.category },
                asset_id,
                item_mpn,
                start,
                end,
                position: w.first,
                precision: w.precision,
                sums: w.records,
            });
        }
        rows.sort_by(|a, b| a.record_id.cmp(&b.record_id));
        bad.sort_by_key(|b| b.position);
        (rows, bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn april() -> Month {
        "2024-04".parse().expect("period")
    }

    #[test]
    fn sums_are_exact() {
        let mut s = Sum::default();
        for q in ["0.1", "0.2", "0.00000001", "12345678901234567.5", "3"] {
            s.add(q).expect("adds");
        }
        assert_eq!(s.to_string(), "12345678901234570.80000001");
        assert_eq!(s.decimals(), 8);
        let mut t = Sum::default();
        t.add("0.5").expect("adds");
        t.add("0.5").expect("adds");
        assert_eq!((t.to_string(), t.decimals()), ("1".into(), 0));
        t.add("-1.25").expect("adds");
        assert_eq!((t.to_string(), t.decimals()), ("-0.25".into(), 2));
        assert!(Sum::default().add("0.123456789").is_err());
        assert!(Sum::default().add("lots").is_err());
        assert_eq!(Sum::default().to_string(), "0");
    }

    #[test]
    fn windows_are_utc_days_or_the_month() {
        let p = april();
        let t = p.start().timestamp() + 3 * 86_400 + 3_600; // 2024-04-04 01:00
        let (s, e) = Aggregation::Day.window(t, p);
        assert_eq!((s, e - s), (p.start().timestamp() + 3 * 86_400, 86_399));
        assert_eq!(
            Aggregation::Month.window(t, p),
            (p.start().timestamp(), p.last_second().timestamp())
        );
        assert_eq!(Aggregation::parse(" Day "), Ok(Aggregation::Day));
        assert_eq!(Aggregation::parse(""), Ok(Aggregation::None));
        assert!(
            Aggregation::parse("hour")
                .expect_err("unknown")
                .contains("none, day or month")
        );
    }

    fn row<'a>(asset: &'a str, mpn: &'a str, q: &'a str, start: i64, ordinal: u64) -> Row<'a> {
        Row {
            group: 0,
            record_id: "x",
            position: Position {
                ordinal,
                line: None,
            },
            asset_id: asset,
            item_mpn: mpn,
            quantity: q,
            start,
            end: start + 60,
            note: None,
            category: Some("c"),
            vendor_id: true,
            precision: 0,
            sums: 1,
            tag: 0,
        }
    }

    #[test]
    fn records_of_one_asset_item_and_day_become_one_row() {
        let p = april();
        let d1 = p.start().timestamp();
        let d2 = d1 + 86_400;
        let mut a = Aggregator::new(Aggregation::Day, p);
        for r in [
            row("AS-1", "M", "0.5", d1 + 10, 3),
            row("AS-1", "M", "0.5", d1 + 7_200, 1),
            row("AS-1", "M", "2", d2 + 5, 2),
            row("AS-2", "M", "1", d1, 4),
            row("AS-1", "N", "0.25", d1, 5),
        ] {
            a.add(&r);
        }
        let (rows, bad) = a.finish();
        assert_eq!(rows.len(), 3, "{rows:?}");
        let first = rows
            .iter()
            .find(|r| r.asset_id == "AS-1" && r.item_mpn == "M" && r.start == d1)
            .expect("day 1");
        assert_eq!(first.quantity, "1", "two halves of an integer item");
        assert_eq!(first.end, d1 + 86_399);
        assert_eq!(first.note, "sum of 2 vendor records (2024-04-01)");
        assert_eq!(first.position.ordinal, 1, "the window's first record");
        assert_eq!(first.sums, 2);
        assert_eq!(first.record_id, aggregate_id("AS-1", "M", d1, d1 + 86_399));
        assert!(rows.windows(2).all(|w| w[0].record_id < w[1].record_id));
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].position.ordinal, 5);
        assert!(
            bad[0]
                .reason
                .contains("is 0.25, with more decimals than the item allows (0)"),
            "{}",
            bad[0].reason
        );
    }

    #[test]
    fn a_month_sums_every_day() {
        let p = april();
        let mut a = Aggregator::new(Aggregation::Month, p);
        for day in 0..30 {
            a.add(&row(
                "AS-1",
                "M",
                "1",
                p.start().timestamp() + day * 86_400,
                day as u64 + 1,
            ));
        }
        let (rows, bad) = a.finish();
        assert!(bad.is_empty());
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].quantity, "30");
        assert_eq!(
            (rows[0].start, rows[0].end),
            (p.start().timestamp(), p.last_second().timestamp())
        );
        assert_eq!(rows[0].note, "sum of 30 vendor records (2024-04)");
    }
}
