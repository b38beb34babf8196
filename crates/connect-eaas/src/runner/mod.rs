//! The runner's machinery: sessions, dispatch, delivery, reconnection.
//!
//! A [`Runner`] opens two sessions to the platform, as Connect's official runner does
//! (`runner_type=background` for background and scheduled tasks, `interactive` for the
//! others), receives tasks, runs the handlers declared in the [registry](crate::registry), and
//! answers with results. [`Runner::start`] returns a [`RunnerHandle`] that shows each
//! session's [`ConnectionState`] and stops the runner.
//!
//! - [`transport`]: opening the socket. [`session`]: one connection's life (handshake,
//!   keep-alive, reconnection, result delivery). `dispatch`: one task's.
//! - [`config`]: the official runner's environment variables. [`backoff`]: the reconnection
//!   policy. [`setup`]: what the platform's setup responses say.
//!   [`output`]: a task's output, built in one place. [`metrics`]: what an operator watches.
//! - [`log_ship`]: log records sent to Connect's log service once the platform gives a key.

pub mod backoff;
pub mod config;
mod dispatch;
pub mod log_ship;
pub mod metrics;
pub mod output;
pub mod session;
pub mod setup;
mod shared;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use crate::task::{
    Environment, HandlerError, HandlerState, Outcome, TaskContext, TaskInfo, Variables,
};
pub use config::{ConfigError, RunnerConfig, RunnerType, Timings};
pub use session::ConnectionState;
pub use setup::LogLevels;
pub use shared::{LogLevelHook, RunnerStats, StopReason, traceparent};

use crate::registry::{ExtensionDescriptor, Registry};
use connect_client::ConnectError;
use session::Session;
use shared::Shared;

/// A runner, configured and not yet started.
pub struct Runner {
    shared: Arc<Shared>,
}

/// How a runner ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub reason: Option<StopReason>,
    /// Tasks whose results were never delivered (the platform delivers them again).
    pub undelivered: Vec<String>,
}

impl Runner {
    /// A runner for `registry`'s handlers, introduced to the platform with `descriptor`.
    /// `log_levels` applies the levels the platform asks for (none: they are ignored).
    pub fn new(
        config: RunnerConfig,
        registry: Registry,
        descriptor: &ExtensionDescriptor,
        log_levels: Option<LogLevelHook>,
    ) -> Result<Runner, ConnectError> {
        let frame = registry.setup_request(descriptor).to_frame();
        // A name is one word in a User-Agent.
        let extension = format!(
            "{}/{}",
            descriptor
                .name
                .split_whitespace()
                .collect::<Vec<_>>()
                .join("-"),
            descriptor.version
        );
        let shared = Shared::new(config, Arc::new(registry), frame, &extension, log_levels)?;
        Ok(Runner {
            shared: Arc::new(shared),
        })
    }

    /// Sends log records to Connect's log service through `shipper` once a `setup_response`
    /// carries a logging key (the shipper's layer must be in the process's subscriber).
    pub fn ship_logs(self, shipper: log_ship::LogShipper) -> Runner {
        // Set once, before the sessions start; a second call changes nothing.
        let _ = self.shared.log_shipper.set(shipper);
        self
    }

    /// Gives the handlers a value to share across tasks (one per type), found with
    /// [`TaskContext::state`].
    pub fn with_state<T: std::any::Any + Send + Sync>(self, value: T) -> Runner {
        let mut state = self.shared.state.write().unwrap_or_else(|e| e.into_inner());
        *state = state.with(value);
        drop(state);
        self
    }

    /// Opens the sessions and runs until stopped.
    pub fn start(self) -> RunnerHandle {
        let shared = self.shared;
        let mut states = Vec::new();
        let mut sessions = Vec::new();
        for kind in shared.config.runner_types.clone() {
            let (session, state) = Session::new(kind, shared.clone());
            states.push((kind, state));
            sessions.push(tokio::spawn(session.run()));
        }
        info!(
            environment = %shared.config.environment_id,
            instance = %shared.config.instance_id,
            server = %shared.config.server_host,
            "runner started"
        );
        let join = tokio::spawn(coordinate(shared.clone(), sessions));
        RunnerHandle {
            shared,
            states,
            join,
        }
    }
}

