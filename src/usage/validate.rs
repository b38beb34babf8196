//! The checks every record passes before anything is written, and where it belongs.
//!
//! A record is *unplaceable* when no usage file can take it: its subscription is unknown, not
//! under an active distribution contract, or was not active in the month. It is *invalid*
//! when its file is known but the record is wrong: an item that is not a pay-as-you-go item of
//! the asset's product, a negative quantity or one with more decimals than the item's
//! precision, times out of order or outside the month. Either way the reason says what and
//! which value.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::aggregate::SUM_DECIMALS;

use super::catalog::{Catalog, PREVIEW_CONTRACT};
use connect_client::models::{Asset, AssetStatus, Precision};
use connect_client::month::Month;

/// Why a record is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// No usage file can take it.
    Unplaceable,
    /// Its usage file is known, the record is wrong.
    Invalid,
}

/// A record's problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    pub reason: String,
}

impl Problem {
    fn unplaceable(reason: String) -> Problem {
        Problem {
            kind: ProblemKind::Unplaceable,
            reason,
        }
    }
}

/// Where a valid record goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement<'c> {
    pub contract: &'c str,
    pub product: &'c str,
    pub asset_id: &'c str,
    /// False for products whose PPU schema is not QT: reported, not sent.
    pub qt: bool,
    /// Decimal places the item allows.
    pub precision: u8,
}

/// The fields of a record the checks read.
#[derive(Debug, Clone, Copy)]
pub struct Checked<'r> {
    pub subscription: &'r str,
    pub item_mpn: &'r str,
    /// Normalised decimal text ([`Quantity`](crate::usage::record::Quantity)).
    pub quantity: &'r str,
    /// Unix seconds, UTC.
    pub start: i64,
    pub end: i64,
    pub record_id: Option<&'r str>,
    pub note: Option<&'r str>,
    pub category: Option<&'r str>,
}

/// The most characters (UTF-16 units) a spreadsheet cell holds.
pub const MAX_CELL_CHARS: usize = 32_767;

/// How records are checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rules {
    /// Records are summed before they are reported: the item's precision is checked on the
    /// sum, not here (a record needs no more than [`SUM_DECIMALS`] places).
    pub aggregated: bool,
}

/// Digits after the decimal point of a normalised decimal.
fn decimals(quantity: &str) -> u32 {
    quantity.split_once('.').map_or(0, |(_, f)| f.len() as u32)
}

fn time_text(secs: i64) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| secs.to_string())
}

/// Places records, working out what the catalog says of each subscription and item once: a
/// month has millions of records and a few thousand such pairs.
#[derive(Debug)]
pub struct Placer<'c> {
    catalog: &'c Catalog,
    period: Month,
    rules: Rules,
    /// By subscription, then item: the pair's resolution when the subscription names one
    /// asset; `None` when it names several (each record decides, see [`place`]).
    resolved: HashMap<String, HashMap<String, Option<Result<Resolved<'c>, Problem>>>>,
}

