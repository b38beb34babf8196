//! What a new user meets in the first minutes, through the binary as they run it: mistakes
//! that explain themselves once (a refused token, a refused API key, a forgotten
//! `API_ADDRESS`), summaries whose counts agree with their lines, and the documented examples
//! working against the sandbox as written.

mod common;

use std::process::Output;

use common::*;
use connect_sandbox::Sandbox;

const BIN: &str = env!("CARGO_BIN_EXE_connect-usage");

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cu-first-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir.join(name)
}

/// `connect-usage report` against the sandbox with these variables (and nothing from the
/// environment that could change what it does).
async fn report(sb: &Sandbox, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("report")
        .args(args)
        .env("API_KEY", format!("ApiKey {}", sb.vendor_key().expose()))
        .env("API_ADDRESS", sb.origin())
        .env("USAGE_SOURCE", sb.usage_api_url())
        .env("USAGE_SOURCE_TOKEN", sb.usage_token().expose())
        .env("RUST_LOG", "warn");
    for name in [
        "USAGE_QUERY",
        "WORK_DIR",
        "PGPASSWORD",
        "MAX_RECORDS_PER_FILE",
    ] {
        cmd.env_remove(name);
    }
    for (name, value) in vars {
        cmd.env(name, value);
    }
    cmd.output().await.expect("runs")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_refused_vendor_token_is_said_once() {
    let sb = start().await;
    let out = report(
        &sb,
        &[
            "--period",
            "2024-04",
            "--dry-run",
            "--out",
            &scratch("refused-out").to_string_lossy(),
        ],
        &[("USAGE_SOURCE_TOKEN", "wrong-token-51c")],
    )
    .await;
    let (stdout, stderr) = text(&out);
    // A setting to fix: exit 2, as for a refused API key.
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    let error: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error.len(), 1, "{stderr}");
    assert_eq!(error[0].matches("refused the token").count(), 1, "{stderr}");
    assert_eq!(error[0].matches("HTTP 401").count(), 1, "{stderr}");
    assert!(error[0].contains("USAGE_SOURCE_TOKEN"), "{stderr}");
    assert!(!stderr.contains("wrong-token-51c"), "{stderr}");
}

/// docs/vendor-usage-api.md's example CSV, saved as a file, reports against the sandbox: every
/// record placed, none invalid.
#[tokio::test]
async fn the_documented_csv_example_reports_against_the_sandbox() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/vendor-usage-api.md"
    ))
    .expect("the doc");
    let csv = doc
        .split("```csv\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a csv block");
    let file = scratch("usage-2024-04.csv");
    std::fs::write(&file, csv).expect("written");
    let sb = start().await;
    let out_dir = scratch("documented-csv-out");
    let out = report(
        &sb,
        &[
            "--period",
            "2024-04",
            "--dry-run",
            "--json",
            "--out",
            &out_dir.to_string_lossy(),
        ],
        &[("USAGE_SOURCE", &file.to_string_lossy())],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let lines = csv.lines().count() as u64 - 1;
    assert_eq!(summary["records"]["read"], lines, "{summary:#}");
    assert_eq!(summary["records"]["not_reported"], lines, "{summary:#}");
    assert_eq!(summary["records"]["invalid"], 0, "{summary:#}");
    assert_eq!(summary["records"]["unplaceable"], 0, "{summary:#}");
}

/// The sandbox's requests to the vendor usage API so far.
async fn usage_reads(sb: &Sandbox) -> usize {
    requests_under(sb, "/vendor/v1/usage").await.len()
}

