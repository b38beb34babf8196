//! Which of a group's usage files take which of its records: pure decisions over the files
//! Connect shows for a contract, product and month, so every branch has a unit test.
//!
//! A group's records, sorted by record id, are cut into chunks of at most
//! `MAX_RECORDS_PER_FILE`. Files that are submitted hold what they hold: their records are
//! reported, and only the records no submitted file holds are this run's to send ("R"). R goes,
//! chunk by chunk in id order, into the files not submitted yet of the latest batch (the month's
//! report, or the supplement under way); more chunks than such files make new parts, fewer
//! leave files over, which are deleted (a file left over holds records that another part now
//! holds). Once every file of the latest batch is submitted, R starts the next supplement.
//!
//! To know R, the run must know what the submitted files hold ([`coverage`]). It reads their
//! rows back from Connect only when their notes cannot tell: when the group's records are the
//! ones the latest batch was built from, the notes' digests say it all.

use super::decide::{Seen, Vouch, vouched};
use super::identity::{FileNote, FileSlot, digests_match};
use connect_client::models::UsageFileStatus;

/// What the run does about a group's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The monthly run (also a handler's one-group run): files not submitted get this run's
    /// records; rejected files are left to the rejection handler.
    Month,
    /// A rerun of one rejected file: only it gets records; every other file keeps what it has.
    Rerun { file_id: String },
}

/// One of the group's files, as the run listed it.
#[derive(Debug, Clone)]
pub struct GroupFile {
    pub slot: FileSlot,
    pub id: String,
    pub status: UsageFileStatus,
    pub note: FileNote,
    pub uploaded_at: Option<i64>,
    pub rows: Option<u64>,
}

impl GroupFile {
    fn seen(&self) -> Seen<'_> {
        Seen {
            status: &self.status,
            note: &self.note,
            uploaded_at: self.uploaded_at,
            rows: self.rows,
            submitted_since_upload: false,
        }
    }

    /// Rows were uploaded into it (whether processed or not).
    fn holds_rows(&self) -> bool {
        self.uploaded_at.is_some()
    }
}

/// How a file counts for this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Submitted (pending, accepted, closed): what it holds is reported.
    Sealed,
    /// Rejected, left to the rejection handler: its records are not this run's to send.
    Held,
    /// Another file's business in a rerun of one file: it keeps what it has.
    Kept,
    /// Not submitted: this run gives it records, or deletes it.
    Open,
    /// A status the extension does not know: for a person.
    Stuck,
}

/// How a file counts for this run.
pub fn role(f: &GroupFile, scope: &Scope) -> Role {
    use UsageFileStatus as S;
    if matches!(f.status, S::Deleted | S::Other(_)) {
        return Role::Stuck;
    }
    let sealed = matches!(f.status, S::Pending | S::Accepted | S::Closed);
    match scope {
        Scope::Rerun { file_id } if *file_id == f.id => Role::Open,
        Scope::Rerun { .. } if sealed => Role::Sealed,
        Scope::Rerun { .. } => Role::Kept,
        Scope::Month if sealed => Role::Sealed,
        Scope::Month if f.status == S::Rejected => Role::Held,
        Scope::Month => Role::Open,
    }
}

/// Whether a file of the group holds records that another task read from the vendor after
/// this run began reading (`read_at`, Unix milliseconds): that task's records are newer, so
/// they stand and this run leaves the group to it.
pub fn read_later(files: &[GroupFile], read_at: i64) -> bool {
    files.iter().any(|f| {
        f.note
            .rows_held(f.uploaded_at)
            .is_some_and(|(_, n)| f.rows.is_none_or(|r| r == n as u64))
            && f.note
                .read_of_content(f.uploaded_at)
                .is_some_and(|read| read > read_at)
    })
}

/// The group's records as this run read them.
#[derive(Debug, Clone, Copy)]
pub struct GroupRecords<'a> {
    /// Digest of all the group's rows, in id order (64 hex digits).
    pub digest: &'a str,
    /// How many rows.
    pub count: usize,
    /// Digest and row count of each chunk of the rows, in order.
    pub chunks: &'a [(String, usize)],
}

