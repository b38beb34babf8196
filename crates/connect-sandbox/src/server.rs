//! The sandbox's HTTP server: shared state, the middleware every API request passes (request
//! log, injected faults, API key), the router, and the handle tests use to start and stop it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;
use tower::Layer;
use tower_http::normalize_path::NormalizePathLayer;
use tracing::{debug, info};

use super::dataset::{Dataset, Role};
use super::error::{ApiError, codes};
use super::faults::{FaultRule, Faults, InvalidUploadFault};
use super::log_listener::{self, LogListener};
use super::platform::Platform;
use super::provider::{Provider, ProviderPolicy};
use super::query::PagingLimits;
use super::store::{Actor, RequestEntry, SandboxEvent, Store, timestamp};
use super::tls::TlsFiles;
use super::usage_universe::UsageUniverse;
use super::{admin, api, devops_api, usage_api, vendor_api, vendor_exports};
use connect_client::ApiKey;
use connect_client::secret::Secret;

/// The API prefix, as on Connect.
pub const API_PREFIX: &str = "/public/v1";

/// Behaviour switches, changeable at run time through `/sandbox/config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Time from upload to `ready`/`invalid`; 0 processes before answering the upload.
    pub processing_delay_ms: u64,
    /// Status of a successful upload: 200 (the spec) or 201 (what older SDKs expect).
    pub upload_status: u16,
    /// Leave `deleted` files out of `/usage/files` lists.
    pub hide_deleted: bool,
    /// `close` needs every record to carry an external billing id.
    pub require_billing_id_to_close: bool,
    /// Page size when a list request has no `limit`.
    pub default_limit: u64,
    /// Largest page; larger limits are clamped.
    pub max_limit: u64,
    /// Added to every API request.
    pub latency_ms: u64,
    /// Usage records the vendor API serves per month.
    pub usage_records: u64,
    /// Share of those records (0.0 to 1.0) that are defective in some way (unknown
    /// subscription, negative quantity, wrong item, outside the month, ...).
    pub usage_bad_records: f64,
    /// Spread the records over only the first this many billable subscriptions (0: all of
    /// them): 1 puts a whole month into one contract and product, to try groups larger
    /// than a usage file holds.
    pub usage_subscriptions: u64,
    /// Leave this many of a month's billable subscriptions (evenly spread over them, so over
    /// several contracts and products) without any usage record, as a vendor's system that
    /// forgot some customers would: what the monthly run's coverage check is for.
    /// `GET /sandbox/vendor/uncovered?period=YYYY-MM` names the subscriptions without usage.
    pub usage_uncovered_subscriptions: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            processing_delay_ms: 0,
            upload_status: 200,
            hide_deleted: false,
            require_billing_id_to_close: false,
            default_limit: 100,
            max_limit: 1000,
            latency_ms: 0,
            usage_records: 1200,
            usage_bad_records: 0.0,
            usage_subscriptions: 0,
            usage_uncovered_subscriptions: 0,
        }
    }
}

impl RuntimeConfig {
    pub fn check(&self) -> Result<(), String> {
        if !matches!(self.upload_status, 200 | 201) {
            return Err(format!(
                "upload_status must be 200 or 201, not {}",
                self.upload_status
            ));
        }
        if !(0.0..=1.0).contains(&self.usage_bad_records) {
            return Err(format!(
                "usage_bad_records must be between 0 and 1, not {}",
                self.usage_bad_records
            ));
        }
        if self.max_limit == 0 || self.default_limit == 0 {
            return Err("default_limit and max_limit must be at least 1".into());
        }
        Ok(())
    }

    pub fn limits(&self) -> PagingLimits {
        PagingLimits {
            default_limit: self.default_limit,
            max_limit: self.max_limit,
        }
    }
}

/// How to start a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    pub dataset: Dataset,
    pub runtime: RuntimeConfig,
    pub faults: Vec<FaultRule>,
    /// Seed of the fault rates' random source, for reproducible runs.
    pub seed: u64,
    /// The bearer token of the vendor usage API.
    pub usage_token: Secret,
    /// Serve https and wss with this certificate (plain http and ws without).
    pub tls: Option<TlsFiles>,
    /// How the sandbox's provider answers submitted files.
    pub provider: ProviderPolicy,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            dataset: Dataset::default_account(),
            runtime: RuntimeConfig::default(),
            faults: Vec::new(),
            seed: 0x5A4D_B0C5,
            usage_token: Secret::new(vendor_api::DEFAULT_TOKEN),
            tls: None,
            provider: ProviderPolicy::default(),
        }
    }
}

