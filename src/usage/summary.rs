//! What a run did: usage files created, resumed, already reported, waiting or failed; records
//! sent, invalid, unplaceable or in conflict with what was reported (with samples of why); the
//! subscriptions expected to have usage that have none ([coverage](super::coverage)); API
//! calls, time and work files. Printed for people, serialised for machines, and the message of
//! the scheduled task's result.

use std::fmt;

use serde::Serialize;

use super::coverage::Coverage;
use super::record::Position;
use super::validate::ProblemKind;
use connect_client::month::Month;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunResult {
    /// Every record was placed and every group reported (or already reported).
    Complete,
    /// Some records were not sent or some groups are not reported yet; or full coverage is
    /// required and some subscription has no usage.
    Partial,
    /// Nothing could be reported.
    Failed,
}

impl fmt::Display for RunResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunResult::Complete => "complete",
            RunResult::Partial => "partial",
            RunResult::Failed => "failed",
        })
    }
}

/// What happened to one contract and product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileAction {
    /// This run created the usage file and reported it.
    Created,
    /// The file existed (from an interrupted run) and this run took it further.
    Resumed,
    /// The file was submitted before with this very data (pending, accepted or closed).
    AlreadyReported,
    /// The file was submitted before with other data: this run's records are not reported.
    ChangedAfterReport,
    /// The provider rejected the file: left to the rejection handler.
    Rejected,
    /// The file is still being processed by Connect; the `ready` event will submit it.
    Waiting,
    /// Something went wrong; the message says what.
    Failed,
    /// The product does not use the QT schema: its usage is not sent.
    SkippedNotQt,
    /// Dry run: the workbook was written, nothing was sent.
    DryRun,
    /// A file not submitted whose records now belong to other files of its group (the
    /// group's records were cut into fewer parts): deleted so they are not reported twice.
    Deleted,
}

impl fmt::Display for FileAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileAction::Created => "created",
            FileAction::Resumed => "resumed",
            FileAction::AlreadyReported => "already reported",
            FileAction::ChangedAfterReport => "changed after report",
            FileAction::Rejected => "rejected",
            FileAction::Waiting => "waiting",
            FileAction::Failed => "failed",
            FileAction::SkippedNotQt => "not QT",
            FileAction::DryRun => "written",
            FileAction::Deleted => "deleted",
        })
    }
}

/// Why a file was not reported, where a caller acts on the kind (the `invalid` handler
/// regenerates a file Connect found invalid; other failures are told, not acted on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFailure {
    /// Connect processed the upload and found it invalid.
    InvalidUpload,
    /// Anything else: Connect refused a step, a work file could not be written...
    Other,
}

/// One usage file of the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileReport {
    pub contract: String,
    pub product: String,
    pub external_id: String,
    /// Which of the group's files: "part 2 of 3", "supplement 1"; none for a month's only file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    pub action: FileAction,
    /// Rows the file holds (or would hold).
    pub records: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workbook: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Why a failed file failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FileFailure>,
    /// This run uploaded the workbook and Connect processed it (or still processes it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub uploaded: bool,
}

impl FileReport {
    /// Marks the file failed, with why (the kind a handler decides on) and what to tell.
    pub fn fail(&mut self, kind: FileFailure, message: String) {
        self.action = FileAction::Failed;
        self.message = Some(message);
        self.failure = Some(kind);
    }
}

/// A record that was not sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordProblem {
    pub position: Position,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    pub kind: ProblemKind,
    pub reason: String,
}

impl fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.position)?;
        if let Some(id) = &self.record_id {
            write!(f, " ({id})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// A record whose usage changed after it was reported: not sent again, for a person to settle
/// with the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub contract: String,
    pub product: String,
    pub record_id: String,
    /// The usage file that reported it.
    pub file_id: String,
    pub reported: UsageValues,
    pub current: UsageValues,
}

/// What a record says about usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageValues {
    pub asset_id: String,
    pub item_mpn: String,
    pub quantity: String,
    /// `YYYY-MM-DD HH:MM:SS` (UTC); `?` when unreadable.
    pub start_time: String,
    pub end_time: String,
}

impl fmt::Display for Conflict {
    /// `SKY-1 (UF-..., CRD-.../PRD-...): quantity 5 reported, now 7; end_time ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, {}/{}): ",
            self.record_id, self.file_id, self.contract, self.product
        )?;
        let (r, c) = (&self.reported, &self.current);
        let changes: Vec<String> = [
            ("quantity", &r.quantity, &c.quantity),
            ("start_time", &r.start_time, &c.start_time),
            ("end_time", &r.end_time, &c.end_time),
            ("item", &r.item_mpn, &c.item_mpn),
            ("asset", &r.asset_id, &c.asset_id),
        ]
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(name, a, b)| format!("{name} {a} reported, now {b}"))
        .collect();
        f.write_str(&changes.join("; "))
    }
}

/// File counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GroupCounts {
    pub created: usize,
    pub resumed: usize,
    pub already_reported: usize,
    pub changed_after_report: usize,
    pub rejected: usize,
    pub waiting: usize,
    pub failed: usize,
    pub skipped_not_qt: usize,
    pub dry_run: usize,
    pub deleted: usize,
}

/// Record counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecordCounts {
    /// Read from the source, good and bad.
    pub read: usize,
    /// In files this run uploaded.
    pub sent: usize,
    /// In files reported before this run.
    pub already_reported: usize,
    /// In files waiting for Connect's processing, failed, rejected, or holding rows uploaded
    /// by someone else; in a dry run, the records a real run would send.
    pub not_reported: usize,
    /// Of products that are not QT.
    pub not_qt: usize,
    pub invalid: usize,
    pub unplaceable: usize,
    /// Reported before with other usage (quantity, times, item or asset): not sent again.
    pub conflicts: usize,
}

