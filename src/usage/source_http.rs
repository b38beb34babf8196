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
//!
//! Paging is sequential (a page's cursor is in the page before), reading is not. A task of
//! its own fetches the pages: as soon as one has arrived, its cursor is read (from its last
//! bytes when it ends with it, as pages usually do, else by a quick pass over the page that
//! reads no record) and the next page is asked for at once, while the page's records are read
//! on a blocking thread, straight into typed fields borrowed from the body (no
//! `serde_json::Value`), and checked. Up to [`AHEAD`] pages are read ahead of the consumer, so
//! the vendor's time to make a page, our time to read one and the consumer's time to take one
//! overlap.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use reqwest::header::ACCEPT;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use super::metrics::{self, SourceKind};
use super::record::{JsonRecord, Position, SourceItem};
use super::source::{Batches, SourceError, UsageSource};
use super::vendor_http::{AttemptFailure, shown_url, with_bearer};
use connect_client::month::Month;
use connect_client::retry::RetryPolicy;
use connect_client::secret::Secret;

/// Records asked for per page.
pub const PAGE_SIZE: u32 = 5000;

/// Pages fetched ahead of the consumer, being read or read and waiting, at most (besides the
/// one being fetched), unless told otherwise.
pub const AHEAD: usize = 2;

/// The vendor's usage API.
#[derive(Clone)]
pub struct VendorApiSource {
    http: reqwest::Client,
    url: reqwest::Url,
    token: Secret,
    retry: RetryPolicy,
    page_size: u32,
    ahead: usize,
}

impl fmt::Debug for VendorApiSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VendorApiSource")
            .field("url", &shown_url(&self.url))
            .field("token", &self.token)
            .finish()
    }
}

/// A page as fetched, with its cursor.
struct Fetched {
    body: Bytes,
    next_cursor: Option<String>,
}

/// A page being read on a blocking thread: its items (numbered from 1), or why it is not a
/// page.
type Reading = JoinHandle<Result<Vec<SourceItem>, String>>;

/// Pages being read, in order, and then the source's failure if any.
type Sender = mpsc::Sender<Result<Reading, SourceError>>;

