//! Helpers shared by the integration tests: a sandbox on a free port, clients for its keys,
//! workbooks built cell by cell, and a QT contract/product/assets triple from its dataset.
#![allow(dead_code)]

pub mod postgres;

// The runner's test helpers live with the runner's tests; the product's tests use them too.
#[path = "../../crates/connect-eaas/tests/common/mod.rs"]
mod runner_common;
#[allow(unused_imports)]
pub use runner_common::{Capture, capture_all_logs, promtool, runner, shipping};

pub use connect_sandbox::testing::*;

use std::collections::BTreeMap;
use std::time::Duration;

use connect_sandbox::Sandbox;
use serde_json::Value;

/// Reports last month from the sandbox's vendor usage API with the vendor's key, the options
/// changed by `tweak`.
pub async fn report_last_month(
    sb: &Sandbox,
    tweak: impl FnOnce(&mut connect_usage::usage::ReportOptions),
) -> Result<connect_usage::usage::RunSummary, connect_usage::usage::RunError> {
    use connect_usage::usage::{ReportOptions, SourceSpec};
    let source = SourceSpec::Http {
        url: sb.usage_api_url(),
        token: sb.usage_token(),
    }
    .open()
    .expect("source");
    let mut options = ReportOptions::new(connect_usage::usage::Month::previous_month(
        chrono::Utc::now(),
    ));
    tweak(&mut options);
    connect_usage::usage::report(&vendor(sb), source.as_ref(), &options).await
}

