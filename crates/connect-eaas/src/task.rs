//! What a handler sees and returns: the [`TaskContext`] it runs in, the [`Outcome`] it answers,
//! and the [`HandlerError`] that turns into `retry` (background, scheduled) or `fail`
//! (interactive).

use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::protocol::{ResultType, TaskCategory};
use connect_client::ConnectClient;

/// The extension's variables as the platform last sent them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Variables(Arc<BTreeMap<String, VariableEntry>>);

#[derive(Clone, PartialEq, Eq)]
struct VariableEntry {
    value: String,
    secure: bool,
}

impl Variables {
    /// Builds a set from `(name, value, secure)` triples.
    pub fn from_entries<I, N, V>(entries: I) -> Variables
    where
        I: IntoIterator<Item = (N, V, bool)>,
        N: Into<String>,
        V: Into<String>,
    {
        Variables(Arc::new(
            entries
                .into_iter()
                .map(|(n, v, secure)| {
                    (
                        n.into(),
                        VariableEntry {
                            value: v.into(),
                            secure,
                        },
                    )
                })
                .collect(),
        ))
    }

    /// The value of `name`. Secure values are returned in clear: pass them where they are used,
    /// never into a log line.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|e| e.value.as_str())
    }

    pub fn is_secure(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|e| e.secure)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The values of secure variables, for tests and log scrubbing.
    pub fn secure_values(&self) -> impl Iterator<Item = &str> {
        self.0
            .values()
            .filter(|e| e.secure)
            .map(|e| e.value.as_str())
    }
}

impl fmt::Debug for Variables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (name, e) in self.0.iter() {
            if e.secure {
                m.entry(name, &"***");
            } else {
                m.entry(name, &e.value);
            }
        }
        m.finish()
    }
}

/// The task being run, as the platform described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    pub task_id: String,
    pub category: TaskCategory,
    pub event_type: String,
    /// The usage file, request or schedule the task is about.
    pub object_id: String,
    pub correlation_id: Option<String>,
}

/// Where the extension runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    /// The extension (service) id, `SRVC-...`.
    pub extension_id: Option<String>,
    pub environment_id: String,
    /// `development`, `test` or `production`.
    pub environment_type: Option<String>,
    pub instance_id: String,
    pub account_id: Option<String>,
}

/// Values the extension's handlers share across tasks (a cache, a lock table), given to the
/// runner once with [`crate::runner::Runner::with_state`], one per type; handlers find them
/// with [`TaskContext::state`]. What would otherwise be a process-wide global is a value the
/// runner holds, so two runners in one process (tests) share nothing.
#[derive(Clone, Default)]
pub struct HandlerState(Arc<BTreeMap<TypeId, Arc<dyn Any + Send + Sync>>>);

impl HandlerState {
    /// This state with `value` added (replacing a value of the same type).
    pub fn with<T: Any + Send + Sync>(&self, value: T) -> HandlerState {
        let mut map = (*self.0).clone();
        map.insert(TypeId::of::<T>(), Arc::new(value));
        HandlerState(Arc::new(map))
    }

    /// The value of type `T`, if the runner was given one.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.0.get(&TypeId::of::<T>())?.downcast_ref::<T>()
    }
}

impl fmt::Debug for HandlerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HandlerState({} values)", self.0.len())
    }
}

/// Everything a handler gets besides its argument.
#[derive(Debug, Clone)]
pub struct TaskContext {
    pub task: TaskInfo,
    /// A Connect client acting with the task's own API key when the platform gave one, else
    /// with the environment's key. Every request carries the `EAAS_*` task headers.
    pub client: ConnectClient,
    /// A client with the environment's key (and the same task headers).
    pub environment_client: ConnectClient,
    /// The installation, when the task names one.
    pub installation: Option<Value>,
    /// A client with the installation's key, when the task names an installation.
    pub installation_client: Option<ConnectClient>,
    /// The variables as the platform last sent them.
    pub config: Variables,
    pub environment: Environment,
    /// What the runner was given for its handlers to share.
    pub state: HandlerState,
}

impl TaskContext {
    /// The shared value of type `T` ([`HandlerState::get`]).
    pub fn state<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.state.get::<T>()
    }
}

/// What a handler answers. Build one with the constructors; the runner turns it into the
/// task's `output` by the rules of the task's category.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub(super) kind: OutcomeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum OutcomeKind {
    Done,
    /// Processed, with a message (scheduled tasks show it as the task's output).
    DoneWith(String),
    Skip(String),
    Fail(String),
    Reschedule(u64),
    Respond {
        success: bool,
        http_status: u16,
        headers: Option<Value>,
        body: Option<Value>,
        message: Option<String>,
    },
}

/// The shortest `reschedule` countdown the platform takes, in seconds.
pub const MIN_COUNTDOWN: u64 = 30;
/// The shortest countdown of a slow-process reschedule, in seconds.
pub const MIN_SLOW_COUNTDOWN: u64 = 300;

