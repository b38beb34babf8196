//! The QT pipeline against the sandbox: the right files with the right records for a
//! multi-contract, multi-product month; January; a rerun that changes nothing; runs
//! interrupted after create, upload and submit that end like uninterrupted ones; faults that
//! change nothing; every kind of bad record reported; formula-like text kept as text; uploads
//! that outlive a run found again; files another task uploaded into during a run left to it.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::TimeZone;
use common::*;
use connect_client::ConnectClient;
use connect_sandbox::{RuntimeConfig, Sandbox};
use connect_usage::usage::pipeline::Step;
use connect_usage::usage::source_http::VendorApiSource;
use connect_usage::usage::{
    FileAction, Month, PollPolicy, ReportOptions, RunError, RunResult, RunSummary, SourceSpec,
    UsageSource, report,
};
use serde_json::{Value, json};

fn options(period: Month) -> ReportOptions {
    quick_options(period)
}

fn usage_source(sb: &Sandbox) -> VendorApiSource {
    VendorApiSource::new(&sb.usage_api_url(), sb.usage_token())
        .expect("source")
        .with_retry(fast_retry())
}

async fn run(sb: &Sandbox, opts: &ReportOptions) -> Result<RunSummary, RunError> {
    run_with(&vendor(sb), sb, opts).await
}

async fn run_with(
    client: &ConnectClient,
    sb: &Sandbox,
    opts: &ReportOptions,
) -> Result<RunSummary, RunError> {
    report(client, &usage_source(sb), opts).await
}

async fn sandbox(records: u64) -> Sandbox {
    start_with(RuntimeConfig {
        usage_records: records,
        ..RuntimeConfig::default()
    })
    .await
}

/// The source's records, by vendor record id: (asset id or uid, mpn).
async fn source_records(sb: &Sandbox, period: Month) -> HashMap<String, (String, String)> {
    use futures_util::TryStreamExt;
    let batches: Vec<Vec<connect_usage::usage::SourceItem>> = usage_source(sb)
        .records(period)
        .try_collect()
        .await
        .expect("source");
    batches
        .into_iter()
        .flatten()
        .filter_map(|i| match i {
            connect_usage::usage::SourceItem::Record(r) => Some((
                r.record_id.clone().unwrap_or_default(),
                (r.subscription, r.item_mpn),
            )),
            connect_usage::usage::SourceItem::Rejected(_) => None,
        })
        .collect()
}

#[tokio::test]
async fn a_multi_contract_multi_product_month_lands_in_the_right_files() {
    let sb = sandbox(600).await;
    let summary = run(&sb, &options(april())).await.expect("report");
    assert_eq!(summary.result, RunResult::Complete, "{summary}");
    assert_eq!(summary.records.read, 600);
    assert_eq!(summary.records.sent, 600);
    assert!(summary.groups.created >= 8, "{summary}");
    assert_eq!(summary.groups.created, summary.files.len());

    let d = sb.state().dataset();
    let asset_of = |reference: &str| -> Value {
        d.assets
            .iter()
            .find(|a| a["id"] == reference || a["external_uid"] == reference)
            .cloned()
            .unwrap_or_else(|| panic!("no asset {reference}"))
    };
    let source = source_records(&sb, april()).await;
    assert_eq!(source.len(), 600);
    let state = final_state(&sb).await;
    let contracts: BTreeSet<String> = state
        .keys()
        .map(|k| k.split(':').nth(1).unwrap_or_default().to_owned())
        .collect();
    let products: BTreeSet<String> = state
        .keys()
        .map(|k| k.split(':').nth(2).unwrap_or_default().to_owned())
        .collect();
    assert!(
        contracts.len() >= 4 && products.len() >= 3,
        "{contracts:?} {products:?}"
    );
    let mut seen = BTreeSet::new();
    for (ext, (status, records)) in &state {
        assert_eq!(status, "pending", "{ext}");
        let parts: Vec<&str> = ext.split(':').collect();
        assert_eq!((parts[0], parts[3]), ("cu", "2024-04"), "{ext}");
        for (record_id, asset, mpn, _, start, _) in records {
            let (reference, source_mpn) = source
                .get(record_id)
                .unwrap_or_else(|| panic!("{record_id} not from the source"));
            let a = asset_of(reference);
            assert_eq!(
                a["id"].as_str(),
                Some(asset.as_str()),
                "{record_id}: the asset, even when named by external_uid"
            );
            assert_eq!(mpn, source_mpn);
            assert_eq!(
                (a["contract"]["id"].as_str(), a["product"]["id"].as_str()),
                (Some(parts[1]), Some(parts[2])),
                "{record_id} in {ext}"
            );
            assert!(start.starts_with("2024-04"), "{start}");
            assert!(seen.insert(record_id.clone()), "{record_id} twice");
        }
    }
    assert_eq!(seen.len(), 600, "every record once");
    // Files carry the period and the contract's currency.
    let files = vendor(&sb).usage_files().all().await.expect("files");
    for f in &files {
        let p = f.period.expect("period");
        assert_eq!(
            (p.from.to_string(), p.to.to_string()),
            ("2024-04-01".into(), "2024-04-30".into())
        );
        assert!(f.currency.is_some());
        assert!(
            f.note
                .as_deref()
                .is_some_and(|n| n.starts_with("connect-usage digest=")),
            "{:?}",
            f.note
        );
    }
}

#[tokio::test]
async fn january_reports_december_of_the_year_before() {
    let sb = sandbox(200).await;
    let now = chrono::Utc
        .with_ymd_and_hms(2025, 1, 6, 3, 0, 0)
        .single()
        .expect("time");
    let period = Month::previous_month(now);
    let summary = run(&sb, &options(period)).await.expect("report");
    assert_eq!(summary.period.to_string(), "2024-12");
    assert_eq!(summary.result, RunResult::Complete, "{summary}");
    for f in vendor(&sb).usage_files().all().await.expect("files") {
        let p = f.period.expect("period");
        assert_eq!(
            (p.from.to_string(), p.to.to_string()),
            ("2024-12-01".into(), "2024-12-31".into())
        );
        assert!(
            f.external_id
                .as_deref()
                .is_some_and(|e| e.ends_with(":2024-12"))
        );
        assert_eq!(f.name.as_deref(), Some("Usage December 2024"));
    }
    for (_, (_, records)) in final_state(&sb).await {
        assert!(
            records
                .iter()
                .all(|r| r.4.starts_with("2024-12") && r.5.starts_with("2024-12"))
        );
    }
}

