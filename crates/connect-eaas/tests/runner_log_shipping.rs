//! Log records shipped to Connect's log service, as the sandbox's Logz.io listener receives
//! them: with the metadata the portal filters on and the task ids, at the levels the platform
//! asks for (changed live), without a secret, and without slowing tasks while the listener is
//! down (the oldest records are dropped then, and one local warning counts them).
//!
//! One subscriber serves the whole test binary, as in the program: the secret-safe filter,
//! the shipper's layer, and a local output at info of its own (so the debug records the
//! platform asks for reach the listener while the local output stays at info). Tests take
//! turns: they share that one shipper.

mod common;

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use common::Capture;
use common::runner::{self as rt, admin_post, custom, platform_settings, run_task};
use common::shipping::{is_task_done, of_task, shipped, wait_shipped};
use connect_eaas::runner::log_ship::{LogShipper, ShipOptions};
use connect_eaas::runner::{Runner, RunnerHandle};
use connect_sandbox::Sandbox;
use serde_json::{Value, json};

/// The binary's shipper and its local output.
static LOGS: LazyLock<(LogShipper, Capture)> = LazyLock::new(|| {
    use tracing_subscriber::prelude::*;
    let shipper = LogShipper::new(ShipOptions {
        extension_targets: vec!["connect_client".into()],
        capacity: 100,
        interval: Duration::from_millis(50),
        retry_initial: Duration::from_millis(100),
        retry_max: Duration::from_millis(400),
        request_timeout: Duration::from_secs(5),
        ..ShipOptions::default()
    });
    let capture = Capture::default();
    tracing_subscriber::registry()
        .with(connect_eaas::logging::secret_safe_filter())
        .with(shipper.layer())
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(capture.clone())
                .with_ansi(false)
                .with_filter(tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init()
        .expect("the only subscriber of this test binary");
    (shipper, capture)
});

/// One test at a time: they share the shipper.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A sandbox that hands out its logging key, and a runner shipping to its listener.
async fn shipping_runner(instance: &str) -> (Sandbox, RunnerHandle) {
    let shipper = LOGS.0.clone();
    let sb = common::start().await;
    platform_settings(&sb, json!({"send_logging_key": true})).await;
    let mut c = rt::config(&sb, instance);
    c.log_listener_url = sb.log_listener_url();
    let runner = Runner::new(c, rt::registry(), &rt::test_descriptor(), None)
        .expect("runner builds")
        .ship_logs(shipper)
        .start();
    assert!(runner.wait_connected(Duration::from_secs(10)).await);
    (sb, runner)
}

/// Runs a task to its end; returns its id.
async fn finished_task(sb: &Sandbox, spec: Value) -> String {
    run_task(sb, spec).await["id"]
        .as_str()
        .expect("task id")
        .to_owned()
}

async fn put_setup(sb: &Sandbox, body: Value) {
    let r = common::admin_put(sb, "platform/setup", body).await;
    assert!(r.status().is_success(), "setup changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_arrive_with_the_metadata_the_portal_filters_on_and_task_ids() {
    let _turn = TURN.lock().await;
    let instance = "ship-metadata";
    let (sb, runner) = shipping_runner(instance).await;
    let task_id = finished_task(&sb, custom(json!({"action": "echo"}))).await;
    let records = wait_shipped(
        &sb,
        instance,
        "the task's end",
        Duration::from_secs(10),
        is_task_done(&task_id),
    )
    .await;

    let ext = sb.state().dataset().extension();
    let account_id = sb.state().platform_account().to_owned();
    let account_name = sb
        .state()
        .dataset()
        .account(&account_id)
        .expect("the extension's account")
        .name
        .clone();
    let done = records
        .iter()
        .find(|r| is_task_done(&task_id)(r))
        .expect("found above");
    let expected = json!({
        "api_address": sb.addr().to_string(),
        "service_id": ext.service_id,
        "environment_id": ext.environment.id,
        "environment_type": ext.environment.kind,
        "instance_id": instance,
        "account_id": account_id,
        "account_name": account_name,
        "repository_tag": env!("CARGO_PKG_VERSION"),
        "task_id": task_id,
        "log_level": "INFO",
        "logger": "connect_eaas::runner::dispatch",
        "type": "python",
        "result": "success",
    });
    for (field, value) in expected.as_object().expect("object") {
        assert_eq!(&done[field], value, "{field} in {done:#}");
    }
    let stamp = done["@timestamp"].as_str().expect("@timestamp");
    assert!(
        chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H:%M:%S%.3fZ").is_ok()
            && stamp.len() == 24,
        "{stamp}"
    );
    // Outside a task: the metadata, no task id.
    let connected = records
        .iter()
        .find(|r| r["message"] == "setup received from the platform")
        .expect("the second session's setup is shipped");
    assert_eq!(connected["environment_id"], ext.environment.id);
    assert!(connected.get("task_id").is_none(), "{connected:#}");
    // Only the product's records; never the shipper's own, the sandbox's or the HTTP stack's.
    for r in &records {
        let logger = r["logger"].as_str().unwrap_or_default();
        assert!(
            ["connect_usage::", "connect_client::", "connect_eaas::"]
                .iter()
                .any(|p| logger.starts_with(p))
                && !logger.contains("log_ship"),
            "{r:#}"
        );
    }

    // The listener checks the key as Logz.io does.
    let wrong = common::http()
        .post(format!(
            "{}/?token=wrong&type=python",
            sb.log_listener_url()
        ))
        .body("{\"message\":\"x\"}")
        .send()
        .await
        .expect("listener answers");
    assert_eq!(wrong.status(), 401);
    let logs = shipped(&sb).await;
    assert_eq!(logs["answers"]["401"], 1, "{}", logs["answers"]);
    assert!(logs["answers"]["200"].as_u64() >= Some(1));
    // The filter people use.
    let by_task = common::admin_get(&sb, &format!("logs?task_id={task_id}")).await;
    let by_task = by_task["records"].as_array().expect("records");
    assert!(!by_task.is_empty() && by_task.iter().all(|r| r["task_id"] == task_id.as_str()));
    runner.stop_and_wait().await;
    // The runner's last records (its stop) go out before the reset, not after it.
    LOGS.0.flush(Duration::from_secs(5)).await;
    // A reset forgets them with the rest.
    admin_post(&sb, "reset", json!({})).await;
    let logs = shipped(&sb).await;
    assert_eq!(logs["received"], 0);
    assert_eq!(logs["records"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn levels_follow_each_setup_response_live_and_a_setup_without_key_keeps_shipping() {
    let _turn = TURN.lock().await;
    let instance = "ship-levels";
    let (sb, runner) = shipping_runner(instance).await;
    let call_api = || custom(json!({"action": "call_api"}));
    // The REST client's "answered" is an extension record at debug.
    let is_answered = |task: &str| {
        let task = task.to_owned();
        move |r: &Value| r["task_id"] == task.as_str() && r["message"] == "answered"
    };

    // INFO (the sandbox's default): the task's end, not its debug records.
    let t1 = finished_task(&sb, call_api()).await;
    let records = wait_shipped(
        &sb,
        instance,
        "t1",
        Duration::from_secs(10),
        is_task_done(&t1),
    )
    .await;
    assert!(!records.iter().any(is_answered(&t1)), "no debug at INFO");

    // DEBUG for the extension's records, live.
    put_setup(&sb, json!({"log_level": "DEBUG"})).await;
    let t2 = finished_task(&sb, call_api()).await;
    let records = wait_shipped(
        &sb,
        instance,
        "t2",
        Duration::from_secs(10),
        is_task_done(&t2),
    )
    .await;
    let answered = records
        .iter()
        .find(|r| is_answered(&t2)(r))
        .expect("debug records of the extension once the platform asks for DEBUG");
    assert_eq!(answered["log_level"], "DEBUG");
    assert_eq!(answered["logger"], "connect_client::client");
    // The local output keeps its own level.
    assert!(
        !LOGS.1.text().contains(" DEBUG "),
        "the local output stays at info"
    );

    // WARNING for both: info records stop, warnings still go.
    put_setup(
        &sb,
        json!({"log_level": "WARNING", "runner_log_level": "WARNING"}),
    )
    .await;
    let t3 = finished_task(&sb, call_api()).await;
    let t4 = finished_task(&sb, custom(json!({"action": "error"}))).await;
    let records = wait_shipped(
        &sb,
        instance,
        "t4's warning",
        Duration::from_secs(10),
        |r| r["task_id"] == t4.as_str() && r["message"] == "task failed",
    )
    .await;
    assert_eq!(
        of_task(&records, &t3).len(),
        0,
        "nothing of t3 at WARNING: {:#}",
        Value::from(records.clone())
    );
    assert!(
        of_task(&records, &t4)
            .iter()
            .all(|r| r["log_level"] == "WARNING"),
        "{:#}",
        Value::from(records.clone())
    );

    // A setup response without the key (the platform stops handing it out) keeps shipping.
    put_setup(
        &sb,
        json!({"send_logging_key": false, "runner_log_level": "INFO"}),
    )
    .await;
    let t5 = finished_task(&sb, custom(json!({"action": "echo"}))).await;
    wait_shipped(
        &sb,
        instance,
        "t5",
        Duration::from_secs(10),
        is_task_done(&t5),
    )
    .await;
    runner.stop_and_wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_listener() {
    let _turn = TURN.lock().await;
    let instance = "ship-secrets";
    let (sb, runner) = shipping_runner(instance).await;
    put_setup(
        &sb,
        json!({"log_level": "DEBUG", "runner_log_level": "DEBUG"}),
    )
    .await;
    let task_key = format!("ApiKey {}", sb.vendor_key().expose());
    for action in ["call_api", "error", "config"] {
        let mut spec = custom(json!({"action": action}));
        spec["api_key"] = json!(task_key);
        run_task(&sb, spec).await;
    }
    let file = common::ready_file(&sb, &common::qt_target(&sb), "ship-secrets").await;
    let mut spec = rt::usage_file_task(&file.id);
    spec["api_key"] = json!(task_key);
    run_task(&sb, spec).await;
    // Secure variables changed live, and a setup pushed with a logging key of its own.
    put_setup(
        &sb,
        json!({"variables": {"TEST_SECRET": {"value": "rotated-secret-value", "secure": true}}}),
    )
    .await;
    let setup = json!({"version": 2, "message_type": "setup_response", "data": {
        "variables": [{"name": "TEST_SECRET", "value": "pushed-secret-value", "secure": true}],
        "logging": {"log_level": "DEBUG", "runner_log_level": "DEBUG"},
        "model_type": "setup_response"}});
    admin_post(&sb, "platform/send", json!({"text": setup.to_string()})).await;
    let bad_key = json!({"version": 2, "message_type": "task", "data": {"model_type": "task",
        "options": {"task_id": 7, "task_category": "interactive", "api_key": "ApiKey SU-1:frame-key-value"},
        "input": {"event_type": "x", "object_id": "y"}}});
    admin_post(&sb, "platform/send", json!({"text": bad_key.to_string()})).await;
    let last = finished_task(&sb, custom(json!({"action": "config"}))).await;
    let records = wait_shipped(
        &sb,
        instance,
        "the last task",
        Duration::from_secs(10),
        is_task_done(&last),
    )
    .await;
    assert!(
        records.iter().any(|r| r["log_level"] == "DEBUG"),
        "a busy session at debug was shipped"
    );
    assert!(
        records
            .iter()
            .any(|r| r["message"] == "ignored a frame the runner does not understand"),
        "the malformed frame's record was shipped"
    );
    let shipped_text = reqwest::get(format!("{}/sandbox/logs", sb.origin()))
        .await
        .expect("admin answers")
        .text()
        .await
        .expect("text");
    let ext_key = sb.key("extension").expect("key");
    let mut secrets = vec![
        ext_key.expose().to_owned(),
        sb.vendor_key().expose().to_owned(),
        sb.usage_token().expose().to_owned(),
        sb.logging_key().expose().to_owned(),
        "initial-secret-value".to_owned(),
        "rotated-secret-value".to_owned(),
        "pushed-secret-value".to_owned(),
        "frame-key-value".to_owned(),
    ];
    for k in [&ext_key, &sb.vendor_key()] {
        if let Some((_, s)) = k.expose().split_once(':') {
            secrets.push(s.to_owned());
        }
    }
    for secret in &secrets {
        let at = shipped_text.find(secret.as_str());
        assert!(
            at.is_none(),
            "{secret} was shipped: {}",
            at.map(
                |i| shipped_text[i.saturating_sub(300)..(i + 100).min(shipped_text.len())]
                    .to_owned()
            )
            .unwrap_or_default()
        );
    }
    runner.stop_and_wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_at_full_speed_while_the_listener_hangs_then_the_drop_is_counted_once() {
    let _turn = TURN.lock().await;
    let instance = "ship-down";
    let (sb, runner) = shipping_runner(instance).await;
    put_setup(
        &sb,
        json!({"log_level": "DEBUG", "runner_log_level": "DEBUG"}),
    )
    .await;
    const TASKS: usize = 80;
    let run_batch = || async {
        let started = Instant::now();
        let mut ids = Vec::new();
        let mut slowest = Duration::ZERO;
        for _ in 0..TASKS {
            let t = Instant::now();
            ids.push(finished_task(&sb, custom(json!({"action": "echo"}))).await);
            slowest = slowest.max(t.elapsed());
        }
        (started.elapsed(), slowest, ids)
    };
    // With the listener up.
    let (up_time, _, up_ids) = run_batch().await;
    let last_up = up_ids.last().expect("tasks").clone();
    wait_shipped(
        &sb,
        instance,
        "the listener-up batch",
        Duration::from_secs(10),
        is_task_done(&last_up),
    )
    .await;
    let warnings_before = LOGS.1.text().len();
    let dropped_before = LOGS.0.dropped();
    let dropped_metric_before = dropped_metric();

    // The listener hangs each request 2 s, then answers 503.
    let r = common::admin_put(&sb, "logs/fault", json!({"delay_ms": 2000, "status": 503})).await;
    assert!(r.status().is_success());
    let (down_time, slowest, down_ids) = run_batch().await;
    assert!(
        slowest < Duration::from_millis(1500),
        "a task waited for the listener: {slowest:?}"
    );
    assert!(
        down_time < up_time * 3 + Duration::from_secs(1),
        "tasks slowed while the listener hangs: {down_time:?} against {up_time:?}"
    );
    // The metric counts the drops while the listener is still down.
    assert!(
        dropped_metric() > dropped_metric_before,
        "drops counted during the outage ({} dropped so far)",
        LOGS.0.dropped() - dropped_before
    );

    // Back up: what waited arrives, without the oldest; one warning counts the drop.
    let r = common::admin_put(&sb, "logs/fault", json!({})).await;
    assert!(r.status().is_success());
    let last_down = down_ids.last().expect("tasks").clone();
    let records = wait_shipped(
        &sb,
        instance,
        "the last task after the listener came back",
        Duration::from_secs(15),
        is_task_done(&last_down),
    )
    .await;
    let first_down = &down_ids[0];
    let dropped = LOGS.0.dropped() - dropped_before;
    assert!(
        of_task(&records, first_down).is_empty(),
        "the oldest records were dropped: {} of the first task arrived, {} of the last, {dropped} dropped",
        of_task(&records, first_down).len(),
        of_task(&records, &last_down).len(),
    );
    assert!(dropped > 0, "records were dropped");
    // An operator sees the same count in the metrics.
    assert_eq!(dropped_metric() - dropped_metric_before, dropped as f64);
    let deadline = Instant::now() + Duration::from_secs(5);
    let local = loop {
        let text = LOGS.1.text()[warnings_before..].to_owned();
        if text.contains("log records dropped") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let warnings: Vec<&str> = local
        .lines()
        .filter(|l| l.contains("log records dropped"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {local}");
    assert!(
        warnings[0].contains(" WARN ") && warnings[0].contains(&format!("dropped={dropped}")),
        "{} (dropped {dropped})",
        warnings[0]
    );
    assert_eq!(
        local
            .lines()
            .filter(|l| l.contains("log listener is unreachable"))
            .count(),
        1,
        "the outage is told once: {local}"
    );
    // The shipper's own warnings stay local.
    assert!(
        !records
            .iter()
            .any(|r| r["logger"].as_str().is_some_and(|l| l.contains("log_ship")))
    );
    runner.stop_and_wait().await;
}

/// The program itself: RUST_LOG pins its local output at warn while the records it ships
/// follow the platform's DEBUG, and what waits at the end goes before it exits.
/// `connect_eaas_log_records_dropped_total` as this process exposes it.
fn dropped_metric() -> f64 {
    connect_eaas::runner::metrics::register();
    common::promtool::Scrape::parse(&connect_client::exposition::exposition())
        .sum("connect_eaas_log_records_dropped_total", &[])
}
