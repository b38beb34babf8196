//! What the REST client counts: requests to Connect by method and answer, and retries.
//! Families are named `connect_api_*`.

use std::sync::LazyLock;

use prometheus::IntCounterVec;

use crate::exposition::counter_vec;

static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "connect_api_requests_total",
        "Requests sent to Connect's REST API (each attempt), by method and HTTP status code \
         (`error` when no answer came: refused, reset, timed out).",
        &["method", "code"],
    )
});

static RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "connect_api_retries_total",
        "Requests to Connect's REST API sent again after a failed attempt, by method.",
        &["method"],
    )
});

/// Registers the families, so a scrape shows them before the first request.
pub fn register() {
    LazyLock::force(&REQUESTS);
    // Retries of every method the client sends start at zero, so a rate is defined from
    // the start.
    for method in ["GET", "POST", "PUT", "DELETE"] {
        RETRIES.with_label_values(&[method]);
    }
}

/// One attempt and its answer (`None`: no answer).
pub(crate) fn request(method: &str, status: Option<u16>) {
    let code = crate::exposition::code_label(status);
    REQUESTS.with_label_values(&[method, code.as_str()]).inc();
}

pub(crate) fn retry(method: &str) {
    RETRIES.with_label_values(&[method]).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_method_and_answer() {
        register();
        request("PATCH", Some(418));
        request("PATCH", None);
        let text = crate::exposition::exposition();
        assert!(
            text.contains("connect_api_requests_total{code=\"418\",method=\"PATCH\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("connect_api_requests_total{code=\"error\",method=\"PATCH\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("connect_api_retries_total{method=\"GET\"} 0"),
            "{text}"
        );
    }
}
