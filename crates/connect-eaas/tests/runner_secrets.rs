//! No secret of the runner's world reaches a log line or a `Debug` print: the environment's
//! key, a task's own API key, secure variable values and the platform's logging key. Every
//! log record of the runner, the sandbox and the libraries below them (bridged from `log`) is
//! captured at trace level through a busy session and searched.

mod common;

use std::time::Duration;

use common::runner::{self as rt, admin_post, config, custom, run_task, start_runner};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_secrets_never_appear_in_logs_or_debug_output() {
    // The program's own log pipeline: its secret-safe filter, then everything at trace.
    let capture = common::capture_all_logs();

    let sb = common::start().await;
    let mut c = config(&sb, "secrets");
    c.interactive_timeout = Duration::from_millis(500);
    let config_shown = format!("{c:?}");
    let runner = start_runner(c, rt::registry());
    assert!(runner.wait_connected(Duration::from_secs(10)).await);

    let task_key = format!("ApiKey {}", sb.vendor_key().expose());
    // Tasks with their own key, succeeding, failing, panicking and timing out.
    for action in ["call_api", "error", "panic", "sleep:2000", "config"] {
        let mut spec = custom(json!({"action": action}));
        spec["api_key"] = json!(task_key);
        run_task(&sb, spec).await;
    }
    // A background task with the task key, through the status check and the fetch.
    let file = common::ready_file(&sb, &common::qt_target(&sb), "secrets").await;
    let mut spec = rt::usage_file_task(&file.id);
    spec["api_key"] = json!(task_key);
    run_task(&sb, spec).await;
    // Secure variables changed live, a logging key, and a malformed frame holding a key.
    let r = common::admin_put(
        &sb,
        "platform/setup",
        json!({"variables": {"TEST_SECRET": {"value": "rotated-secret-value", "secure": true}}}),
    )
    .await;
    assert!(r.status().is_success());
    let setup = json!({"version": 2, "message_type": "setup_response", "data": {
        "variables": [{"name": "TEST_SECRET", "value": "pushed-secret-value", "secure": true}],
        "logging": {"logging_api_key": "logz-secret-value", "log_level": "DEBUG", "runner_log_level": "DEBUG"},
        "model_type": "setup_response"}});
    admin_post(&sb, "platform/send", json!({"text": setup.to_string()})).await;
    let bad = json!({"version": 2, "message_type": "task", "data": {"model_type": "task",
        "options": {"task_id": "TQ-X", "task_category": "interactive", "api_key": 42},
        "input": {"event_type": "x", "object_id": "y", "data": {"token": "frame-secret-value"}}}});
    admin_post(&sb, "platform/send", json!({"text": bad.to_string()})).await;
    let bad_key = json!({"version": 2, "message_type": "task", "data": {"model_type": "task",
        "options": {"task_id": 7, "task_category": "interactive", "api_key": "ApiKey SU-1:frame-key-value"},
        "input": {"event_type": "x", "object_id": "y"}}});
    admin_post(&sb, "platform/send", json!({"text": bad_key.to_string()})).await;
    run_task(&sb, custom(json!({"action": "config"}))).await;
    let shown = format!(
        "{config_shown}\n{:?}\n{:?}",
        runner.variables(),
        runner.stats()
    );
    runner.stop_and_wait().await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let logs = capture.text();
    assert!(logs.contains("task done"), "the capture sees the runner");
    assert!(
        logs.contains("tungstenite"),
        "the capture sees the websocket library (from log)"
    );
    assert!(
        logs.contains("runner connected"),
        "the capture sees the platform side"
    );
    let ext_key = sb.key("extension").expect("key");
    let mut secrets = vec![
        ext_key.expose().to_owned(),
        sb.vendor_key().expose().to_owned(),
        sb.usage_token().expose().to_owned(),
        "initial-secret-value".to_owned(),
        "rotated-secret-value".to_owned(),
        "pushed-secret-value".to_owned(),
        "logz-secret-value".to_owned(),
        "frame-key-value".to_owned(),
    ];
    for k in [&ext_key, &sb.vendor_key()] {
        if let Some((_, s)) = k.expose().split_once(':') {
            secrets.push(s.to_owned());
        }
    }
    for secret in &secrets {
        let at = logs.find(secret.as_str());
        assert!(
            at.is_none(),
            "{secret} is in the logs: {}",
            at.map(|i| logs[i.saturating_sub(300)..(i + 100).min(logs.len())].to_owned())
                .unwrap_or_default()
        );
        assert!(
            !shown.contains(secret.as_str()),
            "{secret} in Debug output: {shown}"
        );
    }
}
