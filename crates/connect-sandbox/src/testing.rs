//! Helpers for tests that run against the sandbox (feature `testing`): a sandbox on a free
//! port, clients for its keys, its admin API, a QT contract/product/assets triple from its
//! dataset, workbooks built cell by cell, and usage files in a given status. (The log capture
//! the tests share is in connect-eaas's tests/common.)
//! The tests of every crate of the workspace use them, and so can an extension's own.

use std::time::Duration;

use chrono::NaiveDate;
use connect_client::models::{IdRef, NewUsageFile, UsageFile, UsageFileStatus, UsagePeriod};
use connect_client::{ApiKey, ConnectClient, RetryPolicy};
use serde_json::Value;

use crate::{RuntimeConfig, Sandbox, SandboxConfig};

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
