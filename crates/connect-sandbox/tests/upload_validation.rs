//! The sandbox checks every row of an uploaded workbook the way Connect's processing does, and
//! says which row and column is wrong and why.

mod common;

use calamine::Reader;
use common::*;
use connect_client::models::{UsageFileStatus as S, UsageRecord, UsageRecordStatus as R};
use connect_client::rql::Expr;

/// Uploads `bytes` into a new file and returns the file and its records by vendor row.
async fn upload(
    sb: &connect_sandbox::Sandbox,
    t: &Target,
    bytes: Vec<u8>,
) -> (connect_client::models::UsageFile, Vec<UsageRecord>) {
    let v = vendor(sb);
    let f = v
        .create_usage_file(&new_file(t, "validation"))
        .await
        .expect("created");
    let f = v
        .upload_usage_file(&f.id, "u.xlsx", bytes.into())
        .await
        .expect("uploaded");
    let records = v
        .usage_records()
        .filter(Expr::eq("usagefile.id", f.id.as_str()))
        .all()
        .await
        .expect("records");
    (f, records)
}

fn details(records: &[UsageRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.error_details.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn every_kind_of_bad_row_is_reported_with_its_reason() {
    let sb = start().await;
    let t = qt_target(&sb);
    let int = t.mpn_with("integer");
    let dec2 = t.mpn_with("decimal(2)");
    let a = t.assets[0].clone();
    let foreign = t.foreign_asset.clone().expect("asset of another contract");
    let other_product_asset = sb
        .state()
        .dataset()
        .assets
        .iter()
        .find(|x| x["product"]["id"] != t.product.as_str())
        .and_then(|x| x["id"].as_str())
        .expect("asset of another product")
        .to_owned();
    let reservation = t.reservation_mpn.clone().expect("reservation item");
    let row = |id: &str, mpn: &str, q: Cell, start: &str, end: &str, crit: &str, asset: &str| {
        vec![
            text(id),
            text("item.mpn"),
            text(mpn),
            q,
            text(start),
            text(end),
            text(crit),
            text(asset),
        ]
    };
    let (s, e) = ("2024-04-01 00:00:00", "2024-04-30 23:59:59");
    let rows = vec![
        row("ok-1", &int, num(3.0), s, e, "asset.id", &a), // 2
        row("neg", &int, num(-1.0), s, e, "asset.id", &a), // 3
        row("frac", &int, num(1.5), s, e, "asset.id", &a), // 4
        row("dec3", &dec2, num(1.234), s, e, "asset.id", &a), // 5
        row("ok-2", &dec2, num(1.25), s, e, "asset.id", &a), // 6
        row("text", &int, text("many"), s, e, "asset.id", &a), // 7
        row("noitem", "NOPE", num(1.0), s, e, "asset.id", &a), // 8
        row("resv", &reservation, num(1.0), s, e, "asset.id", &a), // 9
        row(
            "noasset",
            &int,
            num(1.0),
            s,
            e,
            "asset.id",
            "AS-0000-0000-0000",
        ), // 10
        row("otherc", &int, num(1.0), s, e, "asset.id", &foreign), // 11
        row(
            "otherp",
            &int,
            num(1.0),
            s,
            e,
            "asset.id",
            &other_product_asset,
        ), // 12
        row(
            "early",
            &int,
            num(1.0),
            "2024-03-31 23:59:59",
            e,
            "asset.id",
            &a,
        ), // 13
        row(
            "late",
            &int,
            num(1.0),
            s,
            "2024-05-01 00:00:00",
            "asset.id",
            &a,
        ), // 14
        row(
            "order",
            &int,
            num(1.0),
            "2024-04-20 00:00:00",
            "2024-04-10 00:00:00",
            "asset.id",
            &a,
        ), // 15
        row("badtime", &int, num(1.0), "yesterday", e, "asset.id", &a), // 16
        row("ok-1", &int, num(1.0), s, e, "asset.id", &a), // 17 duplicate id
        row("crit", &int, num(1.0), s, e, "asset.external_uid", "x"), // 18
        row(
            "form",
            &int,
            Cell::Formula("=1+1".into()),
            s,
            e,
            "asset.id",
            &a,
        ), // 19
        vec![
            text("noqty"),
            text("item.mpn"),
            text(&int),
            Cell::Empty,
            text(s),
            text(e),
            text("asset.id"),
            text(&a),
        ], // 20
    ];
    let (f, records) = upload(&sb, &t, workbook("records", &QT_HEADER, &rows)).await;
    assert_eq!(f.status, S::Invalid);
    assert_eq!(records.len(), rows.len(), "every row becomes a record");
    let by_row = details(&records);
    let expect = [
        (0, ""),
        (1, "row 3: quantity: -1 is negative"),
        (
            2,
            "row 4: quantity: 1.5 has more decimals than the item's precision integer allows",
        ),
        (
            3,
            "row 5: quantity: 1.234 has more decimals than the item's precision decimal(2) allows",
        ),
        (4, ""),
        (5, "row 7: quantity: \"many\" is not a number"),
        (6, "row 8: item_search_value: no item of product"),
        (7, "is a reservation item"),
        (
            8,
            "row 10: asset_search_value: no asset AS-0000-0000-0000 of product",
        ),
        (9, "not to the file's contract"),
        (10, "row 12: asset_search_value: no asset"),
        (
            11,
            "row 13: start_time_utc: 2024-03-31 23:59:59 is outside the file's period 2024-04-01 to 2024-04-30",
        ),
        (
            12,
            "row 14: end_time_utc: 2024-05-01 00:00:00 is outside the file's period",
        ),
        (13, "row 15: end_time_utc: is before start_time_utc"),
        (14, "row 16: start_time_utc: \"yesterday\" is not a time"),
        (15, "row 17: record_id: \"ok-1\" is already used in row 2"),
        (
            16,
            "row 18: asset_search_criteria: \"asset.external_uid\" is not supported",
        ),
        (17, "row 19: quantity: formulas are not allowed (=1+1)"),
        (18, "row 20: quantity: is required"),
    ];
    for (i, want) in expect {
        let r = &records[i];
        if want.is_empty() {
            assert_eq!(
                r.status,
                Some(R::Valid),
                "row {}: {:?}",
                i + 2,
                r.error_details
            );
        } else {
            assert_eq!(r.status, Some(R::Invalid), "row {}", i + 2);
            assert!(
                by_row[i].contains(want),
                "row {}: {:?} should contain {want:?}",
                i + 2,
                by_row[i]
            );
            assert!(!r.error_codes.is_empty());
        }
    }
    assert_eq!(
        f.records.as_ref().map(|r| (r.valid, r.invalid)),
        Some((2, 17))
    );
    let detail = f.error_detail.unwrap_or_default();
    assert!(
        detail.starts_with("17 of 19 records are invalid. First: row 3"),
        "{detail}"
    );
    assert!(detail.chars().count() <= 200);
}

#[tokio::test]
async fn workbook_level_problems_make_the_file_invalid_without_records() {
    let sb = start().await;
    let t = qt_target(&sb);
    let row = qt_row("a", &t.mpn_with("integer"), 1.0, &t.assets[0]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            workbook("data", &QT_HEADER, std::slice::from_ref(&row)),
            "no sheet named \"records\"",
        ),
        (
            workbook("records", &QT_HEADER[..7], &[row[..7].to_vec()]),
            "missing required column(s): asset_search_value",
        ),
        (workbook("records", &QT_HEADER, &[]), "has no usage records"),
    ];
    for (bytes, want) in cases {
        let (f, records) = upload(&sb, &t, bytes).await;
        assert_eq!(f.status, S::Invalid);
        assert!(
            f.error_detail.as_deref().unwrap_or_default().contains(want),
            "{:?} / {want}",
            f.error_detail
        );
        assert!(records.is_empty());
    }
}

#[tokio::test]
async fn columns_are_read_by_name_in_any_order_and_older_names_work() {
    let sb = start().await;
    let t = qt_target(&sb);
    let a = &t.assets[1];
    let param_value = sb
        .state()
        .dataset()
        .assets
        .iter()
        .find(|x| x["id"] == a.as_str())
        .and_then(|x| x["params"][0]["value"].as_str())
        .expect("tenant param")
        .to_owned();
    // Reversed columns, the 2019 header name, the older sheet name, a note, a custom field,
    // a date-only time and an asset found by parameter.
    let header = [
        "asset_search_value",
        "asset_search_criteria",
        "end_time_utc",
        "start_time_utc",
        "quantity",
        "item_search_value",
        "item_search_criteria",
        "record_note",
        "usage_record_id",
        "v.cost_center",
    ];
    let rows = vec![
        vec![
            text(a),
            text("asset.id"),
            text("2024-04-30 23:59:59"),
            text("2024-04-01"),
            num(2.0),
            text(&t.mpn_with("integer")),
            text("item.mpn"),
            text("=not a formula"),
            text("r-1"),
            text("cc-7"),
        ],
        vec![
            text(&param_value),
            text("parameter.tenant_id"),
            text("2024-04-30 9:00:00"),
            text("2024-04-02T08:00:00"),
            text("0.25"),
            text(&t.mpn_with("decimal(2)")),
            text("item.mpn"),
            Cell::Empty,
            num(42.0),
            Cell::Empty,
        ],
    ];
    let (f, records) = upload(&sb, &t, workbook("usage_records", &header, &rows)).await;
    assert_eq!(f.status, S::Ready, "{:?}", f.error_detail);
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].usage, Some(2.0));
    assert_eq!(records[1].usage, Some(0.25));
    assert_eq!(
        records[1].asset.as_ref().map(|x| x.id.as_str()),
        Some(a.as_str())
    );
    assert_eq!(
        records[0].start_date.map(|d| d.to_rfc3339()).as_deref(),
        Some("2024-04-01T00:00:00+00:00")
    );
    let dump = dumped_file(&sb, &f.id).await;
    let list = dump["record_list"].as_array().expect("records");
    assert_eq!(list[0]["record_id"], "r-1");
    assert_eq!(list[0]["record_note"], "=not a formula");
    assert_eq!(list[1]["record_id"], "42");
    assert_eq!(list[0]["params"][0]["parameter_name"], "v.cost_center");
}

