//! The runner's configuration, read from the environment variables of Connect's official
//! runner (`API_KEY`, `ENVIRONMENT_ID`, `INSTANCE_ID`, `SERVER_ADDRESS`, `API_ADDRESS`,
//! `HTTP_PROXY`/`HTTPS_PROXY`, `*_TASK_MAX_EXECUTION_TIME`) plus this runner's own
//! (`TASK_CONCURRENCY`, `SHUTDOWN_GRACE_SECONDS`), Logz.io's `LOGZIO_LISTENER_URL` (where log
//! records go once the platform gives a logging key), and the protocol's timings.

use std::fmt;
use std::time::Duration;

use super::backoff::ReconnectPolicy;
use connect_client::secret::Secret;
use connect_client::{ApiKey, api_base_url};

/// Connect's default address, as the official runner has it.
pub const DEFAULT_SERVER_ADDRESS: &str = "api.cnct.info";

/// The two websocket sessions of an events runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunnerType {
    /// Background and scheduled tasks.
    Background,
    /// Interactive tasks.
    Interactive,
}

impl RunnerType {
    pub const ALL: [RunnerType; 2] = [RunnerType::Background, RunnerType::Interactive];

    pub fn as_str(self) -> &'static str {
        match self {
            RunnerType::Background => "background",
            RunnerType::Interactive => "interactive",
        }
    }
}

/// The protocol's timings. The defaults are the official runner's; tests shorten them.
#[derive(Debug, Clone, PartialEq)]
pub struct Timings {
    /// Keep-alive ping period.
    pub ping_interval: Duration,
    /// A connection without a pong this long after a ping is dead.
    pub pong_timeout: Duration,
    /// Time for the pong after connecting, and for the answer to the setup request.
    pub handshake_timeout: Duration,
    /// Time to open the connection and upgrade it.
    pub connect_timeout: Duration,
    /// Reconnection delays.
    pub reconnect: ReconnectPolicy,
    /// Time a stopping runner keeps trying to deliver results after the grace period.
    pub flush_window: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            ping_interval: Duration::from_secs(60),
            pong_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            reconnect: ReconnectPolicy::default(),
            flush_window: Duration::from_secs(10),
        }
    }
}

/// Everything the runner needs to connect and run tasks.
#[derive(Clone)]
pub struct RunnerConfig {
    /// `API_KEY` exactly as given: the websocket's `Authorization` header.
    pub api_key_header: Secret,
    /// The same key for REST calls.
    pub api_key: ApiKey,
    pub environment_id: String,
    pub instance_id: String,
    /// `host[:port]` of the websocket endpoint.
    pub server_host: String,
    /// `wss` (default) or `ws` (local use).
    pub secure: bool,
    /// Connect's REST base URL.
    pub api_base_url: String,
    /// An HTTP proxy for `ws://` connections (`HTTP_PROXY`).
    pub ws_proxy: Option<String>,
    /// An HTTP proxy for `wss://` connections (`HTTPS_PROXY`).
    pub wss_proxy: Option<String>,
    pub background_timeout: Duration,
    pub interactive_timeout: Duration,
    pub scheduled_timeout: Duration,
    /// Tasks run at once (each session), at least 1.
    pub max_concurrent_tasks: usize,
    /// Time in-flight tasks get to finish once the runner is told to stop.
    pub shutdown_grace: Duration,
    /// Results waiting to be sent (each session) before finishing tasks wait for room.
    pub result_queue: usize,
    /// The sessions to open (both, normally).
    pub runner_types: Vec<RunnerType>,
    pub timings: Timings,
    /// Where log records go once the platform gives a logging key (`LOGZIO_LISTENER_URL`).
    pub log_listener_url: String,
}

impl fmt::Debug for RunnerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunnerConfig")
            .field("api_key", &self.api_key)
            .field("environment_id", &self.environment_id)
            .field("instance_id", &self.instance_id)
            .field("server_host", &self.server_host)
            .field("secure", &self.secure)
            .field("api_base_url", &self.api_base_url)
            .field("ws_proxy", &self.ws_proxy.as_deref().map(redact_proxy))
            .field("wss_proxy", &self.wss_proxy.as_deref().map(redact_proxy))
            .field("background_timeout", &self.background_timeout)
            .field("interactive_timeout", &self.interactive_timeout)
            .field("scheduled_timeout", &self.scheduled_timeout)
            .field("max_concurrent_tasks", &self.max_concurrent_tasks)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("runner_types", &self.runner_types)
            .field("log_listener_url", &redact_proxy(&self.log_listener_url))
            .finish()
    }
}

