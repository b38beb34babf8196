//! Telling the vendor's system that a provider accepted a usage file, by the contract of
//! `docs/vendor-usage-api.md` (section "Acknowledgements"):
//!
//! ```text
//! POST {USAGE_ACK_URL}
//! Authorization: Bearer {USAGE_SOURCE_TOKEN}
//! Idempotency-Key: {usage file id}:accepted
//! {"usage_file_id": ..., "external_id": ..., "contract_id": ..., "product_id": ...,
//!  "period": "YYYY-MM", "status": "accepted", "records": n, "acceptance_note": ...,
//!  "accepted_at": ...}
//! ```
//!
//! The contract makes the POST idempotent: a repeat of an acknowledgement the vendor already
//! has answers 2xx (or 409) and changes nothing. That is what allows retrying it after a
//! timeout or a 5xx, and answering the same `accepted` event twice.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::vendor_http::{Failure, with_bearer};
use crate::connect::retry::RetryPolicy;
use crate::secret::Secret;

/// What the vendor is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Acknowledgement {
    pub usage_file_id: String,
    pub external_id: String,
    pub contract_id: String,
    pub product_id: String,
    /// `YYYY-MM`
    pub period: String,
    /// `accepted`
    pub status: String,
    /// Records the file holds.
    pub records: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acceptance_note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<String>,
}

impl Acknowledgement {
    /// The idempotency key: one acknowledgement per file and status.
    pub fn key(&self) -> String {
        format!("{}:{}", self.usage_file_id, self.status)
    }
}

/// How the vendor answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acknowledged {
    /// Taken (2xx).
    Received,
    /// The vendor had it already (409).
    AlreadyKnown,
}

/// Why the vendor was not told.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    /// Worth trying later (timeouts, 429, 5xx after the retries).
    #[error("the acknowledgement endpoint {url} did not answer: {reason}")]
    Unavailable { url: String, reason: String },
    /// A person must fix something (URL, token, the endpoint's contract).
    #[error("the acknowledgement endpoint {url} refused: {reason}")]
    Refused { url: String, reason: String },
}

/// The vendor's acknowledgement endpoint.
#[derive(Clone)]
pub struct AckEndpoint {
    http: reqwest::Client,
    url: reqwest::Url,
    token: Secret,
    retry: RetryPolicy,
}

impl fmt::Debug for AckEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckEndpoint")
            .field("url", &self.shown_url())
            .field("token", &self.token)
            .finish()
    }
}

impl AckEndpoint {
    pub fn new(url: &str, token: Secret) -> Result<AckEndpoint, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("{url:?} is not an http(s) URL"));
        }
        crate::connect::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(AckEndpoint {
            http,
            url: parsed,
            token,
            retry: RetryPolicy::default(),
        })
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> AckEndpoint {
        self.retry = retry;
        self
    }

    /// The URL without what may hold a key, for messages.
    pub fn shown_url(&self) -> String {
        super::vendor_http::shown_url(&self.url)
    }

    /// Sends the acknowledgement, retrying what the contract makes safe to retry.
    pub async fn send(&self, ack: &Acknowledgement) -> Result<Acknowledged, AckError> {
        let attempt = || async {
            let req = self
                .http
                .post(self.url.clone())
                .header("Idempotency-Key", ack.key())
                .json(ack);
            let req = with_bearer(req, &self.token)?;
            let resp = req
                .send()
                .await
                .map_err(|e| Failure::Transport(e.without_url().to_string()))?;
            let status = resp.status();
            if status.is_success() {
                return Ok(Acknowledged::Received);
            }
            if status.as_u16() == 409 {
                return Ok(Acknowledged::AlreadyKnown);
            }
            let headers = resp.headers().clone();
            let body = resp.bytes().await.unwrap_or_default();
            Err(Failure::of_answer(
                status,
                &headers,
                &body,
                "the token was refused (check USAGE_SOURCE_TOKEN)",
            ))
        };
        let judge = Failure::judge;
        self.retry
            .run(attempt, judge)
            .await
            .map_err(|(f, attempts)| {
                let reason = f.after(attempts);
                match f {
                    Failure::Fatal(_) => AckError::Refused {
                        url: self.shown_url(),
                        reason,
                    },
                    _ => AckError::Unavailable {
                        url: self.shown_url(),
                        reason,
                    },
                }
            })
    }
}
