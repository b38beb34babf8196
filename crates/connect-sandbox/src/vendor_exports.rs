//! The vendor's monthly export files, served over HTTP, so that a usage source reading export
//! files behind URLs (`USAGE_SOURCE=http://.../usage-{period}.csv`) can be tried and tested
//! against the sandbox:
//!
//! ```text
//! GET /vendor/v1/exports/usage-YYYY-MM.csv     (text/csv)
//! GET /vendor/v1/exports/usage-YYYY-MM.jsonl   (application/x-ndjson)
//! GET /vendor/v1/exports/usage-YYYY-MM.parquet (application/vnd.apache.parquet)
//! Authorization: Bearer {the usage API's token}
//! ```
//!
//! The records are the ones the usage API serves for the month, in the same order, written
//! in the formats of [`super::export_formats`], as an export command writes files. Nothing is stored: a text body is generated and streamed a chunk
//! of records at a time; a Parquet file, whose footer describes all of it, is generated whole
//! in memory for each request. Downloads can be resumed:
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
use futures_util::stream;

use super::export_formats::{ROW_GROUP_ROWS, TextFormat, records, write_parquet_to};
use super::server::{AppState, LoggedActor};
use super::usage_universe::Spread;
use super::vendor_api::{authorized, refuse};
use connect_client::month::Month;

/// Where the exports are: `{EXPORTS_PATH}/usage-YYYY-MM.csv`, `.jsonl` and `.parquet`.
pub const EXPORTS_PATH: &str = "/vendor/v1/exports";

/// Records generated and sent at a time.
const RECORDS_PER_CHUNK: u64 = 256;

pub fn routes() -> Router<AppState> {
    Router::new().route(&format!("{EXPORTS_PATH}/{{file}}"), get(export))
}

/// The formats an export is served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServedFormat {
    Text(TextFormat),
    Parquet,
}

