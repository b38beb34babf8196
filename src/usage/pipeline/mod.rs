//! The QT reporting run: read a month of usage, check and group it, and report each
//! distribution contract and product to Connect exactly once, in bounded memory.
//!
//! The run goes through four phases, each in a file of its own:
//! 1. `read`: every record from the source into a spool on the work directory's disk
//!    (malformed ones become rejections, never dropped), noting the subscriptions named;
//! 2. `place`: load the catalog in batched queries, check each record and place it in
//!    its (contract, product) group with its record id; an external sort then brings each
//!    group's records together in id order, where duplicate ids meet and are refused (and rows
//!    are summed per window when aggregating);
//! 3. `group`: for each group, as soon as its records are all placed, find its usage
//!    files by their deterministic external ids (`files`), learn what the submitted
//!    ones hold ([`super::layout`], reading them back when their notes cannot tell:
//!    `compare`), and give the records they do not hold to the files not yet
//!    submitted, cut into parts of at most `MAX_RECORDS_PER_FILE`, or to a new supplement;
//! 4. `deliver`: take each of those files from wherever it is to `pending` (create,
//!    upload its workbook, wait for processing, note, submit), as [`super::decide`] says.
//!
//! Alongside 3 and 4, the subscriptions that should have usage are listed from Connect and
//! compared with the ones the month's records named ([`super::coverage`]).
//!
//! Nothing is kept between runs: Connect's state is the only memory, which is what makes a
//! rerun after a crash at any point end in the same state as an uninterrupted run. The work
//! directory lives as long as the run.

mod compare;
mod deliver;
mod files;
mod group;
mod place;
mod problems;
mod read;
mod store;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt, stream};
use tokio::sync::Semaphore;
use tracing::info;

use super::aggregate::Aggregation;
use super::coverage::{self, Coverage};
use super::locks::GroupLocks;
use super::source::{SourceError, UsageSource};
use super::summary::{FileAction, GroupCounts, RecordCounts, RunResult, RunSummary, SAMPLES};
use super::workbook::MAX_ROWS;
use super::workdir::{WorkDir, WorkDirError};
use connect_client::month::Month;
use connect_client::{ConnectClient, ConnectError};

/// How long to wait for Connect to process an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPolicy {
    pub interval: Duration,
    /// After this, the file is left to the `ready` event (the group counts as waiting).
    pub timeout: Duration,
}

impl Default for PollPolicy {
    fn default() -> Self {
        PollPolicy {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(120),
        }
    }
}

/// A step of a file's report, for the interruption hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Create,
    Upload,
    /// The upload was processed and its digest recorded in the note.
    Processed,
    Submit,
}

/// Records a usage file holds at most unless told otherwise.
pub const DEFAULT_MAX_RECORDS_PER_FILE: usize = 1_000_000;

/// How to run.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub period: Month,
    /// Usage files worked on at once (and groups planned at once).
    pub concurrency: usize,
    /// Write the workbooks and the summary, send nothing.
    pub dry_run: bool,
    /// Where a dry run writes workbooks and `summary.json` (nowhere when `None`).
    pub out_dir: Option<PathBuf>,
    pub poll: PollPolicy,
    /// Stops the whole run right after this step succeeds for the `interrupt_nth` time, as a
    /// crash would. For tests of resumption.
    #[doc(hidden)]
    pub interrupt_after: Option<Step>,
    /// Which success of `interrupt_after` stops the run (1: the first).
    #[doc(hidden)]
    pub interrupt_nth: usize,
    /// Report only this `(contract, product)` group: a lifecycle handler's regeneration.
    pub only: Option<(String, String)>,
    /// The id of a `rejected` usage file to take through upload and submit again (a rerun after
    /// the provider's rejection), instead of leaving it to the rejection handler. Only that
    /// file of its group gets records; the others keep theirs.
    pub rerun: Option<String>,
    /// The [lock table](super::locks) whose group lock the run holds while it acts on a
    /// group's files; `None` for a caller that holds the lock of its `only` group already.
    pub locks: Option<GroupLocks>,
    /// Records a usage file holds at most; larger groups are cut into parts.
    pub max_records_per_file: usize,
    /// Records summed per window before they are reported.
    pub aggregation: Aggregation,
    /// Where the run's work directory is made.
    pub work_dir: PathBuf,
    /// Memory the sorter may hold before it spills to the work directory.
    #[doc(hidden)]
    pub sort_memory: usize,
    /// Workbooks written at once (the machine's cores by default).
    pub build_threads: usize,
    /// A subscription expected to have usage that has none makes the run partial
    /// (`REQUIRE_FULL_COVERAGE`); otherwise it is only reported.
    pub require_full_coverage: bool,
}

