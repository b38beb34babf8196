//! What to do next with one of the extension's usage files, given what Connect shows of it
//! (status, note, last upload), the rows this run wants it to hold and what this run already
//! did to it. A pure function, so every branch has a unit test; the report pipeline carries
//! out its answer, reads the file again and asks again, until the file is submitted or left.
//!
//! The note is the extension's only memory ([`FileNote`]): it vouches for the rows a file
//! holds once their upload was processed and nothing was uploaded after it.

use super::identity::{FileNote, digests_match};
use connect_client::models::UsageFileStatus;

/// A usage file as this round reads it.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    pub status: &'a UsageFileStatus,
    pub note: &'a FileNote,
    /// `events.uploaded.at` (Unix seconds).
    pub uploaded_at: Option<i64>,
    /// Rows Connect counted in the last upload (`stats.uploaded`), when it says.
    pub rows: Option<u64>,
    /// Submitted after its last upload (`events`, Connect's clock).
    pub submitted_since_upload: bool,
}

impl Seen<'_> {
    /// Whether Connect's count agrees with `records` (no count: yes).
    fn counts(&self, records: usize) -> bool {
        self.rows.is_none_or(|r| r == records as u64)
    }
}

/// The rows this run wants the file to hold.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    /// The rows' digest (64 hex digits).
    pub digest: &'a str,
    pub records: usize,
    /// When this run began reading the vendor's usage (Unix milliseconds).
    pub read_at: i64,
    /// A `rejected` file is this run's to upload again (a rerun after the provider's rejection).
    pub rerun_rejected: bool,
}

/// What this run did to the file so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Done {
    /// Created it.
    pub created: bool,
    /// Uploaded into it, submitted it, or noted a landed upload.
    pub acted: bool,
    /// Sent anything that may have changed it.
    pub sent: bool,
    /// Its upload was processed.
    pub uploaded: bool,
    pub submitted: bool,
}

/// What a file's note vouches it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vouch<'a> {
    /// These rows (digest as noted, count): processed, nothing uploaded since, and Connect's
    /// count agrees.
    Rows { digest: &'a str, records: usize },
    /// Someone uploaded rows into it after the extension noted its own: a person's.
    Foreign,
    /// Nothing known.
    Unknown,
}

/// What the note vouches the file holds.
pub fn vouched<'a>(seen: &Seen<'a>) -> Vouch<'a> {
    if seen.note.replaced(seen.uploaded_at) {
        return Vouch::Foreign;
    }
    match &seen.note.digest {
        Some((digest, records))
            if seen.note.holds(digest, seen.uploaded_at) && seen.counts(*records) =>
        {
            Vouch::Rows {
                digest,
                records: *records,
            }
        }
        _ => Vouch::Unknown,
    }
}

/// Why a submitted file counts as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    /// This run created it or took it further.
    ThisRun,
    /// It holds this very data.
    Ours,
    /// Another task reported records it read after this run began: they stand.
    Moved,
    /// Someone uploaded rows into it by hand.
    Foreign,
    /// Its note has no digest: nothing tells what it holds.
    NoDigest,
    /// It holds other rows than this run built for it (submitted by another task meanwhile).
    Other,
}

/// The next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// An upload of these very rows was processed after its run stopped waiting: note it as
    /// processed, without uploading again.
    NoteLanded,
    /// Submitted (pending, accepted, closed): nothing to do.
    Reported(Reported),
    /// Rejected by the provider: the rejection handler's.
    Rejected,
    /// Connect found these rows invalid.
    Invalid,
    /// Someone uploaded rows into it by hand: left to them.
    Foreign,
    /// Another task uploaded records it read after this run began: left to that task.
    Moved,
    Upload,
    Submit,
    /// Connect is processing an upload: wait for it.
    Wait,
    /// Deleted, or a status this extension does not know: for a person.
    Stuck,
}