/// Waits for a stop request, ends the grace period after its time, and collects the sessions.
async fn coordinate(
    shared: Arc<Shared>,
    sessions: Vec<JoinHandle<session::SessionEnd>>,
) -> RunReport {
    let grace = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut stop = shared.stop.subscribe();
            if stop.wait_for(Option::is_some).await.is_err() {
                return;
            }
            tokio::time::sleep(shared.config.shutdown_grace).await;
            warn!("shutdown grace period over: cancelling the tasks still running");
            shared.grace_over.send_replace(true);
        })
    };
    let mut undelivered = Vec::new();
    for s in sessions {
        match s.await {
            Ok(end) => undelivered.extend(end.undelivered),
            Err(e) => warn!(error = %e, "a session ended abnormally"),
        }
    }
    grace.abort();
    shared.run_shutdown_hooks().await;
    let reason = shared.stopping();
    match reason {
        Some(reason) => info!(%reason, "runner stopped"),
        None => info!("runner stopped: its sessions ended"),
    }
    RunReport {
        reason,
        undelivered,
    }
}

/// Controls a started runner.
pub struct RunnerHandle {
    shared: Arc<Shared>,
    states: Vec<(RunnerType, watch::Receiver<ConnectionState>)>,
    join: JoinHandle<RunReport>,
}

impl RunnerHandle {
    /// Asks the runner to stop: it tells the platform, takes no new task, lets running ones
    /// finish within the grace period, delivers their results and closes.
    pub fn stop(&self) {
        self.shared.request_stop(StopReason::Requested);
    }

    /// The state of one session.
    pub fn state(&self, kind: RunnerType) -> Option<ConnectionState> {
        self.states
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, s)| s.borrow().clone())
    }

    /// A receiver of one session's state changes.
    pub fn watch_state(&self, kind: RunnerType) -> Option<watch::Receiver<ConnectionState>> {
        self.states
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, s)| s.clone())
    }

    /// Waits until every session is connected, or `limit` passes. Returns whether they are.
    pub async fn wait_connected(&self, limit: Duration) -> bool {
        let all = async {
            for (_, s) in &self.states {
                let mut s = s.clone();
                if s.wait_for(|st| *st == ConnectionState::Connected)
                    .await
                    .is_err()
                {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(limit, all).await.unwrap_or(false)
    }

    /// A check of whether the runner can take tasks: every session connected and the
    /// platform's setup received; otherwise why not, in a sentence (`/readyz` shows it).
    pub fn readiness(&self) -> impl Fn() -> Result<(), String> + Send + Sync + 'static {
        let states = self.states.clone();
        let shared = self.shared.clone();
        move || {
            let mut not_ready = Vec::new();
            for (kind, state) in &states {
                let state = state.borrow().clone();
                if state != ConnectionState::Connected {
                    not_ready.push(format!("{} session {}", kind.as_str(), state.describe()));
                }
            }
            if not_ready.is_empty() && !shared.setup().received() {
                not_ready.push("no setup from the platform yet".to_owned());
            }
            if not_ready.is_empty() {
                Ok(())
            } else {
                Err(not_ready.join("; "))
            }
        }
    }

    pub fn stats(&self) -> &RunnerStats {
        &self.shared.stats
    }

    /// The variables as the platform last sent them.
    pub fn variables(&self) -> Variables {
        self.shared.setup().variables().clone()
    }

    /// How many task API keys have their own client.
    pub fn task_key_clients(&self) -> usize {
        self.shared.task_key_clients()
    }

    /// Waits until the runner is asked to stop (by [`RunnerHandle::stop`] or the platform).
    pub async fn stop_requested(&self) -> StopReason {
        let mut rx = self.shared.stop.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(r) => r.unwrap_or(StopReason::Requested),
            Err(_) => StopReason::Requested,
        }
    }

    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Waits for the runner to end (after a stop request or the platform's shutdown).
    pub async fn wait(self) -> RunReport {
        match self.join.await {
            Ok(report) => report,
            Err(e) => {
                warn!(error = %e, "the runner ended abnormally");
                RunReport {
                    reason: self.shared.stopping(),
                    undelivered: Vec::new(),
                }
            }
        }
    }

    /// Stops and waits.
    pub async fn stop_and_wait(self) -> RunReport {
        self.stop();
        self.wait().await
    }
}
