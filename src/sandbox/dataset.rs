//! The sandbox's vendor account: accounts, API keys, marketplaces, contracts, products with
//! their items, and assets.
//!
//! [`Dataset::default_account`] builds, deterministically, an account that looks like a real
//! vendor's: two providers over five marketplaces in different currencies, active, enrolling
//! and terminated distribution contracts (and a service contract), QT products with PPU items
//! of integer and decimal precision, a TR product and a product without pay-as-you-go, and a
//! few hundred assets with the edge cases a usage pipeline meets (terminated, suspended and
//! processing assets, preview and test subscriptions, assets of a terminated contract).
//! [`Dataset::load`] reads another account from JSON (the same shape, see `docs/sandbox.md`)
//! and checks it, naming the first problem found and where.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use chrono::{Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::connect::models::{Asset, Contract, Item, Marketplace, Product};

/// What a key's account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Creates, uploads, submits and deletes usage files.
    Vendor,
    /// Accepts, rejects and closes usage files, closes records.
    Provider,
}

/// An account of the dataset (`VA-...` vendor, `PA-...` provider).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub role: Role,
}

/// An API key the sandbox accepts, and the account it acts for.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    /// A short name shown in logs and the request log instead of the key.
    pub name: String,
    /// The token, with or without the `ApiKey ` prefix.
    pub key: String,
    pub account: String,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("name", &self.name)
            .field("key", &"***")
            .field("account", &self.account)
            .finish()
    }
}

/// A whole sandbox account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub accounts: Vec<Account>,
    pub api_keys: Vec<KeyEntry>,
    pub marketplaces: Vec<Json>,
    pub contracts: Vec<Json>,
    pub products: Vec<Json>,
    /// Items by product id.
    #[serde(default)]
    pub items: BTreeMap<String, Vec<Json>>,
    pub assets: Vec<Json>,
    /// The extension installed in the vendor account: what the platform side (websocket,
    /// schedules, variables) serves. Without it, a default one is used.
    #[serde(default)]
    pub extension: Option<ExtensionSetup>,
}

/// The vendor's extension as the platform knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionSetup {
    /// The extension (service) id, `SRVC-...`.
    pub service_id: String,
    pub name: String,
    /// The environment runners connect to.
    pub environment: EnvironmentSetup,
    /// The name of the API key (in `api_keys`) of the environment: the key runners connect
    /// with.
    pub api_key: String,
    /// Values the platform sends for the extension's variables. In values, `{origin}` is
    /// replaced with the sandbox's `http://host:port` and `{usage_token}` with the vendor usage
    /// API's token. Variables the extension declares and this list lacks get their initial
    /// value.
    #[serde(default)]
    pub variables: Vec<VariableSetup>,
    /// Schedules of the environment (Connect's `eaas.Schedule` objects: `id`, `method`,
    /// `name`, `description`, `trigger`, `status`, ...).
    #[serde(default)]
    pub schedules: Vec<Json>,
    /// Installations of the extension (`id`, `owner`, ...), for tasks naming one.
    #[serde(default)]
    pub installations: Vec<Json>,
}

/// An environment of the extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentSetup {
    pub id: String,
    /// `development`, `test` or `production`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A variable's value in the environment.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableSetup {
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub secure: bool,
}

impl std::fmt::Debug for VariableSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VariableSetup")
            .field("name", &self.name)
            .field("value", &if self.secure { "***" } else { &self.value })
            .field("secure", &self.secure)
            .finish()
    }
}

impl ExtensionSetup {
    /// What the sandbox uses when the dataset has no extension: any vendor key connects.
    pub fn fallback() -> ExtensionSetup {
        ExtensionSetup {
            service_id: "SRVC-0000-0000".into(),
            name: "Extension".into(),
            environment: EnvironmentSetup {
                id: "ENV-0000-0000-01".into(),
                kind: "development".into(),
            },
            api_key: String::new(),
            variables: Vec::new(),
            schedules: Vec::new(),
            installations: Vec::new(),
        }
    }
}

/// A dataset that cannot be used, with the place of the problem.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a dataset: {reason}")]
    Parse { path: String, reason: String },
    #[error("{path}: {location}: {reason}")]
    Invalid {
        path: String,
        location: String,
        reason: String,
    },
}

/// The contract id of preview assets, which no contract list returns.
pub const PREVIEW_CONTRACT_ID: &str = "CRD-00000-00000-00000";

