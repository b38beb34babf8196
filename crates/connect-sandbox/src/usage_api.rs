//! The usage files and records API over HTTP: routes, request bodies and their validation
//! (Connect's field errors), multipart uploads, and the answers; what the actions do to a
//! file is the state machine's ([`super::usage_files`]).
//!
//! Every action the state machine does not allow answers 400 with the action's stable error
//! code, a wrong actor 403, a file the actor cannot see 404.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Extension, Multipart, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use chrono::{NaiveDate, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value as JsonValue, json};

use super::dataset::Role;
use super::error::{ApiError, codes};
use super::faults::InvalidUploadFault;
use super::filters::{CATEGORIES_DEF, USAGE_FILES_DEF, USAGE_RECORDS_DEF};
use super::processing;
use super::query::CollectionQuery;
use super::server::{AppState, Origin};
use super::store::{Actor, Upload, UsageFileState};
use super::usage_files::{
    ACCEPT, APPROVE_ALL, Billing, CLOSE, DELETE, REJECT, REPROCESS, SUBMIT, UPLOAD, accepted,
    close_approved_records, close_one, detail, file_context, finish_processing, not_allowed,
    rejected, require_role, run_processing, set_records, set_status, stamp, start_processing,
    transition, validation, visible_file, visible_record, visible_records,
};
use connect_client::models::{UsageFileStatus as S, UsageRecordStatus as R};

/// Largest upload accepted (a million-record workbook is about 40 MB).
pub const UPLOAD_LIMIT: usize = 512 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/usage/files", get(list_files).post(create_file))
        .route("/usage/files/{id}", get(get_file).put(update_file))
        .route(
            "/usage/files/{id}/upload",
            post(upload).layer(DefaultBodyLimit::max(UPLOAD_LIMIT)),
        )
        .route("/usage/files/{id}/submit", post(submit))
        .route("/usage/files/{id}/accept", post(accept))
        .route("/usage/files/{id}/reject", post(reject))
        .route("/usage/files/{id}/close", post(close))
        .route("/usage/files/{id}/delete", post(delete))
        .route("/usage/files/{id}/reprocess", post(reprocess))
        .route("/usage/files/{id}/approve-all", put(approve_all))
        .route("/usage/files/{id}/categories", get(list_categories))
        .route("/usage/products/{id}/template", get(template))
        .route("/usage/records", get(list_records))
        .route("/usage/records/close-records", post(close_records))
        .route("/usage/records/{id}", get(get_record).put(update_record))
        .route("/usage/records/{id}/close", post(close_record))
}

/// Parses a JSON body; an absent body, `{}` and `null` give the default (real clients send
/// all three for actions without parameters).
fn body<T: DeserializeOwned + Default>(bytes: &Bytes) -> Result<T, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| validation(vec!["The request body is not UTF-8.".into()]))?
        .trim();
    if text.is_empty() || text == "null" {
        return Ok(T::default());
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let at = e.path().to_string();
        validation(vec![if at == "." {
            format!("Invalid JSON body: {}.", e.inner())
        } else {
            format!("{at}: {}.", e.inner())
        }])
    })
}

async fn list_files(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let config = app.config();
    let query = CollectionQuery::parse(&USAGE_FILES_DEF, q.as_deref(), config.limits())?;
    let store = app.store();
    let files = store
        .files
        .iter()
        .filter(|f| f.visible_to(&actor))
        .filter(|f| !(config.hide_deleted && f.status == S::Deleted))
        .map(|f| f.to_json(None));
    Ok(query.run(files).into_response())
}

async fn get_file(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    origin: Origin,
    Path(id): Path<String>,
) -> Result<Json<JsonValue>, ApiError> {
    let mut store = app.store();
    let file = visible_file(&mut store, &id, &actor)?;
    Ok(detail(file, &origin))
}

