//! What every log output of the program lets through, whatever level a person asks for.
//!
//! The websocket library logs, at trace level, the upgrade request (with its
//! `Authorization` header) and every frame (tasks carry API keys, setup responses secure
//! variables). Its trace records are dropped before any formatter sees them; its debug and
//! higher records carry no secret.

use tracing::{Level, Metadata};

/// Whether a log record may be written.
pub fn allows(meta: &Metadata<'_>) -> bool {
    !(meta.target().starts_with("tungstenite") && *meta.level() > Level::DEBUG)
}

/// [`allows`] as a layer for a `tracing_subscriber` registry.
pub fn secret_safe_filter() -> tracing_subscriber::filter::FilterFn<fn(&Metadata<'_>) -> bool> {
    tracing_subscriber::filter::FilterFn::new(allows as fn(&Metadata<'_>) -> bool)
}
