//! Usage from an export file behind an http(s) URL (`USAGE_SOURCE=https://.../usage-{period}.csv`,
//! a bucket's signed link, a vendor's download endpoint), perhaps naming the month.
//!
//! The month's URL is fetched with the Vendor API's retry policy and wording (connection
//! errors, timeouts, 5xx and 429 retried, `Retry-After` honoured), the bearer token sent when
//! there is one. The body is streamed, never held whole: a task reads it chunk by chunk and
//! hands the chunks over a bounded channel to a [`Read`] adapter, which the text readers of
//! [`super::source_file`] use on a blocking thread. A body that breaks off midway is resumed
//! with `Range: bytes=N-` when the server takes ranges (`Accept-Ranges: bytes`), with
//! `If-Range` so that a file changed meanwhile is not stitched to the old one; otherwise the
//! read fails, and with it the run (a source's error ends it: nothing half-read is reported).
//!
//! The format follows the path's extension (`.json`: the first bytes tell an array from
//! JSON Lines), else the `Content-Type`, else the first bytes. Parquet needs random access,
//! so a Parquet export is downloaded to a file in the work directory first, and removed
//! after.
//!
//! Signed links carry their secret in the query string: messages, logs and `Debug` show URLs
//! without it (and without user and password), and the token never.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::{StreamExt, stream};
use reqwest::header::{
    ACCEPT_RANGES, CONTENT_RANGE, CONTENT_TYPE, ETAG, HeaderMap, HeaderValue, IF_RANGE,
    LAST_MODIFIED, RANGE,
};
use reqwest::{Response, StatusCode, Url};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::metrics::{self, SourceKind};
use super::record::SourceItem;
use super::source::{Batches, SourceError, UsageSource, fill_in, is_template};
use super::source_file::{FileFormat, Sender, read_text};
use super::vendor_http::{AttemptFailure, shown_url, with_bearer};
use connect_client::month::Month;
use connect_client::retry::RetryPolicy;
use connect_client::secret::Secret;

/// Bytes looked at to tell a format by its first bytes.
const SNIFF: usize = 512;
/// Chunks of the body waiting for the reader, at most.
const CHUNKS_AHEAD: usize = 16;
/// Bytes of an error answer read to quote it.
const ERROR_BODY: usize = 4096;
/// What a 401 or 403 means for a download.
const REFUSED: &str = "refused (check USAGE_SOURCE_TOKEN, or the signed link may have expired)";

/// An export file at a URL, perhaps naming the month.
#[derive(Clone)]
pub struct FileUrlSource {
    http: reqwest::Client,
    /// The URL as configured, perhaps with `{period}`: it may hold a signature.
    template: String,
    token: Secret,
    retry: RetryPolicy,
    /// Where a Parquet export is kept while it is read.
    download_dir: PathBuf,
}

impl fmt::Debug for FileUrlSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileUrlSource")
            .field("url", &shown_template(&self.template))
            .field("token", &self.token)
            .field("download_dir", &self.download_dir)
            .finish()
    }
}

