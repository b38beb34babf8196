//! The vendor's monthly export files, served over HTTP, so that a usage source reading export
//! files behind URLs (`USAGE_SOURCE=http://.../usage-{period}.csv`) can be tried and tested
//! against the sandbox:
//!
//! ```text
//! GET /vendor/v1/exports/usage-YYYY-MM.csv     (text/csv)
//! GET /vendor/v1/exports/usage-YYYY-MM.jsonl   (application/x-ndjson)
//! Authorization: Bearer {the usage API's token}
//! ```
//!
//! The records are the ones the usage API serves for the month, in the same order, written
//! as the export command writes files ([`super::export::TextFormat`]). Nothing is stored: the
//! body is generated and streamed a chunk of records at a time. Downloads can be resumed:
//! `Range: bytes=N-` (or `N-M`) answers 206 with `Content-Range`; every answer says
//! `Accept-Ranges: bytes` and carries an `ETag` that `If-Range` may name. To answer a range the
//! file's length is needed, which means generating the file once first: fine for a sandbox.
//! Fault rules (`"path": "/vendor/v1/exports"`) can cut a body midway or ignore ranges.

use std::convert::Infallible;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use chrono::Utc;
use futures_util::stream;

use super::export::TextFormat;
use super::server::{AppState, LoggedActor};
use super::vendor_api::{authorized, refuse};
use crate::usage::Period;

/// Where the exports are: `{EXPORTS_PATH}/usage-YYYY-MM.csv` and `.jsonl`.
pub const EXPORTS_PATH: &str = "/vendor/v1/exports";

/// Records generated and sent at a time.
const RECORDS_PER_CHUNK: u64 = 256;

pub fn routes() -> Router<AppState> {
    Router::new().route(&format!("{EXPORTS_PATH}/{{file}}"), get(export))
}

/// A month's export in one format, with the settings of the moment it was asked for.
#[derive(Clone)]
struct Export {
    app: AppState,
    period: Period,
    format: TextFormat,
    records: u64,
    bad: f64,
    subscriptions: u64,
}

impl Export {
    /// Chunks of the file; the first one holds the CSV header even without records.
    fn chunks(&self) -> u64 {
        self.records.div_ceil(RECORDS_PER_CHUNK).max(1)
    }

    /// The bytes of chunk `c`.
    fn chunk(&self, c: u64) -> Vec<u8> {
        let month = self
            .app
            .usage_universe()
            .month_of(self.period, self.subscriptions);
        let from = c.saturating_mul(RECORDS_PER_CHUNK).min(self.records);
        let to = from.saturating_add(RECORDS_PER_CHUNK).min(self.records);
        let mut out = Vec::with_capacity(256 * (to - from) as usize + 80);
        let records = (from..to).filter_map(|i| month.exported(i, self.bad));
        // Writing into memory cannot fail.
        let _ = self.format.write(records, c == 0, &mut out);
        out
    }

    /// Names this content: the same month, format and settings give the same bytes.
    fn etag(&self) -> String {
        let ext = match self.format {
            TextFormat::Csv => "csv",
            TextFormat::JsonLines => "jsonl",
        };
        format!(
            "\"usage-{}-{}-{}-{}.{ext}\"",
            self.period, self.records, self.bad, self.subscriptions
        )
    }

    /// The file's length, and the chunk holding byte `at` with the offset of `at` in it (none
    /// when the file is shorter).
    fn locate(&self, at: u64) -> (u64, Option<(u64, usize)>) {
        let mut total = 0u64;
        let mut found = None;
        for c in 0..self.chunks() {
            let n = self.chunk(c).len() as u64;
            if found.is_none() && at < total + n {
                found = Some((c, (at - total) as usize));
            }
            total += n;
        }
        (total, found)
    }

    /// The body from chunk `first`, without its first `skip` bytes, at most `limit` bytes.
    fn body(self, first: u64, skip: usize, limit: Option<u64>) -> Body {
        let chunks = stream::unfold(
            (self, first, skip, limit),
            |(export, c, skip, left)| async move {
                if c >= export.chunks() || left == Some(0) {
                    return None;
                }
                let mut bytes = export.chunk(c);
                bytes.drain(..skip.min(bytes.len()));
                if let Some(left) = left {
                    bytes.truncate(usize::try_from(left).unwrap_or(usize::MAX));
                }
                let left = left.map(|l| l - bytes.len() as u64);
                Some((
                    Ok::<_, Infallible>(Bytes::from(bytes)),
                    (export, c + 1, 0, left),
                ))
            },
        );
        Body::from_stream(chunks)
    }
}

/// `usage-YYYY-MM.csv` or `usage-YYYY-MM.jsonl`.
fn parse_name(file: &str) -> Option<(Period, TextFormat)> {
    let (period, ext) = file.strip_prefix("usage-")?.rsplit_once('.')?;
    let format = match ext {
        "csv" => TextFormat::Csv,
        "jsonl" => TextFormat::JsonLines,
        _ => return None,
    };
    Some((period.parse().ok()?, format))
}

