//! The Parquet usage source on files from other writers (pyarrow, DuckDB: see
//! tests/fixtures/parquet/make_fixtures.py) and from the sandbox's own Parquet export, read
//! through `USAGE_SOURCE` as a vendor configures it.

use std::path::{Path, PathBuf};

use connect_sandbox::Dataset;
use connect_sandbox::usage_universe::UsageUniverse;
use connect_usage::usage::export::{self, write_jsonl};
use connect_usage::usage::export::{write_parquet, write_parquet_grouped};
use connect_usage::usage::{Month, Rejection, SourceError, SourceItem, SourceSpec, VendorRecord};
use futures_util::TryStreamExt;

const AS1: &str = "AS-6703-9708-8191";
const AS2: &str = "AS-0329-0150-2680";
const AS3: &str = "AS-0277-9233-1500";

fn april() -> Month {
    "2024-04".parse().expect("period")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parquet")
        .join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cu-parquet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir.join(name)
}

async fn read(path: &Path) -> Result<Vec<SourceItem>, SourceError> {
    let spec = SourceSpec::parse(&path.to_string_lossy(), |_| None)?;
    let batches: Vec<Vec<SourceItem>> = spec.open()?.records(april()).try_collect().await?;
    Ok(batches.into_iter().flatten().collect())
}

async fn read_fixture(name: &str) -> Vec<SourceItem> {
    read(&fixture(name)).await.expect(name)
}

fn record(item: &SourceItem) -> &VendorRecord {
    match item {
        SourceItem::Record(r) => r,
        SourceItem::Rejected(r) => panic!("record expected, got {r}"),
    }
}

fn rejection(item: &SourceItem) -> &Rejection {
    match item {
        SourceItem::Rejected(r) => r,
        SourceItem::Record(r) => panic!("rejection expected, got {r:?}"),
    }
}

fn utc(text: &str) -> chrono::DateTime<chrono::Utc> {
    text.parse().expect("time")
}

/// `(subscription, mpn, quantity, start, end, record_id)` of a record.
fn summary(r: &VendorRecord) -> (&str, &str, &str, String, String, Option<&str>) {
    (
        r.subscription.as_str(),
        r.item_mpn.as_str(),
        r.quantity.as_str(),
        r.start.to_rfc3339(),
        r.end.to_rfc3339(),
        r.record_id.as_deref(),
    )
}

#[tokio::test]
async fn dictionary_encoded_strings_and_decimals() {
    let items = read_fixture("dictionary.parquet").await;
    assert_eq!(items.len(), 4);
    let r: Vec<&VendorRecord> = items.iter().map(record).collect();
    assert_eq!(
        summary(r[0]),
        (
            AS1,
            "STOR-GBH",
            "12.5",
            "2024-04-01T00:00:00+00:00".into(),
            "2024-04-01T23:59:00+00:00".into(),
            Some("d-1")
        )
    );
    assert_eq!(
        (r[1].subscription.as_str(), r[1].item_mpn.as_str()),
        (AS2, "STOR-GBH")
    );
    assert_eq!(r[1].quantity.as_str(), "0.0001");
    assert_eq!(
        (r[2].item_mpn.as_str(), r[2].quantity.as_str()),
        ("EGRESS-GB", "-3.25")
    );
    assert_eq!(
        (r[3].subscription.as_str(), r[3].item_mpn.as_str()),
        (AS3, "API-REQ")
    );
    assert_eq!(r[3].quantity.as_str(), "7");
    let notes: Vec<Option<&str>> = r.iter().map(|r| r.note.as_deref()).collect();
    assert_eq!(
        notes,
        [Some("first"), None, Some("=SUM(A1)"), Some(" spaced ")]
    );
    let categories: Vec<Option<&str>> = r.iter().map(|r| r.category.as_deref()).collect();
    assert_eq!(
        categories,
        [Some("storage"), None, Some("network"), Some("api")]
    );
    let ordinals: Vec<u64> = r.iter().map(|r| r.position.ordinal).collect();
    assert_eq!(ordinals, [1, 2, 3, 4]);
    assert!(r.iter().all(|r| r.position.line.is_none()));
}

