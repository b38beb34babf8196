//! The report's settings, by the names that serve both as extension variables (set in Connect)
//! and as environment variables of the command line: `USAGE_SOURCE`, `USAGE_SOURCE_TOKEN`
//! (secure), `USAGE_QUERY`, `REPORT_CONCURRENCY`, `MAX_RECORDS_PER_FILE`, `USAGE_AGGREGATION`,
//! `REQUIRE_FULL_COVERAGE`, and the lifecycle handlers' `RERUN_LIMIT` and `USAGE_ACK_URL`.
//! `WORK_DIR`, where runs keep their work files, is the machine's business: an environment
//! variable only.

use std::path::PathBuf;

use super::acknowledge::AckEndpoint;
use super::aggregate::Aggregation;
use super::pipeline::{DEFAULT_MAX_RECORDS_PER_FILE, ReportOptions};
use super::source::{SourceError, SourceSpec};
use super::workbook::MAX_ROWS;
use connect_client::month::Month;
use connect_client::secret::Secret;

/// The name of the usage source setting: a Vendor API URL, a file path or URL, or a
/// `postgres://` URL.
pub const USAGE_SOURCE: &str = "USAGE_SOURCE";
/// The name of the source's secret (a secure variable): the Vendor API's bearer token, a file
/// URL's, or a database password.
pub const USAGE_SOURCE_TOKEN: &str = "USAGE_SOURCE_TOKEN";
/// The name of a database source's query (`$1`, `$2`: the month's bounds).
pub const USAGE_QUERY: &str = "USAGE_QUERY";
/// libpq's password variable, honoured as PostgreSQL's own tools do.
pub const PGPASSWORD: &str = "PGPASSWORD";
/// The name of the bound on groups reported at once.
pub const REPORT_CONCURRENCY: &str = "REPORT_CONCURRENCY";
/// Groups reported at once unless set.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// The name of the most records one usage file holds; larger groups are cut into parts.
pub const MAX_RECORDS_PER_FILE: &str = "MAX_RECORDS_PER_FILE";
/// The name of the aggregation setting: `none`, `day` or `month`.
pub const USAGE_AGGREGATION: &str = "USAGE_AGGREGATION";
/// The name of the switch that makes a run with subscriptions without usage partial: `true` or
/// `false` (the default).
pub const REQUIRE_FULL_COVERAGE: &str = "REQUIRE_FULL_COVERAGE";
/// The name of the directory runs keep their work files under (an environment variable).
pub const WORK_DIR: &str = "WORK_DIR";

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
    pub max_records_per_file: usize,
    pub aggregation: Aggregation,
    /// A subscription expected to have usage that has none makes the run partial.
    pub require_full_coverage: bool,
    /// Where runs make their work directories.
    pub work_dir: PathBuf,
}

impl ReportSettings {
    /// Opens the source, its downloads kept in the settings' work directory.
    pub fn open_source(&self) -> Result<Box<dyn super::UsageSource>, SourceError> {
        self.source.open_in(&self.work_dir)
    }

    /// A run's options for `period` with these settings.
    pub fn options(&self, period: Month) -> ReportOptions {
        ReportOptions {
            concurrency: self.concurrency,
            max_records_per_file: self.max_records_per_file,
            aggregation: self.aggregation,
            work_dir: self.work_dir.clone(),
            require_full_coverage: self.require_full_coverage,
            ..ReportOptions::new(period)
        }
    }
}

/// `WORK_DIR` from the process environment, else the system's temporary directory.
pub fn work_dir_from_env() -> PathBuf {
    std::env::var_os(WORK_DIR)
        .filter(|v| !v.is_empty())
        .map_or_else(std::env::temp_dir, PathBuf::from)
}

