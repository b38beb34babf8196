//! The sandbox's own API under `/sandbox`, for tests, scripts and people trying it: a dump of
//! the state, the event and request logs, fault rules and settings changed at run time, a
//! reset, and the download links Connect would sign (usage file, processed file, template),
//! which like Connect's signed links need no API key; and under `/sandbox/platform` the
//! platform side: its state, settings and faults, tasks to submit, schedules to fire, setup
//! changes to push, and shutdowns, dropped connections and raw frames to send to runners.
//!
//! No key protects it: the sandbox listens on loopback by default and holds no real data.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, codes};
use super::faults::{FaultRule, WsFaultRule};
use super::platform::{ConnFilter, PlatformSettings, TaskSpec};
use super::provider::ProviderPolicy;
use super::server::{AppState, Origin, RuntimeConfig};
use super::usage_universe::Spread;
use super::workbooks::{processed_workbook, template_workbook};
use connect_client::XLSX_MIME;
use connect_client::month::Month;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sandbox/info", get(info))
        .route("/sandbox/state", get(state))
        .route("/sandbox/summary", get(summary))
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
        .route("/sandbox/provider", get(get_provider).put(put_provider))
        .route("/sandbox/vendor/acknowledgements", get(acknowledgements))
        .route("/sandbox/vendor/uncovered", get(uncovered))
        .route("/sandbox/reset", post(reset))
        .route("/sandbox/files/{id}/usage_file.xlsx", get(usage_file))
        .route(
            "/sandbox/files/{id}/processed_file.xlsx",
            get(processed_file),
        )
        .route("/sandbox/templates/{file}", get(template))
        .route("/sandbox/platform", get(platform_state))
        .route(
            "/sandbox/platform/settings",
            get(platform_settings).put(put_platform_settings),
        )
        .route(
            "/sandbox/platform/faults",
            put(put_platform_faults).delete(clear_platform_faults),
        )
        .route("/sandbox/platform/tasks", post(submit_task))
        .route("/sandbox/platform/schedules/{id}/fire", post(fire_schedule))
        .route("/sandbox/platform/setup", put(update_setup))
        .route("/sandbox/platform/shutdown", post(platform_shutdown))
        .route("/sandbox/platform/drop", post(platform_drop))
        .route(
            "/sandbox/platform/send",
            // Big enough for frames over the protocol's 2 MiB limit, to test runners with.
            post(platform_send).layer(axum::extract::DefaultBodyLimit::max(32 * 1024 * 1024)),
        )
        .layer(axum::middleware::map_response(end_json_with_a_newline))
}

/// JSON answers end with a newline, so `curl` leaves the shell's prompt on a line of its own.
async fn end_json_with_a_newline(resp: Response) -> Response {
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let mut bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => Vec::from(b),
        Err(e) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response();
        }
    };
    if !bytes.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// What happened, in a few lines of text ([`super::summary`]).
async fn summary(State(app): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        super::summary::summary(&app),
    )
        .into_response()
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
        // What runners set as LOGZIO_LISTENER_URL, and the key they then get.
        "log_listener_url": format!("{}{}", origin.0, super::log_listener::LISTENER_PATH),
        "logging_key": app.log_listener().key().expose(),
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
        "platform": app.platform().dump(),
        "provider": {"policy": app.provider().policy, "answers": app.provider().log},
        "acknowledgements": store.acknowledgements,
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

/// The provider's policy and the answers it gave.
async fn get_provider(State(app): State<AppState>) -> Json<Value> {
    let provider = app.provider();
    Json(json!({"policy": provider.policy, "answers": provider.log}))
}

/// Replaces the provider's policy (fields left out take their defaults).
async fn put_provider(State(app): State<AppState>, raw: Bytes) -> Result<Json<Value>, ApiError> {
    let policy: ProviderPolicy = parse(&raw)?;
    policy.check().map_err(bad)?;
    app.provider().set_policy(policy.clone());
    Ok(Json(json!({"policy": policy})))
}

/// What the vendor's acknowledgement endpoint received.
async fn acknowledgements(State(app): State<AppState>) -> Json<Value> {
    Json(json!(app.store().acknowledgements))
}

#[derive(Debug, Deserialize)]
struct PeriodQuery {
    period: Option<String>,
}

