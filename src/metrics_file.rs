//! The run's figures as a file: node_exporter's textfile collector reads a directory of
//! `*.prom` files at any time, so the file is replaced whole, never written in place.

use std::io::Write;
use std::path::Path;

use crate::replace_file::Replacement;

/// Writes `text` to `path` so a reader sees the old file or the new one, never a part, and
/// synced (node_exporter's textfile collector reads the directory at any time, and ignores
/// the hidden temporary file).
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let (replacement, mut file) = Replacement::start(path)?;
    file.write_all(text.as_bytes())?;
    replacement.finish(file, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("cu-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("connect_usage.prom");
        write_atomically(&path, "a 1\n").expect("first");
        write_atomically(&path, "a 2\n").expect("second");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "a 2\n");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        std::fs::remove_dir_all(&dir).expect("clean");
    }
}
