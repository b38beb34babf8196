//! A test extension (handlers whose behaviour the test picks) and a harness that connects the
//! runner to a sandbox with short timings.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use connect_eaas::registry::{
    EventHandler, ExtensionDescriptor, HandlerFuture, Registry, Schedulable, Variable,
};
use connect_eaas::runner::backoff::ReconnectPolicy;
use connect_eaas::runner::{
    HandlerError, Outcome, Runner, RunnerConfig, RunnerHandle, TaskContext,
};
use connect_sandbox::Sandbox;
use serde_json::{Value, json};

/// What handlers did, by runner instance (each test uses its own instance id).
static CALLS: LazyLock<Mutex<HashMap<String, Vec<Value>>>> = LazyLock::new(Default::default);
/// What the usage file handler does, by instance: `done`, `error`, `panic`, `sleep:MS`,
/// `reschedule:S`.
static BEHAVIOUR: LazyLock<Mutex<HashMap<String, String>>> = LazyLock::new(Default::default);

fn record(ctx: &TaskContext, call: Value) {
    CALLS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(ctx.environment.instance_id.clone())
        .or_default()
        .push(call);
}

pub fn calls(instance: &str) -> Vec<Value> {
    CALLS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(instance)
        .cloned()
        .unwrap_or_default()
}

pub fn set_behaviour(instance: &str, behaviour: &str) {
    BEHAVIOUR
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(instance.to_owned(), behaviour.to_owned());
}

fn behaviour(instance: &str) -> String {
    BEHAVIOUR
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(instance)
        .cloned()
        .unwrap_or_else(|| "done".into())
}

async fn act(behaviour: &str) -> Result<Outcome, HandlerError> {
    let (what, arg) = behaviour.split_once(':').unwrap_or((behaviour, ""));
    match what {
        "error" => Err(HandlerError::msg("the test handler failed on purpose")),
        "panic" => panic!("the test handler panicked on purpose"),
        "sleep" => {
            tokio::time::sleep(Duration::from_millis(arg.parse().unwrap_or(100))).await;
            Ok(Outcome::done())
        }
        "reschedule" => Ok(Outcome::reschedule(arg.parse().unwrap_or(30))),
        "skip" => Ok(Outcome::skip("the test handler skipped on purpose")),
        "fail" => Ok(Outcome::fail("the test handler refused on purpose")),
        _ => Ok(Outcome::done()),
    }
}

/// `product_custom_event_processing`: `data.action` picks what it does.
async fn custom_event(ctx: TaskContext, data: Value) -> Result<Outcome, HandlerError> {
    record(
        &ctx,
        json!({"event": "custom", "task": ctx.task.task_id, "data": data}),
    );
    match data["action"].as_str().unwrap_or("echo") {
        "echo" => Ok(Outcome::respond(
            200,
            Some(json!({"X-Test": "1"})),
            Some(data),
        )),
        "config" => {
            let vars: serde_json::Map<String, Value> = ctx
                .config
                .names()
                .filter(|n| !ctx.config.is_secure(n))
                .map(|n| (n.to_owned(), json!(ctx.config.get(n))))
                .collect();
            Ok(Outcome::respond(
                200,
                None,
                Some(json!({"variables": vars,
                "secure": ctx.config.names().filter(|n| ctx.config.is_secure(n)).collect::<Vec<_>>()})),
            ))
        }
        "call_api" => {
            let n = ctx.client.count_raw("/marketplaces", "").await?;
            Ok(Outcome::respond(
                200,
                None,
                Some(json!({"marketplaces": n})),
            ))
        }
        "installation" => {
            // A call with the installation's client, to see whose key it carries.
            if let Some(c) = &ctx.installation_client {
                c.count_raw("/marketplaces", "").await?;
            }
            Ok(Outcome::respond(
                200,
                None,
                Some(
                    json!({"installation": ctx.installation, "has_client": ctx.installation_client.is_some()}),
                ),
            ))
        }
        "refuse" => Ok(Outcome::respond_fail(
            422,
            None,
            Some(json!({"error": "bad input"})),
            Some("refused".into()),
        )),
        other => act(other).await,
    }
}