/// Everything the handlers share.
pub struct SandboxState {
    store: Mutex<Store>,
    config: Mutex<RuntimeConfig>,
    faults: Mutex<Faults>,
    initial: Dataset,
    keys: HashMap<String, Actor>,
    events: broadcast::Sender<SandboxEvent>,
    usage_token: Secret,
    usage_universe: UsageUniverse,
    platform: Platform,
    /// The vendor account the extension belongs to.
    platform_account: String,
    provider: Mutex<Provider>,
    log_listener: LogListener,
}

impl std::fmt::Debug for SandboxState {
    /// A summary: the key table is indexed by the keys themselves, so it is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.keys.values().map(|a| a.key_name.as_str()).collect();
        names.sort_unstable();
        // try_lock: a Debug print must never wait for (or deadlock with) a held guard.
        let mut d = f.debug_struct("SandboxState");
        match self.store.try_lock() {
            Ok(store) => d
                .field("files", &store.files.len())
                .field("events", &store.events.len())
                .field("requests", &store.requests.len()),
            Err(_) => d.field("store", &"<locked>"),
        };
        if let Ok(config) = self.config.try_lock() {
            d.field("config", &*config);
        }
        if let Ok(faults) = self.faults.try_lock() {
            d.field("fault_rules", &faults.rules().len());
        }
        d.field("keys", &names).finish()
    }
}

/// Locks a mutex, taking the data even if a panicking thread poisoned it: the sandbox's state
/// stays usable for the tests that inspect it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SandboxState {
    pub fn new(
        dataset: Dataset,
        runtime: RuntimeConfig,
        seed: u64,
        usage_token: Secret,
    ) -> SandboxState {
        let mut keys = HashMap::new();
        for k in &dataset.api_keys {
            let (Ok(key), Some(account)) = (ApiKey::new(&k.key), dataset.account(&k.account))
            else {
                continue;
            };
            keys.insert(
                key.expose().to_owned(),
                Actor {
                    key_name: k.name.clone(),
                    account_id: account.id.clone(),
                    account_name: account.name.clone(),
                    role: account.role,
                },
            );
        }
        let (events, _) = broadcast::channel(4096);
        let extension = dataset.extension();
        let vendor = dataset
            .api_keys
            .iter()
            .find(|k| k.name == extension.api_key)
            .and_then(|k| dataset.account(&k.account))
            .or_else(|| dataset.accounts.iter().find(|a| a.role == Role::Vendor))
            .map(|a| (a.id.clone(), a.name.clone()))
            .unwrap_or_default();
        let products = dataset
            .products
            .iter()
            .filter(|p| p["owner"]["id"] == vendor.0.as_str())
            .filter_map(|p| p["id"].as_str().map(str::to_owned))
            .collect();
        let platform_account = vendor.0.clone();
        let log_listener = LogListener::new(LogListener::random_key());
        let platform = Platform::new(
            extension,
            vendor,
            products,
            usage_token.clone(),
            log_listener.key().clone(),
            seed,
        );
        SandboxState {
            store: Mutex::new(Store::new(dataset.clone())),
            config: Mutex::new(runtime),
            faults: Mutex::new(Faults::new(seed)),
            usage_universe: UsageUniverse::of(&dataset),
            initial: dataset,
            keys,
            events,
            usage_token,
            platform,
            platform_account,
            provider: Mutex::new(Provider::default()),
            log_listener,
        }
    }

    /// The stand-in for Connect's log service.
    pub fn log_listener(&self) -> &LogListener {
        &self.log_listener
    }

    /// The sandbox's provider: its policy and what it did.
    pub fn provider(&self) -> MutexGuard<'_, Provider> {
        lock(&self.provider)
    }

    /// An actor of this account, as one of its keys would make it.
    pub fn actor_for_account(&self, account_id: &str) -> Option<Actor> {
        let mut actors: Vec<&Actor> = self
            .keys
            .values()
            .filter(|a| a.account_id == account_id)
            .collect();
        actors.sort_by(|a, b| a.key_name.cmp(&b.key_name));
        actors.first().map(|a| (*a).clone())
    }

    /// The platform side: runner connections and tasks.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// The vendor account of the extension.
    pub fn platform_account(&self) -> &str {
        &self.platform_account
    }

    /// The bearer token of the vendor usage API.
    pub fn usage_token(&self) -> &Secret {
        &self.usage_token
    }

    /// What the vendor usage API generates records from.
    pub fn usage_universe(&self) -> &UsageUniverse {
        &self.usage_universe
    }

    pub fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub fn config(&self) -> RuntimeConfig {
        lock(&self.config).clone()
    }

    pub fn set_config(&self, config: RuntimeConfig) -> Result<(), String> {
        config.check()?;
        *lock(&self.config) = config;
        Ok(())
    }

    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.faults)
    }

    /// Events as they happen (the websocket side subscribes here).
    pub fn subscribe(&self) -> broadcast::Receiver<SandboxEvent> {
        self.events.subscribe()
    }

    pub(crate) fn publish(&self, event: SandboxEvent) {
        // No subscriber is fine: the event log keeps everything.
        let _ = self.events.send(event);
    }

    /// Back to the dataset the sandbox started with, without files, events or logs.
    pub fn reset(&self) {
        self.store().reset(self.initial.clone());
        self.platform.reset();
        self.provider().reset();
        self.log_listener.clear();
    }

    /// The actor of a raw `Authorization` header value.
    pub fn authenticate(&self, header: Option<&str>) -> Option<Actor> {
        let key = ApiKey::new(header?).ok()?;
        self.keys.get(key.expose()).cloned()
    }

    /// The key named `name` in the dataset.
    pub fn key(&self, name: &str) -> Option<ApiKey> {
        self.initial
            .api_keys
            .iter()
            .find(|k| k.name == name)
            .and_then(|k| ApiKey::new(&k.key).ok())
    }

    /// The first key of an account with this role.
    pub fn key_for_role(&self, role: Role) -> Option<ApiKey> {
        self.initial.api_keys.iter().find_map(|k| {
            let account = self.initial.account(&k.account)?;
            (account.role == role)
                .then(|| ApiKey::new(&k.key).ok())
                .flatten()
        })
    }

    pub fn dataset(&self) -> &Dataset {
        &self.initial
    }
}

