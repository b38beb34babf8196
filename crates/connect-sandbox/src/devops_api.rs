//! Connect's DevOps endpoints the platform side needs: the runner websocket
//! (`/devops/ws/{environment}/{instance}`), event definitions, the environment's schedules
//! (and triggering one), its tasks, and installations.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::debug;

use super::error::ApiError;
use super::filters::{EVENT_DEFINITIONS_DEF, SCHEDULES_DEF, TASKS_DEF};
use super::platform::{Outbound, event_definitions};
use super::query::CollectionQuery;
use super::server::AppState;
use super::store::Actor;

/// The largest frame the platform reads from a runner, as Connect's 2 MiB.
pub const MAX_RUNNER_FRAME: usize = 2 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/devops/ws/{environment}/{instance}", get(websocket))
        .route("/devops/event-definitions", get(list_event_definitions))
        .route("/devops/event-definitions/{id}", get(get_event_definition))
        .route(
            "/devops/services/{service}/environments/{environment}/schedules",
            get(list_schedules),
        )
        .route(
            "/devops/services/{service}/environments/{environment}/schedules/{id}",
            get(get_schedule),
        )
        .route(
            "/devops/services/{service}/environments/{environment}/schedules/{id}/trigger",
            post(trigger_schedule),
        )
        .route(
            "/devops/services/{service}/environments/{environment}/tasks",
            get(list_tasks),
        )
        .route(
            "/devops/services/{service}/environments/{environment}/tasks/{id}",
            get(get_task),
        )
        .route(
            "/devops/services/{service}/installations/{id}",
            get(get_installation),
        )
}

