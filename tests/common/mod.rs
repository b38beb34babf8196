//! Helpers shared by the integration tests: a sandbox on a free port, clients for its keys,
//! workbooks built cell by cell, and a QT contract/product/assets triple from its dataset.
#![allow(dead_code)]

pub mod postgres;
pub mod promtool;
pub mod runner;

use std::time::Duration;

use chrono::NaiveDate;
use connect_client::models::{IdRef, NewUsageFile, UsageFile, UsageFileStatus, UsagePeriod};
use connect_client::{ApiKey, ConnectClient, RetryPolicy};
use connect_sandbox::{RuntimeConfig, Sandbox, SandboxConfig};
use serde_json::Value;
use std::collections::BTreeMap;

pub async fn start() -> Sandbox {
    Sandbox::start_default().await.expect("sandbox starts")
}

/// A sandbox with other settings; faults are set at run time through `/sandbox/faults`.
pub async fn start_with(runtime: RuntimeConfig) -> Sandbox {
    Sandbox::start(SandboxConfig {
        runtime,
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox starts")
}

/// Retries as in production, but with short delays so tests stay fast.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 4,
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        ..RetryPolicy::default()
    }
}

pub fn client(sb: &Sandbox, key: ApiKey) -> ConnectClient {
    ConnectClient::builder(sb.api_url(), key)
        .retry_policy(fast_retry())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client builds")
}

pub fn vendor(sb: &Sandbox) -> ConnectClient {
    client(sb, sb.vendor_key())
}

pub fn provider(sb: &Sandbox) -> ConnectClient {
    client(sb, sb.provider_key())
}

/// A plain HTTP client, for raw requests.
pub fn http() -> reqwest::Client {
    connect_client::install_crypto_provider();
    reqwest::Client::new()
}

/// A raw API request carrying the vendor's key.
pub fn as_vendor(sb: &Sandbox, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    http()
        .request(method, format!("{}{path}", sb.api_url()))
        .header(
            "Authorization",
            format!("ApiKey {}", sb.vendor_key().expose()),
        )
}

/// The bytes at a link the sandbox gave (no key, like Connect's signed links).
pub async fn download(url: &str) -> Vec<u8> {
    http()
        .get(url)
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("bytes")
        .to_vec()
}

pub fn open_xlsx(bytes: Vec<u8>) -> calamine::Xlsx<std::io::Cursor<Vec<u8>>> {
    calamine::open_workbook_from_rs(std::io::Cursor::new(bytes)).expect("an xlsx workbook")
}

/// The requests the sandbox logged whose path starts with `prefix`, oldest first.
pub async fn requests_under(sb: &Sandbox, prefix: &str) -> Vec<Value> {
    let log = admin_get(sb, "requests").await;
    log.as_array()
        .expect("requests")
        .iter()
        .filter(|r| r["path"].as_str().is_some_and(|p| p.starts_with(prefix)))
        .cloned()
        .collect()
}

/// GET on the sandbox's own API.
pub async fn admin_get(sb: &Sandbox, path: &str) -> Value {
    http()
        .get(format!("{}/sandbox/{path}", sb.origin()))
        .send()
        .await
        .expect("admin answers")
        .json()
        .await
        .expect("admin JSON")
}

pub async fn admin_put(sb: &Sandbox, path: &str, body: Value) -> reqwest::Response {
    http()
        .put(format!("{}/sandbox/{path}", sb.origin()))
        .json(&body)
        .send()
        .await
        .expect("admin answers")
}

/// The state dump's entry for a file.
pub async fn dumped_file(sb: &Sandbox, id: &str) -> Value {
    let state = admin_get(sb, "state").await;
    state["files"]
        .as_array()
        .and_then(|files| files.iter().find(|f| f["id"] == id).cloned())
        .unwrap_or_else(|| panic!("file {id} not in the state dump"))
}

/// A QT product sold under an active distribution contract, with some of its assets there.
#[derive(Debug, Clone)]
pub struct Target {
    pub contract: String,
    pub product: String,
    pub assets: Vec<String>,
    /// `(mpn, precision)` of the product's PPU items.
    pub items: Vec<(String, String)>,
    /// A reservation item's mpn, if any.
    pub reservation_mpn: Option<String>,
    /// An asset of the same product under another contract.
    pub foreign_asset: Option<String>,
}

