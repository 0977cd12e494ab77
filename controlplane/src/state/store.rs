//! The live state of one server: the newest [`State`], a way to wait for it to move past an
//! index (blocking queries), and the stream of [`ApplyEffects`] the leader's broker consumes.

use std::sync::{Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::{ApplyEffects, Command, CommandResponse, State, Table};

/// Whether a blocking query saw a change or ran out its wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    Changed,
    TimedOut,
}

#[derive(Debug)]
pub struct StateStore {
    state: RwLock<State>,
    index_tx: watch::Sender<u64>,
    effects_tx: Mutex<Option<mpsc::UnboundedSender<ApplyEffects>>>,
}

impl Default for StateStore {
    fn default() -> Self {
        Self::new()
    }
}

impl StateStore {
    pub fn new() -> StateStore {
        let (index_tx, _) = watch::channel(0);
        StateStore {
            state: RwLock::new(State::default()),
            index_tx,
            effects_tx: Mutex::new(None),
        }
    }

    /// A consistent snapshot of the newest state. Cheap: structurally shared.
    pub fn snapshot(&self) -> State {
        match self.state.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Applies a committed command (called by the Raft state machine, in log order).
    pub fn apply(&self, index: u64, command: &Command) -> CommandResponse {
        let (response, effects) = {
            let mut guard = match self.state.write() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            guard.apply(index, command)
        };
        self.index_tx.send_replace(index);
        self.publish(effects);
        response
    }

    /// Records that a Raft entry carrying no command (a blank or membership entry) was applied.
    /// Panics if `index` does not grow, as [`State::apply`] does.
    pub fn note_index(&self, index: u64) {
        {
            let mut guard = match self.state.write() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            guard.note_index(index);
        }
        self.index_tx.send_replace(index);
    }

    /// Replaces the whole state (installing a snapshot). Panics if the snapshot is older than
    /// the state it replaces: openraft installs only snapshots past what it has committed, and
    /// going back would hand blocking queries an index that moved backwards.
    pub fn restore(&self, state: State) {
        let index = state.latest_index();
        {
            let mut guard = match self.state.write() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            assert!(
                index >= guard.latest_index(),
                "snapshot at index {index} would replace a state already at index {}",
                guard.latest_index()
            );
            *guard = state;
        }
        self.index_tx.send_replace(index);
        self.publish(ApplyEffects {
            capacity_changed: true,
            ..Default::default()
        });
    }

    /// Starts delivering apply effects to a new receiver (the leader's broker); replaces any
    /// previous subscriber.
    pub fn subscribe_effects(&self) -> mpsc::UnboundedReceiver<ApplyEffects> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut slot) = self.effects_tx.lock() {
            *slot = Some(tx);
        }
        rx
    }

    /// Stops delivering apply effects (leadership lost).
    pub fn unsubscribe_effects(&self) {
        if let Ok(mut slot) = self.effects_tx.lock() {
            *slot = None;
        }
    }

    fn publish(&self, effects: ApplyEffects) {
        if effects == ApplyEffects::default() {
            return;
        }
        if let Ok(slot) = self.effects_tx.lock() {
            if let Some(tx) = slot.as_ref() {
                // A closed receiver means the broker is gone; nothing to deliver to.
                let _ = tx.send(effects);
            }
        }
    }

    /// Blocking query: waits until one of `tables` changed after `min_index` or `timeout` passes,
    /// then returns the newest state. `min_index = 0` returns at once.
    pub async fn wait_for(
        &self,
        tables: &[Table],
        min_index: u64,
        timeout: Duration,
    ) -> (State, WaitOutcome) {
        let mut rx = self.index_tx.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let state = self.snapshot();
            if min_index == 0 || state.max_index(tables) > min_index {
                return (state, WaitOutcome::Changed);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                // Sender dropped (shutting down) or deadline: answer with what we have.
                Ok(Err(_)) | Err(_) => return (self.snapshot(), WaitOutcome::TimedOut),
            }
        }
    }

    /// Waits until the state has applied `index` (read-your-writes after a Raft commit).
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        let mut rx = self.index_tx.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.snapshot().latest_index() >= index {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => return self.snapshot().latest_index() >= index,
            }
        }
    }
}
