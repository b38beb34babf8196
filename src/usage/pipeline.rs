//! The QT reporting run: read a month of usage, check and group it, and report each
//! distribution contract and product to Connect exactly once.
//!
//! 1. Read every record from the source (malformed ones become rejections, never dropped).
//! 2. Load the catalog in batched queries (no per-record calls).
//! 3. Check each record and place it in its (contract, product) group; give it its record id
//!    (the vendor's, or one derived from its content); refuse duplicate ids.
//! 4. For each QT group, concurrently with a bound: write the workbook, then find the group's
//!    usage file by its deterministic `external_id` and take it from wherever it is to
//!    `pending`: create, upload, wait for processing, record the workbook's digest in the
//!    note, submit. Files already submitted are left alone. Any failure whose outcome is
//!    unknown is resolved by reading the file again, never by sending blindly.
//!
//! Nothing is kept locally: Connect's state is the only memory between runs, which is what
//! makes a rerun after a crash at any point end in the same state as an uninterrupted run.

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use tracing::{info, warn};

use super::catalog::Catalog;
use super::identity::{self, RecordContent};
use super::period::Period;
use super::record::{Position, Quantity, SourceItem};
use super::source::{SourceError, UsageSource};
use super::summary::{
    FileAction, FileReport, GroupCounts, RecordCounts, RecordProblem, RunResult, RunSummary,
    SAMPLES,
};
use super::validate::{Checked, ProblemKind, place};
use super::workbook::{self, Row};
use crate::connect::models::{IdRef, NewUsageFile, UsageFile, UsageFileStatus, UsageFileUpdate};
use crate::connect::{ConnectClient, ConnectError};
use crate::rql::Expr;

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

/// A step of a group's report, for the interruption hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Create,
    Upload,
    /// The upload was processed and its digest recorded in the note.
    Processed,
    Submit,
}

/// How to run.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub period: Period,
    /// Groups reported at once.
    pub concurrency: usize,
    /// Write the workbooks and the summary, send nothing.
    pub dry_run: bool,
    /// Where a dry run writes workbooks and `summary.json` (nowhere when `None`).
    pub out_dir: Option<PathBuf>,
    pub poll: PollPolicy,
    /// Stops the whole run right after the first time this step succeeds, as a crash would.
    /// For tests of resumption.
    #[doc(hidden)]
    pub interrupt_after: Option<Step>,
    /// Report only this `(contract, product)` group: a lifecycle handler's regeneration.
    pub only: Option<(String, String)>,
    /// Take a `rejected` file through upload and submit again (a rerun after the provider's
    /// rejection) instead of leaving it to the rejection handler.
    pub rerun_rejected: bool,
    /// Hold each group's [lock](super::locks) while acting on its file. A caller that holds
    /// the lock of its `only` group already says `false`.
    pub lock_groups: bool,
}

impl ReportOptions {
    pub fn new(period: Period) -> ReportOptions {
        ReportOptions {
            period,
            concurrency: 4,
            dry_run: false,
            out_dir: None,
            poll: PollPolicy::default(),
            interrupt_after: None,
            only: None,
            rerun_rejected: false,
            lock_groups: true,
        }
    }
}

/// A run that could not report anything.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Source(#[from] SourceError),
    #[error("cannot load contracts, assets and products from Connect: {0}")]
    Catalog(ConnectError),
    #[error("cannot write to {path}: {reason}")]
    Output { path: String, reason: String },
    #[error("interrupted after the {step:?} step of {external_id}")]
    Interrupted { step: Step, external_id: String },
}

/// Strings seen many times (subscriptions, MPNs, asset ids) are kept once.
#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let name: Arc<str> = Arc::from(s);
        let i = self.names.len() as u32;
        self.names.push(name.clone());
        self.ids.insert(name, i);
        i
    }

    fn get(&self, i: u32) -> &str {
        self.names.get(i as usize).map_or("", |s| s)
    }
}

/// A record, compact: a million of them take about 150 MB.
#[derive(Debug)]
struct Entry {
    position: Position,
    subscription: u32,
    mpn: u32,
    category: Option<u32>,
    quantity: Quantity,
    start: i64,
    end: i64,
    /// Moved into [`RunData::ids`] once the record is placed.
    vendor_id: Option<Box<str>>,
    /// Whether the vendor gave the record its id.
    has_vendor_id: bool,
    note: Option<Box<str>>,
}

/// Records read and their strings, shared by the workbook writers. `ids` and `assets` run
/// parallel to `entries` (empty and `u32::MAX` for records that were not placed).
#[derive(Debug, Default)]
struct RunData {
    strings: Interner,
    entries: Vec<Entry>,
    ids: Vec<Box<str>>,
    assets: Vec<u32>,
}

