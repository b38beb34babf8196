//! No API key ever reaches a log line or a `Debug` print: every log record of the client and
//! the sandbox is captured at trace level through a busy session (requests, retries, errors,
//! uploads, a wrong key) and searched for every key of the dataset.

mod common;

use common::*;
use connect_client::rql::Expr;
use connect_client::{ApiKey, ConnectClient};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_never_appear_in_logs_or_debug_output() {
    let capture = Capture::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .try_init()
        .expect("the only subscriber of this test binary");

    let sb = start().await;
    let t = qt_target(&sb);
    let v = vendor(&sb);
    let p = provider(&sb);
    admin_put(
        &sb,
        "faults",
        json!([
            {"method": "GET", "path": "/assets", "count": 2, "action": {"type": "status", "status": 503}},
            {"method": "POST", "path": "/usage/files", "count": 1, "action": {"type": "status", "status": 500, "after": true}},
        ]),
    )
    .await;
    v.assets().count().await.expect("after retries");
    let _ = v.create_usage_file(&new_file(&t, "secret-1")).await;
    let f = pending_file(&sb, &t, "secret-2").await;
    p.reject_usage_file(&f.id, "no").await.expect("rejected");
    let _ = v.assets().filter(Expr::eq("nope", "x")).count().await;
    // A whole report: the usage API's bearer token goes through the same logs.
    let source = connect_usage::usage::source_http::VendorApiSource::new(
        &sb.usage_api_url(),
        sb.usage_token(),
    )
    .expect("source");
    let summary = connect_usage::usage::report(
        &v,
        &source,
        &connect_usage::usage::ReportOptions::new("2024-04".parse().expect("period")),
    )
    .await
    .expect("report");
    let refused = connect_usage::usage::source_http::VendorApiSource::new(
        &sb.usage_api_url(),
        connect_client::secret::Secret::new("wrong-usage-token-value"),
    )
    .expect("source");
    let refusal = connect_usage::usage::report(
        &v,
        &refused,
        &connect_usage::usage::ReportOptions::new("2024-04".parse().expect("period")),
    )
    .await
    .expect_err("refused");
    let wrong = ConnectClient::new(
        sb.api_url(),
        ApiKey::new("SU-999:wrong-secret-value").expect("key"),
    )
    .expect("client");
    let e = wrong.contracts().count().await.expect_err("401");

    // Everything that has a Debug form in this session.
    let shown = format!(
        "{sb:?}\n{:?}\n{v:?}\n{p:?}\n{e:?}\n{e}\n{:?}\n{:?}\n{:?}\n{source:?}\n{refused:?}\n{summary:?}\n{summary}\n{refusal:?}\n{refusal}",
        sb.state(),
        sb.state().dataset(),
        sb.vendor_key(),
        sb.state().store(),
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let logs = capture.text();
    assert!(
        logs.contains("connect_request"),
        "the capture sees the client's spans:\n{logs}"
    );
    assert!(
        logs.contains("sandbox request"),
        "the capture sees the sandbox:\n{logs}"
    );
    assert!(logs.contains("retrying"), "retries were logged");

    let mut secrets: Vec<String> = sb
        .state()
        .dataset()
        .api_keys
        .iter()
        .flat_map(|k| {
            let token = k.key.trim_start_matches("ApiKey ").to_owned();
            let secret = token
                .split_once(':')
                .map(|(_, s)| s.to_owned())
                .unwrap_or_default();
            [token, secret]
        })
        .collect();
    secrets.push("wrong-secret-value".into());
    secrets.push(sb.usage_token().expose().to_owned());
    secrets.push("wrong-usage-token-value".into());
    let around = |text: &str, secret: &str| -> String {
        let at = text.find(secret).unwrap_or(0);
        let start = text[..at]
            .char_indices()
            .rev()
            .nth(200)
            .map_or(0, |(i, _)| i);
        text[start..].chars().take(400).collect()
    };
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        assert!(
            !logs.contains(secret.as_str()),
            "a key is in the logs: {}",
            around(&logs, secret)
        );
        assert!(
            !shown.contains(secret.as_str()),
            "a key is in Debug output: {}",
            around(&shown, secret)
        );
    }
}
