//! Runs one task to its output, off the receive loop: loads the task's argument (re-checking a
//! background object's status first), calls the handler under its category's time limit,
//! and turns whatever happens (an outcome, an error, a panic, a timeout, the runner's stop)
//! into the `output` the platform expects.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;
use tracing::{Instrument, debug, info, info_span, warn};

use super::output::{failure, plain};
use super::setup::{status_filter, status_mismatch_message};
use super::shared::Shared;
use crate::protocol::{ResultType, Task, TaskCategory, TaskOutput};
use crate::registry::HandlerFn;
use crate::task::{Outcome, TaskContext, TaskInfo};

/// Why a task did not produce a handler outcome.
enum TaskFailure {
    /// Before the handler: a REST look-up failed, the platform's setup is missing...
    Preparing(String),
    /// The handler returned an error.
    Handler(String),
    Panicked(String),
    TimedOut(Duration),
    /// The runner's stop grace period ended first.
    Stopped,
}

impl TaskFailure {
    fn message(&self, category: TaskCategory) -> String {
        match self {
            TaskFailure::Preparing(m) => m.clone(),
            TaskFailure::Handler(m) => m.clone(),
            TaskFailure::Panicked(m) => format!("the handler panicked: {m}"),
            TaskFailure::TimedOut(limit) => format!(
                "the handler ran longer than the {} task limit of {} s and was stopped",
                category.as_str(),
                limit.as_secs()
            ),
            TaskFailure::Stopped => {
                "the runner stopped before the task finished; it must be run again".into()
            }
        }
    }
}

/// Runs `task` and returns its output. Never panics, whatever the handler does.
pub(crate) async fn execute(
    shared: Arc<Shared>,
    task: &Task,
    category: TaskCategory,
) -> Option<TaskOutput> {
    let info = TaskInfo {
        task_id: task.options.task_id.clone(),
        category,
        event_type: task.input.event_type.clone(),
        object_id: task.input.object_id.clone(),
        correlation_id: task.options.connect_correlation_id.clone(),
    };
    let span = info_span!(
        "task",
        task_id = %info.task_id,
        category = category.as_str(),
        event_type = %info.event_type,
        object_id = %info.object_id,
    );
    async move {
        // Told to stop while this task waited for its turn: it is not run and not answered,
        // so the platform delivers it again once this runner has closed its connection
        // (an answer would spend one of its retries, or fail an interactive request).
        if shared.stopping().is_some() {
            info!("not run: the runner is stopping; the platform will deliver it again");
            return None;
        }
        let started = Instant::now();
        let output = run(&shared, task, info, category).await;
        // Counted by the session once framed: the answer may still become a `fail`.
        info!(
            result = output.result.as_str(),
            runtime_s = output.runtime,
            elapsed_ms = started.elapsed().as_millis() as u64,
            // Not `message`: that is the event's own text.
            output = output.message.as_deref().unwrap_or(""),
            "task done"
        );
        Some(output)
    }
    .instrument(span)
    .await
}

async fn run(
    shared: &Arc<Shared>,
    task: &Task,
    info: TaskInfo,
    category: TaskCategory,
) -> TaskOutput {
    let event_type = info.event_type.clone();

    let mut grace_over = shared.grace_over.subscribe();
    let prepared = tokio::select! {
        p = prepare(shared, task, &info, category) => p,
        _ = grace_over.wait_for(|over| *over) => Err(Prepared::Failed(TaskFailure::Stopped)),
    };
    match prepared {
        Err(Prepared::Answer(output)) => output,
        Err(Prepared::Failed(f)) => failure(category, &event_type, &f.message(category), 0.0),
        Ok((handler, ctx, arg)) => {
            let limit = shared.config.timeout(category);
            let started = Instant::now();
            let result = call(handler, ctx, arg, limit, shared.grace_over.subscribe()).await;
            let runtime = started.elapsed().as_secs_f64();
            match result {
                Ok(outcome) => outcome.into_output(category, runtime),
                Err(f) => {
                    warn!(error = %f.message(category), "task failed");
                    failure(category, &event_type, &f.message(category), runtime)
                }
            }
        }
    }
}

enum Prepared {
    /// The task is answered without calling a handler.
    Answer(TaskOutput),
    Failed(TaskFailure),
}

fn preparing(e: impl std::fmt::Display) -> Prepared {
    Prepared::Failed(TaskFailure::Preparing(e.to_string()))
}

