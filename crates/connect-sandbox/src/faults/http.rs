//! HTTP fault rules: rules that make the sandbox's REST API answer like a struggling Connect.
//!
//! A rule matches requests by method and path prefix, fires with a probability (`rate`), can
//! let the first matches through (`skip`) and expire after `count` firings. Its action is an
//! error status (500, 503, 429 with `Retry-After`, ...) answered before the request is handled
//! or after it was applied (`after: true`, the case a client cannot tell from a lost
//! request), added latency, a list answer without its `Content-Range` header, an upload
//! that Connect's processing finds invalid whatever it holds, an answer whose body breaks off
//! after some bytes (the connection is cut), or a download served as by a server that takes no
//! ranges (so a broken download cannot be resumed). Rules are set
//! at start (`--fault-*` flags) and changed at run time through `/sandbox/faults`.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::{check_each, check_rate};

/// What a firing rule does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FaultAction {
    /// Answer with this status and Connect's error body.
    Status {
        status: u16,
        /// Seconds, sent as `Retry-After`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
        /// Apply the request first, then answer the error.
        #[serde(default)]
        after: bool,
    },
    /// Wait this long before handling the request.
    Latency { ms: u64 },
    /// Answer a list without `Content-Range`.
    DropContentRange,
    /// Take an upload, then have its processing find the file invalid with this
    /// `error_detail`, whatever the workbook holds. Matches upload requests only.
    InvalidUpload { detail: String },
    /// Send this many bytes of the answer's body, then cut the connection.
    CutBody { after_bytes: u64 },
    /// Serve as a server without range requests would: `Range` is ignored and no
    /// `Accept-Ranges` is sent.
    IgnoreRanges,
}

fn one() -> f64 {
    1.0
}

/// Carried by an upload request an `invalid_upload` rule hit, to its processing.
#[derive(Debug, Clone)]
pub struct InvalidUploadFault(pub String);

/// One fault rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// `GET`, `POST`, ...; any method when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// A path prefix below `/public/v1` (such as `/usage/files`); any path when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Probability that a matching request is hit, 0.0 to 1.0.
    #[serde(default = "one")]
    pub rate: f64,
    /// Matching requests let through before the rule may fire.
    #[serde(default)]
    pub skip: u64,
    /// Firings before the rule expires; forever when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    pub action: FaultAction,
}

impl FaultRule {
    /// A status fault on a share of all requests.
    pub fn status(status: u16, rate: f64) -> FaultRule {
        FaultRule {
            method: None,
            path: None,
            rate,
            skip: 0,
            count: None,
            action: FaultAction::Status {
                status,
                retry_after: None,
                after: false,
            },
        }
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        // An upload's processing can only fail where there is an upload.
        let upload = || {
            method.eq_ignore_ascii_case("POST")
                && path
                    .split('?')
                    .next()
                    .is_some_and(|p| p.ends_with("/upload"))
        };
        if matches!(self.action, FaultAction::InvalidUpload { .. }) && !upload() {
            return false;
        }
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.path.as_deref().is_none_or(|p| {
                let p = p.trim_end_matches('/');
                path == p
                    || path.starts_with(&format!("{p}/"))
                    || path.starts_with(&format!("{p}?"))
            })
    }

    /// Why the rule cannot be used, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        check_rate(self.rate)?;
        if let FaultAction::InvalidUpload { detail } = &self.action
            && detail.trim().is_empty()
        {
            return Err("invalid_upload needs a detail: the file's error_detail".into());
        }
        if let FaultAction::Status { status, after, .. } = self.action {
            if !(400..=599).contains(&status) {
                return Err(format!("status {status} is not an error status (400-599)"));
            }
            // 429 means the server declined the request (RFC 6585); clients resend it even
            // when it is not idempotent, so a 429 after applying would fake a server bug.
            if status == 429 && after {
                return Err(
                    "status 429 declines a request; it cannot come after applying it".into(),
                );
            }
        }
        Ok(())
    }
}

/// A rule with its counters.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveRule {
    #[serde(flatten)]
    pub rule: FaultRule,
    pub matched: u64,
    pub fired: u64,
}

/// The rules in force and the random source that decides rates.
#[derive(Debug)]
pub struct Faults {
    rules: Vec<ActiveRule>,
    rng: StdRng,
}

/// What the faults decided for one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub latency_ms: u64,
    /// `(status, retry_after, after)`
    pub status: Option<(u16, Option<u64>, bool)>,
    pub drop_content_range: bool,
    /// The `error_detail` an upload's processing ends with.
    pub invalid_upload: Option<String>,
    /// Bytes of the body sent before the connection is cut.
    pub cut_body_after: Option<u64>,
    pub ignore_ranges: bool,
    /// Which rules fired, for the request log.
    pub labels: Vec<String>,
}

