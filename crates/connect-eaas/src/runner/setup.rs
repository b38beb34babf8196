//! What the platform's setup responses told the runner: variables, event definitions, the
//! extension's id and log levels. The first response is taken whole; later ones (which may
//! come at any time, on either session) replace only what they carry non-empty, so an empty
//! variables list never clears the variables.

use std::collections::HashMap;

use crate::protocol::{EventDefinition, LoggingMeta, SetupResponse};
use crate::task::{Environment, Variables};
use connect_client::secret::Secret;

/// Log levels the platform asks for, as tracing level names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogLevels {
    /// For the runner's own logs (`connect_eaas`).
    pub runner: Option<String>,
    /// For the extension's logs (handlers, the pipeline, the REST client).
    pub extension: Option<String>,
}

/// Turns a Python logging level name (`DEBUG`, `INFO`, `WARNING`, `ERROR`, `CRITICAL`) into a
/// tracing level name.
pub fn tracing_level(python_level: &str) -> Option<&'static str> {
    match python_level.trim().to_ascii_uppercase().as_str() {
        "NOTSET" | "TRACE" => Some("trace"),
        "DEBUG" => Some("debug"),
        "INFO" => Some("info"),
        "WARNING" | "WARN" => Some("warn"),
        "ERROR" | "CRITICAL" | "FATAL" => Some("error"),
        _ => None,
    }
}

/// The merged setup.
#[derive(Debug, Clone, Default)]
pub struct SetupState {
    received: bool,
    variables: Variables,
    environment_type: Option<String>,
    meta: LoggingMeta,
    logging_api_key: Option<Secret>,
    log_level: Option<String>,
    runner_log_level: Option<String>,
    definitions: HashMap<String, EventDefinition>,
}

/// What a setup response changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// It was the first setup response of the runner.
    pub first: bool,
    pub variables_changed: bool,
    /// Log levels to apply (only those the response carried and that are valid).
    pub levels: LogLevels,
    /// Level names that are not logging levels (ignored, and logged by the caller).
    pub unknown_levels: Vec<String>,
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_ref().filter(|s| !s.trim().is_empty()).cloned()
}

impl SetupState {
    pub fn received(&self) -> bool {
        self.received
    }

    pub fn variables(&self) -> &Variables {
        &self.variables
    }

    pub fn environment_type(&self) -> Option<&str> {
        self.environment_type.as_deref()
    }

    /// The extension's id (`SRVC-...`).
    pub fn service_id(&self) -> Option<&str> {
        self.meta.service_id.as_deref()
    }

    pub fn meta(&self) -> &LoggingMeta {
        &self.meta
    }

    pub fn has_logging_api_key(&self) -> bool {
        self.logging_api_key.is_some()
    }

    /// The key of Connect's log service (the last one the platform gave).
    pub fn logging_api_key(&self) -> Option<&Secret> {
        self.logging_api_key.as_ref()
    }

    pub fn definition(&self, event_type: &str) -> Option<&EventDefinition> {
        self.definitions.get(event_type)
    }

    pub fn environment(&self, environment_id: &str, instance_id: &str) -> Environment {
        Environment {
            extension_id: self.meta.service_id.clone(),
            environment_id: environment_id.to_owned(),
            environment_type: self.environment_type.clone(),
            instance_id: instance_id.to_owned(),
            account_id: self.meta.account_id.clone(),
        }
    }

    /// Merges a setup response.
    pub fn apply(&mut self, resp: SetupResponse) -> Applied {
        let first = !self.received;
        self.received = true;
        let mut applied = Applied {
            first,
            ..Applied::default()
        };
        if let Some(vars) = resp.variables.filter(|v| first || !v.is_empty()) {
            let new = Variables::from_entries(
                vars.into_iter()
                    .map(|v| (v.name, v.value.unwrap_or_default(), v.secure)),
            );
            applied.variables_changed = new != self.variables;
            self.variables = new;
        }
        if let Some(t) = non_empty(&resp.environment_type) {
            self.environment_type = Some(t);
        }
        let logging = resp.logging.unwrap_or_default();
        if let Some(meta) = logging.meta {
            let keep = |new: Option<String>, old: &mut Option<String>| {
                if let Some(v) = non_empty(&new) {
                    *old = Some(v);
                }
            };
            keep(meta.service_id, &mut self.meta.service_id);
            keep(meta.hub_id, &mut self.meta.hub_id);
            keep(meta.repository_tag, &mut self.meta.repository_tag);
            keep(meta.account_id, &mut self.meta.account_id);
            keep(meta.account_name, &mut self.meta.account_name);
            if let Some(p) = meta.products.filter(|p| !p.is_empty()) {
                self.meta.products = Some(p);
            }
        }
        if let Some(k) = non_empty(&logging.logging_api_key) {
            self.logging_api_key = Some(Secret::new(k));
        }
        for (level, slot, target) in [
            (
                non_empty(&logging.log_level),
                &mut self.log_level,
                &mut applied.levels.extension,
            ),
            (
                non_empty(&logging.runner_log_level),
                &mut self.runner_log_level,
                &mut applied.levels.runner,
            ),
        ] {
            if let Some(name) = level {
                match tracing_level(&name) {
                    Some(l) => {
                        *slot = Some(name);
                        *target = Some(l.to_owned());
                    }
                    None => applied.unknown_levels.push(name),
                }
            }
        }
        // Unlike the official runner, later definitions are taken too: a platform that
        // changes them should not need a restart of every runner.
        if let Some(defs) = resp.event_definitions.filter(|d| !d.is_empty()) {
            for d in defs {
                self.definitions.insert(d.event_type.clone(), d);
            }
        }
        applied
    }
}

