//! Fault injection: rules that make the sandbox behave like a struggling Connect, for the
//! REST API ([`http`]: error statuses, latency, cut bodies, invalid uploads) and for the
//! runner websocket ([`websocket`]: refused upgrades, dropped connections, lost results).
//! Both kinds are set and inspected through the admin API, and share the checks of what a
//! rule may say, so both refuse a bad rule in the same words.

pub mod http;
pub mod websocket;

pub use http::{ActiveRule, Decision, FaultAction, FaultRule, Faults, InvalidUploadFault};
pub use websocket::{WsAction, WsFaultRule, WsFaults, WsPoint};

/// A rule's chance of applying must be a share.
fn check_rate(rate: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(format!("rate {rate} is not between 0 and 1"))
    }
}

/// Checks every rule of a list before any is used; the first problem names its rule.
fn check_each<R>(rules: &[R], check: impl Fn(&R) -> Result<(), String>) -> Result<(), String> {
    for (i, r) in rules.iter().enumerate() {
        check(r).map_err(|e| format!("rule {i}: {e}"))?;
    }
    Ok(())
}
