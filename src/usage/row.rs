//! A row of a usage file: a vendor record once it is placed (its record id, asset and group
//! known), or a row read back from a file Connect holds; and its compact binary frame, the one
//! form rows take on the work directory's disk and in the sorter's memory.
//!
//! From the moment a record is placed until its workbook is written it keeps this one shape:
//! times are Unix seconds (UTC) throughout, the quantity is its normalised decimal text. A frame
//! starts with its sort key (group, record id, position), so the sorter orders frames without
//! decoding them whole.

use std::cmp::Ordering;

use sha2::{Digest, Sha256};

use super::record::Position;
use super::sort::{Order, Survey};

/// One row, borrowed from a frame (or built by hand).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row<'a> {
    /// The group (contract and product) it belongs to, an index of the run's.
    pub group: u32,
    pub record_id: &'a str,
    /// Where the (first) vendor record it comes from was in the source.
    pub position: Position,
    pub asset_id: &'a str,
    pub item_mpn: &'a str,
    /// Normalised decimal text (see [`super::record::Quantity`]).
    pub quantity: &'a str,
    /// Seconds since the epoch, UTC.
    pub start: i64,
    pub end: i64,
    pub note: Option<&'a str>,
    pub category: Option<&'a str>,
    /// The record id is the vendor's (not derived from the content).
    pub vendor_id: bool,
    /// Decimal places the item allows (0 to 8): aggregation checks sums against it.
    pub precision: u8,
    /// How many vendor records the row sums (1 unless aggregated).
    pub sums: u32,
    /// A tag the reader of reported rows uses (the file is held, not sealed); 0 otherwise.
    pub tag: u8,
}

impl Row<'_> {
    /// Same record id, quantity, times, item and asset: what the provider was told about it.
    /// Notes and categories are not compared (they do not change what is billed).
    pub fn same_usage(&self, other: &Row<'_>) -> bool {
        self.record_id == other.record_id
            && self.quantity == other.quantity
            && self.start == other.start
            && self.end == other.end
            && self.item_mpn == other.item_mpn
            && self.asset_id == other.asset_id
    }
}

/// `cu-` and 32 hex digits of the SHA-256 of `parts`, each followed by a byte that cannot
/// appear in them (0x1f, unit separator): a record id made from what names the record.
pub fn content_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part.as_bytes());
        h.update([0x1f]);
    }
    let digest = h.finalize();
    let mut id = String::with_capacity(35);
    id.push_str("cu-");
    for b in &digest[..16] {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// A frame that does not decode: the work file is damaged.
#[derive(Debug, thiserror::Error)]
#[error("a work file is damaged (a row frame does not decode at byte {at})")]
pub struct FrameError {
    pub at: usize,
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            put_varint(out, s.len() as u64 + 1);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// Appends the row's frame to `out`.
pub fn encode(row: &Row<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(&row.group.to_be_bytes());
    put_str(out, row.record_id);
    out.extend_from_slice(&row.position.ordinal.to_be_bytes());
    put_varint(out, row.position.line.map_or(0, |l| l + 1));
    put_str(out, row.asset_id);
    put_str(out, row.item_mpn);
    put_str(out, row.quantity);
    put_varint(out, zigzag(row.start));
    put_varint(out, zigzag(row.end));
    put_opt_str(out, row.note);
    put_opt_str(out, row.category);
    out.push(u8::from(row.vendor_id) | (row.tag << 1));
    out.push(row.precision);
    put_varint(out, u64::from(row.sums));
}

/// Reads the parts of a frame in the order they were written.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Cursor<'a> {
        Cursor { buf, at: 0 }
    }

    fn fail(&self) -> FrameError {
        FrameError { at: self.at }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        let end = self.at.checked_add(n).ok_or_else(|| self.fail())?;
        let b = self.buf.get(self.at..end).ok_or_else(|| self.fail())?;
        self.at = end;
        Ok(b)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.bytes(1)?[0])
    }

    pub(crate) fn varint(&mut self) -> Result<u64, FrameError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.fail())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let b = self.bytes(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, FrameError> {
        let n = self.varint()? as usize;
        let at = self.at;
        std::str::from_utf8(self.bytes(n)?).map_err(|_| FrameError { at })
    }

    pub(crate) fn opt_str(&mut self) -> Result<Option<&'a str>, FrameError> {
        match self.varint()? {
            0 => Ok(None),
            n => {
                let at = self.at;
                let b = self.bytes(n as usize - 1)?;
                std::str::from_utf8(b)
                    .map(Some)
                    .map_err(|_| FrameError { at })
            }
        }
    }
}

