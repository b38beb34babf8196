//! What each sandbox collection can be filtered, searched, ordered and selected by.
//!
//! The tables are Connect's own: every filter of the collection's list endpoint in the OpenAPI
//! spec (v37) with its lookups and its `search`/`ordering` flags, copied from the parameter
//! descriptions. Around them, the few facts the spec states in prose: filter names that are
//! aliases of another field (`product_id` is `product.id`), date-valued filters, the null
//! sentinel ids, and the closed value sets (statuses) that the server checks.

use std::collections::HashMap;
use std::sync::LazyLock;

/// `(name, type, lookups, search, ordering, null sentinel)` as in the spec.
type Row = (
    &'static str,
    &'static str,
    &'static str,
    bool,
    bool,
    Option<&'static str>,
);

/// How values of a filter are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Integer,
    Boolean,
    DateTime,
}

/// The lookups (operators) a filter allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lookups {
    pub eq: bool,
    pub ne: bool,
    pub order: bool,
    pub like: bool,
    pub list: bool,
    pub null: bool,
}

impl Lookups {
    fn parse(csv: &str) -> Lookups {
        let mut l = Lookups::default();
        for op in csv.split(',') {
            match op {
                "eq" => l.eq = true,
                "ne" => l.ne = true,
                "gt" | "ge" | "lt" | "le" => l.order = true,
                "like" | "ilike" => l.like = true,
                "in" | "out" => l.list = true,
                "null" => l.null = true,
                _ => {}
            }
        }
        l
    }
}

/// One filter of a collection.
#[derive(Debug, Clone)]
pub struct FilterDef {
    pub name: &'static str,
    /// Dotted path of the value in the object; arrays on the way match if any element does.
    pub path: String,
    pub kind: Kind,
    pub lookups: Lookups,
    pub search: bool,
    pub ordering: bool,
    pub null_sentinel: Option<&'static str>,
    /// The accepted values when the field is a closed set (checked on eq/ne/in/out).
    pub choices: Option<&'static [&'static str]>,
}

/// A collection's filters, by name.
#[derive(Debug)]
pub struct CollectionDef {
    pub name: &'static str,
    pub filters: HashMap<&'static str, FilterDef>,
    /// Names `select(...)` accepts besides the filters: the object's top-level fields.
    pub fields: &'static [&'static str],
}

impl CollectionDef {
    pub fn filter(&self, name: &str) -> Option<&FilterDef> {
        self.filters.get(name)
    }

    pub fn search_fields(&self) -> impl Iterator<Item = &FilterDef> {
        self.filters.values().filter(|f| f.search)
    }

    pub fn is_selectable(&self, name: &str) -> bool {
        self.filters.contains_key(name)
            || self.fields.contains(&name)
            || name
                .split_once('.')
                .is_some_and(|(top, _)| self.fields.contains(&top))
    }
}

const CONTRACT_STATUSES: &[&str] = &[
    "new",
    "enrolling",
    "pending",
    "active",
    "terminated",
    "rejected",
];
const CONTRACT_TYPES: &[&str] = &[
    "distribution",
    "program",
    "service",
    "syndication",
    "referral",
];
const ASSET_STATUSES: &[&str] = &[
    "draft",
    "processing",
    "active",
    "terminating",
    "suspended",
    "terminated",
];
const FILE_STATUSES: &[&str] = &[
    "draft",
    "uploading",
    "uploaded",
    "invalid",
    "processing",
    "ready",
    "rejected",
    "pending",
    "accepted",
    "closed",
    "deleted",
];
const SCHEMAS: &[&str] = &["qt", "tr", "cr", "pr"];
const ENVIRONMENTS: &[&str] = &["test", "preview", "production"];
const RECORD_STATUSES: &[&str] = &["valid", "invalid", "approved", "rejected", "closed"];