#[derive(Debug, Default, Deserialize)]
struct RefBody {
    id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct PeriodBody {
    from: Option<String>,
    to: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct CreateBody {
    name: Option<String>,
    description: Option<String>,
    note: Option<String>,
    period: Option<PeriodBody>,
    currency: Option<String>,
    product: Option<RefBody>,
    contract: Option<RefBody>,
    external_id: Option<String>,
}

fn check_len(errors: &mut Vec<String>, field: &str, value: &Option<String>, max: usize) {
    if let Some(v) = value
        && v.chars().count() > max
    {
        errors.push(format!(
            "{field}: Ensure this field has no more than {max} characters."
        ));
    }
}

fn parse_period(
    errors: &mut Vec<String>,
    period: Option<&PeriodBody>,
) -> Option<(NaiveDate, NaiveDate)> {
    let p = period?;
    let mut date = |field: &str, v: &Option<String>| match v.as_deref() {
        None => {
            errors.push(format!("period.{field}: This field is required."));
            None
        }
        Some(text) => match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            Ok(d) => Some(d),
            Err(_) => {
                errors.push(format!(
                    "period.{field}: {text:?} is not a date in the format YYYY-MM-DD."
                ));
                None
            }
        },
    };
    let from = date("from", &p.from);
    let to = date("to", &p.to);
    match (from, to) {
        (Some(f), Some(t)) if f > t => {
            errors.push("period: from must not be after to.".into());
            None
        }
        (Some(f), Some(t)) => Some((f, t)),
        _ => None,
    }
}

async fn create_file(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    origin: Origin,
    raw: Bytes,
) -> Result<Response, ApiError> {
    require_role(&actor, Role::Vendor, "create")?;
    let req: CreateBody = body(&raw)?;
    let mut errors = Vec::new();
    check_len(&mut errors, "name", &req.name, 100);
    check_len(&mut errors, "description", &req.description, 200);
    check_len(&mut errors, "note", &req.note, 200);
    check_len(&mut errors, "external_id", &req.external_id, 200);
    check_len(&mut errors, "currency", &req.currency, 20);
    let period = parse_period(&mut errors, req.period.as_ref());
    let product_id = req.product.as_ref().and_then(|p| p.id.clone());
    let contract_id = req.contract.as_ref().and_then(|c| c.id.clone());
    if product_id.is_none() {
        errors.push("product.id: This field is required.".into());
    }
    if contract_id.is_none() {
        errors.push("contract.id: This field is required.".into());
    }
    let dataset = app.dataset();
    let product = product_id
        .as_deref()
        .and_then(|id| dataset.products.iter().find(|p| p["id"] == id));
    let contract = contract_id
        .as_deref()
        .and_then(|id| dataset.contracts.iter().find(|c| c["id"] == id));
    if let (Some(id), None) = (&product_id, product) {
        errors.push(format!("product.id: Product {id} does not exist."));
    }
    if let (Some(id), None) = (&contract_id, contract) {
        errors.push(format!("contract.id: Contract {id} does not exist."));
    }
    if let Some(p) = product {
        if p["owner"]["id"] != actor.account_id.as_str() {
            errors.push(format!(
                "product.id: Product {} does not belong to your account.",
                p["id"].as_str().unwrap_or_default()
            ));
        }
        if !p["capabilities"]["ppu"]["schema"].is_string() {
            errors.push(format!(
                "product.id: Product {} does not have the pay-as-you-go capability.",
                p["id"].as_str().unwrap_or_default()
            ));
        }
    }
    if let Some(c) = contract {
        if c["type"] != "distribution" {
            errors.push(format!(
                "contract.id: Contract {} is not a distribution contract.",
                c["id"].as_str().unwrap_or_default()
            ));
        } else if c["status"] != "active" {
            errors.push(format!(
                "contract.id: Contract {} is {}, not active.",
                c["id"].as_str().unwrap_or_default(),
                c["status"].as_str().unwrap_or_default()
            ));
        }
    }
    let (Some(product), Some(contract), true) = (product, contract, errors.is_empty()) else {
        return Err(validation(errors));
    };

    let marketplace = contract["marketplace"].clone();
    let currency = req.currency.clone().or_else(|| {
        dataset
            .marketplaces
            .iter()
            .find(|m| m["id"] == marketplace["id"])
            .and_then(|m| m["currency"].as_str().map(str::to_owned))
    });
    let schema = product["capabilities"]["ppu"]["schema"]
        .as_str()
        .unwrap_or("QT")
        .to_ascii_lowercase();
    let environment = if contract["kind"] == "test" {
        "test"
    } else {
        "production"
    };
    let now = Utc::now();
    let mut store = app.store();
    let id = store.new_file_id(now);
    let mut file = UsageFileState {
        id: id.clone(),
        name: req.name,
        description: req.description,
        note: req.note,
        external_id: req.external_id,
        status: S::Draft,
        sub_status: None,
        environment: environment.into(),
        schema,
        currency,
        period,
        product: json!({"id": product["id"], "name": product["name"], "icon": product["icon"]}),
        contract: json!({"id": contract["id"], "name": contract["name"]}),
        marketplace,
        vendor: product["owner"].clone(),
        provider: contract["issuer"].clone(),
        acceptance_note: None,
        rejection_note: None,
        error_detail: None,
        events: serde_json::Map::new(),
        upload: None,
        processed: false,
        records: Vec::new(),
        categories: Vec::new(),
        generation: 0,
        uploads: 0,
    };
    stamp(&mut file, "created", &actor);
    let body = detail(&file, &origin);
    store.insert_file(file);
    let event = store.log_event(
        "usage_file.created",
        &id,
        None,
        Some("draft"),
        &actor.key_name,
    );
    app.publish(event);
    Ok((StatusCode::CREATED, body).into_response())
}

#[derive(Debug, Default, Deserialize)]
struct UpdateBody {
    description: Option<String>,
    note: Option<String>,
    external_id: Option<String>,
    period: Option<PeriodBody>,
    currency: Option<String>,
}

async fn update_file(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    origin: Origin,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<Json<JsonValue>, ApiError> {
    require_role(&actor, Role::Vendor, "update")?;
    let req: UpdateBody = body(&raw)?;
    let mut errors = Vec::new();
    check_len(&mut errors, "description", &req.description, 200);
    check_len(&mut errors, "note", &req.note, 200);
    check_len(&mut errors, "external_id", &req.external_id, 200);
    check_len(&mut errors, "currency", &req.currency, 20);
    let period = req
        .period
        .as_ref()
        .and_then(|p| parse_period(&mut errors, Some(p)));
    if !errors.is_empty() {
        return Err(validation(errors));
    }
    let mut store = app.store();
    let file = visible_file(&mut store, &id, &actor)?;
    if matches!(file.status, S::Deleted | S::Closed) {
        return Err(not_allowed(
            codes::UPDATE_NOT_ALLOWED,
            "updated",
            &file.status,
            &[
                S::Draft,
                S::Invalid,
                S::Ready,
                S::Rejected,
                S::Pending,
                S::Accepted,
            ],
        ));
    }
    if (period.is_some() || req.currency.is_some()) && file.status != S::Draft {
        return Err(ApiError::bad_request(
            codes::UPDATE_NOT_ALLOWED,
            format!(
                "The period and currency of a usage file can only change in status draft, not {}.",
                file.status
            ),
        ));
    }
    if let Some(v) = req.description {
        file.description = Some(v);
    }
    if let Some(v) = req.note {
        file.note = Some(v);
    }
    if let Some(v) = req.external_id {
        file.external_id = Some(v);
    }
    if let Some(p) = period {
        file.period = Some(p);
    }
    if let Some(c) = req.currency {
        file.currency = Some(c);
    }
    let body = detail(file, &origin);
    let event = store.log_event("usage_file.updated", &id, None, None, &actor.key_name);
    app.publish(event);
    Ok(body)
}

async fn upload(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    origin: Origin,
    Path(id): Path<String>,
    fault: Option<Extension<InvalidUploadFault>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    // Refuse early, before reading a large body, when the file cannot take an upload.
    UPLOAD.permitted(&mut app.store(), &id, &actor)?;
    let missing = || {
        ApiError::bad_request(
            codes::UPLOAD_MISSING_FILE,
            "The upload needs the workbook in the multipart field \"usage_file\".",
        )
    };
    let mut multipart = multipart.map_err(|_| missing())?;
    let mut found: Option<(String, Bytes)> = None;
    loop {
        let field = multipart.next_field().await.map_err(|e| {
            ApiError::bad_request(
                codes::UPLOAD_MISSING_FILE,
                format!("The multipart body cannot be read: {e}."),
            )
        })?;
        let Some(field) = field else { break };
        if field.name() == Some("usage_file") {
            let filename = field.file_name().unwrap_or("usage_file.xlsx").to_owned();
            let bytes = field.bytes().await.map_err(|e| {
                ApiError::bad_request(
                    codes::UPLOAD_MISSING_FILE,
                    format!("The usage_file part cannot be read: {e}."),
                )
            })?;
            found = Some((filename, bytes));
            break;
        }
    }
    let (filename, bytes) = found.ok_or_else(missing)?;
    if !processing::looks_like_xlsx(&bytes) {
        return Err(ApiError::bad_request(
            codes::UPLOAD_NOT_XLSX,
            format!("{filename} is not an .xlsx workbook."),
        ));
    }

    let config = app.config();
    let (generation, ctx) = {
        let mut store = app.store();
        let generation = store.new_upload_generation();
        // Checked again: another upload may have raced this one while the body was read.
        let file = UPLOAD.permitted(&mut store, &id, &actor)?;
        file.generation = generation;
        file.uploads += 1;
        file.upload = Some(Upload {
            filename,
            bytes: bytes.clone(),
        });
        file.processed = false;
        file.records.clear();
        file.categories.clear();
        file.error_detail = None;
        file.sub_status = None;
        stamp(file, UPLOAD.done, &actor);
        let ctx = file_context(app.dataset(), file);
        set_status(&app, &mut store, &id, S::Uploading, &actor.key_name);
        (generation, ctx)
    };

    let status = StatusCode::from_u16(config.upload_status).unwrap_or(StatusCode::OK);
    let fault = fault.map(|Extension(InvalidUploadFault(detail))| detail);
    if config.processing_delay_ms == 0 {
        start_processing(&app, &id, generation);
        let outcome = run_processing(bytes, ctx, fault).await;
        finish_processing(&app, &id, generation, outcome);
    } else {
        let app = app.clone();
        let id = id.clone();
        let delay = std::time::Duration::from_millis(config.processing_delay_ms);
        tokio::spawn(async move {
            tokio::time::sleep(delay / 2).await;
            start_processing(&app, &id, generation);
            let outcome = run_processing(bytes, ctx, fault).await;
            tokio::time::sleep(delay - delay / 2).await;
            finish_processing(&app, &id, generation, outcome);
        });
    }
    let mut store = app.store();
    let file = visible_file(&mut store, &id, &actor)?;
    Ok((status, detail(file, &origin)).into_response())
}

async fn submit(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    origin: Origin,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<Json<JsonValue>, ApiError> {
    let _: JsonValue = body(&raw)?;
    transition(&app, &actor, &origin, &id, &SUBMIT, |_| Ok(()))
}

#[derive(Debug, Default, Deserialize)]
struct AcceptBody {
    acceptance_note: Option<String>,
}

async fn accept(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    origin: Origin,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<Json<JsonValue>, ApiError> {
    let req: AcceptBody = body(&raw)?;
    let mut errors = Vec::new();
    check_len(&mut errors, "acceptance_note", &req.acceptance_note, 200);
    if !errors.is_empty() {
        return Err(validation(errors));
    }
    transition(&app, &actor, &origin, &id, &ACCEPT, |f| {
        accepted(f, req.acceptance_note);
        Ok(())
    })
}

#[derive(Debug, Default, Deserialize)]
struct RejectBody {
    rejection_note: Option<String>,
}

async fn reject(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    origin: Origin,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<Json<JsonValue>, ApiError> {
    let req: RejectBody = body(&raw)?;
    let mut errors = Vec::new();
    if req
        .rejection_note
        .as_deref()
        .is_none_or(|n| n.trim().is_empty())
    {
        errors.push("rejection_note: This field is required.".to_owned());
    }
    check_len(&mut errors, "rejection_note", &req.rejection_note, 200);
    if !errors.is_empty() {
        return Err(validation(errors));
    }
    transition(&app, &actor, &origin, &id, &REJECT, |f| {
        rejected(f, req.rejection_note);
        Ok(())
    })
}

async fn close(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    origin: Origin,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<Json<JsonValue>, ApiError> {
    let _: JsonValue = body(&raw)?;
    let require_billing = app.config().require_billing_id_to_close;
    transition(&app, &actor, &origin, &id, &CLOSE, |f| {
        close_approved_records(f, &actor, require_billing)
    })
}

async fn delete(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    origin: Origin,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<Json<JsonValue>, ApiError> {
    let _: JsonValue = body(&raw)?;
    transition(&app, &actor, &origin, &id, &DELETE, |_| Ok(()))
}

async fn reprocess(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    origin: Origin,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<Json<JsonValue>, ApiError> {
    let _: JsonValue = body(&raw)?;
    // The processed workbook is rebuilt from the upload on every download; reprocessing only
    // makes it available again.
    transition(&app, &actor, &origin, &id, &REPROCESS, |f| {
        f.processed = f.upload.is_some();
        Ok(())
    })
}

async fn approve_all(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    origin: Origin,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<Json<JsonValue>, ApiError> {
    let _: JsonValue = body(&raw)?;
    transition(&app, &actor, &origin, &id, &APPROVE_ALL, |f| {
        set_records(f, &[R::Valid], R::Approved);
        Ok(())
    })
}

async fn list_categories(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let query = CollectionQuery::parse(&CATEGORIES_DEF, q.as_deref(), app.config().limits())?;
    let mut store = app.store();
    let file = visible_file(&mut store, &id, &actor)?;
    Ok(query.run(file.categories.clone()).into_response())
}

async fn template(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    origin: Origin,
    Path(id): Path<String>,
) -> Result<Json<JsonValue>, ApiError> {
    require_role(&actor, Role::Vendor, "download the template of")?;
    if !app
        .dataset()
        .products
        .iter()
        .any(|p| p["id"] == id.as_str())
    {
        return Err(ApiError::not_found("Product", &id));
    }
    Ok(Json(json!({
        "template_link": format!("{}/sandbox/templates/{id}.xlsx", origin.0)
    })))
}

async fn list_records(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let query = CollectionQuery::parse(&USAGE_RECORDS_DEF, q.as_deref(), app.config().limits())?;
    let records = visible_records(&app.store(), &actor);
    Ok(query.run(records).into_response())
}

async fn get_record(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<JsonValue>, ApiError> {
    let store = app.store();
    let (fi, ri) = visible_record(&store, &id, &actor)?;
    let file = &store.files[fi];
    Ok(Json(file.records[ri].to_json(file)))
}

#[derive(Debug, Default, Deserialize)]
struct RecordUpdateBody {
    status: Option<String>,
}

/// Providers approve or reject single records of a pending file.
async fn update_record(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<Json<JsonValue>, ApiError> {
    let req: RecordUpdateBody = body(&raw)?;
    let mut store = app.store();
    let (fi, ri) = visible_record(&store, &id, &actor)?;
    require_role(&actor, Role::Provider, "update records of")?;
    let to = match req.status.as_deref() {
        Some("approved") => R::Approved,
        Some("rejected") => R::Rejected,
        other => {
            return Err(validation(vec![format!(
                "status: {:?} is not one of approved, rejected.",
                other.unwrap_or("")
            )]));
        }
    };
    let file = &mut store.files[fi];
    if file.status != S::Pending {
        return Err(ApiError::bad_request(
            codes::RECORD_CLOSE_NOT_ALLOWED,
            format!(
                "Records can be approved or rejected while their file is pending, not {}.",
                file.status
            ),
        ));
    }
    file.records[ri].status = to;
    Ok(Json(file.records[ri].to_json(file)))
}

#[derive(Debug, Default, Deserialize)]
struct CloseRecordBody {
    #[serde(default)]
    id: Option<String>,
    external_billing_id: Option<String>,
    external_billing_note: Option<String>,
}

impl CloseRecordBody {
    fn billing(&self) -> Billing {
        Billing {
            external_billing_id: self.external_billing_id.clone(),
            external_billing_note: self.external_billing_note.clone(),
        }
    }
}

async fn close_record(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<Json<JsonValue>, ApiError> {
    let req: CloseRecordBody = body(&raw)?;
    let mut store = app.store();
    close_one(&app, &mut store, &actor, &id, &req.billing()).map(Json)
}

async fn close_records(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let reqs: Vec<CloseRecordBody> = body(&raw)?;
    let mut store = app.store();
    let mut results = Vec::with_capacity(reqs.len());
    for (i, req) in reqs.iter().enumerate() {
        let Some(id) = req.id.as_deref() else {
            results.push(json!({"id": null, "status": "error",
                "error_details": [format!("[{i}].id: This field is required.")], "error_codes": [codes::VALIDATION]}));
            continue;
        };
        match close_one(&app, &mut store, &actor, id, &req.billing()) {
            Ok(record) => results.push(json!({"id": id, "status": record["status"], "error_details": [], "error_codes": []})),
            Err(e) => results.push(json!({"id": id, "status": "error", "error_details": e.errors, "error_codes": [e.code]})),
        }
    }
    Ok((StatusCode::PARTIAL_CONTENT, Json(JsonValue::Array(results))).into_response())
}