#[tokio::test]
async fn a_refused_api_key_is_said_before_the_month_is_read() {
    let sb = start().await;
    let out = report(
        &sb,
        &["--period", "2024-04"],
        &[(
            "API_KEY",
            "ApiKey SU-000-000-000:0123456789abcdef0123456789abcdef",
        )],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!(
            "Connect at {}/public/v1 refused the API key",
            sb.origin()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("check API_KEY"), "{stderr}");
    assert!(
        stderr.contains(&format!("check API_ADDRESS ({})", sb.origin())),
        "{stderr}"
    );
    assert!(
        !stderr.contains("0123456789abcdef"),
        "no key shown: {stderr}"
    );
    assert_eq!(usage_reads(&sb).await, 0, "the month was not read");
}

#[tokio::test]
async fn an_address_whose_host_does_not_exist_fails_at_once() {
    let sb = start().await;
    let out = report(
        &sb,
        &["--period", "2024-04"],
        &[("API_ADDRESS", "https://connect.no-such-host.invalid")],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains(
            "cannot find the host connect.no-such-host.invalid (no such name in DNS): \
             check API_ADDRESS (https://connect.no-such-host.invalid)"
        ),
        "{stderr}"
    );
    // Asked once: no retry warnings (RUST_LOG=warn shows them).
    assert!(!stderr.contains("retrying"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert_eq!(usage_reads(&sb).await, 0, "the month was not read");
}

#[tokio::test]
async fn an_address_where_nothing_listens_says_so() {
    let sb = start().await;
    // A port just freed: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let address = format!("http://127.0.0.1:{port}");
    let out = report(&sb, &["--period", "2024-04"], &[("API_ADDRESS", &address)]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("nothing answers at {address}/public/v1")),
        "{stderr}"
    );
    assert!(stderr.contains("connect-usage sandbox"), "{stderr}");
}

/// After a month was reported, a dry run of it says every record is already reported, in its
/// counts as in its file lines and its summary.json.
#[tokio::test]
async fn a_dry_run_after_the_report_agrees_with_itself() {
    let sb = start().await;
    let out = report(&sb, &["--period", "2024-04"], &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let out_dir = scratch("dry-after-report");
    let out = report(
        &sb,
        &[
            "--period",
            "2024-04",
            "--dry-run",
            "--out",
            &out_dir.to_string_lossy(),
        ],
        &[],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("1200 read, 0 sent, 1200 already reported, 0 to send"),
        "{stdout}"
    );
    let file_lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("already reported CRD-"))
        .collect();
    assert_eq!(file_lines.len(), 11, "{stdout}");
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("summary.json")).expect("summary.json"),
    )
    .expect("JSON");
    assert_eq!(summary["records"]["already_reported"], 1200, "{summary:#}");
    assert_eq!(summary["records"]["not_reported"], 0, "{summary:#}");
    let files = summary["files"].as_array().expect("files");
    assert_eq!(files.len(), 11);
    assert!(
        files.iter().all(|f| f["action"] == "already_reported"),
        "{summary:#}"
    );
    let records: u64 = files.iter().filter_map(|f| f["records"].as_u64()).sum();
    assert_eq!(records, 1200, "the lines add up to the count");
}

/// `/sandbox/summary` says what happened in lines that fit a terminal; the sandbox's JSON
/// answers end with a newline.
#[tokio::test]
async fn the_sandbox_says_what_happened_in_a_few_lines() {
    let sb = start().await;
    let out = report(&sb, &["--period", "2024-04"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let fired = http()
        .post(format!(
            "{}/sandbox/platform/schedules/{}/fire",
            sb.origin(),
            connect_usage::story::SCHEDULE_ID
        ))
        .send()
        .await
        .expect("fire");
    assert!(fired.status().is_success());
    let body = fired.text().await.expect("body");
    assert!(body.ends_with("}\n"), "{body:?}");
    let resp = http()
        .get(format!("{}/sandbox/summary", sb.origin()))
        .send()
        .await
        .expect("summary");
    assert_eq!(
        resp.headers()["content-type"].to_str().ok(),
        Some("text/plain; charset=utf-8")
    );
    let summary = resp.text().await.expect("text");
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(lines[0], "Usage files: 11 (11 pending)", "{summary}");
    assert!(
        lines[1..12]
            .iter()
            .all(|l| l.starts_with("  UF-") && l.contains("  2024-04  pending")),
        "{summary}"
    );
    assert!(
        lines.contains(&"Acknowledgements to the vendor: 0"),
        "{summary}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("Tasks: 1 (")),
        "the fired schedule's task: {summary}"
    );
    assert!(lines.iter().all(|l| l.chars().count() <= 108), "{summary}");
    assert!(summary.ends_with('\n'));
}
