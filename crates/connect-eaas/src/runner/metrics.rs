//! What the runner counts for an operator: each session's connection and its reconnects, the
//! tasks received and answered, how long they ran, results waiting for a connection, and
//! repeated deliveries answered from memory. Families are named `connect_eaas_*` and follow
//! Prometheus' conventions (`_total` counters, `_seconds` in base units).

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

use connect_client::exposition::{counter, counter_vec, gauge_vec, histogram_vec};

static SESSION_CONNECTED: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "connect_eaas_session_connected",
        "1 while the session is connected to the events platform and set up, else 0.",
        &["session"],
    )
});

static CONNECTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "connect_eaas_connections_total",
        "Connections the session opened and set up.",
        &["session"],
    )
});

static RECONNECTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "connect_eaas_reconnects_total",
        "Times the session waited to connect again, by why: connection_lost (an open \
         connection ended), refused (the upgrade was answered 401 or 403), maintenance (502), \
         http_error (another status), failed (no connection or no handshake).",
        &["session", "reason"],
    )
});

static TASKS_RECEIVED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "connect_eaas_tasks_received_total",
        "Tasks the platform delivered, repeated deliveries included.",
        &["category", "event_type"],
    )
});

static TASKS_ANSWERED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "connect_eaas_tasks_answered_total",
        "Task results produced, by result (success, fail, retry, skip, reschedule).",
        &["category", "event_type", "result"],
    )
});

static TASK_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram_vec(
        "connect_eaas_task_duration_seconds",
        "How long tasks ran, from their start to their result.",
        &["category", "event_type"],
        // From an interactive answer to a monthly report of millions of records.
        vec![
            0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 43200.0,
        ],
    )
});

static RESULTS_PENDING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "connect_eaas_results_pending",
        "Task results produced and not yet written to the platform (they wait for a connection).",
        &["session"],
    )
});

static REANSWERED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "connect_eaas_tasks_reanswered_total",
        "Repeated deliveries of a task already answered, answered with the result sent before \
         instead of running the handler again.",
        &["session"],
    )
});

static LOG_RECORDS_SENT: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "connect_eaas_log_records_sent_total",
        "Log records the platform's log service (Logz.io listener) took.",
    )
});

static LOG_RECORDS_DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "connect_eaas_log_records_dropped_total",
        "Log records never shipped: the oldest when too many waited for an unreachable \
         listener, and those the listener refused.",
    )
});

/// Registers every family, so a scrape shows them before anything happened.
pub fn register() {
    LazyLock::force(&SESSION_CONNECTED);
    LazyLock::force(&CONNECTIONS);
    LazyLock::force(&RECONNECTS);
    LazyLock::force(&TASKS_RECEIVED);
    LazyLock::force(&TASKS_ANSWERED);
    LazyLock::force(&TASK_DURATION);
    LazyLock::force(&RESULTS_PENDING);
    LazyLock::force(&REANSWERED);
    LazyLock::force(&LOG_RECORDS_SENT);
    LazyLock::force(&LOG_RECORDS_DROPPED);
}

/// Shows a new session's series at zero.
pub(crate) fn session_created(session: &str) {
    SESSION_CONNECTED.with_label_values(&[session]).set(0);
    CONNECTIONS.with_label_values(&[session]);
    RESULTS_PENDING.with_label_values(&[session]);
    REANSWERED.with_label_values(&[session]);
    for reason in ReconnectReason::ALL {
        RECONNECTS.with_label_values(&[session, reason.as_str()]);
    }
}

/// Why a session waits before connecting again (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectReason {
    ConnectionLost,
    Refused,
    Maintenance,
    HttpError,
    Failed,
}

impl ReconnectReason {
    pub const ALL: [ReconnectReason; 5] = [
        ReconnectReason::ConnectionLost,
        ReconnectReason::Refused,
        ReconnectReason::Maintenance,
        ReconnectReason::HttpError,
        ReconnectReason::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReconnectReason::ConnectionLost => "connection_lost",
            ReconnectReason::Refused => "refused",
            ReconnectReason::Maintenance => "maintenance",
            ReconnectReason::HttpError => "http_error",
            ReconnectReason::Failed => "failed",
        }
    }
}

pub(crate) fn connected(session: &str) {
    SESSION_CONNECTED.with_label_values(&[session]).set(1);
    CONNECTIONS.with_label_values(&[session]).inc();
}

pub(crate) fn disconnected(session: &str) {
    SESSION_CONNECTED.with_label_values(&[session]).set(0);
}

pub(crate) fn reconnect(session: &str, reason: ReconnectReason) {
    RECONNECTS
        .with_label_values(&[session, reason.as_str()])
        .inc();
}

pub(crate) fn task_received(category: &str, event_type: &str) {
    TASKS_RECEIVED
        .with_label_values(&[category, event_type])
        .inc();
}

pub(crate) fn task_answered(category: &str, event_type: &str, result: &str, ran: Duration) {
    TASKS_ANSWERED
        .with_label_values(&[category, event_type, result])
        .inc();
    TASK_DURATION
        .with_label_values(&[category, event_type])
        .observe(ran.as_secs_f64());
}

pub(crate) fn log_records_sent(n: usize) {
    LOG_RECORDS_SENT.inc_by(n as u64);
}

pub(crate) fn log_records_dropped(n: u64) {
    LOG_RECORDS_DROPPED.inc_by(n);
}

pub(crate) fn reanswered(session: &str) {
    REANSWERED.with_label_values(&[session]).inc();
}

/// One result waiting for delivery: counted while it lives, so every way a result leaves
/// (written, dropped, left behind at the end) takes it off the gauge.
pub(crate) struct PendingResult(IntGauge);

impl PendingResult {
    pub(crate) fn new(session: &str) -> PendingResult {
        let gauge = RESULTS_PENDING.with_label_values(&[session]);
        gauge.inc();
        PendingResult(gauge)
    }
}

impl Drop for PendingResult {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_session_shows_its_series_at_zero() {
        register();
        session_created("interactive");
        let text = connect_client::exposition::exposition();
        for line in [
            "connect_eaas_session_connected{session=\"interactive\"} 0",
            "connect_eaas_results_pending{session=\"interactive\"} 0",
            "connect_eaas_reconnects_total{reason=\"maintenance\",session=\"interactive\"} 0",
            "connect_eaas_tasks_reanswered_total{session=\"interactive\"} 0",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[test]
    fn a_pending_result_leaves_the_gauge_when_dropped() {
        let gauge = RESULTS_PENDING.with_label_values(&["background"]);
        let before = gauge.get();
        let a = PendingResult::new("background");
        let b = PendingResult::new("background");
        assert_eq!(gauge.get(), before + 2);
        drop(a);
        drop(b);
        assert_eq!(gauge.get(), before);
    }
}
