//! The records a run does not send, counted, with the first [`SAMPLES`] of each kind by
//! position kept to show, whatever order they are found in: memory stays bounded however many
//! records are bad.

use std::collections::BinaryHeap;

use crate::usage::summary::{RecordProblem, SAMPLES};
use crate::usage::validate::ProblemKind;

#[derive(Debug, Default, Clone)]
pub(super) struct Problems {
    invalid: BinaryHeap<ByPosition>,
    unplaceable: BinaryHeap<ByPosition>,
    invalid_count: usize,
    unplaceable_count: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
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

impl Problems {
    /// One record not sent.
    pub(super) fn add(&mut self, p: RecordProblem) {
        self.add_many(p, 1);
    }

    /// `records` records not sent for one reason (a window of aggregated records), shown once
    /// at the first one's position.
    pub(super) fn add_many(&mut self, p: RecordProblem, records: usize) {
        let (heap, count) = match p.kind {
            ProblemKind::Invalid => (&mut self.invalid, &mut self.invalid_count),
            ProblemKind::Unplaceable => (&mut self.unplaceable, &mut self.unplaceable_count),
        };
        *count += records;
        heap.push(ByPosition(p));
        if heap.len() > SAMPLES {
            // The max-heap drops the latest position.
            heap.pop();
        }
    }

    pub(super) fn invalid_count(&self) -> usize {
        self.invalid_count
    }

    pub(super) fn unplaceable_count(&self) -> usize {
        self.unplaceable_count
    }

    /// The samples of both kinds, in source order.
    pub(super) fn into_sorted(self) -> Vec<RecordProblem> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::record::Position;

    fn problem(ordinal: u64, kind: ProblemKind) -> RecordProblem {
        RecordProblem {
            position: Position {
                ordinal,
                line: None,
            },
            record_id: None,
            kind,
            reason: format!("bad {ordinal}"),
        }
    }

    #[test]
    fn the_first_by_position_are_kept_whatever_the_order() {
        let mut p = Problems::default();
        for i in (1..=100).rev() {
            p.add(problem(i, ProblemKind::Invalid));
        }
        p.add_many(problem(500, ProblemKind::Unplaceable), 7);
        assert_eq!((p.invalid_count(), p.unplaceable_count()), (100, 7));
        let kept = p.into_sorted();
        assert_eq!(kept.len(), SAMPLES + 1);
        assert_eq!(kept[0].position.ordinal, 1);
        assert_eq!(kept[SAMPLES - 1].position.ordinal, SAMPLES as u64);
        assert_eq!(kept[SAMPLES].position.ordinal, 500);
    }
}
