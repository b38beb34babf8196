//! `connect-usage report`: one run of the QT pipeline from the command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use connect_client::exposition;
use connect_client::secret::Secret;
use connect_client::{ApiKey, ConnectClient, ConnectError, ErrorKind, api_base_url};
use connect_usage::metrics_file;
use connect_usage::usage::config::{
    DEFAULT_CONCURRENCY, MAX_RECORDS_PER_FILE, PGPASSWORD, REPORT_CONCURRENCY,
    REQUIRE_FULL_COVERAGE, ReportSettings, USAGE_AGGREGATION, USAGE_QUERY, USAGE_SOURCE,
    USAGE_SOURCE_TOKEN, WORK_DIR,
};
use connect_usage::usage::{Month, PollPolicy, ReportOptions, RunError, RunResult, report};

use super::{EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL, ExitFailure, config_error, run_error};

/// Where requests go when `API_ADDRESS` is not set: Connect's production API, the official
/// runner's default.
const DEFAULT_API_ADDRESS: &str = connect_eaas::runner::config::DEFAULT_SERVER_ADDRESS;

pub const LONG_ABOUT: &str = "Report a month of QT usage to Connect (or the sandbox) once.\n\n\
    Reads the month's usage from USAGE_SOURCE (the vendor usage API; a CSV, JSON Lines or Parquet \
    file, as a path or an https URL, {period} standing for the month; or a postgres:// database \
    read with USAGE_QUERY; see docs/sources.md), \
    checks every record, groups them per distribution contract and product, and for each group \
    creates a usage file, uploads its workbook and submits it. A group larger than \
    --max-records-per-file is reported as several files (parts); records that arrive after a \
    group was submitted go into a supplementary file. Files are found again by deterministic \
    external ids, so running twice, or again after a crash, never reports twice. A month of any \
    size runs in bounded memory: what must wait is kept in --work-dir, removed at the end.\n\n\
    With --dry-run it writes the workbooks and summary.json to --out and sends nothing.\n\n\
    With --metrics-file PATH the run's figures are written to PATH in the Prometheus text \
    format (node_exporter's textfile collector).\n\n\
    The summary also lists the subscriptions of QT products under active distribution contracts, \
    active in the month, that no record names (coverage); with --require-full-coverage true such \
    a run is partial.\n\n\
    Exit codes: 0 everything reported, 3 part of it (records not sent, files not submitted yet, \
    records whose usage changed after it was reported, or subscriptions without usage when full \
    coverage is required: see the summary), 1 nothing, 2 bad settings.";

/// `Debug` shows neither the source (a database URL may hold a password), its token nor the
/// key.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The month to report, YYYY-MM (default: the previous month, in UTC).
    #[arg(long)]
    period: Option<String>,
    /// The vendor usage API URL (http(s)://...); a CSV, JSON Lines or Parquet file (a path or
    /// an http(s) URL; {period}, {year} and {month} name the month); or a PostgreSQL database
    /// (postgres://user@host:5432/db, with ?sslmode=require|verify-full&sslrootcert=PATH).
    #[arg(long, env = USAGE_SOURCE, value_parser = secret_arg)]
    source: Option<Secret>,
    /// The source's secret: the bearer token of the vendor usage API or a file URL, or the
    /// database password (PGPASSWORD works too).
    #[arg(long, env = USAGE_SOURCE_TOKEN, hide_env_values = true, value_parser = secret_arg)]
    source_token: Option<Secret>,
    /// A postgres:// source's query: $1 and $2 are the month's first instant and the next
    /// month's; the columns are named like the usage contract (default: the table
    /// connect_usage_records).
    #[arg(long, env = USAGE_QUERY)]
    query: Option<String>,
    /// Groups (contract and product) reported at once.
    #[arg(long, env = REPORT_CONCURRENCY, default_value_t = DEFAULT_CONCURRENCY)]
    concurrency: usize,
    /// The most records one usage file holds (at most 1048575); larger groups become parts.
    #[arg(long, env = MAX_RECORDS_PER_FILE)]
    max_records_per_file: Option<String>,
    /// none (a row per record), day or month: sum each subscription's item per UTC day or
    /// month before reporting.
    #[arg(long, env = USAGE_AGGREGATION)]
    aggregation: Option<String>,
    /// true: a subscription of a QT product under an active distribution contract, active in
    /// the month, that no record names makes the run partial (exit 3); false (the default):
    /// such subscriptions are only listed in the summary.
    #[arg(long, env = REQUIRE_FULL_COVERAGE, value_name = "true|false")]
    require_full_coverage: Option<String>,
    /// Where the run keeps its work files (default: the system's temporary directory).
    #[arg(long, env = WORK_DIR)]
    work_dir: Option<PathBuf>,
    /// Connect API key (`ApiKey SU-...:...`, the prefix optional).
    #[arg(long, env = "API_KEY", hide_env_values = true, value_parser = secret_arg)]
    api_key: Option<Secret>,
    /// Connect API host, as the official runner takes it; a scheme is allowed
    /// (http://127.0.0.1:8080 for the sandbox).
    #[arg(long, env = "API_ADDRESS", default_value = DEFAULT_API_ADDRESS)]
    api_address: String,
    /// Write the workbooks and the summary to --out; create, upload and submit nothing.
    #[arg(long)]
    dry_run: bool,
    /// Where --dry-run writes (created if missing).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Milliseconds between two looks at a file Connect is processing.
    #[arg(long, default_value_t = 2000)]
    poll_interval_ms: u64,
    /// Seconds to wait for Connect's processing before leaving the file to the ready event.
    #[arg(long, default_value_t = 120)]
    poll_timeout_secs: u64,
    /// Write the run's figures to this file in the Prometheus text format, replaced whole
    /// (for node_exporter's textfile collector: a path ending in .prom in its directory).
    #[arg(long, env = "METRICS_FILE")]
    metrics_file: Option<PathBuf>,
}

