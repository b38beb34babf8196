//! What the extension declares: event handlers, schedulable methods, variables and startup or
//! shutdown hooks, collected at link time with `inventory` and checked once at start.
//!
//! A declaration is one item next to its handler:
//!
//! ```ignore
//! connect_eaas::event_handler! {
//!     event: "usage_file_request_processing",
//!     statuses: ["ready", "rejected"],
//!     handler: on_usage_file,
//! }
//! connect_eaas::schedulable! {
//!     method: "report_monthly_usage",
//!     name: "Report monthly usage",
//!     description: "Reports last month's QT usage.",
//!     handler: report_monthly_usage,
//! }
//! connect_eaas::variable! { name: "USAGE_SOURCE", initial_value: "", secure: false }
//! ```
//!
//! [`Registry::collect`] builds the name-to-handler maps once and refuses two handlers for one
//! event type or schedulable method, naming both. Tests build a registry from explicit lists
//! with [`Registry::new`] instead. [`Registry::setup_request`] joins it with the extension's `extension.json`
//! ([`ExtensionDescriptor`]) into the frame the runner sends after connecting.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::protocol::{DeclaredSchedulable, DeclaredVariable, Repository, SetupRequest};
use crate::task::{HandlerError, Outcome, TaskContext, Variables};

#[doc(hidden)]
pub use inventory;

/// What a handler returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Outcome, HandlerError>> + Send>>;

/// A handler: the task's context and its argument (the background object, the interactive
/// payload or the schedule).
pub type HandlerFn = fn(TaskContext, Value) -> HandlerFuture;

/// What a startup or shutdown hook returns.
pub type HookFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A startup or shutdown hook.
pub type HookFn = fn(HookContext) -> HookFuture;

/// What a startup or shutdown hook gets.
#[derive(Debug, Clone)]
pub struct HookContext {
    pub config: Variables,
    pub environment_type: Option<String>,
}

/// A handler of one event type.
#[derive(Debug, Clone, Copy)]
pub struct EventHandler {
    pub event_type: &'static str,
    /// The object statuses handled (background events); empty for interactive events.
    pub statuses: &'static [&'static str],
    /// The handler's path, to name it in errors.
    pub name: &'static str,
    pub handler: HandlerFn,
}

/// A method a schedule can run.
#[derive(Debug, Clone, Copy)]
pub struct Schedulable {
    pub method: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    /// The handler's path, to name it in errors.
    pub handler_name: &'static str,
    pub handler: HandlerFn,
}

/// A variable the extension reads, with its initial value.
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    pub name: &'static str,
    pub initial_value: &'static str,
    pub secure: bool,
}

/// Runs once per runner after the first setup response.
#[derive(Debug, Clone, Copy)]
pub struct StartupHook {
    pub name: &'static str,
    pub hook: HookFn,
}

/// Runs once when the runner stops.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownHook {
    pub name: &'static str,
    pub hook: HookFn,
}

inventory::collect!(EventHandler);
inventory::collect!(Schedulable);
inventory::collect!(Variable);
inventory::collect!(StartupHook);
inventory::collect!(ShutdownHook);

/// Declares an event handler: `event`, the `statuses` it handles (omit for interactive
/// events) and the `async fn(TaskContext, serde_json::Value) -> Result<Outcome, HandlerError>`.
#[macro_export]
macro_rules! event_handler {
    (event: $event:expr, $(statuses: [$($status:expr),* $(,)?],)? handler: $handler:path $(,)?) => {
        const _: () = {
            fn __call(
                ctx: $crate::task::TaskContext,
                arg: $crate::registry::__Value,
            ) -> $crate::registry::HandlerFuture {
                ::std::boxed::Box::pin($handler(ctx, arg))
            }
            $crate::registry::inventory::submit! {
                $crate::registry::EventHandler {
                    event_type: $event,
                    statuses: &[$($($status),*)?],
                    name: concat!(module_path!(), "::", stringify!($handler)),
                    handler: __call,
                }
            }
        };
    };
}

/// Declares a schedulable method: its `method` name (what a schedule names), a `name` and a
/// `description` shown in Connect, and the handler (whose argument is the schedule object).
#[macro_export]
macro_rules! schedulable {
    (method: $method:expr, name: $name:expr, description: $description:expr, handler: $handler:path $(,)?) => {
        const _: () = {
            fn __call(
                ctx: $crate::task::TaskContext,
                arg: $crate::registry::__Value,
            ) -> $crate::registry::HandlerFuture {
                ::std::boxed::Box::pin($handler(ctx, arg))
            }
            $crate::registry::inventory::submit! {
                $crate::registry::Schedulable {
                    method: $method,
                    name: $name,
                    description: $description,
                    handler_name: concat!(module_path!(), "::", stringify!($handler)),
                    handler: __call,
                }
            }
        };
    };
}

