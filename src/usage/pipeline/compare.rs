//! What the group's submitted (and held) files hold, against the vendor's records today.
//!
//! Each file's rows are read back from the workbook Connect holds for it (its
//! `usage_file_uri`: Connect's records API does not carry the vendor's record ids), sorted by
//! record id on the work directory, and walked side by side with the group's own rows, which
//! are already in id order:
//! - an id only the vendor's data has is this run's to send (written to a new row store, cut
//!   into chunks);
//! - an id a submitted file holds with the same usage is reported; with other usage (quantity,
//!   times, item or asset) it is a conflict: not sent again, listed for a person;
//! - an id a held file (rejected, or kept in a rerun) holds is left to that file;
//! - an id only the files hold was withdrawn from the vendor's data since: counted, left.

use std::sync::Arc;

use super::files::{GroupCtx, GroupError};
use super::store::{Chunked, Chunker, RowsError, Store};
use crate::usage::record::Position;
use crate::usage::reported::{self, ReportedRow};
use crate::usage::row::{self, Row};
use crate::usage::sort::{FrameWriter, Sorter};
use crate::usage::summary::{Conflict, SAMPLES, UsageValues};
use crate::usage::workbook::format_time;
use connect_client::models::UsageFile;

/// The comparison's result.
#[derive(Debug)]
pub(super) struct Compared {
    /// The vendor's records no file holds, in id order.
    pub rest: Chunked,
    /// Vendor records submitted files hold with the same usage.
    pub reported: usize,
    /// Vendor records held files hold.
    pub held: usize,
    /// Vendor records whose usage differs from what was reported.
    pub conflicts: usize,
    /// The first conflicts by record id.
    pub samples: Vec<Conflict>,
    /// Rows the files hold that the vendor's data no longer has.
    pub withdrawn: usize,
}

/// A time not known (unreadable in a workbook made by hand).
const NO_TIME: i64 = i64::MIN;

/// The tag of rows of held files.
const HELD: u8 = 1;

fn failed(e: impl std::fmt::Display) -> GroupError {
    GroupError::failed(e.to_string())
}

impl From<RowsError> for GroupError {
    fn from(e: RowsError) -> GroupError {
        failed(e)
    }
}

/// Compares the group's rows with what `files` hold (`true`: submitted, else held).
pub(super) async fn compare(
    ctx: &GroupCtx,
    rows: &Chunked,
    files: &[(&UsageFile, bool)],
) -> Result<Compared, GroupError> {
    let run = &ctx.run;
    let _one = run
        .compares
        .acquire()
        .await
        .map_err(|e| failed(format!("the run's comparisons are gone: {e}")))?;
    let mut downloaded = Vec::with_capacity(files.len());
    for (f, sealed) in files {
        // The list leaves the links out: the file itself has them.
        let detail = run.client.usage_file(&f.id).await.map_err(failed)?;
        let Some(link) = detail.usage_file_uri.as_deref().filter(|l| !l.is_empty()) else {
            return Err(GroupError::failed(format!(
                "Connect gives no link to the workbook of usage file {} ({}), so what it holds cannot be compared with the vendor's records",
                f.id, f.status
            )));
        };
        let path = run.work.new_file("reported", "xlsx");
        run.client
            .download_link(link, &path)
            .await
            .map_err(|e| failed(format!("cannot read back usage file {}: {e}", f.id)))?;
        downloaded.push((path, f.id.clone(), *sealed));
    }
    let ctx_run = run.clone();
    let rows = rows.clone();
    let contract = ctx.info.contract.clone();
    let product = ctx.info.product.clone();
    tokio::task::spawn_blocking(move || join(&ctx_run, &rows, &downloaded, &contract, &product))
        .await
        .map_err(|e| failed(format!("the comparing thread failed: {e}")))?
}

/// A reported row as a row frame: group 0; its position is the file (high 32 bits) and the
/// spreadsheet row (low).
fn reported_frame(r: &ReportedRow, file: usize, held: bool, out: &mut Vec<u8>) {
    out.clear();
    row::encode(
        &Row {
            group: 0,
            record_id: &r.record_id,
            position: Position {
                ordinal: ((file as u64) << 32) | u64::from(r.row),
                line: None,
            },
            asset_id: &r.asset,
            item_mpn: &r.item,
            quantity: &r.quantity,
            start: r.start.unwrap_or(NO_TIME),
            end: r.end.unwrap_or(NO_TIME),
            note: r.note.as_deref(),
            category: r.category.as_deref(),
            vendor_id: true,
            precision: 0,
            sums: 1,
            tag: if held { HELD } else { 0 },
        },
        out,
    );
}

