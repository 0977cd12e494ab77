//! Reports the allocations' client status to the servers: updates are batched (Nomad
//! batches every 200 ms), only the newest per allocation is sent, and a failed send is
//! retried on a capped exponential backoff while newer updates keep merging in.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use controlplane::model::AllocClientUpdate;
use tokio::sync::mpsc;

use super::backoff::{self, Backoff, BackoffPolicy};
use super::ServerRpc;

/// Longest an allocation update waits to be batched with others (Nomad batches every 200ms).
const UPDATE_BATCH: Duration = Duration::from_millis(100);
/// A batch is sent as soon as updates stop arriving for this long: a quiet client reports at
/// once, a busy one still batches.
const UPDATE_QUIET: Duration = Duration::from_millis(5);
/// Updates queued for the updater before senders (allocation runners) wait. The updater
/// keeps taking them in while it retries, so the queue only fills while a send is in flight.
pub(super) const UPDATE_QUEUE: usize = 1024;
/// Retrying a send the servers did not take: 250 ms, doubling, at most 30 s, up to a quarter
/// shorter at random; back to 250 ms after a success.
const UPDATE_RETRY: BackoffPolicy = BackoffPolicy {
    first: Duration::from_millis(250),
    factor: 2,
    cap: Duration::from_secs(30),
    jitter: 0.25,
};
/// Allocation ids an error message names before it only counts the rest.
const IDS_NAMED: usize = 5;

/// Why the client status of some allocations did not reach the servers.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The servers did not take the batch (unreachable, no leader, or the Raft apply failed).
    #[error("sending the client status of {} to the servers: {reason}", name_allocs(.alloc_ids))]
    Rejected {
        alloc_ids: Vec<String>,
        reason: String,
    },
}

/// "allocation a" / "3 allocations (a, b, c)", naming at most [`IDS_NAMED`].
fn name_allocs(ids: &[String]) -> String {
    match ids {
        [one] => format!("allocation {one}"),
        _ => {
            let mut named = ids
                .iter()
                .take(IDS_NAMED)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if ids.len() > IDS_NAMED {
                named.push_str(&format!(" and {} more", ids.len() - IDS_NAMED));
            }
            format!("{} allocations ({named})", ids.len())
        }
    }
}

/// Updates not yet taken by the servers: the newest per allocation, so the set is bounded by
/// the number of allocations on this node however long the servers stay away.
#[derive(Debug, Default)]
struct PendingUpdates {
    by_alloc: BTreeMap<String, AllocClientUpdate>,
}

impl PendingUpdates {
    /// Adds `update`, replacing an older one of the same allocation (an update carries the
    /// whole client status, so the newest says everything the older did).
    fn merge(&mut self, update: AllocClientUpdate) {
        self.by_alloc.insert(update.id.clone(), update);
    }

    fn is_empty(&self) -> bool {
        self.by_alloc.is_empty()
    }

    fn batch(&self) -> Vec<AllocClientUpdate> {
        self.by_alloc.values().cloned().collect()
    }

    fn alloc_ids(&self) -> Vec<String> {
        self.by_alloc.keys().cloned().collect()
    }

    fn clear(&mut self) {
        self.by_alloc.clear();
    }
}

/// Sends allocation updates from `rx` in batches until `rx` closes and nothing is pending.
pub(super) async fn run_updater(
    server: Arc<dyn ServerRpc>,
    mut rx: mpsc::Receiver<AllocClientUpdate>,
) {
    let mut pending = PendingUpdates::default();
    let mut retry = Backoff::new(UPDATE_RETRY);
    let mut open = true;
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(update) => pending.merge(update),
                None => return,
            }
        }
        if open {
            open = gather(&mut rx, &mut pending).await;
        }
        match send(server.as_ref(), &pending).await {
            Ok(()) => {
                pending.clear();
                retry.succeeded();
            }
            Err(e) => {
                let delay = retry.failed(backoff::stagger());
                tracing::warn!(
                    failures = retry.failures(),
                    retry_in_ms = delay.as_millis() as u64,
                    "{e}"
                );
                open = wait_merging(&mut rx, &mut pending, delay, open).await;
            }
        }
    }
}

