//! A client for CloudBlue Connect's REST API.
//!
//! [`ConnectClient`] talks to `https://api.connect.cloudblue.com/public/v1` in production and to
//! any server that speaks the same API (the `connect-sandbox` emulator in tests). Collections are RQL-filtered async streams
//! ([`Collection`]); errors carry Connect's `error_code` and `errors` ([`ConnectError`]); GETs
//! are retried with backoff ([`RetryPolicy`]) while POSTs never are once they may have been
//! applied.
//!
//! - [`rql`]: RQL expressions, rendered by the client and parsed by servers that emulate it.
//! - [`secret`]: values that never show in logs or `Debug`.
//! - [`month`]: the calendar month usage is reported by; [`utc`]: timestamps read in UTC.
//! - [`error_text`]: an error and its causes in one line, each said once.
//! - [`metrics`]: what the client counts (`connect_api_*`); [`exposition`]: how a family is
//!   declared in Prometheus' default registry and how all are written out.

pub mod auth;
pub mod client;
pub mod error;
pub mod error_text;
pub mod exposition;
pub mod metrics;
pub mod models;
pub mod month;
pub mod paging;
pub mod resources;
pub mod retry;
pub mod rql;
pub mod secret;
pub mod utc;

pub use auth::{ApiKey, ApiKeyError};
pub use client::{
    ClientBuilder, ConnectClient, DEFAULT_BASE_URL, api_base_url, install_crypto_provider,
};
pub use error::{ConnectError, ErrorKind, RequestLine};
pub use paging::{Collection, ContentRange, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page};
pub use resources::XLSX_MIME;
pub use retry::RetryPolicy;
