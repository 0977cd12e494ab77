//! The live state of one server: the newest [`State`], a way to wait for it to move past an
//! index (blocking queries), and the stream of [`ApplyEffects`] the leader's broker consumes.
//!
//! # The effects stream is bounded, and apply never waits on it
//! Effects go through a channel of [`EFFECTS_QUEUE_DEPTH`]. When it is full, `apply` does not
//! wait: it drops the effect and raises a flag, and the receiver's next
//! [`EffectsReceiver::recv`] answers [`Effects::Resync`], after which the consumer rebuilds
//! what it derives from effects (pending evaluations to enqueue, blocked ones to remember,
//! whether capacity changed) from the newest state. Nothing is lost: every effect describes a
//! change already written to the state before it was published.
//!
//! Waiting instead would put Raft at the mercy of its consumer. `apply` runs inside openraft's
//! state machine task; while it waits nothing else commits, and every proposer waits with it.
//! The consumer is the leader's broker loop, which today never waits for Raft, but it is
//! absent between leadership changes, shares the runtime's few threads with the state
//! machine, and is one `propose` away from needing a commit itself: any of those turns
//! backpressure into a stalled or deadlocked server. Dropping and resyncing cannot deadlock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};

use super::{ApplyEffects, Command, CommandResponse, State, Table};

/// Whether a blocking query saw a change or ran out its wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    Changed,
    TimedOut,
}

/// Effects that may wait for the broker before new ones are dropped in favour of a resync.
/// The broker drains them without waiting on anything slow (a mutex, a snapshot clone), so
/// the queue fills only when commands come faster than that for a while (every client of a
/// large cluster reporting at once); 1024 commands' worth of effects, each a few evaluations,
/// is a few hundred kilobytes at most, and past it one resync is cheaper than the backlog.
pub const EFFECTS_QUEUE_DEPTH: usize = 1024;

/// What the broker receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Effects {
    /// One applied command's effects, in apply order.
    Apply(ApplyEffects),
    /// Effects were dropped because the queue was full: rebuild from the newest state.
    Resync,
}

/// The receiving end of the effects stream (see the module docs).
#[derive(Debug)]
pub struct EffectsReceiver {
    rx: mpsc::Receiver<ApplyEffects>,
    overflowed: Arc<AtomicBool>,
}

impl EffectsReceiver {
    /// The next effects, or `None` once the store stopped publishing to this receiver.
    pub async fn recv(&mut self) -> Option<Effects> {
        // The flag is raised only when the queue is full, so the consumer is never waiting on
        // an empty queue while it is set: it always reaches this check again.
        if self.overflowed.swap(false, Ordering::AcqRel) {
            return Some(Effects::Resync);
        }
        self.rx.recv().await.map(Effects::Apply)
    }
}

#[derive(Debug)]
struct EffectsSender {
    tx: mpsc::Sender<ApplyEffects>,
    overflowed: Arc<AtomicBool>,
}

#[derive(Debug)]
pub struct StateStore {
    state: RwLock<State>,
    index_tx: watch::Sender<u64>,
    effects_tx: Mutex<Option<EffectsSender>>,
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
    pub fn subscribe_effects(&self) -> EffectsReceiver {
        let (tx, rx) = mpsc::channel(EFFECTS_QUEUE_DEPTH);
        let overflowed = Arc::new(AtomicBool::new(false));
        if let Ok(mut slot) = self.effects_tx.lock() {
            *slot = Some(EffectsSender {
                tx,
                overflowed: overflowed.clone(),
            });
        }
        EffectsReceiver { rx, overflowed }
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
        let Ok(slot) = self.effects_tx.lock() else {
            return;
        };
        let Some(sender) = slot.as_ref() else {
            return;
        };
        match sender.tx.try_send(effects) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                // Never wait here (see the module docs): the receiver resyncs from the state.
                if !sender.overflowed.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        depth = EFFECTS_QUEUE_DEPTH,
                        "apply effects queue full; the eval broker will resync from the state"
                    );
                }
            }
            // The broker is gone (leadership lost); nothing to deliver to.
            Err(TrySendError::Closed(_)) => {}
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
