//! The usage file lifecycle: what the extension does when one of its files changes status.
//!
//! One handler of `usage_file_request_processing` for the statuses below, acting only on the
//! files this extension owns (their `external_id` starts with `cu:`; any other file is
//! skipped with the reason). A group's parts and supplements are each one of these files.
//! Each handler holds the file's group [lock](crate::usage::locks), reads the file again and
//! acts only if it is still in the event's status, so the same event delivered twice changes
//! nothing the second time.
//!
//! - `ready`: submit. A file whose note does not vouch for its rows (an upload interrupted
//!   before it was noted, or processed after the run stopped waiting) is first checked against
//!   the vendor's data by a one-group run. Rows someone uploaded by hand after the note was
//!   written are theirs: skipped with the reason, never overwritten.
//! - `invalid`: log Connect's `error_detail` and the invalid records; if the vendor's data for
//!   the group changed since the upload, regenerate and upload once more, else `fail` saying
//!   what to fix.
//! - `rejected`: rerun (fetch the group's usage again, rebuild this file from the records no
//!   other file of the group holds, upload into it, submit), at most `RERUN_LIMIT` times per
//!   file. The count lives in the file's note
//!   ([`FileNote`]), so it survives restarts; a rerun interrupted is resumed, not counted twice.
//! - `accepted`: acknowledge to the vendor (`USAGE_ACK_URL`) when configured.
//! - `closed`: nothing left to do.

use std::time::Duration;

use serde_json::Value;
use tracing::{info, warn};

use crate::usage::acknowledge::{AckError, Acknowledged, Acknowledgement};
use crate::usage::config::{LifecycleSettings, RERUN_LIMIT, ReportSettings, USAGE_ACK_URL};
use crate::usage::decide::{Seen, Vouch, vouched};
use crate::usage::identity::{FileNote, FileSlot, parse_external_id};
use crate::usage::{FileAction, FileFailure, FileReport, Month, report};
use connect_client::models::{UsageFile, UsageFileStatus, UsageFileUpdate, UsageRecord};
use connect_client::rql::Expr;
use connect_eaas::runner::{HandlerError, Outcome, TaskContext};

connect_eaas::event_handler! {
    event: "usage_file_request_processing",
    statuses: ["ready", "invalid", "rejected", "accepted", "closed"],
    handler: usage_file_lifecycle,
}

connect_eaas::variable! { name: RERUN_LIMIT, initial_value: "3", secure: false }
connect_eaas::variable! { name: USAGE_ACK_URL, initial_value: "", secure: false }

/// How long an event waits for another actor (the monthly run, say) to finish with the file
/// before it is handed back to the platform for later.
const LOCK_WAIT: Duration = Duration::from_secs(180);
/// When to try again after [`LOCK_WAIT`].
const LATER: u64 = 120;
/// Invalid records shown in logs and messages.
const INVALID_SAMPLES: u64 = 20;

/// A file of this extension, and the group it reports.
#[derive(Debug, Clone)]
struct Group {
    file_id: String,
    external_id: String,
    /// The external id of the group's first file: the group's lock.
    group_id: String,
    contract: String,
    product: String,
    period: Month,
    slot: FileSlot,
}

impl Group {
    fn describe(&self) -> String {
        let part = match self.slot {
            FileSlot::FIRST => String::new(),
            slot if slot.part > 1 && slot.supplement > 0 => {
                format!(", supplement {} part {}", slot.supplement, slot.part)
            }
            slot if slot.part > 1 => format!(", part {}", slot.part),
            slot => format!(", supplement {}", slot.supplement),
        };
        format!(
            "usage file {} (contract {}, product {}, {}{part})",
            self.file_id, self.contract, self.product, self.period
        )
    }
}

