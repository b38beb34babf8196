//! The state both sessions and every task share: configuration, registry, the merged setup,
//! the REST clients (one per API key), the stop signal and counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::watch;
use tracing::{info, warn};

use super::config::RunnerConfig;
use super::setup::{LogLevels, SetupState};
use crate::protocol::SetupResponse;
use crate::registry::{HookContext, Registry};
use crate::task::{HandlerState, TaskInfo};
use connect_client::{ApiKey, ConnectClient, ConnectError};

/// Time a shutdown hook gets.
const SHUTDOWN_HOOK_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Applies log levels the platform asks for (the binary installs one over its log filter).
pub type LogLevelHook = Arc<dyn Fn(&LogLevels) + Send + Sync>;

/// Why the runner stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The platform sent `shutdown`.
    Platform,
    /// The process was told to stop (SIGTERM, SIGINT, or [`super::RunnerHandle::stop`]): the
    /// runner tells the platform with a `shutdown` frame.
    Requested,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::Platform => "the platform sent shutdown",
            StopReason::Requested => "asked to stop",
        })
    }
}

/// Counters, for logs, tests and benchmarks.
#[derive(Debug, Default)]
pub struct RunnerStats {
    pub tasks_received: AtomicU64,
    pub tasks_run: AtomicU64,
    pub duplicates_ignored: AtomicU64,
    pub results_sent: AtomicU64,
    pub frames_ignored: AtomicU64,
    pub connections: AtomicU64,
}

impl RunnerStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

pub(crate) struct Shared {
    pub config: RunnerConfig,
    pub registry: Arc<Registry>,
    /// The setup request frame, the same on every connection.
    pub setup_frame: String,
    pub setup: RwLock<SetupState>,
    env_client: ConnectClient,
    /// Clients by API key token, built once per key.
    clients: Mutex<HashMap<String, ConnectClient>>,
    startup_fired: AtomicBool,
    pub stop: watch::Sender<Option<StopReason>>,
    /// Set when the shutdown grace period is over: running tasks are cancelled.
    pub grace_over: watch::Sender<bool>,
    log_hook: Option<LogLevelHook>,
    /// Sends log records to Connect once the platform gives a key (set by
    /// [`super::Runner::ship_logs`]).
    pub log_shipper: OnceLock<super::log_ship::LogShipper>,
    /// What the handlers share, given before the runner starts.
    pub state: RwLock<HandlerState>,
    pub stats: RunnerStats,
    /// Of every REST client the runner builds.
    user_agent: String,
}

impl Shared {
    /// `extension` is the extension's `name/version`, for the clients' `User-Agent`.
    pub fn new(
        config: RunnerConfig,
        registry: Arc<Registry>,
        setup_frame: String,
        extension: &str,
        log_hook: Option<LogLevelHook>,
    ) -> Result<Shared, ConnectError> {
        let user_agent = config.user_agent(extension);
        let env_client = build_client(&config, &user_agent, config.api_key.clone())?;
        Ok(Shared {
            user_agent,
            config,
            registry,
            setup_frame,
            setup: RwLock::new(SetupState::default()),
            env_client,
            clients: Mutex::new(HashMap::new()),
            startup_fired: AtomicBool::new(false),
            stop: watch::Sender::new(None),
            grace_over: watch::Sender::new(false),
            log_hook,
            log_shipper: OnceLock::new(),
            state: RwLock::new(HandlerState::default()),
            stats: RunnerStats::default(),
        })
    }

