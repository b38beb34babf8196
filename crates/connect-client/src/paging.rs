//! Collections: RQL-filtered lists read page by page.
//!
//! Connect answers a list with a bare JSON array and `Content-Range: items F-L/TOTAL`. A
//! [`Collection`] pages with `limit`/`offset` until the header says the last item was seen.
//! Without the header (Connect's own Python client stops after the first page there) it reads
//! on until an empty page, whatever size the server chose for its pages, so nothing is lost;
//! a server that ignores `offset` and repeats a page is an error, not an endless loop.
//! `count()` asks with `limit=0`.

use std::marker::PhantomData;

use futures_util::stream::{self, Stream, StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use tracing::warn;

use super::client::ConnectClient;
use super::error::{ConnectError, ErrorKind, RequestLine};
use crate::rql::{Expr, Query};

/// The largest page Connect serves.
pub const MAX_PAGE_SIZE: u64 = 1000;
/// The page size used unless set otherwise.
pub const DEFAULT_PAGE_SIZE: u64 = 100;

/// A parsed `Content-Range: items F-L/TOTAL` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub first: u64,
    pub last: u64,
    pub total: u64,
}

impl ContentRange {
    /// Parses the header; `None` when it is malformed or `first > last`.
    pub fn parse(text: &str) -> Option<ContentRange> {
        let (unit, rest) = text.trim().split_once(' ')?;
        if unit != "items" {
            return None;
        }
        let (span, total) = rest.trim().split_once('/')?;
        let (first, last) = span.split_once('-')?;
        let range = ContentRange {
            first: first.trim().parse().ok()?,
            last: last.trim().parse().ok()?,
            total: total.trim().parse().ok()?,
        };
        (range.first <= range.last).then_some(range)
    }

    /// Whether items after this page remain.
    pub fn has_more(&self) -> bool {
        self.last.saturating_add(1) < self.total
    }
}

impl std::fmt::Display for ContentRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "items {}-{}/{}", self.first, self.last, self.total)
    }
}

/// One page of a collection.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// `None` when the server sent no `Content-Range`.
    pub range: Option<ContentRange>,
    /// A hash of the answer's body, to notice a server that repeats a page.
    pub(crate) body_hash: u64,
}

/// A collection endpoint with its query. Build it from the client (`client.assets()`), narrow
/// it with `filter`/`select`/`order_by`/`search`, then `stream()`, `all()` or `count()` it.
pub struct Collection<T> {
    client: ConnectClient,
    path: String,
    query: Query,
    page_size: u64,
    _item: PhantomData<fn() -> T>,
}

impl<T> Clone for Collection<T> {
    fn clone(&self) -> Self {
        Collection {
            client: self.client.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            page_size: self.page_size,
            _item: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Collection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("path", &self.path)
            .field("query", &self.query)
            .field("page_size", &self.page_size)
            .finish()
    }
}

impl<T: DeserializeOwned + Send + 'static> Collection<T> {
    pub fn new(client: ConnectClient, path: impl Into<String>) -> Collection<T> {
        Collection {
            client,
            path: path.into(),
            query: Query::new(),
            page_size: DEFAULT_PAGE_SIZE,
            _item: PhantomData,
        }
    }

    /// Narrows the collection (AND with any filter already set).
    pub fn filter(mut self, expr: Expr) -> Self {
        self.query = self.query.filter(expr);
        self
    }

    pub fn select<S: AsRef<str>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.query = self.query.select(fields);
        self
    }

    pub fn order_by<S: AsRef<str>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.query = self.query.order_by(fields);
        self
    }

    pub fn search(mut self, text: impl Into<String>) -> Self {
        self.query = self.query.search(text);
        self
    }

    /// Items per request, 1 to [`MAX_PAGE_SIZE`].
    pub fn page_size(mut self, size: u64) -> Self {
        self.page_size = size.clamp(1, MAX_PAGE_SIZE);
        self
    }

    pub fn query(&self) -> &Query {
        &self.query
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// One page at `offset` with `limit` items.
    pub async fn page(&self, limit: u64, offset: u64) -> Result<Page<T>, ConnectError> {
        self.client
            .get_page(&self.path, &self.query, limit, offset)
            .await
    }

    /// How many items match, with one `limit=0` request.
    pub async fn count(&self) -> Result<u64, ConnectError> {
        let page: Page<serde_json::Value> =
            self.client.get_page(&self.path, &self.query, 0, 0).await?;
        page.range.map(|r| r.total).ok_or_else(|| {
            ConnectError::new(
                Some(RequestLine {
                    method: reqwest::Method::GET,
                    path: self.path.clone(),
                }),
                ErrorKind::Decode {
                    reason: "no Content-Range header in the answer to a count (limit=0)".into(),
                },
            )
        })
    }

    /// The first matching item, if any.
    pub async fn first(&self) -> Result<Option<T>, ConnectError> {
        Ok(self.page(1, 0).await?.items.into_iter().next())
    }

    /// Every matching item, page by page as the stream is read.
    pub fn stream(&self) -> impl Stream<Item = Result<T, ConnectError>> + Send + 'static {
        let this = self.clone();
        let limit = self.page_size;
        // (next offset, hash of the previous page without Content-Range)
        stream::try_unfold(Some((0u64, None::<u64>)), move |next| {
            let this = this.clone();
            async move {
                let Some((offset, previous)) = next else {
                    return Ok::<_, ConnectError>(None);
                };
                let page = this.page(limit, offset).await?;
                let got = page.items.len() as u64;
                let next = match page.range {
                    Some(range) => (got > 0 && range.has_more()).then(|| (offset + got, None)),
                    None if got == 0 => None,
                    None => {
                        if previous == Some(page.body_hash) {
                            return Err(ConnectError::new(
                                Some(RequestLine {
                                    method: reqwest::Method::GET,
                                    path: this.path.clone(),
                                }),
                                ErrorKind::Decode {
                                    reason: format!(
                                        "the server sent the same page for offset {offset} as for the one before, without Content-Range: it ignores offset"
                                    ),
                                },
                            ));
                        }
                        if previous.is_none() {
                            warn!(path = %this.path, "no Content-Range; reading on until an empty page");
                        }
                        Some((offset + got, Some(page.body_hash)))
                    }
                };
                Ok(Some((page.items, next)))
            }
        })
        .map_ok(|items| stream::iter(items.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    /// Every matching item, collected.
    pub async fn all(&self) -> Result<Vec<T>, ConnectError> {
        self.stream().try_collect().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_range() {
        assert_eq!(
            ContentRange::parse("items 0-99/250"),
            Some(ContentRange {
                first: 0,
                last: 99,
                total: 250
            })
        );
        assert_eq!(
            ContentRange::parse("items 0-0/0"),
            Some(ContentRange {
                first: 0,
                last: 0,
                total: 0
            })
        );
        assert_eq!(ContentRange::parse("bytes 0-1/2"), None);
        assert_eq!(ContentRange::parse("items 5-4/10"), None);
        let huge = ContentRange::parse("items 0-18446744073709551615/5").expect("parses");
        assert!(!huge.has_more(), "no overflow");
        assert!(ContentRange::parse("items 0-9/11").is_some_and(|r| r.has_more()));
        assert!(ContentRange::parse("items 0-0/0").is_some_and(|r| !r.has_more()));
        assert_eq!(ContentRange::parse("items 0-x/2"), None);
        assert_eq!(ContentRange::parse(""), None);
        assert_eq!(
            ContentRange::parse("items 5-9/10").map(|r| r.to_string()),
            Some("items 5-9/10".into())
        );
    }
}
