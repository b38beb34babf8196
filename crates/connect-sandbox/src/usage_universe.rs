//! The sandbox's vendor usage: which subscriptions are billable, and record `i` of a month
//! computed from `(month, i)` alone, so that any page or export file can be served at any
//! time without storing anything, the same on every run, up to millions of records. A share
//! of the records (`usage_bad_records`) is defective on purpose, and
//! `usage_uncovered_subscriptions` billable subscriptions get no record at all
//! ([`UsageUniverse::without_usage`] names them), so that coverage checks have something to
//! find. The usage API ([`crate::vendor_api`]) and the export files
//! ([`crate::vendor_exports`]) serve it.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::dataset::{Dataset, PREVIEW_CONTRACT_ID};
use crate::splitmix::mix;
use connect_client::models::Precision;
use connect_client::month::Month;
use connect_client::utc::parse_utc;

/// An asset usage can be reported for, with its product's PPU items.
#[derive(Debug, Clone)]
pub struct Billable {
    pub asset_id: String,
    pub external_uid: Option<String>,
    pub product: String,
    pub contract: String,
    /// `(mpn, precision)`
    pub items: Vec<(String, Precision)>,
    /// When the asset was created: no usage before.
    pub created: Option<chrono::DateTime<Utc>>,
}

/// What the generator draws from: every billable asset of the dataset, and assets that are
/// wrong to report against (for defective records).
#[derive(Debug, Clone, Default)]
pub struct UsageUniverse {
    pub billable: Vec<Billable>,
    /// Assets under a terminated contract, preview assets, assets of non-QT products.
    pub unbillable: Vec<String>,
}

impl UsageUniverse {
    /// Active (or suspended or terminating) assets of QT products under active distribution
    /// contracts, in dataset order.
    pub fn of(dataset: &Dataset) -> UsageUniverse {
        let active_contracts: Vec<&str> = dataset
            .contracts
            .iter()
            .filter(|c| c["type"] == "distribution" && c["status"] == "active")
            .filter_map(|c| c["id"].as_str())
            .collect();
        let mut u = UsageUniverse::default();
        for a in &dataset.assets {
            let id = a["id"].as_str().unwrap_or_default().to_owned();
            let product = a["product"]["id"].as_str().unwrap_or_default();
            let qt = dataset
                .products
                .iter()
                .any(|p| p["id"] == product && p["capabilities"]["ppu"]["schema"] == "QT");
            let items: Vec<(String, Precision)> = dataset
                .items
                .get(product)
                .into_iter()
                .flatten()
                .filter(|i| {
                    i["type"]
                        .as_str()
                        .is_some_and(|t| t.eq_ignore_ascii_case("ppu"))
                })
                .filter_map(|i| {
                    Some((
                        i["mpn"].as_str()?.to_owned(),
                        Precision::parse(i["precision"].as_str()?)?,
                    ))
                })
                .collect();
            let contract = a["contract"]["id"].as_str().unwrap_or(PREVIEW_CONTRACT_ID);
            let status_ok = matches!(
                a["status"].as_str(),
                Some("active" | "suspended" | "terminating")
            );
            if qt && status_ok && active_contracts.contains(&contract) && !items.is_empty() {
                u.billable.push(Billable {
                    asset_id: id,
                    external_uid: a["external_uid"].as_str().map(str::to_owned),
                    product: product.to_owned(),
                    contract: contract.to_owned(),
                    items,
                    created: a["events"]["created"]["at"].as_str().and_then(parse_utc),
                });
            } else if status_ok {
                u.unbillable.push(id);
            }
        }
        u
    }

