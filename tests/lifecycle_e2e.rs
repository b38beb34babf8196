//! The usage file lifecycle end to end: the extension's real handlers in a runner connected
//! over the websocket to a sandbox whose provider accepts and rejects files. Each test
//! asserts the sandbox's final state: files, notes, uploads, acknowledgements, tasks.

mod common;

use std::time::Duration;

use common::runner::{config, finished, platform, platform_settings, submit};
use common::{admin_get, admin_put, provider};
use connect_eaas::runner::RunnerHandle;
use connect_sandbox::dataset::VariableSetup;
use connect_sandbox::{Dataset, ProviderPolicy, RejectRule, Sandbox, SandboxConfig};
use connect_usage::story::{self, DemoOptions};
use connect_usage::usage::identity::FileNote;
use connect_usage::usage::pipeline::Step;
use serde_json::{Value, json};

/// A runner with every handler the extension registers, connected.
async fn extension_runner(sb: &Sandbox, instance: &str) -> RunnerHandle {
    let runner = common::extension_runner(config(sb, instance));
    assert!(
        runner.wait_connected(Duration::from_secs(10)).await,
        "the runner connects"
    );
    runner
}

/// The extension's files in the state dump.
async fn our_files(sb: &Sandbox) -> Vec<Value> {
    admin_get(sb, "state").await["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| {
            f["external_id"]
                .as_str()
                .is_some_and(|e| e.starts_with("cu:"))
        })
        .cloned()
        .collect()
}

async fn file(sb: &Sandbox, id: &str) -> Value {
    common::dumped_file(sb, id).await
}

fn note(f: &Value) -> FileNote {
    FileNote::parse(f["note"].as_str())
}

/// Polls the state dump until `check` holds, for up to `secs`.
async fn until(sb: &Sandbox, secs: u64, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let state = admin_get(sb, "state").await;
        if check(&state) {
            return state;
        }
        if tokio::time::Instant::now() > deadline {
            let files: Vec<Value> = state["files"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| json!([f["id"], f["status"], f["note"]]))
                .collect();
            panic!(
                "timed out waiting for {what}; files: {files:?}; platform tasks: {:#}",
                platform(sb).await["tasks"]
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until the file `id` is in `status`; returns it.
async fn until_status(sb: &Sandbox, id: &str, status: &str) -> Value {
    let state = until(sb, 30, &format!("{id} {status}"), |s| {
        file_in(s, id).is_some_and(|f| f["status"] == status)
    })
    .await;
    file_in(&state, id).cloned().expect("the file")
}

fn file_in<'a>(state: &'a Value, id: &str) -> Option<&'a Value> {
    state["files"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["id"] == id))
}

/// The platform's tasks about one object.
async fn tasks_of(sb: &Sandbox, object: &str) -> Vec<Value> {
    platform(sb).await["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["object"]["id"] == object)
        .cloned()
        .collect()
}

/// A sandbox with a small month of usage (200 records) whose platform retries and
/// redelivers quickly.
async fn small_sandbox() -> Sandbox {
    let sb = common::start_with(connect_sandbox::RuntimeConfig {
        usage_records: 200,
        ..Default::default()
    })
    .await;
    platform_settings(&sb, json!({"time_scale": 0.01, "redelivery_delay_ms": 100})).await;
    sb
}

/// A monthly run of last month, as a crash would leave it: stopped right after `step` first
/// succeeded. Returns the file it left `ready`.
async fn interrupted_run(sb: &Sandbox, step: Step) -> Value {
    common::report_last_month(sb, |o| {
        o.interrupt_after = Some(step);
        o.concurrency = 1;
    })
    .await
    .expect_err("stopped by the interruption");
    our_files(sb)
        .await
        .into_iter()
        .find(|f| f["status"] == "ready")
        .expect("a ready file")
}

/// Delivers the file's event once more, as the platform would, and waits for its result.
async fn deliver(sb: &Sandbox, id: &str) -> Value {
    finished(sb, &submit(sb, common::runner::usage_file_task(id)).await).await
}

/// A task's message says each of `parts`.
fn assert_says(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{part:?} in {message}");
    }
}

