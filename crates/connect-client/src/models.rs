//! Typed Connect objects: the fields the usage pipeline reads are typed, everything else is
//! tolerated and ignored. Names follow Connect's OpenAPI spec (v37); where real payloads differ
//! from the spec (asset item quantities sent as strings, contracts carrying their marketplace)
//! the models accept what Connect actually sends.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Deserializer, Serialize};

/// `{id, name, icon}`: how Connect refers to accounts, products, marketplaces and the like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Ref {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
}

/// `{id}` only: how objects are referenced in request bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRef {
    pub id: String,
}

impl IdRef {
    pub fn new(id: impl Into<String>) -> IdRef {
        IdRef { id: id.into() }
    }
}

/// `{at, by}` in an object's `events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at: DateTime<FixedOffset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Ref>,
}

/// Declares a string enum that keeps values it does not know (Connect adds statuses over
/// time; an unknown one must not make a whole page unreadable).
macro_rules! open_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)*
            /// A value this version does not know.
            Other(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)*
                    $name::Other(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $($text => $name::$variant,)*
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok($name::from(s.as_str()))
            }
        }
    };
}

open_enum!(
    /// `status` of a contract.
    ContractStatus {
        New => "new",
        Enrolling => "enrolling",
        Pending => "pending",
        Active => "active",
        Terminated => "terminated",
        Rejected => "rejected",
    }
);

open_enum!(
    /// `type` of a contract.
    ContractType {
        Distribution => "distribution",
        Program => "program",
        Service => "service",
        Syndication => "syndication",
        Referral => "referral",
    }
);

open_enum!(
    /// `status` of an asset (subscription).
    AssetStatus {
        Draft => "draft",
        Processing => "processing",
        Active => "active",
        Terminating => "terminating",
        Suspended => "suspended",
        Terminated => "terminated",
    }
);

open_enum!(
    /// `status` of a usage file; see the state machine in the reference (section 5.4).
    UsageFileStatus {
        Draft => "draft",
        Uploading => "uploading",
        Uploaded => "uploaded",
        Invalid => "invalid",
        Processing => "processing",
        Ready => "ready",
        Rejected => "rejected",
        Pending => "pending",
        Accepted => "accepted",
        Closed => "closed",
        Deleted => "deleted",
    }
);

open_enum!(
    /// `status` of a usage record.
    UsageRecordStatus {
        Valid => "valid",
        Invalid => "invalid",
        Approved => "approved",
        Rejected => "rejected",
        Closed => "closed",
    }
);

/// A contract (`/contracts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contract {
    pub id: String,
    #[serde(rename = "type")]
    pub contract_type: ContractType,
    pub status: ContractStatus,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub version: Option<i64>,
    /// Distribution contracts carry their marketplace (absent from the spec, present in real
    /// payloads and filterable).
    #[serde(default)]
    pub marketplace: Option<Ref>,
    #[serde(default)]
    pub owner: Option<Ref>,
    #[serde(default)]
    pub issuer: Option<Ref>,
    #[serde(default)]
    pub kind: Option<String>,
}

/// An asset's connection: its hub, provider and vendor, and whether it is a test, preview or
/// production subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub id: String,
    #[serde(rename = "type")]
    pub connection_type: String,
    #[serde(default)]
    pub provider: Option<Ref>,
    #[serde(default)]
    pub vendor: Option<Ref>,
    #[serde(default)]
    pub hub: Option<Ref>,
}

/// An item line of an asset. Connect sends `quantity` as a string (`"unlimited"` too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetItem {
    pub id: String,
    #[serde(default)]
    pub global_id: Option<String>,
    #[serde(default)]
    pub mpn: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub item_type: Option<String>,
    #[serde(default, rename = "type")]
    pub unit_type: Option<String>,
    #[serde(default)]
    pub period: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub quantity: Option<String>,
}

/// A parameter of an asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetParam {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub value: Option<String>,
}

/// An asset, also called a subscription (`/assets`, `/subscriptions/assets`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Asset {
    pub id: String,
    pub status: AssetStatus,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub external_uid: Option<String>,
    pub product: Ref,
    #[serde(default)]
    pub connection: Option<Connection>,
    #[serde(default)]
    pub contract: Option<Ref>,
    #[serde(default)]
    pub marketplace: Option<Ref>,
    #[serde(default)]
    pub items: Vec<AssetItem>,
    #[serde(default)]
    pub params: Vec<AssetParam>,
    #[serde(default)]
    pub events: Option<AssetEvents>,
}

/// `events` of an asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetEvents {
    #[serde(default)]
    pub created: Option<Event>,
    #[serde(default)]
    pub updated: Option<Event>,
}

/// A marketplace (`/marketplaces`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marketplace {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub icon: Option<String>,
    #[serde(default)]
    pub owner: Option<Ref>,
    #[serde(default)]
    pub zone: Option<String>,
}