    /// The assets that get usage in `period`: those that existed then, less the ones `spread`
    /// leaves without usage, and of the rest all or the first `spread.subscriptions`.
    pub fn month_of(&self, period: Month, spread: Spread) -> MonthUsage<'_> {
        let mut m = self.month(period);
        let left_out = spread.left_out(m.billable.len());
        if !left_out.is_empty() {
            let mut position = 0;
            m.billable.retain(|_| {
                position += 1;
                left_out.binary_search(&(position - 1)).is_err()
            });
        }
        if spread.subscriptions > 0 {
            m.billable.truncate(spread.subscriptions as usize);
        }
        m
    }

    /// The billable assets of `period` that no record names when the month has `records`
    /// records spread as `spread` says, in dataset order: the ones left out, those past
    /// `spread.subscriptions`, and those past the records (record `i` goes to the `i`-th
    /// subscription that gets usage, round and round).
    pub fn without_usage(&self, period: Month, spread: Spread, records: u64) -> Vec<&Billable> {
        let month = self.month_of(period, spread);
        let named = (records.min(month.billable.len() as u64)) as usize;
        let with_usage: std::collections::HashSet<&str> = month.billable[..named]
            .iter()
            .map(|b| b.asset_id.as_str())
            .collect();
        self.month(period)
            .billable
            .into_iter()
            .filter(|b| !with_usage.contains(b.asset_id.as_str()))
            .collect()
    }

    /// The assets that existed in `period`.
    pub fn month(&self, period: Month) -> MonthUsage<'_> {
        MonthUsage {
            universe: self,
            period,
            billable: self
                .billable
                .iter()
                .filter(|b| b.created.is_none_or(|c| c < period.end_exclusive()))
                .collect(),
            seed: period_seed(period),
            start: period.start(),
            days: ((period.last_day() - period.first_day()).num_days() + 1) as u64,
        }
    }

    /// Record `i` (0-based) of `period`, defective with probability `bad`.
    pub fn record(&self, period: Month, i: u64, bad: f64) -> Value {
        self.month(period).record(i, bad)
    }

    /// Makes a record defective in one of the ways a vendor's export goes wrong.
    fn spoil<'u>(&'u self, r: &mut Generated<'u>, h: u64) {
        match h % 8 {
            0 => r.subscription = Cow::Owned(format!("AS-0000-{:04}-0000", h % 10_000)),
            1 => r.quantity = format!("-{}", 1 + h % 50),
            2 => r.quantity = "1.123456789".into(),
            3 => r.item_mpn = "UNKNOWN-MPN",
            // Two days before the month.
            4 => r.start = -2 * DAY,
            5 if !self.unbillable.is_empty() => {
                let i = (h / 8) as usize % self.unbillable.len();
                r.subscription = Cow::Borrowed(&self.unbillable[i]);
            }
            6 => r.quantity = "lots".into(),
            _ => r.record_number = 1,
        }
    }
}

/// Whether the vendor can have usage for `period` yet: a month that has not begun has none.
pub fn has_begun(period: Month) -> bool {
    period.start() <= Utc::now()
}

/// How many records the vendor has for `period` when the sandbox is set to `configured` a
/// month: none before the month begins.
pub fn records_in(period: Month, configured: u64) -> u64 {
    if has_begun(period) { configured } else { 0 }
}

/// How the generated usage is spread over a month's billable subscriptions (the
/// `usage_subscriptions` and `usage_uncovered_subscriptions` settings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spread {
    /// Only the first this many subscriptions get usage (0: all of them).
    pub subscriptions: u64,
    /// This many subscriptions, evenly spread over the month's billable ones (so over several
    /// contracts and products), get none; at most all but one.
    pub uncovered: u64,
}

impl Spread {
    /// The spread the sandbox's settings ask for.
    pub fn of(config: &super::server::RuntimeConfig) -> Spread {
        Spread {
            subscriptions: config.usage_subscriptions,
            uncovered: config.usage_uncovered_subscriptions,
        }
    }

    /// The positions, among `billable` subscriptions, of those left without usage, ascending:
    /// `floor(k * billable / n)` for the `n` asked for, distinct since `n < billable`.
    pub fn left_out(&self, billable: usize) -> Vec<usize> {
        let n = (self.uncovered as usize).min(billable.saturating_sub(1));
        (0..n).map(|k| k * billable / n).collect()
    }
}

/// A record's values before they are written: as JSON text straight into a page
/// ([`MonthUsage::write_record`]), or as a [`Value`] ([`MonthUsage::record`]).
#[derive(Debug)]
struct Generated<'u> {
    /// The number in `record_id`: `i + 1`, unless spoiled.
    record_number: u64,
    subscription: Cow<'u, str>,
    item_mpn: &'u str,
    quantity: String,
    /// Seconds from the start of the month.
    start: i64,
    end: i64,
    note: Option<Note>,
}

/// Seconds in a day.
const DAY: i64 = 86_400;

/// The notes some records carry.
#[derive(Debug, Clone, Copy)]
enum Note {
    /// One that looks like a formula, to keep writers honest about text cells.
    Formula,
    Batch(u64),
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Formula => f.write_str("=SUM(A1:A9) adjustment"),
            Note::Batch(n) => write!(f, "Batch job {n}"),
        }
    }
}

