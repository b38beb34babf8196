//! Usage coverage end to end: a sandbox whose vendor data leaves some subscriptions without
//! usage (`usage_uncovered_subscriptions`), and the monthly run naming exactly those, in the
//! summary, the JSON output and the scheduled task's result; `REQUIRE_FULL_COVERAGE` turning
//! such a run partial (exit 3) and a bad value being a setting to fix (exit 2).

mod common;

use std::process::Output;
use std::time::Duration;

use common::runner::{config, finished};
use common::*;
use connect_sandbox::{RuntimeConfig, Sandbox};
use connect_usage::usage::coverage::{COVERAGE_SAMPLES, Uncovered};
use connect_usage::usage::{Month, RunResult};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_connect-usage");

/// A sandbox whose month leaves `uncovered` subscriptions without usage (and a few records
/// spoiled, so invalid records are around too).
async fn sandbox_leaving(uncovered: u64) -> Sandbox {
    start_with(RuntimeConfig {
        usage_uncovered_subscriptions: uncovered,
        usage_bad_records: 0.02,
        ..RuntimeConfig::default()
    })
    .await
}

/// What the sandbox says it left without usage in `period`, by subscription id.
async fn left_without_usage(sb: &Sandbox, period: Month) -> Vec<Uncovered> {
    let answer = admin_get(sb, &format!("vendor/uncovered?period={period}")).await;
    let mut out: Vec<Uncovered> = answer["subscriptions"]
        .as_array()
        .expect("subscriptions")
        .iter()
        .map(|s| Uncovered {
            subscription: s["subscription"].as_str().expect("id").to_owned(),
            product: s["product"].as_str().expect("product").to_owned(),
            contract: s["contract"].as_str().expect("contract").to_owned(),
        })
        .collect();
    out.sort_by(|a, b| a.subscription.cmp(&b.subscription));
    out
}

/// The subscriptions the sandbox's vendor data can bill in `period`.
fn billable(sb: &Sandbox, period: Month) -> usize {
    sb.state().usage_universe().month(period).billable().len()
}

#[tokio::test]
async fn the_default_sandbox_has_full_coverage() {
    let sb = start().await;
    let summary = run_april(&sb, false).await;
    let coverage = summary.coverage.as_ref().expect("checked");
    assert_eq!(coverage.not_covered, 0, "{summary}");
    assert!(coverage.samples.is_empty());
    // The run and the sandbox agree on which subscriptions may have usage.
    assert_eq!(coverage.expected, billable(&sb, april()));
    assert_eq!(summary.result, RunResult::Complete, "{summary}");
    assert!(left_without_usage(&sb, april()).await.is_empty());
}

/// Reports April from the sandbox's vendor usage API.
async fn run_april(sb: &Sandbox, required: bool) -> connect_usage::usage::RunSummary {
    run_april_from(sb, &sb.usage_api_url(), required).await
}

/// Reports April from `source` (a `USAGE_SOURCE`), with the sandbox's usage token.
async fn run_april_from(
    sb: &Sandbox,
    source: &str,
    required: bool,
) -> connect_usage::usage::RunSummary {
    let options = connect_usage::usage::ReportOptions {
        require_full_coverage: required,
        ..quick_options(april())
    };
    let source = connect_usage::usage::SourceSpec::parse(source, |name| {
        (name == "USAGE_SOURCE_TOKEN").then(|| sb.usage_token().expose().to_owned())
    })
    .expect("source")
    .open()
    .expect("opens");
    connect_usage::usage::report(&vendor(sb), source.as_ref(), &options)
        .await
        .expect("the run")
}

