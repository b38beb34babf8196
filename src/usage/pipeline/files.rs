//! A group's usage files as every phase after placing sees them: what a file's report needs to
//! know of its group ([`GroupCtx`]), why a group or file stops ([`GroupError`]), how the
//! group's files are found by their external ids ([`list_files`]), and the messages of files
//! the run leaves to someone else. The group's planning ([`super::group`]), the comparison
//! with what Connect holds ([`super::compare`]) and each file's delivery ([`super::deliver`])
//! all start from here.

use std::sync::Arc;

use tracing::warn;

use super::place::GroupInfo;
use super::{Run, Step};
use crate::usage::identity::{self, FileSlot};
use crate::usage::summary::{FileAction, FileFailure, FileReport};
use connect_client::models::{UsageFile, UsageFileStatus};
use connect_client::rql::Expr;

/// How a group's message starts when Connect found its upload invalid.
pub(super) const INVALID_UPLOAD: &str = "Connect found the upload invalid";

/// A rejected file's message: it is the rejection handler's.
pub(super) fn rejected_message(f: &UsageFile) -> String {
    format!(
        "rejected by the provider ({}): left to the rejection handler",
        f.rejection_note.as_deref().unwrap_or("no note")
    )
}

/// A submitted file holding records another task read later than this run: they stand.
pub(super) fn newer_reported_message(f: &UsageFile) -> String {
    format!(
        "reported by another task that read the vendor's usage after this run began ({}): its records stand",
        f.note.as_deref().unwrap_or("no note")
    )
}

/// A file not submitted holding records another task read later than this run: its business.
pub(super) fn newer_waiting_message(f: &UsageFile) -> String {
    format!(
        "another task uploaded records it read from the vendor after this run began ({}): left to that task",
        f.status
    )
}

/// Why a group (or one of its files) stopped.
#[derive(Debug)]
pub(super) enum GroupError {
    /// The run was told to stop here (tests of crash recovery): the whole run stops.
    Interrupted { step: Step, external_id: String },
    /// The file or group is not reported; the run goes on with the others.
    Failed { kind: FileFailure, message: String },
}

impl GroupError {
    /// A failure of no particular kind.
    pub(super) fn failed(message: impl Into<String>) -> GroupError {
        GroupError::Failed {
            kind: FileFailure::Other,
            message: message.into(),
        }
    }
}

/// What the group's files need to know of it.
#[derive(Debug)]
pub(super) struct GroupCtx {
    pub run: Arc<Run>,
    pub info: GroupInfo,
    /// The external id of the group's first file, its name.
    pub base_id: String,
    pub currency: Option<String>,
    pub product_name: String,
}

impl GroupCtx {
    pub fn report(&self, external_id: String, records: usize) -> FileReport {
        FileReport {
            contract: self.info.contract.clone(),
            product: self.info.product.clone(),
            external_id,
            slot: None,
            file_id: None,
            status: None,
            action: FileAction::Failed,
            records,
            workbook: None,
            message: None,
            failure: None,
            uploaded: false,
        }
    }
}

/// The group's files, by slot, oldest first. A second file of one slot (two runs at once, or
/// a create that landed late) is deleted when it is a draft, so the oldest stays; other extras
/// are for a person to sort out.
pub(super) async fn list_files(
    ctx: &GroupCtx,
    pattern: &str,
    exact: bool,
) -> Result<Vec<(FileSlot, UsageFile)>, GroupError> {
    let client = &ctx.run.client;
    let filter = if exact {
        Expr::eq("external_id", pattern)
    } else {
        Expr::like("external_id", format!("{pattern}*"))
    };
    let mut files = client
        .usage_files()
        .filter(filter & Expr::ne("status", "deleted"))
        .all()
        .await
        .map_err(|e| GroupError::failed(e.to_string()))?;
    files.sort_by(|a, b| created_at(a).cmp(&created_at(b)).then(a.id.cmp(&b.id)));
    let mut by_slot: Vec<(FileSlot, UsageFile)> = Vec::new();
    let mut extras: Vec<(FileSlot, UsageFile)> = Vec::new();
    for f in files {
        let Some(parsed) = f
            .external_id
            .as_deref()
            .and_then(identity::parse_external_id)
        else {
            continue;
        };
        if parsed.group_id() != ctx.base_id {
            continue;
        }
        if by_slot.iter().any(|(s, _)| *s == parsed.slot) {
            extras.push((parsed.slot, f));
        } else {
            by_slot.push((parsed.slot, f));
        }
    }
    let mut stuck = Vec::new();
    for (slot, extra) in extras {
        let kept = by_slot
            .iter()
            .find(|(s, _)| *s == slot)
            .map_or("-", |(_, f)| f.id.as_str());
        if extra.status == UsageFileStatus::Draft {
            match client.delete_usage_file(&extra.id).await {
                Ok(_) => {
                    warn!(external_id = extra.external_id.as_deref().unwrap_or("-"), file = %extra.id, kept, "deleted a second draft of the same file");
                    continue;
                }
                Err(e) => warn!(file = %extra.id, error = %e, "cannot delete a second draft"),
            }
        }
        stuck.push(format!(
            "{} usage files have the external id {} ({kept}, {} {}): a person must decide which one stays",
            2,
            extra.external_id.as_deref().unwrap_or("-"),
            extra.id,
            extra.status
        ));
    }
    if !stuck.is_empty() {
        return Err(GroupError::failed(stuck.join("; ")));
    }
    by_slot.sort_by_key(|(s, _)| *s);
    Ok(by_slot)
}

fn created_at(f: &UsageFile) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    f.events.as_ref()?.created.as_ref().map(|e| e.at)
}