/// The usage of one month.
#[derive(Debug)]
pub struct MonthUsage<'u> {
    universe: &'u UsageUniverse,
    period: Month,
    billable: Vec<&'u Billable>,
    seed: u64,
    start: DateTime<Utc>,
    /// Days in the month.
    days: u64,
}

impl<'u> MonthUsage<'u> {
    /// The subscriptions that get usage this month, in the order records go round them.
    pub fn billable(&self) -> &[&'u Billable] {
        &self.billable
    }

    /// Record `i` (0-based), defective with probability `bad`.
    pub fn record(&self, i: u64, bad: f64) -> Value {
        let Some(g) = self.generate(i, bad) else {
            return json!({});
        };
        let mut r = json!({
            "record_id": self.record_id(g.record_number),
            "subscription_id": g.subscription,
            "item_mpn": g.item_mpn,
            "quantity": g.quantity,
            "start_time": self.at(g.start).format(TIME_FORMAT).to_string(),
            "end_time": self.at(g.end).format(TIME_FORMAT).to_string(),
        });
        if let Some(note) = g.note {
            r["note"] = json!(note.to_string());
        }
        r
    }

    /// Record `i` (0-based), defective with probability `bad`, with typed times: what the
    /// export command writes to a table or a columnar file.
    pub fn exported(&self, i: u64, bad: f64) -> Option<ExportedRecord> {
        let g = self.generate(i, bad)?;
        Some(ExportedRecord {
            record_id: self.record_id(g.record_number),
            subscription_id: g.subscription.into_owned(),
            item_mpn: g.item_mpn.to_owned(),
            quantity: g.quantity,
            start_time: self.at(g.start),
            end_time: self.at(g.end),
            note: g.note.map(|n| n.to_string()),
        })
    }

    /// Writes record `i` (0-based), defective with probability `bad`, as the JSON text that
    /// [`MonthUsage::record`] serializes to, byte for byte, without building the [`Value`].
    pub fn write_record(&self, i: u64, bad: f64, out: &mut String) {
        let Some(g) = self.generate(i, bad) else {
            out.push_str("{}");
            return;
        };
        out.push_str("{\"record_id\":\"SKY-");
        push_number(out, self.period.year() as u64, 0);
        push_number(out, self.period.month().into(), 2);
        out.push('-');
        push_number(out, g.record_number, 8);
        out.push_str("\",\"subscription_id\":");
        push_json_str(out, &g.subscription);
        out.push_str(",\"item_mpn\":");
        push_json_str(out, g.item_mpn);
        out.push_str(",\"quantity\":");
        push_json_str(out, &g.quantity);
        out.push_str(",\"start_time\":\"");
        self.push_time(out, g.start);
        out.push_str("\",\"end_time\":\"");
        self.push_time(out, g.end);
        out.push('"');
        match g.note {
            Some(Note::Formula) => out.push_str(",\"note\":\"=SUM(A1:A9) adjustment\""),
            Some(Note::Batch(n)) => {
                out.push_str(",\"note\":\"Batch job ");
                push_number(out, n, 0);
                out.push('"');
            }
            None => {}
        }
        out.push('}');
    }

    /// The instant `offset` seconds from the start of the month.
    fn at(&self, offset: i64) -> DateTime<Utc> {
        self.start + Duration::seconds(offset)
    }

    /// The instant `offset` seconds from the start of the month as [`TIME_FORMAT`] writes it.
    /// Inside the month, the digits are written directly: chrono interpreting the format and
    /// computing the date for every time was most of the time of making a page.
    fn push_time(&self, out: &mut String, offset: i64) {
        if !(0..self.days as i64 * DAY).contains(&offset) {
            let _ = write!(out, "{}", self.at(offset).format(TIME_FORMAT));
            return;
        }
        let (day, second) = (offset / DAY, offset % DAY);
        push_number(out, self.period.year() as u64, 4);
        out.push('-');
        push_number(out, self.period.month().into(), 2);
        out.push('-');
        push_number(out, day as u64 + 1, 2);
        out.push('T');
        push_number(out, (second / 3600) as u64, 2);
        out.push(':');
        push_number(out, (second % 3600 / 60) as u64, 2);
        out.push(':');
        push_number(out, (second % 60) as u64, 2);
        out.push('Z');
    }

    fn record_id(&self, number: u64) -> String {
        format!(
            "SKY-{}{:02}-{:08}",
            self.period.year(),
            self.period.month(),
            number
        )
    }

