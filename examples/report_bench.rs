//! Speed and memory of the QT pipeline, on this machine.
//!
//! ```text
//! cargo run --release --example report_bench -- [--records 1000000] [--sandbox-records 100000]
//! ```
//!
//! It starts the sandbox in-process, writes `--records` usage records of the sandbox's
//! dataset to a CSV file, then measures, each phase in a child process of its own so that its
//! peak RSS is its own:
//! 1. workbook writing alone: all records into one workbook;
//! 2. a dry run of the whole pipeline on the CSV file (read, catalog, check, group, write the
//!    workbooks to disk);
//! 3. a real run against the sandbox with `--sandbox-records` records from its usage API
//!    (create, upload, processing, submit).
//!
//! It prints records/s, wall time and peak RSS of each phase.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use connect_usage::connect::{ApiKey, ConnectClient};
use connect_usage::sandbox::{RuntimeConfig, Sandbox, SandboxConfig};
use connect_usage::usage::record::Quantity;
use connect_usage::usage::row::Row;
use connect_usage::usage::source_http::VendorApiSource;
use connect_usage::usage::workbook;
use connect_usage::usage::{Period, PollPolicy, ReportOptions, SourceSpec, report};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn period() -> Period {
    "2024-04".parse().unwrap_or_else(|_| unreachable!())
}

type Failure = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Failure> {
    match arg("--phase").as_deref() {
        Some("workbook") => phase_workbook(),
        Some("dry-run") => phase_dry_run().await,
        Some("sandbox") => phase_sandbox().await,
        _ => parent().await,
    }
}

async fn parent() -> Result<(), Failure> {
    let records: u64 = arg("--records").map_or(Ok(1_000_000), |v| v.parse())?;
    let sandbox_records: u64 = arg("--sandbox-records").map_or(Ok(100_000), |v| v.parse())?;
    let sb = Sandbox::start(SandboxConfig {
        runtime: RuntimeConfig {
            usage_records: sandbox_records,
            ..RuntimeConfig::default()
        },
        ..SandboxConfig::default()
    })
    .await?;
    let dir = std::env::temp_dir().join(format!("cu-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let csv = dir.join("usage.csv");
    let started = Instant::now();
    write_csv(&sb, &csv, records)?;
    let size = std::fs::metadata(&csv)?.len() as f64 / 1e6;
    println!(
        "generated {records} records ({size:.0} MB CSV) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let exe = std::env::current_exe()?;
    let common = |phase: &str| {
        let mut c = Command::new(&exe);
        c.args(["--phase", phase])
            .env("BENCH_API", sb.api_url())
            .env("BENCH_KEY", sb.vendor_key().expose())
            .env("BENCH_USAGE", sb.usage_api_url())
            .env("BENCH_TOKEN", sb.usage_token().expose())
            .env("BENCH_CSV", &csv)
            .env("BENCH_OUT", dir.join("out"));
        c
    };
    for phase in ["workbook", "dry-run", "sandbox"] {
        let status = common(phase).status()?;
        if !status.success() {
            return Err(format!("phase {phase} failed: {status}").into());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    sb.shutdown().await;
    Ok(())
}

/// The sandbox's own usage, as a vendor export.
fn write_csv(sb: &Sandbox, path: &Path, records: u64) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(
        out,
        "subscription_id,item_mpn,quantity,start_time,end_time,record_id,note"
    )?;
    let month = sb.state().usage_universe().month(period());
    for i in 0..records {
        let r = month.record(i, 0.0);
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
        let note = s("note").replace('"', "\"\"");
        writeln!(
            out,
            "{},{},{},{},{},{},\"{note}\"",
            s("subscription_id"),
            s("item_mpn"),
            s("quantity"),
            s("start_time"),
            s("end_time"),
            s("record_id")
        )?;
    }
    out.flush()
}

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(name).unwrap_or_default())
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

fn print(phase: &str, records: usize, elapsed: Duration) {
    println!(
        "{phase:<28} {records:>9} records  {:>7.2} s  {:>9.0} records/s  peak RSS {:>6.0} MB",
        elapsed.as_secs_f64(),
        records as f64 / elapsed.as_secs_f64(),
        peak_rss_mb()
    );
}

fn phase_workbook() -> Result<(), Failure> {
    // Rows like the pipeline's, built before the clock starts.
    let text = std::fs::read_to_string(env_path("BENCH_CSV"))?;
    struct R {
        id: String,
        sub: String,
        mpn: String,
        q: Quantity,
        note: Option<String>,
    }
    let rows: Vec<R> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.splitn(7, ',').collect();
            Some(R {
                id: f.get(5)?.to_string(),
                sub: f.first()?.to_string(),
                mpn: f.get(1)?.to_string(),
                q: Quantity::parse(f.get(2)?).ok()?,
                note: f
                    .get(6)
                    .map(|n| n.trim_matches('"').to_owned())
                    .filter(|n| !n.is_empty()),
            })
        })
        .collect();
    drop(text);
    let start = period().start().timestamp();
    let started = Instant::now();
    let bytes = workbook::write(
        rows.iter().map(|r| Row {
            group: 0,
            record_id: &r.id,
            position: connect_usage::usage::Position {
                ordinal: 1,
                line: None,
            },
            note: r.note.as_deref(),
            item_mpn: &r.mpn,
            quantity: r.q.as_str(),
            start,
            end: start + 3600,
            asset_id: &r.sub,
            category: None,
            vendor_id: true,
            precision: 0,
            sums: 1,
            tag: 0,
        }),
        period().end_exclusive(),
    )?;
    print("workbook writing alone", rows.len(), started.elapsed());
    println!("{:<28} {:.0} MB workbook", "", bytes.len() as f64 / 1e6);
    Ok(())
}

async fn phase_dry_run() -> Result<(), Failure> {
    let client = ConnectClient::new(env("BENCH_API"), ApiKey::new(env("BENCH_KEY"))?)?;
    let source = SourceSpec::File(env_path("BENCH_CSV")).open()?;
    let options = ReportOptions {
        dry_run: true,
        out_dir: Some(env_path("BENCH_OUT")),
        ..ReportOptions::new(period())
    };
    let started = Instant::now();
    let summary = report(&client, source.as_ref(), &options).await?;
    print(
        "dry run (CSV, 2 cores)",
        summary.records.read,
        started.elapsed(),
    );
    println!(
        "{:<28} {} files, {} API calls",
        "",
        summary.files.len(),
        summary.api_calls
    );
    Ok(())
}

async fn phase_sandbox() -> Result<(), Failure> {
    let client = ConnectClient::new(env("BENCH_API"), ApiKey::new(env("BENCH_KEY"))?)?;
    let source = VendorApiSource::new(
        &env("BENCH_USAGE"),
        connect_usage::secret::Secret::new(env("BENCH_TOKEN")),
    )?;
    let options = ReportOptions {
        poll: PollPolicy {
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(600),
        },
        ..ReportOptions::new(period())
    };
    let started = Instant::now();
    let summary = report(&client, &source, &options).await?;
    print(
        "full run against the sandbox",
        summary.records.read,
        started.elapsed(),
    );
    println!(
        "{:<28} {} files {:?}, {} API calls",
        "",
        summary.files.len(),
        summary.result,
        summary.api_calls
    );
    Ok(())
}