impl Outcome {
    /// Processed (`success`).
    pub fn done() -> Outcome {
        Outcome {
            kind: OutcomeKind::Done,
        }
    }

    /// Processed (`success`), with a message for the task's output (scheduled and background
    /// tasks; an interactive task answers with its `data`). The official runner never sends a
    /// message with a background success, having no way to give one; Connect keeps a task's
    /// output text whatever its result, and the lifecycle handlers' successes are worth
    /// reading there (a rerun names the provider's rejection note).
    pub fn done_with_message(message: impl Into<String>) -> Outcome {
        Outcome {
            kind: OutcomeKind::DoneWith(message.into()),
        }
    }

    /// Not processed on purpose, with the reason (`skip`).
    pub fn skip(reason: impl Into<String>) -> Outcome {
        Outcome {
            kind: OutcomeKind::Skip(reason.into()),
        }
    }

    /// Processing failed for a reason a person must look at (`fail`).
    pub fn fail(reason: impl Into<String>) -> Outcome {
        Outcome {
            kind: OutcomeKind::Fail(reason.into()),
        }
    }

    /// Deliver the task again after `countdown` seconds (at least 30).
    pub fn reschedule(countdown: u64) -> Outcome {
        Outcome {
            kind: OutcomeKind::Reschedule(countdown.max(MIN_COUNTDOWN)),
        }
    }

    /// Deliver the task again after `countdown` seconds (at least 300), for long jobs.
    pub fn slow_reschedule(countdown: u64) -> Outcome {
        Outcome {
            kind: OutcomeKind::Reschedule(countdown.max(MIN_SLOW_COUNTDOWN)),
        }
    }

    /// An interactive answer: `success` with `{http_status, headers, body}`.
    pub fn respond(http_status: u16, headers: Option<Value>, body: Option<Value>) -> Outcome {
        Outcome {
            kind: OutcomeKind::Respond {
                success: true,
                http_status,
                headers,
                body,
                message: None,
            },
        }
    }

    /// An interactive refusal: `fail` with `{http_status, headers, body}` and a message.
    pub fn respond_fail(
        http_status: u16,
        headers: Option<Value>,
        body: Option<Value>,
        message: Option<String>,
    ) -> Outcome {
        Outcome {
            kind: OutcomeKind::Respond {
                success: false,
                http_status,
                headers,
                body,
                message,
            },
        }
    }

    /// The result type this outcome sends.
    pub fn result(&self) -> ResultType {
        match &self.kind {
            OutcomeKind::Done | OutcomeKind::DoneWith(_) => ResultType::Success,
            OutcomeKind::Skip(_) => ResultType::Skip,
            OutcomeKind::Fail(_) => ResultType::Fail,
            OutcomeKind::Reschedule(_) => ResultType::Reschedule,
            OutcomeKind::Respond { success: true, .. } => ResultType::Success,
            OutcomeKind::Respond { success: false, .. } => ResultType::Fail,
        }
    }
}

/// A handler's error: becomes `retry` for background and scheduled tasks and `fail` for
/// interactive ones, with its text as the message.
///
/// Any error converts into it with `?`: the message joins its causes with `: `, and the error
/// itself is kept, so a caller (a wrapper, a test) can tell kinds apart with
/// [`HandlerError::downcast_ref`] rather than by reading the text.
pub struct HandlerError {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl HandlerError {
    /// An error that is only a message.
    pub fn msg(message: impl fmt::Display) -> HandlerError {
        HandlerError {
            message: message.to_string(),
            source: None,
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error this one was converted from, if it is an `E`.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.source.as_ref()?.downcast_ref::<E>()
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(e: E) -> HandlerError {
        HandlerError {
            message: connect_client::error_text::error_text(&e),
            source: Some(Box::new(e)),
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HandlerError({:?})", self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_chain_their_causes() {
        let io = std::io::Error::other("disk full");
        let e = HandlerError::from(io);
        assert_eq!(e.message(), "disk full");
        assert_eq!(
            e.downcast_ref::<std::io::Error>().map(|io| io.kind()),
            Some(std::io::ErrorKind::Other),
            "the error is kept, not only its text"
        );
        assert!(
            HandlerError::msg("plain")
                .downcast_ref::<std::io::Error>()
                .is_none()
        );
    }

    #[test]
    fn secure_variables_are_hidden_from_debug() {
        let v =
            Variables::from_entries([("URL", "https://x", false), ("TOKEN", "t0ps3cret", true)]);
        let shown = format!("{v:?}");
        assert!(
            shown.contains("https://x") && !shown.contains("t0ps3cret"),
            "{shown}"
        );
        assert_eq!(v.get("TOKEN"), Some("t0ps3cret"));
        assert!(v.is_secure("TOKEN"));
    }
}
