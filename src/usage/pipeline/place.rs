//! Phase 2, place: load the catalog for the subscriptions read, check every spooled record and
//! place it in its (contract, product) group with its record id (the vendor's, or one derived
//! from its content), then sort all placed records by group and id. The sorted stream brings
//! each group's records together: duplicate ids meet there and all but the first in the source
//! are refused; rows are summed per window when aggregating; and each group's rows are stored
//! in id order, counted and digested, whole and per chunk (the rows one file takes).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::info;

use super::problems::Problems;
use super::read::{self, Spool};
use super::store::{Chunked, Chunker, Store};
use super::{Run, RunError};
use crate::usage::aggregate::{Aggregation, Aggregator};
use crate::usage::catalog::Catalog;
use crate::usage::identity::{RecordContent, derived_record_id};
use crate::usage::record::Position;
use crate::usage::row::{self, Row};
use crate::usage::sort::{FrameWriter, Sorted, Sorter};
use crate::usage::summary::RecordProblem;
use crate::usage::validate::{Checked, Placer, ProblemKind, Rules};

/// A (contract, product) group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GroupInfo {
    pub contract: String,
    pub product: String,
    /// The product's pay-as-you-go schema is QT: its records are sent.
    pub qt: bool,
}

/// A group and its rows.
#[derive(Debug, Clone)]
pub(super) struct GroupData {
    pub info: GroupInfo,
    pub rows: Chunked,
}

/// The month being placed: the catalog, and each group as soon as its rows are all stored (a
/// merge of sorted runs completes one group after the other, and each can be reported while
/// the next is merged).
#[derive(Debug)]
pub(super) struct Placed {
    pub catalog: Arc<Catalog>,
    pub groups: mpsc::UnboundedReceiver<GroupData>,
    /// The placing thread, once every group is out: the problems found (the source's too).
    pub done: tokio::task::JoinHandle<Result<PlaceDone, PlaceError>>,
}

/// What the placing thread tells when it is done.
#[derive(Debug)]
pub(super) struct PlaceDone {
    pub problems: Problems,
    /// How long placing took.
    pub ms: u64,
    /// The most disk its work files took at once (the spool and the sorted runs, then the runs
    /// and the groups' rows).
    pub work_bytes: u64,
}

/// A failure inside the blocking part of the phase.
#[derive(Debug, thiserror::Error)]
pub(super) enum PlaceError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] crate::usage::row::FrameError),
}

/// Loads the catalog and starts placing the spooled month on a thread of its own.
pub(super) async fn place(run: &Arc<Run>, spool: Spool) -> Result<Placed, RunError> {
    let catalog = Catalog::load(&run.client, spool.subscriptions.iter().cloned())
        .await
        .map_err(RunError::Catalog)?;
    info!(
        contracts = catalog.contracts.len(),
        assets = catalog.assets.len(),
        products = catalog.products.len(),
        "catalog loaded"
    );
    let catalog = Arc::new(catalog);
    let (tx, groups) = mpsc::unbounded_channel();
    let (run2, catalog2) = (run.clone(), catalog.clone());
    let started = std::time::Instant::now();
    // The thread's log lines belong to the run's task, like the rest of the run's.
    let span = tracing::Span::current();
    let done = tokio::task::spawn_blocking(move || {
        let _in_task = span.enter();
        let mut problems = spool.problems.clone();
        let work_bytes = place_all(&run2, &spool, &catalog2, &mut problems, &tx)?;
        Ok(PlaceDone {
            problems,
            ms: started.elapsed().as_millis() as u64,
            work_bytes,
        })
    });
    Ok(Placed {
        catalog,
        groups,
        done,
    })
}

/// Where finished groups go.
type Groups = mpsc::UnboundedSender<GroupData>;

