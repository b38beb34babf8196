//! The whole story on an embedded sandbox: what `connect-usage demo` shows and what the
//! end-to-end test checks.
//!
//! A sandbox starts in-process with its default dataset and a provider that rejects the first
//! file it reviews (once, with a note) and accepts the others. The extension's runner, with
//! every registered handler, connects to it over the websocket; the monthly schedule is
//! fired; the files are created, uploaded and submitted; the rejected one is rerun and
//! submitted again; accepted files are acknowledged to the vendor. The watcher follows the
//! sandbox's own state (its event log, tasks, provider answers and acknowledgements) and
//! says whether the story completed as expected.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use crate::usage::Month;
use crate::usage::identity::{EXTERNAL_ID_PREFIX, FileNote};
use crate::usage::locks::GroupLocks;
use connect_client::ApiKey;
use connect_eaas::registry::Registry;
use connect_eaas::runner::{Runner, RunnerConfig, RunnerHandle};
use connect_sandbox::{ProviderPolicy, RuntimeConfig, Sandbox, SandboxConfig};

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Usage records the sandbox's vendor API serves for the month.
    pub usage_records: u64,
    /// Time the story gets before it is called incomplete.
    pub timeout: Duration,
    /// The provider's behaviour (the demo's: reject the first file once).
    pub provider: ProviderPolicy,
    /// The instance id of the runner.
    pub instance_id: String,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            usage_records: 1200,
            timeout: Duration::from_secs(120),
            provider: ProviderPolicy::demo(),
            instance_id: "demo-runner".into(),
        }
    }
}

/// Something worth telling while the demo runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Seconds since the start.
    pub at: f64,
    pub text: String,
}

/// A usage file at the end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoFile {
    pub id: String,
    pub contract: String,
    pub product: String,
    pub records: u64,
    pub status: String,
    pub reruns: u32,
    pub rejection_note: Option<String>,
    pub acknowledged: bool,
}

/// A task the platform ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoTask {
    pub id: String,
    pub event: String,
    pub object: String,
    pub status: String,
    pub message: String,
}

/// How the story ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoOutcome {
    /// Everything happened as the story says.
    pub completed: bool,
    /// What did not (empty when completed).
    pub problems: Vec<String>,
    pub period: String,
    pub files: Vec<DemoFile>,
    /// The monthly task's result message: the run summary.
    pub summary: String,
    pub tasks: Vec<DemoTask>,
    pub steps: Vec<Step>,
    pub duration_ms: u64,
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start the sandbox: {0}")]
    Sandbox(std::io::Error),
    #[error("cannot start the runner: {0}")]
    Runner(String),
}

/// The schedule the default dataset declares.
pub const SCHEDULE_ID: &str = "EFS-7391-2740-001";

/// Runs the story on a sandbox of its own, calling `progress` for each step as it happens.
pub async fn run(
    options: DemoOptions,
    progress: impl FnMut(&Step),
) -> Result<DemoOutcome, DemoError> {
    let sandbox = Sandbox::start(sandbox_config(&options))
        .await
        .map_err(DemoError::Sandbox)?;
    let outcome = run_on(&sandbox, &options, progress).await;
    sandbox.shutdown().await;
    outcome
}

/// The sandbox the demo runs on: the default dataset, `options`' records and provider.
pub fn sandbox_config(options: &DemoOptions) -> SandboxConfig {
    SandboxConfig {
        runtime: RuntimeConfig {
            usage_records: options.usage_records,
            ..RuntimeConfig::default()
        },
        provider: options.provider.clone(),
        ..SandboxConfig::default()
    }
}