/// One (contract, product) group: indices into [`RunData::entries`].
#[derive(Debug)]
struct Group {
    contract: String,
    product: String,
    qt: bool,
    entries: Vec<u32>,
}

/// The first [`SAMPLES`] problems of each kind by position, whatever order they are found in,
/// in bounded memory, and the counts.
#[derive(Debug, Default)]
struct Samples {
    invalid: BinaryHeap<ByPosition>,
    unplaceable: BinaryHeap<ByPosition>,
    invalid_count: usize,
    unplaceable_count: usize,
}

#[derive(Debug, PartialEq, Eq)]
struct ByPosition(RecordProblem);

impl Ord for ByPosition {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.position.cmp(&other.0.position)
    }
}

impl PartialOrd for ByPosition {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Samples {
    fn add(&mut self, p: RecordProblem) {
        let (heap, count) = match p.kind {
            ProblemKind::Invalid => (&mut self.invalid, &mut self.invalid_count),
            ProblemKind::Unplaceable => (&mut self.unplaceable, &mut self.unplaceable_count),
        };
        *count += 1;
        heap.push(ByPosition(p));
        if heap.len() > SAMPLES {
            // The max-heap drops the latest position.
            heap.pop();
        }
    }

    fn into_sorted(self) -> Vec<RecordProblem> {
        let mut all: Vec<RecordProblem> = self
            .invalid
            .into_iter()
            .chain(self.unplaceable)
            .map(|b| b.0)
            .collect();
        all.sort_by_key(|p| p.position);
        all
    }
}

/// Runs the report.
pub async fn report(
    client: &ConnectClient,
    source: &dyn UsageSource,
    options: &ReportOptions,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let calls_before = client.requests_sent();
    let period = options.period;
    info!(%period, source = %source.describe(), dry_run = options.dry_run, "usage report starts");
    // Noted with every upload: of two runs' records for a group, the later read is newer.
    let read_at = chrono::Utc::now().timestamp_millis();

    // 1. Read.
    let mut data = RunData::default();
    let mut problems = Samples::default();
    let mut batches = source.records(period);
    let mut read = 0usize;
    while let Some(batch) = batches.try_next().await? {
        for item in batch {
            read += 1;
            match item {
                SourceItem::Record(r) => {
                    let entry = Entry {
                        position: r.position,
                        subscription: data.strings.intern(&r.subscription),
                        mpn: data.strings.intern(&r.item_mpn),
                        category: r.category.as_deref().map(|c| data.strings.intern(c)),
                        quantity: r.quantity,
                        start: r.start.timestamp(),
                        end: r.end.timestamp(),
                        has_vendor_id: r.record_id.is_some(),
                        vendor_id: r.record_id.map(String::into_boxed_str),
                        note: r.note.map(String::into_boxed_str),
                    };
                    data.entries.push(entry);
                }
                SourceItem::Rejected(r) => problems.add(RecordProblem {
                    position: r.position,
                    record_id: r.record_id,
                    kind: ProblemKind::Invalid,
                    reason: r.reason,
                }),
            }
            if read.is_multiple_of(100_000) {
                info!(records = read, "reading usage");
            }
        }
    }
    info!(records = read, "usage read");

    // 2. Catalog.
    let subscriptions: Vec<String> = {
        let mut seen: Vec<bool> = vec![false; data.strings.names.len()];
        let mut out = Vec::new();
        for e in &data.entries {
            let i = e.subscription as usize;
            if !seen[i] {
                seen[i] = true;
                out.push(data.strings.get(e.subscription).to_owned());
            }
        }
        out
    };
    let catalog = Catalog::load(client, subscriptions)
        .await
        .map_err(RunError::Catalog)?;
    info!(
        contracts = catalog.contracts.len(),
        assets = catalog.assets.len(),
        products = catalog.products.len(),
        "catalog loaded"
    );

    // 3. Check and place, then refuse duplicate ids (the first keeps its place).
    let asset_index: HashMap<String, u32> = catalog
        .assets
        .keys()
        .map(|id| (id.clone(), data.strings.intern(id)))
        .collect();
    let n = data.entries.len();
    data.ids = vec![Box::default(); n];
    data.assets = vec![u32::MAX; n];
    let mut group_keys: Vec<(String, String, bool)> = Vec::new();
    let mut group_of: HashMap<(String, String), u32> = HashMap::new();
    let mut placed: Vec<(u32, u32)> = Vec::with_capacity(n);
    {
        let RunData {
            strings,
            entries,
            ids,
            assets,
        } = &mut data;
        for (i, e) in entries.iter_mut().enumerate() {
            let checked = Checked {
                subscription: strings.get(e.subscription),
                item_mpn: strings.get(e.mpn),
                quantity: &e.quantity,
                start: chrono::DateTime::from_timestamp(e.start, 0).unwrap_or_default(),
                end: chrono::DateTime::from_timestamp(e.end, 0).unwrap_or_default(),
                record_id: e.vendor_id.as_deref(),
                note: e.note.as_deref(),
                category: e.category.map(|c| strings.get(c)),
            };
            let placement = match place(checked, &catalog, period) {
                Ok(p) => p,
                Err(p) => {
                    problems.add(RecordProblem {
                        position: e.position,
                        record_id: e.vendor_id.as_deref().map(str::to_owned),
                        kind: p.kind,
                        reason: p.reason,
                    });
                    continue;
                }
            };
            ids[i] = match e.vendor_id.take() {
                Some(id) => id,
                None => identity::derived_record_id(&RecordContent {
                    asset_id: placement.asset_id,
                    item_mpn: strings.get(e.mpn),
                    quantity: &e.quantity,
                    start: e.start,
                    end: e.end,
                    note: e.note.as_deref(),
                    category: e.category.map(|c| strings.get(c)),
                })
                .into_boxed_str(),
            };
            assets[i] = asset_index
                .get(placement.asset_id)
                .copied()
                .unwrap_or(u32::MAX);
            let key = (placement.contract.to_owned(), placement.product.to_owned());
            let g = *group_of.entry(key.clone()).or_insert_with(|| {
                group_keys.push((key.0, key.1, placement.qt));
                (group_keys.len() - 1) as u32
            });
            placed.push((i as u32, g));
        }
    }
    // Sorting by id puts duplicates side by side, without a second copy of every id.
    let mut by_id: Vec<usize> = (0..placed.len()).collect();
    by_id.sort_by(|a, b| {
        let (ea, eb) = (placed[*a].0 as usize, placed[*b].0 as usize);
        data.ids[ea].cmp(&data.ids[eb]).then(ea.cmp(&eb))
    });
    let mut duplicate = vec![false; placed.len()];
    for pair in by_id.windows(2) {
        let (first, next) = (placed[pair[0]].0 as usize, placed[pair[1]].0 as usize);
        if data.ids[first] == data.ids[next] {
            duplicate[pair[1]] = true;
        }
    }
    let mut first_of: Option<usize> = None;
    for &k in &by_id {
        let i = placed[k].0 as usize;
        if !duplicate[k] {
            first_of = Some(i);
            continue;
        }
        let first = first_of.map_or(data.entries[i].position, |f| data.entries[f].position);
        let e = &data.entries[i];
        let id = &data.ids[i];
        let reason = if e.has_vendor_id {
            format!("record_id {id:?} is already used by {first}")
        } else {
            format!(
                "the same record as {first} (same subscription, item, quantity, times and note)"
            )
        };
        problems.add(RecordProblem {
            position: e.position,
            record_id: e.has_vendor_id.then(|| id.to_string()),
            kind: ProblemKind::Invalid,
            reason,
        });
    }
    drop(by_id);
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); group_keys.len()];
    for (k, (entry, g)) in placed.into_iter().enumerate() {
        if !duplicate[k] {
            members[g as usize].push(entry);
        }
    }
    for ((contract, product, qt), entries) in group_keys.into_iter().zip(members) {
        if !entries.is_empty() {
            groups.insert(
                (contract.clone(), product.clone()),
                Group {
                    contract,
                    product,
                    qt,
                    entries,
                },
            );
        }
    }
    let (invalid, unplaceable) = (problems.invalid_count, problems.unplaceable_count);

    // 4. Report.
    let data = Arc::new(data);
    let mut reports: Vec<FileReport> = Vec::new();
    let mut jobs = Vec::new();
    for (key, g) in groups {
        if options.only.as_ref().is_some_and(|only| *only != key) {
            continue;
        }
        let external_id = identity::external_id(&g.contract, &g.product, period);
        if !g.qt {
            let schema = catalog
                .products
                .get(&g.product)
                .and_then(|p| p.ppu_schema())
                .unwrap_or("none")
                .to_owned();
            reports.push(FileReport {
                contract: g.contract,
                product: g.product,
                external_id,
                file_id: None,
                status: None,
                action: FileAction::SkippedNotQt,
                records: g.entries.len(),
                workbook: None,
                message: Some(format!(
                    "the product's pay-as-you-go schema is {schema}, not QT: not sent"
                )),
                uploaded: false,
            });
            continue;
        }
        let currency = catalog.currency(&g.contract);
        let product_name = catalog
            .products
            .get(&g.product)
            .and_then(|p| p.name.clone())
            .unwrap_or_else(|| g.product.clone());
        jobs.push(GroupJob {
            external_id,
            currency,
            product_name,
            group: g,
        });
    }
    if let Some(dir) = &options.out_dir {
        std::fs::create_dir_all(dir).map_err(|e| RunError::Output {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    let runner = GroupRunner {
        client: client.clone(),
        data: data.clone(),
        options: options.clone(),
        read_at,
    };
    let results: Vec<FileReport> =
        stream::iter(jobs.into_iter().map(|job| runner.clone().run(job)))
            .buffer_unordered(options.concurrency.max(1))
            .try_collect()
            .await?;
    reports.extend(results);
    reports.sort_by(|a, b| (&a.contract, &a.product).cmp(&(&b.contract, &b.product)));

    // 5. Summary.
    let mut groups = GroupCounts::default();
    let mut records = RecordCounts {
        read,
        invalid,
        unplaceable,
        ..RecordCounts::default()
    };
    for r in &reports {
        match r.action {
            FileAction::Created => {
                groups.created += 1;
                records.sent += r.records;
            }
            FileAction::Resumed => {
                groups.resumed += 1;
                records.sent += r.records;
            }
            FileAction::AlreadyReported => {
                groups.already_reported += 1;
                records.already_reported += r.records;
            }
            FileAction::ChangedAfterReport => {
                groups.changed_after_report += 1;
                records.not_reported += r.records;
            }
            FileAction::Rejected => {
                groups.rejected += 1;
                records.not_reported += r.records;
            }
            FileAction::Waiting => {
                groups.waiting += 1;
                records.not_reported += r.records;
            }
            FileAction::Failed => {
                groups.failed += 1;
                records.not_reported += r.records;
            }
            FileAction::SkippedNotQt => {
                groups.skipped_not_qt += 1;
                records.not_qt += r.records;
            }
            FileAction::DryRun => {
                groups.dry_run += 1;
                records.not_reported += r.records;
            }
        }
    }
    let reported = groups.created + groups.resumed + groups.already_reported + groups.dry_run;
    let result = if reported == 0 && (groups.failed > 0 || groups.waiting > 0) {
        RunResult::Failed
    } else if groups.failed + groups.waiting + groups.rejected + groups.changed_after_report > 0
        || invalid + unplaceable > 0
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
        groups,
        records,
        problems: problems.into_sorted(),
        files: reports,
        api_calls: client.requests_sent() - calls_before,
        duration_ms: started.elapsed().as_millis() as u64,
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

/// What a group's report needs.
#[derive(Debug)]
struct GroupJob {
    external_id: String,
    currency: Option<String>,
    product_name: String,
    group: Group,
}

#[derive(Debug, Clone)]
struct GroupRunner {
    client: ConnectClient,
    data: Arc<RunData>,
    options: ReportOptions,
    /// When this run began reading the vendor's usage (Unix milliseconds).
    read_at: i64,
}

/// A group's workbook.
struct Built {
    bytes: Bytes,
    /// SHA-256 of the rows' content (not of the workbook's bytes, which a new version of the
    /// spreadsheet writer could change).
    digest: String,
    name: String,
    records: usize,
}

/// How many times a group's file is read again and acted on before giving up.
const MAX_ROUNDS: usize = 12;
/// Definite refusals (4xx other than 429) of one step tolerated before giving up: one could
/// be a race with another actor, two are not.
const MAX_REFUSALS: usize = 2;

/// What a group's file calls for next.
enum Next {
    /// Submitted before (or by this run).
    Reported,
    Rejected,
    /// Connect found this data invalid.
    Invalid,
    Upload,
    Submit,
    Wait,
    /// Someone uploaded rows into it by hand since its digest was noted: a person's.
    Foreign,
    /// Another task uploaded newer records into it: its business.
    Moved,
    /// Deleted or unknown: for a person.
    Stuck,
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

impl GroupRunner {
    async fn run(self, job: GroupJob) -> Result<FileReport, RunError> {
        let mut report = FileReport {
            contract: job.group.contract.clone(),
            product: job.group.product.clone(),
            external_id: job.external_id.clone(),
            file_id: None,
            status: None,
            action: FileAction::Failed,
            records: job.group.entries.len(),
            workbook: None,
            message: None,
            uploaded: false,
        };
        let built = match self.build(&job).await {
            Ok(b) => b,
            Err(e) => {
                report.message = Some(e);
                return Ok(report);
            }
        };
        if self.options.dry_run {
            return Ok(self.dry_run(job, built, report).await);
        }
        let _held = match self.options.lock_groups {
            true => Some(super::locks::lock(&job.external_id).await),
            false => None,
        };
        match self.drive(&job, &built, &mut report).await {
            Ok(()) => {}
            Err(GroupError::Interrupted(step)) => {
                return Err(RunError::Interrupted {
                    step,
                    external_id: job.external_id,
                });
            }
            Err(GroupError::Failed(message)) => {
                warn!(external_id = %job.external_id, %message, "usage file not reported");
                report.action = FileAction::Failed;
                report.message = Some(message);
            }
        }
        info!(
            external_id = %report.external_id,
            file = report.file_id.as_deref().unwrap_or("-"),
            action = %report.action,
            records = report.records,
            "usage file"
        );
        Ok(report)
    }

    /// Writes the group's workbook on a blocking thread.
    async fn build(&self, job: &GroupJob) -> Result<Built, String> {
        let data = self.data.clone();
        let mut rows = job.group.entries.clone();
        let period = self.options.period;
        let name = identity::workbook_name(&job.group.contract, &job.group.product, period);
        tokio::task::spawn_blocking(move || {
            // Sorted by record id: the same records give the same workbook, whatever order
            // the source gave them in.
            rows.sort_by(|a, b| data.ids[*a as usize].cmp(&data.ids[*b as usize]));
            let mut categories: Vec<&str> = rows
                .iter()
                .filter_map(|e| {
                    data.entries[*e as usize]
                        .category
                        .map(|c| data.strings.get(c))
                })
                .collect();
            categories.sort_unstable();
            categories.dedup();
            let row = |e: &u32| {
                let i = *e as usize;
                let entry = &data.entries[i];
                Row {
                    record_id: &data.ids[i],
                    note: entry.note.as_deref(),
                    item_mpn: data.strings.get(entry.mpn),
                    quantity: &entry.quantity,
                    start: entry.start,
                    end: entry.end,
                    asset_id: data.strings.get(data.assets[i]),
                    category: entry.category.map(|c| data.strings.get(c)),
                }
            };
            let mut content = identity::ContentDigest::new();
            for r in rows.iter().map(row) {
                content.add(&r);
            }
            // The creation time is the end of the period: the same data, the same bytes.
            let bytes = workbook::write(
                rows.iter().map(row),
                &categories,
                period.end_exclusive(),
                None,
            )
            .map_err(|e| e.to_string())?;
            Ok(Built {
                bytes: Bytes::from(bytes),
                digest: content.finish(),
                name,
                records: rows.len(),
            })
        })
        .await
        .map_err(|e| format!("the workbook writer failed: {e}"))?
    }

    async fn dry_run(&self, job: GroupJob, built: Built, mut report: FileReport) -> FileReport {
        report.action = FileAction::DryRun;
        if let Some(dir) = &self.options.out_dir {
            let path = dir.join(&built.name);
            match tokio::fs::write(&path, &built.bytes).await {
                Ok(()) => report.workbook = Some(path.display().to_string()),
                Err(e) => {
                    report.action = FileAction::Failed;
                    report.message = Some(format!("cannot write {}: {e}", path.display()));
                    return report;
                }
            }
        }
        // Reading is allowed: say what a real run would do.
        report.message = Some(match self.list(&job.external_id).await {
            Ok(files) if files.is_empty() => "would create the usage file".into(),
            Ok(files) => {
                let f = &files[0];
                report.file_id = Some(f.id.clone());
                report.status = Some(f.status.to_string());
                match f.status {
                    UsageFileStatus::Pending
                    | UsageFileStatus::Accepted
                    | UsageFileStatus::Closed
                    | UsageFileStatus::Rejected => "already reported: would leave it".into(),
                    _ => format!("would resume the usage file ({})", f.status),
                }
            }
            Err(e) => format!("cannot tell what a real run would do: {e}"),
        });
        report
    }

    /// The group's files that are not deleted, oldest first.
    async fn list(&self, external_id: &str) -> Result<Vec<UsageFile>, String> {
        let mut files = self
            .client
            .usage_files()
            .filter(Expr::eq("external_id", external_id) & Expr::ne("status", "deleted"))
            .all()
            .await
            .map_err(|e| e.to_string())?;
        files.sort_by(|a, b| created_at(a).cmp(&created_at(b)).then(a.id.cmp(&b.id)));
        Ok(files)
    }

    /// The group's file. A second one (two runs at once, or a create that landed late) is
    /// deleted when it is a draft, so the oldest stays the group's file; other extras are for
    /// a person to sort out.
    async fn find(&self, external_id: &str) -> Result<Option<UsageFile>, GroupError> {
        let mut files = self.list(external_id).await.map_err(GroupError::Failed)?;
        if files.len() <= 1 {
            return Ok(files.pop());
        }
        let extras: Vec<UsageFile> = files.split_off(1);
        let mut kept = Vec::new();
        for extra in extras {
            if extra.status == UsageFileStatus::Draft {
                match self.client.delete_usage_file(&extra.id).await {
                    Ok(_) => {
                        warn!(external_id, file = %extra.id, kept = %files[0].id, "deleted a second draft of the same group");
                        continue;
                    }
                    Err(e) => warn!(file = %extra.id, error = %e, "cannot delete a second draft"),
                }
            }
            kept.push(extra);
        }
        if kept.is_empty() {
            return Ok(files.pop());
        }
        Err(GroupError::Failed(format!(
            "{} usage files have the external id {external_id} ({}, {}): a person must decide which one stays",
            kept.len() + 1,
            files[0].id,
            kept.iter()
                .map(|f| format!("{} {}", f.id, f.status))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    fn interrupt(&self, step: Step) -> Result<(), GroupError> {
        if self.options.interrupt_after == Some(step) {
            return Err(GroupError::Interrupted(step));
        }
        Ok(())
    }

    /// Takes the group's file from wherever it is to `pending`. Each round reads the file and
    /// does the one thing its status calls for; a failure ends the round, and the next one
    /// starts again from Connect's state. A create that may still be under way (timed out,
    /// 502, 504) is sent again only after the file had time to appear.
    async fn drive(
        &self,
        job: &GroupJob,
        built: &Built,
        report: &mut FileReport,
    ) -> Result<(), GroupError> {
        let mut created = false;
        let mut acted = false;
        let mut uploaded = false;
        // Anything sent that may have changed the file (even a create whose answer was lost).
        let mut sent = false;
        let mut submitted = false;
        let mut refusals = 0usize;
        let mut in_flight_create: Option<Instant> = None;
        let mut last_error: Option<String> = None;
        let mut refused = |e: &ConnectError, last: &mut Option<String>| -> Result<(), GroupError> {
            *last = Some(e.to_string());
            let definite = !e.outcome_unknown()
                && e.status()
                    .is_some_and(|s| (400..500).contains(&s) && s != 429);
            if definite {
                refusals += 1;
                if refusals >= MAX_REFUSALS {
                    return Err(GroupError::Failed(e.to_string()));
                }
            }
            Ok(())
        };
        let mut rounds = 0;
        while rounds < MAX_ROUNDS {
            rounds += 1;
            let Some(file) = self.find(&job.external_id).await? else {
                if let Some(since) = in_flight_create {
                    // The create may still land: look again for a while before sending
                    // another (a late one would be a second draft, deleted by `find`).
                    if since.elapsed() < self.options.poll.timeout {
                        rounds -= 1;
                        tokio::time::sleep(self.options.poll.interval).await;
                        continue;
                    }
                    in_flight_create = None;
                }
                sent = true;
                match self
                    .client
                    .create_usage_file(&self.new_file(job, built))
                    .await
                {
                    Ok(f) => {
                        info!(external_id = %job.external_id, file = %f.id, "usage file created");
                        created = true;
                        self.interrupt(Step::Create)?;
                    }
                    Err(e) => {
                        warn!(external_id = %job.external_id, error = %e, "creating the usage file failed; reading the state again");
                        if e.may_still_apply() {
                            in_flight_create = Some(Instant::now());
                        }
                        refused(&e, &mut last_error)?;
                    }
                }
                continue;
            };
            report.file_id = Some(file.id.clone());
            report.status = Some(file.status.to_string());
            let mut note = identity::FileNote::parse(file.note.as_deref());
            let uploaded_at = file.last_upload();
            // An upload of these very rows whose processing outlived an earlier poll (or whose
            // note was not written after it): the note named it before it was sent, and the
            // file was uploaded into since. It is noted as processed instead of sent again.
            if matches!(
                file.status,
                UsageFileStatus::Ready | UsageFileStatus::Invalid
            ) && let Some(landed) = note.landed(uploaded_at)
                && landed.digest == built.digest
                && file.holds_count(landed.records)
            {
                let done = note.processed(&built.digest, built.records, uploaded_at);
                let update = UsageFileUpdate {
                    note: Some(done.to_string()),
                    ..UsageFileUpdate::default()
                };
                match self.client.update_usage_file(&file.id, &update).await {
                    Ok(_) => {
                        info!(file = %file.id, status = %file.status, "an earlier upload of these records was processed: noted");
                        note = done;
                    }
                    Err(e) => {
                        refused(&e, &mut last_error)?;
                        continue;
                    }
                }
            }
            let digest = note.digest();
            // Does the file hold this very data? Its note says so once it was processed, no
            // upload came after, and its record count agrees.
            let ours = note.holds(&built.digest, uploaded_at) && file.holds_count(built.records);
            // Another task (a lifecycle handler, another instance) uploaded into the file
            // records it read from the vendor after this run began reading: they are newer
            // than this run's, so they are left to that task rather than overwritten, and not
            // called a change after report. Records read earlier are compared as usual.
            let moved = !sent
                && !ours
                && note
                    .rows_held(uploaded_at)
                    .is_some_and(|(_, records)| file.holds_count(records))
                && note
                    .read_of_content(uploaded_at)
                    .is_some_and(|read| read > self.read_at);
            // Someone uploaded rows into the file without this extension's note: a person's
            // decision, not overwritten.
            let foreign = !sent && note.replaced(uploaded_at);
            let step = match file.status {
                UsageFileStatus::Pending | UsageFileStatus::Accepted | UsageFileStatus::Closed => {
                    Next::Reported
                }
                // Submitted by this run: a rejection now is the provider's answer to it, for
                // the next rejection event.
                UsageFileStatus::Rejected
                    if submitted || (uploaded && submitted_after_upload(&file)) =>
                {
                    Next::Reported
                }
                // A rerun uploads once; a rejection after that is the provider's new answer.
                UsageFileStatus::Rejected if self.options.rerun_rejected && !uploaded && !moved => {
                    Next::Upload
                }
                UsageFileStatus::Rejected => Next::Rejected,
                UsageFileStatus::Ready | UsageFileStatus::Invalid if foreign => Next::Foreign,
                // Found invalid: what Connect says of it is the news, whoever uploaded it.
                UsageFileStatus::Invalid if uploaded || ours || moved => Next::Invalid,
                _ if moved => Next::Moved,
                UsageFileStatus::Draft => Next::Upload,
                // Not (known to be) this data: replace it.
                UsageFileStatus::Invalid | UsageFileStatus::Ready if !ours => Next::Upload,
                UsageFileStatus::Ready => Next::Submit,
                UsageFileStatus::Uploading
                | UsageFileStatus::Uploaded
                | UsageFileStatus::Processing => Next::Wait,
                UsageFileStatus::Invalid | UsageFileStatus::Deleted | UsageFileStatus::Other(_) => {
                    Next::Stuck
                }
            };
            match step {
                Next::Reported => {
                    if created || acted {
                        report.action = if created {
                            FileAction::Created
                        } else {
                            FileAction::Resumed
                        };
                    } else if ours {
                        report.action = FileAction::AlreadyReported;
                    } else if moved {
                        report.action = FileAction::AlreadyReported;
                        report.message = Some(format!(
                            "reported by another task that read the vendor's usage after this run began ({}): its records stand",
                            file.note.as_deref().unwrap_or("no note")
                        ));
                    } else if foreign {
                        report.action = FileAction::ChangedAfterReport;
                        report.message = Some(foreign_message(&file, built.records));
                    } else if digest.is_none() {
                        report.action = FileAction::AlreadyReported;
                        report.message = Some(
                            "reported before without a digest in its note: cannot tell whether it holds this data".into(),
                        );
                    } else {
                        report.action = FileAction::ChangedAfterReport;
                        report.message = Some(format!(
                            "reported before with other data ({}): these {} records are not reported; a person must decide what to do",
                            file.note.as_deref().unwrap_or_default(),
                            built.records
                        ));
                    }
                    return Ok(());
                }
                Next::Rejected => {
                    report.action = FileAction::Rejected;
                    report.message = Some(format!(
                        "rejected by the provider ({}): left to the rejection handler",
                        file.rejection_note.as_deref().unwrap_or("no note")
                    ));
                    return Ok(());
                }
                Next::Invalid => return Err(GroupError::Failed(invalid_message(&file))),
                Next::Foreign => {
                    report.action = FileAction::ChangedAfterReport;
                    report.message = Some(foreign_message(&file, built.records));
                    return Ok(());
                }
                Next::Moved => {
                    report.action = FileAction::Waiting;
                    report.message = Some(format!(
                        "another task uploaded records it read from the vendor after this run began ({}): left to that task",
                        file.status
                    ));
                    return Ok(());
                }
                Next::Upload => {
                    acted = true;
                    sent = true;
                    match self
                        .upload(&file, built, &mut refused, &mut last_error)
                        .await?
                    {
                        Uploaded::NotSent => {}
                        Uploaded::Processed => {
                            uploaded = true;
                            report.uploaded = true;
                        }
                        Uploaded::StillProcessing => {
                            report.uploaded = true;
                            return self.waiting(report);
                        }
                    }
                }
                Next::Submit => {
                    sent = true;
                    match self.client.submit_usage_file(&file.id).await {
                        Ok(f) => {
                            info!(file = %file.id, "usage file submitted");
                            report.status = Some(f.status.to_string());
                            acted = true;
                            submitted = true;
                            self.interrupt(Step::Submit)?;
                        }
                        Err(e) => refused(&e, &mut last_error)?,
                    }
                }
                Next::Wait => {
                    if self.wait(&file.id).await.is_none() {
                        return self.waiting(report);
                    }
                }
                Next::Stuck => {
                    return Err(GroupError::Failed(format!(
                        "usage file {} is {}: a person must look at it",
                        file.id, file.status
                    )));
                }
            }
        }
        Err(GroupError::Failed(format!(
            "no progress after {MAX_ROUNDS} rounds{}",
            last_error
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default()
        )))
    }

    fn waiting(&self, report: &mut FileReport) -> Result<(), GroupError> {
        report.action = FileAction::Waiting;
        report.status = Some(UsageFileStatus::Processing.to_string());
        report.message = Some(format!(
            "Connect still processes it after {} s: a later run submits it",
            self.options.poll.timeout.as_secs()
        ));
        Ok(())
    }

    /// The group's new file. Its note names the upload to come, so that a processed file
    /// is known to hold it even if this run does not live to note it.
    fn new_file(&self, job: &GroupJob, built: &Built) -> NewUsageFile {
        let period = self.options.period;
        NewUsageFile {
            name: format!("Usage {}", period.long_name()),
            description: Some(truncate(
                &format!(
                    "QT usage of {} under contract {} for {} (connect-usage)",
                    job.product_name,
                    job.group.contract,
                    period.long_name()
                ),
                200,
            )),
            note: Some(
                identity::FileNote::default()
                    .uploading(&built.digest, built.records, None, self.read_at)
                    .to_string(),
            ),
            period: crate::connect::models::Period {
                from: period.first_day(),
                to: period.last_day(),
            },
            currency: job.currency.clone(),
            product: IdRef::new(&job.group.product),
            contract: IdRef::new(&job.group.contract),
            external_id: Some(job.external_id.clone()),
        }
    }

    /// Names the upload in the file's note, uploads the workbook, waits for processing and
    /// notes the digest as processed. The note never claims rows the file may not hold: until
    /// the upload is known processed it names the upload and the file's previous upload time,
    /// which is how a later run knows the upload landed ([`identity::FileNote::landed`]).
    async fn upload(
        &self,
        file: &UsageFile,
        built: &Built,
        refused: &mut impl FnMut(&ConnectError, &mut Option<String>) -> Result<(), GroupError>,
        last_error: &mut Option<String>,
    ) -> Result<Uploaded, GroupError> {
        let sending = identity::FileNote::parse(file.note.as_deref())
            .uploading(
                &built.digest,
                built.records,
                file.last_upload(),
                self.read_at,
            )
            .to_string();
        if file.note.as_deref() != Some(sending.as_str()) {
            let update = UsageFileUpdate {
                note: Some(sending),
                ..UsageFileUpdate::default()
            };
            if let Err(e) = self.client.update_usage_file(&file.id, &update).await {
                refused(&e, last_error)?;
                return Ok(Uploaded::NotSent);
            }
        }
        if let Err(e) = self
            .client
            .upload_usage_file(&file.id, &built.name, built.bytes.clone())
            .await
        {
            refused(&e, last_error)?;
            return Ok(Uploaded::NotSent);
        }
        info!(file = %file.id, records = built.records, "workbook uploaded");
        self.interrupt(Step::Upload)?;
        let Some(f) = self.wait(&file.id).await else {
            return Ok(Uploaded::StillProcessing);
        };
        if matches!(f.status, UsageFileStatus::Ready | UsageFileStatus::Invalid) {
            // Read again from the processed file: the rerun count must carry over. The rows
            // are this run's, read when it began.
            let done = identity::FileNote {
                read: Some(self.read_at),
                ..identity::FileNote::parse(f.note.as_deref()).processed(
                    &built.digest,
                    built.records,
                    f.last_upload(),
                )
            };
            let note = UsageFileUpdate {
                note: Some(done.to_string()),
                ..UsageFileUpdate::default()
            };
            if let Err(e) = self.client.update_usage_file(&f.id, &note).await {
                // The next round sees no digest and uploads again: wasteful, never wrong.
                *last_error = Some(e.to_string());
            }
            self.interrupt(Step::Processed)?;
            return Ok(Uploaded::Processed);
        }
        Ok(Uploaded::NotSent)
    }

    /// Polls until the file leaves uploading/processing, or the poll times out (`None`).
    async fn wait(&self, id: &str) -> Option<UsageFile> {
        let deadline = Instant::now() + self.options.poll.timeout;
        loop {
            match self.client.usage_file(id).await {
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
                Err(e) => {
                    warn!(file = %id, error = %e, "cannot read the usage file while waiting")
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(self.options.poll.interval).await;
        }
    }
}

fn foreign_message(f: &UsageFile, records: usize) -> String {
    format!(
        "rows were uploaded into {} ({}) by someone else after connect-usage noted its own: these {records} records are not reported; a person decides (clear the file's note to have connect-usage report the vendor's records into it)",
        f.id, f.status
    )
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

fn created_at(f: &UsageFile) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    f.events.as_ref()?.created.as_ref().map(|e| e.at)
}

/// How a group's message starts when Connect found its upload invalid (the `invalid`
/// handler tells this failure from the others by it).
pub const INVALID_UPLOAD: &str = "Connect found the upload invalid";

fn invalid_message(f: &UsageFile) -> String {
    format!(
        "{INVALID_UPLOAD}: {}",
        f.error_detail.as_deref().unwrap_or("no detail given")
    )
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// Why a group stopped.
#[derive(Debug)]
enum GroupError {
    Interrupted(Step),
    Failed(String),
}
