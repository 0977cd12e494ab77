//! A server on an in-process log that applies each command at the next index, for unit tests
//! of the pipeline and the HTTP layer. The real Raft node is exercised by the raft tests and
//! the end-to-end tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::watch;

use super::{Consensus, ConsensusError, Server, ServerConfig};
use crate::state::{Command, CommandResponse, StateStore};

pub(crate) struct InProcessLog {
    store: Arc<StateStore>,
    index: AtomicU64,
    leader: watch::Sender<bool>,
}

impl Consensus for InProcessLog {
    fn propose(&self, command: Command) -> BoxFuture<'_, Result<CommandResponse, ConsensusError>> {
        Box::pin(async move {
            let index = self.index.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(self.store.apply(index, &command))
        })
    }
    fn leadership(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }
    fn leader_address(&self) -> Option<String> {
        Some("127.0.0.1:4647".into())
    }
    fn read_barrier(&self) -> BoxFuture<'_, Result<(), ConsensusError>> {
        // One log, applied as proposed: every read already sees every write.
        Box::pin(async { Ok(()) })
    }
    fn last_contact(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::ZERO)
    }
    fn stats(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}

/// A leader server on an in-process log, with two scheduler workers.
pub(crate) fn start_in_process() -> Arc<Server> {
    start_in_process_with(ServerConfig {
        num_schedulers: 2,
        ..Default::default()
    })
}

/// [`start_in_process`] with other settings.
pub(crate) fn start_in_process_with(config: ServerConfig) -> Arc<Server> {
    let store = Arc::new(StateStore::new());
    let (leader, _) = watch::channel(true);
    let log = Arc::new(InProcessLog {
        store: store.clone(),
        index: AtomicU64::new(0),
        leader,
    });
    Server::start(config, store, log)
}
