//! Usage from a PostgreSQL database. (Being built: issue 11.)

use futures_util::stream;

use super::period::Period;
use super::source::{Batches, SourceError, UsageSource};

/// Where the database is and what to ask it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresSpec {
    url: String,
}

impl PostgresSpec {
    pub fn parse(
        url: &str,
        _lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<PostgresSpec, SourceError> {
        Ok(PostgresSpec {
            url: url.to_owned(),
        })
    }
}

/// A PostgreSQL database as a usage source.
#[derive(Debug)]
pub struct PostgresSource {
    spec: PostgresSpec,
}

impl PostgresSource {
    pub fn new(spec: PostgresSpec) -> PostgresSource {
        PostgresSource { spec }
    }
}

impl UsageSource for PostgresSource {
    fn describe(&self) -> String {
        "PostgreSQL".into()
    }

    fn records(&self, _period: Period) -> Batches {
        let _ = &self.spec;
        let e = SourceError::Config("PostgreSQL is not read yet".into());
        Box::pin(stream::once(async move { Err(e) }))
    }
}