#[tokio::test]
async fn row_groups_are_read_in_order_with_ordinals_across_them() {
    let items = read_fixture("row_groups.parquet").await;
    assert_eq!(items.len(), 50);
    for (i, item) in items.iter().enumerate() {
        let r = record(item);
        assert_eq!(r.position.ordinal, i as u64 + 1);
        assert_eq!(
            r.record_id.as_deref(),
            Some(format!("rg-{:03}", i + 1).as_str())
        );
        assert_eq!(r.quantity.as_str(), (i + 1).to_string());
        assert_eq!(r.subscription, [AS1, AS2, AS3][i % 3]);
    }
    // A timestamp without a zone is read as UTC.
    let r = record(&items[9]);
    assert_eq!(
        (r.start, r.end),
        (utc("2024-04-10T09:00:00Z"), utc("2024-04-10T09:30:00Z"))
    );
}

#[tokio::test]
async fn nulls_reject_records_naming_the_required_column() {
    let items = read_fixture("nulls.parquet").await;
    assert_eq!(items.len(), 5);
    let first = record(&items[0]);
    assert_eq!(first.quantity.as_str(), "1.5");
    assert_eq!(
        (first.note.as_deref(), first.category.as_deref()),
        (None, None)
    );
    let reasons: Vec<(u64, Option<&str>, &str)> = items[1..]
        .iter()
        .map(rejection)
        .map(|r| {
            (
                r.position.ordinal,
                r.record_id.as_deref(),
                r.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            (2, None, "subscription_id: is required"),
            (
                3,
                Some("n-3"),
                "item_mpn: is required; quantity: is required"
            ),
            (4, Some("n-4"), "start_time: is required"),
            (
                5,
                Some("n-5"),
                "quantity: is required; end_time: is required"
            ),
        ]
    );
}

#[tokio::test]
async fn float_quantities_are_their_shortest_decimal_and_nan_is_refused() {
    let items = read_fixture("double_quantity.parquet").await;
    let quantities: Vec<&str> = items[..4]
        .iter()
        .map(|i| record(i).quantity.as_str())
        .collect();
    assert_eq!(quantities, ["0.1", "2.5", "0.0000001", "123456.789"]);
    assert_eq!(rejection(&items[4]).reason, "quantity: NaN is not a number");
    assert_eq!(rejection(&items[5]).reason, "quantity: inf is not a number");
    assert_eq!(record(&items[6]).quantity.as_str(), "3");
    // Float32: 0.1f32 is "0.1", not 0.100000001490116.
    let items = read_fixture("string_kinds.parquet").await;
    assert_eq!(record(&items[0]).quantity.as_str(), "0.1");
    assert_eq!(record(&items[1]).quantity.as_str(), "2.75");
}

#[tokio::test]
async fn text_quantities_and_text_times_are_read_by_the_common_rules() {
    let items = read_fixture("string_quantity.parquet").await;
    assert_eq!(items.len(), 4);
    let r = record(&items[0]);
    assert_eq!(
        summary(r),
        (
            AS1,
            "STOR-GBH",
            "12.5",
            "2024-04-01T10:00:00+00:00".into(),
            "2024-04-01T11:00:00+00:00".into(),
            Some("s-1")
        )
    );
    let bad = rejection(&items[1]);
    assert_eq!(bad.record_id.as_deref(), Some("s-2"));
    assert_eq!(bad.reason, "quantity: \"lots\" is not a number");
    let r = record(&items[2]);
    assert_eq!(r.quantity.as_str(), "1000");
    assert_eq!(
        (r.start, r.end),
        (utc("2024-04-03T00:00:00Z"), utc("2024-04-04T00:00:00Z"))
    );
    let bad = rejection(&items[3]);
    assert_eq!(
        bad.reason,
        "start_time: \"yesterday\" is not a UTC time (YYYY-MM-DDTHH:MM:SSZ)"
    );
}

#[tokio::test]
async fn timestamps_of_every_unit_and_zone_are_the_same_instant() {
    for name in [
        "times_s.parquet",
        "times_ms.parquet",
        "times_us.parquet",
        "times_ns.parquet",
        "times_int96.parquet",
    ] {
        let items = read_fixture(name).await;
        assert_eq!(items.len(), 1, "{name}");
        let r = record(&items[0]);
        assert_eq!(
            (r.start, r.end),
            (utc("2024-04-01T08:00:00Z"), utc("2024-04-01T09:30:00Z")),
            "{name}"
        );
        assert_eq!((r.subscription.as_str(), r.quantity.as_str()), (AS2, "5"));
    }
    let items = read_fixture("times_dates.parquet").await;
    let r = record(&items[0]);
    assert_eq!(
        (r.start, r.end),
        (utc("2024-04-01T00:00:00Z"), utc("2024-04-02T00:00:00Z"))
    );
}

#[tokio::test]
async fn large_strings_views_and_integer_ids() {
    let items = read_fixture("string_kinds.parquet").await;
    let r: Vec<&VendorRecord> = items.iter().map(record).collect();
    assert_eq!(
        (r[0].subscription.as_str(), r[0].item_mpn.as_str()),
        (AS1, "EGRESS-GB")
    );
    assert_eq!(r[0].record_id.as_deref(), Some("900001"));
    assert_eq!(r[0].note.as_deref(), Some("large"));
    assert_eq!(r[0].category.as_deref(), Some("7"));
    assert_eq!(
        (r[1].note.as_deref(), r[1].category.as_deref()),
        (None, None)
    );
    assert_eq!(r[1].record_id.as_deref(), Some("900002"));
}

#[tokio::test]
async fn a_duckdb_file_with_its_own_column_case() {
    let items = read_fixture("duckdb.parquet").await;
    assert_eq!(items.len(), 2);
    let r: Vec<&VendorRecord> = items.iter().map(record).collect();
    assert_eq!(
        summary(r[0]),
        (
            AS1,
            "STOR-GBH",
            "10.25",
            "2024-04-01T00:00:00+00:00".into(),
            "2024-04-01T06:00:00+00:00".into(),
            Some("dk-1")
        )
    );
    assert_eq!(r[0].note, None);
    assert_eq!(
        summary(r[1]),
        (
            AS3,
            "API-REQ",
            "1000",
            "2024-04-02T10:00:00+00:00".into(),
            "2024-04-02T18:00:00+00:00".into(),
            Some("dk-2")
        )
    );
    assert_eq!(r[1].note.as_deref(), Some("from duckdb"));
}

#[tokio::test]
async fn unsupported_types_and_missing_columns_fail_the_source() {
    let path = fixture("bool_quantity.parquet");
    let e = read(&path).await.expect_err("boolean quantity");
    assert_eq!(
        e.to_string(),
        format!(
            "{}: column \"quantity\" (quantity) is of type Boolean; quantity takes decimals, \
             integers, Float32, Float64 or text",
            path.display()
        )
    );
    let e = read(&fixture("list_note.parquet")).await.expect_err("list");
    let text = e.to_string();
    assert!(
        text.contains("column \"note\" (note) is of type List(")
            && text.contains(
                "note takes text (Utf8, LargeUtf8, Utf8View, or a dictionary of text) or integers"
            ),
        "{text}"
    );
    let path = fixture("missing_column.parquet");
    let e = read(&path).await.expect_err("missing");
    assert_eq!(
        e.to_string(),
        format!(
            "{}: no column(s) end_time; the file's columns are subscription_id, item_mpn, \
             quantity, start_time, tags; a usage file has subscription_id, item_mpn, quantity, \
             start_time, end_time, record_id, note, category",
            path.display()
        )
    );
}

#[tokio::test]
async fn not_parquet_and_truncated_files_say_so_with_the_path() {
    let path = scratch("text.parquet");
    std::fs::write(&path, "subscription_id,item_mpn\n").expect("write");
    let e = read(&path).await.expect_err("not parquet");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("{}: not a readable Parquet file", path.display())),
        "{text}"
    );
    let bytes = std::fs::read(fixture("row_groups.parquet")).expect("fixture");
    let path = scratch("cut.parquet");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("write");
    let e = read(&path).await.expect_err("truncated");
    assert!(
        e.to_string()
            .starts_with(&format!("{}: not a readable Parquet file", path.display())),
        "{e}"
    );
    // A file whose footer is whole but whose pages are not.
    let mut broken = bytes.clone();
    for b in &mut broken[8..bytes.len() / 2] {
        *b = 0xAB;
    }
    let path = scratch("broken.parquet");
    std::fs::write(&path, &broken).expect("write");
    let e = read(&path).await.expect_err("broken pages");
    assert!(e.to_string().contains("unreadable after record 0"), "{e}");
    // Broken in a later row group: the records before it are handed over, then the error.
    let universe = UsageUniverse::of(&Dataset::default_account());
    let month = universe.month(april());
    let path = scratch("late.parquet");
    write_parquet_grouped(&path, export::records(&month, 0..20_000, 0.0), 5_000).expect("write");
    let bytes = std::fs::read(&path).expect("read");
    let footer = u32::from_le_bytes(
        bytes[bytes.len() - 8..bytes.len() - 4]
            .try_into()
            .expect("4"),
    );
    let data_end = bytes.len() - 8 - footer as usize;
    let mut broken = bytes.clone();
    for b in &mut broken[data_end * 3 / 4..data_end] {
        *b = 0xAB;
    }
    let path = scratch("broken-late.parquet");
    std::fs::write(&path, &broken).expect("write");
    let spec = SourceSpec::parse(&path.to_string_lossy(), |_| None).expect("spec");
    let mut batches = spec.open().expect("open").records(april());
    let mut read_before = 0;
    let e = loop {
        match batches.try_next().await {
            Ok(Some(batch)) => read_before += batch.len(),
            Ok(None) => panic!("the broken file read to its end"),
            Err(e) => break e,
        }
    };
    assert!(read_before > 0 && read_before < 20_000, "{read_before}");
    assert!(
        e.to_string()
            .contains(&format!("unreadable after record {read_before} ")),
        "{e} after {read_before}"
    );
}

