//! The monthly run at volume, against the sandbox: groups larger than a usage file reported as
//! parts (and re-cut while not submitted), crashes at every step of a multi-part group,
//! records in any order giving the same bytes, late records in supplement parts, sums per day
//! or month, the external sort, and the run's work files.

mod common;

use std::time::Duration;

use common::*;
use connect_sandbox::{RuntimeConfig, Sandbox};
use connect_usage::usage::aggregate::aggregate_id;
use connect_usage::usage::identity::{FileNote, external_id};
use connect_usage::usage::source_http::VendorApiSource;
use connect_usage::usage::{
    Aggregation, FileAction, PollPolicy, ReportOptions, RunError, RunResult, RunSummary, Step,
    report,
};

/// Parts of `max` records; fast polls.
fn options(max: usize) -> ReportOptions {
    ReportOptions {
        max_records_per_file: max,
        ..quick_options(april())
    }
}

/// A sandbox whose month of `records` records all belong to one subscription: one group.
async fn one_group(records: u64) -> Sandbox {
    start_with(RuntimeConfig {
        usage_records: records,
        usage_subscriptions: 1,
        ..RuntimeConfig::default()
    })
    .await
}

async fn run(sb: &Sandbox, opts: &ReportOptions) -> Result<RunSummary, RunError> {
    let source = VendorApiSource::new(&sb.usage_api_url(), sb.usage_token())
        .expect("source")
        .with_retry(fast_retry());
    report(&vendor(sb), &source, opts).await
}

/// The record ids of a file in the final state.
fn ids(state: &Final, external_id: &str) -> Vec<String> {
    state
        .get(external_id)
        .map(|(_, records)| records.iter().map(|r| r.0.clone()).collect())
        .unwrap_or_default()
}

/// The group's base external id, read off the run's files.
fn base_of(summary: &RunSummary) -> String {
    let f = summary
        .files
        .iter()
        .find(|f| f.action != FileAction::SkippedNotQt)
        .expect("a QT file");
    external_id(&f.contract, &f.product, april())
}

