//! The runner against the sandbox's platform side, one test per item of the conformance list
//! of the EaaS events protocol reference (section 15), plus the robustness cases the runner
//! promises beyond the official one. Every test starts its own sandbox and runner on free
//! ports; "raw" tests play the platform themselves to see the bytes on the wire.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::runner::{
    self as rt, USAGE_STATUSES, admin_post, calls, config, connected, custom, finished, platform,
    platform_settings, protocol_errors, requests, run_task, set_behaviour, start_runner, submit,
    task, wait_for,
};
use connect_eaas::registry::{HookContext, StartupHook};
use connect_eaas::runner::{ConnectionState, LogLevels, Runner, RunnerType, StopReason};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

fn no_errors(errors: Vec<Value>) {
    assert!(errors.is_empty(), "protocol errors: {errors:#?}");
}

/// A usage file of the default dataset in `draft` (created, nothing uploaded).
async fn draft_file(sb: &connect_sandbox::Sandbox, external_id: &str) -> String {
    let t = common::qt_target(sb);
    common::vendor(sb)
        .create_usage_file(&common::new_file(&t, external_id))
        .await
        .expect("created")
        .id
}

// 1. The URL's path and query.
#[tokio::test]
async fn c01_url_path_and_query() {
    let sb = common::start().await;
    let runner = connected(&sb, "c01-instance").await;
    let p = platform(&sb).await;
    let conns = p["connections"].as_array().expect("connections");
    let mut types: Vec<&str> = conns
        .iter()
        .filter_map(|c| c["runner_type"].as_str())
        .collect();
    types.sort_unstable();
    assert_eq!(types, ["background", "interactive"], "two sessions");
    for c in conns {
        assert_eq!(c["instance"], "c01-instance");
        assert_eq!(c["running_tasks"], 0);
        assert_eq!(c["running_scheduled_tasks"], 0);
    }
    let env = sb.state().dataset().extension().environment.id;
    let upgrades: Vec<String> = requests(&sb)
        .await
        .iter()
        .filter_map(|r| r["path"].as_str().map(str::to_owned))
        .filter(|p| p.starts_with("/devops/ws/"))
        .collect();
    assert!(
        upgrades.contains(&format!(
            "/devops/ws/{env}/c01-instance?running_tasks=0&running_scheduled_tasks=0&runner_type=background"
        )),
        "{upgrades:?}"
    );

    // A background task still running when the connection drops is counted on reconnect.
    set_behaviour("c01-instance", "sleep:800");
    let file = common::ready_file(&sb, &common::qt_target(&sb), "c01").await;
    wait_for(&sb, "the task to be delivered", |p| {
        p["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["object"]["id"] == file.id.as_str() && t["status"] == "processing")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    admin_post(&sb, "platform/drop", json!({"runner_type": "background"})).await;
    let p = wait_for(&sb, "a reconnect reporting the running task", |p| {
        p["connection_log"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| {
                e["event"] == "connected"
                    && e["runner_type"] == "background"
                    && e["running_tasks"] == 1
            })
    })
    .await;
    assert!(p["connection_log"].as_array().is_some());
    runner.stop_and_wait().await;
    no_errors(protocol_errors(&sb).await);
}

/// What a raw platform saw of one runner connection.
struct RawSeen {
    headers: Vec<(String, String)>,
    path: String,
    first_frames: Vec<Message>,
}

/// Accepts one connection on `listener`, records the upgrade and the first frames up to
/// the setup request, and hands the socket back.
#[allow(clippy::result_large_err)] // the callback's type is tungstenite's
async fn raw_accept(
    listener: &TcpListener,
) -> (
    RawSeen,
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) {
    let (tcp, _) = listener.accept().await.expect("the runner connects");
    let seen = Arc::new(Mutex::new((Vec::new(), String::new())));
    let seen2 = seen.clone();
    let mut ws = tokio_tungstenite::accept_hdr_async(tcp, move |req: &Request, resp: Response| {
        let mut s = seen2.lock().expect("lock");
        s.0 = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        s.1 = req.uri().to_string();
        Ok(resp)
    })
    .await
    .expect("upgrade");
    let mut frames = Vec::new();
    while let Some(Ok(m)) = ws.next().await {
        let text = m.is_text();
        frames.push(m);
        if text {
            break;
        }
    }
    let (headers, path) = seen.lock().expect("lock").clone();
    (
        RawSeen {
            headers,
            path,
            first_frames: frames,
        },
        ws,
    )
}

fn raw_config(
    addr: std::net::SocketAddr,
    key: &str,
    instance: &str,
) -> connect_eaas::runner::RunnerConfig {
    let mut c = connect_eaas::runner::RunnerConfig::from_lookup(
        |name| match name {
            "API_KEY" => Some(key.to_owned()),
            "ENVIRONMENT_ID" => Some("ENV-1111-2222-03".into()),
            "INSTANCE_ID" => Some(instance.to_owned()),
            "SERVER_ADDRESS" => Some(format!("ws://{addr}")),
            _ => None,
        },
        connect_eaas::runner::config::InstanceIdSource::Random,
    )
    .expect("config");
    c.runner_types = vec![RunnerType::Background];
    c.timings.handshake_timeout = Duration::from_millis(300);
    c.timings.reconnect = connect_eaas::runner::backoff::ReconnectPolicy {
        initial: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        generic_budget: Duration::from_secs(30),
        maintenance_budget: Duration::from_secs(30),
        pause_after_give_up: Duration::from_millis(10),
        pause_after_drop: Duration::from_millis(10),
    };
    c.shutdown_grace = Duration::from_millis(500);
    c
}

// 2 and 3. The upgrade carries exactly the API key as Authorization and no other custom
// header; then a ping, then a version 2 setup request with the subscriptions.
#[tokio::test]
async fn c02_c03_upgrade_headers_ping_then_setup_request() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let key = "ApiKey SU-9999-0000:exactly-as-given";
    let runner = start_runner(raw_config(addr, key, "raw-1"), rt::registry());
    let (seen, mut ws) = raw_accept(&listener).await;

    assert_eq!(
        seen.path,
        "/public/v1/devops/ws/ENV-1111-2222-03/raw-1?running_tasks=0&running_scheduled_tasks=0&runner_type=background"
    );
    let auth: Vec<&str> = seen
        .headers
        .iter()
        .filter(|(k, _)| k == "authorization")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(auth, [key], "Authorization is API_KEY verbatim");
    let standard = [
        "host",
        "connection",
        "upgrade",
        "sec-websocket-version",
        "sec-websocket-key",
        "authorization",
    ];
    let custom: Vec<&str> = seen
        .headers
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !standard.contains(k))
        .collect();
    assert!(custom.is_empty(), "no other headers: {custom:?}");

    assert!(
        matches!(seen.first_frames.first(), Some(Message::Ping(_))),
        "ping first: {:?}",
        seen.first_frames
    );
    let Some(Message::Text(text)) = seen.first_frames.last() else {
        panic!("a setup request follows");
    };
    let v: Value = serde_json::from_str(text.as_str()).expect("JSON");
    assert_eq!(v["version"], 2);
    assert_eq!(v["message_type"], "setup_request");
    assert_eq!(v["data"]["model_type"], "setup_request");
    assert_eq!(
        v["data"]["event_subscriptions"],
        json!({"asset_purchase_request_validation": ["draft"], "product_action_execution": [],
               "product_custom_event_processing": [], "usage_file_request_processing": USAGE_STATUSES})
    );
    assert_eq!(
        v["data"]["schedulables"][0]["method"],
        "report_monthly_usage"
    );
    assert_eq!(
        v["data"]["variables"][1],
        json!({"name": "TEST_SECRET", "initial_value": "initial-secret-value", "secure": true})
    );
    let d = rt::test_descriptor();
    assert_eq!(
        v["data"]["repository"],
        json!({"readme_url": d.readme_url, "changelog_url": d.changelog_url})
    );
    assert_eq!(v["data"]["audience"], json!(["vendor"]));
    for k in [
        "ui_modules",
        "icon",
        "anvil_callables",
        "transformations",
        "proxied_connect_api",
    ] {
        assert!(
            v["data"].get(k).is_some_and(Value::is_null),
            "{k} sent as null"
        );
    }
    let _ = ws.close(None).await;
    runner.stop_and_wait().await;
}

// 4. No answer to the setup request in time: the runner closes and connects again.
#[tokio::test]
async fn c04_unanswered_setup_closes_and_reconnects() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let runner = start_runner(raw_config(addr, "SU-1:k", "raw-4"), rt::registry());
    let started = tokio::time::Instant::now();
    let (_, mut first) = raw_accept(&listener).await;
    // Say nothing: the runner must give up on this socket after its handshake timeout.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match first.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the runner closed the silent connection");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "not before the timeout"
    );
    let (second, _ws) = tokio::time::timeout(Duration::from_secs(5), raw_accept(&listener))
        .await
        .expect("a new attempt");
    assert!(second.path.contains("runner_type=background"));
    runner.stop_and_wait().await;

    // The same against the sandbox, whose fault leaves one setup request unanswered.
    let sb = common::start().await;
    rt::set_ws_faults(
        &sb,
        json!([{"at": "setup", "action": "silence", "times": 1, "runner_type": "background"}]),
    )
    .await;
    let runner = rt::connected_with(&sb, "c04", |c| {
        c.timings.handshake_timeout = Duration::from_millis(300);
    })
    .await;
    let p = platform(&sb).await;
    let bg_connects = p["connection_log"]
        .as_array()
        .expect("log")
        .iter()
        .filter(|e| e["event"] == "connected" && e["runner_type"] == "background")
        .count();
    assert_eq!(bg_connects, 2, "one silent connection, then a good one");
    runner.stop_and_wait().await;
}

