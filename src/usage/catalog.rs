//! Everything a run needs to know from Connect, fetched once per run in batched queries:
//! active distribution contracts, the assets the usage names (by id or by `external_uid`, in
//! `in(...)` lists chunked to keep URLs short), their products and PPU items, and the
//! contracts' marketplaces (for the currency). No per-record calls.

use std::collections::{BTreeSet, HashMap};

use futures_util::{StreamExt, TryStreamExt, stream};

use connect_client::models::{Asset, Contract, Item, Marketplace, Product};
use connect_client::rql::Expr;
use connect_client::{ConnectClient, ConnectError};

/// Ids per `in(...)` list: about 2 KB of URL.
pub const CHUNK: usize = 100;
/// Requests in flight while loading.
const PARALLEL: usize = 4;

/// The contract id of preview assets.
pub const PREVIEW_CONTRACT: &str = "CRD-00000-00000-00000";

/// What the run knows of Connect.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    /// Active distribution contracts by id.
    pub contracts: HashMap<String, Contract>,
    /// Assets found, by id.
    pub assets: HashMap<String, Asset>,
    /// Asset ids by `external_uid` (several assets may share one).
    pub assets_by_uid: HashMap<String, Vec<String>>,
    pub products: HashMap<String, Product>,
    /// Items of each QT product, by product id.
    pub items: HashMap<String, Vec<Item>>,
    pub marketplaces: HashMap<String, Marketplace>,
}

/// Does this look like an asset id (`AS-####-####-####`)?
pub fn looks_like_asset_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 17
        && s.starts_with("AS-")
        && b[7] == b'-'
        && b[12] == b'-'
        && b.iter()
            .enumerate()
            .skip(3)
            .all(|(i, c)| matches!(i, 7 | 12) || c.is_ascii_digit())
}

/// The products with these ids, in batched queries.
pub(crate) async fn products_by_id(
    client: &ConnectClient,
    ids: &BTreeSet<String>,
) -> Result<Vec<Product>, ConnectError> {
    let client = client.clone();
    in_chunks(ids, move |chunk| {
        let c = client.clone();
        Box::pin(async move {
            c.products()
                .filter(Expr::in_("id", chunk))
                .page_size(1000)
                .all()
                .await
        })
    })
    .await
}

/// The assets whose `field` is one of `values` and that match `also`, without their items and
/// parameters (a run needs neither), in batched queries.
pub(crate) async fn assets_where(
    client: &ConnectClient,
    field: &'static str,
    values: &BTreeSet<String>,
    also: Option<Expr>,
) -> Result<Vec<Asset>, ConnectError> {
    let client = client.clone();
    in_chunks(values, move |chunk| {
        let c = client.clone();
        let filter = match also.clone() {
            Some(also) => Expr::in_(field, chunk) & also,
            None => Expr::in_(field, chunk),
        };
        Box::pin(async move {
            c.assets()
                .filter(filter)
                .select(["-items", "-params"])
                .page_size(1000)
                .all()
                .await
        })
    })
    .await
}

/// Fetches `ids` in `in(...)` lists of [`CHUNK`], a few requests at once.
pub(crate) async fn in_chunks<T, F>(
    ids: &BTreeSet<String>,
    fetch: F,
) -> Result<Vec<T>, ConnectError>
where
    F: Fn(Vec<String>) -> futures_util::future::BoxFuture<'static, Result<Vec<T>, ConnectError>>,
{
    let chunks: Vec<Vec<String>> = ids
        .iter()
        .cloned()
        .collect::<Vec<_>>()
        .chunks(CHUNK)
        .map(<[String]>::to_vec)
        .collect();
    let pages: Vec<Vec<T>> = stream::iter(chunks.into_iter().map(fetch))
        .buffered(PARALLEL)
        .try_collect()
        .await?;
    Ok(pages.into_iter().flatten().collect())
}

