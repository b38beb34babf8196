//! The lifecycle handler given the same event twice, with the object as the platform sent it
//! the first time (a `ready`, `rejected` or `invalid` snapshot of a file that has moved on
//! since): the second delivery changes nothing in Connect.

mod common;

use connect_eaas::protocol::{ResultType, TaskCategory, TaskOutput};
use connect_eaas::runner::TaskContext;
use connect_sandbox::Sandbox;
use connect_usage::handlers::lifecycle::usage_file_lifecycle;
use connect_usage::usage::identity::FileNote;
use connect_usage::usage::pipeline::Step;
use connect_usage::usage::{ReportOptions, SourceSpec, report};
use serde_json::Value;

/// What a task of the extension gets, with the vendor's key and the sandbox's usage API.
fn context(sb: &Sandbox, object: &str) -> TaskContext {
    context_with_source(sb, object, &sb.usage_api_url())
}

/// The same, reading the usage from `source` (a URL or a file).
fn context_with_source(sb: &Sandbox, object: &str, source: &str) -> TaskContext {
    common::task_context(sb, object, source, &[])
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

/// The event of `object` delivered once more: a success saying `says` that leaves the file
/// as the first delivery did.
async fn delivered_again(
    sb: &Sandbox,
    object: &Value,
    after_first: &(Value, Value, Value, Value),
    says_text: &str,
) {
    let second = deliver(sb, object).await;
    assert_eq!(second.result, ResultType::Success, "{second:?}");
    assert!(says(&second, |m| m.contains(says_text)), "{second:?}");
    let id = object["id"].as_str().expect("id");
    assert_eq!(&fingerprint(sb, id).await, after_first);
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
    common::start_with(connect_sandbox::RuntimeConfig {
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
    delivered_again(&sb, &ready, &after_first, "is pending now, no longer ready").await;
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
    delivered_again(&sb, &rejected, &after_first, "no longer rejected").await;
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
    // A bad upload.
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
    // The vendor's data changed since the extension's upload (another digest in the note).
    common::note_other_data(&sb, &ids[0]).await;
    let invalid = snapshot(&sb, &ids[0]).await;
    assert_eq!(invalid["status"], "invalid");
    let first = deliver(&sb, &invalid).await;
    assert_eq!(first.result, ResultType::Success, "{first:?}");
    let after_first = fingerprint(&sb, &ids[0]).await;
    assert_eq!(after_first.0, "pending", "regenerated and submitted");
    assert_eq!(after_first.2, 3);
    delivered_again(&sb, &invalid, &after_first, "no longer invalid").await;
}

#[tokio::test]
async fn a_ready_file_holding_rows_uploaded_by_hand_is_left_to_whoever_uploaded_them() {
    let sb = sandbox().await;
    let t = common::qt_target(&sb);
    let ours = common::usage_jsonl("ready-by-hand.jsonl", &t, &[("A-1", "1"), ("A-2", "2")]);
    let source = SourceSpec::File(ours.clone()).open().expect("source");
    let stopped = ReportOptions {
        interrupt_after: Some(Step::Processed),
        ..ReportOptions::new("2024-04".parse().expect("period"))
    };
    report(&common::vendor(&sb), source.as_ref(), &stopped)
        .await
        .expect_err("stopped before the submit");
    let id = common::vendor(&sb)
        .usage_files()
        .all()
        .await
        .expect("files")[0]
        .id
        .clone();
    // Someone uploads as many other rows by hand: the note still names the extension's rows.
    common::upload_by_hand(&sb, &t, &id, &["BY-HAND-1", "BY-HAND-2"]).await;
    let ready = snapshot(&sb, &id).await;
    assert_eq!(ready["status"], "ready");
    let before = fingerprint(&sb, &id).await;
    let ctx = context_with_source(&sb, &id, ours.to_str().expect("path"));
    let out = usage_file_lifecycle(ctx, ready)
        .await
        .expect("the handler answers")
        .into_output(TaskCategory::Background, 0.0);
    assert_eq!(out.result, ResultType::Skip, "{out:?}");
    assert!(
        says(&out, |m| m.contains("someone else uploaded")),
        "{out:?}"
    );
    assert_eq!(
        fingerprint(&sb, &id).await,
        before,
        "neither submitted nor replaced"
    );
}