impl VendorApiSource {
    pub fn new(url: &str, token: Secret) -> Result<VendorApiSource, SourceError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            let shown = super::source_url::shown_template(url);
            SourceError::Config(format!("{shown:?} is not a URL: {e}"))
        })?;
        connect_client::install_crypto_provider();
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
            ahead: AHEAD,
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

    /// How many pages may be fetched ahead of the consumer (at least 1; [`AHEAD`] by default).
    pub fn with_read_ahead(mut self, pages: usize) -> VendorApiSource {
        self.ahead = pages.max(1);
        self
    }

    fn page_url(&self, period: Month, cursor: Option<&str>) -> reqwest::Url {
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

    fn error(&self, reason: String) -> SourceError {
        SourceError::Http {
            url: self.shown_url(),
            reason,
        }
    }

    /// Fetches a page (with retries) and reads its cursor. An answer that is not a page is
    /// not retried: the quick pass says so here, else reading its records does.
    async fn fetch_page(
        &self,
        period: Month,
        cursor: Option<&str>,
    ) -> Result<Fetched, SourceError> {
        let url = self.page_url(period, cursor);
        let attempt = || async {
            let req = self
                .http
                .get(url.clone())
                .header(ACCEPT, "application/json");
            let req = with_bearer(req, &self.token)?;
            // Errors without the URL: its query may hold a key.
            let resp = req.send().await.map_err(|e| {
                metrics::source_request(SourceKind::VendorApi, None);
                AttemptFailure::Transport(e.without_url().to_string())
            })?;
            let status = resp.status();
            metrics::source_request(SourceKind::VendorApi, Some(status.as_u16()));
            let headers = resp.headers().clone();
            let body = resp
                .bytes()
                .await
                .map_err(|e| AttemptFailure::Transport(e.without_url().to_string()))?;
            if status.is_success() {
                if let Some(next_cursor) = cursor_at_end(&body) {
                    let next_cursor = next_cursor.map(str::to_owned);
                    return Ok(Fetched { body, next_cursor });
                }
                return tokio::task::spawn_blocking(move || {
                    let outline = serde_json::from_slice::<Outline>(&body)?;
                    Ok(Fetched {
                        next_cursor: outline.next_cursor,
                        body,
                    })
                })
                .await
                .map_err(|e| AttemptFailure::Fatal(format!("reading the page failed: {e}")))?
                .map_err(|e: serde_json::Error| AttemptFailure::Fatal(not_a_page(&e)));
            }
            Err(AttemptFailure::of_answer(
                status,
                &headers,
                &body,
                "the usage source refused the token (check USAGE_SOURCE_TOKEN)",
            ))
        };
        let judge = AttemptFailure::judge;
        self.retry
            .run_counted(attempt, judge, || {
                metrics::source_retry(SourceKind::VendorApi)
            })
            .await
            .map_err(|(f, attempts)| {
                f.into_source_error(
                    attempts,
                    || format!("vendor usage API {}", self.shown_url()),
                    |reason| self.error(reason),
                )
            })
    }

    /// Reads the month into `tx`: each page's reading (already under way), in order, then
    /// the source's failure, if any.
    async fn read_month(self, period: Month, tx: Sender) {
        if let Err(e) = self.pages(period, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    }

    async fn pages(&self, period: Month, tx: &Sender) -> Result<(), SourceError> {
        let mut cursor: Option<String> = None;
        let mut used = HashSet::<String>::new();
        loop {
            let page = self.fetch_page(period, cursor.as_deref()).await?;
            if let Some(c) = cursor.take() {
                used.insert(c);
            }
            let next = page.next_cursor.filter(|c| !c.is_empty());
            if let Some(c) = next.as_ref().filter(|c| used.contains(*c)) {
                return Err(self.error(format!(
                    "the next cursor {c:?} was used before: the source would repeat pages"
                )));
            }
            let body = page.body;
            let reading = tokio::task::spawn_blocking(move || read_page(&body));
            if tx.send(Ok(reading)).await.is_err() {
                // Nobody reads the batches any more.
                return Ok(());
            }
            match next {
                Some(c) => cursor = Some(c),
                None => return Ok(()),
            }
        }
    }

    /// A page's items, once read, numbered after the `seen` records of the pages before.
    async fn items(&self, reading: Reading, seen: u64) -> Result<Vec<SourceItem>, SourceError> {
        let mut items = reading
            .await
            .map_err(|e| self.error(format!("reading a page failed: {e}")))?
            .map_err(|reason| self.error(reason))?;
        debug!(records = items.len(), "usage page");
        if seen > 0 {
            for item in &mut items {
                let position = match item {
                    SourceItem::Record(r) => &mut r.position,
                    SourceItem::Rejected(r) => &mut r.position,
                };
                position.ordinal += seen;
            }
        }
        Ok(items)
    }
}

fn not_a_page(e: &serde_json::Error) -> String {
    format!("the answer is not a page of usage records: {e}")
}

/// The cursor of a page that ends with it, read backwards from the page's last bytes:
/// `Some(Some(cursor))`, or `Some(None)` for null, when the page ends with
/// `"next_cursor": "..."}` (a string without escapes) or `"next_cursor": null}`. Such an end
/// can only be the cursor of the page's top-level object, if the page is JSON at all (which
/// reading its records checks); `None` when the page ends otherwise.
fn cursor_at_end(body: &[u8]) -> Option<Option<&str>> {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let trim = |s: &[u8]| -> usize { s.len() - s.iter().rev().take_while(|b| ws(b)).count() };
    let mut end = trim(body);
    end = end.checked_sub(1).filter(|&e| body[e] == b'}')?;
    end = trim(&body[..end]);
    let value = if body[..end].ends_with(b"null") {
        end -= 4;
        None
    } else {
        let close = end.checked_sub(1).filter(|&e| body[e] == b'"')?;
        let open = body[..close].iter().rposition(|b| *b == b'"')?;
        let text = &body[open + 1..close];
        // Without escapes, the quote before is the string's first.
        if text.iter().any(|b| *b == b'\\' || *b < 0x20) {
            return None;
        }
        end = open;
        Some(std::str::from_utf8(text).ok()?)
    };
    end = trim(&body[..end]);
    end = end.checked_sub(1).filter(|&e| body[e] == b':')?;
    end = trim(&body[..end]);
    let key = b"\"next_cursor\"";
    if !body[..end].ends_with(key) {
        return None;
    }
    end = trim(&body[..end - key.len()]);
    matches!(body[..end].last(), Some(b',' | b'{')).then_some(value)
}

/// What the quick pass over a page reads: the shape of the contract and the cursor, the
/// records skipped.
#[derive(Debug, Deserialize)]
struct Outline {
    #[allow(dead_code)]
    records: Vec<IgnoredAny>,
    #[serde(default)]
    next_cursor: Option<String>,
}

/// Reads and checks the records of a page, numbered from 1.
fn read_page(body: &[u8]) -> Result<Vec<SourceItem>, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    PageSeed
        .deserialize(&mut de)
        .and_then(|items| de.end().map(|()| items))
        .map_err(|e| not_a_page(&e))
}

