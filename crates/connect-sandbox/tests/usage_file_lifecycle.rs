//! The client drives usage files through every transition of Connect's state machine against
//! the sandbox, and every illegal action is refused with its stable code.

mod common;

use std::time::Duration;

use common::*;
use connect_client::models::{CloseRecord, UsageFileStatus as S, UsageRecordStatus as R};
use connect_client::rql::Expr;
use connect_client::{ApiKey, ConnectClient, ConnectError};
use connect_sandbox::RuntimeConfig;

fn code(e: &ConnectError) -> (Option<u16>, Option<&str>) {
    (e.status(), e.error_code())
}

#[tokio::test]
async fn happy_path_create_upload_submit_accept_close() {
    let sb = start().await;
    let t = qt_target(&sb);
    let v = vendor(&sb);
    let p = provider(&sb);

    let created = v
        .create_usage_file(&new_file(&t, "ext-happy"))
        .await
        .expect("created");
    assert_eq!(created.status, S::Draft);
    assert!(created.id.starts_with("UF-"), "{}", created.id);
    assert_eq!(created.schema.as_deref(), Some("qt"));
    assert_eq!(created.external_id.as_deref(), Some("ext-happy"));
    assert_eq!(
        created.contract.as_ref().map(|c| c.id.as_str()),
        Some(t.contract.as_str())
    );
    assert!(
        created.currency.is_some(),
        "currency comes from the marketplace"
    );
    assert_eq!(created.period, Some(april_2024()));

    let uploaded = v
        .upload_usage_file(&created.id, "april.xlsx", valid_workbook(&t, 5).into())
        .await
        .expect("uploaded");
    assert_eq!(uploaded.status, S::Ready);
    assert_eq!(
        uploaded.records.as_ref().map(|r| (r.valid, r.invalid)),
        Some((5, 0))
    );
    assert!(uploaded.usage_file_uri.is_some());
    assert!(uploaded.processed_file_uri.is_some());

    let submitted = v.submit_usage_file(&created.id).await.expect("submitted");
    assert_eq!(submitted.status, S::Pending);

    let accepted = p
        .accept_usage_file(&created.id, "looks right")
        .await
        .expect("accepted");
    assert_eq!(accepted.status, S::Accepted);
    assert_eq!(accepted.acceptance_note.as_deref(), Some("looks right"));
    let approved = p
        .usage_records()
        .filter(Expr::eq("usagefile.id", created.id.as_str()) & Expr::eq("status", "approved"))
        .count()
        .await
        .expect("count");
    assert_eq!(approved, 5);

    let closed = p.close_usage_file(&created.id).await.expect("closed");
    assert_eq!(closed.status, S::Closed);

    // The vendor sees the same final state, and the event log has every step in order.
    assert_eq!(
        v.usage_file(&created.id).await.expect("read").status,
        S::Closed
    );
    let dump = dumped_file(&sb, &created.id).await;
    assert!(
        dump["record_list"]
            .as_array()
            .is_some_and(|r| r.len() == 5 && r.iter().all(|r| r["status"] == "closed"))
    );
    let state = admin_get(&sb, "state").await;
    let steps: Vec<String> = state["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["object_id"] == created.id.as_str())
        .map(|e| e["to"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        steps,
        [
            "draft",
            "uploading",
            "processing",
            "ready",
            "pending",
            "accepted",
            "closed"
        ]
    );
}

#[tokio::test]
async fn rejected_file_is_fixed_reuploaded_and_accepted() {
    let sb = start().await;
    let t = qt_target(&sb);
    let (v, p) = (vendor(&sb), provider(&sb));
    let f = pending_file(&sb, &t, "ext-reject").await;
    let rejected = p
        .reject_usage_file(&f.id, "quantities too high for AS-1")
        .await
        .expect("rejected");
    assert_eq!(rejected.status, S::Rejected);
    assert_eq!(
        rejected.rejection_note.as_deref(),
        Some("quantities too high for AS-1")
    );
    let rejected_records = v
        .usage_records()
        .filter(Expr::eq("usagefile.id", f.id.as_str()) & Expr::eq("status", "rejected"))
        .count()
        .await
        .expect("count");
    assert_eq!(rejected_records, 3);

    // Re-upload replaces the records.
    let again = v
        .upload_usage_file(&f.id, "fixed.xlsx", valid_workbook(&t, 2).into())
        .await
        .expect("re-uploaded");
    assert_eq!(again.status, S::Ready);
    let records = v
        .usage_records()
        .filter(Expr::eq("usagefile.id", f.id.as_str()))
        .all()
        .await
        .expect("records");
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.status == Some(R::Valid)));
    v.submit_usage_file(&f.id).await.expect("submitted again");
    let accepted = p.accept_usage_file(&f.id, "").await.expect("accepted");
    assert_eq!(accepted.status, S::Accepted);
    assert_eq!(dumped_file(&sb, &f.id).await["uploads"], 2);
}

