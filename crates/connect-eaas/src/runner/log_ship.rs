//! Log records sent to Connect's log service, so that an environment's logs show in Connect's
//! portal as they do for extensions on the official runner.
//!
//! The official runner attaches a Logz.io handler once the platform's `setup_response` carries
//! `logging.logging_api_key`: it POSTs newline-delimited JSON records to the Logz.io bulk
//! listener (`https://listener.logz.io:8071/?token=<key>`, records of `type` `python`), each with
//! the metadata the portal filters on (`api_address`, `service_id`, `environment_id`,
//! `environment_type`, `instance_id`, `account_id`, `account_name`, `repository_tag`, and
//! `task_id` inside a task). This module does the same for tracing:
//!
//! - [`LogShipper::layer`] is a `tracing_subscriber` layer with its own filter: it turns each
//!   event of the runner's and the extension's targets into one JSON line and pushes it into a
//!   bounded queue. It never waits: when the queue is full the oldest record is dropped and
//!   counted, so a listener that is down or slow never slows a task or a session.
//! - A task of its own (started when the first key arrives) takes batches from the queue and
//!   POSTs them; while the listener is unreachable the batch goes back to the queue and the
//!   task retries with backoff. One local warning says the listener is unreachable, one says
//!   when it is back and how many records were dropped meanwhile.
//! - [`LogShipper::apply`] is what the runner calls on every `setup_response`: the key, the
//!   levels (`log_level` for the extension's records, `runner_log_level` for the runner's),
//!   the metadata. Shipping is off until a key arrives; a later response without one keeps it.
//!
//! The shipper's own records, and those of the HTTP stack it uses, are never shipped (only the
//! product's own targets are, and never this module's): a listener failure must not produce
//! records about itself forever. Field values are rendered as the local output renders them
//! (a [`Secret`] prints `***`), and the program's secret-safe filter sits in front of every
//! layer, so what is masked locally is masked here.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::Notify;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber, warn};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::LookupSpan;

use super::setup::LogLevels;
use connect_client::secret::Secret;

/// The Logz.io listener the official runner's handler posts to when nothing else is said.
pub const DEFAULT_LISTENER_URL: &str = "https://listener.logz.io:8071";

/// The `type` of every record (in the query and in the record), as the official handler sends
/// it: Logz.io parses records by type, and the portal's views expect this one.
pub const LOG_TYPE: &str = "python";

/// The runner's own records (this crate's): shipped at `runner_log_level`.
const RUNNER_TARGET: &str = "connect_eaas";

/// This module's records (the shipper's warnings): local only.
const SHIPPER_TARGET: &str = module_path!();

/// The span whose `task_id` field the records inside it carry (the runner's dispatch opens it).
const TASK_SPAN: &str = "task";

/// Tuning of the queue and the sender. The defaults suit production; tests shorten the times.
#[derive(Debug, Clone)]
pub struct ShipOptions {
    /// Target prefixes of the extension's records (shipped at `log_level`): its own crate's
    /// and, by default, the REST client's (`connect_client`). The runner's own
    /// (`connect_eaas`) are always shipped, at `runner_log_level`.
    pub extension_targets: Vec<String>,
    /// Target prefixes never shipped even when an extension target covers them.
    pub excluded_targets: Vec<String>,
    /// Records waiting at most; the oldest are dropped beyond.
    pub capacity: usize,
    /// Bytes waiting at most; the oldest are dropped beyond.
    pub max_queued_bytes: usize,
    /// Bytes of one POST at most (the official handler's bulk limit is 1 MB).
    pub batch_bytes: usize,
    /// Time records may wait for a batch to fill.
    pub interval: Duration,
    /// First wait after a failed POST; doubles up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Time one POST may take (the official handler's network timeout is 10 s).
    pub request_timeout: Duration,
}

