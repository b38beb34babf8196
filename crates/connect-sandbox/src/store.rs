//! The sandbox's state: the dataset, the usage files and records created through the API,
//! the event log (every usage file change) and the request log.
//!
//! Files and records are kept as typed structs and rendered to Connect's JSON shapes on the
//! way out, so the state machine works on types and the wire shape lives in one place.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value as Json, json};

use super::dataset::{Dataset, Role};
use super::processing::RowData;
use connect_client::models::{UsageFileStatus, UsageRecordStatus};

/// The account a request acts for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// The key's name in the dataset (never the key itself).
    pub key_name: String,
    pub account_id: String,
    pub account_name: String,
    pub role: Role,
}

impl Actor {
    pub fn reference(&self) -> Json {
        json!({"id": self.account_id, "name": self.account_name})
    }
}

/// Formats a time as Connect does: `2024-05-01T10:00:00+00:00`.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// One usage record (a row of an uploaded workbook).
#[derive(Debug, Clone)]
pub struct RecordState {
    pub id: String,
    pub status: UsageRecordStatus,
    /// What the workbook row said.
    pub data: RowData,
    pub error_details: Option<String>,
    pub error_codes: Vec<String>,
    pub external_billing_id: Option<String>,
    pub external_billing_note: Option<String>,
    pub closed_at: Option<DateTime<Utc>>,
    pub closed_by: Option<String>,
    pub created: DateTime<Utc>,
}

fn decimal_json(text: &Option<String>) -> Json {
    match text.as_deref().map(str::parse::<f64>) {
        Some(Ok(v)) => serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number),
        _ => Json::Null,
    }
}

impl RecordState {
    pub fn to_json(&self, file: &UsageFileState) -> Json {
        let d = &self.data;
        let item = d.item.clone().unwrap_or(Json::Null);
        let asset = d.asset.clone().unwrap_or(Json::Null);
        json!({
            "id": self.id,
            "usagefile": {"id": file.id, "name": file.name, "schema": file.schema, "currency": file.currency},
            "status": self.status.as_str(),
            "start_date": d.start.map(timestamp),
            "end_date": d.end.map(timestamp),
            "usage": decimal_json(&d.usage),
            "amount": decimal_json(&d.amount),
            "multiplier": 1,
            "tier": d.tier,
            "item": item,
            "asset": asset,
            "category": d.category,
            "params": d.params,
            "product_id": file.product["id"],
            "item_id": item.get("id").cloned().unwrap_or(Json::Null),
            "asset_id": asset.get("id").cloned().unwrap_or(Json::Null),
            "asset_external_id": asset.get("external_id").cloned().unwrap_or(Json::Null),
            "asset_external_uid": asset.get("external_uid").cloned().unwrap_or(Json::Null),
            "resource_local_id": item.get("local_id").cloned().unwrap_or(Json::Null),
            "external_billing_id": self.external_billing_id,
            "external_billing_note": self.external_billing_note,
            "closed_at": self.closed_at.map(timestamp),
            "closed_by": self.closed_by,
            "error_details": self.error_details,
            "error_codes": self.error_codes,
            "created_time": timestamp(self.created),
        })
    }

    /// The admin dump adds what only the sandbox knows: the vendor's record id and note and
    /// the spreadsheet row.
    pub fn to_dump(&self, file: &UsageFileState) -> Json {
        let mut j = self.to_json(file);
        j["record_id"] = json!(self.data.record_id);
        j["record_note"] = json!(self.data.record_note);
        j["row"] = json!(self.data.row);
        j
    }
}

/// The last upload of a file.
#[derive(Debug, Clone)]
pub struct Upload {
    pub filename: String,
    pub bytes: Bytes,
}

/// One usage file.
#[derive(Debug, Clone)]
pub struct UsageFileState {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub note: Option<String>,
    pub external_id: Option<String>,
    pub status: UsageFileStatus,
    pub sub_status: Option<String>,
    pub environment: String,
    pub schema: String,
    pub currency: Option<String>,
    /// First and last day; Connect does not require one at creation.
    pub period: Option<(NaiveDate, NaiveDate)>,
    pub product: Json,
    pub contract: Json,
    pub marketplace: Json,
    pub vendor: Json,
    pub provider: Json,
    pub acceptance_note: Option<String>,
    pub rejection_note: Option<String>,
    pub error_detail: Option<String>,
    /// `events`: created, uploaded, submitted, accepted, rejected, closed, deleted.
    pub events: serde_json::Map<String, Json>,
    pub upload: Option<Upload>,
    /// The last upload was processed (its processed workbook can be downloaded).
    pub processed: bool,
    pub records: Vec<RecordState>,
    pub categories: Vec<Json>,
    /// Set by every upload from a sequence that survives resets, so that a late processing
    /// task of an older upload (or of a file forgotten by a reset) is dropped.
    pub generation: u64,
    pub uploads: u32,
}

