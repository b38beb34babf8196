//! The `connect-usage` binary as a user meets it: help texts, the sandbox command printing
//! where it listens and its keys, and clear errors with meaningful exit codes.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_connect-usage");

fn run(args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn help_explains_the_commands() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sandbox"), "{text}");
    assert!(text.contains("Exit codes"), "{text}");
    let out = run(&["sandbox", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--data",
        "--processing-delay-ms",
        "--fault-rate",
        "/sandbox/state",
    ] {
        assert!(text.contains(flag), "{flag} in {text}");
    }
}

#[test]
fn bad_arguments_and_datasets_exit_2_naming_the_problem() {
    let out = run(&["sandbox", "--listen", "not-an-address"]);
    assert_eq!(out.status.code(), Some(2));

    let dir = std::env::temp_dir().join(format!("cu-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = run(&["sandbox", "--dump-data"]);
    assert!(out.status.success());
    let mut data: serde_json::Value = serde_json::from_slice(&out.stdout).expect("dataset JSON");
    data["assets"][7]["contract"]["id"] = serde_json::json!("CRD-NOPE");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, serde_json::to_vec(&data).expect("json")).expect("write");
    let out = run(&[
        "sandbox",
        "--listen",
        "127.0.0.1:0",
        "--data",
        bad.to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("assets[7].contract.id: unknown contract CRD-NOPE"),
        "{err}"
    );

    let out = run(&[
        "sandbox",
        "--listen",
        "127.0.0.1:0",
        "--fault-rate",
        "0.5",
        "--fault-status",
        "200",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("status 200 is not an error status"), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = run(&["sandbox", "--listen", &addr]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the port is in use"), "{err}");

    let out = run(&["sandbox", "--data", "/no/such/file.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /no/such/file.json"));
}

#[tokio::test]
async fn sandbox_prints_its_address_and_keys_and_serves() {
    let mut child = Command::new(BIN)
        .args(["sandbox", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut api = None;
    let mut vendor_key = None;
    let read = async {
        while let Some(line) = lines.next_line().await.expect("line") {
            let line = line.trim().to_owned();
            if let Some(url) = line.strip_prefix("Connect API") {
                api = Some(url.trim().to_owned());
            }
            if let Some(rest) = line.strip_prefix("vendor ") {
                vendor_key = rest.split_whitespace().next().map(str::to_owned);
            }
            if line.starts_with("Press Ctrl-C") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("prints its banner");
    let api = api.expect("API URL printed");
    let key = vendor_key.expect("vendor key printed");
    assert!(
        api.starts_with("http://127.0.0.1:") && api.ends_with("/public/v1"),
        "{api}"
    );

    connect_client::install_crypto_provider();
    let resp = reqwest::Client::new()
        .get(format!("{api}/contracts?limit=1"))
        .header("Authorization", format!("ApiKey {key}"))
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-range").is_some());
    child.kill().await.expect("stopped");
}

#[tokio::test]
async fn report_runs_against_the_sandbox_with_meaningful_exit_codes() {
    use connect_sandbox::{RuntimeConfig, Sandbox, SandboxConfig};
    let sb = Sandbox::start(SandboxConfig {
        runtime: RuntimeConfig {
            usage_records: 150,
            ..RuntimeConfig::default()
        },
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox");
    let report = |extra: &[&str], bad: bool| {
        let mut c = Command::new(BIN);
        c.arg("report")
            .args(["--poll-interval-ms", "20", "--json"])
            .args(extra)
            .env("API_KEY", format!("ApiKey {}", sb.vendor_key().expose()))
            .env("API_ADDRESS", sb.origin())
            .env("USAGE_SOURCE", sb.usage_api_url())
            .env("USAGE_SOURCE_TOKEN", sb.usage_token().expose())
            .env_remove("REPORT_CONCURRENCY");
        if !extra.contains(&"--period") {
            c.args(["--period", "2024-04"]);
        }
        if bad {
            c.env("USAGE_SOURCE_TOKEN", "not-the-token");
        }
        c.output()
    };
    let out = report(&[], false).await.expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(summary["result"], "complete");
    assert_eq!(summary["records"]["sent"], 150);
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("usage report done"), "{logs}");
    assert!(!logs.contains(sb.vendor_key().expose()) && !logs.contains(sb.usage_token().expose()));

    let again = report(&[], false).await.expect("runs");
    assert_eq!(again.status.code(), Some(0));
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).expect("json");
    assert_eq!(summary["groups"]["created"], 0);
    assert_eq!(summary["records"]["already_reported"], 150);

    let refused = report(&[], true).await.expect("runs");
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("refused the token"), "{err}");

    let no_out = report(&["--dry-run"], false).await.expect("runs");
    assert_eq!(no_out.status.code(), Some(2), "--dry-run needs --out");
    let said = String::from_utf8_lossy(&no_out.stderr);
    assert!(
        said.contains("--dry-run needs --out DIR") && !said.contains("Usage:"),
        "a sentence, not clap's usage line: {said}"
    );
    let bad_period = report(&["--period", "2024-13"], false).await.expect("runs");
    assert_eq!(bad_period.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_period.stderr).contains("\"2024-13\" is not a month"));
    sb.shutdown().await;
}

#[test]
fn report_help_names_the_variables() {
    let out = run(&["report", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "USAGE_SOURCE",
        "USAGE_SOURCE_TOKEN",
        "REPORT_CONCURRENCY",
        "API_KEY",
        "API_ADDRESS",
        "--dry-run",
        "Exit codes",
    ] {
        assert!(text.contains(name), "{name} in {text}");
    }
}

#[test]
fn describe_prints_the_declarations() {
    let out = run(&["describe"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for part in [
        "report_monthly_usage",
        "USAGE_SOURCE",
        "USAGE_SOURCE_TOKEN = (secure)",
        "readme:",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
    let out = run(&["describe", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["setup_request"]["model_type"], "setup_request");
    assert_eq!(
        v["setup_request"]["schedulables"][0]["method"],
        "report_monthly_usage"
    );
    let bad = std::env::temp_dir().join(format!("cu-ext-{}.json", std::process::id()));
    std::fs::write(&bad, r#"{"name": "x", "description": "", "version": "1"}"#).expect("write");
    let out = run(&["describe", "--extension-json", bad.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("readme_url"));
}

#[test]
fn run_without_its_settings_exits_2_naming_them() {
    let out = std::process::Command::new(BIN)
        .arg("run")
        .env_remove("API_KEY")
        .env_remove("ENVIRONMENT_ID")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("API_KEY"));
    let out = std::process::Command::new(BIN)
        .arg("run")
        .env("API_KEY", "SU-1:x")
        .env_remove("ENVIRONMENT_ID")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ENVIRONMENT_ID"));
}

/// The production path: `connect-usage run` against the sandbox's platform, the monthly
/// schedule fired twice (the second run reports nothing again), then SIGTERM.
#[tokio::test]
async fn run_reports_on_schedule_and_stops_cleanly_on_sigterm() {
    use connect_sandbox::{RuntimeConfig, Sandbox, SandboxConfig};
    let sb = Sandbox::start(SandboxConfig {
        runtime: RuntimeConfig {
            usage_records: 300,
            ..RuntimeConfig::default()
        },
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox");
    let ext = sb.state().dataset().extension();
    let key = sb.key(&ext.api_key).expect("extension key");
    let mut child = common::runner::run_command(BIN, &sb, "cli-run")
        .env("SHUTDOWN_GRACE_SECONDS", "5")
        // Everything, down to the websocket library's frames: no secret may show.
        .env("RUST_LOG", "trace")
        .spawn()
        .expect("starts");
    let logs = common::runner::collect_lines(child.stderr.take().expect("stderr"));
    let platform = sb.state().platform();
    common::runner::both_sessions_set_up(&sb).await;
    let schedule = ext.schedules[0]["id"].as_str().expect("id").to_owned();
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let (_, task) = platform.trigger_schedule(&schedule).expect("fired");
        let t = common::runner::task_settled(&sb, &task, Duration::from_secs(30)).await;
        assert_eq!(t["status"], "succeeded", "{t:#}");
        outputs.push(t["output"].as_str().unwrap_or_default().to_owned());
    }
    assert!(
        outputs[0].contains("complete") && !outputs[0].contains(" 0 files created"),
        "{}",
        outputs[0]
    );
    assert!(outputs[1].contains(" 0 files created"), "{}", outputs[1]);
    let files = sb.state().store().files.len();
    assert!(files > 0);
    assert!(
        sb.state()
            .store()
            .files
            .iter()
            .all(|f| f.status.as_str() == "pending")
    );

    assert_eq!(common::runner::terminate(&mut child).await, Some(0));
    let logs = logs.await.expect("logs");
    let log = platform.dump()["connection_log"].clone();
    let shutdowns = log
        .as_array()
        .expect("log")
        .iter()
        .filter(|e| e["event"] == "runner_shutdown")
        .count();
    assert_eq!(shutdowns, 2, "{log:#}");
    assert!(logs.contains("usage report done"), "{logs}");
    assert!(!logs.contains(key.expose()), "the key is not logged");
    assert!(
        !logs.contains(sb.usage_token().expose()),
        "the usage token is not logged"
    );
    assert_eq!(platform.dump()["protocol_errors"], serde_json::json!([]));
    sb.shutdown().await;
}
