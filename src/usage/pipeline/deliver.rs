//! Phase 4: take one usage file of a group from wherever it is to `pending`. Each round reads
//! the file and does the one thing [`crate::usage::decide`] says its state calls for (create,
//! upload, note, submit, wait); a failure ends the round, and the next one starts again from
//! Connect's state. A create that may still be under way (timed out, 502, 504) is sent again
//! only after the file had time to appear; nothing else is ever sent blindly twice.
//!
//! The workbook is written only when an upload is due, into the work directory, by at most as
//! many writers at once as the run allows (the cores). Files left over by a new layout are
//! deleted here too.

use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::OnceCell;
use tracing::{info, warn};

use super::Step;
use super::files::{
    GroupCtx, GroupError, INVALID_UPLOAD, list_files, newer_reported_message,
    newer_waiting_message, rejected_message,
};
use super::store::{Chunk, RowsError};
use crate::usage::decide::{self, Done, NextStep, Reported, Seen, Wanted};
use crate::usage::identity::{self, FileNote, FileSlot};
use crate::usage::summary::{FileAction, FileFailure, FileReport};
use crate::usage::workbook::{WorkbookError, WorkbookWriter};
use connect_client::ConnectError;
use connect_client::models::{IdRef, NewUsageFile, UsageFile, UsageFileStatus, UsageFileUpdate};

/// How many times a file is read again and acted on before giving up.
const MAX_ROUNDS: usize = 12;
/// Definite refusals (4xx other than 429) of one step tolerated before giving up: one could
/// be a race with another actor, two are not.
const MAX_REFUSALS: usize = 2;

/// A file this run fills.
#[derive(Debug)]
pub(super) struct Slot {
    pub slot: FileSlot,
    pub external_id: String,
    /// Parts of its batch.
    pub parts: u32,
    pub chunk: Chunk,
    /// What the group's files hold once this batch is submitted, if exactly the vendor's
    /// records (see [`FileNote::covers`]).
    pub covers: Option<String>,
    /// The file, as listed (none yet: created).
    pub file: Option<UsageFile>,
}

impl Slot {
    fn described(&self) -> Option<String> {
        Some(self.slot.describe(self.parts)).filter(|s| !s.is_empty())
    }
}

