//! `GET /sandbox/summary`: what happened, for a person at a terminal. The state dump
//! (`/sandbox/state`) is the whole truth, megabytes of JSON on one line; this is a few lines of
//! text that fit a terminal: the usage files (contract, product, period, status, records), the
//! tasks the platform ran and their results, the provider's answers and the acknowledgements.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::server::SandboxState;

/// A task's line is cut to this many characters (the state dump has its result whole).
const LINE_CHARS: usize = 108;

/// The summary, as text ending with a newline.
pub fn summary(app: &SandboxState) -> String {
    let mut out = String::new();
    {
        let store = app.store();
        let files: Vec<_> = store.files.iter().collect();
        let _ = writeln!(
            out,
            "Usage files: {}{}",
            files.len(),
            counts(files.iter().map(|f| f.status.as_str().to_owned()))
        );
        for f in &files {
            let period = f
                .period
                .map(|(from, _)| from.format("%Y-%m").to_string())
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "  {}  {}  {}  {period}  {:<10} {:>7} records",
                f.id,
                f.contract["id"].as_str().unwrap_or("-"),
                f.product["id"].as_str().unwrap_or("-"),
                f.status.as_str(),
                f.records.len(),
            );
        }
        let _ = writeln!(
            out,
            "Acknowledgements to the vendor: {}",
            store.acknowledgements.len()
        );
    }
    let answers: Vec<String> = app
        .provider()
        .log
        .iter()
        .map(|a| a["decision"].as_str().unwrap_or("?").to_owned())
        .collect();
    let _ = writeln!(
        out,
        "Provider answers: {}{}",
        answers.len(),
        counts(answers.into_iter())
    );
    let tasks = app.platform().tasks();
    let _ = writeln!(
        out,
        "Tasks: {}{}",
        tasks.len(),
        counts(
            tasks
                .iter()
                .map(|t| t["status"].as_str().unwrap_or("?").to_owned())
        )
    );
    for t in &tasks {
        let id = t["id"].as_str().unwrap_or("-");
        let object = t["object"]["id"].as_str().unwrap_or("-");
        let status = t["status"].as_str().unwrap_or("-");
        let head = format!("  {id}  {object}  {status}: ");
        let message = without_the_file(t["output"].as_str().unwrap_or_default(), object);
        let room = LINE_CHARS.saturating_sub(head.chars().count()).max(20);
        let _ = writeln!(out, "{head}{}", cut(&message, room));
    }
    out
}

/// ` (11 accepted, 1 rejected)`, or nothing for none.
fn counts(values: impl Iterator<Item = String>) -> String {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for v in values {
        *by.entry(v).or_default() += 1;
    }
    if by.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = by.iter().map(|(k, n)| format!("{n} {k}")).collect();
    format!(" ({})", parts.join(", "))
}

/// A result without the file's description, which the line already names (`usage file
/// UF-... (contract ..., product ..., 2026-11) accepted` is `file accepted`).
fn without_the_file(message: &str, object: &str) -> String {
    let named = format!("usage file {object} (");
    let Some(at) = message.find(&named) else {
        return message.to_owned();
    };
    let after = &message[at + named.len()..];
    match after.find(')') {
        Some(close) => format!("{}file{}", &message[..at], &after[close + 1..]),
        None => message.to_owned(),
    }
}

/// At most `room` characters of `text`, on one line.
fn cut(text: &str, room: usize) -> String {
    let text = text.replace('\n', " ");
    if text.chars().count() <= room {
        return text;
    }
    let kept: String = text.chars().take(room.saturating_sub(1)).collect();
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_cuts() {
        let v = ["accepted", "rejected", "accepted"].map(str::to_owned);
        assert_eq!(counts(v.into_iter()), " (2 accepted, 1 rejected)");
        assert_eq!(counts(std::iter::empty()), "");
        assert_eq!(cut("short\nline", 20), "short line");
        let long = "x".repeat(100);
        assert_eq!(cut(&long, 30).chars().count(), 30);
        assert!(cut(&long, 30).ends_with('…'));
        let id = "UF-2026-12-0000-0001";
        assert_eq!(
            without_the_file(
                "usage file UF-2026-12-0000-0001 (contract CRD-1, product PRD-2, 2026-11) accepted by the provider",
                id
            ),
            "file accepted by the provider"
        );
        assert_eq!(
            without_the_file(
                "Rerun 1 of at most 3: usage file UF-2026-12-0000-0001 (contract CRD-1) rebuilt",
                id
            ),
            "Rerun 1 of at most 3: file rebuilt"
        );
        assert_eq!(without_the_file("2026-11 complete", id), "2026-11 complete");
    }
}