/// Keeps a value that may hold a secret (a key, a token, a database URL with its password) out
/// of `Debug`.
fn secret_arg(value: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(value))
}

pub async fn run(args: ReportArgs) -> Result<u8, ExitFailure> {
    let period = match &args.period {
        None => Month::previous_month(chrono::Utc::now()),
        Some(p) => p.parse().map_err(config_error)?,
    };
    if args.dry_run && args.out.is_none() {
        return Err(config_error(anyhow::anyhow!(
            "--dry-run needs --out DIR: the directory the workbooks and summary.json are written to"
        )));
    }
    let settings = ReportSettings::from_lookup(|name| match name {
        USAGE_SOURCE => args.source.as_ref().map(|s| s.expose().to_owned()),
        USAGE_SOURCE_TOKEN => args.source_token.as_ref().map(|s| s.expose().to_owned()),
        USAGE_QUERY => args.query.clone(),
        PGPASSWORD => std::env::var(PGPASSWORD).ok(),
        REPORT_CONCURRENCY => Some(args.concurrency.to_string()),
        MAX_RECORDS_PER_FILE => args.max_records_per_file.clone(),
        USAGE_AGGREGATION => args.aggregation.clone(),
        REQUIRE_FULL_COVERAGE => args.require_full_coverage.clone(),
        WORK_DIR => args.work_dir.as_ref().map(|p| p.display().to_string()),
        _ => None,
    })
    .map_err(config_error)?;
    let key = args
        .api_key
        .as_ref()
        .map(Secret::expose)
        .ok_or_else(|| config_error(anyhow::anyhow!("API_KEY is not set (or give --api-key)")))
        .and_then(|k| ApiKey::new(k).map_err(|e| config_error(anyhow::anyhow!("API_KEY: {e}"))))?;
    let base = api_base_url(&args.api_address).map_err(config_error)?;
    let client = ConnectClient::new(base, key).map_err(config_error)?;
    let source = settings.open_source().map_err(config_error)?;
    // Before the month is read: a key or address that cannot work is said in a sentence.
    client
        .check_access()
        .await
        .map_err(|e| access_error(&e, &args.api_address, client.base_url()))?;
    let options = ReportOptions {
        dry_run: args.dry_run,
        out_dir: args.out.clone(),
        poll: PollPolicy {
            interval: Duration::from_millis(args.poll_interval_ms.max(10)),
            timeout: Duration::from_secs(args.poll_timeout_secs),
        },
        ..settings.options(period)
    };
    let outcome = report(&client, source.as_ref(), &options).await;
    if let Some(path) = &args.metrics_file {
        write_metrics_file(path).map_err(run_error)?;
    }
    let summary = outcome.map_err(|e: RunError| match &e {
        // A token or password the source refuses is a setting to fix, like a bad key.
        RunError::Source(s) if s.is_configuration() => config_error(e),
        _ => run_error(e),
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&summary).map_err(run_error)?);
    } else {
        println!("{summary}");
    }
    Ok(match summary.result {
        RunResult::Complete => EXIT_OK,
        RunResult::Partial => EXIT_PARTIAL,
        RunResult::Failed => EXIT_FAILURE,
    })
}

