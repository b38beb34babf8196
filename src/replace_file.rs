//! Replacing a file whole. What is written goes to a temporary file beside the target
//! (`.NAME.PID.tmp`: hidden, so a reader of `*.prom` or `*.xlsx` passes it by, and two
//! processes never share one), renamed over the target once complete. A reader sees the old
//! file or the new one, never a part, and an abandoned write (an error, a panic) leaves nothing:
//! the temporary file is removed when its [`Replacement`] is dropped unfinished.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// A replacement of one file under way.
#[derive(Debug)]
pub struct Replacement {
    tmp: PathBuf,
    target: PathBuf,
    done: bool,
}

impl Replacement {
    /// Starts replacing `target`: the temporary file, created empty, to write into.
    pub fn start(target: &Path) -> io::Result<(Replacement, File)> {
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = File::create(&tmp)?;
        let replacement = Replacement {
            tmp,
            target: target.to_owned(),
            done: false,
        };
        Ok((replacement, file))
    }

    /// Puts `file` (the one [`start`](Self::start) gave, written) in the target's place;
    /// `sync` first has its bytes reach the disk, for a file that must survive a power cut
    /// whole (a file the run reads back itself needs no such wait).
    pub fn finish(mut self, file: File, sync: bool) -> io::Result<()> {
        if sync {
            file.sync_all()?;
        }
        drop(file);
        std::fs::rename(&self.tmp, &self.target)?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Replacement {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cu-replace-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_target_is_replaced_only_when_finished() {
        let dir = scratch("finish");
        let target = dir.join("figures.prom");
        std::fs::write(&target, "old").expect("old");
        let (replacement, mut file) = Replacement::start(&target).expect("start");
        file.write_all(b"new").expect("write");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "old");
        assert_eq!(names(&dir).len(), 2, "the target and the temporary file");
        replacement.finish(file, true).expect("finish");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "new");
        assert_eq!(names(&dir), ["figures.prom"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_abandoned_replacement_leaves_the_old_file_alone() {
        let dir = scratch("abandon");
        let target = dir.join("usage.xlsx");
        std::fs::write(&target, "old").expect("old");
        let (replacement, mut file) = Replacement::start(&target).expect("start");
        file.write_all(b"half").expect("write");
        drop(replacement);
        assert_eq!(names(&dir), ["usage.xlsx"]);
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "old");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
