//! The operator's endpoint (`METRICS_ADDRESS`): `/metrics` in the Prometheus text exposition
//! format, `/healthz` (200 while the process runs: a liveness probe) and `/readyz` (200 only
//! while the program can do its work, 503 with the reason otherwise: a readiness probe).
//!
//! Its own small HTTP server on its own port, so a scrape never competes with the work and
//! the port can stay inside the cluster.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Whether the program is ready, and if not, why (shown in `/readyz`'s answer).
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProbeServerError {
    #[error(
        "METRICS_ADDRESS {0:?} is not an address to listen on: give host:port, \
         e.g. 0.0.0.0:9102 (or 127.0.0.1:9102 for this machine only)"
    )]
    BadAddress(String),
    #[error(
        "cannot listen on METRICS_ADDRESS {address}: {reason} (another program may hold the \
         port; choose another one)"
    )]
    Bind { address: String, reason: String },
}

/// Binds `address` (`host:port`; a host name is resolved).
pub async fn bind(address: &str) -> Result<TcpListener, ProbeServerError> {
    let address = address.trim();
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(address)
        .await
        .map_err(|_| ProbeServerError::BadAddress(address.to_owned()))?
        .collect();
    let Some(first) = addrs.first() else {
        return Err(ProbeServerError::BadAddress(address.to_owned()));
    };
    TcpListener::bind(first)
        .await
        .map_err(|e| ProbeServerError::Bind {
            address: address.to_owned(),
            reason: e.to_string(),
        })
}

/// Serves the endpoint on `listener` until the process ends. The caller registers the
/// families it wants shown before they first count.
pub fn serve(listener: TcpListener, readiness: Readiness) -> JoinHandle<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move {
                    match readiness() {
                        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
                        Err(why) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {why}\n"),
                        ),
                    }
                }
            }),
        );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    })
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            connect_client::exposition::TEXT_CONTENT_TYPE,
        )],
        connect_client::exposition::exposition(),
    )
}
