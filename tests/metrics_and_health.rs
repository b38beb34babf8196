//! What an operator watches, through the binary as it runs in production: `/metrics` scraped
//! while `connect-usage run` works (a monthly run, the usage file events that follow, a lost
//! connection), every family checked by Prometheus' own parser and its counts compared with
//! what the sandbox saw; `/healthz` and `/readyz` through a dropped connection; and
//! `report --metrics-file` for vendors who run the report from cron.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::promtool::{Scrape, check_metrics, check_rules};
use connect_sandbox::{RuntimeConfig, Sandbox, SandboxConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_connect-usage");

/// `connect-usage run` against the sandbox, its endpoint on a port of the system's choosing;
/// returns the child, the endpoint's address (from its log line) and the log collector.
async fn start_run(sb: &Sandbox) -> (Child, String, tokio::task::JoinHandle<String>) {
    let mut child = common::runner::run_command(BIN, sb, "metrics-run")
        .env("SHUTDOWN_GRACE_SECONDS", "5")
        .env("METRICS_ADDRESS", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .spawn()
        .expect("starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut all = String::new();
    let address = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            all.push_str(&line);
            all.push('\n');
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && let Some(a) = v["fields"]["address"].as_str()
                && v["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("/metrics"))
            {
                return a.to_owned();
            }
        }
        panic!("the runner never said where /metrics is:\n{all}");
    })
    .await
    .expect("the endpoint's address is logged");
    // The rest, through the same reader (what it has read ahead is not lost).
    let logs = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    (child, address, logs)
}

async fn get(address: &str, path: &str) -> (u16, String) {
    let r = common::http()
        .get(format!("http://{address}{path}"))
        .send()
        .await
        .expect("the endpoint answers");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

async fn scrape(address: &str) -> (String, Scrape) {
    let r = common::http()
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .expect("scraped");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.expect("body");
    let parsed = Scrape::parse(&text);
    (text, parsed)
}

/// Polls `check` every 50 ms for up to `limit`; returns the last value it saw.
async fn eventually<T>(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> (bool, T)) -> T
where
    T: std::fmt::Debug,
{
    let started = Instant::now();
    loop {
        let (ok, seen) = check().await;
        if ok {
            return seen;
        }
        if started.elapsed() > limit {
            panic!("{what}: still {seen:?} after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The tasks the sandbox delivered, by (category, event type), and whether all are final.
fn delivered(sb: &Sandbox) -> (BTreeMap<(String, String), usize>, bool) {
    let p = sb.state().platform().dump();
    let mut by = BTreeMap::new();
    let mut settled = true;
    for t in p["tasks"].as_array().expect("tasks") {
        let key = (
            t["object"]["category"].as_str().unwrap_or("?").to_owned(),
            t["object"]["type"].as_str().unwrap_or("?").to_owned(),
        );
        *by.entry(key).or_default() += t["deliveries"].as_array().map_or(0, Vec::len);
        if !matches!(
            t["status"].as_str(),
            Some("succeeded" | "failed" | "skipped")
        ) {
            settled = false;
        }
    }
    (by, settled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_is_watched_through_metrics_and_probes() {
    let sb = Sandbox::start(SandboxConfig {
        runtime: RuntimeConfig {
            // Long enough in a debug build for the connection to drop while it runs.
            usage_records: 40_000,
            ..RuntimeConfig::default()
        },
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox");
    let started = chrono::Utc::now().timestamp() as f64;
    let (mut child, address, logs) = start_run(&sb).await;

    // Alive at once; ready once both sessions are connected and set up.
    assert_eq!(get(&address, "/healthz").await, (200, "ok\n".to_owned()));
    eventually(Duration::from_secs(20), "ready", async || {
        let r = get(&address, "/readyz").await;
        (r.0 == 200, r)
    })
    .await;
    let (text, s) = scrape(&address).await;
    check_metrics(&text);
    for session in ["background", "interactive"] {
        assert_eq!(
            s.sum("connect_eaas_session_connected", &[("session", session)]),
            1.0
        );
        assert_eq!(
            s.sum("connect_eaas_connections_total", &[("session", session)]),
            1.0
        );
    }

    // The monthly run starts; while it runs the platform drops the background session and
    // refuses it back, so the run's result waits for a connection.
    let ext = sb.state().dataset().extension();
    let schedule = ext.schedules[0]["id"].as_str().expect("id").to_owned();
    let platform = sb.state().platform();
    let (_, monthly) = platform.trigger_schedule(&schedule).expect("fired");
    eventually(Duration::from_secs(20), "the run delivered", async || {
        let t = platform.task(&monthly).expect("task");
        (t["status"] == "processing", t["status"].clone())
    })
    .await;
    let faults = common::http()
        .put(format!("{}/sandbox/platform/faults", sb.origin()))
        .json(&json!([{"at": "upgrade", "action": "refuse", "status": 503,
                       "runner_type": "background"}]))
        .send()
        .await
        .expect("faults set");
    assert!(faults.status().is_success());
    common::runner::admin_post(&sb, "platform/drop", json!({"runner_type": "background"})).await;

    let (status, why) = eventually(Duration::from_secs(10), "not ready", async || {
        let r = get(&address, "/readyz").await;
        (r.0 == 503, r)
    })
    .await;
    assert_eq!(status, 503);
    assert!(why.starts_with("not ready: background session"), "{why}");
    assert!(!why.contains("interactive"), "{why}");
    // The run ends while disconnected: its result waits, while the platform refuses the
    // session back at least once.
    eventually(Duration::from_secs(60), "a result waiting", async || {
        let (_, s) = scrape(&address).await;
        let pending = s.sum("connect_eaas_results_pending", &[("session", "background")]);
        let refused = s.sum(
            "connect_eaas_reconnects_total",
            &[("session", "background"), ("reason", "http_error")],
        );
        (pending == 1.0 && refused >= 1.0, (pending, refused))
    })
    .await;
    let (_, s) = scrape(&address).await;
    assert_eq!(
        s.sum(
            "connect_eaas_session_connected",
            &[("session", "background")]
        ),
        0.0
    );
    assert_eq!(
        s.sum(
            "connect_eaas_session_connected",
            &[("session", "interactive")]
        ),
        1.0
    );
    // The platform comes back: the session reconnects, delivers the result, is ready again.
    let cleared = common::http()
        .delete(format!("{}/sandbox/platform/faults", sb.origin()))
        .send()
        .await
        .expect("faults cleared");
    assert!(cleared.status().is_success());
    eventually(Duration::from_secs(60), "ready again", async || {
        let r = get(&address, "/readyz").await;
        (r.0 == 200, r)
    })
    .await;
    let run = eventually(Duration::from_secs(60), "the run answered", async || {
        let t = platform.task(&monthly).expect("task");
        (t["status"] == "succeeded", t)
    })
    .await;
    // And the usage file events that followed are all answered.
    let (delivered, _) = eventually(Duration::from_secs(60), "every task settled", async || {
        let (by, settled) = delivered(&sb);
        (settled, (by, settled))
    })
    .await;
    // A moment for the last results to be counted as written.
    let s = eventually(Duration::from_secs(10), "no result pending", async || {
        let (_, s) = scrape(&address).await;
        let pending = s.sum("connect_eaas_results_pending", &[]);
        (pending == 0.0, s)
    })
    .await;
    let (text, _) = scrape(&address).await;
    check_metrics(&text);

    // Sessions and reconnects.
    assert_eq!(
        s.sum(
            "connect_eaas_connections_total",
            &[("session", "background")]
        ),
        2.0
    );
    assert_eq!(
        s.sum(
            "connect_eaas_reconnects_total",
            &[("session", "background"), ("reason", "connection_lost")]
        ),
        1.0
    );
    assert!(
        s.sum(
            "connect_eaas_reconnects_total",
            &[("session", "background"), ("reason", "http_error")]
        ) >= 1.0,
        "the refused upgrades are counted"
    );
    assert_eq!(
        s.sum(
            "connect_eaas_reconnects_total",
            &[("session", "interactive")]
        ),
        0.0
    );

    // Tasks: what the runner counts is what the platform delivered, category by category.
    assert!(
        delivered.len() >= 2,
        "a schedule and file events: {delivered:?}"
    );
    for ((category, event_type), n) in &delivered {
        let labels = [
            ("category", category.as_str()),
            ("event_type", event_type.as_str()),
        ];
        assert_eq!(
            s.sum("connect_eaas_tasks_received_total", &labels),
            *n as f64,
            "{category} {event_type}"
        );
        assert_eq!(
            s.sum("connect_eaas_tasks_answered_total", &labels),
            *n as f64,
            "{category} {event_type}"
        );
        assert_eq!(
            s.sum("connect_eaas_task_duration_seconds_count", &labels),
            *n as f64,
            "{category} {event_type}"
        );
    }
    let schedule_type = run["object"]["type"].as_str().expect("type");
    assert_eq!(
        s.sum(
            "connect_eaas_tasks_answered_total",
            &[
                ("category", "scheduled"),
                ("event_type", schedule_type),
                ("result", "success")
            ]
        ),
        1.0
    );
    assert_eq!(s.sum("connect_eaas_tasks_reanswered_total", &[]), 0.0);
    assert!(s.has_family("connect_eaas_tasks_reanswered_total"));

    // Requests: every request the sandbox logged under Connect's API (logged without
    // /public/v1) and the vendor's.
    let requests = common::admin_get(&sb, "requests").await;
    let requests = requests.as_array().expect("requests");
    let count = |keep: &dyn Fn(&str, u64) -> bool| {
        requests
            .iter()
            .filter(|r| {
                keep(
                    r["path"].as_str().unwrap_or(""),
                    r["status"].as_u64().unwrap_or(0),
                )
            })
            .count() as f64
    };
    let rest = count(&|p, _| {
        !p.starts_with("/vendor/") && !p.starts_with("/sandbox") && !p.starts_with("/devops/ws")
    });
    assert!(rest > 0.0);
    assert_eq!(
        s.sum("connect_api_requests_total", &[]),
        rest,
        "every REST request counted once"
    );
    assert!(
        s.sum(
            "connect_api_requests_total",
            &[("method", "POST"), ("code", "201")]
        ) >= 1.0
    );
    assert_eq!(
        s.sum(
            "connect_usage_source_requests_total",
            &[("source", "vendor_api"), ("code", "200")]
        ),
        count(&|p, st| p.starts_with("/vendor/v1/usage") && st == 200)
    );
    assert!(s.has_family("connect_api_retries_total"));
    assert!(s.has_family("connect_usage_source_retries_total"));

    // The monthly run's figures.
    let files: Vec<Value> = sb
        .state()
        .store()
        .files
        .iter()
        .filter(|f| {
            f.external_id
                .as_deref()
                .is_some_and(|e| e.starts_with("cu:"))
        })
        .map(|f| f.to_json(None))
        .collect();
    assert!(!files.is_empty());
    assert_eq!(
        s.sum("connect_usage_last_run_records", &[("outcome", "read")]),
        40_000.0
    );
    let sent = s.sum("connect_usage_last_run_records", &[("outcome", "sent")]);
    let in_files: f64 = files
        .iter()
        .map(|f| f["stats"]["uploaded"].as_f64().unwrap_or(0.0))
        .sum();
    assert_eq!(
        sent, in_files,
        "records sent = rows in the files: {files:#?}"
    );
    assert_eq!(
        s.sum("connect_usage_last_run_files", &[("action", "created")]),
        files.len() as f64
    );
    assert_eq!(
        s.sum("connect_usage_last_run_result", &[("result", "complete")]),
        1.0
    );
    assert_eq!(
        s.sum("connect_usage_last_run_result", &[("result", "partial")]),
        0.0
    );
    let ended = s.sum("connect_usage_last_run_end_timestamp_seconds", &[]);
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(
        started <= ended && ended <= now + 1.0,
        "{started} {ended} {now}"
    );
    assert_eq!(
        s.sum("connect_usage_last_complete_run_timestamp_seconds", &[]),
        ended
    );
    assert!(s.sum("connect_usage_last_run_duration_seconds", &[]) > 0.0);
    assert!(s.has_family("connect_usage_last_run_uncovered_subscriptions"));
    // The process collector's standard families.
    assert!(s.sum("process_resident_memory_bytes", &[]) > 0.0);

    // Unknown paths are not found; the endpoint serves nothing else.
    assert_eq!(get(&address, "/").await.0, 404);

    let _ = child.start_kill();
    let _ = child.wait().await;
    let logs = logs.await.expect("logs");
    assert!(
        !logs.contains(sb.vendor_key().expose()),
        "no key in the logs"
    );
}

#[tokio::test]
async fn a_metrics_address_that_cannot_be_had_is_a_setting_to_fix() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = taken.local_addr().expect("addr").to_string();
    for (value, says) in [
        (address.as_str(), "cannot listen on METRICS_ADDRESS"),
        ("not an address", "is not an address to listen on"),
    ] {
        let out = Command::new(BIN)
            .arg("run")
            .env("API_KEY", "ApiKey SU-1:x")
            .env("ENVIRONMENT_ID", "ENV-1")
            .env("SERVER_ADDRESS", "ws://127.0.0.1:9")
            .env("METRICS_ADDRESS", value)
            .output()
            .await
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}

/// `report --metrics-file`: the run's figures in the text format, the file replaced whole,
/// and the time of the last complete run kept by a run that does not complete.
#[tokio::test]
async fn report_writes_its_figures_for_the_textfile_collector() {
    let sb = common::start().await;
    let dir = std::env::temp_dir().join(format!("cu-metrics-file-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("connect_usage.prom");
    let report = |extra: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.arg("report")
            .args(["--period", "2024-04", "--json", "--metrics-file"])
            .arg(&path)
            .args(extra)
            .env("API_KEY", format!("ApiKey {}", sb.vendor_key().expose()))
            .env("API_ADDRESS", sb.origin())
            .env("USAGE_SOURCE", sb.usage_api_url())
            .env("USAGE_SOURCE_TOKEN", sb.usage_token().expose())
            .env("RUST_LOG", "warn");
        cmd.output()
    };

    let out = report(&[]).await.expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("json summary");
    let text = std::fs::read_to_string(&path).expect("the metrics file");
    check_metrics(&text);
    let s = Scrape::parse(&text);
    assert_eq!(
        s.sum("connect_usage_last_run_records", &[("outcome", "read")]),
        summary["records"]["read"].as_f64().expect("read")
    );
    assert_eq!(
        s.sum("connect_usage_last_run_records", &[("outcome", "sent")]),
        summary["records"]["sent"].as_f64().expect("sent")
    );
    assert_eq!(
        s.sum("connect_usage_last_run_files", &[("action", "created")]),
        summary["groups"]["created"].as_f64().expect("created")
    );
    assert_eq!(
        s.sum(
            "connect_usage_last_run_info",
            &[("period", "2024-04"), ("dry_run", "false")]
        ),
        1.0
    );
    // The run's requests and the access check made before it.
    assert_eq!(
        s.sum("connect_api_requests_total", &[]),
        summary["api_calls"].as_f64().expect("calls") + 1.0
    );
    assert!(
        s.sum("connect_usage_source_requests_total", &[("code", "200")]) >= 1.0,
        "{text}"
    );
    // Only the run's families: the runner's and the process's are not this file's business
    // (node_exporter has process families of its own).
    assert!(!text.contains("connect_eaas_"), "{text}");
    assert!(!text.contains("process_"), "{text}");
    let complete_at = s.sum("connect_usage_last_complete_run_timestamp_seconds", &[]);
    assert!(complete_at > 0.0);

    // A dry run is not a complete report: the file is replaced (a new inode, never written in
    // place), and the last complete run's time carried over.
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(&path).expect("meta").ino();
    let out_dir = dir.join("dry");
    let out = report(&["--dry-run", "--out", &out_dir.to_string_lossy()])
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_ne!(std::fs::metadata(&path).expect("meta").ino(), inode);
    let text = std::fs::read_to_string(&path).expect("the metrics file");
    check_metrics(&text);
    let s = Scrape::parse(&text);
    assert_eq!(
        s.sum(
            "connect_usage_last_run_info",
            &[("period", "2024-04"), ("dry_run", "true")]
        ),
        1.0
    );
    assert_eq!(
        s.sum("connect_usage_last_complete_run_timestamp_seconds", &[]),
        complete_at
    );
    let names: Vec<_> = std::fs::read_dir(&dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.iter().filter(|n| n.contains("tmp")).count(),
        0,
        "{names:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// README's alert rules are rules Prometheus loads.
#[test]
fn the_readme_alert_rules_load() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let start = readme.find("groups:\n").expect("README shows alert rules");
    let end = start + readme[start..].find("```").expect("the block ends");
    let path = std::env::temp_dir().join(format!("cu-rules-{}.yml", std::process::id()));
    std::fs::write(&path, &readme[start..end]).expect("written");
    check_rules(&path);
    let _ = std::fs::remove_file(&path);
}
