//! The sandbox's stand-in for Connect's log service: a Logz.io-compatible bulk listener, so
//! that what a runner ships can be seen and tested without Logz.io.
//!
//! `POST /logzio/?token=<key>&type=<type>` takes newline-delimited JSON records as the Logz.io
//! listener does: 200 when they are taken, 401 for a token that is not the sandbox's logging
//! key, 400 (with the counts) when lines are not JSON objects. The sandbox's `setup_response`
//! hands out that key when the platform setting `send_logging_key` is on, so a runner pointed
//! here with `LOGZIO_LISTENER_URL=http://127.0.0.1:PORT/logzio` ships its records here.
//!
//! `GET /sandbox/logs` shows what arrived (bounded, the oldest dropped first), filtered by
//! `task_id`, `log_level` or `logger` (a prefix); `DELETE /sandbox/logs` forgets it. `PUT
//! /sandbox/logs/fault` makes the listener unavailable, as when Logz.io is down or slow: every
//! bulk request waits `delay_ms`, then is answered `status` (when given).
//!
//! The listener's requests stay out of the sandbox's request log and its own logs: their query
//! holds the key, and a runner that ships the sandbox's records would otherwise feed itself.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::server::AppState;
use connect_client::secret::Secret;

/// Records kept; older ones are forgotten (and counted).
const KEPT_RECORDS: usize = 20_000;

/// The path a runner's `LOGZIO_LISTENER_URL` names.
pub const LISTENER_PATH: &str = "/logzio";

/// How the listener misbehaves, for tests of a runner whose log service is down.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerFault {
    /// Each bulk request waits this long before it is answered.
    pub delay_ms: u64,
    /// Each bulk request is answered with this status (such as 503) instead of taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

impl ListenerFault {
    fn check(&self) -> Result<(), String> {
        match self.status {
            Some(s) if !(400..=599).contains(&s) => {
                Err(format!("status must be an error status (400-599), not {s}"))
            }
            _ => Ok(()),
        }
    }
}

/// What arrived, and the key it takes.
#[derive(Debug)]
pub struct LogListener {
    key: Secret,
    records: Mutex<VecDeque<Value>>,
    fault: Mutex<ListenerFault>,
    /// Records taken in all, records forgotten because too many were kept.
    received: AtomicU64,
    forgotten: AtomicU64,
    /// Bulk requests answered, by status.
    answers: Mutex<HashMap<u16, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LogListener {
    /// A listener taking `key` (the logging key the platform hands out).
    pub fn new(key: Secret) -> LogListener {
        LogListener {
            key,
            records: Mutex::new(VecDeque::new()),
            fault: Mutex::new(ListenerFault::default()),
            received: AtomicU64::new(0),
            forgotten: AtomicU64::new(0),
            answers: Mutex::new(HashMap::new()),
        }
    }

    /// A fresh random key, `sandbox-logz-<hex>`.
    pub fn random_key() -> Secret {
        Secret::new(format!("sandbox-logz-{:032x}", rand::random::<u128>()))
    }

    pub fn key(&self) -> &Secret {
        &self.key
    }

    pub fn set_fault(&self, fault: ListenerFault) -> Result<(), String> {
        fault.check()?;
        *lock(&self.fault) = fault;
        Ok(())
    }

    /// Forgets what arrived.
    pub fn clear(&self) {
        lock(&self.records).clear();
        lock(&self.answers).clear();
        self.received.store(0, Ordering::Relaxed);
        self.forgotten.store(0, Ordering::Relaxed);
    }

    /// The records kept, oldest first.
    pub fn records(&self) -> Vec<Value> {
        lock(&self.records).iter().cloned().collect()
    }

    fn answered(&self, status: StatusCode) {
        *lock(&self.answers).entry(status.as_u16()).or_default() += 1;
    }

    /// Takes one bulk request's body: each line one JSON object; the query's `type` is added
    /// to records without one, as Logz.io does.
    fn take(&self, body: &[u8], log_type: Option<&str>) -> (u64, u64) {
        let mut ok = 0;
        let mut malformed = 0;
        let mut records = lock(&self.records);
        for line in body.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Value>(line) {
                Ok(Value::Object(mut record)) => {
                    if let Some(t) = log_type {
                        record.entry("type").or_insert_with(|| Value::from(t));
                    }
                    records.push_back(Value::Object(record));
                    ok += 1;
                }
                _ => malformed += 1,
            }
        }
        while records.len() > KEPT_RECORDS {
            records.pop_front();
            self.forgotten.fetch_add(1, Ordering::Relaxed);
        }
        self.received.fetch_add(ok, Ordering::Relaxed);
        (ok, malformed)
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(LISTENER_PATH, post(bulk))
        .route("/sandbox/logs", axum::routing::get(list).delete(clear))
        .route("/sandbox/logs/fault", put(set_fault).get(get_fault))
}

#[derive(Debug, Deserialize)]
struct BulkQuery {
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "type")]
    log_type: Option<String>,
}