impl<'c> Placer<'c> {
    pub fn new(catalog: &'c Catalog, period: Month, rules: Rules) -> Placer<'c> {
        Placer {
            catalog,
            period,
            rules,
            resolved: HashMap::new(),
        }
    }

    /// The same as [`place`].
    pub fn place(&mut self, r: Checked<'_>) -> Result<Placement<'c>, Problem> {
        let (catalog, period, rules) = (self.catalog, self.period, self.rules);
        let by_item = match self.resolved.get_mut(r.subscription) {
            Some(m) => m,
            None => self.resolved.entry(r.subscription.to_owned()).or_default(),
        };
        let cached = match by_item.get(r.item_mpn) {
            Some(c) => c,
            None => {
                let candidates = catalog.assets_for(r.subscription);
                let resolution = match candidates.as_slice() {
                    [] => Some(Err(unknown(r.subscription))),
                    [one] => Some(resolve_on(one, r.item_mpn, catalog, period)),
                    _ => None,
                };
                by_item.entry(r.item_mpn.to_owned()).or_insert(resolution)
            }
        };
        match cached {
            Some(Ok(resolved)) => check(r, resolved, period, rules),
            Some(Err(problem)) => Err(problem.clone()),
            None => place(r, catalog, period, rules),
        }
    }
}

fn unknown(subscription: &str) -> Problem {
    Problem::unplaceable(format!(
        "subscription {subscription:?} is not an asset id or external_uid of this account"
    ))
}

/// Places a record, or says why it cannot be sent. A subscription given by `external_uid`
/// may name several assets: the one the record can be placed on wins; two or more is an
/// ambiguity for a person.
pub fn place<'c>(
    r: Checked<'_>,
    catalog: &'c Catalog,
    period: Month,
    rules: Rules,
) -> Result<Placement<'c>, Problem> {
    let candidates = catalog.assets_for(r.subscription);
    let first = candidates.first().ok_or_else(|| unknown(r.subscription))?;
    if candidates.len() == 1 {
        return place_on(r, first, catalog, period, rules);
    }
    let fits: Vec<Result<Placement<'c>, Problem>> = candidates
        .iter()
        .map(|a| place_on(r, a, catalog, period, rules))
        .collect();
    let placed: Vec<&Placement<'c>> = fits.iter().filter_map(|f| f.as_ref().ok()).collect();
    match placed.as_slice() {
        [one] => Ok((*one).clone()),
        [] => fits
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(Problem::unplaceable("no asset".into()))),
        many => Err(Problem::unplaceable(format!(
            "external_uid {:?} names {} assets that could take the record ({}); use the asset id",
            r.subscription,
            many.len(),
            many.iter()
                .map(|p| p.asset_id)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn place_on<'c>(
    r: Checked<'_>,
    asset: &'c Asset,
    catalog: &'c Catalog,
    period: Month,
    rules: Rules,
) -> Result<Placement<'c>, Problem> {
    check(
        r,
        &resolve_on(asset, r.item_mpn, catalog, period)?,
        period,
        rules,
    )
}

/// Why `asset` was not active in `period`, or `None` when it was: the one notion of "active in
/// the month" that both placing records and the coverage check use, so a subscription is
/// expected to have usage exactly when its records would be accepted.
pub fn inactive_in(asset: &Asset, period: Month) -> Option<String> {
    let created = asset
        .events
        .as_ref()
        .and_then(|e| e.created.as_ref())
        .map(|e| e.at.with_timezone(&Utc));
    let updated = asset
        .events
        .as_ref()
        .and_then(|e| e.updated.as_ref())
        .map(|e| e.at.with_timezone(&Utc));
    match &asset.status {
        AssetStatus::Draft | AssetStatus::Processing => {
            return Some(format!(
                "asset {} is {}: it was not active in {period}",
                asset.id, asset.status
            ));
        }
        // Connect stamps the termination as the asset's last update.
        AssetStatus::Terminated if updated.is_some_and(|u| u < period.start()) => {
            return Some(format!(
                "asset {} was terminated on {} before {period}",
                asset.id,
                updated
                    .map(|u| u.format("%Y-%m-%d").to_string())
                    .unwrap_or_default()
            ));
        }
        _ => {}
    }
    if created.is_some_and(|c| c >= period.end_exclusive()) {
        return Some(format!("asset {} was created after {period}", asset.id));
    }
    None
}

/// How a record's item fits the asset's product.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ItemFit {
    /// A pay-as-you-go item (or a reservation item of a product that reports its consumption).
    Fits(Precision),
    /// Why not: the reason, already worded.
    Not(String),
}

/// What the catalog says of a subscription and an item, whatever the record: where its records
/// go and how its item fits. The same for every record of the pair, so a run works it out once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved<'c> {
    placement: Placement<'c>,
    /// `None` for products that are not QT: their records are not checked further.
    item: Option<ItemFit>,
}