/// How many problems of each kind the summary shows.
pub const SAMPLES: usize = 20;

/// The summary of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub period: Month,
    pub source: String,
    pub dry_run: bool,
    pub result: RunResult,
    pub groups: GroupCounts,
    pub records: RecordCounts,
    /// Up to [`SAMPLES`] invalid and [`SAMPLES`] unplaceable records, in source order.
    pub problems: Vec<RecordProblem>,
    /// Up to [`SAMPLES`] records in conflict with what was reported, by record id.
    pub conflicts: Vec<Conflict>,
    pub files: Vec<FileReport>,
    /// The subscriptions expected to have usage in the month, and those without any. `None`
    /// in a run of one contract and product (a lifecycle handler's), which cannot tell.
    pub coverage: Option<Coverage>,
    /// Requests to Connect (retries included; the usage source's are not counted).
    pub api_calls: u64,
    pub duration_ms: u64,
    /// The most disk the run's work files took at once (bytes, as measured between phases).
    pub work_bytes: u64,
    /// How long the phases took.
    pub timings: Timings,
}

/// Milliseconds each phase took. Placing overlaps reporting: groups are reported as soon as
/// their records are all there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Timings {
    /// Reading the source into the spool.
    pub read_ms: u64,
    /// From the end of reading until the last group's records were placed and stored.
    pub place_ms: u64,
    /// From the end of reading until every file was reported.
    pub files_ms: u64,
}

impl RunSummary {
    /// Subscriptions expected to have usage in the month that have none (0 when not checked).
    pub fn not_covered(&self) -> usize {
        self.coverage.as_ref().map_or(0, |c| c.not_covered)
    }

    /// One line: the scheduled task's result message.
    pub fn one_line(&self) -> String {
        let g = &self.groups;
        let r = &self.records;
        let conflicts = if r.conflicts > 0 {
            format!(", {} in conflict with what was reported", r.conflicts)
        } else {
            String::new()
        };
        let coverage = match self.not_covered() {
            0 => String::new(),
            n => format!("; {n} subscriptions without usage"),
        };
        format!(
            "{} {}: {} files created, {} resumed, {} already reported, {} waiting, {} failed; \
             {} records sent, {} invalid, {} unplaceable{conflicts}{coverage}; {} Connect API calls in {}",
            self.period,
            self.result,
            g.created,
            g.resumed,
            g.already_reported,
            g.waiting,
            g.failed,
            r.sent,
            r.invalid,
            r.unplaceable,
            self.api_calls,
            duration_text(self.duration_ms)
        )
    }
}

/// `840 ms` below a second (a small month reports in milliseconds), else `2.5 s`.
fn duration_text(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Usage report {} ({}){}: {}",
            self.period,
            self.source,
            if self.dry_run { ", dry run" } else { "" },
            self.result
        )?;
        let r = &self.records;
        writeln!(
            f,
            // Two lines each, so that they fit a terminal.
            "  records: {} read, {} sent, {} already reported, {} {},\n           {} of non-QT products, {} invalid, {} unplaceable, {} in conflict",
            r.read,
            r.sent,
            r.already_reported,
            r.not_reported,
            if self.dry_run {
                "to send"
            } else {
                "not reported yet"
            },
            r.not_qt,
            r.invalid,
            r.unplaceable,
            r.conflicts
        )?;
        let g = &self.groups;
        writeln!(
            f,
            "  files:   {} created, {} resumed, {} already reported, {} changed after report,\n           {} rejected, {} waiting, {} failed, {} deleted, {} not QT{}",
            g.created,
            g.resumed,
            g.already_reported,
            g.changed_after_report,
            g.rejected,
            g.waiting,
            g.failed,
            g.deleted,
            g.skipped_not_qt,
            if self.dry_run {
                format!(", {} written", g.dry_run)
            } else {
                String::new()
            }
        )?;
        for file in &self.files {
            write!(
                f,
                "    {:<16} {} {}{} {:>8} records  {}",
                file.action.to_string(),
                file.contract,
                file.product,
                file.slot
                    .as_deref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default(),
                file.records,
                file.file_id.as_deref().unwrap_or("-")
            )?;
            if let Some(s) = &file.status {
                write!(f, " {s}")?;
            }
            if let Some(m) = &file.message {
                write!(f, ": {m}")?;
            }
            writeln!(f)?;
        }
        if !self.problems.is_empty() {
            writeln!(f, "  records not sent (first {} of each kind):", SAMPLES)?;
            for p in &self.problems {
                writeln!(f, "    {p}")?;
            }
        }
        if !self.conflicts.is_empty() {
            writeln!(
                f,
                "  records whose usage changed after it was reported, not sent again (first {SAMPLES}; settle them with the provider):"
            )?;
            for c in &self.conflicts {
                writeln!(f, "    {c}")?;
            }
        }
        if let Some(c) = &self.coverage {
            writeln!(
                f,
                "  coverage: {} of {} subscriptions have no usage{}",
                c.not_covered,
                c.expected,
                if c.required {
                    " (full coverage is required)"
                } else {
                    ""
                }
            )?;
            if !c.samples.is_empty() {
                writeln!(
                    f,
                    "  subscriptions without usage (first {}, by id):",
                    super::coverage::COVERAGE_SAMPLES
                )?;
                for u in &c.samples {
                    writeln!(f, "    {} {} {}", u.subscription, u.product, u.contract)?;
                }
            }
        }
        write!(
            f,
            "  {} Connect API calls, {}",
            self.api_calls,
            duration_text(self.duration_ms)
        )
    }
}