async fn websocket(
    State(app): State<AppState>,
    Path((environment, instance)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    Extension(actor): Extension<Actor>,
    ws: WebSocketUpgrade,
) -> Response {
    let runner_type = query.get("runner_type").cloned();
    if let Err(refusal) = app.platform().check_upgrade(
        &environment,
        &actor.key_name,
        actor.role,
        runner_type.as_deref(),
    ) {
        let status =
            StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return ApiError::new(status, "EAAS_001", refusal.message).into_response();
    }
    ws.max_message_size(MAX_RUNNER_FRAME)
        .max_frame_size(MAX_RUNNER_FRAME)
        .on_failed_upgrade(move |e| {
            debug!(error = %e, "runner upgrade failed");
        })
        .on_upgrade(move |socket| async move {
            // Registered once upgraded, so a failed upgrade leaves no connection behind.
            let (conn_id, outbound) = app.platform().connect(&instance, &query, &actor.key_name);
            serve(app, socket, conn_id, outbound).await;
        })
}

/// One runner connection: frames in go to the platform, its outbound queue goes out. A
/// `Drop` ends both halves at once, so the runner sees the connection cut without a close.
async fn serve(
    app: AppState,
    socket: WebSocket,
    conn_id: u64,
    mut outbound: mpsc::UnboundedReceiver<Outbound>,
) {
    let (mut sink, mut stream) = socket.split();
    let writer = async {
        while let Some(out) = outbound.recv().await {
            let sent = match out {
                Outbound::Text(t) => sink.send(Message::Text(t.into())).await,
                Outbound::Binary(b) => sink.send(Message::Binary(b.into())).await,
                Outbound::Drop => return "dropped by the sandbox".to_owned(),
            };
            if let Err(e) = sent {
                return format!("send failed: {e}");
            }
        }
        "platform stopped".to_owned()
    };
    let reader = async {
        while let Some(msg) = stream.next().await {
            match msg {
                Ok(Message::Text(t)) => app.platform().on_text(conn_id, t.as_str()),
                Ok(Message::Binary(_)) => app.platform().on_binary(conn_id),
                Ok(Message::Close(frame)) => {
                    let why = match frame {
                        Some(f) if f.reason.is_empty() => {
                            format!("closed by the runner ({})", f.code)
                        }
                        Some(f) => format!("closed by the runner ({} {})", f.code, f.reason),
                        None => "closed by the runner".to_owned(),
                    };
                    return (why, true);
                }
                Ok(_) => {}
                Err(e) => return (format!("read failed: {e}"), false),
            }
        }
        ("connection ended".to_owned(), false)
    };
    let (reason, closed_by_runner) = tokio::select! {
        r = writer => (r, false),
        r = reader => r,
    };
    if closed_by_runner {
        // The library queued the answer to the runner's close frame: flush it.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), sink.close()).await;
    }
    app.platform().disconnect(conn_id, &reason);
}

async fn list_event_definitions(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let q = CollectionQuery::parse(
        &EVENT_DEFINITIONS_DEF,
        query.as_deref(),
        app.config().limits(),
    )?;
    Ok(q.run(event_definitions()).into_response())
}

async fn get_event_definition(Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    event_definitions()
        .into_iter()
        .find(|d| d["id"].as_u64().is_some_and(|n| n.to_string() == id) || d["type"] == id.as_str())
        .map(Json)
        .ok_or_else(|| ApiError::not_found("Event definition", &id))
}

/// The extension and environment of a path must be the sandbox's, and the caller the vendor.
fn check_environment(
    app: &AppState,
    actor: &Actor,
    service: &str,
    environment: Option<&str>,
) -> Result<(), ApiError> {
    let ext = app.platform().extension();
    if service != ext.service_id {
        return Err(ApiError::not_found("Extension", service));
    }
    if let Some(env) = environment
        && env != ext.environment.id
    {
        return Err(ApiError::not_found("Environment", env));
    }
    if actor.account_id != app.platform_account() {
        return Err(ApiError::not_found("Extension", service));
    }
    Ok(())
}

async fn list_schedules(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((service, environment)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    check_environment(&app, &actor, &service, Some(&environment))?;
    let q = CollectionQuery::parse(&SCHEDULES_DEF, query.as_deref(), app.config().limits())?;
    Ok(q.run(app.platform().schedules()).into_response())
}

async fn get_schedule(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((service, environment, id)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    check_environment(&app, &actor, &service, Some(&environment))?;
    app.platform()
        .schedule(&id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("Schedule", &id))
}

async fn trigger_schedule(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((service, environment, id)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    check_environment(&app, &actor, &service, Some(&environment))?;
    if app.platform().schedule(&id).is_none() {
        return Err(ApiError::not_found("Schedule", &id));
    }
    app.platform()
        .trigger_schedule(&id)
        .map(|(schedule, _task)| Json(schedule))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "EAAS_002", e))
}

async fn list_tasks(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((service, environment)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    check_environment(&app, &actor, &service, Some(&environment))?;
    let q = CollectionQuery::parse(&TASKS_DEF, query.as_deref(), app.config().limits())?;
    Ok(q.run(app.platform().tasks()).into_response())
}

async fn get_task(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((service, environment, id)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    check_environment(&app, &actor, &service, Some(&environment))?;
    app.platform()
        .task(&id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("Task", &id))
}

async fn get_installation(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((service, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    check_environment(&app, &actor, &service, None)?;
    app.platform()
        .installation(&id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("Installation", &id))
}

/// Drives the platform: turns usage file events into tasks and delivers due tasks, until the
/// sandbox stops.
pub async fn drive(app: AppState) {
    let mut events = app.subscribe();
    loop {
        let next = app.platform().deliver_due();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => tokio::time::sleep(Duration::from_secs(3600)).await,
            }
        };
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(event) => {
                    let vendor = app
                        .store()
                        .file(&event.object_id)
                        .map(|f| f.vendor_id().to_owned());
                    app.platform().on_usage_event(&event, vendor.as_deref());
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::error!(missed = n, "the platform side fell behind usage file events; tasks for them are lost");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = app.platform().wake.notified() => {}
            _ = sleep => {}
        }
    }
}
