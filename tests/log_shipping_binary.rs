//! `connect-usage run` ships its records to Connect's log service at the platform's levels,
//! while `RUST_LOG` pins only its local output (the runner's shipping itself is tested with the
//! runner, in crates/connect-eaas/tests/runner_log_shipping.rs).

mod common;

use std::time::Duration;

use common::runner::{self as rt, custom, platform_settings, run_task};
use common::shipping::{is_task_done, records_of, shipped, wait_shipped};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_program_ships_at_the_platforms_levels_while_rust_log_pins_the_local_output() {
    let sb = common::start().await;
    platform_settings(
        &sb,
        json!({"send_logging_key": true, "log_level": "DEBUG", "runner_log_level": "DEBUG"}),
    )
    .await;
    let instance = "bin-ship";
    let mut child = rt::run_command(env!("CARGO_BIN_EXE_connect-usage"), &sb, instance)
        .env("LOGZIO_LISTENER_URL", sb.log_listener_url())
        .env("RUST_LOG", "warn")
        .env("LOG_FORMAT", "text")
        .spawn()
        .expect("starts");
    let local = rt::collect_lines(child.stderr.take().expect("stderr"));
    rt::both_sessions_set_up(&sb).await;
    let task = run_task(&sb, custom(json!({"action": "echo"}))).await["id"]
        .as_str()
        .expect("task id")
        .to_owned();
    let records = wait_shipped(&sb, instance, "the task", Duration::from_secs(10), |r| {
        r["task_id"] == task.as_str() && r["log_level"] == "DEBUG"
    })
    .await;
    assert!(records.iter().any(is_task_done(&task)), "info shipped too");

    assert_eq!(rt::terminate(&mut child).await, Some(0));
    let records = records_of(&shipped(&sb).await, instance);
    assert!(
        records.iter().any(|r| r["message"] == "runner stopped"),
        "the last records are flushed before the program exits"
    );
    let local = local.await.expect("stderr");
    assert!(
        !local.contains(" INFO ") && !local.contains("DEBUG"),
        "the local output stays at RUST_LOG's warn: {local}"
    );
    assert!(!local.contains(sb.logging_key().expose()));
}