/// Finds the handler and loads its argument and context.
async fn prepare(
    shared: &Arc<Shared>,
    task: &Task,
    info: &TaskInfo,
    category: TaskCategory,
) -> Result<(HandlerFn, TaskContext, Value), Prepared> {
    let setup = shared.setup();
    let headers = Shared::task_headers(info, setup.service_id());
    let env_client = shared.environment_client(headers.clone());
    let client = match task.options.api_key.as_deref().filter(|k| !k.is_empty()) {
        Some(key) => shared.client_for_key(key, headers).map_err(preparing)?,
        None => env_client.clone(),
    };
    let (handler, arg) = match category {
        TaskCategory::Background => {
            let Some(handler) = shared.registry.event(&info.event_type) else {
                return Err(Prepared::Answer(plain(
                    ResultType::Skip,
                    format!("This extension does not handle {} events.", info.event_type),
                )));
            };
            if !setup.received() {
                return Err(preparing(
                    "no setup response from the platform yet, so the event's definition is unknown",
                ));
            }
            let def = setup.definition(&info.event_type).ok_or_else(|| {
                preparing(format!(
                    "the platform sent no event definition for {}",
                    info.event_type
                ))
            })?;
            let filter = status_filter(
                &def.api_collection_filter,
                &info.object_id,
                handler.statuses,
            )
            .map_err(preparing)?;
            let collection = format!("/{}", def.api_collection_endpoint.trim_matches('/'));
            let count = client
                .count_raw(&collection, &filter)
                .await
                .map_err(preparing)?;
            if count == 0 {
                debug!("object no longer in a handled status");
                return Err(Prepared::Answer(plain(
                    ResultType::Skip,
                    status_mismatch_message(handler.statuses),
                )));
            }
            let resource = format!(
                "/{}",
                def.api_resource_endpoint
                    .trim_matches('/')
                    .replace("{pk}", &info.object_id)
            );
            let object: Value = client.get(&resource).await.map_err(preparing)?;
            (handler.handler, object)
        }
        TaskCategory::Interactive => {
            let Some(handler) = shared.registry.event(&info.event_type) else {
                return Err(Prepared::Answer(failure(
                    category,
                    &info.event_type,
                    &format!("This extension does not handle {} events.", info.event_type),
                    0.0,
                )));
            };
            (
                handler.handler,
                task.input.data.clone().unwrap_or(Value::Null),
            )
        }
        TaskCategory::Scheduled => {
            let service_id = setup.service_id().ok_or_else(|| {
                preparing("no extension id from the platform yet, so the schedule cannot be read")
            })?;
            let path = format!(
                "/devops/services/{service_id}/environments/{}/schedules/{}",
                shared.config.environment_id, info.object_id
            );
            let schedule: Value = env_client.get(&path).await.map_err(preparing)?;
            let method = schedule
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let Some(s) = shared.registry.schedulable(&method) else {
                return Err(Prepared::Answer(plain(
                    ResultType::Fail,
                    format!(
                        "Schedule {} runs method {method:?}, which this extension does not declare.",
                        info.object_id
                    ),
                )));
            };
            (s.handler, schedule)
        }
    };
    let (installation, installation_client) = match task
        .options
        .installation_id
        .as_deref()
        .filter(|i| !i.is_empty())
    {
        None => (None, None),
        Some(id) => {
            let service_id = setup.service_id().ok_or_else(|| {
                preparing(
                    "no extension id from the platform yet, so the installation cannot be read",
                )
            })?;
            let inst: Value = env_client
                .get(&format!("/devops/services/{service_id}/installations/{id}"))
                .await
                .map_err(preparing)?;
            (Some(inst), Some(client.clone()))
        }
    };
    let ctx = TaskContext {
        task: info.clone(),
        client,
        environment_client: env_client,
        installation,
        installation_client,
        config: setup.variables().clone(),
        environment: setup.environment(&shared.config.environment_id, &shared.config.instance_id),
        state: shared
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
    };
    shared
        .stats
        .tasks_run
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok((handler, ctx, arg))
}

/// Calls the handler in its own task, so a panic is caught and a timeout or the end of the
/// stop grace period cancels it.
async fn call(
    handler: HandlerFn,
    ctx: TaskContext,
    arg: Value,
    limit: Duration,
    mut grace_over: watch::Receiver<bool>,
) -> Result<Outcome, TaskFailure> {
    let mut join = tokio::spawn(handler(ctx, arg).in_current_span());
    let grace = async {
        // A closed channel means the runner is gone: as good as over.
        let _ = grace_over.wait_for(|over| *over).await;
    };
    tokio::select! {
        joined = &mut join => match joined {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(e)) => Err(TaskFailure::Handler(e.message().to_owned())),
            Err(e) if e.is_panic() => Err(TaskFailure::Panicked(panic_text(e.into_panic()))),
            Err(_) => Err(TaskFailure::Stopped),
        },
        _ = tokio::time::sleep(limit) => {
            join.abort();
            Err(TaskFailure::TimedOut(limit))
        }
        _ = grace => {
            join.abort();
            Err(TaskFailure::Stopped)
        }
    }
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-text panic payload".into()
    }
}
