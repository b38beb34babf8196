//! One websocket session (`runner_type=background` or `interactive`): a task that owns the
//! socket, connects and reconnects with backoff, does the handshake, reads frames, starts
//! tasks without waiting on them, and writes their results in completion order.
//!
//! Results go through a bounded channel into the session. One that cannot be written because
//! the connection dropped stays at the head of the queue and goes out after the reconnect's
//! handshake. A task id is "in flight" from its arrival until its result is written, and a
//! second delivery of an in-flight task is not run again: after a reconnect the platform may
//! deliver again a task whose result is still on its way.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::backoff::{Backoff, FailureKind};
use super::config::RunnerType;
use super::dispatch::execute;
use super::metrics::{self, PendingResult, ReconnectReason};
use super::output;
use super::shared::{Shared, StopReason};
use super::transport::{self, ConnectFailure, MAX_MESSAGE, Socket};
use crate::protocol::{Incoming, ResultType, Task, TaskCategory, TaskOutput, shutdown_frame};

/// What a session is doing, for callers and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Opening a connection (attempt number since the last success).
    Connecting {
        attempt: u32,
    },
    /// Connected and set up.
    Connected,
    /// Waiting before the next attempt; `maintenance` when the platform answered 502 (the
    /// longer retry budget applies).
    Waiting {
        retry_in: Duration,
        error: String,
        maintenance: bool,
    },
    /// Told to stop: finishing tasks and delivering results.
    Stopping,
    Stopped,
}

impl ConnectionState {
    /// What the session is doing, as the end of a sentence ("background session
    /// connecting, attempt 3").
    pub fn describe(&self) -> String {
        match self {
            ConnectionState::Connecting { attempt } => format!("connecting, attempt {attempt}"),
            ConnectionState::Connected => "connected".to_owned(),
            // The error's own text says when Connect is in maintenance (the upgrade's hint).
            ConnectionState::Waiting {
                retry_in, error, ..
            } => format!(
                "waiting {:.1} s to reconnect after: {error}",
                retry_in.as_secs_f64()
            ),
            ConnectionState::Stopping => "stopping".to_owned(),
            ConnectionState::Stopped => "stopped".to_owned(),
        }
    }
}

/// A result ready to be written.
pub(crate) struct Delivery {
    task_id: String,
    /// `None`: nothing to send (the task was not run, or its answer cannot be sent); the
    /// task only leaves the in-flight set, and the platform delivers it again.
    frame: Option<String>,
    /// What the task was about, to tell a repeated delivery from another task of the same id.
    about: (String, String),
    /// The output of a `success`, `skip` or `fail` result (the platform will not deliver the
    /// task again on purpose), kept to answer a repeated delivery.
    last: Option<TaskOutput>,
    /// Counts the result as waiting for delivery while it lives (a delivery with no frame
    /// waits for nothing).
    _pending: Option<PendingResult>,
}

impl Delivery {
    fn new(
        session: RunnerType,
        task_id: String,
        frame: Option<String>,
        about: (String, String),
        last: Option<TaskOutput>,
    ) -> Delivery {
        let _pending = frame
            .is_some()
            .then(|| PendingResult::new(session.as_str()));
        Delivery {
            task_id,
            frame,
            about,
            last,
            _pending,
        }
    }
}

/// How long a final result is kept to answer a repeated delivery of its task.
///
/// After a reconnect the platform may deliver again a task whose result it had not yet
/// received when it decided to. Answering that delivery with the result already computed,
/// rather than running the handler twice, keeps one task one run. The window is short so a
/// person who resubmits a failed task later gets a real run.
pub const REANSWER_WINDOW: Duration = Duration::from_secs(60);
const REANSWER_CAPACITY: usize = 10_000;

/// A final result sent recently.
struct Answered {
    output: TaskOutput,
    /// `(event_type, object_id)` of the task.
    about: (String, String),
    at: Instant,
}

/// How a connection ended.
enum End {
    /// The session is done (stopped and drained, or out of time).
    Finished,
    /// The connection is gone; the session reconnects.
    Lost(String),
}