#[tokio::test]
async fn a_second_run_changes_nothing() {
    let sb = sandbox(300).await;
    let first = run(&sb, &options(april())).await.expect("first");
    let before = final_state(&sb).await;
    let events_before = admin_get(&sb, "events").await.as_array().map(Vec::len);
    let second = run(&sb, &options(april())).await.expect("second");
    assert_eq!(final_state(&sb).await, before);
    assert_eq!(
        admin_get(&sb, "events").await.as_array().map(Vec::len),
        events_before,
        "no change at all"
    );
    assert_eq!(second.groups.created + second.groups.resumed, 0, "{second}");
    assert_eq!(second.groups.already_reported, first.groups.created);
    assert_eq!(second.records.sent, 0);
    assert_eq!(second.records.already_reported, first.records.sent);
    assert_eq!(second.result, RunResult::Complete);
    assert!(
        second.files.iter().all(|f| f.message.is_none()),
        "the data did not change"
    );
    let writes = admin_get(&sb, "requests")
        .await
        .as_array()
        .map(|r| r.iter().rev().take_while(|r| r["method"] == "GET").count());
    assert!(
        writes.is_some_and(|n| n >= second.api_calls as usize),
        "the second run only read"
    );
}

#[tokio::test]
async fn interrupted_runs_end_like_uninterrupted_ones() {
    let reference = sandbox(250).await;
    run(&reference, &options(april()))
        .await
        .expect("uninterrupted");
    let want = final_state(&reference).await;
    for step in [Step::Create, Step::Upload, Step::Submit] {
        let sb = sandbox(250).await;
        let crashing = ReportOptions {
            interrupt_after: Some(step),
            concurrency: 1,
            ..options(april())
        };
        let e = run(&sb, &crashing).await.expect_err("interrupted");
        assert!(
            matches!(e, RunError::Interrupted { step: s, .. } if s == step),
            "{e}"
        );
        let mid = final_state(&sb).await;
        assert_eq!(mid.len(), 1, "one group was under way at {step:?}");
        let again = run(&sb, &options(april())).await.expect("rerun");
        assert_eq!(
            final_state(&sb).await,
            want,
            "after an interruption at {step:?}"
        );
        let resumed: Vec<&FileAction> = again
            .files
            .iter()
            .filter(|f| f.action != FileAction::Created)
            .map(|f| &f.action)
            .collect();
        let expected = if step == Step::Submit {
            FileAction::AlreadyReported
        } else {
            FileAction::Resumed
        };
        assert_eq!(resumed, [&expected], "{step:?}: {again}");
    }
}

#[tokio::test]
async fn injected_faults_do_not_change_the_outcome() {
    let reference = sandbox(300).await;
    run(&reference, &options(april())).await.expect("clean");
    let want = final_state(&reference).await;

    let sb = sandbox(300).await;
    admin_put(
        &sb,
        "faults",
        json!([
            {"method": "POST", "path": "/usage/files", "count": 3,
             "action": {"type": "status", "status": 502, "after": true}},
            {"rate": 0.15, "action": {"type": "status", "status": 503}},
            {"rate": 0.1, "action": {"type": "status", "status": 429, "retry_after": 0}},
            {"method": "GET", "rate": 0.05, "action": {"type": "status", "status": 500, "after": true}},
        ]),
    )
    .await;
    let client = ConnectClient::builder(sb.api_url(), sb.vendor_key())
        .retry_policy(connect_client::RetryPolicy {
            max_retries: 10,
            initial_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(10),
            ..connect_client::RetryPolicy::default()
        })
        .build()
        .expect("client");
    let summary = run_with(&client, &sb, &options(april()))
        .await
        .expect("report");
    assert_eq!(summary.result, RunResult::Complete, "{summary}");
    assert_eq!(final_state(&sb).await, want);
    let faulted = admin_get(&sb, "requests")
        .await
        .as_array()
        .map(|r| r.iter().filter(|r| r["fault"].is_string()).count())
        .unwrap_or(0);
    assert!(faulted > 10, "faults were injected: {faulted}");
}

