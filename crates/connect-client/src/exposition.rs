//! How a metric family is declared, and the Prometheus text exposition of them all (for
//! `/metrics`) or of some (for a file).
//!
//! Families live in the modules that count (this crate's `metrics`, the runner's, an
//! extension's), each registered once in the `prometheus` crate's default registry, as every
//! Prometheus client library does: the parts of a program need not know one another, and one
//! scrape shows them all. The process collector adds the standard `process_*` families (CPU,
//! memory, open files).

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, TextEncoder,
};

/// The content type of the text exposition format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Registers `collector` in the default registry and returns it.
///
/// The families are declared in source with fixed names, so a failure here
/// (an invalid or twice-registered name) is a programming error that the tests, which scrape
/// every family, would show; the family still counts, it is only missing from the output.
fn registered<C: Collector + Clone + 'static>(collector: C) -> C {
    if let Err(e) = prometheus::default_registry().register(Box::new(collector.clone())) {
        tracing::error!(error = %e, "a metric family could not be registered");
    }
    collector
}

/// The `code` label of a request's answer: its HTTP status, or `error` when none came.
pub fn code_label(status: Option<u16>) -> String {
    status.map_or_else(|| "error".to_owned(), |s| s.to_string())
}

// The constructors below fail only for names or labels that are not valid Prometheus
// identifiers; every call passes literals, and each module's tests expose its families.

pub fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric name"))
}

pub fn counter(name: &str, help: &str) -> IntCounter {
    registered(IntCounter::with_opts(Opts::new(name, help)).expect("a valid metric name"))
}

pub fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    registered(IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric name"))
}

pub fn float_gauge_vec(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    registered(GaugeVec::new(Opts::new(name, help), labels).expect("a valid metric name"))
}

pub fn gauge(name: &str, help: &str) -> IntGauge {
    registered(IntGauge::with_opts(Opts::new(name, help)).expect("a valid metric name"))
}

pub fn float_gauge(name: &str, help: &str) -> Gauge {
    registered(Gauge::with_opts(Opts::new(name, help)).expect("a valid metric name"))
}

pub fn histogram_vec(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
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