/// The sandbox's month exported by the project's own writer reads back as the same month
/// exported as JSON Lines and read through the file source.
#[tokio::test]
async fn the_parquet_export_reads_back_as_the_json_lines_export() {
    let dataset = Dataset::default_account();
    let universe = UsageUniverse::of(&dataset);
    let month = universe.month(april());
    let n = 3000;
    let parquet = scratch("month.parquet");
    let jsonl = scratch("month.jsonl");
    // Defective records too: their quantities are kept as text.
    let written = write_parquet(&parquet, export::records(&month, 0..n, 0.05)).expect("parquet");
    assert_eq!(written, n);
    write_jsonl(&jsonl, export::records(&month, 0..n, 0.05)).expect("jsonl");
    let from_parquet = read(&parquet).await.expect("parquet");
    let from_jsonl = read(&jsonl).await.expect("jsonl");
    assert_eq!(from_parquet.len(), n as usize);
    let rejected = from_parquet
        .iter()
        .filter(|i| matches!(i, SourceItem::Rejected(_)))
        .count();
    assert!(rejected > 0, "some records are defective");
    // JSON Lines has line numbers; the rest is the same.
    let without_lines = |items: Vec<SourceItem>| -> Vec<SourceItem> {
        items
            .into_iter()
            .map(|mut i| {
                match &mut i {
                    SourceItem::Record(r) => r.position.line = None,
                    SourceItem::Rejected(r) => r.position.line = None,
                }
                i
            })
            .collect()
    };
    assert_eq!(from_parquet, without_lines(from_jsonl));
}