#[tokio::test]
async fn processed_workbook_marks_the_bad_cells() {
    let sb = start().await;
    let t = qt_target(&sb);
    let rows = vec![
        qt_row("good", &t.mpn_with("integer"), 1.0, &t.assets[0]),
        qt_row("bad", &t.mpn_with("integer"), -2.0, &t.assets[0]),
    ];
    let (f, _) = upload(&sb, &t, workbook("records", &QT_HEADER, &rows)).await;
    let v = vendor(&sb);
    let detail = v.usage_file(&f.id).await.expect("detail");
    let link = detail.processed_file_uri.expect("processed link");
    let mut book = open_xlsx(download(&link).await);
    let range = book.worksheet_range("records").expect("records");
    let errors_col = QT_HEADER.len() as u32;
    assert_eq!(
        range
            .get_value((0, errors_col))
            .map(|c| c.to_string())
            .as_deref(),
        Some("errors")
    );
    let first = range
        .get_value((1, errors_col))
        .map(|c| c.to_string())
        .unwrap_or_default();
    assert_eq!(first, "", "a good row has no error");
    let err = range
        .get_value((2, errors_col))
        .map(|c| c.to_string())
        .unwrap_or_default();
    assert_eq!(err, "row 3: quantity: -2 is negative");
    // The uploaded workbook is served as uploaded.
    let original = download(&detail.usage_file_uri.expect("usage link")).await;
    assert_eq!(original, workbook("records", &QT_HEADER, &rows));
}