impl FileUrlSource {
    /// A source for `url` (which may name the month), with a bearer token unless it is empty.
    /// Parquet downloads go to `WORK_DIR` (else the system's temporary directory).
    pub fn new(url: &str, token: Secret) -> Result<FileUrlSource, SourceError> {
        let url = url.trim();
        // Any month will do to check that the template makes URLs.
        let sample: Month = "2000-01"
            .parse()
            .map_err(|e| SourceError::Config(format!("{e}")))?;
        let parsed = Url::parse(&fill_in(url, sample)).map_err(|e| {
            SourceError::Config(format!("{} is not a URL: {e}", shown_template(url)))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(SourceError::Config(format!(
                "{}: a file URL is http(s)",
                shown_template(url)
            )));
        }
        connect_client::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            // No limit on the whole download, which may be large; a stalled one ends.
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| SourceError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(FileUrlSource {
            http,
            template: url.to_owned(),
            token,
            retry: RetryPolicy::default(),
            download_dir: super::config::work_dir_from_env(),
        })
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> FileUrlSource {
        self.retry = retry;
        self
    }

    /// Where Parquet exports are kept while they are read.
    pub fn with_download_dir(mut self, dir: impl Into<PathBuf>) -> FileUrlSource {
        self.download_dir = dir.into();
        self
    }

    /// The month's URL.
    fn url_for(&self, period: Month) -> Result<Url, SourceError> {
        Url::parse(&fill_in(&self.template, period)).map_err(|e| {
            SourceError::Config(format!(
                "{} for {period} is not a URL: {e}",
                shown_template(&self.template)
            ))
        })
    }

    fn error(&self, url: &Url, reason: impl Into<String>) -> SourceError {
        SourceError::Download {
            url: shown_url(url),
            reason: reason.into(),
        }
    }

    /// What a 404 says: which month was looked for, and where the months are looked for.
    fn not_found(&self, period: Month) -> String {
        if is_template(&self.template) {
            format!(
                "HTTP 404: no export for {period} at this URL (USAGE_SOURCE is {})",
                shown_template(&self.template)
            )
        } else {
            format!("HTTP 404: no export at this URL (looked for {period})")
        }
    }

    /// `text` without the URL's query values and the token, which an error page may quote.
    fn redact(&self, url: &Url, text: &str) -> String {
        let mut text = text.to_owned();
        let mut secrets: Vec<String> = Vec::new();
        if let Some(q) = url.query().filter(|q| !q.is_empty()) {
            secrets.push(q.to_owned());
            for (_, v) in url.query_pairs() {
                secrets.push(v.into_owned());
            }
            for part in q.split('&') {
                if let Some((_, v)) = part.split_once('=') {
                    secrets.push(v.to_owned());
                }
            }
        }
        if !self.token.is_empty() {
            secrets.push(self.token.expose().to_owned());
        }
        // Longest first, so that a value inside the whole query is not left half shown.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for s in secrets.iter().filter(|s| s.len() >= 3) {
            text = text.replace(s.as_str(), "***");
        }
        text
    }

    /// Asks for the month's file from byte `from` on (with retries). `validator` (an ETag or
    /// a date) makes the server send the whole file instead if it changed.
    async fn open(
        &self,
        url: &Url,
        period: Month,
        from: u64,
        validator: Option<&HeaderValue>,
    ) -> Result<Response, SourceError> {
        let attempt = || async {
            let mut req = self.http.get(url.clone());
            if from > 0 {
                req = req.header(RANGE, format!("bytes={from}-"));
                if let Some(v) = validator {
                    req = req.header(IF_RANGE, v.clone());
                }
            }
            let req = with_bearer(req, &self.token)?;
            // Errors without the URL: its query may hold a key.
            let resp = req.send().await.map_err(|e| {
                metrics::source_request(SourceKind::FileUrl, None);
                transport(e)
            })?;
            let status = resp.status();
            metrics::source_request(SourceKind::FileUrl, Some(status.as_u16()));
            if status.is_success() {
                return Ok(resp);
            }
            let headers = resp.headers().clone();
            let body = self.redact(url, &error_body(resp).await);
            Err(match status {
                StatusCode::NOT_FOUND => AttemptFailure::Fatal(self.not_found(period)),
                StatusCode::RANGE_NOT_SATISFIABLE => AttemptFailure::Fatal(format!(
                    "HTTP {status}: the server cannot resume the download at byte {from}"
                )),
                _ => AttemptFailure::of_answer(status, &headers, body.as_bytes(), REFUSED),
            })
        };
        self.retry
            .run_counted(attempt, AttemptFailure::judge, || {
                metrics::source_retry(SourceKind::FileUrl)
            })
            .await
            .map_err(|(f, attempts)| {
                f.into_source_error(
                    attempts,
                    || shown_url(url),
                    |reason| self.error(url, reason),
                )
            })
    }

    /// Reads the month into `tx`, then sends the source's failure, if any.
    async fn read_month(self, period: Month, tx: Sender) {
        if let Err(e) = self.read(period, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    }

    async fn read(&self, period: Month, tx: &Sender) -> Result<(), SourceError> {
        let url = self.url_for(period)?;
        let resp = self.open(&url, period, 0, None).await?;
        let mut body = Download::new(self, url, period, resp);
        // The first bytes, kept to be read again after they told the format.
        let mut head = Vec::new();
        let mut head_bytes = 0;
        while head_bytes < SNIFF {
            match body.next_chunk().await? {
                Some(chunk) => {
                    head_bytes += chunk.len();
                    head.push(chunk);
                }
                None => break,
            }
        }
        let first: Vec<u8> = head
            .iter()
            .flat_map(|c| c.iter().copied())
            .take(SNIFF)
            .collect();
        let format = format_of(&body.url, body.content_type.as_deref(), &first);
        debug!(url = %shown_url(&body.url), ?format, "reading an export file");
        if format == FileFormat::Parquet {
            return self.read_parquet(body, head, tx).await;
        }
        let name = shown_url(&body.url);
        let (chunks, rx) = mpsc::channel::<Option<Bytes>>(CHUNKS_AHEAD);
        let reading = tokio::task::spawn_blocking({
            let tx = tx.clone();
            let name = name.clone();
            move || read_text(ChunkReader::new(rx), &name, format, &tx)
        });
        let pumped = pump(&mut body, head, &chunks).await;
        // Without the end marker, the reader takes the body for cut.
        drop(chunks);
        let read = reading
            .await
            .map_err(|e| self.error(&body.url, format!("reading the export failed: {e}")))?;
        // The download's failure is what made the reader fail, if it did.
        pumped?;
        read
    }

    /// Downloads a Parquet export to a file of its own, reads it, and removes it (also on
    /// failure, or when the run stops).
    async fn read_parquet(
        &self,
        mut body: Download<'_>,
        head: Vec<Bytes>,
        tx: &Sender,
    ) -> Result<(), SourceError> {
        let dir = &self.download_dir;
        let url = body.url.clone();
        let keep_error = |e: io::Error| {
            self.error(
                &url,
                format!(
                    "cannot keep the download in {} (WORK_DIR sets where): {e}",
                    dir.display()
                ),
            )
        };
        tokio::fs::create_dir_all(dir).await.map_err(keep_error)?;
        let path = dir.join(format!(
            "connect-usage-download-{}-{:016x}.parquet",
            std::process::id(),
            rand::random::<u64>()
        ));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(keep_error)?;
        let temp = TempFile(path);
        for chunk in head {
            file.write_all(&chunk).await.map_err(keep_error)?;
        }
        while let Some(chunk) = body.next_chunk().await? {
            file.write_all(&chunk).await.map_err(keep_error)?;
        }
        file.flush().await.map_err(keep_error)?;
        drop(file);
        debug!(bytes = body.received, "Parquet export downloaded");
        let name = shown_url(&url);
        tokio::task::spawn_blocking({
            let tx = tx.clone();
            move || {
                let read = super::source_parquet::read_parquet(&temp.0, &tx);
                // Messages name the URL, not the file it was kept in.
                read.map_err(|e| renamed(e, &temp.0, &name))
            }
        })
        .await
        .map_err(|e| self.error(&url, format!("reading the export failed: {e}")))?
    }
}

/// A reqwest failure without the URL (its query may hold a key), with its causes.
fn transport(e: reqwest::Error) -> AttemptFailure {
    AttemptFailure::Transport(describe(e))
}

fn describe(e: reqwest::Error) -> String {
    connect_client::error_text::error_text(&e.without_url())
}

/// The start of an error answer's body, as text.
async fn error_body(mut resp: Response) -> String {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(ERROR_BODY);
    String::from_utf8_lossy(&body).into_owned()
}

/// A reader's error about the downloaded file, naming the URL instead.
fn renamed(e: SourceError, file: &Path, url: &str) -> SourceError {
    let file = file.display().to_string();
    let swap = |text: String| text.replace(&file, url);
    match e {
        SourceError::File { path, reason } => SourceError::File {
            path: swap(path),
            reason: swap(reason),
        },
        SourceError::Format { path, reason } => SourceError::Format {
            path: swap(path),
            reason: swap(reason),
        },
        other => other,
    }
}

/// Removes the downloaded file when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0)
            && e.kind() != io::ErrorKind::NotFound
        {
            warn!(path = %self.0.display(), error = %e, "cannot remove a downloaded export");
        }
    }
}