/// Runs the story on a sandbox started with [`sandbox_config`] (which stays up, for a test to
/// look at).
pub async fn run_on(
    sandbox: &Sandbox,
    options: &DemoOptions,
    mut progress: impl FnMut(&Step),
) -> Result<DemoOutcome, DemoError> {
    let started = Instant::now();
    let mut steps: Vec<Step> = Vec::new();
    let mut say = |text: String, steps: &mut Vec<Step>| {
        let step = Step {
            at: (started.elapsed().as_millis() as f64 / 1000.0 * 10.0).round() / 10.0,
            text,
        };
        progress(&step);
        steps.push(step);
    };
    let period = Month::previous_month(chrono::Utc::now());
    say(
        format!(
            "sandbox started at {} (default dataset; the vendor API serves {} usage records for {})",
            sandbox.origin(),
            options.usage_records,
            period
        ),
        &mut steps,
    );
    let runner = start_runner(sandbox, &options.instance_id)?;
    if !runner.wait_connected(Duration::from_secs(15)).await {
        runner.stop();
        let _ = runner.wait().await;
        return Err(DemoError::Runner(
            "the runner did not connect to the sandbox within 15 s".into(),
        ));
    }
    let env = sandbox.state().dataset().extension().environment.id;
    say(
        format!("runner connected to the events platform (environment {env})"),
        &mut steps,
    );
    let schedule_task = match sandbox.state().platform().trigger_schedule(SCHEDULE_ID) {
        Ok((_, id)) => id,
        Err(e) => {
            runner.stop();
            let _ = runner.wait().await;
            return Err(DemoError::Runner(format!(
                "cannot fire the monthly schedule: {e}"
            )));
        }
    };
    say(
        format!("monthly schedule {SCHEDULE_ID} fired: task {schedule_task}"),
        &mut steps,
    );

    let deadline = started + options.timeout;
    let mut watcher = Watcher::default();
    let mut problems;
    loop {
        let view = View::read(sandbox);
        for text in watcher.news(&view, &schedule_task) {
            say(text, &mut steps);
        }
        problems = view.problems(&schedule_task);
        if problems.is_empty() || view.hopeless(&schedule_task) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !problems.is_empty() && Instant::now() >= deadline {
        problems.push(format!(
            "the story did not complete within {} s",
            options.timeout.as_secs()
        ));
    }
    runner.stop();
    let _ = runner.wait().await;
    let view = View::read(sandbox);
    Ok(DemoOutcome {
        completed: problems.is_empty(),
        problems,
        period: period.to_string(),
        files: view.files(),
        summary: view
            .task(&schedule_task)
            .map(|t| t.message.clone())
            .unwrap_or_default(),
        tasks: view.tasks.clone(),
        steps,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

fn start_runner(sandbox: &Sandbox, instance: &str) -> Result<RunnerHandle, DemoError> {
    let ext = sandbox.state().dataset().extension();
    let key: ApiKey = sandbox
        .key(&ext.api_key)
        .ok_or_else(|| DemoError::Runner("the dataset has no extension key".into()))?;
    let config = RunnerConfig::local(&sandbox.origin(), &key, &ext.environment.id, instance)
        .map_err(|e| DemoError::Runner(e.to_string()))?;
    let registry = Registry::collect().map_err(|e| DemoError::Runner(e.to_string()))?;
    let descriptor = crate::builtin_descriptor().map_err(|e| DemoError::Runner(e.to_string()))?;
    Ok(Runner::new(config, registry, &descriptor, None)
        .map_err(|e| DemoError::Runner(e.to_string()))?
        .with_state(GroupLocks::default())
        .start())
}

/// The sandbox's state, as the watcher reads it.
#[derive(Debug, Default)]
struct View {
    /// The extension's files (`cu:` external ids), by id.
    files: BTreeMap<String, Value>,
    /// Usage file events: `(seq, file, to)`.
    events: Vec<(u64, String, String)>,
    tasks: Vec<DemoTask>,
    /// Provider answers: `(file, decision, note)`.
    answers: Vec<(String, String, String)>,
    /// Files acknowledged to the vendor.
    acknowledged: BTreeSet<String>,
}

impl View {
    fn read(sandbox: &Sandbox) -> View {
        let state = sandbox.state();
        let mut view = View::default();
        {
            let store = state.store();
            for f in &store.files {
                if f.external_id
                    .as_deref()
                    .is_some_and(|e| e.starts_with(EXTERNAL_ID_PREFIX))
                {
                    view.files.insert(f.id.clone(), f.to_json(None));
                }
            }
            for e in &store.events {
                if e.kind == "usage_file.status"
                    && let Some(to) = &e.to
                {
                    view.events.push((e.seq, e.object_id.clone(), to.clone()));
                }
            }
            for a in &store.acknowledgements {
                if let Some(f) = a["usage_file_id"].as_str() {
                    view.acknowledged.insert(f.to_owned());
                }
            }
        }
        for a in &state.provider().log {
            view.answers.push((
                a["file"].as_str().unwrap_or_default().to_owned(),
                a["decision"].as_str().unwrap_or_default().to_owned(),
                a["note"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        for t in state.platform().tasks() {
            view.tasks.push(DemoTask {
                id: t["id"].as_str().unwrap_or_default().to_owned(),
                event: t["object"]["type"].as_str().unwrap_or_default().to_owned(),
                object: t["object"]["id"].as_str().unwrap_or_default().to_owned(),
                status: t["status"].as_str().unwrap_or_default().to_owned(),
                message: t["output"].as_str().unwrap_or_default().to_owned(),
            });
        }
        view
    }

    fn task(&self, id: &str) -> Option<&DemoTask> {
        self.tasks.iter().find(|t| t.id == id)
    }

    fn files(&self) -> Vec<DemoFile> {
        let mut out: Vec<DemoFile> = self
            .files
            .values()
            .map(|f| {
                let note = FileNote::parse(f["note"].as_str());
                DemoFile {
                    id: f["id"].as_str().unwrap_or_default().to_owned(),
                    contract: f["contract"]["id"].as_str().unwrap_or_default().to_owned(),
                    product: f["product"]["id"].as_str().unwrap_or_default().to_owned(),
                    records: f["stats"]["uploaded"].as_u64().unwrap_or(0),
                    status: f["status"].as_str().unwrap_or_default().to_owned(),
                    reruns: note.reruns,
                    rejection_note: f["rejection_note"].as_str().map(str::to_owned),
                    acknowledged: self
                        .acknowledged
                        .contains(f["id"].as_str().unwrap_or_default()),
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.contract, &a.product).cmp(&(&b.contract, &b.product)));
        out
    }

    /// What still differs from the story's end; empty once it is complete.
    fn problems(&self, schedule_task: &str) -> Vec<String> {
        let mut p = Vec::new();
        match self.task(schedule_task) {
            Some(t) if t.status == "succeeded" => {}
            Some(t) => p.push(format!("the monthly task is {}", t.status)),
            None => p.push("the monthly task is missing".into()),
        }
        let files = self.files();
        if files.len() < 2 {
            p.push(format!(
                "{} usage files were created; the story needs at least two",
                files.len()
            ));
        }
        let rejections: Vec<&(String, String, String)> =
            self.answers.iter().filter(|a| a.1 == "rejected").collect();
        if rejections.is_empty() {
            p.push("the provider has not rejected a file yet".into());
        }
        for f in &files {
            if f.status != "accepted" {
                p.push(format!("{} is {}, not accepted", f.id, f.status));
            } else if !f.acknowledged {
                p.push(format!("{} is accepted but not acknowledged", f.id));
            }
            let rejected = rejections.iter().filter(|r| r.0 == f.id).count() as u32;
            if f.reruns != rejected {
                p.push(format!(
                    "{} was rejected {rejected} times and rerun {} times",
                    f.id, f.reruns
                ));
            }
        }
        for t in &self.tasks {
            match t.status.as_str() {
                "succeeded" | "skipped" => {}
                "failed" => p.push(format!(
                    "task {} ({}) failed: {}",
                    t.id, t.object, t.message
                )),
                other => p.push(format!("task {} ({}) is {other}", t.id, t.object)),
            }
        }
        p
    }

    /// Nothing more will happen: every task is finished but the story is not.
    fn hopeless(&self, schedule_task: &str) -> bool {
        let settled = self
            .tasks
            .iter()
            .all(|t| matches!(t.status.as_str(), "succeeded" | "skipped" | "failed"));
        let failed = self.tasks.iter().any(|t| t.status == "failed");
        let schedule_done = self
            .task(schedule_task)
            .is_some_and(|t| t.status != "scheduled" && t.status != "processing");
        schedule_done && settled && failed
    }
}

/// Turns changes of the sandbox's state into lines of the story.
#[derive(Debug, Default)]
struct Watcher {
    last_event: u64,
    answers: usize,
    finished_tasks: BTreeSet<String>,
    acknowledged: BTreeSet<String>,
}

impl Watcher {
    fn news(&mut self, view: &View, schedule_task: &str) -> Vec<String> {
        let mut out = Vec::new();
        let describe = |id: &str| -> String {
            view.files.get(id).map_or(id.to_owned(), |f| {
                format!(
                    "{id} ({} / {})",
                    f["contract"]["id"].as_str().unwrap_or("?"),
                    f["product"]["id"].as_str().unwrap_or("?")
                )
            })
        };
        // The provider's answers after the first `seen`, told once.
        let answers_since = |seen: &mut usize, out: &mut Vec<String>| {
            for (file, decision, note) in view.answers.iter().skip(*seen) {
                out.push(format!(
                    "provider {decision} {}: \"{note}\"",
                    describe(file)
                ));
            }
            *seen = view.answers.len();
        };
        for (seq, file, to) in &view.events {
            if *seq <= self.last_event {
                continue;
            }
            self.last_event = *seq;
            if !view.files.contains_key(file) {
                continue;
            }
            let records = view.files[file]["stats"]["uploaded"].as_u64().unwrap_or(0);
            let rejected_before = view
                .answers
                .iter()
                .any(|a| &a.0 == file && a.1 == "rejected");
            match to.as_str() {
                "ready" if rejected_before => {
                    // The rejection came first: say it before the rebuild it caused.
                    answers_since(&mut self.answers, &mut out);
                    out.push(format!(
                        "{} rebuilt from the vendor's data and uploaded again: ready",
                        describe(file)
                    ));
                }
                "invalid" => out.push(format!("{} is invalid", describe(file))),
                "pending" => out.push(format!(
                    "{} submitted to the provider ({records} records)",
                    describe(file)
                )),
                _ => {}
            }
        }
        answers_since(&mut self.answers, &mut out);
        for t in &view.tasks {
            let done = matches!(t.status.as_str(), "succeeded" | "skipped" | "failed");
            if !done || !self.finished_tasks.insert(t.id.clone()) {
                continue;
            }
            if t.id == schedule_task {
                out.push(format!("monthly report {}: {}", t.status, t.message));
            } else if t.message.starts_with("Rerun") || t.status == "failed" {
                out.push(format!("task {} {}: {}", t.id, t.status, t.message));
            }
        }
        for f in &view.acknowledged {
            if self.acknowledged.insert(f.clone()) {
                out.push(format!("{} acknowledged to the vendor", describe(f)));
            }
        }
        out
    }
}

/// The final table, as text: one row per file, as wide as its cells. Given a `width` (a
/// terminal's) that the row does not fit, the files are listed under their contract instead,
/// and an acknowledged status is marked with a `*` explained below the table.
pub fn table(outcome: &DemoOutcome, width: Option<usize>) -> String {
    let status = |f: &DemoFile, short: bool| match (f.acknowledged, short) {
        (false, _) => f.status.clone(),
        (true, false) => format!("{} (acknowledged)", f.status),
        (true, true) => format!("{}*", f.status),
    };
    let header = |cells: &[&str]| cells.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>();
    let mut rows = vec![header(&[
        "CONTRACT", "PRODUCT", "FILE", "RECORDS", "STATUS", "RERUNS",
    ])];
    for f in &outcome.files {
        rows.push(vec![
            f.contract.clone(),
            f.product.clone(),
            f.id.clone(),
            f.records.to_string(),
            status(f, false),
            f.reruns.to_string(),
        ]);
    }
    let flat = render(&rows, &[3, 5], "");
    let fits = |text: &str| width.is_none_or(|w| text.lines().all(|l| l.chars().count() <= w));
    if fits(&flat) {
        return flat;
    }
    let mut rows = vec![header(&["PRODUCT", "FILE", "RECORDS", "STATUS", "RERUNS"])];
    let mut contracts: Vec<(usize, &str)> = Vec::new();
    for f in &outcome.files {
        if contracts.last().is_none_or(|(_, c)| *c != f.contract) {
            contracts.push((rows.len(), &f.contract));
        }
        rows.push(vec![
            f.product.clone(),
            f.id.clone(),
            f.records.to_string(),
            status(f, true),
            f.reruns.to_string(),
        ]);
    }
    let rendered = render(&rows, &[2, 4], "  ");
    let mut out = String::new();
    let mut next = contracts.iter().peekable();
    for (i, line) in rendered.lines().enumerate() {
        if let Some((_, contract)) = next.next_if(|(at, _)| *at == i) {
            out.push_str(contract);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    if outcome.files.iter().any(|f| f.acknowledged) {
        out.push_str("* acknowledged to the vendor\n");
    }
    out
}

/// Rows as columns two spaces apart, each line after `indent`; the columns in `right` are
/// aligned right.
fn render(rows: &[Vec<String>], right: &[usize], indent: &str) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if right.contains(&i) {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        s.push_str(indent);
        s.push_str(line.join("  ").trim_end());
        s.push('\n');
    }
    s
}

/// `prefix` then `text`, its words wrapped to `width` columns, the following lines indented
/// as far as the prefix (a word longer than a line gets a line of its own).
pub fn wrap(prefix: &str, text: &str, width: usize) -> String {
    let indent = prefix.chars().count();
    let mut out = prefix.to_owned();
    let mut column = indent;
    let mut first_on_line = true;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let len = word.chars().count();
        if !first_on_line && column + 1 + len > width {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', indent));
            column = indent;
            first_on_line = true;
        }
        if !first_on_line {
            out.push(' ');
            column += 1;
        }
        out.push_str(word);
        column += len;
        first_on_line = false;
    }
    out
}

/// The outcome as JSON.
pub fn to_json(outcome: &DemoOutcome) -> Value {
    serde_json::to_value(outcome).unwrap_or_else(|e| json!({"error": e.to_string()}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome() -> DemoOutcome {
        let file = |contract: &str, product: &str, n: u32, acknowledged: bool| DemoFile {
            id: format!("UF-2026-11-0000-{n:04}"),
            contract: contract.into(),
            product: product.into(),
            records: 100 + u64::from(n),
            status: "accepted".into(),
            reruns: u32::from(n == 2),
            rejection_note: None,
            acknowledged,
        };
        DemoOutcome {
            completed: true,
            problems: vec![],
            period: "2026-10".into(),
            files: vec![
                file("CRD-11328-54534-85402", "PRD-276-377-545", 1, true),
                file("CRD-11328-54534-85402", "PRD-584-106-773", 2, true),
                file("CRD-15900-22108-55194", "PRD-276-377-545", 3, false),
            ],
            summary: String::new(),
            tasks: vec![],
            steps: vec![],
            duration_ms: 0,
        }
    }

    #[test]
    fn without_a_width_the_table_is_one_row_per_file() {
        let t = table(&outcome(), None);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("CONTRACT"), "{t}");
        assert!(
            lines[1].starts_with("CRD-11328-54534-85402  PRD-276-377-545  UF-2026-11-0000-0001")
                && lines[1].contains("101  accepted (acknowledged)"),
            "{t}"
        );
        assert!(lines.iter().any(|l| l.chars().count() > 80), "{t}");
        // A wide terminal changes nothing.
        assert_eq!(table(&outcome(), Some(200)), t);
    }

    #[test]
    fn on_an_80_column_terminal_files_are_listed_under_their_contract() {
        let t = table(&outcome(), Some(80));
        for line in t.lines() {
            assert!(line.chars().count() <= 80, "{line:?} in\n{t}");
        }
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("  PRODUCT"), "{t}");
        assert_eq!(lines[1], "CRD-11328-54534-85402", "{t}");
        assert!(
            lines[2].contains("PRD-276-377-545  UF-2026-11-0000-0001      101  accepted*"),
            "{t}"
        );
        assert!(
            lines[3].contains("UF-2026-11-0000-0002") && lines[3].ends_with('1'),
            "{t}"
        );
        assert_eq!(lines[4], "CRD-15900-22108-55194", "{t}");
        assert!(lines[5].ends_with("accepted        0"), "{t}");
        assert_eq!(lines[6], "* acknowledged to the vendor", "{t}");
        assert_eq!(lines.len(), 7);
    }

    #[test]
    fn lines_wrap_under_their_prefix() {
        let text = "provider rejected UF-2026-11-0000-0002: \"Quantities look higher than our \
                    metering for this period: please check and resubmit\"";
        let w = wrap("[  0.6s] ", text, 60);
        for line in w.lines() {
            assert!(line.chars().count() <= 60, "{w}");
        }
        assert!(w.starts_with("[  0.6s] provider rejected UF-2026-11-0000-0002:"));
        assert!(
            w.lines()
                .skip(1)
                .all(|l| l.starts_with("         ") && !l.starts_with("          ")),
            "{w}"
        );
        let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(words(&w)[2..], words(text)[..]);
        assert_eq!(wrap("> ", "short", 80), "> short");
    }
}
