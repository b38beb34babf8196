//! Deterministic identity: the same usage gives the same names on every run.
//!
//! - A group (contract, product and month) reports its records in one or more usage files,
//!   each found again by its `external_id`. The month's report is batch 0; records that arrive
//!   after it was submitted go into supplements 1, 2, ...; a batch larger than one file holds
//!   is cut into parts. [`FileSlot`] names a file within its group:
//!   `cu:{contract}:{product}:{YYYY-MM}` for part 1 of the month's report (so the files of every
//!   group that fits in one file keep the id they always had), `...:p{k}` for its part `k`,
//!   `...:s{n}` for supplement `n` and `...:s{n}:p{k}` for that supplement's part `k`. The `cu:`
//!   prefix marks the files this extension owns.
//! - A record keeps the vendor's id; without one it gets `cu-` and 32 hex digits of a SHA-256
//!   of its content, so a rerun writes the very same ids (the copied Python sample gives every
//!   row the same id).
//! - The digest of a file's rows goes into its `note` once Connect has processed it, so a rerun
//!   can tell whether the file holds today's data; before the upload the note names the upload
//!   to come and the file's last upload time ([`FileNote`]), so an upload processed after its
//!   run stopped waiting is still recognised.

use sha2::{Digest, Sha256};

use super::aggregate::Aggregation;
use connect_client::month::Month;

/// The prefix of this extension's external ids.
pub const EXTERNAL_ID_PREFIX: &str = "cu:";

/// Which of its group's files a usage file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileSlot {
    /// 0 for the month's report, `n` for its `n`-th supplement.
    pub supplement: u32,
    /// From 1.
    pub part: u32,
}

impl FileSlot {
    /// Part 1 of the month's report: the one file of a group that fits in one.
    pub const FIRST: FileSlot = FileSlot {
        supplement: 0,
        part: 1,
    };

    pub fn new(supplement: u32, part: u32) -> FileSlot {
        FileSlot { supplement, part }
    }

    /// `...:s{n}:p{k}`, without what is 0 or 1.
    fn suffix(&self) -> String {
        let mut s = String::new();
        if self.supplement > 0 {
            s.push_str(&format!(":s{}", self.supplement));
        }
        if self.part > 1 {
            s.push_str(&format!(":p{}", self.part));
        }
        s
    }

    /// For names and messages: "part 2 of 3", "supplement 1", "supplement 1, part 2 of 3";
    /// empty for the month's only file.
    pub fn describe(&self, parts: u32) -> String {
        let part = (parts > 1).then(|| format!("part {} of {parts}", self.part));
        match (self.supplement, part) {
            (0, None) => String::new(),
            (0, Some(p)) => p,
            (n, None) => format!("supplement {n}"),
            (n, Some(p)) => format!("supplement {n}, {p}"),
        }
    }
}

/// The external id of a group's first file: `cu:{contract}:{product}:{YYYY-MM}`. It is also
/// the group's name for its lock.
pub fn external_id(contract: &str, product: &str, period: Month) -> String {
    format!("{EXTERNAL_ID_PREFIX}{contract}:{product}:{period}")
}

/// The external id of a file of the group.
pub fn slot_external_id(contract: &str, product: &str, period: Month, slot: FileSlot) -> String {
    format!(
        "{}{}",
        external_id(contract, product, period),
        slot.suffix()
    )
}

/// One of this extension's external ids, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedExternalId {
    pub contract: String,
    pub product: String,
    pub period: Month,
    pub slot: FileSlot,
}

impl ParsedExternalId {
    /// The external id of the group's first file (the group's name).
    pub fn group_id(&self) -> String {
        external_id(&self.contract, &self.product, self.period)
    }
}