/// Hands the body to the reader: `head` first, then the rest, then the end marker. Returns
/// when the body ends, the reader stops taking chunks, or the download fails.
async fn pump(
    body: &mut Download<'_>,
    head: Vec<Bytes>,
    chunks: &mpsc::Sender<Option<Bytes>>,
) -> Result<(), SourceError> {
    for chunk in head {
        if chunks.send(Some(chunk)).await.is_err() {
            return Ok(());
        }
    }
    while let Some(chunk) = body.next_chunk().await? {
        if chunks.send(Some(chunk)).await.is_err() {
            // The reader stopped (its error, or the run's end, says why).
            return Ok(());
        }
    }
    let _ = chunks.send(None).await;
    Ok(())
}

/// The body of a download as it arrives, resumed where it broke off when the server allows.
struct Download<'a> {
    source: &'a FileUrlSource,
    url: Url,
    period: Month,
    resp: Response,
    content_type: Option<String>,
    /// Bytes handed on so far.
    received: u64,
    /// The file's length, when the server said it.
    total: Option<u64>,
    /// The server takes `Range: bytes=N-`.
    resumable: bool,
    /// What names this version of the file, for `If-Range`.
    validator: Option<HeaderValue>,
    /// Breaks since bytes last arrived.
    breaks: u32,
}