/// The pay-as-you-go capability of a product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PpuCapability {
    /// `QT`, `TR`, `CR` or `PR`, upper-case on products.
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub dynamic: bool,
    #[serde(default)]
    pub future: bool,
    #[serde(default)]
    pub predictive: bool,
}

/// Usage reporting for reservation items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReservationCapability {
    #[serde(default)]
    pub consumption: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Capabilities {
    /// `None` when pay-as-you-go is disabled.
    #[serde(default)]
    pub ppu: Option<PpuCapability>,
    #[serde(default)]
    pub reservation: Option<ReservationCapability>,
}

/// A product (`/products/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub icon: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub owner: Option<Ref>,
    #[serde(default)]
    pub capabilities: Capabilities,
}

impl Product {
    /// The PPU schema (`QT`, `TR`, ...) when pay-as-you-go is enabled.
    pub fn ppu_schema(&self) -> Option<&str> {
        self.capabilities.ppu.as_ref()?.schema.as_deref()
    }

    /// True for products that report quantities (the `QT` schema).
    pub fn is_qt(&self) -> bool {
        self.ppu_schema()
            .is_some_and(|s| s.eq_ignore_ascii_case("qt"))
    }
}

/// How many decimals an item's usage may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    Integer,
    /// `decimal(n)` with n in 1, 2, 4, 8.
    Decimal(u8),
}

impl Precision {
    /// Parses `integer`, `decimal(2)` and the capitalised forms, case-insensitively.
    pub fn parse(text: &str) -> Option<Precision> {
        let t = text.trim().to_ascii_lowercase();
        if t == "integer" {
            return Some(Precision::Integer);
        }
        let n: u8 = t
            .strip_prefix("decimal(")?
            .strip_suffix(')')?
            .parse()
            .ok()?;
        matches!(n, 1 | 2 | 4 | 8).then_some(Precision::Decimal(n))
    }

    /// Decimal places allowed.
    pub fn places(self) -> u32 {
        match self {
            Precision::Integer => 0,
            Precision::Decimal(n) => u32::from(n),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Precision::Integer => f.write_str("integer"),
            Precision::Decimal(n) => write!(f, "decimal({n})"),
        }
    }
}

/// An item of a product (`/products/{id}/items`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    #[serde(default)]
    pub local_id: Option<String>,
    #[serde(default)]
    pub mpn: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    /// `ppu` or `reservation` (Connect writes either case).
    #[serde(default, rename = "type")]
    pub item_type: Option<String>,
    /// `integer`, `decimal(1)`, ... (see [`Item::precision`]).
    #[serde(default)]
    pub precision: Option<String>,
    #[serde(default)]
    pub unit: Option<ItemUnit>,
    #[serde(default)]
    pub period: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub dynamic: bool,
}

impl Item {
    pub fn is_ppu(&self) -> bool {
        self.item_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("ppu"))
    }

    pub fn precision(&self) -> Option<Precision> {
        self.precision.as_deref().and_then(Precision::parse)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemUnit {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub unit: Option<String>,
}

/// `period` of a usage file: first and last day, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsagePeriod {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

/// `stats` of a usage file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageFileStats {
    #[serde(default)]
    pub uploaded: u64,
    #[serde(default)]
    pub validated: u64,
    #[serde(default)]
    pub pending: u64,
    #[serde(default)]
    pub accepted: u64,
    #[serde(default)]
    pub closed: u64,
    #[serde(default)]
    pub billed: u64,
}

/// `records` counters of a usage file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageFileRecordCounts {
    #[serde(default)]
    pub valid: u64,
    #[serde(default)]
    pub invalid: u64,
    #[serde(default)]
    pub closed: u64,
}

/// `events` of a usage file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageFileEvents {
    #[serde(default)]
    pub created: Option<Event>,
    #[serde(default)]
    pub uploaded: Option<Event>,
    #[serde(default)]
    pub submitted: Option<Event>,
    #[serde(default)]
    pub accepted: Option<Event>,
    #[serde(default)]
    pub rejected: Option<Event>,
    #[serde(default)]
    pub closed: Option<Event>,
    #[serde(default)]
    pub deleted: Option<Event>,
}

/// A usage file (`/usage/files`). The detail GET adds the `*_uri` links and record counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageFile {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    pub status: UsageFileStatus,
    #[serde(default)]
    pub sub_status: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
    /// Lower-case here (`qt`), unlike products.
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub period: Option<UsagePeriod>,
    #[serde(default)]
    pub product: Option<Ref>,
    #[serde(default)]
    pub contract: Option<Ref>,
    #[serde(default)]
    pub marketplace: Option<Ref>,
    #[serde(default)]
    pub vendor: Option<Ref>,
    #[serde(default)]
    pub provider: Option<Ref>,
    #[serde(default)]
    pub acceptance_note: Option<String>,
    #[serde(default)]
    pub rejection_note: Option<String>,
    #[serde(default)]
    pub error_detail: Option<String>,
    #[serde(default)]
    pub stats: Option<UsageFileStats>,
    #[serde(default)]
    pub records: Option<UsageFileRecordCounts>,
    #[serde(default)]
    pub events: Option<UsageFileEvents>,
    #[serde(default)]
    pub usage_file_uri: Option<String>,
    #[serde(default)]
    pub processed_file_uri: Option<String>,
}