/// Takes in updates for up to [`UPDATE_BATCH`], or until none came for [`UPDATE_QUIET`].
/// Returns whether `rx` is still open.
async fn gather(rx: &mut mpsc::Receiver<AllocClientUpdate>, pending: &mut PendingUpdates) -> bool {
    let deadline = tokio::time::sleep(UPDATE_BATCH);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return true,
            _ = tokio::time::sleep(UPDATE_QUIET) => return true,
            update = rx.recv() => match update {
                Some(update) => pending.merge(update),
                None => return false,
            }
        }
    }
}

/// Waits `delay` before a retry, merging updates that arrive meanwhile, so that allocation
/// runners never wait on a failing server. Returns whether `rx` is still open.
async fn wait_merging(
    rx: &mut mpsc::Receiver<AllocClientUpdate>,
    pending: &mut PendingUpdates,
    delay: Duration,
    mut open: bool,
) -> bool {
    let retry = tokio::time::sleep(delay);
    tokio::pin!(retry);
    loop {
        tokio::select! {
            _ = &mut retry => return open,
            update = rx.recv(), if open => match update {
                Some(update) => pending.merge(update),
                None => open = false,
            }
        }
    }
}

/// Sends every pending update in one batch.
async fn send(server: &dyn ServerRpc, pending: &PendingUpdates) -> Result<(), UpdateError> {
    match server.update_allocs(pending.batch()).await {
        Ok(_) => Ok(()),
        Err(reason) => Err(UpdateError::Rejected {
            alloc_ids: pending.alloc_ids(),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use controlplane::model::ClientStatus;

    use super::*;

    fn update(id: &str, status: ClientStatus) -> AllocClientUpdate {
        AllocClientUpdate {
            id: id.to_string(),
            client_status: status,
            ..Default::default()
        }
    }

    #[test]
    fn the_newest_update_per_allocation_wins_and_bounds_the_set() {
        let mut pending = PendingUpdates::default();
        for round in 0..100 {
            let status = if round % 2 == 0 {
                ClientStatus::Pending
            } else {
                ClientStatus::Running
            };
            pending.merge(update("a", status));
            pending.merge(update("b", status));
        }
        pending.merge(update("a", ClientStatus::Complete));
        let batch = pending.batch();
        assert_eq!(batch.len(), 2, "one update per allocation");
        assert_eq!(batch[0].id, "a");
        assert_eq!(batch[0].client_status, ClientStatus::Complete);
        assert_eq!(batch[1].client_status, ClientStatus::Running);
        assert_eq!(pending.alloc_ids(), ["a", "b"]);
        pending.clear();
        assert!(pending.is_empty());
    }

    #[test]
    fn the_error_names_what_failed_and_for_which_allocations() {
        let one = UpdateError::Rejected {
            alloc_ids: vec!["a1".into()],
            reason: "no leader".into(),
        };
        assert_eq!(
            one.to_string(),
            "sending the client status of allocation a1 to the servers: no leader"
        );
        let many = UpdateError::Rejected {
            alloc_ids: (0..7).map(|i| format!("a{i}")).collect(),
            reason: "no leader".into(),
        };
        assert_eq!(
            many.to_string(),
            "sending the client status of 7 allocations (a0, a1, a2, a3, a4 and 2 more) to the servers: no leader"
        );
    }

    #[test]
    fn the_retry_schedule_is_250ms_doubling_to_30s() {
        let waits: Vec<Duration> = [1, 2, 3, 8, 9].map(|n| UPDATE_RETRY.base_delay(n)).into();
        assert_eq!(
            waits,
            [250, 500, 1000, 30_000, 30_000].map(Duration::from_millis)
        );
        assert!(UPDATE_RETRY.delay(9, 0.999) >= Duration::from_millis(22_500));
    }
}
