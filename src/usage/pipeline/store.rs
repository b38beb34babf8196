//! Where each group's rows wait, in record id order, between the sort and the workbooks: in
//! the sorter's own arena when the month fitted in memory (read in place, no copy), else in a
//! file of the work directory. A group's rows, and each of its chunks (the rows one file takes),
//! are spans of that store, read as often as needed: to compare with what Connect holds, then
//! to write a workbook.

use std::path::PathBuf;
use std::sync::Arc;

use crate::usage::identity::{ContentDigest, group_digest};
use crate::usage::row::{self, FrameError, Row};
use crate::usage::sort::{Arena, FrameReader};

/// A failure reading rows back.
#[derive(Debug, thiserror::Error)]
pub(super) enum RowsError {
    #[error("cannot read the run's work files: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Rows of all groups.
#[derive(Debug)]
pub(super) enum Store {
    /// The sorted arena, and the frames kept (duplicates left out), in order.
    Arena { arena: Arena, keep: Vec<u32> },
    /// A file of length-prefixed frames.
    File { path: PathBuf },
}

/// A span of the store: arena positions (of `keep`), or byte offsets of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub from: u64,
    pub to: u64,
}

/// Some rows, in order.
#[derive(Debug, Clone)]
pub(super) struct Rows {
    store: Arc<Store>,
    span: Span,
}

impl Rows {
    pub fn new(store: Arc<Store>, span: Span) -> Rows {
        Rows { store, span }
    }

    /// Calls `f` with each row, in order.
    pub fn each<E: From<RowsError>>(
        &self,
        mut f: impl FnMut(&Row<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        match &*self.store {
            Store::Arena { arena, keep } => {
                for &i in &keep[self.span.from as usize..self.span.to as usize] {
                    let r = row::decode(arena.frame(i as usize)).map_err(RowsError::from)?;
                    f(&r)?;
                }
            }
            Store::File { path } => {
                let mut reader = FrameReader::open(path, self.span.from, self.span.to)
                    .map_err(RowsError::from)?;
                while let Some(frame) = reader.next_frame().map_err(RowsError::from)? {
                    let r = row::decode(frame).map_err(RowsError::from)?;
                    f(&r)?;
                }
            }
        }
        Ok(())
    }
}

/// One file's worth of a group's rows.
#[derive(Debug, Clone)]
pub(super) struct Chunk {
    pub rows: Rows,
    /// Rows in it.
    pub count: usize,
    /// Vendor records its rows stand for (more than rows when aggregated).
    pub vendor_records: u64,
    /// The digest of its rows (64 hex digits), once [`Chunked::digested`].
    pub digest: String,
}

/// Rows in id order, cut into chunks as they are written: counts and spans of the whole and of
/// each chunk. Marks are positions in the store (arena positions or byte offsets). No digest
/// yet: the pass that stores rows is one thread for the whole month, and digests are worked
/// out group by group, on as many threads as there are groups at work ([`Chunked::digested`]).
#[derive(Clone)]
pub(super) struct Chunker {
    per_file: usize,
    count: usize,
    vendor_records: u64,
    current: Option<(u64, usize, u64)>,
    done: Vec<(Span, usize, u64)>,
}

impl Chunker {
    pub fn new(per_file: usize) -> Chunker {
        Chunker {
            per_file: per_file.max(1),
            count: 0,
            vendor_records: 0,
            current: None,
            done: Vec::new(),
        }
    }

