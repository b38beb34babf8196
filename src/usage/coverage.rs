//! Usage coverage: the subscriptions that should have usage in the month and have none in the
//! vendor's data. A forgotten subscription is revenue nobody bills, and nothing else in a run
//! would notice it: every record that is there can be fine while a whole customer is missing.
//!
//! A subscription is *expected* when it belongs to a QT product, sits under an active
//! distribution contract, and was active in the month by the same rule that accepts its
//! records ([`inactive_in`]). It is *covered* when at least one record the source could read
//! names it, by asset id or by `external_uid`, whether or not that record was then sent: a
//! subscription whose records were all invalid has data, and those records are reported as
//! problems of their own. Records the source could not read name nothing.
//!
//! The decision ([`uncovered`]) is a pure function of the expected subscriptions and the
//! names the month's records used; [`load`] fetches the expected ones from Connect. The run
//! keeps only the set of names (a vendor has thousands of subscriptions, not millions), never
//! the records.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;

use super::catalog::{Catalog, assets_where, products_by_id};
use super::validate::inactive_in;
use connect_client::models::{Asset, Product};
use connect_client::month::Month;
use connect_client::rql::Expr;
use connect_client::{ConnectClient, ConnectError};

/// How many subscriptions without usage the summary names: as many as it keeps of every
/// other kind of sample.
pub const COVERAGE_SAMPLES: usize = super::summary::SAMPLES;

/// Statuses a subscription may have had while active in a month; [`inactive_in`] decides on
/// the terminated ones from their termination date.
const LISTED_STATUSES: [&str; 4] = ["active", "suspended", "terminating", "terminated"];

/// A subscription expected to have usage that has none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Uncovered {
    /// The asset id.
    pub subscription: String,
    pub product: String,
    pub contract: String,
}

impl std::fmt::Display for Uncovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, {})",
            self.subscription, self.product, self.contract
        )
    }
}

/// What a run found about coverage: part of the run's summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// Subscriptions expected to have usage in the month.
    pub expected: usize,
    /// Of those, the ones no record names.
    pub not_covered: usize,
    /// The first [`COVERAGE_SAMPLES`] of them by subscription id.
    pub samples: Vec<Uncovered>,
    /// `REQUIRE_FULL_COVERAGE` was set: a subscription without usage makes the run partial.
    pub required: bool,
}

impl Coverage {
    /// The coverage of `uncovered` (sorted) out of `expected`, keeping the first samples.
    pub fn of(expected: usize, mut uncovered: Vec<Uncovered>, required: bool) -> Coverage {
        let not_covered = uncovered.len();
        uncovered.truncate(COVERAGE_SAMPLES);
        Coverage {
            expected,
            not_covered,
            samples: uncovered,
            required,
        }
    }

    /// Whether this coverage, by itself, keeps the run from being complete.
    pub fn makes_partial(&self) -> bool {
        self.required && self.not_covered > 0
    }
}

/// The subscriptions Connect holds that may be expected to have usage: every listed asset under
/// the catalog's active distribution contracts, and the products of those assets.
#[derive(Debug, Default)]
pub struct Expected {
    pub assets: Vec<Asset>,
    /// The assets' products, by id (those the catalog had already, and the others).
    pub products: HashMap<String, Product>,
}

/// Loads the assets under the catalog's active distribution contracts and any product of
/// theirs the catalog lacks, in batched queries like the catalog's.
pub async fn load(client: &ConnectClient, catalog: &Catalog) -> Result<Expected, ConnectError> {
    let contracts: BTreeSet<String> = catalog.contracts.keys().cloned().collect();
    let listed = Expr::in_("status", LISTED_STATUSES.to_vec());
    let assets = assets_where(client, "contract.id", &contracts, Some(listed)).await?;
    let missing: BTreeSet<String> = assets
        .iter()
        .map(|a| a.product.id.clone())
        .filter(|p| !catalog.products.contains_key(p))
        .collect();
    let fetched = products_by_id(client, &missing).await?;
    let mut products: HashMap<String, Product> = catalog
        .products
        .iter()
        .map(|(id, p)| (id.clone(), p.clone()))
        .collect();
    products.extend(fetched.into_iter().map(|p| (p.id.clone(), p)));
    Ok(Expected { assets, products })
}