/// Reads one of this extension's external ids.
pub fn parse_external_id(external_id: &str) -> Option<ParsedExternalId> {
    let rest = external_id.strip_prefix(EXTERNAL_ID_PREFIX)?;
    let mut parts = rest.split(':');
    let (contract, product, period) = (parts.next()?, parts.next()?, parts.next()?);
    if contract.is_empty() || product.is_empty() {
        return None;
    }
    let number = |s: &str, tag: char| -> Option<u32> {
        let digits = s.strip_prefix(tag)?;
        if digits.is_empty()
            || digits.starts_with('0')
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        digits.parse().ok()
    };
    let mut slot = FileSlot::FIRST;
    let mut next = parts.next();
    if let Some(n) = next.and_then(|s| number(s, 's')) {
        slot.supplement = n;
        next = parts.next();
    }
    if let Some(k) = next.and_then(|s| number(s, 'p')) {
        if k < 2 {
            return None;
        }
        slot.part = k;
        next = parts.next();
    }
    if next.is_some() {
        return None;
    }
    Some(ParsedExternalId {
        contract: contract.to_owned(),
        product: product.to_owned(),
        period: period.parse().ok()?,
        slot,
    })
}

/// A workbook's file name: `{contract}_{product}_{YYYY-MM}[_s{n}][_p{k}].xlsx`.
pub fn workbook_name(contract: &str, product: &str, period: Month, slot: FileSlot) -> String {
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!(
        "{}_{}_{period}{}.xlsx",
        safe(contract),
        safe(product),
        slot.suffix().replace(':', "_")
    )
}

/// The content of a record that names it when the vendor gave it no id.
pub struct RecordContent<'a> {
    pub asset_id: &'a str,
    pub item_mpn: &'a str,
    /// Normalised decimal text ([`Quantity`](crate::usage::record::Quantity)).
    pub quantity: &'a str,
    pub start: i64,
    pub end: i64,
    pub note: Option<&'a str>,
    pub category: Option<&'a str>,
}

/// `cu-` and 32 hex digits of the SHA-256 of the record's content.
pub fn derived_record_id(c: &RecordContent<'_>) -> String {
    super::row::content_id(&[
        c.asset_id,
        c.item_mpn,
        c.quantity,
        &c.start.to_string(),
        &c.end.to_string(),
        c.note.unwrap_or(""),
        c.category.unwrap_or(""),
    ])
}

