//! Error answers carry Connect's shape into the client's error, and the retry policy holds
//! under injected faults: GETs come through 5xx and 429 (honouring Retry-After), POSTs are
//! never sent twice when they may have been applied.

mod common;

use std::time::{Duration, Instant};

use axum::routing::get;
use common::*;
use connect_client::models::UsageFileStatus;
use connect_client::rql::Expr;
use connect_client::{ApiKey, ConnectClient, ErrorKind, RetryPolicy};
use serde_json::{Value, json};

async fn requests(sb: &connect_sandbox::Sandbox) -> Vec<Value> {
    admin_get(sb, "requests")
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn error_bodies_reach_the_caller() {
    let sb = start().await;
    let v = vendor(&sb);
    let cases: [(Result<u64, _>, u16, &str, &str); 4] = [
        (
            v.assets().filter(Expr::eq("colour", "red")).count().await,
            400,
            "RQL_002",
            "\"colour\" is not a filter of assets",
        ),
        (
            v.assets()
                .filter(Expr::gt("status", "active"))
                .count()
                .await,
            400,
            "RQL_002",
            "does not support lookup \"gt\"",
        ),
        (
            v.assets().filter(Expr::eq("status", "on")).count().await,
            400,
            "RQL_003",
            "expected one of draft, processing, active",
        ),
        (
            v.usage_files()
                .filter(Expr::ge("created.at", "soon"))
                .count()
                .await,
            400,
            "RQL_003",
            "not a date",
        ),
    ];
    for (result, status, code, text) in cases {
        let e = result.expect_err("refused");
        assert_eq!(
            (e.status(), e.error_code()),
            (Some(status), Some(code)),
            "{e}"
        );
        assert!(
            e.errors().iter().any(|m| m.contains(text)),
            "{text} in {:?}",
            e.errors()
        );
        assert!(e.to_string().starts_with("GET /"), "{e}");
        assert_eq!(e.attempts(), 1, "a 400 is not retried");
    }
    let resp = as_vendor(&sb, reqwest::Method::GET, "/assets?eq(a,%20b)")
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error_code"], "RQL_001");
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap_or_default()
            .starts_with("Bad filter query")
    );

    let e = v
        .usage_file("UF-2024-01-0000-0000")
        .await
        .expect_err("unknown");
    assert_eq!((e.status(), e.error_code()), (Some(404), Some("GEN_404")));
    assert!(e.is_not_found());
    assert_eq!(
        e.to_string(),
        "GET /usage/files/UF-2024-01-0000-0000: HTTP 404 GEN_404: Usage file UF-2024-01-0000-0000 not found."
    );

    let resp = http()
        .get(format!("{}/no/such/thing", sb.api_url()))
        .send()
        .await
        .expect("answers");
    assert_eq!(
        resp.status(),
        401,
        "the key is checked before routing, as on Connect"
    );
}

#[tokio::test]
async fn non_json_error_bodies_are_kept_as_text() {
    let app = axum::Router::new().route(
        "/public/v1/contracts",
        get(|| async { (axum::http::StatusCode::BAD_GATEWAY, "upstream is down") }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let c = ConnectClient::builder(
        format!("http://{addr}/public/v1"),
        ApiKey::new("SU-1:x").expect("key"),
    )
    .retry_policy(RetryPolicy {
        max_retries: 2,
        initial_delay: Duration::from_millis(1),
        ..RetryPolicy::default()
    })
    .build()
    .expect("client");
    let e = c.contracts().count().await.expect_err("502");
    assert_eq!(e.status(), Some(502));
    assert_eq!(e.error_code(), None);
    assert_eq!(e.errors(), ["upstream is down"]);
    assert_eq!(e.attempts(), 3, "first try and two retries");
    assert!(e.is_transient());
}

#[tokio::test]
async fn gets_come_through_5xx_and_429() {
    let sb = start().await;
    admin_put(
        &sb,
        "faults",
        json!([
            {"method": "GET", "path": "/contracts", "count": 2, "action": {"type": "status", "status": 503}},
            {"method": "GET", "path": "/marketplaces", "count": 1, "action": {"type": "status", "status": 429, "retry_after": 1}},
        ]),
    )
    .await;
    let v = vendor(&sb);
    let n = v.contracts().count().await.expect("third attempt succeeds");
    assert_eq!(n, sb.state().dataset().contracts.len() as u64);
    let started = Instant::now();
    let m = v.marketplaces().all().await.expect("after Retry-After");
    assert_eq!(m.len(), sb.state().dataset().marketplaces.len());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );

    let log = requests(&sb).await;
    let contracts: Vec<(u64, Option<&str>)> = log
        .iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/contracts"))
        })
        .map(|r| (r["status"].as_u64().unwrap_or(0), r["fault"].as_str()))
        .collect();
    assert_eq!(
        contracts,
        [
            (503, Some("status 503")),
            (503, Some("status 503")),
            (200, None)
        ]
    );
}

