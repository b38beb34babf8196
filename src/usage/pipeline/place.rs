//! Phase 2, place: load the catalog for the subscriptions read, check every spooled record and
//! place it in its (contract, product) group with its record id (the vendor's, or one derived
//! from its content), then sort all placed records by group and id. The sorted stream brings
//! each group's records together: duplicate ids meet there and all but the first in the source
//! are refused; rows are summed per window when aggregating; and each group's rows are stored
//! in id order, counted and digested, whole and per chunk (the rows one file takes).

use std::collections::HashMap;
use std::sync::Arc;

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

/// The month placed.
#[derive(Debug)]
pub(super) struct Placed {
    pub catalog: Catalog,
    pub groups: Vec<GroupData>,
}

/// A failure inside the blocking part of the phase.
#[derive(Debug, thiserror::Error)]
enum PlaceError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Frame(#[from] crate::usage::row::FrameError),
}

/// Places the spooled month.
pub(super) async fn place(
    run: &Arc<Run>,
    spool: Spool,
    problems: &mut Problems,
) -> Result<Placed, RunError> {
    let catalog = Catalog::load(&run.client, spool.subscriptions.iter().cloned())
        .await
        .map_err(RunError::Catalog)?;
    info!(
        contracts = catalog.contracts.len(),
        assets = catalog.assets.len(),
        products = catalog.products.len(),
        "catalog loaded"
    );
    let run2 = run.clone();
    let mut found = std::mem::take(problems);
    let done = tokio::task::spawn_blocking(move || {
        let groups = place_all(&run2, &spool, &catalog, &mut found);
        (groups, catalog, found)
    })
    .await
    .map_err(|e| RunError::work(&run.work, format!("the placing thread failed: {e}")))?;
    let (groups, catalog, found) = done;
    *problems = found;
    let groups = groups.map_err(|e| RunError::work(&run.work, e))?;
    Ok(Placed { catalog, groups })
}