/// Why a workbook could not be made.
#[derive(Debug, thiserror::Error)]
enum BuildError {
    #[error(transparent)]
    Rows(#[from] RowsError),
    #[error(transparent)]
    Workbook(#[from] WorkbookError),
}

/// Writes the slot's workbook to `path`.
async fn build(ctx: &GroupCtx, slot: &Slot, path: PathBuf) -> Result<PathBuf, String> {
    let _writer = ctx
        .run
        .builds
        .acquire()
        .await
        .map_err(|e| format!("the workbook writers are gone: {e}"))?;
    let rows = slot.chunk.rows.clone();
    let created = ctx.run.options.period.end_exclusive();
    let count = slot.chunk.count;
    let started = Instant::now();
    let written = tokio::task::spawn_blocking(move || -> Result<PathBuf, BuildError> {
        WorkbookWriter::write_file(&path, created, count, |w| {
            rows.each(|r| w.push(r).map_err(BuildError::from))
        })?;
        Ok(path)
    })
    .await
    .map_err(|e| format!("the workbook writer failed: {e}"))?
    .map_err(|e| e.to_string())?;
    info!(external_id = %slot.external_id, rows = slot.chunk.count, ms = started.elapsed().as_millis() as u64, "workbook written");
    Ok(written)
}

/// Reports what a dry run would do with the slot, after writing its workbook to `--out`.
async fn dry_run(ctx: &GroupCtx, slot: &Slot, mut report: FileReport) -> FileReport {
    report.action = FileAction::DryRun;
    let options = &ctx.run.options;
    if let Some(dir) = &options.out_dir {
        let name = identity::workbook_name(
            &ctx.info.contract,
            &ctx.info.product,
            options.period,
            slot.slot,
        );
        match build(ctx, slot, dir.join(name)).await {
            Ok(path) => report.workbook = Some(path.display().to_string()),
            Err(e) => {
                report.action = FileAction::Failed;
                report.message = Some(e);
                return report;
            }
        }
    }
    report.message = Some(match &slot.file {
        None => "would create the usage file".into(),
        Some(f) => {
            report.file_id = Some(f.id.clone());
            report.status = Some(f.status.to_string());
            let note = FileNote::parse(f.note.as_deref());
            let next = decide::next(&seen(f, &note), &wanted(ctx, slot), &Done::default());
            match next {
                NextStep::Upload | NextStep::NoteLanded => {
                    format!("would upload into it ({})", f.status)
                }
                NextStep::Submit => "holds these records: would submit it".into(),
                NextStep::Wait => "Connect is processing it: would wait and submit it".into(),
                NextStep::Reported(_) => "already reported: would leave it".into(),
                NextStep::Rejected => "rejected: would leave it to the rejection handler".into(),
                NextStep::Invalid => "Connect found these records invalid".into(),
                NextStep::Foreign => "holds rows uploaded by someone else: would leave it".into(),
                NextStep::Moved => {
                    "another task reported newer records into it: would leave it".into()
                }
                NextStep::Stuck => format!("is {}: a person must look at it", f.status),
            }
        }
    });
    report
}

fn seen<'a>(f: &'a UsageFile, note: &'a FileNote) -> Seen<'a> {
    Seen {
        status: &f.status,
        note,
        uploaded_at: f.last_upload(),
        rows: f.stats.as_ref().map(|s| s.uploaded),
        submitted_since_upload: submitted_after_upload(f),
    }
}

/// The note that names the slot's upload before it is sent, over a file whose note was
/// `previous` and whose last upload was at `after` (see [`FileNote::uploading`]).
fn upload_note(
    ctx: &GroupCtx,
    slot: &Slot,
    previous: Option<&str>,
    after: Option<i64>,
) -> FileNote {
    FileNote::parse(previous)
        .uploading(
            &slot.chunk.digest,
            slot.chunk.count,
            after,
            ctx.run.read_at,
            slot.covers.as_deref(),
        )
        .aggregated(ctx.run.options.aggregation)
}

/// Writes a file's note.
async fn put_note(ctx: &GroupCtx, id: &str, note: &str) -> Result<(), ConnectError> {
    let update = UsageFileUpdate {
        note: Some(note.to_owned()),
        ..UsageFileUpdate::default()
    };
    ctx.run
        .client
        .update_usage_file(id, &update)
        .await
        .map(|_| ())
}

fn wanted<'a>(ctx: &GroupCtx, slot: &'a Slot) -> Wanted<'a> {
    Wanted {
        digest: &slot.chunk.digest,
        records: slot.chunk.count,
        read_at: ctx.run.read_at,
        rerun_rejected: ctx.run.options.rerun.is_some(),
    }
}

/// Whether the file was submitted after its last upload (Connect's clock, to the second).
fn submitted_after_upload(f: &UsageFile) -> bool {
    let Some(events) = f.events.as_ref() else {
        return false;
    };
    match (&events.submitted, &events.uploaded) {
        (Some(submitted), Some(uploaded)) => submitted.at >= uploaded.at,
        _ => false,
    }
}

fn invalid_message(f: &UsageFile) -> String {
    format!(
        "{INVALID_UPLOAD}: {}",
        f.error_detail.as_deref().unwrap_or("no detail given")
    )
}

fn foreign_message(f: &UsageFile, records: usize) -> String {
    format!(
        "rows were uploaded into {} ({}) by someone else after connect-usage noted its own: these {records} records are not reported; a person decides (clear the file's note to have connect-usage report the vendor's records into it)",
        f.id, f.status
    )
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// One file's report, driven.
struct Driver<'a> {
    ctx: &'a GroupCtx,
    slot: &'a Slot,
    done: Done,
    refusals: usize,
    last_error: Option<String>,
    workbook: OnceCell<PathBuf>,
}

