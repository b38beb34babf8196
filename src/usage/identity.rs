//! Deterministic identity: the same usage gives the same names on every run.
//!
//! - A usage file is found again by its `external_id`, one per contract, product and month:
//!   `cu:{contract}:{product}:{YYYY-MM}`. The `cu:` prefix marks the files this extension owns.
//! - A record keeps the vendor's id; without one it gets `cu-` and 32 hex digits of a SHA-256
//!   of its content, so a rerun writes the very same ids (the copied Python sample gives every
//!   row the same id).
//! - The digest of a workbook's rows goes into the file's `note` once Connect has processed it,
//!   so a rerun can tell whether the file holds today's data; before the upload the note names
//!   the upload to come and the file's last upload time ([`FileNote`]), so an upload processed
//!   after its run stopped waiting is still recognised.

use sha2::{Digest, Sha256};

use super::period::Period;
use super::record::Quantity;

/// The prefix of this extension's external ids.
pub const EXTERNAL_ID_PREFIX: &str = "cu:";

/// `cu:{contract}:{product}:{YYYY-MM}`
pub fn external_id(contract: &str, product: &str, period: Period) -> String {
    format!("{EXTERNAL_ID_PREFIX}{contract}:{product}:{period}")
}

/// The contract, product and period of one of this extension's external ids.
pub fn parse_external_id(external_id: &str) -> Option<(String, String, Period)> {
    let rest = external_id.strip_prefix(EXTERNAL_ID_PREFIX)?;
    let mut parts = rest.splitn(3, ':');
    let (contract, product, period) = (parts.next()?, parts.next()?, parts.next()?);
    if contract.is_empty() || product.is_empty() {
        return None;
    }
    Some((
        contract.to_owned(),
        product.to_owned(),
        period.parse().ok()?,
    ))
}

/// A workbook's file name: `{contract}_{product}_{YYYY-MM}.xlsx`.
pub fn workbook_name(contract: &str, product: &str, period: Period) -> String {
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
    format!("{}_{}_{period}.xlsx", safe(contract), safe(product))
}

/// The content of a record that names it when the vendor gave it no id.
pub struct RecordContent<'a> {
    pub asset_id: &'a str,
    pub item_mpn: &'a str,
    pub quantity: &'a Quantity,
    pub start: i64,
    pub end: i64,
    pub note: Option<&'a str>,
    pub category: Option<&'a str>,
}

