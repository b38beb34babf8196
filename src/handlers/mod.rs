//! The extension's handlers, each declared next to its function through the
//! [registry](connect_eaas::registry) macros.
//!
//! - [`monthly`]: the monthly schedule that runs the QT pipeline.
//! - [`lifecycle`]: what happens when one of the extension's usage files changes status.

pub mod lifecycle;
pub mod monthly;

use crate::usage::locks::GroupLocks;
use connect_eaas::runner::{HandlerError, TaskContext};

/// The runner's lock table, shared by the monthly run and the lifecycle handlers so that one
/// task at a time acts on a usage file. The program gives it to the runner
/// (`Runner::with_state(GroupLocks::default())`); a runner without it is a mistake in the
/// program, said as such rather than run without locks.
pub(crate) fn group_locks(ctx: &TaskContext) -> Result<GroupLocks, HandlerError> {
    ctx.state::<GroupLocks>().cloned().ok_or_else(|| {
        HandlerError::msg(
            "the runner was started without the usage file locks: give it \
             Runner::with_state(GroupLocks::default())",
        )
    })
}
