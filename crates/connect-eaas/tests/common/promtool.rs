//! Prometheus' own checker for the text exposition format: `promtool check metrics` parses a
//! scrape with the server's parser and lints it against the naming conventions.
//!
//! Where promtool is not installed, [`check_metrics`] prints one line saying how to install it
//! and checks nothing, unless `CI` is set: then it panics, so that CI never passes for want of
//! the checker.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

/// `promtool` with `args`, its stdin piped; `None` (said once) when it is not installed.
fn promtool(args: &[&str]) -> Option<std::process::Child> {
    match Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => Some(child),
        Err(_) => {
            let how =
                "promtool not installed: apt-get install -y prometheus (its checks are skipped)";
            if std::env::var_os("CI").is_some() {
                panic!("{how}; CI requires it");
            }
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                let _ = writeln!(std::io::stderr(), "skipped: {how}");
            });
            None
        }
    }
}

/// Runs `promtool check rules` on a rules file; panics with its findings when it objects.
pub fn check_rules(path: &std::path::Path) {
    let Some(child) = promtool(&["check", "rules", &path.to_string_lossy()]) else {
        return;
    };
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check rules objects:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `promtool check metrics` on `text`; panics with its findings when it objects.
pub fn check_metrics(text: &str) {
    let Some(mut child) = promtool(&["check", "metrics"]) else {
        return;
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("promtool reads");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics objects:\n{}{}\n--- the scrape:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A parsed scrape, to read values by name and labels.
#[derive(Debug)]
pub struct Scrape(pub prometheus_parse::Scrape);

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        Scrape(prometheus_parse::Scrape::parse(lines).expect("a scrape in the text format"))
    }

    /// The value of the sample `name` whose labels include `labels` (summed over the others).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    }

    /// Whether a family of this name has a `# TYPE` line.
    pub fn has_family(&self, name: &str) -> bool {
        self.0.docs.contains_key(name)
    }

    /// Every sample of `name`, as label sets and values.
    pub fn samples(&self, name: &str) -> Vec<(std::collections::BTreeMap<String, String>, f64)> {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .map(|s| {
                let labels = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                let v = match s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    _ => f64::NAN,
                };
                (labels, v)
            })
            .collect()
    }
}
