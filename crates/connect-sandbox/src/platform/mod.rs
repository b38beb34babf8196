//! The platform side of Connect's EaaS events protocol, as the sandbox plays it: runner
//! connections, the setup handshake, tasks and their outcomes.
//!
//! - A runner connects to `/public/v1/devops/ws/{environment}/{instance}` with the
//!   environment's key, sends its `setup_request` and gets a `setup_response` (variables,
//!   event definitions, logging settings, the extension's id).
//! - Every usage file status change that matches the runner's `usage_file_request_processing`
//!   subscription becomes a background task; a schedule triggered through the API (or the admin
//!   API) becomes a scheduled task; the admin API submits interactive tasks.
//! - Tasks go to a connected session of the right `runner_type`. A task whose connection is
//!   lost before it is answered is delivered again after the runner reconnects; `retry` and
//!   `reschedule` deliver it again after their delay, up to `max_tries` deliveries.
//! - Every frame a runner sends is checked against the protocol; what does not conform is kept
//!   in `protocol_errors` for tests to assert on. Every task keeps its deliveries and answers.
//!
//! Faults ([`WsFaultRule`], kept with the HTTP fault rules in [`crate::faults`])
//! refuse upgrades, leave the setup unanswered, or drop connections at chosen points (after a
//! task is sent, when a result arrives), always or at a rate.
//!
//! This file holds the shared state ([`Platform`]) and its settings; the rest is by concept:
//! `connections` (sessions and delivery), `tasks` (task records and results), `setup` (the
//! handshake and variables), `conformance` (the protocol checks) and `events` (the event
//! types).

mod conformance;
mod connections;
mod events;
mod setup;
mod tasks;

use crate::splitmix;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use tokio::sync::Notify;

pub use connections::{ConnFilter, Outbound, Refusal};
pub use events::{EVENT_TYPES, EventType, STATUS_FILTER_TEMPLATE, event_definitions};
pub use tasks::TaskSpec;

use super::dataset::ExtensionSetup;
use super::faults::{WsAction, WsFaultRule, WsFaults, WsPoint};
use super::store::timestamp;
use connect_client::secret::Secret;
use connections::Conn;
use setup::VarState;
use tasks::{TaskRecord, task_dump};

/// Behaviour switches of the platform side, changeable through `/sandbox/platform/settings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlatformSettings {
    /// Deliveries of a task answered `retry` or `reschedule` before it is given up (`failed`).
    pub max_tries: u32,
    /// Seconds before a task answered `retry` is delivered again.
    pub retry_delay_s: f64,
    /// Multiplies countdowns and retry delays (0.01 makes a 30 s countdown 0.3 s).
    pub time_scale: f64,
    /// Milliseconds before a task whose connection was lost is delivered again, counted from
    /// the runner's new session (Connect's own delay is not documented; 5 s leaves a runner
    /// paced like the official one time to send the results it kept).
    pub redelivery_delay_ms: u64,
    /// Python level names sent in `setup_response.logging`.
    pub log_level: String,
    pub runner_log_level: String,
    /// Hand out the sandbox's logging key in `setup_response.logging.logging_api_key`, so
    /// runners ship their records to its log listener (`/logzio`, see `GET /sandbox/logs`).
    pub send_logging_key: bool,
}

impl Default for PlatformSettings {
    fn default() -> Self {
        PlatformSettings {
            max_tries: 5,
            retry_delay_s: 30.0,
            time_scale: 1.0,
            redelivery_delay_ms: 5000,
            log_level: "INFO".into(),
            runner_log_level: "INFO".into(),
            send_logging_key: false,
        }
    }
}

impl PlatformSettings {
    pub fn check(&self) -> Result<(), String> {
        if self.max_tries == 0 {
            return Err("max_tries must be at least 1".into());
        }
        if !(self.time_scale > 0.0 && self.time_scale.is_finite()) {
            return Err(format!(
                "time_scale must be above 0, not {}",
                self.time_scale
            ));
        }
        if !(self.retry_delay_s >= 0.0 && self.retry_delay_s.is_finite()) {
            return Err("retry_delay_s must be 0 or more".into());
        }
        Ok(())
    }

    fn scaled(&self, seconds: f64) -> Duration {
        Duration::from_secs_f64((seconds * self.time_scale).max(0.0))
    }
}

struct Inner {
    settings: PlatformSettings,
    extension: ExtensionSetup,
    /// The vendor account the extension belongs to.
    account: (String, String),
    products: Vec<String>,
    origin: String,
    usage_token: Secret,
    /// The log listener's key, handed out with `send_logging_key`.
    logging_key: Secret,
    variables: Vec<VarState>,
    /// The last setup request's subscriptions, kept across reconnects.
    subscriptions: Option<BTreeMap<String, Vec<String>>>,
    connections: BTreeMap<u64, Conn>,
    next_conn: u64,
    tasks: Vec<TaskRecord>,
    task_index: HashMap<String, usize>,
    /// Tasks waiting for delivery and tasks out with a runner, by index: delivery and
    /// disconnects look at these, never at every task ever made.
    waiting: BTreeSet<usize>,
    processing: BTreeSet<usize>,
    next_task: u64,
    protocol_errors: Vec<Json>,
    /// Things Connect is not known to refuse but this runner should not rely on.
    protocol_notes: Vec<Json>,
    connection_log: Vec<Json>,
    ws_faults: WsFaults,
    rng: u64,
    results_received: u64,
    /// The dataset's self-firing schedules were started (once per sandbox run).
    schedules_started: bool,
    /// The first part of task ids, different in every sandbox run.
    run_id: u16,
    /// Ids of tasks forgotten by a reset: their late results are noted, not errors.
    forgotten: std::collections::HashSet<String>,
}

