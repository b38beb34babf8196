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
//! Faults ([`WsFaultRule`]) refuse upgrades, leave the setup unanswered, or drop connections
//! at chosen points (after a task is sent, when a result arrives), always or at a rate.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::dataset::{ExtensionSetup, Role};
use super::store::{SandboxEvent, timestamp};
use crate::secret::Secret;

/// An event type the sandbox knows, as Connect's event definitions describe it.
#[derive(Debug, Clone, Copy)]
pub struct EventType {
    pub event_type: &'static str,
    pub name: &'static str,
    pub category: &'static str,
    pub group: &'static str,
    /// The object statuses the event can be subscribed for.
    pub statuses: &'static [&'static str],
    /// `(collection, resource)` the runner loads the object from (background events).
    pub endpoints: Option<(&'static str, &'static str)>,
}

pub const EVENT_TYPES: &[EventType] = &[
    EventType {
        event_type: "usage_file_request_processing",
        name: "Usage File Request Processing",
        category: "background",
        group: "Usage",
        statuses: &[
            "draft",
            "uploading",
            "uploaded",
            "invalid",
            "processing",
            "ready",
            "rejected",
            "pending",
            "accepted",
            "closed",
        ],
        endpoints: Some(("usage/files", "usage/files/{pk}")),
    },
    EventType {
        event_type: "part_usage_file_request_processing",
        name: "Part Usage File Request Processing",
        category: "background",
        group: "Usage",
        statuses: &["draft", "ready", "closed", "failed"],
        endpoints: None,
    },
    EventType {
        event_type: "product_action_execution",
        name: "Product Action Execution",
        category: "interactive",
        group: "Product",
        statuses: &[],
        endpoints: None,
    },
    EventType {
        event_type: "product_custom_event_processing",
        name: "Product Custom Event Processing",
        category: "interactive",
        group: "Product",
        statuses: &[],
        endpoints: None,
    },
    EventType {
        event_type: "asset_purchase_request_validation",
        name: "Asset Purchase Request Validation",
        category: "interactive",
        group: "Fulfillment",
        statuses: &["draft", "inquiring"],
        endpoints: None,
    },
    EventType {
        event_type: "asset_change_request_validation",
        name: "Asset Change Request Validation",
        category: "interactive",
        group: "Fulfillment",
        statuses: &["draft", "inquiring"],
        endpoints: None,
    },
    EventType {
        event_type: "scheduled_execution",
        name: "Scheduled Execution",
        category: "scheduled",
        group: "Scheduled",
        statuses: &[],
        endpoints: None,
    },
];

/// The filter template of the event definitions the sandbox sends.
pub const STATUS_FILTER_TEMPLATE: &str = "and(eq(id,${_object_id_}),in(status,${_statuses_}))";

/// `GET /devops/event-definitions` items.
pub fn event_definitions() -> Vec<Json> {
    EVENT_TYPES
        .iter()
        .enumerate()
        .map(|(i, e)| {
            json!({
                "id": i + 1, "source": "system", "type": e.event_type, "name": e.name,
                "description": format!("{} event.", e.name), "category": e.category,
                "group": e.group, "extension_type": "products", "object_statuses": e.statuses,
            })
        })
        .collect()
}

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

/// Where a websocket fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WsPoint {
    /// The upgrade request.
    Upgrade,
    /// The runner's `setup_request`.
    Setup,
    /// Right after a task is sent.
    Task,
    /// When a task result arrives (before it is recorded).
    Result,
}

/// What a websocket fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WsAction {
    /// Answer the upgrade with an HTTP error (`status`, default 502).
    Refuse,
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Say nothing: leave the setup request unanswered, or lose the result.
    Silence,
}

/// A websocket fault rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsFaultRule {
    pub at: WsPoint,
    pub action: WsAction,
    /// HTTP status of a refused upgrade.
    #[serde(default)]
    pub status: Option<u16>,
    /// Applies this many times, then is spent (unlimited when absent).
    #[serde(default)]
    pub times: Option<u32>,
    /// Chance (0 to 1) that the rule applies when it could (1 when absent).
    #[serde(default)]
    pub rate: Option<f64>,
    /// Only on sessions of this runner type.
    #[serde(default)]
    pub runner_type: Option<String>,
}

impl WsFaultRule {
    fn check(&self) -> Result<(), String> {
        match (self.at, self.action) {
            (WsPoint::Upgrade, WsAction::Silence) => {
                return Err("an upgrade cannot be silenced: refuse or drop it".into());
            }
            (p, WsAction::Refuse) if p != WsPoint::Upgrade => {
                return Err("only an upgrade can be refused".into());
            }
            (WsPoint::Task, WsAction::Silence) => {
                return Err("a task cannot be silenced: drop the connection after it".into());
            }
            _ => {}
        }
        if let Some(s) = self.status
            && !(400..=599).contains(&s)
        {
            return Err(format!("status {s} is not an HTTP error"));
        }
        if let Some(r) = self.rate
            && !(0.0..=1.0).contains(&r)
        {
            return Err(format!("rate {r} is not between 0 and 1"));
        }
        Ok(())
    }
}

/// What the connection task sends.
#[derive(Debug)]
pub enum Outbound {
    Text(String),
    Binary(Vec<u8>),
    /// Drop the connection without a close frame.
    Drop,
}

/// A new task.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// `background`, `interactive` or `scheduled`.
    pub category: String,
    pub event_type: String,
    pub object_id: String,
    #[serde(default)]
    pub data: Option<Json>,
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub installation_id: Option<String>,
    #[serde(default)]
    pub connect_correlation_id: Option<String>,
}

struct Conn {
    instance: String,
    runner_type: Option<String>,
    running_tasks: Option<u64>,
    running_scheduled_tasks: Option<u64>,
    key_name: String,
    tx: mpsc::UnboundedSender<Outbound>,
    connected_at: String,
    setup_done: bool,
    /// The runner said `shutdown`: no new tasks.
    draining: bool,
    frames_in: u64,
    frames_out: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    Scheduled,
    Rescheduled,
    Retrying,
    Processing(u64),
    Succeeded,
    Failed,
    Skipped,
}

