//! What arrived at the sandbox's log listener (Connect's log service), read for tests.

use std::time::{Duration, Instant};

use connect_sandbox::Sandbox;
use serde_json::Value;

/// What the listener received, as JSON.
pub async fn shipped(sb: &Sandbox) -> Value {
    super::admin_get(sb, "logs").await
}

/// Records from this runner instance (others may still ship from an earlier test).
pub fn records_of(logs: &Value, instance: &str) -> Vec<Value> {
    logs["records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["instance_id"] == instance)
        .cloned()
        .collect()
}

pub fn of_task<'a>(records: &'a [Value], task: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["task_id"] == task).collect()
}

/// Waits until a record of `instance` matches `check`; returns all of them then.
pub async fn wait_shipped(
    sb: &Sandbox,
    instance: &str,
    what: &str,
    limit: Duration,
    check: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let records = records_of(&shipped(sb).await, instance);
        if records.iter().any(&check) {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "no shipped record for {what}; got {:#}",
            Value::from(records)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn is_task_done(task: &str) -> impl Fn(&Value) -> bool + '_ {
    move |r| r["task_id"] == task && r["message"] == "task done"
}