/// SHA-256 of bytes, in hex.
pub fn digest(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex digits of a digest written into notes: 128 bits tell files apart and leave room in the
/// note's 200 characters. Notes written before hold all 64.
pub const NOTED_DIGEST_CHARS: usize = 32;

/// The part of a digest a note keeps.
pub fn noted(digest: &str) -> &str {
    digest.get(..NOTED_DIGEST_CHARS).unwrap_or(digest)
}

/// Whether a digest read from a note (32 or 64 hex digits) is this computed one.
pub fn digests_match(noted: &str, computed: &str) -> bool {
    noted.len() >= NOTED_DIGEST_CHARS && computed.starts_with(noted)
}

/// The digest of a file's rows, in the order the file holds them: what the file says,
/// independent of how the spreadsheet writer lays the bytes out.
#[derive(Clone)]
pub struct ContentDigest(Sha256);

impl Default for ContentDigest {
    fn default() -> Self {
        ContentDigest::new()
    }
}

/// Decimal text of an integer, without allocating.
fn decimal(v: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

impl ContentDigest {
    pub fn new() -> ContentDigest {
        let mut h = Sha256::new();
        h.update(b"connect-usage rows v1\x1e");
        ContentDigest(h)
    }

    /// Adds a row. The bytes hashed are those of the first version (every field as text,
    /// separated by 0x1f, rows ended by 0x1e), so notes written then still match.
    pub fn add(&mut self, row: &super::row::Row<'_>) {
        let (mut a, mut b) = ([0u8; 20], [0u8; 20]);
        for part in [
            row.record_id.as_bytes(),
            row.note.unwrap_or("").as_bytes(),
            row.item_mpn.as_bytes(),
            row.quantity.as_bytes(),
            decimal(row.start, &mut a),
            decimal(row.end, &mut b),
            row.asset_id.as_bytes(),
            row.category.unwrap_or("").as_bytes(),
        ] {
            self.0.update(part);
            self.0.update([0x1f]);
        }
        self.0.update([0x1e]);
    }

    /// 64 hex digits.
    pub fn finish(self) -> String {
        hex(&self.0.finalize())
    }
}

/// The digest of a whole group from the digests of its chunks (the rows each file takes, in
/// order): a group of one chunk has that chunk's digest, which is also what the note of a
/// month's only file has always held.
pub fn group_digest(chunks: &[&str]) -> String {
    match chunks {
        [one] => (*one).to_owned(),
        many => {
            let mut h = Sha256::new();
            h.update(b"connect-usage group v1\x1e");
            for c in many {
                h.update(c.as_bytes());
                h.update([0x1e]);
            }
            hex(&h.finalize())
        }
    }
}

/// The note of a file that holds no rows known to this extension and has no upload under
/// way (a rerun just counted, say).
pub const UPLOADING_NOTE: &str = "connect-usage upload in progress";

/// What this extension keeps in a usage file's `note` (Connect's state is its only memory):
/// the digest of the data the file holds once processed, the upload under way, when the run
/// that built those rows read the vendor's usage, how many times the provider's rejection was
/// answered with a rerun, and whether a rerun is under way.
///
/// `connect-usage digest=<hex> records=<n> at=<secs> read=<ms> covers=<hex> reruns=<k>
/// rerunning` once an upload is processed; `connect-usage uploading=<hex> records=<n>
/// after=<secs> read=<ms> covers=<hex> reruns=<k> rerunning` from just before an upload until
/// it is known processed. Every part but the first is optional (older notes lack `at`,
/// `after`, `read` and `covers`, and hold 64-digit digests). At most about 170 characters,
/// under Connect's 200.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileNote {
    /// The digest of the processed upload's rows, with their count.
    pub digest: Option<(String, usize)>,
    /// The file's upload time (`events.uploaded.at`, Unix seconds) when the digest was noted:
    /// an upload after it (by hand, say) replaced the noted rows.
    pub at: Option<i64>,
    /// The upload sent (or about to be) when no processed one is noted.
    pub uploading: Option<PendingUpload>,
    /// When the run that built the noted (or uploading) rows began reading the vendor's usage
    /// (Unix milliseconds, the local clock): which of two runs has the newer data.
    pub read: Option<i64>,
    /// The digest of all the group's records (as the vendor had them when these rows were
    /// built) that the group's files hold once this file's batch is submitted: when a later
    /// run reads the same records, the whole group is reported. Absent when the files did not
    /// hold exactly the vendor's records then (conflicts, records withdrawn), and in notes of
    /// a month's only file, whose own digest says the same.
    pub covers: Option<String>,
    /// How the rows were summed (`agg=day|month`; absent: one row per vendor record). A month
    /// keeps the way it was first reported: its rows' ids depend on it.
    pub aggregation: Aggregation,
    /// Reruns started after a rejection.
    pub reruns: u32,
    /// A rerun was started and its upload not yet processed: a `rejected` file with this flag
    /// is a rerun interrupted, to resume without counting it again.
    pub rerunning: bool,
}

/// An upload written into the note before it is sent. It names rows the file may not hold
/// yet; [`FileNote::landed`] tells when it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub digest: String,
    pub records: usize,
    /// The file's last upload time before this one (`events.uploaded.at`, Connect's clock,
    /// Unix seconds); `None` when it had none.
    pub after: Option<i64>,
}

impl FileNote {
    /// Reads a note; anything not written by this extension reads as an empty note.
    pub fn parse(note: Option<&str>) -> FileNote {
        let mut n = FileNote::default();
        let Some(text) = note.filter(|t| t.starts_with("connect-usage")) else {
            return n;
        };
        let mut digest = None;
        let mut uploading = None;
        let mut records = None;
        let mut after = None;
        for word in text.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                n.rerunning |= word == "rerunning";
                continue;
            };
            match key {
                "digest" => digest = Some(value.to_owned()),
                "uploading" => uploading = Some(value.to_owned()),
                "records" => records = value.parse().ok(),
                "after" => after = value.parse().ok(),
                "at" => n.at = value.parse().ok(),
                "read" => n.read = value.parse().ok(),
                "covers" => n.covers = Some(value.to_owned()),
                "agg" => n.aggregation = Aggregation::parse(value).unwrap_or_default(),
                "reruns" => n.reruns = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        match (digest, uploading) {
            (Some(d), _) => n.digest = Some((d, records.unwrap_or(0))),
            (None, Some(d)) => {
                n.at = None;
                n.uploading = Some(PendingUpload {
                    digest: d,
                    records: records.unwrap_or(0),
                    after,
                })
            }
            (None, None) => n.at = None,
        }
        n
    }