    /// A row written between `before` and `after`, standing for `sums` vendor records.
    pub fn push(&mut self, sums: u32, before: u64, after: u64) {
        self.count += 1;
        self.vendor_records += u64::from(sums);
        let current = self.current.get_or_insert((before, 0, 0));
        current.1 += 1;
        current.2 += u64::from(sums);
        if current.1 == self.per_file
            && let Some((start, n, vendor)) = self.current.take()
        {
            self.done.push((
                Span {
                    from: start,
                    to: after,
                },
                n,
                vendor,
            ));
        }
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// The group: all its rows (from its first mark to `end`) and its chunks.
    pub fn finish(mut self, store: &Arc<Store>, end: u64) -> Chunked {
        if let Some((start, n, vendor)) = self.current.take() {
            self.done.push((
                Span {
                    from: start,
                    to: end,
                },
                n,
                vendor,
            ));
        }
        let from = self.done.first().map_or(end, |(s, ..)| s.from);
        Chunked {
            all: Rows::new(store.clone(), Span { from, to: end }),
            count: self.count,
            vendor_records: self.vendor_records,
            digest: String::new(),
            chunks: self
                .done
                .into_iter()
                .map(|(span, count, vendor_records)| Chunk {
                    rows: Rows::new(store.clone(), span),
                    count,
                    vendor_records,
                    digest: String::new(),
                })
                .collect(),
        }
    }
}

/// A group's rows, whole and cut into chunks.
#[derive(Debug, Clone)]
pub(super) struct Chunked {
    pub all: Rows,
    pub count: usize,
    pub vendor_records: u64,
    /// The group's digest ([`group_digest`] of its chunks' digests), once
    /// [`digested`](Self::digested).
    pub digest: String,
    pub chunks: Vec<Chunk>,
}

impl Chunked {
    /// The same rows with the digests of each chunk and of the whole: one pass over them.
    pub fn digested(mut self) -> Result<Chunked, RowsError> {
        for chunk in &mut self.chunks {
            let mut d = ContentDigest::new();
            chunk.rows.each(|r| {
                d.add(r);
                Ok::<(), RowsError>(())
            })?;
            chunk.digest = d.finish();
        }
        let digests: Vec<&str> = self.chunks.iter().map(|c| c.digest.as_str()).collect();
        self.digest = group_digest(&digests);
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::record::Position;
    use crate::usage::sort::FrameWriter;
    use crate::usage::workdir::WorkDir;

    fn row(id: &str) -> Row<'_> {
        Row {
            group: 0,
            record_id: id,
            position: Position {
                ordinal: 1,
                line: None,
            },
            asset_id: "AS-1",
            item_mpn: "M",
            quantity: "1",
            start: 0,
            end: 1,
            note: None,
            category: None,
            vendor_id: true,
            precision: 0,
            sums: 2,
            tag: 0,
        }
    }

    #[test]
    fn rows_are_cut_into_chunks_with_their_digests() {
        let dir = WorkDir::create(&std::env::temp_dir().join("cu-store-test")).expect("dir");
        let path = dir.new_file("rows", "bin");
        let mut w = FrameWriter::create(path.clone()).expect("create");
        let mut chunker = Chunker::new(3);
        let ids: Vec<String> = (0..7).map(|i| format!("r-{i}")).collect();
        let mut frame = Vec::new();
        for id in &ids {
            let before = w.offset();
            frame.clear();
            row::encode(&row(id), &mut frame);
            w.write(&frame).expect("write");
            chunker.push(row(id).sums, before, w.offset());
        }
        let end = w.offset();
        w.finish().expect("finish");
        let store = Arc::new(Store::File { path });
        let g = chunker.finish(&store, end).digested().expect("digests");
        assert_eq!((g.count, g.vendor_records), (7, 14));
        assert_eq!(
            g.chunks.iter().map(|c| c.count).collect::<Vec<_>>(),
            [3, 3, 1]
        );
        let read = |rows: &Rows| {
            let mut out = Vec::new();
            rows.each(|r| {
                out.push(r.record_id.to_owned());
                Ok::<(), RowsError>(())
            })
            .expect("reads");
            out
        };
        assert_eq!(read(&g.all), ids);
        assert_eq!(read(&g.chunks[1].rows), ["r-3", "r-4", "r-5"]);
        assert_eq!(read(&g.chunks[2].rows), ["r-6"]);
        let mut d = ContentDigest::new();
        for id in &ids[3..6] {
            d.add(&row(id));
        }
        assert_eq!(g.chunks[1].digest, d.finish());
        let chunks: Vec<&str> = g.chunks.iter().map(|c| c.digest.as_str()).collect();
        assert_eq!(g.digest, group_digest(&chunks));
    }
}