#[tokio::test]
async fn every_kind_of_bad_record_is_reported_with_its_reason() {
    let sb = start().await;
    let d = sb.state().dataset();
    let t = qt_target(&sb);
    let find = |pred: &dyn Fn(&Value) -> bool| -> String {
        d.assets
            .iter()
            .find(|a| pred(a))
            .and_then(|a| a["id"].as_str())
            .expect("asset")
            .to_owned()
    };
    let terminated_contract = d
        .contracts
        .iter()
        .find(|c| c["status"] == "terminated")
        .and_then(|c| c["id"].as_str())
        .expect("contract");
    let under_terminated = find(&|a| a["contract"]["id"] == terminated_contract);
    let preview = find(&|a| a["connection"]["type"] == "preview");
    let processing =
        find(&|a| a["status"] == "processing" && a["product"]["id"] == t.product.as_str());
    let int = t.mpn_with("integer");
    let dec2 = t.mpn_with("decimal(2)");
    let seats = t.reservation_mpn.clone().expect("reservation item");
    let a = &t.assets[0];
    let (s, e) = ("2024-04-02T00:00:00Z", "2024-04-02T01:00:00Z");
    let rec = |id: &str, sub: &str, mpn: &str, q: &str, start: &str, end: &str| {
        json!({"record_id": id, "subscription_id": sub, "item_mpn": mpn, "quantity": q, "start_time": start, "end_time": end})
            .to_string()
    };
    let lines = [
        rec("ok-1", a, &int, "3", s, e),
        rec("unknown", "AS-9999-9999-9999", &int, "1", s, e),
        rec("terminated-contract", &under_terminated, &int, "1", s, e),
        rec("preview", &preview, &int, "1", s, e),
        rec("processing", &processing, &int, "1", s, e),
        rec("reservation", a, &seats, "1", s, e),
        rec("unknown-item", a, "NOPE", "1", s, e),
        rec("negative", a, &int, "-1", s, e),
        rec("decimals", a, &dec2, "0.125", s, e),
        rec("fraction", a, &int, "2.5", s, e),
        rec("order", a, &int, "1", e, s),
        rec("outside", a, &int, "1", "2024-03-31T23:00:00Z", e),
        rec("ok-1", a, &int, "4", s, e),
        json!({"subscription_id": a, "item_mpn": int, "quantity": "5", "start_time": s, "end_time": e}).to_string(),
        json!({"subscription_id": a, "item_mpn": int, "quantity": "5", "start_time": s, "end_time": e}).to_string(),
        "{broken json".to_owned(),
        json!({"subscription_id": a, "quantity": "1"}).to_string(),
        rec("letters", a, &int, "ten", s, e),
    ];
    let dir = std::env::temp_dir().join(format!("cu-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("april.jsonl");
    std::fs::write(&path, lines.join("\n")).expect("write");
    let source = SourceSpec::parse(path.to_str().expect("path"), |_| None)
        .expect("spec")
        .open()
        .expect("file");
    let summary = report(&vendor(&sb), source.as_ref(), &options(april()))
        .await
        .expect("report");
    assert_eq!(summary.result, RunResult::Partial);
    assert_eq!(summary.records.read, lines.len());
    assert_eq!(
        summary.records.sent, 2,
        "ok-1 and the first id-less record: {summary}"
    );
    assert_eq!(
        summary.records.invalid + summary.records.unplaceable,
        lines.len() - 2
    );
    let reasons: Vec<String> = summary.problems.iter().map(|p| p.to_string()).collect();
    for want in [
        "record 2 (line 2) (unknown): subscription \"AS-9999-9999-9999\" is not an asset id or external_uid",
        "record 3 (line 3) (terminated-contract): asset",
        "which is not an active distribution contract",
        "record 4 (line 4) (preview): asset",
        "is a preview subscription",
        "(processing): asset",
        "is processing: it was not active in 2024-04",
        "(reservation): item_mpn:",
        "not pay-as-you-go",
        "(unknown-item): item_mpn: \"NOPE\" is not an item of product",
        "(negative): quantity: -1 is negative",
        "(decimals): quantity: 0.125 has more decimals than item",
        "(fraction): quantity: 2.5 has more decimals than item",
        "(order): start_time 2024-04-02 01:00:00 is after end_time 2024-04-02 00:00:00",
        "(outside): start_time: 2024-03-31 23:00:00 is outside 2024-04",
        "record 13 (line 13) (ok-1): record_id \"ok-1\" is already used by record 1 (line 1)",
        "record 15 (line 15): the same record as record 14 (line 14)",
        "record 16 (line 16): not JSON",
        "record 17 (line 17): item_mpn: is required",
        "(letters): quantity: \"ten\" is not a number",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(want)),
            "{want:?} not in:\n{}",
            reasons.join("\n")
        );
    }
    let state = final_state(&sb).await;
    assert_eq!(state.len(), 1);
    let records = &state.values().next().expect("file").1;
    assert_eq!(records.len(), 2);
    assert!(
        records
            .iter()
            .any(|r| r.0 == "ok-1" && r.3.parse::<f64>() == Ok(3.0)),
        "the first ok-1 is the one sent"
    );
}

#[tokio::test]
async fn a_note_that_looks_like_a_formula_is_stored_as_text() {
    use calamine::{Data, Reader};
    let sb = sandbox(120).await;
    run(&sb, &options(april())).await.expect("report");
    // Record 14 (index 13) of every month carries the formula-like note.
    let state = admin_get(&sb, "state").await;
    let file = state["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| {
            f["record_list"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["record_id"] == "SKY-202404-00000014"))
        })
        .cloned()
        .expect("the file of record 14");
    let record = file["record_list"]
        .as_array()
        .and_then(|r| {
            r.iter()
                .find(|r| r["record_id"] == "SKY-202404-00000014")
                .cloned()
        })
        .expect("record");
    assert_eq!(record["record_note"], "=SUM(A1:A9) adjustment");
    assert_eq!(record["status"], "valid");
    let bytes = download(file["usage_file_uri"].as_str().expect("link")).await;
    let mut book = open_xlsx(bytes);
    let cells = book.worksheet_range("records").expect("records");
    let row = (1..cells.height() as u32)
        .find(|r| cells.get_value((*r, 0)) == Some(&Data::String("SKY-202404-00000014".into())))
        .expect("row");
    assert_eq!(
        cells.get_value((row, 1)),
        Some(&Data::String("=SUM(A1:A9) adjustment".into()))
    );
    let formulas = book.worksheet_formula("records").expect("formulas");
    assert!(formulas.used_cells().all(|(_, _, f)| f.is_empty()));
}