/// Declares a variable the extension reads.
#[macro_export]
macro_rules! variable {
    (name: $name:expr, initial_value: $initial:expr, secure: $secure:expr $(,)?) => {
        $crate::registry::inventory::submit! {
            $crate::registry::Variable { name: $name, initial_value: $initial, secure: $secure }
        }
    };
}

/// Declares an `async fn(HookContext)` run once after the first setup response.
#[macro_export]
macro_rules! on_startup {
    ($hook:path) => {
        $crate::__declare_hook!(StartupHook, $hook);
    };
}

/// Declares an `async fn(HookContext)` run once when the runner stops.
#[macro_export]
macro_rules! on_shutdown {
    ($hook:path) => {
        $crate::__declare_hook!(ShutdownHook, $hook);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __declare_hook {
    ($kind:ident, $hook:path) => {
        const _: () = {
            fn __call(ctx: $crate::registry::HookContext) -> $crate::registry::HookFuture {
                ::std::boxed::Box::pin($hook(ctx))
            }
            $crate::registry::inventory::submit! {
                $crate::registry::$kind {
                    name: concat!(module_path!(), "::", stringify!($hook)),
                    hook: __call,
                }
            }
        };
    };
}

#[doc(hidden)]
pub use serde_json::Value as __Value;

/// Why the declarations cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("two handlers for event type {event_type:?}: {first} and {second}")]
    DuplicateEvent {
        event_type: String,
        first: String,
        second: String,
    },
    #[error("two handlers for schedulable method {method:?}: {first} and {second}")]
    DuplicateSchedulable {
        method: String,
        first: String,
        second: String,
    },
    #[error("variable {name:?} is declared twice")]
    DuplicateVariable { name: String },
    #[error(
        "variable name {name:?} is not valid: it must start with a letter and hold only letters, digits and _"
    )]
    VariableName { name: String },
    #[error("event handler {name} declares an empty event type")]
    EmptyEventType { name: String },
    #[error(
        "event handler {name} handles background event {event_type} without statuses: list the object statuses it handles"
    )]
    NoStatuses { name: String, event_type: String },
    #[error("event handler {name} lists status {status:?} twice")]
    DuplicateStatus { name: String, status: String },
}

/// The checked declarations, built once at start.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    events: BTreeMap<String, EventHandler>,
    schedulables: BTreeMap<String, Schedulable>,
    variables: Vec<Variable>,
    startup: Vec<StartupHook>,
    shutdown: Vec<ShutdownHook>,
}

impl Registry {
    /// Everything declared with the macros in the program.
    pub fn collect() -> Result<Registry, RegistryError> {
        Registry::new(
            inventory::iter::<EventHandler>.into_iter().copied(),
            inventory::iter::<Schedulable>.into_iter().copied(),
            inventory::iter::<Variable>.into_iter().copied(),
        )
        .map(|r| {
            r.with_hooks(
                inventory::iter::<StartupHook>.into_iter().copied(),
                inventory::iter::<ShutdownHook>.into_iter().copied(),
            )
        })
    }