pub(crate) struct Session {
    kind: RunnerType,
    shared: Arc<Shared>,
    results_tx: mpsc::Sender<Delivery>,
    results_rx: mpsc::Receiver<Delivery>,
    unsent: VecDeque<Delivery>,
    /// Tasks running or with a result not yet written, by id.
    in_flight: HashMap<String, Option<TaskCategory>>,
    permits: Arc<Semaphore>,
    state: watch::Sender<ConnectionState>,
    shutdown_sent: bool,
    /// When the session stops trying to deliver, once it is stopping.
    deadline: Option<Instant>,
    /// Final results sent recently, by task id, oldest first.
    answered: HashMap<String, Answered>,
    answered_order: VecDeque<String>,
}

/// What a session left undone when it ended.
#[derive(Debug, Default)]
pub(crate) struct SessionEnd {
    pub undelivered: Vec<String>,
}

impl Session {
    pub fn new(
        kind: RunnerType,
        shared: Arc<Shared>,
    ) -> (Session, watch::Receiver<ConnectionState>) {
        let (results_tx, results_rx) = mpsc::channel(shared.config.result_queue.max(1));
        let (state, state_rx) = watch::channel(ConnectionState::Connecting { attempt: 0 });
        let permits = Arc::new(Semaphore::new(shared.config.max_concurrent_tasks.max(1)));
        metrics::session_created(kind.as_str());
        (
            Session {
                kind,
                shared,
                results_tx,
                results_rx,
                unsent: VecDeque::new(),
                in_flight: HashMap::new(),
                permits,
                state,
                shutdown_sent: false,
                deadline: None,
                answered: HashMap::new(),
                answered_order: VecDeque::new(),
            },
            state_rx,
        )
    }

    pub async fn run(self) -> SessionEnd {
        let span = info_span!("session", runner_type = self.kind.as_str());
        self.connect_and_serve().instrument(span).await
    }