    pub fn setup(&self) -> SetupState {
        self.setup.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn stopping(&self) -> Option<StopReason> {
        *self.stop.borrow()
    }

    pub fn request_stop(&self, reason: StopReason) {
        self.stop.send_if_modified(|s| {
            if s.is_none() {
                *s = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// Merges a setup response, applies its log levels and fires the startup hooks after the
    /// first one (once per runner, whichever session gets it first).
    pub fn apply_setup(self: &Arc<Self>, resp: SetupResponse) {
        let applied = {
            let mut s = self.setup.write().unwrap_or_else(|e| e.into_inner());
            s.apply(resp)
        };
        for name in &applied.unknown_levels {
            warn!(level = %name, "the platform asked for a log level that does not exist; ignored");
        }
        if (applied.levels.runner.is_some() || applied.levels.extension.is_some())
            && let Some(hook) = &self.log_hook
        {
            hook(&applied.levels);
        }
        if let Some(shipper) = self.log_shipper.get() {
            shipper.apply(self.ship_update(applied.levels.clone()));
        }
        if applied.variables_changed && !applied.first {
            info!("variables updated by the platform");
        }
        if !self.startup_fired.swap(true, Ordering::SeqCst) {
            let setup = self.setup();
            let ctx = HookContext {
                config: setup.variables().clone(),
                environment_type: setup.environment_type().map(str::to_owned),
            };
            for hook in self.registry.startup_hooks() {
                let ctx = ctx.clone();
                let f = hook.hook;
                let name = hook.name;
                tokio::spawn(async move {
                    info!(hook = name, "running startup hook");
                    f(ctx).await;
                });
            }
        }
    }

    /// What the log shipper needs after a setup response: the key (if the platform gave one),
    /// the levels it carried and the records' metadata.
    fn ship_update(&self, levels: LogLevels) -> super::log_ship::ShipUpdate {
        let setup = self.setup.read().unwrap_or_else(|e| e.into_inner());
        let meta = setup.meta();
        super::log_ship::ShipUpdate {
            listener_url: self.config.log_listener_url.clone(),
            key: setup.logging_api_key().cloned(),
            levels,
            metadata: super::log_ship::RecordMetadata {
                api_address: self.config.api_address(),
                service_id: meta.service_id.clone(),
                environment_id: self.config.environment_id.clone(),
                environment_type: setup.environment_type().map(str::to_owned),
                instance_id: self.config.instance_id.clone(),
                account_id: meta.account_id.clone(),
                account_name: meta.account_name.clone(),
                repository_tag: meta.repository_tag.clone(),
            },
        }
    }

    /// Runs the shutdown hooks (once, when the runner ends).
    pub async fn run_shutdown_hooks(&self) {
        let setup = self.setup();
        let ctx = HookContext {
            config: setup.variables().clone(),
            environment_type: setup.environment_type().map(str::to_owned),
        };
        for hook in self.registry.shutdown_hooks() {
            info!(hook = hook.name, "running shutdown hook");
            // In its own task, bounded: a hook that hangs or panics must not keep the
            // process from exiting or hide what the runner reports.
            let run = tokio::spawn((hook.hook)(ctx.clone()));
            match tokio::time::timeout(SHUTDOWN_HOOK_LIMIT, run).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(hook = hook.name, error = %e, "shutdown hook failed"),
                Err(_) => warn!(hook = hook.name, "shutdown hook did not finish in time"),
            }
        }
    }

    /// The environment's client with a task's headers.
    pub fn environment_client(&self, headers: HeaderMap) -> ConnectClient {
        self.env_client.with_headers(headers)
    }

    /// A client acting with `key` (one per key for the runner's life), with a task's headers.
    pub fn client_for_key(
        &self,
        key: &str,
        headers: HeaderMap,
    ) -> Result<ConnectClient, ConnectError> {
        let api_key = ApiKey::new(key)
            .map_err(|e| ConnectError::invalid(format!("the task's API key is unusable: {e}")))?;
        let base = {
            let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
            match clients.get(api_key.expose()) {
                Some(c) => c.clone(),
                None => {
                    let c = build_client(&self.config, &self.user_agent, api_key.clone())?;
                    clients.insert(api_key.expose().to_owned(), c.clone());
                    c
                }
            }
        };
        Ok(base.with_headers(headers))
    }

    /// How many distinct task keys have clients.
    pub fn task_key_clients(&self) -> usize {
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// `EAAS_EXT_ID`, `EAAS_TASK_ID`, `EAAS_TASK_TYPE` and, with a correlation id,
    /// `ext-traceparent`: built once per task, so all its clients carry the same span id.
    pub fn task_headers(task: &TaskInfo, service_id: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        let mut put = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        if let Some(id) = service_id {
            put("eaas_ext_id", id);
        }
        put("eaas_task_id", &task.task_id);
        put("eaas_task_type", &task.event_type);
        if let Some(tp) = task.correlation_id.as_deref().and_then(traceparent) {
            put("ext-traceparent", &tp);
        }
        h
    }
}

fn build_client(
    config: &RunnerConfig,
    user_agent: &str,
    key: ApiKey,
) -> Result<ConnectClient, ConnectError> {
    ConnectClient::builder(config.api_base_url.clone(), key)
        .user_agent(user_agent)
        .build()
}

/// The `ext-traceparent` of a task whose `connect_correlation_id` is a W3C traceparent
/// (`00-<32 hex trace id>-<16 hex>-01`): the same trace with a new span id.
///
/// The official runner keeps 31 of the trace id's 32 characters (a slicing slip); this one
/// keeps all 32 so the header is a valid traceparent.
pub fn traceparent(correlation_id: &str) -> Option<String> {
    let trace = correlation_id.get(3..35)?;
    if !trace.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let span: u64 = rand::random();
    Some(format!("00-{trace}-{span:016x}-01"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_keeps_the_trace_id() {
        let tp =
            traceparent("00-0123456789abcdef0123456789abcdef-0123456789abcdef-01").expect("valid");
        assert!(
            tp.starts_with("00-0123456789abcdef0123456789abcdef-"),
            "{tp}"
        );
        assert_eq!(tp.len(), 55);
        assert!(tp.ends_with("-01"));
        assert_eq!(traceparent("short"), None);
        assert_eq!(
            traceparent("00-zz23456789abcdef0123456789abcdef-0123456789abcdef-01"),
            None
        );
    }
}