impl<'a> Download<'a> {
    fn new(source: &'a FileUrlSource, url: Url, period: Month, resp: Response) -> Download<'a> {
        let headers = resp.headers();
        let resumable = headers
            .get_all(ACCEPT_RANGES)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim().eq_ignore_ascii_case("bytes"));
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let total = match resp.status() {
            StatusCode::PARTIAL_CONTENT => content_range(headers).and_then(|r| r.2),
            _ => resp.content_length(),
        };
        let validator = validator(headers);
        Download {
            source,
            url,
            period,
            resp,
            content_type,
            received: 0,
            total,
            resumable,
            validator,
            breaks: 0,
        }
    }

    fn error(&self, reason: impl Into<String>) -> SourceError {
        self.source.error(&self.url, reason)
    }

    /// The next bytes of the file; `None` at its end.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, SourceError> {
        loop {
            let why = match self.resp.chunk().await {
                Ok(Some(chunk)) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    self.received += chunk.len() as u64;
                    self.breaks = 0;
                    if self.total.is_some_and(|t| self.received > t) {
                        return Err(self.error(format!(
                            "the server sent more than the {} bytes it announced",
                            self.total.unwrap_or_default()
                        )));
                    }
                    return Ok(Some(chunk));
                }
                Ok(None) => match self.total {
                    Some(total) if self.received < total => {
                        format!("the body ended at byte {} of {total}", self.received)
                    }
                    _ => return Ok(None),
                },
                Err(e) => describe(e),
            };
            self.resume(why).await?;
        }
    }

    /// Asks for the rest of the file after a break, or says why it cannot be had.
    async fn resume(&mut self, why: String) -> Result<(), SourceError> {
        let at = self.received;
        if !self.resumable {
            return Err(self.error(format!(
                "the download broke off after {at} bytes ({why}); the server does not take \
                 ranges (no Accept-Ranges: bytes), so it cannot be resumed: run again"
            )));
        }
        let Some(delay) = self.source.retry.delay(self.breaks, None) else {
            return Err(self.error(format!(
                "the download broke off at byte {at} ({why}) and again after each of {} \
                 resumptions without a byte more: giving up",
                self.breaks
            )));
        };
        warn!(
            url = %shown_url(&self.url),
            at,
            error = %why,
            delay_ms = delay.as_millis() as u64,
            "download broke off, resuming"
        );
        tokio::time::sleep(delay).await;
        self.breaks += 1;
        let resp = self
            .source
            .open(&self.url, self.period, at, self.validator.as_ref())
            .await
            .map_err(|e| match e {
                SourceError::Download { url, reason } => SourceError::Download {
                    url,
                    reason: format!("resuming the download at byte {at}: {reason}"),
                },
                other => other,
            })?;
        if resp.status() != StatusCode::PARTIAL_CONTENT {
            return Err(self.error(format!(
                "asked to resume at byte {at}, the server sent HTTP {} instead of the rest: \
                 the export may have changed meanwhile; run again",
                resp.status()
            )));
        }
        let range = content_range(resp.headers());
        match range {
            Some((start, _, total)) if start == at => {
                if let (Some(known), Some(total)) = (self.total, total)
                    && known != total
                {
                    return Err(self.error(format!(
                        "the export was {known} bytes and is now {total}: it changed while \
                         it was read; run again"
                    )));
                }
                self.total = self.total.or(total);
            }
            _ => {
                let shown = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none");
                return Err(self.error(format!(
                    "asked to resume at byte {at}, the server answered Content-Range: {shown}"
                )));
            }
        }
        self.resp = resp;
        Ok(())
    }
}

