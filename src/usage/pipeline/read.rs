//! Phase 1, read: every record of the month from the source, once, into a spool file of the
//! work directory, in a compact form (the subscription as a number, times as seconds). Records
//! the source could not read are counted and sampled, never dropped. The subscriptions named
//! are kept in memory: the catalog is loaded for them, and there are as many as the vendor has
//! subscriptions, not records.
//!
//! The source hands over batches on the runtime; a blocking thread of its own encodes and
//! writes them, so reading, parsing (in the source) and spooling overlap.

use std::collections::HashMap;
use std::path::PathBuf;

use futures_util::TryStreamExt;
use tokio::sync::mpsc;
use tracing::info;

use super::problems::Problems;
use super::{Run, RunError};
use crate::usage::record::{Position, SourceItem, VendorRecord};
use crate::usage::row::{Cursor, FrameError, put_opt_str, put_str, put_varint, unzigzag, zigzag};
use crate::usage::sort::{FrameReader, FrameWriter};
use crate::usage::source::UsageSource;
use crate::usage::summary::RecordProblem;
use crate::usage::validate::ProblemKind;

/// How often reading logs its progress.
const PROGRESS_EVERY: usize = 500_000;

/// The month as read.
#[derive(Debug)]
pub(super) struct Spool {
    pub path: PathBuf,
    pub end: u64,
    /// Items read from the source, good and bad.
    pub records: usize,
    /// Subscriptions named, by the number records carry.
    pub subscriptions: Vec<String>,
    /// The records the source could not read.
    pub problems: Problems,
}

/// A spooled record, borrowed from its frame.
#[derive(Debug, Clone, Copy)]
pub(super) struct Spooled<'a> {
    pub position: Position,
    pub subscription: u32,
    pub item_mpn: &'a str,
    pub quantity: &'a str,
    pub start: i64,
    pub end: i64,
    pub record_id: Option<&'a str>,
    pub note: Option<&'a str>,
    pub category: Option<&'a str>,
}

fn encode(r: &VendorRecord, subscription: u32, out: &mut Vec<u8>) {
    put_varint(out, r.position.ordinal);
    put_varint(out, r.position.line.map_or(0, |l| l + 1));
    put_varint(out, u64::from(subscription));
    put_str(out, &r.item_mpn);
    put_str(out, r.quantity.as_str());
    put_varint(out, zigzag(r.start.timestamp()));
    put_varint(out, zigzag(r.end.timestamp()));
    put_opt_str(out, r.record_id.as_deref());
    put_opt_str(out, r.note.as_deref());
    put_opt_str(out, r.category.as_deref());
}

pub(super) fn decode(frame: &[u8]) -> Result<Spooled<'_>, FrameError> {
    let mut c = Cursor::new(frame);
    let ordinal = c.varint()?;
    let line = match c.varint()? {
        0 => None,
        n => Some(n - 1),
    };
    Ok(Spooled {
        position: Position { ordinal, line },
        subscription: c.varint()? as u32,
        item_mpn: c.str()?,
        quantity: c.str()?,
        start: unzigzag(c.varint()?),
        end: unzigzag(c.varint()?),
        record_id: c.opt_str()?,
        note: c.opt_str()?,
        category: c.opt_str()?,
    })
}

impl Spool {
    /// Reads the spool back, frame by frame.
    pub fn reader(&self) -> std::io::Result<FrameReader> {
        FrameReader::open(&self.path, 0, self.end)
    }
}

/// What the spooling thread keeps.
struct Writer {
    out: FrameWriter,
    ids: HashMap<String, u32>,
    names: Vec<String>,
    problems: Problems,
    records: usize,
    frame: Vec<u8>,
}

impl Writer {
    fn take(&mut self, batch: Vec<SourceItem>) -> std::io::Result<()> {
        for item in batch {
            self.records += 1;
            match item {
                SourceItem::Record(r) => {
                    let n = match self.ids.get(r.subscription.as_str()) {
                        Some(&n) => n,
                        None => {
                            let n = self.names.len() as u32;
                            self.names.push(r.subscription.clone());
                            self.ids.insert(r.subscription.clone(), n);
                            n
                        }
                    };
                    self.frame.clear();
                    encode(&r, n, &mut self.frame);
                    self.out.write(&self.frame)?;
                }
                SourceItem::Rejected(r) => self.problems.add(RecordProblem {
                    position: r.position,
                    record_id: r.record_id,
                    kind: ProblemKind::Invalid,
                    reason: r.reason,
                }),
            }
            if self.records.is_multiple_of(PROGRESS_EVERY) {
                info!(records = self.records, "reading usage");
            }
        }
        Ok(())
    }
}

/// Reads the month into the spool.
pub(super) async fn read(run: &Run, source: &dyn UsageSource) -> Result<Spool, RunError> {
    let path = run.work.new_file("spool", "bin");
    let out = FrameWriter::create(path).map_err(|e| RunError::work(&run.work, e))?;
    let (tx, mut rx) = mpsc::channel::<Vec<SourceItem>>(4);
    let spooling = tokio::task::spawn_blocking(move || {
        let mut w = Writer {
            out,
            ids: HashMap::new(),
            names: Vec::new(),
            problems: Problems::default(),
            records: 0,
            frame: Vec::with_capacity(256),
        };
        while let Some(batch) = rx.blocking_recv() {
            w.take(batch)?;
        }
        let end = w.out.offset();
        let path = w.out.finish()?;
        Ok::<Spool, std::io::Error>(Spool {
            path,
            end,
            records: w.records,
            subscriptions: w.names,
            problems: w.problems,
        })
    });
    let mut batches = source.records(run.options.period);
    let forwarded: Result<(), RunError> = async {
        while let Some(batch) = batches.try_next().await? {
            if tx.send(batch).await.is_err() {
                // The spooling thread stopped: its error says why.
                break;
            }
        }
        Ok(())
    }
    .await;
    drop(tx);
    let spooled = spooling
        .await
        .map_err(|e| RunError::work(&run.work, format!("the spooling thread failed: {e}")))?;
    forwarded?;
    let spool = spooled.map_err(|e| RunError::work(&run.work, e))?;
    info!(
        records = spool.records,
        subscriptions = spool.subscriptions.len(),
        spool_bytes = spool.end,
        "usage read"
    );
    Ok(spool)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::record::Quantity;

    #[test]
    fn spooled_records_read_back() {
        let r = VendorRecord {
            position: Position {
                ordinal: 12,
                line: Some(13),
            },
            subscription: "AS-1".into(),
            item_mpn: "MPN".into(),
            quantity: Quantity::parse("2.50").expect("q"),
            start: chrono::DateTime::from_timestamp(1_711_929_600, 0).expect("t"),
            end: chrono::DateTime::from_timestamp(1_711_933_200, 0).expect("t"),
            record_id: None,
            note: Some("n".into()),
            category: Some("c".into()),
        };
        let mut buf = Vec::new();
        encode(&r, 7, &mut buf);
        let s = decode(&buf).expect("decodes");
        assert_eq!(s.position, r.position);
        assert_eq!(s.subscription, 7);
        assert_eq!((s.item_mpn, s.quantity), ("MPN", "2.5"));
        assert_eq!((s.start, s.end), (1_711_929_600, 1_711_933_200));
        assert_eq!(
            (s.record_id, s.note, s.category),
            (None, Some("n"), Some("c"))
        );
        assert!(decode(&buf[..buf.len() - 1]).is_err());
    }
}
