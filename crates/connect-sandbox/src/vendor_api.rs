//! The vendor's side over HTTP: the usage API of `docs/vendor-usage-api.md`, serving the
//! usage [`crate::usage_universe`] generates for the sandbox's dataset (so demos and tests have
//! a real HTTP peer), and the acknowledgement endpoint.
//!
//! `GET /vendor/v1/usage?period=YYYY-MM&limit=N&cursor=C` with `Authorization: Bearer TOKEN`
//! answers `{"records": [...], "next_cursor": ...}`; any page can be served at any time, the
//! same on every run, up to millions of records (`usage_records` in the settings).

use std::fmt::Write as _;
use std::ops::Range;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::server::{AppState, LoggedActor};
use super::usage_universe::{MonthUsage, Spread};
use connect_client::month::Month;

/// The route of the usage API.
pub const USAGE_PATH: &str = "/vendor/v1/usage";
/// The route of the acknowledgement endpoint.
pub const ACK_PATH: &str = "/vendor/v1/acknowledgements";
/// Largest page served.
pub const MAX_PAGE: u64 = 10_000;
/// The token the sandbox's usage API takes unless told otherwise.
pub const DEFAULT_TOKEN: &str = "sandbox-usage-token-4f0b2c9d71e8";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(USAGE_PATH, get(usage))
        .route(ACK_PATH, post(acknowledge))
}

/// The body of a page: records `range` of the month, then `next_cursor`, as serde_json
/// writes `{"records": [...], "next_cursor": ...}`.
pub(crate) fn page_body(
    month: &MonthUsage<'_>,
    range: Range<u64>,
    bad: f64,
    next: Option<u64>,
) -> String {
    let mut out = String::with_capacity(64 + 240 * (range.end - range.start) as usize);
    out.push_str("{\"records\":[");
    for i in range.clone() {
        if i > range.start {
            out.push(',');
        }
        month.write_record(i, bad, &mut out);
    }
    out.push_str("],\"next_cursor\":");
    match next {
        Some(n) => {
            let _ = write!(out, "\"{n}\"");
        }
        None => out.push_str("null"),
    }
    out.push('}');
    out
}

#[derive(Debug, Deserialize)]
struct UsageQuery {
    period: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// The request carries the vendor API's bearer token.
pub(super) fn authorized(app: &AppState, headers: &HeaderMap) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    bearer == Some(app.usage_token().expose())
}

pub(super) fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

async fn usage(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<UsageQuery>,
) -> Response {
    if !authorized(&app, &headers) {
        return refuse(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    let Some(period) = q.period.as_deref() else {
        return refuse(StatusCode::BAD_REQUEST, "period=YYYY-MM is required");
    };
    let Ok(period) = period.parse::<Month>() else {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("period {period:?} is not YYYY-MM"),
        );
    };
    let limit = match q.limit.as_deref().map(str::parse::<u64>) {
        None => 1000,
        Some(Ok(n)) if n >= 1 => n.min(MAX_PAGE),
        Some(_) => return refuse(StatusCode::BAD_REQUEST, "limit must be a positive integer"),
    };
    let offset = match q.cursor.as_deref().map(str::parse::<u64>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return refuse(StatusCode::BAD_REQUEST, "cursor is not one this API gave"),
    };
    let config = app.config();
    let total = crate::usage_universe::records_in(period, config.usage_records);
    let month = app.usage_universe().month_of(period, Spread::of(&config));
    let end = (offset.saturating_add(limit)).min(total);
    let next = (end < total).then_some(end);
    // Written straight as JSON text: the same bytes as serializing the records' `Value`s,
    // several times faster (the page is what every reader of the API waits for).
    let body = page_body(&month, offset.min(end)..end, config.usage_bad_records, next);
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.extensions_mut()
        .insert(LoggedActor("usage-api".into()));
    resp
}

/// `POST /vendor/v1/acknowledgements`: takes an acknowledgement once per idempotency key;
/// a repeat answers 200 and changes nothing but its delivery count.
async fn acknowledge(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&app, &headers) {
        return refuse(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    let Ok(ack) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "the body is not JSON");
    };
    let (Some(file), Some(status)) = (ack["usage_file_id"].as_str(), ack["status"].as_str()) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "usage_file_id and status are required",
        );
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{file}:{status}"));
    let now = super::store::timestamp(Utc::now());
    let mut store = app.store();
    let (status, duplicate) = match store
        .acknowledgements
        .iter_mut()
        .find(|a| a["key"] == key.as_str())
    {
        Some(known) => {
            known["deliveries"] = json!(known["deliveries"].as_u64().unwrap_or(1) + 1);
            known["last_at"] = json!(now);
            (StatusCode::OK, true)
        }
        None => {
            store.acknowledgements.push(json!({
                "key": key, "usage_file_id": file, "status": status, "body": ack,
                "deliveries": 1, "first_at": now, "last_at": now,
            }));
            (StatusCode::CREATED, false)
        }
    };
    drop(store);
    let mut resp = (
        status,
        Json(json!({"acknowledged": true, "duplicate": duplicate})),
    )
        .into_response();
    resp.extensions_mut()
        .insert(LoggedActor("usage-api".into()));
    resp
}