/// Handles a status change of a usage file.
pub async fn usage_file_lifecycle(
    ctx: TaskContext,
    object: Value,
) -> Result<Outcome, HandlerError> {
    let event_file: UsageFile = match serde_json::from_value(object) {
        Ok(f) => f,
        Err(e) => {
            return Ok(Outcome::fail(format!(
                "The task's object is not a usage file: {e}"
            )));
        }
    };
    let external_id = event_file.external_id.clone().unwrap_or_default();
    let Some(parsed) = parse_external_id(&external_id) else {
        return Ok(Outcome::skip(format!(
            "usage file {} is not one of connect-usage's: its external_id {external_id:?} is not cu:<contract>:<product>:<YYYY-MM>[:s<n>][:p<k>]",
            event_file.id
        )));
    };
    let group = Group {
        file_id: event_file.id.clone(),
        group_id: parsed.group_id(),
        external_id,
        contract: parsed.contract,
        product: parsed.product,
        period: parsed.period,
        slot: parsed.slot,
    };
    let locks = super::group_locks(&ctx)?;
    let Ok(_held) = tokio::time::timeout(LOCK_WAIT, locks.lock(&group.group_id)).await else {
        info!(file = %group.file_id, "another task is still working on this usage file; later");
        return Ok(Outcome::reschedule(LATER));
    };
    // The event's copy may be old: act on what the file is now, and only if it is still in
    // the status the event is about (a later event handles a later status).
    let file = ctx.client.usage_file(&group.file_id).await?;
    if file.status != event_file.status {
        return Ok(Outcome::done_with_message(format!(
            "{} is {} now, no longer {}: nothing to do for this event",
            group.describe(),
            file.status,
            event_file.status
        )));
    }
    // Read only where needed: a bad RERUN_LIMIT must not keep ready files from being submitted.
    let lifecycle = || LifecycleSettings::from_lookup(|n| ctx.config.get(n).map(str::to_owned));
    let unusable = |e: crate::usage::SourceError| {
        Ok(Outcome::fail(format!(
            "The extension's variables are not usable: {e}"
        )))
    };
    match file.status {
        UsageFileStatus::Ready => ready(&ctx, &group, &file).await,
        UsageFileStatus::Invalid => invalid(&ctx, &group, &file).await,
        UsageFileStatus::Rejected => match lifecycle() {
            Ok(settings) => rejected(&ctx, &group, &file, &settings).await,
            Err(e) => unusable(e),
        },
        UsageFileStatus::Accepted => match lifecycle() {
            Ok(settings) => accepted(&group, &file, &settings).await,
            Err(e) => unusable(e),
        },
        UsageFileStatus::Closed => {
            info!(file = %group.file_id, external_id = %group.external_id, "usage file closed by the provider");
            Ok(Outcome::done_with_message(format!(
                "{} is closed: nothing left to do",
                group.describe()
            )))
        }
        other => Ok(Outcome::done_with_message(format!(
            "{} is {other}: nothing to do",
            group.describe()
        ))),
    }
}

/// `ready`: submit, when the file is known to hold the data this extension uploaded.
async fn ready(
    ctx: &TaskContext,
    group: &Group,
    file: &UsageFile,
) -> Result<Outcome, HandlerError> {
    let note = FileNote::parse(file.note.as_deref());
    // The note vouches for the file's rows only if nothing was uploaded since it was written
    // and the counts agree: the same judgement the report pipeline makes.
    let seen = Seen {
        status: &file.status,
        note: &note,
        uploaded_at: file.last_upload(),
        rows: file.stats.as_ref().map(|s| s.uploaded),
        submitted_since_upload: false,
    };
    let records = match vouched(&seen) {
        Vouch::Foreign => {
            return Ok(Outcome::skip(format!(
                "{} holds rows someone else uploaded after connect-usage noted its own: left for them to submit (clear the file's note to have connect-usage report the vendor's records into it)",
                group.describe()
            )));
        }
        Vouch::Rows { records, .. } => Some(records),
        Vouch::Unknown => None,
    };
    let Some(records) = records else {
        // Ready, but its upload was interrupted before its digest was noted or outlived the
        // run's wait: a one-group run checks it against the vendor's data, uploads again if
        // needed, and submits.
        info!(file = %group.file_id, "ready without a digest that vouches for its rows: checking it against the vendor's data");
        let report = regenerate(ctx, group, None).await?;
        return Ok(match report.as_ref().map(|r| r.action) {
            Some(FileAction::Created | FileAction::Resumed | FileAction::AlreadyReported) => {
                Outcome::done_with_message(format!(
                    "{} checked against the vendor's data and submitted",
                    group.describe()
                ))
            }
            _ => outcome_of_failed_run(group, report)?,
        });
    };
    match ctx.client.submit_usage_file(&group.file_id).await {
        Ok(f) => {
            info!(file = %group.file_id, external_id = %group.external_id, status = %f.status, "usage file submitted");
            Ok(Outcome::done_with_message(format!(
                "{} submitted to the provider ({records} records)",
                group.describe()
            )))
        }
        Err(e) => {
            // The submit may have been applied (lost answer) or refused because someone else
            // submitted: the file's state decides.
            let now = ctx.client.usage_file(&group.file_id).await?;
            if matches!(
                now.status,
                UsageFileStatus::Pending | UsageFileStatus::Accepted | UsageFileStatus::Closed
            ) {
                return Ok(Outcome::done_with_message(format!(
                    "{} is already submitted ({})",
                    group.describe(),
                    now.status
                )));
            }
            Err(HandlerError::msg(format!(
                "cannot submit {}: {e}",
                group.describe()
            )))
        }
    }
}

