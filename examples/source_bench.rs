//! Speed of the Vendor API source against the sandbox's usage API, next to a plain Python
//! reader of the same pages.
//!
//! ```text
//! cargo run --release --example source_bench -- [--records 1000000] [--page 5000] [--rounds 3]
//!     [--ahead 2] [--python-script /work/shared/bench/vendor_api_read.py]
//! ```
//!
//! It starts the sandbox in-process with `--records` usage records a month, then, in each
//! round:
//! 1. reads the whole month (2024-04) with `VendorApiSource` in a child process of its own, so
//!    that the reader does not share a runtime (or its threads) with the in-process server;
//! 2. runs `python3 <script> <usage URL> <token> 2024-04 <page>` (stdlib only: urllib and
//!    json.loads, downloading and parsing every page) against the same sandbox;
//! 3. measures what the sandbox itself serves to one reader (pages are sequential): a child
//!    process that only downloads the pages and finds their cursors, reading no record. No
//!    reader of the API can be much faster than that.
//!
//! It prints the rates in records/s and their ratio to Python's (above 1 is faster), each
//! round and their medians (the machine is noisy: the ratio within a round is the steadier
//! figure).

use std::process::Command;
use std::time::Instant;

use connect_client::secret::Secret;
use connect_sandbox::{RuntimeConfig, Sandbox, SandboxConfig};
use connect_usage::usage::source_http::{AHEAD, PAGE_SIZE, VendorApiSource};
use connect_usage::usage::{Month, SourceItem, UsageSource};
use futures_util::TryStreamExt;

const DEFAULT_SCRIPT: &str = "/work/shared/bench/vendor_api_read.py";

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn period() -> Month {
    "2024-04".parse().unwrap_or_else(|_| unreachable!())
}

type Failure = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Failure> {
    match arg("--phase").as_deref() {
        Some("source") => phase_source().await,
        Some("download") => phase_download().await,
        _ => parent().await,
    }
}