/// What the files that keep their rows (submitted, held, kept) hold, and how the run learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    /// No file keeps rows: every record is this run's to place.
    Nothing,
    /// Every file is submitted and together they hold exactly the group's records: nothing to
    /// send.
    All,
    /// The files were cut from these very records: these chunks (0-based) are held by files
    /// that keep them; the others are this run's.
    Chunks(Vec<usize>),
    /// The rows of these files (indices into the list) must be read back from Connect.
    Read(Vec<usize>),
}

/// Decides how to learn what the files that keep their rows hold.
pub fn coverage(files: &[GroupFile], scope: &Scope, records: &GroupRecords<'_>) -> Coverage {
    let roles: Vec<Role> = files.iter().map(|f| role(f, scope)).collect();
    let keeps = |r: &Role| matches!(r, Role::Sealed | Role::Held | Role::Kept);
    if !roles.iter().any(keeps) {
        return Coverage::Nothing;
    }
    fn vouched_rows(f: &GroupFile) -> Option<(&str, usize)> {
        match vouched(&f.seen()) {
            Vouch::Rows { digest, records } => Some((digest, records)),
            _ => None,
        }
    }
    let batch0_parts = files.iter().filter(|f| f.slot.supplement == 0).count();
    let notes_group = |f: &GroupFile| {
        let only = f.slot == FileSlot::FIRST && batch0_parts == 1;
        f.note
            .group_digest(only)
            .is_some_and(|g| digests_match(g, records.digest))
    };
    // Everything submitted, the latest batch built from these very records, and every file of
    // it there (the files hold as many rows as the group has).
    let held: Option<usize> = files.iter().map(|f| vouched_rows(f).map(|(_, n)| n)).sum();
    // (And no older file was rebuilt after it, by a rerun, say: its records could have been
    // other ones then, however the counts add up.)
    if *scope == Scope::Month
        && roles.iter().all(|r| *r == Role::Sealed)
        && held == Some(records.count)
        && let Some(latest) = files.iter().map(|f| f.slot.supplement).max()
        && files
            .iter()
            .filter(|f| f.slot.supplement == latest)
            .all(notes_group)
        && let Some(built) = files
            .iter()
            .filter(|f| f.slot.supplement == latest)
            .map(|f| f.note.read.unwrap_or(i64::MIN))
            .min()
        && files
            .iter()
            .filter(|f| f.slot.supplement != latest)
            .all(|f| f.note.read.unwrap_or(i64::MIN) <= built)
    {
        return Coverage::All;
    }
    // One batch, cut from these very records: each file that keeps rows holds its chunk.
    if files.iter().all(|f| f.slot.supplement == 0) {
        let mut held = Vec::new();
        let mut aligned = true;
        for (f, r) in files.iter().zip(&roles) {
            if !keeps(r) {
                continue;
            }
            let chunk = f.slot.part as usize - 1;
            let fits = notes_group(f)
                && vouched_rows(f).zip(records.chunks.get(chunk)).is_some_and(
                    |((noted, n), (digest, count))| digests_match(noted, digest) && n == *count,
                );
            if !fits {
                aligned = false;
                break;
            }
            held.push(chunk);
        }
        if aligned {
            held.sort_unstable();
            return Coverage::Chunks(held);
        }
    }
    // A submitted file holds rows whatever its events say; a held or kept one, once uploaded.
    Coverage::Read(
        files
            .iter()
            .zip(&roles)
            .enumerate()
            .filter(|(_, (f, r))| **r == Role::Sealed || (keeps(r) && f.holds_rows()))
            .map(|(i, _)| i)
            .collect(),
    )
}

/// A file this run fills: an existing one (index into the list) or a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotJob {
    pub slot: FileSlot,
    pub file: Option<usize>,
    /// Which chunk of R (0-based) it takes.
    pub chunk: usize,
    /// Parts of its batch, for its name ("part k of n").
    pub parts: u32,
}

/// Where R goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    pub jobs: Vec<SlotJob>,
    /// Files left over (indices into the list): to delete.
    pub delete: Vec<usize>,
    /// Chunks of R no file takes in this run (a rerun takes one): left for the monthly run.
    pub left_over: usize,
}