#[tokio::test]
async fn gets_give_up_after_the_policy_and_say_so() {
    let sb = start().await;
    admin_put(
        &sb,
        "faults",
        json!([{"method": "GET", "action": {"type": "status", "status": 500}}]),
    )
    .await;
    let e = vendor(&sb).assets().count().await.expect_err("always 500");
    assert_eq!(e.status(), Some(500));
    assert_eq!(e.error_code(), Some("SYS_001"));
    assert_eq!(e.attempts(), fast_retry().max_retries + 1);
    assert!(!e.outcome_unknown(), "a GET changes nothing");
    assert_eq!(
        requests(&sb).await.len() as u32,
        fast_retry().max_retries + 1
    );
}

#[tokio::test]
async fn a_post_that_failed_before_it_was_applied_is_not_resent_blindly() {
    let sb = start().await;
    let t = qt_target(&sb);
    admin_put(
        &sb,
        "faults",
        json!([{"method": "POST", "path": "/usage/files", "count": 1, "action": {"type": "status", "status": 500}}]),
    )
    .await;
    let v = vendor(&sb);
    let e = v
        .create_usage_file(&new_file(&t, "post-500"))
        .await
        .expect_err("500");
    assert_eq!(e.status(), Some(500));
    assert!(
        e.outcome_unknown(),
        "the client cannot know whether a 500 applied"
    );
    assert_eq!(e.attempts(), 1);
    let posts = requests(&sb)
        .await
        .into_iter()
        .filter(|r| r["method"] == "POST")
        .count();
    assert_eq!(posts, 1, "sent once");
    // Re-reading state shows it did not: the caller can create it now.
    let found = v
        .usage_files()
        .filter(Expr::eq("external_id", "post-500"))
        .count()
        .await
        .expect("lookup");
    assert_eq!(found, 0);
}