/// The status filter of a background event: the definition's template with `${_object_id_}`
/// and `${_statuses_}` substituted. Any other `${...}` (or `$name`) is an error, as is an
/// object id or status that would change the query's meaning.
pub fn status_filter(template: &str, object_id: &str, statuses: &[&str]) -> Result<String, String> {
    let safe = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if !safe(object_id) {
        return Err(format!("object id {object_id:?} is not a Connect id"));
    }
    if statuses.is_empty() {
        return Err(
            "the event is declared without statuses, so its status cannot be checked".into(),
        );
    }
    if let Some(bad) = statuses.iter().find(|s| !safe(s)) {
        return Err(format!("status {bad:?} is not a status name"));
    }
    let joined = format!("({})", statuses.join(","));
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, consumed) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end) => (&inner[..end], end + 2),
                None => return Err(format!("unclosed ${{ in filter template {template:?}")),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        match name {
            "_object_id_" => out.push_str(object_id),
            "_statuses_" => out.push_str(&joined),
            other => {
                return Err(format!(
                    "filter template {template:?} names ${other}, which the runner does not know"
                ));
            }
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The `skip` message of a background task whose object is no longer in a handled status.
pub fn status_mismatch_message(statuses: &[&str]) -> String {
    format!(
        "The request status does not match the supported statuses: {}.",
        statuses.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{LoggingSettings, VariableValue};

    fn response(vars: &[(&str, &str, bool)], level: Option<&str>) -> SetupResponse {
        SetupResponse {
            variables: Some(
                vars.iter()
                    .map(|(n, v, s)| VariableValue {
                        name: (*n).into(),
                        value: Some((*v).into()),
                        secure: *s,
                    })
                    .collect(),
            ),
            logging: Some(LoggingSettings {
                log_level: level.map(str::to_owned),
                meta: Some(LoggingMeta {
                    service_id: Some("SRVC-1".into()),
                    ..LoggingMeta::default()
                }),
                ..LoggingSettings::default()
            }),
            ..SetupResponse::default()
        }
    }

    #[test]
    fn later_responses_replace_only_what_they_carry() {
        let mut s = SetupState::default();
        let a = s.apply(response(&[("A", "1", false)], Some("INFO")));
        assert!(a.first && a.variables_changed);
        assert_eq!(a.levels.extension.as_deref(), Some("info"));
        let b = s.apply(response(&[], Some("DEBUG")));
        assert!(!b.first && !b.variables_changed);
        assert_eq!(
            s.variables().get("A"),
            Some("1"),
            "empty list does not clear"
        );
        assert_eq!(b.levels.extension.as_deref(), Some("debug"));
        let mut empty_meta = response(&[("A", "2", false)], Some("LOUD"));
        empty_meta.logging.as_mut().expect("set").meta = Some(LoggingMeta::default());
        let c = s.apply(empty_meta);
        assert!(c.variables_changed);
        assert_eq!(c.unknown_levels, ["LOUD"]);
        assert_eq!(s.service_id(), Some("SRVC-1"), "empty meta keeps the id");
    }

    #[test]
    fn filters_are_substituted_or_refused() {
        let t = "and(eq(id,${_object_id_}),in(status,${_statuses_}))";
        assert_eq!(
            status_filter(t, "UF-2024-01-1234-5678", &["ready", "closed"]).expect("valid"),
            "and(eq(id,UF-2024-01-1234-5678),in(status,(ready,closed)))"
        );
        assert_eq!(
            status_filter("eq(id,$_object_id_)", "PR-1", &["pending"]).expect("valid"),
            "eq(id,PR-1)"
        );
        assert!(status_filter(t, "UF-1),or(x", &["ready"]).is_err());
        assert!(status_filter(t, "UF-1", &[]).is_err());
        assert!(status_filter("eq(id,${other})", "UF-1", &["ready"]).is_err());
        assert_eq!(
            status_mismatch_message(&["ready", "closed"]),
            "The request status does not match the supported statuses: ready,closed."
        );
    }
}
