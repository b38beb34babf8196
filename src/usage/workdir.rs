//! The run's work directory: where a run keeps on local disk what must wait while the rest of
//! the month is read (records spilled by the sorter, each group's rows, workbooks before their
//! upload, the rows of files Connect holds), so that its memory does not grow with the month.
//!
//! Each run gets a directory of its own under `WORK_DIR` (the system's temporary directory by
//! default), named `connect-usage-run-*`, holding a `lock` file that the run keeps locked while
//! it lives. The directory is made under another name and renamed once its lock is held, so
//! no other run ever sees it unlocked. It is removed when the run ends, whatever the outcome;
//! a run that crashed leaves its directory behind with nobody holding the lock, and the next
//! run to start under the same `WORK_DIR` removes it. Nothing in it is ever read by a later
//! run: Connect's state stays the only memory between runs. (On a filesystem without locks,
//! runs go on unlocked and leave leftovers to a person.)

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tracing::{debug, info, warn};

/// The prefix of every run's directory.
const PREFIX: &str = "connect-usage-run-";
/// The prefix of a run's directory before it is locked.
const NEW_PREFIX: &str = "connect-usage-new-";
const LOCK: &str = "lock";
/// A directory still under its first name is a run that died while making it; one this old
/// is certainly not being made any more.
const UNLOCKED_GRACE: Duration = Duration::from_secs(600);

/// A work directory that could not be made or used.
#[derive(Debug, thiserror::Error)]
#[error("work directory {path}: {reason} (set WORK_DIR to a writable directory with free space)")]
pub struct WorkDirError {
    pub path: String,
    pub reason: String,
}

impl WorkDirError {
    pub fn new(path: &Path, reason: impl std::fmt::Display) -> WorkDirError {
        WorkDirError {
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }
}

/// One run's directory; removed on drop.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    /// Held locked for the run's life: how the next run tells a live directory from a leftover.
    _lock: File,
    next: AtomicU64,
}

/// Takes the lock; `false` when the filesystem has no locks (the run goes on unlocked).
fn lock(file: &File) -> io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::Error(e)) if e.kind() == io::ErrorKind::Unsupported => Ok(false),
        Err(e) => Err(io::Error::other(e)),
    }
}

impl WorkDir {
    /// Makes a new run directory under `base` (created if missing), after removing the
    /// leftovers of runs that crashed.
    pub fn create(base: &Path) -> Result<WorkDir, WorkDirError> {
        fs::create_dir_all(base).map_err(|e| WorkDirError::new(base, e))?;
        let removed = remove_leftovers(base);
        if removed > 0 {
            info!(work_dir = %base.display(), removed, "removed the work files of runs that did not end");
        }
        let unique = format!("{PREFIX}{}-{:x}", std::process::id(), rand::random::<u64>());
        let path = base.join(unique);
        fs::create_dir(&path).map_err(|e| WorkDirError::new(&path, e))?;
        let lock_path = path.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&lock_path)
            .and_then(|f| f.try_lock().map(|()| f).map_err(io::Error::other))
            .map_err(|e| {
                let _ = fs::remove_dir_all(&path);
                WorkDirError::new(&lock_path, e)
            })?;
        debug!(work_dir = %path.display(), "work directory created");
        Ok(WorkDir {
            path,
            _lock: lock,
            next: AtomicU64::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new file name in the directory, unique within the run: `{stem}-{n}.{ext}`.
    pub fn new_file(&self, stem: &str, ext: &str) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.path.join(format!("{stem}-{n}.{ext}"))
    }

    /// Bytes the directory's files take now.
    pub fn bytes_used(&self) -> u64 {
        dir_size(&self.path)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            warn!(work_dir = %self.path.display(), error = %e, "cannot remove the run's work directory");
        }
    }
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Removes the run directories under `base` whose lock nobody holds; returns how many.
fn remove_leftovers(base: &Path) -> usize {
    let Ok(entries) = fs::read_dir(base) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let dir = entry.path();
        let leftover = if name.starts_with(PREFIX) {
            dir.is_dir() && abandoned(&dir)
        } else if name.starts_with(NEW_PREFIX) {
            // A run that died while making its directory.
            dir.is_dir() && old(&dir)
        } else {
            false
        };
        if !leftover {
            continue;
        }
        match fs::remove_dir_all(&dir) {
            Ok(()) => removed += 1,
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "cannot remove a crashed run's work files")
            }
        }
    }
    removed
}

/// Whether no live run owns the directory: its lock can be taken (only ever released when its
/// holder's process ends, however it ends).
fn abandoned(dir: &Path) -> bool {
    File::open(dir.join(LOCK)).is_ok_and(|f| matches!(lock(&f), Ok(true)))
}

/// Whether the directory was last changed long enough ago that nobody is making it.
fn old(dir: &Path) -> bool {
    fs::metadata(dir)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > UNLOCKED_GRACE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("cu-workdir-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn a_run_directory_is_removed_at_the_end() {
        let base = base("end");
        let w = WorkDir::create(&base).expect("created");
        let f = w.new_file("rows", "bin");
        fs::write(&f, b"x").expect("write");
        assert!(f.exists());
        assert_eq!(w.bytes_used(), 1, "the lock file is empty");
        let dir = w.path().to_owned();
        drop(w);
        assert!(!dir.exists());
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn leftovers_of_crashed_runs_are_removed_live_ones_kept() {
        let base = base("leftovers");
        fs::create_dir_all(&base).expect("base");
        // A crashed run: a directory whose lock file nobody holds.
        let crashed = base.join(format!("{PREFIX}1-dead"));
        fs::create_dir(&crashed).expect("dir");
        fs::write(crashed.join(LOCK), b"").expect("lock");
        fs::write(crashed.join("rows-0.bin"), vec![0u8; 1000]).expect("rows");
        // Someone else's directory is never touched.
        let other = base.join("not-ours");
        fs::create_dir(&other).expect("other");
        // A run making its directory right now is not touched either.
        let making = base.join(format!("{NEW_PREFIX}2-making"));
        fs::create_dir(&making).expect("making");
        let live = WorkDir::create(&base).expect("first");
        assert!(!crashed.exists(), "the crashed run's files are gone");
        assert!(other.exists());
        assert!(making.exists());
        assert!(
            live.path()
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(PREFIX))
        );
        // A second run leaves the first, live one alone.
        let second = WorkDir::create(&base).expect("second");
        assert!(live.path().exists());
        assert_ne!(live.path(), second.path());
        drop((live, second));
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn an_unwritable_base_is_a_clear_error() {
        let e = WorkDir::create(Path::new("/proc/no-such-place")).expect_err("not writable");
        let text = e.to_string();
        assert!(text.contains("/proc/no-such-place"), "{text}");
        assert!(text.contains("WORK_DIR"), "{text}");
    }
}