impl Catalog {
    /// Loads what `subscriptions` (asset ids or external uids) need.
    pub async fn load(
        client: &ConnectClient,
        subscriptions: impl IntoIterator<Item = String>,
    ) -> Result<Catalog, ConnectError> {
        let (ids, uids): (BTreeSet<String>, BTreeSet<String>) = {
            let mut ids = BTreeSet::new();
            let mut uids = BTreeSet::new();
            for s in subscriptions {
                if looks_like_asset_id(&s) {
                    ids.insert(s);
                } else {
                    uids.insert(s);
                }
            }
            (ids, uids)
        };
        let mut catalog = Catalog::default();
        for c in client
            .contracts()
            .filter(Expr::eq("type", "distribution") & Expr::eq("status", "active"))
            .page_size(1000)
            .all()
            .await?
        {
            catalog.contracts.insert(c.id.clone(), c);
        }

        for a in assets_where(client, "id", &ids, None).await? {
            catalog.assets.insert(a.id.clone(), a);
        }
        // An id-shaped reference the id lookup missed may still be somebody's external uid.
        let uids: BTreeSet<String> = uids
            .into_iter()
            .chain(
                ids.iter()
                    .filter(|i| !catalog.assets.contains_key(*i))
                    .cloned(),
            )
            .collect();
        for a in assets_where(client, "external_uid", &uids, None).await? {
            if let Some(uid) = a.external_uid.clone() {
                let ids = catalog.assets_by_uid.entry(uid).or_default();
                if !ids.contains(&a.id) {
                    ids.push(a.id.clone());
                }
            }
            catalog.assets.insert(a.id.clone(), a);
        }

        let product_ids: BTreeSet<String> = catalog
            .assets
            .values()
            .map(|a| a.product.id.clone())
            .collect();
        let products = products_by_id(client, &product_ids).await?;
        for p in products {
            catalog.products.insert(p.id.clone(), p);
        }

        let qt: Vec<String> = catalog
            .products
            .values()
            .filter(|p| p.is_qt())
            .map(|p| p.id.clone())
            .collect();
        let items: Vec<(String, Vec<Item>)> = stream::iter(qt.into_iter().map(|id| {
            let c = client.clone();
            async move {
                let items = c.product_items(&id).page_size(1000).all().await?;
                Ok::<_, ConnectError>((id, items))
            }
        }))
        .buffered(PARALLEL)
        .try_collect()
        .await?;
        catalog.items.extend(items);

        let marketplace_ids: BTreeSet<String> = catalog
            .contracts
            .values()
            .filter_map(|c| c.marketplace.as_ref().map(|m| m.id.clone()))
            .collect();
        let marketplaces = {
            let client = client.clone();
            in_chunks(&marketplace_ids, move |chunk| {
                let c = client.clone();
                Box::pin(async move {
                    c.marketplaces()
                        .filter(Expr::in_("id", chunk))
                        .page_size(1000)
                        .all()
                        .await
                })
            })
            .await?
        };
        for m in marketplaces {
            catalog.marketplaces.insert(m.id.clone(), m);
        }
        Ok(catalog)
    }

    /// The assets a usage record's subscription reference may name: the asset with that id,
    /// else every asset with that `external_uid`.
    pub fn assets_for(&self, subscription: &str) -> Vec<&Asset> {
        if let Some(a) = self.assets.get(subscription) {
            return vec![a];
        }
        self.assets_by_uid
            .get(subscription)
            .into_iter()
            .flatten()
            .filter_map(|id| self.assets.get(id))
            .collect()
    }

    /// The currency of a contract's marketplace.
    pub fn currency(&self, contract: &str) -> Option<String> {
        let mp = self.contracts.get(contract)?.marketplace.as_ref()?;
        self.marketplaces.get(&mp.id)?.currency.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_ids_are_recognised() {
        assert!(looks_like_asset_id("AS-1234-5678-9012"));
        for not in [
            "AS-1234-5678-901",
            "as-1234-5678-9012",
            "AS-1234-5678-90x2",
            "3f2a-uuid",
            "AS-12345678-9012",
        ] {
            assert!(!looks_like_asset_id(not), "{not}");
        }
    }
}
