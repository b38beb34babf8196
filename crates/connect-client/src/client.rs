//! The HTTP core of the Connect client: one `reqwest` client, the API key, timeouts and the
//! retry policy, and the decoding of answers and error bodies.
//!
//! Retry rules: idempotent requests (GETs, updates) are sent again on connection errors,
//! timeouts, 5xx and 429. A POST, or a PUT that triggers an action, is sent again only when it
//! surely was not applied: the connection could not be opened, or the server declined it with
//! 429. Any other failure is returned with [`ConnectError::outcome_unknown`] set, for the
//! caller to re-read state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_RANGE, HeaderMap, RETRY_AFTER, USER_AGENT};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{Instrument, debug, debug_span};

use super::auth::ApiKey;
use super::error::{ConnectError, ErrorKind, RequestLine};
use super::paging::{ContentRange, Page};
use super::retry::{Next, RetryPolicy, parse_retry_after};
use crate::rql::Query;

/// Production API base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.connect.cloudblue.com/public/v1";

/// Turns an address as the official runner takes it (`API_ADDRESS`: a host such as
/// `api.connect.cloudblue.com`) into the API base URL. An address with a scheme
/// (`http://127.0.0.1:8080`) is used as given, with `/public/v1` added when it has no path.
pub fn api_base_url(address: &str) -> Result<String, ConnectError> {
    let address = address.trim().trim_end_matches('/');
    if address.is_empty() {
        return Err(ConnectError::invalid("the API address is empty"));
    }
    let with_scheme = if address.contains("://") {
        address.to_owned()
    } else {
        format!("https://{address}")
    };
    let url = reqwest::Url::parse(&with_scheme)
        .map_err(|e| ConnectError::invalid(format!("bad API address {address:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConnectError::invalid(format!(
            "bad API address {address:?}: the scheme must be http or https"
        )));
    }
    if url.path() == "/" || url.path().is_empty() {
        Ok(format!("{}/public/v1", with_scheme.trim_end_matches('/')))
    } else {
        Ok(with_scheme)
    }
}

/// Settings for [`ConnectClient`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: String,
    api_key: ApiKey,
    timeout: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
    user_agent: String,
}

impl ClientBuilder {
    /// Total time allowed for one attempt of a request, answer body included (default 180 s,
    /// Connect's own client's read timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Time allowed to open a connection (default 15 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    pub fn build(self) -> Result<ConnectClient, ConnectError> {
        install_crypto_provider();
        let base = reqwest::Url::parse(&self.base_url).map_err(|e| {
            ConnectError::invalid(format!("bad API base URL {:?}: {e}", self.base_url))
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ConnectError::invalid(format!(
                "bad API base URL {:?}: the scheme must be http or https",
                self.base_url
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .build()
            .map_err(|e| ConnectError::invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(ConnectClient {
            inner: Arc::new(Inner {
                http,
                base_url: self.base_url.trim_end_matches('/').to_owned(),
                api_key: self.api_key,
                retry: self.retry,
                user_agent: self.user_agent,
                sent: AtomicU64::new(0),
            }),
            headers: Arc::new(HeaderMap::new()),
        })
    }
}

/// Installs the process-wide rustls crypto provider (ring, which builds faster than aws-lc).
/// Every reqwest client needs one; [`ConnectClient`] calls this itself, other HTTP clients of
/// the process (tests, the vendor API source) call it before building theirs.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only when another provider is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A Connect REST API client. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct ConnectClient {
    inner: Arc<Inner>,
    /// Headers added to every request of this handle (the runner's per-task `EAAS_*`
    /// headers); clones made by [`ConnectClient::with_headers`] share the connection pool.
    headers: Arc<HeaderMap>,
}

struct Inner {
    http: reqwest::Client,
    base_url: String,
    api_key: ApiKey,
    retry: RetryPolicy,
    user_agent: String,
    /// Requests sent, retries included.
    sent: AtomicU64,
}

impl std::fmt::Debug for ConnectClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectClient")
            .field("base_url", &self.inner.base_url)
            .field("api_key", &self.inner.api_key)
            .field("retry", &self.inner.retry)
            .finish()
    }
}

/// Whether sending a request twice has the effect of sending it once. Decided per call, not
/// per HTTP method: `PUT /usage/files/{id}` is an idempotent update, `PUT
/// /usage/files/{id}/approve-all` a one-way state transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Sent again on connection errors, timeouts, 5xx and 429.
    Safe,
    /// Sent again only when it surely was not applied (connection refused, 429).
    Unsafe,
}

