//! The built-in vendor account, used when no `--data` is given: generated deterministically
//! (the same on every machine), it looks like a real vendor's: two providers over five
//! marketplaces in different currencies, active, enrolling and terminated distribution
//! contracts (and a service contract), QT products with PPU items of integer and decimal
//! precision, a TR product and a product without pay-as-you-go, and a few hundred assets with
//! the edge cases a usage pipeline meets (terminated, suspended and processing assets, preview
//! and test subscriptions, assets of a terminated contract).

use std::collections::{BTreeMap, HashSet};

use chrono::{Duration, TimeZone, Utc};
use serde_json::{Value as Json, json};

use super::{
    Account, Dataset, EnvironmentSetup, ExtensionSetup, KeyEntry, PREVIEW_CONTRACT_ID, Role,
    VariableSetup,
};

/// Generates the built-in account.
pub fn build() -> Dataset {
    DefaultAccount::new().build()
}

/// A small deterministic generator ([`crate::splitmix`]), so the default dataset is the same on
/// every machine and every version of the random crates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        crate::splitmix::next(&mut self.0)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

struct ProductSpec {
    id: &'static str,
    name: &'static str,
    schema: Option<&'static str>,
    /// `(mpn, name, type, precision, unit, period)`
    items: &'static [(
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    )],
}

const VENDOR: (&str, &str) = ("VA-391-274", "Skyforge Cloud Services");
const PROVIDERS: [(&str, &str); 2] = [
    ("PA-148-702", "Meridian Distribution"),
    ("PA-562-019", "Pacifica Telecom"),
];

/// `(id, name, currency, zone, provider index, hub)`
const MARKETPLACES: [(&str, &str, &str, &str, usize, &str); 5] = [
    ("MP-81547", "Europe", "EUR", "EU", 0, "HB-2810-4471"),
    ("MP-30279", "United Kingdom", "GBP", "EU", 0, "HB-2810-4471"),
    ("MP-67510", "United States", "USD", "NA", 0, "HB-6120-0983"),
    ("MP-44623", "Japan", "JPY", "AS", 1, "HB-7394-1156"),
    ("MP-19308", "Australia", "AUD", "OC", 1, "HB-7394-1156"),
];

const PRODUCTS: [ProductSpec; 5] = [
    ProductSpec {
        id: "PRD-276-377-545",
        name: "Cloud Storage",
        schema: Some("QT"),
        items: &[
            (
                "STOR-GBH",
                "Storage (GB-hours)",
                "ppu",
                "decimal(2)",
                "GB-hour",
                "monthly",
            ),
            (
                "EGRESS-GB",
                "Network egress (GB)",
                "ppu",
                "decimal(4)",
                "GB",
                "monthly",
            ),
            (
                "API-REQ",
                "API requests",
                "ppu",
                "integer",
                "request",
                "monthly",
            ),
            (
                "STOR-SEATS",
                "Storage admin seats",
                "reservation",
                "integer",
                "seat",
                "monthly",
            ),
        ],
    },
    ProductSpec {
        id: "PRD-584-106-773",
        name: "Compute Hours",
        schema: Some("QT"),
        items: &[
            (
                "VCPU-H",
                "vCPU hours",
                "ppu",
                "decimal(1)",
                "hour",
                "monthly",
            ),
            ("GPU-H", "GPU hours", "ppu", "decimal(8)", "hour", "monthly"),
            (
                "INST-COUNT",
                "Instances launched",
                "ppu",
                "integer",
                "unit",
                "monthly",
            ),
        ],
    },
    ProductSpec {
        id: "PRD-735-219-864",
        name: "Data Analytics",
        schema: Some("QT"),
        items: &[
            (
                "QUERY-TB",
                "Data scanned (TB)",
                "ppu",
                "decimal(4)",
                "TB",
                "monthly",
            ),
            (
                "DASH-USERS",
                "Dashboard users",
                "ppu",
                "integer",
                "user",
                "monthly",
            ),
        ],
    },
    ProductSpec {
        id: "PRD-902-451-330",
        name: "Managed Backup",
        schema: Some("TR"),
        items: &[(
            "BKP-TB",
            "Protected data (TB)",
            "ppu",
            "decimal(2)",
            "TB",
            "monthly",
        )],
    },
    ProductSpec {
        id: "PRD-118-640-227",
        name: "Email Security",
        schema: None,
        items: &[(
            "MAIL-SEATS",
            "Protected mailboxes",
            "reservation",
            "integer",
            "seat",
            "monthly",
        )],
    },
];

