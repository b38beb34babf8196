//! The lifecycle handler given the same event twice, with the object as the platform sent it
//! the first time (a `ready`, `rejected` or `invalid` snapshot of a file that has moved on
//! since): the second delivery changes nothing in Connect.

mod common;

use connect_usage::handlers::lifecycle::usage_file_lifecycle;
use connect_usage::runner::protocol::{ResultType, TaskCategory, TaskOutput};
use connect_usage::runner::{Environment, TaskContext, TaskInfo, Variables};
use connect_usage::sandbox::Sandbox;
use connect_usage::usage::identity::FileNote;
use connect_usage::usage::pipeline::Step;
use serde_json::Value;

/// What a task of the extension gets, with the vendor's key and the sandbox's usage API.
fn context(sb: &Sandbox, object: &str) -> TaskContext {
    let client = common::vendor(sb);
    TaskContext {
        task: TaskInfo {
            task_id: "TQ-000-000-001".into(),
            category: TaskCategory::Background,
            event_type: "usage_file_request_processing".into(),
            object_id: object.into(),
            correlation_id: None,
        },
        environment_client: client.clone(),
        client,
        installation: None,
        installation_client: None,
        config: Variables::from_entries([
            ("USAGE_SOURCE", sb.usage_api_url(), false),
            (
                "USAGE_SOURCE_TOKEN",
                sb.usage_token().expose().to_owned(),
                true,
            ),
        ]),
        environment: Environment::default(),
    }
}

/// Runs the handler on `object` as one delivery of its event.
async fn deliver(sb: &Sandbox, object: &Value) -> TaskOutput {
    let id = object["id"].as_str().expect("id");
    usage_file_lifecycle(context(sb, id), object.clone())
        .await
        .expect("the handler answers")
        .into_output(TaskCategory::Background, 0.0)
}

/// Whether the task's message passes `check`.
fn says(out: &TaskOutput, check: impl Fn(&str) -> bool) -> bool {
    out.message.as_deref().is_some_and(check)
}

/// The file as Connect's API gives it: what the platform hands the handler.
async fn snapshot(sb: &Sandbox, id: &str) -> Value {
    common::vendor(sb)
        .get(&format!("/usage/files/{id}"))
        .await
        .expect("file")
}

/// What a second delivery must leave alone.
async fn fingerprint(sb: &Sandbox, id: &str) -> (Value, Value, Value, Value) {
    let f = common::dumped_file(sb, id).await;
    (
        f["status"].clone(),
        f["note"].clone(),
        f["uploads"].clone(),
        f["events"].clone(),
    )
}

async fn sandbox() -> Sandbox {
    common::start_with(connect_usage::sandbox::RuntimeConfig {
        usage_records: 200,
        ..Default::default()
    })
    .await
}

/// Last month reported as far as `stop` (all of it when `None`); returns the files' ids.
async fn month(sb: &Sandbox, stop: Option<Step>) -> Vec<String> {
    let _ = common::report_last_month(sb, |o| {
        o.interrupt_after = stop;
        o.concurrency = 1;
    })
    .await;
    common::vendor(sb)
        .usage_files()
        .all()
        .await
        .expect("files")
        .into_iter()
        .map(|f| f.id)
        .collect()
}

#[tokio::test]
async fn a_ready_event_delivered_twice_submits_once() {
    let sb = sandbox().await;
    let ids = month(&sb, Some(Step::Processed)).await;
    let ready = snapshot(&sb, &ids[0]).await;
    assert_eq!(ready["status"], "ready");
    let first = deliver(&sb, &ready).await;
    assert_eq!(first.result, ResultType::Success, "{first:?}");
    assert!(says(&first, |m| m.contains("submitted")), "{first:?}");
    let after_first = fingerprint(&sb, &ids[0]).await;
    assert_eq!(after_first.0, "pending");
    let second = deliver(&sb, &ready).await;
    assert_eq!(second.result, ResultType::Success, "{second:?}");
    assert!(
        says(&second, |m| m.contains("is pending now, no longer ready")),
        "{second:?}"
    );
    assert_eq!(fingerprint(&sb, &ids[0]).await, after_first);
}

#[tokio::test]
async fn a_rejected_event_delivered_twice_reruns_once() {
    let sb = sandbox().await;
    let ids = month(&sb, None).await;
    common::provider(&sb)
        .reject_usage_file(&ids[0], "Counts do not match")
        .await
        .expect("rejected");
    let rejected = snapshot(&sb, &ids[0]).await;
    let first = deliver(&sb, &rejected).await;
    assert_eq!(first.result, ResultType::Success, "{first:?}");
    assert!(
        says(&first, |m| m.starts_with("Rerun 1")
            && m.contains("Counts do not match")),
        "{first:?}"
    );
    let after_first = fingerprint(&sb, &ids[0]).await;
    assert_eq!(after_first.0, "pending");
    assert_eq!(after_first.2, 2, "uploaded again once");
    let second = deliver(&sb, &rejected).await;
    assert!(
        says(&second, |m| m.contains("no longer rejected")),
        "{second:?}"
    );
    assert_eq!(fingerprint(&sb, &ids[0]).await, after_first);
    assert_eq!(
        FileNote::parse(after_first.1.as_str()).reruns,
        1,
        "counted once"
    );
}

#[tokio::test]
async fn an_invalid_event_delivered_twice_regenerates_once() {
    let sb = sandbox().await;
    let ids = month(&sb, Some(Step::Processed)).await;
    // A bad upload by someone else: the vendor's data differs from what the file holds now.
    let t = common::qt_target(&sb);
    let rows = vec![common::qt_row("bad-1", "NO-SUCH-MPN", 1.0, &t.assets[0])];
    common::vendor(&sb)
        .upload_usage_file(
            &ids[0],
            "bad.xlsx",
            common::workbook("records", &common::QT_HEADER, &rows).into(),
        )
        .await
        .expect("uploaded");
    let invalid = snapshot(&sb, &ids[0]).await;
    assert_eq!(invalid["status"], "invalid");
    let first = deliver(&sb, &invalid).await;
    assert_eq!(first.result, ResultType::Success, "{first:?}");
    let after_first = fingerprint(&sb, &ids[0]).await;
    assert_eq!(after_first.0, "pending", "regenerated and submitted");
    assert_eq!(after_first.2, 3);
    let second = deliver(&sb, &invalid).await;
    assert!(
        says(&second, |m| m.contains("no longer invalid")),
        "{second:?}"
    );
    assert_eq!(fingerprint(&sb, &ids[0]).await, after_first);
}