/// A proxy URL without its password (`http://user:pw@host` shows `http://user:***@host`).
pub fn redact_proxy(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparsable proxy URL>".into(),
    }
}

/// A setting that cannot be used, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub reason: String,
}

fn config_error(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        name,
        reason: reason.into(),
    }
}

impl RunnerConfig {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<RunnerConfig, ConfigError> {
        RunnerConfig::from_lookup(|name| std::env::var(name).ok(), InstanceIdSource::System)
    }

    /// Reads the configuration from any name-to-value lookup. `unsecure` (the official
    /// runner's `--unsecure`) asks for `ws://` when `SERVER_ADDRESS` gives no scheme.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        instance_source: InstanceIdSource,
    ) -> Result<RunnerConfig, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let raw_key = get("API_KEY").ok_or_else(|| {
            config_error(
                "API_KEY",
                "not set: give the environment's API key (ApiKey SU-...:...)",
            )
        })?;
        let api_key = ApiKey::new(&raw_key).map_err(|e| config_error("API_KEY", e.to_string()))?;
        let environment_id = get("ENVIRONMENT_ID").ok_or_else(|| {
            config_error(
                "ENVIRONMENT_ID",
                "not set: give the id of the extension's environment (ENV-...)",
            )
        })?;
        let environment_id = checked_path_part("ENVIRONMENT_ID", environment_id.trim())?;
        let instance_id = match get("INSTANCE_ID") {
            Some(id) => checked_path_part("INSTANCE_ID", id.trim())?,
            None => default_instance_id(instance_source),
        };
        let unsecure = get("UNSECURE").is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
        let server = get("SERVER_ADDRESS").unwrap_or_else(|| DEFAULT_SERVER_ADDRESS.to_owned());
        let (secure, server_host) = parse_server_address(&server, unsecure)?;
        // REST calls carry keys: plain http only when SERVER_ADDRESS itself says ws:// or
        // http:// (a local platform), never because of --unsecure alone.
        let explicit_plain = matches!(
            server.trim().split_once("://").map(|(s, _)| s),
            Some("ws" | "http")
        );
        let api_base_url = match get("API_ADDRESS") {
            Some(a) => api_base_url(&a).map_err(|e| config_error("API_ADDRESS", e.to_string()))?,
            None => {
                let scheme = if explicit_plain { "http" } else { "https" };
                api_base_url(&format!("{scheme}://{server_host}"))
                    .map_err(|e| config_error("SERVER_ADDRESS", e.to_string()))?
            }
        };
        // Only the proxy of the scheme in use is read (and checked).
        let proxy = |name: &'static str, used: bool| -> Result<Option<String>, ConfigError> {
            match get(name).or_else(|| get(&name.to_ascii_lowercase())) {
                _ if !used => Ok(None),
                None => Ok(None),
                Some(p) => {
                    let u = reqwest::Url::parse(p.trim())
                        .map_err(|e| config_error(name, format!("not a URL: {e}")))?;
                    if u.scheme() != "http" {
                        return Err(config_error(
                            name,
                            format!(
                                "{} proxies are not supported for the websocket; give an http:// (CONNECT) proxy",
                                u.scheme()
                            ),
                        ));
                    }
                    Ok(Some(p.trim().to_owned()))
                }
            }
        };
        let seconds = |name: &'static str, default: u64| -> Result<Duration, ConfigError> {
            match get(name) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Duration::from_secs(n)),
                    _ => Err(config_error(
                        name,
                        format!("{v:?} is not a positive number of seconds"),
                    )),
                },
            }
        };
        let max_concurrent_tasks = match get("TASK_CONCURRENCY") {
            None => 64,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=10_000).contains(&n) => n,
                _ => {
                    return Err(config_error(
                        "TASK_CONCURRENCY",
                        format!("{v:?}: give a number from 1 to 10000"),
                    ));
                }
            },
        };
        let log_listener_url = match get("LOGZIO_LISTENER_URL") {
            Some(url) => {
                super::log_ship::check_listener_url(&url)
                    .map_err(|e| config_error("LOGZIO_LISTENER_URL", e.to_string()))?;
                url.trim().to_owned()
            }
            None => super::log_ship::DEFAULT_LISTENER_URL.to_owned(),
        };
        Ok(RunnerConfig {
            api_key_header: Secret::new(raw_key.trim()),
            api_key,
            environment_id,
            instance_id,
            server_host,
            secure,
            api_base_url,
            ws_proxy: proxy("HTTP_PROXY", !secure)?,
            wss_proxy: proxy("HTTPS_PROXY", secure)?,
            background_timeout: seconds("BACKGROUND_TASK_MAX_EXECUTION_TIME", 300)?,
            interactive_timeout: seconds("INTERACTIVE_TASK_MAX_EXECUTION_TIME", 120)?,
            scheduled_timeout: seconds("SCHEDULED_TASK_MAX_EXECUTION_TIME", 43_200)?,
            max_concurrent_tasks,
            shutdown_grace: seconds("SHUTDOWN_GRACE_SECONDS", 30)?,
            result_queue: 1024,
            runner_types: RunnerType::ALL.to_vec(),
            timings: Timings::default(),
            log_listener_url,
        })
    }

    /// The REST API's `host[:port]`: what the official runner's `API_ADDRESS` holds, and what
    /// log records carry as `api_address`.
    pub fn api_address(&self) -> String {
        match reqwest::Url::parse(&self.api_base_url) {
            Ok(u) => match (u.host_str(), u.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_owned(),
                _ => self.api_base_url.clone(),
            },
            Err(_) => self.api_base_url.clone(),
        }
    }

    /// A configuration for a local platform such as the sandbox (`http://127.0.0.1:PORT`).
    pub fn local(
        origin: &str,
        api_key: &ApiKey,
        environment_id: &str,
        instance_id: &str,
    ) -> Result<RunnerConfig, ConfigError> {
        let key = format!("ApiKey {}", api_key.expose());
        RunnerConfig::from_lookup(
            |name| match name {
                "API_KEY" => Some(key.clone()),
                "ENVIRONMENT_ID" => Some(environment_id.to_owned()),
                "INSTANCE_ID" => Some(instance_id.to_owned()),
                "SERVER_ADDRESS" => Some(origin.to_owned()),
                _ => None,
            },
            InstanceIdSource::Random,
        )
    }

    /// The websocket URL of one session, with the counts of tasks still in flight.
    pub fn ws_url(&self, runner_type: RunnerType, running: usize, scheduled: usize) -> String {
        format!(
            "{}://{}/public/v1/devops/ws/{}/{}?running_tasks={running}&running_scheduled_tasks={scheduled}&runner_type={}",
            if self.secure { "wss" } else { "ws" },
            self.server_host,
            self.environment_id,
            self.instance_id,
            runner_type.as_str(),
        )
    }

    /// The proxy for this configuration's scheme.
    pub fn proxy(&self) -> Option<&str> {
        if self.secure {
            self.wss_proxy.as_deref()
        } else {
            self.ws_proxy.as_deref()
        }
    }

    pub fn timeout(&self, category: crate::protocol::TaskCategory) -> Duration {
        use crate::protocol::TaskCategory as C;
        match category {
            C::Background => self.background_timeout,
            C::Interactive => self.interactive_timeout,
            C::Scheduled => self.scheduled_timeout,
        }
    }

    /// `User-Agent` of the REST calls of `extension` (`name/version`, from its descriptor).
    pub fn user_agent(&self, extension: &str) -> String {
        format!(
            "{extension} connect-eaas/{} rust {}/{} {}/{}",
            crate::VERSION,
            std::env::consts::OS,
            std::env::consts::ARCH,
            self.environment_id,
            self.instance_id
        )
    }
}

