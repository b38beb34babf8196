//! Collections page with limit/offset and Content-Range, on the client and in the sandbox,
//! including the edges: empty results, `limit=0`, offsets past the end, the 1000 cap and a
//! server that forgets the header.

mod common;

use std::collections::HashSet;

use common::*;
use connect_client::models::Asset;
use connect_client::rql::Expr;
use futures_util::TryStreamExt;
use serde_json::json;

async fn raw_get(
    sb: &connect_sandbox::Sandbox,
    path_and_query: &str,
) -> (u16, Option<String>, serde_json::Value) {
    let resp = as_vendor(sb, reqwest::Method::GET, path_and_query)
        .send()
        .await
        .expect("answers");
    let status = resp.status().as_u16();
    let range = resp
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, range, resp.json().await.expect("json"))
}

#[tokio::test]
async fn every_page_size_yields_every_asset_once() {
    let sb = start().await;
    let v = vendor(&sb);
    let total = sb.state().dataset().assets.len();
    assert_eq!(v.assets().count().await.expect("count"), total as u64);
    for size in [1, 7, 100, 281, 1000] {
        let ids: Vec<String> = v
            .assets()
            .page_size(size)
            .stream()
            .map_ok(|a: Asset| a.id)
            .try_collect()
            .await
            .expect("streamed");
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(
            (ids.len(), unique.len()),
            (total, total),
            "page size {size}"
        );
    }
    // Filtered, with the page boundary inside the result.
    let active = Expr::eq("status", "active");
    let n = v
        .assets()
        .filter(active.clone())
        .count()
        .await
        .expect("count");
    let got = v
        .assets()
        .filter(active)
        .page_size(9)
        .all()
        .await
        .expect("all");
    assert_eq!(got.len() as u64, n);
    assert!(got.iter().all(|a| a.status.as_str() == "active"));
}