/// A page as [`Outline`] reads it, its records checked as they are read (no document tree,
/// no list of raw records).
struct PageSeed;

impl<'de> DeserializeSeed<'de> for PageSeed {
    type Value = Vec<SourceItem>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_struct("Outline", &["records", "next_cursor"], self)
    }
}

impl<'de> Visitor<'de> for PageSeed {
    type Value = Vec<SourceItem>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct Outline")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut items = None;
        let mut cursor_seen = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*key {
                "records" if items.is_some() => {
                    return Err(de::Error::duplicate_field("records"));
                }
                "records" => items = Some(map.next_value_seed(RecordsSeed)?),
                "next_cursor" if cursor_seen => {
                    return Err(de::Error::duplicate_field("next_cursor"));
                }
                "next_cursor" => {
                    cursor_seen = true;
                    map.next_value::<Option<String>>()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        items.ok_or_else(|| de::Error::missing_field("records"))
    }

    /// `[records, next_cursor]`, as a derived `Deserialize` takes a struct too.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let items = seq
            .next_element_seed(RecordsSeed)?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        seq.next_element::<Option<String>>()?;
        Ok(items)
    }
}

/// The records of a page, each checked as soon as it is read.
struct RecordsSeed;

impl<'de> DeserializeSeed<'de> for RecordsSeed {
    type Value = Vec<SourceItem>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed {
    type Value = Vec<SourceItem>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        let mut ordinal = 0;
        while let Some(record) = seq.next_element::<JsonRecord<'de>>()? {
            ordinal += 1;
            items.push(record.into_item(Position {
                ordinal,
                line: None,
            }));
        }
        Ok(items)
    }
}

/// Stops the fetching task when the consumer drops the stream.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the stream of batches holds between two of them.
struct Reader {
    source: VendorApiSource,
    pages: mpsc::Receiver<Result<Reading, SourceError>>,
    /// Records handed over so far.
    seen: u64,
    _fetching: AbortOnDrop,
}

impl UsageSource for VendorApiSource {
    fn describe(&self) -> String {
        format!("vendor API {}", self.shown_url())
    }

