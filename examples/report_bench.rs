//! Speed and memory of the QT pipeline on this machine, beside the references measured in the
//! same run (the machine's speed varies from day to day; ratios hold).
//!
//! ```text
//! cargo run --release --example report_bench -- [--sizes 1000000,5000000,20000000]
//!     [--http 1000000] [--workbook 1000000] [--sandbox 100000] [--big-group 1100000]
//!     [--python python3] [--bench-dir ../shared/bench]
//!     [--phases workbook,dry-run,dry-run-parquet,http,sandbox,big-group]
//! ```
//!
//! It starts the sandbox in-process and measures each phase in a child process of its own, so
//! that its peak RSS (`VmHWM`) is its own:
//! - `workbook`: writing workbooks alone: one of `--workbook` rows on one thread, then two at
//!   once on two threads (two parts of a group); and Python's writers
//!   (`py_workbook_baseline.py`, openpyxl and XlsxWriter) on a fifth of the rows, for the ratio;
//! - `dry-run`: a dry run of the whole pipeline from a CSV file of the sandbox's dataset for
//!   each of `--sizes` (read, catalog, check, sort, group, write every workbook): records/s,
//!   peak RSS and the disk the work files took;
//! - `dry-run-postgres`: the same dry run from PostgreSQL, for the first of `--sizes`: a
//!   throwaway cluster is started (the tests' `initdb` harness), the records exported into its
//!   default table by the export command's code, and read by the default query;
//! - `dry-run-parquet`: the same dry run from a Parquet file of the same records (the sandbox's
//!   Parquet export), then the Parquet source alone on that file (records/s of the reader,
//!   without the rest of the pipeline);
//! - `http`: a dry run from the sandbox's vendor usage API (`--http` records), beside the plain
//!   reader `vendor_api_read.py` on the same pages;
//! - `sandbox`: a real run against the sandbox (`--sandbox` records): create, upload,
//!   processing, submit;
//! - `big-group`: a real run of `--big-group` records of one subscription (one contract and
//!   product): more than a usage file holds, reported as parts; the sandbox's files checked.
//!
//! The Python references need `openpyxl` and `xlsxwriter` for the workbook phase (a venv's
//! python via `--python`); a missing one is reported, not fatal.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use connect_client::{ApiKey, ConnectClient};
use connect_sandbox::{RuntimeConfig, Sandbox, SandboxConfig};
use connect_usage::usage::export;
use connect_usage::usage::export::write_parquet;
use connect_usage::usage::row::Row;
use connect_usage::usage::source_http::VendorApiSource;
use connect_usage::usage::workbook::WorkbookWriter;
use connect_usage::usage::{
    Month, PollPolicy, Position, ReportOptions, RunSummary, SourceSpec, report,
};
use futures_util::TryStreamExt;

/// The tests' throwaway PostgreSQL cluster.
#[path = "../tests/common/postgres.rs"]
mod pg;

/// The allocator the product binary uses (see src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn number(name: &str, default: u64) -> Result<u64, Failure> {
    Ok(arg(name).map_or(Ok(default), |v| v.replace('_', "").parse())?)
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

fn period() -> Month {
    "2024-04".parse().unwrap_or_else(|_| unreachable!())
}

type Failure = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Failure> {
    // As the binary does (src/main.rs); `BENCH_HUGE_PAGES=1` measures without it.
    if std::env::var_os("BENCH_HUGE_PAGES").is_none() {
        connect_usage::memory::avoid_huge_pages();
    }
    // `BENCH_LOG=info` shows the pipeline's own log lines (its phases, timed).
    if let Ok(level) = std::env::var("BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(format!("connect_usage={level}"))
            .with_writer(std::io::stderr)
            .init();
    }
    match arg("--phase").as_deref() {
        Some("workbook") => phase_workbook(),
        Some("dry-run") => phase_dry_run("dry run, CSV").await,
        Some("dry-run-postgres") => phase_dry_run("dry run, PostgreSQL").await,
        Some("dry-run-parquet") => phase_dry_run("dry run, Parquet").await,
        Some("read") => phase_read().await,
        Some("http") => phase_http().await,
        Some("sandbox") => phase_sandbox().await,
        Some("big-group") => phase_big_group().await,
        _ => parent().await,
    }
}

