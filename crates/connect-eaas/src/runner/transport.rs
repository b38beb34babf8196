//! Opening the websocket: TCP (directly or through an HTTP CONNECT proxy), TLS for `wss://`,
//! the upgrade request with the `Authorization` header, and the socket limits.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::backoff::FailureKind;
use super::config::RunnerConfig;
use super::metrics::ReconnectReason;
use connect_client::secret::Secret;

/// The socket of a session.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The largest message the runner acts on (2 MiB, Connect's limit). Larger ones are ignored.
pub const MAX_MESSAGE: usize = 2 * 1024 * 1024;

/// The largest message the socket reads before giving up on the connection. Above
/// [`MAX_MESSAGE`] so an oversized frame is read and ignored rather than ending the session.
pub const SOCKET_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Why a connection attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectFailure {
    #[error("the platform answered the upgrade with HTTP {status}{}", hint(*status))]
    Status { status: u16 },
    #[error("{0}")]
    Other(String),
}

/// What a person can do about an upgrade answered with `status`.
fn hint(status: u16) -> &'static str {
    match status {
        401 | 403 => {
            " (API_KEY is not accepted for this environment: check API_KEY and ENVIRONMENT_ID)"
        }
        404 => " (no such environment: check ENVIRONMENT_ID)",
        502 => " (Connect is in maintenance)",
        _ => "",
    }
}

impl ConnectFailure {
    /// The one classification of a failed attempt: the metric's `reason`, the back-off's
    /// curve and the log's level all follow from it.
    pub fn reason(&self) -> ReconnectReason {
        match self {
            ConnectFailure::Status { status: 401 | 403 } => ReconnectReason::Refused,
            ConnectFailure::Status { status: 502 } => ReconnectReason::Maintenance,
            ConnectFailure::Status { .. } => ReconnectReason::HttpError,
            ConnectFailure::Other(_) => ReconnectReason::Failed,
        }
    }

    /// Which back-off curve the next attempt waits on: maintenance has its own budget.
    pub fn kind(&self) -> FailureKind {
        match self.reason() {
            ReconnectReason::Maintenance => FailureKind::Maintenance,
            _ => FailureKind::Generic,
        }
    }
}

/// Opens and upgrades the connection to `url`.
pub async fn open(config: &RunnerConfig, url: &str) -> Result<Socket, ConnectFailure> {
    connect_client::install_crypto_provider();
    let mut request = url
        .into_client_request()
        .map_err(|e| ConnectFailure::Other(format!("bad websocket URL: {e}")))?;
    let mut auth = HeaderValue::from_str(config.api_key_header.expose())
        .map_err(|_| ConnectFailure::Other("API_KEY is not a valid header value".into()))?;
    auth.set_sensitive(true);
    request.headers_mut().insert("authorization", auth);
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(SOCKET_MAX_MESSAGE))
        .max_frame_size(Some(SOCKET_MAX_MESSAGE));
    let host = config.server_host.clone();
    let target = if host.contains(':') && !host.ends_with(']') {
        host
    } else {
        format!("{host}:{}", if config.secure { 443 } else { 80 })
    };
    let attempt = async {
        let stream = match config.proxy() {
            Some(proxy) => tunnel(proxy, &target).await?,
            None => TcpStream::connect(&target)
                .await
                .map_err(|e| ConnectFailure::Other(format!("cannot connect to {target}: {e}")))?,
        };
        let _ = stream.set_nodelay(true);
        tokio_tungstenite::client_async_tls_with_config(request, stream, Some(ws_config), None)
            .await
            .map(|(socket, _response)| socket)
            .map_err(upgrade_failure)
    };
    match tokio::time::timeout(config.timings.connect_timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(ConnectFailure::Other(format!(
            "no upgrade within {} s",
            config.timings.connect_timeout.as_secs_f64()
        ))),
    }
}

fn upgrade_failure(e: tokio_tungstenite::tungstenite::Error) -> ConnectFailure {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::Http(resp) => ConnectFailure::Status {
            status: resp.status().as_u16(),
        },
        other => ConnectFailure::Other(format!("websocket upgrade failed: {other}")),
    }
}

/// Opens a tunnel to `target` through an HTTP proxy with `CONNECT`.
async fn tunnel(proxy: &str, target: &str) -> Result<TcpStream, ConnectFailure> {
    let shown = super::config::redact_proxy(proxy);
    let url = reqwest::Url::parse(proxy)
        .map_err(|e| ConnectFailure::Other(format!("bad proxy URL {shown}: {e}")))?;
    let host = url
        .host_str()
        .ok_or_else(|| ConnectFailure::Other(format!("proxy URL {shown} has no host")))?;
    let port = url.port_or_known_default().unwrap_or(3128);
    let mut stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| ConnectFailure::Other(format!("cannot connect to proxy {shown}: {e}")))?;
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if !url.username().is_empty() {
        let user = percent_encoding::percent_decode_str(url.username()).decode_utf8_lossy();
        let pass = url
            .password()
            .map(|p| {
                percent_encoding::percent_decode_str(p)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .unwrap_or_default();
        let credentials = Secret::new(base64(format!("{user}:{pass}").as_bytes()));
        req.push_str(&format!(
            "Proxy-Authorization: Basic {}\r\n",
            credentials.expose()
        ));
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| ConnectFailure::Other(format!("proxy {shown}: {e}")))?;
    // Read the answer's head byte by byte: nothing after it may be consumed.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 {
            return Err(ConnectFailure::Other(format!(
                "proxy {shown}: answer head too long"
            )));
        }
        let b = stream
            .read_u8()
            .await
            .map_err(|e| ConnectFailure::Other(format!("proxy {shown}: {e}")))?;
        head.push(b);
    }
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or_default();
    let code = status_line.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" {
        return Err(ConnectFailure::Other(format!(
            "proxy {shown} refused the tunnel to {target}: {status_line}"
        )));
    }
    Ok(stream)
}

fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(TABLE[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Waits at most `limit` for `fut`.
pub async fn within<T>(limit: Duration, fut: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::time::timeout(limit, fut).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_encodes() {
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn failures_are_classified() {
        let status = |status| ConnectFailure::Status { status };
        assert_eq!(status(401).reason(), ReconnectReason::Refused);
        assert_eq!(status(403).reason(), ReconnectReason::Refused);
        assert_eq!(status(502).reason(), ReconnectReason::Maintenance);
        assert_eq!(status(503).reason(), ReconnectReason::HttpError);
        assert_eq!(
            ConnectFailure::Other("cannot connect".into()).reason(),
            ReconnectReason::Failed
        );
        assert_eq!(status(502).kind(), FailureKind::Maintenance);
        assert_eq!(status(401).kind(), FailureKind::Generic);
        assert!(status(403).to_string().contains("API_KEY"));
        assert!(status(404).to_string().contains("ENVIRONMENT_ID"));
    }
}
