//! The crate's example extension, as a user runs it: its binary started against the sandbox
//! (Connect's emulator) with the official runner's environment variables, answering a task the
//! platform sends.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use connect_sandbox::{Sandbox, SandboxConfig};
use serde_json::{Value, json};

/// The example's binary, which `cargo test` builds beside the tests.
fn example_binary() -> PathBuf {
    let test = std::env::current_exe().expect("the test's path");
    // target/<profile>/deps/<test> -> target/<profile>/examples/hello_extension
    let profile = test
        .parent()
        .and_then(|deps| deps.parent())
        .expect("a target directory");
    profile.join("examples").join("hello_extension")
}

#[tokio::test]
async fn the_example_extension_answers_the_platform() {
    let sb = Sandbox::start(SandboxConfig::default())
        .await
        .expect("sandbox");
    let ext = sb.state().dataset().extension();
    let key = sb.key(&ext.api_key).expect("extension key");
    let mut child = tokio::process::Command::new(example_binary())
        .env("API_KEY", format!("ApiKey {}", key.expose()))
        .env("ENVIRONMENT_ID", &ext.environment.id)
        .env("SERVER_ADDRESS", format!("ws://{}", sb.addr()))
        .env("INSTANCE_ID", "hello")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{e}: the example is built by a whole `cargo test`; after a filtered one, \
                 `cargo build -p connect-eaas --example hello_extension`"
            )
        });
    let platform = sb.state().platform();
    let connected = async {
        loop {
            let p = platform.dump();
            let ready = p["connections"]
                .as_array()
                .is_some_and(|c| c.len() == 2 && c.iter().all(|c| c["setup_done"] == true));
            if ready {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let p = tokio::time::timeout(Duration::from_secs(20), connected)
        .await
        .expect("the example connects");
    // It told the platform what it handles.
    let setup = p["connections"][0].clone();
    assert_eq!(setup["instance"], "hello", "{setup:#}");

    connect_client::install_crypto_provider();
    let answer: Value = reqwest::Client::new()
        .post(format!(
            "{}/sandbox/platform/tasks?wait_ms=10000",
            sb.origin()
        ))
        .json(
            &json!({"category": "interactive", "event_type": "product_custom_event_processing",
                      "object_id": "PR-391-274-001-0001", "data": {"name": "Connect"}}),
        )
        .send()
        .await
        .expect("task submitted")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["status"], "succeeded", "{answer:#}");
    assert_eq!(
        answer["deliveries"][0]["output"]["data"]["body"],
        json!({"greeting": "Hello, Connect"}),
        "{answer:#}"
    );
    let _ = child.start_kill();
    let _ = child.wait().await;
}