pub type AppState = Arc<SandboxState>;

/// Scheme and host the request came to, for the links Connect puts in answers.
#[derive(Debug, Clone)]
pub struct Origin(pub String);

/// The scheme the sandbox serves (`http` or `https`), known to every request.
#[derive(Debug, Clone, Copy)]
pub struct Scheme(pub &'static str);

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or("127.0.0.1");
        let scheme = parts.extensions.get::<Scheme>().map_or("http", |s| s.0);
        Ok(Origin(format!("{scheme}://{host}")))
    }
}

/// Who made a request, for the request log: set on the response by the layer that
/// authenticated it.
#[derive(Debug, Clone)]
pub(crate) struct LoggedActor(pub String);

/// The outer middleware of the APIs the sandbox emulates (Connect's and the vendor's):
/// latency and injected faults, and the request log around it all.
///
/// The request is handled in its own task, like a real server that finishes a request even
/// when the client gave up waiting: a client timeout must not cancel a create half-way.
async fn fault_middleware(State(app): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::spawn(handle_with_faults(app, req, next)).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "sandbox request handler failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                codes::INTERNAL,
                "The sandbox failed to handle the request.",
            )
            .into_response()
        }
    }
}

async fn handle_with_faults(app: AppState, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let full_path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    // Rules and the log name Connect's paths below /public/v1, other paths in full.
    let path = full_path
        .strip_prefix(API_PREFIX)
        .unwrap_or(&full_path)
        .to_owned();

    let headers = super::store::LOGGED_HEADERS
        .iter()
        .filter_map(|name| {
            let v = req.headers().get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), v.to_owned()))
        })
        .collect();
    let config = app.config();
    let decision = app.faults().decide(&method, &path);
    let latency = config.latency_ms + decision.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if let Some(detail) = &decision.invalid_upload {
        req.extensions_mut()
            .insert(InvalidUploadFault(detail.clone()));
    }
    if decision.ignore_ranges {
        req.headers_mut().remove(header::RANGE);
        req.headers_mut().remove(header::IF_RANGE);
    }
    let (response, actor) = match decision.status {
        Some((status, retry_after, false)) => (injected(status, retry_after), None),
        after => {
            let mut resp = next.run(req).await;
            let actor = resp.extensions_mut().remove::<LoggedActor>().map(|a| a.0);
            if decision.drop_content_range {
                resp.headers_mut().remove(header::CONTENT_RANGE);
            }
            if decision.ignore_ranges {
                resp.headers_mut().remove(header::ACCEPT_RANGES);
            }
            if let Some(bytes) = decision.cut_body_after {
                resp = cut_body(resp, bytes);
            }
            match after {
                // Applied, then reported as failed (only for requests that got through).
                Some((status, retry_after, true)) if actor.is_some() => {
                    (injected(status, retry_after), actor)
                }
                _ => (resp, actor),
            }
        }
    };
    let status = response.status().as_u16();
    debug!(%method, path = %full_path, status, actor = actor.as_deref().unwrap_or("-"), "sandbox request");
    app.store().log_request(RequestEntry {
        seq: 0,
        at: timestamp(Utc::now()),
        method,
        path,
        status,
        actor,
        fault: (!decision.labels.is_empty()).then(|| decision.labels.join(", ")),
        duration_ms: started.elapsed().as_millis() as u64,
        headers,
    });
    response
}

