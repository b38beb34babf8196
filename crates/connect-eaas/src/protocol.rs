//! The frames of the EaaS events protocol (version 2), as Connect's platform and its official
//! runner exchange them.
//!
//! Every frame is `{"version": 2, "message_type": ..., "data": {..., "model_type": ...}}`.
//! The runner sends `setup_request` and task results; the platform sends `setup_response`,
//! `task` and `shutdown`. What the runner sends has every field present (nulls included), as
//! the official runner's model dumps do. Fields of a task the runner does not know are kept and
//! echoed back with the result.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The protocol version the runner speaks.
pub const PROTOCOL_VERSION: u8 = 2;

/// A frame as read, before its data is typed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(default = "legacy_version")]
    pub version: u8,
    pub message_type: String,
    #[serde(default)]
    pub data: Option<Value>,
}

fn legacy_version() -> u8 {
    1
}

/// A frame the runner understands.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    SetupResponse(Box<SetupResponse>),
    Task(Box<Task>),
    Shutdown,
    /// A `message_type` the runner does not act on (ignored, as the official runner does).
    Other(String),
}

/// Why a frame was not understood. The session logs it and goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("not a JSON frame: {0}")]
    NotJson(String),
    #[error("protocol version {0} (1 or 2 expected)")]
    Version(u8),
    #[error("{message_type} frame of protocol version 1, which carries no usable data")]
    Legacy { message_type: String },
    #[error("{message_type} frame without data")]
    NoData { message_type: String },
    #[error("{message_type} frame: data.model_type is {found:?}, {expected:?} expected")]
    ModelType {
        message_type: String,
        expected: &'static str,
        found: Option<String>,
    },
    #[error("{message_type} frame: {reason}")]
    Shape {
        message_type: String,
        reason: String,
    },
}

impl Incoming {
    /// Reads a text frame.
    pub fn parse(text: &str) -> Result<Incoming, FrameError> {
        let env: Envelope =
            serde_json::from_str(text).map_err(|e| FrameError::NotJson(e.to_string()))?;
        if !matches!(env.version, 1 | 2) {
            return Err(FrameError::Version(env.version));
        }
        let typed = |expected: &'static str| -> Result<Value, FrameError> {
            let data = env.data.clone().ok_or_else(|| FrameError::NoData {
                message_type: env.message_type.clone(),
            })?;
            let found = data
                .get("model_type")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if found.as_deref() != Some(expected) {
                return Err(FrameError::ModelType {
                    message_type: env.message_type.clone(),
                    expected,
                    found,
                });
            }
            Ok(data)
        };
        let shape = |e: serde_json::Error| FrameError::Shape {
            message_type: env.message_type.clone(),
            reason: redact_quoted(&e.to_string()),
        };
        if env.version == 1 && matches!(env.message_type.as_str(), "setup_response" | "task") {
            return Err(FrameError::Legacy {
                message_type: env.message_type,
            });
        }
        Ok(match env.message_type.as_str() {
            "setup_response" => Incoming::SetupResponse(Box::new(
                serde_json::from_value(typed("setup_response")?).map_err(shape)?,
            )),
            "task" => Incoming::Task(Box::new(
                serde_json::from_value(typed("task")?).map_err(shape)?,
            )),
            "shutdown" => Incoming::Shutdown,
            other => Incoming::Other(other.to_owned()),
        })
    }
}

/// Blanks quoted text in a parser message: serde quotes the offending value, which may be a
/// key or a secure variable.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for c in message.chars() {
        if c == '"' {
            inside = !inside;
            out.push(c);
            if inside {
                out.push_str("...");
            }
        } else if !inside {
            out.push(c);
        }
    }
    out
}

/// Serialises a frame.
pub fn frame(message_type: &str, data: Option<Value>) -> String {
    serde_json::json!({
        "version": PROTOCOL_VERSION,
        "message_type": message_type,
        "data": data,
    })
    .to_string()
}

/// The shutdown frame (sent by the platform, and by the runner when it is told to stop).
pub fn shutdown_frame() -> String {
    frame("shutdown", None)
}

