//! Export files behind URLs, and months named by `{period}`, end to end: the sandbox's export
//! routes read through `USAGE_SOURCE=http://.../usage-{period}.csv` (and `.jsonl`, `.parquet`) give the
//! records of its usage API, in its order; a body cut midway is resumed with a range, or fails
//! the read (and the run) clearly where the server takes no ranges; refusals and missing
//! months say what to check, and neither the token nor a signed link's query ever shows; the
//! format follows the extension, the content type or the first bytes; a Parquet download is
//! kept in the work directory only while it is read; a local path template reads the month's
//! file; and a month reported from the export ends as the same month reported from the API.

mod common;

use std::time::Duration;

use common::*;
use connect_client::RetryPolicy;
use connect_client::secret::Secret;
use connect_sandbox::{RuntimeConfig, Sandbox};
use connect_usage::usage::export::{self, TextFormat};
use connect_usage::usage::source_http::VendorApiSource;
use connect_usage::usage::source_url::FileUrlSource;
use connect_usage::usage::{
    Month, RunResult, SourceError, SourceItem, SourceSpec, UsageSource, report,
};
use futures_util::TryStreamExt;
use serde_json::json;

fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        initial_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_retries: 4,
        ..RetryPolicy::default()
    }
}

fn url_source(url: &str, token: Secret) -> FileUrlSource {
    FileUrlSource::new(url, token)
        .expect("source")
        .with_retry(quick_retry())
}

async fn read_all(src: &dyn UsageSource, period: Month) -> Result<Vec<SourceItem>, SourceError> {
    let batches: Vec<Vec<SourceItem>> = src.records(period).try_collect().await?;
    Ok(batches.into_iter().flatten().collect())
}

/// An item without its line number, which only files have.
fn unlined(mut item: SourceItem) -> SourceItem {
    match &mut item {
        SourceItem::Record(r) => r.position.line = None,
        SourceItem::Rejected(r) => r.position.line = None,
    }
    item
}

async fn from_api(sb: &Sandbox, period: Month) -> Vec<SourceItem> {
    let api = VendorApiSource::new(&sb.usage_api_url(), sb.usage_token())
        .expect("source")
        .with_retry(quick_retry());
    read_all(&api, period).await.expect("the API reads")
}

/// The items of two sources are the same, in the same order.
fn assert_same(want: &[SourceItem], got: Vec<SourceItem>, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        assert_eq!(&unlined(g), w, "{what}: item {i}");
    }
}