#[tokio::test]
async fn invalid_upload_then_valid_reupload_and_ready_reupload() {
    let sb = start().await;
    let t = qt_target(&sb);
    let v = vendor(&sb);
    let f = v
        .create_usage_file(&new_file(&t, "ext-invalid"))
        .await
        .expect("created");
    let bad = workbook(
        "records",
        &QT_HEADER,
        &[
            qt_row("r1", &t.mpn_with("integer"), 1.0, &t.assets[0]),
            qt_row("r2", &t.mpn_with("integer"), -4.0, &t.assets[0]),
        ],
    );
    let invalid = v
        .upload_usage_file(&f.id, "bad.xlsx", bad.into())
        .await
        .expect("uploaded");
    assert_eq!(invalid.status, S::Invalid);
    let detail = invalid.error_detail.clone().unwrap_or_default();
    assert!(detail.contains("1 of 2 records are invalid"), "{detail}");
    assert!(
        detail.contains("row 3: quantity: -4 is negative"),
        "{detail}"
    );
    assert_eq!(
        invalid.records.as_ref().map(|r| (r.valid, r.invalid)),
        Some((1, 1))
    );

    let fixed = v
        .upload_usage_file(&f.id, "good.xlsx", valid_workbook(&t, 4).into())
        .await
        .expect("uploaded");
    assert_eq!(fixed.status, S::Ready);
    assert_eq!(fixed.error_detail, None);
    let ready_again = v
        .upload_usage_file(&f.id, "good2.xlsx", valid_workbook(&t, 6).into())
        .await
        .expect("uploaded from ready");
    assert_eq!(ready_again.status, S::Ready);
    assert_eq!(ready_again.records.as_ref().map(|r| r.valid), Some(6));
}

#[tokio::test]
async fn delete_from_draft_invalid_and_ready() {
    let sb = start().await;
    let t = qt_target(&sb);
    let v = vendor(&sb);

    let draft = v
        .create_usage_file(&new_file(&t, "d1"))
        .await
        .expect("created");
    assert_eq!(
        v.delete_usage_file(&draft.id)
            .await
            .expect("deleted")
            .status,
        S::Deleted
    );

    let invalid = v
        .create_usage_file(&new_file(&t, "d2"))
        .await
        .expect("created");
    let bad = workbook(
        "records",
        &QT_HEADER,
        &[qt_row("x", "NO-SUCH-MPN", 1.0, &t.assets[0])],
    );
    let up = v
        .upload_usage_file(&invalid.id, "b.xlsx", bad.into())
        .await
        .expect("uploaded");
    assert_eq!(up.status, S::Invalid);
    assert_eq!(
        v.delete_usage_file(&invalid.id)
            .await
            .expect("deleted")
            .status,
        S::Deleted
    );

    let ready = ready_file(&sb, &t, "d3").await;
    assert_eq!(
        v.delete_usage_file(&ready.id)
            .await
            .expect("deleted")
            .status,
        S::Deleted
    );

    // Deleted files stay listed (filterable), unless the sandbox is told to hide them.
    let deleted = v
        .usage_files()
        .filter(Expr::eq("status", "deleted"))
        .count()
        .await
        .expect("count");
    assert_eq!(deleted, 3);
    admin_put(&sb, "config", serde_json::json!({"hide_deleted": true})).await;
    assert_eq!(v.usage_files().count().await.expect("count"), 0);
}