fn place_all(
    run: &Run,
    spool: &Spool,
    catalog: &Catalog,
    problems: &mut Problems,
) -> Result<Vec<GroupData>, PlaceError> {
    let options = &run.options;
    let period = options.period;
    let rules = Rules {
        aggregated: options.aggregation != Aggregation::None,
    };
    let mut placer = Placer::new(catalog, period, rules);
    let mut sorter = Sorter::new(row::cmp_frames, options.sort_memory);
    let mut infos: Vec<GroupInfo> = Vec::new();
    let mut group_of: HashMap<(&str, &str), u32> = HashMap::new();
    let mut reader = spool.reader()?;
    let mut frame = Vec::with_capacity(256);
    let mut derived: String;
    while let Some(spooled) = reader.next_frame()? {
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
    let placed = sorter.frames();
    let in_memory = sorter.in_memory();
    let sorted = sorter.finish()?;
    info!(
        records = placed,
        groups = infos.len(),
        in_memory,
        "usage placed and sorted"
    );
    let groups = if options.aggregation == Aggregation::None {
        match sorted.into_arena() {
            Ok(arena) => group_in_arena(run, arena, &infos, problems)?,
            Err(sorted) => group_to_file(run, sorted, &infos, problems)?,
        }
    } else {
        group_to_file(run, sorted, &infos, problems)?
    };
    Ok(groups)
}

/// The first record of an id seen so far in its group, for duplicates to name.
struct First {
    group: u32,
    id: String,
    position: Position,
}

impl First {
    /// Remembers `r` as the first of its id, reusing the memory of the one before.
    fn set(first: &mut Option<First>, r: &Row<'_>) {
        match first {
            Some(f) => {
                f.group = r.group;
                f.id.clear();
                f.id.push_str(r.record_id);
                f.position = r.position;
            }
            None => {
                *first = Some(First {
                    group: r.group,
                    id: r.record_id.to_owned(),
                    position: r.position,
                })
            }
        }
    }

    /// Whether `r` repeats this record's id in its group: then it is refused, its reason added.
    fn refuses(&self, r: &Row<'_>, problems: &mut Problems) -> bool {
        if self.group != r.group || self.id != r.record_id {
            return false;
        }
        let reason = if r.vendor_id {
            format!(
                "record_id {:?} is already used by {}",
                r.record_id, self.position
            )
        } else {
            format!(
                "the same record as {} (same subscription, item, quantity, times and note)",
                self.position
            )
        };
        problems.add(RecordProblem {
            position: r.position,
            record_id: r.vendor_id.then(|| r.record_id.to_owned()),
            kind: ProblemKind::Invalid,
            reason,
        });
        true
    }
}

/// Groups rows that were sorted in memory: the arena is the store, read in place.
fn group_in_arena(
    run: &Run,
    arena: crate::usage::sort::Arena,
    infos: &[GroupInfo],
    problems: &mut Problems,
) -> Result<Vec<GroupData>, PlaceError> {
    let per_file = run.options.per_file();
    let mut keep: Vec<u32> = Vec::with_capacity(arena.len());
    // (group, chunker) of the groups seen, in order.
    let mut chunkers: Vec<(u32, Chunker, u64)> = Vec::new();
    let mut first: Option<First> = None;
    for i in 0..arena.len() {
        let r = row::decode(arena.frame(i))?;
        if first.as_ref().is_some_and(|f| f.refuses(&r, problems)) {
            continue;
        }
        First::set(&mut first, &r);
        if chunkers.last().is_none_or(|(g, ..)| *g != r.group) {
            chunkers.push((r.group, Chunker::new(per_file), keep.len() as u64));
        }
        let before = keep.len() as u64;
        keep.push(i as u32);
        if let Some((_, c, _)) = chunkers.last_mut() {
            c.push(&r, before, before + 1);
        }
    }
    let marks: Vec<u64> = chunkers
        .iter()
        .skip(1)
        .map(|(_, _, start)| *start)
        .chain(std::iter::once(keep.len() as u64))
        .collect();
    let store = Arc::new(Store::Arena { arena, keep });
    Ok(chunkers
        .into_iter()
        .zip(marks)
        .filter_map(|((g, c, _), end)| {
            Some(GroupData {
                info: infos.get(g as usize)?.clone(),
                rows: c.finish(&store, end),
            })
        })
        .collect())
}

/// Groups rows from a merge of sorted runs (or any sorted stream) into a file, summing them
/// per window when aggregating.
fn group_to_file(
    run: &Run,
    mut sorted: Sorted,
    infos: &[GroupInfo],
    problems: &mut Problems,
) -> Result<Vec<GroupData>, PlaceError> {
    let options = &run.options;
    let per_file = options.per_file();
    let mut out = FrameWriter::create(run.work.new_file("groups", "bin"))?;
    let mut done: Vec<(u32, Chunker, u64)> = Vec::new();
    let mut current: Option<(u32, Chunker, Option<Aggregator>)> = None;
    let mut first: Option<First> = None;
    let mut frame = Vec::with_capacity(256);
    // Ends a group: writes its aggregated rows, if any.
    let close = |group: u32,
                 mut chunker: Chunker,
                 aggregator: Option<Aggregator>,
                 out: &mut FrameWriter,
                 frame: &mut Vec<u8>,
                 problems: &mut Problems,
                 done: &mut Vec<(u32, Chunker, u64)>|
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
                chunker.push(&r, before, out.offset());
            }
        }
        done.push((group, chunker, out.offset()));
        Ok(())
    };
    while let Some(f) = sorted.next_frame()? {
        let r = row::decode(f)?;
        if first.as_ref().is_some_and(|f| f.refuses(&r, problems)) {
            continue;
        }
        First::set(&mut first, &r);
        if current.as_ref().is_none_or(|(g, ..)| *g != r.group) {
            if let Some((g, c, a)) = current.take() {
                close(g, c, a, &mut out, &mut frame, problems, &mut done)?;
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
                chunker.push(&r, before, out.offset());
            }
        }
    }
    if let Some((g, c, a)) = current.take() {
        close(g, c, a, &mut out, &mut frame, problems, &mut done)?;
    }
    let path = out.finish()?;
    let store = Arc::new(Store::File { path });
    Ok(done
        .into_iter()
        .filter(|(_, c, _)| c.count() > 0)
        .filter_map(|(g, c, end)| {
            Some(GroupData {
                info: infos.get(g as usize)?.clone(),
                rows: c.finish(&store, end),
            })
        })
        .collect())
}