/// Ids go into the URL path: letters, digits and `-_.` only.
fn checked_path_part(name: &'static str, value: &str) -> Result<String, ConfigError> {
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Ok(value.to_owned())
    } else {
        Err(config_error(
            name,
            format!("{value:?} may hold only letters, digits, '-', '_' and '.'"),
        ))
    }
}

/// `SERVER_ADDRESS` forms: `host[:port]` (wss unless `unsecure`), or with an explicit scheme
/// `wss://`, `ws://`, `https://` or `http://` (the last two meaning wss and ws).
pub fn parse_server_address(address: &str, unsecure: bool) -> Result<(bool, String), ConfigError> {
    let address = address.trim().trim_end_matches('/');
    let (secure, rest) = match address.split_once("://") {
        None => (!unsecure, address),
        Some(("wss" | "https", rest)) => (true, rest),
        Some(("ws" | "http", rest)) => (false, rest),
        Some((scheme, _)) => {
            return Err(config_error(
                "SERVER_ADDRESS",
                format!("scheme {scheme:?} is not one of wss, ws, https, http"),
            ));
        }
    };
    if rest.is_empty() || rest.contains('/') || rest.contains('@') || rest.contains(' ') {
        return Err(config_error(
            "SERVER_ADDRESS",
            format!("{address:?} is not host[:port]"),
        ));
    }
    Ok((secure, rest.to_owned()))
}