/// `cu-` and 32 hex digits of the SHA-256 of the record's content.
pub fn derived_record_id(c: &RecordContent<'_>) -> String {
    let mut h = Sha256::new();
    // Fields separated by a byte that cannot appear in them (0x1f, unit separator).
    for part in [
        c.asset_id,
        c.item_mpn,
        c.quantity.as_str(),
        &c.start.to_string(),
        &c.end.to_string(),
        c.note.unwrap_or(""),
        c.category.unwrap_or(""),
    ] {
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

/// SHA-256 of bytes, in hex.
pub fn digest(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The digest of a workbook's rows: what the file says, independent of how the spreadsheet
/// writer lays the bytes out.
pub struct ContentDigest(Sha256);

impl Default for ContentDigest {
    fn default() -> Self {
        ContentDigest::new()
    }
}

impl ContentDigest {
    pub fn new() -> ContentDigest {
        let mut h = Sha256::new();
        h.update(b"connect-usage rows v1\x1e");
        ContentDigest(h)
    }

    pub fn add(&mut self, row: &super::workbook::Row<'_>) {
        for part in [
            row.record_id,
            row.note.unwrap_or(""),
            row.item_mpn,
            row.quantity.as_str(),
            &row.start.to_string(),
            &row.end.to_string(),
            row.asset_id,
            row.category.unwrap_or(""),
        ] {
            self.0.update(part.as_bytes());
            self.0.update([0x1f]);
        }
        self.0.update([0x1e]);
    }

    pub fn finish(self) -> String {
        hex(&self.0.finalize())
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
/// `connect-usage digest=<hex> records=<n> at=<secs> read=<ms> reruns=<k> rerunning` once an
/// upload is processed; `connect-usage uploading=<hex> records=<n> after=<secs> read=<ms>
/// reruns=<k> rerunning` from just before an upload until it is known processed. Every part
/// but the first is optional (older notes lack `at`, `after` and `read`). At most about 175
/// characters, under Connect's 200.
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
        self.digest() == Some(digest) && self.digest_current(uploaded_at)
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
    ) -> FileNote {
        FileNote {
            uploading: Some(PendingUpload {
                digest: digest.to_owned(),
                records,
                after,
            }),
            read: Some(read),
            ..self.cleared()
        }
    }

    /// The note once an upload of `digest` was processed, the file then last uploaded into at
    /// `at`: the rerun, if any, is done.
    pub fn processed(&self, digest: &str, records: usize, at: Option<i64>) -> FileNote {
        FileNote {
            digest: Some((digest.to_owned(), records)),
            at,
            uploading: None,
            read: self.read,
            reruns: self.reruns,
            rerunning: false,
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

    #[test]
    fn external_ids_round_trip() {
        let p: Period = "2024-12".parse().expect("period");
        let id = external_id("CRD-11111-22222-33333", "PRD-276-377-545", p);
        assert_eq!(id, "cu:CRD-11111-22222-33333:PRD-276-377-545:2024-12");
        assert_eq!(
            parse_external_id(&id),
            Some(("CRD-11111-22222-33333".into(), "PRD-276-377-545".into(), p))
        );
        assert_eq!(parse_external_id("CRD-1 PRD-1 April"), None);
        assert_eq!(parse_external_id("cu:CRD-1:PRD-1:2024-13"), None);
        assert_eq!(
            workbook_name("CRD-1", "PRD/1", p),
            "CRD-1_PRD_1_2024-12.xlsx"
        );
    }

    #[test]
    fn derived_ids_depend_on_every_field_and_nothing_else() {
        let q = Quantity::parse("2.5").expect("q");
        let base = RecordContent {
            asset_id: "AS-1",
            item_mpn: "M",
            quantity: &q,
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
                quantity: &q2,
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
    fn notes_carry_the_digest() {
        let note = FileNote::default().processed("abc123", 5, None).to_string();
        assert_eq!(FileNote::parse(Some(&note)).digest(), Some("abc123"));
        assert_eq!(FileNote::parse(Some("written by hand")).digest(), None);
        assert_eq!(FileNote::parse(None).digest(), None);
        assert_eq!(digest(b"").len(), 64);
    }

    #[test]
    fn notes_keep_the_rerun_count_through_uploads() {
        let digest = "a".repeat(64);
        let n = FileNote::parse(Some(
            &FileNote::default().processed(&digest, 12, None).to_string(),
        ));
        assert_eq!(n.digest(), Some(digest.as_str()));
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
        let sending = back.uploading(&"b".repeat(64), 7, Some(1_764_532_440), 1_764_532_500_123);
        let text = sending.to_string();
        assert_eq!(
            text,
            format!(
                "connect-usage uploading={} records=7 after=1764532440 read=1764532500123 reruns=1 rerunning",
                "b".repeat(64)
            )
        );
        let back = FileNote::parse(Some(&text));
        assert_eq!(back, sending);
        assert_eq!(back.digest(), None, "an upload under way claims nothing");
        let done = back
            .processed(&"b".repeat(64), 7, Some(1_764_532_560))
            .to_string();
        assert!(done.len() < 200, "{}", done.len());
        let done = FileNote::parse(Some(&done));
        assert_eq!(done.digest, Some(("b".repeat(64), 7)));
        assert_eq!(
            (done.at, done.read),
            (Some(1_764_532_560), Some(1_764_532_500_123))
        );
        assert_eq!((done.reruns, done.rerunning), (1, false));
        assert!(done.holds(&"b".repeat(64), Some(1_764_532_560)));
        assert!(
            !done.holds(&"b".repeat(64), Some(1_764_532_561)),
            "uploaded into since"
        );
        assert!(!done.holds(&"c".repeat(64), Some(1_764_532_560)));
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
            FileNote::parse(Some(&format!(
                "connect-usage digest={} records=7",
                "b".repeat(64)
            )))
            .holds(&"b".repeat(64), Some(1)),
            "an older note without its upload time"
        );
        assert_eq!(
            FileNote::parse(Some("reruns=5 by hand")),
            FileNote::default()
        );
        assert_eq!(FileNote::parse(None), FileNote::default());
    }

    #[test]
    fn an_upload_landed_once_the_file_was_uploaded_after_the_note() {
        let first = FileNote::default().uploading("d1", 3, None, 90);
        assert_eq!(first.landed(None), None, "nothing uploaded yet");
        assert_eq!(
            first.landed(Some(100)).map(|u| u.digest.as_str()),
            Some("d1")
        );
        let again = FileNote::default().uploading("d2", 4, Some(100), 95);
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
        );
        assert!(longest.to_string().len() < 200, "{longest}");
        assert_eq!(
            FileNote::default().processed("d", 1, None).landed(Some(5)),
            None
        );
        // Whose records the file holds, and when they were read.
        let sent = FileNote::default().uploading("d", 1, Some(100), 90);
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