    /// A registry of explicit declarations (tests, benchmarks).
    pub fn new(
        events: impl IntoIterator<Item = EventHandler>,
        schedulables: impl IntoIterator<Item = Schedulable>,
        variables: impl IntoIterator<Item = Variable>,
    ) -> Result<Registry, RegistryError> {
        let mut r = Registry::default();
        // Sorted first, so which of two duplicates is "first" does not depend on link order.
        let mut events: Vec<EventHandler> = events.into_iter().collect();
        events.sort_by_key(|e| (e.event_type, e.name));
        for e in events {
            if e.event_type.trim().is_empty() {
                return Err(RegistryError::EmptyEventType {
                    name: e.name.to_owned(),
                });
            }
            // The platform checks a background object's status before the handler runs; with
            // no statuses that check cannot be made and every task would be retried forever.
            if is_background_event(e.event_type) && e.statuses.is_empty() {
                return Err(RegistryError::NoStatuses {
                    name: e.name.to_owned(),
                    event_type: e.event_type.to_owned(),
                });
            }
            for (i, s) in e.statuses.iter().enumerate() {
                if e.statuses[..i].contains(s) {
                    return Err(RegistryError::DuplicateStatus {
                        name: e.name.to_owned(),
                        status: (*s).to_owned(),
                    });
                }
            }
            if let Some(first) = r.events.get(e.event_type) {
                return Err(RegistryError::DuplicateEvent {
                    event_type: e.event_type.to_owned(),
                    first: first.name.to_owned(),
                    second: e.name.to_owned(),
                });
            }
            r.events.insert(e.event_type.to_owned(), e);
        }
        let mut schedulables: Vec<Schedulable> = schedulables.into_iter().collect();
        schedulables.sort_by_key(|s| (s.method, s.handler_name));
        for s in schedulables {
            if let Some(first) = r.schedulables.get(s.method) {
                return Err(RegistryError::DuplicateSchedulable {
                    method: s.method.to_owned(),
                    first: first.handler_name.to_owned(),
                    second: s.handler_name.to_owned(),
                });
            }
            r.schedulables.insert(s.method.to_owned(), s);
        }
        let mut variables: Vec<Variable> = variables.into_iter().collect();
        variables.sort_by_key(|v| v.name);
        for v in variables {
            if !valid_variable_name(v.name) {
                return Err(RegistryError::VariableName {
                    name: v.name.to_owned(),
                });
            }
            if r.variables.iter().any(|w| w.name == v.name) {
                return Err(RegistryError::DuplicateVariable {
                    name: v.name.to_owned(),
                });
            }
            r.variables.push(v);
        }
        Ok(r)
    }

    /// Adds startup and shutdown hooks.
    pub fn with_hooks(
        mut self,
        startup: impl IntoIterator<Item = StartupHook>,
        shutdown: impl IntoIterator<Item = ShutdownHook>,
    ) -> Registry {
        self.startup.extend(startup);
        self.startup.sort_by_key(|h| h.name);
        self.shutdown.extend(shutdown);
        self.shutdown.sort_by_key(|h| h.name);
        self
    }

    pub fn event(&self, event_type: &str) -> Option<&EventHandler> {
        self.events.get(event_type)
    }

    pub fn schedulable(&self, method: &str) -> Option<&Schedulable> {
        self.schedulables.get(method)
    }

    pub fn events(&self) -> impl Iterator<Item = &EventHandler> {
        self.events.values()
    }

    pub fn schedulables(&self) -> impl Iterator<Item = &Schedulable> {
        self.schedulables.values()
    }

    pub fn variables(&self) -> &[Variable] {
        &self.variables
    }

    pub fn startup_hooks(&self) -> &[StartupHook] {
        &self.startup
    }

    pub fn shutdown_hooks(&self) -> &[ShutdownHook] {
        &self.shutdown
    }

    /// The frame the runner sends after connecting.
    pub fn setup_request(&self, descriptor: &ExtensionDescriptor) -> SetupRequest {
        SetupRequest {
            event_subscriptions: self
                .events
                .values()
                .map(|e| {
                    (
                        e.event_type.to_owned(),
                        e.statuses.iter().map(|s| (*s).to_owned()).collect(),
                    )
                })
                .collect(),
            ui_modules: None,
            icon: None,
            variables: self
                .variables
                .iter()
                .map(|v| DeclaredVariable {
                    name: v.name.to_owned(),
                    initial_value: v.initial_value.to_owned(),
                    secure: v.secure,
                })
                .collect(),
            schedulables: self
                .schedulables
                .values()
                .map(|s| DeclaredSchedulable {
                    method: s.method.to_owned(),
                    name: s.name.to_owned(),
                    description: s.description.to_owned(),
                })
                .collect(),
            anvil_callables: None,
            transformations: None,
            audience: descriptor.audience.clone(),
            repository: Repository {
                readme_url: descriptor.readme_url.clone(),
                changelog_url: descriptor.changelog_url.clone(),
            },
            runner_version: crate::VERSION.to_owned(),
            proxied_connect_api: None,
            model_type: "setup_request".into(),
        }
    }

