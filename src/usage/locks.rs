//! One actor per usage file inside a process: the monthly run and the lifecycle handlers
//! (ready, invalid, rejected) all take a file from one status to the next, and two of them
//! acting on the same file at once would upload or submit twice. Each holds its group's lock
//! (keyed by the file's external id) while it reads and changes the file.
//!
//! Across processes Connect's state machine still refuses the second action (a submit of a
//! `pending` file, say) and every actor re-reads the file before deciding; the lock only
//! spares the noise and the wasted work where it can. Two instances of one environment can
//! still upload the same workbook into a file twice (two deliveries of one event, each resuming
//! the same rerun): Connect offers no compare-and-swap on a file's note to claim it with, so
//! the README asks for one instance per environment.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::OwnedMutexGuard;

/// The lock table: one per runner (given to it for its handlers) or per `report` run, shared
/// by cloning. Not a process-wide global, so two runners in one process (tests) never wait
/// for each other.
#[derive(Clone, Default)]
pub struct GroupLocks(Arc<Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>>);

impl std::fmt::Debug for GroupLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupLocks")
    }
}

/// Held while a group's file is being acted on.
#[derive(Debug)]
pub struct GroupGuard {
    _guard: OwnedMutexGuard<()>,
}

impl GroupLocks {
    /// Waits for the lock of the group with this external id.
    pub async fn lock(&self, external_id: &str) -> GroupGuard {
        let mutex = {
            let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
            // Forget the groups nobody holds, so the table stays as small as the work under way.
            t.retain(|_, w| w.strong_count() > 0);
            match t.get(external_id).and_then(Weak::upgrade) {
                Some(m) => m,
                None => {
                    let m = Arc::new(tokio::sync::Mutex::new(()));
                    t.insert(external_id.to_owned(), Arc::downgrade(&m));
                    m
                }
            }
        };
        GroupGuard {
            _guard: mutex.lock_owned().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_holder_per_group() {
        let locks = GroupLocks::default();
        let a = locks.lock("cu:CRD-1:PRD-1:2024-01").await;
        let other = tokio::time::timeout(
            Duration::from_millis(50),
            locks.lock("cu:CRD-2:PRD-1:2024-01"),
        )
        .await;
        assert!(other.is_ok(), "another group is not blocked");
        let same = tokio::time::timeout(
            Duration::from_millis(50),
            locks.clone().lock("cu:CRD-1:PRD-1:2024-01"),
        )
        .await;
        assert!(
            same.is_err(),
            "the same group waits, through a clone of the table too"
        );
        let elsewhere = tokio::time::timeout(
            Duration::from_millis(50),
            GroupLocks::default().lock("cu:CRD-1:PRD-1:2024-01"),
        )
        .await;
        assert!(elsewhere.is_ok(), "another table knows nothing of this one");
        drop(a);
        let again = tokio::time::timeout(
            Duration::from_millis(50),
            locks.lock("cu:CRD-1:PRD-1:2024-01"),
        )
        .await;
        assert!(again.is_ok(), "free again once released");
    }
}