#[tokio::test]
async fn approve_all_and_record_closing_close_the_file() {
    let sb = start().await;
    let t = qt_target(&sb);
    let (v, p) = (vendor(&sb), provider(&sb));
    let f = pending_file(&sb, &t, "ext-records").await;
    let approved: serde_json::Value = p
        .put(
            &format!("/usage/files/{}/approve-all", f.id),
            &serde_json::json!({}),
        )
        .await
        .expect("approve-all");
    assert_eq!(approved["status"], "accepted");

    let records = p
        .usage_records()
        .filter(Expr::eq("usagefile.id", f.id.as_str()))
        .all()
        .await
        .expect("records");
    assert_eq!(records.len(), 3);
    // One alone, then the rest in bulk (206 with a result per record).
    let one: serde_json::Value = p
        .post(
            &format!("/usage/records/{}/close", records[0].id),
            Some(&serde_json::json!({"external_billing_id": "INV-1", "external_billing_note": "billed"})),
        )
        .await
        .expect("closed one");
    assert_eq!(one["status"], "closed");
    assert_eq!(p.usage_file(&f.id).await.expect("read").status, S::Accepted);
    let bulk: Vec<CloseRecord> = records[1..]
        .iter()
        .map(|r| CloseRecord {
            id: r.id.clone(),
            external_billing_id: Some("INV-2".into()),
            external_billing_note: None,
        })
        .chain([CloseRecord {
            id: "UR-NOPE".into(),
            external_billing_id: Some("x".into()),
            external_billing_note: None,
        }])
        .collect();
    let results = p.close_usage_records(&bulk).await.expect("bulk close");
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].status.as_deref(), Some("closed"));
    assert_eq!(results[2].status.as_deref(), Some("error"));
    assert_eq!(p.usage_file(&f.id).await.expect("read").status, S::Closed);
    let closed = v
        .usage_records()
        .filter(Expr::eq("usagefile.id", f.id.as_str()) & Expr::eq("status", "closed"))
        .all()
        .await
        .expect("records");
    assert_eq!(closed.len(), 3);
    assert!(closed.iter().all(|r| r.external_billing_id.is_some()));
}

/// Every action in every status where it is not allowed answers 400 with its code.
#[tokio::test]
async fn illegal_transitions_are_refused_with_stable_codes() {
    let sb = start().await;
    let t = qt_target(&sb);
    let (v, p) = (vendor(&sb), provider(&sb));

    // One file per status.
    let draft = v
        .create_usage_file(&new_file(&t, "s-draft"))
        .await
        .expect("created")
        .id;
    let ready = ready_file(&sb, &t, "s-ready").await.id;
    let pending = ready_file(&sb, &t, "s-pending").await.id;
    v.submit_usage_file(&pending).await.expect("submitted");
    let accepted = ready_file(&sb, &t, "s-accepted").await.id;
    v.submit_usage_file(&accepted).await.expect("submitted");
    p.accept_usage_file(&accepted, "").await.expect("accepted");
    let rejected = ready_file(&sb, &t, "s-rejected").await.id;
    v.submit_usage_file(&rejected).await.expect("submitted");
    p.reject_usage_file(&rejected, "no")
        .await
        .expect("rejected");
    let closed = ready_file(&sb, &t, "s-closed").await.id;
    v.submit_usage_file(&closed).await.expect("submitted");
    p.accept_usage_file(&closed, "").await.expect("accepted");
    p.close_usage_file(&closed).await.expect("closed");
    let deleted = v
        .create_usage_file(&new_file(&t, "s-deleted"))
        .await
        .expect("created")
        .id;
    v.delete_usage_file(&deleted).await.expect("deleted");
    let invalid = v
        .create_usage_file(&new_file(&t, "s-invalid"))
        .await
        .expect("created")
        .id;
    let bad = workbook(
        "records",
        &QT_HEADER,
        &[qt_row("x", "NO-SUCH", 1.0, &t.assets[0])],
    );
    v.upload_usage_file(&invalid, "bad.xlsx", bad.into())
        .await
        .expect("uploaded");

    // (action, statuses where it is legal, code when it is not)
    let rules: [(&str, &[&str], &str); 7] = [
        (
            "upload",
            &["draft", "invalid", "ready", "rejected"],
            "USG_001",
        ),
        ("submit", &["ready"], "USG_002"),
        ("accept", &["pending"], "USG_003"),
        ("reject", &["pending"], "USG_004"),
        ("close", &["accepted"], "USG_005"),
        ("delete", &["draft", "invalid", "ready"], "USG_006"),
        ("reprocess", &["accepted", "closed"], "USG_007"),
    ];
    let mut refused = 0;
    for (status, id) in [
        ("draft", &draft),
        ("invalid", &invalid),
        ("ready", &ready),
        ("pending", &pending),
        ("accepted", &accepted),
        ("rejected", &rejected),
        ("closed", &closed),
        ("deleted", &deleted),
    ] {
        for (action, legal, want) in rules {
            if legal.contains(&status) {
                continue;
            }
            let result = match action {
                "upload" => v
                    .upload_usage_file(id, "u.xlsx", valid_workbook(&t, 1).into())
                    .await
                    .map(|_| ()),
                "submit" => v.submit_usage_file(id).await.map(|_| ()),
                "accept" => p.accept_usage_file(id, "").await.map(|_| ()),
                "reject" => p.reject_usage_file(id, "n").await.map(|_| ()),
                "close" => p.close_usage_file(id).await.map(|_| ()),
                "delete" => v.delete_usage_file(id).await.map(|_| ()),
                _ => p.reprocess_usage_file(id).await.map(|_| ()),
            };
            let e = result.expect_err(&format!("{action} in {status} must fail"));
            assert_eq!(
                code(&e),
                (Some(400), Some(want)),
                "{action} in {status}: {e}"
            );
            assert!(e.errors()[0].contains(status), "{action} in {status}: {e}");
            refused += 1;
        }
        // Nothing refused changed the file.
        assert_eq!(
            v.usage_file(id).await.expect("read").status.as_str(),
            status
        );
    }
    // 8 statuses x 7 actions, less the 13 legal pairs.
    assert_eq!(refused, 43);
}