impl Default for ShipOptions {
    fn default() -> Self {
        ShipOptions {
            extension_targets: vec!["connect_client".into()],
            excluded_targets: Vec::new(),
            capacity: 10_000,
            max_queued_bytes: 16 * 1024 * 1024,
            batch_bytes: 1024 * 1024,
            interval: Duration::from_secs(1),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The fields the portal filters on, added to every record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The REST API address the runner uses (`host[:port]`, as the official runner's
    /// `API_ADDRESS`).
    pub api_address: String,
    pub service_id: Option<String>,
    pub environment_id: String,
    pub environment_type: Option<String>,
    pub instance_id: String,
    pub account_id: Option<String>,
    pub account_name: Option<String>,
    pub repository_tag: Option<String>,
}

impl RecordMetadata {
    fn to_fields(&self) -> Map<String, Value> {
        let text = |v: &str| Value::String(v.to_owned());
        let opt = |v: &Option<String>| v.as_deref().map_or(Value::Null, text);
        let mut m = Map::new();
        m.insert("api_address".into(), text(&self.api_address));
        m.insert("service_id".into(), opt(&self.service_id));
        m.insert("environment_id".into(), text(&self.environment_id));
        m.insert("environment_type".into(), opt(&self.environment_type));
        m.insert("instance_id".into(), text(&self.instance_id));
        m.insert("account_id".into(), opt(&self.account_id));
        m.insert("account_name".into(), opt(&self.account_name));
        m.insert("repository_tag".into(), opt(&self.repository_tag));
        m
    }
}

/// What a `setup_response` tells the shipper.
#[derive(Debug, Clone)]
pub struct ShipUpdate {
    /// Where to send (`LOGZIO_LISTENER_URL`, else [`DEFAULT_LISTENER_URL`]).
    pub listener_url: String,
    /// The platform's logging key; `None` keeps the one already given (or shipping off).
    pub key: Option<Secret>,
    /// The levels this response carried (tracing names); those absent stay as they were.
    pub levels: LogLevels,
    pub metadata: RecordMetadata,
}

/// Why a listener URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the log listener URL is unusable: {0}")]
pub struct ListenerUrlError(String);

/// Checks a listener URL as `LOGZIO_LISTENER_URL` gives it (an http or https URL).
pub fn check_listener_url(url: &str) -> Result<(), ListenerUrlError> {
    let u = reqwest::Url::parse(url.trim()).map_err(|e| ListenerUrlError(e.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(ListenerUrlError(format!(
            "the scheme must be http or https, not {}",
            u.scheme()
        )));
    }
    Ok(())
}

/// The bulk endpoint: `<listener>/?token=<key>&type=python`, as the official handler builds it.
fn bulk_url(listener: &str, key: &Secret) -> Result<reqwest::Url, ListenerUrlError> {
    let base = format!("{}/", listener.trim().trim_end_matches('/'));
    let mut u = reqwest::Url::parse(&base).map_err(|e| ListenerUrlError(e.to_string()))?;
    u.query_pairs_mut()
        .append_pair("token", key.expose())
        .append_pair("type", LOG_TYPE);
    Ok(u)
}

/// Records waiting to be sent, oldest first, bounded by count and bytes.
#[derive(Debug)]
struct RecordQueue {
    lines: VecDeque<String>,
    bytes: usize,
    capacity: usize,
    max_bytes: usize,
    /// Dropped since last taken by [`RecordQueue::take_dropped`].
    dropped: u64,
}

impl RecordQueue {
    fn new(capacity: usize, max_bytes: usize) -> RecordQueue {
        RecordQueue {
            lines: VecDeque::new(),
            bytes: 0,
            capacity: capacity.max(1),
            max_bytes,
            dropped: 0,
        }
    }

    fn push(&mut self, line: String) {
        self.bytes += line.len();
        self.lines.push_back(line);
        self.trim();
    }

    /// Drops the oldest records beyond the bounds (always keeping the newest one). The metric
    /// counts them now, while the listener is down, not once it takes records again.
    fn trim(&mut self) {
        let mut dropped = 0;
        while self.lines.len() > self.capacity
            || (self.bytes > self.max_bytes && self.lines.len() > 1)
        {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= old.len();
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.dropped += dropped;
            super::metrics::log_records_dropped(dropped);
        }
    }

    /// The oldest records up to `max_bytes` together (at least one, if any wait).
    fn take_batch(&mut self, max_bytes: usize) -> Vec<String> {
        let mut batch = Vec::new();
        let mut size = 0;
        while let Some(next) = self.lines.front() {
            if !batch.is_empty() && size + next.len() + 1 > max_bytes {
                break;
            }
            size += next.len() + 1;
            if let Some(line) = self.lines.pop_front() {
                self.bytes -= line.len();
                batch.push(line);
            }
        }
        batch
    }

    /// Puts a batch that could not be sent back in front, where it came from: what arrived
    /// meanwhile is newer, so the bounds drop the batch's oldest records first.
    fn put_back(&mut self, batch: Vec<String>) {
        for line in batch.into_iter().rev() {
            self.bytes += line.len();
            self.lines.push_front(line);
        }
        self.trim();
    }

    fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    fn len(&self) -> usize {
        self.lines.len()
    }

    fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Levels as numbers, so the filter reads them without a lock: 0 off, 1 error ... 5 trace.
fn level_rank(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

fn rank_of_name(name: &str) -> Option<u8> {
    name.parse::<Level>().ok().map(|l| level_rank(&l))
}

fn rank_filter(rank: u8) -> LevelFilter {
    match rank {
        0 => LevelFilter::OFF,
        1 => LevelFilter::ERROR,
        2 => LevelFilter::WARN,
        3 => LevelFilter::INFO,
        4 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// The level name a record carries: Python's, which the portal knows (it has no trace).
fn python_level(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

fn under(target: &str, prefix: &str) -> bool {
    target
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

/// Where the sender posts: the bulk URL holds the key, so it is never printed.
struct Destination {
    url: reqwest::Url,
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Destination({}://{}/?token=***)",
            self.url.scheme(),
            self.url.host_str().unwrap_or("")
        )
    }
}

/// What the layer, the filter, the handle and the sender share.
struct ShipState {
    options: ShipOptions,
    /// A key arrived: records are queued.
    active: AtomicBool,
    runner_rank: AtomicU8,
    extension_rank: AtomicU8,
    metadata: RwLock<Arc<Map<String, Value>>>,
    queue: Mutex<RecordQueue>,
    /// Wakes the sender early: a batch is full, or a flush is asked for.
    wake: Notify,
    destination: Mutex<Option<Destination>>,
    /// The sending task; started again if it ended (its runtime was shut down while the
    /// shipper lives on, as when a runner is started again in another runtime).
    sender: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Records dropped in all (the queue's count is reset when reported).
    dropped_total: AtomicU64,
}

impl ShipState {
    fn queue(&self) -> MutexGuard<'_, RecordQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn rank_for(&self, target: &str) -> Option<&AtomicU8> {
        if under(target, SHIPPER_TARGET)
            || self
                .options
                .excluded_targets
                .iter()
                .any(|t| under(target, t))
        {
            None
        } else if under(target, RUNNER_TARGET) {
            Some(&self.runner_rank)
        } else if self
            .options
            .extension_targets
            .iter()
            .any(|t| under(target, t))
        {
            Some(&self.extension_rank)
        } else {
            None
        }
    }

    fn max_rank(&self) -> u8 {
        if !self.active.load(Ordering::Relaxed) {
            return 0;
        }
        self.runner_rank
            .load(Ordering::Relaxed)
            .max(self.extension_rank.load(Ordering::Relaxed))
    }

    fn push(&self, line: String) {
        let full = {
            let mut q = self.queue();
            q.push(line);
            q.bytes() >= self.options.batch_bytes
        };
        if full {
            self.wake.notify_one();
        }
    }
}

/// The handle: gives the layer, takes what the platform says, flushes at the end. Cheap to
/// clone.
#[derive(Clone)]
pub struct LogShipper {
    state: Arc<ShipState>,
}

impl fmt::Debug for LogShipper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogShipper")
            .field("active", &self.state.active.load(Ordering::Relaxed))
            .field("queued", &self.state.queue().len())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl LogShipper {
    /// A shipper, off until [`LogShipper::apply`] gives it a key.
    pub fn new(options: ShipOptions) -> LogShipper {
        let queue = RecordQueue::new(options.capacity, options.max_queued_bytes);
        LogShipper {
            state: Arc::new(ShipState {
                options,
                active: AtomicBool::new(false),
                runner_rank: AtomicU8::new(level_rank(&Level::INFO)),
                extension_rank: AtomicU8::new(level_rank(&Level::INFO)),
                metadata: RwLock::new(Arc::new(Map::new())),
                queue: Mutex::new(queue),
                wake: Notify::new(),
                destination: Mutex::new(None),
                sender: Mutex::new(None),
                dropped_total: AtomicU64::new(0),
            }),
        }
    }

    /// The layer that queues records, with its own filter (the platform's levels), for the
    /// process's subscriber.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        RecordLayer {
            state: self.state.clone(),
        }
        .with_filter(ShipFilter {
            state: self.state.clone(),
        })
    }

    /// Takes what a `setup_response` says. Starts the sender when the first key arrives
    /// (call it inside the tokio runtime).
    pub fn apply(&self, update: ShipUpdate) {
        let state = &self.state;
        if let Some(key) = update.key.as_ref().filter(|k| !k.is_empty()) {
            match bulk_url(&update.listener_url, key) {
                Ok(url) => {
                    *state.destination.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(Destination { url });
                }
                Err(e) => {
                    warn!(error = %e, "log records are not sent to Connect");
                    return;
                }
            }
        }
        for (name, slot) in [
            (&update.levels.runner, &state.runner_rank),
            (&update.levels.extension, &state.extension_rank),
        ] {
            if let Some(rank) = name.as_deref().and_then(rank_of_name) {
                slot.store(rank, Ordering::Relaxed);
            }
        }
        *state.metadata.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(update.metadata.to_fields());
        let has_destination = state
            .destination
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if has_destination {
            state.active.store(true, Ordering::Relaxed);
            let mut sender = state.sender.lock().unwrap_or_else(|e| e.into_inner());
            if sender.as_ref().is_none_or(|s| s.is_finished()) {
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => *sender = Some(rt.spawn(send_records(state.clone()))),
                    Err(_) => {
                        warn!("log records cannot be sent to Connect outside the async runtime");
                    }
                }
            }
        }
        // The filter's answers for each call site and its level hint changed.
        tracing::callsite::rebuild_interest_cache();
    }

    /// Whether a key arrived (records are queued and sent).
    pub fn is_active(&self) -> bool {
        self.state.active.load(Ordering::Relaxed)
    }

    /// Records dropped since the start: the oldest when too many waited, and batches the
    /// listener refused (400, 401).
    pub fn dropped(&self) -> u64 {
        self.state.dropped_total.load(Ordering::Relaxed) + self.state.queue().dropped
    }

    /// Sends what waits, for at most `limit` (at the end of the process). Returns whether the
    /// queue is empty.
    pub async fn flush(&self, limit: Duration) -> bool {
        if !self.is_active() {
            return true;
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.state.queue().len() == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            self.state.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Which records are shipped: the runner's at `runner_log_level`, the extension's at
/// `log_level`, nothing before a key arrives; and the task spans always (their `task_id` is
/// what the records inside carry).
struct ShipFilter {
    state: Arc<ShipState>,
}

impl ShipFilter {
    fn wanted(&self, meta: &Metadata<'_>) -> bool {
        let Some(rank) = self.state.rank_for(meta.target()) else {
            return false;
        };
        if meta.is_span() {
            return meta.name() == TASK_SPAN;
        }
        self.state.active.load(Ordering::Relaxed)
            && level_rank(meta.level()) <= rank.load(Ordering::Relaxed)
            && crate::logging::allows(meta)
    }
}

impl<S> Filter<S> for ShipFilter {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        self.wanted(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        // Recomputed by `apply` whenever the levels change.
        if self.wanted(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        // At least info while shipping: the task span is an info span, and records inside it
        // need it even when only warnings are shipped.
        let rank = self.state.max_rank();
        Some(rank_filter(if rank > 0 { rank.max(3) } else { 0 }))
    }
}

/// A task span's id, kept for the records inside it.
struct ShippedTaskId(String);

struct RecordLayer {
    state: Arc<ShipState>,
}

impl<S> Layer<S> for RecordLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != TASK_SPAN {
            return;
        }
        let mut fields = FieldsToJson::default();
        attrs.record(&mut fields);
        if let (Some(Value::String(task_id)), Some(span)) =
            (fields.fields.remove("task_id"), ctx.span(id))
        {
            span.extensions_mut().insert(ShippedTaskId(task_id));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let task_id = ctx.event_scope(event).and_then(|scope| {
            scope
                .from_root()
                .filter_map(|span| {
                    span.extensions()
                        .get::<ShippedTaskId>()
                        .map(|t| t.0.clone())
                })
                .last()
        });
        let mut fields = FieldsToJson::default();
        event.record(&mut fields);
        let metadata = self
            .state
            .metadata
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let meta = event.metadata();
        let line = record_line(
            meta.level(),
            meta.target(),
            meta.file().zip(meta.line()),
            fields.fields,
            task_id,
            &metadata,
            &chrono::Utc::now(),
        );
        self.state.push(line);
    }
}

/// An event's fields as JSON values, each rendered as the local output renders it.
#[derive(Default)]
struct FieldsToJson {
    fields: Map<String, Value>,
}

impl Visit for FieldsToJson {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.insert(field.name().into(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.fields.insert(field.name().into(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.fields
            .insert(field.name().into(), Value::from(format!("{value:?}")));
    }
}

/// One record, as the official handler shapes it: `@timestamp`, `message`, `log_level`,
/// `logger`, `type`, `line_number`, `path_name`, then the event's fields, `task_id` inside a
/// task, and the metadata (which no event field may overwrite).
fn record_line(
    level: &Level,
    target: &str,
    location: Option<(&str, u32)>,
    mut fields: Map<String, Value>,
    task_id: Option<String>,
    metadata: &Map<String, Value>,
    now: &chrono::DateTime<chrono::Utc>,
) -> String {
    let mut record = Map::new();
    record.insert(
        "@timestamp".into(),
        Value::from(now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()),
    );
    record.insert(
        "message".into(),
        fields.remove("message").unwrap_or(Value::from("")),
    );
    record.insert("log_level".into(), Value::from(python_level(level)));
    record.insert("logger".into(), Value::from(target));
    record.insert("type".into(), Value::from(LOG_TYPE));
    if let Some((file, line)) = location {
        record.insert("line_number".into(), Value::from(line));
        record.insert("path_name".into(), Value::from(file));
    }
    for (name, value) in fields {
        record.entry(name).or_insert(value);
    }
    if let Some(id) = task_id {
        record.insert("task_id".into(), Value::from(id));
    }
    for (name, value) in metadata {
        record.insert(name.clone(), value.clone());
    }
    Value::Object(record).to_string()
}

/// How a POST went wrong.
#[derive(Debug, thiserror::Error)]
enum SendError {
    /// No answer (refused, timed out, reset): the batch waits and is sent again.
    #[error("{0}")]
    Unreachable(String),
    /// An answer other than 2xx.
    #[error("the listener answered {0}")]
    Status(u16),
}

impl SendError {
    /// The status of an answer that sending the same batch again cannot change (the official
    /// handler drops a batch answered 400, badly formed, or 401, a wrong key); `None` when a
    /// later try may succeed.
    fn refused(&self) -> Option<u16> {
        match self {
            SendError::Status(s @ (400 | 401 | 403 | 413)) => Some(*s),
            _ => None,
        }
    }
}

async fn post(
    client: &reqwest::Client,
    url: reqwest::Url,
    batch: &[String],
) -> Result<(), SendError> {
    let resp = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "text/plain")
        .body(batch.join("\n"))
        .send()
        .await
        // The URL carries the key: the error is shown without it.
        .map_err(|e| {
            SendError::Unreachable(connect_client::error_text::error_text(&e.without_url()))
        })?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(SendError::Status(resp.status().as_u16()))
    }
}

/// The sender's trouble, so that each kind is told once, not at every retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trouble {
    None,
    Unreachable,
    Refused(u16),
}

/// The sending task: batches, POSTs, retries, and the local warnings about it.
async fn send_records(state: Arc<ShipState>) {
    connect_client::install_crypto_provider();
    let client = match reqwest::Client::builder()
        .timeout(state.options.request_timeout)
        .user_agent(concat!("connect-eaas/", env!("CARGO_PKG_VERSION"), " logs"))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %connect_client::error_text::error_text(&e), "log records cannot be sent to Connect");
            return;
        }
    };
    let mut trouble = Trouble::None;
    let mut delay = state.options.retry_initial;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(state.options.interval) => {}
            _ = state.wake.notified() => {}
        }
        loop {
            let batch = state.queue().take_batch(state.options.batch_bytes);
            if batch.is_empty() {
                break;
            }
            let url = match &*state.destination.lock().unwrap_or_else(|e| e.into_inner()) {
                Some(d) => d.url.clone(),
                None => break,
            };
            let sent = batch.len();
            match post(&client, url, &batch).await {
                Ok(()) => {
                    delay = state.options.retry_initial;
                    super::metrics::log_records_sent(sent);
                    // Counted in the metric as they were dropped; told here, once.
                    let dropped = state.queue().take_dropped();
                    state.dropped_total.fetch_add(dropped, Ordering::Relaxed);
                    if dropped > 0 {
                        warn!(
                            dropped,
                            "log records dropped while they could not be sent to Connect's log listener (the oldest first)"
                        );
                    } else if trouble != Trouble::None {
                        warn!("Connect's log listener takes records again");
                    }
                    trouble = Trouble::None;
                }
                Err(e) if e.refused().is_none() => {
                    if trouble != Trouble::Unreachable {
                        warn!(
                            error = %e,
                            waiting = sent + state.queue().len(),
                            "Connect's log listener is unreachable: records wait, the oldest are dropped when too many wait"
                        );
                        trouble = Trouble::Unreachable;
                    }
                    state.queue().put_back(batch);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(state.options.retry_max);
                }
                Err(e) => {
                    let status = e.refused().unwrap_or_default();
                    state
                        .dropped_total
                        .fetch_add(sent as u64, Ordering::Relaxed);
                    super::metrics::log_records_dropped(sent as u64);
                    if trouble != Trouble::Refused(status) {
                        warn!(
                            status,
                            records = sent,
                            "Connect's log listener refused records (401: the logging key); they are dropped"
                        );
                        trouble = Trouble::Refused(status);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_drops_the_oldest_and_counts() {
        let mut q = RecordQueue::new(3, 1000);
        for i in 0..5 {
            q.push(format!("r{i}"));
        }
        assert_eq!(q.len(), 3);
        assert_eq!(q.take_dropped(), 2);
        assert_eq!(q.take_dropped(), 0, "taken once");
        assert_eq!(q.take_batch(1000), ["r2", "r3", "r4"]);
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn the_queue_is_bounded_by_bytes_and_batches_by_bytes() {
        let mut q = RecordQueue::new(100, 10);
        for r in ["aaaa", "bbbb", "cccc"] {
            q.push(r.into());
        }
        assert_eq!(q.len(), 2, "12 bytes over 10: the oldest goes");
        assert_eq!(q.take_dropped(), 1);
        // A batch of 6 bytes holds one 4-byte record and its newline.
        assert_eq!(q.take_batch(6), ["bbbb"]);
        assert_eq!(q.take_batch(6), ["cccc"]);
        // One record larger than a batch still goes, alone.
        q.push("x".repeat(9));
        q.push("y".into());
        assert_eq!(q.take_batch(6), ["xxxxxxxxx"]);
        assert_eq!(q.take_batch(6), ["y"]);
        assert_eq!(q.take_dropped(), 0);
    }

    #[test]
    fn a_batch_put_back_loses_its_oldest_when_newer_records_fill_the_queue() {
        let mut q = RecordQueue::new(4, 1000);
        for i in 0..3 {
            q.push(format!("old{i}"));
        }
        let batch = q.take_batch(1000);
        for i in 0..2 {
            q.push(format!("new{i}"));
        }
        q.put_back(batch);
        assert_eq!(q.take_dropped(), 1);
        assert_eq!(q.take_batch(1000), ["old1", "old2", "new0", "new1"]);
    }

    #[test]
    fn the_bulk_url_is_the_official_handlers_with_the_type() {
        let key = Secret::new("k&y=1");
        let u = bulk_url("https://listener.logz.io:8071", &key).expect("valid");
        assert_eq!(
            u.as_str(),
            "https://listener.logz.io:8071/?token=k%26y%3D1&type=python"
        );
        let u = bulk_url("http://127.0.0.1:9/logzio/", &key).expect("valid");
        assert_eq!(u.path(), "/logzio/");
        assert!(format!("{:?}", Destination { url: u }).contains("token=***"));
        assert!(check_listener_url("ftp://x").is_err());
        assert!(check_listener_url("not a url").is_err());
        assert!(check_listener_url("http://127.0.0.1:8071").is_ok());
    }

    #[test]
    fn targets_pick_the_level_and_the_shipper_is_never_shipped() {
        let shipper = LogShipper::new(ShipOptions {
            extension_targets: vec!["connect_usage".into(), "connect_client".into()],
            excluded_targets: vec!["connect_usage::internal".into()],
            ..ShipOptions::default()
        });
        let s = &shipper.state;
        assert!(std::ptr::eq(
            s.rank_for("connect_eaas::runner::dispatch")
                .expect("runner"),
            &s.runner_rank
        ));
        assert!(std::ptr::eq(
            s.rank_for("connect_client::client").expect("extension"),
            &s.extension_rank
        ));
        assert!(std::ptr::eq(
            s.rank_for("connect_usage::usage::pipeline")
                .expect("extension"),
            &s.extension_rank
        ));
        assert!(s.rank_for(SHIPPER_TARGET).is_none());
        assert!(s.rank_for("connect_usage::internal::x").is_none());
        assert!(s.rank_for("connect_sandbox::platform").is_none());
        assert!(s.rank_for("hyper::client").is_none());
        assert!(s.rank_for("connect_usage_other").is_none());
        assert_eq!(s.max_rank(), 0, "off before a key");
    }

    #[test]
    fn a_record_has_the_official_fields_then_the_events_then_the_metadata() {
        let mut fields = Map::new();
        fields.insert("message".into(), Value::from("records skipped"));
        fields.insert("count".into(), Value::from(3));
        fields.insert("service_id".into(), Value::from("forged"));
        let metadata = RecordMetadata {
            api_address: "api.cnct.info".into(),
            service_id: Some("SRVC-1".into()),
            environment_id: "ENV-1".into(),
            environment_type: Some("production".into()),
            instance_id: "inst".into(),
            account_id: Some("VA-1".into()),
            account_name: Some("Vendor".into()),
            repository_tag: None,
        }
        .to_fields();
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-03T04:30:00.6031Z")
            .expect("time")
            .to_utc();
        let line = record_line(
            &Level::WARN,
            "connect_usage::usage::pipeline",
            Some(("src/usage/pipeline.rs", 12)),
            fields,
            Some("TQ-1".into()),
            &metadata,
            &now,
        );
        let v: Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(v["@timestamp"], "2026-12-03T04:30:00.603Z");
        assert_eq!(v["message"], "records skipped");
        assert_eq!(v["log_level"], "WARNING");
        assert_eq!(v["logger"], "connect_usage::usage::pipeline");
        assert_eq!(v["type"], "python");
        assert_eq!(v["count"], 3);
        assert_eq!(v["line_number"], 12);
        assert_eq!(v["path_name"], "src/usage/pipeline.rs");
        assert_eq!(v["task_id"], "TQ-1");
        assert_eq!(v["service_id"], "SRVC-1", "metadata wins over a field");
        assert_eq!(v["repository_tag"], Value::Null);
        for k in [
            "api_address",
            "environment_id",
            "environment_type",
            "instance_id",
            "account_id",
            "account_name",
        ] {
            assert!(v[k].is_string(), "{k} in {line}");
        }
        assert!(!line.contains('\n'), "one line");
    }
}
