//! `connect-usage describe`: what the extension declares to the platform.

use std::path::PathBuf;

use clap::Args;
use connect_eaas::registry::{ExtensionDescriptor, Registry};

use super::{EXIT_OK, ExitFailure, config_error, run_error};

pub const LONG_ABOUT: &str = "Print what the extension declares to Connect's events platform: \
    the events it handles (with their statuses), the methods schedules can run, and the \
    variables it reads, from extension.json and the handlers built into this binary. Two \
    handlers for one event or method are an error (exit 2).";

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// The setup request the runner sends, as JSON (secure initial values hidden).
    #[arg(long)]
    json: bool,
    /// An extension.json to use instead of the one built in.
    #[arg(long, env = "EXTENSION_JSON")]
    extension_json: Option<PathBuf>,
}

pub fn run(args: &DescribeArgs) -> Result<u8, ExitFailure> {
    let descriptor = load_descriptor(args.extension_json.as_deref())?;
    let registry = Registry::collect().map_err(config_error)?;
    if args.json {
        let text = serde_json::to_string_pretty(&registry.describe_json(&descriptor))
            .map_err(run_error)?;
        println!("{text}");
    } else {
        print!("{}", registry.describe(&descriptor));
    }
    Ok(EXIT_OK)
}

/// The descriptor at `path`, or the built-in one.
pub fn load_descriptor(path: Option<&std::path::Path>) -> Result<ExtensionDescriptor, ExitFailure> {
    match path {
        Some(p) => ExtensionDescriptor::load(p).map_err(config_error),
        None => connect_usage::builtin_descriptor().map_err(config_error),
    }
}