/// A JSON Lines usage file of good April 2024 records for the target: `(record id,
/// quantity)` each, on its first asset and integer item.
pub fn usage_jsonl(name: &str, t: &Target, records: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cu-usage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    let mpn = t.mpn_with("integer");
    let lines: Vec<String> = records
        .iter()
        .map(|(id, q)| {
            serde_json::json!({"record_id": id, "subscription_id": t.assets[0], "item_mpn": mpn,
                "quantity": q, "start_time": "2024-04-03T00:00:00Z", "end_time": "2024-04-03T01:00:00Z"})
            .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).expect("write");
    path
}

/// The file's note says it holds other records than the vendor's data gives today.
pub async fn note_other_data(sb: &Sandbox, id: &str) {
    vendor(sb)
        .update_usage_file(
            id,
            &connect_client::models::UsageFileUpdate {
                note: Some(format!("connect-usage digest={} records=1", "0".repeat(64))),
                ..Default::default()
            },
        )
        .await
        .expect("note set");
}

/// Someone uploads rows with these record ids (quantity 9 each, on the target's first asset
/// and integer item) into the file by hand, in a later second than the file's last upload
/// (Connect's upload times are whole seconds).
pub async fn upload_by_hand(sb: &Sandbox, t: &Target, id: &str, record_ids: &[&str]) {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mpn = t.mpn_with("integer");
    let rows: Vec<_> = record_ids
        .iter()
        .map(|r| qt_row(r, &mpn, 9.0, &t.assets[0]))
        .collect();
    vendor(sb)
        .upload_usage_file(
            id,
            "by-hand.xlsx",
            workbook("records", &QT_HEADER, &rows).into(),
        )
        .await
        .expect("uploaded by hand");
}

/// What Connect holds, per external id: status and the records as
/// `(record_id, asset, mpn, quantity, start, end)`, independent of file ids and timing.
pub type Final = BTreeMap<
    String,
    (
        String,
        Vec<(String, String, String, String, String, String)>,
    ),
>;

pub async fn final_state(sb: &Sandbox) -> Final {
    let state = admin_get(sb, "state?requests=false").await;
    let mut out = Final::new();
    for f in state["files"].as_array().expect("files") {
        if f["status"] == "deleted" {
            continue;
        }
        let ext = f["external_id"].as_str().unwrap_or_default().to_owned();
        let mut records: Vec<_> = f["record_list"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| {
                let s = |v: &Value| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (
                    s(&r["record_id"]),
                    s(&r["asset"]["id"]),
                    s(&r["item"]["mpn"]),
                    s(&r["usage"]),
                    s(&r["start_date"]),
                    s(&r["end_date"]),
                )
            })
            .collect();
        records.sort();
        let previous = out.insert(
            ext.clone(),
            (f["status"].as_str().unwrap_or_default().to_owned(), records),
        );
        assert!(previous.is_none(), "two usage files for {ext}");
    }
    out
}

/// The sandbox's own usage records `indices` of April 2024 (`usage_subscriptions` applied) as
/// a vendor's CSV export, in the order given.
pub fn sandbox_csv(
    sb: &Sandbox,
    name: &str,
    indices: impl IntoIterator<Item = u64>,
) -> std::path::PathBuf {
    use std::io::Write;
    let dir = std::env::temp_dir().join(format!("cu-usage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("csv"));
    writeln!(
        out,
        "subscription_id,item_mpn,quantity,start_time,end_time,record_id,note"
    )
    .expect("write");
    let config = sb.state().config();
    let month = sb.state().usage_universe().month_of(
        "2024-04"
            .parse::<connect_client::month::Month>()
            .expect("period"),
        connect_sandbox::usage_universe::Spread::of(&config),
    );
    for i in indices {
        let r = month.record(i, 0.0);
        let s = |k: &str| r[k].as_str().unwrap_or_default().replace('"', "\"\"");
        writeln!(
            out,
            "{},{},{},{},{},{},\"{}\"",
            s("subscription_id"),
            s("item_mpn"),
            s("quantity"),
            s("start_time"),
            s("end_time"),
            s("record_id"),
            s("note")
        )
        .expect("write");
    }
    out.flush().expect("flush");
    path
}

/// JSON Lines usage of April 2024 for the target's first two assets: `(record id, asset index,
/// mpn, quantity, start, end)` each.
pub fn usage_lines(
    name: &str,
    t: &Target,
    records: &[(&str, usize, &str, &str, &str, &str)],
) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cu-usage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    let lines: Vec<String> = records
        .iter()
        .map(|(id, asset, mpn, q, start, end)| {
            serde_json::json!({"record_id": id, "subscription_id": t.assets[*asset], "item_mpn": mpn,
                "quantity": q, "start_time": start, "end_time": end})
            .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).expect("write");
    path
}

/// What a background task of the extension gets for `object`: the vendor's key, the usage from
/// `source` (a URL or a file) with the sandbox's token, and more `variables`.
pub fn task_context(
    sb: &Sandbox,
    object: &str,
    source: &str,
    variables: &[(&str, &str)],
) -> connect_eaas::runner::TaskContext {
    use connect_eaas::protocol::TaskCategory;
    use connect_eaas::runner::{Environment, TaskContext, TaskInfo, Variables};
    let client = vendor(sb);
    let mut entries = vec![
        ("USAGE_SOURCE".to_owned(), source.to_owned(), false),
        (
            "USAGE_SOURCE_TOKEN".to_owned(),
            sb.usage_token().expose().to_owned(),
            true,
        ),
    ];
    entries.extend(
        variables
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned(), false)),
    );
    TaskContext {
        task: TaskInfo {
            task_id: "TQ-000-000-001".into(),
            category: TaskCategory::Background,
            event_type: "usage_file_request_processing".into(),
            object_id: object.into(),
            correlation_id: None,
        },
        environment_client: client.clone(),
        client,
        installation: None,
        installation_client: None,
        config: Variables::from_entries(entries),
        environment: Environment::default(),
        state: connect_eaas::runner::HandlerState::default()
            .with(connect_usage::usage::locks::GroupLocks::default()),
    }
}

/// April 2024: the month the tests report.
pub fn april() -> connect_usage::usage::Month {
    "2024-04".parse().expect("period")
}

/// A run's options with polls fast enough for tests.
pub fn quick_options(period: connect_usage::usage::Month) -> connect_usage::usage::ReportOptions {
    connect_usage::usage::ReportOptions {
        poll: connect_usage::usage::PollPolicy {
            interval: Duration::from_millis(20),
            timeout: Duration::from_secs(20),
        },
        ..connect_usage::usage::ReportOptions::new(period)
    }
}

/// A report of the usage in the file at `path`.
pub async fn run_file(
    sb: &Sandbox,
    path: &std::path::Path,
    opts: &connect_usage::usage::ReportOptions,
) -> Result<connect_usage::usage::RunSummary, connect_usage::usage::RunError> {
    let source = connect_usage::usage::SourceSpec::File(path.to_path_buf())
        .open()
        .expect("file source");
    connect_usage::usage::report(&vendor(sb), source.as_ref(), opts).await
}

/// A runner with every handler the extension registers and what they share (the usage file
/// locks), as `connect-usage run` starts it.
pub fn extension_runner(
    config: connect_eaas::runner::RunnerConfig,
) -> connect_eaas::runner::RunnerHandle {
    let registry = connect_eaas::registry::Registry::collect().expect("the extension's registry");
    let descriptor = connect_usage::builtin_descriptor().expect("built-in descriptor");
    connect_eaas::runner::Runner::new(config, registry, &descriptor, None)
        .expect("runner builds")
        .with_state(connect_usage::usage::locks::GroupLocks::default())
        .start()
}
