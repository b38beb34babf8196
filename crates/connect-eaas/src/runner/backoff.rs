//! Reconnection as a policy object: the delay curve and the budgets of Connect's official
//! runner, kept by a [`Backoff`] that says how long to wait after each failed attempt.
//!
//! Waits are drawn uniformly from `[0, nominal]` (full jitter), the nominal delay doubling
//! from 1 s to a 300 s cap. A run of ordinary failures gives up after 15 minutes, a run of
//! 502 answers (Connect's maintenance) after 3 hours; giving up only means a 5 s pause and a
//! fresh cycle: the runner never stops trying on its own.

use std::time::{Duration, Instant};

/// The delay curve and budgets.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectPolicy {
    /// First nominal delay.
    pub initial: Duration,
    /// Largest nominal delay.
    pub max_delay: Duration,
    /// How long a run of ordinary failures is retried before a pause.
    pub generic_budget: Duration,
    /// How long a run of maintenance failures (HTTP 502) is retried before a pause.
    pub maintenance_budget: Duration,
    /// The pause between cycles.
    pub pause_after_give_up: Duration,
    /// The pause after an established connection is lost.
    pub pause_after_drop: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            generic_budget: Duration::from_secs(900),
            maintenance_budget: Duration::from_secs(10_800),
            pause_after_give_up: Duration::from_secs(5),
            pause_after_drop: Duration::from_secs(5),
        }
    }
}

impl ReconnectPolicy {
    /// The same curve with every duration divided by `factor` (tests).
    pub fn scaled_down(&self, factor: u32) -> ReconnectPolicy {
        let f = factor.max(1);
        ReconnectPolicy {
            initial: self.initial / f,
            max_delay: self.max_delay / f,
            generic_budget: self.generic_budget / f,
            maintenance_budget: self.maintenance_budget / f,
            pause_after_give_up: self.pause_after_give_up / f,
            pause_after_drop: self.pause_after_drop / f,
        }
    }

    /// The nominal delay before retry number `attempt` (0-based).
    pub fn nominal(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max_delay)
    }
}

/// What kind of failure an attempt met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The upgrade was answered 502: Connect is in maintenance.
    Maintenance,
    /// Anything else: refused, timed out, 401/403/503, a failed handshake.
    Generic,
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub delay: Duration,
    /// This wait ends a cycle (the budget is spent): the next failure starts a new one.
    pub cycle_ended: bool,
}

#[derive(Debug, Clone, Copy)]
struct Run {
    started: Instant,
    attempts: u32,
}

/// The state of reconnection attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: ReconnectPolicy,
    generic: Option<Run>,
    maintenance: Option<Run>,
}

impl Backoff {
    pub fn new(policy: ReconnectPolicy) -> Backoff {
        Backoff {
            policy,
            generic: None,
            maintenance: None,
        }
    }

    pub fn policy(&self) -> &ReconnectPolicy {
        &self.policy
    }

    /// A connection succeeded: the next failure starts from the first delay.
    pub fn reset(&mut self) {
        self.generic = None;
        self.maintenance = None;
    }

    /// The wait after a failure at `now`, with `unit` a uniform random number in `[0, 1]`.
    pub fn next_wait(&mut self, kind: FailureKind, now: Instant, unit: f64) -> Wait {
        let budget = match kind {
            FailureKind::Maintenance => self.policy.maintenance_budget,
            FailureKind::Generic => {
                // An ordinary failure ends a run of maintenance answers.
                self.maintenance = None;
                self.policy.generic_budget
            }
        };
        let slot = match kind {
            FailureKind::Maintenance => &mut self.maintenance,
            FailureKind::Generic => &mut self.generic,
        };
        let run = slot.get_or_insert(Run {
            started: now,
            attempts: 0,
        });
        let elapsed = now.saturating_duration_since(run.started);
        if elapsed >= budget {
            *slot = None;
            if kind == FailureKind::Maintenance {
                self.generic = None;
            }
            return Wait {
                delay: self.policy.pause_after_give_up,
                cycle_ended: true,
            };
        }
        let nominal = self.policy.nominal(run.attempts);
        run.attempts = run.attempts.saturating_add(1);
        let jittered = nominal.mul_f64(unit.clamp(0.0, 1.0));
        Wait {
            delay: jittered.min(budget - elapsed),
            cycle_ended: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nominal_delays_double_to_the_cap() {
        let p = ReconnectPolicy::default();
        let secs: Vec<u64> = (0..12).map(|a| p.nominal(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(p.nominal(200), Duration::from_secs(300));
    }

    #[test]
    fn waits_never_exceed_the_cap_and_cycles_restart_after_five_seconds() {
        let mut b = Backoff::new(ReconnectPolicy::default());
        let t0 = Instant::now();
        let mut now = t0;
        let mut ended = 0;
        for _ in 0..200 {
            let w = b.next_wait(FailureKind::Generic, now, 1.0);
            assert!(w.delay <= Duration::from_secs(300), "{w:?}");
            if w.cycle_ended {
                assert_eq!(w.delay, Duration::from_secs(5));
                assert!(now - t0 >= Duration::from_secs(900) || ended > 0);
                ended += 1;
            }
            now += w.delay;
        }
        assert!(ended >= 2, "keeps cycling");
    }

    #[test]
    fn maintenance_has_the_long_budget() {
        let mut b = Backoff::new(ReconnectPolicy::default());
        let t0 = Instant::now();
        let mut now = t0;
        loop {
            let w = b.next_wait(FailureKind::Maintenance, now, 1.0);
            if w.cycle_ended {
                break;
            }
            now += w.delay;
        }
        let spent = now - t0;
        assert!(
            spent >= Duration::from_secs(10_800 - 1) && spent <= Duration::from_secs(10_800),
            "{spent:?}"
        );
    }

    #[test]
    fn jitter_and_reset() {
        let mut b = Backoff::new(ReconnectPolicy::default());
        let now = Instant::now();
        assert_eq!(
            b.next_wait(FailureKind::Generic, now, 0.5).delay,
            Duration::from_millis(500)
        );
        assert_eq!(
            b.next_wait(FailureKind::Generic, now, 0.5).delay,
            Duration::from_secs(1)
        );
        b.reset();
        assert_eq!(
            b.next_wait(FailureKind::Generic, now, 0.0).delay,
            Duration::ZERO
        );
        assert_eq!(
            b.next_wait(FailureKind::Generic, now, 1.0).delay,
            Duration::from_secs(2)
        );
    }
}