#[tokio::test]
async fn a_group_larger_than_a_file_is_reported_as_parts() {
    let sb = one_group(250).await;
    let summary = run(&sb, &options(100)).await.expect("report");
    assert_eq!(summary.result, RunResult::Complete, "{summary}");
    assert_eq!(summary.groups.created, 3, "{summary}");
    assert_eq!(summary.records.sent, 250);
    let base = base_of(&summary);
    let state = final_state(&sb).await;
    assert_eq!(
        state.keys().cloned().collect::<Vec<_>>(),
        [base.clone(), format!("{base}:p2"), format!("{base}:p3")]
    );
    let parts: Vec<Vec<String>> = [base.clone(), format!("{base}:p2"), format!("{base}:p3")]
        .iter()
        .map(|e| ids(&state, e))
        .collect();
    assert_eq!(
        parts.iter().map(Vec::len).collect::<Vec<_>>(),
        [100, 100, 50]
    );
    assert!(state.values().all(|(status, _)| status == "pending"));
    // Every record in exactly one part, cut in record id order.
    let mut all: Vec<String> = parts.concat();
    let cut = all.clone();
    all.sort();
    assert_eq!(all, cut, "parts follow one another in id order");
    all.dedup();
    assert_eq!(all.len(), 250);
    // Names and descriptions say which part.
    let files = vendor(&sb).usage_files().all().await.expect("files");
    let mut names: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            (
                f.name.clone().unwrap_or_default(),
                f.description.clone().unwrap_or_default(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(names[1].0, "Usage April 2024, part 2 of 3");
    assert!(names[1].1.contains("part 2 of 3"), "{:?}", names[1]);
    assert!(
        summary
            .files
            .iter()
            .any(|f| f.slot.as_deref() == Some("part 3 of 3"))
    );
    // A second run changes nothing.
    let again = run(&sb, &options(100)).await.expect("again");
    assert_eq!(again.result, RunResult::Complete, "{again}");
    assert_eq!(
        (
            again.groups.already_reported,
            again.records.already_reported
        ),
        (3, 250)
    );
    assert_eq!(final_state(&sb).await, state);
}

#[tokio::test]
async fn a_crash_after_each_step_of_a_multi_part_group_ends_like_no_crash() {
    let reference = one_group(250).await;
    run(&reference, &options(100)).await.expect("uninterrupted");
    let want = final_state(&reference).await;
    for step in [Step::Create, Step::Upload, Step::Processed, Step::Submit] {
        for nth in 1..=3 {
            let sb = one_group(250).await;
            let crashing = ReportOptions {
                interrupt_after: Some(step),
                interrupt_nth: nth,
                concurrency: 1,
                ..options(100)
            };
            let e = run(&sb, &crashing).await.expect_err("interrupted");
            assert!(
                matches!(e, RunError::Interrupted { step: s, .. } if s == step),
                "{step:?} {nth}: {e}"
            );
            let again = run(&sb, &options(100)).await.expect("rerun");
            assert_eq!(again.result, RunResult::Complete, "{step:?} {nth}: {again}");
            assert_eq!(
                final_state(&sb).await,
                want,
                "after an interruption at {step:?} #{nth}"
            );
            // No upload was repeated for a part whose upload had gone through.
            let state = admin_get(&sb, "state?requests=false").await;
            for f in state["files"].as_array().expect("files") {
                assert_eq!(f["uploads"], 1, "{step:?} {nth}: {}", f["external_id"]);
            }
        }
    }
}

#[tokio::test]
async fn the_same_records_in_another_order_give_byte_identical_parts() {
    let sb = one_group(300).await;
    let forward = sandbox_csv(&sb, "order-forward.csv", 0..300);
    // A fixed shuffle: every 7th record, wrapping around.
    let shuffled = sandbox_csv(&sb, "order-shuffled.csv", (0..300).map(|i| (i * 7) % 300));
    let dirs: Vec<std::path::PathBuf> = ["a", "b"]
        .iter()
        .map(|d| std::env::temp_dir().join(format!("cu-order-{}-{d}", std::process::id())))
        .collect();
    for (csv, dir) in [(&forward, &dirs[0]), (&shuffled, &dirs[1])] {
        let _ = std::fs::remove_dir_all(dir);
        let dry = ReportOptions {
            dry_run: true,
            out_dir: Some(dir.clone()),
            ..options(120)
        };
        let s = run_file(&sb, csv, &dry).await.expect("dry run");
        assert_eq!(s.groups.dry_run, 3, "{s}");
    }
    let mut names: Vec<String> = std::fs::read_dir(&dirs[0])
        .expect("out")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".xlsx"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    for name in &names {
        let a = std::fs::read(dirs[0].join(name)).expect("a");
        let b = std::fs::read(dirs[1].join(name)).expect("b");
        assert!(a == b, "{name} differs with the records in another order");
    }
    for d in &dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Records `A-0001`... of quantity 1 for the target.
fn numbered(name: &str, t: &Target, n: usize) -> std::path::PathBuf {
    let ids: Vec<String> = (1..=n).map(|i| format!("A-{i:04}")).collect();
    let records: Vec<(&str, &str)> = ids.iter().map(|i| (i.as_str(), "1")).collect();
    usage_jsonl(name, t, &records)
}

/// Five records in parts of two, all three parts uploaded and processed but none submitted:
/// Connect processed them after the run stopped waiting.
async fn five_uploaded_none_submitted(t: &Target) -> Sandbox {
    let sb = start().await;
    let slow = RuntimeConfig {
        processing_delay_ms: 300,
        ..sb.state().config()
    };
    sb.state().set_config(slow).expect("slow processing");
    let impatient = ReportOptions {
        poll: PollPolicy {
            interval: Duration::from_millis(10),
            timeout: Duration::from_millis(50),
        },
        ..options(2)
    };
    let first = run_file(&sb, &numbered("recut-5.jsonl", t, 5), &impatient)
        .await
        .expect("first");
    assert_eq!(first.groups.waiting, 3, "{first}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let state = final_state(&sb).await;
    assert_eq!(state.len(), 3);
    assert!(state.values().all(|(s, _)| s == "ready"), "{state:?}");
    sb
}

#[tokio::test]
async fn a_group_that_grows_or_shrinks_before_submission_is_cut_again() {
    let sb = start().await;
    let t = qt_target(&sb);
    let base = external_id(&t.contract, &t.product, april());
    // The vendor's data grew: the last part takes the new record.
    let sb = five_uploaded_none_submitted(&t).await;
    let six = numbered("recut-6.jsonl", &t, 6);
    let grown = run_file(&sb, &six, &options(2)).await.expect("grown");
    assert_eq!(grown.result, RunResult::Complete, "{grown}");
    let state = final_state(&sb).await;
    assert_eq!(ids(&state, &base), ["A-0001", "A-0002"]);
    assert_eq!(ids(&state, &format!("{base}:p3")), ["A-0005", "A-0006"]);
    assert!(state.values().all(|(s, _)| s == "pending"));
    let uploads = admin_get(&sb, "state?requests=false").await["files"].clone();
    let uploads: Vec<u64> = uploads
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["uploads"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        uploads,
        [1, 1, 2],
        "only the part that changed is uploaded again"
    );

    // It shrank instead: the last part goes, its record moves to part 2.
    let sb = five_uploaded_none_submitted(&t).await;
    let three = numbered("recut-3.jsonl", &t, 3);
    let shrunk = run_file(&sb, &three, &options(2)).await.expect("shrunk");
    assert_eq!(shrunk.result, RunResult::Complete, "{shrunk}");
    assert_eq!(shrunk.groups.deleted, 1, "{shrunk}");
    let deleted = shrunk
        .files
        .iter()
        .find(|f| f.action == FileAction::Deleted)
        .expect("deleted part");
    assert_eq!(deleted.external_id, format!("{base}:p3"));
    let state = final_state(&sb).await;
    assert_eq!(
        state.keys().cloned().collect::<Vec<_>>(),
        [base.clone(), format!("{base}:p2")]
    );
    assert_eq!(ids(&state, &format!("{base}:p2")), ["A-0003"]);
    assert!(state.values().all(|(s, _)| s == "pending"));
}

#[tokio::test]
async fn late_records_beyond_a_file_make_supplement_parts() {
    let sb = start().await;
    let t = qt_target(&sb);
    let base = external_id(&t.contract, &t.product, april());
    run_file(&sb, &numbered("late-3.jsonl", &t, 3), &options(2))
        .await
        .expect("first");
    let summary = run_file(&sb, &numbered("late-8.jsonl", &t, 8), &options(2))
        .await
        .expect("second");
    assert_eq!(summary.result, RunResult::Complete, "{summary}");
    assert_eq!(
        (summary.records.sent, summary.records.already_reported),
        (5, 3)
    );
    let state = final_state(&sb).await;
    assert_eq!(ids(&state, &format!("{base}:s1")), ["A-0004", "A-0005"]);
    assert_eq!(ids(&state, &format!("{base}:s1:p2")), ["A-0006", "A-0007"]);
    assert_eq!(ids(&state, &format!("{base}:s1:p3")), ["A-0008"]);
    let files = vendor(&sb).usage_files().all().await.expect("files");
    assert!(
        files
            .iter()
            .any(|f| f.name.as_deref() == Some("Usage April 2024, supplement 1, part 2 of 3")),
        "{:?}",
        files.iter().map(|f| f.name.clone()).collect::<Vec<_>>()
    );
    let again = run_file(&sb, &numbered("late-8b.jsonl", &t, 8), &options(2))
        .await
        .expect("third");
    assert_eq!((again.records.sent, again.records.already_reported), (0, 8));
    assert_eq!(final_state(&sb).await, state);
}

#[tokio::test]
async fn day_and_month_sums_are_exact_on_the_workbook_cells() {
    let sb = start().await;
    let t = qt_target(&sb);
    let int = t.mpn_with("integer");
    let dec = t.mpn_with("decimal(2)");
    let d3 = "2024-04-03T01:00:00Z";
    let d3b = "2024-04-03T22:30:00Z";
    let d4 = "2024-04-04T00:00:00Z";
    let end = "2024-04-04T02:00:00Z";
    let data = usage_lines(
        "sums.jsonl",
        &t,
        &[
            // Two halves of an integer item on one day: one whole unit.
            ("r-1", 0, &int, "0.5", d3, end),
            ("r-2", 0, &int, "0.5", d3b, end),
            // The same asset and item the next day.
            ("r-3", 0, &int, "2", d4, end),
            // Another asset.
            ("r-4", 1, &int, "3", d3, end),
            // Decimal sums stay exact.
            ("r-5", 0, &dec, "0.1", d3, end),
            ("r-6", 0, &dec, "0.2", d3b, end),
            // A half alone breaks the integer item's precision: not sent.
            ("r-7", 1, &int, "0.5", d4, end),
        ],
    );
    let out = std::env::temp_dir().join(format!("cu-sums-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let dry = |aggregation| ReportOptions {
        dry_run: true,
        out_dir: Some(out.clone()),
        aggregation,
        ..options(1000)
    };
    let summary = run_file(&sb, &data, &dry(Aggregation::Day))
        .await
        .expect("by day");
    assert_eq!(summary.records.invalid, 1, "{summary}");
    assert!(
        summary.problems[0]
            .reason
            .contains("with more decimals than the item allows (0)"),
        "{summary}"
    );
    let workbook = summary.files[0].workbook.clone().expect("written");
    let rows = workbook_rows(&workbook);
    let day = |s: &str| -> (i64, i64) {
        let start = connect_usage::usage::record::parse_utc(s)
            .expect("time")
            .timestamp();
        (start, start + 86_399)
    };
    let (d3s, d3e) = day("2024-04-03T00:00:00Z");
    let (d4s, d4e) = day("2024-04-04T00:00:00Z");
    let want = |asset: usize, mpn: &str, (s, e): (i64, i64), q: &str, n: u32| {
        (
            aggregate_id(&t.assets[asset], mpn, s, e),
            t.assets[asset].clone(),
            mpn.to_owned(),
            q.to_owned(),
            fmt(s),
            fmt(e),
            format!(
                "sum of {n} vendor record{} ({})",
                if n == 1 { "" } else { "s" },
                &fmt(s)[..10]
            ),
        )
    };
    let mut expected = vec![
        want(0, &int, (d3s, d3e), "1", 2),
        want(0, &int, (d4s, d4e), "2", 1),
        want(1, &int, (d3s, d3e), "3", 1),
        want(0, &dec, (d3s, d3e), "0.3", 2),
    ];
    expected.sort();
    assert_eq!(rows, expected);

    let _ = std::fs::remove_dir_all(&out);
    let summary = run_file(&sb, &data, &dry(Aggregation::Month))
        .await
        .expect("by month");
    let workbook = summary.files[0].workbook.clone().expect("written");
    let rows = workbook_rows(&workbook);
    let (ms, me) = (
        april().start().timestamp(),
        april().last_second().timestamp(),
    );
    let month = |asset: usize, mpn: &str, q: &str, n: u32| {
        (
            aggregate_id(&t.assets[asset], mpn, ms, me),
            t.assets[asset].clone(),
            mpn.to_owned(),
            q.to_owned(),
            fmt(ms),
            fmt(me),
            format!(
                "sum of {n} vendor record{} (2024-04)",
                if n == 1 { "" } else { "s" }
            ),
        )
    };
    let mut expected = vec![
        month(0, &int, "3", 3),
        month(1, &int, "3.5", 2),
        month(0, &dec, "0.3", 2),
    ];
    expected.sort();
    // 3.5 breaks the integer item: that window is not sent.
    expected.retain(|r| r.3 != "3.5");
    assert_eq!(rows, expected);
    assert_eq!(summary.records.invalid, 2, "{summary}");
    let _ = std::fs::remove_dir_all(&out);

    // Reported for real, the sums land in Connect.
    let real = run_file(
        &sb,
        &data,
        &ReportOptions {
            aggregation: Aggregation::Day,
            ..options(1000)
        },
    )
    .await
    .expect("real");
    assert_eq!(real.groups.created, 1, "{real}");
    let state = final_state(&sb).await;
    let (status, records) = state.values().next().expect("file");
    assert_eq!(status, "pending");
    assert_eq!(records.len(), 4);
}

fn fmt(secs: i64) -> String {
    connect_usage::usage::workbook::format_time(secs, &mut [0u8; 19]).to_owned()
}

/// The rows of a workbook's `records` sheet: (record id, asset, item, quantity, start, end,
/// note), sorted.
fn workbook_rows(path: &str) -> Vec<(String, String, String, String, String, String, String)> {
    use calamine::Reader;
    let mut book = open_xlsx(std::fs::read(path).expect("workbook"));
    let range = book.worksheet_range("records").expect("records");
    let cell = |r: usize, c: usize| {
        range
            .get_value((r as u32, c as u32))
            .map(|v| v.to_string())
            .unwrap_or_default()
    };
    let mut rows: Vec<_> = (1..range.height())
        .map(|r| {
            (
                cell(r, 0),
                cell(r, 8),
                cell(r, 3),
                cell(r, 4),
                cell(r, 5),
                cell(r, 6),
                cell(r, 1),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn the_external_sort_gives_the_files_an_in_memory_run_gives() {
    let records = 600;
    let reference = start_with(RuntimeConfig {
        usage_records: records,
        usage_bad_records: 0.05,
        ..RuntimeConfig::default()
    })
    .await;
    let in_memory = run(&reference, &options(1000)).await.expect("in memory");
    let sb = start_with(RuntimeConfig {
        usage_records: records,
        usage_bad_records: 0.05,
        ..RuntimeConfig::default()
    })
    .await;
    let spilled = run(
        &sb,
        &ReportOptions {
            // A few dozen records per sorted run.
            sort_memory: 1,
            ..options(1000)
        },
    )
    .await
    .expect("spilled");
    assert_eq!(final_state(&sb).await, final_state(&reference).await);
    assert_eq!(spilled.records, in_memory.records);
    assert_eq!(spilled.problems, in_memory.problems);
    assert!(spilled.work_bytes > 0);
}

#[tokio::test]
async fn work_files_are_removed_and_leftovers_of_crashes_cleaned_up() {
    let sb = start().await;
    let work = std::env::temp_dir().join(format!("cu-work-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    // A run that crashed: its directory and an unlocked lock file.
    let crashed = work.join("connect-usage-run-1-dead");
    std::fs::create_dir(&crashed).expect("crashed");
    std::fs::write(crashed.join("lock"), b"").expect("lock");
    std::fs::write(crashed.join("spool-0.bin"), vec![7u8; 4096]).expect("spool");
    let mine = work.join("not-a-run");
    std::fs::write(&mine, b"keep").expect("other file");
    let summary = run(
        &sb,
        &ReportOptions {
            work_dir: work.clone(),
            ..options(1000)
        },
    )
    .await
    .expect("report");
    assert_eq!(summary.result, RunResult::Complete, "{summary}");
    assert!(summary.work_bytes > 0, "the run used its work directory");
    let left: Vec<String> = std::fs::read_dir(&work)
        .expect("work dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    assert_eq!(left, ["not-a-run"], "only what is not a run's is left");
    let _ = std::fs::remove_dir_all(&work);
}

#[tokio::test]
async fn a_dry_run_after_the_month_was_reported_counts_it_as_reported() {
    let sb = one_group(150).await;
    run(&sb, &options(100)).await.expect("report");
    let out = std::env::temp_dir().join(format!("cu-dry-after-{}", std::process::id()));
    let summary = run(
        &sb,
        &ReportOptions {
            dry_run: true,
            out_dir: Some(out.clone()),
            ..options(100)
        },
    )
    .await
    .expect("dry run");
    assert_eq!(summary.records.already_reported, 150, "{summary}");
    assert_eq!(summary.records.not_reported, 0, "{summary}");
    assert!(
        summary
            .files
            .iter()
            .all(|f| f.action == FileAction::AlreadyReported),
        "{summary}"
    );
    assert!(
        summary
            .to_string()
            .contains("150 already reported, 0 to send")
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// The whole path at the size the issue names: one contract and product of 1,100,000 records,
/// more than a usage file holds, reported end to end as two parts. Several minutes in a debug
/// build, so it runs in the benchmark (`report_bench --phases big-group`, release); run it here
/// with `cargo test --release --test report_volume -- --ignored`.
#[tokio::test]
#[ignore = "minutes in a debug build; the benchmark runs it"]
async fn a_group_of_1_100_000_records_is_reported_as_two_parts() {
    let sb = one_group(1_100_000).await;
    let summary = run(&sb, &options(1_000_000)).await.expect("report");
    assert_eq!(summary.result, RunResult::Complete, "{summary}");
    assert_eq!(summary.records.sent, 1_100_000);
    let files = vendor(&sb).usage_files().all().await.expect("files");
    let mut counts: Vec<u64> = files
        .iter()
        .map(|f| f.stats.as_ref().map_or(0, |s| s.uploaded))
        .collect();
    counts.sort();
    assert_eq!(counts, [100_000, 1_000_000]);
    assert!(files.iter().all(|f| f.status.to_string() == "pending"));
}

/// The `ready` event of a part delivered after a run re-cut the group and stopped half-way: the
/// part's old rows must not be submitted, some of them now being in a part already submitted.
#[tokio::test]
async fn a_ready_part_of_an_older_cut_is_not_submitted_after_a_recut() {
    use connect_eaas::protocol::{ResultType, TaskCategory};
    use connect_usage::handlers::lifecycle::usage_file_lifecycle;
    let sb = start().await;
    let t = qt_target(&sb);
    let base = external_id(&t.contract, &t.product, april());
    let sb = five_uploaded_none_submitted(&t).await;
    // A run noted each part's upload as processed, then stopped before the submits: every
    // note vouches for its part's rows.
    for f in vendor(&sb).usage_files().all().await.expect("files") {
        let note = FileNote::parse(f.note.as_deref());
        let landed = note.landed(f.last_upload()).expect("landed").clone();
        let done = note.processed(&landed.digest, landed.records, f.last_upload());
        vendor(&sb)
            .update_usage_file(
                &f.id,
                &connect_client::models::UsageFileUpdate {
                    note: Some(done.to_string()),
                    ..Default::default()
                },
            )
            .await
            .expect("noted");
    }
    // The vendor withdrew the first record: every part's first record moves one part down.
    let four: Vec<String> = (2..=5).map(|i| format!("A-{i:04}")).collect();
    let records: Vec<(&str, &str)> = four.iter().map(|i| (i.as_str(), "1")).collect();
    let shrunk = usage_jsonl("recut-from-2.jsonl", &t, &records);
    // Part 1 re-cut ([A-0002, A-0003]) and submitted, then the run stops.
    let stop = ReportOptions {
        interrupt_after: Some(Step::Submit),
        concurrency: 1,
        ..options(2)
    };
    run_file(&sb, &shrunk, &stop).await.expect_err("stopped");
    let state = final_state(&sb).await;
    assert_eq!(ids(&state, &base), ["A-0002", "A-0003"]);
    assert_eq!(state[&base].0, "pending");
    // Part 2 still holds [A-0003, A-0004] from the older cut, and is ready: its event comes.
    let p2 = format!("{base}:p2");
    assert_eq!(ids(&state, &p2), ["A-0003", "A-0004"]);
    let files = vendor(&sb).usage_files().all().await.expect("files");
    let id = files
        .iter()
        .find(|f| f.external_id.as_deref() == Some(p2.as_str()))
        .map(|f| f.id.clone())
        .expect("part 2");
    let object: serde_json::Value = vendor(&sb)
        .get(&format!("/usage/files/{id}"))
        .await
        .expect("file");
    assert_eq!(object["status"], "ready");
    let ctx = task_context(
        &sb,
        &id,
        shrunk.to_str().expect("path"),
        &[("MAX_RECORDS_PER_FILE", "2")],
    );
    let out = usage_file_lifecycle(ctx, object)
        .await
        .expect("the handler answers")
        .into_output(TaskCategory::Background, 0.0);
    assert_eq!(out.result, ResultType::Success, "{out:?}");
    // Every record once: part 2 took its new rows, and the part left over goes.
    run_file(&sb, &shrunk, &options(2))
        .await
        .expect("the next run");
    let state = final_state(&sb).await;
    let mut all: Vec<String> = state
        .values()
        .flat_map(|(_, r)| r.iter().map(|x| x.0.clone()))
        .collect();
    all.sort();
    assert_eq!(all, four, "{state:?}");
    assert_eq!(ids(&state, &p2), ["A-0004", "A-0005"]);
    assert!(state.values().all(|(s, _)| s == "pending"));
}

#[tokio::test]
async fn a_month_is_reported_one_way_and_a_persons_part_is_never_deleted() {
    let sb = start().await;
    let t = qt_target(&sb);
    let base = external_id(&t.contract, &t.product, april());
    let data = numbered("one-way.jsonl", &t, 3);
    run_file(&sb, &data, &options(2)).await.expect("reported");
    let before = final_state(&sb).await;
    // Summing the same month by day now would give its rows other ids: refused, untouched.
    let by_day = run_file(
        &sb,
        &data,
        &ReportOptions {
            aggregation: Aggregation::Day,
            ..options(2)
        },
    )
    .await
    .expect("a run");
    assert_eq!(by_day.groups.failed, 1, "{by_day}");
    let message = by_day.files[0].message.clone().unwrap_or_default();
    assert!(message.contains("USAGE_AGGREGATION=none"), "{message}");
    assert_eq!(final_state(&sb).await, before);

    // Rows uploaded by hand into a part the group no longer needs stay a person's.
    let sb = five_uploaded_none_submitted(&t).await;
    let p3 = format!("{base}:p3");
    let files = vendor(&sb).usage_files().all().await.expect("files");
    let id = files
        .iter()
        .find(|f| f.external_id.as_deref() == Some(p3.as_str()))
        .map(|f| f.id.clone())
        .expect("part 3");
    // A run noted its upload as processed, then someone uploaded other rows into it.
    let f = vendor(&sb).usage_file(&id).await.expect("part 3");
    let note = FileNote::parse(f.note.as_deref());
    let landed = note.landed(f.last_upload()).expect("landed").clone();
    let done = note.processed(&landed.digest, landed.records, f.last_upload());
    vendor(&sb)
        .update_usage_file(
            &id,
            &connect_client::models::UsageFileUpdate {
                note: Some(done.to_string()),
                ..Default::default()
            },
        )
        .await
        .expect("noted");
    upload_by_hand(&sb, &t, &id, &["BY-HAND-1"]).await;
    let shrunk = run_file(&sb, &numbered("one-way-3.jsonl", &t, 3), &options(2))
        .await
        .expect("shrunk");
    let left = shrunk
        .files
        .iter()
        .find(|f| f.external_id == p3)
        .expect("part 3's report");
    assert_eq!(left.action, FileAction::ChangedAfterReport, "{shrunk}");
    let state = final_state(&sb).await;
    assert_eq!(
        ids(&state, &p3),
        ["BY-HAND-1"],
        "not deleted, not overwritten"
    );
}