async fn parent() -> Result<(), Failure> {
    let records: u64 = arg("--records").map_or(Ok(1_000_000), |v| v.parse())?;
    let page: u32 = arg("--page").map_or(Ok(PAGE_SIZE), |v| v.parse())?;
    let rounds: u32 = arg("--rounds").map_or(Ok(3), |v| v.parse())?;
    let ahead: usize = arg("--ahead").map_or(Ok(AHEAD), |v| v.parse())?;
    let script = arg("--python-script").unwrap_or_else(|| DEFAULT_SCRIPT.to_owned());
    let sb = Sandbox::start(SandboxConfig {
        runtime: RuntimeConfig {
            usage_records: records,
            ..RuntimeConfig::default()
        },
        ..SandboxConfig::default()
    })
    .await?;
    let url = sb.usage_api_url();
    println!(
        "sandbox usage API {url}: {records} records in {period}, pages of {page}, the source reading up to {ahead} ahead",
        period = period()
    );
    println!(
        "python reference: python3 {script} <usage URL> <token> {} {page}",
        period()
    );
    println!();
    println!(
        "{:>5}  {:<40} {:>8}  {:>11}  {:>9}",
        "round", "reader", "time", "records/s", "vs python"
    );
    let exe = std::env::current_exe()?;
    let child = |phase: &str| -> Result<(u64, f64), Failure> {
        let out = Command::new(&exe)
            .args(["--phase", phase])
            .env("BENCH_USAGE", &url)
            .env("BENCH_TOKEN", sb.usage_token().expose())
            .env("BENCH_PAGE", page.to_string())
            .env("BENCH_AHEAD", ahead.to_string())
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "the {phase} phase failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let (read, seconds) = rust_result(&text).ok_or_else(|| format!("no result in {text:?}"))?;
        if read != records {
            return Err(format!("the {phase} phase read {read} records, not {records}").into());
        }
        Ok((read, seconds))
    };
    let line = |round: u32, reader: &str, seconds: f64, rate: f64, python: f64| {
        println!(
            "{round:>5}  {reader:<40} {seconds:>6.2} s  {:>11}  {:>9.2}",
            grouped(rate),
            rate / python
        );
    };
    let mut rust_rates = Vec::new();
    let mut python_rates = Vec::new();
    let mut alone_rates = Vec::new();
    for round in 1..=rounds.max(1) {
        // The source, in a child process of its own.
        let (read, seconds) = child("source")?;
        let rust = read as f64 / seconds;
        // The Python reference, on the same sandbox (its own clock, without start-up).
        let out = Command::new("python3")
            .arg(&script)
            .arg(&url)
            .arg(sb.usage_token().expose())
            .arg(period().to_string())
            .arg(page.to_string())
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "python3 {script} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let (py_read, python) =
            python_result(&text).ok_or_else(|| format!("no rate in python's {text:?}"))?;
        if py_read != records {
            return Err(format!("python read {py_read} records, not {records}").into());
        }
        // What the sandbox serves to one reader that reads no record.
        let (read, alone_seconds) = child("download")?;
        let alone = read as f64 / alone_seconds;
        line(round, "rust VendorApiSource", seconds, rust, python);
        line(
            round,
            "python vendor_api_read.py",
            py_read as f64 / python,
            python,
            python,
        );
        line(
            round,
            "(sandbox alone: download, cursors only)",
            alone_seconds,
            alone,
            python,
        );
        rust_rates.push(rust);
        python_rates.push(python);
        alone_rates.push(alone);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let rust = median(&mut rust_rates);
    let python = median(&mut python_rates);
    let alone = median(&mut alone_rates);
    println!();
    println!(
        "median of {} round(s): rust {} records/s, python {} records/s: rust/python {:.2}",
        rust_rates.len(),
        grouped(rust),
        grouped(python),
        rust / python
    );
    println!(
        "the sandbox alone serves {} records/s to one reader: rust reads at {:.0}% of that, python at {:.0}%",
        grouped(alone),
        100.0 * rust / alone,
        100.0 * python / alone
    );
    sb.shutdown().await;
    Ok(())
}

/// `1234567.8` as `1 234 568`.
fn grouped(v: f64) -> String {
    let digits = format!("{v:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// `records=N seconds=S` from the child.
fn rust_result(text: &str) -> Option<(u64, f64)> {
    let line = text.lines().find(|l| l.starts_with("records="))?;
    let mut read = None;
    let mut seconds = None;
    for part in line.split_whitespace() {
        match part.split_once('=') {
            Some(("records", v)) => read = v.parse().ok(),
            Some(("seconds", v)) => seconds = v.parse().ok(),
            _ => {}
        }
    }
    Some((read?, seconds?))
}

/// `N records, M MB in Ts: R records/s` from the Python script.
fn python_result(text: &str) -> Option<(u64, f64)> {
    let line = text.lines().find(|l| l.ends_with("records/s"))?;
    let read = line.split_whitespace().next()?.parse().ok()?;
    let rate = line
        .trim_end_matches("records/s")
        .split_whitespace()
        .last()?
        .parse()
        .ok()?;
    Some((read, rate))
}

async fn phase_source() -> Result<(), Failure> {
    let url = std::env::var("BENCH_USAGE")?;
    let token = Secret::new(std::env::var("BENCH_TOKEN")?);
    let page: u32 = std::env::var("BENCH_PAGE")?.parse()?;
    let mut source = VendorApiSource::new(&url, token)?.with_page_size(page);
    if let Ok(ahead) = std::env::var("BENCH_AHEAD") {
        source = source.with_read_ahead(ahead.parse()?);
    }
    let started = Instant::now();
    let mut batches = source.records(period());
    let (mut read, mut rejected) = (0u64, 0u64);
    while let Some(batch) = batches.try_next().await? {
        for item in &batch {
            read += 1;
            if matches!(item, SourceItem::Rejected(_)) {
                rejected += 1;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("records={read} rejected={rejected} seconds={seconds:.4}");
    Ok(())
}

/// The sandbox's own rate for one reader: pages downloaded one after the other, each passed
/// over for its cursor and its number of records, no record read.
async fn phase_download() -> Result<(), Failure> {
    #[derive(serde::Deserialize)]
    struct Outline {
        records: Vec<serde::de::IgnoredAny>,
        next_cursor: Option<String>,
    }
    let url = std::env::var("BENCH_USAGE")?;
    let token = std::env::var("BENCH_TOKEN")?;
    let page = std::env::var("BENCH_PAGE")?;
    connect_client::install_crypto_provider();
    let http = reqwest::Client::new();
    let started = Instant::now();
    let (mut read, mut cursor) = (0u64, None::<String>);
    loop {
        let mut target = reqwest::Url::parse(&url)?;
        {
            let mut q = target.query_pairs_mut();
            q.append_pair("period", &period().to_string());
            q.append_pair("limit", &page);
            if let Some(c) = cursor.take() {
                q.append_pair("cursor", &c);
            }
        }
        let body = http
            .get(target)
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let outline: Outline = serde_json::from_slice(&body)?;
        read += outline.records.len() as u64;
        match outline.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("records={read} seconds={seconds:.4}");
    Ok(())
}
