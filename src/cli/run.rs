//! `connect-usage run`: the extension in production, connected to Connect's events platform.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use connect_eaas::probe_server;
use connect_eaas::registry::Registry;
use connect_eaas::runner::config::InstanceIdSource;
use connect_eaas::runner::{Runner, RunnerConfig, StopReason};
use connect_usage::usage::locks::GroupLocks;
use tracing::{info, warn};

use super::{EXIT_OK, EXIT_UNDELIVERED, ExitFailure, LogControl, config_error, run_error};

pub const LONG_ABOUT: &str = "Run the extension: connect to Connect's events platform and \
    handle its tasks until stopped.\n\n\
    Configured, like Connect's official runner, by environment variables:\n  \
    API_KEY          the environment's API key (ApiKey SU-...:...)\n  \
    ENVIRONMENT_ID   the extension environment (ENV-...)\n  \
    INSTANCE_ID      this instance (default: the container id, else a random id)\n  \
    SERVER_ADDRESS   the platform host (default api.cnct.info); ws://host:port for a local platform\n  \
    API_ADDRESS      the REST API host (default: SERVER_ADDRESS)\n  \
    HTTP_PROXY, HTTPS_PROXY   an http:// proxy for ws:// and wss://\n  \
    BACKGROUND_TASK_MAX_EXECUTION_TIME, INTERACTIVE_TASK_MAX_EXECUTION_TIME,\n  \
    SCHEDULED_TASK_MAX_EXECUTION_TIME   seconds (300, 120, 43200)\n  \
    TASK_CONCURRENCY          tasks run at once per session (64)\n  \
    SHUTDOWN_GRACE_SECONDS    time running tasks get after SIGTERM (30)\n  \
    METRICS_ADDRESS           host:port for /metrics (Prometheus), /healthz and /readyz, e.g. \
    0.0.0.0:9102 (unset: no listener)\n  \
    LOGZIO_LISTENER_URL       where log records go once the platform gives a logging key \
    (default https://listener.logz.io:8071, Connect's log service; a proxy, or the sandbox's \
    http://127.0.0.1:PORT/logzio)\n\n\
    Logs go to stderr and, when the platform's setup gives a logging key, to Connect's log \
    service too (what the portal shows), at the levels the platform asks for; RUST_LOG pins \
    only the local output.\n\n\
    The extension's own settings (USAGE_SOURCE, USAGE_SOURCE_TOKEN, REPORT_CONCURRENCY) are \
    variables set in Connect; the platform sends them. On SIGTERM or Ctrl-C the runner tells the \
    platform, finishes running tasks within the grace period, delivers their results and exits 0 \
    (4 if some results could not be delivered; the platform delivers those tasks again).\n\n\
    To try it locally: `connect-usage sandbox`, then the API_KEY, ENVIRONMENT_ID and \
    SERVER_ADDRESS it prints.";

/// Where the operator's endpoint listens (unset: nowhere).
pub const METRICS_ADDRESS: &str = "METRICS_ADDRESS";
/// Time the records still queued for Connect's log service get at the end.
const LOG_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Connect with ws:// when SERVER_ADDRESS has no scheme (the official runner's -u).
    #[arg(short = 'u', long)]
    unsecure: bool,
    /// An extension.json to use instead of the one built in.
    #[arg(long, env = "EXTENSION_JSON")]
    extension_json: Option<PathBuf>,
}

pub async fn run(args: RunArgs, logs: LogControl) -> Result<u8, ExitFailure> {
    let config = RunnerConfig::from_lookup(
        |name| {
            if name == "UNSECURE" && args.unsecure {
                Some("1".into())
            } else {
                std::env::var(name).ok()
            }
        },
        InstanceIdSource::System,
    )
    .map_err(config_error)?;
    let descriptor = super::describe::load_descriptor(args.extension_json.as_deref())?;
    let registry = Registry::collect().map_err(config_error)?;
    // Bound before connecting: a port that cannot be had is a setting to fix, said at once.
    let probe_listener = match std::env::var(METRICS_ADDRESS)
        .ok()
        .filter(|a| !a.trim().is_empty())
    {
        Some(address) => Some(probe_server::bind(&address).await.map_err(config_error)?),
        None => None,
    };
    let runner = Runner::new(config, registry, &descriptor, logs.platform_hook())
        .map_err(config_error)?
        .ship_logs(logs.shipper.clone())
        .with_state(GroupLocks::default())
        .start();
    if let Some(listener) = probe_listener {
        connect_eaas::runner::metrics::register();
        connect_client::metrics::register();
        connect_usage::usage::metrics::register();
        if let Ok(address) = listener.local_addr() {
            info!(%address, "serving /metrics, /healthz and /readyz");
        }
        probe_server::serve(listener, Arc::new(runner.readiness()));
    }
    tokio::select! {
        _ = connect_usage::signal::wait_for_signal() => {
            info!("stop requested: finishing running tasks");
            runner.stop();
        }
        // The platform's shutdown ends the runner without a signal.
        _ = runner.stop_requested() => {}
    }
    // A second signal means "now": whatever is still running is abandoned (the platform
    // delivers those tasks again).
    let report = tokio::select! {
        report = runner.wait() => report,
        _ = connect_usage::signal::wait_for_signal() => {
            warn!("second stop signal: exiting without waiting for running tasks");
            return Ok(EXIT_UNDELIVERED);
        }
    };
    // The last records (the runner's stop) reach Connect too, if its listener answers soon.
    logs.shipper.flush(LOG_FLUSH_LIMIT).await;
    match (report.reason, report.undelivered.is_empty()) {
        (_, false) => {
            warn!(tasks = ?report.undelivered, "stopped with undelivered results");
            Ok(EXIT_UNDELIVERED)
        }
        (Some(StopReason::Platform | StopReason::Requested), true) => Ok(EXIT_OK),
        (None, true) => Err(run_error(anyhow::anyhow!(
            "the runner ended without a stop request"
        ))),
    }
}