/// The `invalid_upload` fault: a valid workbook's processing ends invalid with the rule's
/// detail, as often as the rule says, and the next upload is processed as usual.
#[tokio::test]
async fn an_invalid_upload_fault_makes_a_valid_upload_invalid() {
    let sb = start().await;
    let t = qt_target(&sb);
    let r = admin_put(
        &sb,
        "faults",
        serde_json::json!([{"method": "POST", "path": "/usage/files/", "count": 1,
            "action": {"type": "invalid_upload", "detail": "Prices of March are not agreed yet."}}]),
    )
    .await;
    assert!(r.status().is_success(), "rule taken");
    let (f, records) = upload(&sb, &t, valid_workbook(&t, 3)).await;
    assert_eq!(f.status, S::Invalid);
    assert_eq!(
        f.error_detail.as_deref(),
        Some("Prices of March are not agreed yet.")
    );
    assert_eq!(records.len(), 3, "the rows are still read");
    let again = vendor(&sb)
        .upload_usage_file(&f.id, "u.xlsx", valid_workbook(&t, 3).into())
        .await
        .expect("uploaded");
    assert_eq!(again.status, S::Ready, "the rule fired once");
    let empty = admin_put(
        &sb,
        "faults",
        serde_json::json!([{"action": {"type": "invalid_upload", "detail": " "}}]),
    )
    .await;
    assert_eq!(empty.status(), 400, "a rule without a detail is refused");
}