/// The end of an upload.
enum Uploaded {
    /// Not sent, or its outcome is unknown: read the file again.
    NotSent,
    /// Processed (ready or invalid), the digest recorded in the note.
    Processed,
    /// Connect still processes it after the poll timeout.
    StillProcessing,
}

/// Takes the slot's file to `pending`.
pub(super) async fn drive(ctx: &GroupCtx, slot: &Slot) -> Result<FileReport, GroupError> {
    let _turn = ctx
        .run
        .files
        .acquire()
        .await
        .map_err(|e| GroupError::failed(format!("the run's file workers are gone: {e}")))?;
    let mut report = ctx.report(slot.external_id.clone(), slot.chunk.count);
    report.slot = slot.described();
    if ctx.run.options.dry_run {
        return Ok(dry_run(ctx, slot, report).await);
    }
    let mut d = Driver {
        ctx,
        slot,
        done: Done::default(),
        refusals: 0,
        last_error: None,
        workbook: OnceCell::new(),
    };
    match d.run(&mut report).await {
        Ok(()) => {}
        Err(GroupError::Failed { kind, message }) => {
            warn!(external_id = %slot.external_id, %message, "usage file not reported");
            report.fail(kind, message);
        }
        Err(e @ GroupError::Interrupted { .. }) => return Err(e),
    }
    if let Some(path) = d.workbook.get() {
        let _ = tokio::fs::remove_file(path).await;
    }
    Ok(report)
}

