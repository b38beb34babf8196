//! The usage file state machine of the reference (section 5.4) with its actor rules: which
//! actor may move a file from which statuses to which, what each action does to the file's
//! records, processing an upload into records, closing records (and the file with its last
//! one), and the provider's review of a pending file. The HTTP layer ([`super::usage_api`])
//! and the sandbox's own provider ([`super::provider`]) both act through it.
//!
//! Legal transitions:
//! - vendor: create → `draft`; upload from `draft|invalid|ready|rejected` → `uploading` →
//!   `processing` → `ready|invalid`; submit `ready` → `pending`; delete
//!   `draft|invalid|ready` → `deleted`;
//! - provider: accept `pending` → `accepted`; reject `pending` → `rejected`; close
//!   `accepted` → `closed` (also when the last record is closed); approve-all `pending` →
//!   `accepted`; reprocess in `accepted|closed`.
//!
//! Every other action answers 400 with the action's stable error code, a wrong actor 403.

use axum::Json;
use axum::body::Bytes;
use chrono::Utc;
use serde_json::{Value as JsonValue, json};
use tracing::warn;

use super::dataset::{Dataset, Role};
use super::error::{ApiError, codes};
use super::processing::{self, FileContext, ProcessingOutcome};
use super::server::{AppState, Origin};
use super::store::{Actor, RecordState, Store, UsageFileState, timestamp};
use connect_client::models::{UsageFileStatus as S, UsageRecordStatus as R};

/// Connect's answer to a request whose fields are wrong: one line per problem.
pub(super) fn validation(errors: Vec<String>) -> ApiError {
    ApiError::bad_request(codes::VALIDATION, "").with_errors(errors)
}

pub(super) fn require_role(actor: &Actor, role: Role, action: &str) -> Result<(), ApiError> {
    if actor.role == role {
        Ok(())
    } else {
        let who = match role {
            Role::Vendor => "vendor",
            Role::Provider => "provider",
        };
        Err(ApiError::forbidden(format!(
            "Only the {who} of a usage file can {action} it."
        )))
    }
}

/// The file, when it exists and the actor may see it.
pub(super) fn visible_file<'s>(
    store: &'s mut Store,
    id: &str,
    actor: &Actor,
) -> Result<&'s mut UsageFileState, ApiError> {
    match store.file_mut(id) {
        Some(f) if f.visible_to(actor) => Ok(f),
        _ => Err(ApiError::not_found("Usage file", id)),
    }
}

pub(super) fn not_allowed(code: &'static str, action: &str, status: &S, allowed: &[S]) -> ApiError {
    let allowed: Vec<&str> = allowed.iter().map(S::as_str).collect();
    ApiError::bad_request(
        code,
        format!(
            "Usage file in status {status} cannot be {action}; allowed in: {}.",
            allowed.join(", ")
        ),
    )
}

/// One action of the state machine: who may do it, from which statuses, and where it leads.
pub(super) struct Action {
    pub(super) role: Role,
    /// As in "only the vendor can submit it".
    pub(super) verb: &'static str,
    /// The file's event name, and the error's wording ("cannot be submitted").
    pub(super) done: &'static str,
    pub(super) code: &'static str,
    pub(super) from: &'static [S],
    /// `None` leaves the status as it is.
    pub(super) to: Option<S>,
}