impl ReportSettings {
    /// Reads the settings from any name-to-value lookup (environment, extension variables).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<ReportSettings, SourceError> {
        let source = lookup(USAGE_SOURCE).filter(|s| !s.trim().is_empty()).ok_or_else(|| {
            SourceError::Config(format!(
                "{USAGE_SOURCE} is not set: give the vendor usage API URL (http(s)://...), a CSV, JSON Lines or Parquet file (a path or URL), or a postgres:// URL"
            ))
        })?;
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
        let max_records_per_file = match lookup(MAX_RECORDS_PER_FILE)
            .filter(|c| !c.trim().is_empty())
        {
            None => DEFAULT_MAX_RECORDS_PER_FILE,
            Some(text) => match text.trim().replace('_', "").parse::<usize>() {
                Ok(n) if (1..=MAX_ROWS).contains(&n) => n,
                _ => {
                    return Err(SourceError::Config(format!(
                        "{MAX_RECORDS_PER_FILE}={text:?}: give a number from 1 to {MAX_ROWS} (a worksheet's rows below its header)"
                    )));
                }
            },
        };
        let aggregation = match lookup(USAGE_AGGREGATION) {
            None => Aggregation::None,
            Some(text) => Aggregation::parse(&text)
                .map_err(|e| SourceError::Config(format!("{USAGE_AGGREGATION}: {e}")))?,
        };
        let require_full_coverage = match lookup(REQUIRE_FULL_COVERAGE) {
            None => false,
            Some(text) => parse_switch(&text).ok_or_else(|| {
                SourceError::Config(format!(
                    "{REQUIRE_FULL_COVERAGE}={text:?}: give true or false (empty: false)"
                ))
            })?,
        };
        let work_dir = lookup(WORK_DIR)
            .filter(|w| !w.trim().is_empty())
            .map_or_else(work_dir_from_env, PathBuf::from);
        Ok(ReportSettings {
            source: SourceSpec::parse(&source, &lookup)?,
            concurrency,
            max_records_per_file,
            aggregation,
            require_full_coverage,
            work_dir,
        })
    }
}

/// `true` or `false` in any case; empty is `false`, as an extension variable left blank.
fn parse_switch(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" | "" => Some(false),
        _ => None,
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
    fn a_downloaded_export_is_kept_in_the_settings_work_dir() {
        let s = settings(&[
            (USAGE_SOURCE, "https://files.example/usage-{period}.parquet"),
            (WORK_DIR, "/srv/usage-work"),
        ])
        .expect("settings");
        let opened = format!("{:?}", s.open_source().expect("opens"));
        assert!(
            opened.contains("download_dir: \"/srv/usage-work\""),
            "{opened}"
        );
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
        assert_eq!(s.max_records_per_file, DEFAULT_MAX_RECORDS_PER_FILE);
        assert_eq!(s.aggregation, Aggregation::None);
        assert!(!s.require_full_coverage, "off unless set");
        let s = settings(&[
            (USAGE_SOURCE, "/data/usage.csv"),
            (MAX_RECORDS_PER_FILE, "1_048_575"),
            (USAGE_AGGREGATION, "Day"),
            (WORK_DIR, "/var/tmp/cu"),
        ])
        .expect("valid");
        assert_eq!(s.max_records_per_file, MAX_ROWS);
        assert_eq!(s.aggregation, Aggregation::Day);
        assert_eq!(s.work_dir, PathBuf::from("/var/tmp/cu"));
        let o = s.options("2024-04".parse().expect("period"));
        assert_eq!(
            (o.max_records_per_file, o.aggregation, o.work_dir),
            (MAX_ROWS, Aggregation::Day, PathBuf::from("/var/tmp/cu"))
        );
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
        for bad in ["0", "1048576", "many"] {
            let e = settings(&[(USAGE_SOURCE, "u.csv"), (MAX_RECORDS_PER_FILE, bad)])
                .expect_err("bad size");
            assert!(e.to_string().contains("MAX_RECORDS_PER_FILE"), "{e}");
            assert!(e.to_string().contains("1048575"), "{e}");
        }
        let e = settings(&[(USAGE_SOURCE, "u.csv"), (USAGE_AGGREGATION, "hourly")])
            .expect_err("bad aggregation");
        assert!(e.to_string().contains("USAGE_AGGREGATION"), "{e}");
        for bad in ["yes please", "1", "on"] {
            let e = settings(&[(USAGE_SOURCE, "u.csv"), (REQUIRE_FULL_COVERAGE, bad)])
                .expect_err("bad switch");
            let text = e.to_string();
            assert!(text.contains("REQUIRE_FULL_COVERAGE"), "{text}");
            assert!(text.contains("true or false"), "{text}");
        }
    }

    #[test]
    fn full_coverage_is_a_switch_carried_into_the_options() {
        for (text, want) in [
            ("true", true),
            (" TRUE ", true),
            ("false", false),
            ("", false),
        ] {
            let s =
                settings(&[(USAGE_SOURCE, "u.csv"), (REQUIRE_FULL_COVERAGE, text)]).expect("valid");
            assert_eq!(s.require_full_coverage, want, "{text:?}");
            let o = s.options("2024-04".parse().expect("period"));
            assert_eq!(o.require_full_coverage, want, "{text:?}");
        }
    }
}
