//! A whole Connect extension on connect-eaas: one interactive handler, declared next to its
//! function, run with the official runner's environment variables (`API_KEY`,
//! `ENVIRONMENT_ID`, `SERVER_ADDRESS`; `SERVER_ADDRESS=ws://127.0.0.1:8080` for a local
//! sandbox) until Ctrl-C.
//!
//! ```text
//! cargo run -p connect-eaas --example hello_extension
//! ```

use connect_eaas::{
    ExtensionDescriptor, HandlerError, Outcome, Registry, Runner, RunnerConfig, TaskContext,
};
use serde_json::{Value, json};

connect_eaas::event_handler! {
    event: "product_custom_event_processing",
    handler: greet,
}

/// Answers a custom event with a greeting for the `name` it carries.
async fn greet(_ctx: TaskContext, data: Value) -> Result<Outcome, HandlerError> {
    let name = data["name"].as_str().unwrap_or("world");
    let body = json!({"greeting": format!("Hello, {name}")});
    Ok(Outcome::respond(200, None, Some(body)))
}

/// What Connect shows of the extension (an extension keeps it in its `extension.json`).
const DESCRIPTOR: &str = r#"{
    "name": "hello-extension",
    "description": "Greets whoever a custom event names.",
    "version": "1.0.0",
    "readme_url": "https://example.com/hello/README.md",
    "changelog_url": "https://example.com/hello/CHANGELOG.md"
}"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let descriptor = ExtensionDescriptor::parse(DESCRIPTOR, "hello-extension")?;
    let runner = Runner::new(
        RunnerConfig::from_env()?,
        Registry::collect()?,
        &descriptor,
        None,
    )?
    .start();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => runner.stop(),
        _ = runner.stop_requested() => {}
    }
    runner.wait().await;
    Ok(())
}