pub(super) const UPLOAD: Action = Action {
    role: Role::Vendor,
    verb: "upload",
    done: "uploaded",
    code: codes::UPLOAD_NOT_ALLOWED,
    from: &[S::Draft, S::Invalid, S::Ready, S::Rejected],
    to: Some(S::Uploading),
};
pub(super) const SUBMIT: Action = Action {
    role: Role::Vendor,
    verb: "submit",
    done: "submitted",
    code: codes::SUBMIT_NOT_ALLOWED,
    from: &[S::Ready],
    to: Some(S::Pending),
};
pub(super) const DELETE: Action = Action {
    role: Role::Vendor,
    verb: "delete",
    done: "deleted",
    code: codes::DELETE_NOT_ALLOWED,
    from: &[S::Draft, S::Invalid, S::Ready],
    to: Some(S::Deleted),
};
pub(super) const ACCEPT: Action = Action {
    role: Role::Provider,
    verb: "accept",
    done: "accepted",
    code: codes::ACCEPT_NOT_ALLOWED,
    from: &[S::Pending],
    to: Some(S::Accepted),
};
pub(super) const APPROVE_ALL: Action = Action {
    role: Role::Provider,
    verb: "approve",
    done: "accepted",
    code: codes::APPROVE_NOT_ALLOWED,
    from: &[S::Pending],
    to: Some(S::Accepted),
};
pub(super) const REJECT: Action = Action {
    role: Role::Provider,
    verb: "reject",
    done: "rejected",
    code: codes::REJECT_NOT_ALLOWED,
    from: &[S::Pending],
    to: Some(S::Rejected),
};
pub(super) const CLOSE: Action = Action {
    role: Role::Provider,
    verb: "close",
    done: "closed",
    code: codes::CLOSE_NOT_ALLOWED,
    from: &[S::Accepted],
    to: Some(S::Closed),
};
pub(super) const REPROCESS: Action = Action {
    role: Role::Provider,
    verb: "reprocess",
    done: "reprocessed",
    code: codes::REPROCESS_NOT_ALLOWED,
    from: &[S::Accepted, S::Closed],
    to: None,
};

impl Action {
    /// The file, when `actor` may see it (404 otherwise), may act on it (403) and it is in a
    /// status the action starts from (400 with the action's code).
    pub(super) fn permitted<'s>(
        &self,
        store: &'s mut Store,
        id: &str,
        actor: &Actor,
    ) -> Result<&'s mut UsageFileState, ApiError> {
        let file = visible_file(store, id, actor)?;
        require_role(actor, self.role, self.verb)?;
        if !self.from.contains(&file.status) {
            return Err(not_allowed(self.code, self.done, &file.status, self.from));
        }
        Ok(file)
    }
}

/// Moves a file to `to`, records the event and publishes it.
pub(super) fn set_status(app: &AppState, store: &mut Store, id: &str, to: S, actor: &str) {
    let Some(file) = store.file_mut(id) else {
        return;
    };
    let from = file.status.clone();
    if from == to {
        return;
    }
    file.status = to.clone();
    let event = store.log_event(
        "usage_file.status",
        id,
        Some(from.as_str()),
        Some(to.as_str()),
        actor,
    );
    app.publish(event);
}

pub(super) fn stamp(file: &mut UsageFileState, event: &str, actor: &Actor) {
    file.events.insert(
        event.to_owned(),
        json!({"at": timestamp(Utc::now()), "by": actor.reference()}),
    );
}

pub(super) fn detail(file: &UsageFileState, origin: &Origin) -> Json<JsonValue> {
    Json(file.to_json(Some(&origin.0)))
}

/// What processing needs from the dataset.
pub(super) fn file_context(dataset: &Dataset, file: &UsageFileState) -> FileContext {
    let product_id = file.product["id"].as_str().unwrap_or_default().to_owned();
    let product = dataset
        .products
        .iter()
        .find(|p| p["id"] == product_id.as_str());
    let caps = product.map(|p| &p["capabilities"]);
    FileContext {
        schema: file.schema.clone(),
        period: file.period,
        contract_id: file.contract["id"].as_str().unwrap_or_default().to_owned(),
        items: dataset.items.get(&product_id).cloned().unwrap_or_default(),
        reservation_consumption: caps
            .and_then(|c| c["reservation"]["consumption"].as_bool())
            .unwrap_or(false),
        dynamic_items: caps
            .and_then(|c| c["ppu"]["dynamic"].as_bool())
            .unwrap_or(false),
        assets: dataset
            .assets
            .iter()
            .filter(|a| a["product"]["id"] == product_id.as_str())
            .cloned()
            .collect(),
        product_id,
    }
}