#[tokio::test]
async fn a_post_applied_then_failed_is_found_by_external_id() {
    let sb = start().await;
    let t = qt_target(&sb);
    admin_put(
        &sb,
        "faults",
        json!([{"method": "POST", "path": "/usage/files", "count": 1,
                "action": {"type": "status", "status": 502, "after": true}}]),
    )
    .await;
    let v = vendor(&sb);
    let e = v
        .create_usage_file(&new_file(&t, "applied-then-502"))
        .await
        .expect_err("502");
    assert!(e.outcome_unknown());
    assert_eq!(e.attempts(), 1);
    let found = v
        .usage_files()
        .filter(Expr::eq("external_id", "applied-then-502"))
        .all()
        .await
        .expect("lookup");
    assert_eq!(found.len(), 1, "it was created, exactly once");
    assert_eq!(found[0].status, UsageFileStatus::Draft);
    let state = admin_get(&sb, "state").await;
    assert_eq!(state["files"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_post_refused_with_429_is_retried_once_the_server_allows() {
    let sb = start().await;
    let t = qt_target(&sb);
    admin_put(
        &sb,
        "faults",
        json!([{"method": "POST", "path": "/usage/files", "count": 2,
                "action": {"type": "status", "status": 429, "retry_after": 0}}]),
    )
    .await;
    let f = vendor(&sb)
        .create_usage_file(&new_file(&t, "rate-limited"))
        .await
        .expect("created");
    assert_eq!(f.status, UsageFileStatus::Draft);
    let state = admin_get(&sb, "state").await;
    assert_eq!(
        state["files"].as_array().map(Vec::len),
        Some(1),
        "one file, not three"
    );
    let statuses: Vec<u64> = requests(&sb)
        .await
        .iter()
        .filter(|r| r["method"] == "POST")
        .filter_map(|r| r["status"].as_u64())
        .collect();
    assert_eq!(statuses, [429, 429, 201]);
}

#[tokio::test]
async fn action_puts_are_not_resent_once_they_may_have_applied() {
    let sb = start().await;
    let t = qt_target(&sb);
    let f = pending_file(&sb, &t, "approve").await;
    admin_put(
        &sb,
        "faults",
        json!([{"method": "PUT", "path": "/usage/files", "count": 1,
                "action": {"type": "status", "status": 503, "after": true}}]),
    )
    .await;
    let p = provider(&sb);
    let e = p
        .approve_all_usage_file(&f.id)
        .await
        .expect_err("503 after applying");
    assert_eq!(e.status(), Some(503));
    assert!(e.outcome_unknown(), "{e}");
    assert_eq!(e.attempts(), 1, "not resent");
    assert_eq!(
        p.usage_file(&f.id).await.expect("read").status,
        UsageFileStatus::Accepted
    );
    // An update is idempotent: the same PUT is resent and succeeds.
    admin_put(
        &sb,
        "faults",
        json!([{"method": "PUT", "path": "/usage/files", "count": 1,
                "action": {"type": "status", "status": 503, "after": true}}]),
    )
    .await;
    let v = vendor(&sb);
    let g = v
        .create_usage_file(&new_file(&t, "update"))
        .await
        .expect("created");
    let updated: Value = v
        .put(
            &format!("/usage/files/{}", g.id),
            &json!({"note": "twice is once"}),
        )
        .await
        .expect("retried update");
    assert_eq!(updated["note"], "twice is once");
}

#[tokio::test]
async fn timeouts_retry_gets_and_mark_posts_unknown() {
    let sb = start().await;
    let t = qt_target(&sb);
    admin_put(
        &sb,
        "faults",
        json!([
            {"method": "GET", "path": "/products", "count": 1, "action": {"type": "latency", "ms": 1500}},
            {"method": "POST", "path": "/usage/files", "count": 1, "action": {"type": "latency", "ms": 1500}},
        ]),
    )
    .await;
    let c = ConnectClient::builder(sb.api_url(), sb.vendor_key())
        .retry_policy(fast_retry())
        .timeout(Duration::from_millis(500))
        .build()
        .expect("client");
    let products = c.products().all().await.expect("second attempt in time");
    assert!(!products.is_empty());
    let e = c
        .create_usage_file(&new_file(&t, "slow"))
        .await
        .expect_err("timed out");
    assert!(
        matches!(e.kind(), ErrorKind::Transport { timeout: true, .. }),
        "{e:?}"
    );
    assert!(e.outcome_unknown(), "{e}");
    assert_eq!(e.attempts(), 1);
    // The server went on and created it: exactly what "unknown" means.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let found = vendor(&sb)
        .usage_files()
        .filter(Expr::eq("external_id", "slow"))
        .count()
        .await
        .expect("lookup");
    assert_eq!(found, 1);
}

#[tokio::test]
async fn refused_connections_are_retried_and_known_not_applied() {
    // A port nobody listens on.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let c = ConnectClient::builder(
        format!("http://{addr}/public/v1"),
        ApiKey::new("SU-1:x").expect("key"),
    )
    .retry_policy(RetryPolicy {
        max_retries: 2,
        initial_delay: Duration::from_millis(1),
        ..RetryPolicy::default()
    })
    .build()
    .expect("client");
    let e = c
        .post::<_, Value>("/usage/files", Some(&json!({})))
        .await
        .expect_err("nobody there");
    assert!(
        matches!(e.kind(), ErrorKind::Transport { connect: true, .. }),
        "{e:?}"
    );
    assert!(!e.outcome_unknown(), "it never left");
    assert_eq!(e.attempts(), 3);
}

#[tokio::test]
async fn random_faults_do_not_change_what_a_full_read_returns() {
    let sb = start().await;
    admin_put(
        &sb,
        "faults",
        json!([
            {"method": "GET", "rate": 0.3, "action": {"type": "status", "status": 503}},
            {"method": "GET", "rate": 0.1, "action": {"type": "status", "status": 429, "retry_after": 0}},
        ]),
    )
    .await;
    let c = ConnectClient::builder(sb.api_url(), sb.vendor_key())
        .retry_policy(RetryPolicy {
            max_retries: 12,
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            ..RetryPolicy::default()
        })
        .build()
        .expect("client");
    let assets = c.assets().page_size(10).all().await.expect("all pages");
    let total = sb.state().dataset().assets.len();
    let mut ids: Vec<&str> = assets.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), total, "no page lost or read twice");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total);
    let faulted = requests(&sb)
        .await
        .iter()
        .filter(|r| r["fault"].is_string())
        .count();
    assert!(faulted > 5, "faults were injected ({faulted})");
}