/// A variable the extension declares.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredVariable {
    pub name: String,
    pub initial_value: String,
    pub secure: bool,
}

impl fmt::Debug for DeclaredVariable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeclaredVariable")
            .field("name", &self.name)
            .field(
                "initial_value",
                &if self.secure {
                    "***"
                } else {
                    &self.initial_value
                },
            )
            .field("secure", &self.secure)
            .finish()
    }
}

/// A schedulable method the extension declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredSchedulable {
    pub method: String,
    pub name: String,
    pub description: String,
}

/// Where the extension's documentation lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    pub readme_url: String,
    pub changelog_url: String,
}

/// What the runner tells the platform after connecting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetupRequest {
    /// Event type to the statuses handled (`[]` for events without statuses).
    pub event_subscriptions: BTreeMap<String, Vec<String>>,
    pub ui_modules: Option<Value>,
    pub icon: Option<Value>,
    pub variables: Vec<DeclaredVariable>,
    pub schedulables: Vec<DeclaredSchedulable>,
    pub anvil_callables: Option<Value>,
    pub transformations: Option<Value>,
    pub audience: Option<Vec<String>>,
    pub repository: Repository,
    pub runner_version: String,
    pub proxied_connect_api: Option<Value>,
    pub model_type: String,
}

impl SetupRequest {
    pub fn to_frame(&self) -> String {
        frame("setup_request", serde_json::to_value(self).ok())
    }
}

/// A variable's value as the platform sends it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariableValue {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub secure: bool,
}

impl fmt::Debug for VariableValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VariableValue")
            .field("name", &self.name)
            .field(
                "value",
                &if self.secure {
                    Some("***")
                } else {
                    self.value.as_deref()
                },
            )
            .field("secure", &self.secure)
            .finish()
    }
}

/// `logging.meta` of a setup response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoggingMeta {
    #[serde(default)]
    pub repository_tag: Option<String>,
    #[serde(default)]
    pub account_id: Option<String>,
    #[serde(default)]
    pub account_name: Option<String>,
    /// The extension's id (`SRVC-...`), used in REST paths.
    #[serde(default)]
    pub service_id: Option<String>,
    #[serde(default)]
    pub products: Option<Vec<String>>,
    #[serde(default)]
    pub hub_id: Option<String>,
}

/// `logging` of a setup response.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoggingSettings {
    #[serde(default)]
    pub logging_api_key: Option<String>,
    #[serde(default)]
    pub log_level: Option<String>,
    #[serde(default)]
    pub runner_log_level: Option<String>,
    #[serde(default)]
    pub meta: Option<LoggingMeta>,
}

impl fmt::Debug for LoggingSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoggingSettings")
            .field(
                "logging_api_key",
                &self.logging_api_key.as_ref().map(|_| "***"),
            )
            .field("log_level", &self.log_level)
            .field("runner_log_level", &self.runner_log_level)
            .field("meta", &self.meta)
            .finish()
    }
}

/// How the runner loads and re-checks the object of a background event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventDefinition {
    pub event_type: String,
    /// `usage/files/{pk}`
    pub api_resource_endpoint: String,
    /// `usage/files`
    pub api_collection_endpoint: String,
    /// `and(eq(id,${_object_id_}),in(status,${_statuses_}))`
    pub api_collection_filter: String,
}

/// What the platform answers to a setup request (and may send again at any time).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SetupResponse {
    #[serde(default)]
    pub variables: Option<Vec<VariableValue>>,
    #[serde(default)]
    pub environment_type: Option<String>,
    #[serde(default)]
    pub logging: Option<LoggingSettings>,
    #[serde(default)]
    pub event_definitions: Option<Vec<EventDefinition>>,
    #[serde(default)]
    pub environment_runtime: Option<String>,
    #[serde(default)]
    pub environment_hostname: Option<String>,
    #[serde(default)]
    pub environment_domain: Option<String>,
}

/// The category of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskCategory {
    Background,
    Interactive,
    Scheduled,
}