#[tokio::test]
async fn coverage_names_exactly_the_subscriptions_left_without_usage() {
    let sb = sandbox_leaving(6).await;
    let left = left_without_usage(&sb, april()).await;
    assert_eq!(left.len(), 6, "{left:?}");
    // Spread over the account, not one corner of it.
    let contracts: std::collections::HashSet<&str> =
        left.iter().map(|u| u.contract.as_str()).collect();
    assert!(contracts.len() > 1, "{left:?}");

    let summary = run_april(&sb, false).await;
    let coverage = summary.coverage.as_ref().expect("checked");
    assert_eq!(coverage.samples, left, "{summary}");
    assert_eq!(coverage.not_covered, 6);
    assert_eq!(coverage.expected, billable(&sb, april()));
    assert_eq!(summary.not_covered(), 6, "what metrics read");
    // Reported, not required: invalid records make this run partial, coverage does not.
    assert!(!coverage.required);
    // None of them is in a file the run made; the others are.
    let reported: std::collections::HashSet<String> = final_state(&sb)
        .await
        .into_values()
        .flat_map(|(_, records)| records.into_iter().map(|r| r.1))
        .collect();
    assert_eq!(reported.len() + left.len(), coverage.expected);
    for u in &left {
        assert!(
            !reported.contains(&u.subscription),
            "{} has usage",
            u.subscription
        );
    }
    // People read it: each subscription on a line, every coverage line fitting a terminal.
    let text = summary.to_string();
    let section: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("  coverage:"))
        .take(2 + left.len())
        .collect();
    assert_eq!(section.len(), 2 + left.len(), "{text}");
    assert!(
        section.iter().all(|l| l.chars().count() <= 80),
        "{section:#?}"
    );
    assert!(
        text.contains(&format!(
            "coverage: 6 of {} subscriptions have no usage",
            coverage.expected
        )),
        "{text}"
    );
    for u in &left {
        let line = format!("    {} {} {}", u.subscription, u.product, u.contract);
        assert!(section.contains(&line.as_str()), "{line:?} in {text}");
    }
    assert!(
        summary
            .one_line()
            .contains("; 6 subscriptions without usage")
    );
}

#[tokio::test]
async fn the_export_files_leave_out_the_same_subscriptions() {
    let sb = sandbox_leaving(5).await;
    let left = left_without_usage(&sb, april()).await;
    // The second run finds the files reported by the first; coverage is about the data.
    for ext in ["csv", "parquet"] {
        let summary = run_april_from(&sb, &sb.usage_export_url(ext), false).await;
        let coverage = summary.coverage.as_ref().expect("checked");
        assert!(summary.source.contains(ext), "{}", summary.source);
        assert_eq!(coverage.samples, left, "{ext}: {summary}");
    }
}

#[tokio::test]
async fn the_required_coverage_makes_a_run_partial_that_was_complete() {
    // No spoiled records: the subscriptions without usage are the only thing wrong.
    let runtime = RuntimeConfig {
        usage_uncovered_subscriptions: 2,
        ..RuntimeConfig::default()
    };
    let relaxed = start_with(runtime.clone()).await;
    let summary = run_april(&relaxed, false).await;
    assert_eq!(summary.result, RunResult::Complete, "{summary}");
    assert_eq!(summary.not_covered(), 2);

    let strict = start_with(runtime).await;
    let summary = run_april(&strict, true).await;
    assert_eq!(summary.result, RunResult::Partial, "{summary}");
    let coverage = summary.coverage.as_ref().expect("checked");
    assert!(coverage.required);
    assert_eq!(coverage.samples, left_without_usage(&strict, april()).await);
    // Everything else was reported all the same.
    assert_eq!(summary.records.invalid + summary.records.unplaceable, 0);
    assert_eq!(summary.groups.failed + summary.groups.waiting, 0);
    assert!(summary.to_string().contains("(full coverage is required)"));
}

#[tokio::test]
async fn a_long_list_is_counted_whole_and_sampled_by_id() {
    let sb = sandbox_leaving(COVERAGE_SAMPLES as u64 + 7).await;
    let left = left_without_usage(&sb, april()).await;
    assert_eq!(left.len(), COVERAGE_SAMPLES + 7);
    let summary = run_april(&sb, false).await;
    let coverage = summary.coverage.as_ref().expect("checked");
    assert_eq!(coverage.not_covered, COVERAGE_SAMPLES + 7);
    assert_eq!(coverage.samples, left[..COVERAGE_SAMPLES]);
}