    /// The digest recorded, if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_ref().map(|(d, _)| d.as_str())
    }

    /// No upload came after the digest was noted (a note without `at` cannot tell: yes).
    fn digest_current(&self, uploaded_at: Option<i64>) -> bool {
        self.at.is_none_or(|at| uploaded_at == Some(at))
    }

    /// Whether the file, last uploaded into at `uploaded_at`, holds the rows of `digest`: the
    /// note says so and no upload came after it was written.
    pub fn holds(&self, digest: &str, uploaded_at: Option<i64>) -> bool {
        self.digest().is_some_and(|d| digests_match(d, digest)) && self.digest_current(uploaded_at)
    }

    /// The rows (digest and count) the note says the file, last uploaded into at
    /// `uploaded_at`, holds: a processed upload with no upload after it, or an upload under
    /// way that has landed.
    pub fn rows_held(&self, uploaded_at: Option<i64>) -> Option<(&str, usize)> {
        match (&self.digest, self.landed(uploaded_at)) {
            (Some((d, n)), _) => self.digest_current(uploaded_at).then_some((d.as_str(), *n)),
            (None, Some(u)) => Some((u.digest.as_str(), u.records)),
            (None, None) => None,
        }
    }

    /// When the records the file holds (last uploaded into at `uploaded_at`) were read from
    /// the vendor, if the note describes them ([`rows_held`](Self::rows_held)).
    pub fn read_of_content(&self, uploaded_at: Option<i64>) -> Option<i64> {
        self.read
            .filter(|_| uploaded_at.is_some() && self.rows_held(uploaded_at).is_some())
    }

    /// Whether rows were uploaded into the file since its digest was noted, by someone other
    /// than this extension (which names every upload of its own in the note first).
    pub fn replaced(&self, uploaded_at: Option<i64>) -> bool {
        self.digest.is_some() && self.at.is_some() && !self.digest_current(uploaded_at)
    }

    /// The same note naming no rows: a rerun about to start.
    pub fn cleared(&self) -> FileNote {
        FileNote {
            reruns: self.reruns,
            rerunning: self.rerunning,
            ..FileNote::default()
        }
    }

    /// The note written just before uploading the rows of `digest`, read from the vendor by a
    /// run that began at `read`, into a file whose last upload was at `after`: it claims
    /// nothing about what the file holds until [`landed`](Self::landed) says so.
    pub fn uploading(
        &self,
        digest: &str,
        records: usize,
        after: Option<i64>,
        read: i64,
        covers: Option<&str>,
    ) -> FileNote {
        FileNote {
            uploading: Some(PendingUpload {
                digest: noted(digest).to_owned(),
                records,
                after,
            }),
            read: Some(read),
            covers: covers.map(|c| noted(c).to_owned()),
            ..self.cleared()
        }
    }

    /// The note once an upload of `digest` was processed, the file then last uploaded into at
    /// `at`: the rerun, if any, is done.
    pub fn processed(&self, digest: &str, records: usize, at: Option<i64>) -> FileNote {
        FileNote {
            digest: Some((noted(digest).to_owned(), records)),
            at,
            uploading: None,
            read: self.read,
            covers: self.covers.clone(),
            aggregation: self.aggregation,
            reruns: self.reruns,
            rerunning: false,
        }
    }

    /// The same note, its rows summed as `aggregation` says.
    pub fn aggregated(self, aggregation: Aggregation) -> FileNote {
        FileNote {
            aggregation,
            ..self
        }
    }

    /// What the note says the whole group held when this file's rows were built: its
    /// `covers`, or for the month's only file its own digest.
    pub fn group_digest(&self, only_file: bool) -> Option<&str> {
        match (&self.covers, &self.digest) {
            (Some(c), _) => Some(c.as_str()),
            (None, Some((d, _))) if only_file => Some(d.as_str()),
            _ => None,
        }
    }

    /// The upload named in the note, if the file's last upload (`uploaded_at`, Unix seconds)
    /// came after the time the note was written: that upload is this one. An upload within
    /// the same second as the one before cannot be told apart and does not count.
    pub fn landed(&self, uploaded_at: Option<i64>) -> Option<&PendingUpload> {
        let u = self.uploading.as_ref()?;
        let at = uploaded_at?;
        u.after.is_none_or(|before| at > before).then_some(u)
    }
}