    /// The values of record `i`; none when no asset can have usage in the month.
    fn generate(&self, i: u64, bad: f64) -> Option<Generated<'u>> {
        if self.billable.is_empty() {
            return None;
        }
        let h = mix(self.seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let b = self.billable[(i % self.billable.len() as u64) as usize];
        let (mpn, precision) = &b.items[(h % b.items.len() as u64) as usize];
        let quantity = quantity_for(*precision, mix(h ^ 0x51));
        let start = (mix(h ^ 0x52) % self.days) as i64 * DAY + (mix(h ^ 0x53) % 43_200) as i64;
        // Not after the month's last second.
        let end = (start + 3600 + (mix(h ^ 0x54) % 36_000) as i64).min(self.days as i64 * DAY - 1);
        let subscription = match (&b.external_uid, i % 5) {
            (Some(uid), 4) => uid.as_str(),
            _ => b.asset_id.as_str(),
        };
        let note = if i % 97 == 13 {
            Some(Note::Formula)
        } else if i.is_multiple_of(11) {
            Some(Note::Batch(mix(h ^ 0x55) % 10_000))
        } else {
            None
        };
        let mut g = Generated {
            record_number: i + 1,
            subscription: Cow::Borrowed(subscription),
            item_mpn: mpn,
            quantity,
            start,
            end,
            note,
        };
        if bad > 0.0 && (mix(h ^ 0x56) % 1_000_000) as f64 / 1_000_000.0 < bad {
            self.universe.spoil(&mut g, mix(h ^ 0x57));
        }
        Some(g)
    }
}

/// A record of the sandbox's usage with typed times, as the export command writes it: the
/// same values the usage API serves as JSON ([`MonthUsage::record`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedRecord {
    pub record_id: String,
    pub subscription_id: String,
    pub item_mpn: String,
    /// Exact decimal text; not a number only in a record defective on purpose.
    pub quantity: String,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub note: Option<String>,
}

/// How record times are written.
const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// `n` in decimal, with leading zeros up to `width` digits (as `{n:0width$}` writes it).
fn push_number(out: &mut String, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut from = digits.len();
    loop {
        from -= 1;
        digits[from] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    from = from.min(digits.len().saturating_sub(width));
    for d in &digits[from..] {
        out.push(char::from(*d));
    }
}

/// A JSON string as serde_json writes it.
fn push_json_str(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        let _ = write!(out, "{}", Value::from(s));
    }
}

fn period_seed(p: Month) -> u64 {
    mix((p.year() as u64) << 8 | u64::from(p.month()))
}

