//! The setup handshake and the extension's variables: a runner's `setup_request` (its event
//! subscriptions and variables, kept across reconnects) answered with a `setup_response`
//! (variables, event definitions, logging settings), the same response sent again to every
//! session when variables or log levels change, and the extension's schedules and
//! installations as the DevOps API shows them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value as Json, json};
use tokio::time::Instant;

use super::conformance::{check_setup_request, protocol_error};
use super::connections::Outbound;
use super::events::{EVENT_TYPES, STATUS_FILTER_TEMPLATE};
use super::tasks::TaskState;
use super::{Inner, Platform, now_text};
use crate::faults::{WsAction, WsPoint};

/// A variable of the extension's environment, with its current value.
pub(super) struct VarState {
    pub(super) name: String,
    pub(super) value: String,
    pub(super) secure: bool,
}

impl Platform {
    pub(super) fn on_setup_request(&self, inner: &mut Inner, conn_id: u64, frame: &Json) {
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