impl UsageFile {
    /// When the file was last uploaded into (`events.uploaded.at`), in Unix seconds.
    pub fn last_upload(&self) -> Option<i64> {
        Some(self.events.as_ref()?.uploaded.as_ref()?.at.timestamp())
    }

    /// Whether the file holds `records` rows, as far as its counters tell (none: yes).
    pub fn holds_count(&self, records: usize) -> bool {
        self.stats
            .as_ref()
            .is_none_or(|s| s.uploaded == records as u64)
    }
}

/// The body of `POST /usage/files`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewUsageFile {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub period: UsagePeriod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    pub product: IdRef,
    pub contract: IdRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

/// The body of `PUT /usage/files/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageFileUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

/// The item of a usage record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordItem {
    pub id: String,
    #[serde(default)]
    pub local_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub mpn: Option<String>,
    #[serde(default)]
    pub precision: Option<String>,
    #[serde(default, rename = "type")]
    pub item_type: Option<String>,
    #[serde(default)]
    pub unit: Option<String>,
}

/// The asset of a usage record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordAsset {
    pub id: String,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub external_uid: Option<String>,
}

/// The file a usage record belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordFile {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
}

/// A usage record (`/usage/records`), one row of an uploaded workbook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub id: String,
    #[serde(default)]
    pub status: Option<UsageRecordStatus>,
    pub usagefile: RecordFile,
    #[serde(default)]
    pub start_date: Option<DateTime<FixedOffset>>,
    #[serde(default)]
    pub end_date: Option<DateTime<FixedOffset>>,
    /// Null on invalid records whose quantity is not a number.
    #[serde(default)]
    pub usage: Option<f64>,
    #[serde(default)]
    pub amount: Option<f64>,
    #[serde(default)]
    pub item: Option<RecordItem>,
    #[serde(default)]
    pub asset: Option<RecordAsset>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub product_id: Option<String>,
    #[serde(default)]
    pub external_billing_id: Option<String>,
    #[serde(default)]
    pub external_billing_note: Option<String>,
    #[serde(default)]
    pub closed_at: Option<DateTime<FixedOffset>>,
    /// Why a record is `invalid` (sandbox and real processing reports).
    #[serde(default)]
    pub error_details: Option<String>,
    #[serde(default)]
    pub error_codes: Vec<String>,
}

/// The answer of `GET /usage/products/{id}/template`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageTemplate {
    pub template_link: String,
}

/// One item of a `POST /usage/records/close-records` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseRecord {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_billing_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_billing_note: Option<String>,
}

/// One item of the 206 answer to `close-records`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloseRecordResult {
    pub id: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub error_details: Option<serde_json::Value>,
    #[serde(default)]
    pub error_codes: Option<serde_json::Value>,
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(serde_json::Value::Bool(b)) => Some(b.to_string()),
        Some(other) => {
            return Err(serde::de::Error::custom(format!(
                "expected a string or a number, found {other}"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_parses_every_spelling() {
        assert_eq!(Precision::parse("integer"), Some(Precision::Integer));
        assert_eq!(Precision::parse("Integer"), Some(Precision::Integer));
        assert_eq!(Precision::parse("decimal(2)"), Some(Precision::Decimal(2)));
        assert_eq!(Precision::parse("Decimal(8)"), Some(Precision::Decimal(8)));
        assert_eq!(Precision::parse("decimal(3)"), None);
        assert_eq!(Precision::parse("float"), None);
        assert_eq!(Precision::Decimal(4).to_string(), "decimal(4)");
    }

    #[test]
    fn unknown_statuses_and_fields_are_tolerated() {
        let f: UsageFile = serde_json::from_value(serde_json::json!({
            "id": "UF-2024-04-0001-0001",
            "status": "archived",
            "brand_new_field": {"x": 1},
            "period": {"from": "2024-04-01", "to": "2024-04-30"}
        }))
        .expect("decodes");
        assert_eq!(f.status, UsageFileStatus::Other("archived".into()));
        assert_eq!(f.status.to_string(), "archived");
        let s: UsageFileStatus =
            serde_json::from_value(serde_json::json!("ready")).expect("decodes");
        assert_eq!(s, UsageFileStatus::Ready);
    }

    #[test]
    fn asset_item_quantities_come_as_strings_or_numbers() {
        let a: Asset = serde_json::from_value(serde_json::json!({
            "id": "AS-1", "status": "active", "product": {"id": "PRD-1"},
            "items": [{"id": "PRD-1-0001", "quantity": "unlimited"}, {"id": "PRD-1-0002", "quantity": 5}]
        }))
        .expect("decodes");
        assert_eq!(a.items[0].quantity.as_deref(), Some("unlimited"));
        assert_eq!(a.items[1].quantity.as_deref(), Some("5"));
    }
}
