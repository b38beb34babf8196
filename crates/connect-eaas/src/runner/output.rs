//! The one place a task's `output` is built, by the rules of its category: from a handler's
//! [`Outcome`], from a failure (interactive tasks fail, the others are retried, since running
//! them again may work), or as a plain result the runner decides on (a skip, a refusal).
//! Every path of the runner that answers a task goes through here, so the rules are said once.

use serde_json::Value;

use crate::protocol::{ResultType, TaskCategory, TaskOutput};
use crate::task::{Outcome, OutcomeKind};

/// Event types whose interactive failures carry `data` with HTTP status 400 (validations
/// answer with `data: null`).
const HTTP_ANSWER_EVENTS: [&str; 2] = [
    "product_action_execution",
    "product_custom_event_processing",
];

/// The longest message a result carries, in characters, as the official runner cuts them.
pub const MAX_MESSAGE_CHARS: usize = 4000;

/// Cuts a message to [`MAX_MESSAGE_CHARS`] characters.
pub fn truncate_message(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        None => message.to_owned(),
        Some((at, _)) => message[..at].to_owned(),
    }
}

impl Outcome {
    /// The `output` of a task of `category` that ran for `runtime` seconds.
    ///
    /// Background tasks send a message with `skip`/`fail` (and with a success only when the
    /// handler gave one) and a countdown only with `reschedule`; interactive tasks always carry `data = {http_status, headers, body}`;
    /// scheduled tasks send the result and message.
    pub fn into_output(self, category: TaskCategory, runtime: f64) -> TaskOutput {
        let result = self.result();
        let mut out = TaskOutput {
            result,
            data: None,
            countdown: 0,
            runtime,
            message: None,
        };
        match (self.kind, category) {
            (OutcomeKind::Reschedule(countdown), _) => out.countdown = countdown,
            (OutcomeKind::Skip(m) | OutcomeKind::Fail(m), TaskCategory::Interactive) => {
                out.message = Some(m.clone());
                out.data = Some(interactive_data(
                    if result == ResultType::Success {
                        200
                    } else {
                        400
                    },
                    None,
                    None,
                ));
            }
            (OutcomeKind::Skip(m) | OutcomeKind::Fail(m), _) => out.message = Some(m),
            (OutcomeKind::Done | OutcomeKind::DoneWith(_), TaskCategory::Interactive) => {
                out.data = Some(interactive_data(200, None, None));
            }
            (OutcomeKind::DoneWith(m), TaskCategory::Scheduled | TaskCategory::Background) => {
                out.message = Some(truncate_message(&m));
            }
            (OutcomeKind::Done, _) => {}
            (
                OutcomeKind::Respond {
                    http_status,
                    headers,
                    body,
                    message,
                    ..
                },
                TaskCategory::Interactive,
            ) => {
                out.data = Some(interactive_data(http_status, headers, body));
                out.message = message;
            }
            // An interactive answer to a background or scheduled task: only its result and
            // message mean something there.
            (OutcomeKind::Respond { message, .. }, _) => {
                if result != ResultType::Success {
                    out.message = message;
                }
            }
        }
        // Connect keeps 4000 characters of a task's output.
        out.message = out.message.map(|m| truncate_message(&m));
        out
    }
}

fn interactive_data(http_status: u16, headers: Option<Value>, body: Option<Value>) -> Value {
    serde_json::json!({"http_status": http_status, "headers": headers, "body": body})
}

/// The output of a failed task: `retry` for background and scheduled tasks, `fail` for
/// interactive ones (with `data` carrying HTTP 400 and the message for product actions and
/// custom events).
pub(crate) fn failure(
    category: TaskCategory,
    event_type: &str,
    message: &str,
    runtime: f64,
) -> TaskOutput {
    let message = truncate_message(message);
    match category {
        TaskCategory::Interactive => TaskOutput {
            result: ResultType::Fail,
            data: HTTP_ANSWER_EVENTS
                .contains(&event_type)
                .then(|| serde_json::json!({"http_status": 400, "headers": null, "body": message})),
            countdown: 0,
            runtime,
            message: Some(message),
        },
        _ => TaskOutput {
            result: ResultType::Retry,
            data: None,
            countdown: 0,
            runtime,
            message: Some(message),
        },
    }
}

