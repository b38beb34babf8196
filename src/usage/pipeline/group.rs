//! Phase 3, for each group: find its usage files in Connect, learn what the submitted ones
//! hold, and decide which files take the records they do not hold ([`crate::usage::layout`]);
//! then hand each of those files to [`super::deliver`], and delete the ones left over.
//!
//! What a submitted file holds is read back from Connect (its uploaded workbook) only when the
//! notes cannot tell: records that arrived late, or changed, since the group's latest batch was
//! built. Then each record is compared by id with what was reported ([`super::compare`]): new
//! ids go to the next files, changed ones are conflicts for a person, the others are reported.

use std::sync::Arc;

use futures_util::future::{join_all, try_join_all};
use tracing::{info, warn};

use super::compare::{self, Compared};
use super::deliver::{self, Slot};
use super::files::{
    GroupCtx, GroupError, list_files, newer_reported_message, newer_waiting_message,
    rejected_message,
};
use super::place::GroupData;
use super::store::{Chunk, Chunked};
use super::{Run, RunError};
use crate::usage::catalog::Catalog;
use crate::usage::identity::{self, FileNote, FileSlot};
use crate::usage::layout::{self, Coverage, GroupFile, GroupRecords, Role, Scope};
use crate::usage::summary::{Conflict, FileAction, FileReport, RecordCounts};
use connect_client::models::UsageFile;

/// What a group's report came to.
#[derive(Debug, Default)]
pub(super) struct GroupOutcome {
    pub files: Vec<FileReport>,
    /// Vendor records by what happened to them (`sent`, `already_reported`, `not_reported`,
    /// `not_qt`, `conflicts`).
    pub records: RecordCounts,
    pub conflicts: Vec<Conflict>,
}

/// Reports one group.
pub(super) async fn report_group(
    run: Arc<Run>,
    catalog: Arc<Catalog>,
    g: GroupData,
) -> Result<GroupOutcome, RunError> {
    let period = run.options.period;
    let base_id = identity::external_id(&g.info.contract, &g.info.product, period);
    let ctx = GroupCtx {
        currency: catalog.currency(&g.info.contract),
        product_name: catalog
            .products
            .get(&g.info.product)
            .and_then(|p| p.name.clone())
            .unwrap_or_else(|| g.info.product.clone()),
        run,
        info: g.info,
        base_id,
    };
    if !ctx.info.qt {
        let schema = catalog
            .products
            .get(&ctx.info.product)
            .and_then(|p| p.ppu_schema())
            .unwrap_or("none")
            .to_owned();
        let mut r = ctx.report(ctx.base_id.clone(), g.rows.count);
        r.action = FileAction::SkippedNotQt;
        r.message = Some(format!(
            "the product's pay-as-you-go schema is {schema}, not QT: not sent"
        ));
        return Ok(GroupOutcome {
            files: vec![r],
            records: RecordCounts {
                not_qt: g.rows.vendor_records as usize,
                ..RecordCounts::default()
            },
            conflicts: Vec::new(),
        });
    }
    let _held = match &ctx.run.options.locks {
        Some(locks) => Some(locks.lock(&ctx.base_id).await),
        None => None,
    };
    let vendor_records = g.rows.vendor_records as usize;
    let outcome = plan_and_deliver(&ctx, g.rows).await;
    match outcome {
        Ok(o) => {
            for f in &o.files {
                info!(
                    external_id = %f.external_id,
                    file = f.file_id.as_deref().unwrap_or("-"),
                    action = ?f.action.to_string(),
                    records = f.records,
                    "usage file"
                );
            }
            Ok(o)
        }
        Err(GroupError::Interrupted { step, external_id }) => {
            Err(RunError::Interrupted { step, external_id })
        }
        Err(GroupError::Failed { kind, message }) => {
            warn!(external_id = %ctx.base_id, %message, "usage files of the group not reported");
            let mut r = ctx.report(ctx.base_id.clone(), vendor_records);
            r.fail(kind, message);
            Ok(GroupOutcome {
                files: vec![r],
                records: RecordCounts {
                    not_reported: vendor_records,
                    ..RecordCounts::default()
                },
                conflicts: Vec::new(),
            })
        }
    }
}

