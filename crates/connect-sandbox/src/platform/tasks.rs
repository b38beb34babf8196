//! Tasks and their records: tasks made from usage file events, triggered schedules and the
//! admin API; what a runner's result does to a task (success, skip, fail, or a retry or
//! reschedule delivered again after its delay, up to `max_tries`); and Connect's view of the
//! tasks (`eaas.Task`) with, for the admin API, every delivery and answer.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::conformance::{check_result, protocol_error};
use super::connections::Outbound;
use super::{Inner, Platform, correlation, now_text};
use crate::dataset::ExtensionSetup;
use crate::faults::{WsAction, WsPoint};
use crate::store::SandboxEvent;

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

/// Where a task is: waiting for delivery (first time, after a reschedule, after a retry), out
/// with a runner on a connection, or finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TaskState {
    Scheduled,
    Rescheduled,
    Retrying,
    Processing(u64),
    Succeeded,
    Failed,
    Skipped,
}

impl TaskState {
    pub(super) fn as_str(self) -> &'static str {
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

    pub(super) fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Skipped
        )
    }

    pub(super) fn waiting(self) -> bool {
        matches!(
            self,
            TaskState::Scheduled | TaskState::Rescheduled | TaskState::Retrying
        )
    }
}

/// One delivery of a task to a runner, and its answer if one came.
pub(super) struct Attempt {
    pub(super) conn: u64,
    pub(super) instance: String,
    pub(super) delivered_at: String,
    pub(super) answered_at: Option<String>,
    pub(super) output: Option<Json>,
    /// Why the delivery ended without an answer (connection lost, result lost).
    pub(super) lost: Option<String>,
}

/// A task as the platform keeps it: what was sent, its state, and every delivery.
pub(super) struct TaskRecord {
    pub(super) id: String,
    pub(super) category: String,
    pub(super) options: Json,
    pub(super) input: Json,
    pub(super) state: TaskState,
    pub(super) not_before: Instant,
    /// Deliveries answered `retry` or `reschedule`.
    pub(super) tries: u32,
    pub(super) retry_count: u32,
    pub(super) rescheduled_count: u32,
    pub(super) attempts: Vec<Attempt>,
    pub(super) duplicates: u32,
    /// Later results that say something else than the recorded one.
    pub(super) conflicting: u32,
    pub(super) created_at: String,
    pub(super) completed_at: Option<String>,
    pub(super) rescheduled_at: Option<String>,
    pub(super) output: Option<String>,
    pub(super) final_output: Option<Json>,
    pub(super) runtime_total_ms: f64,
    pub(super) waiters: Vec<oneshot::Sender<Json>>,
}

impl Platform {
    /// Schedules of the dataset with `sandbox_fire_after_seconds` fire once, that long after
    /// the first runner session for background tasks is set up: a sandbox that shows the
    /// whole story without anyone calling the admin API.
    pub(super) fn maybe_start_schedules(&self, inner: &mut Inner) {
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

    pub(super) fn on_result(&self, inner: &mut Inner, conn_id: u64, frame: &Json) {
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
}

impl Inner {
    /// Files task `i` in the waiting or processing index by its state.
    pub(super) fn track(&mut self, i: usize) {
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

pub(super) fn add_task(inner: &mut Inner, spec: TaskSpec) -> Result<usize, String> {
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

pub(super) fn task_json(t: &TaskRecord, ext: &ExtensionSetup, account: &(String, String)) -> Json {
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
pub(super) fn task_dump(t: &TaskRecord, ext: &ExtensionSetup, account: &(String, String)) -> Json {
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