#[tokio::test]
async fn a_dry_run_writes_workbooks_and_summary_and_sends_nothing() {
    let sb = sandbox(300).await;
    let dir = std::env::temp_dir().join(format!("cu-dry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dry = ReportOptions {
        dry_run: true,
        out_dir: Some(dir.clone()),
        ..options(april())
    };
    let summary = run(&sb, &dry).await.expect("dry run");
    assert!(summary.dry_run);
    assert_eq!(summary.groups.dry_run, summary.files.len());
    let requests = admin_get(&sb, "requests").await;
    assert!(
        requests
            .as_array()
            .is_some_and(|r| r.iter().all(|r| r["method"] == "GET")),
        "only reads"
    );
    assert_eq!(admin_get(&sb, "state").await["files"], json!([]));
    let mut written = 0;
    for f in &summary.files {
        let path = f.workbook.as_deref().expect("workbook path");
        assert!(std::path::Path::new(path).is_file());
        assert_eq!(f.message.as_deref(), Some("would create the usage file"));
        written += f.records;
    }
    assert_eq!(written, 300);
    let saved: Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).expect("summary.json"))
            .expect("json");
    assert_eq!(saved["records"]["read"], 300);
    // The workbooks are the ones a real run uploads, byte for byte.
    run(&sb, &options(april())).await.expect("real run");
    let state = admin_get(&sb, "state").await;
    for f in &summary.files {
        let uploaded = state["files"]
            .as_array()
            .and_then(|fs| {
                fs.iter()
                    .find(|x| x["external_id"] == f.external_id.as_str())
                    .cloned()
            })
            .expect("file");
        let bytes = download(uploaded["usage_file_uri"].as_str().expect("link")).await;
        assert_eq!(
            bytes,
            std::fs::read(f.workbook.as_deref().expect("path")).expect("read"),
            "{}",
            f.external_id
        );
    }
}

#[tokio::test]
async fn slow_processing_leaves_files_waiting_and_a_later_run_submits_them() {
    let sb = start_with(RuntimeConfig {
        usage_records: 100,
        processing_delay_ms: 1500,
        ..RuntimeConfig::default()
    })
    .await;
    let impatient = ReportOptions {
        poll: PollPolicy {
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(200),
        },
        ..options(april())
    };
    let first = run(&sb, &impatient).await.expect("report");
    assert_eq!(
        first.result,
        RunResult::Failed,
        "nothing reported yet: {first}"
    );
    assert_eq!(first.groups.waiting, first.files.len());
    assert!(first.files.iter().all(|f| {
        f.message
            .as_deref()
            .is_some_and(|m| m.contains("a later run submits it"))
    }));
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let second = run(&sb, &options(april())).await.expect("report");
    assert_eq!(second.result, RunResult::Complete, "{second}");
    assert_eq!(second.groups.resumed, first.files.len());
    assert!(final_state(&sb).await.values().all(|(s, _)| s == "pending"));
    // The uploads that outlived the first run's poll are known by the notes written before
    // them: noted as processed and submitted, not sent again.
    let state = admin_get(&sb, "state?requests=false").await;
    for f in state["files"].as_array().expect("files") {
        assert_eq!(f["uploads"], 1, "{} uploaded once", f["id"]);
        assert!(
            f["note"]
                .as_str()
                .is_some_and(|n| n.starts_with("connect-usage digest=")),
            "{}",
            f["note"]
        );
    }
}

#[tokio::test]
async fn a_second_draft_of_a_group_is_deleted_and_the_oldest_file_kept() {
    let sb = sandbox(200).await;
    let t = qt_target(&sb);
    let ext = connect_usage::usage::identity::external_id(&t.contract, &t.product, april());
    let v = vendor(&sb);
    let first = v
        .create_usage_file(&new_file(&t, &ext))
        .await
        .expect("created by hand");
    let second = v
        .create_usage_file(&new_file(&t, &ext))
        .await
        .expect("created by hand");
    let summary = run(&sb, &options(april())).await.expect("report");
    assert_eq!(summary.result, RunResult::Complete, "{summary}");
    let report = summary
        .files
        .iter()
        .find(|f| f.external_id == ext)
        .expect("the group");
    assert_eq!(
        report.file_id.as_deref(),
        Some(first.id.as_str()),
        "the oldest stays"
    );
    let deleted = v.usage_file(&second.id).await.expect("read");
    assert_eq!(deleted.status.as_str(), "deleted");
    let live = v
        .usage_files()
        .filter(
            connect_client::rql::Expr::eq("external_id", ext.as_str())
                & connect_client::rql::Expr::ne("status", "deleted"),
        )
        .count()
        .await
        .expect("count");
    assert_eq!(live, 1);
}

#[tokio::test]
async fn two_live_files_with_one_external_id_stop_that_group_only() {
    let sb = sandbox(200).await;
    let t = qt_target(&sb);
    let ext = connect_usage::usage::identity::external_id(&t.contract, &t.product, april());
    let v = vendor(&sb);
    v.create_usage_file(&new_file(&t, &ext))
        .await
        .expect("created by hand");
    let second = v
        .create_usage_file(&new_file(&t, &ext))
        .await
        .expect("created by hand");
    // The second holds an upload: not a draft anyone may throw away.
    v.upload_usage_file(&second.id, "x.xlsx", valid_workbook(&t, 1).into())
        .await
        .expect("uploaded");
    let summary = run(&sb, &options(april())).await.expect("report");
    assert_eq!(summary.result, RunResult::Partial);
    let failed: Vec<&connect_usage::usage::FileReport> = summary
        .files
        .iter()
        .filter(|f| f.action == FileAction::Failed)
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]
            .message
            .as_deref()
            .is_some_and(|m| m.contains("2 usage files have the external id")
                && m.contains("a person must decide")),
        "{:?}",
        failed[0].message
    );
    assert!(
        summary.groups.created >= 5,
        "the other groups went on: {summary}"
    );
    let files = v
        .usage_files()
        .filter(connect_client::rql::Expr::eq("external_id", ext.as_str()))
        .count()
        .await
        .expect("count");
    assert_eq!(files, 2, "no third file, none deleted");
}

#[tokio::test]
async fn files_holding_other_data_get_this_data_before_submission() {
    let sb = sandbox(200).await;
    let t = qt_target(&sb);
    let ext = connect_usage::usage::identity::external_id(&t.contract, &t.product, april());
    let v = vendor(&sb);
    // One file made invalid by someone else's upload, one made ready with other records.
    let invalid = v
        .create_usage_file(&new_file(&t, &ext))
        .await
        .expect("created");
    let bad = workbook(
        "records",
        &QT_HEADER,
        &[qt_row("x", "NO-SUCH-MPN", 1.0, &t.assets[0])],
    );
    let f = v
        .upload_usage_file(&invalid.id, "by-hand.xlsx", bad.into())
        .await
        .expect("uploaded");
    assert_eq!(f.status.as_str(), "invalid");
    let summary = run(&sb, &options(april())).await.expect("report");
    assert_eq!(summary.result, RunResult::Complete, "{summary}");
    let report = summary
        .files
        .iter()
        .find(|f| f.external_id == ext)
        .expect("the group");
    assert_eq!(report.action, FileAction::Resumed);
    assert_eq!(
        report.file_id.as_deref(),
        Some(invalid.id.as_str()),
        "the same file, no second one"
    );
    let reference = sandbox(200).await;
    run(&reference, &options(april())).await.expect("clean run");
    assert_eq!(final_state(&sb).await, final_state(&reference).await);
}