fn build(
    name: &'static str,
    rows: &[Row],
    aliases: &[(&str, &str)],
    choices: &[(&str, &'static [&'static str])],
    fields: &'static [&'static str],
) -> CollectionDef {
    let mut filters = HashMap::new();
    for &(fname, ty, lookups, search, ordering, sentinel) in rows {
        let path = aliases
            .iter()
            .find(|(a, _)| *a == fname)
            .map(|(_, p)| (*p).to_owned())
            .unwrap_or_else(|| fname.replace("__", "."));
        let kind = match ty {
            "integer" => Kind::Integer,
            "boolean" => Kind::Boolean,
            _ if is_date_filter(fname) => Kind::DateTime,
            _ => Kind::Text,
        };
        filters.insert(
            fname,
            FilterDef {
                name: fname,
                path,
                kind,
                lookups: Lookups::parse(lookups),
                search,
                ordering,
                null_sentinel: sentinel,
                choices: choices.iter().find(|(c, _)| *c == fname).map(|(_, v)| *v),
            },
        );
    }
    CollectionDef {
        name,
        filters,
        fields,
    }
}

fn is_date_filter(name: &str) -> bool {
    name.ends_with(".at")
        || matches!(
            name,
            "created"
                | "updated"
                | "start_date"
                | "end_date"
                | "usage_start_time"
                | "created_time"
                | "billing.next_date"
        )
}

pub static CONTRACTS_DEF: LazyLock<CollectionDef> = LazyLock::new(|| {
    build(
        "contracts",
        CONTRACTS,
        &[],
        &[("status", CONTRACT_STATUSES), ("type", CONTRACT_TYPES)],
        &[
            "id",
            "type",
            "status",
            "name",
            "version",
            "owner",
            "issuer",
            "creator",
            "agreement",
            "marketplace",
            "kind",
            "events",
            "activation",
            "signee",
            "enrolled",
            "note",
        ],
    )
});

const ASSET_FIELDS: &[&str] = &[
    "id",
    "status",
    "external_id",
    "external_uid",
    "product",
    "connection",
    "events",
    "items",
    "params",
    "tiers",
    "marketplace",
    "contract",
    "configuration",
    "template",
    "pending_request",
];
const ASSET_ALIASES: &[(&str, &str)] = &[
    ("created", "events.created.at"),
    ("updated", "events.updated.at"),
    ("hub.id", "connection.hub.id"),
    ("hub.name", "connection.hub.name"),
    ("product.title", "product.name"),
];

pub static ASSETS_DEF: LazyLock<CollectionDef> = LazyLock::new(|| {
    build(
        "assets",
        ASSETS,
        ASSET_ALIASES,
        &[("status", ASSET_STATUSES)],
        ASSET_FIELDS,
    )
});

pub static SUBSCRIPTION_ASSETS_DEF: LazyLock<CollectionDef> = LazyLock::new(|| {
    build(
        "subscriptions/assets",
        SUBSCRIPTION_ASSETS,
        ASSET_ALIASES,
        &[("status", ASSET_STATUSES)],
        ASSET_FIELDS,
    )
});

pub static MARKETPLACES_DEF: LazyLock<CollectionDef> = LazyLock::new(|| {
    build(
        "marketplaces",
        MARKETPLACES,
        &[],
        &[],
        &[
            "id",
            "name",
            "description",
            "owner",
            "icon",
            "zone",
            "hubs",
            "countries",
            "currency",
            "alt_currency_1",
            "alt_currency_2",
            "active_contracts",
            "stats",
            "locales",
            "events",
        ],
    )
});

pub static PRODUCTS_DEF: LazyLock<CollectionDef> = LazyLock::new(|| {
    build(
        "products",
        PRODUCTS,
        &[],
        &[],
        &[
            "id",
            "name",
            "icon",
            "status",
            "owner",
            "capabilities",
            "version",
            "events",
            "short_description",
            "detailed_description",
            "category",
            "visibility",
            "latest",
        ],
    )
});