    /// Connects, serves, reconnects, until the session is done.
    async fn connect_and_serve(mut self) -> SessionEnd {
        let mut backoff = Backoff::new(self.shared.config.timings.reconnect.clone());
        let mut stop_rx = self.shared.stop.subscribe();
        let mut attempt = 0u32;
        loop {
            self.note_stop();
            if self.deadline.is_some() && (self.drained() || self.past_deadline()) {
                break;
            }
            attempt += 1;
            self.state
                .send_replace(ConnectionState::Connecting { attempt });
            let attempt_result = match self.deadline {
                None => self.connect().await,
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline.into(), self.connect()).await {
                        Ok(r) => r,
                        Err(_) => break,
                    }
                }
            };
            match attempt_result {
                Ok((socket, first)) => {
                    attempt = 0;
                    backoff.reset();
                    // A result sent on a connection that then died comes back only after a
                    // reconnect, however long that took: the re-answer window restarts.
                    let now = Instant::now();
                    for a in self.answered.values_mut() {
                        a.at = now;
                    }
                    self.shared
                        .stats
                        .connections
                        .fetch_add(1, Ordering::Relaxed);
                    metrics::connected(self.kind.as_str());
                    self.state.send_replace(if self.deadline.is_some() {
                        ConnectionState::Stopping
                    } else {
                        ConnectionState::Connected
                    });
                    let end = self.serve(socket, first, &mut stop_rx).await;
                    metrics::disconnected(self.kind.as_str());
                    match end {
                        End::Finished => break,
                        End::Lost(reason) => {
                            metrics::reconnect(self.kind.as_str(), ReconnectReason::ConnectionLost);
                            self.note_stop();
                            // Even while stopping (the pause keeps to the deadline): a
                            // platform that accepts and drops must not get a storm.
                            let pause = self.shared.config.timings.reconnect.pause_after_drop;
                            warn!(
                                %reason,
                                pause_ms = pause.as_millis() as u64,
                                "connection lost; reconnecting"
                            );
                            self.state.send_replace(ConnectionState::Waiting {
                                retry_in: pause,
                                error: reason,
                                maintenance: false,
                            });
                            self.pause(pause, &mut stop_rx).await;
                        }
                    }
                }
                Err(failure) => {
                    let reason = failure.reason();
                    metrics::reconnect(self.kind.as_str(), reason);
                    let wait =
                        backoff.next_wait(failure.kind(), Instant::now(), rand::random::<f64>());
                    let retry_in_ms = wait.delay.as_millis() as u64;
                    if reason == ReconnectReason::Refused {
                        error!(error = %failure, retry_in_ms, "the platform refused the key")
                    } else {
                        warn!(error = %failure, retry_in_ms, "cannot connect")
                    }
                    if wait.cycle_ended {
                        warn!(
                            "reconnection attempts used up their time budget; starting a new cycle"
                        );
                    }
                    self.state.send_replace(ConnectionState::Waiting {
                        retry_in: wait.delay,
                        error: failure.to_string(),
                        maintenance: failure.kind() == FailureKind::Maintenance,
                    });
                    self.pause(wait.delay, &mut stop_rx).await;
                }
            }
        }
        let mut end = SessionEnd::default();
        // Results that were produced but never reached the platform: said loudly.
        while let Ok(d) = self.results_rx.try_recv() {
            self.unsent.push_back(d);
        }
        end.undelivered = self.in_flight.keys().cloned().collect();
        end.undelivered.sort();
        if !end.undelivered.is_empty() {
            error!(
                tasks = ?end.undelivered,
                "stopped with tasks whose results were not delivered; the platform will deliver them again"
            );
        }
        self.state.send_replace(ConnectionState::Stopped);
        info!("session stopped");
        end
    }

    /// Notices a stop request and sets the delivery deadline.
    fn note_stop(&mut self) {
        if self.deadline.is_none() && self.shared.stopping().is_some() {
            self.deadline = Some(
                Instant::now()
                    + self.shared.config.shutdown_grace
                    + self.shared.config.timings.flush_window,
            );
            self.state.send_replace(ConnectionState::Stopping);
        }
    }

    fn drained(&self) -> bool {
        self.in_flight.is_empty()
    }

    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Sleeps, waking early when a stop leaves nothing to deliver.
    async fn pause(&mut self, delay: Duration, stop_rx: &mut watch::Receiver<Option<StopReason>>) {
        let mut until = tokio::time::Instant::now() + delay;
        if let Some(d) = self.deadline {
            until = until.min(d.into());
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            changed = stop_rx.changed() => {
                self.note_stop();
                                if changed.is_ok() && !self.drained() {
                    // Stopping with results to deliver: keep the backoff's pace, within the
                    // time left.
                    if let Some(d) = self.deadline {
                        until = until.min(d.into());
                    }
                    tokio::time::sleep_until(until).await;
                }
            }
        }
    }

    /// Connects and does the handshake: ping and pong, `setup_request`, one answer.
    async fn connect(&mut self) -> Result<(Socket, Vec<String>), ConnectFailure> {
        let (running, scheduled) = self.in_flight.values().fold((0, 0), |(b, s), c| match c {
            Some(TaskCategory::Background) => (b + 1, s),
            Some(TaskCategory::Scheduled) => (b, s + 1),
            _ => (b, s),
        });
        let url = self.shared.config.ws_url(self.kind, running, scheduled);
        debug!(%url, "connecting");
        let mut socket = transport::open(&self.shared.config, &url).await?;
        match self.handshake(&mut socket).await {
            Ok(first) => {
                info!("connected");
                Ok((socket, first))
            }
            Err(reason) => {
                let _ = transport::within(Duration::from_secs(1), socket.close(None)).await;
                Err(ConnectFailure::Other(reason))
            }
        }
    }

    async fn handshake(&mut self, socket: &mut Socket) -> Result<Vec<String>, String> {
        let limit = self.shared.config.timings.handshake_timeout;
        let mut early = Vec::new();
        send_within(
            socket,
            Message::Ping(b"connect-usage".to_vec().into()),
            limit,
        )
        .await
        .map_err(|e| format!("cannot send the first ping: {e}"))?;
        let pong = transport::within(limit, async {
            while let Some(msg) = socket.next().await {
                match msg {
                    Ok(Message::Pong(_)) => return Ok(()),
                    Ok(Message::Text(t)) => early.push(t.as_str().to_owned()),
                    Ok(Message::Close(_)) => return Err("closed during the handshake".to_owned()),
                    Ok(_) => {}
                    Err(e) => return Err(format!("handshake failed: {e}")),
                }
            }
            Err("closed during the handshake".to_owned())
        })
        .await;
        match pong {
            None => {
                return Err(format!(
                    "no pong within {} s of connecting",
                    limit.as_secs_f64()
                ));
            }
            Some(r) => r?,
        }
        send_within(
            socket,
            Message::text(self.shared.setup_frame.clone()),
            limit,
        )
        .await
        .map_err(|e| format!("cannot send the setup request: {e}"))?;
        if !early.is_empty() {
            return Ok(early);
        }
        let answer = transport::within(limit, async {
            while let Some(msg) = socket.next().await {
                match msg {
                    Ok(Message::Text(t)) => return Ok(t.as_str().to_owned()),
                    Ok(Message::Close(_)) => return Err("closed during the handshake".to_owned()),
                    Ok(_) => {}
                    Err(e) => return Err(format!("handshake failed: {e}")),
                }
            }
            Err("closed during the handshake".to_owned())
        })
        .await;
        match answer {
            None => Err(format!(
                "no answer to the setup request within {} s",
                limit.as_secs_f64()
            )),
            Some(r) => r.map(|t| vec![t]),
        }
    }

    /// Serves one connection until it is lost or the session is done.
    async fn serve(
        &mut self,
        mut socket: Socket,
        first: Vec<String>,
        stop_rx: &mut watch::Receiver<Option<StopReason>>,
    ) -> End {
        // Each connection is told the runner is stopping (the platform may have reconnected it).
        self.shutdown_sent = false;
        let send_limit = self.shared.config.timings.pong_timeout;
        for text in first {
            self.on_text(&text);
        }
        let timings = self.shared.config.timings.clone();
        let mut ping = tokio::time::interval_at(
            tokio::time::Instant::now() + timings.ping_interval,
            timings.ping_interval,
        );
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pong_deadline: Option<tokio::time::Instant> = None;
        loop {
            while let Some(mut d) = self.unsent.pop_front() {
                let Some(frame) = &d.frame else {
                    self.in_flight.remove(&d.task_id);
                    continue;
                };
                let Some(limit) = self.send_limit(send_limit) else {
                    self.unsent.push_front(d);
                    return End::Finished;
                };
                if let Err(e) = send_within(&mut socket, Message::text(frame.clone()), limit).await
                {
                    self.unsent.push_front(d);
                    return End::Lost(format!("cannot send a result: {e}"));
                }
                debug!(task_id = %d.task_id, "result sent");
                self.in_flight.remove(&d.task_id);
                self.shared
                    .stats
                    .results_sent
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(output) = d.last.take() {
                    self.remember(d.task_id.clone(), output, d.about.clone());
                }
            }
            self.note_stop();
            if let Some(reason) = self.shared.stopping() {
                if reason == StopReason::Requested && !self.shutdown_sent {
                    let Some(limit) = self.send_limit(send_limit) else {
                        return End::Finished;
                    };
                    if let Err(e) =
                        send_within(&mut socket, Message::text(shutdown_frame()), limit).await
                    {
                        return End::Lost(format!("cannot send shutdown: {e}"));
                    }
                    self.shutdown_sent = true;
                    info!("told the platform this runner is stopping");
                }
                if self.drained() || self.past_deadline() {
                    let close = CloseFrame {
                        code: CloseCode::Normal,
                        reason: "runner stopping".into(),
                    };
                    let _ = transport::within(Duration::from_secs(1), async {
                        let _ = socket.close(Some(close)).await;
                        while let Some(Ok(_)) = socket.next().await {}
                    })
                    .await;
                    return End::Finished;
                }
            }
            let deadline = self
                .deadline
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                changed = stop_rx.changed(), if self.deadline.is_none() => {
                    if changed.is_err() {
                        // The runner is gone: nothing will stop this session more clearly.
                        self.shared.request_stop(StopReason::Requested);
                    }
                }
                delivery = self.results_rx.recv() => {
                    if let Some(d) = delivery {
                        self.unsent.push_back(d);
                    }
                }
                msg = socket.next() => match msg {
                    None => return End::Lost("the connection closed".into()),
                    Some(Err(e)) => return End::Lost(format!("the connection failed: {e}")),
                    Some(Ok(Message::Text(text))) => self.on_text(text.as_str()),
                    Some(Ok(Message::Pong(_))) => pong_deadline = None,
                    Some(Ok(Message::Close(frame))) => {
                        let why = frame.map(|f| format!(" ({} {})", u16::from(f.code), f.reason)).unwrap_or_default();
                        return End::Lost(format!("the platform closed the connection{why}"));
                    }
                    Some(Ok(Message::Binary(b))) => {
                        self.shared.stats.frames_ignored.fetch_add(1, Ordering::Relaxed);
                        warn!(bytes = b.len(), "ignored a binary frame: the protocol is JSON text");
                    }
                    Some(Ok(_)) => {}
                },
                _ = ping.tick() => {
                    if let Err(e) = send_within(&mut socket, Message::Ping(b"keep-alive".to_vec().into()), send_limit).await {
                        return End::Lost(format!("cannot send a ping: {e}"));
                    }
                    if pong_deadline.is_none() {
                        pong_deadline = Some(tokio::time::Instant::now() + timings.pong_timeout);
                    }
                }
                _ = sleep_until_opt(pong_deadline), if pong_deadline.is_some() => {
                    return End::Lost(format!("no pong within {} s", timings.pong_timeout.as_secs_f64()));
                }
                _ = tokio::time::sleep_until(deadline), if self.deadline.is_some() => {}
            }
        }
    }

    fn on_text(&mut self, text: &str) {
        if text.len() > MAX_MESSAGE {
            self.shared
                .stats
                .frames_ignored
                .fetch_add(1, Ordering::Relaxed);
            warn!(
                bytes = text.len(),
                limit = MAX_MESSAGE,
                "ignored a message over the size limit"
            );
            return;
        }
        match Incoming::parse(text) {
            Err(e) => {
                self.shared
                    .stats
                    .frames_ignored
                    .fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, bytes = text.len(), "ignored a frame the runner does not understand");
            }
            Ok(Incoming::SetupResponse(resp)) => {
                info!("setup received from the platform");
                self.shared.apply_setup(*resp);
            }
            Ok(Incoming::Task(task)) => self.on_task(*task),
            Ok(Incoming::Shutdown) => {
                info!("the platform asked this runner to stop");
                self.shared.request_stop(StopReason::Platform);
            }
            Ok(Incoming::Other(kind)) => {
                self.shared
                    .stats
                    .frames_ignored
                    .fetch_add(1, Ordering::Relaxed);
                debug!(message_type = %kind, "ignored a message type the runner does not act on");
            }
        }
    }

    /// Keeps a final result for [`REANSWER_WINDOW`].
    fn remember(&mut self, task_id: String, output: TaskOutput, about: (String, String)) {
        let now = Instant::now();
        while let Some(oldest) = self.answered_order.front() {
            let expired = self
                .answered
                .get(oldest)
                .is_none_or(|a| now.duration_since(a.at) > REANSWER_WINDOW);
            if !expired && self.answered_order.len() < REANSWER_CAPACITY {
                break;
            }
            if let Some(id) = self.answered_order.pop_front() {
                self.answered.remove(&id);
            }
        }
        if self
            .answered
            .insert(
                task_id.clone(),
                Answered {
                    output,
                    about,
                    at: now,
                },
            )
            .is_none()
        {
            self.answered_order.push_back(task_id);
        }
    }

    fn on_task(&mut self, task: Task) {
        self.shared
            .stats
            .tasks_received
            .fetch_add(1, Ordering::Relaxed);
        let id = task.options.task_id.clone();
        metrics::task_received(
            task.category().map_or("unknown", TaskCategory::as_str),
            &task.input.event_type,
        );
        if self.shared.stopping().is_some() {
            info!(task_id = %id, "not taking a task while stopping; the platform will deliver it again");
            return;
        }
        if self.in_flight.contains_key(&id) {
            self.shared
                .stats
                .duplicates_ignored
                .fetch_add(1, Ordering::Relaxed);
            info!(task_id = %id, "task delivered again while in flight; not run twice");
            return;
        }
        let about = (task.input.event_type.clone(), task.input.object_id.clone());
        if let Some(a) = self.answered.get(&id)
            && a.about != about
        {
            // Not a repeat: the platform reused an id (a restarted sandbox does).
            warn!(task_id = %id, "a task id answered before, now for another object; run as a new task");
            self.answered.remove(&id);
        }
        if let Some(Answered { output, at, .. }) = self.answered.get(&id)
            && at.elapsed() <= REANSWER_WINDOW
        {
            self.shared
                .stats
                .duplicates_ignored
                .fetch_add(1, Ordering::Relaxed);
            info!(task_id = %id, "task delivered again after its result was sent; answered with that result");
            metrics::reanswered(self.kind.as_str());
            // The same output, echoing this delivery's options and input.
            let output = output.clone();
            self.in_flight.insert(id.clone(), task.category());
            let frame = task.result_frame(output.clone());
            self.unsent.push_back(Delivery::new(
                self.kind,
                id,
                Some(frame),
                about,
                Some(output),
            ));
            return;
        }
        let Some(category) = task.category() else {
            warn!(task_id = %id, category = %task.options.task_category, "task of an unknown category; answered fail");
            let output = output::plain(
                ResultType::Fail,
                format!(
                    "This runner does not run tasks of category {:?}.",
                    task.options.task_category
                ),
            );
            metrics::task_answered("unknown", &task.input.event_type, "fail", Duration::ZERO);
            self.in_flight.insert(id.clone(), None);
            let frame = task.result_frame(output.clone());
            self.unsent.push_back(Delivery::new(
                self.kind,
                id,
                Some(frame),
                about,
                Some(output),
            ));
            return;
        };
        self.in_flight.insert(id.clone(), Some(category));
        let shared = self.shared.clone();
        let results = self.results_tx.clone();
        let permits = self.permits.clone();
        let kind = self.kind;
        tokio::spawn(async move {
            // The semaphore is never closed; without a permit the task simply runs.
            let _permit = permits.acquire_owned().await.ok();
            let started = Instant::now();
            let task = Arc::new(task);
            let running = {
                let task = task.clone();
                let shared = shared.clone();
                tokio::spawn(async move { execute(shared, &task, category).await })
            };
            let output = match running.await {
                Ok(output) => output,
                Err(e) => {
                    error!(task_id = %task.options.task_id, error = %e, "the runner failed while running a task");
                    Some(output::failure(
                        category,
                        &task.input.event_type,
                        "The runner failed while running the task.",
                        0.0,
                    ))
                }
            };
            let about = (task.input.event_type.clone(), task.input.object_id.clone());
            let (frame, last) = match output {
                None => (None, None),
                Some(output) => answered(&task, category, output, started.elapsed()),
            };
            let delivery = Delivery::new(kind, task.options.task_id.clone(), frame, about, last);
            match results.try_send(delivery) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(d)) => {
                    error!(
                        task_id = %d.task_id,
                        capacity = shared.config.result_queue,
                        "the result queue is full (the platform is unreachable or slow); this task waits for room"
                    );
                    if results.send(d).await.is_err() {
                        error!("the session ended before a result could be queued");
                    }
                }
                Err(mpsc::error::TrySendError::Closed(d)) => {
                    error!(task_id = %d.task_id, "the session ended before this result could be queued");
                }
            }
        });
    }

    /// The time a send may take: `normal`, or what is left before the stop deadline
    /// (`None` once it has passed).
    fn send_limit(&self, normal: Duration) -> Option<Duration> {
        match self.deadline {
            None => Some(normal),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                (!left.is_zero()).then(|| left.min(normal))
            }
        }
    }
}

