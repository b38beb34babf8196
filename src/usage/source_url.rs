//! Usage from an export file behind an http(s) URL. (Being built: issue 11.)

use futures_util::stream;

use super::period::Period;
use super::source::{Batches, SourceError, UsageSource};
use crate::secret::Secret;

/// An export file at a URL, perhaps naming the month.
#[derive(Debug, Clone)]
pub struct FileUrlSource {
    url: String,
    #[allow(dead_code)]
    token: Secret,
}

impl FileUrlSource {
    pub fn new(url: &str, token: Secret) -> Result<FileUrlSource, SourceError> {
        Ok(FileUrlSource {
            url: url.to_owned(),
            token,
        })
    }
}

impl UsageSource for FileUrlSource {
    fn describe(&self) -> String {
        format!("file {}", self.url)
    }

    fn records(&self, _period: Period) -> Batches {
        let e = SourceError::Config("files behind URLs are not read yet".into());
        Box::pin(stream::once(async move { Err(e) }))
    }
}