fn values(r: &Row<'_>) -> UsageValues {
    let time = |t: i64| {
        if t == NO_TIME {
            "?".to_owned()
        } else {
            format_time(t, &mut [0u8; 19]).to_owned()
        }
    };
    UsageValues {
        asset_id: r.asset_id.to_owned(),
        item_mpn: r.item_mpn.to_owned(),
        quantity: r.quantity.to_owned(),
        start_time: time(r.start),
        end_time: time(r.end),
    }
}

fn join(
    run: &super::Run,
    rows: &Chunked,
    downloaded: &[(std::path::PathBuf, String, bool)],
    contract: &str,
    product: &str,
) -> Result<Compared, GroupError> {
    let work = |e: std::io::Error| failed(format!("cannot use the run's work files: {e}"));
    // A quarter of the budget: the month's own rows may still take the rest.
    let mut sorter = Sorter::new(row::ORDER, run.options.sort_memory / 4);
    let mut frame = Vec::with_capacity(256);
    for (index, (path, id, sealed)) in downloaded.iter().enumerate() {
        let unreadable = |e: reported::ReportedError| {
            failed(format!("cannot read the workbook of usage file {id}: {e}"))
        };
        let mut book = reported::open(path).map_err(unreadable)?;
        let mut reader = book.rows().map_err(unreadable)?;
        while let Some(r) = reader.next().map_err(unreadable)? {
            if r.record_id.is_empty() {
                continue;
            }
            reported_frame(&r, index, !sealed, &mut frame);
            sorter.push(&frame, &run.work).map_err(work)?;
        }
    }
    let mut fixed = sorter.finish().map_err(work)?;
    // The current reported row, owned (the sorted stream lends one frame at a time).
    let mut head: Option<Vec<u8>> = fixed.next_frame().map_err(work)?.map(<[u8]>::to_vec);
    let mut advance = |head: &mut Option<Vec<u8>>| -> Result<(), GroupError> {
        *head = fixed.next_frame().map_err(work)?.map(<[u8]>::to_vec);
        Ok(())
    };
    let mut out = FrameWriter::create(run.work.new_file("rest", "bin")).map_err(work)?;
    let mut chunker = Chunker::new(run.options.per_file());
    let mut result = Tally::default();
    rows.all
        .each(|current: &Row<'_>| -> Result<(), GroupError> {
            // Reported ids before this one are no longer in the vendor's data.
            while let Some(h) = head.as_deref() {
                if row::decode(h).map_err(failed)?.record_id >= current.record_id {
                    break;
                }
                result.withdrawn += 1;
                advance(&mut head)?;
            }
            let matched = match head.as_deref() {
                Some(h) => {
                    let reported = row::decode(h).map_err(failed)?;
                    (reported.record_id == current.record_id).then(|| {
                        let same = reported.same_usage(current);
                        let held = reported.tag == HELD;
                        let sample = (!same && !held).then(|| Conflict {
                            contract: contract.to_owned(),
                            product: product.to_owned(),
                            record_id: current.record_id.to_owned(),
                            file_id: downloaded
                                .get((reported.position.ordinal >> 32) as usize)
                                .map_or_else(String::new, |(_, id, _)| id.clone()),
                            reported: values(&reported),
                            current: values(current),
                        });
                        (held, same, sample)
                    })
                }
                None => None,
            };
            match matched {
                None => {
                    let before = out.offset();
                    frame.clear();
                    row::encode(current, &mut frame);
                    out.write(&frame).map_err(work)?;
                    chunker.push(current.sums, before, out.offset());
                    return Ok(());
                }
                Some((true, _, _)) => result.held += current.sums as usize,
                Some((false, true, _)) => result.reported += current.sums as usize,
                Some((false, false, sample)) => {
                    result.conflicts += current.sums as usize;
                    if result.samples.len() < SAMPLES
                        && let Some(s) = sample
                    {
                        result.samples.push(s);
                    }
                }
            }
            // The same id twice in the files (uploads by hand): the first stands.
            let id = current.record_id;
            loop {
                advance(&mut head)?;
                let Some(h) = head.as_deref() else { break };
                if row::decode(h).map_err(failed)?.record_id != id {
                    break;
                }
            }
            Ok(())
        })?;
    while head.is_some() {
        result.withdrawn += 1;
        advance(&mut head)?;
    }
    let end = out.offset();
    let path = out.finish().map_err(work)?;
    Ok(Compared {
        rest: chunker
            .finish(&Arc::new(Store::File { path }), end)
            .digested()?,
        reported: result.reported,
        held: result.held,
        conflicts: result.conflicts,
        samples: result.samples,
        withdrawn: result.withdrawn,
    })
}

/// Counts kept while walking.
#[derive(Default)]
struct Tally {
    reported: usize,
    held: usize,
    conflicts: usize,
    samples: Vec<Conflict>,
    withdrawn: usize,
}