/// Processes an upload; an `invalid_upload` fault's detail makes it invalid whatever it holds.
pub(super) async fn run_processing(
    bytes: Bytes,
    ctx: FileContext,
    fault: Option<String>,
) -> ProcessingOutcome {
    match tokio::task::spawn_blocking(move || processing::process(&bytes, &ctx)).await {
        Ok(mut outcome) => {
            if let Some(detail) = fault {
                outcome.error_detail = Some(detail);
            }
            outcome
        }
        Err(e) => {
            warn!(error = %e, "processing task failed");
            ProcessingOutcome {
                rows: Vec::new(),
                categories: Vec::new(),
                error_detail: Some("The file could not be processed.".into()),
            }
        }
    }
}

pub(super) fn start_processing(app: &AppState, id: &str, generation: u64) {
    let mut store = app.store();
    let current = store.file(id).map(|f| (f.generation, f.status.clone()));
    if current == Some((generation, S::Uploading)) {
        if let Some(f) = store.file_mut(id) {
            f.sub_status = Some("processing".into());
        }
        set_status(app, &mut store, id, S::Processing, "system");
    }
}

pub(super) fn finish_processing(
    app: &AppState,
    id: &str,
    generation: u64,
    outcome: ProcessingOutcome,
) {
    let mut store = app.store();
    if store.file(id).map(|f| (f.generation, f.status.clone())) != Some((generation, S::Processing))
    {
        // A newer upload or a reset replaced this one.
        return;
    }
    let now = Utc::now();
    let valid = outcome.is_valid();
    let mut records = Vec::with_capacity(outcome.rows.len());
    for row in outcome.rows {
        records.push(RecordState {
            id: store.new_record_id(now),
            status: row.status(),
            error_details: row.error_details(),
            error_codes: row.error_codes(),
            data: row.data,
            external_billing_id: None,
            external_billing_note: None,
            closed_at: None,
            closed_by: None,
            created: now,
        });
    }
    if let Some(f) = store.file_mut(id) {
        f.records = records;
        f.categories = outcome.categories;
        f.error_detail = outcome.error_detail;
        f.processed = true;
        f.sub_status = Some("processed".into());
    }
    set_status(
        app,
        &mut store,
        id,
        if valid { S::Ready } else { S::Invalid },
        "system",
    );
}

/// Runs an action: checks it is permitted, applies `update`, stamps the event, moves the
/// status.
pub(super) fn transition(
    app: &AppState,
    actor: &Actor,
    origin: &Origin,
    id: &str,
    action: &Action,
    update: impl FnOnce(&mut UsageFileState) -> Result<(), ApiError>,
) -> Result<Json<JsonValue>, ApiError> {
    let mut store = app.store();
    let file = action.permitted(&mut store, id, actor)?;
    update(file)?;
    if action.to.is_some() {
        stamp(file, action.done, actor);
    }
    if let Some(to) = action.to.clone() {
        set_status(app, &mut store, id, to, &actor.key_name);
    }
    let file = visible_file(&mut store, id, actor)?;
    Ok(detail(file, origin))
}

pub(super) fn set_records(file: &mut UsageFileState, from: &[R], to: R) {
    for r in file.records.iter_mut().filter(|r| from.contains(&r.status)) {
        r.status = to.clone();
    }
}

/// What an acceptance does to a file (besides its status).
pub(super) fn accepted(f: &mut UsageFileState, note: Option<String>) {
    f.acceptance_note = note;
    set_records(f, &[R::Valid], R::Approved);
}

/// What a rejection does to a file (besides its status).
pub(super) fn rejected(f: &mut UsageFileState, note: Option<String>) {
    f.rejection_note = note;
    set_records(f, &[R::Valid, R::Approved], R::Rejected);
}

