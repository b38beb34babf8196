//! The runner against the sandbox's platform side: the conformance list of the EaaS events
//! protocol reference (section 15), each item a test, plus delivery, shutdown and failure
//! cases. Every test starts its own sandbox and runner on free ports.

mod common;

use common::runner::{self as rt, calls, connected, platform, run_task};
use serde_json::json;

#[tokio::test]
async fn interactive_task_round_trip() {
    let sb = common::start().await;
    let runner = connected(&sb, "smoke").await;
    let t = run_task(
        &sb,
        json!({"category": "interactive", "event_type": "product_custom_event_processing",
               "object_id": "PR-1", "data": {"action": "echo", "n": 1}}),
    )
    .await;
    assert_eq!(t["status"], "succeeded", "{t:#}");
    assert_eq!(t["data"]["http_status"], 200);
    assert_eq!(t["data"]["body"]["n"], 1);
    assert_eq!(calls("smoke").len(), 1);
    assert_eq!(rt::protocol_errors(&sb).await, Vec::<serde_json::Value>::new());
    let report = runner.stop_and_wait().await;
    assert!(report.undelivered.is_empty());
    let p = platform(&sb).await;
    assert!(p["connection_log"].as_array().expect("log").iter().any(|e| e["event"] == "runner_shutdown"));
}