impl ReportOptions {
    pub fn new(period: Month) -> ReportOptions {
        ReportOptions {
            period,
            concurrency: 4,
            dry_run: false,
            out_dir: None,
            poll: PollPolicy::default(),
            interrupt_after: None,
            interrupt_nth: 1,
            only: None,
            rerun: None,
            locks: Some(GroupLocks::default()),
            max_records_per_file: DEFAULT_MAX_RECORDS_PER_FILE,
            aggregation: Aggregation::None,
            work_dir: std::env::temp_dir(),
            sort_memory: super::sort::DEFAULT_BUDGET,
            build_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            require_full_coverage: false,
        }
    }

    /// Records per file, within what a worksheet holds.
    fn per_file(&self) -> usize {
        self.max_records_per_file.clamp(1, MAX_ROWS)
    }
}

/// A run that could not report anything.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot load contracts, assets and products from Connect: {0}")]
    Catalog(ConnectError),
    #[error("cannot write to {path}: {reason}")]
    Output { path: String, reason: String },
    #[error(transparent)]
    WorkDir(#[from] WorkDirError),
    #[error("interrupted after the {step:?} step of {external_id}")]
    Interrupted { step: Step, external_id: String },
}

impl RunError {
    fn work(dir: &WorkDir, e: impl std::fmt::Display) -> RunError {
        RunError::WorkDir(WorkDirError::new(dir.path(), e))
    }
}

/// What every phase of a run shares.
#[derive(Debug)]
struct Run {
    client: ConnectClient,
    options: ReportOptions,
    /// When this run began reading the vendor's usage (Unix milliseconds): of two runs'
    /// records for a file, the later read is newer.
    read_at: i64,
    work: WorkDir,
    /// Workbooks being written at once.
    builds: Semaphore,
    /// Files worked on at once (`concurrency`), whatever their groups.
    files: Semaphore,
    /// Groups reading back what their files hold, one at a time: each sorts those rows in
    /// memory up to a share of the budget.
    compares: Semaphore,
    /// Successes of the interruption step so far.
    interrupts: AtomicUsize,
}

impl Run {
    /// Stops the run here if the options say so.
    fn interrupt(&self, step: Step) -> bool {
        if self.options.interrupt_after != Some(step) {
            return false;
        }
        let n = self.interrupts.fetch_add(1, Ordering::SeqCst) + 1;
        n == self.options.interrupt_nth.max(1)
    }
}

/// Runs the report. A whole month's run (not one group's rerun) is shown in the metrics.
pub async fn report(
    client: &ConnectClient,
    source: &dyn UsageSource,
    options: &ReportOptions,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let result = run_report(client, source, options).await;
    if options.only.is_none() {
        match &result {
            Ok(summary) => super::metrics::record_run(summary),
            Err(_) => super::metrics::record_failed_run(
                &options.period.to_string(),
                options.dry_run,
                started.elapsed(),
            ),
        }
    }
    result
}