// 5 and 6. 502 keeps retrying (maintenance); 401, 403 and 503 retry too and are reported;
// the runner never gives up on its own and waits stay under the cap.
#[tokio::test]
async fn c05_c06_refused_upgrades_are_retried() {
    let sb = common::start().await;
    rt::set_ws_faults(&sb, json!([
            {"at": "upgrade", "action": "refuse", "status": 502, "times": 4, "runner_type": "background"},
            {"at": "upgrade", "action": "refuse", "status": 503, "times": 2, "runner_type": "interactive"},
        ])).await;
    let runner = start_runner(config(&sb, "c05"), rt::registry());
    let mut states = runner.watch_state(RunnerType::Background).expect("session");
    let mut saw_502 = false;
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let s = states.borrow_and_update().clone();
            match s {
                ConnectionState::Waiting {
                    retry_in,
                    error,
                    maintenance,
                } => {
                    assert!(
                        retry_in <= Duration::from_millis(300),
                        "capped: {retry_in:?}"
                    );
                    assert!(error.contains("502"), "{error}");
                    assert!(maintenance, "a 502 is maintenance");
                    saw_502 = true;
                }
                ConnectionState::Connected => return,
                _ => {}
            }
            if states.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(waited.is_ok(), "connects after the refusals");
    assert!(saw_502, "the 502 was reported");
    assert!(runner.wait_connected(Duration::from_secs(10)).await);
    let refused = platform(&sb).await["connection_log"]
        .as_array()
        .expect("log")
        .iter()
        .filter(|e| e["event"] == "refused")
        .count();
    assert_eq!(refused, 6);
    runner.stop_and_wait().await;

    // A key the platform refuses (401): retried, reported, never a stop.
    let mut c = config(&sb, "c05-badkey");
    c.api_key_header = connect_client::secret::Secret::new("ApiKey SU-000-000:wrong");
    let runner = start_runner(c, rt::registry());
    let mut states = runner.watch_state(RunnerType::Background).expect("session");
    let mut failures = 0;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let ConnectionState::Waiting {
                error, maintenance, ..
            } = states.borrow_and_update().clone()
            {
                assert!(error.contains("401"), "{error}");
                assert!(!maintenance, "a 401 is not maintenance");
                failures += 1;
            }
            if states.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(failures >= 3, "kept trying ({failures} attempts)");
    assert!(!runner.is_finished(), "never stops on its own");
    runner.stop_and_wait().await;
}