impl ServedFormat {
    fn extension(self) -> &'static str {
        match self {
            ServedFormat::Text(TextFormat::Csv) => "csv",
            ServedFormat::Text(TextFormat::JsonLines) => "jsonl",
            ServedFormat::Parquet => "parquet",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            ServedFormat::Text(TextFormat::Csv) => "text/csv; charset=utf-8",
            ServedFormat::Text(TextFormat::JsonLines) => "application/x-ndjson",
            ServedFormat::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// A month's export in one format, with the settings of the moment it was asked for.
#[derive(Clone)]
struct Export {
    app: AppState,
    period: Month,
    format: ServedFormat,
    /// The whole Parquet file, once generated ([`Export::generate_parquet`]).
    parquet: Option<Bytes>,
    records: u64,
    bad: f64,
    spread: Spread,
}

impl Export {
    /// Chunks of the file; the first one holds the CSV header even without records.
    fn chunks(&self) -> u64 {
        match self.format {
            ServedFormat::Text(_) => self.records.div_ceil(RECORDS_PER_CHUNK).max(1),
            ServedFormat::Parquet => 1,
        }
    }

    /// The month as one Parquet file, kept for the chunks of this request.
    fn generate_parquet(&mut self) -> Result<(), parquet::errors::ParquetError> {
        let month = self.app.usage_universe().month_of(self.period, self.spread);
        let mut out = Vec::new();
        let records = records(&month, 0..self.records, self.bad);
        write_parquet_to(&mut out, records, ROW_GROUP_ROWS)?;
        self.parquet = Some(Bytes::from(out));
        Ok(())
    }

    /// The bytes of chunk `c`.
    fn chunk(&self, c: u64) -> Vec<u8> {
        let ServedFormat::Text(format) = self.format else {
            return self.parquet.as_deref().unwrap_or_default().to_vec();
        };
        let month = self.app.usage_universe().month_of(self.period, self.spread);
        let from = c.saturating_mul(RECORDS_PER_CHUNK).min(self.records);
        let to = from.saturating_add(RECORDS_PER_CHUNK).min(self.records);
        let mut out = Vec::with_capacity(256 * (to - from) as usize + 80);
        let records = records(&month, from..to, self.bad);
        // Writing into memory cannot fail.
        let _ = format.write(records, c == 0, &mut out);
        out
    }

    /// Names this content: the same month, format and settings give the same bytes.
    fn etag(&self) -> String {
        let ext = self.format.extension();
        // Every setting that changes the bytes is in it, so a resumed download never mixes
        // two versions of the file.
        format!(
            "\"usage-{}-{}-{}-{}-{}.{ext}\"",
            self.period, self.records, self.bad, self.spread.subscriptions, self.spread.uncovered
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

/// `usage-YYYY-MM.csv`, `.jsonl` or `.parquet`.
fn parse_name(file: &str) -> Option<(Month, ServedFormat)> {
    let (period, ext) = file.strip_prefix("usage-")?.rsplit_once('.')?;
    let format = match ext {
        "csv" => ServedFormat::Text(TextFormat::Csv),
        "jsonl" => ServedFormat::Text(TextFormat::JsonLines),
        "parquet" => ServedFormat::Parquet,
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
            "no such export: the exports are usage-YYYY-MM.csv, .jsonl and .parquet",
        );
    };
    if !crate::usage_universe::has_begun(period) {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("no export for {period}: the month has not begun"),
        );
    }
    let config = app.config();
    let mut export = Export {
        app,
        period,
        format,
        parquet: None,
        records: config.usage_records,
        bad: config.usage_bad_records,
        spread: Spread::of(&config),
    };
    if format == ServedFormat::Parquet {
        let generated =
            tokio::task::spawn_blocking(move || export.generate_parquet().map(|()| export)).await;
        export = match generated {
            Ok(Ok(export)) => export,
            _ => return refuse(StatusCode::INTERNAL_SERVER_ERROR, "the export failed"),
        };
    }
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
        HeaderValue::from_static(format.content_type()),
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
    use crate::server::{RuntimeConfig, SandboxState};
    use crate::{Dataset, export_formats as export};
    use connect_client::secret::Secret;
    use std::sync::Arc;

    fn export_of(format: ServedFormat, records: u64) -> Export {
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
            parquet: None,
            records,
            bad: 0.1,
            spread: Spread::default(),
        }
    }

    #[test]
    fn names_and_ranges() {
        assert!(matches!(
            parse_name("usage-2024-04.csv"),
            Some((_, ServedFormat::Text(TextFormat::Csv)))
        ));
        assert!(matches!(
            parse_name("usage-2024-04.jsonl"),
            Some((_, ServedFormat::Text(TextFormat::JsonLines)))
        ));
        assert!(matches!(
            parse_name("usage-2024-04.parquet"),
            Some((_, ServedFormat::Parquet))
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
    fn the_parquet_export_is_the_file_the_export_command_writes() {
        let mut e = export_of(ServedFormat::Parquet, 1000);
        e.generate_parquet().expect("generated");
        assert_eq!(e.chunks(), 1);
        let served = e.chunk(0);
        let month = e
            .app
            .usage_universe()
            .month("2024-04".parse::<Month>().expect("period"));
        let mut file = Vec::new();
        write_parquet_to(
            &mut file,
            export::records(&month, 0..1000, 0.1),
            ROW_GROUP_ROWS,
        )
        .expect("written");
        assert_eq!(served, file);
        assert!(served.starts_with(b"PAR1") && served.ends_with(b"PAR1"));
        assert_eq!(
            e.locate(served.len() as u64 - 1).1,
            Some((0, served.len() - 1))
        );
        assert_eq!(e.etag(), "\"usage-2024-04-1000-0.1-0-0.parquet\"");
    }

    #[test]
    fn chunks_make_the_file_the_export_command_writes() {
        for format in [TextFormat::Csv, TextFormat::JsonLines] {
            for records in [0, 1, RECORDS_PER_CHUNK, 3 * RECORDS_PER_CHUNK + 17] {
                let e = export_of(ServedFormat::Text(format), records);
                let served: Vec<u8> = (0..e.chunks()).flat_map(|c| e.chunk(c)).collect();
                let month = e
                    .app
                    .usage_universe()
                    .month("2024-04".parse::<Month>().expect("period"));
                let mut file = Vec::new();
                format
                    .write(export::records(&month, 0..records, 0.1), true, &mut file)
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