impl TaskState {
    fn as_str(self) -> &'static str {
        match self {
            TaskState::Scheduled => "scheduled",
            TaskState::Rescheduled => "rescheduled",
            TaskState::Retrying => "retrying",
            TaskState::Processing(_) => "processing",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Skipped => "skipped",
        }
    }

    fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Skipped
        )
    }

    fn waiting(self) -> bool {
        matches!(
            self,
            TaskState::Scheduled | TaskState::Rescheduled | TaskState::Retrying
        )
    }
}

struct Attempt {
    conn: u64,
    instance: String,
    delivered_at: String,
    answered_at: Option<String>,
    output: Option<Json>,
    /// Why the delivery ended without an answer (connection lost, result lost).
    lost: Option<String>,
}

struct TaskRecord {
    id: String,
    category: String,
    options: Json,
    input: Json,
    state: TaskState,
    not_before: Instant,
    /// Deliveries answered `retry` or `reschedule`.
    tries: u32,
    retry_count: u32,
    rescheduled_count: u32,
    attempts: Vec<Attempt>,
    duplicates: u32,
    /// Later results that say something else than the recorded one.
    conflicting: u32,
    created_at: String,
    completed_at: Option<String>,
    rescheduled_at: Option<String>,
    output: Option<String>,
    final_output: Option<Json>,
    runtime_total_ms: f64,
    waiters: Vec<oneshot::Sender<Json>>,
}

