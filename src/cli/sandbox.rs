//! `connect-usage sandbox`: the local Connect emulator, until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use connect_client::secret::Secret;
use connect_sandbox::usage_universe::{Spread, UsageUniverse};
use connect_sandbox::{
    Dataset, FaultAction, FaultRule, ProviderPolicy, RuntimeConfig, Sandbox, SandboxConfig,
};
use connect_usage::usage::Month;
use connect_usage::usage::export::{self, ExportTarget};

use super::{EXIT_OK, ExitFailure, config_error, run_error};

pub const LONG_ABOUT: &str = "Run the local Connect API emulator until Ctrl-C.\n\n\
    It serves Connect's REST API under /public/v1 (contracts, assets, marketplaces, products and \
    items, usage files and records) from a built-in vendor account or the dataset given with \
    --data, and a vendor usage API under /vendor/v1/usage, and prints their addresses and keys. Its \
    own API under /sandbox shows the state (GET /sandbox/state), injects faults (PUT \
    /sandbox/faults) and changes settings (PUT /sandbox/config) while it runs.\n\n\
    It also plays Connect's events platform: extension runners connect to \
    /public/v1/devops/ws/{environment}/{instance} with the dataset's extension key, and get tasks \
    for usage file status changes, fired schedules and submitted interactive events \
    (GET /sandbox/platform shows connections, tasks and protocol errors).\n\n\
    With --logging-key it also plays Connect's log service: its setup hands out a logging key, \
    runners started with LOGZIO_LISTENER_URL=http://127.0.0.1:PORT/logzio ship their log \
    records to it, and GET /sandbox/logs shows what arrived.";

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Write a month of the sandbox's usage (the records its vendor usage API serves, shaped
    /// by --usage-records, --usage-subscriptions, --usage-bad-records and --data) to DEST and
    /// exit: a postgres:// URL (table connect_usage_records, or the one after #, created when
    /// missing; the month's rows there are replaced), or a .parquet, .csv or .jsonl file. A
    /// password comes from the URL, USAGE_SOURCE_TOKEN or PGPASSWORD.
    #[arg(long, value_name = "DEST")]
    export_usage: Option<String>,
    /// The month to export, YYYY-MM (default: the previous month).
    #[arg(long, value_name = "YYYY-MM", requires = "export_usage")]
    period: Option<String>,
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
    /// Spread the records over only this many subscriptions (0: all): 1 makes one contract
    /// and product hold the whole month.
    #[arg(long, default_value_t = 0)]
    usage_subscriptions: u64,
    /// Leave this many billable subscriptions (spread over contracts and products) without any
    /// usage record, to try the run's coverage check; GET /sandbox/vendor/uncovered?period=
    /// names them.
    #[arg(long, default_value_t = 0)]
    usage_uncovered_subscriptions: u64,
    /// Bearer token of the vendor usage API.
    #[arg(long, env = "SANDBOX_USAGE_TOKEN", default_value = connect_sandbox::vendor_api::DEFAULT_TOKEN, hide_default_value = true)]
    usage_token: String,
    /// A PEM certificate (chain) to serve https and wss with, as Connect does; needs --tls-key.
    /// Connect's official Python runner only speaks https to the REST API.
    #[arg(long, env = "SANDBOX_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key.
    #[arg(long, env = "SANDBOX_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How the provider answers submitted usage files: `manual` (only through the API with a
    /// provider key), `accept` (accepts each one), `demo` (rejects the first file once with a
    /// note, accepts the rest). Change it at run time with PUT /sandbox/provider.
    #[arg(long, value_enum, default_value_t = ProviderMode::Manual)]
    provider: ProviderMode,
    /// Hand out a logging key in the platform's setup, so that runners ship their log records
    /// to the sandbox's log listener (GET /sandbox/logs shows them), as to Connect's.
    #[arg(long)]
    logging_key: bool,
}

/// `--export-usage DEST`: the month's usage written to DEST.
async fn export(args: &SandboxArgs, dest: &str, dataset: &Dataset) -> Result<u8, ExitFailure> {
    let target = ExportTarget::parse(dest).map_err(config_error)?;
    let period = match &args.period {
        Some(text) => text
            .parse::<Month>()
            .map_err(|e| config_error(anyhow::anyhow!("--period {text:?}: {e}")))?,
        None => Month::previous_month(chrono::Utc::now()),
    };
    if !(0.0..=1.0).contains(&args.usage_bad_records) {
        return Err(config_error(anyhow::anyhow!(
            "--usage-bad-records must be between 0 and 1"
        )));
    }
    let universe = UsageUniverse::of(dataset);
    let month = universe.month_of(
        period,
        Spread {
            subscriptions: args.usage_subscriptions,
            uncovered: args.usage_uncovered_subscriptions,
        },
    );
    let count = connect_sandbox::usage_universe::records_in(period, args.usage_records);
    let written = export::export(
        &target,
        &month,
        period,
        count,
        args.usage_bad_records,
        &|name| std::env::var(name).ok(),
    )
    .await
    .map_err(run_error)?;
    println!("exported {written} usage records of {period} to {target}");
    Ok(EXIT_OK)
}

