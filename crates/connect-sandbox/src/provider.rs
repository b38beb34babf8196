//! The provider's side, played by the sandbox: when a usage file is submitted (`pending`), a
//! provider reviews it and accepts or rejects it with a note. Off by default (the provider
//! then acts only through the API with its own key, as tests do); `connect-usage demo` and
//! `connect-usage sandbox --provider auto` turn it on.
//!
//! Rejection rules are checked in order: a rule rejects a matching file up to `times` times,
//! and applies to at most `files` different files. A file no rule rejects is accepted. The
//! policy is set at start and changed at run time through `/sandbox/provider`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use super::server::AppState;
use super::store::UsageFileState;
use connect_client::models::UsageFileStatus;

/// How the sandbox's provider answers submitted files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderPolicy {
    /// Review submitted files; when false the provider acts only through the API.
    pub auto: bool,
    /// Time from `pending` to the provider's answer.
    pub review_delay_ms: u64,
    /// Rejections, checked in order.
    pub reject: Vec<RejectRule>,
    /// The note of an acceptance.
    pub acceptance_note: String,
}

impl Default for ProviderPolicy {
    fn default() -> Self {
        ProviderPolicy {
            auto: false,
            review_delay_ms: 200,
            reject: Vec::new(),
            acceptance_note: "Accepted by the sandbox provider".into(),
        }
    }
}

/// Which files a provider rejects, how often, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectRule {
    /// Only files of this contract (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<String>,
    /// Only files of this product (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// Rejections of each matching file before it is let through.
    #[serde(default = "one")]
    pub times: u32,
    /// Different files the rule rejects at most (no bound when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u32>,
    /// The rejection note.
    pub note: String,
}

fn one() -> u32 {
    1
}

impl ProviderPolicy {
    pub fn check(&self) -> Result<(), String> {
        for (i, r) in self.reject.iter().enumerate() {
            if r.note.trim().is_empty() || r.note.chars().count() > 200 {
                return Err(format!(
                    "reject[{i}].note must hold 1 to 200 characters (Connect's limit)"
                ));
            }
        }
        if self.acceptance_note.chars().count() > 200 {
            return Err("acceptance_note holds at most 200 characters".into());
        }
        Ok(())
    }

    /// The demo's provider: rejects the first file it reviews once, accepts everything else.
    pub fn demo() -> ProviderPolicy {
        ProviderPolicy {
            auto: true,
            review_delay_ms: 300,
            reject: vec![RejectRule {
                contract: None,
                product: None,
                times: 1,
                files: Some(1),
                note: "Quantities look higher than our metering for this period: please check and resubmit".into(),
            }],
            ..ProviderPolicy::default()
        }
    }
}

/// The policy and what it has done so far.
#[derive(Debug, Default)]
pub struct Provider {
    pub policy: ProviderPolicy,
    /// Rejections by (rule, file).
    rejections: HashMap<(usize, String), u32>,
    /// Files each rule rejected.
    files: HashMap<usize, HashSet<String>>,
    /// Every answer given: `{file, decision, note, at}`.
    pub log: Vec<Value>,
}

/// What the provider does with a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Accept(String),
    Reject(String),
}

impl Provider {
    pub fn new(policy: ProviderPolicy) -> Provider {
        Provider {
            policy,
            ..Provider::default()
        }
    }

    /// Replaces the policy; what the old rules did is forgotten.
    pub fn set_policy(&mut self, policy: ProviderPolicy) {
        *self = Provider {
            policy,
            log: std::mem::take(&mut self.log),
            ..Provider::default()
        };
    }

    pub fn reset(&mut self) {
        let policy = self.policy.clone();
        *self = Provider::new(policy);
    }

    /// Decides on a file and remembers it.
    pub fn decide(&mut self, file: &UsageFileState) -> Decision {
        let contract = file.contract["id"].as_str().unwrap_or_default();
        let product = file.product["id"].as_str().unwrap_or_default();
        for (i, rule) in self.policy.reject.iter().enumerate() {
            if rule.contract.as_deref().is_some_and(|c| c != contract)
                || rule.product.as_deref().is_some_and(|p| p != product)
            {
                continue;
            }
            let seen = self.files.entry(i).or_default();
            if !seen.contains(&file.id) && rule.files.is_some_and(|n| seen.len() >= n as usize) {
                continue;
            }
            let count = self.rejections.entry((i, file.id.clone())).or_default();
            if *count >= rule.times {
                continue;
            }
            *count += 1;
            seen.insert(file.id.clone());
            return Decision::Reject(rule.note.clone());
        }
        Decision::Accept(self.policy.acceptance_note.clone())
    }
}

/// Watches for submitted files and answers them as the policy says, until the sandbox stops.
pub async fn drive(app: AppState) {
    let mut events = app.subscribe();
    loop {
        match events.recv().await {
            Ok(ev) if ev.kind == "usage_file.status" && ev.to.as_deref() == Some("pending") => {
                let policy = app.provider().policy.clone();
                if !policy.auto {
                    continue;
                }
                let app = app.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(policy.review_delay_ms)).await;
                    review(&app, &ev.object_id);
                });
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                warn!(
                    missed = n,
                    "the sandbox provider fell behind; some submitted files stay pending"
                );
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Reviews one file, if it is still pending.
pub fn review(app: &AppState, file_id: &str) {
    let (decision, provider_id) = {
        let store = app.store();
        let Some(file) = store.file(file_id) else {
            return;
        };
        if file.status != UsageFileStatus::Pending {
            debug!(file = file_id, status = %file.status, "no longer pending: not reviewed");
            return;
        }
        let mut provider = app.provider();
        if !provider.policy.auto {
            return;
        }
        (provider.decide(file), file.provider_id().to_owned())
    };
    let Some(actor) = app.actor_for_account(&provider_id) else {
        warn!(
            file = file_id,
            provider = provider_id,
            "no key of the file's provider in the dataset: not reviewed"
        );
        return;
    };
    let (verb, note) = match &decision {
        Decision::Accept(n) => ("accepted", n.clone()),
        Decision::Reject(n) => ("rejected", n.clone()),
    };
    match super::usage_files::provider_review(app, &actor, file_id, &decision) {
        Ok(()) => {
            info!(file = file_id, decision = verb, note = %note, "the sandbox provider answered");
            app.provider().log.push(json!({
                "file": file_id,
                "decision": verb,
                "note": note,
                "at": super::store::timestamp(chrono::Utc::now()),
            }));
        }
        Err(e) => {
            warn!(file = file_id, code = e.code, errors = ?e.errors, "the sandbox provider could not answer")
        }
    }
}