/// The subscriptions of `expected` that should have usage in `period` and that no name in
/// `named` (the subscription references of the month's records) designates, by subscription
/// id; and how many were expected. `active_contracts` are the active distribution contracts.
pub fn uncovered(
    expected: &Expected,
    active_contracts: &HashSet<&str>,
    period: Month,
    named: &HashSet<String>,
) -> (usize, Vec<Uncovered>) {
    let mut count = 0;
    let mut out = Vec::new();
    // The same asset listed twice (pages shifting under a query) counts once.
    let mut seen: HashSet<&str> = HashSet::new();
    for asset in &expected.assets {
        if !seen.insert(&asset.id) {
            continue;
        }
        // Preview assets carry no contract (or the preview one): not a distribution contract.
        let Some(contract) = asset.contract.as_ref().map(|c| c.id.as_str()) else {
            continue;
        };
        if !active_contracts.contains(contract) {
            continue;
        }
        let qt = expected
            .products
            .get(&asset.product.id)
            .is_some_and(Product::is_qt);
        if !qt || inactive_in(asset, period).is_some() {
            continue;
        }
        count += 1;
        let by_uid = asset
            .external_uid
            .as_ref()
            .is_some_and(|uid| named.contains(uid));
        if named.contains(&asset.id) || by_uid {
            continue;
        }
        out.push(Uncovered {
            subscription: asset.id.clone(),
            product: asset.product.id.clone(),
            contract: contract.to_owned(),
        });
    }
    out.sort_by(|a, b| a.subscription.cmp(&b.subscription));
    (count, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn period() -> Month {
        "2024-04".parse().expect("period")
    }

    fn asset(id: &str, contract: Option<&str>, product: &str, status: &str) -> Asset {
        let mut a = json!({
            "id": id, "status": status, "external_uid": format!("uid-{id}"),
            "product": {"id": product},
            "events": {"created": {"at": "2023-06-01T00:00:00+00:00"},
                       "updated": {"at": "2024-04-10T00:00:00+00:00"}},
        });
        if let Some(c) = contract {
            a["contract"] = json!({"id": c});
        }
        serde_json::from_value(a).expect("asset")
    }

    fn product(id: &str, schema: &str) -> Product {
        serde_json::from_value(json!({
            "id": id, "name": id,
            "capabilities": {"ppu": {"schema": schema}},
        }))
        .expect("product")
    }

    fn expected(assets: Vec<Asset>) -> Expected {
        Expected {
            assets,
            products: [product("PRD-QT", "QT"), product("PRD-TR", "TR")]
                .into_iter()
                .map(|p| (p.id.clone(), p))
                .collect(),
        }
    }

    fn named(names: &[&str]) -> HashSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn ids(u: &[Uncovered]) -> Vec<&str> {
        u.iter().map(|u| u.subscription.as_str()).collect()
    }

    const ACTIVE: &str = "CRD-1";

    fn check(assets: Vec<Asset>, names: &[&str]) -> (usize, Vec<Uncovered>) {
        uncovered(
            &expected(assets),
            &HashSet::from([ACTIVE]),
            period(),
            &named(names),
        )
    }

    #[test]
    fn a_subscription_no_record_names_is_uncovered_with_its_product_and_contract() {
        let (count, u) = check(vec![asset("AS-2", Some(ACTIVE), "PRD-QT", "active")], &[]);
        assert_eq!(count, 1);
        assert_eq!(
            u,
            [Uncovered {
                subscription: "AS-2".into(),
                product: "PRD-QT".into(),
                contract: ACTIVE.into()
            }]
        );
    }

    #[test]
    fn a_record_naming_the_id_or_the_external_uid_covers_it() {
        let assets = vec![
            asset("AS-1", Some(ACTIVE), "PRD-QT", "active"),
            asset("AS-2", Some(ACTIVE), "PRD-QT", "suspended"),
            asset("AS-3", Some(ACTIVE), "PRD-QT", "terminating"),
        ];
        let (count, u) = check(assets, &["AS-1", "uid-AS-2"]);
        assert_eq!((count, ids(&u)), (3, vec!["AS-3"]));
    }

    #[test]
    fn subscriptions_not_expected_to_have_usage_are_left_out() {
        let mut created_later = asset("AS-6", Some(ACTIVE), "PRD-QT", "active");
        created_later.events =
            serde_json::from_value(json!({"created": {"at": "2024-05-01T00:00:00+00:00"}}))
                .expect("events");
        let mut terminated_before = asset("AS-7", Some(ACTIVE), "PRD-QT", "terminated");
        terminated_before.events =
            serde_json::from_value(json!({"updated": {"at": "2024-03-31T23:59:59+00:00"}}))
                .expect("events");
        let assets = vec![
            asset("AS-1", None, "PRD-QT", "active"),
            asset("AS-2", Some("CRD-TERMINATED"), "PRD-QT", "active"),
            asset("AS-3", Some(ACTIVE), "PRD-TR", "active"),
            asset("AS-4", Some(ACTIVE), "PRD-UNSEEN", "active"),
            asset("AS-5", Some(ACTIVE), "PRD-QT", "processing"),
            created_later,
            terminated_before,
        ];
        assert_eq!(check(assets, &[]), (0, vec![]));
    }

    #[test]
    fn terminated_during_the_month_is_still_expected() {
        let assets = vec![asset("AS-1", Some(ACTIVE), "PRD-QT", "terminated")];
        let (count, u) = check(assets, &[]);
        assert_eq!((count, ids(&u)), (1, vec!["AS-1"]));
    }

    #[test]
    fn uncovered_are_sorted_by_id_and_listed_once() {
        let assets = vec![
            asset("AS-3", Some(ACTIVE), "PRD-QT", "active"),
            asset("AS-1", Some(ACTIVE), "PRD-QT", "active"),
            asset("AS-3", Some(ACTIVE), "PRD-QT", "active"),
        ];
        let (count, u) = check(assets, &[]);
        assert_eq!((count, ids(&u)), (2, vec!["AS-1", "AS-3"]));
    }

    #[test]
    fn the_summary_keeps_the_count_and_the_first_samples() {
        let many: Vec<Uncovered> = (0..COVERAGE_SAMPLES + 5)
            .map(|i| Uncovered {
                subscription: format!("AS-{i:03}"),
                product: "PRD-QT".into(),
                contract: ACTIVE.into(),
            })
            .collect();
        let c = Coverage::of(100, many, false);
        assert_eq!(c.not_covered, COVERAGE_SAMPLES + 5);
        assert_eq!(c.samples.len(), COVERAGE_SAMPLES);
        assert_eq!(c.samples[0].subscription, "AS-000");
        assert!(!c.makes_partial(), "not required");
        assert!(Coverage::of(100, c.samples.clone(), true).makes_partial());
        assert!(!Coverage::of(100, Vec::new(), true).makes_partial());
    }
}