/// What a listed file is to the layout.
pub(super) fn group_file(slot: FileSlot, f: &UsageFile) -> GroupFile {
    GroupFile {
        slot,
        id: f.id.clone(),
        status: f.status.clone(),
        note: FileNote::parse(f.note.as_deref()),
        uploaded_at: f.last_upload(),
        rows: f.stats.as_ref().map(|s| s.uploaded),
    }
}

/// The report of a listed file, as it is (the caller says what becomes of it).
fn listed_report(
    ctx: &GroupCtx,
    slot: FileSlot,
    f: &UsageFile,
    files: &[GroupFile],
    rows: usize,
) -> FileReport {
    let mut r = ctx.report(f.external_id.clone().unwrap_or_default(), rows);
    r.slot = described(slot, files);
    r.file_id = Some(f.id.clone());
    r.status = Some(f.status.to_string());
    r
}

/// Rows a file holds, as its note or Connect's count says.
fn rows_of(f: &UsageFile) -> usize {
    f.stats
        .as_ref()
        .map(|s| s.uploaded as usize)
        .or_else(|| FileNote::parse(f.note.as_deref()).digest.map(|(_, n)| n))
        .unwrap_or(0)
}

/// The records this run gives files, and what the rest came to.
struct ToSend {
    chunks: Vec<Chunk>,
    /// The group's chunks these are, when the files were cut from these very records.
    aligned: Option<Vec<usize>>,
    covers: Option<String>,
    /// Vendor records held by submitted files as they are now.
    reported: usize,
    /// Vendor records held by rejected files (or kept ones) that this run leaves.
    held: usize,
    conflicts: usize,
    conflict_samples: Vec<Conflict>,
    /// Rows reported before that the vendor's data no longer has.
    withdrawn: usize,
}

