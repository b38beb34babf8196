//! The `connect-usage` command line.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

mod cli;

/// mimalloc: the workbook writer and the pipeline allocate millions of small strings a month,
/// which it serves much faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "connect-usage",
    version,
    about = "Reports pay-as-you-go usage (QT schema) to CloudBlue Connect, and emulates Connect locally.",
    long_about = "Reports pay-as-you-go usage (QT schema) from a vendor's systems to CloudBlue Connect.\n\n\
                  `connect-usage demo` shows the whole story on an embedded sandbox, in one command.\n\
                  `connect-usage run` runs the extension: it connects to Connect's events platform (the \
                  official runner's environment variables) and reports usage on its monthly schedule.\n\
                  `connect-usage report` reports a month of usage once: one usage file per distribution \
                  contract and product, created, uploaded and submitted exactly once.\n\
                  `connect-usage sandbox` runs a local emulator of the Connect REST API (contracts, assets, \
                  products, usage files and records) and of a vendor usage API, to try the extension and to \
                  test against.",
    after_help = "Exit codes: 0 success, 1 failure while running, 2 bad arguments or configuration, \
                  3 report partly done (records not sent or files not reported: see the summary), \
                  4 runner stopped with results the platform did not get.\n\
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
    /// Log level (error, warn, info, debug, trace); info by default, error for `demo`.
    #[arg(long, global = true, env = "LOG_LEVEL")]
    log_level: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// See the whole story on an embedded sandbox: schedule, files, a rejection, the rerun.
    #[cfg(feature = "sandbox")]
    #[command(long_about = cli::demo::LONG_ABOUT)]
    Demo(cli::demo::DemoArgs),
    /// Report a month of QT usage to Connect (or the sandbox) once.
    #[command(long_about = cli::report::LONG_ABOUT)]
    Report(Box<cli::report::ReportArgs>),
    /// Run the local Connect API emulator until Ctrl-C.
    #[cfg(feature = "sandbox")]
    #[command(long_about = cli::sandbox::LONG_ABOUT)]
    Sandbox(Box<cli::sandbox::SandboxArgs>),
    /// Run the extension: connect to Connect's events platform and handle its tasks.
    #[command(long_about = cli::run::LONG_ABOUT)]
    Run(Box<cli::run::RunArgs>),
    /// Print what the extension declares: events, schedules, variables.
    #[command(long_about = cli::describe::LONG_ABOUT)]
    Describe(cli::describe::DescribeArgs),
}

/// Installs the log output and the layer that ships records to Connect; returns what changes
/// their levels (the runner applies the levels the platform asks for through it).
///
/// The local filter belongs to the local output alone, not to the whole subscriber: records
/// shipped to Connect follow the platform's levels, which may ask for debug records while the
/// terminal shows info, and RUST_LOG pins only what the terminal shows.
fn init_logging(logging: &Logging, default_level: &str) -> cli::LogControl {
    use connect_eaas::runner::log_ship::{LogShipper, ShipOptions};
    use tracing_subscriber::prelude::*;
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let base = from_env
        .clone()
        .or_else(|| logging.log_level.clone())
        .unwrap_or_else(|| default_level.to_owned());
    let filter = EnvFilter::try_new(&base).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // The sandbox's records (another crate) are the emulated platform's and never shipped.
    let shipper = LogShipper::new(ShipOptions {
        extension_targets: cli::EXTENSION_TARGETS.map(String::from).to_vec(),
        ..ShipOptions::default()
    });
    let registry = tracing_subscriber::registry()
        .with(connect_eaas::logging::secret_safe_filter())
        .with(shipper.layer());
    match logging.log_format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(connect_eaas::log_text::ReadableFormat)
                    .fmt_fields(connect_eaas::log_text::ReadableFields)
                    .with_ansi(ansi)
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .init(),
    }
    cli::LogControl {
        reload_local: std::sync::Arc::new(move |f| handle.reload(f).is_ok()),
        base,
        pinned: from_env.is_some(),
        shipper,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // Before the work allocates (see connect_usage::memory for why).
    connect_usage::memory::avoid_huge_pages();
    let cli = Cli::parse();
    // The demo tells its own story; the runner's logs would drown it.
    let default_level = match cli.command {
        #[cfg(feature = "sandbox")]
        Command::Demo(_) => "error",
        _ => "info",
    };
    let logs = init_logging(&cli.logging, default_level);
    let result = match cli.command {
        #[cfg(feature = "sandbox")]
        Command::Demo(args) => cli::demo::run(args).await,
        Command::Report(args) => cli::report::run(*args).await,
        #[cfg(feature = "sandbox")]
        Command::Sandbox(args) => cli::sandbox::run(*args).await,
        Command::Run(args) => cli::run::run(*args, logs).await,
        Command::Describe(args) => cli::describe::run(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!(
                "error: {}",
                connect_client::error_text::error_text(f.error.as_ref())
            );
            ExitCode::from(f.code)
        }
    }
}