/// `invalid`: explain, and regenerate once if the vendor's data changed since the upload.
async fn invalid(
    ctx: &TaskContext,
    group: &Group,
    file: &UsageFile,
) -> Result<Outcome, HandlerError> {
    let found = explain_invalid(ctx, group, file).await;
    let report = regenerate(ctx, group, None).await?;
    let invalid_again = |r: &FileReport| {
        r.action == FileAction::Failed && r.failure == Some(FileFailure::InvalidUpload)
    };
    match report.as_ref() {
        Some(r) if matches!(r.action, FileAction::Created | FileAction::Resumed) => {
            info!(file = %group.file_id, records = r.records, "the vendor's data changed since the invalid upload: regenerated and submitted");
            Ok(Outcome::done_with_message(format!(
                "The vendor's data changed since the invalid upload: {} regenerated ({} records), uploaded again and submitted",
                group.describe(),
                r.records
            )))
        }
        Some(r) if r.action == FileAction::Waiting && r.uploaded => {
            Ok(Outcome::done_with_message(format!(
                "The vendor's data changed since the invalid upload: {} regenerated and uploaded again; Connect is still processing it (its ready event submits it)",
                group.describe()
            )))
        }
        // The regenerated upload is invalid too: what Connect says of it now is what counts.
        Some(r) if invalid_again(r) && r.uploaded => {
            let now = ctx.client.usage_file(&group.file_id).await?;
            let found = explain_invalid(ctx, group, &now).await;
            Ok(Outcome::fail(format!(
                "The vendor's data changed since the invalid upload, so {} was regenerated ({} records) and uploaded again, but Connect found it invalid again: {}Correct the records in the vendor's system, then run the monthly schedule again with parameter period={} (or `connect-usage report --period {}`).",
                group.describe(),
                r.records,
                found.summary(),
                group.period,
                group.period
            )))
        }
        Some(r) if invalid_again(r) => Ok(Outcome::fail(format!(
            "Connect found {} invalid: {}The vendor's data for this contract and product is the same as uploaded, so uploading it again would fail the same way: correct the records in the vendor's system, then run the monthly schedule again with parameter period={} (or `connect-usage report --period {}`).",
            group.describe(),
            found.summary(),
            group.period,
            group.period
        ))),
        _ => outcome_of_failed_run(group, report),
    }
}

/// What Connect found wrong with a file's upload.
struct InvalidUpload {
    detail: String,
    /// How many records are invalid, and the first of them.
    total: u64,
    samples: Vec<UsageRecord>,
}

impl InvalidUpload {
    /// For a person: the detail and a few records, each with its reason; ends with ". ".
    fn summary(&self) -> String {
        let mut text = if self.detail.is_empty() {
            "no detail given. ".to_owned()
        } else {
            format!("{}. ", self.detail.trim_end_matches('.'))
        };
        if self.total > 0 {
            let shown: Vec<String> = self
                .samples
                .iter()
                .take(3)
                .map(|r| {
                    let why = r.error_details.as_deref().unwrap_or("no detail");
                    let short: String = why.chars().take(200).collect();
                    let cut = if short.len() < why.len() { "..." } else { "" };
                    format!("{} ({short}{cut})", r.id)
                })
                .collect();
            text.push_str(&format!(
                "{} records are invalid, for example: {}. ",
                self.total,
                shown.join("; ")
            ));
        }
        text
    }
}

/// Reads Connect's `error_detail` and the first invalid records of an invalid file, and logs
/// them, one structured line each.
async fn explain_invalid(ctx: &TaskContext, group: &Group, file: &UsageFile) -> InvalidUpload {
    let detail = file.error_detail.clone().unwrap_or_default();
    let (total, samples) = invalid_records(ctx, &group.file_id).await;
    warn!(
        file = %group.file_id,
        external_id = %group.external_id,
        error_detail = %detail,
        invalid_records = total,
        "Connect found the usage file invalid"
    );
    for r in &samples {
        warn!(
            file = %group.file_id,
            record = %r.id,
            asset = r.asset.as_ref().map_or("-", |a| a.id.as_str()),
            item = r.item.as_ref().and_then(|i| i.mpn.as_deref()).unwrap_or("-"),
            error = r.error_details.as_deref().unwrap_or("-"),
            "invalid usage record"
        );
    }
    InvalidUpload {
        detail,
        total,
        samples,
    }
}