#[tokio::test]
async fn a_ready_file_with_other_data_is_uploaded_again_not_submitted() {
    let sb = sandbox(200).await;
    let t = qt_target(&sb);
    let ext = connect_usage::usage::identity::external_id(&t.contract, &t.product, april());
    let v = vendor(&sb);
    let f = v
        .create_usage_file(&new_file(&t, &ext))
        .await
        .expect("created");
    let other = valid_workbook(&t, 2);
    let f = v
        .upload_usage_file(&f.id, "stale.xlsx", other.into())
        .await
        .expect("uploaded");
    assert_eq!(f.status.as_str(), "ready");
    run(&sb, &options(april())).await.expect("report");
    let reference = sandbox(200).await;
    run(&reference, &options(april())).await.expect("clean run");
    let got = final_state(&sb).await;
    assert_eq!(
        got,
        final_state(&reference).await,
        "the stale rec-0, rec-1 were replaced"
    );
    assert!(got[&ext].1.iter().all(|r| !r.0.starts_with("rec-")));
}

#[tokio::test]
async fn a_slow_create_is_waited_for_not_sent_twice() {
    let sb = sandbox(100).await;
    admin_put(
        &sb,
        "faults",
        json!([{"method": "POST", "path": "/usage/files", "count": 1,
                "action": {"type": "latency", "ms": 2500}}]),
    )
    .await;
    let impatient = ConnectClient::builder(sb.api_url(), sb.vendor_key())
        .retry_policy(fast_retry())
        .timeout(Duration::from_millis(1000))
        .build()
        .expect("client");
    let opts = ReportOptions {
        concurrency: 1,
        ..options(april())
    };
    let summary = run_with(&impatient, &sb, &opts).await.expect("report");
    assert_eq!(summary.result, RunResult::Complete, "{summary}");
    // Whatever was sent has landed by now.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let state = admin_get(&sb, "state?records=false&requests=false").await;
    let files = state["files"].as_array().expect("files");
    assert_eq!(
        files.len(),
        summary.files.len(),
        "one file per group, none deleted, none extra"
    );
    let reference = sandbox(100).await;
    run(&reference, &options(april())).await.expect("clean");
    assert_eq!(final_state(&sb).await, final_state(&reference).await);
}

#[tokio::test]
async fn a_crash_between_upload_and_note_never_leads_to_submitting_other_data() {
    let sb = start().await;
    let t = qt_target(&sb);
    let a = usage_jsonl("a.jsonl", &t, &[("A-1", "1")]);
    // As many records as A: only the note can tell the two apart.
    let b = usage_jsonl("b.jsonl", &t, &[("B-1", "2")]);
    // The file holds A, processed, its digest noted; then a run with B crashes right after
    // uploading B.
    let stop = |step| ReportOptions {
        interrupt_after: Some(step),
        ..options(april())
    };
    run_file(&sb, &a, &stop(Step::Processed))
        .await
        .expect_err("stopped after A was processed");
    run_file(&sb, &b, &stop(Step::Upload))
        .await
        .expect_err("stopped after B was uploaded");
    // A run with A must not take the file for A's.
    let summary = run_file(&sb, &a, &options(april())).await.expect("report");
    assert_eq!(summary.result, RunResult::Complete, "{summary}");
    let state = final_state(&sb).await;
    let (status, records) = state.values().next().expect("one file");
    assert_eq!(status, "pending");
    let ids: Vec<&str> = records.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(ids, ["A-1"], "A's data was submitted, not B's");
}

#[tokio::test]
async fn late_records_after_submission_become_one_supplement() {
    let sb = start().await;
    let t = qt_target(&sb);
    let a = usage_jsonl("late-a.jsonl", &t, &[("A-1", "1")]);
    let more = usage_jsonl(
        "late-b.jsonl",
        &t,
        &[("A-1", "1"), ("A-2", "5"), ("A-3", "2")],
    );
    run_file(&sb, &a, &options(april())).await.expect("first");
    let summary = run_file(&sb, &more, &options(april()))
        .await
        .expect("second");
    assert_eq!(summary.result, RunResult::Complete, "{summary}");
    assert_eq!(
        (
            summary.records.sent,
            summary.records.already_reported,
            summary.records.not_reported,
            summary.records.conflicts
        ),
        (2, 1, 0, 0),
        "{summary}"
    );
    assert_eq!(
        (summary.groups.created, summary.groups.already_reported),
        (1, 1)
    );
    let base = connect_usage::usage::identity::external_id(&t.contract, &t.product, april());
    let state = final_state(&sb).await;
    let ids = |ext: &str| -> (String, Vec<String>) {
        let (status, records) = &state[ext];
        (
            status.clone(),
            records.iter().map(|r| r.0.clone()).collect(),
        )
    };
    assert_eq!(ids(&base), ("pending".into(), vec!["A-1".into()]));
    assert_eq!(
        ids(&format!("{base}:s1")),
        ("pending".into(), vec!["A-2".into(), "A-3".into()])
    );
    let s1 = summary
        .files
        .iter()
        .find(|f| f.external_id.ends_with(":s1"))
        .expect("the supplement's report");
    assert_eq!((s1.action, s1.records), (FileAction::Created, 2));
    // The supplement says what it is.
    let files = vendor(&sb).usage_files().all().await.expect("files");
    let f = files
        .iter()
        .find(|f| f.external_id.as_deref() == Some(&format!("{base}:s1")))
        .expect("supplement");
    assert_eq!(f.name.as_deref(), Some("Usage April 2024, supplement 1"));

    // A second rerun changes nothing, and reads nothing back from Connect.
    let calls = last_request(&sb).await;
    let again = run_file(&sb, &more, &options(april()))
        .await
        .expect("third");
    assert_eq!(again.result, RunResult::Complete, "{again}");
    assert_eq!(
        (again.records.sent, again.records.already_reported),
        (0, 3),
        "{again}"
    );
    assert!(
        again
            .files
            .iter()
            .all(|f| f.action == FileAction::AlreadyReported)
    );
    assert_eq!(final_state(&sb).await, state);
    // (A file's link is only on its own GET, which a comparison makes first.)
    let requests = admin_get(&sb, &format!("requests?after={calls}")).await;
    let file_reads = requests
        .as_array()
        .expect("requests")
        .iter()
        .filter(|r| r["method"] == "GET")
        .filter(|r| {
            r["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/usage/files/UF-"))
        })
        .count();
    assert_eq!(file_reads, 0, "the notes told the group is reported");

    // More late records make the next supplement.
    let even_more = usage_jsonl(
        "late-c.jsonl",
        &t,
        &[("A-1", "1"), ("A-2", "5"), ("A-3", "2"), ("A-4", "9")],
    );
    let third = run_file(&sb, &even_more, &options(april()))
        .await
        .expect("fourth");
    assert_eq!((third.records.sent, third.records.already_reported), (1, 3));
    let (status, records) = &final_state(&sb).await[&format!("{base}:s2")];
    assert_eq!(status, "pending", "{third}");
    assert_eq!(
        records.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["A-4"]
    );
}

