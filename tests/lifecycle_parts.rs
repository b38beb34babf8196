//! The lifecycle handlers on a group reported as parts: each part is one of the extension's
//! files. A rejected part is rerun alone, a ready part is submitted alone, and the other parts
//! are left exactly as they were.

mod common;

use connect_eaas::protocol::{ResultType, TaskCategory, TaskOutput};
use connect_sandbox::{RuntimeConfig, Sandbox};
use connect_usage::handlers::lifecycle::usage_file_lifecycle;
use connect_usage::usage::identity::FileNote;
use connect_usage::usage::pipeline::Step;
use serde_json::Value;

/// Last month's records all on one subscription: one group, in parts of 100.
async fn sandbox() -> Sandbox {
    common::start_with(RuntimeConfig {
        usage_records: 250,
        usage_subscriptions: 1,
        ..RuntimeConfig::default()
    })
    .await
}

/// Last month reported part after part (one file at a time), as far as the `nth` success of
/// `stop`.
async fn month(sb: &Sandbox, stop: Option<(Step, usize)>) {
    let _ = common::report_last_month(sb, |o| {
        o.max_records_per_file = 100;
        o.concurrency = 1;
        if let Some((step, nth)) = stop {
            o.interrupt_after = Some(step);
            o.interrupt_nth = nth;
        }
    })
    .await;
}

/// The group's files by external id: (id, status, note, uploads, record ids).
async fn files(sb: &Sandbox) -> Vec<(String, String, String, Value, Value, Vec<String>)> {
    let state = common::admin_get(sb, "state?requests=false").await;
    let mut out: Vec<_> = state["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            let mut ids: Vec<String> = f["record_list"]
                .as_array()
                .expect("records")
                .iter()
                .map(|r| r["record_id"].as_str().unwrap_or_default().to_owned())
                .collect();
            ids.sort();
            (
                f["external_id"].as_str().unwrap_or_default().to_owned(),
                f["id"].as_str().unwrap_or_default().to_owned(),
                f["status"].as_str().unwrap_or_default().to_owned(),
                f["note"].clone(),
                f["uploads"].clone(),
                ids,
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

async fn deliver(sb: &Sandbox, id: &str) -> TaskOutput {
    let object: Value = common::vendor(sb)
        .get(&format!("/usage/files/{id}"))
        .await
        .expect("file");
    let ctx = common::task_context(
        sb,
        id,
        &sb.usage_api_url(),
        &[("MAX_RECORDS_PER_FILE", "100")],
    );
    usage_file_lifecycle(ctx, object)
        .await
        .expect("the handler answers")
        .into_output(TaskCategory::Background, 0.0)
}

#[tokio::test]
async fn a_rejected_part_is_rerun_alone() {
    let sb = sandbox().await;
    month(&sb, None).await;
    let before = files(&sb).await;
    assert_eq!(before.len(), 3);
    assert!(before.iter().all(|f| f.2 == "pending"));
    let (ext, id) = (before[1].0.clone(), before[1].1.clone());
    assert!(ext.ends_with(":p2"), "{ext}");
    common::provider(&sb)
        .reject_usage_file(&id, "Counts of part 2 look off")
        .await
        .expect("rejected");
    let out = deliver(&sb, &id).await;
    assert_eq!(out.result, ResultType::Success, "{out:?}");
    let message = out.message.clone().unwrap_or_default();
    assert!(message.starts_with("Rerun 1"), "{message}");
    assert!(message.contains("part 2"), "{message}");
    let after = files(&sb).await;
    // Part 2 uploaded again (the same records: the vendor's data did not change) and submitted.
    assert_eq!(after[1].2, "pending");
    assert_eq!(after[1].4, 2, "part 2 uploaded once more");
    assert_eq!(after[1].5, before[1].5, "the same records");
    assert_eq!(FileNote::parse(after[1].3.as_str()).reruns, 1);
    // The other parts are untouched.
    assert_eq!(after[0], before[0]);
    assert_eq!(after[2], before[2]);
}

#[tokio::test]
async fn a_ready_part_is_submitted_alone() {
    let sb = sandbox().await;
    // Part 1 submitted, part 2 processed when the run stopped, part 3 not made yet.
    month(&sb, Some((Step::Processed, 2))).await;
    let before = files(&sb).await;
    assert_eq!(
        before.iter().map(|f| f.2.as_str()).collect::<Vec<_>>(),
        ["pending", "ready"]
    );
    let out = deliver(&sb, &before[1].1).await;
    assert_eq!(out.result, ResultType::Success, "{out:?}");
    assert!(
        out.message
            .as_deref()
            .is_some_and(|m| m.contains("submitted")),
        "{out:?}"
    );
    let after = files(&sb).await;
    assert_eq!(
        after.len(),
        2,
        "the ready event submits its part, nothing else"
    );
    assert_eq!(after[1].2, "pending");
    assert_eq!(after[1].4, 1, "no second upload");
    assert_eq!(after[0], before[0]);
    // The next monthly run makes part 3 and leaves the others.
    month(&sb, None).await;
    let last = files(&sb).await;
    assert_eq!(last.len(), 3);
    assert_eq!((&last[0], &last[1]), (&after[0], &after[1]));
    assert_eq!((last[2].2.as_str(), last[2].5.len()), ("pending", 50));
}
