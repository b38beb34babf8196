//! The `report_monthly_usage` schedulable: the QT pipeline on a schedule.
//!
//! The usage source comes from the extension's variables (`USAGE_SOURCE`, the secure
//! `USAGE_SOURCE_TOKEN`, `USAGE_QUERY`, `REPORT_CONCURRENCY`, `MAX_RECORDS_PER_FILE`, `USAGE_AGGREGATION`,
//! `REQUIRE_FULL_COVERAGE`);
//! the month is the schedule's `parameter.period` (`YYYY-MM`) or else the previous month. A run that is interrupted, retried or run twice
//! reports nothing twice: files are found again by their deterministic external id.

use serde_json::Value;
use tracing::warn;

use crate::usage::config::{
    MAX_RECORDS_PER_FILE, REPORT_CONCURRENCY, REQUIRE_FULL_COVERAGE, ReportSettings,
    USAGE_AGGREGATION, USAGE_QUERY, USAGE_SOURCE, USAGE_SOURCE_TOKEN,
};
use crate::usage::{Month, ReportOptions, RunResult, report};
use connect_eaas::runner::{HandlerError, Outcome, TaskContext};

connect_eaas::schedulable! {
    method: "report_monthly_usage",
    name: "Report monthly usage",
    description: "Reports the previous month's pay-as-you-go usage (QT) to the providers: one usage file per distribution contract and product, created, uploaded and submitted once.",
    handler: report_monthly_usage,
}

connect_eaas::variable! { name: USAGE_SOURCE, initial_value: "", secure: false }
connect_eaas::variable! { name: USAGE_SOURCE_TOKEN, initial_value: "", secure: true }
connect_eaas::variable! { name: USAGE_QUERY, initial_value: "", secure: false }
connect_eaas::variable! { name: REPORT_CONCURRENCY, initial_value: "4", secure: false }
connect_eaas::variable! { name: MAX_RECORDS_PER_FILE, initial_value: "1000000", secure: false }
connect_eaas::variable! { name: USAGE_AGGREGATION, initial_value: "none", secure: false }
connect_eaas::variable! { name: REQUIRE_FULL_COVERAGE, initial_value: "false", secure: false }

/// How long to wait before a run with failed groups tries them again.
const AGAIN_AFTER: u64 = 600;

/// Runs the QT pipeline for the schedule's month.
pub async fn report_monthly_usage(
    ctx: TaskContext,
    schedule: Value,
) -> Result<Outcome, HandlerError> {
    let settings = match ReportSettings::from_lookup(|name| ctx.config.get(name).map(str::to_owned))
    {
        Ok(s) => s,
        // A person must set the variables: trying again changes nothing.
        Err(e) => {
            return Ok(Outcome::fail(format!(
                "The extension's variables are not usable: {e}"
            )));
        }
    };
    let period = match schedule["parameter"]["period"].as_str() {
        Some(text) => match text.parse::<Month>() {
            Ok(p) => p,
            Err(e) => {
                return Ok(Outcome::fail(format!(
                    "The schedule's parameter.period {text:?} is not a month: {e}"
                )));
            }
        },
        None => Month::previous_month(chrono::Utc::now()),
    };
    let source = match settings.open_source() {
        Ok(s) => s,
        Err(e) => {
            return Ok(Outcome::fail(format!(
                "The usage source cannot be used: {e}"
            )));
        }
    };
    let options = ReportOptions {
        locks: Some(super::group_locks(&ctx)?),
        ..settings.options(period)
    };
    // Source and catalog failures are errors: the platform runs the task again, and the run
    // resumes from Connect's state.
    let summary = report(&ctx.client, source.as_ref(), &options).await?;
    // The records not sent, each with its position and reason (the first of each kind).
    for p in &summary.problems {
        warn!(period = %period, problem = %p, "usage record not sent");
    }
    if summary.result == RunResult::Failed || summary.groups.failed > 0 {
        warn!(
            failed = summary.groups.failed,
            "some usage files failed; the task runs again later"
        );
        return Ok(Outcome::reschedule(AGAIN_AFTER));
    }
    let mut message = summary.one_line();
    if !summary.conflicts.is_empty() {
        let first = first_few(&summary.conflicts);
        for c in &summary.conflicts {
            warn!(period = %period, conflict = %c, "usage changed after it was reported");
        }
        message.push_str(&format!(
            ". Records whose usage changed after it was reported are not sent again: settle them with the provider. The first: {}",
            first
        ));
    }
    if let Some(c) = summary.coverage.as_ref().filter(|c| c.not_covered > 0) {
        for u in &c.samples {
            warn!(period = %period, subscription = %u, "subscription without usage");
        }
        let first = first_few(&c.samples);
        let consequence = if c.required {
            "REQUIRE_FULL_COVERAGE makes the run partial"
        } else {
            "reported only, REQUIRE_FULL_COVERAGE is false"
        };
        message.push_str(&format!(
            ". Subscriptions of QT products active in {period} that no record names: {} of {} \
             ({consequence}), the first: {} (the log's \"subscription without usage\" lines \
             have up to {})",
            c.not_covered,
            c.expected,
            first,
            crate::usage::coverage::COVERAGE_SAMPLES
        ));
    }
    if !summary.problems.is_empty() {
        let first = first_few(&summary.problems);
        message.push_str(&format!(
            ". Records not sent, the first: {} (the log's \"usage record not sent\" lines have up to {} of each kind)",
            first,
            crate::usage::summary::SAMPLES
        ));
    }
    Ok(Outcome::done_with_message(message))
}

/// The first five of `items`, for a task's message (the log has more).
fn first_few<T: std::fmt::Display>(items: &[T]) -> String {
    let first: Vec<String> = items.iter().take(5).map(T::to_string).collect();
    first.join("; ")
}