    fn records(&self, period: Month) -> Batches {
        let source = self.clone();
        // The fetching task starts with the first poll (in the consumer's runtime).
        let start = async move {
            let (tx, pages) = mpsc::channel(source.ahead);
            let fetching = AbortOnDrop(tokio::spawn(source.clone().read_month(period, tx)));
            Reader {
                source,
                pages,
                seen: 0,
                _fetching: fetching,
            }
        };
        Box::pin(stream::once(start).flat_map(|reader| {
            stream::unfold(Some(reader), |reader| async move {
                let mut reader = reader?;
                let batch = match reader.pages.recv().await? {
                    Ok(reading) => reader.source.items(reading, reader.seen).await,
                    Err(e) => Err(e),
                };
                // The stream ends with its first failure.
                let next = match &batch {
                    Ok(items) => {
                        reader.seen += items.len() as u64;
                        Some(reader)
                    }
                    Err(_) => None,
                };
                Some((batch, next))
            })
        }))
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

    #[test]
    fn debug_shows_the_url_without_its_query_or_password() {
        let source = VendorApiSource::new(
            "https://user:pw-1f3@vendor.example/usage?key=sig-9d2",
            Secret::new("token-77a"),
        )
        .expect("source");
        let shown = format!("{source:?}");
        assert!(shown.contains("https://vendor.example/usage"), "{shown}");
        for secret in ["pw-1f3", "sig-9d2", "token-77a", "user"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn a_cursor_is_read_from_the_end_of_a_page_only_when_it_is_certain() {
        let end = |s: &str| cursor_at_end(s.as_bytes()).map(|c| c.map(str::to_owned));
        let some = |c: &str| Some(Some(c.to_owned()));
        assert_eq!(end(r#"{"records":[],"next_cursor":"5000"}"#), some("5000"));
        assert_eq!(
            end("{ \"records\": [ ], \"next_cursor\" :\t\"A b\" }\r\n"),
            some("A b")
        );
        assert_eq!(
            end(r#"{"records":[{}],"next_cursor":"é/+="}"#),
            some("é/+=")
        );
        assert_eq!(end(r#"{"records":[],"next_cursor":""}"#), some(""));
        assert_eq!(end(r#"{"records":[],"next_cursor": null }"#), Some(None));
        assert_eq!(end(r#"{"next_cursor":"5"}"#), some("5"));
        for unsure in [
            "",
            "}",
            r#"{"next_cursor":"5","records":[]}"#,
            r#"{"records":[{"next_cursor":"x"}]}"#,
            r#"{"records":[],"a":"\",\"next_cursor\":\"x"}"#,
            r#"{"records":[],"next_cursor":"a\"b"}"#,
            r#"{"records":[],"next_cursor":"a\\"}"#,
            r#"{"records":[],"next_cursor":5}"#,
            r#"{"records":[],"next_cursor":["x"]}"#,
            r#"{"records":[],"xnext_cursor":"5"}"#,
            r#"{"records":[],"next_cursor":"5"]"#,
            "{\"records\":[],\"next_cursor\":\"a\tb\"}",
        ] {
            assert_eq!(end(unsure), None, "{unsure}");
        }
    }

    #[test]
    fn the_sandbox_pages_end_with_their_cursor() {
        let u = connect_sandbox::usage_universe::UsageUniverse::of(
            &connect_sandbox::dataset::Dataset::default_account(),
        );
        let month = u.month("2024-04".parse::<crate::usage::Month>().expect("period"));
        let mut body = String::from("{\"records\":[");
        for i in 0..50 {
            if i > 0 {
                body.push(',');
            }
            month.write_record(i, 0.5, &mut body);
        }
        body.push_str("],\"next_cursor\":\"50\"}");
        assert_eq!(cursor_at_end(body.as_bytes()), Some(Some("50")));
        let items = read_page(body.as_bytes()).expect("page");
        assert_eq!(items.len(), 50);
    }

    #[test]
    fn a_page_is_read_as_the_outline_reads_it() {
        for (body, ok) in [
            (r#"{"records":[{},5],"next_cursor":null,"x":[1]}"#, true),
            (r#"[[{}, 5], "7"]"#, true),
            (r#"{"records":[{},5]}"#, true),
            (r#"{"next_cursor":"5"}"#, false),
            (r#"{"records":{},"next_cursor":"5"}"#, false),
            (r#"{"records":[],"next_cursor":5}"#, false),
            (r#"{"records":[],"records":[]}"#, false),
            (
                r#"{"records":[],"next_cursor":null,"next_cursor":null}"#,
                false,
            ),
            (r#"{"records":[]} x"#, false),
            (r#"{"records":[1e999999]}"#, false),
            ("[]", false),
        ] {
            let outline = serde_json::from_slice::<Outline>(body.as_bytes());
            let read = read_page(body.as_bytes());
            if !body.contains("1e999999") {
                assert_eq!(outline.is_ok(), ok, "{body}");
            }
            assert_eq!(read.is_ok(), ok, "{body}: {read:?}");
            if let Ok(items) = read {
                assert_eq!(items.len(), 2, "{body}");
                assert_eq!(items[1].clone(), {
                    let position = Position {
                        ordinal: 2,
                        line: None,
                    };
                    JsonRecord::NotObject(Box::new(5.into())).into_item(position)
                });
            }
        }
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
    async fn reading_ahead_is_bounded_and_stops_with_the_stream() {
        use axum::extract::{Query, State};
        use std::collections::HashMap;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        // An endless month: every page has one record and a next cursor.
        let served = Arc::new(AtomicU64::new(0));
        let app = axum::Router::new()
            .route(
                "/usage",
                axum::routing::get(
                    |State(served): State<Arc<AtomicU64>>,
                     Query(q): Query<HashMap<String, String>>| async move {
                        served.fetch_add(1, Ordering::SeqCst);
                        let at: u64 = q.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
                        axum::Json(serde_json::json!({
                            "records": [{"subscription_id": "AS-1", "item_mpn": "M",
                                "quantity": 1, "start_time": "2024-04-01T00:00:00Z",
                                "end_time": "2024-04-01T01:00:00Z", "record_id": at.to_string()}],
                            "next_cursor": (at + 1).to_string(),
                        }))
                    },
                ),
            )
            .with_state(served.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let source = quick(&format!("http://{addr}/usage")).with_read_ahead(2);
        let mut batches = source.records("2024-04".parse().expect("period"));
        for n in 1..=3u64 {
            let batch = batches.try_next().await.expect("read").expect("a batch");
            match batch.as_slice() {
                [SourceItem::Record(r)] => {
                    assert_eq!(r.position.ordinal, n);
                    assert_eq!(r.record_id.as_deref(), Some(&*(n - 1).to_string()));
                }
                other => panic!("{other:?}"),
            }
        }
        // The consumer stops taking batches: the reader gets at most a few pages ahead.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ahead = served.load(Ordering::SeqCst);
        assert!((4..=3 + 2 + 2).contains(&ahead), "{ahead} pages fetched");
        // Dropping the stream stops the reader.
        drop(batches);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stopped = served.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(served.load(Ordering::SeqCst), stopped);
        assert!(stopped <= ahead + 1, "{stopped} after {ahead}");
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