/// A request body that can be rebuilt for a retry.
#[derive(Clone)]
pub(crate) enum Body {
    Empty,
    Json(Bytes),
    /// One file field in a `multipart/form-data` body.
    File {
        field: &'static str,
        filename: String,
        content_type: &'static str,
        data: Bytes,
    },
}

impl ConnectClient {
    /// A client for `base_url` (such as [`DEFAULT_BASE_URL`] or the sandbox's
    /// `http://127.0.0.1:PORT/public/v1`) with default settings.
    pub fn new(
        base_url: impl Into<String>,
        api_key: ApiKey,
    ) -> Result<ConnectClient, ConnectError> {
        ConnectClient::builder(base_url, api_key).build()
    }

    pub fn builder(base_url: impl Into<String>, api_key: ApiKey) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            api_key,
            timeout: Duration::from_secs(180),
            connect_timeout: Duration::from_secs(15),
            retry: RetryPolicy::default(),
            user_agent: format!("connect-usage/{}", env!("CARGO_PKG_VERSION")),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// Downloads a link Connect handed out (a file's `usage_file_uri`: a signed storage link,
    /// so no key is sent) into `to`, streaming; returns the bytes written. Retried like a GET.
    pub async fn download_link(
        &self,
        url: &str,
        to: &std::path::Path,
    ) -> Result<u64, ConnectError> {
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        // The link's query is its signature: never shown.
        let line = RequestLine {
            method: Method::GET,
            path: url.split('?').next().unwrap_or_default().to_owned(),
        };
        let transport = |e: reqwest::Error| transport_error(&line, e);
        let attempt = || async {
            self.inner.sent.fetch_add(1, Ordering::Relaxed);
            let resp = self
                .inner
                .http
                .get(url)
                .header(USER_AGENT, self.inner.user_agent.as_str())
                .send()
                .await
                .map_err(transport)?;
            let status = resp.status();
            if !status.is_success() {
                return Err(ConnectError::new(
                    Some(line.clone()),
                    ErrorKind::Api {
                        status: status.as_u16(),
                        error_code: None,
                        errors: vec![format!("the download link answered {status}")],
                        retry_after: None,
                    },
                ));
            }
            let mut file = tokio::fs::File::create(to).await.map_err(|e| {
                ConnectError::invalid(format!("cannot write {}: {e}", to.display()))
            })?;
            let mut body = resp.bytes_stream();
            let mut written = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(transport)?;
                written += chunk.len() as u64;
                file.write_all(&chunk).await.map_err(|e| {
                    ConnectError::invalid(format!("cannot write {}: {e}", to.display()))
                })?;
            }
            file.flush().await.map_err(|e| {
                ConnectError::invalid(format!("cannot write {}: {e}", to.display()))
            })?;
            Ok(written)
        };
        self.inner
            .retry
            .run(attempt, |e: &ConnectError| {
                if e.is_transient() {
                    Next::Retry { retry_after: None }
                } else {
                    Next::GiveUp
                }
            })
            .await
            .map_err(|(e, attempts)| e.with_attempts(attempts))
    }

    /// A handle on the same connection pool and key that adds `headers` to every request
    /// (replacing a header of the same name, `User-Agent` included).
    pub fn with_headers(&self, headers: HeaderMap) -> ConnectClient {
        let mut merged = (*self.headers).clone();
        for (name, value) in headers.iter() {
            merged.insert(name.clone(), value.clone());
        }
        ConnectClient {
            inner: self.inner.clone(),
            headers: Arc::new(merged),
        }
    }

    /// The number of objects `GET {collection}?{filter}&limit=0&offset=0` reports in its
    /// `Content-Range`, with the filter sent as given (an RQL text such as the platform's
    /// event definition filters).
    pub async fn count_raw(&self, collection: &str, filter: &str) -> Result<u64, ConnectError> {
        let sep = if filter.is_empty() { "" } else { "&" };
        let (line, resp) = self
            .send(
                Method::GET,
                format!("{collection}?{filter}{sep}limit=0&offset=0"),
                Body::Empty,
                Replay::Safe,
            )
            .await?;
        let text = resp
            .headers
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        ContentRange::parse(text).map(|r| r.total).ok_or_else(|| {
            ConnectError::new(
                Some(line),
                ErrorKind::Decode {
                    reason: format!("no usable Content-Range header in a count ({text:?})"),
                },
            )
        })
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// How many requests this client (and its clones) sent, retries included.
    pub fn requests_sent(&self) -> u64 {
        self.inner.sent.load(Ordering::Relaxed)
    }

    /// One cheap request that tells whether the address answers and takes the key (a page of
    /// one marketplace), so that a wrong `API_KEY` or `API_ADDRESS` is said before any work.
    pub async fn check_access(&self) -> Result<(), ConnectError> {
        self.get::<serde_json::Value>("/marketplaces?limit=1")
            .await
            .map(drop)
    }

    /// `GET path` decoded as `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ConnectError> {
        let (line, resp) = self
            .send(Method::GET, path.to_owned(), Body::Empty, Replay::Safe)
            .await?;
        decode(&line, &resp.body)
    }

    /// One page of a collection: `GET path?<query>&limit=L&offset=O`.
    pub async fn get_page<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &Query,
        limit: u64,
        offset: u64,
    ) -> Result<Page<T>, ConnectError> {
        let qs = query.to_query_string(limit, offset)?;
        let (line, resp) = self
            .send(
                Method::GET,
                format!("{path}?{qs}"),
                Body::Empty,
                Replay::Safe,
            )
            .await?;
        let range = match resp.headers.get(CONTENT_RANGE) {
            None => None,
            Some(v) => {
                let text = v.to_str().unwrap_or_default();
                Some(ContentRange::parse(text).ok_or_else(|| {
                    ConnectError::new(
                        Some(line.clone()),
                        ErrorKind::Decode {
                            reason: format!("malformed Content-Range header {text:?}"),
                        },
                    )
                })?)
            }
        };
        let items: Vec<T> = decode(&line, &resp.body)?;
        let body_hash = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            resp.body.hash(&mut h);
            h.finish()
        };
        Ok(Page {
            items,
            range,
            body_hash,
        })
    }

    /// `POST path` with a JSON body (or none), decoded as `T`.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ConnectError> {
        self.json_request(Method::POST, path, body, Replay::Unsafe)
            .await
    }

    /// `PUT path` with a JSON body, decoded as `T`: an idempotent update, retried like a GET.
    pub async fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ConnectError> {
        self.json_request(Method::PUT, path, Some(body), Replay::Safe)
            .await
    }

    /// `PUT path` that triggers an action (such as `approve-all`): not idempotent, so retried
    /// only as a POST is.
    pub async fn put_action<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ConnectError> {
        self.json_request(Method::PUT, path, body, Replay::Unsafe)
            .await
    }

    async fn json_request<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        replay: Replay,
    ) -> Result<T, ConnectError> {
        let body = json_body(body)?;
        let (line, resp) = self.send(method, path.to_owned(), body, replay).await?;
        decode(&line, &resp.body)
    }

    /// `POST path` with one file in a multipart form, decoded as `T`.
    pub(crate) async fn post_file<T: DeserializeOwned>(
        &self,
        path: &str,
        field: &'static str,
        filename: String,
        content_type: &'static str,
        data: Bytes,
    ) -> Result<T, ConnectError> {
        let body = Body::File {
            field,
            filename,
            content_type,
            data,
        };
        let (line, resp) = self
            .send(Method::POST, path.to_owned(), body, Replay::Unsafe)
            .await?;
        decode(&line, &resp.body)
    }

    /// Sends a request, retrying as the policy and `replay` allow.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: String,
        body: Body,
        replay: Replay,
    ) -> Result<(RequestLine, RawResponse), ConnectError> {
        let line = RequestLine {
            method: method.clone(),
            path,
        };
        let span = debug_span!("connect_request", method = %line.method, path = %line.path);
        self.send_with_retries(line, body, replay)
            .instrument(span)
            .await
    }

    async fn send_with_retries(
        &self,
        line: RequestLine,
        body: Body,
        replay: Replay,
    ) -> Result<(RequestLine, RawResponse), ConnectError> {
        // A 429 is the server declining the request (RFC 6585), so it is sent again whatever
        // `replay` says; any other failure of an unsafe request may have been applied.
        let idempotent = replay == Replay::Safe;
        let attempt = || async {
            let started = Instant::now();
            let resp = self.attempt(&line, &body).await?;
            if resp.status.is_success() {
                debug!(
                    status = resp.status.as_u16(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "answered"
                );
                Ok(resp)
            } else {
                Err(api_error(&line, &resp))
            }
        };
        let judge = |err: &ConnectError| match err.kind() {
            ErrorKind::Api {
                status,
                retry_after,
                ..
            } if *status == 429 || (idempotent && *status >= 500) => Next::Retry {
                retry_after: *retry_after,
            },
            // A name that does not exist will not exist in a second either.
            ErrorKind::Transport {
                unknown_host: true, ..
            } => Next::GiveUp,
            ErrorKind::Transport { connect, .. } if idempotent || *connect => {
                Next::Retry { retry_after: None }
            }
            _ => Next::GiveUp,
        };
        let on_retry = || super::metrics::retry(line.method.as_str());
        match self.inner.retry.run_counted(attempt, judge, on_retry).await {
            Ok(resp) => Ok((line, resp)),
            Err((err, attempts)) => {
                let maybe_applied = match err.kind() {
                    ErrorKind::Api { status, .. } => *status >= 500,
                    ErrorKind::Transport { connect, .. } => !*connect,
                    _ => false,
                };
                let err = err.with_attempts(attempts);
                Err(if !idempotent && maybe_applied {
                    err.with_outcome_unknown()
                } else {
                    err
                })
            }
        }
    }

    /// One attempt: send and read the whole answer.
    async fn attempt(&self, line: &RequestLine, body: &Body) -> Result<RawResponse, ConnectError> {
        self.inner.sent.fetch_add(1, Ordering::Relaxed);
        let url = format!("{}{}", self.inner.base_url, line.path);
        let mut req = self
            .inner
            .http
            .request(line.method.clone(), url)
            .header(AUTHORIZATION, self.inner.api_key.header_value())
            .header(USER_AGENT, self.inner.user_agent.as_str());
        if !self.headers.is_empty() {
            // `headers` replaces same-named ones (`header` would append a second User-Agent).
            req = req.headers((*self.headers).clone());
        }
        req = match body {
            Body::Empty => req,
            Body::Json(bytes) => req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes.clone()),
            Body::File {
                field,
                filename,
                content_type,
                data,
            } => {
                let part = reqwest::multipart::Part::stream(data.clone())
                    .file_name(filename.clone())
                    .mime_str(content_type)
                    .map_err(|e| transport_error(line, e))?;
                req.multipart(reqwest::multipart::Form::new().part(*field, part))
            }
        };
        let resp = req.send().await.map_err(|e| {
            super::metrics::request(line.method.as_str(), None);
            transport_error(line, e)
        })?;
        let status = resp.status();
        super::metrics::request(line.method.as_str(), Some(status.as_u16()));
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| transport_error(line, e))?;
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }
}