/// Assigns the chunks of the group's records not held by files that keep theirs, when the
/// files were cut from these very records ([`Coverage::Chunks`]): chunk `k` of the group
/// belongs to part `k + 1` of the month's report, made if missing. `rest` lists those chunks
/// (0-based, in order) and `total` is how many chunks the group has.
pub fn assign_aligned(
    files: &[GroupFile],
    scope: &Scope,
    rest: &[usize],
    total: usize,
) -> Assignment {
    if matches!(scope, Scope::Rerun { .. }) {
        return assign(files, scope, rest.len());
    }
    let roles: Vec<Role> = files.iter().map(|f| role(f, scope)).collect();
    let jobs: Vec<SlotJob> = rest
        .iter()
        .enumerate()
        .map(|(chunk, &k)| {
            let slot = FileSlot::new(0, k as u32 + 1);
            SlotJob {
                slot,
                file: files
                    .iter()
                    .position(|f| f.slot == slot)
                    .filter(|i| roles[*i] == Role::Open),
                chunk,
                parts: total as u32,
            }
        })
        .collect();
    let delete = (0..files.len())
        .filter(|i| roles[*i] == Role::Open && !jobs.iter().any(|j| j.file == Some(*i)))
        .collect();
    Assignment {
        jobs,
        delete,
        left_over: 0,
    }
}

