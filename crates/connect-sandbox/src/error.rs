//! Error answers in Connect's shape: `{"error_code": "...", "errors": ["..."]}`, always JSON.
//!
//! The codes Connect uses for usage-file rules are not published; the sandbox's are stable and
//! listed in `docs/sandbox.md` so tests and clients can rely on them.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub errors: Vec<String>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            errors: vec![message.into()],
            retry_after: None,
        }
    }

    pub fn with_errors(mut self, errors: Vec<String>) -> ApiError {
        self.errors = errors;
        self
    }

    /// 401 `AUTH_001`, as Connect answers a missing or unknown key.
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            codes::AUTH_UNAUTHORIZED,
            "API request is unauthorized.",
        )
    }

    /// 403: the key is valid but its account may not do this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, codes::AUTH_FORBIDDEN, message)
    }

    pub fn not_found(what: &str, id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            format!("{what} {id} not found."),
        )
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({ "error_code": self.code, "errors": self.errors })),
        )
            .into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// The sandbox's error codes.
pub mod codes {
    /// Missing or unknown API key (Connect's own code).
    pub const AUTH_UNAUTHORIZED: &str = "AUTH_001";
    /// The key's account may not perform this action (vendor vs provider).
    pub const AUTH_FORBIDDEN: &str = "AUTH_002";
    /// No such object.
    pub const NOT_FOUND: &str = "GEN_404";
    /// No such endpoint.
    pub const NO_ROUTE: &str = "GEN_001";
    /// The endpoint exists but not with this method.
    pub const METHOD_NOT_ALLOWED: &str = "GEN_405";
    /// A request body that is not valid JSON or misses required fields.
    pub const VALIDATION: &str = "VAL_001";
    /// RQL syntax error, or a misplaced `select`/`ordering`/`limit`/`offset`.
    pub const RQL_PARSE: &str = "RQL_001";
    /// RQL filter unknown for the collection, or a lookup it does not allow.
    pub const RQL_LOOKUP: &str = "RQL_002";
    /// RQL value that does not fit the field (bad date, number, boolean or status).
    pub const RQL_VALUE: &str = "RQL_003";
    /// Upload not allowed in the file's status.
    pub const UPLOAD_NOT_ALLOWED: &str = "USG_001";
    /// Submit not allowed in the file's status (only `ready`).
    pub const SUBMIT_NOT_ALLOWED: &str = "USG_002";
    /// Accept not allowed in the file's status (only `pending`).
    pub const ACCEPT_NOT_ALLOWED: &str = "USG_003";
    /// Reject not allowed in the file's status (only `pending`).
    pub const REJECT_NOT_ALLOWED: &str = "USG_004";
    /// Close not allowed in the file's status (only `accepted`).
    pub const CLOSE_NOT_ALLOWED: &str = "USG_005";
    /// Delete not allowed in the file's status (only `draft`, `invalid`, `ready`).
    pub const DELETE_NOT_ALLOWED: &str = "USG_006";
    /// Reprocess not allowed in the file's status.
    pub const REPROCESS_NOT_ALLOWED: &str = "USG_007";
    /// Update not allowed in the file's status.
    pub const UPDATE_NOT_ALLOWED: &str = "USG_008";
    /// Approve-all not allowed in the file's status (only `pending`).
    pub const APPROVE_NOT_ALLOWED: &str = "USG_009";
    /// The upload request has no `usage_file` part.
    pub const UPLOAD_MISSING_FILE: &str = "USG_010";
    /// The uploaded part is not an `.xlsx` workbook.
    pub const UPLOAD_NOT_XLSX: &str = "USG_011";
    /// A record cannot be closed (not approved, or missing the billing id).
    pub const RECORD_CLOSE_NOT_ALLOWED: &str = "USG_012";
    /// A fault injected by the sandbox's fault rules.
    pub const INJECTED: &str = "SYS_001";
    /// The sandbox itself failed (a bug: please report it).
    pub const INTERNAL: &str = "SYS_002";
}
