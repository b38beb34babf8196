//! The read-only collections of the dataset: contracts, assets (also as
//! `subscriptions/assets`), marketplaces, products and their items.

use axum::Json;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use super::dataset::{Dataset, PREVIEW_CONTRACT_ID};
use super::error::ApiError;
use super::filters::{
    ASSETS_DEF, CONTRACTS_DEF, CollectionDef, ITEMS_DEF, MARKETPLACES_DEF, PRODUCTS_DEF,
    SUBSCRIPTION_ASSETS_DEF,
};
use super::query::CollectionQuery;
use super::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/contracts", get(list_contracts))
        .route("/contracts/{id}", get(get_contract))
        .route("/assets", get(list_assets))
        .route("/assets/{id}", get(get_asset))
        .route("/subscriptions/assets", get(list_subscription_assets))
        .route("/subscriptions/assets/{id}", get(get_asset))
        .route("/marketplaces", get(list_marketplaces))
        .route("/marketplaces/{id}", get(get_marketplace))
        .route("/products", get(list_products))
        .route("/products/{id}", get(get_product))
        .route("/products/{id}/items", get(list_items))
        .route("/products/{id}/items/{item}", get(get_item))
}

/// Runs `query` over a dataset collection chosen by `pick`.
fn list(
    app: &AppState,
    def: &CollectionDef,
    query: Option<String>,
    pick: impl FnOnce(&Dataset) -> Vec<Value>,
) -> Result<Response, ApiError> {
    let q = CollectionQuery::parse(def, query.as_deref(), app.config().limits())?;
    let objects = pick(app.dataset());
    Ok(q.run(objects).into_response())
}

fn find(objects: &[Value], id: &str, what: &str) -> Result<Json<Value>, ApiError> {
    objects
        .iter()
        .find(|o| o["id"] == id)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(what, id))
}

fn require_product(app: &AppState, id: &str) -> Result<(), ApiError> {
    if app.dataset().products.iter().any(|p| p["id"] == id) {
        Ok(())
    } else {
        Err(ApiError::not_found("Product", id))
    }
}

async fn list_contracts(
    State(app): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    list(&app, &CONTRACTS_DEF, q, |d| d.contracts.clone())
}

async fn get_contract(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if id == PREVIEW_CONTRACT_ID {
        return Err(ApiError::not_found("Contract", &id));
    }
    find(&app.dataset().contracts, &id, "Contract")
}

async fn list_assets(
    State(app): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    list(&app, &ASSETS_DEF, q, |d| d.assets.clone())
}

async fn list_subscription_assets(
    State(app): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    list(&app, &SUBSCRIPTION_ASSETS_DEF, q, |d| d.assets.clone())
}

async fn get_asset(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    find(&app.dataset().assets, &id, "Asset")
}

async fn list_marketplaces(
    State(app): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    list(&app, &MARKETPLACES_DEF, q, |d| d.marketplaces.clone())
}

async fn get_marketplace(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    find(&app.dataset().marketplaces, &id, "Marketplace")
}

async fn list_products(
    State(app): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    list(&app, &PRODUCTS_DEF, q, |d| d.products.clone())
}

async fn get_product(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    find(&app.dataset().products, &id, "Product")
}

async fn list_items(
    State(app): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    require_product(&app, &id)?;
    list(&app, &ITEMS_DEF, q, |d| {
        d.items.get(&id).cloned().unwrap_or_default()
    })
}

async fn get_item(
    State(app): State<AppState>,
    Path((id, item)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    require_product(&app, &id)?;
    let items = app.dataset().items.get(&id).cloned().unwrap_or_default();
    find(&items, &item, "Item")
}