impl UsageFileState {
    pub fn vendor_id(&self) -> &str {
        self.vendor["id"].as_str().unwrap_or_default()
    }

    pub fn provider_id(&self) -> &str {
        self.provider["id"].as_str().unwrap_or_default()
    }

    /// Whether `actor` may see this file.
    pub fn visible_to(&self, actor: &Actor) -> bool {
        match actor.role {
            Role::Vendor => self.vendor_id() == actor.account_id,
            Role::Provider => self.provider_id() == actor.account_id,
        }
    }

    fn count_records(&self, pred: impl Fn(&RecordState) -> bool) -> usize {
        self.records.iter().filter(|r| pred(r)).count()
    }

    /// The list shape; `origin` (scheme and host) builds the download links of the detail.
    pub fn to_json(&self, detail: Option<&str>) -> Json {
        let valid = self.count_records(|r| r.status != UsageRecordStatus::Invalid);
        let invalid = self.count_records(|r| r.status == UsageRecordStatus::Invalid);
        let closed = self.count_records(|r| r.status == UsageRecordStatus::Closed);
        let approved = self.count_records(|r| r.status == UsageRecordStatus::Approved);
        let pending = if self.status == UsageFileStatus::Pending {
            valid
        } else {
            0
        };
        let mut j = json!({
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "note": self.note,
            "external_id": self.external_id,
            "status": self.status.as_str(),
            "environment": self.environment,
            "schema": self.schema,
            "currency": self.currency,
            "period": self.period.map(|(from, to)| json!({"from": from.to_string(), "to": to.to_string()})),
            "product": self.product,
            "contract": self.contract,
            "marketplace": self.marketplace,
            "vendor": self.vendor,
            "provider": self.provider,
            "acceptance_note": self.acceptance_note,
            "rejection_note": self.rejection_note,
            "error_detail": self.error_detail,
            "stats": {
                "uploaded": self.records.len(),
                "validated": valid,
                "pending": pending,
                "accepted": approved + closed,
                "closed": closed,
                "billed": self.count_records(|r| r.external_billing_id.is_some()),
            },
            "events": self.events,
        });
        if let Some(origin) = detail {
            j["sub_status"] = json!(self.sub_status);
            j["records"] = json!({"valid": valid, "invalid": invalid, "closed": closed});
            if self.upload.is_some() {
                j["usage_file_uri"] = json!(format!(
                    "{origin}/sandbox/files/{}/usage_file.xlsx",
                    self.id
                ));
            }
            if self.processed {
                j["processed_file_uri"] = json!(format!(
                    "{origin}/sandbox/files/{}/processed_file.xlsx",
                    self.id
                ));
            }
        }
        j
    }

    /// The admin dump: the detail plus upload facts and every record.
    pub fn to_dump(&self, origin: &str) -> Json {
        let mut j = self.to_json(Some(origin));
        j["uploads"] = json!(self.uploads);
        j["upload_filename"] = json!(self.upload.as_ref().map(|u| u.filename.clone()));
        j["record_list"] = Json::Array(self.records.iter().map(|r| r.to_dump(self)).collect());
        j
    }
}

/// What happened to a usage file, in order; the websocket side will turn these into tasks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SandboxEvent {
    pub seq: u64,
    pub at: String,
    /// `usage_file.created`, `usage_file.status`, `usage_file.updated`.
    pub kind: String,
    pub object_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The key name of the actor, or `system` for processing.
    pub actor: String,
}

/// One API request, as the request log keeps it (no headers, so no keys).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestEntry {
    pub seq: u64,
    pub at: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub actor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    pub duration_ms: u64,
    /// The request's non-secret identifying headers: `user-agent` and the extension
    /// runner's `eaas_ext_id`, `eaas_task_id`, `eaas_task_type`, `ext-traceparent`.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, String>,
}

/// The headers the request log keeps (never `authorization`).
pub const LOGGED_HEADERS: [&str; 5] = [
    "user-agent",
    "eaas_ext_id",
    "eaas_task_id",
    "eaas_task_type",
    "ext-traceparent",
];