/// `usage_file_request_processing` on `ready` and `invalid`.
async fn usage_file(ctx: TaskContext, file: Value) -> Result<Outcome, HandlerError> {
    record(
        &ctx,
        json!({"event": "usage_file", "task": ctx.task.task_id, "file": file["id"], "status": file["status"]}),
    );
    act(&behaviour(&ctx.environment.instance_id)).await
}

/// The schedulable `report_monthly_usage` (the dataset's schedule runs it).
async fn scheduled(ctx: TaskContext, schedule: Value) -> Result<Outcome, HandlerError> {
    record(
        &ctx,
        json!({"event": "scheduled", "task": ctx.task.task_id, "schedule": schedule["id"]}),
    );
    act(&behaviour(&ctx.environment.instance_id)).await
}

/// `asset_purchase_request_validation` and `product_action_execution`: `data.action` picks.
async fn other_interactive(ctx: TaskContext, data: Value) -> Result<Outcome, HandlerError> {
    record(
        &ctx,
        json!({"event": ctx.task.event_type, "task": ctx.task.task_id, "data": data}),
    );
    match data["action"].as_str().unwrap_or("echo") {
        "echo" => Ok(Outcome::respond(200, None, Some(data))),
        "huge" => Ok(Outcome::respond(
            200,
            None,
            Some(json!({"blob": "x".repeat(3 * 1024 * 1024)})),
        )),
        other => act(other).await,
    }
}

fn call_other(ctx: TaskContext, v: Value) -> HandlerFuture {
    Box::pin(other_interactive(ctx, v))
}

fn call_custom(ctx: TaskContext, v: Value) -> HandlerFuture {
    Box::pin(custom_event(ctx, v))
}

fn call_usage_file(ctx: TaskContext, v: Value) -> HandlerFuture {
    Box::pin(usage_file(ctx, v))
}

fn call_scheduled(ctx: TaskContext, v: Value) -> HandlerFuture {
    Box::pin(scheduled(ctx, v))
}

pub const USAGE_STATUSES: &[&str] = &["ready", "invalid"];

pub fn registry() -> Registry {
    Registry::new(
        [
            EventHandler {
                event_type: "product_custom_event_processing",
                statuses: &[],
                name: "tests::custom_event",
                handler: call_custom,
            },
            EventHandler {
                event_type: "usage_file_request_processing",
                statuses: USAGE_STATUSES,
                name: "tests::usage_file",
                handler: call_usage_file,
            },
            EventHandler {
                event_type: "asset_purchase_request_validation",
                statuses: &["draft"],
                name: "tests::validation",
                handler: call_other,
            },
            EventHandler {
                event_type: "product_action_execution",
                statuses: &[],
                name: "tests::product_action",
                handler: call_other,
            },
        ],
        [Schedulable {
            method: "report_monthly_usage",
            name: "Report",
            description: "Test report",
            handler_name: "tests::scheduled",
            handler: call_scheduled,
        }],
        [
            Variable {
                name: "GREETING",
                initial_value: "hello",
                secure: false,
            },
            Variable {
                name: "TEST_SECRET",
                initial_value: "initial-secret-value",
                secure: true,
            },
        ],
    )
    .expect("the test registry is valid")
}

/// A runner configuration for the sandbox with short timings.
pub fn config(sb: &Sandbox, instance: &str) -> RunnerConfig {
    let ext = sb.state().dataset().extension();
    let key = sb
        .key("extension")
        .expect("the dataset has the extension key");
    let mut c = RunnerConfig::local(&sb.origin(), &key, &ext.environment.id, instance)
        .expect("valid runner config");
    c.timings.handshake_timeout = Duration::from_secs(2);
    c.timings.reconnect = ReconnectPolicy {
        initial: Duration::from_millis(20),
        max_delay: Duration::from_millis(300),
        generic_budget: Duration::from_secs(30),
        maintenance_budget: Duration::from_secs(60),
        pause_after_give_up: Duration::from_millis(50),
        pause_after_drop: Duration::from_millis(50),
    };
    c.shutdown_grace = Duration::from_secs(5);
    c
}