#[tokio::test]
async fn content_range_edges_match_connect() {
    let sb = start().await;
    let total = sb.state().dataset().assets.len();
    let cases = [
        ("/assets?limit=10&offset=0", "items 0-9/{t}", 10),
        ("/assets?limit=0", "items 0-0/{t}", 0),
        ("/assets?limit=0&offset=50", "items 0-0/{t}", 0),
        ("/assets?limit=10&offset={t}", "items {t}-{t}/{t}", 0),
        (
            "/assets?limit=10&offset=100000",
            "items 100000-100000/{t}",
            0,
        ),
        ("/assets?eq(id,AS-NOPE)&limit=10", "items 0-0/0", 0),
        ("/assets?eq(id,AS-NOPE)&limit=10&offset=5", "items 5-5/0", 0),
        ("/assets?limit=5000", "items 0-{l}/{t}", total),
        ("/assets", "items 0-99/{t}", 100),
        ("/assets?limit=-3", "items 0-99/{t}", 100),
    ];
    for (path, want, len) in cases {
        let path = path.replace("{t}", &total.to_string());
        let want = want
            .replace("{t}", &total.to_string())
            .replace("{l}", &(total - 1).to_string());
        let (status, range, body) = raw_get(&sb, &path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(range.as_deref(), Some(want.as_str()), "{path}");
        assert_eq!(
            body.as_array().map(Vec::len),
            Some(len),
            "{path}: a bare array"
        );
    }
    // The cap is 1000: more items than that need several pages.
    admin_put(&sb, "config", json!({"max_limit": 50})).await;
    let (_, range, body) = raw_get(&sb, "/assets?limit=1000").await;
    assert_eq!(
        range.as_deref(),
        Some(format!("items 0-49/{total}").as_str())
    );
    assert_eq!(body.as_array().map(Vec::len), Some(50));
    // The client still gets everything: it follows the header, not its own page size.
    let all = vendor(&sb)
        .assets()
        .page_size(1000)
        .all()
        .await
        .expect("all");
    assert_eq!(all.len(), total);
}

#[tokio::test]
async fn empty_results_and_first() {
    let sb = start().await;
    let v = vendor(&sb);
    let none = v.assets().filter(Expr::eq("id", "AS-NOPE"));
    assert_eq!(none.count().await.expect("count"), 0);
    assert!(none.all().await.expect("all").is_empty());
    assert!(none.first().await.expect("first").is_none());
    let first = v
        .contracts()
        .filter(Expr::eq("status", "terminated"))
        .first()
        .await
        .expect("first")
        .expect("one terminated contract");
    assert_eq!(first.status.as_str(), "terminated");
    // A usage file list is empty at start, and paging it is one request.
    assert!(v.usage_files().all().await.expect("all").is_empty());
}

#[tokio::test]
async fn missing_content_range_is_read_until_a_short_page() {
    let sb = start().await;
    let total = sb.state().dataset().assets.len();
    admin_put(
        &sb,
        "faults",
        json!([{"method": "GET", "path": "/assets", "action": {"type": "drop_content_range"}}]),
    )
    .await;
    let (_, range, _) = raw_get(&sb, "/assets?limit=5").await;
    assert_eq!(range, None);
    let v = vendor(&sb);
    let all = v.assets().page_size(50).all().await.expect("all");
    assert_eq!(all.len(), total, "nothing lost without the header");
    let e = v
        .assets()
        .count()
        .await
        .expect_err("a count needs the header");
    assert!(e.to_string().contains("Content-Range"), "{e}");
}

#[tokio::test]
async fn without_content_range_small_server_pages_are_not_the_end() {
    let sb = start().await;
    let total = sb.state().dataset().assets.len();
    admin_put(&sb, "config", json!({"max_limit": 50})).await;
    admin_put(
        &sb,
        "faults",
        json!([{"method": "GET", "path": "/assets", "action": {"type": "drop_content_range"}}]),
    )
    .await;
    let all = vendor(&sb)
        .assets()
        .page_size(100)
        .all()
        .await
        .expect("all");
    assert_eq!(all.len(), total, "pages of 50 for a page size of 100");
}

#[tokio::test]
async fn a_server_ignoring_offset_is_an_error_not_a_loop() {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/public/v1/contracts",
        get(|| async {
            axum::Json(json!([{"id": "CRD-1", "type": "distribution", "status": "active"}]))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let c = connect_client::ConnectClient::new(
        format!("http://{addr}/public/v1"),
        connect_client::ApiKey::new("SU-1:x").expect("key"),
    )
    .expect("client");
    let e = c
        .contracts()
        .page_size(1)
        .all()
        .await
        .expect_err("repeated page");
    assert!(e.to_string().contains("ignores offset"), "{e}");
}

#[tokio::test]
async fn select_ordering_and_search_reach_the_server() {
    let sb = start().await;
    let v = vendor(&sb);
    let assets = v
        .assets()
        .select(["-items", "-params"])
        .order_by(["-created"])
        .page_size(20)
        .all()
        .await
        .expect("assets");
    assert!(
        assets
            .iter()
            .all(|a| a.items.is_empty() && a.params.is_empty())
    );
    let created: Vec<String> = assets
        .iter()
        .filter_map(|a| {
            a.events
                .as_ref()?
                .created
                .as_ref()
                .map(|e| e.at.to_rfc3339())
        })
        .collect();
    let mut sorted = created.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(created, sorted, "newest first");

    let found = v
        .contracts()
        .search("pacifica")
        .all()
        .await
        .expect("search");
    assert!(!found.is_empty());
    assert!(found.iter().all(|c| {
        c.issuer
            .as_ref()
            .and_then(|i| i.name.as_deref())
            .is_some_and(|n| n.contains("Pacifica"))
            || c.name
                .as_deref()
                .is_some_and(|n| n.to_lowercase().contains("pacifica"))
    }));

    // Values that need quoting and encoding survive the trip.
    let name = sb.state().dataset().marketplaces[1]["name"]
        .as_str()
        .expect("name")
        .to_owned();
    let by_name = v
        .contracts()
        .filter(
            Expr::eq("issuer.name", "Meridian Distribution")
                & Expr::eq("agreement.name", "x, (y) & \"z\""),
        )
        .count()
        .await
        .expect("quoted values parse");
    assert_eq!(by_name, 0);
    let exact = v
        .marketplaces()
        .filter(Expr::ilike(
            "name",
            connect_client::rql::escape_like(&name.to_uppercase()),
        ))
        .count()
        .await
        .expect("count");
    assert_eq!(exact, 1, "{name}");
}