async fn plan_and_deliver(ctx: &GroupCtx, rows: Chunked) -> Result<GroupOutcome, GroupError> {
    let options = &ctx.run.options;
    let listed = list_files(ctx, &ctx.base_id, false).await?;
    // Digests tell what files hold and go into notes; a dry run of a group without files
    // needs neither.
    let rows = if options.dry_run && listed.is_empty() {
        rows
    } else {
        tokio::task::spawn_blocking(move || rows.digested())
            .await
            .map_err(|e| GroupError::failed(format!("the digesting thread failed: {e}")))??
    };
    let files: Vec<GroupFile> = listed.iter().map(|(s, f)| group_file(*s, f)).collect();
    let scope = match &options.rerun {
        Some(id) => {
            if !files.iter().any(|f| f.id == *id) {
                return Err(GroupError::failed(format!(
                    "usage file {id} is not one of the files of {} (or was deleted)",
                    ctx.base_id
                )));
            }
            Scope::Rerun {
                file_id: id.clone(),
            }
        }
        None => Scope::Month,
    };
    if let Some(f) = files
        .iter()
        .find(|f| layout::role(f, &scope) == Role::Stuck)
    {
        return Err(GroupError::failed(format!(
            "usage file {} is {}: a person must look at it",
            f.id, f.status
        )));
    }
    // A month keeps the way it was first reported: its rows' ids depend on it.
    if let Some(f) = files.iter().find(|f| {
        (f.note.digest.is_some() || f.note.uploading.is_some())
            && f.note.aggregation != options.aggregation
    }) {
        return Err(GroupError::failed(format!(
            "usage file {} of this month was reported with USAGE_AGGREGATION={}, and this run sums with {}: a month is reported one way; set USAGE_AGGREGATION={} to report {} (its rows' record ids depend on it)",
            f.id, f.note.aggregation, options.aggregation, f.note.aggregation, options.period
        )));
    }
    if layout::read_later(&files, ctx.run.read_at) {
        return Ok(deferred(ctx, &listed, &files, &scope, &rows));
    }
    let chunk_digests: Vec<(String, usize)> = rows
        .chunks
        .iter()
        .map(|c| (c.digest.clone(), c.count))
        .collect();
    let coverage = layout::coverage(
        &files,
        &scope,
        &GroupRecords {
            digest: &rows.digest,
            count: rows.count,
            chunks: &chunk_digests,
        },
    );
    let mut outcome = GroupOutcome::default();
    let role_of = |i: usize| layout::role(&files[i], &scope);
    // Reports for the files this run leaves as they are.
    let leave = |outcome: &mut GroupOutcome, i: usize| {
        let (slot, f) = &listed[i];
        let mut r = listed_report(ctx, *slot, f, &files, rows_of(f));
        match role_of(i) {
            Role::Sealed => r.action = FileAction::AlreadyReported,
            Role::Held => {
                r.action = FileAction::Rejected;
                r.message = Some(rejected_message(f));
            }
            _ => return,
        }
        outcome.files.push(r);
    };
    let send = match coverage {
        Coverage::All => {
            for i in 0..files.len() {
                leave(&mut outcome, i);
            }
            outcome.records.already_reported = rows.vendor_records as usize;
            return Ok(outcome);
        }
        Coverage::Nothing => ToSend {
            chunks: rows.chunks.clone(),
            aligned: None,
            covers: Some(rows.digest.clone()),
            reported: 0,
            held: 0,
            conflicts: 0,
            conflict_samples: Vec::new(),
            withdrawn: 0,
        },
        Coverage::Chunks(held) => {
            let mut reported = 0;
            let mut kept = 0;
            for (k, c) in rows.chunks.iter().enumerate() {
                if !held.contains(&k) {
                    continue;
                }
                let sealed = files.iter().enumerate().any(|(i, f)| {
                    f.slot == FileSlot::new(0, k as u32 + 1) && role_of(i) == Role::Sealed
                });
                if sealed {
                    reported += c.vendor_records as usize;
                } else {
                    kept += c.vendor_records as usize;
                }
            }
            let rest: Vec<usize> = (0..rows.chunks.len())
                .filter(|k| !held.contains(k))
                .collect();
            ToSend {
                chunks: rest.iter().map(|&k| rows.chunks[k].clone()).collect(),
                aligned: Some(rest),
                covers: Some(rows.digest.clone()),
                reported,
                held: kept,
                conflicts: 0,
                conflict_samples: Vec::new(),
                withdrawn: 0,
            }
        }
        Coverage::Read(indices) => {
            let fixed: Vec<(&UsageFile, bool)> = indices
                .iter()
                .map(|&i| (&listed[i].1, role_of(i) == Role::Sealed))
                .collect();
            let Compared {
                rest,
                reported,
                held,
                conflicts,
                samples,
                withdrawn,
            } = compare::compare(ctx, &rows, &fixed).await?;
            let clean = conflicts == 0 && withdrawn == 0 && held == 0;
            ToSend {
                chunks: rest.chunks,
                aligned: None,
                covers: clean.then(|| rows.digest.clone()),
                reported,
                held,
                conflicts,
                conflict_samples: samples,
                withdrawn,
            }
        }
    };
    for i in 0..files.len() {
        leave(&mut outcome, i);
    }
    outcome.records.already_reported += send.reported;
    outcome.records.not_reported += send.held;
    outcome.records.conflicts += send.conflicts;
    outcome.conflicts = send.conflict_samples;
    if send.withdrawn > 0 {
        warn!(group = %ctx.base_id, rows = send.withdrawn, "rows reported before are no longer in the vendor's data (left as reported)");
    }
    let assignment = match &send.aligned {
        Some(rest) => layout::assign_aligned(&files, &scope, rest, rows.chunks.len()),
        None => layout::assign(&files, &scope, send.chunks.len()),
    };
    // Records no file takes in this run (a rerun fills its one file): the monthly run's.
    let left_over_records: usize = send
        .chunks
        .iter()
        .skip(assignment.jobs.len())
        .map(|c| c.vendor_records as usize)
        .sum();
    outcome.records.not_reported += left_over_records;
    if let Scope::Rerun { file_id } = &scope
        && assignment.jobs.is_empty()
        && let Some((slot, f)) = listed.iter().find(|(_, f)| f.id == *file_id)
    {
        let mut r = listed_report(ctx, *slot, f, &files, 0);
        r.message = Some(format!(
            "the vendor's usage has no records for {} any more (every record of the group is in its other files): it is left for a person (delete it in Connect if nothing is to be reported)",
            f.id
        ));
        outcome.files.push(r);
        return Ok(outcome);
    }
    let mut slots: Vec<Slot> = assignment
        .jobs
        .iter()
        .filter_map(|job| {
            let chunk = send.chunks.get(job.chunk)?.clone();
            let file = job.file.map(|i| listed[i].1.clone());
            Some(Slot {
                slot: job.slot,
                external_id: identity::slot_external_id(
                    &ctx.info.contract,
                    &ctx.info.product,
                    options.period,
                    job.slot,
                ),
                parts: job.parts,
                chunk,
                covers: send.covers.clone(),
                file,
            })
        })
        .collect();
    let left_over = assignment.left_over;
    let mut left: Vec<(FileSlot, UsageFile)> = assignment
        .delete
        .iter()
        .map(|&i| listed[i].clone())
        .collect();
    // Several files at stake: the notes of those that will change say so before any submit.
    if !options.dry_run && (slots.len() > 1 || !left.is_empty()) {
        for slot in &mut slots {
            deliver::claim(ctx, slot).await?;
        }
        for (_, f) in &mut left {
            deliver::release(ctx, f).await;
        }
    }
    let deletes = left
        .into_iter()
        .map(|(slot, f)| deliver::delete_left_over(ctx, f, described(slot, &files)));
    // An interruption (a crash, in tests) stops the other files at once too.
    let drives = try_join_all(slots.iter().map(|s| deliver::drive(ctx, s)));
    let deletes = async { Ok(join_all(deletes).await) };
    let (driven, deleted) = futures_util::try_join!(drives, deletes)?;
    for (slot, mut report) in slots.iter().zip(driven) {
        let vendor = slot.chunk.vendor_records as usize;
        match report.action {
            FileAction::Created | FileAction::Resumed => outcome.records.sent += vendor,
            FileAction::AlreadyReported => outcome.records.already_reported += vendor,
            _ => outcome.records.not_reported += vendor,
        }
        if left_over > 0 {
            let note = format!(
                "; {left_over_records} more records that no file of the group holds are left for the monthly run, which reports them in a supplement"
            );
            report.message = Some(format!("{}{note}", report.message.unwrap_or_default()));
        }
        outcome.files.push(report);
    }
    outcome.files.extend(deleted);
    Ok(outcome)
}