/// The result frame of a task and the output it carries. An answer over the platform's
/// message limit becomes a `fail` saying so; if even that is too large (the task's own input
/// is), nothing is sent and the platform delivers the task again after the connection closes.
fn answer(task: &Task, category: TaskCategory, output: TaskOutput) -> Option<(String, TaskOutput)> {
    let mut output = output;
    let mut frame = task.result_frame(output.clone());
    if frame.len() > MAX_MESSAGE {
        // The platform would refuse the frame and deliver the task again, forever.
        error!(task_id = %task.options.task_id, bytes = frame.len(), "a result over the platform's message limit; answered fail");
        let message = format!(
            "The handler's answer is {} bytes, over the platform's {} byte limit.",
            frame.len(),
            MAX_MESSAGE
        );
        // `fail` even where errors are retried: running the handler again would give the
        // same answer.
        output = output::final_failure(category, &task.input.event_type, &message, output.runtime);
        frame = task.result_frame(output.clone());
        if frame.len() > MAX_MESSAGE {
            error!(task_id = %task.options.task_id, bytes = frame.len(), "even a short answer to this task is over the limit; not answered");
            return None;
        }
    }
    Some((frame, output))
}

/// The frame of a task's answer and the output kept for re-answers, the answer counted as
/// what is sent (over the message limit, a `fail`; not at all when nothing can be sent).
fn answered(
    task: &Task,
    category: TaskCategory,
    output: TaskOutput,
    ran: Duration,
) -> (Option<String>, Option<TaskOutput>) {
    let Some((frame, sent)) = answer(task, category, output) else {
        return (None, None);
    };
    metrics::task_answered(
        category.as_str(),
        &task.input.event_type,
        sent.result.as_str(),
        ran,
    );
    (Some(frame), kept_for_reanswers(sent))
}