/// `connect-usage report --period 2024-04 --json` against the sandbox with these variables.
async fn report(sb: &Sandbox, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let work = std::env::temp_dir().join(format!("cu-coverage-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(["report", "--period", "2024-04", "--poll-interval-ms", "20"])
        .args(args)
        .env("API_KEY", format!("ApiKey {}", sb.vendor_key().expose()))
        .env("API_ADDRESS", sb.origin())
        .env("USAGE_SOURCE", sb.usage_api_url())
        .env("USAGE_SOURCE_TOKEN", sb.usage_token().expose())
        .env("WORK_DIR", &work)
        .env("RUST_LOG", "warn");
    for name in [
        "USAGE_QUERY",
        "PGPASSWORD",
        "MAX_RECORDS_PER_FILE",
        "REQUIRE_FULL_COVERAGE",
    ] {
        cmd.env_remove(name);
    }
    for (name, value) in vars {
        cmd.env(name, value);
    }
    cmd.output().await.expect("runs")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn as_json(left: &[Uncovered]) -> Value {
    serde_json::to_value(left).expect("json")
}

#[tokio::test]
async fn the_binary_exits_3_when_full_coverage_is_required_and_0_when_not() {
    let strict = start_with(RuntimeConfig {
        usage_uncovered_subscriptions: 3,
        ..RuntimeConfig::default()
    })
    .await;
    let metrics = std::env::temp_dir().join(format!("cu-coverage-{}.prom", std::process::id()));
    let out = report(
        &strict,
        &["--json", "--metrics-file", &metrics.to_string_lossy()],
        &[("REQUIRE_FULL_COVERAGE", "true")],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", json_of(&out));
    let summary = json_of(&out);
    assert_eq!(summary["result"], "partial");
    assert_eq!(summary["coverage"]["not_covered"], 3);
    // The metrics say it too.
    let text = std::fs::read_to_string(&metrics).expect("metrics file");
    let scrape = common::promtool::Scrape::parse(&text);
    assert_eq!(
        scrape.sum("connect_usage_last_run_uncovered_subscriptions", &[]),
        3.0
    );
    assert_eq!(
        scrape.sum("connect_usage_last_run_result", &[("result", "partial")]),
        1.0
    );
    let _ = std::fs::remove_file(&metrics);
    assert_eq!(summary["coverage"]["required"], true);
    let left = left_without_usage(&strict, april()).await;
    assert_eq!(summary["coverage"]["samples"], as_json(&left));

    // The same month without the requirement, from the flag this time: complete.
    let relaxed = start_with(RuntimeConfig {
        usage_uncovered_subscriptions: 3,
        ..RuntimeConfig::default()
    })
    .await;
    let out = report(
        &relaxed,
        &["--json", "--require-full-coverage", "false"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", json_of(&out));
    let summary = json_of(&out);
    assert_eq!(summary["result"], "complete");
    assert_eq!(summary["coverage"]["not_covered"], 3);
    assert_eq!(summary["coverage"]["required"], false);
    assert_eq!(
        summary["coverage"]["samples"],
        as_json(&left_without_usage(&relaxed, april()).await)
    );
}

#[tokio::test]
async fn a_bad_switch_is_a_setting_to_fix() {
    let sb = start().await;
    for (args, vars) in [
        (vec![], vec![("REQUIRE_FULL_COVERAGE", "yes please")]),
        (vec!["--require-full-coverage", "1"], vec![]),
    ] {
        let out = report(&sb, &args, &vars).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("REQUIRE_FULL_COVERAGE"), "{stderr}");
        assert!(stderr.contains("true or false"), "{stderr}");
    }
    // Nothing was read or sent.
    assert!(requests_under(&sb, "/vendor/v1/usage").await.is_empty());
    assert!(requests_under(&sb, "/public/v1/usage").await.is_empty());
}

/// The monthly schedule fired on a runner with the extension's handlers, the platform's
/// variables set to `variables`; returns the finished task.
async fn monthly_task(sb: &Sandbox, instance: &str, variables: Value) -> Value {
    let r = admin_put(sb, "platform/setup", json!({ "variables": variables })).await;
    assert!(r.status().is_success(), "setup changed");
    let runner = common::extension_runner(config(sb, instance));
    assert!(
        runner.wait_connected(Duration::from_secs(10)).await,
        "the runner connects"
    );
    let fired = common::runner::admin_post(
        sb,
        &format!(
            "platform/schedules/{}/fire",
            connect_usage::story::SCHEDULE_ID
        ),
        json!({}),
    )
    .await;
    let task = finished(sb, fired["id"].as_str().expect("the task's id")).await;
    runner.stop_and_wait().await;
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_result_names_the_subscriptions_and_says_partial_when_required() {
    // The schedule reports the previous month.
    let period = Month::previous_month(chrono::Utc::now());
    for (required, result) in [("true", "partial"), ("false", "complete")] {
        let sb = start_with(RuntimeConfig {
            usage_uncovered_subscriptions: 4,
            ..RuntimeConfig::default()
        })
        .await;
        let left = left_without_usage(&sb, period).await;
        assert_eq!(left.len(), 4);
        let task = monthly_task(
            &sb,
            &format!("coverage-{required}"),
            json!({ "REQUIRE_FULL_COVERAGE": required }),
        )
        .await;
        assert_eq!(task["status"], "succeeded", "{task:#}");
        let output = task["output"].as_str().expect("a result message");
        assert!(
            output.starts_with(&format!("{period} {result}:")),
            "{output}"
        );
        assert!(
            output.contains("; 4 subscriptions without usage;"),
            "{output}"
        );
        assert!(
            output.contains(&format!(
                "that no record names: 4 of {}",
                billable(&sb, period)
            )),
            "{output}"
        );
        for u in &left {
            assert!(output.contains(&u.to_string()), "{u} in {output}");
        }
    }
}