impl Driver<'_> {
    fn interrupt(&self, step: Step) -> Result<(), GroupError> {
        if self.ctx.run.interrupt(step) {
            return Err(GroupError::Interrupted {
                step,
                external_id: self.slot.external_id.clone(),
            });
        }
        Ok(())
    }

    /// Counts a failed request; two definite refusals of this file end its report.
    fn refused(&mut self, e: &ConnectError) -> Result<(), GroupError> {
        self.last_error = Some(e.to_string());
        let definite = !e.outcome_unknown()
            && e.status()
                .is_some_and(|s| (400..500).contains(&s) && s != 429);
        if definite {
            self.refusals += 1;
            if self.refusals >= MAX_REFUSALS {
                return Err(GroupError::failed(e.to_string()));
            }
        }
        Ok(())
    }

    /// The file as it is now (the listed one on the first round).
    async fn find(&self, first: &mut Option<UsageFile>) -> Result<Option<UsageFile>, GroupError> {
        if let Some(f) = first.take() {
            return Ok(Some(f));
        }
        let mut found = list_files(self.ctx, &self.slot.external_id, true).await?;
        Ok(found.pop().map(|(_, f)| f))
    }

    async fn run(&mut self, report: &mut FileReport) -> Result<(), GroupError> {
        let options = &self.ctx.run.options;
        let mut first = self.slot.file.clone();
        let mut in_flight_create: Option<Instant> = None;
        let mut rounds = 0;
        while rounds < MAX_ROUNDS {
            rounds += 1;
            let Some(file) = self.find(&mut first).await? else {
                if let Some(since) = in_flight_create {
                    // The create may still land: look again for a while before sending
                    // another (a late one would be a second draft, deleted when listed).
                    if since.elapsed() < options.poll.timeout {
                        rounds -= 1;
                        tokio::time::sleep(options.poll.interval).await;
                        continue;
                    }
                    in_flight_create = None;
                }
                self.done.sent = true;
                match self
                    .ctx
                    .run
                    .client
                    .create_usage_file(&self.new_file())
                    .await
                {
                    Ok(f) => {
                        info!(external_id = %self.slot.external_id, file = %f.id, "usage file created");
                        self.done.created = true;
                        self.interrupt(Step::Create)?;
                    }
                    Err(e) => {
                        warn!(external_id = %self.slot.external_id, error = %e, "creating the usage file failed; reading the state again");
                        if e.may_still_apply() {
                            in_flight_create = Some(Instant::now());
                        }
                        self.refused(&e)?;
                    }
                }
                continue;
            };
            report.file_id = Some(file.id.clone());
            report.status = Some(file.status.to_string());
            let mut note = FileNote::parse(file.note.as_deref());
            let mut next = decide::next(
                &seen(&file, &note),
                &wanted(self.ctx, self.slot),
                &self.done,
            );
            if next == NextStep::NoteLanded {
                // An upload of these very rows whose processing outlived an earlier poll (or
                // whose note was not written after it): noted as processed, not sent again.
                let done = note.processed(
                    &self.slot.chunk.digest,
                    self.slot.chunk.count,
                    file.last_upload(),
                );
                match self.set_note(&file.id, &done).await {
                    Ok(()) => {
                        info!(file = %file.id, status = %file.status, "an earlier upload of these records was processed: noted");
                        note = done;
                        self.done.acted = true;
                        next = decide::next(
                            &seen(&file, &note),
                            &wanted(self.ctx, self.slot),
                            &self.done,
                        );
                    }
                    Err(e) => {
                        self.refused(&e)?;
                        continue;
                    }
                }
            }
            match next {
                NextStep::NoteLanded => continue,
                NextStep::Reported(why) => {
                    self.reported(why, &file, &note, report);
                    return Ok(());
                }
                NextStep::Rejected => {
                    report.action = FileAction::Rejected;
                    report.message = Some(rejected_message(&file));
                    return Ok(());
                }
                NextStep::Invalid => {
                    return Err(GroupError::Failed {
                        kind: FileFailure::InvalidUpload,
                        message: invalid_message(&file),
                    });
                }
                NextStep::Foreign => {
                    report.action = FileAction::ChangedAfterReport;
                    report.message = Some(foreign_message(&file, self.slot.chunk.count));
                    return Ok(());
                }
                NextStep::Moved => {
                    report.action = FileAction::Waiting;
                    report.message = Some(newer_waiting_message(&file));
                    return Ok(());
                }
                NextStep::Upload => {
                    self.done.acted = true;
                    self.done.sent = true;
                    match self.upload(&file).await? {
                        Uploaded::NotSent => {}
                        Uploaded::Processed => {
                            self.done.uploaded = true;
                            report.uploaded = true;
                        }
                        Uploaded::StillProcessing => {
                            report.uploaded = true;
                            self.waiting(report);
                            return Ok(());
                        }
                    }
                }
                NextStep::Submit => {
                    self.done.sent = true;
                    match self.ctx.run.client.submit_usage_file(&file.id).await {
                        Ok(f) => {
                            info!(file = %file.id, "usage file submitted");
                            report.status = Some(f.status.to_string());
                            self.done.acted = true;
                            self.done.submitted = true;
                            self.interrupt(Step::Submit)?;
                        }
                        Err(e) => self.refused(&e)?,
                    }
                }
                NextStep::Wait => {
                    if self.wait(&file.id).await.is_none() {
                        self.waiting(report);
                        return Ok(());
                    }
                }
                NextStep::Stuck => {
                    return Err(GroupError::failed(format!(
                        "usage file {} is {}: a person must look at it",
                        file.id, file.status
                    )));
                }
            }
        }
        Err(GroupError::failed(format!(
            "no progress after {MAX_ROUNDS} rounds{}",
            self.last_error
                .as_ref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default()
        )))
    }

    /// How a submitted file is reported.
    fn reported(&self, why: Reported, file: &UsageFile, note: &FileNote, report: &mut FileReport) {
        let records = self.slot.chunk.count;
        match why {
            Reported::ThisRun => {
                report.action = if self.done.created {
                    FileAction::Created
                } else {
                    FileAction::Resumed
                };
            }
            Reported::Ours => report.action = FileAction::AlreadyReported,
            Reported::Moved => {
                report.action = FileAction::AlreadyReported;
                report.message = Some(newer_reported_message(file));
            }
            Reported::Foreign => {
                report.action = FileAction::ChangedAfterReport;
                report.message = Some(foreign_message(file, records));
            }
            Reported::NoDigest => {
                report.action = FileAction::AlreadyReported;
                report.message = Some(
                    "reported before without a digest in its note: cannot tell whether it holds this data".into(),
                );
            }
            Reported::Other => {
                report.action = FileAction::Waiting;
                report.message = Some(format!(
                    "submitted by another task while this run worked on it ({}): these {records} records are not known to be reported; the next run compares and sends what is missing",
                    note
                ));
            }
        }
    }

    fn waiting(&self, report: &mut FileReport) {
        report.action = FileAction::Waiting;
        report.status = Some(UsageFileStatus::Processing.to_string());
        report.message = Some(format!(
            "Connect still processes it after {} s: a later run submits it",
            self.ctx.run.options.poll.timeout.as_secs()
        ));
    }

    /// The slot's new file. Its note names the upload to come, so that a processed file is
    /// known to hold it even if this run does not live to note it.
    fn new_file(&self) -> NewUsageFile {
        let ctx = self.ctx;
        let period = ctx.run.options.period;
        let which = self.slot.described();
        let name = match &which {
            Some(w) => format!("Usage {}, {w}", period.long_name()),
            None => format!("Usage {}", period.long_name()),
        };
        NewUsageFile {
            name: truncate(&name, 100),
            description: Some(truncate(
                &format!(
                    "QT usage of {} under contract {} for {}{} (connect-usage)",
                    ctx.product_name,
                    ctx.info.contract,
                    period.long_name(),
                    which.map(|w| format!(", {w}")).unwrap_or_default()
                ),
                200,
            )),
            note: Some(upload_note(ctx, self.slot, None, None).to_string()),
            period: connect_client::models::UsagePeriod {
                from: period.first_day(),
                to: period.last_day(),
            },
            currency: ctx.currency.clone(),
            product: IdRef::new(&ctx.info.product),
            contract: IdRef::new(&ctx.info.contract),
            external_id: Some(self.slot.external_id.clone()),
        }
    }

    async fn set_note(&self, id: &str, note: &FileNote) -> Result<(), ConnectError> {
        put_note(self.ctx, id, &note.to_string()).await
    }

    /// The workbook's bytes, written on first need.
    async fn workbook(&self) -> Result<Bytes, GroupError> {
        let path = self
            .workbook
            .get_or_try_init(|| {
                let path = self.ctx.run.work.new_file("workbook", "xlsx");
                build(self.ctx, self.slot, path)
            })
            .await
            .map_err(GroupError::failed)?;
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| GroupError::failed(format!("cannot read the workbook back: {e}")))?;
        Ok(Bytes::from(bytes))
    }

    /// Names the upload in the file's note, uploads the workbook, waits for processing and
    /// notes the digest as processed. The note never claims rows the file may not hold: until
    /// the upload is known processed it names the upload and the file's previous upload time,
    /// which is how a later run knows the upload landed ([`FileNote::landed`]).
    async fn upload(&mut self, file: &UsageFile) -> Result<Uploaded, GroupError> {
        let chunk = &self.slot.chunk;
        let read_at = self.ctx.run.read_at;
        let sending = upload_note(
            self.ctx,
            self.slot,
            file.note.as_deref(),
            file.last_upload(),
        );
        if file.note.as_deref() != Some(sending.to_string().as_str())
            && let Err(e) = self.set_note(&file.id, &sending).await
        {
            self.refused(&e)?;
            return Ok(Uploaded::NotSent);
        }
        let bytes = self.workbook().await?;
        let name = identity::workbook_name(
            &self.ctx.info.contract,
            &self.ctx.info.product,
            self.ctx.run.options.period,
            self.slot.slot,
        );
        if let Err(e) = self
            .ctx
            .run
            .client
            .upload_usage_file(&file.id, &name, bytes)
            .await
        {
            self.refused(&e)?;
            return Ok(Uploaded::NotSent);
        }
        info!(file = %file.id, records = chunk.count, "workbook uploaded");
        self.interrupt(Step::Upload)?;
        let Some(f) = self.wait(&file.id).await else {
            return Ok(Uploaded::StillProcessing);
        };
        if matches!(f.status, UsageFileStatus::Ready | UsageFileStatus::Invalid) {
            // Read again from the processed file: the rerun count must carry over. The rows
            // are this run's, read when it began.
            let done = FileNote {
                read: Some(read_at),
                ..FileNote::parse(f.note.as_deref()).processed(
                    &chunk.digest,
                    chunk.count,
                    f.last_upload(),
                )
            };
            if let Err(e) = self.set_note(&f.id, &done).await {
                // The next round sees no digest and uploads again: wasteful, never wrong.
                self.last_error = Some(e.to_string());
            }
            self.interrupt(Step::Processed)?;
            return Ok(Uploaded::Processed);
        }
        Ok(Uploaded::NotSent)
    }

    /// Polls until the file leaves uploading/processing, or the poll times out (`None`).
    async fn wait(&self, id: &str) -> Option<UsageFile> {
        wait_processed(self.ctx, id).await
    }
}