/// `rejected`: rerun, within the cap.
async fn rejected(
    ctx: &TaskContext,
    group: &Group,
    file: &UsageFile,
    settings: &LifecycleSettings,
) -> Result<Outcome, HandlerError> {
    let note = FileNote::parse(file.note.as_deref());
    let rejection = file
        .rejection_note
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "no note given".into());
    let cap = settings.rerun_limit;
    let rerun = if note.rerunning {
        info!(file = %group.file_id, rerun = note.reruns, rejection_note = %rejection, "resuming an interrupted rerun");
        note.reruns
    } else {
        warn!(
            file = %group.file_id,
            external_id = %group.external_id,
            rejection_note = %rejection,
            reruns_so_far = note.reruns,
            "the provider rejected the usage file"
        );
        if cap == 0 {
            return Ok(Outcome::fail(format!(
                "The provider rejected {}: \"{rejection}\". Reruns are off ({RERUN_LIMIT}=0), so it is left rejected for a person: agree the usage with the provider, correct it in the vendor's system, then set {RERUN_LIMIT} and deliver this event again, or upload the file in Connect by hand.",
                group.describe()
            )));
        }
        if note.reruns >= cap {
            return Ok(Outcome::fail(format!(
                "The provider rejected {} again: \"{rejection}\". It was rerun {} time{} already, the limit ({RERUN_LIMIT}={cap}), so it is left rejected for a person: agree the usage with the provider, correct it in the vendor's system, then raise {RERUN_LIMIT} and deliver this event again, or upload the file in Connect by hand.",
                group.describe(),
                note.reruns,
                if note.reruns == 1 { "" } else { "s" }
            )));
        }
        // Counted before anything else: a crash from here on resumes this rerun.
        let started = FileNote {
            reruns: note.reruns + 1,
            rerunning: true,
            ..note.cleared()
        };
        let update = UsageFileUpdate {
            note: Some(started.to_string()),
            ..UsageFileUpdate::default()
        };
        ctx.client
            .update_usage_file(&group.file_id, &update)
            .await?;
        started.reruns
    };
    info!(file = %group.file_id, rerun, limit = cap, "rerun: fetching the usage again and rebuilding the file");
    let report = regenerate(ctx, group, Some(&group.file_id)).await?;
    match report.as_ref().map(|r| r.action) {
        Some(FileAction::Created | FileAction::Resumed) => {
            let records = report.as_ref().map_or(0, |r| r.records);
            info!(file = %group.file_id, rerun, records, "rerun done: uploaded again and submitted");
            Ok(Outcome::done_with_message(format!(
                "Rerun {rerun} of at most {cap} after the provider's rejection (\"{rejection}\"): {} rebuilt from the vendor's data ({records} records), uploaded again and submitted",
                group.describe()
            )))
        }
        // Only an upload this rerun made is Connect's to finish; a file left waiting for
        // another reason is not rerun yet.
        Some(FileAction::Waiting) if report.as_ref().is_some_and(|r| r.uploaded) => {
            Ok(Outcome::done_with_message(format!(
                "Rerun {rerun} of at most {cap} after the provider's rejection (\"{rejection}\"): {} uploaded again; Connect is still processing it (its ready event submits it)",
                group.describe()
            )))
        }
        _ => outcome_of_failed_run(group, report),
    }
}

