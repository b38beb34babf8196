//! The rest of the sandbox's surface: file updates, categories, reprocessing, record
//! decisions, `subscriptions/assets`, trailing slashes, and the settings and fault rules of the
//! `/sandbox` API with their validation.

mod common;

use common::*;
use connect_client::models::{UsageFileStatus as S, UsageFileUpdate};
use connect_client::rql::Expr;
use connect_sandbox::RuntimeConfig;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn update_changes_what_the_status_allows() {
    let sb = start().await;
    let t = qt_target(&sb);
    let v = vendor(&sb);
    let draft = v
        .create_usage_file(&new_file(&t, "u-draft"))
        .await
        .expect("created");
    let changed: Value = v
        .put(
            &format!("/usage/files/{}", draft.id),
            &json!({"note": "n", "period": {"from": "2024-05-01", "to": "2024-05-31"}, "currency": "EUR"}),
        )
        .await
        .expect("draft period can change");
    assert_eq!(
        changed["period"],
        json!({"from": "2024-05-01", "to": "2024-05-31"})
    );
    assert_eq!(changed["note"], "n");

    let ready = ready_file(&sb, &t, "u-ready").await;
    let updated = v
        .update_usage_file(
            &ready.id,
            &UsageFileUpdate {
                description: Some("April, corrected".into()),
                note: None,
                external_id: Some("u-ready-2".into()),
            },
        )
        .await
        .expect("description and external id change in ready");
    assert_eq!(updated.description.as_deref(), Some("April, corrected"));
    assert_eq!(updated.external_id.as_deref(), Some("u-ready-2"));
    let e = v
        .put::<_, Value>(
            &format!("/usage/files/{}", ready.id),
            &json!({"period": {"from": "2024-05-01", "to": "2024-05-31"}}),
        )
        .await
        .expect_err("period is fixed after draft");
    assert_eq!(e.error_code(), Some("USG_008"));
    v.delete_usage_file(&draft.id).await.expect("deleted");
    let e = v
        .update_usage_file(&draft.id, &UsageFileUpdate::default())
        .await
        .expect_err("deleted files do not change");
    assert_eq!(e.error_code(), Some("USG_008"));
    let e = provider(&sb)
        .update_usage_file(&ready.id, &UsageFileUpdate::default())
        .await
        .expect_err("providers do not update");
    assert_eq!(e.error_code(), Some("AUTH_002"));
}

#[tokio::test]
async fn categories_come_from_the_upload() {
    let sb = start().await;
    let t = qt_target(&sb);
    let v = vendor(&sb);
    let mut book = rust_xlsxwriter::Workbook::new();
    let records = book.add_worksheet();
    records.set_name("records").expect("name");
    let mut header: Vec<&str> = QT_HEADER.to_vec();
    header.push("category_id");
    for (c, h) in header.iter().enumerate() {
        records.write_string(0, c as u16, *h).expect("header");
    }
    let mpn = t.mpn_with("integer");
    for (r, (id, cat)) in [("a", "compute"), ("b", "storage"), ("c", "nope")]
        .iter()
        .enumerate()
    {
        let r = r as u32 + 1;
        let cells = [
            *id,
            "item.mpn",
            &mpn,
            "1",
            "2024-04-01 00:00:00",
            "2024-04-30 23:59:59",
            "asset.id",
            &t.assets[0],
            cat,
        ];
        for (c, text) in cells.iter().enumerate() {
            records.write_string(r, c as u16, *text).expect("cell");
        }
    }
    let cats = book.add_worksheet();
    cats.set_name("categories").expect("name");
    for (r, row) in [
        ["category_id", "category_name", "category_description"],
        ["compute", "Compute", "CPU and GPU"],
        ["storage", "Storage", "Disks"],
    ]
    .iter()
    .enumerate()
    {
        for (c, text) in row.iter().enumerate() {
            cats.write_string(r as u32, c as u16, *text).expect("cell");
        }
    }
    let bytes = book.save_to_buffer().expect("workbook");
    let f = v
        .create_usage_file(&new_file(&t, "cats"))
        .await
        .expect("created");
    let f = v
        .upload_usage_file(&f.id, "c.xlsx", bytes.into())
        .await
        .expect("uploaded");
    assert_eq!(f.status, S::Invalid, "row 4 has an unknown category");
    let listed: Vec<Value> = v
        .get(&format!("/usage/files/{}/categories", f.id))
        .await
        .expect("categories");
    let ids: Vec<&str> = listed.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids, ["compute", "storage"]);
    let found: Vec<Value> = v
        .get(&format!(
            "/usage/files/{}/categories?eq(name,Storage)",
            f.id
        ))
        .await
        .expect("filtered");
    assert_eq!(found.len(), 1);
    let bad = v
        .usage_records()
        .filter(Expr::eq("usagefile.id", f.id.as_str()) & Expr::eq("status", "invalid"))
        .all()
        .await
        .expect("records");
    assert_eq!(bad.len(), 1);
    assert!(
        bad[0]
            .error_details
            .as_deref()
            .unwrap_or_default()
            .contains("category_id: \"nope\"")
    );
    let good = v
        .usage_records()
        .filter(Expr::eq("usagefile.id", f.id.as_str()) & Expr::eq("status", "valid"))
        .all()
        .await
        .expect("records");
    let mut cats: Vec<String> = good.iter().filter_map(|r| r.category.clone()).collect();
    cats.sort();
    assert_eq!(cats, ["compute", "storage"]);
}