pub static ITEMS_DEF: LazyLock<CollectionDef> = LazyLock::new(|| {
    build(
        "items",
        ITEMS,
        &[("item_type", "type"), ("usage_data_type", "precision")],
        &[],
        &[
            "id",
            "name",
            "status",
            "external_id",
            "unit",
            "mpn",
            "position",
            "type",
            "local_id",
            "display_name",
            "period",
            "precision",
            "commitment",
            "dynamic",
            "description",
            "events",
        ],
    )
});

pub static USAGE_FILES_DEF: LazyLock<CollectionDef> = LazyLock::new(|| {
    build(
        "usage/files",
        USAGE_FILES,
        &[
            ("created.at", "events.created.at"),
            ("distribution_contract_id", "contract.id"),
            ("marketplace_id", "marketplace.id"),
            ("product_id", "product.id"),
            ("provider_id", "provider.id"),
            ("vendor_id", "vendor.id"),
        ],
        &[
            ("status", FILE_STATUSES),
            ("schema", SCHEMAS),
            ("environment", ENVIRONMENTS),
        ],
        &[
            "id",
            "name",
            "description",
            "note",
            "external_id",
            "status",
            "environment",
            "schema",
            "currency",
            "period",
            "product",
            "contract",
            "marketplace",
            "vendor",
            "provider",
            "acceptance_note",
            "rejection_note",
            "error_detail",
            "stats",
            "events",
        ],
    )
});

/// `GET /devops/event-definitions` takes only `limit` and `offset`.
pub static EVENT_DEFINITIONS_DEF: LazyLock<CollectionDef> = LazyLock::new(|| {
    build(
        "devops/event-definitions",
        &[],
        &[],
        &[],
        &[
            "id",
            "source",
            "type",
            "name",
            "description",
            "category",
            "group",
            "extension_type",
            "object_statuses",
        ],
    )
});

const SCHEDULE_STATUSES: &[&str] = &["enabled", "disabled", "obsolete", "pending"];
const TASK_STATUSES: &[&str] = &[
    "scheduled",
    "rescheduled",
    "processing",
    "succeeded",
    "failed",
    "retrying",
    "skipped",
];

pub static SCHEDULES_DEF: LazyLock<CollectionDef> = LazyLock::new(|| {
    build(
        "devops/services/{extension_id}/environments/{environment_id}/schedules",
        SCHEDULES,
        &[("type", "trigger.type")],
        &[("status", SCHEDULE_STATUSES)],
        &[
            "id",
            "name",
            "description",
            "method",
            "parameter",
            "trigger",
            "environment",
            "events",
            "status",
            "reason",
        ],
    )
});

pub static TASKS_DEF: LazyLock<CollectionDef> = LazyLock::new(|| {
    build(
        "devops/services/{extension_id}/environments/{environment_id}/tasks",
        TASKS,
        &[],
        &[("status", TASK_STATUSES)],
        &[
            "id",
            "object",
            "assignee",
            "status",
            "output",
            "environment",
            "owner",
            "events",
            "retry_count",
            "rescheduled_count",
            "runtime_total",
            "processing_total",
            "installation",
        ],
    )
});

pub static USAGE_RECORDS_DEF: LazyLock<CollectionDef> = LazyLock::new(|| {
    build(
        "usage/records",
        USAGE_RECORDS,
        &[
            ("asset_id", "asset.id"),
            ("asset_external_id", "asset.external_id"),
            ("asset_external_uid", "asset.external_uid"),
            ("item_id", "item.id"),
            ("product.id", "product_id"),
            ("usage_file", "usagefile.id"),
            ("usage_start_time", "start_date"),
            ("created_time", "created_time"),
            ("part_usage_file__hub__id", "hub.id"),
        ],
        &[("status", RECORD_STATUSES), ("usagefile.schema", SCHEMAS)],
        &[
            "id",
            "usagefile",
            "status",
            "start_date",
            "end_date",
            "usage",
            "amount",
            "multiplier",
            "tier",
            "item",
            "asset",
            "category",
            "params",
            "product_id",
            "item_id",
            "asset_id",
            "asset_external_id",
            "asset_external_uid",
            "resource_local_id",
            "external_billing_id",
            "external_billing_note",
            "closed_at",
            "closed_by",
            "error_details",
            "error_codes",
        ],
    )
});

