//! The usage sources against real peers: the Vendor API source against the sandbox's usage API
//! (paging, retries under faults, a refused token, defective records kept as rejections),
//! and the file sources on the same records.

mod common;

use std::time::Duration;

use common::*;
use connect_client::RetryPolicy;
use connect_client::secret::Secret;
use connect_sandbox::RuntimeConfig;
use connect_usage::usage::source_http::VendorApiSource;
use connect_usage::usage::{Month, SourceItem, SourceSpec, UsageSource};
use futures_util::TryStreamExt;
use serde_json::json;

fn april() -> Month {
    "2024-04".parse().expect("period")
}

async fn read_all(src: &dyn UsageSource, period: Month) -> Result<Vec<SourceItem>, String> {
    let batches: Vec<Vec<SourceItem>> = src
        .records(period)
        .try_collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(batches.into_iter().flatten().collect())
}

fn source(sb: &connect_sandbox::Sandbox, page: u32) -> VendorApiSource {
    VendorApiSource::new(&sb.usage_api_url(), sb.usage_token())
        .expect("source")
        .with_page_size(page)
        .with_retry(RetryPolicy {
            initial_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            max_retries: 8,
            ..RetryPolicy::default()
        })
}

#[tokio::test]
async fn vendor_api_pages_through_a_month() {
    let sb = start_with(RuntimeConfig {
        usage_records: 2345,
        ..RuntimeConfig::default()
    })
    .await;
    let items = read_all(&source(&sb, 500), april()).await.expect("read");
    assert_eq!(items.len(), 2345);
    let records: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            SourceItem::Record(r) => Some(r),
            SourceItem::Rejected(_) => None,
        })
        .collect();
    assert_eq!(records.len(), 2345, "no defects unless asked for");
    assert!(records.iter().all(|r| april().contains(r.start)));
    assert_eq!(records[0].position.ordinal, 1);
    assert_eq!(records[2344].position.ordinal, 2345);
    assert_eq!(records[0].record_id.as_deref(), Some("SKY-202404-00000001"));
    // Pages of 5 000 (five pages of 500 above) give the same records.
    let again = read_all(&source(&sb, 5000), april()).await.expect("read");
    assert_eq!(items, again);
    let requests = admin_get(&sb, "requests").await;
    let usage_gets = requests.as_array().map(|r| {
        r.iter()
            .filter(|r| {
                r["path"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("/vendor/v1/usage")
            })
            .count()
    });
    assert_eq!(usage_gets, Some(5 + 1));
}

#[tokio::test]
async fn vendor_api_faults_are_retried_and_change_nothing() {
    let sb = start_with(RuntimeConfig {
        usage_records: 1000,
        ..RuntimeConfig::default()
    })
    .await;
    let clean = read_all(&source(&sb, 100), april()).await.expect("read");
    admin_put(
        &sb,
        "faults",
        json!([
            {"path": "/vendor", "rate": 0.3, "action": {"type": "status", "status": 503}},
            {"path": "/vendor", "rate": 0.2, "action": {"type": "status", "status": 429, "retry_after": 0}},
        ]),
    )
    .await;
    let faulty = read_all(&source(&sb, 100), april())
        .await
        .expect("read through faults");
    assert_eq!(clean, faulty);
    let faults = admin_get(&sb, "requests")
        .await
        .as_array()
        .map(|r| r.iter().filter(|r| r["fault"].is_string()).count())
        .unwrap_or(0);
    assert!(faults > 0);
}

#[tokio::test]
async fn a_refused_token_ends_the_read_with_a_clear_error() {
    let sb = start().await;
    let src = VendorApiSource::new(&sb.usage_api_url(), Secret::new("wrong")).expect("source");
    let e = read_all(&src, april()).await.expect_err("refused");
    assert!(
        e.contains("refused the token (check USAGE_SOURCE_TOKEN)"),
        "{e}"
    );
    assert!(!e.contains("wrong"), "the token is not in the message: {e}");
    assert!(src.describe().contains("/vendor/v1/usage"));
    assert!(!format!("{src:?}").contains(sb.usage_token().expose()));
}

#[tokio::test]
async fn defective_records_arrive_as_rejections_with_reasons() {
    let sb = start_with(RuntimeConfig {
        usage_records: 3000,
        usage_bad_records: 0.2,
        ..RuntimeConfig::default()
    })
    .await;
    let items = read_all(&source(&sb, 1000), april()).await.expect("read");
    assert_eq!(items.len(), 3000, "nothing dropped");
    let rejected: Vec<String> = items
        .iter()
        .filter_map(|i| match i {
            SourceItem::Rejected(r) => Some(r.to_string()),
            SourceItem::Record(_) => None,
        })
        .collect();
    assert!(!rejected.is_empty());
    assert!(
        rejected
            .iter()
            .all(|r| r.contains("quantity: \"lots\" is not a number")),
        "only unreadable quantities are rejected by the source: {:?}",
        &rejected[..3.min(rejected.len())]
    );
}

#[tokio::test]
async fn files_give_the_same_records_as_the_api() {
    let sb = start_with(RuntimeConfig {
        usage_records: 300,
        ..RuntimeConfig::default()
    })
    .await;
    let items = read_all(&source(&sb, 1000), april()).await.expect("read");
    let dir = std::env::temp_dir().join(format!("cu-sources-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut csv =
        String::from("subscription_id,item_mpn,quantity,start_time,end_time,record_id,note\n");
    let mut jsonl = String::new();
    for i in &items {
        let SourceItem::Record(r) = i else { continue };
        let note = r.note.clone().unwrap_or_default().replace('"', "\"\"");
        csv.push_str(&format!(
            "{},{},{},{},{},{},\"{note}\"\n",
            r.subscription,
            r.item_mpn,
            r.quantity,
            r.start.to_rfc3339(),
            r.end.to_rfc3339(),
            r.record_id.clone().unwrap_or_default()
        ));
        jsonl.push_str(&format!(
            "{}\n",
            json!({"subscription_id": r.subscription, "item_mpn": r.item_mpn, "quantity": r.quantity.as_str(),
                   "start_time": r.start.to_rfc3339(), "end_time": r.end.to_rfc3339(), "record_id": r.record_id, "note": r.note})
        ));
    }
    std::fs::write(dir.join("april.csv"), csv).expect("write");
    std::fs::write(dir.join("april.jsonl"), jsonl).expect("write");
    for name in ["april.csv", "april.jsonl"] {
        let spec =
            SourceSpec::parse(dir.join(name).to_str().expect("path"), |_| None).expect("spec");
        let from_file = read_all(spec.open().expect("opens").as_ref(), april())
            .await
            .expect("read");
        assert_eq!(from_file.len(), items.len(), "{name}");
        for (a, b) in items.iter().zip(&from_file) {
            match (a, b) {
                (SourceItem::Record(a), SourceItem::Record(b)) => {
                    assert_eq!(
                        (
                            &a.subscription,
                            &a.item_mpn,
                            &a.quantity,
                            a.start,
                            a.end,
                            &a.record_id,
                            &a.note
                        ),
                        (
                            &b.subscription,
                            &b.item_mpn,
                            &b.quantity,
                            b.start,
                            b.end,
                            &b.record_id,
                            &b.note
                        ),
                        "{name}"
                    );
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }
}