#[tokio::test]
async fn actors_may_only_do_their_part() {
    let sb = start().await;
    let t = qt_target(&sb);
    let (v, p) = (vendor(&sb), provider(&sb));
    let e = p
        .create_usage_file(&new_file(&t, "p"))
        .await
        .expect_err("provider cannot create");
    assert_eq!(code(&e), (Some(403), Some("AUTH_002")));

    let f = ready_file(&sb, &t, "actors").await;
    let e = p
        .submit_usage_file(&f.id)
        .await
        .expect_err("provider cannot submit");
    assert_eq!(code(&e), (Some(403), Some("AUTH_002")));
    let e = p
        .upload_usage_file(&f.id, "x.xlsx", valid_workbook(&t, 1).into())
        .await
        .expect_err("provider cannot upload");
    assert_eq!(code(&e), (Some(403), Some("AUTH_002")));
    let e = p
        .delete_usage_file(&f.id)
        .await
        .expect_err("provider cannot delete");
    assert_eq!(code(&e), (Some(403), Some("AUTH_002")));
    v.submit_usage_file(&f.id).await.expect("submitted");
    for result in [
        v.accept_usage_file(&f.id, "").await,
        v.reject_usage_file(&f.id, "x").await,
        v.close_usage_file(&f.id).await,
    ] {
        let e = result.expect_err("vendor cannot accept, reject or close");
        assert_eq!(code(&e), (Some(403), Some("AUTH_002")), "{e}");
    }
    // Another provider does not see this contract's files at all.
    let apac = client(&sb, sb.key("provider-apac").expect("second provider key"));
    let e = apac.usage_file(&f.id).await.expect_err("not visible");
    assert_eq!(code(&e), (Some(404), Some("GEN_404")));
    assert_eq!(apac.usage_files().count().await.expect("count"), 0);
    assert_eq!(p.usage_files().count().await.expect("count"), 1);
    // Unknown and missing keys.
    let nobody =
        ConnectClient::new(sb.api_url(), ApiKey::new("SU-000:nope").expect("key")).expect("client");
    let e = nobody.usage_files().count().await.expect_err("unknown key");
    assert_eq!(code(&e), (Some(401), Some("AUTH_001")));
    assert_eq!(e.errors(), ["API request is unauthorized."]);
}

