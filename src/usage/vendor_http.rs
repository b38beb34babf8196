//! What the two calls to the vendor's system share (the usage API and the acknowledgement
//! endpoint): the bearer token header, and how an answer or a failure is judged for retrying.

use std::fmt;
use std::time::{Duration, SystemTime};

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};

use connect_client::retry::{Next, parse_retry_after};
use connect_client::secret::Secret;

/// Why a call to the vendor failed.
#[derive(Debug)]
pub(crate) enum AttemptFailure {
    /// No answer (connection, timeout): worth retrying.
    Transport(String),
    /// 429 or 5xx: worth retrying, after `retry_after` if given.
    Transient {
        status: u16,
        retry_after: Option<Duration>,
        text: String,
    },
    /// Retrying changes nothing.
    Fatal(String),
    /// 401 or 403: the credentials are refused; retrying changes nothing.
    Refused(String),
}

impl fmt::Display for AttemptFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptFailure::Transport(e) => write!(f, "connection failed: {e}"),
            AttemptFailure::Transient { status, text, .. } => write!(f, "HTTP {status}: {text}"),
            AttemptFailure::Fatal(e) | AttemptFailure::Refused(e) => f.write_str(e),
        }
    }
}

impl AttemptFailure {
    /// The retry policy's view of it.
    pub(crate) fn judge(&self) -> Next {
        match self {
            AttemptFailure::Transport(_) => Next::Retry { retry_after: None },
            AttemptFailure::Transient { retry_after, .. } => Next::Retry {
                retry_after: *retry_after,
            },
            AttemptFailure::Fatal(_) | AttemptFailure::Refused(_) => Next::GiveUp,
        }
    }

    /// The source's error once the retries are over: a refusal is [`SourceError::Refused`]
    /// by `source_name`, anything else what `other` makes of the reason.
    pub(crate) fn into_source_error(
        self,
        attempts: u32,
        source_name: impl FnOnce() -> String,
        other: impl FnOnce(String) -> crate::usage::SourceError,
    ) -> crate::usage::SourceError {
        let reason = self.after(attempts);
        match self {
            AttemptFailure::Refused(_) => crate::usage::SourceError::Refused {
                source_name: source_name(),
                reason,
            },
            _ => other(reason),
        }
    }

    /// The reason to give once the retries are over.
    pub(crate) fn after(&self, attempts: u32) -> String {
        if attempts > 1 {
            format!("{self} (after {attempts} attempts)")
        } else {
            self.to_string()
        }
    }

    /// A non-success answer; `refused` says what a 401 or 403 means.
    pub(crate) fn of_answer(
        status: reqwest::StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        refused: &str,
    ) -> AttemptFailure {
        let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
        match status.as_u16() {
            401 | 403 => AttemptFailure::Refused(format!("HTTP {status}: {refused}")),
            429 | 500..=599 => AttemptFailure::Transient {
                status: status.as_u16(),
                retry_after: headers
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now())),
                text,
            },
            _ => AttemptFailure::Fatal(format!("HTTP {status}: {text}")),
        }
    }
}

/// A vendor URL as messages and logs show it: without its query, user and password (which
/// may hold a key).
pub(crate) fn shown_url(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}

/// Adds `Authorization: Bearer <token>` (marked sensitive) unless the token is empty.
pub(crate) fn with_bearer(
    req: reqwest::RequestBuilder,
    token: &Secret,
) -> Result<reqwest::RequestBuilder, AttemptFailure> {
    if token.is_empty() {
        return Ok(req);
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .map_err(|_| AttemptFailure::Fatal("the token is not a valid header value".into()))?;
    value.set_sensitive(true);
    Ok(req.header(AUTHORIZATION, value))
}