/// How many requests the request log keeps.
pub const REQUEST_LOG_LIMIT: usize = 20_000;

/// Everything the sandbox knows, behind one lock.
#[derive(Debug)]
pub struct Store {
    pub dataset: Dataset,
    pub files: Vec<UsageFileState>,
    file_index: HashMap<String, usize>,
    pub events: Vec<SandboxEvent>,
    pub requests: VecDeque<RequestEntry>,
    /// What the vendor's acknowledgement endpoint received, one entry per idempotency key.
    pub acknowledgements: Vec<Json>,
    next_file: u64,
    next_record: u64,
    next_event: u64,
    next_request: u64,
    /// Never reset, see [`UsageFileState::generation`].
    next_upload: u64,
}

impl Store {
    pub fn new(dataset: Dataset) -> Store {
        Store {
            dataset,
            files: Vec::new(),
            file_index: HashMap::new(),
            events: Vec::new(),
            requests: VecDeque::new(),
            acknowledgements: Vec::new(),
            next_file: 1,
            next_record: 1,
            next_event: 1,
            next_request: 1,
            next_upload: 1,
        }
    }

    /// Drops every file, record, event and logged request.
    pub fn reset(&mut self, dataset: Dataset) {
        let next_upload = self.next_upload;
        *self = Store::new(dataset);
        self.next_upload = next_upload;
    }

    /// A number no earlier upload had.
    pub fn new_upload_generation(&mut self) -> u64 {
        let n = self.next_upload;
        self.next_upload += 1;
        n
    }

    /// `UF-YYYY-MM-####-####`
    pub fn new_file_id(&mut self, now: DateTime<Utc>) -> String {
        let n = self.next_file;
        self.next_file += 1;
        format!(
            "UF-{}-{:04}-{:04}",
            now.format("%Y-%m"),
            (n / 10_000) % 10_000,
            n % 10_000
        )
    }

    /// `UR-YYYY-MM-####-####-####-####`
    pub fn new_record_id(&mut self, now: DateTime<Utc>) -> String {
        let n = self.next_record;
        self.next_record += 1;
        format!(
            "UR-{}-{:04}-{:04}-{:04}-{:04}",
            now.format("%Y-%m"),
            (n / 1_000_000_000_000) % 10_000,
            (n / 100_000_000) % 10_000,
            (n / 10_000) % 10_000,
            n % 10_000
        )
    }

    pub fn insert_file(&mut self, file: UsageFileState) {
        self.file_index.insert(file.id.clone(), self.files.len());
        self.files.push(file);
    }

    pub fn file(&self, id: &str) -> Option<&UsageFileState> {
        self.file_index.get(id).map(|&i| &self.files[i])
    }

    pub fn file_mut(&mut self, id: &str) -> Option<&mut UsageFileState> {
        self.file_index.get(id).map(|&i| &mut self.files[i])
    }

    /// Finds a record by id: `(file index, record index)`.
    pub fn find_record(&self, id: &str) -> Option<(usize, usize)> {
        self.files
            .iter()
            .enumerate()
            .find_map(|(fi, f)| f.records.iter().position(|r| r.id == id).map(|ri| (fi, ri)))
    }

    /// Appends to the event log and returns the event.
    pub fn log_event(
        &mut self,
        kind: &str,
        object_id: &str,
        from: Option<&str>,
        to: Option<&str>,
        actor: &str,
    ) -> SandboxEvent {
        let event = SandboxEvent {
            seq: self.next_event,
            at: timestamp(Utc::now()),
            kind: kind.to_owned(),
            object_id: object_id.to_owned(),
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            actor: actor.to_owned(),
        };
        self.next_event += 1;
        self.events.push(event.clone());
        event
    }

    pub fn log_request(&mut self, mut entry: RequestEntry) {
        entry.seq = self.next_request;
        self.next_request += 1;
        if self.requests.len() >= REQUEST_LOG_LIMIT {
            self.requests.pop_front();
        }
        self.requests.push_back(entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ids_have_connect_formats() {
        let mut s = Store::new(Dataset::default_account());
        let now = Utc
            .with_ymd_and_hms(2024, 5, 1, 0, 0, 0)
            .single()
            .expect("valid");
        assert_eq!(s.new_file_id(now), "UF-2024-05-0000-0001");
        assert_eq!(s.new_file_id(now), "UF-2024-05-0000-0002");
        assert_eq!(s.new_record_id(now), "UR-2024-05-0000-0000-0000-0001");
    }
}