/// A whole HTTP answer.
pub(crate) struct RawResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

fn json_body<B: Serialize + ?Sized>(body: Option<&B>) -> Result<Body, ConnectError> {
    match body {
        None => Ok(Body::Empty),
        Some(b) => serde_json::to_vec(b)
            .map(|v| Body::Json(Bytes::from(v)))
            .map_err(|e| ConnectError::invalid(format!("cannot encode the request body: {e}"))),
    }
}

fn transport_error(line: &RequestLine, e: reqwest::Error) -> ConnectError {
    // Without the URL, which the request line already names; the source chain says what
    // actually failed.
    let (connect, timeout) = (e.is_connect(), e.is_timeout());
    let reason = crate::error_text::error_text(&e.without_url());
    ConnectError::new(
        Some(line.clone()),
        ErrorKind::Transport {
            unknown_host: names_no_host(&reason),
            reason,
            connect,
            timeout,
        },
    )
}

/// Whether a failed lookup's text says the name does not exist (`EAI_NONAME`, glibc's and the
/// BSDs' words; `EAI_NODATA`), rather than that resolving failed for now (`EAI_AGAIN`:
/// "Temporary failure in name resolution"), which is worth retrying.
fn names_no_host(text: &str) -> bool {
    text.contains("dns error")
        && [
            "Name or service not known",
            "nodename nor servname provided",
            "No address associated with hostname",
        ]
        .iter()
        .any(|words| text.contains(words))
}

