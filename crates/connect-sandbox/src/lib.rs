//! The sandbox: a local emulator of the Connect REST API subset connect-usage uses, faithful
//! enough that Connect's own clients work against it unchanged. It stands on its own: it uses
//! the Connect client's models, RQL and secrets, never the reporting pipeline or the runner.
//!
//! - [`server`]: the axum application, its shared state and the [`Sandbox`] handle that tests
//!   start on `127.0.0.1:0`.
//! - [`dataset`]: the vendor account it serves (the built-in [`dataset::default_account`], or
//!   JSON from `--data`).
//! - [`api`] and [`usage_api`]: the endpoints; [`usage_files`]: the usage file state machine
//!   they act through; [`query`] and [`filters`] run RQL queries the way Connect's server
//!   does; [`processing`] reads and checks uploaded workbooks; [`workbooks`] builds the ones
//!   served for download.
//! - [`usage_universe`]: the vendor's usage, generated for the dataset; [`vendor_api`]: the
//!   vendor's usage API serving it;
//!   [`vendor_exports`]: the same usage as monthly export files (CSV, JSON Lines, Parquet) in
//!   the formats of [`export_formats`]; the months and timestamps of `connect_client`.
//! - [`platform`] and [`devops_api`]: Connect's EaaS platform side: the runner websocket,
//!   tasks from usage file events and schedules, and the DevOps endpoints runners read.
//! - [`provider`]: the provider's answers to submitted files (accept, or reject with a note).
//! - [`log_listener`]: Connect's log service (a Logz.io bulk listener) that runners ship
//!   their log records to.
//! - [`faults`] and [`admin`]: injected failures (HTTP and websocket) and the `/sandbox/...`
//!   API that controls and inspects it all.

pub mod admin;
pub mod api;
pub mod dataset;
pub mod devops_api;
pub mod error;
pub mod export_formats;
pub mod faults;
pub mod filters;
pub mod log_listener;
pub mod platform;
pub mod processing;
pub mod provider;
pub mod query;
pub mod server;
pub mod splitmix;
pub mod store;
pub mod summary;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub mod usage_api;
pub mod usage_files;
pub mod usage_universe;
pub mod vendor_api;
pub mod vendor_exports;
pub mod workbooks;

pub use dataset::{Dataset, DatasetError, Role};
pub use faults::{FaultAction, FaultRule};
pub use provider::{ProviderPolicy, RejectRule};
pub use server::{API_PREFIX, RuntimeConfig, Sandbox, SandboxConfig, SandboxState};
