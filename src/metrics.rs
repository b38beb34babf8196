//! The process's metrics: how a family is declared, and the Prometheus text exposition of
//! them all (for `/metrics`) or of some (for `report --metrics-file`).
//!
//! Families live in the modules that count (`runner::metrics`, `connect::metrics`,
//! `usage::metrics`), each registered once in the `prometheus` crate's default registry, as
//! every Prometheus client library does: the parts of the program need not know one another,
//! and one scrape shows them all. The process collector adds the standard `process_*`
//! families (CPU, memory, open files).

use std::io::Write;
use std::path::Path;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, TextEncoder,
};

/// The content type of the text exposition format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Registers `collector` in the default registry and returns it.
///
/// The families are declared in this program's source with fixed names, so a failure here
/// (an invalid or twice-registered name) is a programming error that the tests, which scrape
/// every family, would show; the family still counts, it is only missing from the output.
fn registered<C: Collector + Clone + 'static>(collector: C) -> C {
    if let Err(e) = prometheus::default_registry().register(Box::new(collector.clone())) {
        tracing::error!(error = %e, "a metric family could not be registered");
    }
    collector
}

// The constructors below fail only for names or labels that are not valid Prometheus
// identifiers; every call passes literals, and each module's tests expose its families.

pub(crate) fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric name"))
}

pub(crate) fn counter(name: &str, help: &str) -> IntCounter {
    registered(IntCounter::with_opts(Opts::new(name, help)).expect("a valid metric name"))
}

pub(crate) fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    registered(IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric name"))
}

pub(crate) fn float_gauge_vec(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    registered(GaugeVec::new(Opts::new(name, help), labels).expect("a valid metric name"))
}

pub(crate) fn gauge(name: &str, help: &str) -> IntGauge {
    registered(IntGauge::with_opts(Opts::new(name, help)).expect("a valid metric name"))
}

pub(crate) fn float_gauge(name: &str, help: &str) -> Gauge {
    registered(Gauge::with_opts(Opts::new(name, help)).expect("a valid metric name"))
}

pub(crate) fn histogram_vec(
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    registered(
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
            .expect("a valid metric name"),
    )
}

/// Every family in the text exposition format.
pub fn exposition() -> String {
    encode(|_| true)
}

/// The families whose name `keep` accepts, in the text exposition format.
pub fn encode(keep: impl Fn(&str) -> bool) -> String {
    let families: Vec<_> = prometheus::gather()
        .into_iter()
        .filter(|f| keep(f.name()))
        .collect();
    let mut out = Vec::new();
    // Encoding into memory fails only on a family without a type, which gather() never gives.
    if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
        tracing::error!(error = %e, "cannot encode the metrics");
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes `text` to `path` so a reader sees the old file or the new one, never a part: a
/// temporary file beside it, synced, then renamed over it (node_exporter's textfile collector
/// reads the directory at any time).
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file")
    })?;
    // A name the collector ignores (it reads only `*.prom`) while it is being written.
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("cu-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("connect_usage.prom");
        write_atomically(&path, "a 1\n").expect("first");
        write_atomically(&path, "a 2\n").expect("second");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "a 2\n");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        std::fs::remove_dir_all(&dir).expect("clean");
    }
}