/// Writes the run's figures (the `connect_usage_*` and `connect_api_*` families) to `path`,
/// replacing it whole. A run that did not complete keeps the previous file's time of the last
/// complete run: each run is a new process, and the alert on "no complete run in 35 days"
/// must not fire because one run was partial.
fn write_metrics_file(path: &std::path::Path) -> anyhow::Result<()> {
    connect_client::metrics::register();
    connect_usage::usage::metrics::register();
    let mut text = exposition::encode(|name| {
        name.starts_with("connect_usage_") || name.starts_with("connect_api_")
    });
    if let Ok(previous) = std::fs::read_to_string(path) {
        text.push_str(&carried_over(&text, &previous));
    }
    metrics_file::write_atomically(path, &text).map_err(|e| {
        anyhow::anyhow!(
            "cannot write the metrics file {}: {e} (check that its directory exists and is \
             writable)",
            path.display()
        )
    })
}

/// The lines of `previous` that `text` must carry over: the last complete run's family,
/// when this run did not complete.
fn carried_over(text: &str, previous: &str) -> String {
    const LAST_COMPLETE: &str = "connect_usage_last_complete_run_timestamp_seconds";
    let mine = |line: &str| {
        [
            format!("# HELP {LAST_COMPLETE} "),
            format!("# TYPE {LAST_COMPLETE} "),
            format!("{LAST_COMPLETE} "),
        ]
        .iter()
        .any(|p| line.starts_with(p.as_str()))
    };
    if text
        .lines()
        .any(|l| l.starts_with(&format!("{LAST_COMPLETE} ")))
    {
        return String::new();
    }
    previous
        .lines()
        .filter(|l| mine(l))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Connect's answer to the first request, as what to check. `address` is `API_ADDRESS` (or
/// its default), `base` the URL it became. Bad configuration (exit 2) when the key or the
/// address is wrong; a failure while running (exit 1) otherwise.
fn access_error(e: &ConnectError, address: &str, base: &str) -> ExitFailure {
    let given = std::env::var_os("API_ADDRESS").is_some() || address != DEFAULT_API_ADDRESS;
    let address_hint = if given {
        format!("check API_ADDRESS ({address})")
    } else {
        format!(
            "API_ADDRESS is not set, so the report talks to Connect's production API \
             ({DEFAULT_API_ADDRESS}); for the sandbox, set API_ADDRESS to the address it prints \
             (http://127.0.0.1:8080 by default)"
        )
    };
    let sentence = if matches!(e.status(), Some(401 | 403)) {
        format!(
            "Connect at {base} refused the API key ({e}): check API_KEY (a key works only with \
             the Connect that issued it); {address_hint}"
        )
    } else if e.is_unknown_host() {
        let host = reqwest::Url::parse(base)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| base.to_owned());
        format!("cannot find the host {host} (no such name in DNS): {address_hint}")
    } else if matches!(e.kind(), ErrorKind::Transport { connect: true, .. }) {
        format!(
            "nothing answers at {base} ({e}): {address_hint}, and that the server (or \
             `connect-usage sandbox`) is running"
        )
    } else {
        return run_error(anyhow::anyhow!("cannot reach Connect at {base}: {e}"));
    };
    config_error(anyhow::anyhow!(sentence))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    const FAMILY: &str = "# HELP connect_usage_last_complete_run_timestamp_seconds When.\n\
                          # TYPE connect_usage_last_complete_run_timestamp_seconds gauge\n\
                          connect_usage_last_complete_run_timestamp_seconds 1700000000\n";

    #[test]
    fn a_run_that_did_not_complete_keeps_the_last_complete_time() {
        let now = "# TYPE connect_usage_last_run_duration_seconds gauge\n\
                   connect_usage_last_run_duration_seconds 3\n";
        let old = format!("{now}{FAMILY}");
        assert_eq!(carried_over(now, &old), FAMILY);
    }

    #[test]
    fn a_complete_run_writes_its_own_time() {
        let now = FAMILY.replace("1700000000", "1800000000");
        assert_eq!(carried_over(&now, FAMILY), "");
    }

    #[test]
    fn nothing_to_carry_from_a_file_without_a_complete_run() {
        assert_eq!(carried_over("a 1\n", "a 0\n"), "");
    }

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        args: ReportArgs,
    }

    #[test]
    fn debug_shows_neither_the_source_its_token_nor_the_key() {
        let parsed = Command::try_parse_from([
            "report",
            "--source",
            "postgres://vendor:pw-in-url@db:5432/usage",
            "--source-token",
            "token-secret",
            "--api-key",
            "ApiKey SU-1:key-secret",
        ])
        .expect("parses");
        let text = format!("{:?}", parsed.args);
        for secret in ["pw-in-url", "token-secret", "key-secret"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(
            parsed.args.source.as_ref().map(Secret::expose),
            Some("postgres://vendor:pw-in-url@db:5432/usage")
        );
    }
}
