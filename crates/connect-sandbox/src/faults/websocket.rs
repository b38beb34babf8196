//! Websocket fault rules: what makes the platform side of the events protocol misbehave the
//! way a real network and a busy Connect do. A rule refuses or drops a runner's upgrade, leaves
//! its setup unanswered or drops it, drops the connection right after a task is sent, or loses
//! a result, always or at a rate, a number of times, for one runner type or all. Rules are
//! changed at run time through `/sandbox/platform/faults`.

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use super::{check_each, check_rate};

/// Where a websocket fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WsPoint {
    /// The upgrade request.
    Upgrade,
    /// The runner's `setup_request`.
    Setup,
    /// Right after a task is sent.
    Task,
    /// When a task result arrives (before it is recorded).
    Result,
}

/// What a websocket fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WsAction {
    /// Answer the upgrade with an HTTP error (`status`, default 502).
    Refuse,
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Say nothing: leave the setup request unanswered, or lose the result.
    Silence,
}

/// A websocket fault rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsFaultRule {
    pub at: WsPoint,
    pub action: WsAction,
    /// HTTP status of a refused upgrade.
    #[serde(default)]
    pub status: Option<u16>,
    /// Applies this many times, then is spent (unlimited when absent).
    #[serde(default)]
    pub times: Option<u32>,
    /// Chance (0 to 1) that the rule applies when it could (1 when absent).
    #[serde(default)]
    pub rate: Option<f64>,
    /// Only on sessions of this runner type.
    #[serde(default)]
    pub runner_type: Option<String>,
}

impl WsFaultRule {
    pub fn check(&self) -> Result<(), String> {
        match (self.at, self.action) {
            (WsPoint::Upgrade, WsAction::Silence) => {
                return Err("an upgrade cannot be silenced: refuse or drop it".into());
            }
            (p, WsAction::Refuse) if p != WsPoint::Upgrade => {
                return Err("only an upgrade can be refused".into());
            }
            (WsPoint::Task, WsAction::Silence) => {
                return Err("a task cannot be silenced: drop the connection after it".into());
            }
            _ => {}
        }
        if let Some(s) = self.status
            && !(400..=599).contains(&s)
        {
            return Err(format!("status {s} is not an HTTP error"));
        }
        if let Some(r) = self.rate {
            check_rate(r)?;
        }
        Ok(())
    }
}

/// The websocket fault rules in force, each with the uses it has left (`None`: unlimited).
#[derive(Debug, Default)]
pub struct WsFaults {
    rules: Vec<(WsFaultRule, Option<u32>)>,
}

impl WsFaults {
    /// Replaces every rule, when all of them can be used.
    pub fn set(&mut self, rules: Vec<WsFaultRule>) -> Result<(), String> {
        check_each(&rules, WsFaultRule::check)?;
        self.rules = rules.into_iter().map(|r| (r.clone(), r.times)).collect();
        Ok(())
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The rules and their uses left, for the admin API.
    pub fn dump(&self) -> Vec<Json> {
        self.rules
            .iter()
            .map(|(r, left)| json!({"rule": r, "left": left}))
            .collect()
    }

    /// The first rule at `point` doing one of `actions` for a session of `runner_type` that
    /// applies now (spending one use of it). `roll` gives a number in `[0, 1)` for each rule
    /// that could apply, compared with its rate: the caller owns the random stream.
    pub fn strike(
        &mut self,
        point: WsPoint,
        actions: &[WsAction],
        runner_type: Option<&str>,
        mut roll: impl FnMut() -> f64,
    ) -> Option<WsFaultRule> {
        for (rule, left) in self.rules.iter_mut() {
            if rule.at != point || !actions.contains(&rule.action) || *left == Some(0) {
                continue;
            }
            if let Some(rt) = &rule.runner_type
                && Some(rt.as_str()) != runner_type
            {
                continue;
            }
            let rate = rule.rate.unwrap_or(1.0);
            if roll() >= rate {
                continue;
            }
            if let Some(n) = left.as_mut() {
                *n -= 1;
            }
            return Some(rule.clone());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_rules_are_checked() {
        let rule = |at, action| WsFaultRule {
            at,
            action,
            status: None,
            times: None,
            rate: None,
            runner_type: None,
        };
        assert!(rule(WsPoint::Upgrade, WsAction::Refuse).check().is_ok());
        assert!(rule(WsPoint::Task, WsAction::Refuse).check().is_err());
        assert!(rule(WsPoint::Upgrade, WsAction::Silence).check().is_err());
        assert!(rule(WsPoint::Result, WsAction::Silence).check().is_ok());
    }
}