#[tokio::test]
async fn providers_decide_records_and_reprocess() {
    let sb = start().await;
    let t = qt_target(&sb);
    let (v, p) = (vendor(&sb), provider(&sb));
    let f = ready_file(&sb, &t, "decide").await;
    let records = p
        .usage_records()
        .filter(Expr::eq("usagefile.id", f.id.as_str()))
        .all()
        .await
        .expect("records");
    let e = p
        .put::<_, Value>(
            &format!("/usage/records/{}", records[0].id),
            &json!({"status": "rejected"}),
        )
        .await
        .expect_err("not while ready");
    assert_eq!(e.error_code(), Some("USG_012"));
    v.submit_usage_file(&f.id).await.expect("submitted");
    let rejected: Value = p
        .put(
            &format!("/usage/records/{}", records[0].id),
            &json!({"status": "rejected"}),
        )
        .await
        .expect("record rejected");
    assert_eq!(rejected["status"], "rejected");
    let e = v
        .put::<_, Value>(
            &format!("/usage/records/{}", records[1].id),
            &json!({"status": "approved"}),
        )
        .await
        .expect_err("vendors do not decide");
    assert_eq!(e.error_code(), Some("AUTH_002"));
    let e = p
        .put::<_, Value>(
            &format!("/usage/records/{}", records[1].id),
            &json!({"status": "closed"}),
        )
        .await
        .expect_err("only approved or rejected");
    assert_eq!(e.error_code(), Some("VAL_001"));
    p.accept_usage_file(&f.id, "").await.expect("accepted");
    let again = p.reprocess_usage_file(&f.id).await.expect("reprocessed");
    assert_eq!(again.status, S::Accepted, "reprocessing keeps the status");
    assert!(again.processed_file_uri.is_some());
}

#[tokio::test]
async fn closing_can_require_billing_ids() {
    let sb = start_with(RuntimeConfig {
        require_billing_id_to_close: true,
        ..RuntimeConfig::default()
    })
    .await;
    let t = qt_target(&sb);
    let p = provider(&sb);
    let f = pending_file(&sb, &t, "billing").await;
    p.accept_usage_file(&f.id, "").await.expect("accepted");
    let e = p
        .close_usage_file(&f.id)
        .await
        .expect_err("records lack billing ids");
    assert_eq!(e.error_code(), Some("USG_005"));
    assert!(
        e.errors()[0].starts_with("3 records have no external billing id"),
        "{e}"
    );
    assert_eq!(p.usage_file(&f.id).await.expect("read").status, S::Accepted);
}

