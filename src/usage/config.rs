//! The report's settings, by the names that serve both as extension variables (set in Connect)
//! and as environment variables of the command line: `USAGE_SOURCE`, `USAGE_SOURCE_TOKEN`
//! (secure), `REPORT_CONCURRENCY`, and the lifecycle handlers' `RERUN_LIMIT` and
//! `USAGE_ACK_URL`.

use super::acknowledge::AckEndpoint;
use super::source::{SourceError, SourceSpec};
use crate::secret::Secret;

/// The name of the usage source setting: a Vendor API URL or a file path.
pub const USAGE_SOURCE: &str = "USAGE_SOURCE";
/// The name of the Vendor API's bearer token (a secure variable).
pub const USAGE_SOURCE_TOKEN: &str = "USAGE_SOURCE_TOKEN";
/// The name of the bound on groups reported at once.
pub const REPORT_CONCURRENCY: &str = "REPORT_CONCURRENCY";
/// Groups reported at once unless set.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// The name of the cap on reruns of a usage file after provider rejections.
pub const RERUN_LIMIT: &str = "RERUN_LIMIT";
/// Reruns of a file allowed unless set.
pub const DEFAULT_RERUN_LIMIT: u32 = 3;
/// The name of the vendor's acknowledgement endpoint URL (optional).
pub const USAGE_ACK_URL: &str = "USAGE_ACK_URL";

/// What the usage file lifecycle handlers read besides the report's settings.
#[derive(Debug, Clone)]
pub struct LifecycleSettings {
    /// Reruns allowed per file; past it a rejection is left to a person.
    pub rerun_limit: u32,
    /// Where accepted files are acknowledged, if the vendor has such an endpoint.
    pub ack: Option<AckEndpoint>,
}

impl LifecycleSettings {
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<LifecycleSettings, SourceError> {
        let rerun_limit = match lookup(RERUN_LIMIT).filter(|c| !c.trim().is_empty()) {
            None => DEFAULT_RERUN_LIMIT,
            Some(text) => match text.trim().parse::<u32>() {
                Ok(n) if n <= 20 => n,
                _ => {
                    return Err(SourceError::Config(format!(
                        "{RERUN_LIMIT}={text:?}: give a number from 0 (never rerun) to 20"
                    )));
                }
            },
        };
        let ack = match lookup(USAGE_ACK_URL).filter(|u| !u.trim().is_empty()) {
            None => None,
            Some(url) => {
                let token = lookup(USAGE_SOURCE_TOKEN).unwrap_or_default();
                Some(
                    AckEndpoint::new(url.trim(), Secret::new(token))
                        .map_err(|e| SourceError::Config(format!("{USAGE_ACK_URL}: {e}")))?,
                )
            }
        };
        Ok(LifecycleSettings { rerun_limit, ack })
    }
}

/// The report's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSettings {
    pub source: SourceSpec,
    pub concurrency: usize,
}

impl ReportSettings {
    /// Reads the settings from any name-to-value lookup (environment, extension variables).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<ReportSettings, SourceError> {
        let source = lookup(USAGE_SOURCE).filter(|s| !s.trim().is_empty()).ok_or_else(|| {
            SourceError::Config(format!(
                "{USAGE_SOURCE} is not set: give the vendor usage API URL (http(s)://...) or a CSV/JSON Lines file"
            ))
        })?;
        let token = lookup(USAGE_SOURCE_TOKEN)
            .filter(|t| !t.is_empty())
            .map(Secret::new);
        let concurrency = match lookup(REPORT_CONCURRENCY).filter(|c| !c.trim().is_empty()) {
            None => DEFAULT_CONCURRENCY,
            Some(text) => match text.trim().parse::<usize>() {
                Ok(n) if (1..=64).contains(&n) => n,
                _ => {
                    return Err(SourceError::Config(format!(
                        "{REPORT_CONCURRENCY}={text:?}: give a number from 1 to 64"
                    )));
                }
            },
        };
        Ok(ReportSettings {
            source: SourceSpec::parse(&source, token)?,
            concurrency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<ReportSettings, SourceError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ReportSettings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn reads_the_variables() {
        let s = settings(&[
            (USAGE_SOURCE, "https://vendor.example/usage"),
            (USAGE_SOURCE_TOKEN, "tok"),
            (REPORT_CONCURRENCY, "8"),
        ])
        .expect("valid");
        assert_eq!(s.concurrency, 8);
        assert!(matches!(s.source, SourceSpec::Http { ref token, .. } if token.expose() == "tok"));
        let s = settings(&[(USAGE_SOURCE, "/data/usage.csv")]).expect("valid");
        assert_eq!(s.concurrency, DEFAULT_CONCURRENCY);
    }

    #[test]
    fn lifecycle_settings() {
        let map = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let m = map(&[]);
        let s = LifecycleSettings::from_lookup(|k| m.get(k).cloned()).expect("defaults");
        assert_eq!(s.rerun_limit, DEFAULT_RERUN_LIMIT);
        assert!(s.ack.is_none());
        let m = map(&[
            (RERUN_LIMIT, "0"),
            (USAGE_ACK_URL, "https://user:pw@vendor.example/acks?key=k"),
            (USAGE_SOURCE_TOKEN, "s3cr3t-value"),
        ]);
        let s = LifecycleSettings::from_lookup(|k| m.get(k).cloned()).expect("set");
        assert_eq!(s.rerun_limit, 0);
        let ack = s.ack.expect("endpoint");
        assert_eq!(ack.shown_url(), "https://vendor.example/acks");
        assert!(!format!("{ack:?}").contains("s3cr3t"));
        for (name, bad) in [
            (RERUN_LIMIT, "21"),
            (RERUN_LIMIT, "-1"),
            (USAGE_ACK_URL, "ftp://x"),
        ] {
            let m = map(&[(name, bad)]);
            let e = LifecycleSettings::from_lookup(|k| m.get(k).cloned()).expect_err(bad);
            assert!(e.to_string().contains(name), "{e}");
        }
    }

    #[test]
    fn bad_values_are_named() {
        let e = settings(&[]).expect_err("missing");
        assert!(e.to_string().contains("USAGE_SOURCE is not set"), "{e}");
        for bad in ["0", "x", "65"] {
            let e = settings(&[(USAGE_SOURCE, "u.csv"), (REPORT_CONCURRENCY, bad)])
                .expect_err("bad concurrency");
            assert!(e.to_string().contains("REPORT_CONCURRENCY"), "{e}");
        }
    }
}