/// Places the month and hands its groups over; returns the most disk the work files took.
fn place_all(
    run: &Run,
    spool: &Spool,
    catalog: &Catalog,
    problems: &mut Problems,
    out: &Groups,
) -> Result<u64, PlaceError> {
    let options = &run.options;
    let period = options.period;
    let rules = Rules {
        aggregated: options.aggregation != Aggregation::None,
    };
    let mut placer = Placer::new(catalog, period, rules);
    let mut sorter = Sorter::new(row::ORDER, options.sort_memory);
    let mut infos: Vec<GroupInfo> = Vec::new();
    let mut group_of: HashMap<(&str, &str), u32> = HashMap::new();
    let mut reader = spool.reader()?;
    let mut frame = Vec::with_capacity(256);
    let mut derived: String;
    let mut seen = 0u64;
    while let Some(spooled) = reader.next_frame()? {
        seen += 1;
        if seen.is_multiple_of(65_536) && out.is_closed() {
            // The run stopped (interrupted, or failed): nobody takes what this would place.
            return Ok(0);
        }
        let s = read::decode(spooled)?;
        let subscription = spool
            .subscriptions
            .get(s.subscription as usize)
            .map_or("", String::as_str);
        let checked = Checked {
            subscription,
            item_mpn: s.item_mpn,
            quantity: s.quantity,
            start: s.start,
            end: s.end,
            record_id: s.record_id,
            note: s.note,
            category: s.category,
        };
        let placement = match placer.place(checked) {
            Ok(p) => p,
            Err(p) => {
                problems.add(RecordProblem {
                    position: s.position,
                    record_id: s.record_id.map(str::to_owned),
                    kind: p.kind,
                    reason: p.reason,
                });
                continue;
            }
        };
        let record_id = match s.record_id {
            Some(id) => id,
            None => {
                derived = derived_record_id(&RecordContent {
                    asset_id: placement.asset_id,
                    item_mpn: s.item_mpn,
                    quantity: s.quantity,
                    start: s.start,
                    end: s.end,
                    note: s.note,
                    category: s.category,
                });
                &derived
            }
        };
        let group = *group_of
            .entry((placement.contract, placement.product))
            .or_insert_with(|| {
                infos.push(GroupInfo {
                    contract: placement.contract.to_owned(),
                    product: placement.product.to_owned(),
                    qt: placement.qt,
                });
                (infos.len() - 1) as u32
            });
        frame.clear();
        row::encode(
            &Row {
                group,
                record_id,
                position: s.position,
                asset_id: placement.asset_id,
                item_mpn: s.item_mpn,
                quantity: s.quantity,
                start: s.start,
                end: s.end,
                note: s.note,
                category: s.category,
                vendor_id: s.record_id.is_some(),
                precision: placement.precision,
                sums: 1,
                tag: 0,
            },
            &mut frame,
        );
        sorter.push(&frame, &run.work)?;
    }
    // Every record is in the sorter now: the spool's disk goes back.
    sorter.settle()?;
    let runs = sorter.run_bytes();
    drop(reader);
    let _ = std::fs::remove_file(&spool.path);
    let placed = sorter.frames();
    let in_memory = sorter.in_memory();
    let sorted = sorter.finish()?;
    info!(
        records = placed,
        groups = infos.len(),
        in_memory,
        "usage placed and sorted"
    );
    let stored = if options.aggregation == Aggregation::None {
        match sorted.into_arena() {
            Ok(arena) => group_in_arena(run, arena, &infos, problems, out).map(|()| 0),
            Err(sorted) => group_to_file(run, sorted, &infos, problems, out),
        }
    } else {
        group_to_file(run, sorted, &infos, problems, out)
    }?;
    Ok((spool.end + runs).max(runs + stored))
}

/// The frame kept last. Frames come sorted by group and record id, so a frame with the same
/// group and id repeats it and is refused. Keys are compared as bytes; frames are decoded only
/// to name a duplicate.
#[derive(Default)]
struct LastKept {
    frame: Vec<u8>,
}

impl LastKept {
    /// Whether `frame` is kept; a repeat is refused, its reason added to `problems`.
    fn keeps(&mut self, frame: &[u8], problems: &mut Problems) -> Result<bool, PlaceError> {
        if !self.frame.is_empty() {
            let (group, id, _) = row::key(frame);
            let (kept_group, kept_id, _) = row::key(&self.frame);
            if (group, id) == (kept_group, kept_id) {
                let kept = row::decode(&self.frame)?;
                problems.add(duplicate(kept.position, &row::decode(frame)?));
                return Ok(false);
            }
        }
        self.frame.clear();
        self.frame.extend_from_slice(frame);
        Ok(true)
    }
}

/// `r` refused for repeating the id of the record at `first`.
fn duplicate(first: Position, r: &Row<'_>) -> RecordProblem {
    let reason = if r.vendor_id {
        format!("record_id {:?} is already used by {first}", r.record_id)
    } else {
        format!("the same record as {first} (same subscription, item, quantity, times and note)")
    };
    RecordProblem {
        position: r.position,
        record_id: r.vendor_id.then(|| r.record_id.to_owned()),
        kind: ProblemKind::Invalid,
        reason,
    }
}