// 7 and 8. A background object no longer in a handled status: counted with the definition's
// filter and `limit=0&offset=0`, answered skip with the exact message, handler not called.
// A matching one is fetched from its resource and handed over.
#[tokio::test]
async fn c07_c08_status_recheck_and_fetch() {
    let sb = common::start().await;
    let runner = connected(&sb, "c07").await;
    let draft = draft_file(&sb, "c07-draft").await;
    let id = submit(&sb, rt::usage_file_task(&draft)).await;
    let t = finished(&sb, &id).await;
    assert_eq!(t["status"], "skipped");
    assert_eq!(t["final_output"]["result"], "skip");
    assert_eq!(
        t["final_output"]["message"],
        "The request status does not match the supported statuses: ready,invalid."
    );
    assert!(calls("c07").is_empty(), "handler not called");
    let log = requests(&sb).await;
    let count_path =
        format!("/usage/files?and(eq(id,{draft}),in(status,(ready,invalid)))&limit=0&offset=0");
    assert!(
        log.iter().any(|r| r["path"] == count_path.as_str()),
        "count request {count_path}"
    );
    assert!(
        !log.iter()
            .any(|r| r["path"] == format!("/usage/files/{draft}").as_str()),
        "not fetched"
    );

    // A ready file: the status change itself makes the task, and the handler gets the file.
    let file = common::ready_file(&sb, &common::qt_target(&sb), "c07-ready").await;
    let p = wait_for(&sb, "the ready file's task", |p| {
        p["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["object"]["id"] == file.id.as_str() && t["status"] == "succeeded")
    })
    .await;
    let call = calls("c07");
    assert_eq!(call.len(), 1, "{call:?}");
    assert_eq!(call[0]["file"], file.id.as_str());
    assert_eq!(call[0]["status"], "ready");
    let log = requests(&sb).await;
    assert!(
        log.iter()
            .any(|r| r["path"] == format!("/usage/files/{}", file.id).as_str())
    );
    // Only subscribed statuses made tasks: draft (created) and uploading did not.
    let tasks_for_file = p["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter(|t| t["object"]["id"] == file.id.as_str())
        .count();
    assert_eq!(tasks_for_file, 1);
    runner.stop_and_wait().await;
    no_errors(protocol_errors(&sb).await);
}

// 9. A task's own API key is used for both background REST calls; without one, the
// environment's key.
#[tokio::test]
async fn c09_task_api_key_for_background_calls() {
    let sb = common::start().await;
    let runner = connected(&sb, "c09").await;
    let file = common::ready_file(&sb, &common::qt_target(&sb), "c09").await;
    wait_for(&sb, "the event's task", |p| {
        p["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["status"] == "succeeded")
    })
    .await;
    let vendor_key = format!("ApiKey {}", sb.vendor_key().expose());
    let mut spec = rt::usage_file_task(&file.id);
    spec["api_key"] = json!(vendor_key);
    let id = submit(&sb, spec).await;
    assert_eq!(finished(&sb, &id).await["status"], "succeeded");
    let log = requests(&sb).await;
    let actors = |task: Option<&str>| -> Vec<String> {
        log.iter()
            .filter(|r| {
                r["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("/usage/files"))
            })
            .filter(|r| r["method"] == "GET")
            .filter(|r| task.is_none_or(|t| r["headers"]["eaas_task_id"] == t))
            .filter_map(|r| r["actor"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        actors(Some(&id)),
        ["vendor", "vendor"],
        "count and fetch with the task's key"
    );
    let event_task = platform(&sb).await["tasks"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        actors(Some(&event_task)),
        ["extension", "extension"],
        "the environment's key"
    );
    assert_eq!(runner.task_key_clients(), 1);
    runner.stop_and_wait().await;
    no_errors(protocol_errors(&sb).await);
}

// 10. A background handler that fails, panics or overruns its limit: retry with the reason.
#[tokio::test]
async fn c10_background_errors_panics_and_timeouts_retry() {
    let sb = common::start().await;
    platform_settings(&sb, json!({"max_tries": 1})).await;
    let runner = rt::connected_with(&sb, "c10", |c| {
        c.background_timeout = Duration::from_millis(300);
    })
    .await;
    let file = common::ready_file(&sb, &common::qt_target(&sb), "c10").await;
    wait_for(&sb, "the first task", |p| {
        p["tasks"][0]["status"] == "succeeded"
    })
    .await;
    let mut outputs = Vec::new();
    for behaviour in ["error", "panic", "sleep:2000"] {
        set_behaviour("c10", behaviour);
        let id = submit(&sb, rt::usage_file_task(&file.id)).await;
        let t = finished(&sb, &id).await;
        assert_eq!(t["retry_count"], 1, "{t:#}");
        let out = t["deliveries"][0]["output"].clone();
        assert_eq!(out["result"], "retry");
        assert!(
            out["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty() && m.chars().count() <= 4000)
        );
        outputs.push(out["message"].as_str().unwrap_or_default().to_owned());
    }
    assert!(outputs[0].contains("failed on purpose"), "{}", outputs[0]);
    assert!(
        outputs[1].contains("panicked") && outputs[1].contains("on purpose"),
        "{}",
        outputs[1]
    );
    assert!(outputs[2].contains("limit"), "{}", outputs[2]);
    // The session survived all of it.
    assert_eq!(runner.stats().connections.load(Ordering::Relaxed), 2);
    runner.stop_and_wait().await;
    no_errors(protocol_errors(&sb).await);
}

// 11. reschedule sends a countdown of at least 30 and is honoured after it; skip and fail
// send a message; success sends neither. The platform gives up after max_tries.
#[tokio::test]
async fn c11_result_fields_and_reschedule() {
    let sb = common::start().await;
    platform_settings(&sb, json!({"max_tries": 3, "time_scale": 0.01})).await;
    let runner = connected(&sb, "c11").await;
    let file = common::ready_file(&sb, &common::qt_target(&sb), "c11").await;
    let first = wait_for(&sb, "the first task", |p| {
        p["tasks"][0]["status"] == "succeeded"
    })
    .await;
    let out = &first["tasks"][0]["final_output"];
    assert_eq!(out["message"], Value::Null, "success: no message");
    assert_eq!(out["countdown"], 0);

    set_behaviour("c11", "reschedule:5");
    let started = tokio::time::Instant::now();
    let id = submit(&sb, rt::usage_file_task(&file.id)).await;
    let t = finished(&sb, &id).await;
    assert_eq!(t["status"], "failed", "given up after max_tries: {t:#}");
    assert_eq!(t["rescheduled_count"], 3);
    let deliveries = t["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 3);
    for d in deliveries {
        assert_eq!(d["output"]["countdown"], 30, "clamped to 30");
    }
    // Two waits of 30 s at time scale 0.01.
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );

    for (behaviour, result) in [("skip", "skip"), ("fail", "fail")] {
        set_behaviour("c11", behaviour);
        let id = submit(&sb, rt::usage_file_task(&file.id)).await;
        let t = finished(&sb, &id).await;
        assert_eq!(t["final_output"]["result"], result);
        assert!(
            t["final_output"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("on purpose"))
        );
    }
    runner.stop_and_wait().await;
    no_errors(protocol_errors(&sb).await);
}

// 12. Interactive answers carry {http_status, headers, body}.
#[tokio::test]
async fn c12_interactive_answers() {
    let sb = common::start().await;
    let runner = connected(&sb, "c12").await;
    let t = run_task(&sb, custom(json!({"action": "echo", "value": 7}))).await;
    assert_eq!(t["status"], "succeeded");
    assert_eq!(
        t["final_output"]["data"],
        json!({"http_status": 200, "headers": {"X-Test": "1"}, "body": {"action": "echo", "value": 7}})
    );
    let t = run_task(&sb, custom(json!({"action": "refuse"}))).await;
    assert_eq!(t["status"], "failed");
    assert_eq!(
        t["final_output"]["data"],
        json!({"http_status": 422, "headers": null, "body": {"error": "bad input"}})
    );
    assert_eq!(t["final_output"]["message"], "refused");
    runner.stop_and_wait().await;
    no_errors(protocol_errors(&sb).await);
}

// 13. An interactive handler that fails, panics or overruns: fail, with HTTP 400 and the
// reason as body for custom events.
#[tokio::test]
async fn c13_interactive_errors_fail_with_400() {
    let sb = common::start().await;
    let runner = rt::connected_with(&sb, "c13", |c| {
        c.interactive_timeout = Duration::from_millis(300);
    })
    .await;
    for (action, expect) in [
        ("error", "on purpose"),
        ("panic", "panicked"),
        ("sleep:3000", "limit"),
    ] {
        let t = run_task(&sb, custom(json!({"action": action}))).await;
        assert_eq!(t["status"], "failed", "{action}");
        let out = &t["final_output"];
        assert_eq!(out["result"], "fail");
        assert_eq!(out["data"]["http_status"], 400);
        assert_eq!(out["data"]["body"], out["message"]);
        assert!(
            out["message"].as_str().is_some_and(|m| m.contains(expect)),
            "{action}: {out}"
        );
    }
    runner.stop_and_wait().await;
    no_errors(protocol_errors(&sb).await);
}

// 14. A scheduled task reads its schedule with the environment's key and runs the method it
// names; an error is a retry.
#[tokio::test]
async fn c14_scheduled_tasks() {
    let sb = common::start().await;
    platform_settings(&sb, json!({"max_tries": 1})).await;
    let runner = connected(&sb, "c14").await;
    let ext = sb.state().dataset().extension();
    let schedule = ext.schedules[0]["id"]
        .as_str()
        .expect("schedule id")
        .to_owned();
    // Triggered through Connect's own endpoint, as a person would in the portal.
    let r = common::as_vendor(
        &sb,
        reqwest::Method::POST,
        &format!(
            "/devops/services/{}/environments/{}/schedules/{schedule}/trigger",
            ext.service_id, ext.environment.id
        ),
    )
    .send()
    .await
    .expect("trigger");
    assert_eq!(r.status(), 200);
    let p = wait_for(&sb, "the scheduled task", |p| {
        p["tasks"][0]["status"] == "succeeded"
    })
    .await;
    assert_eq!(p["tasks"][0]["object"]["category"], "scheduled");
    assert_eq!(calls("c14")[0]["schedule"], schedule.as_str());
    let log = requests(&sb).await;
    let read = log
        .iter()
        .find(|r| {
            r["path"]
                == format!(
                    "/devops/services/{}/environments/{}/schedules/{schedule}",
                    ext.service_id, ext.environment.id
                )
                .as_str()
        })
        .expect("the schedule was read");
    assert_eq!(read["actor"], "extension");

    set_behaviour("c14", "error");
    let t = admin_post(
        &sb,
        &format!("platform/schedules/{schedule}/fire"),
        json!({}),
    )
    .await;
    let t = finished(&sb, t["id"].as_str().expect("id")).await;
    assert_eq!(t["deliveries"][0]["output"]["result"], "retry");
    runner.stop_and_wait().await;
    no_errors(protocol_errors(&sb).await);
}

// 15. A result is the task's options and input as received (unknown fields included) plus
// an output with all five keys, as a version 2 task frame. Checked on the raw bytes.
#[tokio::test]
async fn c15_result_frame_shape() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut c = raw_config(addr, "SU-1:k", "raw-15");
    c.runner_types = vec![RunnerType::Interactive];
    let runner = start_runner(c, rt::registry());
    let (_, mut ws) = raw_accept(&listener).await;
    let setup = json!({"version": 2, "message_type": "setup_response", "data": {
        "variables": [], "model_type": "setup_response"}});
    ws.send(Message::text(setup.to_string()))
        .await
        .expect("setup");
    let options = json!({"task_id": "TQ-15", "task_category": "interactive", "correlation_id": "c-15",
        "reply_to": "q-15", "api_key": null, "installation_id": null, "connect_correlation_id": null,
        "future_option": {"kept": true}});
    let input = json!({"event_type": "product_custom_event_processing", "object_id": "PR-15",
        "data": {"action": "echo"}});
    let task = json!({"version": 2, "message_type": "task", "data": {
        "options": options, "input": input, "output": null, "model_type": "task"}});
    ws.send(Message::text(task.to_string()))
        .await
        .expect("task");
    let result = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                break serde_json::from_str::<Value>(t.as_str()).expect("JSON");
            }
            Some(Ok(_)) => {}
            other => panic!("no result: {other:?}"),
        }
    };
    assert_eq!(result["version"], 2);
    assert_eq!(result["message_type"], "task");
    assert_eq!(result["data"]["model_type"], "task");
    assert_eq!(result["data"]["options"], options);
    assert_eq!(result["data"]["input"], input);
    let out = result["data"]["output"].as_object().expect("output");
    let mut keys: Vec<&str> = out.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["countdown", "data", "message", "result", "runtime"]);
    assert_eq!(out["result"], "success");
    assert!(out["runtime"].is_f64());
    let _ = ws.close(None).await;
    runner.stop_and_wait().await;
}

// 16. Results of tasks that finish while disconnected go out after the next handshake, once.
#[tokio::test]
async fn c16_results_survive_a_dropped_connection() {
    let sb = common::start().await;
    let runner = connected(&sb, "c16").await;
    let id = submit(&sb, custom(json!({"action": "sleep:400"}))).await;
    rt::wait_called("c16", 1).await;
    // The connection drops and the platform refuses reconnections until the handler is
    // done: its result is produced while disconnected.
    rt::set_ws_faults(
        &sb,
        json!([{"at": "upgrade", "action": "refuse", "status": 503, "runner_type": "interactive"}]),
    )
    .await;
    admin_post(&sb, "platform/drop", json!({"runner_type": "interactive"})).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        task(&sb, &id).await["status"],
        "scheduled",
        "not answered while disconnected"
    );
    let r = common::http()
        .delete(format!("{}/sandbox/platform/faults", sb.origin()))
        .send()
        .await
        .expect("faults cleared");
    assert!(r.status().is_success());
    let t = finished(&sb, &id).await;
    assert_eq!(t["status"], "succeeded", "{t:#}");
    assert_eq!(t["conflicting_results"], 0);
    assert_eq!(t["duplicate_results"], 0, "delivered once: {t:#}");
    assert_eq!(
        calls("c16").len(),
        1,
        "run once, even if the platform delivered it again"
    );
    assert!(
        runner.stats().connections.load(Ordering::Relaxed) >= 3,
        "reconnected"
    );
    runner.stop_and_wait().await;
    no_errors(protocol_errors(&sb).await);
}

// 17. The platform's shutdown: no new tasks, running ones finish and their results go out,
// then the runner closes.
#[tokio::test]
async fn c17_platform_shutdown_with_a_task_in_flight() {
    let sb = common::start().await;
    let runner = connected(&sb, "c17").await;
    let running = submit(&sb, custom(json!({"action": "sleep:500"}))).await;
    rt::wait_called("c17", 1).await;
    admin_post(&sb, "platform/shutdown", json!({})).await;
    let late = submit(&sb, custom(json!({"action": "echo"}))).await;
    let report = tokio::time::timeout(Duration::from_secs(10), runner.wait())
        .await
        .expect("the runner stops");
    assert_eq!(report.reason, Some(StopReason::Platform));
    assert!(report.undelivered.is_empty());
    assert_eq!(finished(&sb, &running).await["status"], "succeeded");
    let p = platform(&sb).await;
    let late_task = p["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["id"] == late.as_str())
        .cloned()
        .expect("late");
    assert_eq!(
        late_task["status"], "scheduled",
        "not delivered to a runner told to stop"
    );
    assert_eq!(late_task["deliveries"], json!([]));
    assert_eq!(calls("c17").len(), 1, "the late task was not taken");
    assert!(
        p["connections"].as_array().expect("conns").is_empty(),
        "closed"
    );
    no_errors(protocol_errors(&sb).await);
}

// 18. Stopping the runner (SIGTERM's path) sends the shutdown frame first.
#[tokio::test]
async fn c18_stop_sends_shutdown() {
    let sb = common::start().await;
    let runner = connected(&sb, "c18").await;
    let running = submit(&sb, custom(json!({"action": "sleep:400"}))).await;
    rt::wait_called("c18", 1).await;
    let report = runner.stop_and_wait().await;
    assert_eq!(report.reason, Some(StopReason::Requested));
    let p = platform(&sb).await;
    let shutdowns = p["connection_log"]
        .as_array()
        .expect("log")
        .iter()
        .filter(|e| e["event"] == "runner_shutdown")
        .count();
    assert_eq!(shutdowns, 2, "each session said shutdown");
    assert_eq!(
        finished(&sb, &running).await["status"],
        "succeeded",
        "in-flight result delivered"
    );
    no_errors(protocol_errors(&sb).await);
}

// 19 and the frames a runner must survive: unknown types, malformed JSON, frames without
// model_type, oversized and binary frames. None costs the connection.
#[tokio::test]
async fn c19_unknown_malformed_oversized_frames_are_ignored() {
    let sb = common::start().await;
    let runner = connected(&sb, "c19").await;
    let big = format!(
        "{{\"version\": 2, \"message_type\": \"task\", \"data\": {{\"pad\": \"{}\"}}}}",
        "x".repeat(3 * 1024 * 1024)
    );
    for (text, binary) in [
        (r#"{"version": 2, "message_type": "pause", "data": null}"#.to_owned(), false),
        ("{this is not json".to_owned(), false),
        (r#"{"version": 2, "message_type": "task", "data": {"options": {}}}"#.to_owned(), false),
        (r#"{"version": 7, "message_type": "task", "data": null}"#.to_owned(), false),
        (r#"{"version": 2, "message_type": "task", "data": {"model_type": "task", "options": {"task_id": 1}}}"#.to_owned(), false),
        (big, false),
        ("binary".to_owned(), true),
    ] {
        let sent = admin_post(&sb, "platform/send", json!({"text": text, "binary": binary})).await;
        assert_eq!(sent["connections"], 2);
    }
    let t = run_task(&sb, custom(json!({"action": "echo"}))).await;
    assert_eq!(t["status"], "succeeded");
    rt::assert_no_reconnect(&runner);
    assert_eq!(runner.stats().frames_ignored.load(Ordering::Relaxed), 14);
    let disconnects = platform(&sb).await["connection_log"]
        .as_array()
        .expect("log")
        .iter()
        .filter(|e| e["event"] == "disconnected")
        .count();
    assert_eq!(disconnects, 0);
    runner.stop_and_wait().await;
}

// 20. A later setup response changes the variables the next task sees and the log levels,
// without a reconnect; an empty variables list clears nothing.
#[tokio::test]
async fn c20_later_setup_updates_config_live() {
    let sb = common::start().await;
    let levels: Arc<Mutex<Vec<LogLevels>>> = Arc::default();
    let seen = levels.clone();
    let descriptor = rt::test_descriptor();
    let runner = Runner::new(
        config(&sb, "c20"),
        rt::registry(),
        &descriptor,
        Some(Arc::new(move |l: &LogLevels| {
            seen.lock().expect("lock").push(l.clone())
        })),
    )
    .expect("runner")
    .start();
    assert!(runner.wait_connected(Duration::from_secs(10)).await);
    let t = run_task(&sb, custom(json!({"action": "config"}))).await;
    let body = &t["final_output"]["data"]["body"];
    assert_eq!(
        body["variables"]["GREETING"], "hello",
        "initial value from the declaration"
    );
    assert!(
        body["variables"]["USAGE_SOURCE"]
            .as_str()
            .is_some_and(|u| u.ends_with("/vendor/v1/usage")),
        "{body}"
    );
    assert_eq!(body["secure"], json!(["TEST_SECRET", "USAGE_SOURCE_TOKEN"]));

    let r = common::admin_put(
        &sb,
        "platform/setup",
                json!({"variables": {"GREETING": "bonjour"}, "log_level": "DEBUG", "runner_log_level": "WARNING"}),
    )
    .await;
    assert!(r.status().is_success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = run_task(&sb, custom(json!({"action": "config"}))).await;
    assert_eq!(
        t["final_output"]["data"]["body"]["variables"]["GREETING"],
        "bonjour"
    );
    assert!(
        levels
            .lock()
            .expect("lock")
            .iter()
                        .any(|l| l.extension.as_deref() == Some("debug") && l.runner.as_deref() == Some("warn")),
        "log levels applied: {:?}",
        levels.lock().expect("lock")
    );

    let empty = json!({"version": 2, "message_type": "setup_response", "data": {"variables": [], "model_type": "setup_response"}});
    admin_post(&sb, "platform/send", json!({"text": empty.to_string()})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = run_task(&sb, custom(json!({"action": "config"}))).await;
    assert_eq!(
        t["final_output"]["data"]["body"]["variables"]["GREETING"], "bonjour",
        "not cleared"
    );
    rt::assert_no_reconnect(&runner);
    runner.stop_and_wait().await;
    no_errors(protocol_errors(&sb).await);
}

// 21. With an installation id, the installation is read with the environment's key and the
// handler gets it with a client of the task's key.
#[tokio::test]
async fn c21_installation() {
    let sb = common::start().await;
    let runner = connected(&sb, "c21").await;
    let ext = sb.state().dataset().extension();
    let installation = ext.installations[0]["id"].as_str().expect("id").to_owned();
    let mut spec = custom(json!({"action": "installation"}));
    spec["installation_id"] = json!(installation);
    spec["api_key"] = json!(format!("ApiKey {}", sb.vendor_key().expose()));
    let t = run_task(&sb, spec).await;
    let body = &t["final_output"]["data"]["body"];
    assert_eq!(body["installation"]["id"], installation.as_str());
    assert_eq!(body["has_client"], true);
    let log = requests(&sb).await;
    let read = log
        .iter()
        .find(|r| {
            r["path"]
                == format!(
                    "/devops/services/{}/installations/{installation}",
                    ext.service_id
                )
                .as_str()
        })
        .expect("installation read");
    assert_eq!(read["actor"], "extension", "with the environment's key");
    let call = log
        .iter()
        .find(|r| {
            r["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/marketplaces"))
        })
        .expect("the handler's call with the installation client");
    assert_eq!(
        call["actor"], "vendor",
        "the installation client acts with the task's key"
    );
    runner.stop_and_wait().await;
    no_errors(protocol_errors(&sb).await);
}

// 22. The extension's REST calls carry EAAS_EXT_ID, EAAS_TASK_ID, EAAS_TASK_TYPE, the
// runner's User-Agent, and ext-traceparent for a correlated task.
#[tokio::test]
async fn c22_task_headers_on_rest_calls() {
    let sb = common::start().await;
    let runner = connected(&sb, "c22").await;
    let mut spec = custom(json!({"action": "call_api"}));
    spec["connect_correlation_id"] =
        json!("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    let t = run_task(&sb, spec).await;
    assert_eq!(t["status"], "succeeded", "{t:#}");
    let id = t["id"].as_str().expect("id");
    let log = requests(&sb).await;
    let call = log
        .iter()
        .find(|r| {
            r["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/marketplaces"))
        })
        .expect("the handler's call");
    let h = &call["headers"];
    assert_eq!(
        h["eaas_ext_id"],
        sb.state().dataset().extension().service_id.as_str()
    );
    assert_eq!(h["eaas_task_id"], id);
    assert_eq!(h["eaas_task_type"], "product_custom_event_processing");
    assert!(
        h["user-agent"]
            .as_str()
            // The extension named from its descriptor, then the runner.
            .is_some_and(
                |u| u.starts_with("test-extension/1.0.0 connect-eaas/") && u.contains("/c22")
            ),
        "{h}"
    );
    let tp = h["ext-traceparent"].as_str().expect("traceparent");
    assert!(
        tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-")
            && tp.ends_with("-01")
            && tp.len() == 55,
        "{tp}"
    );
    runner.stop_and_wait().await;
    no_errors(protocol_errors(&sb).await);
}

static STARTUPS: AtomicUsize = AtomicUsize::new(0);

async fn count_startup(_: HookContext) {
    STARTUPS.fetch_add(1, Ordering::SeqCst);
}

fn call_count_startup(
    ctx: HookContext,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(count_startup(ctx))
}

// 24. on_startup runs once per runner though both sessions get a setup response (and again
// after reconnects).
#[tokio::test]
async fn c24_startup_hook_runs_once() {
    let sb = common::start().await;
    let registry = rt::registry().with_hooks(
        [StartupHook {
            name: "tests::count_startup",
            hook: call_count_startup,
        }],
        [],
    );
    let runner = start_runner(config(&sb, "c24"), registry);
    assert!(runner.wait_connected(Duration::from_secs(10)).await);
    admin_post(&sb, "platform/drop", json!({})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(runner.wait_connected(Duration::from_secs(10)).await);
    assert_eq!(STARTUPS.load(Ordering::SeqCst), 1);
    runner.stop_and_wait().await;
}

// Platform behaviour: connections dropped at random points while tasks flow; every task ends
// with exactly one recorded result and no frame breaks the protocol.
#[tokio::test]
async fn random_drops_lose_nothing() {
    let sb = common::start().await;
    platform_settings(&sb, json!({"redelivery_delay_ms": 20})).await;
    rt::set_ws_faults(
        &sb,
        json!([
            {"at": "task", "action": "drop", "rate": 0.25, "times": 6},
            {"at": "result", "action": "drop", "rate": 0.25, "times": 4},
            {"at": "result", "action": "silence", "rate": 0.2, "times": 3},
        ]),
    )
    .await;
    let runner = connected(&sb, "random").await;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(submit(&sb, custom(json!({"action": "echo", "i": i}))).await);
    }
    for id in &ids {
        let t = finished(&sb, id).await;
        assert_eq!(t["status"], "succeeded", "{t:#}");
        assert_eq!(t["conflicting_results"], 0, "{t:#}");
    }
    let c = calls("random");
    let mut by_task: std::collections::BTreeMap<String, usize> = Default::default();
    for call in &c {
        *by_task
            .entry(call["task"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        c.len(),
        ids.len(),
        "each task ran once: {by_task:?} received {} duplicates {}",
        runner.stats().tasks_received.load(Ordering::Relaxed),
        runner.stats().duplicates_ignored.load(Ordering::Relaxed)
    );
    let p = platform(&sb).await;
    let drops = p["connection_log"]
        .as_array()
        .expect("log")
        .iter()
        .filter(|e| e["event"] == "disconnected")
        .count();
    assert!(drops > 0, "faults struck");
    runner.stop_and_wait().await;
    no_errors(protocol_errors(&sb).await);
}

// A task running at the end of the stop grace period is cancelled and answered, not lost.
#[tokio::test]
async fn grace_period_cancels_and_answers() {
    let sb = common::start().await;
    let runner = rt::connected_with(&sb, "grace", |c| {
        c.shutdown_grace = Duration::from_millis(300);
    })
    .await;
    let id = submit(&sb, custom(json!({"action": "sleep:10000"}))).await;
    rt::wait_called("grace", 1).await;
    let started = tokio::time::Instant::now();
    let report = runner.stop_and_wait().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not wait for the handler"
    );
    assert!(report.undelivered.is_empty());
    let t = finished(&sb, &id).await;
    assert_eq!(t["status"], "failed");
    assert!(
        t["final_output"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("stopped")),
        "{t:#}"
    );
}

// Many tasks at once run concurrently, up to the bound, and the receive loop keeps going.
#[tokio::test]
async fn tasks_run_concurrently_within_the_bound() {
    let sb = common::start().await;
    let runner = rt::connected_with(&sb, "concurrent", |c| {
        c.max_concurrent_tasks = 4;
    })
    .await;
    let started = tokio::time::Instant::now();
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(submit(&sb, custom(json!({"action": "sleep:300"}))).await);
    }
    for id in &ids {
        assert_eq!(finished(&sb, id).await["status"], "succeeded");
    }
    let elapsed = started.elapsed();
    // Eight 300 ms tasks four at a time: two rounds, not eight.
    assert!(
        elapsed >= Duration::from_millis(600),
        "bounded: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(2000),
        "concurrent: {elapsed:?}"
    );
    runner.stop_and_wait().await;
}

// 12 and 13 for the other interactive events: a validation answers 200 with its data, and
// fails with `data: null` on an error; a product action fails with HTTP 400 like a custom
// event.
#[tokio::test]
async fn validation_and_product_action_answers() {
    let sb = common::start().await;
    let runner = connected(&sb, "c12b").await;
    let spec = |event: &str, action: &str| {
        json!({"category": "interactive", "event_type": event, "object_id": "PR-1",
               "data": {"action": action, "asset": {"id": "AS-1"}}})
    };
    let t = run_task(&sb, spec("asset_purchase_request_validation", "echo")).await;
    assert_eq!(t["status"], "succeeded");
    assert_eq!(t["final_output"]["data"]["http_status"], 200);
    assert_eq!(t["final_output"]["data"]["body"]["asset"]["id"], "AS-1");
    let t = run_task(&sb, spec("asset_purchase_request_validation", "error")).await;
    assert_eq!(t["status"], "failed");
    assert_eq!(
        t["final_output"]["data"],
        Value::Null,
        "validations fail without data"
    );
    let t = run_task(&sb, spec("product_action_execution", "panic")).await;
    assert_eq!(t["status"], "failed");
    assert_eq!(t["final_output"]["data"]["http_status"], 400);
    runner.stop_and_wait().await;
    no_errors(protocol_errors(&sb).await);
}

// A handler's answer over the platform's 2 MiB message limit is not sent as such (the
// platform would drop the connection and deliver the task again, forever): it is answered
// fail, and the session stays up.
#[tokio::test]
async fn oversized_answers_become_a_fail() {
    let sb = common::start().await;
    let runner = connected(&sb, "huge").await;
    let t = run_task(
        &sb,
        json!({"category": "interactive", "event_type": "product_action_execution", "object_id": "PR-1",
               "data": {"action": "huge"}}),
    )
    .await;
    assert_eq!(t["status"], "failed");
    assert!(
        t["final_output"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("byte limit")),
        "{t:#}"
    );
    rt::assert_no_reconnect(&runner);
    runner.stop_and_wait().await;
    no_errors(protocol_errors(&sb).await);
}

// A stop while the platform cannot be reached ends within the grace period and the flush
// window, reporting the results it could not deliver instead of waiting on backoff.
#[tokio::test]
async fn stop_while_disconnected_keeps_its_deadline() {
    let sb = common::start().await;
    let runner = rt::connected_with(&sb, "cutoff", |c| {
        c.shutdown_grace = Duration::from_millis(300);
        c.timings.flush_window = Duration::from_millis(300);
        c.timings.reconnect.max_delay = Duration::from_secs(300);
        c.timings.reconnect.initial = Duration::from_secs(60);
    })
    .await;
    // The handler outlasts the drop by far, even on a busy machine: its result is produced
    // while disconnected.
    let id = submit(&sb, custom(json!({"action": "sleep:1000"}))).await;
    rt::wait_called("cutoff", 1).await;
    rt::set_ws_faults(
        &sb,
        json!([{"at": "upgrade", "action": "refuse", "status": 503}]),
    )
    .await;
    admin_post(&sb, "platform/drop", json!({})).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let started = tokio::time::Instant::now();
    let report = runner.stop_and_wait().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        report.undelivered,
        [id],
        "the kept result is reported, not silently lost"
    );
}

// A dataset schedule with `sandbox_fire_after_seconds` fires by itself once a runner is set up.
#[tokio::test]
async fn dataset_schedules_can_fire_by_themselves() {
    let mut dataset = connect_sandbox::Dataset::default_account();
    if let Some(ext) = dataset.extension.as_mut() {
        ext.schedules[0]["sandbox_fire_after_seconds"] = json!(0.2);
    }
    let sb = connect_sandbox::Sandbox::start(connect_sandbox::SandboxConfig {
        dataset,
        ..connect_sandbox::SandboxConfig::default()
    })
    .await
    .expect("sandbox");
    let runner = connected(&sb, "autofire").await;
    let p = wait_for(&sb, "the schedule to fire", |p| {
        p["tasks"][0]["status"] == "succeeded"
    })
    .await;
    assert_eq!(p["tasks"][0]["object"]["category"], "scheduled");
    assert_eq!(calls("autofire").len(), 1);
    runner.stop_and_wait().await;
    assert_eq!(
        platform(&sb).await["tasks"].as_array().map(Vec::len),
        Some(1),
        "once"
    );
}

// Tasks still waiting for their turn when the runner is told to stop are neither run nor
// answered: the platform delivers them again once the connection closes, without a retry
// spent or an interactive request failed.
#[tokio::test]
async fn waiting_tasks_are_left_to_redelivery_on_stop() {
    let sb = common::start().await;
    let runner = rt::connected_with(&sb, "queued", |c| c.max_concurrent_tasks = 1).await;
    let running = submit(&sb, custom(json!({"action": "sleep:400"}))).await;
    rt::wait_called("queued", 1).await;
    let queued = submit(&sb, custom(json!({"action": "echo"}))).await;
    wait_for(&sb, "the second delivery", |p| {
        p["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["id"] == queued.as_str() && t["status"] == "processing")
    })
    .await;
    let report = runner.stop_and_wait().await;
    assert!(report.undelivered.is_empty(), "{report:?}");
    assert_eq!(finished(&sb, &running).await["status"], "succeeded");
    let t = task(&sb, &queued).await;
    assert_eq!(t["status"], "scheduled", "back in the queue: {t:#}");
    assert_eq!(t["retry_count"], 0);
    assert!(
        t["deliveries"][0]["lost"]
            .as_str()
            .is_some_and(|l| l.contains("connection lost")),
        "{t:#}"
    );
    assert_eq!(calls("queued").len(), 1, "not run");
    no_errors(protocol_errors(&sb).await);
}

// A task id the runner answered before, now for another object (a platform that reuses ids,
// like a restarted sandbox), is run as a new task, not answered from memory.
#[tokio::test]
async fn a_reused_task_id_for_another_object_is_run_again() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut c = raw_config(addr, "SU-1:k", "raw-reuse");
    c.runner_types = vec![RunnerType::Interactive];
    let runner = start_runner(c, rt::registry());
    let (_, mut ws) = raw_accept(&listener).await;
    let setup = json!({"version": 2, "message_type": "setup_response", "data": {
        "variables": [], "model_type": "setup_response"}});
    ws.send(Message::text(setup.to_string()))
        .await
        .expect("setup");
    let mut bodies = Vec::new();
    for (object, n) in [("PR-A", 1), ("PR-A", 1), ("PR-B", 2)] {
        let task = json!({"version": 2, "message_type": "task", "data": {
            "options": {"task_id": "TQ-REUSED", "task_category": "interactive"},
            "input": {"event_type": "product_custom_event_processing", "object_id": object,
                      "data": {"action": "echo", "n": n}},
            "output": null, "model_type": "task"}});
        ws.send(Message::text(task.to_string()))
            .await
            .expect("task");
        let result = loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    break serde_json::from_str::<Value>(t.as_str()).expect("JSON");
                }
                Some(Ok(_)) => {}
                other => panic!("no result: {other:?}"),
            }
        };
        assert_eq!(
            result["data"]["input"]["object_id"], object,
            "echoes this delivery"
        );
        bodies.push(result["data"]["output"]["data"]["body"]["n"].clone());
    }
    assert_eq!(bodies, [json!(1), json!(1), json!(2)]);
    assert_eq!(
        calls("raw-reuse").len(),
        2,
        "the repeat was answered from memory, the other object run"
    );
    let _ = ws.close(None).await;
    runner.stop_and_wait().await;
}

// An upgrade fault that drops strikes exactly the times it says.
#[tokio::test]
async fn upgrade_drops_strike_as_many_times_as_set() {
    let sb = common::start().await;
    rt::set_ws_faults(
        &sb,
        json!([{"at": "upgrade", "action": "drop", "times": 2, "runner_type": "interactive"}]),
    )
    .await;
    let runner = connected(&sb, "drops").await;
    let p = platform(&sb).await;
    let dropped = p["connection_log"]
        .as_array()
        .expect("log")
        .iter()
        .filter(|e| e["event"] == "disconnected" && e["runner_type"] == "interactive")
        .count();
    assert_eq!(dropped, 2, "{:#}", p["connection_log"]);
    // The dropped ones never finished a handshake: they count as failed attempts.
    assert_eq!(runner.stats().connections.load(Ordering::Relaxed), 2);
    runner.stop_and_wait().await;
}