/// Reads a frame written by [`encode`].
pub fn decode(frame: &[u8]) -> Result<Row<'_>, FrameError> {
    let mut c = Cursor { buf: frame, at: 0 };
    let group = u32::from_be_bytes(c.array()?);
    let record_id = c.str()?;
    let ordinal = u64::from_be_bytes(c.array()?);
    let line = match c.varint()? {
        0 => None,
        n => Some(n - 1),
    };
    let asset_id = c.str()?;
    let item_mpn = c.str()?;
    let quantity = c.str()?;
    let start = unzigzag(c.varint()?);
    let end = unzigzag(c.varint()?);
    let note = c.opt_str()?;
    let category = c.opt_str()?;
    let flags = c.u8()?;
    let precision = c.u8()?;
    let sums = u32::try_from(c.varint()?).map_err(|_| c.fail())?;
    Ok(Row {
        group,
        record_id,
        position: Position { ordinal, line },
        asset_id,
        item_mpn,
        quantity,
        start,
        end,
        note,
        category,
        vendor_id: flags & 1 == 1,
        precision,
        sums,
        tag: flags >> 1,
    })
}

/// The sort key of a frame: its group, record id and position, in that order (bytes, read
/// without decoding the rest).
pub fn key(frame: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let mut c = Cursor { buf: frame, at: 0 };
    let group = c.bytes(4).unwrap_or(&[]);
    let id = c.varint().and_then(|n| c.bytes(n as usize)).unwrap_or(&[]);
    let ordinal = c.bytes(8).unwrap_or(&[]);
    (group, id, ordinal)
}

/// Orders frames by group, then record id (bytewise, which is also the order of the text),
/// then position: duplicates of an id sit side by side, the first in the source first.
pub fn cmp_frames(a: &[u8], b: &[u8]) -> Ordering {
    // Group and a short id decide most comparisons from the first bytes alone.
    key(a).cmp(&key(b))
}

/// The order of row frames, with keys that settle most comparisons (the group, then the
/// record id's bytes after those every id of the sort shares).
pub const ORDER: Order = Order {
    cmp: cmp_frames,
    survey: survey_rows,
    key: row_key,
};

/// Folds one more frame into what the frames of a sort share: leading record id bytes, and
/// whether any group needs more than 16 bits.
fn survey_rows(so_far: Option<Survey>, first: &[u8], frame: &[u8]) -> Survey {
    let (_, first_id, _) = key(first);
    let (_, id, _) = key(frame);
    let shared = first_id.iter().zip(id).take_while(|(x, y)| x == y).count();
    let so_far = so_far.unwrap_or(Survey {
        shared: first_id.len(),
        wide: false,
    });
    Survey {
        shared: so_far.shared.min(shared),
        wide: so_far.wide || frame_group(frame) > u32::from(u16::MAX),
    }
}

/// A row frame's key: its group (16 bits, or 32 when a group needs them) and the record id's
/// next bytes after those every id shares, zeros past its end. A shorter id sorts first, as
/// bytewise comparison has it, and ids a key cannot tell apart are left to [`cmp_frames`].
fn row_key(frame: &[u8], survey: Survey) -> u64 {
    let (_, id, _) = key(frame);
    let group = u64::from(frame_group(frame));
    let (group_bits, id_bytes) = if survey.wide { (32, 4) } else { (16, 6) };
    let mut k = group << (64 - group_bits);
    for (n, b) in id.iter().skip(survey.shared).take(id_bytes).enumerate() {
        k |= u64::from(*b) << (8 * (id_bytes - 1 - n));
    }
    k
}

/// The group of a frame, without decoding it.
pub fn frame_group(frame: &[u8]) -> u32 {
    frame
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map_or(u32::MAX, u32::from_be_bytes)
}