impl TaskCategory {
    pub fn parse(s: &str) -> Option<TaskCategory> {
        match s {
            "background" => Some(TaskCategory::Background),
            "interactive" => Some(TaskCategory::Interactive),
            "scheduled" => Some(TaskCategory::Scheduled),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskCategory::Background => "background",
            TaskCategory::Interactive => "interactive",
            TaskCategory::Scheduled => "scheduled",
        }
    }
}

/// `options` of a task. Echoed back unchanged with the result.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskOptions {
    pub task_id: String,
    pub task_category: String,
    #[serde(default)]
    pub correlation_id: Option<String>,
    #[serde(default)]
    pub reply_to: Option<String>,
    /// A key to act with for this task (installations of other accounts).
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub installation_id: Option<String>,
    #[serde(default)]
    pub connect_correlation_id: Option<String>,
    /// Fields this runner does not know, kept to echo them back.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl fmt::Debug for TaskOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskOptions")
            .field("task_id", &self.task_id)
            .field("task_category", &self.task_category)
            .field("correlation_id", &self.correlation_id)
            .field("reply_to", &self.reply_to)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("installation_id", &self.installation_id)
            .field("connect_correlation_id", &self.connect_correlation_id)
            .finish()
    }
}

/// `input` of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInput {
    pub event_type: String,
    pub object_id: String,
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The result of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultType {
    Success,
    Reschedule,
    Skip,
    Retry,
    Fail,
}

impl ResultType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultType::Success => "success",
            ResultType::Reschedule => "reschedule",
            ResultType::Skip => "skip",
            ResultType::Retry => "retry",
            ResultType::Fail => "fail",
        }
    }
}

/// `output` of a task: filled by the runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskOutput {
    pub result: ResultType,
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default)]
    pub countdown: u64,
    /// Seconds the handler ran.
    #[serde(default, deserialize_with = "null_as_zero")]
    pub runtime: f64,
    #[serde(default)]
    pub message: Option<String>,
}

fn null_as_zero<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(0.0))
}

/// A task, as the platform sends it, and as the runner sends it back with its output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub options: TaskOptions,
    pub input: TaskInput,
    #[serde(default)]
    pub output: Option<TaskOutput>,
    #[serde(default = "task_model_type")]
    pub model_type: String,
}

fn task_model_type() -> String {
    "task".into()
}

impl Task {
    pub fn category(&self) -> Option<TaskCategory> {
        TaskCategory::parse(&self.options.task_category)
    }