pub fn qt_target(sb: &Sandbox) -> Target {
    let d = sb.state().dataset();
    for c in d
        .contracts
        .iter()
        .filter(|c| c["type"] == "distribution" && c["status"] == "active")
    {
        for p in d
            .products
            .iter()
            .filter(|p| p["capabilities"]["ppu"]["schema"] == "QT")
        {
            let assets: Vec<String> = d
                .assets
                .iter()
                .filter(|a| {
                    a["contract"]["id"] == c["id"]
                        && a["product"]["id"] == p["id"]
                        && a["status"] == "active"
                })
                .filter_map(|a| a["id"].as_str().map(str::to_owned))
                .collect();
            let items = d.items.get(p["id"].as_str().unwrap_or_default());
            let ppu: Vec<(String, String)> = items
                .into_iter()
                .flatten()
                .filter(|i| i["type"] == "ppu")
                .map(|i| {
                    (
                        i["mpn"].as_str().unwrap_or_default().to_owned(),
                        i["precision"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            let has_decimal2 = ppu.iter().any(|(_, p)| p == "decimal(2)");
            let has_integer = ppu.iter().any(|(_, p)| p == "integer");
            if assets.len() >= 3 && has_decimal2 && has_integer {
                let reservation_mpn = items.into_iter().flatten().find_map(|i| {
                    (i["type"] == "reservation")
                        .then(|| i["mpn"].as_str().map(str::to_owned))
                        .flatten()
                });
                let foreign_asset = d.assets.iter().find_map(|a| {
                    (a["product"]["id"] == p["id"] && a["contract"]["id"] != c["id"])
                        .then(|| a["id"].as_str().map(str::to_owned))
                        .flatten()
                });
                return Target {
                    contract: c["id"].as_str().unwrap_or_default().to_owned(),
                    product: p["id"].as_str().unwrap_or_default().to_owned(),
                    assets,
                    items: ppu,
                    reservation_mpn,
                    foreign_asset,
                };
            }
        }
    }
    panic!("the default dataset has no QT target");
}

impl Target {
    pub fn mpn_with(&self, precision: &str) -> String {
        self.items
            .iter()
            .find(|(_, p)| p == precision)
            .map(|(m, _)| m.clone())
            .unwrap_or_else(|| panic!("no {precision} item"))
    }
}

pub fn april_2024() -> UsagePeriod {
    UsagePeriod {
        from: NaiveDate::from_ymd_opt(2024, 4, 1).expect("date"),
        to: NaiveDate::from_ymd_opt(2024, 4, 30).expect("date"),
    }
}

pub fn new_file(t: &Target, external_id: &str) -> NewUsageFile {
    NewUsageFile {
        name: "Usage April 2024".into(),
        description: Some("test".into()),
        note: None,
        period: april_2024(),
        currency: None,
        product: IdRef::new(&t.product),
        contract: IdRef::new(&t.contract),
        external_id: Some(external_id.into()),
    }
}

/// A cell of a test workbook.
#[derive(Debug, Clone)]
pub enum Cell {
    Text(String),
    Number(f64),
    Formula(String),
    Empty,
}

pub fn text(s: &str) -> Cell {
    Cell::Text(s.to_owned())
}

pub fn num(v: f64) -> Cell {
    Cell::Number(v)
}

pub const QT_HEADER: [&str; 8] = [
    "record_id",
    "item_search_criteria",
    "item_search_value",
    "quantity",
    "start_time_utc",
    "end_time_utc",
    "asset_search_criteria",
    "asset_search_value",
];

/// A workbook with one sheet of `header` and `rows`.
pub fn workbook(sheet: &str, header: &[&str], rows: &[Vec<Cell>]) -> Vec<u8> {
    let mut book = rust_xlsxwriter::Workbook::new();
    // A fixed creation time: the same rows give the same bytes, whatever the clock says.
    let created = rust_xlsxwriter::ExcelDateTime::from_ymd(2024, 5, 1).expect("date");
    book.set_properties(&rust_xlsxwriter::DocProperties::new().set_creation_datetime(&created));
    let ws = book.add_worksheet();
    ws.set_name(sheet).expect("sheet name");
    for (c, h) in header.iter().enumerate() {
        ws.write_string(0, c as u16, *h).expect("header");
    }
    for (r, row) in rows.iter().enumerate() {
        let r = r as u32 + 1;
        for (c, cell) in row.iter().enumerate() {
            let c = c as u16;
            match cell {
                Cell::Text(s) => {
                    ws.write_string(r, c, s).expect("cell");
                }
                Cell::Number(v) => {
                    ws.write_number(r, c, *v).expect("cell");
                }
                Cell::Formula(f) => {
                    ws.write_formula(r, c, f.as_str()).expect("cell");
                }
                Cell::Empty => {}
            }
        }
    }
    book.save_to_buffer().expect("workbook")
}

/// A valid QT row for `asset` and item `mpn`.
pub fn qt_row(id: &str, mpn: &str, quantity: f64, asset: &str) -> Vec<Cell> {
    vec![
        text(id),
        text("item.mpn"),
        text(mpn),
        num(quantity),
        text("2024-04-01 00:00:00"),
        text("2024-04-30 23:59:59"),
        text("asset.id"),
        text(asset),
    ]
}

/// A valid workbook of `count` rows over the target's assets.
pub fn valid_workbook(t: &Target, count: usize) -> Vec<u8> {
    let mpn = t.mpn_with("integer");
    let rows: Vec<Vec<Cell>> = (0..count)
        .map(|i| {
            qt_row(
                &format!("rec-{i}"),
                &mpn,
                (i + 1) as f64,
                &t.assets[i % t.assets.len()],
            )
        })
        .collect();
    workbook("records", &QT_HEADER, &rows)
}

/// Creates a file and uploads a valid workbook: the file ends `ready`.
pub async fn ready_file(sb: &Sandbox, t: &Target, external_id: &str) -> UsageFile {
    let c = vendor(sb);
    let f = c
        .create_usage_file(&new_file(t, external_id))
        .await
        .expect("created");
    let f = c
        .upload_usage_file(&f.id, "usage.xlsx", valid_workbook(t, 3).into())
        .await
        .expect("uploaded");
    assert_eq!(f.status, UsageFileStatus::Ready, "{:?}", f.error_detail);
    f
}

/// A ready file, submitted: it ends `pending`.
pub async fn pending_file(sb: &Sandbox, t: &Target, external_id: &str) -> UsageFile {
    let f = ready_file(sb, t, external_id).await;
    let f = vendor(sb)
        .submit_usage_file(&f.id)
        .await
        .expect("submitted");
    assert_eq!(f.status, UsageFileStatus::Pending);
    f
}

/// Installs the program's own log pipeline (its secret-safe filter) writing everything, down
/// to trace, into a capture: once per test binary.
pub fn capture_all_logs() -> Capture {
    use tracing_subscriber::prelude::*;
    let capture = Capture::default();
    tracing_subscriber::registry()
        .with(connect_eaas::logging::secret_safe_filter())
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(capture.clone())
                .with_ansi(false),
        )
        .try_init()
        .expect("the only subscriber of this test binary");
    capture
}

/// Log output captured in memory, for tests that search every log line.
#[derive(Clone, Default)]
pub struct Capture(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Reports last month from the sandbox's vendor usage API with the vendor's key, the options
/// changed by `tweak`.
pub async fn report_last_month(
    sb: &Sandbox,
    tweak: impl FnOnce(&mut connect_usage::usage::ReportOptions),
) -> Result<connect_usage::usage::RunSummary, connect_usage::usage::RunError> {
    use connect_usage::usage::{ReportOptions, SourceSpec};
    let source = SourceSpec::Http {
        url: sb.usage_api_url(),
        token: sb.usage_token(),
    }
    .open()
    .expect("source");
    let mut options = ReportOptions::new(connect_usage::usage::Month::previous_month(
        chrono::Utc::now(),
    ));
    tweak(&mut options);
    connect_usage::usage::report(&vendor(sb), source.as_ref(), &options).await
}

/// A JSON Lines usage file of good April 2024 records for the target: `(record id,
/// quantity)` each, on its first asset and integer item.
pub fn usage_jsonl(name: &str, t: &Target, records: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cu-usage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    let mpn = t.mpn_with("integer");
    let lines: Vec<String> = records
        .iter()
        .map(|(id, q)| {
            serde_json::json!({"record_id": id, "subscription_id": t.assets[0], "item_mpn": mpn,
                "quantity": q, "start_time": "2024-04-03T00:00:00Z", "end_time": "2024-04-03T01:00:00Z"})
            .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).expect("write");
    path
}

/// The file's note says it holds other records than the vendor's data gives today.
pub async fn note_other_data(sb: &Sandbox, id: &str) {
    vendor(sb)
        .update_usage_file(
            id,
            &connect_client::models::UsageFileUpdate {
                note: Some(format!("connect-usage digest={} records=1", "0".repeat(64))),
                ..Default::default()
            },
        )
        .await
        .expect("note set");
}

/// Someone uploads rows with these record ids (quantity 9 each, on the target's first asset
/// and integer item) into the file by hand, in a later second than the file's last upload
/// (Connect's upload times are whole seconds).
pub async fn upload_by_hand(sb: &Sandbox, t: &Target, id: &str, record_ids: &[&str]) {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mpn = t.mpn_with("integer");
    let rows: Vec<_> = record_ids
        .iter()
        .map(|r| qt_row(r, &mpn, 9.0, &t.assets[0]))
        .collect();
    vendor(sb)
        .upload_usage_file(
            id,
            "by-hand.xlsx",
            workbook("records", &QT_HEADER, &rows).into(),
        )
        .await
        .expect("uploaded by hand");
}

/// What Connect holds, per external id: status and the records as
/// `(record_id, asset, mpn, quantity, start, end)`, independent of file ids and timing.
pub type Final = BTreeMap<
    String,
    (
        String,
        Vec<(String, String, String, String, String, String)>,
    ),
>;

pub async fn final_state(sb: &Sandbox) -> Final {
    let state = admin_get(sb, "state?requests=false").await;
    let mut out = Final::new();
    for f in state["files"].as_array().expect("files") {
        if f["status"] == "deleted" {
            continue;
        }
        let ext = f["external_id"].as_str().unwrap_or_default().to_owned();
        let mut records: Vec<_> = f["record_list"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| {
                let s = |v: &Value| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (
                    s(&r["record_id"]),
                    s(&r["asset"]["id"]),
                    s(&r["item"]["mpn"]),
                    s(&r["usage"]),
                    s(&r["start_date"]),
                    s(&r["end_date"]),
                )
            })
            .collect();
        records.sort();
        let previous = out.insert(
            ext.clone(),
            (f["status"].as_str().unwrap_or_default().to_owned(), records),
        );
        assert!(previous.is_none(), "two usage files for {ext}");
    }
    out
}

/// The sandbox's own usage records `indices` of April 2024 (`usage_subscriptions` applied) as
/// a vendor's CSV export, in the order given.
pub fn sandbox_csv(
    sb: &Sandbox,
    name: &str,
    indices: impl IntoIterator<Item = u64>,
) -> std::path::PathBuf {
    use std::io::Write;
    let dir = std::env::temp_dir().join(format!("cu-usage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("csv"));
    writeln!(
        out,
        "subscription_id,item_mpn,quantity,start_time,end_time,record_id,note"
    )
    .expect("write");
    let config = sb.state().config();
    let month = sb.state().usage_universe().month_of(
        "2024-04"
            .parse::<connect_client::month::Month>()
            .expect("period"),
        connect_sandbox::usage_universe::Spread::of(&config),
    );
    for i in indices {
        let r = month.record(i, 0.0);
        let s = |k: &str| r[k].as_str().unwrap_or_default().replace('"', "\"\"");
        writeln!(
            out,
            "{},{},{},{},{},{},\"{}\"",
            s("subscription_id"),
            s("item_mpn"),
            s("quantity"),
            s("start_time"),
            s("end_time"),
            s("record_id"),
            s("note")
        )
        .expect("write");
    }
    out.flush().expect("flush");
    path
}

/// JSON Lines usage of April 2024 for the target's first two assets: `(record id, asset index,
/// mpn, quantity, start, end)` each.
pub fn usage_lines(
    name: &str,
    t: &Target,
    records: &[(&str, usize, &str, &str, &str, &str)],
) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cu-usage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    let lines: Vec<String> = records
        .iter()
        .map(|(id, asset, mpn, q, start, end)| {
            serde_json::json!({"record_id": id, "subscription_id": t.assets[*asset], "item_mpn": mpn,
                "quantity": q, "start_time": start, "end_time": end})
            .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).expect("write");
    path
}

/// What a background task of the extension gets for `object`: the vendor's key, the usage from
/// `source` (a URL or a file) with the sandbox's token, and more `variables`.
pub fn task_context(
    sb: &Sandbox,
    object: &str,
    source: &str,
    variables: &[(&str, &str)],
) -> connect_eaas::runner::TaskContext {
    use connect_eaas::protocol::TaskCategory;
    use connect_eaas::runner::{Environment, TaskContext, TaskInfo, Variables};
    let client = vendor(sb);
    let mut entries = vec![
        ("USAGE_SOURCE".to_owned(), source.to_owned(), false),
        (
            "USAGE_SOURCE_TOKEN".to_owned(),
            sb.usage_token().expose().to_owned(),
            true,
        ),
    ];
    entries.extend(
        variables
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned(), false)),
    );
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
        config: Variables::from_entries(entries),
        environment: Environment::default(),
        state: connect_eaas::runner::HandlerState::default()
            .with(connect_usage::usage::locks::GroupLocks::default()),
    }
}

/// April 2024: the month the tests report.
pub fn april() -> connect_usage::usage::Month {
    "2024-04".parse().expect("period")
}

/// A run's options with polls fast enough for tests.
pub fn quick_options(period: connect_usage::usage::Month) -> connect_usage::usage::ReportOptions {
    connect_usage::usage::ReportOptions {
        poll: connect_usage::usage::PollPolicy {
            interval: Duration::from_millis(20),
            timeout: Duration::from_secs(20),
        },
        ..connect_usage::usage::ReportOptions::new(period)
    }
}

/// A report of the usage in the file at `path`.
pub async fn run_file(
    sb: &Sandbox,
    path: &std::path::Path,
    opts: &connect_usage::usage::ReportOptions,
) -> Result<connect_usage::usage::RunSummary, connect_usage::usage::RunError> {
    let source = connect_usage::usage::SourceSpec::File(path.to_path_buf())
        .open()
        .expect("file source");
    connect_usage::usage::report(&vendor(sb), source.as_ref(), opts).await
}