/// Where `INSTANCE_ID` comes from when it is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceIdSource {
    /// The container's id as the official runner finds it, else a random id.
    System,
    /// A random id.
    Random,
}

fn default_instance_id(source: InstanceIdSource) -> String {
    if source == InstanceIdSource::System {
        let cpuset = std::fs::read_to_string("/proc/1/cpuset").ok();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok();
        if let Some(id) = container_id(cpuset.as_deref(), mountinfo.as_deref()) {
            return id;
        }
    }
    random_uuid()
}

/// The container id: the last part of `/proc/1/cpuset` when it is 64 characters, else the
/// overlay layer id of the root mount's `upperdir` when it is.
pub fn container_id(cpuset: Option<&str>, mountinfo: Option<&str>) -> Option<String> {
    let is_id = |s: &str| s.len() == 64 && s.chars().all(|c| c.is_ascii_alphanumeric());
    if let Some(last) = cpuset.and_then(|c| c.trim().rsplit('/').next())
        && is_id(last)
    {
        return Some(last.to_owned());
    }
    for line in mountinfo.unwrap_or_default().lines() {
        for option in line.split([' ', ',']) {
            if let Some(dir) = option.strip_prefix("upperdir=") {
                let mut parts = dir.trim_end_matches('/').rsplit('/');
                let _diff = parts.next();
                if let Some(id) = parts.next()
                    && is_id(id)
                {
                    return Some(id.to_owned());
                }
            }
        }
    }
    None
}

