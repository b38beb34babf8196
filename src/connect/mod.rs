//! The Connect REST API client.
//!
//! [`ConnectClient`] talks to `https://api.connect.cloudblue.com/public/v1` in production and to
//! the [sandbox](crate::sandbox) in tests. Collections are RQL-filtered async streams
//! ([`Collection`]); errors carry Connect's `error_code` and `errors` ([`ConnectError`]); GETs
//! are retried with backoff ([`RetryPolicy`]) while POSTs never are once they may have been
//! applied.

pub mod auth;
pub mod client;
pub mod error;
pub mod metrics;
pub mod models;
pub mod paging;
pub mod resources;
pub mod retry;

pub use auth::{ApiKey, ApiKeyError};
pub use client::{
    ClientBuilder, ConnectClient, DEFAULT_BASE_URL, api_base_url, install_crypto_provider,
};
pub use error::{ConnectError, ErrorKind, RequestLine};
pub use paging::{Collection, ContentRange, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page};
pub use resources::XLSX_MIME;
pub use retry::RetryPolicy;