#[tokio::test]
async fn create_is_validated() {
    let sb = start().await;
    let t = qt_target(&sb);
    let v = vendor(&sb);
    let e: ConnectError = v
        .post::<_, serde_json::Value>(
            "/usage/files",
            Some(&serde_json::json!({"description": "x"})),
        )
        .await
        .expect_err("missing fields");
    assert_eq!(code(&e), (Some(400), Some("VAL_001")));
    assert_eq!(
        e.errors(),
        [
            "product.id: This field is required.",
            "contract.id: This field is required."
        ]
    );
    assert!(!e.outcome_unknown(), "a 400 is a known outcome");
    let e: ConnectError = v
        .post::<_, serde_json::Value>(
            "/usage/files",
            Some(
                &serde_json::json!({"product": {"id": t.product}, "contract": {"id": t.contract},
                                      "period": {"from": "2024-04-31", "to": "2024-04-30"}}),
            ),
        )
        .await
        .expect_err("bad date");
    assert_eq!(
        e.errors(),
        ["period.from: \"2024-04-31\" is not a date in the format YYYY-MM-DD."]
    );
    let files = admin_get(&sb, "state").await;
    assert_eq!(files["files"].as_array().map(Vec::len), Some(0));
    // Name and period are optional on Connect (the spec requires neither).
    let bare: serde_json::Value = v
        .post(
            "/usage/files",
            Some(
                &serde_json::json!({"product": {"id": t.product}, "contract": {"id": t.contract}}),
            ),
        )
        .await
        .expect("created without name and period");
    assert_eq!(
        (bare["status"].as_str(), &bare["period"], &bare["name"]),
        (
            Some("draft"),
            &serde_json::Value::Null,
            &serde_json::Value::Null
        )
    );
    let bare_id = bare["id"].as_str().expect("id").to_owned();
    let up = v
        .upload_usage_file(&bare_id, "u.xlsx", valid_workbook(&t, 2).into())
        .await
        .expect("uploaded");
    assert_eq!(
        up.status,
        S::Ready,
        "no period, no period check: {:?}",
        up.error_detail
    );

    let d = sb.state().dataset();
    let terminated = d
        .contracts
        .iter()
        .find(|c| c["status"] == "terminated")
        .and_then(|c| c["id"].as_str())
        .expect("terminated contract");
    let no_ppu = d
        .products
        .iter()
        .find(|p| p["capabilities"]["ppu"].is_null())
        .and_then(|p| p["id"].as_str())
        .expect("product without PPU");
    let mut nf = new_file(&t, "x");
    nf.contract.id = terminated.into();
    nf.product.id = no_ppu.into();
    let e = v.create_usage_file(&nf).await.expect_err("refused");
    assert!(
        e.errors().iter().any(|m| m.contains("not active")),
        "{:?}",
        e.errors()
    );
    assert!(
        e.errors().iter().any(|m| m.contains("pay-as-you-go")),
        "{:?}",
        e.errors()
    );
    let files = admin_get(&sb, "state").await;
    assert_eq!(
        files["files"].as_array().map(Vec::len),
        Some(1),
        "only the bare one"
    );
}

#[tokio::test]
async fn asynchronous_processing_must_be_polled() {
    let sb = start_with(RuntimeConfig {
        processing_delay_ms: 400,
        ..RuntimeConfig::default()
    })
    .await;
    let t = qt_target(&sb);
    let v = vendor(&sb);
    let f = v
        .create_usage_file(&new_file(&t, "async"))
        .await
        .expect("created");
    let up = v
        .upload_usage_file(&f.id, "u.xlsx", valid_workbook(&t, 2).into())
        .await
        .expect("uploaded");
    assert_eq!(up.status, S::Uploading);
    let e = v.submit_usage_file(&f.id).await.expect_err("not ready yet");
    assert_eq!(e.error_code(), Some("USG_002"));
    let e = v
        .upload_usage_file(&f.id, "again.xlsx", valid_workbook(&t, 2).into())
        .await
        .expect_err("no upload while uploading");
    assert_eq!(e.error_code(), Some("USG_001"));
    let mut seen = vec![up.status.clone()];
    for _ in 0..100 {
        let s = v.usage_file(&f.id).await.expect("read").status;
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if s == S::Ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, [S::Uploading, S::Processing, S::Ready]);
    v.submit_usage_file(&f.id)
        .await
        .expect("submitted once ready");
}

#[tokio::test]
async fn upload_needs_an_xlsx_in_usage_file() {
    let sb = start().await;
    let t = qt_target(&sb);
    let v = vendor(&sb);
    let f = v
        .create_usage_file(&new_file(&t, "up"))
        .await
        .expect("created");
    let e = v
        .upload_usage_file(&f.id, "notes.txt", bytes::Bytes::from_static(b"hello"))
        .await
        .expect_err("not xlsx");
    assert_eq!(code(&e), (Some(400), Some("USG_011")));
    let resp = as_vendor(
        &sb,
        reqwest::Method::POST,
        &format!("/usage/files/{}/upload", f.id),
    )
    .multipart(reqwest::multipart::Form::new().text("other", "x"))
    .send()
    .await
    .expect("answers");
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error_code"], "USG_010");
    assert_eq!(v.usage_file(&f.id).await.expect("read").status, S::Draft);
}

#[tokio::test]
async fn template_link_serves_the_qt_columns_without_a_key() {
    let sb = start().await;
    let t = qt_target(&sb);
    let v = vendor(&sb);
    let template = v.usage_template(&t.product).await.expect("template");
    use calamine::Reader;
    let mut book = open_xlsx(download(&template.template_link).await);
    assert_eq!(book.sheet_names(), ["records", "categories"]);
    let range = book.worksheet_range("records").expect("records");
    let header: Vec<String> = range
        .rows()
        .next()
        .expect("header")
        .iter()
        .map(|c| c.to_string())
        .collect();
    for col in QT_HEADER {
        assert!(header.iter().any(|h| h == col), "{col} in {header:?}");
    }
}