/// The group's files hold records another task read after this run began: they stand, and
/// every file is left to that task.
fn deferred(
    ctx: &GroupCtx,
    listed: &[(FileSlot, UsageFile)],
    files: &[GroupFile],
    scope: &Scope,
    rows: &Chunked,
) -> GroupOutcome {
    let mut outcome = GroupOutcome::default();
    for (i, (slot, f)) in listed.iter().enumerate() {
        let mut r = listed_report(ctx, *slot, f, files, rows_of(f));
        match layout::role(&files[i], scope) {
            Role::Held => {
                r.action = FileAction::Rejected;
                r.message = Some(rejected_message(f));
            }
            Role::Sealed => {
                r.action = FileAction::AlreadyReported;
                r.message = Some(newer_reported_message(f));
            }
            _ => {
                r.action = FileAction::Waiting;
                r.message = Some(newer_waiting_message(f));
            }
        }
        outcome.files.push(r);
    }
    // This run cannot tell which of its records the other task's files hold: none of them
    // counts as reported by it (the run is partial; a later run sees the group as it is).
    outcome.records.not_reported = rows.vendor_records as usize;
    outcome
}

/// "part k of n" / "supplement n" for a file of the group, counting the parts listed.
fn described(slot: FileSlot, files: &[GroupFile]) -> Option<String> {
    let parts = files
        .iter()
        .filter(|f| f.slot.supplement == slot.supplement)
        .count() as u32;
    Some(slot.describe(parts.max(slot.part))).filter(|s| !s.is_empty())
}
