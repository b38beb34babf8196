//! What the usage reporting counts: requests to the vendor's usage source and their retries,
//! and the figures of the last monthly run (records, files, duration, when it ended). Families
//! are named `connect_usage_*`.
//!
//! The run's figures are gauges of the *last* run, so a scrape (or `report --metrics-file`,
//! node_exporter's textfile convention) always shows what the latest run did, and
//! `connect_usage_last_complete_run_timestamp_seconds` lets an alert ask "no complete run in
//! 35 days" (README, "Monitoring").

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{Gauge, GaugeVec, IntCounterVec, IntGaugeVec};

use super::summary::{RunResult, RunSummary};
use connect_client::exposition::{counter_vec, float_gauge, float_gauge_vec, gauge, gauge_vec};

static SOURCE_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "connect_usage_source_requests_total",
        "HTTP requests to the usage source (each attempt), by source (vendor_api, file_url) and \
         HTTP status code (`error` when no answer came).",
        &["source", "code"],
    )
});

static SOURCE_RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "connect_usage_source_retries_total",
        "Requests to the usage source sent again after a failed attempt.",
        &["source"],
    )
});

static RUN_RECORDS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "connect_usage_last_run_records",
        "Records of the last run, by what became of them: read (from the source), sent (in \
         files this run uploaded), already_reported, not_reported, not_qt, invalid, \
         unplaceable, conflicts.",
        &["outcome"],
    )
});

static RUN_UNCOVERED: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    gauge(
        "connect_usage_last_run_uncovered_subscriptions",
        "Active subscriptions of reported products for which the last run's usage data had no \
         record.",
    )
});

static RUN_FILES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "connect_usage_last_run_files",
        "Usage files of the last run, by action (created, resumed, already_reported, ...).",
        &["action"],
    )
});

static RUN_RESULT: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "connect_usage_last_run_result",
        "1 for how the last run ended (complete, partial, failed), 0 for the others.",
        &["result"],
    )
});

static RUN_DURATION: LazyLock<Gauge> = LazyLock::new(|| {
    float_gauge(
        "connect_usage_last_run_duration_seconds",
        "How long the last run took.",
    )
});

static RUN_END: LazyLock<Gauge> = LazyLock::new(|| {
    float_gauge(
        "connect_usage_last_run_end_timestamp_seconds",
        "When the last run ended (Unix time).",
    )
});

static RUN_PERIOD: LazyLock<GaugeVec> = LazyLock::new(|| {
    float_gauge_vec(
        "connect_usage_last_run_info",
        "The month the last run reported (label period, YYYY-MM) and whether it was a dry run; \
         always 1.",
        &["period", "dry_run"],
    )
});

/// Without labels, but a vector so the series is absent until a complete run happened: a
/// 0 would say "1970", and an alert on its age would fire after every restart.
static COMPLETE_RUN_END: LazyLock<GaugeVec> = LazyLock::new(|| {
    float_gauge_vec(
        "connect_usage_last_complete_run_timestamp_seconds",
        "When the last complete run (not a dry run) of this process ended (Unix time); absent \
         until one did.",
        &[],
    )
});

/// Registers the families, so a scrape shows them before the first run.
pub fn register() {
    LazyLock::force(&SOURCE_REQUESTS);
    for source in [SourceKind::VendorApi, SourceKind::FileUrl] {
        SOURCE_RETRIES.with_label_values(&[source.as_str()]);
    }
    LazyLock::force(&RUN_RECORDS);
    LazyLock::force(&RUN_UNCOVERED);
    LazyLock::force(&RUN_FILES);
    LazyLock::force(&RUN_RESULT);
    LazyLock::force(&RUN_DURATION);
    LazyLock::force(&RUN_END);
    LazyLock::force(&RUN_PERIOD);
    LazyLock::force(&COMPLETE_RUN_END);
}

/// Which kind of source made a request (the `source` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    VendorApi,
    FileUrl,
}

impl SourceKind {
    fn as_str(self) -> &'static str {
        match self {
            SourceKind::VendorApi => "vendor_api",
            SourceKind::FileUrl => "file_url",
        }
    }
}

/// One attempt and its answer (`None`: no answer).
pub(crate) fn source_request(source: SourceKind, status: Option<u16>) {
    let code = connect_client::exposition::code_label(status);
    SOURCE_REQUESTS
        .with_label_values(&[source.as_str(), code.as_str()])
        .inc();
}

pub(crate) fn source_retry(source: SourceKind) {
    SOURCE_RETRIES.with_label_values(&[source.as_str()]).inc();
}

fn now_seconds() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

fn set_result(result: RunResult) {
    for r in [RunResult::Complete, RunResult::Partial, RunResult::Failed] {
        RUN_RESULT
            .with_label_values(&[&r.to_string()])
            .set(i64::from(r == result));
    }
}

fn set_period(period: &str, dry_run: bool) {
    RUN_PERIOD.reset();
    RUN_PERIOD
        .with_label_values(&[period, if dry_run { "true" } else { "false" }])
        .set(1.0);
}

/// Shows a run that ended with a summary.
pub fn record_run(summary: &RunSummary) {
    let r = &summary.records;
    for (outcome, n) in [
        ("read", r.read),
        ("sent", r.sent),
        ("already_reported", r.already_reported),
        ("not_reported", r.not_reported),
        ("not_qt", r.not_qt),
        ("invalid", r.invalid),
        ("unplaceable", r.unplaceable),
        ("conflicts", r.conflicts),
    ] {
        RUN_RECORDS
            .with_label_values(&[outcome])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    // The summary's own counts, its field names the labels.
    let g = &summary.groups;
    for (action, n) in [
        ("created", g.created),
        ("resumed", g.resumed),
        ("already_reported", g.already_reported),
        ("changed_after_report", g.changed_after_report),
        ("rejected", g.rejected),
        ("waiting", g.waiting),
        ("failed", g.failed),
        ("skipped_not_qt", g.skipped_not_qt),
        ("dry_run", g.dry_run),
        ("deleted", g.deleted),
    ] {
        RUN_FILES
            .with_label_values(&[action])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    RUN_UNCOVERED.set(i64::try_from(summary.not_covered()).unwrap_or(i64::MAX));
    set_result(summary.result);
    set_period(&summary.period.to_string(), summary.dry_run);
    RUN_DURATION.set(summary.duration_ms as f64 / 1000.0);
    let end = now_seconds();
    RUN_END.set(end);
    if summary.result == RunResult::Complete && !summary.dry_run {
        COMPLETE_RUN_END.with_label_values::<&str>(&[]).set(end);
    }
}

/// Shows a run that failed before it could sum up (the source or Connect could not be read):
/// its result and time; the record and file figures of the run before are cleared, since they
/// are not this run's.
pub fn record_failed_run(period: &str, dry_run: bool, took: Duration) {
    RUN_RECORDS.reset();
    RUN_FILES.reset();
    RUN_UNCOVERED.set(0);
    set_result(RunResult::Failed);
    set_period(period, dry_run);
    RUN_DURATION.set(took.as_secs_f64());
    RUN_END.set(now_seconds());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_families_show_before_the_first_run() {
        register();
        let text = connect_client::exposition::exposition();
        for line in [
            "connect_usage_source_retries_total{source=\"vendor_api\"} 0",
            "connect_usage_last_run_duration_seconds 0",
            "# TYPE connect_usage_last_run_uncovered_subscriptions gauge",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        // No complete run yet: no time, rather than 1970.
        assert!(
            !text.contains("connect_usage_last_complete_run_timestamp_seconds "),
            "{text}"
        );
    }
}
