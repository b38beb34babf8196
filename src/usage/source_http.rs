//! Usage from the vendor's system over HTTP, by the contract of `docs/vendor-usage-api.md`:
//!
//! ```text
//! GET {USAGE_SOURCE}?period=YYYY-MM&limit=N[&cursor=C]
//! Authorization: Bearer {USAGE_SOURCE_TOKEN}
//! 200 {"records": [{...}, ...], "next_cursor": "..." | null}
//! ```
//!
//! Pages are read until `next_cursor` is null. Connection errors, timeouts, 5xx and 429 are
//! retried with the same policy as Connect's GETs (backoff, jitter, `Retry-After`).

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use futures_util::stream;
use reqwest::header::ACCEPT;
use serde::Deserialize;
use tracing::debug;

use super::period::Period;
use super::record::{Position, RawRecord, Rejection, SourceItem};
use super::source::{Batches, SourceError, UsageSource};
use super::vendor_http::{Failure, shown_url, with_bearer};
use crate::connect::retry::RetryPolicy;
use crate::secret::Secret;

/// Records asked for per page.
pub const PAGE_SIZE: u32 = 5000;

/// The vendor's usage API.
#[derive(Clone)]
pub struct VendorApiSource {
    http: reqwest::Client,
    url: reqwest::Url,
    token: Secret,
    retry: RetryPolicy,
    page_size: u32,
}

impl fmt::Debug for VendorApiSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VendorApiSource")
            .field("url", &self.url.as_str())
            .field("token", &self.token)
            .finish()
    }
}

impl VendorApiSource {
    pub fn new(url: &str, token: Secret) -> Result<VendorApiSource, SourceError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| SourceError::Config(format!("{url:?} is not a URL: {e}")))?;
        crate::connect::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| SourceError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(VendorApiSource {
            http,
            url: parsed,
            token,
            retry: RetryPolicy::default(),
            page_size: PAGE_SIZE,
        })
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> VendorApiSource {
        self.retry = retry;
        self
    }

    pub fn with_page_size(mut self, size: u32) -> VendorApiSource {
        self.page_size = size.max(1);
        self
    }

    fn page_url(&self, period: Period, cursor: Option<&str>) -> reqwest::Url {
        let mut url = self.url.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("period", &period.to_string());
            q.append_pair("limit", &self.page_size.to_string());
            if let Some(c) = cursor {
                q.append_pair("cursor", c);
            }
        }
        url
    }

    /// Shown in messages: the URL without what may hold a key.
    fn shown_url(&self) -> String {
        shown_url(&self.url)
    }

    async fn fetch_page(&self, period: Period, cursor: Option<&str>) -> Result<Page, SourceError> {
        let url = self.page_url(period, cursor);
        let attempt = || async {
            let req = self
                .http
                .get(url.clone())
                .header(ACCEPT, "application/json");
            let req = with_bearer(req, &self.token)?;
            // Errors without the URL: its query may hold a key.
            let resp = req
                .send()
                .await
                .map_err(|e| Failure::Transport(e.without_url().to_string()))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp
                .bytes()
                .await
                .map_err(|e| Failure::Transport(e.without_url().to_string()))?;
            if status.is_success() {
                return serde_json::from_slice::<Page>(&body).map_err(|e| {
                    Failure::Fatal(format!("the answer is not a page of usage records: {e}"))
                });
            }
            Err(Failure::of_answer(
                status,
                &headers,
                &body,
                "the usage source refused the token (check USAGE_SOURCE_TOKEN)",
            ))
        };
        let judge = Failure::judge;
        self.retry
            .run(attempt, judge)
            .await
            .map_err(|(f, attempts)| SourceError::Http {
                url: self.shown_url(),
                reason: f.after(attempts),
            })
    }
}

/// One page of the contract.
#[derive(Debug, Deserialize)]
struct Page {
    records: Vec<serde_json::Value>,
    #[serde(default)]
    next_cursor: Option<String>,
}

impl UsageSource for VendorApiSource {
    fn describe(&self) -> String {
        format!("vendor API {}", self.shown_url())
    }

    fn records(&self, period: Period) -> Batches {
        let this = self.clone();
        // (cursor to fetch, records seen so far, cursors used); `None` after the last page.
        Box::pin(stream::try_unfold(
            Some((None::<String>, 0u64, HashSet::<String>::new())),
            move |state| {
                let this = this.clone();
                async move {
                    let Some((cursor, seen, mut used)) = state else {
                        return Ok(None);
                    };
                    let page = this.fetch_page(period, cursor.as_deref()).await?;
                    debug!(records = page.records.len(), "usage page");
                    let mut ordinal = seen;
                    let items: Vec<SourceItem> = page
                        .records
                        .into_iter()
                        .map(|v| {
                            ordinal += 1;
                            let position = Position {
                                ordinal,
                                line: None,
                            };
                            match serde_json::from_value::<RawRecord>(v) {
                                Ok(raw) => raw.into_item(position),
                                Err(e) => SourceItem::Rejected(Rejection {
                                    position,
                                    record_id: None,
                                    reason: format!("not a usage record: {e}"),
                                }),
                            }
                        })
                        .collect();
                    if let Some(c) = &cursor {
                        used.insert(c.clone());
                    }
                    let next = match page.next_cursor.filter(|c| !c.is_empty()) {
                        Some(c) if used.contains(&c) => {
                            return Err(SourceError::Http {
                                url: this.shown_url(),
                                reason: format!(
                                    "the next cursor {c:?} was used before: the source would repeat pages"
                                ),
                            });
                        }
                        Some(c) => Some((Some(c), ordinal, used)),
                        None => None,
                    };
                    Ok(Some((items, next)))
                }
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;

    fn quick(url: &str) -> VendorApiSource {
        VendorApiSource::new(url, Secret::new("t"))
            .expect("source")
            .with_retry(RetryPolicy {
                max_retries: 1,
                initial_delay: Duration::from_millis(1),
                ..RetryPolicy::default()
            })
    }

    #[tokio::test]
    async fn errors_never_show_the_query() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let src = quick(&format!(
            "http://127.0.0.1:{port}/usage?api_key=TOPSECRET123"
        ));
        let e = src
            .records("2024-04".parse().expect("period"))
            .try_collect::<Vec<_>>()
            .await
            .expect_err("nobody listens");
        let text = e.to_string();
        assert!(text.contains("connection failed"), "{text}");
        assert!(!text.contains("TOPSECRET123"), "{text}");
        assert!(!src.describe().contains("TOPSECRET123"));
    }

    #[tokio::test]
    async fn a_cursor_that_comes_back_is_an_error_not_a_loop() {
        use axum::extract::Query;
        use std::collections::HashMap;
        let app = axum::Router::new().route(
            "/usage",
            axum::routing::get(|Query(q): Query<HashMap<String, String>>| async move {
                let next = match q.get("cursor").map(String::as_str) {
                    None => "A",
                    Some("A") => "B",
                    _ => "A",
                };
                axum::Json(serde_json::json!({"records": [], "next_cursor": next}))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let e = quick(&format!("http://{addr}/usage"))
            .records("2024-04".parse().expect("period"))
            .try_collect::<Vec<_>>()
            .await
            .expect_err("cycle");
        assert!(
            e.to_string()
                .contains("the next cursor \"A\" was used before"),
            "{e}"
        );
    }
}