/// Which products are listed in which marketplace (index into `PRODUCTS`).
fn products_in(marketplace: usize) -> &'static [usize] {
    match marketplace {
        0 => &[0, 1, 3, 4],
        1 => &[0, 1, 4],
        2 => &[0, 1, 2, 3],
        3 => &[0, 2],
        _ => &[1, 2],
    }
}

struct DefaultAccount {
    rng: Rng,
    epoch: chrono::DateTime<Utc>,
}

impl DefaultAccount {
    fn new() -> DefaultAccount {
        DefaultAccount {
            rng: Rng(0x5EED_2024),
            epoch: Utc
                .with_ymd_and_hms(2023, 3, 1, 9, 0, 0)
                .single()
                .unwrap_or_default(),
        }
    }

    fn at(&mut self, max_days: i64) -> String {
        let days = self.rng.below(max_days.max(1) as u64) as i64;
        let secs = self.rng.below(86_400) as i64;
        (self.epoch + Duration::days(days) + Duration::seconds(secs))
            .format("%Y-%m-%dT%H:%M:%S+00:00")
            .to_string()
    }

    fn build(mut self) -> Dataset {
        let vendor_ref = json!({"id": VENDOR.0, "name": VENDOR.1});
        let provider_ref = |i: usize| json!({"id": PROVIDERS[i].0, "name": PROVIDERS[i].1});
        let mut accounts = vec![Account {
            id: VENDOR.0.into(),
            name: VENDOR.1.into(),
            role: Role::Vendor,
        }];
        for (id, name) in PROVIDERS {
            accounts.push(Account {
                id: id.into(),
                name: name.into(),
                role: Role::Provider,
            });
        }
        let api_keys = vec![
            KeyEntry {
                name: "vendor".into(),
                key: "SU-391-274-001:8f14e45fceea167a5a36dedd4bea2543".into(),
                account: VENDOR.0.into(),
            },
            KeyEntry {
                name: "provider".into(),
                key: "SU-148-702-001:c9f0f895fb98ab9159f51fd0297e236d".into(),
                account: PROVIDERS[0].0.into(),
            },
            KeyEntry {
                name: "provider-apac".into(),
                key: "SU-562-019-001:45c48cce2e2d7fbdea1afc51c7c6ad26".into(),
                account: PROVIDERS[1].0.into(),
            },
            KeyEntry {
                name: "extension".into(),
                key: "SU-391-274-002:d3d9446802a44259755d38e6d163e820".into(),
                account: VENDOR.0.into(),
            },
        ];

        let marketplaces: Vec<Json> = MARKETPLACES
            .iter()
            .map(|&(id, name, currency, zone, provider, hub)| {
                json!({
                    "id": id, "name": name, "description": format!("{name} marketplace"),
                    "icon": format!("/media/{id}/icon.png"), "zone": zone, "currency": currency,
                    "owner": provider_ref(provider),
                    "hubs": [{"hub": {"id": hub, "name": format!("{} hub", PROVIDERS[provider].1)}}],
                    "countries": [], "locales": [],
                })
            })
            .collect();
        let mp_ref = |i: usize| {
            let m = MARKETPLACES[i];
            json!({"id": m.0, "name": m.1, "icon": format!("/media/{}/icon.png", m.0)})
        };

        let products: Vec<Json> = PRODUCTS
            .iter()
            .map(|p| {
                let ppu = p.schema.map(|s| {
                    json!({"schema": s, "dynamic": false, "future": false, "predictive": false})
                });
                json!({
                    "id": p.id, "name": p.name, "icon": format!("/media/{}/icon.png", p.id),
                    "status": "published", "version": 3, "latest": true, "owner": vendor_ref.clone(),
                    "short_description": format!("{} by {}", p.name, VENDOR.1),
                    "capabilities": {"ppu": ppu, "reservation": {"consumption": false}},
                    "events": {"created": {"at": "2023-01-16T08:00:00+00:00"}},
                })
            })
            .collect();
        let mut items = BTreeMap::new();
        for p in &PRODUCTS {
            let list: Vec<Json> = p
                .items
                .iter()
                .enumerate()
                .map(|(n, &(mpn, name, kind, precision, unit, period))| {
                    json!({
                        "id": format!("{}-{:04}", p.id, n + 1), "local_id": format!("{}-{:04}", p.id, n + 1),
                        "mpn": mpn, "name": name, "display_name": name, "type": kind, "precision": precision,
                        "unit": {"id": unit.to_lowercase(), "name": unit, "title": unit, "unit": unit},
                        "period": period, "status": "published", "dynamic": false, "position": (n + 1) * 10,
                        "commitment": {"count": 1},
                    })
                })
                .collect();
            items.insert(p.id.to_owned(), list);
        }

        // Contracts: one active distribution contract per marketplace, plus an enrolling and a
        // terminated one in Europe and a service contract that is not about distribution.
        let mut contracts = Vec::new();
        let mut contract_meta: Vec<(String, usize, &'static str)> = Vec::new();
        let mut add_contract = |s: &mut DefaultAccount,
                                mp: usize,
                                status: &'static str,
                                ctype: &str,
                                label: &str| {
            let id = format!(
                "CRD-{}-{}-{}",
                s.rng.digits(5),
                s.rng.digits(5),
                s.rng.digits(5)
            );
            let provider = MARKETPLACES[mp].4;
            let name = format!("{} {} {label}", PROVIDERS[provider].1, MARKETPLACES[mp].1);
            let mut c = json!({
                "id": id, "type": ctype, "status": status, "name": name, "version": 2, "kind": "production",
                "marketplace": mp_ref(mp), "issuer": provider_ref(provider), "owner": vendor_ref.clone(),
                "creator": vendor_ref.clone(),
                "agreement": {"id": format!("AGP-{}-{}", s.rng.digits(3), s.rng.digits(3)), "name": format!("{} distribution agreement", PROVIDERS[provider].1)},
                "events": {"created": {"at": s.at(60)}},
            });
            if status == "terminated" {
                c["events"]["terminated"] = json!({"at": s.at(400)});
            }
            contracts.push(c);
            contract_meta.push((id, mp, status));
        };
        for mp in 0..MARKETPLACES.len() {
            add_contract(&mut self, mp, "active", "distribution", "distribution");
        }
        add_contract(
            &mut self,
            0,
            "terminated",
            "distribution",
            "distribution (2023)",
        );
        add_contract(
            &mut self,
            2,
            "enrolling",
            "distribution",
            "distribution (renewal)",
        );
        add_contract(&mut self, 2, "active", "service", "service");

        let mut assets = Vec::new();
        let mut used_ids = HashSet::new();
        let mut customer = 100_000u64;
        for (cid, mp, status) in contract_meta.clone() {
            let count_per_product = match status {
                "active" => 0,
                "terminated" => 6,
                _ => continue,
            };
            let contract_name = contracts
                .iter()
                .find(|c| c["id"] == cid.as_str())
                .and_then(|c| c["name"].as_str())
                .unwrap_or_default()
                .to_owned();
            if contracts
                .iter()
                .any(|c| c["id"] == cid.as_str() && c["type"] != "distribution")
            {
                continue;
            }
            for &p in products_in(mp) {
                let n = if count_per_product > 0 {
                    count_per_product
                } else {
                    12 + self.rng.below(10) as usize
                };
                for k in 0..n {
                    let asset_status = if status == "terminated" {
                        "active"
                    } else {
                        match (k, self.rng.below(100)) {
                            (0, _) => "active",
                            (_, 0..=4) => "terminated",
                            (_, 5..=8) => "suspended",
                            (_, 9..=10) => "processing",
                            _ => "active",
                        }
                    };
                    let connection = if k == 1 && mp == 0 {
                        "test"
                    } else {
                        "production"
                    };
                    customer += 1 + self.rng.below(40);
                    let asset = self.asset(
                        &mut used_ids,
                        p,
                        mp,
                        asset_status,
                        connection,
                        Some((&cid, &contract_name)),
                        customer,
                        &vendor_ref,
                    );
                    assets.push(asset);
                }
            }
        }
        // Preview subscriptions: no real contract.
        for (k, p) in [0usize, 1, 2, 0].into_iter().enumerate() {
            customer += 7;
            let asset = self.asset(
                &mut used_ids,
                p,
                k % 2,
                "active",
                "preview",
                None,
                customer,
                &vendor_ref,
            );
            assets.push(asset);
        }

        let extension = ExtensionSetup {
            service_id: "SRVC-7391-2740".into(),
            name: "connect-usage".into(),
            environment: EnvironmentSetup {
                id: "ENV-7391-2740-03".into(),
                kind: "production".into(),
            },
            api_key: "extension".into(),
            variables: vec![
                VariableSetup {
                    name: "USAGE_SOURCE".into(),
                    value: "{origin}/vendor/v1/usage".into(),
                    secure: false,
                },
                VariableSetup {
                    name: "USAGE_SOURCE_TOKEN".into(),
                    value: "{usage_token}".into(),
                    secure: true,
                },
                VariableSetup {
                    name: "USAGE_ACK_URL".into(),
                    value: "{origin}/vendor/v1/acknowledgements".into(),
                    secure: false,
                },
            ],
            schedules: vec![json!({
                "id": "EFS-7391-2740-001",
                "name": "Monthly usage report",
                "description": "Reports last month's pay-as-you-go usage on the 2nd of every month.",
                "method": "report_monthly_usage",
                "parameter": null,
                "trigger": {"type": "recurring", "start": "2023-04-02T03:00:00+00:00", "end": null,
                            "unit": "months", "amount": 1, "cron_expression": null},
                "environment": {"id": "ENV-7391-2740-03", "type": "production"},
                "status": "enabled",
                "events": {"created": {"at": "2023-03-20T09:00:00+00:00", "by": vendor_ref.clone()}},
            })],
            installations: vec![json!({
                "id": "EIN-7391-2740-0001",
                "environment": {"id": "ENV-7391-2740-03", "type": "production"},
                "owner": vendor_ref.clone(),
                "status": "installed",
                "configuration": {},
            })],
        };
        Dataset {
            accounts,
            api_keys,
            marketplaces,
            contracts,
            products,
            items,
            assets,
            extension: Some(extension),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn asset(
        &mut self,
        used: &mut HashSet<String>,
        product: usize,
        mp: usize,
        status: &str,
        connection: &str,
        contract: Option<(&str, &str)>,
        customer: u64,
        vendor_ref: &Json,
    ) -> Json {
        let id = loop {
            let id = format!(
                "AS-{}-{}-{}",
                self.rng.digits(4),
                self.rng.digits(4),
                self.rng.digits(4)
            );
            if used.insert(id.clone()) {
                break id;
            }
        };
        let p = &PRODUCTS[product];
        let provider = MARKETPLACES[mp].4;
        let uid = format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            self.rng.next() as u32,
            self.rng.below(0x10000),
            self.rng.below(0x1000),
            self.rng.below(0x1000),
            self.rng.next() & 0xFFFF_FFFF_FFFF
        );
        let items: Vec<Json> = p
            .items
            .iter()
            .enumerate()
            .map(|(n, &(mpn, name, kind, _, _, period))| {
                let (item_type, quantity) = if kind == "ppu" {
                    ("PPU", "0".to_owned())
                } else {
                    ("Reservation", (1 + self.rng.below(50)).to_string())
                };
                json!({
                    "id": format!("{}-{:04}", p.id, n + 1), "global_id": format!("{}-{:04}", p.id, n + 1),
                    "mpn": mpn, "display_name": name, "item_type": item_type, "period": period,
                    "type": "units", "quantity": quantity, "old_quantity": "0",
                })
            })
            .collect();
        // Subscriptions of the first months: every month from mid-2023 on has all of them.
        let created = self.at(120);
        let contract_ref = match contract {
            Some((id, name)) => json!({"id": id, "name": name}),
            None => json!({"id": PREVIEW_CONTRACT_ID, "name": "Preview"}),
        };
        let m = MARKETPLACES[mp];
        json!({
            "id": id, "status": status,
            "external_id": format!("SKY-{customer}"), "external_uid": uid,
            "product": {"id": p.id, "name": p.name, "icon": format!("/media/{}/icon.png", p.id), "status": "published"},
            "connection": {
                "id": format!("CT-{}-{}-{}", 1000 + mp * 111, 2000 + product * 37, if connection == "production" { 3100 } else { 3200 }),
                "type": connection,
                "provider": {"id": PROVIDERS[provider].0, "name": PROVIDERS[provider].1},
                "vendor": vendor_ref.clone(),
                "hub": {"id": m.5, "name": format!("{} hub", PROVIDERS[provider].1)},
            },
            "events": {"created": {"at": created}, "updated": {"at": created}},
            "items": items,
            "params": [
                {"id": "tenant_id", "name": "Tenant ID", "value": format!("tenant-{customer}")},
                {"id": "region", "name": "Region", "value": m.3.to_lowercase()},
            ],
            "tiers": {
                "customer": {"id": format!("TA-{}-{}-{}", self.rng.digits(4), self.rng.digits(4), self.rng.digits(4)),
                             "name": format!("Customer {customer}"), "external_id": customer.to_string()},
                "tier1": {"id": format!("TA-{}-{}-{}", 1000 + mp, 2000 + mp, 3000 + mp), "name": format!("{} reseller", m.1)},
            },
            "marketplace": {"id": m.0, "name": m.1, "icon": format!("/media/{}/icon.png", m.0)},
            "contract": contract_ref,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_account_is_valid_and_stable() {
        let a = Dataset::default_account();
        a.check("default").expect("default dataset is valid");
        assert_eq!(a, Dataset::default_account(), "generation is deterministic");
        assert!(a.assets.len() >= 200, "{} assets", a.assets.len());
        assert!(a.marketplaces.len() >= 3);
        let statuses: HashSet<&str> = a
            .assets
            .iter()
            .filter_map(|x| x["status"].as_str())
            .collect();
        for s in ["active", "terminated", "suspended", "processing"] {
            assert!(statuses.contains(s), "no {s} asset");
        }
        assert!(
            a.assets
                .iter()
                .any(|x| x["connection"]["type"] == "preview")
        );
        assert!(a.contracts.iter().any(|x| x["status"] == "terminated"));
        assert!(
            a.products
                .iter()
                .any(|x| x["capabilities"]["ppu"].is_null())
        );
        assert!(
            a.products
                .iter()
                .any(|x| x["capabilities"]["ppu"]["schema"] == "TR")
        );
        let json = serde_json::to_string(&a).expect("serialises");
        assert_eq!(
            Dataset::from_json(&json, "roundtrip").expect("reads back"),
            a
        );
    }
}