    /// A readable account of the declarations, for `connect-usage describe`.
    pub fn describe(&self, descriptor: &ExtensionDescriptor) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} {}: {}",
            descriptor.name, descriptor.version, descriptor.description
        );
        if let Some(a) = &descriptor.audience {
            let _ = writeln!(s, "audience: {}", a.join(", "));
        }
        let _ = writeln!(s, "readme: {}", descriptor.readme_url);
        let _ = writeln!(s, "changelog: {}", descriptor.changelog_url);
        let _ = writeln!(s, "\nevents:");
        if self.events.is_empty() {
            let _ = writeln!(s, "  (none)");
        }
        for e in self.events.values() {
            let statuses = if e.statuses.is_empty() {
                "(any)".to_owned()
            } else {
                e.statuses.join(", ")
            };
            let _ = writeln!(s, "  {} [{}] -> {}", e.event_type, statuses, e.name);
        }
        let _ = writeln!(s, "\nschedulables:");
        if self.schedulables.is_empty() {
            let _ = writeln!(s, "  (none)");
        }
        for m in self.schedulables.values() {
            let _ = writeln!(
                s,
                "  {} \"{}\": {} -> {}",
                m.method, m.name, m.description, m.handler_name
            );
        }
        let _ = writeln!(s, "\nvariables:");
        if self.variables.is_empty() {
            let _ = writeln!(s, "  (none)");
        }
        for v in &self.variables {
            let initial = if v.secure {
                "(secure)".to_owned()
            } else {
                format!("{:?}", v.initial_value)
            };
            let _ = writeln!(s, "  {} = {}", v.name, initial);
        }
        s
    }

    /// The declarations as JSON, for `connect-usage describe --json`: the setup request the
    /// runner sends (secure initial values hidden).
    pub fn describe_json(&self, descriptor: &ExtensionDescriptor) -> Value {
        let mut req = serde_json::to_value(self.setup_request(descriptor)).unwrap_or(Value::Null);
        if let Some(vars) = req.get_mut("variables").and_then(Value::as_array_mut) {
            for v in vars {
                if v["secure"] == true {
                    v["initial_value"] = Value::String("***".into());
                }
            }
        }
        serde_json::json!({
            "name": descriptor.name,
            "description": descriptor.description,
            "version": descriptor.version,
            "setup_request": req,
        })
    }
}

/// Whether an event type is a background one (an object in a status): Connect names them all
/// `..._request_processing` (asset, tier config, listing, tier account and usage file events).
pub fn is_background_event(event_type: &str) -> bool {
    event_type.ends_with("_request_processing")
}

/// Connect's rule for variable names: a letter, then letters, digits or `_`.
fn valid_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `extension.json`: what Connect shows about the extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionDescriptor {
    pub name: String,
    pub description: String,
    pub version: String,
    #[serde(default)]
    pub audience: Option<Vec<String>>,
    pub readme_url: String,
    pub changelog_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    /// The variables the extension reads, with their meaning (what the README documents and a
    /// person setting up the environment needs); the registry's declarations must agree.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<DescribedVariable>,
}

/// A variable as `extension.json` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescribedVariable {
    pub name: String,
    #[serde(default)]
    pub initial_value: String,
    #[serde(default)]
    pub secure: bool,
    pub description: String,
}

/// Why `extension.json` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DescriptorError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