/// Groups rows that were sorted in memory: the arena is the store, read in place.
fn group_in_arena(
    run: &Run,
    arena: crate::usage::sort::Arena,
    infos: &[GroupInfo],
    problems: &mut Problems,
    out: &Groups,
) -> Result<(), PlaceError> {
    let per_file = run.options.per_file();
    let mut keep: Vec<u32> = Vec::with_capacity(arena.len());
    // (group, chunker) of the groups seen, in order.
    let mut chunkers: Vec<(u32, Chunker, u64)> = Vec::new();
    let mut last = LastKept::default();
    for i in 0..arena.len() {
        let frame = arena.frame(i);
        if !last.keeps(frame, problems)? {
            continue;
        }
        let group = row::frame_group(frame);
        if chunkers.last().is_none_or(|(g, ..)| *g != group) {
            chunkers.push((group, Chunker::new(per_file), keep.len() as u64));
        }
        let before = keep.len() as u64;
        keep.push(i as u32);
        if let Some((_, c, _)) = chunkers.last_mut() {
            // Not aggregated: one record a row.
            c.push(1, before, before + 1);
        }
    }
    let marks: Vec<u64> = chunkers
        .iter()
        .skip(1)
        .map(|(_, _, start)| *start)
        .chain(std::iter::once(keep.len() as u64))
        .collect();
    let store = Arc::new(Store::Arena { arena, keep });
    let mut ready: Vec<((u32, Chunker, u64), u64)> = chunkers.into_iter().zip(marks).collect();
    // The largest groups first: two writers finish together instead of one waiting on the
    // last big workbook.
    ready.sort_by_key(|((_, c, _), _)| std::cmp::Reverse(c.count()));
    for ((g, c, _), end) in ready {
        if let Some(info) = infos.get(g as usize) {
            // A closed receiver means the run stopped: nothing more to hand over.
            let _ = out.send(GroupData {
                info: info.clone(),
                rows: c.finish(&store, end),
            });
        }
    }
    Ok(())
}

/// Groups rows from a merge of sorted runs (or any sorted stream) into a file, summing them
/// per window when aggregating.
/// Returns the size of the groups' file.
fn group_to_file(
    run: &Run,
    mut sorted: Sorted,
    infos: &[GroupInfo],
    problems: &mut Problems,
    groups: &Groups,
) -> Result<u64, PlaceError> {
    let options = &run.options;
    let per_file = options.per_file();
    let path = run.work.new_file("groups", "bin");
    let store = Arc::new(Store::File { path: path.clone() });
    let mut out = FrameWriter::create(path)?;
    let mut current: Option<(u32, Chunker, Option<Aggregator>)> = None;
    let mut last = LastKept::default();
    let mut frame = Vec::with_capacity(256);
    // Ends a group: writes its aggregated rows, if any, and hands it over to be reported while
    // the next groups are merged (its rows are flushed to the file first).
    let close = |group: u32,
                 mut chunker: Chunker,
                 aggregator: Option<Aggregator>,
                 out: &mut FrameWriter,
                 frame: &mut Vec<u8>,
                 problems: &mut Problems|
     -> std::io::Result<()> {
        if let Some(a) = aggregator {
            let (rows, bad) = a.finish();
            for b in bad {
                problems.add_many(
                    RecordProblem {
                        position: b.position,
                        record_id: None,
                        kind: ProblemKind::Invalid,
                        reason: b.reason,
                    },
                    b.records as usize,
                );
            }
            for agg in &rows {
                let r = agg.row(group);
                let before = out.offset();
                frame.clear();
                row::encode(&r, frame);
                out.write(frame)?;
                chunker.push(r.sums, before, out.offset());
            }
        }
        out.flush()?;
        if chunker.count() > 0
            && let Some(info) = infos.get(group as usize)
        {
            let _ = groups.send(GroupData {
                info: info.clone(),
                rows: chunker.finish(&store, out.offset()),
            });
        }
        Ok(())
    };
    while let Some(f) = sorted.next_frame()? {
        if !last.keeps(f, problems)? {
            continue;
        }
        let r = row::decode(f)?;
        if current.as_ref().is_none_or(|(g, ..)| *g != r.group) {
            if let Some((g, c, a)) = current.take() {
                close(g, c, a, &mut out, &mut frame, problems)?;
            }
            if groups.is_closed() {
                // The run stopped (interrupted, or failed): nobody reports the rest.
                return Ok(out.offset());
            }
            let aggregator = (options.aggregation != Aggregation::None)
                .then(|| Aggregator::new(options.aggregation, options.period));
            current = Some((r.group, Chunker::new(per_file), aggregator));
        }
        let Some((_, chunker, aggregator)) = current.as_mut() else {
            continue;
        };
        match aggregator {
            Some(a) => a.add(&r),
            None => {
                let before = out.offset();
                out.write(f)?;
                chunker.push(r.sums, before, out.offset());
            }
        }
    }
    if let Some((g, c, a)) = current.take() {
        close(g, c, a, &mut out, &mut frame, problems)?;
    }
    let size = out.offset();
    out.finish()?;
    Ok(size)
}