/// A random UUID (version 4) in its usual text form.
pub fn random_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(pairs: &[(&str, &str)]) -> Result<RunnerConfig, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        RunnerConfig::from_lookup(|n| map.get(n).cloned(), InstanceIdSource::Random)
    }

    #[test]
    fn official_variables_and_defaults() {
        let c = read(&[
            ("API_KEY", "ApiKey SU-1:secret"),
            ("ENVIRONMENT_ID", "ENV-1234-5678-03"),
            ("INSTANCE_ID", "inst-1"),
        ])
        .expect("valid");
        assert_eq!(c.api_key_header.expose(), "ApiKey SU-1:secret", "verbatim");
        assert_eq!(
            c.ws_url(RunnerType::Background, 2, 1),
            "wss://api.cnct.info/public/v1/devops/ws/ENV-1234-5678-03/inst-1?running_tasks=2&running_scheduled_tasks=1&runner_type=background"
        );
        assert_eq!(c.api_base_url, "https://api.cnct.info/public/v1");
        assert_eq!(c.background_timeout, Duration::from_secs(300));
        assert_eq!(c.interactive_timeout, Duration::from_secs(120));
        assert_eq!(c.scheduled_timeout, Duration::from_secs(43_200));
        assert!(!format!("{c:?}").contains("secret"));
        assert_eq!(c.log_listener_url, "https://listener.logz.io:8071");
        assert_eq!(c.api_address(), "api.cnct.info");

        let c = read(&[
            ("API_KEY", "SU-1:secret"),
            ("ENVIRONMENT_ID", "ENV-1"),
            ("SERVER_ADDRESS", "ws://127.0.0.1:9000"),
            ("BACKGROUND_TASK_MAX_EXECUTION_TIME", "10"),
            ("HTTP_PROXY", "http://user:pw@proxy:3128"),
        ])
        .expect("valid");
        assert!(
            c.ws_url(RunnerType::Interactive, 0, 0)
                .starts_with("ws://127.0.0.1:9000/public/v1/devops/ws/ENV-1/")
        );
        assert_eq!(c.api_base_url, "http://127.0.0.1:9000/public/v1");
        assert_eq!(c.background_timeout, Duration::from_secs(10));
        assert_eq!(c.instance_id.len(), 36, "random uuid");
        assert_eq!(c.proxy(), Some("http://user:pw@proxy:3128"));
        assert!(!format!("{c:?}").contains("pw@"), "{c:?}");
        assert_eq!(c.api_address(), "127.0.0.1:9000");

        let listener = |url: &str| {
            read(&[
                ("API_KEY", "SU-1:secret"),
                ("ENVIRONMENT_ID", "ENV-1"),
                ("LOGZIO_LISTENER_URL", url),
            ])
        };
        assert_eq!(
            listener(" http://127.0.0.1:8070/logzio ")
                .expect("valid")
                .log_listener_url,
            "http://127.0.0.1:8070/logzio"
        );
        assert_eq!(
            listener("listener.logz.io").err().map(|e| e.name),
            Some("LOGZIO_LISTENER_URL")
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let e = read(&[("ENVIRONMENT_ID", "ENV-1")]).expect_err("no key");
        assert_eq!(e.name, "API_KEY");
        let e = read(&[("API_KEY", "k")]).expect_err("no env");
        assert_eq!(e.name, "ENVIRONMENT_ID");
        let e = read(&[
            ("API_KEY", "k"),
            ("ENVIRONMENT_ID", "E"),
            ("SCHEDULED_TASK_MAX_EXECUTION_TIME", "soon"),
        ])
        .expect_err("bad timeout");
        assert_eq!(e.name, "SCHEDULED_TASK_MAX_EXECUTION_TIME");
        let e = read(&[
            ("API_KEY", "k"),
            ("ENVIRONMENT_ID", "E"),
            ("HTTPS_PROXY", "socks5://p:1080"),
        ])
        .expect_err("socks");
        assert_eq!(e.name, "HTTPS_PROXY");
        assert!(
            read(&[
                ("API_KEY", "k"),
                ("ENVIRONMENT_ID", "E"),
                ("HTTP_PROXY", "socks5://p:1080")
            ])
            .is_ok(),
            "the ws:// proxy is not used with wss://"
        );
        let c =
            read(&[("API_KEY", "k"), ("ENVIRONMENT_ID", "E"), ("UNSECURE", "1")]).expect("valid");
        assert!(
            c.ws_url(RunnerType::Background, 0, 0)
                .starts_with("ws://api.cnct.info/")
        );
        assert_eq!(
            c.api_base_url, "https://api.cnct.info/public/v1",
            "REST stays https"
        );
        let e = read(&[("API_KEY", "k"), ("ENVIRONMENT_ID", "E/x")]).expect_err("path");
        assert_eq!(e.name, "ENVIRONMENT_ID");
    }

    #[test]
    fn container_ids_as_the_official_runner_finds_them() {
        let id = "a".repeat(64);
        assert_eq!(
            container_id(Some(&format!("/docker/{id}\n")), None),
            Some(id.clone())
        );
        let mountinfo = format!(
            "1 0 0:1 / / rw - overlay overlay rw,lowerdir=/l,upperdir=/var/lib/docker/overlay2/{id}/diff,workdir=/w"
        );
        assert_eq!(container_id(Some("/"), Some(&mountinfo)), Some(id));
        assert_eq!(container_id(Some("/"), Some("nothing")), None);
    }
}