impl ExtensionDescriptor {
    pub fn load(path: &Path) -> Result<ExtensionDescriptor, DescriptorError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| DescriptorError::Read {
            path: shown.clone(),
            source,
        })?;
        ExtensionDescriptor::parse(&text, &shown)
    }

    /// Parses and checks a descriptor; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<ExtensionDescriptor, DescriptorError> {
        let invalid = |reason: String| DescriptorError::Invalid {
            path: origin.to_owned(),
            reason,
        };
        let de = &mut serde_json::Deserializer::from_str(text);
        let d: ExtensionDescriptor = serde_path_to_error::deserialize(de)
            .map_err(|e| invalid(format!("at {}: {}", e.path(), e.inner())))?;
        for (field, value) in [
            ("name", &d.name),
            ("version", &d.version),
            ("readme_url", &d.readme_url),
            ("changelog_url", &d.changelog_url),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(format!("{field} is empty")));
            }
        }
        for (field, url) in [
            ("readme_url", &d.readme_url),
            ("changelog_url", &d.changelog_url),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(invalid(format!("{field} {url:?} is not an http(s) URL")));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, v) in d.variables.iter().enumerate() {
            if !valid_variable_name(&v.name) {
                return Err(invalid(format!(
                    "variables[{i}].name {:?} is not a variable name (A-Z, 0-9, _)",
                    v.name
                )));
            }
            if !seen.insert(v.name.as_str()) {
                return Err(invalid(format!("variables[{i}]: {} twice", v.name)));
            }
            if v.description.trim().is_empty() {
                return Err(invalid(format!(
                    "variables[{i}] ({}) has no description",
                    v.name
                )));
            }
        }
        if let Some(bad) = d
            .audience
            .iter()
            .flatten()
            .find(|a| !matches!(a.as_str(), "vendor" | "distributor" | "reseller"))
        {
            return Err(invalid(format!(
                "audience {bad:?} is not one of vendor, distributor, reseller"
            )));
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn nothing(_: TaskContext, _: Value) -> Result<Outcome, HandlerError> {
        Ok(Outcome::done())
    }

    fn call(ctx: TaskContext, v: Value) -> HandlerFuture {
        Box::pin(nothing(ctx, v))
    }

    fn handler(event_type: &'static str, name: &'static str) -> EventHandler {
        EventHandler {
            event_type,
            statuses: &["ready"],
            name,
            handler: call,
        }
    }

    fn schedulable(method: &'static str, handler_name: &'static str) -> Schedulable {
        Schedulable {
            method,
            name: "n",
            description: "d",
            handler_name,
            handler: call,
        }
    }

    #[test]
    fn duplicates_are_refused_naming_both() {
        let e = Registry::new(
            [
                handler("usage_file_request_processing", "a::one"),
                handler("usage_file_request_processing", "b::two"),
            ],
            [],
            [],
        )
        .expect_err("duplicate");
        assert_eq!(
            e.to_string(),
            "two handlers for event type \"usage_file_request_processing\": a::one and b::two"
        );
        let e = Registry::new([], [schedulable("m", "x::f"), schedulable("m", "y::g")], [])
            .expect_err("duplicate");
        assert!(e.to_string().contains("x::f and y::g"), "{e}");
        let v = Variable {
            name: "A_B",
            initial_value: "",
            secure: false,
        };
        assert!(matches!(
            Registry::new([], [], [v, v]),
            Err(RegistryError::DuplicateVariable { .. })
        ));
        let bare = EventHandler {
            event_type: "usage_file_request_processing",
            statuses: &[],
            name: "a::bare",
            handler: call,
        };
        assert!(matches!(
            Registry::new([bare], [], []),
            Err(RegistryError::NoStatuses { .. })
        ));
        let bad = Variable {
            name: "1X",
            initial_value: "",
            secure: false,
        };
        assert!(matches!(
            Registry::new([], [], [bad]),
            Err(RegistryError::VariableName { .. })
        ));
    }

    #[test]
    fn setup_request_joins_descriptor_and_declarations() {
        let r = Registry::new(
            [
                handler("usage_file_request_processing", "a::one"),
                EventHandler {
                    event_type: "product_custom_event_processing",
                    statuses: &[],
                    name: "a::custom",
                    handler: call,
                },
            ],
            [schedulable("report", "a::report")],
            [Variable {
                name: "TOKEN",
                initial_value: "changeme",
                secure: true,
            }],
        )
        .expect("valid");
        let d = ExtensionDescriptor::parse(
            r#"{"name": "x", "description": "An extension.", "version": "1.0.0",
                "readme_url": "https://example.com/readme",
                "changelog_url": "https://example.com/changelog",
                "variables": [{"name": "TOKEN", "initial_value": "changeme", "secure": true,
                               "description": "A token."}]}"#,
            "test",
        )
        .expect("a valid descriptor");
        let req = serde_json::to_value(r.setup_request(&d)).expect("json");
        assert_eq!(
            req["event_subscriptions"],
            serde_json::json!({"product_custom_event_processing": [], "usage_file_request_processing": ["ready"]})
        );
        assert_eq!(req["repository"]["readme_url"], d.readme_url.as_str());
        assert_eq!(req["schedulables"][0]["method"], "report");
        assert_eq!(
            req["variables"][0]["initial_value"], "changeme",
            "the wire carries it"
        );
        let shown = r.describe(&d) + &r.describe_json(&d).to_string();
        assert!(!shown.contains("changeme"), "{shown}");
    }

    #[test]
    fn descriptors_are_checked() {
        let bad = r#"{"name": "x", "description": "", "version": "1", "readme_url": "https://r"}"#;
        let e = ExtensionDescriptor::parse(bad, "ext.json").expect_err("no changelog");
        assert!(e.to_string().contains("changelog_url"), "{e}");
        let bad = r#"{"name": "x", "description": "", "version": "1", "readme_url": "https://r",
                      "changelog_url": "https://c", "audience": ["everyone"]}"#;
        let e = ExtensionDescriptor::parse(bad, "ext.json").expect_err("bad audience");
        assert!(e.to_string().contains("everyone"), "{e}");
        let bad = r#"{"name": "x", "description": "", "version": "1", "readme_url": "https://r",
                      "changelog_url": "https://c", "variables": [{"name": "A_B", "description": " "}]}"#;
        let e = ExtensionDescriptor::parse(bad, "ext.json").expect_err("no description");
        assert!(
            e.to_string()
                .contains("variables[0] (A_B) has no description"),
            "{e}"
        );
    }
}