#[tokio::test]
async fn a_changed_record_is_a_conflict_and_nothing_is_resent() {
    let sb = start().await;
    let t = qt_target(&sb);
    let first = usage_jsonl("conflict-a.jsonl", &t, &[("A-1", "1"), ("A-2", "5")]);
    let changed = usage_jsonl(
        "conflict-b.jsonl",
        &t,
        &[("A-1", "1"), ("A-2", "6"), ("A-3", "4")],
    );
    run_file(&sb, &first, &options(april()))
        .await
        .expect("first");
    let before = final_state(&sb).await;
    let summary = run_file(&sb, &changed, &options(april()))
        .await
        .expect("second");
    assert_eq!(summary.result, RunResult::Partial, "{summary}");
    assert_eq!(
        (
            summary.records.sent,
            summary.records.already_reported,
            summary.records.conflicts
        ),
        (1, 1, 1),
        "{summary}"
    );
    assert_eq!(summary.conflicts.len(), 1);
    let c = &summary.conflicts[0];
    assert_eq!(c.record_id, "A-2");
    assert_eq!(
        (c.reported.quantity.as_str(), c.current.quantity.as_str()),
        ("5", "6")
    );
    assert!(c.file_id.starts_with("UF-"), "{c:?}");
    let text = summary.to_string();
    assert!(text.contains("A-2 (UF-"), "{text}");
    assert!(text.contains("quantity 5 reported, now 6"), "{text}");
    // A-3 is new: a supplement. A-2 is not sent again anywhere.
    let base = connect_usage::usage::identity::external_id(&t.contract, &t.product, april());
    let state = final_state(&sb).await;
    assert_eq!(
        state[&base], before[&base],
        "the reported file is untouched"
    );
    let s1: Vec<&str> = state[&format!("{base}:s1")]
        .1
        .iter()
        .map(|r| r.0.as_str())
        .collect();
    assert_eq!(s1, ["A-3"]);
    // Run again: the conflict is still reported, nothing more is sent.
    let again = run_file(&sb, &changed, &options(april()))
        .await
        .expect("third");
    assert_eq!(
        (again.records.sent, again.records.conflicts),
        (0, 1),
        "{again}"
    );
    assert_eq!(again.result, RunResult::Partial);
    assert_eq!(final_state(&sb).await, state);
}

#[tokio::test]
async fn a_rejected_file_is_left_to_its_handler_and_the_run_is_partial() {
    let sb = sandbox(100).await;
    run(&sb, &options(april())).await.expect("first");
    let p = provider(&sb);
    let files = vendor(&sb).usage_files().all().await.expect("files");
    p.reject_usage_file(&files[0].id, "wrong prices")
        .await
        .expect("rejected");
    let summary = run(&sb, &options(april())).await.expect("second");
    assert_eq!(summary.result, RunResult::Partial);
    assert_eq!(summary.groups.rejected, 1);
    let r = summary
        .files
        .iter()
        .find(|f| f.action == FileAction::Rejected)
        .expect("rejected group");
    assert!(
        r.message
            .as_deref()
            .is_some_and(|m| m.contains("wrong prices"))
    );
    assert_eq!(
        final_state(&sb).await[&r.external_id].0,
        "rejected",
        "left as it is"
    );
}