/// The answer with its body cut after `limit` bytes: the stream then fails, and the server
/// drops the connection without ending the body, as when a connection breaks.
fn cut_body(resp: Response, limit: u64) -> Response {
    use futures_util::StreamExt;
    let (parts, body) = resp.into_parts();
    let cut =
        futures_util::stream::unfold(Some((body.into_data_stream(), limit)), |state| async move {
            let (mut data, left) = state?;
            if left == 0 {
                // Pending a moment first, so that the server sends what it holds before the cut.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let e = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "body cut");
                return Some((Err(axum::Error::new(e)), None));
            }
            match data.next().await? {
                Ok(mut bytes) => {
                    let keep = bytes.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    bytes.truncate(keep);
                    Some((Ok(bytes), Some((data, left - keep as u64))))
                }
                Err(e) => Some((Err(e), None)),
            }
        });
    Response::from_parts(parts, Body::from_stream(cut))
}

/// Connect's API key check: the request gets its [`Actor`], or a 401 `AUTH_001`.
async fn connect_auth(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    match app.authenticate(auth) {
        None => ApiError::unauthorized().into_response(),
        Some(actor) => {
            let name = LoggedActor(actor.key_name.clone());
            req.extensions_mut().insert(actor);
            let mut resp = next.run(req).await;
            resp.extensions_mut().insert(name);
            resp
        }
    }
}

fn injected(status: u16, retry_after: Option<u64>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut e = ApiError::new(
        code,
        codes::INJECTED,
        format!(
            "Injected fault: {}.",
            code.canonical_reason().unwrap_or("error")
        ),
    );
    e.retry_after = retry_after;
    e.into_response()
}

async fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        codes::NO_ROUTE,
        "No such endpoint in the sandbox.",
    )
}

async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        codes::METHOD_NOT_ALLOWED,
        "This endpoint does not take this method.",
    )
}

/// The whole application: Connect's API under `/public/v1`, the vendor's usage API and
/// export files under `/vendor/v1`, the admin API and file links under `/sandbox`.
pub fn router(app: AppState) -> Router {
    let api = api::routes()
        .merge(usage_api::routes())
        .merge(devops_api::routes())
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn_with_state(app.clone(), connect_auth))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            fault_middleware,
        ));
    let vendor =
        vendor_api::routes()
            .merge(vendor_exports::routes())
            .layer(middleware::from_fn_with_state(
                app.clone(),
                fault_middleware,
            ));
    Router::new()
        .nest(API_PREFIX, api)
        .merge(vendor)
        .merge(admin::routes())
        .merge(log_listener::routes())
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(app)
}

/// A running sandbox.
#[derive(Debug)]
pub struct Sandbox {
    addr: SocketAddr,
    /// Serving https and wss.
    secure: bool,
    state: AppState,
    vendor_key: ApiKey,
    provider_key: ApiKey,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    /// Turns events into runner tasks and delivers them.
    platform_task: JoinHandle<()>,
    /// Answers submitted files as the provider.
    provider_task: JoinHandle<()>,
}