#[tokio::test]
async fn subscriptions_assets_trailing_slashes_and_upload_status() {
    let sb = start_with(RuntimeConfig {
        upload_status: 201,
        ..RuntimeConfig::default()
    })
    .await;
    let t = qt_target(&sb);
    let v = vendor(&sb);
    let via_subscriptions: Vec<Value> = v
        .get(&format!(
            "/subscriptions/assets?eq(contract.id,{})&limit=1000",
            t.contract
        ))
        .await
        .expect("subscriptions");
    let via_assets = v
        .assets()
        .filter(Expr::eq("contract.id", t.contract.as_str()))
        .count()
        .await
        .expect("assets");
    assert_eq!(via_subscriptions.len() as u64, via_assets);
    let one: Value = v
        .get(&format!("/subscriptions/assets/{}", t.assets[0]))
        .await
        .expect("one subscription");
    assert_eq!(one["id"], t.assets[0].as_str());

    let f = v
        .create_usage_file(&new_file(&t, "slash"))
        .await
        .expect("created");
    // Older SDKs add a trailing slash and expect 201 from upload.
    let form = reqwest::multipart::Form::new().part(
        "usage_file",
        reqwest::multipart::Part::bytes(valid_workbook(&t, 1)).file_name("usage.xlsx"),
    );
    let resp = as_vendor(&sb, Method::POST, &format!("/usage/files/{}/upload/", f.id))
        .multipart(form)
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), 201);
    let resp = as_vendor(&sb, Method::POST, &format!("/usage/files/{}/submit/", f.id))
        .json(&Value::Null)
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["status"], "pending");
}

#[tokio::test]
async fn settings_and_fault_rules_are_validated() {
    let sb = start().await;
    let resp = admin_put(&sb, "config", json!({"upload_status": 204})).await;
    assert_eq!(resp.status(), 400);
    let resp = admin_put(&sb, "config", json!({"no_such_setting": 1})).await;
    assert_eq!(resp.status(), 400);
    let resp = admin_put(&sb, "config", json!({"latency_ms": 5})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(admin_get(&sb, "config").await["latency_ms"], 5);

    let resp = admin_put(
        &sb,
        "faults",
        json!([{"action": {"type": "status", "status": 200}}]),
    )
    .await;
    assert_eq!(resp.status(), 400, "200 is not a fault");
    let resp = admin_put(
        &sb,
        "faults",
        json!([{"rate": 2.0, "action": {"type": "latency", "ms": 1}}]),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let resp = admin_put(&sb, "faults", json!({"action": 1})).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error_code"], "VAL_001");
    assert!(
        admin_get(&sb, "faults")
            .await
            .as_array()
            .is_some_and(Vec::is_empty)
    );

    // A reset forgets files, events and requests but keeps settings.
    let t = qt_target(&sb);
    ready_file(&sb, &t, "before-reset").await;
    let resp = http()
        .post(format!("{}/sandbox/reset", sb.origin()))
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), 204);
    let state = admin_get(&sb, "state").await;
    assert_eq!(state["files"], json!([]));
    assert_eq!(state["events"], json!([]));
    assert_eq!(state["config"]["latency_ms"], 5);
    let again = ready_file(&sb, &t, "after-reset").await;
    assert!(
        again.id.ends_with("0000-0001"),
        "ids start over: {}",
        again.id
    );
}

#[tokio::test]
async fn records_rejected_one_by_one_do_not_block_closing() {
    let sb = start_with(RuntimeConfig {
        require_billing_id_to_close: true,
        ..RuntimeConfig::default()
    })
    .await;
    let t = qt_target(&sb);
    let p = provider(&sb);
    let f = pending_file(&sb, &t, "partly").await;
    let records = p
        .usage_records()
        .filter(Expr::eq("usagefile.id", f.id.as_str()))
        .all()
        .await
        .expect("records");
    let _: Value = p
        .put(
            &format!("/usage/records/{}", records[0].id),
            &json!({"status": "rejected"}),
        )
        .await
        .expect("rejected one");
    p.accept_usage_file(&f.id, "").await.expect("accepted");
    for r in &records[1..] {
        let _: Value = p
            .post(
                &format!("/usage/records/{}/close", r.id),
                Some(&json!({"external_billing_id": "INV-9"})),
            )
            .await
            .expect("closed");
    }
    let file = p.usage_file(&f.id).await.expect("read");
    assert_eq!(
        file.status,
        S::Closed,
        "the last approved record closed the file"
    );
    let rejected = p
        .usage_records()
        .filter(Expr::eq("usagefile.id", f.id.as_str()) & Expr::eq("status", "rejected"))
        .count()
        .await
        .expect("count");
    assert_eq!(rejected, 1);
}