    /// The result frame: the task as received, with its output.
    pub fn result_frame(&self, output: TaskOutput) -> String {
        let mut t = self.clone();
        t.output = Some(output);
        t.model_type = "task".into();
        frame("task", serde_json::to_value(&t).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tasks_read_and_echo_back_with_every_output_field() {
        let text = json!({"version": 2, "message_type": "task", "data": {
            "options": {"task_id": "TQ-000-111", "task_category": "background", "correlation_id": "c-42",
                        "reply_to": "q-7", "api_key": "SU-9:secret", "installation_id": null,
                        "connect_correlation_id": null, "new_option": 5},
            "input": {"event_type": "usage_file_request_processing", "object_id": "UF-2024-01-1234-5678", "data": null},
            "output": null, "model_type": "task"}})
        .to_string();
        let Ok(Incoming::Task(task)) = Incoming::parse(&text) else {
            panic!("a task");
        };
        assert_eq!(task.category(), Some(TaskCategory::Background));
        assert!(
            !format!("{task:?}").contains("secret"),
            "Debug hides the key"
        );
        let out: Value = serde_json::from_str(&task.result_frame(TaskOutput {
            result: ResultType::Reschedule,
            data: None,
            countdown: 300,
            runtime: 1.82,
            message: None,
        }))
        .expect("json");
        assert_eq!(out["version"], 2);
        assert_eq!(out["message_type"], "task");
        assert_eq!(out["data"]["model_type"], "task");
        assert_eq!(
            out["data"]["options"]["api_key"], "SU-9:secret",
            "options echoed unchanged"
        );
        assert_eq!(
            out["data"]["options"]["new_option"], 5,
            "unknown fields kept"
        );
        assert_eq!(
            out["data"]["output"],
            json!({"result": "reschedule", "data": null, "countdown": 300, "runtime": 1.82, "message": null})
        );
    }

    #[test]
    fn malformed_frames_are_named() {
        assert!(matches!(
            Incoming::parse("{not json"),
            Err(FrameError::NotJson(_))
        ));
        assert_eq!(
            Incoming::parse(r#"{"version": 3, "message_type": "task", "data": null}"#),
            Err(FrameError::Version(3))
        );
        assert!(matches!(
            Incoming::parse(r#"{"version": 2, "message_type": "task", "data": {"options": {}}}"#),
            Err(FrameError::ModelType { .. })
        ));
        assert!(matches!(
            Incoming::parse(
                r#"{"version": 2, "message_type": "task", "data": {"model_type": "task", "options": 1}}"#
            ),
            Err(FrameError::Shape { .. })
        ));
        let Err(FrameError::Shape { reason, .. }) = Incoming::parse(
            r#"{"version": 2, "message_type": "task", "data": {"model_type": "task", "options": {"task_id": 5, "task_category": "SU-1:hush"}}}"#,
        ) else {
            panic!("a shape error");
        };
        assert!(!reason.contains("hush"), "{reason}");
        assert!(matches!(
            Incoming::parse(r#"{"message_type": "task", "data": {"model_type": "task"}}"#),
            Err(FrameError::Legacy { .. })
        ));
        assert_eq!(
            Incoming::parse(r#"{"version": 2, "message_type": "pause", "data": null}"#),
            Ok(Incoming::Other("pause".into()))
        );
        assert_eq!(
            Incoming::parse(r#"{"version": 2, "message_type": "shutdown", "data": null}"#),
            Ok(Incoming::Shutdown)
        );
    }

    #[test]
    fn setup_frames_have_their_shape() {
        let req = SetupRequest {
            event_subscriptions: [(
                "usage_file_request_processing".to_owned(),
                vec!["ready".to_owned()],
            )]
            .into_iter()
            .collect(),
            ui_modules: None,
            icon: None,
            variables: vec![DeclaredVariable {
                name: "TOKEN".into(),
                initial_value: "changeme".into(),
                secure: true,
            }],
            schedulables: vec![],
            anvil_callables: None,
            transformations: None,
            audience: Some(vec!["vendor".into()]),
            repository: Repository {
                readme_url: "r".into(),
                changelog_url: "c".into(),
            },
            runner_version: "0.1.0".into(),
            proxied_connect_api: None,
            model_type: "setup_request".into(),
        };
        let v: Value = serde_json::from_str(&req.to_frame()).expect("json");
        assert_eq!(v["message_type"], "setup_request");
        for key in [
            "ui_modules",
            "icon",
            "anvil_callables",
            "transformations",
            "proxied_connect_api",
        ] {
            assert!(
                v["data"].get(key).is_some_and(Value::is_null),
                "{key} present and null"
            );
        }
        assert!(!format!("{req:?}").contains("changeme"));

        let text = json!({"version": 2, "message_type": "setup_response", "data": {
            "variables": [{"name": "TOKEN", "value": "s3cr3t", "secure": true}],
            "environment_type": "production",
            "logging": {"logging_api_key": "logz-key", "log_level": "INFO", "runner_log_level": "DEBUG",
                        "meta": {"service_id": "SRVC-1", "account_id": "VA-1"}},
            "event_definitions": [{"event_type": "usage_file_request_processing", "api_collection_endpoint": "usage/files",
                                   "api_resource_endpoint": "usage/files/{pk}",
                                   "api_collection_filter": "and(eq(id,${_object_id_}),in(status,${_statuses_}))"}],
            "model_type": "setup_response"}})
        .to_string();
        let Ok(Incoming::SetupResponse(r)) = Incoming::parse(&text) else {
            panic!("a setup response");
        };
        assert_eq!(r.event_definitions.as_ref().map(Vec::len), Some(1));
        let shown = format!("{r:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("logz-key"),
            "{shown}"
        );
    }
}