/// What the test extension tells Connect about itself.
pub fn test_descriptor() -> ExtensionDescriptor {
    ExtensionDescriptor::parse(
        r#"{"name": "test-extension", "description": "The runner's test extension.",
            "version": "1.0.0", "audience": ["vendor"],
            "readme_url": "https://example.com/test-extension/README.md",
            "changelog_url": "https://example.com/test-extension/CHANGELOG.md"}"#,
        "the test extension",
    )
    .expect("a valid descriptor")
}

pub fn start_runner(config: RunnerConfig, registry: Registry) -> RunnerHandle {
    Runner::new(config, registry, &test_descriptor(), None)
        .expect("runner builds")
        .start()
}

/// A runner with the test extension, connected.
pub async fn connected(sb: &Sandbox, instance: &str) -> RunnerHandle {
    connected_with(sb, instance, |_| {}).await
}

/// Sets platform settings through the admin API.
pub async fn platform_settings(sb: &Sandbox, settings: Value) {
    let r = super::admin_put(sb, "platform/settings", settings).await;
    assert!(
        r.status().is_success(),
        "settings accepted: {}",
        r.text().await.unwrap_or_default()
    );
}

/// Submits a task and waits for it to finish.
pub async fn run_task(sb: &Sandbox, spec: Value) -> Value {
    let r = super::http()
        .post(format!(
            "{}/sandbox/platform/tasks?wait_ms=15000",
            sb.origin()
        ))
        .json(&spec)
        .send()
        .await
        .expect("admin answers");
    assert_eq!(r.status(), 200, "the task finished in time");
    r.json().await.expect("task JSON")
}

/// The platform's dump.
pub async fn platform(sb: &Sandbox) -> Value {
    super::admin_get(sb, "platform").await
}

/// The dump's entry for a task.
pub async fn task(sb: &Sandbox, id: &str) -> Value {
    platform(sb).await["tasks"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["id"] == id).cloned())
        .unwrap_or_else(|| panic!("task {id} not in the dump"))
}

