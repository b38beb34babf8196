//! The sandbox's own API under `/sandbox`, for tests, scripts and people trying it: a dump of
//! the state, the event and request logs, fault rules and settings changed at run time, a
//! reset, and the download links Connect would sign (usage file, processed file, template),
//! which like Connect's signed links need no API key.
//!
//! No key protects it: the sandbox listens on loopback by default and holds no real data.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, codes};
use super::faults::FaultRule;
use super::server::{AppState, Origin, RuntimeConfig};
use super::usage_api::{processed_workbook, template_workbook};
use crate::connect::XLSX_MIME;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sandbox/info", get(info))
        .route("/sandbox/state", get(state))
        .route("/sandbox/events", get(events))
        .route("/sandbox/requests", get(requests))
        .route(
            "/sandbox/faults",
            get(get_faults)
                .put(put_faults)
                .post(add_fault)
                .delete(clear_faults),
        )
        .route("/sandbox/config", get(get_config).put(put_config))
        .route("/sandbox/reset", post(reset))
        .route("/sandbox/files/{id}/usage_file.xlsx", get(usage_file))
        .route(
            "/sandbox/files/{id}/processed_file.xlsx",
            get(processed_file),
        )
        .route("/sandbox/templates/{file}", get(template))
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(codes::VALIDATION, message)
}

fn parse<T: serde::de::DeserializeOwned>(raw: &Bytes) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(raw);
    serde_path_to_error::deserialize(de).map_err(|e| bad(format!("at {}: {}", e.path(), e.inner())))
}

/// Where the API is and which keys it takes.
async fn info(State(app): State<AppState>, origin: Origin) -> Json<Value> {
    let keys: Vec<Value> = app
        .dataset()
        .api_keys
        .iter()
        .map(|k| {
            let role = app.dataset().account(&k.account).map(|a| a.role);
            json!({"name": k.name, "account": k.account, "role": role, "key": format!("ApiKey {}", k.key.trim_start_matches("ApiKey ").trim())})
        })
        .collect();
    Json(json!({
        "api_url": format!("{}/public/v1", origin.0),
        "admin_url": format!("{}/sandbox", origin.0),
        "keys": keys,
    }))
}

#[derive(Debug, Deserialize)]
struct StateQuery {
    /// `false` leaves the record lists out (large runs).
    #[serde(default = "yes")]
    records: bool,
    #[serde(default = "yes")]
    requests: bool,
}

fn yes() -> bool {
    true
}

/// Files (with their records), events, requests, settings and faults.
async fn state(
    State(app): State<AppState>,
    origin: Origin,
    Query(q): Query<StateQuery>,
) -> Json<Value> {
    let config = app.config();
    let faults = serde_json::to_value(app.faults().rules()).unwrap_or(Value::Null);
    let store = app.store();
    let files: Vec<Value> = store
        .files
        .iter()
        .map(|f| {
            let mut j = f.to_dump(&origin.0);
            if !q.records
                && let Some(o) = j.as_object_mut()
            {
                o.remove("record_list");
            }
            j
        })
        .collect();
    Json(json!({
        "files": files,
        "events": store.events,
        "requests": if q.requests { json!(store.requests) } else { json!([]) },
        "config": config,
        "faults": faults,
    }))
}

#[derive(Debug, Deserialize)]
struct AfterQuery {
    #[serde(default)]
    after: u64,
}

async fn events(State(app): State<AppState>, Query(q): Query<AfterQuery>) -> Json<Value> {
    let store = app.store();
    let events: Vec<&super::store::SandboxEvent> =
        store.events.iter().filter(|e| e.seq > q.after).collect();
    Json(json!(events))
}

async fn requests(State(app): State<AppState>, Query(q): Query<AfterQuery>) -> Json<Value> {
    let store = app.store();
    let requests: Vec<&super::store::RequestEntry> =
        store.requests.iter().filter(|r| r.seq > q.after).collect();
    Json(json!(requests))
}

async fn get_faults(State(app): State<AppState>) -> Json<Value> {
    Json(serde_json::to_value(app.faults().rules()).unwrap_or(Value::Null))
}

/// Replaces the rules with a JSON array of rules.
async fn put_faults(State(app): State<AppState>, raw: Bytes) -> Result<Json<Value>, ApiError> {
    let rules: Vec<FaultRule> = parse(&raw)?;
    let mut faults = app.faults();
    faults.set(rules).map_err(bad)?;
    Ok(Json(
        serde_json::to_value(faults.rules()).unwrap_or(Value::Null),
    ))
}

/// Adds one rule.
async fn add_fault(State(app): State<AppState>, raw: Bytes) -> Result<Json<Value>, ApiError> {
    let rule: FaultRule = parse(&raw)?;
    let mut faults = app.faults();
    faults.add(rule).map_err(bad)?;
    Ok(Json(
        serde_json::to_value(faults.rules()).unwrap_or(Value::Null),
    ))
}

async fn clear_faults(State(app): State<AppState>) -> StatusCode {
    let _ = app.faults().set(Vec::new());
    StatusCode::NO_CONTENT
}

async fn get_config(State(app): State<AppState>) -> Json<RuntimeConfig> {
    Json(app.config())
}

/// Changes some settings: the body's fields replace the current ones.
async fn put_config(
    State(app): State<AppState>,
    raw: Bytes,
) -> Result<Json<RuntimeConfig>, ApiError> {
    let patch: Value = parse(&raw)?;
    let Value::Object(patch) = patch else {
        return Err(bad("the body must be a JSON object of settings"));
    };
    let mut current = serde_json::to_value(app.config()).unwrap_or_else(|_| json!({}));
    for (k, v) in patch {
        current[k] = v;
    }
    let config: RuntimeConfig = serde_json::from_value(current).map_err(|e| bad(e.to_string()))?;
    app.set_config(config.clone()).map_err(bad)?;
    Ok(Json(config))
}

/// Forgets every file, record, event and request; the dataset and settings stay.
async fn reset(State(app): State<AppState>) -> StatusCode {
    app.reset();
    StatusCode::NO_CONTENT
}

fn xlsx(bytes: Vec<u8>, filename: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, XLSX_MIME.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        bytes,
    )
        .into_response()
}

async fn usage_file(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let store = app.store();
    let upload = store
        .file(&id)
        .and_then(|f| f.upload.as_ref())
        .ok_or_else(|| ApiError::not_found("Uploaded workbook of usage file", &id))?;
    Ok(xlsx(upload.bytes.to_vec(), &upload.filename))
}

async fn processed_file(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let built = tokio::task::spawn_blocking({
        let app = app.clone();
        let id = id.clone();
        move || processed_workbook(&app, &id)
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| ApiError::not_found("Processed workbook of usage file", &id))?;
    let bytes = built.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            format!("The processed workbook cannot be built: {e}"),
        )
    })?;
    Ok(xlsx(bytes, &format!("{id}_processed.xlsx")))
}

async fn template(
    State(app): State<AppState>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let product = file.strip_suffix(".xlsx").unwrap_or(&file);
    let bytes = template_workbook(&app, product)
        .ok_or_else(|| ApiError::not_found("Product", product))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                codes::INTERNAL,
                format!("The template cannot be built: {e}"),
            )
        })?;
    Ok(xlsx(bytes, &format!("{product}_usage_template.xlsx")))
}