impl std::fmt::Display for FileNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.digest, &self.uploading) {
            (Some((d, records)), _) => {
                write!(f, "connect-usage digest={d} records={records}")?;
                if let Some(at) = self.at {
                    write!(f, " at={at}")?;
                }
            }
            (None, Some(u)) => {
                write!(
                    f,
                    "connect-usage uploading={} records={}",
                    u.digest, u.records
                )?;
                if let Some(after) = u.after {
                    write!(f, " after={after}")?;
                }
            }
            (None, None) => f.write_str(UPLOADING_NOTE)?,
        }
        if let Some(read) = self.read {
            write!(f, " read={read}")?;
        }
        if let Some(covers) = &self.covers {
            write!(f, " covers={covers}")?;
        }
        if self.aggregation != Aggregation::None {
            write!(f, " agg={}", self.aggregation)?;
        }
        if self.reruns > 0 {
            write!(f, " reruns={}", self.reruns)?;
        }
        if self.rerunning {
            f.write_str(" rerunning")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::record::Quantity;

    #[test]
    fn external_ids_round_trip() {
        let p: Month = "2024-12".parse().expect("period");
        let id = external_id("CRD-11111-22222-33333", "PRD-276-377-545", p);
        assert_eq!(id, "cu:CRD-11111-22222-33333:PRD-276-377-545:2024-12");
        let parsed = parse_external_id(&id).expect("ours");
        assert_eq!(
            (
                parsed.contract.as_str(),
                parsed.product.as_str(),
                parsed.period,
                parsed.slot
            ),
            (
                "CRD-11111-22222-33333",
                "PRD-276-377-545",
                p,
                FileSlot::FIRST
            )
        );
        assert_eq!(parsed.group_id(), id);
        for (slot, suffix, name) in [
            (FileSlot::new(0, 1), "", "CRD-1_PRD_1_2024-12.xlsx"),
            (FileSlot::new(0, 2), ":p2", "CRD-1_PRD_1_2024-12_p2.xlsx"),
            (FileSlot::new(1, 1), ":s1", "CRD-1_PRD_1_2024-12_s1.xlsx"),
            (
                FileSlot::new(12, 30),
                ":s12:p30",
                "CRD-1_PRD_1_2024-12_s12_p30.xlsx",
            ),
        ] {
            let id = slot_external_id("CRD-1", "PRD-1", p, slot);
            assert_eq!(id, format!("cu:CRD-1:PRD-1:2024-12{suffix}"));
            let back = parse_external_id(&id).expect("ours");
            assert_eq!(back.slot, slot);
            assert_eq!(back.group_id(), "cu:CRD-1:PRD-1:2024-12");
            assert_eq!(workbook_name("CRD-1", "PRD/1", p, slot), name);
        }
        for foreign in [
            "CRD-1 PRD-1 April",
            "cu:CRD-1:PRD-1:2024-13",
            "cu:CRD-1:PRD-1:2024-12:p1",
            "cu:CRD-1:PRD-1:2024-12:p02",
            "cu:CRD-1:PRD-1:2024-12:s0x",
            "cu:CRD-1:PRD-1:2024-12:p2:s1",
            "cu:CRD-1:PRD-1:2024-12:s1:p2:x",
            "cu::PRD-1:2024-12",
        ] {
            assert_eq!(parse_external_id(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn slots_describe_themselves() {
        assert_eq!(FileSlot::FIRST.describe(1), "");
        assert_eq!(FileSlot::new(0, 2).describe(3), "part 2 of 3");
        assert_eq!(FileSlot::new(2, 1).describe(1), "supplement 2");
        assert_eq!(FileSlot::new(2, 1).describe(2), "supplement 2, part 1 of 2");
    }

    #[test]
    fn derived_ids_depend_on_every_field_and_nothing_else() {
        let q = Quantity::parse("2.5").expect("q");
        let base = RecordContent {
            asset_id: "AS-1",
            item_mpn: "M",
            quantity: q.as_str(),
            start: 1,
            end: 2,
            note: None,
            category: None,
        };
        let id = derived_record_id(&base);
        assert!(id.starts_with("cu-") && id.len() == 35, "{id}");
        assert_eq!(id, derived_record_id(&base));
        let q2 = Quantity::parse("2.50").expect("q");
        assert_eq!(
            id,
            derived_record_id(&RecordContent {
                quantity: q2.as_str(),
                ..base
            }),
            "the same quantity written differently"
        );
        let variants = [
            RecordContent {
                asset_id: "AS-2",
                ..base
            },
            RecordContent {
                item_mpn: "N",
                ..base
            },
            RecordContent { start: 0, ..base },
            RecordContent { end: 3, ..base },
            RecordContent {
                note: Some(""),
                category: Some("x"),
                ..base
            },
            RecordContent {
                note: Some("x"),
                ..base
            },
        ];
        let mut ids: Vec<String> = variants.iter().map(derived_record_id).collect();
        ids.push(id);
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 7);
    }

    #[test]
    fn row_digests_keep_their_first_definition() {
        // The digest of one known row, as the first version computed it: notes written then
        // must still match.
        let mut d = ContentDigest::new();
        d.add(&crate::usage::row::Row {
            group: 0,
            record_id: "r-1",
            position: crate::usage::record::Position {
                ordinal: 1,
                line: None,
            },
            asset_id: "AS-1",
            item_mpn: "M",
            quantity: "2.5",
            start: -1,
            end: 1_714_521_599,
            note: None,
            category: Some("c"),
            vendor_id: true,
            precision: 0,
            sums: 1,
            tag: 0,
        });
        let mut h = Sha256::new();
        h.update(b"connect-usage rows v1\x1e");
        for part in ["r-1", "", "M", "2.5", "-1", "1714521599", "AS-1", "c"] {
            h.update(part.as_bytes());
            h.update([0x1f]);
        }
        h.update([0x1e]);
        assert_eq!(d.finish(), hex(&h.finalize()));
    }

    #[test]
    fn a_group_of_one_chunk_has_its_digest() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        assert_eq!(group_digest(&[&a]), a);
        let two = group_digest(&[&a, &b]);
        assert_eq!(two.len(), 64);
        assert_ne!(two, group_digest(&[&b, &a]), "order matters");
        assert_ne!(two, a);
    }

    #[test]
    fn notes_carry_the_digest() {
        let d = "ab".repeat(32);
        let note = FileNote::default().processed(&d, 5, None).to_string();
        assert_eq!(
            FileNote::parse(Some(&note)).digest(),
            Some(noted(&d)),
            "32 digits are noted"
        );
        assert!(FileNote::parse(Some(&note)).holds(&d, None));
        assert_eq!(FileNote::parse(Some("written by hand")).digest(), None);
        assert_eq!(FileNote::parse(None).digest(), None);
        assert_eq!(digest(b"").len(), 64);
        // Notes of the first version hold all 64 digits.
        let old = FileNote::parse(Some(&format!("connect-usage digest={d} records=5")));
        assert!(old.holds(&d, Some(9)));
        assert!(!old.holds(&"cd".repeat(32), Some(9)));
        assert!(!digests_match("ab", &d), "too short to vouch for anything");
    }

    #[test]
    fn notes_keep_the_rerun_count_through_uploads() {
        let digest = "a".repeat(64);
        let n = FileNote::parse(Some(
            &FileNote::default().processed(&digest, 12, None).to_string(),
        ));
        assert!(n.holds(&digest, None));
        assert_eq!((n.reruns, n.rerunning), (0, false));
        let started = FileNote {
            reruns: n.reruns + 1,
            rerunning: true,
            ..n.clone()
        };
        let text = started.cleared().to_string();
        assert_eq!(text, "connect-usage upload in progress reruns=1 rerunning");
        let back = FileNote::parse(Some(&text));
        assert_eq!(
            (back.digest(), back.reruns, back.rerunning),
            (None, 1, true)
        );
        let b = "b".repeat(64);
        let c = "c".repeat(64);
        let sending = back.uploading(&b, 7, Some(1_764_532_440), 1_764_532_500_123, Some(&c));
        let text = sending.to_string();
        assert_eq!(
            text,
            format!(
                "connect-usage uploading={} records=7 after=1764532440 read=1764532500123 covers={} reruns=1 rerunning",
                "b".repeat(32),
                "c".repeat(32)
            )
        );
        let back = FileNote::parse(Some(&text));
        assert_eq!(back, sending);
        assert_eq!(back.digest(), None, "an upload under way claims nothing");
        let done = back.processed(&b, 7, Some(1_764_532_560)).to_string();
        assert!(done.len() < 200, "{}", done.len());
        let done = FileNote::parse(Some(&done));
        assert_eq!(done.digest, Some(("b".repeat(32), 7)));
        assert_eq!(
            done.covers.as_deref(),
            Some(noted(&c)),
            "the batch's cover carries over"
        );
        assert_eq!(done.group_digest(false), Some(noted(&c)));
        assert_eq!(
            (done.at, done.read),
            (Some(1_764_532_560), Some(1_764_532_500_123))
        );
        assert_eq!((done.reruns, done.rerunning), (1, false));
        assert!(done.holds(&b, Some(1_764_532_560)));
        assert!(!done.holds(&b, Some(1_764_532_561)), "uploaded into since");
        assert!(!done.holds(&"d".repeat(64), Some(1_764_532_560)));
        assert!(!done.replaced(Some(1_764_532_560)));
        assert!(
            done.replaced(Some(1_764_532_561)),
            "uploaded by someone else"
        );
        assert!(
            !sending.replaced(Some(1_764_532_561)),
            "our own upload under way"
        );
        assert!(
            FileNote::parse(Some(&format!("connect-usage digest={b} records=7")))
                .holds(&b, Some(1)),
            "an older note without its upload time"
        );
        let only = FileNote::default().processed(&b, 7, None);
        assert_eq!(
            only.group_digest(true),
            Some(noted(&b)),
            "a month's only file"
        );
        assert_eq!(only.group_digest(false), None);
        assert_eq!(
            FileNote::parse(Some("reruns=5 by hand")),
            FileNote::default()
        );
        assert_eq!(FileNote::parse(None), FileNote::default());
    }

    #[test]
    fn an_upload_landed_once_the_file_was_uploaded_after_the_note() {
        let first = FileNote::default().uploading("d1", 3, None, 90, None);
        assert_eq!(first.landed(None), None, "nothing uploaded yet");
        assert_eq!(
            first.landed(Some(100)).map(|u| u.digest.as_str()),
            Some("d1")
        );
        let again = FileNote::default().uploading("d2", 4, Some(100), 95, None);
        assert_eq!(again.landed(Some(100)), None, "still the earlier upload");
        assert_eq!(again.landed(Some(99)), None);
        assert_eq!(again.landed(Some(101)).map(|u| u.records), Some(4));
        let longest = FileNote {
            reruns: 20,
            rerunning: true,
            ..FileNote::default()
        }
        .uploading(
            &"f".repeat(64),
            9_999_999,
            Some(i64::from(u32::MAX)),
            i64::from(u32::MAX) * 1000,
            Some(&"e".repeat(64)),
        )
        .aggregated(Aggregation::Month);
        assert!(longest.to_string().len() < 200, "{longest}");
        assert_eq!(
            FileNote::parse(Some(&longest.to_string())).aggregation,
            Aggregation::Month
        );
        assert_eq!(
            FileNote::default().processed("d", 1, None).landed(Some(5)),
            None
        );
        // Whose records the file holds, and when they were read.
        let sent = FileNote::default().uploading("d", 1, Some(100), 90, None);
        assert_eq!(sent.read_of_content(Some(100)), None, "not landed yet");
        assert_eq!(sent.read_of_content(Some(101)), Some(90));
        let noted = sent.processed("d", 1, Some(101));
        assert_eq!(noted.read_of_content(Some(101)), Some(90));
        assert_eq!(
            noted.read_of_content(Some(102)),
            None,
            "uploaded into since"
        );
        assert_eq!(FileNote::default().read_of_content(Some(5)), None);
        let longest = longest.processed(&"f".repeat(64), 9_999_999, Some(i64::from(u32::MAX)));
        assert!(longest.to_string().len() < 200, "{longest}");
    }
}