#[tokio::test]
async fn an_oversized_note_rejects_its_record_only() {
    let sb = start().await;
    let t = qt_target(&sb);
    let dir = std::env::temp_dir().join(format!("cu-long-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("long.jsonl");
    let mpn = t.mpn_with("integer");
    let rec = |id: &str, note: String| {
        json!({"record_id": id, "subscription_id": t.assets[0], "item_mpn": mpn, "quantity": "1",
               "start_time": "2024-04-03T00:00:00Z", "end_time": "2024-04-03T01:00:00Z", "note": note})
        .to_string()
    };
    std::fs::write(
        &path,
        [rec("short", "ok".into()), rec("long", "x".repeat(40_000))].join("\n"),
    )
    .expect("write");
    let summary = run_file(&sb, &path, &options(april()))
        .await
        .expect("report");
    assert_eq!(summary.records.sent, 1);
    assert_eq!(summary.records.invalid, 1);
    assert!(
        summary.problems[0]
            .reason
            .contains("note: 40000 characters; a workbook cell holds at most 32767")
    );
    assert_eq!(summary.groups.created, 1);
}

#[tokio::test]
async fn samples_are_the_first_problems_by_position() {
    let sb = start().await;
    let t = qt_target(&sb);
    let mpn = t.mpn_with("integer");
    let mut lines: Vec<String> = (1..=25)
        .map(|i| {
            json!({"record_id": format!("neg-{i}"), "subscription_id": t.assets[0], "item_mpn": mpn, "quantity": "-1",
                   "start_time": "2024-04-03T00:00:00Z", "end_time": "2024-04-03T01:00:00Z"})
            .to_string()
        })
        .collect();
    lines.extend((0..25).map(|_| "{broken".to_owned()));
    let dir = std::env::temp_dir().join(format!("cu-samples-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("samples.jsonl");
    std::fs::write(&path, lines.join("\n")).expect("write");
    let summary = run_file(&sb, &path, &options(april()))
        .await
        .expect("report");
    assert_eq!(summary.records.invalid, 50);
    let ordinals: Vec<u64> = summary
        .problems
        .iter()
        .map(|p| p.position.ordinal)
        .collect();
    assert_eq!(ordinals, (1..=20).collect::<Vec<u64>>());
}

#[tokio::test]
async fn defective_vendor_data_adds_up() {
    let sb = start_with(RuntimeConfig {
        usage_records: 2000,
        usage_bad_records: 0.1,
        ..RuntimeConfig::default()
    })
    .await;
    let summary = run(&sb, &options(april())).await.expect("report");
    let r = &summary.records;
    assert_eq!(summary.result, RunResult::Partial);
    assert!(
        r.invalid > 0 && r.unplaceable > 0 && r.not_qt > 0,
        "{summary}"
    );
    assert_eq!(
        r.read,
        r.sent + r.invalid + r.unplaceable + r.not_qt,
        "every record accounted for: {summary}"
    );
    assert!(
        summary
            .files
            .iter()
            .any(|f| f.action == FileAction::SkippedNotQt)
    );
    let sent: usize = final_state(&sb)
        .await
        .values()
        .map(|(_, rec)| rec.len())
        .sum();
    assert_eq!(sent, r.sent);
}

/// The sandbox's newest request number.
async fn last_request(sb: &Sandbox) -> u64 {
    admin_get(sb, "requests")
        .await
        .as_array()
        .and_then(|r| r.last())
        .and_then(|r| r["seq"].as_u64())
        .unwrap_or(0)
}

/// Waits until `n` requests after `after` have read the contracts: `n` runs have begun.
async fn until_contracts_read(sb: &Sandbox, after: u64, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reads = admin_get(sb, &format!("requests?after={after}"))
            .await
            .as_array()
            .map_or(0, |r| {
                r.iter()
                    .filter(|r| {
                        r["path"]
                            .as_str()
                            .is_some_and(|p| p.starts_with("/contracts?"))
                    })
                    .count()
            });
        if reads >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{reads} contracts reads"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Another task (a lifecycle handler, say) reports a group while the monthly run works, and
/// acts on the group first: the records read last stand. Read after the monthly run began,
/// they are neither overwritten nor called a change after report; read before (even if
/// uploaded after the monthly run began), they are replaced or reported as changed.
#[tokio::test]
async fn of_two_tasks_reporting_a_group_the_later_read_stands() {
    for (other_reads_later, other_submits) in
        [(true, false), (true, true), (false, false), (false, true)]
    {
        let case = format!("other reads later: {other_reads_later}, submits: {other_submits}");
        let sb = start().await;
        let t = qt_target(&sb);
        let older = usage_jsonl("older.jsonl", &t, &[("A-1", "1")]);
        let newer = usage_jsonl("newer.jsonl", &t, &[("A-1", "1"), ("A-2", "7")]);
        let (monthly_data, other_data) = if other_reads_later {
            (&older, &newer)
        } else {
            (&newer, &older)
        };
        // One lock table for both runs, as a runner's handlers share one.
        let locks = connect_usage::usage::locks::GroupLocks::default();
        let other = ReportOptions {
            // Reading later, it acts while the test holds the group for it, as a handler
            // holds it; reading earlier, it waits for the group first in line.
            locks: (!other_reads_later).then(|| locks.clone()),
            interrupt_after: (!other_submits).then_some(Step::Processed),
            ..options(april())
        };
        let monthly = ReportOptions {
            locks: Some(locks.clone()),
            ..options(april())
        };
        let external_id =
            connect_usage::usage::identity::external_id(&t.contract, &t.product, april());
        let held = locks.lock(&external_id).await;
        let seq = last_request(&sb).await;
        let (summary, by_other) = if other_reads_later {
            let other_task = async {
                until_contracts_read(&sb, seq, 1).await;
                let done = run_file(&sb, other_data, &other).await;
                drop(held);
                done
            };
            tokio::join!(run_file(&sb, monthly_data, &monthly), other_task)
        } else {
            let monthly_task = async {
                until_contracts_read(&sb, seq, 1).await;
                // The other task is in line for the group by now.
                tokio::time::sleep(Duration::from_millis(300)).await;
                let release = async {
                    until_contracts_read(&sb, seq, 2).await;
                    drop(held);
                };
                tokio::join!(run_file(&sb, monthly_data, &monthly), release).0
            };
            let (by_other, summary) = tokio::join!(run_file(&sb, other_data, &other), monthly_task);
            (summary, by_other)
        };
        assert_eq!(by_other.is_ok(), other_submits, "{case}: {by_other:?}");
        let summary = summary.expect("report");

        let f = &summary.files[0];
        let message = f.message.as_deref().unwrap_or_default();
        let (status, records) = final_state(&sb).await.into_values().next().expect("file");
        let ids: Vec<&str> = records.iter().map(|r| r.0.as_str()).collect();
        let uploads = admin_get(&sb, "state?requests=false").await["files"][0]["uploads"].clone();
        match (other_reads_later, other_submits) {
            (true, true) => {
                assert_eq!(f.action, FileAction::AlreadyReported, "{case}: {summary}");
                assert!(
                    message.contains("read the vendor's usage after this run began"),
                    "{case}: {message}"
                );
                assert_eq!(
                    (status.as_str(), ids),
                    ("pending", vec!["A-1", "A-2"]),
                    "{case}"
                );
            }
            (true, false) => {
                assert_eq!(f.action, FileAction::Waiting, "{case}: {summary}");
                assert!(message.contains("left to that task"), "{case}: {message}");
                assert_eq!(
                    (status.as_str(), ids),
                    ("ready", vec!["A-1", "A-2"]),
                    "{case}"
                );
                assert_eq!(uploads, 1, "{case}: nothing uploaded over them");
            }
            (false, true) => {
                // The older records were submitted first: the newer run sends what they lack,
                // in a supplement.
                assert_eq!(f.action, FileAction::AlreadyReported, "{case}: {summary}");
                assert_eq!((status.as_str(), ids), ("pending", vec!["A-1"]), "{case}");
                let supplement = &summary.files[1];
                assert_eq!(supplement.action, FileAction::Created, "{case}: {summary}");
                assert_eq!(supplement.slot.as_deref(), Some("supplement 1"));
                let state = final_state(&sb).await;
                let (s_status, s_records) = &state[&format!("{external_id}:s1")];
                assert_eq!(s_status, "pending", "{case}");
                assert_eq!(
                    s_records.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
                    ["A-2"],
                    "{case}"
                );
            }
            (false, false) => {
                assert_eq!(f.action, FileAction::Resumed, "{case}: {summary}");
                assert_eq!(
                    (status.as_str(), ids),
                    ("pending", vec!["A-1", "A-2"]),
                    "{case}"
                );
                assert_eq!(uploads, 2, "{case}: the newer records replaced the older");
            }
        }
    }
}

/// The group file of `data`, uploaded and processed by a run that stopped before its
/// submit; returns its id.
async fn processed_not_submitted(sb: &Sandbox, data: &std::path::Path) -> String {
    let stopped = ReportOptions {
        interrupt_after: Some(Step::Processed),
        ..options(april())
    };
    run_file(sb, data, &stopped)
        .await
        .expect_err("stopped after the upload was processed");
    vendor(sb).usage_files().all().await.expect("files")[0]
        .id
        .clone()
}

/// An upload named in the note that never went through does not make the file's older rows
/// count as the named ones.
#[tokio::test]
async fn an_upload_that_never_went_through_is_not_taken_for_landed() {
    let sb = start().await;
    let t = qt_target(&sb);
    let a = usage_jsonl("landed-a.jsonl", &t, &[("A-1", "1")]);
    // As many records as A: only the note can tell the two apart.
    let b = usage_jsonl("landed-b.jsonl", &t, &[("B-1", "2")]);
    let id = processed_not_submitted(&sb, &a).await;
    // B's run names its upload in the note, then Connect refuses the upload itself.
    admin_put(
        &sb,
        "faults",
        json!([{"method": "POST", "path": format!("/usage/files/{id}/upload"),
                "action": {"type": "status", "status": 400}}]),
    )
    .await;
    let refused = run_file(&sb, &b, &options(april())).await.expect("report");
    assert_eq!(refused.files[0].action, FileAction::Failed, "{refused}");
    let note = dumped_file(&sb, &id).await["note"].clone();
    assert!(
        note.as_str().is_some_and(|n| n.contains("uploading=")),
        "{note}"
    );
    // The file still holds A: B is uploaded, not assumed.
    admin_put(&sb, "faults", json!([])).await;
    let summary = run_file(&sb, &b, &options(april())).await.expect("report");
    assert_eq!(summary.result, RunResult::Complete, "{summary}");
    let (status, records) = final_state(&sb).await.into_values().next().expect("file");
    let ids: Vec<&str> = records.iter().map(|r| r.0.as_str()).collect();
    assert_eq!((status.as_str(), ids), ("pending", vec!["B-1"]));
    assert_eq!(dumped_file(&sb, &id).await["uploads"], 2);
}

/// Rows someone uploaded by hand into a file after its digest was noted are a person's: the
/// run neither takes them for its own (even as many rows) nor overwrites them, until the
/// file's note is cleared.
#[tokio::test]
async fn rows_uploaded_by_hand_are_left_for_a_person() {
    let sb = start().await;
    let t = qt_target(&sb);
    let a = usage_jsonl("by-hand-a.jsonl", &t, &[("A-1", "1")]);
    let id = processed_not_submitted(&sb, &a).await;
    upload_by_hand(&sb, &t, &id, &["BY-HAND-1"]).await;
    let summary = run_file(&sb, &a, &options(april())).await.expect("report");
    assert_eq!(summary.result, RunResult::Partial, "{summary}");
    let f = &summary.files[0];
    assert_eq!(f.action, FileAction::ChangedAfterReport, "{summary}");
    assert!(
        f.message
            .as_deref()
            .is_some_and(|m| m.contains("by someone else") && m.contains("clear the file's note")),
        "{:?}",
        f.message
    );
    let (status, records) = final_state(&sb).await.into_values().next().expect("file");
    let ids: Vec<&str> = records.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        (status.as_str(), ids),
        ("ready", vec!["BY-HAND-1"]),
        "left as it was"
    );
    assert_eq!(dumped_file(&sb, &id).await["uploads"], 2);

    // The note cleared, the file is the extension's again.
    vendor(&sb)
        .update_usage_file(
            &id,
            &connect_client::models::UsageFileUpdate {
                note: Some(String::new()),
                ..Default::default()
            },
        )
        .await
        .expect("note cleared");
    let summary = run_file(&sb, &a, &options(april())).await.expect("report");
    assert_eq!(summary.result, RunResult::Complete, "{summary}");
    let (status, records) = final_state(&sb).await.into_values().next().expect("file");
    let ids: Vec<&str> = records.iter().map(|r| r.0.as_str()).collect();
    assert_eq!((status.as_str(), ids), ("pending", vec!["A-1"]));
    assert_eq!(dumped_file(&sb, &id).await["uploads"], 3);
}