impl Dataset {
    /// Reads and checks a dataset file.
    pub fn load(path: &Path) -> Result<Dataset, DatasetError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Read {
            path: shown.clone(),
            source,
        })?;
        Dataset::from_json(&text, &shown)
    }

    /// Parses and checks a dataset; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Dataset, DatasetError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let dataset: Dataset =
            serde_path_to_error::deserialize(de).map_err(|e| DatasetError::Parse {
                path: origin.to_owned(),
                reason: format!("at {}: {}", e.path(), e.inner()),
            })?;
        dataset.check(origin)?;
        Ok(dataset)
    }

    /// Checks shapes (each object must read as the client's model) and references.
    pub fn check(&self, origin: &str) -> Result<(), DatasetError> {
        let invalid = |location: String, reason: String| DatasetError::Invalid {
            path: origin.to_owned(),
            location,
            reason,
        };
        fn typed<T: serde::de::DeserializeOwned>(v: &Json) -> Result<T, String> {
            serde_path_to_error::deserialize(v).map_err(|e| {
                let at = e.path().to_string();
                if at == "." {
                    e.inner().to_string()
                } else {
                    format!("at {at}: {}", e.inner())
                }
            })
        }
        fn unique<'a>(
            ids: impl Iterator<Item = (usize, &'a str)>,
            what: &str,
        ) -> Result<HashSet<&'a str>, (String, String)> {
            let mut seen = HashSet::new();
            for (i, id) in ids {
                if !seen.insert(id) {
                    return Err((format!("{what}[{i}]"), format!("duplicate id {id}")));
                }
            }
            Ok(seen)
        }

        let accounts: HashMap<&str, Role> = self
            .accounts
            .iter()
            .map(|a| (a.id.as_str(), a.role))
            .collect();
        for (i, k) in self.api_keys.iter().enumerate() {
            if crate::connect::ApiKey::new(&k.key).is_err() {
                return Err(invalid(
                    format!("api_keys[{i}]"),
                    "empty or malformed key".into(),
                ));
            }
            if !accounts.contains_key(k.account.as_str()) {
                return Err(invalid(
                    format!("api_keys[{i}].account"),
                    format!("unknown account {}", k.account),
                ));
            }
        }
        for role in [Role::Vendor, Role::Provider] {
            if !self
                .api_keys
                .iter()
                .any(|k| accounts.get(k.account.as_str()) == Some(&role))
            {
                return Err(invalid(
                    "api_keys".into(),
                    format!("needs at least one {role:?} key").to_lowercase(),
                ));
            }
        }

        let mut marketplaces = Vec::new();
        for (i, m) in self.marketplaces.iter().enumerate() {
            let m: Marketplace = typed(m).map_err(|r| invalid(format!("marketplaces[{i}]"), r))?;
            marketplaces.push(m);
        }
        let mp_ids = unique(
            marketplaces.iter().map(|m| m.id.as_str()).enumerate(),
            "marketplaces",
        )
        .map_err(|(l, r)| invalid(l, r))?;

        let mut contracts = Vec::new();
        for (i, c) in self.contracts.iter().enumerate() {
            let c: Contract = typed(c).map_err(|r| invalid(format!("contracts[{i}]"), r))?;
            if let Some(mp) = &c.marketplace
                && !mp_ids.contains(mp.id.as_str())
            {
                return Err(invalid(
                    format!("contracts[{i}].marketplace.id"),
                    format!("unknown marketplace {}", mp.id),
                ));
            }
            let provider = c.issuer.as_ref().map(|r| r.id.as_str());
            if provider.and_then(|p| accounts.get(p)) != Some(&Role::Provider) {
                return Err(invalid(
                    format!("contracts[{i}].issuer.id"),
                    "must be a provider account of the dataset".into(),
                ));
            }
            contracts.push(c);
        }
        let contract_ids = unique(
            contracts.iter().map(|c| c.id.as_str()).enumerate(),
            "contracts",
        )
        .map_err(|(l, r)| invalid(l, r))?;

        let mut products = Vec::new();
        for (i, p) in self.products.iter().enumerate() {
            let p: Product = typed(p).map_err(|r| invalid(format!("products[{i}]"), r))?;
            let owner = p.owner.as_ref().map(|r| r.id.as_str());
            if owner.and_then(|o| accounts.get(o)) != Some(&Role::Vendor) {
                return Err(invalid(
                    format!("products[{i}].owner.id"),
                    "must be a vendor account of the dataset".into(),
                ));
            }
            products.push(p);
        }
        let product_ids = unique(
            products.iter().map(|p| p.id.as_str()).enumerate(),
            "products",
        )
        .map_err(|(l, r)| invalid(l, r))?;
        for (product, items) in &self.items {
            if !product_ids.contains(product.as_str()) {
                return Err(invalid(
                    format!("items.{product}"),
                    "unknown product".into(),
                ));
            }
            for (i, item) in items.iter().enumerate() {
                let item: Item =
                    typed(item).map_err(|r| invalid(format!("items.{product}[{i}]"), r))?;
                if item.is_ppu() && item.precision().is_none() {
                    return Err(invalid(
                        format!("items.{product}[{i}].precision"),
                        "a PPU item needs integer or decimal(1|2|4|8)".into(),
                    ));
                }
            }
        }

        let mut asset_ids = HashSet::new();
        for (i, a) in self.assets.iter().enumerate() {
            let a: Asset = typed(a).map_err(|r| invalid(format!("assets[{i}]"), r))?;
            if !asset_ids.insert(a.id.clone()) {
                return Err(invalid(
                    format!("assets[{i}]"),
                    format!("duplicate id {}", a.id),
                ));
            }
            if !product_ids.contains(a.product.id.as_str()) {
                return Err(invalid(
                    format!("assets[{i}].product.id"),
                    format!("unknown product {}", a.product.id),
                ));
            }
            if let Some(c) = &a.contract
                && c.id != PREVIEW_CONTRACT_ID
                && !contract_ids.contains(c.id.as_str())
            {
                return Err(invalid(
                    format!("assets[{i}].contract.id"),
                    format!("unknown contract {}", c.id),
                ));
            }
        }
        if let Some(ext) = &self.extension {
            let key = self.api_keys.iter().find(|k| k.name == ext.api_key);
            match key.map(|k| accounts.get(k.account.as_str())) {
                None => {
                    return Err(invalid(
                        "extension.api_key".into(),
                        format!("no key named {:?} in api_keys", ext.api_key),
                    ));
                }
                Some(Some(Role::Vendor)) => {}
                Some(_) => {
                    return Err(invalid(
                        "extension.api_key".into(),
                        format!("key {:?} is not a vendor account's", ext.api_key),
                    ));
                }
            }
            for (i, s) in ext.schedules.iter().enumerate() {
                for field in ["id", "method"] {
                    if !s[field].is_string() {
                        return Err(invalid(
                            format!("extension.schedules[{i}].{field}"),
                            "missing or not a string".into(),
                        ));
                    }
                }
            }
            for (i, s) in ext.installations.iter().enumerate() {
                if !s["id"].is_string() {
                    return Err(invalid(
                        format!("extension.installations[{i}].id"),
                        "missing or not a string".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The extension the platform side serves.
    pub fn extension(&self) -> ExtensionSetup {
        self.extension
            .clone()
            .unwrap_or_else(ExtensionSetup::fallback)
    }

    pub fn account(&self, id: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.id == id)
    }

    /// The built-in account used when no `--data` is given.
    pub fn default_account() -> Dataset {
        DefaultAccount::new().build()
    }
}

/// A small deterministic generator (splitmix64), so the default dataset is the same on every
/// machine and every version of the random crates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
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

    #[test]
    fn bad_datasets_name_the_place() {
        let mut a = Dataset::default_account();
        a.assets[3]["product"]["id"] = json!("PRD-404");
        let e = a.check("mine.json").expect_err("unknown product");
        assert!(
            e.to_string()
                .contains("mine.json: assets[3].product.id: unknown product PRD-404"),
            "{e}"
        );

        let mut a = Dataset::default_account();
        a.assets[5].as_object_mut().map(|o| o.remove("status"));
        let e = a.check("mine.json").expect_err("missing status");
        assert!(e.to_string().contains("assets[5]"), "{e}");
        assert!(e.to_string().contains("status"), "{e}");

        let e = Dataset::from_json("{\"accounts\": 3}", "x.json").expect_err("not a dataset");
        assert!(
            e.to_string()
                .starts_with("x.json: not a dataset: at accounts"),
            "{e}"
        );
    }

    #[test]
    fn key_entries_hide_the_key() {
        let a = Dataset::default_account();
        let shown = format!("{:?}", a.api_keys);
        assert!(!shown.contains(&a.api_keys[0].key), "{shown}");
    }
}
