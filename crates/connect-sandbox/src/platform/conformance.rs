//! The protocol conformance checker: every frame a runner sends is held against Connect's
//! EaaS protocol, and what does not conform is kept in `protocol_errors` (things Connect may
//! accept but a runner should not rely on, in `protocol_notes`) for tests to assert on.
//! The checks say nothing back to the runner unless Connect would refuse the frame.

use std::collections::HashMap;

use serde_json::{Value as Json, json};
use tracing::warn;

use super::events::{EVENT_TYPES, EventType};
use super::tasks::TaskRecord;
use super::{Inner, now_text};

pub(super) fn protocol_error(
    inner: &mut Inner,
    conn_id: u64,
    task_id: Option<&str>,
    error: String,
) {
    warn!(connection = conn_id, task_id = task_id.unwrap_or("-"), %error, "runner protocol error");
    inner
        .protocol_errors
        .push(json!({"at": now_text(), "connection": conn_id, "task_id": task_id, "error": error}));
}

/// What is wrong with a connection URL's query: the parameters every runner sends.
pub(super) fn check_connection_query(query: &HashMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for k in ["running_tasks", "running_scheduled_tasks", "runner_type"] {
        if !query.contains_key(k) {
            problems.push(format!("the connection URL has no {k} parameter"));
        }
    }
    if let Some(rt) = query.get("runner_type")
        && !matches!(rt.as_str(), "background" | "interactive")
    {
        problems.push(format!(
            "runner_type {rt:?} is not background or interactive"
        ));
    }
    problems
}

/// What is wrong with a setup request, as Connect would refuse it.
pub(super) fn check_setup_request(data: &Json) -> (Vec<String>, Vec<String>) {
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
pub(super) fn check_result(data: &Json, t: &TaskRecord) -> Vec<String> {
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
