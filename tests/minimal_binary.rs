//! The binary built without the sandbox, as the image ships it: CI runs this file with
//! `cargo test --no-default-features --test minimal_binary`, so the binary under test has
//! `run`, `report` and `describe` only. It still reports and runs against the sandbox, which
//! the test itself starts (the sandbox stays a dev-dependency).
//!
//! In a default build the file is empty: the binary there has the sandbox's commands.
#![cfg(not(feature = "sandbox"))]

mod common;

use std::process::Stdio;
use std::time::Duration;

use connect_sandbox::{RuntimeConfig, Sandbox, SandboxConfig};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_connect-usage");

async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxConfig {
        runtime: RuntimeConfig {
            usage_records: 300,
            ..RuntimeConfig::default()
        },
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox")
}

#[tokio::test]
async fn the_sandbox_commands_are_not_in_it() {
    for command in ["demo", "sandbox"] {
        let out = tokio::process::Command::new(BIN)
            .arg(command)
            .output()
            .await
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{command}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("unrecognized subcommand"), "{stderr}");
    }
    let help = tokio::process::Command::new(BIN)
        .arg("--help")
        .output()
        .await
        .expect("runs");
    let text = String::from_utf8_lossy(&help.stdout);
    for command in ["run", "report", "describe"] {
        assert!(
            text.contains(&format!("  {command} ")),
            "{command} in {text}"
        );
    }
}

#[tokio::test]
async fn it_reports_a_month_to_the_sandbox() {
    let sb = sandbox().await;
    let out = tokio::process::Command::new(BIN)
        .args(["report", "--period", "2024-04", "--json"])
        .env("API_KEY", format!("ApiKey {}", sb.vendor_key().expose()))
        .env("API_ADDRESS", sb.origin())
        .env("USAGE_SOURCE", sb.usage_api_url())
        .env("USAGE_SOURCE_TOKEN", sb.usage_token().expose())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("json");
    let created = summary["groups"]["created"].as_u64().expect("created");
    assert!(created > 0, "{summary:#}");
    let ours = sb
        .state()
        .store()
        .files
        .iter()
        .filter(|f| {
            f.external_id
                .as_deref()
                .is_some_and(|e| e.starts_with("cu:"))
        })
        .count();
    assert_eq!(ours as u64, created);
}

#[tokio::test]
async fn it_runs_the_monthly_schedule_through_the_platform() {
    let sb = sandbox().await;
    let ext = sb.state().dataset().extension();
    let key = sb.key(&ext.api_key).expect("extension key");
    let mut child = tokio::process::Command::new(BIN)
        .arg("run")
        .env("API_KEY", format!("ApiKey {}", key.expose()))
        .env("ENVIRONMENT_ID", &ext.environment.id)
        .env("SERVER_ADDRESS", format!("ws://{}", sb.addr()))
        .env("INSTANCE_ID", "minimal")
        .env_remove("API_ADDRESS")
        .env_remove("METRICS_ADDRESS")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starts");
    let platform = sb.state().platform();
    common::runner::both_sessions_set_up(&sb).await;
    let schedule = ext.schedules[0]["id"].as_str().expect("id").to_owned();
    let (_, task) = platform.trigger_schedule(&schedule).expect("fired");
    let t = common::runner::task_settled(&sb, &task, Duration::from_secs(60)).await;
    assert_eq!(t["status"], "succeeded", "{t:#}");
    let _ = child.start_kill();
    let _ = child.wait().await;
}