/// A quantity with exactly the precision the item allows at most.
fn quantity_for(p: Precision, h: u64) -> String {
    match p {
        Precision::Integer => (1 + h % 500).to_string(),
        Precision::Decimal(n) => {
            let scale = 10u64.pow(u32::from(n));
            let units = 1 + h % (500 * scale);
            let whole = units / scale;
            let frac = units % scale;
            let mut s = format!("{whole}.{frac:0width$}", width = n as usize);
            while s.ends_with('0') {
                s.pop();
            }
            if s.ends_with('.') {
                s.pop();
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendor_api::page_body;

    /// The digits after the point of a plain non-negative decimal number (`12`, `0.125`),
    /// none for any other text: the quantities a usage source reads.
    fn decimals_of(text: &str) -> Option<usize> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        (digits(whole) && digits(fraction))
            .then(|| text.split_once('.').map_or(0, |(_, f)| f.len()))
    }

    #[test]
    fn records_are_deterministic_and_within_their_month() {
        let u = UsageUniverse::of(&Dataset::default_account());
        assert!(u.billable.len() > 50, "{}", u.billable.len());
        assert!(!u.unbillable.is_empty());
        let p: Month = "2024-02".parse().expect("period");
        for i in 0..2000 {
            let r = u.record(p, i, 0.0);
            assert_eq!(r, u.record(p, i, 0.0));
            let start = parse_utc(r["start_time"].as_str().expect("start")).expect("time");
            let end = parse_utc(r["end_time"].as_str().expect("end")).expect("time");
            assert!(p.contains(start) && p.contains(end) && start <= end, "{r}");
            let decimals = decimals_of(r["quantity"].as_str().expect("q"));
            assert!(decimals.is_some_and(|d| d <= 8), "{r}");
        }
        assert_ne!(
            u.record(p, 1, 0.0),
            u.record("2024-03".parse::<Month>().expect("p"), 1, 0.0)
        );
        // Concentrated on one subscription.
        let one = u.month_of(
            p,
            Spread {
                subscriptions: 1,
                uncovered: 0,
            },
        );
        let subs: std::collections::HashSet<String> = (0..50)
            .map(|i| {
                one.record(i, 0.0)["subscription_id"]
                    .as_str()
                    .expect("s")
                    .to_owned()
            })
            .collect();
        assert!(subs.len() <= 2, "an asset id or its external uid: {subs:?}");
        assert_eq!(
            one.record(7, 0.0)["record_id"],
            u.record(p, 7, 0.0)["record_id"]
        );
    }

    #[test]
    fn quantities_respect_precision() {
        for (p, max_decimals) in [
            (Precision::Integer, 0),
            (Precision::Decimal(1), 1),
            (Precision::Decimal(2), 2),
            (Precision::Decimal(8), 8),
        ] {
            for h in 0..500 {
                let q = quantity_for(p, mix(h));
                assert!(
                    decimals_of(&q).is_some_and(|d| d <= max_decimals),
                    "{p} {q}"
                );
            }
        }
    }

    /// Record `i` as the generator made it before records were written as text: every
    /// record must stay the same, byte for byte.
    fn reference_record(u: &UsageUniverse, period: Month, i: u64, bad: f64) -> Value {
        fn spoil(u: &UsageUniverse, r: &mut Value, h: u64, period: Month) {
            match h % 8 {
                0 => r["subscription_id"] = json!(format!("AS-0000-{:04}-0000", h % 10_000)),
                1 => r["quantity"] = json!(format!("-{}", 1 + h % 50)),
                2 => r["quantity"] = json!("1.123456789"),
                3 => r["item_mpn"] = json!("UNKNOWN-MPN"),
                4 => {
                    let before = period.start() - Duration::days(2);
                    r["start_time"] = json!(before.format("%Y-%m-%dT%H:%M:%SZ").to_string());
                }
                5 if !u.unbillable.is_empty() => {
                    let i = (h / 8) as usize % u.unbillable.len();
                    r["subscription_id"] = json!(u.unbillable[i]);
                }
                6 => r["quantity"] = json!("lots"),
                _ => {
                    r["record_id"] = json!(format!(
                        "SKY-{}{:02}-{:08}",
                        period.year(),
                        period.month(),
                        1
                    ))
                }
            }
        }
        let billable: Vec<&Billable> = u
            .billable
            .iter()
            .filter(|b| b.created.is_none_or(|c| c < period.end_exclusive()))
            .collect();
        if billable.is_empty() {
            return json!({});
        }
        let h = mix(period_seed(period) ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let b = billable[(i % billable.len() as u64) as usize];
        let (mpn, precision) = &b.items[(h % b.items.len() as u64) as usize];
        let quantity = quantity_for(*precision, mix(h ^ 0x51));
        let days = (period.last_day() - period.first_day()).num_days() + 1;
        let start = period.start()
            + Duration::days((mix(h ^ 0x52) % days as u64) as i64)
            + Duration::seconds((mix(h ^ 0x53) % 43_200) as i64);
        let end = (start + Duration::seconds(3600 + (mix(h ^ 0x54) % 36_000) as i64))
            .min(period.last_second());
        let subscription = match (&b.external_uid, i % 5) {
            (Some(uid), 4) => uid.clone(),
            _ => b.asset_id.clone(),
        };
        let mut r = json!({
            "record_id": format!("SKY-{}{:02}-{:08}", period.year(), period.month(), i + 1),
            "subscription_id": subscription,
            "item_mpn": mpn,
            "quantity": quantity,
            "start_time": start.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "end_time": end.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        });
        if i % 97 == 13 {
            r["note"] = json!("=SUM(A1:A9) adjustment");
        } else if i.is_multiple_of(11) {
            r["note"] = json!(format!("Batch job {}", mix(h ^ 0x55) % 10_000));
        }
        if bad > 0.0 && (mix(h ^ 0x56) % 1_000_000) as f64 / 1_000_000.0 < bad {
            spoil(u, &mut r, mix(h ^ 0x57), period);
        }
        r
    }

    #[test]
    fn records_written_as_text_are_the_records_of_before_byte_for_byte() {
        let full = UsageUniverse::of(&Dataset::default_account());
        // Without unbillable assets, the spoil that would use one changes the record id.
        let no_unbillable = UsageUniverse {
            unbillable: Vec::new(),
            ..full.clone()
        };
        // An asset id that JSON must escape.
        let mut odd = full.clone();
        odd.billable[0].asset_id = "AS-\"1\"\\\u{1}\u{7f}é".into();
        odd.billable[1].external_uid = Some("uid\n\t2".into());
        for u in [&full, &no_unbillable, &odd, &UsageUniverse::default()] {
            for period in ["2024-04", "2024-02", "2023-12", "0001-01", "9999-12"] {
                let period: Month = period.parse().expect("period");
                let month = u.month(period);
                for bad in [0.0, 0.3, 1.0] {
                    for i in (0..1200).chain([u64::MAX / 3, 99_999_999, 100_000_000]) {
                        let want = reference_record(u, period, i, bad);
                        let mut text = String::new();
                        month.write_record(i, bad, &mut text);
                        assert_eq!(
                            text,
                            serde_json::to_string(&want).expect("json"),
                            "{period} {i} {bad}"
                        );
                        assert_eq!(month.record(i, bad), want, "{period} {i} {bad}");
                    }
                }
            }
        }
    }

    #[test]
    fn pages_are_written_as_serde_json_writes_them() {
        let u = UsageUniverse::of(&Dataset::default_account());
        let p: Month = "2024-04".parse().expect("period");
        let month = u.month(p);
        for (range, next) in [
            (0..0, None),
            (0..1, Some(1)),
            (5..17, Some(17)),
            (40..47, None),
        ] {
            let records: Vec<Value> = range
                .clone()
                .map(|i| reference_record(&u, p, i, 0.2))
                .collect();
            let want = json!({"records": records, "next_cursor": next.map(|n: u64| n.to_string())});
            assert_eq!(
                page_body(&month, range, 0.2, next),
                serde_json::to_string(&want).expect("json")
            );
        }
    }

    #[test]
    fn a_share_of_records_is_spoiled() {
        let u = UsageUniverse::of(&Dataset::default_account());
        let p: Month = "2024-04".parse().expect("period");
        let spoiled = (0..4000)
            .filter(|i| u.record(p, *i, 0.1) != u.record(p, *i, 0.0))
            .count();
        assert!((250..550).contains(&spoiled), "{spoiled}");
    }

    #[test]
    fn left_out_positions_are_spread_distinct_and_leave_one() {
        let spread = |uncovered| Spread {
            subscriptions: 0,
            uncovered,
        };
        assert_eq!(spread(0).left_out(10), Vec::<usize>::new());
        assert_eq!(spread(3).left_out(10), [0, 3, 6]);
        assert_eq!(spread(9).left_out(10).len(), 9);
        // Never every subscription: a month keeps one with usage.
        assert_eq!(spread(50).left_out(10), (0..9).collect::<Vec<_>>());
        assert_eq!(spread(5).left_out(0), Vec::<usize>::new());
    }

    #[test]
    fn subscriptions_left_out_get_no_record_and_are_named() {
        let u = UsageUniverse::of(&Dataset::default_account());
        let p: Month = "2024-04".parse().expect("period");
        let all = u.month(p).billable.len() as u64;
        let spread = Spread {
            subscriptions: 0,
            uncovered: 4,
        };
        let records = 3 * all;
        let missing: Vec<&str> = u
            .without_usage(p, spread, records)
            .iter()
            .map(|b| b.asset_id.as_str())
            .collect();
        assert_eq!(missing.len(), 4, "{missing:?}");
        let month = u.month_of(p, spread);
        let named: std::collections::HashSet<String> = (0..records)
            .map(|i| {
                month.record(i, 0.0)["subscription_id"]
                    .as_str()
                    .expect("s")
                    .to_owned()
            })
            .collect();
        for b in &u.month(p).billable {
            let has_usage = named.contains(&b.asset_id)
                || b.external_uid.as_ref().is_some_and(|x| named.contains(x));
            assert_eq!(
                has_usage,
                !missing.contains(&b.asset_id.as_str()),
                "{}",
                b.asset_id
            );
        }
        // Fewer records than subscriptions leave the rest without usage too.
        assert_eq!(
            u.without_usage(p, Spread::default(), all - 2).len(),
            2,
            "the last two"
        );
        assert!(u.without_usage(p, Spread::default(), all).is_empty());
    }
}
