//! Usage from Parquet files. (Being built: issue 11.)

use std::path::Path;

use super::source::SourceError;
use super::source_file::Sender;

/// Reads a Parquet file into batches.
pub(crate) fn read_parquet(path: &Path, _tx: &Sender) -> Result<(), SourceError> {
    Err(SourceError::Format {
        path: path.display().to_string(),
        reason: "Parquet files are not read yet".into(),
    })
}