fn resolve_on<'c>(
    asset: &'c Asset,
    item_mpn: &str,
    catalog: &'c Catalog,
    period: Month,
) -> Result<Resolved<'c>, Problem> {
    let contract = asset
        .contract
        .as_ref()
        .map(|c| c.id.as_str())
        .unwrap_or(PREVIEW_CONTRACT);
    if contract == PREVIEW_CONTRACT {
        return Err(Problem::unplaceable(format!(
            "asset {} is a preview subscription; it has no distribution contract",
            asset.id
        )));
    }
    let Some((contract, _)) = catalog.contracts.get_key_value(contract) else {
        return Err(Problem::unplaceable(format!(
            "asset {} belongs to contract {contract}, which is not an active distribution contract",
            asset.id
        )));
    };
    if let Some(reason) = inactive_in(asset, period) {
        return Err(Problem::unplaceable(reason));
    }
    let product_id = asset.product.id.as_str();
    let Some((product_key, product)) = catalog.products.get_key_value(product_id) else {
        return Err(Problem::unplaceable(format!(
            "product {product_id} of asset {} is not visible to this account",
            asset.id
        )));
    };
    let placement = Placement {
        contract,
        product: product_key,
        asset_id: &asset.id,
        qt: product.is_qt(),
        precision: 0,
    };
    if !placement.qt {
        // Not checked further: it will not be sent, and says so as a group.
        return Ok(Resolved {
            placement,
            item: None,
        });
    }
    let items = catalog
        .items
        .get(product_id)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let item = match items.iter().find(|i| i.mpn.as_deref() == Some(item_mpn)) {
        None => ItemFit::Not(format!(
            "item_mpn: {item_mpn:?} is not an item of product {product_id}"
        )),
        Some(item) => {
            // Reservation items report usage only where the product says so.
            let consumption = product
                .capabilities
                .reservation
                .as_ref()
                .is_some_and(|r| r.consumption);
            if !item.is_ppu() && !consumption {
                ItemFit::Not(format!(
                    "item_mpn: {item_mpn:?} is a {} item of product {product_id}, not pay-as-you-go",
                    item.item_type.as_deref().unwrap_or("non-PPU")
                ))
            } else {
                ItemFit::Fits(item.precision().unwrap_or(Precision::Integer))
            }
        }
    };
    Ok(Resolved {
        placement,
        item: Some(item),
    })
}

