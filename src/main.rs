//! The `connect-usage` command line.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

mod cli;

#[derive(Debug, Parser)]
#[command(
    name = "connect-usage",
    version,
    about = "Reports pay-as-you-go usage (QT schema) to CloudBlue Connect, and emulates Connect locally.",
    long_about = "Reports pay-as-you-go usage (QT schema) from a vendor's systems to CloudBlue Connect.\n\n\
                  `connect-usage report` reports a month of usage: one usage file per distribution contract \
                  and product, created, uploaded and submitted exactly once.\n\
                  `connect-usage sandbox` runs a local emulator of the Connect REST API (contracts, assets, \
                  products, usage files and records) and of a vendor usage API, to try the extension and to \
                  test against.",
    after_help = "Exit codes: 0 success, 1 failure while running, 2 bad arguments or configuration, \
                  3 report partly done (records not sent or files not reported: see the summary).\n\
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
    /// Report a month of QT usage to Connect (or the sandbox) once.
    #[command(long_about = cli::report::LONG_ABOUT)]
    Report(Box<cli::report::ReportArgs>),
    /// Run the local Connect API emulator until Ctrl-C.
    #[command(long_about = cli::sandbox::LONG_ABOUT)]
    Sandbox(Box<cli::sandbox::SandboxArgs>),
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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.logging);
    let result = match cli.command {
        Command::Report(args) => cli::report::run(*args).await,
        Command::Sandbox(args) => cli::sandbox::run(*args).await,
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}