/// Assigns R's `chunks` to files.
pub fn assign(files: &[GroupFile], scope: &Scope, chunks: usize) -> Assignment {
    let roles: Vec<Role> = files.iter().map(|f| role(f, scope)).collect();
    let mut open: Vec<usize> = (0..files.len())
        .filter(|i| roles[*i] == Role::Open)
        .collect();
    open.sort_by_key(|i| files[*i].slot);
    if let Scope::Rerun { .. } = scope {
        let Some(&target) = open.first() else {
            return Assignment {
                left_over: chunks,
                ..Assignment::default()
            };
        };
        let slot = files[target].slot;
        let parts = files
            .iter()
            .filter(|f| f.slot.supplement == slot.supplement)
            .count() as u32;
        return Assignment {
            jobs: (chunks > 0)
                .then_some(SlotJob {
                    slot,
                    file: Some(target),
                    chunk: 0,
                    parts,
                })
                .into_iter()
                .collect(),
            delete: Vec::new(),
            left_over: chunks.saturating_sub(1),
        };
    }
    if chunks == 0 {
        return Assignment {
            delete: open,
            ..Assignment::default()
        };
    }
    let batch = match open.first() {
        Some(&i) => files[i].slot.supplement,
        None => files
            .iter()
            .map(|f| f.slot.supplement + 1)
            .max()
            .unwrap_or(0),
    };
    let in_batch = |f: &GroupFile| f.slot.supplement == batch;
    let open_here: Vec<usize> = open
        .iter()
        .copied()
        .filter(|i| in_batch(&files[*i]))
        .collect();
    let kept_here = files
        .iter()
        .zip(&roles)
        .filter(|(f, r)| in_batch(f) && **r != Role::Open)
        .count() as u32;
    let mut next_part = files
        .iter()
        .filter(|f| in_batch(f))
        .map(|f| f.slot.part)
        .max()
        .unwrap_or(0)
        + 1;
    let parts = kept_here + chunks as u32;
    let mut jobs = Vec::with_capacity(chunks);
    for chunk in 0..chunks {
        let (slot, file) = match open_here.get(chunk) {
            Some(&i) => (files[i].slot, Some(i)),
            None => {
                let s = FileSlot::new(batch, next_part);
                next_part += 1;
                (s, None)
            }
        };
        jobs.push(SlotJob {
            slot,
            file,
            chunk,
            parts,
        });
    }
    let delete = open
        .iter()
        .copied()
        .filter(|i| !jobs.iter().any(|j| j.file == Some(*i)))
        .collect();
    Assignment {
        jobs,
        delete,
        left_over: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use UsageFileStatus as S;

    fn h(c: char) -> String {
        c.to_string().repeat(64)
    }

    /// A file at `slot` in `status`, whose note vouches for rows `rows` (a digest letter and a
    /// count) built when the group's records were `group`.
    fn file(
        id: &str,
        slot: (u32, u32),
        status: S,
        rows: Option<(char, usize)>,
        group: Option<char>,
    ) -> GroupFile {
        let note = match rows {
            Some((c, n)) => FileNote::default()
                .uploading(&h(c), n, None, 1, group.map(h).as_deref())
                .processed(&h(c), n, Some(100)),
            None => FileNote::default(),
        };
        GroupFile {
            slot: FileSlot::new(slot.0, slot.1),
            id: id.into(),
            status,
            note,
            uploaded_at: rows.map(|_| 100),
            rows: rows.map(|(_, n)| n as u64),
        }
    }

    fn records<'a>(digest: &'a str, chunks: &'a [(String, usize)]) -> GroupRecords<'a> {
        GroupRecords {
            digest,
            count: chunks.iter().map(|(_, n)| n).sum(),
            chunks,
        }
    }

    fn chunks(cs: &[(char, usize)]) -> Vec<(String, usize)> {
        cs.iter().map(|(c, n)| (h(*c), *n)).collect()
    }

    #[test]
    fn roles_follow_status_and_scope() {
        let month = Scope::Month;
        let rerun = Scope::Rerun {
            file_id: "UF-2".into(),
        };
        for (status, in_month, in_rerun) in [
            (S::Pending, Role::Sealed, Role::Sealed),
            (S::Accepted, Role::Sealed, Role::Sealed),
            (S::Closed, Role::Sealed, Role::Sealed),
            (S::Rejected, Role::Held, Role::Kept),
            (S::Draft, Role::Open, Role::Kept),
            (S::Ready, Role::Open, Role::Kept),
            (S::Invalid, Role::Open, Role::Kept),
            (S::Processing, Role::Open, Role::Kept),
            (S::Deleted, Role::Stuck, Role::Stuck),
            (S::Other("x".into()), Role::Stuck, Role::Stuck),
        ] {
            let f = file("UF-1", (0, 1), status.clone(), None, None);
            assert_eq!(role(&f, &month), in_month, "{status}");
            assert_eq!(role(&f, &rerun), in_rerun, "{status}");
        }
        let target = file("UF-2", (0, 1), S::Rejected, None, None);
        assert_eq!(role(&target, &rerun), Role::Open);
    }

    #[test]
    fn records_read_later_by_another_task_stand() {
        // `file` notes its rows as read at 1.
        let files = [
            file("UF-1", (0, 1), S::Pending, Some(('a', 4)), None),
            file("UF-2", (0, 2), S::Ready, Some(('b', 2)), None),
        ];
        assert!(read_later(&files, 0), "read after this run began");
        assert!(!read_later(&files, 1));
        assert!(!read_later(&files, 5));
        // A file uploaded into since its note was written: its note says nothing.
        let mut replaced = files[0].clone();
        replaced.uploaded_at = Some(101);
        assert!(!read_later(&[replaced], 0));
        // Connect counted other rows than noted.
        let mut miscounted = files[0].clone();
        miscounted.rows = Some(3);
        assert!(!read_later(&[miscounted], 0));
        assert!(!read_later(&[], 0));
    }

    #[test]
    fn a_group_with_no_submitted_file_is_all_this_runs() {
        let cs = chunks(&[('a', 5)]);
        let r = records(&cs[0].0, &cs);
        assert_eq!(coverage(&[], &Scope::Month, &r), Coverage::Nothing);
        let files = [
            file("UF-1", (0, 1), S::Ready, Some(('x', 3)), None),
            file("UF-2", (0, 2), S::Draft, None, None),
        ];
        assert_eq!(coverage(&files, &Scope::Month, &r), Coverage::Nothing);
    }

    #[test]
    fn a_submitted_month_of_the_same_records_is_all_reported() {
        // The month's only file, noted before covers existed: its own digest is the group's.
        let cs = chunks(&[('a', 5)]);
        let only = [file("UF-1", (0, 1), S::Accepted, Some(('a', 5)), None)];
        assert_eq!(
            coverage(&only, &Scope::Month, &records(&h('a'), &cs)),
            Coverage::All
        );
        // Two parts and a supplement; the supplement covers the group as it is now.
        let cs = chunks(&[('p', 4), ('q', 4), ('r', 1)]);
        let g = h('g');
        let missing = [
            file("UF-1", (0, 1), S::Closed, Some(('p', 4)), Some('g')),
            file("UF-2", (0, 2), S::Accepted, Some(('q', 4)), Some('g')),
        ];
        assert_eq!(
            coverage(&missing, &Scope::Month, &records(&g, &cs)),
            Coverage::Chunks(vec![0, 1]),
            "part 3 was never made: the notes say so by their row counts"
        );
        let files = [
            file("UF-1", (0, 1), S::Closed, Some(('x', 4)), Some('o')),
            file("UF-2", (0, 2), S::Accepted, Some(('y', 3)), Some('o')),
            file("UF-3", (1, 1), S::Pending, Some(('z', 2)), Some('g')),
        ];
        assert_eq!(
            coverage(&files, &Scope::Month, &records(&g, &cs)),
            Coverage::All
        );
        // The vendor's records changed since: what the files hold must be read.
        assert_eq!(
            coverage(&files, &Scope::Month, &records(&h('n'), &cs)),
            Coverage::Read(vec![0, 1, 2])
        );
        // Part 2 was rebuilt (a rerun) after the supplement: its records may be others now.
        let mut rebuilt = files.clone();
        rebuilt[1].note.read = Some(2);
        assert_eq!(
            coverage(&rebuilt, &Scope::Month, &records(&g, &cs)),
            Coverage::Read(vec![0, 1, 2])
        );
        // A submitted file whose events lack its upload still holds rows to read.
        let mut no_events = files.clone();
        no_events[0].uploaded_at = None;
        no_events[0].note = FileNote::default();
        assert_eq!(
            coverage(&no_events, &Scope::Month, &records(&g, &cs)),
            Coverage::Read(vec![0, 1, 2])
        );
    }

    #[test]
    fn a_file_uploaded_into_since_its_note_does_not_vouch() {
        let cs = chunks(&[('a', 5)]);
        let mut f = file("UF-1", (0, 1), S::Pending, Some(('a', 5)), None);
        f.uploaded_at = Some(101);
        assert_eq!(
            coverage(&[f], &Scope::Month, &records(&h('a'), &cs)),
            Coverage::Read(vec![0])
        );
    }

    #[test]
    fn a_batch_cut_from_the_same_records_needs_no_reading() {
        // Part 1 submitted, part 2 still ready: a crash between the two submits.
        let cs = chunks(&[('a', 4), ('b', 2)]);
        let files = [
            file("UF-1", (0, 1), S::Pending, Some(('a', 4)), Some('g')),
            file("UF-2", (0, 2), S::Ready, Some(('b', 2)), Some('g')),
        ];
        let g = h('g');
        let r = records(&g, &cs);
        assert_eq!(
            coverage(&files, &Scope::Month, &r),
            Coverage::Chunks(vec![0])
        );
        // Part 2 submitted first.
        let files = [
            file("UF-1", (0, 1), S::Ready, Some(('a', 4)), Some('g')),
            file("UF-2", (0, 2), S::Accepted, Some(('b', 2)), Some('g')),
        ];
        assert_eq!(
            coverage(&files, &Scope::Month, &r),
            Coverage::Chunks(vec![1])
        );
        // A rejected part is held, and aligned the same way.
        let files = [
            file("UF-1", (0, 1), S::Rejected, Some(('a', 4)), Some('g')),
            file("UF-2", (0, 2), S::Accepted, Some(('b', 2)), Some('g')),
        ];
        assert_eq!(
            coverage(&files, &Scope::Month, &r),
            Coverage::Chunks(vec![0, 1])
        );
        // Records changed since the batch was cut: read the submitted part.
        let files = [
            file("UF-1", (0, 1), S::Pending, Some(('a', 4)), Some('o')),
            file("UF-2", (0, 2), S::Ready, Some(('b', 2)), Some('o')),
        ];
        assert_eq!(coverage(&files, &Scope::Month, &r), Coverage::Read(vec![0]));
        // A part whose chunk no longer matches (same group digest noted by mistake, say).
        let files = [
            file("UF-1", (0, 1), S::Pending, Some(('c', 4)), Some('g')),
            file("UF-2", (0, 2), S::Ready, Some(('b', 2)), Some('g')),
        ];
        assert_eq!(coverage(&files, &Scope::Month, &r), Coverage::Read(vec![0]));
    }

    #[test]
    fn a_rerun_reads_what_the_other_files_keep() {
        let cs = chunks(&[('a', 4), ('b', 2)]);
        let rerun = Scope::Rerun {
            file_id: "UF-2".into(),
        };
        // The other part is aligned: no reading.
        let files = [
            file("UF-1", (0, 1), S::Pending, Some(('a', 4)), Some('g')),
            file("UF-2", (0, 2), S::Rejected, Some(('b', 2)), Some('g')),
        ];
        assert_eq!(
            coverage(&files, &rerun, &records(&h('g'), &cs)),
            Coverage::Chunks(vec![0])
        );
        // The vendor changed the records (that is why the provider rejected): read part 1,
        // and the supplement's draft holds nothing to read.
        let files = [
            file("UF-1", (0, 1), S::Pending, Some(('a', 4)), Some('g')),
            file("UF-2", (0, 2), S::Rejected, Some(('b', 2)), Some('g')),
            file("UF-3", (1, 1), S::Draft, None, None),
        ];
        assert_eq!(
            coverage(&files, &rerun, &records(&h('n'), &cs)),
            Coverage::Read(vec![0])
        );
        // The month's only file rerun: nothing else keeps rows.
        let only = [file("UF-2", (0, 1), S::Rejected, Some(('b', 2)), None)];
        assert_eq!(
            coverage(&only, &rerun, &records(&h('n'), &cs)),
            Coverage::Nothing
        );
    }

    #[test]
    fn chunks_go_to_open_parts_in_order_then_new_parts() {
        // A first run: no files, three chunks.
        let a = assign(&[], &Scope::Month, 3);
        assert_eq!(
            a.jobs,
            (0..3)
                .map(|c| SlotJob {
                    slot: FileSlot::new(0, c as u32 + 1),
                    file: None,
                    chunk: c,
                    parts: 3
                })
                .collect::<Vec<_>>()
        );
        assert!(a.delete.is_empty());
        // A resumed run: part 1 exists, part 2 is new.
        let files = [file("UF-1", (0, 1), S::Ready, Some(('a', 4)), None)];
        let a = assign(&files, &Scope::Month, 2);
        assert_eq!(
            a.jobs.iter().map(|j| (j.slot, j.file)).collect::<Vec<_>>(),
            [(FileSlot::new(0, 1), Some(0)), (FileSlot::new(0, 2), None)]
        );
        // Part 1 submitted, part 2 open: the remaining chunk goes to part 2.
        let files = [
            file("UF-1", (0, 1), S::Pending, Some(('a', 4)), None),
            file("UF-2", (0, 2), S::Ready, Some(('b', 2)), None),
        ];
        let a = assign(&files, &Scope::Month, 1);
        assert_eq!(
            a.jobs,
            [SlotJob {
                slot: FileSlot::new(0, 2),
                file: Some(1),
                chunk: 0,
                parts: 2
            }]
        );
    }

    #[test]
    fn chunks_of_the_same_records_go_back_to_their_parts() {
        // Part 1 submitted before a crash, parts 2 and 3 never made: they are made, not a
        // supplement.
        let files = [file("UF-1", (0, 1), S::Pending, Some(('a', 4)), Some('g'))];
        let a = assign_aligned(&files, &Scope::Month, &[1, 2], 3);
        assert_eq!(
            a.jobs,
            [
                SlotJob {
                    slot: FileSlot::new(0, 2),
                    file: None,
                    chunk: 0,
                    parts: 3
                },
                SlotJob {
                    slot: FileSlot::new(0, 3),
                    file: None,
                    chunk: 1,
                    parts: 3
                }
            ]
        );
        // Part 2 submitted, parts 1 and 3 open: each keeps its place.
        let files = [
            file("UF-1", (0, 1), S::Ready, Some(('a', 4)), Some('g')),
            file("UF-2", (0, 2), S::Pending, Some(('b', 4)), Some('g')),
            file("UF-3", (0, 3), S::Draft, None, None),
        ];
        let a = assign_aligned(&files, &Scope::Month, &[0, 2], 3);
        assert_eq!(
            a.jobs
                .iter()
                .map(|j| (j.slot.part, j.file))
                .collect::<Vec<_>>(),
            [(1, Some(0)), (3, Some(2))]
        );
        assert!(a.delete.is_empty());
        // A part beyond the records (an earlier, larger cut) goes.
        let files = [
            file("UF-1", (0, 1), S::Pending, Some(('a', 4)), Some('g')),
            file("UF-4", (0, 4), S::Ready, Some(('d', 1)), Some('o')),
        ];
        let a = assign_aligned(&files, &Scope::Month, &[1], 2);
        assert_eq!(a.delete, [1]);
    }

    #[test]
    fn fewer_chunks_than_open_parts_delete_the_rest() {
        let files = [
            file("UF-1", (0, 1), S::Ready, Some(('a', 4)), None),
            file("UF-2", (0, 2), S::Draft, None, None),
            file("UF-3", (0, 3), S::Invalid, Some(('c', 1)), None),
        ];
        let a = assign(&files, &Scope::Month, 1);
        assert_eq!(a.jobs.len(), 1);
        assert_eq!(a.jobs[0].file, Some(0));
        assert_eq!(a.jobs[0].parts, 1);
        assert_eq!(a.delete, [1, 2]);
        // Nothing left to send: every open file goes.
        let a = assign(&files, &Scope::Month, 0);
        assert!(a.jobs.is_empty());
        assert_eq!(a.delete, [0, 1, 2]);
    }

    #[test]
    fn records_after_a_submitted_batch_start_the_next_supplement() {
        let files = [
            file("UF-1", (0, 1), S::Accepted, Some(('a', 4)), None),
            file("UF-2", (0, 2), S::Rejected, Some(('b', 4)), None),
        ];
        let a = assign(&files, &Scope::Month, 1);
        assert_eq!(
            a.jobs,
            [SlotJob {
                slot: FileSlot::new(1, 1),
                file: None,
                chunk: 0,
                parts: 1
            }]
        );
        // The supplement under way is filled before another starts.
        let files = [
            file("UF-1", (0, 1), S::Accepted, Some(('a', 4)), None),
            file("UF-3", (1, 1), S::Pending, Some(('c', 4)), None),
            file("UF-4", (1, 2), S::Draft, None, None),
        ];
        let a = assign(&files, &Scope::Month, 2);
        assert_eq!(
            a.jobs
                .iter()
                .map(|j| (j.slot, j.file, j.parts))
                .collect::<Vec<_>>(),
            [
                (FileSlot::new(1, 2), Some(2), 3),
                (FileSlot::new(1, 3), None, 3)
            ]
        );
        // All submitted: supplement 2.
        let files = [
            file("UF-1", (0, 1), S::Accepted, Some(('a', 4)), None),
            file("UF-3", (1, 1), S::Pending, Some(('c', 4)), None),
        ];
        let a = assign(&files, &Scope::Month, 1);
        assert_eq!(a.jobs[0].slot, FileSlot::new(2, 1));
    }

    #[test]
    fn a_rerun_fills_only_its_file() {
        let rerun = Scope::Rerun {
            file_id: "UF-2".into(),
        };
        let files = [
            file("UF-1", (0, 1), S::Pending, Some(('a', 4)), None),
            file("UF-2", (0, 2), S::Rejected, Some(('b', 4)), None),
            file("UF-3", (0, 3), S::Ready, Some(('c', 1)), None),
        ];
        let a = assign(&files, &rerun, 2);
        assert_eq!(
            a.jobs,
            [SlotJob {
                slot: FileSlot::new(0, 2),
                file: Some(1),
                chunk: 0,
                parts: 3
            }]
        );
        assert_eq!(a.left_over, 1, "the rest is the monthly run's");
        assert!(a.delete.is_empty(), "a rerun deletes nothing");
        let a = assign(&files, &rerun, 0);
        assert!(a.jobs.is_empty());
    }
}
