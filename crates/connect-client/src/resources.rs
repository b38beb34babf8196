//! Typed access to the Connect resources the usage pipeline uses: contracts, assets,
//! marketplaces, products and items, usage files (with their actions) and usage records.
//!
//! Path segments built from ids are percent-encoded, so an id can never change the path.

use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::json;

use super::client::ConnectClient;
use super::error::ConnectError;
use super::models::{
    Asset, CloseRecord, CloseRecordResult, Contract, Item, Marketplace, NewUsageFile, Product,
    UsageFile, UsageFileUpdate, UsageRecord, UsageTemplate,
};
use super::paging::Collection;

/// Everything but unreserved characters is escaped in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one path segment (an object id).
pub fn segment(id: &str) -> String {
    utf8_percent_encode(id, SEGMENT).to_string()
}

/// The MIME type of an `.xlsx` workbook.
pub const XLSX_MIME: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

impl ConnectClient {
    /// `/contracts`
    pub fn contracts(&self) -> Collection<Contract> {
        Collection::new(self.clone(), "/contracts")
    }

    /// `/assets`
    pub fn assets(&self) -> Collection<Asset> {
        Collection::new(self.clone(), "/assets")
    }

    /// `/marketplaces`
    pub fn marketplaces(&self) -> Collection<Marketplace> {
        Collection::new(self.clone(), "/marketplaces")
    }

    /// `/products`
    pub fn products(&self) -> Collection<Product> {
        Collection::new(self.clone(), "/products")
    }

    /// `/products/{id}/items`
    pub fn product_items(&self, product_id: &str) -> Collection<Item> {
        Collection::new(
            self.clone(),
            format!("/products/{}/items", segment(product_id)),
        )
    }

    /// `/usage/files`
    pub fn usage_files(&self) -> Collection<UsageFile> {
        Collection::new(self.clone(), "/usage/files")
    }

    /// `/usage/records`
    pub fn usage_records(&self) -> Collection<UsageRecord> {
        Collection::new(self.clone(), "/usage/records")
    }

    pub async fn contract(&self, id: &str) -> Result<Contract, ConnectError> {
        self.get(&format!("/contracts/{}", segment(id))).await
    }

    pub async fn asset(&self, id: &str) -> Result<Asset, ConnectError> {
        self.get(&format!("/assets/{}", segment(id))).await
    }

    pub async fn marketplace(&self, id: &str) -> Result<Marketplace, ConnectError> {
        self.get(&format!("/marketplaces/{}", segment(id))).await
    }

    pub async fn product(&self, id: &str) -> Result<Product, ConnectError> {
        self.get(&format!("/products/{}", segment(id))).await
    }

    pub async fn usage_file(&self, id: &str) -> Result<UsageFile, ConnectError> {
        self.get(&usage_file_path(id, None)).await
    }

    pub async fn usage_record(&self, id: &str) -> Result<UsageRecord, ConnectError> {
        self.get(&format!("/usage/records/{}", segment(id))).await
    }

    /// `POST /usage/files`. Not retried once sent: on an error with
    /// [`ConnectError::outcome_unknown`], look the file up by its `external_id` before creating
    /// it again.
    pub async fn create_usage_file(&self, file: &NewUsageFile) -> Result<UsageFile, ConnectError> {
        self.post("/usage/files", Some(file)).await
    }

    /// `PUT /usage/files/{id}`: description, note, external id.
    pub async fn update_usage_file(
        &self,
        id: &str,
        update: &UsageFileUpdate,
    ) -> Result<UsageFile, ConnectError> {
        self.put(&usage_file_path(id, None), update).await
    }

    /// `POST /usage/files/{id}/upload` with the workbook in the multipart field `usage_file`.
    pub async fn upload_usage_file(
        &self,
        id: &str,
        filename: &str,
        workbook: Bytes,
    ) -> Result<UsageFile, ConnectError> {
        if workbook.is_empty() {
            return Err(ConnectError::invalid(format!(
                "refusing to upload an empty workbook to usage file {id}"
            )));
        }
        self.post_file(
            &usage_file_path(id, Some("upload")),
            "usage_file",
            filename.to_owned(),
            XLSX_MIME,
            workbook,
        )
        .await
    }

    /// `POST /usage/files/{id}/submit` (vendor): `ready` to `pending`.
    pub async fn submit_usage_file(&self, id: &str) -> Result<UsageFile, ConnectError> {
        self.usage_file_action(id, "submit", None).await
    }

    /// `POST /usage/files/{id}/accept` (provider): `pending` to `accepted`.
    pub async fn accept_usage_file(&self, id: &str, note: &str) -> Result<UsageFile, ConnectError> {
        self.usage_file_action(id, "accept", Some(json!({ "acceptance_note": note })))
            .await
    }

    /// `POST /usage/files/{id}/reject` (provider): `pending` to `rejected`.
    pub async fn reject_usage_file(&self, id: &str, note: &str) -> Result<UsageFile, ConnectError> {
        self.usage_file_action(id, "reject", Some(json!({ "rejection_note": note })))
            .await
    }

    /// `POST /usage/files/{id}/close` (provider): `accepted` to `closed`.
    pub async fn close_usage_file(&self, id: &str) -> Result<UsageFile, ConnectError> {
        self.usage_file_action(id, "close", None).await
    }

    /// `POST /usage/files/{id}/delete` (vendor): `draft`, `invalid` or `ready` to `deleted`.
    pub async fn delete_usage_file(&self, id: &str) -> Result<UsageFile, ConnectError> {
        self.usage_file_action(id, "delete", None).await
    }

    /// `PUT /usage/files/{id}/approve-all` (provider): approves every record, `pending` to
    /// `accepted`.
    pub async fn approve_all_usage_file(&self, id: &str) -> Result<UsageFile, ConnectError> {
        self.put_action(&usage_file_path(id, Some("approve-all")), None::<&()>)
            .await
    }

    /// `POST /usage/files/{id}/reprocess` (provider): regenerates the processed file.
    pub async fn reprocess_usage_file(&self, id: &str) -> Result<UsageFile, ConnectError> {
        self.usage_file_action(id, "reprocess", None).await
    }

    async fn usage_file_action(
        &self,
        id: &str,
        action: &str,
        body: Option<serde_json::Value>,
    ) -> Result<UsageFile, ConnectError> {
        self.post(&usage_file_path(id, Some(action)), body.as_ref())
            .await
    }

    /// `GET /usage/products/{id}/template`: a link to the product's usage workbook template.
    pub async fn usage_template(&self, product_id: &str) -> Result<UsageTemplate, ConnectError> {
        self.get(&format!("/usage/products/{}/template", segment(product_id)))
            .await
    }

    /// `POST /usage/records/close-records` (provider), answered 206 with a result per record.
    pub async fn close_usage_records(
        &self,
        records: &[CloseRecord],
    ) -> Result<Vec<CloseRecordResult>, ConnectError> {
        self.post("/usage/records/close-records", Some(records))
            .await
    }
}

fn usage_file_path(id: &str, action: Option<&str>) -> String {
    match action {
        Some(a) => format!("/usage/files/{}/{a}", segment(id)),
        None => format!("/usage/files/{}", segment(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_escape_their_path_segment() {
        assert_eq!(segment("UF-2024-04-0001-0001"), "UF-2024-04-0001-0001");
        assert_eq!(segment("../x?y#z"), "..%2Fx%3Fy%23z");
    }
}
