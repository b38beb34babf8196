//! `connect-usage demo`: the whole story on an embedded sandbox, in one command.

use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;
use connect_usage::story::{self, DemoOptions};

use super::{EXIT_FAILURE, EXIT_OK, ExitFailure, run_error};

pub const LONG_ABOUT: &str = "Show everything the extension does, on a sandbox started in this \
    process: nothing to configure, nothing leaves the machine.\n\n\
    The sandbox starts with its default vendor account; the extension's runner connects to its \
    events platform; the monthly schedule is fired; one usage file per contract and product is \
    created, uploaded and submitted; the sandbox's provider rejects one file with a note and \
    accepts the others; the extension reruns the rejected file (fetches the usage again, \
    rebuilds, re-uploads, resubmits) and acknowledges accepted files to the vendor.\n\n\
    Progress goes to stderr while it works (when stderr is a terminal); the table of usage files \
    and the run summary go to stdout, or with --json the final state as JSON.\n\n\
    Exit code 0 when the story completed as expected, 1 when it did not (the reasons are printed).";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print the final state as JSON on stdout (no table).
    #[arg(long)]
    json: bool,
    /// Usage records the sandbox's vendor API serves for the month.
    #[arg(long, default_value_t = 1200)]
    usage_records: u64,
    /// Seconds the story gets before it is called incomplete.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

pub async fn run(args: DemoArgs) -> Result<u8, ExitFailure> {
    let show = std::io::stderr().is_terminal() && !args.json;
    // Lines fit the terminal they are shown on.
    let progress_width = terminal_width(&std::io::stderr());
    let width = terminal_width(&std::io::stdout());
    let fit = |prefix: &str, text: &str| match width {
        Some(w) => story::wrap(prefix, text, w),
        None => format!("{prefix}{text}"),
    };
    let options = DemoOptions {
        usage_records: args.usage_records,
        timeout: Duration::from_secs(args.timeout_secs.max(1)),
        ..DemoOptions::default()
    };
    let outcome = story::run(options, |step| {
        if show {
            let prefix = format!("[{:>5.1}s] ", step.at);
            match progress_width {
                Some(w) => eprintln!("{}", story::wrap(&prefix, &step.text, w)),
                None => eprintln!("{prefix}{}", step.text),
            }
        }
    })
    .await
    .map_err(run_error)?;
    if args.json {
        let text = serde_json::to_string_pretty(&story::to_json(&outcome)).map_err(run_error)?;
        println!("{text}");
    } else {
        println!();
        print!("{}", story::table(&outcome, width));
        println!();
        // The summary names the month itself.
        println!("{}", fit("Monthly run: ", &outcome.summary));
        let reruns: u32 = outcome.files.iter().map(|f| f.reruns).sum();
        let accepted = outcome
            .files
            .iter()
            .filter(|f| f.status == "accepted")
            .count();
        println!(
            "{} usage files, {accepted} accepted, {reruns} rerun after a rejection, {} tasks, {:.1} s.",
            outcome.files.len(),
            outcome.tasks.len(),
            outcome.duration_ms as f64 / 1000.0
        );
        if outcome.completed {
            println!("The story completed as expected.");
        } else {
            println!("The story did not complete:");
            for p in &outcome.problems {
                println!("{}", fit("  - ", p));
            }
        }
    }
    Ok(if outcome.completed {
        EXIT_OK
    } else {
        EXIT_FAILURE
    })
}

/// How many columns the terminal on `stream` has; `None` when it is not a terminal (output
/// to a file or a pipe keeps its full lines).
#[cfg(unix)]
fn terminal_width(stream: &impl std::os::fd::AsRawFd) -> Option<usize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we pass and reads nothing else.
    let asked = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    (asked == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

#[cfg(not(unix))]
fn terminal_width<T>(_stream: &T) -> Option<usize> {
    None
}
