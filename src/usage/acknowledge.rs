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

use super::vendor_http::{AttemptFailure, with_bearer};
use connect_client::retry::RetryPolicy;
use connect_client::secret::Secret;

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
        connect_client::install_crypto_provider();
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
                .map_err(|e| AttemptFailure::Transport(e.without_url().to_string()))?;
            let status = resp.status();
            if status.is_success() {
                return Ok(Acknowledged::Received);
            }
            if status.as_u16() == 409 {
                return Ok(Acknowledged::AlreadyKnown);
            }
            let headers = resp.headers().clone();
            let body = resp.bytes().await.unwrap_or_default();
            Err(AttemptFailure::of_answer(
                status,
                &headers,
                &body,
                "the token was refused (check USAGE_SOURCE_TOKEN)",
            ))
        };
        let judge = AttemptFailure::judge;
        self.retry
            .run(attempt, judge)
            .await
            .map_err(|(f, attempts)| {
                let reason = f.after(attempts);
                match f {
                    AttemptFailure::Fatal(_) | AttemptFailure::Refused(_) => AckError::Refused {
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::http::{HeaderMap, StatusCode};

    use super::*;

    fn ack() -> Acknowledgement {
        Acknowledgement {
            usage_file_id: "UF-2026-11-0000-0001".into(),
            external_id: "cu:CRD-1:PRD-1:2026-10".into(),
            contract_id: "CRD-1".into(),
            product_id: "PRD-1".into(),
            period: "2026-10".into(),
            status: "accepted".into(),
            records: 3,
            acceptance_note: None,
            accepted_at: None,
        }
    }

    /// What the endpoint saw of each request: its idempotency key and authorization.
    type Seen = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;

    /// An endpoint answering `answers` in turn (the last one from then on); returns its URL
    /// and what it saw.
    async fn endpoint(answers: Vec<u16>) -> (String, Seen) {
        let seen: Seen = Arc::default();
        let log = seen.clone();
        let app = axum::Router::new().route(
            "/ack",
            axum::routing::post(move |headers: HeaderMap| {
                let log = log.clone();
                let answers = answers.clone();
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let n = {
                        let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                        log.push((header("idempotency-key"), header("authorization")));
                        log.len() - 1
                    };
                    let status = answers[n.min(answers.len() - 1)];
                    StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/ack"), seen)
    }

    fn quick(url: &str) -> AckEndpoint {
        AckEndpoint::new(url, Secret::new("t0ken"))
            .expect("endpoint")
            .with_retry(RetryPolicy {
                max_retries: 2,
                initial_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
                ..RetryPolicy::default()
            })
    }

    #[tokio::test]
    async fn answers_are_judged_by_the_contract() {
        let cases: [(Vec<u16>, &str, usize); 5] = [
            (vec![201], "received", 1),
            (vec![409], "already known", 1),
            (vec![503, 200], "received", 2),
            (vec![401], "refused: HTTP 401", 1),
            (vec![500], "unavailable", 3),
        ];
        for (answers, want, calls) in cases {
            let (url, count) = endpoint(answers.clone()).await;
            let got = match quick(&url).send(&ack()).await {
                Ok(Acknowledged::Received) => "received".to_owned(),
                Ok(Acknowledged::AlreadyKnown) => "already known".to_owned(),
                Err(e @ AckError::Refused { .. }) => format!("refused: {e}"),
                Err(AckError::Unavailable { .. }) => "unavailable".to_owned(),
            };
            assert!(got.contains(want), "{answers:?}: {got}");
            let seen = count.lock().expect("log").clone();
            assert_eq!(seen.len(), calls, "{answers:?}");
            for (key, auth) in seen {
                assert_eq!(key.as_deref(), Some("UF-2026-11-0000-0001:accepted"));
                assert_eq!(auth.as_deref(), Some("Bearer t0ken"));
            }
        }
        let (url, _) = endpoint(vec![403]).await;
        let refused = quick(&url).send(&ack()).await.expect_err("refused");
        assert!(
            refused.to_string().contains("USAGE_SOURCE_TOKEN"),
            "{refused}"
        );
    }
}