async fn bulk(State(app): State<AppState>, Query(q): Query<BulkQuery>, body: Bytes) -> Response {
    let listener = app.log_listener();
    let fault = lock(&listener.fault).clone();
    if fault.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
    }
    if let Some(status) = fault.status {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        listener.answered(code);
        return (code, "Injected fault: the listener is unavailable.").into_response();
    }
    if q.token.as_deref() != Some(listener.key().expose()) {
        listener.answered(StatusCode::UNAUTHORIZED);
        return (
            StatusCode::UNAUTHORIZED,
            "Logz.io token is missing or not valid.",
        )
            .into_response();
    }
    let (ok, malformed) = listener.take(&body, q.log_type.as_deref());
    let status = if malformed > 0 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    listener.answered(status);
    (
        status,
        Json(json!({"successfulLines": ok, "malformedLines": malformed})),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    task_id: Option<String>,
    #[serde(default)]
    log_level: Option<String>,
    /// A logger (target) prefix.
    #[serde(default)]
    logger: Option<String>,
}

/// What arrived: the counts and the records (filtered), oldest first.
async fn list(State(app): State<AppState>, Query(q): Query<ListQuery>) -> Json<Value> {
    let listener = app.log_listener();
    let matches = |r: &Value| {
        q.task_id.as_deref().is_none_or(|t| r["task_id"] == t)
            && q.log_level.as_deref().is_none_or(|l| {
                r["log_level"]
                    .as_str()
                    .is_some_and(|v| v.eq_ignore_ascii_case(l))
            })
            && q.logger
                .as_deref()
                .is_none_or(|p| r["logger"].as_str().is_some_and(|v| v.starts_with(p)))
    };
    let records: Vec<Value> = lock(&listener.records)
        .iter()
        .filter(|r| matches(r))
        .cloned()
        .collect();
    let answers: serde_json::Map<String, Value> = lock(&listener.answers)
        .iter()
        .map(|(s, n)| (s.to_string(), json!(n)))
        .collect();
    Json(json!({
        "received": listener.received.load(Ordering::Relaxed),
        "forgotten": listener.forgotten.load(Ordering::Relaxed),
        "answers": answers,
        "fault": *lock(&listener.fault),
        "records": records,
    }))
}

async fn clear(State(app): State<AppState>) -> StatusCode {
    app.log_listener().clear();
    StatusCode::NO_CONTENT
}

async fn get_fault(State(app): State<AppState>) -> Json<ListenerFault> {
    Json(lock(&app.log_listener().fault).clone())
}

async fn set_fault(State(app): State<AppState>, raw: Bytes) -> Response {
    let fault: ListenerFault = match serde_json::from_slice(&raw) {
        Ok(f) => f,
        Err(e) => {
            return super::error::ApiError::bad_request(
                super::error::codes::VALIDATION,
                e.to_string(),
            )
            .into_response();
        }
    };
    match app.log_listener().set_fault(fault.clone()) {
        Ok(()) => Json(fault).into_response(),
        Err(e) => {
            super::error::ApiError::bad_request(super::error::codes::VALIDATION, e).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_taken_with_the_query_type_and_bad_ones_counted() {
        let l = LogListener::new(Secret::new("k"));
        let body = b"{\"message\":\"a\"}\n\n{\"message\":\"b\",\"type\":\"own\"}\nnot json\n[1]";
        assert_eq!(l.take(body, Some("python")), (2, 2));
        let r = l.records();
        assert_eq!(r[0]["type"], "python");
        assert_eq!(r[1]["type"], "own", "a record's own type stays");
        assert!(
            ListenerFault {
                status: Some(200),
                delay_ms: 0
            }
            .check()
            .is_err()
        );
        assert!(!format!("{l:?}").contains("\"k\""), "{l:?}");
    }
}
