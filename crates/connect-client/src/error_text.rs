//! An error and its causes as one line of text, each cause said once. Errors here often carry
//! their cause's message in their own (`cannot read FILE: <why>`) and also expose the cause as
//! their `source()`, so printing the whole chain would say `<why>` twice; a cause whose text
//! the line already holds is left out.

use std::error::Error;

/// `error: cause: cause's cause`, without the causes the text before them already says.
pub fn error_text(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !next.is_empty() && !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read usage.csv: {source}")]
    struct Said {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("the run failed")]
    struct Wrapped(#[source] Said);

    #[test]
    fn each_cause_is_said_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        assert_eq!(
            error_text(&Said { source: io() }),
            "cannot read usage.csv: no such file"
        );
        assert_eq!(
            error_text(&Wrapped(Said { source: io() })),
            "the run failed: cannot read usage.csv: no such file"
        );
        let through_anyhow = anyhow::Error::from(Wrapped(Said { source: io() }));
        assert_eq!(
            error_text(through_anyhow.as_ref()),
            "the run failed: cannot read usage.csv: no such file"
        );
    }
}