struct VarState {
    name: String,
    value: String,
    secure: bool,
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
    faults: Vec<(WsFaultRule, Option<u32>)>,
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
    let a = splitmix(rng);
    let b = splitmix(rng);
    let c = splitmix(rng);
    format!("00-{a:016x}{b:016x}-{c:016x}-01")
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Which connections an admin action applies to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnFilter {
    pub instance: Option<String>,
    pub runner_type: Option<String>,
}

impl ConnFilter {
    fn matches(&self, c: &Conn) -> bool {
        self.instance.as_ref().is_none_or(|i| *i == c.instance)
            && self
                .runner_type
                .as_ref()
                .is_none_or(|r| c.runner_type.as_deref() == Some(r.as_str()))
    }
}

/// Why an upgrade is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
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
                faults: Vec::new(),
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
        for (i, r) in rules.iter().enumerate() {
            r.check().map_err(|e| format!("rule {i}: {e}"))?;
        }
        self.lock().faults = rules.into_iter().map(|r| (r.clone(), r.times)).collect();
        Ok(())
    }

    /// Whether a fault at `point` applies now (and spends one use of it).
    fn fault(
        inner: &mut Inner,
        point: WsPoint,
        actions: &[WsAction],
        runner_type: Option<&str>,
    ) -> Option<WsFaultRule> {
        let mut rng = inner.rng;
        let mut hit = None;
        for (rule, left) in inner.faults.iter_mut() {
            if rule.at != point || !actions.contains(&rule.action) || *left == Some(0) {
                continue;
            }
            if let Some(rt) = &rule.runner_type
                && Some(rt.as_str()) != runner_type
            {
                continue;
            }
            let rate = rule.rate.unwrap_or(1.0);
            let roll = (splitmix(&mut rng) >> 11) as f64 / (1u64 << 53) as f64;
            if roll >= rate {
                continue;
            }
            if let Some(n) = left.as_mut() {
                *n -= 1;
            }
            hit = Some(rule.clone());
            break;
        }
        inner.rng = rng;
        hit
    }

    /// Checks an upgrade: the environment, the key, and upgrade faults.
    pub fn check_upgrade(
        &self,
        environment: &str,
        key_name: &str,
        key_role: Role,
        runner_type: Option<&str>,
    ) -> Result<(), Refusal> {
        let mut inner = self.lock();
        if environment != inner.extension.environment.id {
            return Err(Refusal {
                status: 404,
                message: format!("No environment {environment}."),
            });
        }
        let key_ok = if inner.extension.api_key.is_empty() {
            key_role == Role::Vendor
        } else {
            key_name == inner.extension.api_key
        };
        if !key_ok {
            return Err(Refusal {
                status: 403,
                message: "This key is not the environment's key.".into(),
            });
        }
        if let Some(rule) = Platform::fault(
            &mut inner,
            WsPoint::Upgrade,
            &[WsAction::Refuse],
            runner_type,
        ) && rule.action == WsAction::Refuse
        {
            let status = rule.status.unwrap_or(502);
            inner.connection_log.push(
                json!({"at": now_text(), "event": "refused", "status": status,
                "runner_type": runner_type}),
            );
            return Err(Refusal {
                status,
                message: "Injected fault.".into(),
            });
        }
        Ok(())
    }

    /// Registers an upgraded connection. Returns its id, its outbound queue, and whether an
    /// upgrade fault asks to drop it at once.
    pub fn connect(
        &self,
        instance: &str,
        query: &HashMap<String, String>,
        key_name: &str,
    ) -> (u64, mpsc::UnboundedReceiver<Outbound>) {
        let mut inner = self.lock();
        let id = inner.next_conn;
        inner.next_conn += 1;
        let (tx, rx) = mpsc::unbounded_channel();
        let runner_type = query.get("runner_type").cloned();
        let num = |k: &str| query.get(k).and_then(|v| v.parse::<u64>().ok());
        let conn = Conn {
            instance: instance.to_owned(),
            runner_type: runner_type.clone(),
            running_tasks: num("running_tasks"),
            running_scheduled_tasks: num("running_scheduled_tasks"),
            key_name: key_name.to_owned(),
            tx,
            connected_at: now_text(),
            setup_done: false,
            draining: false,
            frames_in: 0,
            frames_out: 0,
        };
        let mut problems = Vec::new();
        for k in ["running_tasks", "running_scheduled_tasks", "runner_type"] {
            if !query.contains_key(k) {
                problems.push(format!("the connection URL has no {k} parameter"));
            }
        }
        if let Some(rt) = &runner_type
            && !matches!(rt.as_str(), "background" | "interactive")
        {
            problems.push(format!(
                "runner_type {rt:?} is not background or interactive"
            ));
        }
        for p in problems {
            protocol_error(&mut inner, id, None, p);
        }
        inner.connection_log.push(json!({
            "at": conn.connected_at, "event": "connected", "connection": id, "instance": instance,
            "runner_type": runner_type, "running_tasks": conn.running_tasks,
            "running_scheduled_tasks": conn.running_scheduled_tasks,
        }));
        if let Some(rule) = Platform::fault(
            &mut inner,
            WsPoint::Upgrade,
            &[WsAction::Drop],
            runner_type.as_deref(),
        ) && rule.action == WsAction::Drop
        {
            let _ = conn.tx.send(Outbound::Drop);
        }
        inner.connections.insert(id, conn);
        info!(connection = id, %instance, runner_type = runner_type.as_deref().unwrap_or("-"), "runner connected");
        (id, rx)
    }

    /// A connection ended: its unanswered tasks are delivered again later.
    pub fn disconnect(&self, conn_id: u64, reason: &str) {
        let mut inner = self.lock();
        let Some(conn) = inner.connections.remove(&conn_id) else {
            return;
        };
        let delay = Duration::from_millis(inner.settings.redelivery_delay_ms);
        let now = Instant::now();
        let mut requeued = 0;
        let out: Vec<usize> = inner
            .processing
            .iter()
            .copied()
            .filter(|&i| inner.tasks[i].state == TaskState::Processing(conn_id))
            .collect();
        for i in out {
            let t = &mut inner.tasks[i];
            t.state = TaskState::Scheduled;
            t.not_before = now + delay;
            if let Some(a) = t
                .attempts
                .iter_mut()
                .rev()
                .find(|a| a.conn == conn_id && a.output.is_none())
            {
                a.lost = Some(format!("connection lost: {reason}"));
            }
            inner.track(i);
            requeued += 1;
        }
        inner.connection_log.push(json!({
            "at": now_text(), "event": "disconnected", "connection": conn_id,
            "instance": conn.instance, "runner_type": conn.runner_type, "reason": reason,
            "tasks_to_deliver_again": requeued,
        }));
        info!(connection = conn_id, %reason, requeued, "runner disconnected");
        drop(inner);
        self.wake.notify_one();
    }

    /// A text frame from a runner.
    pub fn on_text(&self, conn_id: u64, text: &str) {
        let mut inner = self.lock();
        if let Some(c) = inner.connections.get_mut(&conn_id) {
            c.frames_in += 1;
        }
        let frame: Json = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                protocol_error(
                    &mut inner,
                    conn_id,
                    None,
                    format!("a frame is not JSON: {e}"),
                );
                return;
            }
        };
        if frame.get("version") != Some(&json!(2)) {
            protocol_error(
                &mut inner,
                conn_id,
                None,
                format!(
                    "frame version is {}, 2 expected",
                    frame.get("version").unwrap_or(&Json::Null)
                ),
            );
        }
        match frame.get("message_type").and_then(Json::as_str) {
            Some("setup_request") => self.on_setup_request(&mut inner, conn_id, &frame),
            Some("task") => self.on_result(&mut inner, conn_id, &frame),
            Some("shutdown") => {
                if !frame.get("data").is_some_and(Json::is_null) {
                    protocol_error(
                        &mut inner,
                        conn_id,
                        None,
                        "a shutdown frame's data must be null".into(),
                    );
                }
                if let Some(c) = inner.connections.get_mut(&conn_id) {
                    c.draining = true;
                }
                inner.connection_log.push(
                    json!({"at": now_text(), "event": "runner_shutdown", "connection": conn_id}),
                );
                info!(connection = conn_id, "runner announced it is stopping");
            }
            other => protocol_error(
                &mut inner,
                conn_id,
                None,
                format!("message_type {other:?} is not one a runner sends"),
            ),
        }
    }

    /// Schedules of the dataset with `sandbox_fire_after_seconds` fire once, that long after
    /// the first runner session for background tasks is set up: a sandbox that shows the
    /// whole story without anyone calling the admin API.
    fn maybe_start_schedules(&self, inner: &mut Inner) {
        if inner.schedules_started {
            return;
        }
        let ready = inner
            .connections
            .values()
            .any(|c| c.setup_done && c.runner_type.as_deref().is_none_or(|r| r == "background"));
        if !ready {
            return;
        }
        inner.schedules_started = true;
        let due: Vec<(String, f64)> = inner
            .extension
            .schedules
            .iter()
            .filter(|s| s["status"].as_str().is_none_or(|st| st == "enabled"))
            .filter_map(|s| {
                Some((
                    s["id"].as_str()?.to_owned(),
                    s["sandbox_fire_after_seconds"].as_f64()?,
                ))
            })
            .collect();
        for (id, after) in due {
            let spec = TaskSpec {
                category: "scheduled".into(),
                event_type: "scheduled_execution".into(),
                object_id: id.clone(),
                ..TaskSpec::default()
            };
            if let Ok(i) = add_task(inner, spec) {
                inner.tasks[i].not_before =
                    Instant::now() + Duration::from_secs_f64(after.max(0.0));
                info!(schedule = %id, after_s = after, "schedule will fire");
            }
        }
    }

    /// A binary frame from a runner: not part of the protocol.
    pub fn on_binary(&self, conn_id: u64) {
        let mut inner = self.lock();
        protocol_error(
            &mut inner,
            conn_id,
            None,
            "a binary frame: the protocol is JSON text".into(),
        );
    }

    fn on_setup_request(&self, inner: &mut Inner, conn_id: u64, frame: &Json) {
        let data = &frame["data"];
        let problems = check_setup_request(data);
        let (problems, notes) = problems;
        let fatal = !problems.is_empty();
        for p in problems.into_iter().chain(notes) {
            protocol_error(inner, conn_id, None, p);
        }
        let runner_type = inner
            .connections
            .get(&conn_id)
            .and_then(|c| c.runner_type.clone());
        if fatal {
            // Connect refuses a setup it cannot read; the runner sees the connection close.
            if let Some(c) = inner.connections.get(&conn_id) {
                let _ = c.tx.send(Outbound::Drop);
            }
            return;
        }
        let subs: BTreeMap<String, Vec<String>> = data["event_subscriptions"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_array()
                                .map(|a| {
                                    a.iter()
                                        .filter_map(|s| s.as_str().map(str::to_owned))
                                        .collect()
                                })
                                .unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        inner.subscriptions = Some(subs);
        for v in data["variables"].as_array().into_iter().flatten() {
            let name = v["name"].as_str().unwrap_or_default();
            if !inner.variables.iter().any(|x| x.name == name) {
                inner.variables.push(VarState {
                    name: name.to_owned(),
                    value: v["initial_value"].as_str().unwrap_or_default().to_owned(),
                    secure: v["secure"].as_bool().unwrap_or(false),
                });
            }
        }
        if let Some(rule) = Platform::fault(
            inner,
            WsPoint::Setup,
            &[WsAction::Drop, WsAction::Silence],
            runner_type.as_deref(),
        ) {
            inner
                .connection_log
                .push(json!({"at": now_text(), "event": "setup_fault",
                "connection": conn_id, "action": rule.action}));
            if rule.action == WsAction::Drop
                && let Some(c) = inner.connections.get(&conn_id)
            {
                let _ = c.tx.send(Outbound::Drop);
            }
            return;
        }
        let response = setup_response(inner);
        if let Some(c) = inner.connections.get_mut(&conn_id) {
            c.setup_done = true;
            c.frames_out += 1;
            let _ = c.tx.send(Outbound::Text(response));
        }
        // Tasks lost with an earlier connection wait a moment more: the runner sends the
        // results it kept first, so they need not be delivered again.
        let wanted = runner_type.as_deref();
        let hold = Instant::now() + Duration::from_millis(inner.settings.redelivery_delay_ms);
        let waiting: Vec<usize> = inner.waiting.iter().copied().collect();
        for i in waiting {
            let t = &mut inner.tasks[i];
            if t.state != TaskState::Scheduled {
                continue;
            }
            let routed = if t.category == "interactive" {
                "interactive"
            } else {
                "background"
            };
            let lost = t
                .attempts
                .last()
                .is_some_and(|a| a.output.is_none() && a.lost.is_some());
            if lost && wanted.is_none_or(|w| w == routed) {
                t.not_before = t.not_before.max(hold);
            }
        }
        self.maybe_start_schedules(inner);
        self.wake.notify_one();
    }

    fn on_result(&self, inner: &mut Inner, conn_id: u64, frame: &Json) {
        let data = &frame["data"];
        let task_id = data["options"]["task_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let runner_type = inner
            .connections
            .get(&conn_id)
            .and_then(|c| c.runner_type.clone());
        if let Some(rule) = Platform::fault(
            inner,
            WsPoint::Result,
            &[WsAction::Drop, WsAction::Silence],
            runner_type.as_deref(),
        ) {
            inner
                .connection_log
                .push(json!({"at": now_text(), "event": "result_fault",
                "connection": conn_id, "task_id": task_id, "action": rule.action}));
            // The platform never saw this result: the delivery counts as lost, and the task
            // goes out again (after the reconnect, when the connection is dropped too).
            let delay = Duration::from_millis(inner.settings.redelivery_delay_ms);
            if let Some(&i) = inner.task_index.get(&task_id) {
                let t = &mut inner.tasks[i];
                if let Some(a) = t.attempts.iter_mut().rev().find(|a| a.output.is_none()) {
                    a.lost = Some("result lost (injected fault)".into());
                }
                if matches!(t.state, TaskState::Processing(_)) {
                    t.state = TaskState::Scheduled;
                    t.not_before = Instant::now() + delay;
                }
                inner.track(i);
            }
            self.wake.notify_one();
            if rule.action == WsAction::Drop
                && let Some(c) = inner.connections.get(&conn_id)
            {
                let _ = c.tx.send(Outbound::Drop);
            }
            return;
        }
        inner.results_received += 1;
        if inner.forgotten.contains(&task_id) {
            inner.protocol_notes.push(
                json!({"at": now_text(), "connection": conn_id, "task_id": task_id,
                "note": "a result for a task forgotten by a reset"}),
            );
            return;
        }
        let Some(&index) = inner.task_index.get(&task_id) else {
            protocol_error(
                inner,
                conn_id,
                Some(&task_id),
                "a result for a task the platform never sent".into(),
            );
            return;
        };
        let problems = {
            let t = &inner.tasks[index];
            check_result(data, t)
        };
        for p in problems {
            protocol_error(inner, conn_id, Some(&task_id), p);
        }
        if let Some(m) = data["output"]["message"].as_str()
            && m.chars().count() > 4000
        {
            inner.protocol_notes.push(json!({"at": now_text(), "connection": conn_id, "task_id": task_id,
                "note": format!("a message of {} characters, kept cut to 4000", m.chars().count())}));
        }
        let settings = inner.settings.clone();
        let instance = inner
            .connections
            .get(&conn_id)
            .map(|c| c.instance.clone())
            .unwrap_or_default();
        let t = &mut inner.tasks[index];
        if t.state.is_final() {
            t.duplicates += 1;
            let same = |o: &Json| {
                ["result", "data", "countdown", "message"]
                    .iter()
                    .map(|k| o[*k].clone())
                    .collect::<Vec<_>>()
            };
            if t.final_output.as_ref().map(same) != Some(same(&data["output"])) {
                t.conflicting += 1;
                warn!(task_id = %task_id, "a second, different result for a finished task");
            } else {
                debug!(task_id = %task_id, "a second, identical result for a finished task");
            }
            return;
        }
        // No delivery waits for an answer (the task waits for a retry or reschedule): a late
        // copy of an answer already counted, not a new one.
        if !t.attempts.iter().any(|a| a.output.is_none()) {
            t.duplicates += 1;
            debug!(task_id = %task_id, "a result with no delivery open; counted as a duplicate");
            return;
        }
        let output = data["output"].clone();
        let at = now_text();
        if let Some(a) = t.attempts.iter_mut().rev().find(|a| a.output.is_none()) {
            a.answered_at = Some(at.clone());
            a.output = Some(output.clone());
            if a.conn != conn_id {
                a.lost = Some(format!(
                    "answered on connection {conn_id} ({instance}) after a reconnect"
                ));
            }
        }
        t.runtime_total_ms += output["runtime"].as_f64().unwrap_or(0.0) * 1000.0;
        t.output = output["message"]
            .as_str()
            .map(|m| m.chars().take(4000).collect());
        let result = output["result"].as_str().unwrap_or_default();
        let now = Instant::now();
        match result {
            "retry" | "reschedule" => {
                t.tries += 1;
                if result == "retry" {
                    t.retry_count += 1;
                } else {
                    t.rescheduled_count += 1;
                    t.rescheduled_at = Some(at.clone());
                }
                if t.tries >= settings.max_tries {
                    t.state = TaskState::Failed;
                    t.output = Some(format!(
                        "Given up after {} deliveries answered retry or reschedule. Last message: {}",
                        t.tries,
                        t.output.clone().unwrap_or_default()
                    ));
                } else {
                    let delay = if result == "retry" {
                        settings.scaled(settings.retry_delay_s)
                    } else {
                        settings.scaled(output["countdown"].as_f64().unwrap_or(0.0))
                    };
                    t.not_before = now + delay;
                    t.state = if result == "retry" {
                        TaskState::Retrying
                    } else {
                        TaskState::Rescheduled
                    };
                }
            }
            "success" => t.state = TaskState::Succeeded,
            "skip" => t.state = TaskState::Skipped,
            _ => t.state = TaskState::Failed,
        }
        debug!(task_id = %task_id, result, state = t.state.as_str(), "task result");
        let is_final = t.state.is_final();
        inner.track(index);
        let t = &mut inner.tasks[index];
        if is_final {
            t.completed_at = Some(at);
            t.final_output = Some(output);
            let view = task_dump(t, &inner.extension, &inner.account);
            let t = &mut inner.tasks[index];
            for w in t.waiters.drain(..) {
                let _ = w.send(view.clone());
            }
        }
        self.wake.notify_one();
    }

    /// A usage file event: a background task when the runner subscribed to it.
    pub fn on_usage_event(&self, event: &SandboxEvent, file_vendor: Option<&str>) {
        let status = match event.kind.as_str() {
            "usage_file.status" => event.to.clone(),
            "usage_file.created" => Some("draft".to_owned()),
            _ => None,
        };
        let Some(status) = status else {
            return;
        };
        let mut inner = self.lock();
        if file_vendor != Some(inner.account.0.as_str()) {
            return;
        }
        let subscribed = inner
            .subscriptions
            .as_ref()
            .and_then(|s| s.get("usage_file_request_processing"))
            .is_some_and(|statuses| statuses.is_empty() || statuses.contains(&status));
        if !subscribed {
            return;
        }
        let spec = TaskSpec {
            category: "background".into(),
            event_type: "usage_file_request_processing".into(),
            object_id: event.object_id.clone(),
            ..TaskSpec::default()
        };
        let _ = add_task(&mut inner, spec);
        drop(inner);
        self.wake.notify_one();
    }

    /// Adds a task; the returned receiver gets the task when it is finished.
    pub fn submit(&self, spec: TaskSpec) -> Result<(String, oneshot::Receiver<Json>), String> {
        let mut inner = self.lock();
        let index = add_task(&mut inner, spec)?;
        let (tx, rx) = oneshot::channel();
        inner.tasks[index].waiters.push(tx);
        let id = inner.tasks[index].id.clone();
        drop(inner);
        self.wake.notify_one();
        Ok((id, rx))
    }

    /// Triggers a schedule: a scheduled task for it.
    pub fn trigger_schedule(&self, schedule_id: &str) -> Result<(Json, String), String> {
        let mut inner = self.lock();
        let Some(schedule) = inner
            .extension
            .schedules
            .iter()
            .find(|s| s["id"] == schedule_id)
            .cloned()
        else {
            return Err(format!("No schedule {schedule_id}."));
        };
        if schedule["status"].as_str().is_some_and(|s| s != "enabled") {
            return Err(format!("Schedule {schedule_id} is not enabled."));
        }
        let index = add_task(
            &mut inner,
            TaskSpec {
                category: "scheduled".into(),
                event_type: "scheduled_execution".into(),
                object_id: schedule_id.to_owned(),
                ..TaskSpec::default()
            },
        )?;
        let at = now_text();
        if let Some(s) = inner
            .extension
            .schedules
            .iter_mut()
            .find(|s| s["id"] == schedule_id)
            && let Some(events) = s
                .as_object_mut()
                .map(|o| o.entry("events").or_insert(json!({})))
            && let Some(events) = events.as_object_mut()
        {
            events.insert("last_triggered".into(), json!({"at": at}));
        }
        let task_id = inner.tasks[index].id.clone();
        let schedule = inner
            .extension
            .schedules
            .iter()
            .find(|s| s["id"] == schedule_id)
            .cloned()
            .unwrap_or(schedule);
        drop(inner);
        self.wake.notify_one();
        Ok((schedule, task_id))
    }

    /// Sends the due tasks to connected sessions. Returns when the next one is due.
    pub fn deliver_due(&self) -> Option<Instant> {
        let mut inner = self.lock();
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        let mut load: HashMap<u64, usize> = HashMap::new();
        for &i in &inner.processing {
            if let TaskState::Processing(c) = inner.tasks[i].state {
                *load.entry(c).or_default() += 1;
            }
        }
        let waiting: Vec<usize> = inner.waiting.iter().copied().collect();
        for i in waiting {
            let t = &inner.tasks[i];
            if !t.state.waiting() {
                continue;
            }
            if t.not_before > now {
                next = Some(next.map_or(t.not_before, |n| n.min(t.not_before)));
                continue;
            }
            let wanted = if t.category == "interactive" {
                "interactive"
            } else {
                "background"
            };
            let conn = inner
                .connections
                .iter()
                .filter(|(_, c)| {
                    c.setup_done
                        && !c.draining
                        && c.runner_type.as_deref().is_none_or(|rt| rt == wanted)
                })
                .min_by_key(|(id, _)| load.get(id).copied().unwrap_or(0))
                .map(|(id, _)| *id);
            let Some(conn_id) = conn else {
                continue;
            };
            *load.entry(conn_id).or_default() += 1;
            let frame = json!({"version": 2, "message_type": "task", "data": {
                "options": t.options, "input": t.input, "output": null, "model_type": "task"}})
            .to_string();
            let runner_type = inner
                .connections
                .get(&conn_id)
                .and_then(|c| c.runner_type.clone());
            let fault = Platform::fault(
                &mut inner,
                WsPoint::Task,
                &[WsAction::Drop],
                runner_type.as_deref(),
            );
            let Some(c) = inner.connections.get_mut(&conn_id) else {
                continue;
            };
            c.frames_out += 1;
            let instance = c.instance.clone();
            let _ = c.tx.send(Outbound::Text(frame));
            if fault.is_some() {
                let _ = c.tx.send(Outbound::Drop);
            }
            let t = &mut inner.tasks[i];
            t.state = TaskState::Processing(conn_id);
            t.attempts.push(Attempt {
                conn: conn_id,
                instance,
                delivered_at: now_text(),
                answered_at: None,
                output: None,
                lost: None,
            });
            debug!(task_id = %t.id, connection = conn_id, "task delivered");
            inner.track(i);
        }
        next
    }

    /// Sends `shutdown` to the matching connections; returns how many.
    pub fn shutdown(&self, filter: &ConnFilter) -> usize {
        let frame = json!({"version": 2, "message_type": "shutdown", "data": null}).to_string();
        // In one critical section with the frame: a runner told to stop gets no new tasks.
        self.send_marking(
            filter,
            || Outbound::Text(frame.clone()),
            "shutdown_sent",
            true,
        )
    }

    /// Drops the matching connections; returns how many.
    pub fn drop_connections(&self, filter: &ConnFilter) -> usize {
        self.send(filter, || Outbound::Drop, "drop_requested")
    }

    /// Sends raw text (or bytes) to the matching connections; returns how many.
    pub fn send_raw(&self, filter: &ConnFilter, text: &str, binary: bool) -> usize {
        self.send(
            filter,
            || {
                if binary {
                    Outbound::Binary(text.as_bytes().to_vec())
                } else {
                    Outbound::Text(text.to_owned())
                }
            },
            "raw_sent",
        )
    }

    fn send(&self, filter: &ConnFilter, make: impl Fn() -> Outbound, event: &str) -> usize {
        self.send_marking(filter, make, event, false)
    }

    fn send_marking(
        &self,
        filter: &ConnFilter,
        make: impl Fn() -> Outbound,
        event: &str,
        draining: bool,
    ) -> usize {
        let mut inner = self.lock();
        let mut n = 0;
        let mut ids = Vec::new();
        for (id, c) in inner.connections.iter_mut() {
            if filter.matches(c) {
                c.draining |= draining;
                c.frames_out += 1;
                let _ = c.tx.send(make());
                ids.push(*id);
                n += 1;
            }
        }
        inner
            .connection_log
            .push(json!({"at": now_text(), "event": event, "connections": ids}));
        n
    }

    /// Changes variables, log levels and whether the logging key is handed out, and sends the
    /// new setup to every set-up session, as Connect does when a variable is edited. Returns
    /// how many sessions got it.
    pub fn update_setup(
        &self,
        variables: &BTreeMap<String, Json>,
        log_level: Option<String>,
        runner_log_level: Option<String>,
        send_logging_key: Option<bool>,
    ) -> Result<usize, String> {
        let mut inner = self.lock();
        for (name, v) in variables {
            let (value, secure) = match v {
                Json::String(s) => (s.clone(), None),
                Json::Object(o) => (
                    o.get("value")
                        .and_then(Json::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    o.get("secure").and_then(Json::as_bool),
                ),
                other => {
                    return Err(format!(
                        "variable {name}: give a string or {{value, secure}}, not {other}"
                    ));
                }
            };
            match inner.variables.iter_mut().find(|x| x.name == *name) {
                Some(x) => {
                    x.value = value;
                    if let Some(s) = secure {
                        x.secure = s;
                    }
                }
                None => inner.variables.push(VarState {
                    name: name.clone(),
                    value,
                    secure: secure.unwrap_or(false),
                }),
            }
        }
        if let Some(l) = log_level {
            inner.settings.log_level = l;
        }
        if let Some(l) = runner_log_level {
            inner.settings.runner_log_level = l;
        }
        if let Some(send) = send_logging_key {
            inner.settings.send_logging_key = send;
        }
        let frame = setup_response(&inner);
        let mut n = 0;
        for c in inner.connections.values_mut().filter(|c| c.setup_done) {
            c.frames_out += 1;
            let _ = c.tx.send(Outbound::Text(frame.clone()));
            n += 1;
        }
        Ok(n)
    }

    /// Connect's view of a schedule.
    pub fn schedule(&self, id: &str) -> Option<Json> {
        self.lock()
            .extension
            .schedules
            .iter()
            .find(|s| s["id"] == id)
            .cloned()
    }

    pub fn schedules(&self) -> Vec<Json> {
        self.lock().extension.schedules.clone()
    }

    pub fn installation(&self, id: &str) -> Option<Json> {
        self.lock()
            .extension
            .installations
            .iter()
            .find(|s| s["id"] == id)
            .cloned()
    }

    /// Connect's view of the tasks (`eaas.Task`), oldest first.
    pub fn tasks(&self) -> Vec<Json> {
        let inner = self.lock();
        inner
            .tasks
            .iter()
            .map(|t| task_json(t, &inner.extension, &inner.account))
            .collect()
    }

    pub fn task(&self, id: &str) -> Option<Json> {
        let inner = self.lock();
        let i = *inner.task_index.get(id)?;
        Some(task_json(&inner.tasks[i], &inner.extension, &inner.account))
    }

    /// The admin view of a task, with its deliveries and final output.
    pub fn task_dump(&self, id: &str) -> Option<Json> {
        let inner = self.lock();
        let i = *inner.task_index.get(id)?;
        Some(task_dump(&inner.tasks[i], &inner.extension, &inner.account))
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
            "faults": inner.faults.iter().map(|(r, left)| json!({"rule": r, "left": left})).collect::<Vec<_>>(),
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
        inner.faults.clear();
        inner.settings = PlatformSettings::default();
    }
}

impl Inner {
    /// Files task `i` in the waiting or processing index by its state.
    fn track(&mut self, i: usize) {
        let state = self.tasks[i].state;
        if state.waiting() {
            self.waiting.insert(i);
        } else {
            self.waiting.remove(&i);
        }
        if matches!(state, TaskState::Processing(_)) {
            self.processing.insert(i);
        } else {
            self.processing.remove(&i);
        }
    }
}

fn protocol_error(inner: &mut Inner, conn_id: u64, task_id: Option<&str>, error: String) {
    warn!(connection = conn_id, task_id = task_id.unwrap_or("-"), %error, "runner protocol error");
    inner
        .protocol_errors
        .push(json!({"at": now_text(), "connection": conn_id, "task_id": task_id, "error": error}));
}

fn add_task(inner: &mut Inner, spec: TaskSpec) -> Result<usize, String> {
    if !matches!(
        spec.category.as_str(),
        "background" | "interactive" | "scheduled"
    ) {
        return Err(format!(
            "category {:?} is not background, interactive or scheduled",
            spec.category
        ));
    }
    if spec.event_type.is_empty() || spec.object_id.is_empty() {
        return Err("event_type and object_id are required".into());
    }
    let seq = inner.next_task;
    inner.next_task += 1;
    // The first part differs between sandbox runs, so a runner that outlives a restarted
    // sandbox never takes a new task for one it answered before.
    let id = format!("TQ-{:03}-{:03}-{:03}", inner.run_id, seq / 1000, seq % 1000);
    let correlation_id = correlation(&mut inner.rng);
    let connect_correlation_id = spec
        .connect_correlation_id
        .clone()
        .unwrap_or_else(|| correlation(&mut inner.rng));
    let options = json!({
        "task_id": id, "task_category": spec.category, "correlation_id": correlation_id,
        "reply_to": null, "api_key": spec.api_key, "installation_id": spec.installation_id,
        "connect_correlation_id": connect_correlation_id,
    });
    let input =
        json!({"event_type": spec.event_type, "object_id": spec.object_id, "data": spec.data});
    let record = TaskRecord {
        id: id.clone(),
        category: spec.category,
        options,
        input,
        state: TaskState::Scheduled,
        not_before: Instant::now(),
        tries: 0,
        retry_count: 0,
        rescheduled_count: 0,
        attempts: Vec::new(),
        duplicates: 0,
        conflicting: 0,
        created_at: now_text(),
        completed_at: None,
        rescheduled_at: None,
        output: None,
        final_output: None,
        runtime_total_ms: 0.0,
        waiters: Vec::new(),
    };
    inner.tasks.push(record);
    let index = inner.tasks.len() - 1;
    inner.task_index.insert(id, index);
    inner.track(index);
    Ok(index)
}

fn task_json(t: &TaskRecord, ext: &ExtensionSetup, account: &(String, String)) -> Json {
    let mut events = Map::new();
    events.insert("created".into(), json!({"at": t.created_at}));
    if let Some(first) = t.attempts.first() {
        events.insert("assigned".into(), json!({"at": first.delivered_at}));
    }
    if let Some(at) = &t.rescheduled_at {
        events.insert("rescheduled".into(), json!({"at": at}));
    }
    if let Some(at) = &t.completed_at {
        events.insert("completed".into(), json!({"at": at}));
    }
    json!({
        "id": t.id,
        "object": {"id": t.input["object_id"], "type": t.input["event_type"], "category": t.category},
        "assignee": t.attempts.last().map(|a| a.instance.clone()),
        "status": t.state.as_str(),
        "output": t.output,
        "environment": {"id": ext.environment.id, "type": ext.environment.kind},
        "owner": {"id": account.0, "name": account.1},
        "events": events,
        "retry_count": t.retry_count,
        "rescheduled_count": t.rescheduled_count,
        "runtime_total": t.runtime_total_ms,
    })
}

/// The admin view of a task: Connect's view plus every delivery and answer.
fn task_dump(t: &TaskRecord, ext: &ExtensionSetup, account: &(String, String)) -> Json {
    let mut j = task_json(t, ext, account);
    j["deliveries"] = Json::Array(
        t.attempts
            .iter()
            .map(|a| {
                json!({"connection": a.conn, "instance": a.instance, "delivered_at": a.delivered_at,
                       "answered_at": a.answered_at, "output": a.output, "lost": a.lost})
            })
            .collect(),
    );
    j["duplicate_results"] = json!(t.duplicates);
    j["conflicting_results"] = json!(t.conflicting);
    j["final_output"] = t.final_output.clone().unwrap_or(Json::Null);
    j
}

/// The `setup_response` frame for the current state.
fn setup_response(inner: &Inner) -> String {
    let subscribed: Vec<String> = inner
        .subscriptions
        .as_ref()
        .map(|s| s.keys().cloned().collect())
        .unwrap_or_default();
    let definitions: Vec<Json> = EVENT_TYPES
        .iter()
        .filter(|e| subscribed.iter().any(|s| s == e.event_type))
        .filter_map(|e| {
            e.endpoints.map(|(collection, resource)| {
                json!({"event_type": e.event_type, "api_collection_endpoint": collection,
                       "api_resource_endpoint": resource, "api_collection_filter": STATUS_FILTER_TEMPLATE})
            })
        })
        .collect();
    let variables: Vec<Json> = inner
        .variables
        .iter()
        .map(|v| {
            let value = v
                .value
                .replace("{origin}", &inner.origin)
                .replace("{usage_token}", inner.usage_token.expose());
            json!({"name": v.name, "value": value, "secure": v.secure})
        })
        .collect();
    json!({"version": 2, "message_type": "setup_response", "data": {
        "variables": variables,
        "environment_type": inner.extension.environment.kind,
        "logging": {
            "logging_api_key": inner.settings.send_logging_key.then(|| inner.logging_key.expose()),
            "log_level": inner.settings.log_level,
            "runner_log_level": inner.settings.runner_log_level,
            "meta": {
                // What Connect deployed; the sandbox "deploys" this build.
                "repository_tag": env!("CARGO_PKG_VERSION"),
                "account_id": inner.account.0,
                "account_name": inner.account.1,
                "service_id": inner.extension.service_id,
                "products": inner.products,
                "hub_id": null,
            },
        },
        "event_definitions": definitions,
        "environment_runtime": "local",
        "environment_hostname": null,
        "environment_domain": null,
        "model_type": "setup_response",
    }})
    .to_string()
}

/// What is wrong with a setup request, as Connect would refuse it.
fn check_setup_request(data: &Json) -> (Vec<String>, Vec<String>) {
    let mut p = Vec::new();
    // What Connect may well accept (its checks are not documented): noted, not refused.
    let mut n = Vec::new();
    let Some(obj) = data.as_object() else {
        return (vec!["setup_request without data".into()], n);
    };
    if obj.get("model_type").and_then(Json::as_str) != Some("setup_request") {
        p.push("setup_request data.model_type must be \"setup_request\"".into());
    }
    for key in [
        "event_subscriptions",
        "ui_modules",
        "icon",
        "variables",
        "schedulables",
        "anvil_callables",
        "transformations",
        "audience",
        "repository",
        "runner_version",
        "proxied_connect_api",
    ] {
        if !obj.contains_key(key) {
            p.push(format!("setup_request has no {key}"));
        }
    }
    match obj.get("event_subscriptions").and_then(Json::as_object) {
        None => p.push("event_subscriptions must be an object".into()),
        Some(subs) => {
            for (event, statuses) in subs {
                let known = EVENT_TYPES.iter().find(|e| e.event_type == event);
                let Some(list) = statuses.as_array() else {
                    p.push(format!(
                        "event_subscriptions.{event} must be a list of statuses"
                    ));
                    continue;
                };
                match known {
                    None => n.push(format!(
                        "event_subscriptions names unknown event type {event}"
                    )),
                    Some(EventType {
                        statuses: allowed, ..
                    }) => {
                        for s in list {
                            match s.as_str() {
                                Some(s) if allowed.contains(&s) => {}
                                _ => n.push(format!(
                                    "event_subscriptions.{event}: {s} is not a status of this event"
                                )),
                            }
                        }
                        if !allowed.is_empty() && list.is_empty() {
                            n.push(format!("event_subscriptions.{event} needs statuses"));
                        }
                    }
                }
            }
        }
    }
    match obj.get("variables").and_then(Json::as_array) {
        None => p.push("variables must be a list".into()),
        Some(vars) => {
            for (i, v) in vars.iter().enumerate() {
                if !v["name"].is_string() || !v["initial_value"].is_string() {
                    p.push(format!(
                        "variables[{i}] needs a name and a string initial_value"
                    ));
                }
                if v.get("secure").is_some_and(|s| !s.is_boolean()) {
                    p.push(format!("variables[{i}].secure must be a boolean"));
                }
            }
        }
    }
    match obj.get("schedulables").and_then(Json::as_array) {
        None => p.push("schedulables must be a list".into()),
        Some(list) => {
            for (i, s) in list.iter().enumerate() {
                for k in ["method", "name", "description"] {
                    if !s[k].is_string() {
                        p.push(format!("schedulables[{i}].{k} must be a string"));
                    }
                }
            }
        }
    }
    let repo = obj.get("repository");
    for k in ["readme_url", "changelog_url"] {
        if !repo.and_then(|r| r.get(k)).is_some_and(Json::is_string) {
            p.push(format!("repository.{k} must be a string"));
        }
    }
    match obj.get("audience") {
        None | Some(Json::Null) => {}
        Some(Json::Array(a)) => {
            for x in a {
                if !matches!(x.as_str(), Some("vendor" | "distributor" | "reseller")) {
                    p.push(format!(
                        "audience {x} is not vendor, distributor or reseller"
                    ));
                }
            }
        }
        Some(other) => p.push(format!("audience must be a list, not {other}")),
    }
    if !obj.get("runner_version").is_some_and(Json::is_string) {
        p.push("runner_version must be a string".into());
    }
    (p, n)
}

/// What is wrong with a result frame, against the task as sent.
fn check_result(data: &Json, t: &TaskRecord) -> Vec<String> {
    let mut p = Vec::new();
    if data["model_type"] != "task" {
        p.push("result data.model_type must be \"task\"".into());
    }
    if data["options"] != t.options {
        p.push("result options differ from the task's".into());
    }
    if data["input"] != t.input {
        p.push("result input differs from the task's".into());
    }
    let Some(out) = data["output"].as_object() else {
        p.push("result without output".into());
        return p;
    };
    for key in ["result", "data", "countdown", "runtime", "message"] {
        if !out.contains_key(key) {
            p.push(format!("output has no {key}"));
        }
    }
    if let Some(extra) = out.keys().find(|k| {
        !matches!(
            k.as_str(),
            "result" | "data" | "countdown" | "runtime" | "message"
        )
    }) {
        p.push(format!("output has an unknown key {extra}"));
    }
    let result = out.get("result").and_then(Json::as_str).unwrap_or_default();
    if !matches!(result, "success" | "reschedule" | "skip" | "retry" | "fail") {
        p.push(format!("output.result {result:?} is not a result type"));
    }
    match out.get("countdown").and_then(Json::as_u64) {
        None => p.push("output.countdown must be a whole number".into()),
        Some(c) if result == "reschedule" && c < 30 => {
            p.push(format!("a reschedule's countdown is at least 30, not {c}"));
        }
        Some(c) if result != "reschedule" && c != 0 => {
            p.push(format!("countdown {c} on a {result} result"));
        }
        _ => {}
    }
    if !out
        .get("runtime")
        .and_then(Json::as_f64)
        .is_some_and(|r| r >= 0.0)
    {
        p.push("output.runtime must be a number of seconds".into());
    }
    match out.get("message") {
        // The official runner always explains a retry; a handler may skip or fail silently.
        Some(Json::Null) | None => {
            if result == "retry" {
                p.push("a retry result needs a message".into());
            }
        }
        // Longer messages are kept cut to 4000 characters, as Connect's task output is.
        Some(Json::String(_)) => {}
        Some(other) => p.push(format!("output.message must be text, not {other}")),
    }
    if t.category == "interactive" {
        let event = t.input["event_type"].as_str().unwrap_or_default();
        let http = matches!(
            event,
            "product_action_execution" | "product_custom_event_processing"
        );
        match out.get("data") {
            Some(Json::Object(d)) if !d.get("http_status").is_some_and(Json::is_u64) => {
                p.push("interactive output.data needs an http_status".into());
            }
            Some(Json::Object(_)) => {}
            _ if result == "success" || http => {
                p.push("interactive output needs data {http_status, headers, body}".into())
            }
            _ => {}
        }
    } else if !out.get("data").is_none_or(Json::is_null) {
        p.push(format!("a {} task's output.data must be null", t.category));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_list_every_known_event() {
        let defs = event_definitions();
        assert_eq!(defs.len(), EVENT_TYPES.len());
        assert_eq!(defs[0]["type"], "usage_file_request_processing");
        assert_eq!(
            defs[0]["object_statuses"].as_array().map(Vec::len),
            Some(10)
        );
    }

    #[test]
    fn fault_rules_are_checked() {
        let rule = |at, action| WsFaultRule {
            at,
            action,
            status: None,
            times: None,
            rate: None,
            runner_type: None,
        };
        assert!(rule(WsPoint::Upgrade, WsAction::Refuse).check().is_ok());
        assert!(rule(WsPoint::Task, WsAction::Refuse).check().is_err());
        assert!(rule(WsPoint::Upgrade, WsAction::Silence).check().is_err());
        assert!(rule(WsPoint::Result, WsAction::Silence).check().is_ok());
    }
}