/// The provider's behaviour at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderMode {
    Manual,
    Accept,
    Demo,
}

impl ProviderMode {
    fn policy(self) -> ProviderPolicy {
        match self {
            ProviderMode::Manual => ProviderPolicy::default(),
            ProviderMode::Accept => ProviderPolicy {
                auto: true,
                ..ProviderPolicy::default()
            },
            ProviderMode::Demo => ProviderPolicy::demo(),
        }
    }
}

pub async fn run(args: SandboxArgs) -> Result<u8, ExitFailure> {
    if args.dump_data {
        let json = serde_json::to_string_pretty(&Dataset::default_account()).map_err(run_error)?;
        println!("{json}");
        return Ok(EXIT_OK);
    }
    let dataset = match &args.data {
        Some(path) => Dataset::load(path).map_err(config_error)?,
        None => Dataset::default_account(),
    };
    if let Some(dest) = &args.export_usage {
        return export(&args, dest, &dataset).await;
    }
    let runtime = RuntimeConfig {
        processing_delay_ms: args.processing_delay_ms,
        upload_status: args.upload_status,
        latency_ms: args.latency_ms,
        usage_records: args.usage_records,
        usage_bad_records: args.usage_bad_records,
        usage_subscriptions: args.usage_subscriptions,
        usage_uncovered_subscriptions: args.usage_uncovered_subscriptions,
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
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(connect_sandbox::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        provider: args.provider.policy(),
    })
    .await
    .map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                " (the port is in use; --listen 127.0.0.1:0 picks a free one)"
            }
            std::io::ErrorKind::AddrNotAvailable => " (no such local address)",
            std::io::ErrorKind::InvalidInput => "",
            _ => "",
        };
        config_error(anyhow::anyhow!(
            "cannot start the sandbox on {}: {e}{hint}",
            args.listen
        ))
    })?;

    if args.logging_key {
        let platform = sandbox.state().platform();
        let settings = connect_sandbox::platform::PlatformSettings {
            send_logging_key: true,
            ..platform.settings()
        };
        platform
            .set_settings(settings)
            .map_err(|e| config_error(anyhow::anyhow!(e)))?;
    }
    let api = sandbox.api_url();
    // Clients trust the authority that signed the certificate (scripts/sandbox-tls-cert.sh
    // writes it as ca.pem next to cert.pem).
    let curl = match &args.tls_cert {
        Some(_) => "curl --cacert CA.pem".to_owned(),
        None => "curl".to_owned(),
    };
    println!("connect-usage sandbox is running.\n");
    println!("  Connect API  {api}");
    println!(
        "  Sandbox API  {}/sandbox  (GET summary: what happened; GET state, PUT faults, POST reset...)\n",
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
    println!(
        "    its monthly export files (.csv, .jsonl, .parquet), same token: USAGE_SOURCE={}",
        sandbox.usage_export_url("csv")
    );
    let ext = sandbox.state().dataset().extension();
    if let Some(key) = sandbox.key(&ext.api_key) {
        println!(
            "\n  Events platform  {}/public/v1/devops/ws/{}/<instance>  (extension {}, environment {})",
            sandbox.ws_origin(),
            ext.environment.id,
            ext.service_id,
            ext.environment.id
        );
        println!(
            "    run the extension against it:\n      API_KEY=\"ApiKey {}\" ENVIRONMENT_ID={} SERVER_ADDRESS={} connect-usage run",
            key.expose(),
            ext.environment.id,
            sandbox.ws_origin()
        );
        println!(
            "    its log records, as Connect's log service gets them: LOGZIO_LISTENER_URL={}{}",
            sandbox.log_listener_url(),
            if args.logging_key {
                format!(", then {curl} {}/sandbox/logs", sandbox.origin())
            } else {
                " (with --logging-key)".to_owned()
            }
        );
        if sandbox.is_secure() {
            println!(
                "    Connect's official runner (cextrun): SERVER_ADDRESS={0} API_ADDRESS={0} (it adds wss:// and https://),\n      trusting the certificate's authority: SSL_CERT_FILE=CA.pem REQUESTS_CA_BUNDLE=CA.pem",
                sandbox.addr()
            );
        } else {
            println!(
                "    (Connect's official runner calls the REST API over https only: start the sandbox with --tls-cert/--tls-key for it)"
            );
        }
        if let Some(s) = ext.schedules.first().and_then(|s| s["id"].as_str()) {
            println!(
                "    fire its schedule:  {curl} -X POST {}/sandbox/platform/schedules/{s}/fire",
                sandbox.origin()
            );
        }
    }
    if let Some((_, _, key)) = keys.first() {
        println!(
            "\n  Try:\n    {curl} -H \"Authorization: ApiKey {key}\" \"{api}/contracts?limit=5\""
        );
    }
    println!("\nPress Ctrl-C to stop.");
    sandbox
        .run_until(connect_usage::signal::wait_for_signal())
        .await;
    Ok(EXIT_OK)
}