impl Sandbox {
    /// Binds and serves in the background.
    pub async fn start(config: SandboxConfig) -> std::io::Result<Sandbox> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        config.runtime.check().map_err(invalid)?;
        config
            .dataset
            .check("dataset")
            .map_err(|e| invalid(e.to_string()))?;
        let state = Arc::new(SandboxState::new(
            config.dataset,
            config.runtime,
            config.seed,
            config.usage_token,
        ));
        state.faults().set(config.faults).map_err(invalid)?;
        config.provider.check().map_err(invalid)?;
        state.provider().set_policy(config.provider);
        let (Some(vendor_key), Some(provider_key)) = (
            state.key_for_role(Role::Vendor),
            state.key_for_role(Role::Provider),
        ) else {
            return Err(invalid(
                "the dataset needs a vendor and a provider key".into(),
            ));
        };
        let tls = match &config.tls {
            Some(files) => Some(super::tls::server_config(files)?),
            None => None,
        };
        let secure = tls.is_some();
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let scheme = Scheme(if secure { "https" } else { "http" });
        let app = NormalizePathLayer::trim_trailing_slash()
            .layer(router(state.clone()).layer(axum::Extension(scheme)));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let service = axum::ServiceExt::<axum::extract::Request<Body>>::into_make_service(app);
            let stop = async {
                let _ = rx.await;
            };
            let served = match tls {
                None => {
                    axum::serve(listener, service)
                        .with_graceful_shutdown(stop)
                        .await
                }
                Some(tls) => match super::tls::TlsListener::new(listener, tls) {
                    Ok(l) => axum::serve(l, service).with_graceful_shutdown(stop).await,
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "sandbox server stopped");
            }
        });
        state
            .platform()
            .set_origin(&format!("{}://{addr}", scheme.0));
        let platform_task = tokio::spawn(devops_api::drive(state.clone()));
        let provider_task = tokio::spawn(super::provider::drive(state.clone()));
        info!(%addr, "sandbox listening");
        Ok(Sandbox {
            addr,
            secure,
            state,
            vendor_key,
            provider_key,
            shutdown: Some(tx),
            task,
            platform_task,
            provider_task,
        })
    }

    /// Starts with the default dataset and settings on a free local port.
    pub async fn start_default() -> std::io::Result<Sandbox> {
        Sandbox::start(SandboxConfig::default()).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS).
    pub fn origin(&self) -> String {
        format!(
            "{}://{}",
            if self.secure { "https" } else { "http" },
            self.addr
        )
    }

    /// The events platform's address as runners take it: `ws://127.0.0.1:PORT`
    /// (`wss://` with TLS).
    pub fn ws_origin(&self) -> String {
        format!("{}://{}", if self.secure { "wss" } else { "ws" }, self.addr)
    }

    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// `http://127.0.0.1:PORT/public/v1`
    pub fn api_url(&self) -> String {
        format!("{}{API_PREFIX}", self.origin())
    }

    /// The vendor usage API: `http://127.0.0.1:PORT/vendor/v1/usage`.
    pub fn usage_api_url(&self) -> String {
        format!("{}{}", self.origin(), vendor_api::USAGE_PATH)
    }

    /// The vendor's monthly export files, as a template:
    /// `http://127.0.0.1:PORT/vendor/v1/exports/usage-{period}.EXT` (`csv` or `jsonl`).
    pub fn usage_export_url(&self, ext: &str) -> String {
        format!(
            "{}{}/usage-{{period}}.{ext}",
            self.origin(),
            vendor_exports::EXPORTS_PATH
        )
    }

    /// Where runners send log records: `LOGZIO_LISTENER_URL` for them
    /// (`http://127.0.0.1:PORT/logzio`).
    pub fn log_listener_url(&self) -> String {
        format!("{}{}", self.origin(), log_listener::LISTENER_PATH)
    }

    /// The logging key its `setup_response` hands out (with `send_logging_key` on).
    pub fn logging_key(&self) -> Secret {
        self.state.log_listener().key().clone()
    }

    /// Its bearer token.
    pub fn usage_token(&self) -> Secret {
        self.state.usage_token().clone()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The first vendor key of the dataset.
    pub fn vendor_key(&self) -> ApiKey {
        self.vendor_key.clone()
    }

    /// The first provider key of the dataset.
    pub fn provider_key(&self) -> ApiKey {
        self.provider_key.clone()
    }

    /// The key named `name` in the dataset (`vendor`, `provider`, `provider-apac` in the
    /// default one).
    pub fn key(&self, name: &str) -> Option<ApiKey> {
        self.state.key(name)
    }

    /// Stops serving and waits for the server task.
    pub async fn shutdown(mut self) {
        self.platform_task.abort();
        self.provider_task.abort();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Serves until `stop` completes (the command passes the process's stop signal: the
    /// sandbox leaves signals to whoever runs it), then shuts down.
    pub async fn run_until(self, stop: impl std::future::Future<Output = ()>) {
        stop.await;
        self.shutdown().await;
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.platform_task.abort();
        self.provider_task.abort();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