/// The platform side's state. All methods take the lock briefly and never wait.
pub struct Platform {
    inner: Mutex<Inner>,
    /// Wakes the delivery loop.
    pub(crate) wake: Notify,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.inner.try_lock() {
            Ok(i) => f
                .debug_struct("Platform")
                .field("connections", &i.connections.len())
                .field("tasks", &i.tasks.len())
                .finish(),
            Err(_) => f.write_str("Platform(<locked>)"),
        }
    }
}

fn now_text() -> String {
    timestamp(Utc::now())
}

/// A correlation id as Connect sends them: a W3C traceparent.
fn correlation(rng: &mut u64) -> String {
    let a = splitmix::next(rng);
    let b = splitmix::next(rng);
    let c = splitmix::next(rng);
    format!("00-{a:016x}{b:016x}-{c:016x}-01")
}

/// A number in `[0, 1)` from the stream, for rate decisions.
fn unit_roll(rng: &mut u64) -> f64 {
    (splitmix::next(rng) >> 11) as f64 / (1u64 << 53) as f64
}

impl Platform {
    pub fn new(
        extension: ExtensionSetup,
        account: (String, String),
        products: Vec<String>,
        usage_token: Secret,
        logging_key: Secret,
        seed: u64,
    ) -> Platform {
        let variables = extension
            .variables
            .iter()
            .map(|v| VarState {
                name: v.name.clone(),
                value: v.value.clone(),
                secure: v.secure,
            })
            .collect();
        Platform {
            inner: Mutex::new(Inner {
                settings: PlatformSettings::default(),
                extension,
                account,
                products,
                origin: String::new(),
                usage_token,
                logging_key,
                variables,
                subscriptions: None,
                connections: BTreeMap::new(),
                next_conn: 1,
                tasks: Vec::new(),
                task_index: HashMap::new(),
                waiting: BTreeSet::new(),
                processing: BTreeSet::new(),
                next_task: 1,
                protocol_errors: Vec::new(),
                protocol_notes: Vec::new(),
                connection_log: Vec::new(),
                ws_faults: WsFaults::default(),
                rng: seed ^ 0xE5A5_0000_0000_0001,
                results_received: 0,
                schedules_started: false,
                run_id: rand::random::<u16>() % 1000,
                forgotten: std::collections::HashSet::new(),
            }),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Set once the server is bound: `{origin}` in variable values.
    pub fn set_origin(&self, origin: &str) {
        self.lock().origin = origin.to_owned();
    }

    pub fn extension(&self) -> ExtensionSetup {
        self.lock().extension.clone()
    }

    pub fn settings(&self) -> PlatformSettings {
        self.lock().settings.clone()
    }

    pub fn set_settings(&self, settings: PlatformSettings) -> Result<(), String> {
        settings.check()?;
        self.lock().settings = settings;
        self.wake.notify_one();
        Ok(())
    }

    pub fn set_faults(&self, rules: Vec<WsFaultRule>) -> Result<(), String> {
        self.lock().ws_faults.set(rules)
    }

    /// Whether a fault at `point` applies now (and spends one use of it). The rate rolls
    /// come from the platform's seeded stream, so a seeded sandbox strikes the same way.
    fn fault(
        inner: &mut Inner,
        point: WsPoint,
        actions: &[WsAction],
        runner_type: Option<&str>,
    ) -> Option<WsFaultRule> {
        let rng = &mut inner.rng;
        inner
            .ws_faults
            .strike(point, actions, runner_type, || unit_roll(rng))
    }

    /// The whole platform side, for the admin API: connections, subscriptions, variables
    /// (secure values hidden), tasks with every delivery and answer, protocol errors.
    pub fn dump(&self) -> Json {
        let inner = self.lock();
        let connections: Vec<Json> = inner
            .connections
            .iter()
            .map(|(id, c)| {
                json!({"id": id, "instance": c.instance, "runner_type": c.runner_type,
                       "running_tasks": c.running_tasks, "running_scheduled_tasks": c.running_scheduled_tasks,
                       "key": c.key_name, "connected_at": c.connected_at, "setup_done": c.setup_done,
                       "draining": c.draining, "frames_in": c.frames_in, "frames_out": c.frames_out})
            })
            .collect();
        let tasks: Vec<Json> = inner
            .tasks
            .iter()
            .map(|t| task_dump(t, &inner.extension, &inner.account))
            .collect();
        json!({
            "extension": {"service_id": inner.extension.service_id, "environment": inner.extension.environment.id},
            "settings": inner.settings,
            "subscriptions": inner.subscriptions,
            "variables": inner.variables.iter().map(|v| json!({"name": v.name,
                "value": if v.secure { "***".to_owned() } else { v.value.clone() }, "secure": v.secure})).collect::<Vec<_>>(),
            "connections": connections,
            "tasks": tasks,
            "results_received": inner.results_received,
                        "protocol_errors": inner.protocol_errors,
            "protocol_notes": inner.protocol_notes,
            "connection_log": inner.connection_log,
            "faults": inner.ws_faults.dump(),
        })
    }

    /// Forgets tasks, errors and logs (connections stay).
    pub fn reset(&self) {
        let mut inner = self.lock();
        let ids: Vec<String> = inner.tasks.iter().map(|t| t.id.clone()).collect();
        inner.forgotten.extend(ids);
        inner.tasks.clear();
        inner.task_index.clear();
        inner.waiting.clear();
        inner.processing.clear();
        inner.protocol_errors.clear();
        inner.protocol_notes.clear();
        inner.connection_log.clear();
        inner.results_received = 0;
        inner.schedules_started = false;
        inner.ws_faults.clear();
        inner.settings = PlatformSettings::default();
    }
}