/// A strong ETag, else `Last-Modified`: what `If-Range` may name.
fn validator(headers: &HeaderMap) -> Option<HeaderValue> {
    headers
        .get(ETAG)
        .filter(|v| !v.as_bytes().starts_with(b"W/"))
        .or_else(|| headers.get(LAST_MODIFIED))
        .cloned()
}

/// `Content-Range: bytes FIRST-LAST/TOTAL` (`TOTAL` may be `*`).
fn content_range(headers: &HeaderMap) -> Option<(u64, u64, Option<u64>)> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((first.trim().parse().ok()?, last.trim().parse().ok()?, total))
}

/// The export's format: by the path's extension, else the `Content-Type`, else the first
/// bytes.
fn format_of(url: &Url, content_type: Option<&str>, head: &[u8]) -> FileFormat {
    // JSON is an array or JSON Lines; the first bytes tell which (CSV means they did not).
    let json = || match FileFormat::sniff(head) {
        FileFormat::Csv => FileFormat::JsonLines,
        sniffed => sniffed,
    };
    let file = url.path().rsplit('/').next().unwrap_or_default();
    let ext = file
        .rsplit_once('.')
        .map(|(_, ext)| ext)
        .unwrap_or_default();
    if let Some(format) = FileFormat::from_extension(ext) {
        return format;
    }
    if ext.eq_ignore_ascii_case("json") {
        return json();
    }
    let media = content_type
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match media.as_str() {
        "text/csv" | "application/csv" => FileFormat::Csv,
        "application/x-ndjson"
        | "application/jsonl"
        | "application/x-jsonlines"
        | "application/jsonlines" => FileFormat::JsonLines,
        "application/vnd.apache.parquet" | "application/x-parquet" => FileFormat::Parquet,
        "application/json" => json(),
        _ => FileFormat::sniff(head),
    }
}

/// The URL as configured, as messages show it: without its query and fragment (a signature
/// may be there) and without user and password.
pub(crate) fn shown_template(text: &str) -> String {
    let text = text.split(['?', '#']).next().unwrap_or_default();
    if let Some((scheme, rest)) = text.split_once("://") {
        let authority = rest.split('/').next().unwrap_or_default();
        if let Some(at) = authority.rfind('@') {
            return format!("{scheme}://{}", &rest[at + 1..]);
        }
    }
    text.to_owned()
}

/// The body's chunks as a [`Read`], on a blocking thread. The channel closing before the end
/// marker (`None`) is an error: the download failed and its own error says why.
struct ChunkReader {
    rx: mpsc::Receiver<Option<Bytes>>,
    current: Bytes,
    ended: bool,
}