/// Polls `check` on the platform dump until it holds or 15 s pass.
pub async fn wait_for(sb: &Sandbox, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let p = platform(sb).await;
        if check(&p) {
            return p;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}; platform: {p:#}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until a runner has both sessions connected and set up: how a test sees that the
/// binary's runner, which it cannot ask, is ready.
pub async fn both_sessions_set_up(sb: &Sandbox) -> Value {
    wait_for(sb, "both sessions set up", |p| {
        p["connections"]
            .as_array()
            .is_some_and(|c| c.len() == 2 && c.iter().all(|c| c["setup_done"] == true))
    })
    .await
}

/// Waits until task `id` is answered (no longer scheduled or processing), up to `limit`.
pub async fn task_settled(sb: &Sandbox, id: &str, limit: Duration) -> Value {
    let platform = sb.state().platform();
    let settled = async {
        loop {
            let t = platform.task(id).expect("task");
            if t["status"] != "scheduled" && t["status"] != "processing" {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(limit, settled)
        .await
        .unwrap_or_else(|_| panic!("task {id} not answered within {limit:?}"))
}

/// The protocol errors the sandbox saw (none, in a conforming run).
pub async fn protocol_errors(sb: &Sandbox) -> Vec<Value> {
    platform(sb).await["protocol_errors"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// POST on the sandbox's own API.
pub async fn admin_post(sb: &Sandbox, path: &str, body: Value) -> Value {
    let r = super::http()
        .post(format!("{}/sandbox/{path}", sb.origin()))
        .json(&body)
        .send()
        .await
        .expect("admin answers");
    assert!(r.status().is_success(), "admin {path}: {}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

/// Submits a task without waiting; returns its id.
pub async fn submit(sb: &Sandbox, spec: Value) -> String {
    let t = admin_post(sb, "platform/tasks", spec).await;
    t["id"].as_str().expect("task id").to_owned()
}

/// Waits until a task reaches a final status and returns it.
pub async fn finished(sb: &Sandbox, id: &str) -> Value {
    let p = wait_for(sb, &format!("task {id} to finish"), |p| {
        p["tasks"].as_array().into_iter().flatten().any(|t| {
            t["id"] == id
                && matches!(
                    t["status"].as_str(),
                    Some("succeeded" | "failed" | "skipped")
                )
        })
    })
    .await;
    p["tasks"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["id"] == id).cloned())
        .expect("task present")
}

/// A custom event task spec.
pub fn custom(data: Value) -> Value {
    json!({"category": "interactive", "event_type": "product_custom_event_processing",
           "object_id": "PR-391-274-001-0001", "data": data})
}

/// The sandbox's request log.
pub async fn requests(sb: &Sandbox) -> Vec<Value> {
    super::admin_get(sb, "requests")
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until the test extension's handlers were called `n` times for `instance`.
pub async fn wait_called(instance: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while calls(instance).len() < n {
        if tokio::time::Instant::now() > deadline {
            panic!(
                "handlers of {instance} called {} times, {n} expected",
                calls(instance).len()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Replaces the sandbox's websocket fault rules.
pub async fn set_ws_faults(sb: &Sandbox, rules: Value) {
    let r = super::admin_put(sb, "platform/faults", rules).await;
    assert!(
        r.status().is_success(),
        "faults accepted: {}",
        r.text().await.unwrap_or_default()
    );
}

/// A background usage file task spec.
pub fn usage_file_task(file_id: &str) -> Value {
    json!({"category": "background", "event_type": "usage_file_request_processing", "object_id": file_id})
}

/// The runner's two sessions connected once each: nothing made it reconnect.
pub fn assert_no_reconnect(runner: &RunnerHandle) {
    assert_eq!(
        runner
            .stats()
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        2,
        "no reconnect"
    );
}

/// A runner with the test extension and a configuration changed by `tweak`, connected.
pub async fn connected_with(
    sb: &Sandbox,
    instance: &str,
    tweak: impl FnOnce(&mut RunnerConfig),
) -> RunnerHandle {
    let mut c = config(sb, instance);
    tweak(&mut c);
    let runner = start_runner(c, registry());
    assert!(
        runner.wait_connected(Duration::from_secs(10)).await,
        "the runner connects to the sandbox"
    );
    runner
}

/// `connect-usage run` (the test's binary, `bin`) as the sandbox extension's environment,
/// named `instance`: stdout discarded, stderr piped, killed when dropped. The caller adds its
/// own settings and spawns it.
pub fn run_command(bin: &str, sb: &Sandbox, instance: &str) -> tokio::process::Command {
    let ext = sb.state().dataset().extension();
    let key = sb.key(&ext.api_key).expect("extension key");
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("run")
        .env("API_KEY", format!("ApiKey {}", key.expose()))
        .env("ENVIRONMENT_ID", &ext.environment.id)
        .env("SERVER_ADDRESS", format!("ws://{}", sb.addr()))
        .env("INSTANCE_ID", instance)
        .env_remove("API_ADDRESS")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Every line `from` gives until it ends, collected by a task of its own.
pub fn collect_lines(
    from: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> tokio::task::JoinHandle<String> {
    use tokio::io::AsyncBufReadExt;
    tokio::spawn(async move {
        let mut all = String::new();
        let mut lines = tokio::io::BufReader::new(from).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            all.push_str(&line);
            all.push('\n');
        }
        all
    })
}

/// Sends SIGTERM to `child` and waits (up to 20 s) for it to exit; its exit code.
pub async fn terminate(child: &mut tokio::process::Child) -> Option<i32> {
    let pid = child.id().expect("pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("status")
        .code()
}