/// The requests the sandbox logged for its exports: (status, fault).
async fn export_requests(sb: &Sandbox) -> Vec<(u64, Option<String>)> {
    requests_under(sb, "/vendor/v1/exports")
        .await
        .iter()
        .map(|r| {
            (
                r["status"].as_u64().unwrap_or_default(),
                r["fault"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// Forgets the sandbox's logs (and files).
async fn reset(sb: &Sandbox) {
    http()
        .post(format!("{}/sandbox/reset", sb.origin()))
        .send()
        .await
        .expect("reset");
}

async fn sandbox(records: u64, bad: f64) -> Sandbox {
    start_with(RuntimeConfig {
        usage_records: records,
        usage_bad_records: bad,
        ..RuntimeConfig::default()
    })
    .await
}

#[tokio::test]
async fn a_month_from_each_export_format_is_the_month_of_the_api() {
    let sb = sandbox(2500, 0.1).await;
    let want = from_api(&sb, april()).await;
    assert!(
        want.iter().any(|i| matches!(i, SourceItem::Rejected(_))),
        "defective records too"
    );
    for ext in ["csv", "jsonl", "parquet"] {
        let template = sb.usage_export_url(ext);
        assert!(template.ends_with(&format!("/usage-{{period}}.{ext}")));
        // Through the setting, as a user gives it.
        let spec = SourceSpec::parse(&template, |name| {
            (name == "USAGE_SOURCE_TOKEN").then(|| sb.usage_token().expose().to_owned())
        })
        .expect("spec");
        assert!(matches!(spec, SourceSpec::FileUrl { .. }), "{spec:?}");
        let source = spec.open().expect("opens");
        assert_eq!(source.describe(), format!("file {template}"));
        let got = read_all(source.as_ref(), april()).await.expect("reads");
        assert_same(&want, got, ext);
    }
    // Another month is another file.
    let march: Month = "2024-03".parse().expect("period");
    let got = read_all(
        &url_source(&sb.usage_export_url("csv"), sb.usage_token()),
        march,
    )
    .await
    .expect("reads");
    assert_same(&from_api(&sb, march).await, got, "March");
    assert!(export_requests(&sb).await.iter().all(|(s, _)| *s == 200));
}

#[tokio::test]
async fn a_body_cut_midway_is_resumed_with_a_range_and_every_record_comes_once() {
    let sb = sandbox(3000, 0.05).await;
    let want = from_api(&sb, april()).await;
    for (ext, cut) in [("csv", 100_000), ("jsonl", 250_001), ("parquet", 5_000)] {
        reset(&sb).await;
        admin_put(
            &sb,
            "faults",
            json!([{"path": "/vendor/v1/exports", "count": 2,
                    "action": {"type": "cut_body", "after_bytes": cut}}]),
        )
        .await;
        let got = read_all(
            &url_source(&sb.usage_export_url(ext), sb.usage_token()),
            april(),
        )
        .await
        .expect("read through two cuts");
        assert_same(&want, got, ext);
        let requests = export_requests(&sb).await;
        let statuses: Vec<u64> = requests.iter().map(|r| r.0).collect();
        assert_eq!(statuses, [200, 206, 206], "{ext}: {requests:?}");
        assert!(requests[0].1.as_deref().is_some_and(|f| f.contains("cut")));
        assert!(requests[1].1.as_deref().is_some_and(|f| f.contains("cut")));
        assert_eq!(requests[2].1, None);
    }
}

#[tokio::test]
async fn a_download_that_breaks_again_and_again_without_progress_gives_up() {
    let sb = sandbox(3000, 0.0).await;
    admin_put(
        &sb,
        "faults",
        json!([{"path": "/vendor/v1/exports", "count": 1,
                "action": {"type": "cut_body", "after_bytes": 50_000}},
               {"path": "/vendor/v1/exports", "skip": 1,
                "action": {"type": "cut_body", "after_bytes": 0}}]),
    )
    .await;
    let e = read_all(
        &url_source(&sb.usage_export_url("csv"), sb.usage_token()),
        april(),
    )
    .await
    .expect_err("gives up");
    let text = e.to_string();
    assert!(
        text.contains("the download broke off at byte 50000")
            && text.contains("each of 4 resumptions without a byte more"),
        "{text}"
    );
    let statuses: Vec<u64> = export_requests(&sb).await.iter().map(|r| r.0).collect();
    assert_eq!(statuses, [200, 206, 206, 206, 206]);
}

#[tokio::test]
async fn an_export_that_changed_before_the_resume_is_not_stitched_to_the_old_one() {
    let sb = sandbox(3000, 0.0).await;
    // The first answer is cut; the resumption waits, so that the export changes first.
    admin_put(
        &sb,
        "faults",
        json!([{"path": "/vendor/v1/exports", "count": 1,
                "action": {"type": "cut_body", "after_bytes": 50_000}},
               {"path": "/vendor/v1/exports", "skip": 1,
                "action": {"type": "latency", "ms": 1000}}]),
    )
    .await;
    let src = url_source(&sb.usage_export_url("csv"), sb.usage_token());
    let reading = tokio::spawn(async move { read_all(&src, april()).await });
    while export_requests(&sb).await.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let changed = admin_put(&sb, "config", json!({"usage_records": 2999})).await;
    assert!(changed.status().is_success());
    let e = reading
        .await
        .expect("the read ends")
        .expect_err("not stitched");
    let text = e.to_string();
    assert!(
        text.contains("asked to resume at byte 50000, the server sent HTTP 200 OK")
            && text.contains("the export may have changed"),
        "{text}"
    );
}

#[tokio::test]
async fn a_cut_body_from_a_server_without_ranges_fails_the_read_and_the_run() {
    let sb = sandbox(3000, 0.0).await;
    admin_put(
        &sb,
        "faults",
        json!([{"path": "/vendor/v1/exports", "action": {"type": "ignore_ranges"}},
               {"path": "/vendor/v1/exports", "action": {"type": "cut_body", "after_bytes": 60_000}}]),
    )
    .await;
    let src = url_source(&sb.usage_export_url("csv"), sb.usage_token());
    let mut batches = src.records(april());
    let mut records = 0;
    let e = loop {
        match batches.try_next().await {
            Ok(Some(batch)) => records += batch.len(),
            Ok(None) => panic!("a cut body read to its end ({records} records)"),
            Err(e) => break e,
        }
    };
    assert!(records < 3000, "{records}");
    let text = e.to_string();
    assert!(
        text.contains("/vendor/v1/exports/usage-2024-04.csv"),
        "{text}"
    );
    assert!(
        text.contains("the download broke off after") && text.contains("cannot be resumed"),
        "{text}"
    );
    assert!(matches!(e, SourceError::Download { .. }), "{e:?}");
    // The run fails, and nothing of the month reaches Connect.
    let summary = report(&vendor(&sb), &src, &quick_options(april())).await;
    let e = summary.expect_err("the run fails");
    assert!(e.to_string().contains("cannot be resumed"), "{e}");
    assert!(final_state(&sb).await.is_empty());
}

#[tokio::test]
async fn refusals_and_missing_months_say_what_to_check_and_show_no_secret() {
    let sb = sandbox(100, 0.0).await;
    let token = sb.usage_token();
    // A signed link's query is a secret too (the sandbox ignores it).
    let template = format!(
        "{}?X-Signature=SIGNED-9f8e7d&Expires=1999999999",
        sb.usage_export_url("csv")
    );
    let shown_template = sb.usage_export_url("csv");
    let wrong = url_source(&template, Secret::new("not-the-token-4711"));
    let e = read_all(&wrong, april()).await.expect_err("refused");
    let refused = e.to_string();
    assert!(
        refused.contains(
            "HTTP 401 Unauthorized: refused (check USAGE_SOURCE_TOKEN, or the signed link may have expired)"
        ),
        "{refused}"
    );
    let right = url_source(&template, token.clone());
    let future: Month = "2099-01".parse().expect("period");
    let missing = read_all(&right, future)
        .await
        .expect_err("no export")
        .to_string();
    assert!(
        missing.contains("/vendor/v1/exports/usage-2099-01.csv: HTTP 404: no export for 2099-01"),
        "{missing}"
    );
    assert!(
        missing.contains(&format!("(USAGE_SOURCE is {shown_template})")),
        "{missing}"
    );
    // Nobody listening: the connection error, retried, without the URL's query.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let nobody = url_source(
        &format!("http://127.0.0.1:{port}/usage-{{period}}.csv?X-Signature=SIGNED-9f8e7d"),
        token.clone(),
    );
    let unreachable = read_all(&nobody, april())
        .await
        .expect_err("nobody")
        .to_string();
    assert!(
        unreachable.contains("connection failed") && unreachable.contains("(after 5 attempts)"),
        "{unreachable}"
    );
    for shown in [
        refused,
        missing,
        unreachable,
        format!("{wrong:?} {right:?} {nobody:?}"),
        right.describe(),
        format!(
            "{:?}",
            SourceSpec::FileUrl {
                url: template.clone(),
                token: token.clone()
            }
        ),
    ] {
        for secret in [
            token.expose(),
            "not-the-token-4711",
            "SIGNED-9f8e7d",
            "1999999999",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
}

#[tokio::test]
async fn injected_errors_are_retried_and_a_bad_request_is_not() {
    let sb = sandbox(500, 0.0).await;
    let want = from_api(&sb, april()).await;
    admin_put(
        &sb,
        "faults",
        json!([{"path": "/vendor/v1/exports", "count": 1, "action": {"type": "status", "status": 503}},
               {"path": "/vendor/v1/exports", "count": 1, "action": {"type": "status", "status": 429, "retry_after": 0}}]),
    )
    .await;
    let got = read_all(
        &url_source(&sb.usage_export_url("jsonl"), sb.usage_token()),
        april(),
    )
    .await
    .expect("read after two failures");
    assert_same(&want, got, "retried");
    let statuses: Vec<u64> = export_requests(&sb).await.iter().map(|r| r.0).collect();
    assert_eq!(statuses, [503, 429, 200]);
    admin_put(
        &sb,
        "faults",
        json!([{"path": "/vendor/v1/exports", "action": {"type": "status", "status": 400}}]),
    )
    .await;
    let e = read_all(
        &url_source(&sb.usage_export_url("jsonl"), sb.usage_token()),
        april(),
    )
    .await
    .expect_err("a bad request");
    let text = e.to_string();
    assert!(text.contains("HTTP 400 Bad Request"), "{text}");
    assert!(!text.contains("attempts"), "not retried: {text}");
}

/// A server of export files with whatever type and bytes a test gives: `(path, content type,
/// body)`.
async fn serve(files: Vec<(&'static str, Option<&'static str>, Vec<u8>)>) -> String {
    use axum::http::header;
    use axum::response::IntoResponse;
    let mut app = axum::Router::new();
    for (path, content_type, body) in files {
        app = app.route(
            path,
            axum::routing::get(move || {
                let body = body.clone();
                async move {
                    let mut resp = body.into_response();
                    resp.headers_mut().remove(header::CONTENT_TYPE);
                    if let Some(t) = content_type {
                        resp.headers_mut()
                            .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(t));
                    }
                    resp
                }
            }),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// The sandbox's April in `format`, as bytes.
fn april_bytes(sb: &Sandbox, format: TextFormat, records: u64) -> Vec<u8> {
    let month = sb.state().usage_universe().month(april());
    let mut out = Vec::new();
    format
        .write(export::records(&month, 0..records, 0.0), true, &mut out)
        .expect("written");
    out
}

#[tokio::test]
async fn the_format_follows_the_extension_then_the_content_type_then_the_first_bytes() {
    let sb = sandbox(300, 0.0).await;
    let want = from_api(&sb, april()).await;
    let csv = april_bytes(&sb, TextFormat::Csv, 300);
    let lines = april_bytes(&sb, TextFormat::JsonLines, 300);
    let array = {
        let text = String::from_utf8(lines.clone()).expect("text");
        format!("[{}]", text.trim_end().replace('\n', ",\n")).into_bytes()
    };
    let origin = serve(vec![
        // `.json`: an array or JSON Lines, by the first bytes.
        (
            "/a/usage-2024-04.json",
            Some("application/json"),
            array.clone(),
        ),
        (
            "/l/usage-2024-04.json",
            Some("application/json"),
            lines.clone(),
        ),
        // No extension that says: the content type does.
        (
            "/export/2024-04",
            Some("text/csv; charset=utf-8"),
            csv.clone(),
        ),
        (
            "/ndjson/2024-04",
            Some("application/x-ndjson"),
            lines.clone(),
        ),
        ("/json/2024-04", Some("application/json"), array),
        // Nor a content type: the first bytes.
        ("/sniffed/2024-04", None, csv.clone()),
        (
            "/sniffed-lines/2024-04",
            Some("application/octet-stream"),
            lines,
        ),
    ])
    .await;
    for path in [
        "/a/usage-{period}.json",
        "/l/usage-{period}.json",
        "/export/{period}",
        "/ndjson/{period}",
        "/json/{period}",
        "/sniffed/{period}",
        "/sniffed-lines/{period}",
    ] {
        let src = url_source(&format!("{origin}{path}"), Secret::default());
        let got = read_all(&src, april()).await.expect(path);
        assert_same(&want, got, path);
    }
    // Only URLs whose path ends in an export's extension are files for USAGE_SOURCE: of these,
    // `.json` is the one whose format is not its extension's.
    assert!(matches!(
        SourceSpec::parse(&format!("{origin}/a/usage-{{period}}.json"), |_| None),
        Ok(SourceSpec::FileUrl { .. })
    ));
    assert!(matches!(
        SourceSpec::parse(&format!("{origin}/export/{{period}}"), |_| None),
        Ok(SourceSpec::Http { .. })
    ));
}

#[tokio::test]
async fn a_parquet_download_goes_to_the_work_dir_for_the_reader_and_is_removed() {
    let origin = serve(vec![
        (
            "/u-2024-04.parquet",
            None,
            b"PAR1 not really Parquet PAR1".to_vec(),
        ),
        (
            "/by-magic/2024-04",
            Some("application/octet-stream"),
            b"PAR1 by its magic".to_vec(),
        ),
        (
            "/by-type/2024-04",
            Some("application/vnd.apache.parquet"),
            b"no magic".to_vec(),
        ),
    ])
    .await;
    let dir = std::env::temp_dir().join(format!("cu-url-parquet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for path in [
        "/u-{period}.parquet",
        "/by-magic/{period}",
        "/by-type/{period}",
    ] {
        let src = url_source(&format!("{origin}{path}?sig=SECRET-SIG"), Secret::default())
            .with_download_dir(&dir);
        let e = read_all(&src, april()).await.expect_err("not Parquet");
        let text = e.to_string();
        // The Parquet reader's error about the downloaded file (not a download's), naming
        // the URL rather than the file it was kept in.
        assert!(!matches!(e, SourceError::Download { .. }), "{path}: {e:?}");
        assert!(
            text.contains(&format!("{origin}{}", path.replace("{period}", "2024-04"))),
            "{text}"
        );
        assert!(
            !text.contains("connect-usage-download") && !text.contains("SECRET-SIG"),
            "{text}"
        );
        let left: Vec<_> = std::fs::read_dir(&dir).expect("the work dir").collect();
        assert!(left.is_empty(), "{path}: {left:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_local_path_template_reads_the_months_file_and_names_itself_when_one_is_missing() {
    let sb = sandbox(400, 0.0).await;
    let dir = std::env::temp_dir().join(format!("cu-url-local-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let month = sb.state().usage_universe().month(april());
    export::write_csv(
        &dir.join("usage-2024-04.csv"),
        export::records(&month, 0..400, 0.0),
    )
    .expect("written");
    let template = dir.join("usage-{period}.csv");
    let template = template.to_str().expect("a path");
    let source = SourceSpec::parse(template, |_| None)
        .expect("spec")
        .open()
        .expect("a template needs no file yet");
    let got = read_all(source.as_ref(), april()).await.expect("April");
    assert_same(&from_api(&sb, april()).await, got, "local April");
    let e = read_all(source.as_ref(), "2024-05".parse().expect("period"))
        .await
        .expect_err("no May");
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "usage-2024-05.csv: no such file (USAGE_SOURCE is {template}"
        )),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_month_reported_from_the_csv_export_ends_as_the_month_reported_from_the_api() {
    let config = RuntimeConfig {
        usage_records: 900,
        usage_bad_records: 0.05,
        ..RuntimeConfig::default()
    };
    let by_api = start_with(config.clone()).await;
    let by_export = start_with(config).await;
    let api = VendorApiSource::new(&by_api.usage_api_url(), by_api.usage_token())
        .expect("source")
        .with_retry(quick_retry());
    let from_api = report(&vendor(&by_api), &api, &quick_options(april()))
        .await
        .expect("reported from the API");
    let export = url_source(&by_export.usage_export_url("csv"), by_export.usage_token());
    let from_export = report(&vendor(&by_export), &export, &quick_options(april()))
        .await
        .expect("reported from the export");
    // Partial: the defective records are not reported.
    assert_eq!(from_api.result, RunResult::Partial, "{from_api}");
    assert_eq!(from_export.result, from_api.result, "{from_export}");
    assert_eq!(from_export.records, from_api.records);
    assert_eq!(from_export.groups, from_api.groups);
    assert_eq!(from_export.problems.len(), from_api.problems.len());
    assert!(from_api.records.sent > 0 && from_api.records.invalid > 0);
    let state = final_state(&by_export).await;
    assert!(!state.is_empty());
    assert_eq!(state, final_state(&by_api).await);
}