/// The billable subscriptions the vendor usage API (and its exports) gives no record in the
/// month, with the current settings: what a coverage check should find.
async fn uncovered(
    State(app): State<AppState>,
    Query(q): Query<PeriodQuery>,
) -> Result<Json<Value>, ApiError> {
    let text = q.period.ok_or_else(|| bad("period=YYYY-MM is required"))?;
    let period: Month = text
        .parse()
        .map_err(|e| bad(format!("period {text:?}: {e}")))?;
    let config = app.config();
    let records = crate::usage_universe::records_in(period, config.usage_records);
    let universe = app.usage_universe();
    let subscriptions: Vec<Value> = universe
        .without_usage(period, Spread::of(&config), records)
        .into_iter()
        .map(|b| json!({"subscription": b.asset_id, "product": b.product, "contract": b.contract}))
        .collect();
    Ok(Json(
        json!({"period": period.to_string(), "subscriptions": subscriptions}),
    ))
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

/// Connections, subscriptions, variables, tasks with their deliveries, protocol errors.
async fn platform_state(State(app): State<AppState>) -> Json<Value> {
    Json(app.platform().dump())
}

async fn platform_settings(State(app): State<AppState>) -> Json<PlatformSettings> {
    Json(app.platform().settings())
}

/// Changes some platform settings: the body's fields replace the current ones.
async fn put_platform_settings(
    State(app): State<AppState>,
    raw: Bytes,
) -> Result<Json<PlatformSettings>, ApiError> {
    let patch: Value = parse(&raw)?;
    let Value::Object(patch) = patch else {
        return Err(bad("the body must be a JSON object of settings"));
    };
    let mut current = serde_json::to_value(app.platform().settings()).unwrap_or_else(|_| json!({}));
    for (k, v) in patch {
        current[k] = v;
    }
    let settings: PlatformSettings =
        serde_json::from_value(current).map_err(|e| bad(e.to_string()))?;
    app.platform().set_settings(settings.clone()).map_err(bad)?;
    Ok(Json(settings))
}

/// Replaces the websocket fault rules with a JSON array of rules.
async fn put_platform_faults(
    State(app): State<AppState>,
    raw: Bytes,
) -> Result<StatusCode, ApiError> {
    let rules: Vec<WsFaultRule> = parse(&raw)?;
    app.platform().set_faults(rules).map_err(bad)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_platform_faults(State(app): State<AppState>) -> StatusCode {
    let _ = app.platform().set_faults(Vec::new());
    StatusCode::NO_CONTENT
}

#[derive(Debug, Deserialize)]
struct WaitQuery {
    /// Wait up to this many milliseconds for the task to finish.
    #[serde(default)]
    wait_ms: Option<u64>,
}

/// Submits a task (`{category, event_type, object_id, data, api_key, installation_id,
/// connect_correlation_id}`); with `?wait_ms=N` answers with the finished task.
async fn submit_task(
    State(app): State<AppState>,
    Query(q): Query<WaitQuery>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let spec: TaskSpec = parse(&raw)?;
    let (id, done) = app.platform().submit(spec).map_err(bad)?;
    if let Some(ms) = q.wait_ms
        && let Ok(Ok(task)) = tokio::time::timeout(std::time::Duration::from_millis(ms), done).await
    {
        return Ok(Json(task).into_response());
    }
    let task = app.platform().task_dump(&id).unwrap_or(Value::Null);
    Ok((StatusCode::ACCEPTED, Json(task)).into_response())
}

/// Fires a schedule now (as Connect's `.../schedules/{id}/trigger`).
async fn fire_schedule(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (_, task_id) = app
        .platform()
        .trigger_schedule(&id)
        .map_err(|e| ApiError::not_found("Schedule", &e))?;
    Ok(Json(
        app.platform().task_dump(&task_id).unwrap_or(Value::Null),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetupPatch {
    /// Name to value (a string, or `{value, secure}`).
    #[serde(default)]
    variables: std::collections::BTreeMap<String, Value>,
    #[serde(default)]
    log_level: Option<String>,
    #[serde(default)]
    runner_log_level: Option<String>,
    /// Hand out the logging key (true) or stop handing it out (false).
    #[serde(default)]
    send_logging_key: Option<bool>,
}

/// Changes variables or log levels and sends the new setup to connected runners.
async fn update_setup(State(app): State<AppState>, raw: Bytes) -> Result<Json<Value>, ApiError> {
    let patch: SetupPatch = parse(&raw)?;
    let sent = app
        .platform()
        .update_setup(
            &patch.variables,
            patch.log_level,
            patch.runner_log_level,
            patch.send_logging_key,
        )
        .map_err(bad)?;
    Ok(Json(json!({"sessions_updated": sent})))
}

fn conn_filter(raw: &Bytes) -> Result<ConnFilter, ApiError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        Ok(ConnFilter::default())
    } else {
        parse(raw)
    }
}

/// Sends `shutdown` to connected runners (all, or `{instance, runner_type}`).
async fn platform_shutdown(
    State(app): State<AppState>,
    raw: Bytes,
) -> Result<Json<Value>, ApiError> {
    let n = app.platform().shutdown(&conn_filter(&raw)?);
    Ok(Json(json!({"connections": n})))
}

/// Cuts runner connections without a close frame.
async fn platform_drop(State(app): State<AppState>, raw: Bytes) -> Result<Json<Value>, ApiError> {
    let n = app.platform().drop_connections(&conn_filter(&raw)?);
    Ok(Json(json!({"connections": n})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFrame {
    text: String,
    #[serde(default)]
    binary: bool,
    #[serde(default)]
    instance: Option<String>,
    #[serde(default)]
    runner_type: Option<String>,
}

/// Sends any text (or bytes) to connected runners: frames tests want runners to survive.
async fn platform_send(State(app): State<AppState>, raw: Bytes) -> Result<Json<Value>, ApiError> {
    let f: RawFrame = parse(&raw)?;
    let filter = ConnFilter {
        instance: f.instance,
        runner_type: f.runner_type,
    };
    let n = app.platform().send_raw(&filter, &f.text, f.binary);
    Ok(Json(json!({"connections": n})))
}
