//! Runner connections and task delivery: the upgrade check, a session's life from connect to
//! disconnect, the frames a runner sends (routed to the setup, the task results, or its
//! shutdown), and the delivery loop's step that hands due tasks to connected sessions.
//!
//! A task whose connection is lost before it is answered goes back to waiting, to be
//! delivered again after the runner reconnects.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info};

use super::conformance::{check_connection_query, protocol_error};
use super::tasks::{Attempt, TaskState};
use super::{Platform, now_text};
use crate::dataset::Role;
use crate::faults::{WsAction, WsPoint};

/// What the connection task sends.
#[derive(Debug)]
pub enum Outbound {
    Text(String),
    Binary(Vec<u8>),
    /// Drop the connection without a close frame.
    Drop,
}

/// A runner's websocket session as the platform sees it.
pub(super) struct Conn {
    pub(super) instance: String,
    pub(super) runner_type: Option<String>,
    pub(super) running_tasks: Option<u64>,
    pub(super) running_scheduled_tasks: Option<u64>,
    pub(super) key_name: String,
    pub(super) tx: mpsc::UnboundedSender<Outbound>,
    pub(super) connected_at: String,
    pub(super) setup_done: bool,
    /// The runner said `shutdown`: no new tasks.
    pub(super) draining: bool,
    pub(super) frames_in: u64,
    pub(super) frames_out: u64,
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
        for p in check_connection_query(query) {
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
}