#[tokio::test]
async fn many_rows_over_several_row_groups() {
    let dataset = Dataset::default_account();
    let universe = UsageUniverse::of(&dataset);
    let month = universe.month(april());
    let n = 40_000u64;
    let path = scratch("many.parquet");
    let written =
        write_parquet_grouped(&path, export::records(&month, 0..n, 0.0), 7_000).expect("write");
    assert_eq!(written, n);
    let meta =
        parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&path).expect("open"))
            .map(|r| parquet::file::reader::FileReader::metadata(&r).num_row_groups())
            .expect("metadata");
    assert_eq!(meta, 6, "row groups of 7 000 rows");
    let items = read(&path).await.expect("read");
    assert_eq!(items.len(), n as usize);
    for i in [0u64, 6_999, 7_000, 8_191, 8_192, 20_000, n - 1] {
        let r = record(&items[i as usize]);
        let want = month.exported(i, 0.0).expect("generated");
        assert_eq!(r.position.ordinal, i + 1);
        assert_eq!(r.record_id.as_deref(), Some(want.record_id.as_str()));
        assert_eq!(r.subscription, want.subscription_id);
        assert_eq!(r.item_mpn, want.item_mpn);
        assert_eq!(r.quantity.as_str(), want.quantity);
        assert_eq!((r.start, r.end), (want.start_time, want.end_time));
        assert_eq!(r.note, want.note);
    }
}

/// `connect-usage sandbox --export-usage FILE.parquet` writes the month a vendor can then name
/// in `USAGE_SOURCE`: the records it says it wrote, all of them in April.
#[tokio::test]
async fn the_sandbox_command_exports_a_month_to_parquet() {
    let file = scratch("cli-export.parquet");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_connect-usage"))
        .args(["sandbox", "--export-usage"])
        .arg(&file)
        .args(["--period", "2024-04", "--usage-records", "700"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        stdout.trim(),
        format!(
            "exported 700 usage records of 2024-04 to {}",
            file.display()
        )
    );
    let items = read(&file).await.expect("reads");
    assert_eq!(items.len(), 700);
    let april = april();
    for item in &items {
        let r = record(item);
        assert!(
            april.start() <= r.start && r.start < april.end_exclusive(),
            "{r:?}"
        );
    }
}