/// `bytes=N-` or `bytes=N-M`: the first byte and perhaps the last. Other forms (a suffix,
/// several ranges) are not taken; the whole file is sent then, as HTTP allows.
fn byte_range(value: &str) -> Option<(u64, Option<u64>)> {
    let (first, last) = value.trim().strip_prefix("bytes=")?.split_once('-')?;
    let first = first.trim().parse().ok()?;
    let last = match last.trim() {
        "" => None,
        last => Some(last.parse().ok()?),
    };
    if last.is_some_and(|l| l < first) {
        return None;
    }
    Some((first, last))
}

async fn export(
    State(app): State<AppState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&app, &headers) {
        return refuse(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    let Some((period, format)) = parse_name(&file) else {
        return refuse(
            StatusCode::NOT_FOUND,
            "no such export: the exports are usage-YYYY-MM.csv and usage-YYYY-MM.jsonl",
        );
    };
    if period.start() > Utc::now() {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("no export for {period}: the month has not begun"),
        );
    }
    let config = app.config();
    let export = Export {
        app,
        period,
        format,
        records: config.usage_records,
        bad: config.usage_bad_records,
        subscriptions: config.usage_subscriptions,
    };
    let etag = export.etag();
    let if_range_holds = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.as_bytes() == etag.as_bytes());
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(byte_range)
        .filter(|_| if_range_holds);
    let mut resp = match range {
        None => Response::new(export.body(0, 0, None)),
        Some((first, last)) => {
            let located = tokio::task::spawn_blocking({
                let export = export.clone();
                move || export.locate(first)
            })
            .await;
            let Ok((total, at)) = located else {
                return refuse(StatusCode::INTERNAL_SERVER_ERROR, "the export failed");
            };
            match at {
                None => {
                    let mut resp = refuse(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        format!("the export has {total} bytes"),
                    );
                    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                        resp.headers_mut().insert(header::CONTENT_RANGE, v);
                    }
                    return resp;
                }
                Some((chunk, offset)) => {
                    let last = last.map_or(total - 1, |l| l.min(total - 1));
                    let length = last - first + 1;
                    let mut resp = Response::new(export.body(chunk, offset, Some(length)));
                    *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
                    let h = resp.headers_mut();
                    if let Ok(v) = HeaderValue::from_str(&format!("bytes {first}-{last}/{total}")) {
                        h.insert(header::CONTENT_RANGE, v);
                    }
                    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
                    resp
                }
            }
        }
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(match format {
            TextFormat::Csv => "text/csv; charset=utf-8",
            TextFormat::JsonLines => "application/x-ndjson",
        }),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    resp.extensions_mut()
        .insert(LoggedActor("usage-api".into()));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::server::{RuntimeConfig, SandboxState};
    use crate::sandbox::{Dataset, export};
    use crate::secret::Secret;
    use std::sync::Arc;

    fn export_of(format: TextFormat, records: u64) -> Export {
        let app = Arc::new(SandboxState::new(
            Dataset::default_account(),
            RuntimeConfig::default(),
            1,
            Secret::new("t"),
        ));
        Export {
            app,
            period: "2024-04".parse().expect("period"),
            format,
            records,
            bad: 0.1,
            subscriptions: 0,
        }
    }

    #[test]
    fn names_and_ranges() {
        assert!(matches!(
            parse_name("usage-2024-04.csv"),
            Some((_, TextFormat::Csv))
        ));
        assert!(matches!(
            parse_name("usage-2024-04.jsonl"),
            Some((_, TextFormat::JsonLines))
        ));
        for bad in ["usage-2024-13.csv", "usage-2024-04.xlsx", "2024-04.csv"] {
            assert!(parse_name(bad).is_none(), "{bad}");
        }
        assert_eq!(byte_range("bytes=100-"), Some((100, None)));
        assert_eq!(byte_range("bytes=5-9"), Some((5, Some(9))));
        for ignored in ["bytes=-5", "bytes=9-5", "items=1-", "bytes=1-2,5-"] {
            assert_eq!(byte_range(ignored), None, "{ignored}");
        }
    }

    #[test]
    fn chunks_make_the_file_the_export_command_writes() {
        for format in [TextFormat::Csv, TextFormat::JsonLines] {
            for records in [0, 1, RECORDS_PER_CHUNK, 3 * RECORDS_PER_CHUNK + 17] {
                let e = export_of(format, records);
                let served: Vec<u8> = (0..e.chunks()).flat_map(|c| e.chunk(c)).collect();
                let month = e
                    .app
                    .usage_universe()
                    .month("2024-04".parse().expect("period"));
                let mut file = Vec::new();
                format
                    .write(export::records(&month, records, 0.1), true, &mut file)
                    .expect("written");
                assert_eq!(served, file, "{format:?} {records}");
                let (total, at) = e.locate(0);
                assert_eq!(total, file.len() as u64);
                assert_eq!(at, (!file.is_empty()).then_some((0, 0)));
                let (_, at) = e.locate(total.saturating_sub(1));
                assert_eq!(
                    at.map(|(c, _)| c),
                    (!file.is_empty()).then(|| e.chunks() - 1)
                );
                assert_eq!(e.locate(total).1, None);
            }
        }
    }
}
