//! The `connect-usage` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use connect_usage::sandbox::{
    Dataset, FaultAction, FaultRule, RuntimeConfig, Sandbox, SandboxConfig,
};
use connect_usage::secret::Secret;
use tracing_subscriber::EnvFilter;

/// Exit codes.
const EXIT_FAILURE: u8 = 1;
const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "connect-usage",
    version,
    about = "Reports pay-as-you-go usage (QT schema) to CloudBlue Connect, and emulates Connect locally.",
    long_about = "Reports pay-as-you-go usage (QT schema) from a vendor's systems to CloudBlue Connect.\n\n\
                  `connect-usage sandbox` runs a local emulator of the Connect REST API (contracts, assets, \
                  products, usage files and records) to try the extension and to test against.",
    after_help = "Exit codes: 0 success, 1 failure while running, 2 bad arguments or configuration.\n\
                  Logs go to stderr; RUST_LOG (e.g. RUST_LOG=debug) overrides --log-level."
)]
struct Cli {
    #[command(flatten)]
    logging: Logging,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Logging {
    /// Log format: readable text or one JSON object per line.
    #[arg(long, global = true, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, global = true, env = "LOG_LEVEL", default_value = "info")]
    log_level: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the local Connect API emulator until Ctrl-C.
    #[command(long_about = "Run the local Connect API emulator until Ctrl-C.\n\n\
                      It serves Connect's REST API under /public/v1 (contracts, assets, marketplaces, \
                      products and items, usage files and records) from a built-in vendor account or \
                      the dataset given with --data, and prints its address and API keys. Its own API \
                      under /sandbox shows the state (GET /sandbox/state), injects faults \
                      (PUT /sandbox/faults) and changes settings (PUT /sandbox/config) while it runs.")]
    Sandbox(SandboxArgs),
}

#[derive(Debug, Args)]
struct SandboxArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "SANDBOX_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A dataset JSON file (accounts, keys, marketplaces, contracts, products, items, assets)
    /// instead of the built-in account; see --dump-data for the shape.
    #[arg(long, env = "SANDBOX_DATA")]
    data: Option<PathBuf>,
    /// Print the built-in dataset as JSON and exit (a starting point for --data).
    #[arg(long)]
    dump_data: bool,
    /// Milliseconds from upload to `ready`/`invalid` (0 processes before answering).
    #[arg(long, default_value_t = 0)]
    processing_delay_ms: u64,
    /// Status code of a successful upload: 200 (Connect's spec) or 201 (older SDKs).
    #[arg(long, default_value_t = 200)]
    upload_status: u16,
    /// Milliseconds added to every API request.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Share of API requests (0.0 to 1.0) answered with --fault-status.
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// Status of injected faults (500, 502, 503, 429, ...).
    #[arg(long, default_value_t = 503)]
    fault_status: u16,
    /// Retry-After seconds sent with injected faults.
    #[arg(long)]
    fault_retry_after: Option<u64>,
    /// Seed of the fault injection's random choices.
    #[arg(long, default_value_t = 0x5A4D_B0C5)]
    seed: u64,
    /// Usage records per month served by the sandbox's vendor usage API.
    #[arg(long, default_value_t = 1200)]
    usage_records: u64,
    /// Share (0.0 to 1.0) of those records that are defective on purpose.
    #[arg(long, default_value_t = 0.0)]
    usage_bad_records: f64,
    /// Bearer token of the vendor usage API.
    #[arg(long, env = "SANDBOX_USAGE_TOKEN", default_value = connect_usage::sandbox::vendor_api::DEFAULT_TOKEN, hide_default_value = true)]
    usage_token: String,
}

fn init_logging(logging: &Logging) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&logging.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match logging.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// An error with the exit code it deserves.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn config_error(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: EXIT_CONFIG,
        error: error.into(),
    }
}

fn run_error(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: EXIT_FAILURE,
        error: error.into(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.logging);
    let result = match cli.command {
        Command::Sandbox(args) => sandbox(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

async fn sandbox(args: SandboxArgs) -> Result<(), Failure> {
    if args.dump_data {
        let json = serde_json::to_string_pretty(&Dataset::default_account()).map_err(run_error)?;
        println!("{json}");
        return Ok(());
    }
    let dataset = match &args.data {
        Some(path) => Dataset::load(path).map_err(config_error)?,
        None => Dataset::default_account(),
    };
    let runtime = RuntimeConfig {
        processing_delay_ms: args.processing_delay_ms,
        upload_status: args.upload_status,
        latency_ms: args.latency_ms,
        usage_records: args.usage_records,
        usage_bad_records: args.usage_bad_records,
        ..RuntimeConfig::default()
    };
    runtime
        .check()
        .map_err(|e| config_error(anyhow::anyhow!(e)))?;
    let mut faults = Vec::new();
    if args.fault_rate > 0.0 {
        let rule = FaultRule {
            method: None,
            path: None,
            rate: args.fault_rate,
            skip: 0,
            count: None,
            action: FaultAction::Status {
                status: args.fault_status,
                retry_after: args.fault_retry_after,
                after: false,
            },
        };
        rule.check()
            .map_err(|e| config_error(anyhow::anyhow!("bad --fault-rate/--fault-status: {e}")))?;
        faults.push(rule);
    }
    let keys: Vec<(String, String, String)> = dataset
        .api_keys
        .iter()
        .map(|k| {
            let account = dataset
                .account(&k.account)
                .map(|a| format!("{} {}", a.id, a.name))
                .unwrap_or_default();
            (k.name.clone(), account, k.key.clone())
        })
        .collect();
    let sandbox = Sandbox::start(SandboxConfig {
        listen: args.listen,
        dataset,
        runtime,
        faults,
        seed: args.seed,
        usage_token: Secret::new(args.usage_token.clone()),
    })
    .await
    .map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                " (the port is in use; --listen 127.0.0.1:0 picks a free one)"
            }
            std::io::ErrorKind::AddrNotAvailable => " (no such local address)",
            _ => "",
        };
        config_error(anyhow::anyhow!(
            "cannot start the sandbox on {}: {e}{hint}",
            args.listen
        ))
    })?;

    let api = sandbox.api_url();
    println!("connect-usage sandbox is running.\n");
    println!("  Connect API  {api}");
    println!(
        "  Sandbox API  {}/sandbox  (GET state, PUT faults, PUT config, POST reset)\n",
        sandbox.origin()
    );
    println!("  API keys (send as \"Authorization: ApiKey <key>\"):");
    let width = keys.iter().map(|k| k.0.len()).max().unwrap_or(0);
    for (name, account, key) in &keys {
        println!("    {name:width$}  {key}  ({account})");
    }
    println!(
        "\n  Vendor usage API  {}  (Authorization: Bearer {})",
        sandbox.usage_api_url(),
        args.usage_token
    );
    println!(
        "    as a usage source: USAGE_SOURCE={} USAGE_SOURCE_TOKEN={}",
        sandbox.usage_api_url(),
        args.usage_token
    );
    if let Some((_, _, key)) = keys.first() {
        println!(
            "\n  Try:\n    curl -H \"Authorization: ApiKey {key}\" \"{api}/contracts?limit=5\""
        );
    }
    println!("\nPress Ctrl-C to stop.");
    sandbox.run_until_signal().await;
    Ok(())
}