impl Faults {
    pub fn new(seed: u64) -> Faults {
        Faults {
            rules: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn rules(&self) -> &[ActiveRule] {
        &self.rules
    }

    /// Replaces every rule.
    pub fn set(&mut self, rules: Vec<FaultRule>) -> Result<(), String> {
        check_each(&rules, FaultRule::check)?;
        self.rules = rules
            .into_iter()
            .map(|rule| ActiveRule {
                rule,
                matched: 0,
                fired: 0,
            })
            .collect();
        Ok(())
    }

    /// Adds a rule after the others.
    pub fn add(&mut self, rule: FaultRule) -> Result<(), String> {
        rule.check()?;
        self.rules.push(ActiveRule {
            rule,
            matched: 0,
            fired: 0,
        });
        Ok(())
    }

    /// Decides the faults for a request. The first status rule that fires wins; latencies add
    /// up.
    pub fn decide(&mut self, method: &str, path: &str) -> Decision {
        let mut d = Decision::default();
        for active in &mut self.rules {
            if !active.rule.matches(method, path) {
                continue;
            }
            if active.rule.count.is_some_and(|c| active.fired >= c) {
                continue;
            }
            active.matched += 1;
            if active.matched <= active.rule.skip {
                continue;
            }
            let hit = active.rule.rate >= 1.0 || self.rng.random::<f64>() < active.rule.rate;
            if !hit {
                continue;
            }
            match &active.rule.action {
                FaultAction::Status {
                    status,
                    retry_after,
                    after,
                } => {
                    if d.status.is_some() {
                        continue;
                    }
                    d.status = Some((*status, *retry_after, *after));
                    d.labels.push(format!(
                        "status {status}{}",
                        if *after { " after applying" } else { "" }
                    ));
                }
                FaultAction::Latency { ms } => {
                    d.latency_ms += ms;
                    d.labels.push(format!("latency {ms} ms"));
                }
                FaultAction::DropContentRange => {
                    d.drop_content_range = true;
                    d.labels.push("no Content-Range".into());
                }
                FaultAction::InvalidUpload { detail } => {
                    d.invalid_upload = Some(detail.clone());
                    d.labels.push("invalid upload".into());
                }
                FaultAction::CutBody { after_bytes } => {
                    d.cut_body_after = Some(
                        d.cut_body_after
                            .map_or(*after_bytes, |b| b.min(*after_bytes)),
                    );
                    d.labels.push(format!("body cut after {after_bytes} bytes"));
                }
                FaultAction::IgnoreRanges => {
                    d.ignore_ranges = true;
                    d.labels.push("ranges ignored".into());
                }
            }
            active.fired += 1;
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: serde_json::Value) -> FaultRule {
        serde_json::from_value(json).expect("valid rule")
    }

    #[test]
    fn skip_count_and_path_select_requests() {
        let mut f = Faults::new(1);
        f.set(vec![rule(serde_json::json!({
            "method": "get", "path": "/assets", "skip": 1, "count": 2,
            "action": {"type": "status", "status": 503, "retry_after": 2}
        }))])
        .expect("valid");
        let hits: Vec<bool> = [
            "/assets",
            "/assets?limit=1",
            "/assets/AS-1",
            "/assetsx",
            "/assets",
        ]
        .iter()
        .map(|p| f.decide("GET", p).status.is_some())
        .collect();
        assert_eq!(hits, [false, true, true, false, false]);
        assert!(f.decide("POST", "/assets").status.is_none());
        assert_eq!(f.rules()[0].fired, 2);
    }

    #[test]
    fn bodies_can_be_cut_and_ranges_ignored() {
        let mut f = Faults::new(1);
        f.set(vec![
            rule(serde_json::json!({"path": "/vendor/v1/exports", "count": 1,
                "action": {"type": "cut_body", "after_bytes": 5000}})),
            rule(serde_json::json!({"path": "/vendor/v1/exports",
                "action": {"type": "ignore_ranges"}})),
        ])
        .expect("valid");
        let d = f.decide("GET", "/vendor/v1/exports/usage-2024-04.csv");
        assert_eq!((d.cut_body_after, d.ignore_ranges), (Some(5000), true));
        let d = f.decide("GET", "/vendor/v1/exports/usage-2024-04.csv");
        assert_eq!((d.cut_body_after, d.ignore_ranges), (None, true));
        assert_eq!(f.decide("GET", "/vendor/v1/usage"), Decision::default());
    }

    #[test]
    fn rates_are_shares() {
        let mut f = Faults::new(7);
        f.set(vec![FaultRule::status(500, 0.25)]).expect("valid");
        let fired = (0..4000)
            .filter(|_| f.decide("GET", "/contracts").status.is_some())
            .count();
        assert!((800..1200).contains(&fired), "{fired}");
    }

    #[test]
    fn bad_rules_are_refused() {
        let mut f = Faults::new(1);
        assert!(f.set(vec![FaultRule::status(200, 1.0)]).is_err());
        assert!(f.set(vec![FaultRule::status(500, 1.5)]).is_err());
        let mut declined_after = FaultRule::status(429, 1.0);
        declined_after.action = FaultAction::Status {
            status: 429,
            retry_after: None,
            after: true,
        };
        assert!(f.add(declined_after).is_err());
        assert!(f.rules().is_empty());
    }
}