async fn wait_processed(ctx: &GroupCtx, id: &str) -> Option<UsageFile> {
    let poll = ctx.run.options.poll;
    let deadline = Instant::now() + poll.timeout;
    loop {
        match ctx.run.client.usage_file(id).await {
            Ok(f)
                if !matches!(
                    f.status,
                    UsageFileStatus::Uploading
                        | UsageFileStatus::Uploaded
                        | UsageFileStatus::Processing
                ) =>
            {
                return Some(f);
            }
            Ok(_) => {}
            Err(e) => warn!(file = %id, error = %e, "cannot read the usage file while waiting"),
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(poll.interval).await;
    }
}

/// Before any file of a group is submitted, every file that will get other rows has its note
/// name the upload to come: a note never vouches for rows the group's new layout gives to
/// another part, so a `ready` event delivered after a crash does not submit them. (Files
/// holding someone else's rows, or another task's newer ones, are left as they are.)
pub(super) async fn claim(ctx: &GroupCtx, slot: &mut Slot) -> Result<(), GroupError> {
    let Some(file) = slot.file.as_ref() else {
        return Ok(());
    };
    let note = FileNote::parse(file.note.as_deref());
    if decide::next(&seen(file, &note), &wanted(ctx, slot), &Done::default()) != NextStep::Upload {
        return Ok(());
    }
    let claimed = upload_note(ctx, slot, file.note.as_deref(), file.last_upload()).to_string();
    if file.note.as_deref() == Some(claimed.as_str()) {
        return Ok(());
    }
    match put_note(ctx, &file.id, &claimed).await {
        Ok(()) => {
            if let Some(f) = slot.file.as_mut() {
                f.note = Some(claimed);
            }
        }
        // Not fatal: the file's report reads it again and tries once more before uploading.
        Err(e) => warn!(file = %file.id, error = %e, "cannot name the coming upload in the note"),
    }
    Ok(())
}

/// Whether a file the layout leaves over is the extension's to delete: not when someone else
/// uploaded rows into it, nor when another task put newer records in it.
fn ours_to_delete(ctx: &GroupCtx, file: &UsageFile) -> Result<(), (FileAction, String)> {
    let note = FileNote::parse(file.note.as_deref());
    if decide::vouched(&seen(file, &note)) == decide::Vouch::Foreign {
        let rows = note.digest.as_ref().map_or(0, |(_, n)| *n);
        return Err((
            FileAction::ChangedAfterReport,
            format!(
                "{}; the group's records no longer need it, but its rows are a person's: left to them",
                foreign_message(file, rows)
            ),
        ));
    }
    if note
        .read_of_content(file.last_upload())
        .is_some_and(|read| read > ctx.run.read_at)
    {
        return Err((FileAction::Waiting, newer_waiting_message(file)));
    }
    Ok(())
}

/// Before anything of the group is submitted, a file to delete stops vouching for its rows
/// (its note is cleared), so that even if the delete fails or the run stops first, a `ready`
/// event does not submit rows that other parts now hold.
pub(super) async fn release(ctx: &GroupCtx, file: &mut UsageFile) {
    if ours_to_delete(ctx, file).is_err() {
        return;
    }
    let note = FileNote::parse(file.note.as_deref());
    if note.digest.is_none() && note.uploading.is_none() {
        return;
    }
    let cleared = note.cleared().to_string();
    match put_note(ctx, &file.id, &cleared).await {
        Ok(_) => file.note = Some(cleared),
        Err(e) => warn!(file = %file.id, error = %e, "cannot clear the note of a file left over"),
    }
}

/// Deletes a file the group's new layout leaves without records (its rows are now in other
/// parts): submitting it would report them twice.
pub(super) async fn delete_left_over(
    ctx: &GroupCtx,
    file: UsageFile,
    described: Option<String>,
) -> FileReport {
    let mut report = ctx.report(
        file.external_id.clone().unwrap_or_default(),
        FileNote::parse(file.note.as_deref())
            .digest
            .map_or(0, |(_, n)| n),
    );
    report.slot = described;
    report.file_id = Some(file.id.clone());
    report.status = Some(file.status.to_string());
    if let Err((action, message)) = ours_to_delete(ctx, &file) {
        report.action = action;
        report.message = Some(message);
        return report;
    }
    if ctx.run.options.dry_run {
        report.action = FileAction::DryRun;
        report.message =
            Some("its records now belong to other files of the group: would delete it".into());
        return report;
    }
    let mut current = file;
    for _ in 0..MAX_ROUNDS {
        match current.status {
            UsageFileStatus::Draft | UsageFileStatus::Ready | UsageFileStatus::Invalid => {
                match ctx.run.client.delete_usage_file(&current.id).await {
                    Ok(_) => {
                        info!(file = %current.id, "usage file left over by the group's layout deleted");
                        report.action = FileAction::Deleted;
                        report.status = Some(UsageFileStatus::Deleted.to_string());
                        report.message = Some(
                            "its records now belong to other files of the group: deleted".into(),
                        );
                        return report;
                    }
                    Err(e) => {
                        warn!(file = %current.id, error = %e, "cannot delete a usage file left over; reading it again");
                    }
                }
            }
            UsageFileStatus::Uploading
            | UsageFileStatus::Uploaded
            | UsageFileStatus::Processing => {
                if wait_processed(ctx, &current.id).await.is_none() {
                    report.action = FileAction::Waiting;
                    report.message = Some(
                        "left over by the group's layout, to delete once Connect has processed it: a later run does".into(),
                    );
                    return report;
                }
            }
            UsageFileStatus::Deleted => {
                report.action = FileAction::Deleted;
                return report;
            }
            _ => {
                // Submitted meanwhile: what it holds is reported; the next run compares.
                report.action = FileAction::Waiting;
                report.message = Some(format!(
                    "left over by the group's layout but {} meanwhile: the next run compares what it holds",
                    current.status
                ));
                return report;
            }
        }
        current = match ctx.run.client.usage_file(&current.id).await {
            Ok(f) => f,
            Err(e) => {
                report.message = Some(format!(
                    "left over by the group's layout, but it cannot be read to delete it: {e}"
                ));
                return report;
            }
        };
    }
    report.message = Some(format!(
        "left over by the group's layout, but it could not be deleted after {MAX_ROUNDS} tries: a later run tries again"
    ));
    report
}