/// A row of one vendor record, for tests: the fields that vary, the rest plain.
#[cfg(test)]
pub(crate) fn test_row<'a>(
    record_id: &'a str,
    note: Option<&'a str>,
    item_mpn: &'a str,
    quantity: &'a str,
    (start, end): (i64, i64),
    asset_id: &'a str,
    category: Option<&'a str>,
) -> Row<'a> {
    Row {
        group: 0,
        record_id,
        position: Position {
            ordinal: 1,
            line: None,
        },
        asset_id,
        item_mpn,
        quantity,
        start,
        end,
        note,
        category,
        vendor_id: true,
        precision: 0,
        sums: 1,
        tag: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(group: u32, id: &'a str, ordinal: u64) -> Row<'a> {
        Row {
            group,
            record_id: id,
            position: Position {
                ordinal,
                line: Some(ordinal + 1),
            },
            asset_id: "AS-1000-2000-3000",
            item_mpn: "MPN-1",
            quantity: "12.5",
            start: 1_711_929_600,
            end: -5,
            note: Some("=SUM(A1) ünïcode"),
            category: None,
            vendor_id: true,
            precision: 2,
            sums: 1,
            tag: 0,
        }
    }

    #[test]
    fn frames_round_trip() {
        let r = row(7, "SKY-202404-00000001", 3);
        let mut buf = Vec::new();
        encode(&r, &mut buf);
        assert_eq!(decode(&buf).expect("decodes"), r);
        let r2 = Row {
            position: Position {
                ordinal: u64::MAX,
                line: None,
            },
            note: None,
            category: Some(""),
            vendor_id: false,
            sums: 4_000_000_000,
            tag: 1,
            start: i64::MIN,
            end: i64::MAX,
            ..r
        };
        buf.clear();
        encode(&r2, &mut buf);
        assert_eq!(decode(&buf).expect("decodes"), r2);
        assert_eq!(frame_group(&buf), 7);
    }

    #[test]
    fn damaged_frames_are_errors_not_panics() {
        let mut buf = Vec::new();
        encode(&row(1, "id", 1), &mut buf);
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = buf.clone();
        bad[5] = 0xff; // an id byte that is not UTF-8
        assert!(decode(&bad).is_err());
    }

    #[test]
    fn frames_sort_by_group_then_id_then_position() {
        let rows = [
            row(2, "a", 1),
            row(1, "b", 9),
            row(1, "b", 2),
            row(1, "ab", 5),
            row(1, "a", 7),
            row(0, "z", 3),
        ];
        let mut frames: Vec<Vec<u8>> = rows
            .iter()
            .map(|r| {
                let mut b = Vec::new();
                encode(r, &mut b);
                b
            })
            .collect();
        frames.sort_by(|a, b| cmp_frames(a, b));
        let order: Vec<(u32, String, u64)> = frames
            .iter()
            .map(|f| {
                let r = decode(f).expect("decodes");
                (r.group, r.record_id.to_owned(), r.position.ordinal)
            })
            .collect();
        assert_eq!(
            order,
            [
                (0, "z".into(), 3),
                (1, "a".into(), 7),
                (1, "ab".into(), 5),
                (1, "b".into(), 2),
                (1, "b".into(), 9),
                (2, "a".into(), 1)
            ]
        );
    }

    fn frame(group: u32, id: &str, ordinal: u64) -> Vec<u8> {
        let mut b = Vec::new();
        encode(&row(group, id, ordinal), &mut b);
        b
    }

    /// Whenever two frames' keys differ, the comparator agrees with them.
    fn keys_agree(frames: &[Vec<u8>]) -> Result<(), String> {
        let first = &frames[0];
        let survey = frames
            .iter()
            .fold(None, |s, f| Some((ORDER.survey)(s, first, f)))
            .unwrap_or_default();
        for a in frames {
            for b in frames {
                let by_key = row_key(a, survey).cmp(&row_key(b, survey));
                if by_key.is_ne() && by_key != cmp_frames(a, b) {
                    return Err(format!(
                        "{:?} and {:?}: keys say {by_key:?} ({survey:?})",
                        decode(a).map(|r| (r.group, r.record_id.to_owned())),
                        decode(b).map(|r| (r.group, r.record_id.to_owned())),
                    ));
                }
            }
        }
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn keys_order_frames_as_the_comparator_does(
            rows in proptest::collection::vec(
                (
                    proptest::prop_oneof![0u32..4, 65_534u32..65_538],
                    proptest::prop_oneof![
                        "[ab\\x00\\x01]{0,9}",
                        "SKY-202404-0[0-9]{0,8}",
                        "SKY-202404-0[0-9]{6}",
                    ],
                ),
                1..40,
            )
        ) {
            let frames: Vec<Vec<u8>> = rows
                .iter()
                .enumerate()
                .map(|(i, (g, id))| frame(*g, id, i as u64))
                .collect();
            proptest::prop_assert_eq!(keys_agree(&frames), Ok(()));
        }
    }

    #[test]
    fn keys_tell_apart_ids_that_share_a_long_prefix() {
        let frames: Vec<Vec<u8>> = (0..100)
            .map(|i| frame(3, &format!("SKY-202404-{:08}", i * 7919), i))
            .collect();
        let survey = frames
            .iter()
            .fold(None, |s, f| Some((ORDER.survey)(s, &frames[0], f)))
            .unwrap_or_default();
        // "SKY-202404-00" and six digits of 783 981 at most.
        assert_eq!(
            survey,
            Survey {
                shared: 13,
                wide: false
            }
        );
        let mut keys: Vec<u64> = frames.iter().map(|f| row_key(f, survey)).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), 100, "every id has a key of its own");
        assert_eq!(keys_agree(&frames), Ok(()));
    }

    #[test]
    fn a_sorter_with_keys_sorts_rows_as_the_comparator_does() {
        let dir = crate::usage::workdir::WorkDir::create(
            &std::env::temp_dir().join(format!("cu-row-order-{}", std::process::id())),
        )
        .expect("work dir");
        let n = 120_000u64;
        let frames: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                // Ids that repeat (duplicates meet by ordinal), share prefixes, differ in length.
                let id = format!("SKY-{}-{}", h % 50_000, "x".repeat((h % 3) as usize));
                frame((h % 5) as u32 * 30_000, &id, i)
            })
            .collect();
        for budget in [crate::usage::sort::DEFAULT_BUDGET, 1 << 20] {
            let mut sorter = crate::usage::sort::Sorter::new(ORDER, budget);
            for f in &frames {
                sorter.push(f, &dir).expect("push");
            }
            let mut sorted = sorter.finish().expect("finish");
            let mut got = Vec::new();
            while let Some(f) = sorted.next_frame().expect("next") {
                got.push(f.to_vec());
            }
            let mut want = frames.clone();
            want.sort_by(|a, b| cmp_frames(a, b));
            assert!(got == want, "budget {budget}: the keyed sort differs");
        }
    }
}