/// The output kept to answer a repeated delivery: a `success`, `skip` or `fail` result (the
/// platform will not deliver the task again on purpose).
fn kept_for_reanswers(output: TaskOutput) -> Option<TaskOutput> {
    matches!(
        output.result,
        ResultType::Success | ResultType::Skip | ResultType::Fail
    )
    .then_some(output)
}

/// Sends a message, giving up after `limit`: a peer that stopped reading must not hold the
/// session (the keep-alive cannot fire while a send waits).
async fn send_within(socket: &mut Socket, msg: Message, limit: Duration) -> Result<(), String> {
    match tokio::time::timeout(limit, socket.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no progress for {} s", limit.as_secs_f64())),
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Incoming;

    fn task(event_type: &str) -> Task {
        let text = serde_json::json!({"version": 2, "message_type": "task", "data": {
            "options": {"task_id": "TQ-1", "task_category": "background", "correlation_id": "c-1",
                        "reply_to": "q-1", "api_key": "SU-1:key", "installation_id": null,
                        "connect_correlation_id": null},
            "input": {"event_type": event_type, "object_id": "PR-1", "data": null},
            "output": null, "model_type": "task"}})
        .to_string();
        match Incoming::parse(&text) {
            Ok(Incoming::Task(task)) => *task,
            _ => panic!("a task"),
        }
    }

    fn answers(event_type: &str, result: &str) -> u64 {
        metrics::register();
        let text = connect_client::exposition::exposition();
        let line = format!(
            "connect_eaas_tasks_answered_total{{category=\"background\",event_type=\"{event_type}\",result=\"{result}\"}} "
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&line))
            .map_or(0, |v| v.parse().unwrap_or(0))
    }

    #[test]
    fn a_wait_for_maintenance_says_so_once() {
        let failure = ConnectFailure::Status { status: 502 };
        let state = ConnectionState::Waiting {
            retry_in: Duration::from_secs(3),
            error: failure.to_string(),
            maintenance: failure.kind() == FailureKind::Maintenance,
        };
        let text = state.describe();
        assert_eq!(text.matches("maintenance").count(), 1, "{text}");
        assert!(
            text.starts_with("waiting 3.0 s to reconnect after: "),
            "{text}"
        );
    }

    #[test]
    fn an_answer_is_counted_as_what_is_sent() {
        // Event types of this test's own, so that no other test's tasks count here.
        let t = task("counted_as_sent");
        let small = output::plain(ResultType::Success, "done".into());
        let (frame, last) = answered(&t, TaskCategory::Background, small, Duration::ZERO);
        assert!(frame.is_some() && last.is_some());
        assert_eq!(answers("counted_as_sent", "success"), 1);

        let t = task("counted_as_sent_oversized");
        // Messages are cut short; data is not.
        let huge = TaskOutput {
            data: Some(serde_json::Value::String("x".repeat(MAX_MESSAGE + 1))),
            ..output::plain(ResultType::Success, "done".into())
        };
        let (frame, last) = answered(&t, TaskCategory::Background, huge, Duration::ZERO);
        let frame = frame.expect("a fail is sent");
        assert!(frame.len() <= MAX_MESSAGE, "{} bytes", frame.len());
        let sent: serde_json::Value = serde_json::from_str(&frame).expect("json");
        assert_eq!(sent["data"]["output"]["result"], "fail", "{sent:#}");
        assert_eq!(last.map(|o| o.result), Some(ResultType::Fail));
        assert_eq!(answers("counted_as_sent_oversized", "success"), 0);
        assert_eq!(answers("counted_as_sent_oversized", "fail"), 1);
    }
}