impl ChunkReader {
    fn new(rx: mpsc::Receiver<Option<Bytes>>) -> ChunkReader {
        ChunkReader {
            rx,
            current: Bytes::new(),
            ended: false,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Some(chunk)) => self.current = chunk,
                Some(None) => self.ended = true,
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the download stopped before the end of the file",
                    ));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// Stops the download when the consumer drops the stream.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl UsageSource for FileUrlSource {
    fn describe(&self) -> String {
        format!("file {}", shown_template(&self.template))
    }

    fn records(&self, period: Month) -> Batches {
        let source = self.clone();
        // The download starts with the first poll (in the consumer's runtime).
        let start = async move {
            let (tx, rx) = mpsc::channel::<Result<Vec<SourceItem>, SourceError>>(8);
            let task = AbortOnDrop(tokio::spawn(source.read_month(period, tx)));
            (rx, task)
        };
        Box::pin(stream::once(start).flat_map(|reading| {
            stream::unfold(reading, |(mut rx, task)| async move {
                rx.recv().await.map(|batch| (batch, (rx, task)))
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("url")
    }

    #[test]
    fn templates_are_shown_without_secrets() {
        assert_eq!(
            shown_template("https://u:pw@bucket.example/x/usage-{period}.csv?sig=abc#f"),
            "https://bucket.example/x/usage-{period}.csv"
        );
        assert_eq!(
            shown_template("http://h/a@b/usage.csv"),
            "http://h/a@b/usage.csv"
        );
        let src = FileUrlSource::new(
            "https://bucket.example/usage-{period}.csv?X-Sig=TOPSECRET",
            Secret::new("TOKEN123"),
        )
        .expect("source");
        let shown = format!("{} {src:?}", src.describe());
        assert!(
            !shown.contains("TOPSECRET") && !shown.contains("TOKEN123"),
            "{shown}"
        );
        assert!(shown.contains("usage-{period}.csv"), "{shown}");
    }

    #[test]
    fn error_pages_lose_the_query_values_and_the_token() {
        let src = FileUrlSource::new(
            "https://h/u.csv?sig=abc%2Bdef&exp=1700000000",
            Secret::new("tok-9"),
        )
        .expect("source");
        let u = src
            .url_for("2024-04".parse().expect("period"))
            .expect("url");
        let page =
            "<Error>SignatureDoesNotMatch sig=abc%2Bdef (abc+def) exp 1700000000 tok-9</Error>";
        let text = src.redact(&u, page);
        for secret in ["abc%2Bdef", "abc+def", "1700000000", "tok-9"] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[test]
    fn formats_by_extension_then_content_type_then_first_bytes() {
        use FileFormat::*;
        let f = |u: &str, t: Option<&str>, head: &str| format_of(&url(u), t, head.as_bytes());
        assert_eq!(f("http://h/u.CSV?x=1", Some("application/json"), "{"), Csv);
        assert_eq!(f("http://h/u.ndjson", None, "a,b"), JsonLines);
        assert_eq!(f("http://h/u.parquet", None, ""), Parquet);
        assert_eq!(f("http://h/u.json", None, " [{}]"), JsonArray);
        assert_eq!(f("http://h/u.json", None, "{}\n{}"), JsonLines);
        assert_eq!(f("http://h/u.json", None, ""), JsonLines);
        assert_eq!(
            f("http://h/export", Some("text/csv; charset=utf-8"), "{"),
            Csv
        );
        assert_eq!(
            f("http://h/export", Some("application/x-ndjson"), "["),
            JsonLines
        );
        assert_eq!(
            f("http://h/export", Some("Application/JSONL"), ""),
            JsonLines
        );
        assert_eq!(
            f("http://h/export", Some("application/x-jsonlines"), ""),
            JsonLines
        );
        assert_eq!(
            f(
                "http://h/export",
                Some("application/vnd.apache.parquet"),
                ""
            ),
            Parquet
        );
        assert_eq!(
            f("http://h/export", Some("application/x-parquet"), ""),
            Parquet
        );
        assert_eq!(
            f("http://h/export", Some("application/json"), "[1]"),
            JsonArray
        );
        assert_eq!(
            f("http://h/export", Some("application/json"), "{}"),
            JsonLines
        );
        assert_eq!(
            f(
                "http://h/export",
                Some("application/octet-stream"),
                "PAR1.."
            ),
            Parquet
        );
        assert_eq!(f("http://h/export.txt", None, "a,b\n"), Csv);
        assert_eq!(f("http://h/export", None, "{\"a\":1}"), JsonLines);
    }

    #[test]
    fn content_ranges_are_read() {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_RANGE,
            HeaderValue::from_static("bytes 100-199/1000"),
        );
        assert_eq!(content_range(&h), Some((100, 199, Some(1000))));
        h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 5-9/*"));
        assert_eq!(content_range(&h), Some((5, 9, None)));
        h.insert(CONTENT_RANGE, HeaderValue::from_static("items 0-9/10"));
        assert_eq!(content_range(&h), None);
    }

    #[test]
    fn the_chunk_reader_needs_the_end_marker() {
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Some(Bytes::from_static(b"ab"))).expect("sent");
        tx.try_send(Some(Bytes::from_static(b"cd"))).expect("sent");
        tx.try_send(None).expect("sent");
        drop(tx);
        let mut text = String::new();
        ChunkReader::new(rx)
            .read_to_string(&mut text)
            .expect("read");
        assert_eq!(text, "abcd");
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Some(Bytes::from_static(b"ab"))).expect("sent");
        drop(tx);
        let e = ChunkReader::new(rx)
            .read_to_string(&mut String::new())
            .expect_err("cut");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
