//! When and how long the client waits before sending a request again.
//!
//! A policy object in the manner of async-nats' reconnect delay: exponential backoff from an
//! initial delay, capped, with jitter so that many clients do not retry in lockstep, and the
//! server's `Retry-After` honoured as a lower bound. Which requests may be retried at all is
//! decided by the client (idempotent ones freely; POSTs only when they surely did not reach
//! the server).

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, SystemTime};

use chrono::DateTime;
use tracing::warn;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again after the policy's delay (at least `retry_after`).
    Retry { retry_after: Option<Duration> },
    /// The failure is final.
    GiveUp,
}

/// Backoff settings. `Default` suits Connect: 5 retries, 0.5 s doubling to 30 s, half jitter,
/// `Retry-After` honoured up to 2 minutes.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 disables retrying.
    pub max_retries: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
    pub multiplier: f64,
    /// Share of each delay that is randomised, 0.0 (none) to 1.0 (full jitter).
    pub jitter: f64,
    /// A `Retry-After` longer than this ends the retries instead of blocking the caller.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.5,
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// The backoff before retry number `retry` (0 for the first retry) with jitter drawn from
    /// `unit`, a number in `[0, 1)`. Odd settings (a multiplier below 1 or not a number) give
    /// a constant delay rather than a panic.
    pub fn backoff_with(&self, retry: u32, unit: f64) -> Duration {
        let multiplier = if self.multiplier.is_finite() && self.multiplier >= 1.0 {
            self.multiplier
        } else {
            1.0
        };
        let base = self.initial_delay.as_secs_f64() * multiplier.powi(retry.min(64) as i32);
        let capped = base.min(self.max_delay.as_secs_f64());
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        } * if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Duration::try_from_secs_f64(capped * (1.0 - jitter)).unwrap_or(self.max_delay)
    }

    /// How long to wait before retry number `retry`, or `None` when the policy says stop:
    /// retries used up, or a `Retry-After` longer than `max_retry_after`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if retry >= self.max_retries {
            return None;
        }
        let backoff = self.backoff_with(retry, rand::random::<f64>());
        match retry_after {
            Some(wait) if wait > self.max_retry_after => None,
            Some(wait) => Some(wait.max(backoff)),
            None => Some(backoff),
        }
    }
}

impl RetryPolicy {
    /// Runs `attempt` until it succeeds, `judge` calls a failure final, or the policy runs
    /// out; on failure returns the last error and how many attempts were made. Every retry is
    /// logged with the error and the delay.
    pub async fn run<T, E, Fut>(
        &self,
        attempt: impl FnMut() -> Fut,
        judge: impl Fn(&E) -> Next,
    ) -> Result<T, (E, u32)>
    where
        Fut: Future<Output = Result<T, E>>,
        E: Display,
    {
        self.run_counted(attempt, judge, || {}).await
    }

    /// [`run`](Self::run), calling `on_retry` before every attempt after the first (a metric
    /// counts them).
    pub async fn run_counted<T, E, Fut>(
        &self,
        mut attempt: impl FnMut() -> Fut,
        judge: impl Fn(&E) -> Next,
        on_retry: impl Fn(),
    ) -> Result<T, (E, u32)>
    where
        Fut: Future<Output = Result<T, E>>,
        E: Display,
    {
        let mut retry = 0u32;
        loop {
            let err = match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let delay = match judge(&err) {
                Next::Retry { retry_after } => self.delay(retry, retry_after),
                Next::GiveUp => None,
            };
            let Some(delay) = delay else {
                return Err((err, retry + 1));
            };
            warn!(
                error = %err,
                retry = retry + 1,
                delay_ms = delay.as_millis() as u64,
                "request failed, retrying"
            );
            tokio::time::sleep(delay).await;
            on_retry();
            retry += 1;
        }
    }
}

/// Parses a `Retry-After` value: delay seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at.timestamp()).ok()?);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_attempt_after_the_first_is_counted_as_a_retry() {
        let p = RetryPolicy {
            initial_delay: Duration::from_millis(1),
            ..RetryPolicy::default()
        };
        let attempts = std::cell::Cell::new(0u32);
        let retries = std::cell::Cell::new(0u32);
        let result: Result<u32, (String, u32)> = p
            .run_counted(
                || {
                    attempts.set(attempts.get() + 1);
                    let n = attempts.get();
                    async move {
                        if n < 3 {
                            Err(format!("failure {n}"))
                        } else {
                            Ok(n)
                        }
                    }
                },
                |_| Next::Retry { retry_after: None },
                || retries.set(retries.get() + 1),
            )
            .await;
        assert_eq!(result, Ok(3));
        assert_eq!(retries.get(), 2);
        let given_up: Result<u32, (String, u32)> = p
            .run_counted(
                || async { Err("final".to_owned()) },
                |_| Next::GiveUp,
                || retries.set(retries.get() + 1),
            )
            .await;
        assert_eq!(given_up, Err(("final".to_owned(), 1)));
        assert_eq!(retries.get(), 2, "a failure given up on is no retry");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let d: Vec<u64> = (0..9)
            .map(|r| p.backoff_with(r, 0.7).as_millis() as u64)
            .collect();
        assert_eq!(d, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    }

    #[test]
    fn jitter_shortens_within_its_share() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff_with(1, 0.0), Duration::from_millis(1000));
        assert_eq!(p.backoff_with(1, 1.0), Duration::from_millis(500));
        for _ in 0..100 {
            let d = p.delay(1, None).expect("retry allowed");
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn retry_after_is_a_lower_bound_and_has_a_ceiling() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(7))),
            Some(Duration::from_secs(7))
        );
        assert_eq!(p.delay(0, Some(Duration::from_secs(121))), None);
        assert_eq!(p.delay(5, None), None);
        assert_eq!(RetryPolicy::none().delay(0, None), None);
    }

    #[test]
    fn odd_settings_do_not_panic() {
        let p = RetryPolicy {
            multiplier: -1.0,
            jitter: f64::NAN,
            max_delay: Duration::MAX,
            ..RetryPolicy::default()
        };
        assert_eq!(p.backoff_with(3, 0.5), Duration::from_millis(500));
        let p = RetryPolicy {
            multiplier: f64::INFINITY,
            max_delay: Duration::MAX,
            ..RetryPolicy::default()
        };
        assert_eq!(p.backoff_with(3, 0.0), Duration::from_millis(500));
        let p = RetryPolicy {
            max_delay: Duration::MAX,
            ..RetryPolicy::default()
        };
        assert!(p.backoff_with(64, 0.0) > Duration::from_secs(1_000_000));
    }

    #[test]
    fn parses_both_retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        // 1994-11-06T08:49:37Z is 784111777 + 0; ten seconds later:
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:27 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