async fn run_report(
    client: &ConnectClient,
    source: &dyn UsageSource,
    options: &ReportOptions,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let calls_before = client.requests_sent();
    let period = options.period;
    info!(%period, source = %source.describe(), dry_run = options.dry_run, "usage report starts");
    let work = WorkDir::create(&options.work_dir)?;
    let run = Arc::new(Run {
        client: client.clone(),
        options: options.clone(),
        read_at: chrono::Utc::now().timestamp_millis(),
        work,
        builds: Semaphore::new(options.build_threads.max(1)),
        files: Semaphore::new(options.concurrency.max(1)),
        compares: Semaphore::new(1),
        interrupts: AtomicUsize::new(0),
    });

    if let Some(dir) = &options.out_dir {
        std::fs::create_dir_all(dir).map_err(|e| RunError::Output {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
    }

    // 1. Read.
    let spool = read::read(&run, source).await?;
    let read_ms = started.elapsed().as_millis() as u64;
    let read_done = Instant::now();
    let read_count = spool.records;
    let mut work_bytes = run.work.bytes_used();
    // The names the records used, for coverage: as many as the vendor's subscriptions.
    let named: HashSet<String> = spool.subscriptions.iter().cloned().collect();

    // 2. Place, sort, and bring each group's records together; 3 and 4, each group's files,
    // several groups at once, each as soon as its records are all there.
    let placed = place::place(&run, spool).await?;
    let catalog = placed.catalog.clone();
    let arriving = stream::unfold(placed.groups, |mut rx| async move {
        rx.recv().await.map(|g| (g, rx))
    });
    let groups = arriving
        .filter(|g| {
            let wanted = options
                .only
                .as_ref()
                .is_none_or(|(c, p)| *c == g.info.contract && *p == g.info.product);
            std::future::ready(wanted)
        })
        .map(|g| group::report_group(run.clone(), catalog.clone(), g));
    // Coverage is asked of Connect while the groups are reported. A run of one group (a
    // lifecycle handler's) sees one group's records: it cannot tell.
    let coverage = async {
        if options.only.is_some() {
            return Ok(None);
        }
        let expected = coverage::load(client, &catalog).await?;
        let active: HashSet<&str> = catalog.contracts.keys().map(String::as_str).collect();
        let (count, uncovered) = coverage::uncovered(&expected, &active, period, &named);
        Ok::<_, ConnectError>(Some(Coverage::of(
            count,
            uncovered,
            options.require_full_coverage,
        )))
    };
    // An interruption stops the whole run at once, as a crash would (coverage too).
    let (outcomes, coverage) = tokio::try_join!(
        groups
            .buffer_unordered(options.concurrency.max(1))
            .try_collect::<Vec<group::GroupOutcome>>(),
        async { coverage.await.map_err(RunError::Catalog) }
    )?;
    drop(named);
    let files_ms = read_done.elapsed().as_millis() as u64;
    let place::PlaceDone {
        problems,
        ms: place_ms,
        work_bytes: placing_bytes,
    } = placed
        .done
        .await
        .map_err(|e| RunError::work(&run.work, format!("the placing thread failed: {e}")))?
        .map_err(|e| RunError::work(&run.work, e))?;
    let (invalid, unplaceable) = (problems.invalid_count(), problems.unplaceable_count());
    work_bytes = work_bytes.max(placing_bytes).max(run.work.bytes_used());
    let mut reports = Vec::new();
    let mut records = RecordCounts {
        read: read_count,
        invalid,
        unplaceable,
        ..RecordCounts::default()
    };
    let mut conflicts = Vec::new();
    for o in outcomes {
        records.sent += o.records.sent;
        records.already_reported += o.records.already_reported;
        records.not_reported += o.records.not_reported;
        records.not_qt += o.records.not_qt;
        records.conflicts += o.records.conflicts;
        reports.extend(o.files);
        conflicts.extend(o.conflicts);
    }
    reports.sort_by(|a, b| {
        (&a.contract, &a.product, &a.external_id).cmp(&(&b.contract, &b.product, &b.external_id))
    });
    conflicts.sort_by(|a: &super::summary::Conflict, b| {
        (&a.contract, &a.product, &a.record_id).cmp(&(&b.contract, &b.product, &b.record_id))
    });
    conflicts.truncate(SAMPLES);

    // 5. Summary.
    let mut files = GroupCounts::default();
    for r in &reports {
        match r.action {
            FileAction::Created => files.created += 1,
            FileAction::Resumed => files.resumed += 1,
            FileAction::AlreadyReported => files.already_reported += 1,
            FileAction::ChangedAfterReport => files.changed_after_report += 1,
            FileAction::Rejected => files.rejected += 1,
            FileAction::Waiting => files.waiting += 1,
            FileAction::Failed => files.failed += 1,
            FileAction::SkippedNotQt => files.skipped_not_qt += 1,
            FileAction::DryRun => files.dry_run += 1,
            FileAction::Deleted => files.deleted += 1,
        }
    }
    let reported = files.created + files.resumed + files.already_reported + files.dry_run;
    let result = if reported == 0 && (files.failed > 0 || files.waiting > 0) {
        RunResult::Failed
    } else if files.failed + files.waiting + files.rejected + files.changed_after_report > 0
        || invalid + unplaceable + records.conflicts > 0
        || (records.not_reported > 0 && !options.dry_run)
        || coverage.as_ref().is_some_and(Coverage::makes_partial)
    {
        RunResult::Partial
    } else {
        RunResult::Complete
    };
    let summary = RunSummary {
        period,
        source: source.describe(),
        dry_run: options.dry_run,
        result,
        groups: files,
        records,
        problems: problems.into_sorted(),
        conflicts,
        files: reports,
        coverage,
        api_calls: client.requests_sent() - calls_before,
        duration_ms: started.elapsed().as_millis() as u64,
        work_bytes,
        timings: super::summary::Timings {
            read_ms,
            place_ms,
            files_ms,
        },
    };
    if options.dry_run
        && let Some(dir) = &options.out_dir
    {
        let path = dir.join("summary.json");
        let json = serde_json::to_vec_pretty(&summary).unwrap_or_default();
        std::fs::write(&path, json).map_err(|e| RunError::Output {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    info!(summary = %summary.one_line(), "usage report done");
    Ok(summary)
}