pub(crate) fn plain(result: ResultType, message: String) -> TaskOutput {
    TaskOutput {
        result,
        data: None,
        countdown: 0,
        runtime: 0.0,
        message: Some(truncate_message(&message)),
    }
}

/// A failure that running the task again would not mend: `fail` in every category, in the
/// category's shape.
pub(crate) fn final_failure(
    category: TaskCategory,
    event_type: &str,
    message: &str,
    runtime: f64,
) -> TaskOutput {
    TaskOutput {
        result: ResultType::Fail,
        ..failure(category, event_type, message, runtime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outputs_follow_the_category_rules() {
        let bg = |o: Outcome| serde_json::to_value(o.into_output(TaskCategory::Background, 1.5));
        assert_eq!(
            bg(Outcome::done()).expect("json"),
            json!({"result": "success", "data": null, "countdown": 0, "runtime": 1.5, "message": null})
        );
        assert_eq!(bg(Outcome::reschedule(5)).expect("json")["countdown"], 30);
        assert_eq!(
            bg(Outcome::slow_reschedule(301)).expect("json")["countdown"],
            301
        );
        assert_eq!(
            bg(Outcome::slow_reschedule(10)).expect("json")["countdown"],
            300
        );
        assert_eq!(bg(Outcome::skip("why")).expect("json")["message"], "why");
        assert_eq!(
            bg(Outcome::done_with_message("rerun 1")).expect("json"),
            json!({"result": "success", "data": null, "countdown": 0, "runtime": 1.5, "message": "rerun 1"})
        );
        let out = Outcome::respond(201, Some(json!({"X": "1"})), Some(json!({"ok": true})))
            .into_output(TaskCategory::Interactive, 0.05);
        assert_eq!(
            serde_json::to_value(out).expect("json"),
            json!({"result": "success", "data": {"http_status": 201, "headers": {"X": "1"}, "body": {"ok": true}},
                   "countdown": 0, "runtime": 0.05, "message": null})
        );
        let out = Outcome::fail("bad").into_output(TaskCategory::Interactive, 0.0);
        assert_eq!(
            out.data,
            Some(json!({"http_status": 400, "headers": null, "body": null}))
        );
        assert_eq!(out.message.as_deref(), Some("bad"));
    }

    #[test]
    fn failures_follow_the_category_rules() {
        let bg = failure(
            TaskCategory::Background,
            "usage_file_request_processing",
            "boom",
            2.0,
        );
        assert_eq!(bg.result, ResultType::Retry);
        assert_eq!(bg.data, None);
        let i = failure(
            TaskCategory::Interactive,
            "product_custom_event_processing",
            "boom",
            0.0,
        );
        assert_eq!(i.result, ResultType::Fail);
        assert_eq!(
            i.data,
            Some(serde_json::json!({"http_status": 400, "headers": null, "body": "boom"}))
        );
        let v = failure(
            TaskCategory::Interactive,
            "asset_purchase_request_validation",
            "boom",
            0.0,
        );
        assert_eq!(v.data, None);
        let long = "x".repeat(5000);
        let s = failure(TaskCategory::Scheduled, "scheduled_execution", &long, 0.0);
        assert_eq!(s.message.map(|m| m.len()), Some(4000));
    }

    #[test]
    fn messages_are_cut_to_what_connect_keeps() {
        let long = "é".repeat(5000);
        assert_eq!(truncate_message(&long).chars().count(), MAX_MESSAGE_CHARS);
        assert_eq!(truncate_message("short"), "short");
        let f = final_failure(TaskCategory::Background, "x", "too big", 0.0);
        assert_eq!(f.result, ResultType::Fail);
    }
}