pub static CATEGORIES_DEF: LazyLock<CollectionDef> = LazyLock::new(|| {
    build(
        "categories",
        CATEGORIES,
        &[],
        &[],
        &["id", "name", "description"],
    )
});

// The tables below are generated from the filters of each list endpoint in connect-openapi-v37.yml.
// /contracts
#[rustfmt::skip]
const CONTRACTS: &[Row] = &[
    ("agreement.id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("agreement.name", "string", "eq,ne,like,ilike,in,out", true, true, None),
    ("agreement.owner.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("agreement.product_groups.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("agreement.product_groups.products.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("agreement.sourcing_agreement.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("agreement.sourcing_agreement.type", "string", "eq,ne,like,ilike,in,out", false, false, None),
    ("agreement__id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("agreement__name", "string", "eq,ne,like,ilike,in,out", true, true, None),
    ("agreement__owner__id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("events.created.at", "string", "eq,ne,ge,gt,le,lt,in,out", false, true, None),
    ("events.created.by.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("events.created.by.name", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("events.signed.by.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("events.signed.by.name", "string", "eq,ne,like,ilike,in,out", true, false, None),
    ("id", "string", "eq,ne,like,ilike,null,in,out", true, true, None),
    ("issuer.id", "string", "eq,ne,like,ilike,null,in,out", true, true, None),
    ("issuer.name", "string", "eq,ne,like,ilike,in,out", true, true, None),
    ("kind", "string", "eq,ne,like,ilike,in,out", false, false, None),
    ("marketplace.id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("marketplace.name", "string", "eq,ne,like,ilike,in,out", true, false, None),
    ("marketplace__id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("marketplace__name", "string", "eq,ne,like,ilike,in,out", true, false, None),
    ("owner.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("owner.name", "string", "eq,ne,like,ilike,in,out", true, true, None),
    ("owner__id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("owner__name", "string", "eq,ne,like,ilike,in,out", true, true, None),
    ("partner.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("referral.agreement.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("sourcing.listing.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("sourcing.marketplace.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("sourcing.marketplace.name", "string", "eq,ne,like,ilike,in,out", false, false, None),
    ("sourcing.product.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("sourcing.product.name", "string", "eq,ne,like,ilike,in,out", false, false, None),
    ("status", "string", "eq,ne,like,ilike,in,out", false, true, None),
    ("type", "string", "eq,ne,like,ilike,in,out", false, false, None),
];
// /assets
#[rustfmt::skip]
const ASSETS: &[Row] = &[
    ("configuration", "string", "", false, false, None),
    ("connection.hub.id", "string", "eq,ne,like,ilike,null,in,out", false, false, Some("HB-0000-0000")),
    ("connection.hub.name", "string", "eq,ne,like,ilike,in,out", false, false, None),
    ("connection.id", "string", "eq,ne,like,ilike,null,in,out", false, false, Some("CT-0000-0000-0000")),
    ("connection.provider.id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("connection.provider.name", "string", "eq,ne,like,ilike,in,out", true, false, None),
    ("connection.type", "string", "eq,ne,like,ilike,in,out", false, false, None),
    ("connection.vendor.id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("connection.vendor.name", "string", "eq,ne,like,ilike,in,out", true, false, None),
    ("contract.id", "string", "eq,ne,like,ilike,null,in,out", false, false, Some("CRD-00000-00000-00000")),
    ("created", "string", "gt,lt", false, true, None),
    ("external_id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("external_uid", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("hub.id", "string", "eq,ne,like,ilike,null,in,out", false, false, Some("HB-0000-0000")),
    ("hub.name", "string", "eq,ne,like,ilike,in,out", false, false, None),
    ("id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("items", "string", "", false, false, None),
    ("marketplace.id", "string", "eq,ne,like,ilike,null,in,out", true, true, Some("MP-00000")),
    ("marketplace.name", "string", "eq,ne,like,ilike,in,out", true, true, None),
    ("params.id", "string", "eq,ne,like,ilike,in,out", false, false, None),
    ("params.value", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("pending_request", "string", "", false, false, None),
    ("pending_request.template", "string", "", false, false, None),
    ("product.id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("product.name", "string", "eq,ne,like,ilike,in,out", true, true, None),
    ("product.title", "string", "eq,ne,like,ilike,in,out", true, true, None),
    ("status", "string", "eq,ne,like,ilike,in,out", true, true, None),
    ("template", "string", "", false, false, None),
    ("template.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("tiers.customer.external_id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("tiers.customer.external_uid", "string", "eq,ne,like,ilike,in,out", true, false, None),
    ("tiers.customer.id", "string", "eq,ne,like,ilike,null,in,out", true, true, None),
    ("tiers.customer.name", "string", "eq,ne,like,ilike,null,in,out", true, true, None),
    ("tiers.tier1.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("tiers.tier2.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("updated", "string", "gt,lt", false, true, None),
];
// /subscriptions/assets
#[rustfmt::skip]
const SUBSCRIPTION_ASSETS: &[Row] = &[
    ("billing.next_date", "string", "eq,ne,ge,gt,le,lt,null,in,out", false, true, None),
    ("billing.period.uom", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("connection.hub.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("connection.hub.name", "string", "eq,ne,like,ilike,in,out", false, false, None),
    ("connection.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("connection.provider.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("connection.provider.name", "string", "eq,ne,like,ilike,in,out", false, false, None),
    ("connection.type", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("connection.vendor.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("connection.vendor.name", "string", "eq,ne,like,ilike,in,out", false, false, None),
    ("contract.id", "string", "eq,ne,like,ilike,null,in,out", false, false, Some("CRD-00000-00000-00000")),
    ("events.created.at", "string", "eq,ne,ge,gt,le,lt,in,out", false, true, None),
    ("events.updated.at", "string", "eq,ne,ge,gt,le,lt,in,out", false, false, None),
    ("external_id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("external_uid", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("items", "string", "", false, false, None),
    ("marketplace.id", "string", "eq,ne,like,ilike,null,in,out", false, false, Some("MP-00000")),
    ("marketplace.name", "string", "eq,ne,like,ilike,in,out", false, false, None),
    ("params.id", "string", "eq,ne,like,ilike,in,out", false, false, None),
    ("params.name", "string", "eq,ne,like,ilike,in,out", false, false, None),
    ("params.value", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("pending_request", "string", "", false, false, None),
    ("pending_request.template", "string", "", false, false, None),
    ("product.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("product.name", "string", "eq,ne,like,ilike,in,out", false, false, None),
    ("status", "string", "eq,ne,like,ilike,in,out", false, false, None),
    ("template", "string", "", false, false, None),
    ("tiers.customer.id", "string", "eq,ne,like,ilike,in,out", false, false, None),
    ("tiers.customer.name", "string", "eq,ne,like,ilike,in,out", false, false, None),
    ("tiers.tier1.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("tiers.tier2.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
];
// /marketplaces
#[rustfmt::skip]
const MARKETPLACES: &[Row] = &[
    ("agreements.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("alt_currency_1", "string", "eq,ne,like,ilike,null,in,out", true, true, None),
    ("alt_currency_2", "string", "eq,ne,like,ilike,null,in,out", true, true, None),
    ("countries.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("currency", "string", "eq,ne,like,ilike,null,in,out", true, true, None),
    ("description", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("hubs.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("hubs.name", "string", "eq,ne,like,ilike,in,out", false, false, None),
    ("id", "string", "eq,ne,like,ilike,null,in,out", true, true, None),
    ("locales.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("locales.name", "string", "eq,ne,like,ilike,in,out", false, false, None),
    ("name", "string", "eq,ne,like,ilike,in,out", true, true, None),
    ("owner.id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("owner.name", "string", "eq,ne,like,ilike,in,out", true, false, None),
    ("owner__id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("stats.contracts", "integer", "eq,ne,ge,gt,le,lt,in,out", false, true, None),
    ("stats.hubs", "integer", "eq,ne,ge,gt,le,lt,in,out", false, true, None),
];
// /products
#[rustfmt::skip]
const PRODUCTS: &[Row] = &[
    ("events.created.at", "string", "eq,ne,ge,gt,le,lt,in,out", false, true, None),
    ("events.published.at", "string", "eq,ne,ge,gt,le,lt,null,in,out", false, true, None),
    ("events.published.by.id", "string", "eq,ne,like,ilike,null,in,out", false, true, None),
    ("events.published.by.name", "string", "eq,ne,like,ilike,null,in,out", false, true, None),
    ("events.updated.at", "string", "eq,ne,ge,gt,le,lt,in,out", false, true, None),
    ("events.updated.by.id", "string", "eq,ne,like,ilike,null,in,out", false, true, None),
    ("events.updated.by.name", "string", "eq,ne,like,ilike,null,in,out", false, true, None),
    ("external_id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("groups.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("name", "string", "eq,ne,like,ilike,in,out", true, true, None),
    ("owner.id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("owner.name", "string", "eq,ne,like,ilike,in,out", true, false, None),
    ("purchase_model", "string", "eq,ne,in", false, false, None),
    ("replacement.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("sourcing.marketplaces", "string", "eq,ne,ilike,null,in", false, false, None),
    ("status", "string", "eq,ne,ge,gt,le,lt,in,out", false, false, None),
    ("visibility.catalog", "string", "eq", false, false, None),
    ("visibility.listing", "string", "eq", false, false, None),
    ("visibility.owner", "string", "eq", false, false, None),
    ("visibility.syndication", "string", "eq", false, false, None),
    ("category.id", "string", "eq", false, false, None),
    ("category.parent", "string", "", false, false, None),
];
// /products/{product_product_id}/items
#[rustfmt::skip]
const ITEMS: &[Row] = &[
    ("app.id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("applicability", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("commitment.count", "integer", "eq,ne,ge,gt,le,lt,in,out", false, false, None),
    ("description.value", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("display_name", "string", "eq,ne,like,ilike,in,out", true, false, None),
    ("dynamic", "boolean", "eq,ne", false, false, None),
    ("events.created.at", "string", "eq,ne,ge,gt,le,lt,null,in,out", false, false, None),
    ("events.saleended.at", "string", "eq,ne,ge,gt,le,lt,null,in,out", false, false, None),
    ("events.updated.at", "string", "eq,ne,ge,gt,le,lt,null,in,out", false, false, None),
    ("external_id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("frozen", "boolean", "eq,ne", false, false, None),
    ("group.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("group.mpn", "string", "eq,ne,like,ilike,in,out", false, false, None),
    ("group.name", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("item_type", "string", "eq,ne,like,ilike,in,out", true, false, None),
    ("local_id", "string", "eq,ne,like,ilike,in,out", false, false, None),
    ("mpn", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("name", "string", "eq,ne,like,ilike,in,out", true, false, None),
    ("period", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("replacement.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("status", "string", "eq,ne,like,ilike,in,out", true, false, None),
    ("type", "string", "eq,ne,like,ilike,in,out", true, false, None),
    ("unit.title", "string", "eq,ne,like,ilike,in,out", true, false, None),
    ("usage_data_type", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("verbose_id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("version", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
];
// /usage/files
#[rustfmt::skip]
const USAGE_FILES: &[Row] = &[
    ("contract.id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("contract.name", "string", "eq,ne,like,ilike,null,in,out", true, true, None),
    ("created.at", "string", "ge,gt,le,lt", false, true, None),
    ("distribution_contract_id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("environment", "string", "eq,ne,like,ilike,in,out", true, true, None),
    ("external_id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("id", "string", "eq,ne,like,ilike,null,in,out", true, true, None),
    ("marketplace.id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("marketplace.name", "string", "eq,ne,like,ilike,null,in,out", true, true, None),
    ("marketplace_id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("name", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("product.id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("product.name", "string", "eq,ne,like,ilike,null,in,out", true, true, None),
    ("product_id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("provider.id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("provider.name", "string", "eq,ne,like,ilike,null,in,out", true, true, None),
    ("provider_id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("schema", "string", "eq,ne,like,ilike,in,out", true, true, None),
    ("status", "string", "eq,ne,like,ilike,in,out", false, true, None),
    ("vendor.id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("vendor.name", "string", "eq,ne,like,ilike,null,in,out", true, true, None),
    ("vendor_id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
];
// /usage/records
#[rustfmt::skip]
const USAGE_RECORDS: &[Row] = &[
    ("asset.external_id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("asset.external_uid", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("asset.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("asset_external_id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("asset_external_uid", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("asset_id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("created_time", "string", "eq,ne,ge,gt,le,lt,null,in,out", false, true, None),
    ("end_date", "string", "eq,ne,ge,gt,le,lt,null,in,out", false, false, None),
    ("hub.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("item.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("item_id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("part_usage_file__hub__id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("product.id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("product_id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("start_date", "string", "eq,ne,ge,gt,le,lt,null,in,out", false, false, None),
    ("status", "string", "eq,ne,like,ilike,null,in,out", false, true, None),
    ("usage_file", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("usage_start_time", "string", "eq,ne,ge,gt,le,lt,null,in,out", false, true, None),
    ("usagefile.id", "string", "eq,ne,like,ilike,null,in,out", true, false, None),
    ("usagefile.schema", "string", "eq,ne,like,ilike,in,out", true, false, None),
];
// /usage/files/{file_pk}/categories
#[rustfmt::skip]
const CATEGORIES: &[Row] = &[
    ("id", "string", "eq,ne,like,ilike,in,out", true, false, None),
    ("name", "string", "eq,ne,like,ilike,in,out", true, true, None),
];

// The `runtime_min`, `runtime_max` and `runtime_total` filters of tasks compare numbers with
// decimals, which these tables do not model; the sandbox answers them as unknown filters.
#[rustfmt::skip]
const SCHEDULES: &[Row] = &[
    ("description", "string", "eq,ne,like,ilike,null,in,out", false, true, None),
    ("events.created.at", "string", "eq,ne,ge,gt,le,lt,in,out", false, true, None),
    ("events.last_triggered.at", "string", "eq,ne,ge,gt,le,lt,null,in,out", false, true, None),
    ("events.next_trigger.at", "string", "eq,ne,ge,gt,le,lt,null,in,out", false, true, None),
    ("events.updated.at", "string", "eq,ne,ge,gt,le,lt,in,out", false, true, None),
    ("id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("method", "string", "eq,ne,like,ilike,in,out", false, true, None),
    ("name", "string", "eq,ne,like,ilike,in,out", false, true, None),
    ("status", "string", "eq,ne,like,ilike,in,out", false, true, None),
    ("type", "string", "eq,ne,like,ilike,in,out", false, true, None),
];

#[rustfmt::skip]
const TASKS: &[Row] = &[
    ("assignee", "string", "eq,ne,like,ilike,null,in,out", false, true, None),
    ("events.created.at", "string", "eq,ne,ge,gt,le,lt,in,out", false, true, None),
    ("events.rescheduled.at", "string", "eq,ne,ge,gt,le,lt,null,in,out", false, true, None),
    ("id", "string", "eq,ne,like,ilike,null,in,out", false, false, None),
    ("object.category", "string", "eq,ne,like,ilike,in,out", false, true, None),
    ("object.id", "string", "eq,ne,like,ilike,in,out", false, false, None),
    ("object.type", "string", "eq,ne,like,ilike,in,out", false, true, None),
    ("rescheduled_count", "integer", "eq,ne,ge,gt,le,lt,in,out", false, true, None),
    ("status", "string", "eq,ne,like,ilike,in,out", false, true, None),
];
