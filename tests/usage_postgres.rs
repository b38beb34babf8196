//! The PostgreSQL usage source against a real server: a throwaway cluster started by each test
//! (see `common::postgres`), the default table and custom queries, every column type read
//! exactly, NULLs and bad values as invalid records, each error a person can meet with its
//! message, TLS modes, secrets kept out of every message, the export command, and a month
//! reported from the database equal to the same month from the vendor usage API.

mod common;

use common::postgres::{PgCluster, PgSetup};
use common::*;
use connect_sandbox::usage_universe::UsageUniverse;
use connect_sandbox::{Dataset, RuntimeConfig};
use connect_usage::usage::export::{self, ExportTarget};
use connect_usage::usage::{Month, Rejection, SourceItem, SourceSpec, VendorRecord, report};
use futures_util::TryStreamExt;

const PASSWORD: &str = "vendor-pw-7c1e";

fn april() -> Month {
    "2024-04".parse().expect("period")
}

/// The source for `url` with these variables.
fn spec(url: &str, vars: &[(&str, &str)]) -> SourceSpec {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    SourceSpec::parse(url, |name| {
        vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .expect("spec")
}

async fn read(spec: &SourceSpec, period: Month) -> Result<Vec<SourceItem>, String> {
    let source = spec.open().map_err(|e| e.to_string())?;
    let batches: Vec<Vec<SourceItem>> = source
        .records(period)
        .try_collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(batches.into_iter().flatten().collect())
}

fn record(items: &[SourceItem], id: &str) -> VendorRecord {
    items
        .iter()
        .find_map(|i| match i {
            SourceItem::Record(r) if r.record_id.as_deref() == Some(id) => Some(r.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no record {id} in {items:#?}"))
}

fn rejection(items: &[SourceItem], id: &str) -> Rejection {
    items
        .iter()
        .find_map(|i| match i {
            SourceItem::Rejected(r) if r.record_id.as_deref() == Some(id) => Some(r.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no rejection {id} in {items:#?}"))
}

fn utc(text: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("time")
        .with_timezone(&chrono::Utc)
}

/// A cluster with the role `vendor` owning the database `usage`.
fn cluster(setup: PgSetup) -> Option<PgCluster> {
    let pg = PgCluster::start(setup)?;
    pg.create_user_db("vendor", PASSWORD, "usage");
    Some(pg)
}

#[tokio::test]
async fn the_default_table_is_read_exactly_and_bad_rows_are_invalid_records() {
    let Some(pg) = cluster(PgSetup::default()) else {
        return;
    };
    pg.sql(
        "usage",
        &format!(
            "SET ROLE vendor; {}; INSERT INTO connect_usage_records VALUES
             ('AS-1', 'MPN-A', 12.500, '2024-04-01T00:00:00Z', '2024-04-01T10:00:00Z', 'r-1', 'a note', 'cat-1'),
             ('AS-1', 'MPN-A', 1234567890123456.78901234567890, '2024-04-02T08:00:00+02:00', '2024-04-02T09:00:00.5Z', 'r-2', NULL, NULL),
             ('AS-1', 'MPN-A', NULL, '2024-04-03T00:00:00Z', '2024-04-03T01:00:00Z', 'r-3', NULL, NULL),
             (NULL, 'MPN-A', 1, '2024-04-03T00:00:00Z', NULL, 'r-4', NULL, NULL),
             ('AS-1', 'MPN-A', 'NaN', '2024-04-03T00:00:00Z', '2024-04-03T01:00:00Z', 'r-5', NULL, NULL),
             ('AS-1', 'MPN-A', 7, '2024-05-01T00:00:00Z', '2024-05-01T01:00:00Z', 'r-may', NULL, NULL),
             ('AS-1', 'MPN-A', -0.0, '2024-04-30T23:59:59Z', '2024-04-30T23:59:59Z', NULL, NULL, NULL)",
            export::create_table_sql("connect_usage_records")
        ),
    );
    let items = read(
        &spec(
            &pg.url("vendor", "usage"),
            &[("USAGE_SOURCE_TOKEN", PASSWORD)],
        ),
        april(),
    )
    .await
    .expect("reads");
    assert_eq!(items.len(), 6, "May's record is not April's: {items:#?}");
    let r1 = record(&items, "r-1");
    assert_eq!(
        (
            r1.subscription.as_str(),
            r1.item_mpn.as_str(),
            r1.quantity.as_str(),
            r1.start,
            r1.end,
            r1.note.as_deref(),
            r1.category.as_deref()
        ),
        (
            "AS-1",
            "MPN-A",
            "12.5",
            utc("2024-04-01T00:00:00Z"),
            utc("2024-04-01T10:00:00Z"),
            Some("a note"),
            Some("cat-1")
        )
    );
    let r2 = record(&items, "r-2");
    assert_eq!(
        r2.quantity.as_str(),
        "1234567890123456.7890123456789",
        "numeric is exact, beyond any float"
    );
    assert_eq!(r2.start, utc("2024-04-02T06:00:00Z"));
    assert_eq!(r2.end, utc("2024-04-02T09:00:00.5Z"));
    assert_eq!(rejection(&items, "r-3").reason, "quantity: is required");
    assert_eq!(
        rejection(&items, "r-4").reason,
        "subscription_id: is required; end_time: is required"
    );
    assert_eq!(
        rejection(&items, "r-5").reason,
        "quantity: NaN is not a number"
    );
    assert!(
        items.iter().any(|i| matches!(i, SourceItem::Record(r)
            if r.record_id.is_none() && r.quantity.as_str() == "0")),
        "a record without id: {items:#?}"
    );
}

#[tokio::test]
async fn a_custom_query_reads_every_supported_type() {
    let Some(pg) = cluster(PgSetup::default()) else {
        return;
    };
    pg.sql(
        "usage",
        "SET ROLE vendor;
         CREATE TABLE vendor_usage (asset text, sku varchar(40), qty_f double precision,
             qty_r real, qty_i bigint, qty_s smallint, qty_t text, began timestamp, ended text,
             rid uuid, n integer, day date);
         INSERT INTO vendor_usage VALUES
           ('AS-2', 'MPN-B', 0.1, 0.1, 9007199254740993, 3, ' 2.50 ', '2024-04-02 03:04:05',
            '2024-04-02T05:00:00+02:00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 42, '2024-04-09'),
           ('AS-2', 'MPN-B', 'Infinity', 1, 1, 1, 'lots', '2024-04-03 00:00:00', 'yesterday',
            NULL, 43, '2024-04-10')",
    );
    let url = pg.url("vendor", "usage");
    let with = |query: &str| {
        spec(
            &url,
            &[("USAGE_SOURCE_TOKEN", PASSWORD), ("USAGE_QUERY", query)],
        )
    };
    // Floats through their shortest decimal; timestamp (no zone) as UTC; text times with
    // offsets converted; uuid ids; $1/$2 bound as `timestamp` because the query compares
    // them with one.
    let items = read(
        &with(
            "SELECT asset AS subscription_id, sku AS item_mpn, qty_f AS quantity, began AS start_time,
                    ended AS end_time, rid AS record_id, 'from vendor_usage' AS note
             FROM vendor_usage WHERE began >= $1 AND began < $2 ORDER BY n",
        ),
        april(),
    )
    .await
    .expect("reads");
    assert_eq!(items.len(), 2);
    let r = record(&items, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    assert_eq!(
        (r.quantity.as_str(), r.start, r.end, r.note.as_deref()),
        (
            "0.1",
            utc("2024-04-02T03:04:05Z"),
            utc("2024-04-02T03:00:00Z"),
            Some("from vendor_usage")
        )
    );
    let SourceItem::Rejected(bad) = &items[1] else {
        panic!("{:?}", items[1])
    };
    assert_eq!(
        bad.reason,
        "quantity: inf is not a number; end_time: \"yesterday\" is not a UTC time (YYYY-MM-DDTHH:MM:SSZ)"
    );
    // real, bigint, smallint, text quantities; integer ids; dates as midnight; $1/$2 as text.
    for (column, expected) in [
        ("qty_r", "0.1"),
        ("qty_i", "9007199254740993"),
        ("qty_s", "3"),
        ("qty_t", "2.5"),
    ] {
        let items = read(
            &with(&format!(
                "SELECT asset AS subscription_id, sku AS item_mpn, {column} AS quantity,
                        day AS start_time, day AS end_time, n AS record_id
                 FROM vendor_usage WHERE began::text >= $1 AND n = 42"
            )),
            april(),
        )
        .await
        .expect("reads");
        let r = record(&items, "42");
        assert_eq!(r.quantity.as_str(), expected, "{column}");
        assert_eq!(r.start, utc("2024-04-09T00:00:00Z"), "{column}");
    }
}

/// The message of reading `spec`'s April, which must fail.
async fn failure(spec: &SourceSpec) -> String {
    read(spec, april()).await.expect_err("fails")
}

#[tokio::test]
async fn every_error_says_what_to_do_and_no_password_is_shown() {
    let Some(pg) = cluster(PgSetup::default()) else {
        return;
    };
    pg.sql(
        "usage",
        "SET ROLE vendor; CREATE TABLE t (subscription_id text, item_mpn text, quantity numeric,
             start_time timestamptz, end_time timestamptz, done boolean)",
    );
    let url = pg.url("vendor", "usage");
    let token = [("USAGE_SOURCE_TOKEN", PASSWORD)];
    let server = format!("127.0.0.1:{}", pg.port);
    let mut messages = Vec::new();
    let mut expect = |message: String, parts: &[&str]| {
        for p in parts {
            assert!(message.contains(p), "{message:?} lacks {p:?}");
        }
        messages.push(message);
    };

    let wrong = format!(
        "postgres://vendor:not-{PASSWORD}@127.0.0.1:{}/usage",
        pg.port
    );
    expect(
        failure(&spec(&wrong, &[])).await,
        &[
            "password authentication failed for user \"vendor\"",
            &server,
            "USAGE_SOURCE_TOKEN",
        ],
    );
    expect(
        failure(&spec(&url, &[])).await,
        &[
            "asks a password of user \"vendor\" and none was given",
            "PGPASSWORD",
        ],
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let closed_port = closed.local_addr().expect("addr").port();
    drop(closed);
    expect(
        failure(&spec(
            &format!("postgres://vendor@127.0.0.1:{closed_port}/usage"),
            &token,
        ))
        .await,
        &[&format!(
            "cannot connect to 127.0.0.1:{closed_port}: connection refused"
        )],
    );
    expect(
        failure(&spec(
            "postgres://vendor@no-such-host.invalid:5432/usage",
            &token,
        ))
        .await,
        &["cannot connect to no-such-host.invalid:5432: unknown host"],
    );
    expect(
        failure(&spec(&pg.url("vendor", "nosuchdb"), &token)).await,
        &["there is no database \"nosuchdb\""],
    );
    expect(
        failure(&spec(&url, &token)).await,
        &[
            "the default query (over table connect_usage_records",
            "relation \"connect_usage_records\" does not exist",
            "USAGE_QUERY",
        ],
    );
    let query = |q: &str| {
        spec(
            &url,
            &[("USAGE_SOURCE_TOKEN", PASSWORD), ("USAGE_QUERY", q)],
        )
    };
    expect(
        failure(&query("SELECT * FROM t WHERE AND done")).await,
        &[
            "USAGE_QUERY failed: syntax error at or near \"AND\"",
            "(at character 23: \"AND done\")",
        ],
    );
    expect(
        failure(&query("SELECT subscription_id, done FROM t")).await,
        &[
            "no column(s) item_mpn, quantity, start_time, end_time",
            "(it returns subscription_id, done)",
        ],
    );
    expect(
        failure(&query(
            "SELECT subscription_id, item_mpn, done AS quantity, start_time, end_time FROM t",
        ))
        .await,
        &[
            "column quantity is of type bool",
            "numeric, an integer type, real, double precision",
        ],
    );
    expect(
        failure(&query("SELECT * FROM t WHERE quantity > $1")).await,
        &["compares $1 with a numeric", "$1::timestamptz"],
    );
    expect(
        failure(&spec(&format!("{url}?sslmode=require"), &token)).await,
        &["does not accept TLS", "sslmode=require"],
    );
    for m in &messages {
        assert!(!m.contains(PASSWORD), "the password shows in {m:?}");
    }
    let described = spec(&wrong, &[]).open().expect("opens");
    assert!(!described.describe().contains(PASSWORD));
    assert!(!format!("{described:?}").contains(PASSWORD));
    assert!(!format!("{:?}", spec(&wrong, &[])).contains(PASSWORD));
}

#[tokio::test]
async fn tls_modes_encrypt_and_check_as_libpq_does() {
    let Some(pg) = cluster(PgSetup { tls: true }) else {
        return;
    };
    pg.sql(
        "usage",
        &format!(
            "SET ROLE vendor; {}; INSERT INTO connect_usage_records VALUES
             ('AS-1', 'MPN-A', 1, '2024-04-01T00:00:00Z', '2024-04-01T10:00:00Z', 'r-1', NULL, NULL)",
            export::create_table_sql("connect_usage_records")
        ),
    );
    let token = [("USAGE_SOURCE_TOKEN", PASSWORD)];
    let at =
        |host: &str, query: &str| format!("postgres://vendor@{host}:{}/usage?{query}", pg.port);
    let message = failure(&spec(&at("127.0.0.1", "sslmode=disable"), &token)).await;
    assert!(
        message.contains("requires TLS for user \"vendor\"") && message.contains("sslmode=require"),
        "{message}"
    );
    let ca = pg.ca_pem().display().to_string();
    for query in [
        "sslmode=require".to_owned(),
        "sslmode=prefer".to_owned(),
        format!("sslmode=verify-full&sslrootcert={ca}"),
        format!("sslmode=verify-ca&sslrootcert={ca}"),
    ] {
        for host in ["localhost", "127.0.0.1"] {
            let items = read(&spec(&at(host, &query), &token), april())
                .await
                .unwrap_or_else(|e| panic!("{host} {query}: {e}"));
            assert_eq!(items.len(), 1, "{host} {query}");
        }
    }
    let message = failure(&spec(&at("localhost", "sslmode=verify-full"), &token)).await;
    assert!(
        message.contains("TLS handshake with localhost:") && message.contains("sslrootcert=PATH"),
        "an authority nobody trusts: {message}"
    );
}

#[tokio::test]
async fn a_month_reported_from_postgres_equals_the_month_from_the_usage_api() {
    let Some(pg) = cluster(PgSetup::default()) else {
        return;
    };
    let runtime = RuntimeConfig {
        usage_records: 2_500,
        ..RuntimeConfig::default()
    };
    let from_api = start_with(runtime.clone()).await;
    let from_db = start_with(runtime).await;
    let options = quick_options(april());
    let api_summary = report_last_month_of(&from_api, &options).await;

    // The export command's path: the sandbox's April into the default table.
    let universe = UsageUniverse::of(&Dataset::default_account());
    let month = universe.month_of(april(), Default::default());
    let target = ExportTarget::parse(&pg.url("vendor", "usage")).expect("target");
    let lookup = |name: &str| (name == "PGPASSWORD").then(|| PASSWORD.to_owned());
    let written = export::export(&target, &month, april(), 2_500, 0.0, &lookup)
        .await
        .expect("exported");
    assert_eq!(written, 2_500);
    // Again: the month is replaced, not doubled.
    export::export(&target, &month, april(), 2_500, 0.0, &lookup)
        .await
        .expect("exported again");
    assert_eq!(
        pg.sql("usage", "SELECT count(*) FROM connect_usage_records"),
        "2500"
    );
    let source = spec(&pg.url("vendor", "usage"), &[("PGPASSWORD", PASSWORD)])
        .open()
        .expect("opens");
    let db_summary = report(&vendor(&from_db), source.as_ref(), &options)
        .await
        .expect("reported");
    assert_eq!(db_summary.records.sent, api_summary.records.sent);
    assert_eq!(db_summary.records.sent, 2_500);
    assert_eq!(final_state(&from_db).await, final_state(&from_api).await);
}

async fn report_last_month_of(
    sb: &connect_sandbox::Sandbox,
    options: &connect_usage::usage::ReportOptions,
) -> connect_usage::usage::RunSummary {
    let source = SourceSpec::Http {
        url: sb.usage_api_url(),
        token: sb.usage_token(),
    }
    .open()
    .expect("source");
    report(&vendor(sb), source.as_ref(), options)
        .await
        .expect("reported")
}

#[tokio::test]
async fn the_export_command_fills_a_table_the_report_command_reads() {
    let Some(pg) = cluster(PgSetup::default()) else {
        return;
    };
    let bin = env!("CARGO_BIN_EXE_connect-usage");
    let url = pg.url("vendor", "usage");
    let out = std::process::Command::new(bin)
        .args(["sandbox", "--export-usage", &url, "--period", "2024-04"])
        .args(["--usage-records", "300"])
        .env("PGPASSWORD", PASSWORD)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        stdout.trim(),
        format!("exported 300 usage records of 2024-04 to table connect_usage_records of {url}")
    );
    assert_eq!(
        pg.sql(
            "usage",
            "SELECT count(*), min(start_time) >= '2024-04-01' FROM connect_usage_records"
        ),
        "300|t"
    );

    let sb = start().await;
    let out_dir = std::env::temp_dir().join(format!("cu-pg-dry-{}", std::process::id()));
    let out = tokio::process::Command::new(bin)
        .args(["report", "--dry-run", "--json", "--period", "2024-04"])
        .arg("--out")
        .arg(&out_dir)
        .env("API_KEY", format!("ApiKey {}", sb.vendor_key().expose()))
        .env("API_ADDRESS", sb.origin())
        .env("USAGE_SOURCE", &url)
        .env("PGPASSWORD", PASSWORD)
        .env_remove("USAGE_SOURCE_TOKEN")
        .env_remove("USAGE_QUERY")
        .output()
        .await
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(summary["records"]["read"], 300, "{summary:#}");
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));

    // A wrong password: exit 2 (a setting to fix), the user named, the password not.
    let out = tokio::process::Command::new(bin)
        .args(["report", "--dry-run", "--period", "2024-04"])
        .arg("--out")
        .arg(&out_dir)
        .env("API_KEY", format!("ApiKey {}", sb.vendor_key().expose()))
        .env("API_ADDRESS", sb.origin())
        .env("USAGE_SOURCE", &url)
        .env("USAGE_SOURCE_TOKEN", "wrong-pw-3b9")
        .env_remove("USAGE_QUERY")
        .output()
        .await
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("password authentication failed for user \"vendor\""),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-pw-3b9"), "{stderr}");
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// The query of docs/sources.md's "Your own query", as documented.
fn documented_query() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/sources.md"))
        .expect("docs/sources.md");
    let from = doc.find("**Your own query.**").expect("the section");
    let sql = &doc[from..];
    let start = sql.find("```sql\n").expect("a sql block") + "```sql\n".len();
    let end = sql[start..].find("```").expect("its end") + start;
    sql[start..end].to_owned()
}

#[tokio::test]
async fn the_documented_custom_query_works_as_written() {
    let Some(pg) = cluster(PgSetup::default()) else {
        return;
    };
    pg.sql(
        "usage",
        "SET ROLE vendor;
         CREATE TABLE accounts (id integer PRIMARY KEY, connect_asset_id text);
         CREATE TABLE metering (account_id integer, sku text, gb_hours numeric, at timestamptz);
         INSERT INTO accounts VALUES (1, 'AS-1'), (2, 'AS-2');
         INSERT INTO metering VALUES
           (1, 'STOR-GBH', 1.25, '2024-04-03T01:00:00Z'), (1, 'STOR-GBH', 2.5, '2024-04-03T23:00:00Z'),
           (1, 'STOR-GBH', 4, '2024-04-04T00:00:00Z'), (2, 'STOR-GBH', 7, '2024-03-31T23:59:59Z')",
    );
    let items = read(
        &spec(
            &pg.url("vendor", "usage"),
            &[
                ("PGPASSWORD", PASSWORD),
                ("USAGE_QUERY", &documented_query()),
            ],
        ),
        april(),
    )
    .await
    .expect("the documented query runs");
    assert_eq!(items.len(), 2, "{items:#?}");
    let day = record(&items, "AS-1:STOR-GBH:2024-04-03");
    assert_eq!(
        (day.quantity.as_str(), day.start, day.end),
        (
            "3.75",
            utc("2024-04-03T00:00:00Z"),
            utc("2024-04-03T23:59:59Z")
        )
    );
    assert_eq!(
        record(&items, "AS-1:STOR-GBH:2024-04-04").quantity.as_str(),
        "4"
    );
}