/// Fires the monthly schedule and waits for its task to finish.
async fn fire_schedule(sb: &Sandbox) -> Value {
    let fired = common::runner::admin_post(
        sb,
        &format!("platform/schedules/{}/fire", story::SCHEDULE_ID),
        json!({}),
    )
    .await;
    finished(sb, fired["id"].as_str().expect("the task's id")).await
}

async fn fire_schedule_and_wait(sb: &Sandbox) {
    let t = fire_schedule(sb).await;
    assert_eq!(t["status"], "succeeded", "the monthly run: {t:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_story_runs_through_the_websocket() {
    let options = DemoOptions {
        usage_records: 600,
        timeout: Duration::from_secs(60),
        ..DemoOptions::default()
    };
    let sb = Sandbox::start(story::sandbox_config(&options))
        .await
        .expect("sandbox");
    let mut steps = Vec::new();
    let outcome = story::run_on(&sb, &options, |s| steps.push(s.text.clone()))
        .await
        .expect("the demo runs");
    assert!(outcome.completed, "problems: {:#?}", outcome.problems);
    assert!(
        steps.iter().any(|s| s.starts_with("provider rejected")),
        "{steps:#?}"
    );

    // The sandbox's own state, not the demo's account of it.
    let state = admin_get(&sb, "state").await;
    let files = our_files(&sb).await;
    assert!(files.len() >= 2, "{} files", files.len());
    let period = &outcome.period;
    let mut rejected = Vec::new();
    for f in &files {
        assert_eq!(f["status"], "accepted", "{f:#}");
        let (contract, product) = (
            f["contract"]["id"].as_str().expect("contract"),
            f["product"]["id"].as_str().expect("product"),
        );
        assert_eq!(
            f["external_id"],
            format!("cu:{contract}:{product}:{period}")
        );
        let n = note(f);
        assert!(n.digest.is_some() && !n.rerunning, "{}", f["note"]);
        if f["rejection_note"].is_string() {
            rejected.push(f.clone());
            assert_eq!(n.reruns, 1, "rerun once: {}", f["note"]);
            assert_eq!(f["uploads"], 2, "uploaded again into the same file");
        } else {
            assert_eq!(n.reruns, 0);
            assert_eq!(f["uploads"], 1);
        }
    }
    assert_eq!(rejected.len(), 1, "the provider rejects one file");
    let rejected_id = rejected[0]["id"].as_str().expect("id");

    // Every accepted file acknowledged once, with its facts.
    let acks = state["acknowledgements"].as_array().expect("acks");
    assert_eq!(acks.len(), files.len());
    for f in &files {
        let ack = acks
            .iter()
            .find(|a| a["usage_file_id"] == f["id"])
            .unwrap_or_else(|| panic!("{} acknowledged", f["id"]));
        assert_eq!(ack["deliveries"], 1);
        assert_eq!(ack["body"]["status"], "accepted");
        assert_eq!(ack["body"]["external_id"], f["external_id"]);
        assert_eq!(ack["body"]["records"], f["stats"]["uploaded"]);
        assert_eq!(ack["body"]["period"], period.as_str());
    }

    // The rerun's task result names the provider's note.
    let reject_note = rejected[0]["rejection_note"].as_str().expect("note");
    let tasks = tasks_of(&sb, rejected_id).await;
    let rerun = tasks
        .iter()
        .find(|t| {
            t["output"]
                .as_str()
                .is_some_and(|o| o.starts_with("Rerun 1"))
        })
        .unwrap_or_else(|| panic!("a rerun task among {tasks:#?}"));
    assert_eq!(rerun["status"], "succeeded");
    assert!(
        rerun["output"]
            .as_str()
            .is_some_and(|o| o.contains(reject_note)),
        "{rerun:#}"
    );
    let p = platform(&sb).await;
    assert_eq!(p["protocol_errors"], json!([]), "a conforming run");
    assert!(
        p["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .all(|t| matches!(t["status"].as_str(), Some("succeeded" | "skipped"))),
        "no task failed or waits"
    );

    // The same events delivered again (to a runner that never saw them) change nothing.
    let runner = extension_runner(&sb, "again").await;
    let before = our_files(&sb).await;
    let mut ids = Vec::new();
    for f in &before {
        ids.push(
            submit(
                &sb,
                common::runner::usage_file_task(f["id"].as_str().expect("id")),
            )
            .await,
        );
    }
    for id in &ids {
        let t = finished(&sb, id).await;
        assert_eq!(t["status"], "succeeded", "{t:#}");
    }
    let after = our_files(&sb).await;
    for (b, a) in before.iter().zip(&after) {
        for field in [
            "status",
            "note",
            "uploads",
            "rejection_note",
            "acceptance_note",
        ] {
            assert_eq!(b[field], a[field], "{field} of {}", b["id"]);
        }
    }
    let acks_after = admin_get(&sb, "state").await["acknowledgements"].clone();
    let acks_after = acks_after.as_array().expect("acks");
    assert_eq!(
        acks_after.len(),
        files.len(),
        "the vendor has the same acknowledgements"
    );
    for (before, after) in acks.iter().zip(acks_after) {
        assert_eq!(before["key"], after["key"]);
        assert_eq!(before["body"], after["body"], "the same acknowledgement");
        assert_eq!(after["deliveries"], 2, "told again, idempotently");
    }
    runner.stop_and_wait().await;
}

/// A sandbox whose provider rejects the first file it reviews `times` times, `review_ms`
/// after each submit, and an extension with `RERUN_LIMIT` set.
async fn stubborn_provider(times: u32, rerun_limit: &str, review_ms: u64) -> Sandbox {
    let mut dataset = Dataset::default_account();
    let mut ext = dataset.extension();
    ext.variables.push(VariableSetup {
        name: "RERUN_LIMIT".into(),
        value: rerun_limit.into(),
        secure: false,
    });
    dataset.extension = Some(ext);
    let sb = Sandbox::start(SandboxConfig {
        dataset,
        runtime: connect_sandbox::RuntimeConfig {
            usage_records: 200,
            ..Default::default()
        },
        provider: ProviderPolicy {
            auto: true,
            review_delay_ms: review_ms,
            reject: vec![RejectRule {
                contract: None,
                product: None,
                times,
                files: Some(1),
                note: "Still wrong: the storage quantities are doubled".into(),
            }],
            ..ProviderPolicy::default()
        },
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox");
    // Failed tasks are not retried by the platform here: a `fail` is final anyway.
    platform_settings(&sb, json!({"time_scale": 0.01, "redelivery_delay_ms": 100})).await;
    sb
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_past_the_cap_fails_with_a_clear_message() {
    let sb = stubborn_provider(10, "2", 50).await;
    let runner = extension_runner(&sb, "capped").await;
    fire_schedule_and_wait(&sb).await;
    // Rejected three times: two reruns, then the cap.
    let state = until(&sb, 30, "a rejected file past the cap", |s| {
        s["provider"]["answers"]
            .as_array()
            .is_some_and(|a| a.iter().filter(|a| a["decision"] == "rejected").count() >= 3)
    })
    .await;
    let answers = state["provider"]["answers"].as_array().expect("answers");
    let id = answers
        .iter()
        .find(|a| a["decision"] == "rejected")
        .and_then(|a| a["file"].as_str())
        .expect("rejected file")
        .to_owned();
    let failed = {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let failed: Vec<Value> = tasks_of(&sb, &id)
                .await
                .into_iter()
                .filter(|t| t["status"] == "failed")
                .collect();
            if let Some(t) = failed.first() {
                break t.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "a failed task for {id}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let message = failed["output"].as_str().expect("message");
    assert_says(
        message,
        &[
            "Still wrong: the storage quantities are doubled",
            "rerun 2 times already",
            "RERUN_LIMIT=2",
            "left rejected for a person",
            &id,
        ],
    );
    let f = file(&sb, &id).await;
    assert_eq!(f["status"], "rejected", "left for a person");
    let n = note(&f);
    assert_eq!((n.reruns, n.rerunning), (2, false), "{}", f["note"]);
    assert_eq!(f["uploads"], 3, "the first upload and two reruns");
    // Nothing more happens to it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(file(&sb, &id).await["uploads"], 3);
    runner.stop_and_wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_rerun_resumes_it() {
    // The provider is a person here: the test rejects through the API.
    let sb = small_sandbox().await;
    let first = extension_runner(&sb, "before-crash").await;
    fire_schedule_and_wait(&sb).await;
    let files = our_files(&sb).await;
    let target = files
        .iter()
        .find(|f| f["status"] == "pending")
        .expect("a submitted file");
    let id = target["id"].as_str().expect("id").to_owned();
    // Its re-upload fails for now: the rerun gets stuck in the middle.
    let r = admin_put(
        &sb,
        "faults",
        json!([{"method": "POST", "path": format!("/usage/files/{id}/upload"),
                "action": {"type": "status", "status": 503}}]),
    )
    .await;
    assert!(r.status().is_success(), "fault set");
    provider(&sb)
        .reject_usage_file(&id, "Quantities for March are missing")
        .await
        .expect("rejected");
    until(&sb, 20, "the rerun counted and under way", |s| {
        file_in(s, &id).is_some_and(|f| {
            let n = note(f);
            n.rerunning && n.reruns == 1
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The process goes away with the rerun unfinished.
    first.stop_and_wait().await;
    let f = file(&sb, &id).await;
    assert_eq!(f["status"], "rejected");
    assert_eq!(f["uploads"], 1, "the re-upload never landed");

    // A new process, the faults gone: the platform delivers the task again and the rerun
    // resumes, counted once.
    let r = admin_put(&sb, "faults", json!([])).await;
    assert!(r.status().is_success());
    let _second = extension_runner(&sb, "after-crash").await;
    let f = until_status(&sb, &id, "pending").await;
    let n = note(&f);
    assert_eq!((n.reruns, n.rerunning), (1, false), "{}", f["note"]);
    assert!(n.digest.is_some());
    assert_eq!(f["uploads"], 2, "one re-upload");
    let tasks = tasks_of(&sb, &id).await;
    assert!(
        tasks.iter().any(|t| t["status"] == "succeeded"
            && t["output"].as_str().is_some_and(
                |o| o.starts_with("Rerun 1") && o.contains("Quantities for March are missing")
            )),
        "{tasks:#?}"
    );
    // Exactly one usage file for the group.
    let same: Vec<Value> = our_files(&sb)
        .await
        .into_iter()
        .filter(|g| g["external_id"] == f["external_id"])
        .collect();
    assert_eq!(same.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_others_are_skipped_with_the_reason() {
    let sb = common::start().await;
    let runner = extension_runner(&sb, "others").await;
    let t = common::qt_target(&sb);
    let f = common::ready_file(&sb, &t, "billing-system-42").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let skipped = loop {
        let tasks = tasks_of(&sb, &f.id).await;
        if let Some(t) = tasks.iter().find(|t| t["status"] == "skipped") {
            break t.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "{tasks:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let message = skipped["output"].as_str().expect("reason");
    assert!(
        message.contains("not one of connect-usage's") && message.contains("billing-system-42"),
        "{message}"
    );
    assert_eq!(file(&sb, &f.id).await["status"], "ready", "left alone");
    runner.stop_and_wait().await;
}

/// The group's file taken as far as `ready` with its digest noted, as a monthly run
/// interrupted before its submit leaves it; then made invalid by a bad upload.
async fn invalid_file_of_the_month(sb: &Sandbox) -> (String, String) {
    let f = interrupted_run(sb, Step::Processed).await;
    let id = f["id"].as_str().expect("id").to_owned();
    let noted = f["note"].as_str().expect("note").to_owned();
    assert!(note(&f).digest.is_some(), "{noted}");
    // As many rows as the vendor's data: only the rows' content is wrong.
    let records = note(&f).digest.map_or(0, |(_, n)| n);
    let t = common::qt_target(sb);
    let rows: Vec<_> = (0..records)
        .map(|i| common::qt_row(&format!("bad-{i}"), "NO-SUCH-MPN", -1.0, &t.assets[0]))
        .collect();
    let bad = common::workbook("records", &common::QT_HEADER, &rows);
    let after = common::vendor(sb)
        .upload_usage_file(&id, "bad.xlsx", bad.into())
        .await
        .expect("uploaded");
    assert_eq!(
        after.status,
        connect_client::models::UsageFileStatus::Invalid
    );
    (id, noted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_files_are_explained_and_regenerated_only_when_the_data_changed() {
    let sb = common::start().await;
    // No runner yet: the events of the preparation make no tasks.
    let (id, noted) = invalid_file_of_the_month(&sb).await;
    let vendor = common::vendor(&sb);
    // The note says the file holds today's vendor data, as uploaded last (this upload being
    // the extension's): uploading it again cannot help.
    let last_upload = vendor.usage_file(&id).await.expect("file").last_upload();
    let ours = FileNote {
        at: last_upload,
        ..FileNote::parse(Some(&noted))
    };
    vendor
        .update_usage_file(
            &id,
            &connect_client::models::UsageFileUpdate {
                note: Some(ours.to_string()),
                ..Default::default()
            },
        )
        .await
        .expect("note set");
    let first = extension_runner(&sb, "invalid-1").await;
    let t = deliver(&sb, &id).await;
    assert_eq!(t["status"], "failed", "{t:#}");
    let message = t["output"].as_str().expect("message");
    assert_says(
        message,
        &[
            "invalid",
            "records are invalid",
            "NO-SUCH-MPN",
            "correct the records in the vendor's system",
            "parameter period=",
        ],
    );
    let f = file(&sb, &id).await;
    assert_eq!(f["status"], "invalid");
    assert_eq!(f["uploads"], 2, "not uploaded again");
    first.stop_and_wait().await;

    // The vendor's data changed since (another digest in the note): regenerated, once.
    common::note_other_data(&sb, &id).await;
    let _second = extension_runner(&sb, "invalid-2").await;
    let t = deliver(&sb, &id).await;
    assert_eq!(t["status"], "succeeded", "{t:#}");
    assert!(
        t["output"]
            .as_str()
            .is_some_and(|o| o.contains("changed since the invalid upload")),
        "{t:#}"
    );
    let f = file(&sb, &id).await;
    assert_eq!(f["status"], "pending", "regenerated and submitted");
    assert_eq!(f["uploads"], 3);
    assert_eq!(note(&f).digest(), FileNote::parse(Some(&noted)).digest());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monthly_task_names_the_records_it_did_not_send() {
    let sb = common::start_with(connect_sandbox::RuntimeConfig {
        usage_records: 300,
        usage_bad_records: 0.05,
        ..Default::default()
    })
    .await;
    let runner = extension_runner(&sb, "bad-records").await;
    let t = fire_schedule(&sb).await;
    assert_eq!(t["status"], "succeeded", "{t:#}");
    let message = t["output"].as_str().expect("message");
    assert!(
        message.contains("Records not sent, the first: record "),
        "{message}"
    );
    runner.stop_and_wait().await;
}

/// One of `tasks` ended in `status` with an output that contains `says`.
fn assert_a_task(tasks: &[Value], status: &str, says: &str) {
    assert!(
        tasks.iter().any(
            |t| t["status"] == status && t["output"].as_str().is_some_and(|o| o.contains(says))
        ),
        "a task {status} saying {says:?} among {tasks:#?}"
    );
}

/// Every task about one object has reached a final status.
async fn all_finished(sb: &Sandbox, object: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let tasks = tasks_of(sb, object).await;
        if !tasks.is_empty()
            && tasks.iter().all(|t| {
                matches!(
                    t["status"].as_str(),
                    Some("succeeded" | "failed" | "skipped")
                )
            })
        {
            return tasks;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tasks of {object} unfinished: {tasks:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_rejection_delivered_twice_at_once_reruns_once() {
    let sb = small_sandbox().await;
    let runner = extension_runner(&sb, "twice").await;
    fire_schedule_and_wait(&sb).await;
    // Slow processing keeps the first rerun busy (it polls the file) while its duplicate
    // arrives.
    let r = admin_put(&sb, "config", json!({"processing_delay_ms": 300})).await;
    assert!(r.status().is_success(), "config changed");
    let id = our_files(&sb)
        .await
        .iter()
        .find(|f| f["status"] == "pending")
        .and_then(|f| f["id"].as_str())
        .expect("a submitted file")
        .to_owned();
    provider(&sb)
        .reject_usage_file(&id, "Twice the licences we count")
        .await
        .expect("rejected");
    // The platform's own task for the rejection, and the same event once more.
    let duplicate = submit(&sb, common::runner::usage_file_task(&id)).await;
    finished(&sb, &duplicate).await;
    until(&sb, 30, "the rerun submitted", |s| {
        file_in(s, &id).is_some_and(|f| f["status"] == "pending" && !note(f).rerunning)
    })
    .await;
    let tasks = all_finished(&sb, &id).await;
    let reruns: Vec<&Value> = tasks
        .iter()
        .filter(|t| t["output"].as_str().is_some_and(|o| o.starts_with("Rerun")))
        .collect();
    assert_eq!(reruns.len(), 1, "one rerun among {tasks:#?}");
    assert!(
        tasks
            .iter()
            .all(|t| matches!(t["status"].as_str(), Some("succeeded" | "skipped"))),
        "{tasks:#?}"
    );
    let f = file(&sb, &id).await;
    assert_eq!(note(&f).reruns, 1, "{}", f["note"]);
    assert_eq!(f["uploads"], 2, "uploaded again once");
    runner.stop_and_wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_file_without_a_digest_is_checked_and_submitted() {
    let sb = small_sandbox().await;
    // The extension ran once (its subscriptions stay with the environment), then went away.
    extension_runner(&sb, "earlier").await.stop_and_wait().await;
    // A monthly run that stops right after its first upload, before noting what it uploaded.
    let f = interrupted_run(&sb, Step::Upload).await;
    let id = f["id"].as_str().expect("id").to_owned();
    assert!(note(&f).digest.is_none(), "{}", f["note"]);

    // Its `ready` event waited for the next runner.
    let runner = extension_runner(&sb, "no-digest").await;
    let f = until_status(&sb, &id, "pending").await;
    let n = note(&f);
    assert!(n.digest.is_some(), "what it holds is noted: {}", f["note"]);
    assert_eq!(
        f["uploads"], 1,
        "the upload its note named landed: not sent again"
    );
    assert_eq!(
        n.digest.map(|(_, records)| records as u64),
        f["stats"]["uploaded"].as_u64(),
        "the note counts the file's records"
    );
    let tasks = all_finished(&sb, &id).await;
    assert_a_task(
        &tasks,
        "succeeded",
        "checked against the vendor's data and submitted",
    );
    let same = our_files(&sb)
        .await
        .into_iter()
        .filter(|g| g["external_id"] == f["external_id"])
        .count();
    assert_eq!(same, 1, "one file for the group");
    runner.stop_and_wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_and_closed_files_without_or_with_a_refusing_acknowledgement_endpoint() {
    let sb = small_sandbox().await;
    // No acknowledgement endpoint: accepted files are only logged.
    let r = admin_put(
        &sb,
        "platform/setup",
        json!({"variables": {"USAGE_ACK_URL": ""}}),
    )
    .await;
    assert!(r.status().is_success(), "setup changed");
    let first = extension_runner(&sb, "no-ack").await;
    fire_schedule_and_wait(&sb).await;
    let pending: Vec<String> = our_files(&sb)
        .await
        .iter()
        .filter(|f| f["status"] == "pending")
        .filter_map(|f| f["id"].as_str().map(str::to_owned))
        .collect();
    assert!(pending.len() >= 2, "{pending:?}");
    let p = provider(&sb);
    p.accept_usage_file(&pending[0], "Matches our metering")
        .await
        .expect("accepted");
    let tasks = all_finished(&sb, &pending[0]).await;
    assert_a_task(
        &tasks,
        "succeeded",
        "no USAGE_ACK_URL set: the vendor is not told",
    );
    assert_eq!(
        admin_get(&sb, "state").await["acknowledgements"],
        json!([]),
        "nobody was told"
    );

    // The provider bills every record: the file is closed, and that is the end of it.
    let records = p
        .usage_records()
        .filter(connect_client::rql::Expr::eq(
            "usagefile.id",
            pending[0].as_str(),
        ))
        .all()
        .await
        .expect("records");
    let close: Vec<connect_client::models::CloseRecord> = records
        .iter()
        .map(|r| connect_client::models::CloseRecord {
            id: r.id.clone(),
            external_billing_id: Some("INV-2026-001".into()),
            external_billing_note: None,
        })
        .collect();
    p.close_usage_records(&close).await.expect("records closed");
    let before = until_status(&sb, &pending[0], "closed").await;
    let tasks = all_finished(&sb, &pending[0]).await;
    assert_a_task(&tasks, "succeeded", "is closed: nothing left to do");
    let after = file(&sb, &pending[0]).await;
    for field in ["status", "note", "uploads"] {
        assert_eq!(
            before[field], after[field],
            "{field} unchanged by the closed event"
        );
    }
    first.stop_and_wait().await;

    // An endpoint that answers 404: the vendor is not told, and a person is.
    let wrong = format!("{}/vendor/v1/no-such-endpoint", sb.origin());
    let r = admin_put(
        &sb,
        "platform/setup",
        json!({"variables": {"USAGE_ACK_URL": wrong}}),
    )
    .await;
    assert!(r.status().is_success(), "setup changed");
    let _second = extension_runner(&sb, "wrong-ack").await;
    p.accept_usage_file(&pending[1], "Matches our metering")
        .await
        .expect("accepted");
    let tasks = all_finished(&sb, &pending[1]).await;
    let failed = tasks
        .iter()
        .find(|t| t["status"] == "failed")
        .unwrap_or_else(|| panic!("a failed task among {tasks:#?}"));
    let message = failed["output"].as_str().expect("message");
    assert_says(
        message,
        &[
            pending[1].as_str(),
            "was accepted, but the vendor was not told",
            "404",
        ],
    );
    assert_eq!(file(&sb, &pending[1]).await["status"], "accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_processed_after_the_run_gave_up_waiting_are_submitted_not_uploaded_again() {
    let sb = common::start_with(connect_sandbox::RuntimeConfig {
        usage_records: 100,
        processing_delay_ms: 1000,
        ..Default::default()
    })
    .await;
    platform_settings(&sb, json!({"time_scale": 0.01, "redelivery_delay_ms": 100})).await;
    let runner = extension_runner(&sb, "slow").await;
    // A monthly run that stops waiting for Connect's processing long before it ends.
    let summary = common::report_last_month(&sb, |o| {
        o.poll = connect_usage::usage::PollPolicy {
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(200),
        }
    })
    .await
    .expect("report");
    assert_eq!(summary.groups.waiting, summary.files.len(), "{summary}");

    // Each file's `ready` event submits it.
    let state = until(&sb, 30, "every file submitted", |s| {
        let files: Vec<&Value> = s["files"].as_array().into_iter().flatten().collect();
        files.len() == summary.files.len() && files.iter().all(|f| f["status"] == "pending")
    })
    .await;
    for f in state["files"].as_array().expect("files") {
        assert_eq!(f["uploads"], 1, "{} not uploaded again", f["id"]);
        let n = note(f);
        assert_eq!(
            n.digest.as_ref().map(|(_, records)| *records as u64),
            f["stats"]["uploaded"].as_u64(),
            "{}",
            f["note"]
        );
        let tasks = all_finished(&sb, f["id"].as_str().expect("id")).await;
        assert_a_task(
            &tasks,
            "succeeded",
            "checked against the vendor's data and submitted",
        );
    }
    runner.stop_and_wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regenerated_upload_found_invalid_again_is_explained_by_its_own_detail() {
    let sb = common::start().await;
    let (id, _) = invalid_file_of_the_month(&sb).await;
    let first_detail = file(&sb, &id).await["error_detail"].clone();
    // The vendor's data changed since that upload (another digest in the note), and Connect
    // will find the regenerated upload invalid too, for a reason of its own.
    common::note_other_data(&sb, &id).await;
    let r = admin_put(
        &sb,
        "faults",
        json!([{"method": "POST", "path": format!("/usage/files/{id}/upload"), "count": 1,
                "action": {"type": "invalid_upload", "detail": "Prices of March are not agreed yet."}}]),
    )
    .await;
    assert!(r.status().is_success(), "fault set");
    let _runner = extension_runner(&sb, "invalid-again").await;
    let t = deliver(&sb, &id).await;
    assert_eq!(t["status"], "failed", "{t:#}");
    let message = t["output"].as_str().expect("message");
    assert_says(
        message,
        &[
            "changed since the invalid upload",
            "uploaded again",
            "invalid again: Prices of March are not agreed yet.",
            "Correct the records in the vendor's system",
        ],
    );
    assert!(
        !message.contains("same as uploaded") && !message.contains("NO-SUCH-MPN"),
        "nothing of the first upload: {message}"
    );
    let f = file(&sb, &id).await;
    assert_eq!(f["status"], "invalid");
    assert_eq!(f["uploads"], 3, "regenerated once");
    assert_ne!(f["error_detail"], first_detail);
    // The note names the regenerated records: the same event again changes nothing.
    let t = deliver(&sb, &id).await;
    assert_eq!(t["status"], "failed", "{t:#}");
    assert!(
        t["output"]
            .as_str()
            .is_some_and(|o| o.contains("same as uploaded")),
        "{t:#}"
    );
    assert_eq!(file(&sb, &id).await["uploads"], 3, "not uploaded again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_right_after_a_reruns_submit_is_left_to_its_own_event() {
    // The provider answers as soon as a file is submitted: before the rerun that submitted it
    // has read the file again.
    let sb = stubborn_provider(2, "3", 0).await;
    let runner = extension_runner(&sb, "instant").await;
    fire_schedule_and_wait(&sb).await;
    let state = until(&sb, 30, "the twice rejected file accepted", |s| {
        let answers = s["provider"]["answers"].as_array();
        let rejected = answers
            .into_iter()
            .flatten()
            .find(|a| a["decision"] == "rejected")
            .and_then(|a| a["file"].as_str());
        rejected.is_some_and(|id| file_in(s, id).is_some_and(|f| f["status"] == "accepted"))
    })
    .await;
    let id = state["provider"]["answers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["decision"] == "rejected")
        .and_then(|a| a["file"].as_str())
        .expect("rejected file")
        .to_owned();
    let tasks = all_finished(&sb, &id).await;
    for t in &tasks {
        assert!(
            matches!(t["status"].as_str(), Some("succeeded" | "skipped")),
            "{t:#}"
        );
        assert_eq!(t["retry_count"], 0, "answered at once, never retry: {t:#}");
    }
    assert_a_task(&tasks, "succeeded", "Rerun 1 of at most 3");
    assert_a_task(&tasks, "succeeded", "Rerun 2 of at most 3");
    let f = file(&sb, &id).await;
    let n = note(&f);
    assert_eq!((n.reruns, n.rerunning), (2, false), "{}", f["note"]);
    assert_eq!(f["uploads"], 3, "the first upload and two reruns");
    runner.stop_and_wait().await;
}