async fn parent() -> Result<(), Failure> {
    let sizes: Vec<u64> = arg("--sizes")
        .unwrap_or_else(|| "1000000".into())
        .split(',')
        .map(|s| s.trim().replace('_', "").parse())
        .collect::<Result<_, _>>()?;
    let phases = arg("--phases").unwrap_or_else(|| "workbook,dry-run,http,sandbox".into());
    let wants = |p: &str| phases.split(',').any(|x| x.trim() == p);
    let python = arg("--python").unwrap_or_else(|| "python3".into());
    let bench_dir = PathBuf::from(arg("--bench-dir").unwrap_or_else(|| "../shared/bench".into()));
    let sb = Sandbox::start(SandboxConfig::default()).await?;
    let dir = std::env::temp_dir().join(format!("cu-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let exe = std::env::current_exe()?;
    let child = |phase: &str| {
        let mut c = Command::new(&exe);
        c.args(["--phase", phase])
            .env("BENCH_API", sb.api_url())
            .env("BENCH_KEY", sb.vendor_key().expose())
            .env("BENCH_USAGE", sb.usage_api_url())
            .env("BENCH_TOKEN", sb.usage_token().expose())
            .env("BENCH_OUT", dir.join("out"))
            .env("WORK_DIR", dir.join("work"));
        c
    };
    let run = |mut c: Command, what: &str| -> Result<(), Failure> {
        let status = c.status()?;
        if !status.success() {
            return Err(format!("{what} failed: {status}").into());
        }
        Ok(())
    };
    let set_records = |records: u64, subscriptions: u64| {
        sb.state().set_config(RuntimeConfig {
            usage_records: records,
            usage_subscriptions: subscriptions,
            ..sb.state().config()
        })
    };

    if wants("workbook") {
        let n = number("--workbook", 1_000_000)?;
        let mut c = child("workbook");
        c.env("BENCH_ROWS", n.to_string());
        run(c, "workbook phase")?;
        let py_rows = (n / 5).max(1000);
        for lib in ["openpyxl", "xlsxwriter"] {
            let out = Command::new(&python)
                .arg(bench_dir.join("py_workbook_baseline.py"))
                .args([lib, &py_rows.to_string()])
                .arg(dir.join(format!("py-{lib}.xlsx")))
                .output();
            match out {
                Ok(o) if o.status.success() => {
                    println!(
                        "{:<34} {}",
                        format!("python {lib} (reference)"),
                        String::from_utf8_lossy(&o.stdout).trim()
                    );
                }
                Ok(o) => println!(
                    "python {lib}: not measured ({})",
                    String::from_utf8_lossy(&o.stderr)
                        .lines()
                        .last()
                        .unwrap_or("failed")
                ),
                Err(e) => println!("python {lib}: not measured ({e})"),
            }
        }
    }

    if wants("dry-run") {
        for &n in &sizes {
            // `--keep-csv DIR` keeps the files (and reuses them), to profile a phase by hand.
            let kept = arg("--keep-csv").map(PathBuf::from);
            let csv = kept.as_ref().unwrap_or(&dir).join(format!("usage-{n}.csv"));
            let started = Instant::now();
            if !csv.exists() {
                write_csv(&sb, &csv, n)?;
            }
            let size = std::fs::metadata(&csv)?.len() as f64 / 1e6;
            println!(
                "generated {n} records ({size:.0} MB CSV) in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            let mut c = child("dry-run");
            c.env("BENCH_SOURCE", &csv);
            run(c, "dry-run phase")?;
            if kept.is_none() {
                std::fs::remove_file(&csv)?;
            }
            let _ = std::fs::remove_dir_all(dir.join("out"));
        }
    }

    if wants("dry-run-postgres") {
        let n = sizes.first().copied().unwrap_or(1_000_000);
        let Some(pg) = pg::PgCluster::start(pg::PgSetup::default()) else {
            return Err("dry-run-postgres: PostgreSQL is not installed".into());
        };
        pg.create_user_db("vendor", "bench-pw", "usage");
        let started = Instant::now();
        let universe = sb.state().usage_universe();
        let month = universe.month(period());
        let url = pg.url("vendor", "usage");
        let target = export::ExportTarget::parse(&url)?;
        let lookup = |name: &str| (name == "PGPASSWORD").then(|| "bench-pw".to_owned());
        export::export(&target, &month, period(), n, 0.0, &lookup).await?;
        pg.sql("usage", "VACUUM ANALYZE connect_usage_records");
        println!(
            "exported {n} records to PostgreSQL in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let mut c = child("dry-run-postgres");
        c.env("BENCH_SOURCE", &url).env("PGPASSWORD", "bench-pw");
        run(c, "dry-run-postgres phase")?;
        let _ = std::fs::remove_dir_all(dir.join("out"));
    }

    if wants("dry-run-parquet") {
        for &n in &sizes {
            let kept = arg("--keep-csv").map(PathBuf::from);
            let file = kept
                .as_ref()
                .unwrap_or(&dir)
                .join(format!("usage-{n}.parquet"));
            let started = Instant::now();
            if !file.exists() {
                let month = sb.state().usage_universe().month(period());
                write_parquet(&file, export::records(&month, 0..n, 0.0))?;
            }
            let size = std::fs::metadata(&file)?.len() as f64 / 1e6;
            println!(
                "generated {n} records ({size:.0} MB Parquet) in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            let mut c = child("dry-run-parquet");
            c.env("BENCH_SOURCE", &file);
            run(c, "dry-run-parquet phase")?;
            let mut c = child("read");
            c.env("BENCH_SOURCE", &file)
                .env("BENCH_LABEL", "  the Parquet source alone");
            run(c, "read phase")?;
            if kept.is_none() {
                std::fs::remove_file(&file)?;
            }
            let _ = std::fs::remove_dir_all(dir.join("out"));
        }
    }

    if wants("http") {
        let n = number("--http", 1_000_000)?;
        set_records(n, 0)?;
        run(child("http"), "http phase")?;
        let out = Command::new(&python)
            .arg(bench_dir.join("vendor_api_read.py"))
            .args([
                sb.usage_api_url(),
                sb.usage_token().expose().to_owned(),
                period().to_string(),
                "5000".into(),
            ])
            .output();
        match out {
            Ok(o) if o.status.success() => println!(
                "{:<34} {}",
                "python vendor_api_read (reference)",
                String::from_utf8_lossy(&o.stdout).trim()
            ),
            Ok(o) => println!(
                "python vendor_api_read: not measured ({})",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => println!("python vendor_api_read: not measured ({e})"),
        }
        let _ = std::fs::remove_dir_all(dir.join("out"));
    }

    if wants("sandbox") {
        set_records(number("--sandbox", 100_000)?, 0)?;
        run(child("sandbox"), "sandbox phase")?;
    }

    if wants("big-group") {
        let n = number("--big-group", 1_100_000)?;
        // A month nobody reported yet: the sandbox phase's files would make this one's
        // records late or in conflict.
        sb.state().reset();
        set_records(n, 1)?;
        let mut c = child("big-group");
        c.env("BENCH_ROWS", n.to_string());
        run(c, "big-group phase")?;
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
        "{phase:<34} {records:>9} records  {:>7.2} s  {:>9.0} records/s  peak RSS {:>6.0} MB",
        elapsed.as_secs_f64(),
        records as f64 / elapsed.as_secs_f64(),
        peak_rss_mb()
    );
}

/// Rows like the pipeline's: ids, assets and items of the sandbox's shape.
struct BenchRow {
    id: String,
    asset: String,
    mpn: String,
    quantity: String,
    note: Option<String>,
}

fn bench_rows(n: u64) -> Vec<BenchRow> {
    (0..n)
        .map(|i| BenchRow {
            id: format!("SKY-202404-{:08}", i + 1),
            asset: format!(
                "AS-{:04}-{:04}-{:04}",
                1000 + i % 7,
                2000 + i % 13,
                i % 5000
            ),
            mpn: format!("MPN-{}", i % 7),
            quantity: format!("{}.{}", i % 500, i % 100),
            note: (i % 11 == 0).then(|| format!("Batch job {}", i % 10_000)),
        })
        .collect()
}

fn write_one(rows: &[BenchRow], path: &Path) -> Result<(), Failure> {
    let start = period().start().timestamp();
    WorkbookWriter::write_file(path, period().end_exclusive(), rows.len(), |w| {
        write_rows(w, rows, start)
    })
}

fn write_rows(
    w: &mut WorkbookWriter<std::fs::File>,
    rows: &[BenchRow],
    start: i64,
) -> Result<(), Failure> {
    for (i, r) in rows.iter().enumerate() {
        w.push(&Row {
            group: 0,
            record_id: &r.id,
            position: Position {
                ordinal: i as u64 + 1,
                line: None,
            },
            asset_id: &r.asset,
            item_mpn: &r.mpn,
            quantity: &r.quantity,
            start: start + (i as i64 % 86_400),
            end: start + (i as i64 % 86_400) + 3600,
            note: r.note.as_deref(),
            category: None,
            vendor_id: true,
            precision: 2,
            sums: 1,
            tag: 0,
        })?;
    }
    Ok(())
}

fn phase_workbook() -> Result<(), Failure> {
    let n: u64 = env("BENCH_ROWS").parse()?;
    let rows = bench_rows(n);
    let dir = env_path("BENCH_OUT");
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    write_one(&rows, &dir.join("one.xlsx"))?;
    print("workbook, one writer", rows.len(), started.elapsed());
    let size = std::fs::metadata(dir.join("one.xlsx"))?.len() as f64 / 1e6;
    println!("{:<34} {size:.0} MB workbook", "");
    let started = Instant::now();
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|k| {
                let (rows, dir) = (&rows, &dir);
                s.spawn(move || {
                    write_one(rows, &dir.join(format!("part-{k}.xlsx"))).map_err(|e| e.to_string())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a writer panicked".into())))
            .collect()
    });
    for r in results {
        r?;
    }
    print(
        "workbook, two writers at once",
        rows.len() * 2,
        started.elapsed(),
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn client() -> Result<ConnectClient, Failure> {
    Ok(ConnectClient::new(
        env("BENCH_API"),
        ApiKey::new(env("BENCH_KEY"))?,
    )?)
}

/// The sandbox's vendor usage API.
fn vendor_source() -> Result<VendorApiSource, Failure> {
    Ok(VendorApiSource::new(
        &env("BENCH_USAGE"),
        connect_client::secret::Secret::new(env("BENCH_TOKEN")),
    )?)
}

/// Runs the report with the sandbox's usage API; prints its records/s under `label`.
async fn run_vendor(label: &str, options: &ReportOptions) -> Result<RunSummary, Failure> {
    let client = client()?;
    let started = Instant::now();
    let summary = report(&client, &vendor_source()?, options).await?;
    print(label, summary.records.read, started.elapsed());
    Ok(summary)
}

fn options() -> ReportOptions {
    ReportOptions {
        work_dir: env_path("WORK_DIR"),
        poll: PollPolicy {
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(1200),
        },
        ..ReportOptions::new(period())
    }
}

fn dry_options() -> ReportOptions {
    ReportOptions {
        dry_run: true,
        out_dir: Some(env_path("BENCH_OUT")),
        ..options()
    }
}

async fn phase_dry_run(label: &str) -> Result<(), Failure> {
    let client = client()?;
    let source = open_source()?;
    let started = Instant::now();
    let summary = report(&client, source.as_ref(), &dry_options()).await?;
    print(label, summary.records.read, started.elapsed());
    let t = summary.timings;
    println!(
        "{:<34} {} files, {} API calls, work files {:.0} MB at most; read {:.2} s, placed {:.2} s later, files {:.2} s later",
        "",
        summary.files.len(),
        summary.api_calls,
        summary.work_bytes as f64 / 1e6,
        t.read_ms as f64 / 1e3,
        t.place_ms as f64 / 1e3,
        t.files_ms as f64 / 1e3
    );
    Ok(())
}

/// The source a phase reads: `BENCH_SOURCE`, as `USAGE_SOURCE` takes it.
fn open_source() -> Result<Box<dyn connect_usage::usage::UsageSource>, Failure> {
    Ok(SourceSpec::parse(&env("BENCH_SOURCE"), |name| std::env::var(name).ok())?.open()?)
}

/// The file source alone: every item read and dropped.
async fn phase_read() -> Result<(), Failure> {
    let source = open_source()?;
    let started = Instant::now();
    let mut batches = source.records(period());
    let mut items = 0;
    while let Some(batch) = batches.try_next().await? {
        items += batch.len();
    }
    print(&env("BENCH_LABEL"), items, started.elapsed());
    Ok(())
}

async fn phase_http() -> Result<(), Failure> {
    let summary = run_vendor("dry run, vendor usage API", &dry_options()).await?;
    let read = Duration::from_millis(summary.timings.read_ms.max(1));
    println!(
        "{:<34} {:>9} records  {:>7.2} s  {:>9.0} records/s  (its read phase: the source into the spool)",
        "  of which reading the source",
        summary.records.read,
        read.as_secs_f64(),
        summary.records.read as f64 / read.as_secs_f64()
    );
    Ok(())
}

async fn phase_sandbox() -> Result<(), Failure> {
    let summary = run_vendor("full run against the sandbox", &options()).await?;
    println!(
        "{:<34} {} files {:?}, {} API calls",
        "",
        summary.files.len(),
        summary.result,
        summary.api_calls
    );
    Ok(())
}

async fn phase_big_group() -> Result<(), Failure> {
    let summary = run_vendor("one group, full run (parts)", &options()).await?;
    let files = client()?.usage_files().all().await?;
    let mut parts: Vec<(String, String, u64)> = files
        .iter()
        .filter(|f| f.status.to_string() != "deleted")
        .map(|f| {
            (
                f.external_id.clone().unwrap_or_default(),
                f.status.to_string(),
                f.stats.as_ref().map_or(0, |s| s.uploaded),
            )
        })
        .collect();
    parts.sort();
    let total: u64 = parts.iter().map(|p| p.2).sum();
    for (ext, status, rows) in &parts {
        println!("{:<34} {ext} {status} {rows} records", "");
    }
    println!(
        "{:<34} {:?}; {} records in {} files (read {}); {} API calls",
        "",
        summary.result,
        total,
        parts.len(),
        summary.records.read,
        summary.api_calls
    );
    if total != summary.records.read as u64 || summary.records.sent != summary.records.read {
        return Err(format!(
            "the files hold {total} records, the run read {} and sent {}",
            summary.records.read, summary.records.sent
        )
        .into());
    }
    Ok(())
}