/// The checks of the record itself, where the catalog put it.
fn check<'c>(
    r: Checked<'_>,
    resolved: &Resolved<'c>,
    period: Month,
    rules: Rules,
) -> Result<Placement<'c>, Problem> {
    let mut placement = resolved.placement.clone();
    let Some(item) = &resolved.item else {
        return Ok(placement);
    };
    let mut reasons = Vec::new();
    match item {
        ItemFit::Not(reason) => reasons.push(reason.clone()),
        ItemFit::Fits(precision) => {
            placement.precision = precision.places().min(SUM_DECIMALS) as u8;
            if rules.aggregated {
                if decimals(r.quantity) > SUM_DECIMALS {
                    reasons.push(format!(
                        "quantity: {} has more than {SUM_DECIMALS} decimals, more than any item allows",
                        r.quantity
                    ));
                }
            } else if !r.quantity.starts_with('-') && decimals(r.quantity) > precision.places() {
                reasons.push(format!(
                    "quantity: {} has more decimals than item {} ({precision}) allows",
                    r.quantity, r.item_mpn
                ));
            }
        }
    }
    if r.quantity.starts_with('-') {
        reasons.push(format!("quantity: {} is negative", r.quantity));
    }
    if r.start > r.end {
        reasons.push(format!(
            "start_time {} is after end_time {}",
            time_text(r.start),
            time_text(r.end)
        ));
    }
    let (first, after) = (
        period.start().timestamp(),
        period.end_exclusive().timestamp(),
    );
    for (name, at) in [("start_time", r.start), ("end_time", r.end)] {
        if !(first..after).contains(&at) {
            reasons.push(format!("{name}: {} is outside {period}", time_text(at)));
        }
    }
    for (name, text) in [
        ("record_id", r.record_id),
        ("note", r.note),
        ("category", r.category),
    ] {
        // Counted as a spreadsheet counts them: in UTF-16 units (an emoji takes two).
        let chars = text.map_or(0, |t| t.encode_utf16().count());
        if chars > MAX_CELL_CHARS {
            reasons.push(format!(
                "{name}: {chars} characters; a workbook cell holds at most {MAX_CELL_CHARS}"
            ));
        }
    }
    if reasons.is_empty() {
        Ok(placement)
    } else {
        Err(Problem {
            kind: ProblemKind::Invalid,
            reason: reasons.join("; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::record::Quantity;
    use connect_client::models::{Asset, Contract, Item, Product};
    use serde_json::json;

    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        let contract: Contract = serde_json::from_value(json!({
            "id": "CRD-1", "type": "distribution", "status": "active", "marketplace": {"id": "MP-1"}
        }))
        .expect("contract");
        c.contracts.insert("CRD-1".into(), contract);
        for (id, status, contract, product, updated) in [
            (
                "AS-0001-0000-0001",
                "active",
                "CRD-1",
                "PRD-QT",
                "2024-01-01T00:00:00+00:00",
            ),
            (
                "AS-0001-0000-0002",
                "terminated",
                "CRD-1",
                "PRD-QT",
                "2024-03-10T00:00:00+00:00",
            ),
            (
                "AS-0001-0000-0003",
                "terminated",
                "CRD-1",
                "PRD-QT",
                "2024-04-10T00:00:00+00:00",
            ),
            (
                "AS-0001-0000-0004",
                "active",
                "CRD-OLD",
                "PRD-QT",
                "2024-01-01T00:00:00+00:00",
            ),
            (
                "AS-0001-0000-0005",
                "active",
                "CRD-00000-00000-00000",
                "PRD-QT",
                "2024-01-01T00:00:00+00:00",
            ),
            (
                "AS-0001-0000-0006",
                "processing",
                "CRD-1",
                "PRD-QT",
                "2024-01-01T00:00:00+00:00",
            ),
            (
                "AS-0001-0000-0007",
                "active",
                "CRD-1",
                "PRD-TR",
                "2024-01-01T00:00:00+00:00",
            ),
        ] {
            let a: Asset = serde_json::from_value(json!({
                "id": id, "status": status, "external_uid": format!("uid-{id}"),
                "product": {"id": product}, "contract": {"id": contract},
                "events": {"created": {"at": "2023-01-01T00:00:00+00:00"}, "updated": {"at": updated}}
            }))
            .expect("asset");
            c.assets_by_uid
                .entry(format!("uid-{id}"))
                .or_default()
                .push(id.into());
            c.assets.insert(id.into(), a);
        }
        for (id, schema) in [("PRD-QT", "QT"), ("PRD-TR", "TR")] {
            let p: Product = serde_json::from_value(json!({
                "id": id, "capabilities": {"ppu": {"schema": schema}}
            }))
            .expect("product");
            c.products.insert(id.into(), p);
        }
        let items: Vec<Item> = serde_json::from_value(json!([
            {"id": "I1", "mpn": "INT", "type": "ppu", "precision": "integer"},
            {"id": "I2", "mpn": "DEC2", "type": "PPU", "precision": "Decimal(2)"},
            {"id": "I3", "mpn": "SEATS", "type": "reservation", "precision": "integer"},
        ]))
        .expect("items");
        c.items.insert("PRD-QT".into(), items);
        c
    }

    fn check(sub: &str, mpn: &str, q: &str, start: &str, end: &str) -> Result<String, Problem> {
        let c = catalog();
        let quantity = Quantity::parse(q).expect("quantity");
        let at = |s: &str| {
            crate::usage::record::parse_utc(s)
                .expect("time")
                .timestamp()
        };
        let period: Month = "2024-04".parse().expect("period");
        place(
            Checked {
                subscription: sub,
                item_mpn: mpn,
                quantity: quantity.as_str(),
                start: at(start),
                end: at(end),
                record_id: None,
                note: None,
                category: None,
            },
            &c,
            period,
            Rules::default(),
        )
        .map(|p| format!("{} {} {} {}", p.contract, p.product, p.asset_id, p.qt))
    }

    const S: &str = "2024-04-01T00:00:00Z";
    const E: &str = "2024-04-30T23:59:59Z";

    fn april() -> Month {
        "2024-04".parse().expect("period")
    }

    /// A record of April with nothing but a subscription, an item and a quantity.
    fn record<'a>(subscription: &'a str, item_mpn: &'a str, quantity: &'a Quantity) -> Checked<'a> {
        let at = |s: &str| {
            crate::usage::record::parse_utc(s)
                .expect("time")
                .timestamp()
        };
        Checked {
            subscription,
            item_mpn,
            quantity: quantity.as_str(),
            start: at(S),
            end: at(E),
            record_id: None,
            note: None,
            category: None,
        }
    }

    #[test]
    fn texts_are_measured_as_a_spreadsheet_measures_them() {
        let q = Quantity::parse("1").expect("quantity");
        let c = catalog();
        let fits = "é".repeat(MAX_CELL_CHARS);
        let emoji = "🚀".repeat(MAX_CELL_CHARS / 2 + 1);
        let with_note = |note: &str| {
            let r = Checked {
                note: Some(note),
                ..record("AS-0001-0000-0001", "INT", &q)
            };
            place(r, &c, april(), Rules::default()).map(|_| ())
        };
        assert_eq!(with_note(&fits), Ok(()), "one UTF-16 unit a character");
        let refused = with_note(&emoji).expect_err("two units an emoji");
        assert_eq!(
            refused.reason,
            "note: 32768 characters; a workbook cell holds at most 32767"
        );
    }

    #[test]
    fn good_records_are_placed_by_id_or_uid() {
        assert_eq!(
            check("AS-0001-0000-0001", "INT", "3", S, E),
            Ok("CRD-1 PRD-QT AS-0001-0000-0001 true".into())
        );
        assert_eq!(
            check("uid-AS-0001-0000-0001", "DEC2", "0.25", S, E),
            Ok("CRD-1 PRD-QT AS-0001-0000-0001 true".into())
        );
        // Terminated during the month: its usage up to then is due.
        assert!(check("AS-0001-0000-0003", "INT", "1", S, E).is_ok());
        // A TR product is placed but marked not QT.
        assert_eq!(
            check("AS-0001-0000-0007", "ANY", "1", S, E),
            Ok("CRD-1 PRD-TR AS-0001-0000-0007 false".into())
        );
    }

    #[test]
    fn unplaceable_records_say_why() {
        for (sub, want) in [
            ("AS-9999-9999-9999", "is not an asset id or external_uid"),
            (
                "AS-0001-0000-0002",
                "was terminated on 2024-03-10 before 2024-04",
            ),
            (
                "AS-0001-0000-0004",
                "contract CRD-OLD, which is not an active distribution contract",
            ),
            ("AS-0001-0000-0005", "is a preview subscription"),
            (
                "AS-0001-0000-0006",
                "is processing: it was not active in 2024-04",
            ),
        ] {
            let p = check(sub, "INT", "1", S, E).expect_err(sub);
            assert_eq!(p.kind, ProblemKind::Unplaceable, "{sub}");
            assert!(p.reason.contains(want), "{sub}: {}", p.reason);
        }
    }

    #[test]
    fn an_external_uid_shared_by_assets_goes_to_the_one_that_fits() {
        let mut c = catalog();
        // AS-...-0002 was terminated before April; AS-...-0001 is active: the uid fits one.
        c.assets_by_uid.insert(
            "shared".into(),
            vec!["AS-0001-0000-0002".into(), "AS-0001-0000-0001".into()],
        );
        let q = Quantity::parse("1").expect("q");
        let period = april();
        let r = record("shared", "INT", &q);
        assert_eq!(
            place(r, &c, period, Rules::default()).map(|p| p.asset_id),
            Ok("AS-0001-0000-0001")
        );
        // Two that fit: an ambiguity for a person.
        c.assets_by_uid.insert(
            "shared".into(),
            vec!["AS-0001-0000-0003".into(), "AS-0001-0000-0001".into()],
        );
        let p = place(r, &c, period, Rules::default()).expect_err("ambiguous");
        assert_eq!(p.kind, ProblemKind::Unplaceable);
        assert!(
            p.reason.contains(
                "names 2 assets that could take the record (AS-0001-0000-0003, AS-0001-0000-0001)"
            ),
            "{}",
            p.reason
        );
    }

    #[test]
    fn reservation_items_of_consumption_products_keep_their_precision() {
        let mut c = catalog();
        if let Some(p) = c.products.get_mut("PRD-QT") {
            p.capabilities.reservation =
                Some(connect_client::models::ReservationCapability { consumption: true });
        }
        let q = Quantity::parse("1.5").expect("q");
        let period = april();
        let r = record("AS-0001-0000-0001", "SEATS", &q);
        let p = place(r, &c, period, Rules::default()).expect_err("integer item");
        assert!(
            p.reason
                .contains("quantity: 1.5 has more decimals than item SEATS (integer) allows"),
            "{}",
            p.reason
        );
        let whole = Quantity::parse("2").expect("q");
        assert!(
            place(
                Checked {
                    quantity: whole.as_str(),
                    ..r
                },
                &c,
                period,
                Rules::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn invalid_records_say_what_and_which_value() {
        let a = "AS-0001-0000-0001";
        for (mpn, q, start, end, want) in [
            (
                "NOPE",
                "1",
                S,
                E,
                "item_mpn: \"NOPE\" is not an item of product PRD-QT",
            ),
            (
                "SEATS",
                "1",
                S,
                E,
                "is a reservation item of product PRD-QT, not pay-as-you-go",
            ),
            (
                "INT",
                "1.5",
                S,
                E,
                "quantity: 1.5 has more decimals than item INT (integer) allows",
            ),
            (
                "DEC2",
                "1.234",
                S,
                E,
                "quantity: 1.234 has more decimals than item DEC2 (decimal(2)) allows",
            ),
            ("INT", "-2", S, E, "quantity: -2 is negative"),
            (
                "INT",
                "1",
                E,
                S,
                "start_time 2024-04-30 23:59:59 is after end_time 2024-04-01 00:00:00",
            ),
            (
                "INT",
                "1",
                "2024-03-31T23:59:59Z",
                E,
                "start_time: 2024-03-31 23:59:59 is outside 2024-04",
            ),
            (
                "INT",
                "1",
                S,
                "2024-05-01T00:00:00Z",
                "end_time: 2024-05-01 00:00:00 is outside 2024-04",
            ),
        ] {
            let p = check(a, mpn, q, start, end).expect_err(want);
            assert_eq!(p.kind, ProblemKind::Invalid, "{want}");
            assert!(p.reason.contains(want), "{want} in {}", p.reason);
        }
        let p = check(
            a,
            "DEC2",
            "-1.234",
            "2024-05-02T00:00:00Z",
            "2024-05-01T00:00:00Z",
        )
        .expect_err("many problems");
        assert_eq!(
            p.reason.matches("; ").count(),
            3,
            "all problems named: {}",
            p.reason
        );
    }

    #[test]
    fn aggregated_records_leave_the_precision_to_their_sum() {
        let c = catalog();
        let half = Quantity::parse("0.5").expect("q");
        let r = record("AS-0001-0000-0001", "INT", &half);
        let rules = Rules { aggregated: true };
        let p = place(r, &c, april(), rules).expect("summed later");
        assert_eq!(p.precision, 0);
        assert!(place(r, &c, april(), Rules::default()).is_err());
        let fine = Quantity::parse("0.123456789").expect("q");
        let p = place(
            Checked {
                quantity: fine.as_str(),
                ..r
            },
            &c,
            april(),
            rules,
        )
        .expect_err("nine places");
        assert!(p.reason.contains("more than 8 decimals"), "{}", p.reason);
        let two = Quantity::parse("1.25").expect("q");
        let p = place(
            record("AS-0001-0000-0001", "DEC2", &two),
            &c,
            april(),
            rules,
        )
        .expect("placed");
        assert_eq!(p.precision, 2);
    }

    #[test]
    fn a_placer_remembers_pairs_and_answers_as_place_does() {
        let mut c = catalog();
        c.assets_by_uid.insert(
            "shared".into(),
            vec!["AS-0001-0000-0003".into(), "AS-0001-0000-0001".into()],
        );
        let mut placer = Placer::new(&c, april(), Rules::default());
        let quantities: Vec<Quantity> = ["1", "1.5", "-2", "0.25"]
            .iter()
            .map(|q| Quantity::parse(q).expect("q"))
            .collect();
        for _ in 0..2 {
            for sub in [
                "AS-0001-0000-0001",
                "uid-AS-0001-0000-0001",
                "AS-0001-0000-0002",
                "AS-9999-9999-9999",
                "AS-0001-0000-0007",
                "shared",
            ] {
                for mpn in ["INT", "DEC2", "SEATS", "NOPE"] {
                    for q in &quantities {
                        let r = record(sub, mpn, q);
                        assert_eq!(
                            placer.place(r),
                            place(r, &c, april(), Rules::default()),
                            "{sub} {mpn} {q}"
                        );
                    }
                }
            }
        }
    }
}
