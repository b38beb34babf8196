//! The sandbox's usage of a month written into a PostgreSQL table, as a vendor keeps usage,
//! for the PostgreSQL usage source ([`crate::usage::source_postgres`]) to read back: the
//! table is created when missing and the month's rows replaced in one transaction.

use futures_util::SinkExt;

use super::ExportError;
use crate::usage::source_postgres::PostgresSpec;
use crate::usage::{Month, Quantity};
use connect_sandbox::export_formats::time_text;
use connect_sandbox::usage_universe::ExportedRecord;

/// The table the export creates when it is missing: the columns of the usage contract, typed
/// as a vendor would keep them. No column is `NOT NULL`: a record defective on purpose (a
/// quantity that is not a number) is exported with that value missing, and read back as the
/// invalid record it is.
pub fn create_table_sql(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (\n    \
         subscription_id text,\n    \
         item_mpn text,\n    \
         quantity numeric,\n    \
         start_time timestamptz,\n    \
         end_time timestamptz,\n    \
         record_id text,\n    \
         note text,\n    \
         category text\n)"
    )
}

/// A table name as SQL: `name` or `schema.name`, each part a plain identifier, quoted.
fn table_sql(table: &str) -> Result<String, ExportError> {
    let plain = |part: &str| {
        !part.is_empty()
            && part.len() <= 63
            && part
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() > 2 || !parts.iter().all(|p| plain(p)) {
        return Err(ExportError::Target(format!(
            "{table:?} is not a table name: letters, digits and _ (schema.table allowed)"
        )));
    }
    Ok(parts
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join("."))
}

/// Writes the month into a PostgreSQL table (created when missing), replacing the month's rows
/// there in one transaction, so an export run twice leaves one copy. Rows go in by `COPY`.
/// `lookup` gives the password (`USAGE_SOURCE_TOKEN`, `PGPASSWORD`) when the URL has none.
pub async fn write_postgres(
    url: &str,
    table: &str,
    period: Month,
    records: impl Iterator<Item = ExportedRecord>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<u64, ExportError> {
    let table = table_sql(table)?;
    let spec = PostgresSpec::parse(url, lookup).map_err(|e| ExportError::Target(e.to_string()))?;
    let shown = spec.shown().to_owned();
    let db_error = |e: tokio_postgres::Error| {
        let reason = match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => e.to_string(),
        };
        ExportError::Database(format!("PostgreSQL {shown}: {reason}"))
    };
    let mut client = spec
        .connect()
        .await
        .map_err(|e| ExportError::Database(e.to_string()))?;
    client
        .batch_execute(&create_table_sql(&table))
        .await
        .map_err(db_error)?;
    let tx = client.transaction().await.map_err(db_error)?;
    tx.execute(
        &format!("DELETE FROM {table} WHERE start_time >= $1 AND start_time < $2"),
        &[&period.start(), &period.end_exclusive()],
    )
    .await
    .map_err(db_error)?;
    let sink = tx
        .copy_in(&format!(
            "COPY {table} (record_id, subscription_id, item_mpn, quantity, start_time, end_time, note) FROM STDIN (FORMAT csv)"
        ))
        .await
        .map_err(db_error)?;
    futures_util::pin_mut!(sink);
    let mut n = 0u64;
    let numeric = |q: &str| Quantity::parse(q).is_ok();
    let mut records = records;
    loop {
        let mut rows = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::with_capacity(1 << 20));
        let mut in_chunk = 0;
        for r in records.by_ref() {
            // A quantity that is not a number cannot be `numeric`: it goes in as NULL.
            let quantity = if numeric(&r.quantity) {
                r.quantity.as_str()
            } else {
                ""
            };
            rows.write_record([
                r.record_id.as_str(),
                &r.subscription_id,
                &r.item_mpn,
                quantity,
                &time_text(r.start_time),
                &time_text(r.end_time),
                r.note.as_deref().unwrap_or_default(),
            ])
            .map_err(|e| ExportError::Database(e.to_string()))?;
            in_chunk += 1;
            if in_chunk == 8192 {
                break;
            }
        }
        if in_chunk == 0 {
            break;
        }
        n += in_chunk;
        let chunk = rows
            .into_inner()
            .map_err(|e| ExportError::Database(e.to_string()))?;
        sink.send(bytes::Bytes::from(chunk))
            .await
            .map_err(db_error)?;
    }
    sink.as_mut().finish().await.map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_identifiers() {
        assert_eq!(table_sql("usage").ok().as_deref(), Some("\"usage\""));
        assert_eq!(
            table_sql("billing.usage_2024").ok().as_deref(),
            Some("\"billing\".\"usage_2024\"")
        );
        assert!(table_sql("usage; DROP TABLE x").is_err());
        assert!(table_sql("a.b.c").is_err());
    }
}