/// What closing a file does to its records: the approved ones are closed, unless the
/// sandbox is set to require a billing id and some have none.
pub(super) fn close_approved_records(
    f: &mut UsageFileState,
    actor: &Actor,
    require_billing: bool,
) -> Result<(), ApiError> {
    let unbilled = f
        .records
        .iter()
        .filter(|r| r.status == R::Approved && r.external_billing_id.is_none())
        .count();
    if require_billing && unbilled > 0 {
        return Err(ApiError::bad_request(
            codes::CLOSE_NOT_ALLOWED,
            format!("{unbilled} records have no external billing id; close them with one first."),
        ));
    }
    let now = Utc::now();
    for r in f.records.iter_mut().filter(|r| r.status == R::Approved) {
        r.status = R::Closed;
        r.closed_at = Some(now);
        r.closed_by = Some(actor.account_id.clone());
    }
    Ok(())
}

/// The sandbox's own provider answers a pending file (see [`super::provider`]).
pub(crate) fn provider_review(
    app: &AppState,
    actor: &Actor,
    id: &str,
    decision: &super::provider::Decision,
) -> Result<(), ApiError> {
    let origin = Origin(String::new());
    match decision {
        super::provider::Decision::Accept(note) => {
            let _ = transition(app, actor, &origin, id, &ACCEPT, |f| {
                accepted(f, Some(note.clone()));
                Ok(())
            })?;
        }
        super::provider::Decision::Reject(note) => {
            let _ = transition(app, actor, &origin, id, &REJECT, |f| {
                rejected(f, Some(note.clone()));
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// Records visible to the actor, as JSON.
pub(super) fn visible_records(store: &Store, actor: &Actor) -> Vec<JsonValue> {
    store
        .files
        .iter()
        .filter(|f| f.visible_to(actor))
        .flat_map(|f| f.records.iter().map(move |r| r.to_json(f)))
        .collect()
}

pub(super) fn visible_record(
    store: &Store,
    id: &str,
    actor: &Actor,
) -> Result<(usize, usize), ApiError> {
    match store.find_record(id) {
        Some((fi, ri)) if store.files[fi].visible_to(actor) => Ok((fi, ri)),
        _ => Err(ApiError::not_found("Usage record", id)),
    }
}

/// What a record is closed with: the id or a note of the vendor's billing of it.
#[derive(Debug, Clone, Default)]
pub(super) struct Billing {
    pub(super) external_billing_id: Option<String>,
    pub(super) external_billing_note: Option<String>,
}

/// Closes one record; closing the last open record of an accepted file closes the file.
pub(super) fn close_one(
    app: &AppState,
    store: &mut Store,
    actor: &Actor,
    id: &str,
    req: &Billing,
) -> Result<JsonValue, ApiError> {
    let (fi, ri) = visible_record(store, id, actor)?;
    require_role(actor, Role::Provider, "close records of")?;
    if req.external_billing_id.is_none() && req.external_billing_note.is_none() {
        return Err(validation(vec![
            "external_billing_id: An external billing id or note is required.".into(),
        ]));
    }
    let file = &mut store.files[fi];
    let record = &mut file.records[ri];
    if record.status != R::Approved {
        return Err(ApiError::bad_request(
            codes::RECORD_CLOSE_NOT_ALLOWED,
            format!(
                "Record {id} is {}; only approved records can be closed.",
                record.status
            ),
        ));
    }
    record.status = R::Closed;
    record.external_billing_id = req.external_billing_id.clone();
    record.external_billing_note = req.external_billing_note.clone();
    record.closed_at = Some(Utc::now());
    record.closed_by = Some(actor.account_id.clone());
    let json = file.records[ri].to_json(file);
    let all_closed = file
        .records
        .iter()
        .all(|r| matches!(r.status, R::Closed | R::Rejected | R::Invalid));
    if all_closed && file.status == S::Accepted {
        stamp(file, "closed", actor);
        let file_id = file.id.clone();
        set_status(app, store, &file_id, S::Closed, &actor.key_name);
    }
    Ok(json)
}