/// Decides the next step.
pub fn next(seen: &Seen<'_>, want: &Wanted<'_>, done: &Done) -> NextStep {
    use UsageFileStatus as S;
    let note = seen.note;
    let at = seen.uploaded_at;
    if matches!(seen.status, S::Ready | S::Invalid)
        && let Some(landed) = note.landed(at)
        && digests_match(&landed.digest, want.digest)
        && seen.counts(landed.records)
    {
        return NextStep::NoteLanded;
    }
    let ours = matches!(
        vouched(seen),
        Vouch::Rows { digest, records } if digests_match(digest, want.digest) && records == want.records
    );
    // Records another task read from the vendor after this run began are newer than this
    // run's: they are left to that task rather than overwritten.
    let moved = !done.sent
        && !ours
        && note
            .rows_held(at)
            .is_some_and(|(_, records)| seen.counts(records))
        && note
            .read_of_content(at)
            .is_some_and(|read| read > want.read_at);
    let foreign = !done.sent && note.replaced(at);
    match seen.status {
        S::Pending | S::Accepted | S::Closed => NextStep::Reported(if done.created || done.acted {
            Reported::ThisRun
        } else if ours {
            Reported::Ours
        } else if moved {
            Reported::Moved
        } else if foreign {
            Reported::Foreign
        } else if note.digest().is_none() {
            Reported::NoDigest
        } else {
            Reported::Other
        }),
        // Submitted by this run: a rejection now is the provider's answer to it, for the next
        // rejection event.
        // (A submit whose answer was lost shows in the file's events.)
        S::Rejected if done.submitted || (done.uploaded && seen.submitted_since_upload) => {
            NextStep::Reported(Reported::ThisRun)
        }
        // A rerun uploads once; a rejection after that is the provider's new answer.
        S::Rejected if want.rerun_rejected && !done.uploaded && !moved => NextStep::Upload,
        S::Rejected => NextStep::Rejected,
        S::Ready | S::Invalid if foreign => NextStep::Foreign,
        // Found invalid: what Connect says of it is the news, whoever uploaded it.
        S::Invalid if done.uploaded || ours || moved => NextStep::Invalid,
        _ if moved => NextStep::Moved,
        S::Draft => NextStep::Upload,
        // Not (known to be) this data: replace it.
        S::Invalid | S::Ready if !ours => NextStep::Upload,
        S::Ready => NextStep::Submit,
        S::Uploading | S::Uploaded | S::Processing => NextStep::Wait,
        S::Invalid | S::Deleted | S::Other(_) => NextStep::Stuck,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use UsageFileStatus as S;

    const READ: i64 = 1_000_000;

    fn d(c: char) -> String {
        c.to_string().repeat(64)
    }

    /// A note that vouches for rows `c` (5 of them), uploaded at 100, read at `read`.
    fn noted(c: char, read: i64) -> FileNote {
        FileNote {
            read: Some(read),
            ..FileNote::default()
        }
        .processed(&d(c), 5, Some(100))
    }

    fn seen<'a>(status: &'a S, note: &'a FileNote, at: Option<i64>, rows: Option<u64>) -> Seen<'a> {
        Seen {
            status,
            note,
            uploaded_at: at,
            rows,
            submitted_since_upload: false,
        }
    }

    fn want(digest: &str) -> Wanted<'_> {
        Wanted {
            digest,
            records: 5,
            read_at: READ,
            rerun_rejected: false,
        }
    }

    fn step(status: S, note: &FileNote, at: Option<i64>, w: &Wanted<'_>, done: Done) -> NextStep {
        next(&seen(&status, note, at, Some(5)), w, &done)
    }

    #[test]
    fn a_new_draft_is_uploaded_then_submitted() {
        let a = d('a');
        let empty = FileNote::default();
        assert_eq!(
            step(S::Draft, &empty, None, &want(&a), Done::default()),
            NextStep::Upload
        );
        let sending = empty.uploading(&a, 5, None, READ, None);
        assert_eq!(
            step(
                S::Processing,
                &sending,
                Some(100),
                &want(&a),
                Done::default()
            ),
            NextStep::Wait
        );
        assert_eq!(
            step(S::Uploading, &sending, None, &want(&a), Done::default()),
            NextStep::Wait
        );
        assert_eq!(
            step(S::Uploaded, &sending, None, &want(&a), Done::default()),
            NextStep::Wait
        );
        // Processed after the run stopped waiting: noted, not sent again.
        assert_eq!(
            step(S::Ready, &sending, Some(100), &want(&a), Done::default()),
            NextStep::NoteLanded
        );
        assert_eq!(
            step(S::Invalid, &sending, Some(100), &want(&a), Done::default()),
            NextStep::NoteLanded
        );
        // ... unless Connect counted other rows than were named.
        assert_eq!(
            next(
                &seen(&S::Ready, &sending, Some(100), Some(4)),
                &want(&a),
                &Done::default()
            ),
            NextStep::Upload
        );
        // ... or it is another upload than the one named.
        assert_eq!(
            step(
                S::Ready,
                &sending,
                Some(100),
                &want(&d('b')),
                Done::default()
            ),
            NextStep::Upload
        );
        assert_eq!(
            step(
                S::Ready,
                &noted('a', READ),
                Some(100),
                &want(&a),
                Done::default()
            ),
            NextStep::Submit
        );
    }

    #[test]
    fn an_upload_named_but_not_landed_is_not_taken_for_the_rows() {
        let a = d('a');
        // Named after an upload at 100; the file still shows that upload.
        let sending = FileNote::default().uploading(&a, 5, Some(100), READ, None);
        assert_eq!(
            step(S::Ready, &sending, Some(100), &want(&a), Done::default()),
            NextStep::Upload
        );
    }

    #[test]
    fn submitted_files_say_why_they_count_as_reported() {
        let a = d('a');
        let w = want(&a);
        for status in [S::Pending, S::Accepted, S::Closed] {
            let ours = noted('a', READ);
            assert_eq!(
                step(status.clone(), &ours, Some(100), &w, Done::default()),
                NextStep::Reported(Reported::Ours)
            );
            let acted = Done {
                acted: true,
                sent: true,
                ..Done::default()
            };
            assert_eq!(
                step(status.clone(), &noted('b', READ), Some(100), &w, acted),
                NextStep::Reported(Reported::ThisRun)
            );
            let created = Done {
                created: true,
                sent: true,
                ..Done::default()
            };
            assert_eq!(
                step(status.clone(), &FileNote::default(), None, &w, created),
                NextStep::Reported(Reported::ThisRun)
            );
            assert_eq!(
                step(
                    status.clone(),
                    &noted('b', READ + 1),
                    Some(100),
                    &w,
                    Done::default()
                ),
                NextStep::Reported(Reported::Moved)
            );
            assert_eq!(
                step(
                    status.clone(),
                    &noted('b', READ),
                    Some(101),
                    &w,
                    Done::default()
                ),
                NextStep::Reported(Reported::Foreign)
            );
            assert_eq!(
                step(
                    status.clone(),
                    &FileNote::default(),
                    Some(100),
                    &w,
                    Done::default()
                ),
                NextStep::Reported(Reported::NoDigest)
            );
            assert_eq!(
                step(
                    status,
                    &noted('b', READ - 1),
                    Some(100),
                    &w,
                    Done::default()
                ),
                NextStep::Reported(Reported::Other)
            );
        }
    }

    #[test]
    fn rejected_files_belong_to_their_handler_unless_rerun() {
        let a = d('a');
        let note = noted('a', READ);
        assert_eq!(
            step(S::Rejected, &note, Some(100), &want(&a), Done::default()),
            NextStep::Rejected
        );
        let rerun = Wanted {
            rerun_rejected: true,
            ..want(&a)
        };
        assert_eq!(
            step(S::Rejected, &note, Some(100), &rerun, Done::default()),
            NextStep::Upload
        );
        // Uploaded once by this rerun: a rejection now is the provider's new answer.
        let uploaded = Done {
            uploaded: true,
            acted: true,
            sent: true,
            ..Done::default()
        };
        assert_eq!(
            step(S::Rejected, &note, Some(100), &rerun, uploaded),
            NextStep::Rejected
        );
        // Submitted by this run, then rejected at once: the next rejection event's.
        let submitted = Done {
            submitted: true,
            ..uploaded
        };
        assert_eq!(
            step(S::Rejected, &note, Some(100), &want(&a), submitted),
            NextStep::Reported(Reported::ThisRun)
        );
        // ... also when the submit's answer was lost: the file's events tell.
        let lost = Seen {
            submitted_since_upload: true,
            ..seen(&S::Rejected, &note, Some(100), Some(5))
        };
        assert_eq!(
            next(&lost, &rerun, &uploaded),
            NextStep::Reported(Reported::ThisRun)
        );
        // Another task reran it with newer records: left to it.
        assert_eq!(
            step(
                S::Rejected,
                &noted('b', READ + 1),
                Some(100),
                &rerun,
                Done::default()
            ),
            NextStep::Rejected
        );
    }

    #[test]
    fn invalid_files_are_reported_or_replaced() {
        let a = d('a');
        // Connect found this very data invalid.
        assert_eq!(
            step(
                S::Invalid,
                &noted('a', READ),
                Some(100),
                &want(&a),
                Done::default()
            ),
            NextStep::Invalid
        );
        let uploaded = Done {
            uploaded: true,
            acted: true,
            sent: true,
            ..Done::default()
        };
        assert_eq!(
            step(
                S::Invalid,
                &noted('b', READ),
                Some(100),
                &want(&a),
                uploaded
            ),
            NextStep::Invalid,
            "this run's own upload"
        );
        // Other data found invalid: replaced by this data.
        assert_eq!(
            step(
                S::Invalid,
                &noted('b', READ),
                Some(100),
                &want(&a),
                Done::default()
            ),
            NextStep::Upload
        );
        // Newer data of another task found invalid: still the news.
        assert_eq!(
            step(
                S::Invalid,
                &noted('b', READ + 1),
                Some(100),
                &want(&a),
                Done::default()
            ),
            NextStep::Invalid
        );
    }

    #[test]
    fn rows_of_others_are_left_to_them() {
        let a = d('a');
        // Uploaded by hand after the note.
        assert_eq!(
            step(
                S::Ready,
                &noted('b', READ),
                Some(101),
                &want(&a),
                Done::default()
            ),
            NextStep::Foreign
        );
        assert_eq!(
            step(
                S::Invalid,
                &noted('a', READ),
                Some(101),
                &want(&a),
                Done::default()
            ),
            NextStep::Foreign
        );
        // Once this run sent something, a later upload time is its own.
        let sent = Done {
            sent: true,
            ..Done::default()
        };
        assert_eq!(
            step(S::Ready, &noted('b', READ), Some(101), &want(&a), sent),
            NextStep::Upload
        );
        // Newer records of another task.
        assert_eq!(
            step(
                S::Ready,
                &noted('b', READ + 1),
                Some(100),
                &want(&a),
                Done::default()
            ),
            NextStep::Moved
        );
        assert_eq!(
            step(
                S::Draft,
                &noted('b', READ + 1),
                Some(100),
                &want(&a),
                Done::default()
            ),
            NextStep::Moved
        );
        // Older records of another task: replaced.
        assert_eq!(
            step(
                S::Ready,
                &noted('b', READ - 1),
                Some(100),
                &want(&a),
                Done::default()
            ),
            NextStep::Upload
        );
    }

    #[test]
    fn unknown_states_are_for_a_person() {
        let a = d('a');
        for status in [S::Deleted, S::Other("frozen".into())] {
            assert_eq!(
                step(
                    status,
                    &FileNote::default(),
                    None,
                    &want(&a),
                    Done::default()
                ),
                NextStep::Stuck
            );
        }
    }

    #[test]
    fn notes_vouch_only_for_current_counted_rows() {
        let note = noted('a', READ);
        assert_eq!(
            vouched(&seen(&S::Ready, &note, Some(100), Some(5))),
            Vouch::Rows {
                digest: &d('a')[..32],
                records: 5
            }
        );
        assert_eq!(
            vouched(&seen(&S::Ready, &note, Some(100), Some(6))),
            Vouch::Unknown,
            "Connect counted other rows"
        );
        assert_eq!(
            vouched(&seen(&S::Ready, &note, Some(101), Some(5))),
            Vouch::Foreign
        );
        let sending = FileNote::default().uploading(&d('a'), 5, None, READ, None);
        assert_eq!(
            vouched(&seen(&S::Ready, &sending, Some(100), Some(5))),
            Vouch::Unknown,
            "an upload not yet noted as processed"
        );
        assert_eq!(
            vouched(&seen(&S::Ready, &FileNote::default(), Some(100), None)),
            Vouch::Unknown
        );
    }
}