/// Decodes a JSON answer, naming the path of the first field that does not fit.
pub(crate) fn decode<T: DeserializeOwned>(
    line: &RequestLine,
    body: &[u8],
) -> Result<T, ConnectError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ConnectError::new(
            Some(line.clone()),
            ErrorKind::Decode {
                reason: if path == "." {
                    e.into_inner().to_string()
                } else {
                    format!("at {path}: {}", e.into_inner())
                },
            },
        )
    })
}

/// Builds the error for a non-2xx answer from Connect's `{"error_code", "errors"}` body, or
/// from the raw text when the body is not that.
fn api_error(line: &RequestLine, resp: &RawResponse) -> ConnectError {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error_code: Option<String>,
        #[serde(default)]
        errors: Vec<serde_json::Value>,
    }
    let retry_after = resp
        .headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let (error_code, errors) = match serde_json::from_slice::<ErrorBody>(&resp.body) {
        Ok(b) => (
            b.error_code,
            b.errors
                .into_iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
        ),
        Err(_) => {
            let text = String::from_utf8_lossy(&resp.body);
            let text = text.trim();
            let message = if text.is_empty() {
                resp.status
                    .canonical_reason()
                    .unwrap_or("no message")
                    .to_owned()
            } else {
                text.chars().take(300).collect()
            };
            (None, vec![message])
        }
    };
    ConnectError::new(
        Some(line.clone()),
        ErrorKind::Api {
            status: resp.status.as_u16(),
            error_code,
            errors,
            retry_after,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_that_does_not_exist_is_told_from_a_lookup_failing_for_now() {
        let glibc = "error sending request: client error (Connect): dns error: failed to lookup address information: Name or service not known";
        assert!(names_no_host(glibc));
        assert!(names_no_host(
            "dns error: failed to lookup address information: nodename nor servname provided, or not known"
        ));
        assert!(!names_no_host(
            "dns error: failed to lookup address information: Temporary failure in name resolution"
        ));
        assert!(!names_no_host(
            "tcp connect error: Connection refused (os error 111)"
        ));
    }

    #[test]
    fn api_address_forms() {
        assert_eq!(
            api_base_url("api.connect.cloudblue.com").expect("valid"),
            "https://api.connect.cloudblue.com/public/v1"
        );
        assert_eq!(
            api_base_url("http://127.0.0.1:8080").expect("valid"),
            "http://127.0.0.1:8080/public/v1"
        );
        assert_eq!(
            api_base_url("http://127.0.0.1:8080/public/v1/").expect("valid"),
            "http://127.0.0.1:8080/public/v1"
        );
        assert!(api_base_url("").is_err());
        assert!(api_base_url("ftp://x").is_err());
    }

    #[test]
    fn debug_hides_the_key() {
        let key = ApiKey::new("SU-1:hidden-secret").expect("valid key");
        let client = ConnectClient::new("http://127.0.0.1:1/public/v1", key).expect("builds");
        let shown = format!("{client:?}");
        assert!(!shown.contains("hidden-secret"), "{shown}");
        assert!(shown.contains("127.0.0.1:1"));
    }
}