/// `accepted`: tell the vendor, if it listens.
async fn accepted(
    group: &Group,
    file: &UsageFile,
    settings: &LifecycleSettings,
) -> Result<Outcome, HandlerError> {
    let note = file.acceptance_note.clone().unwrap_or_default();
    info!(file = %group.file_id, external_id = %group.external_id, acceptance_note = %note, "the provider accepted the usage file");
    let Some(endpoint) = &settings.ack else {
        return Ok(Outcome::done_with_message(format!(
            "{} accepted by the provider (no {USAGE_ACK_URL} set: the vendor is not told)",
            group.describe()
        )));
    };
    let records = file
        .stats
        .as_ref()
        .map(|s| s.uploaded)
        .or_else(|| {
            FileNote::parse(file.note.as_deref())
                .digest
                .map(|(_, n)| n as u64)
        })
        .unwrap_or(0);
    let ack = Acknowledgement {
        usage_file_id: group.file_id.clone(),
        external_id: group.external_id.clone(),
        contract_id: group.contract.clone(),
        product_id: group.product.clone(),
        period: group.period.to_string(),
        status: "accepted".into(),
        records,
        acceptance_note: file.acceptance_note.clone(),
        accepted_at: file
            .events
            .as_ref()
            .and_then(|e| e.accepted.as_ref())
            .map(|e| e.at.to_rfc3339()),
    };
    match endpoint.send(&ack).await {
        Ok(how) => {
            info!(file = %group.file_id, endpoint = %endpoint.shown_url(), already = how == Acknowledged::AlreadyKnown, "acceptance acknowledged to the vendor");
            Ok(Outcome::done_with_message(format!(
                "{} accepted by the provider; acknowledged to the vendor{}",
                group.describe(),
                if how == Acknowledged::AlreadyKnown {
                    " (it had the acknowledgement already)"
                } else {
                    ""
                }
            )))
        }
        // Worth trying again: the platform delivers the task again.
        Err(e @ AckError::Unavailable { .. }) => Err(e.into()),
        Err(e @ AckError::Refused { .. }) => Ok(Outcome::fail(format!(
            "{} was accepted, but the vendor was not told: {e}",
            group.describe()
        ))),
    }
}

/// The first invalid records of a file and how many there are; a failure to read them is
/// logged and leaves them out (the file's `error_detail` still explains).
async fn invalid_records(ctx: &TaskContext, file_id: &str) -> (u64, Vec<UsageRecord>) {
    let page = ctx
        .client
        .usage_records()
        .filter(Expr::eq("usagefile.id", file_id) & Expr::eq("status", "invalid"))
        .page(INVALID_SAMPLES, 0)
        .await;
    match page {
        Ok(p) => {
            let total = p.range.as_ref().map_or(p.items.len() as u64, |r| r.total);
            (total, p.items)
        }
        Err(e) => {
            warn!(file = %file_id, error = %e, "cannot read the invalid records");
            (0, Vec::new())
        }
    }
}

/// Runs the report for this one group: fetch the month's usage, keep the group's records,
/// rebuild the workbooks, take the files to `pending` (with `rerun`: only that rejected file).
/// The caller holds the group's lock. Returns what became of the event's file.
async fn regenerate(
    ctx: &TaskContext,
    group: &Group,
    rerun: Option<&str>,
) -> Result<Option<FileReport>, HandlerError> {
    let settings = ReportSettings::from_lookup(|n| ctx.config.get(n).map(str::to_owned))
        .map_err(|e| HandlerError::msg(format!("the extension's variables are not usable: {e}")))?;
    let source = settings
        .open_source()
        .map_err(|e| HandlerError::msg(format!("the usage source cannot be used: {e}")))?;
    let mut options = settings.options(group.period);
    options.concurrency = 1;
    options.only = Some((group.contract.clone(), group.product.clone()));
    options.rerun = rerun.map(str::to_owned);
    // This handler holds the group's lock already.
    options.locks = None;
    let summary = report(&ctx.client, source.as_ref(), &options).await?;
    // The file's own report; or, when the group failed as a whole (its files could not be
    // listed, say), the group's, so that the failure is not taken for "no records".
    let mut files = summary.files;
    let own = files
        .iter()
        .position(|f| f.external_id == group.external_id);
    let group_failed = files
        .iter()
        .position(|f| f.external_id == group.group_id && f.action == FileAction::Failed);
    Ok(own.or(group_failed).map(|i| files.swap_remove(i)))
}

/// The outcome of a one-group run that did not end with the file submitted.
fn outcome_of_failed_run(
    group: &Group,
    report: Option<FileReport>,
) -> Result<Outcome, HandlerError> {
    let Some(report) = report else {
        return Ok(Outcome::fail(format!(
            "The vendor's usage for {} has no valid records for contract {} and product {} any more, so {} cannot be rebuilt; it is left for a person (delete it in Connect if nothing is to be reported).",
            group.period, group.contract, group.product, group.file_id
        )));
    };
    let message = report
        .message
        .unwrap_or_else(|| format!("the file ended {}", report.action));
    match report.action {
        // A person must decide: trying again changes nothing.
        FileAction::ChangedAfterReport | FileAction::SkippedNotQt => {
            Ok(Outcome::fail(format!("{}: {message}", group.describe())))
        }
        // Connect or the vendor failed: the platform delivers the task again, and the run
        // resumes from the file's state.
        _ => Err(HandlerError::msg(format!(
            "{} not finished: {message}",
            group.describe()
        ))),
    }
}
