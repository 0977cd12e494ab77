//! The evaluation broker: hands pending evaluations to scheduler workers, at most one per job at
//! a time, highest priority first, and takes them back when a worker fails or goes quiet.
//!
//! [`BrokerQueue`] is the pure part (explicit `now`, no I/O, unit-tested); [`EvalBroker`] wraps
//! it for async workers. The broker lives only on the leader and is rebuilt from the state
//! whenever leadership is gained, so losing it loses nothing.
//!
//! An evaluation with a `WaitUntil` in the future (a disconnect timeout) waits in a delayed
//! queue, by wall-clock time, and becomes ready when that time comes. It is pending in the
//! state all along, so a new leader's broker delays it again.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::model::Evaluation;

/// How many times an evaluation is handed out before it is given up as failed.
pub const DELIVERY_LIMIT: u32 = 3;
/// How long a worker may hold an evaluation without acking it.
pub const NACK_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound on evaluations the broker holds; beyond it, enqueue refuses (the evaluation stays
/// pending in the state and is picked up again on the next leadership change or restart).
pub const MAX_QUEUED: usize = 100_000;

type JobKey = (String, String);
type ReadyKey = (Reverse<i32>, u64, String);

/// An evaluation handed to a worker, identified by a token only that worker knows.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub eval: Evaluation,
    pub token: u64,
    /// How many times this evaluation has been handed out, this one included.
    pub attempt: u32,
}

#[derive(Debug)]
struct Unacked {
    delivery: Delivery,
    deadline: Instant,
}

/// What happened to a nacked or timed-out evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Requeue {
    /// Back in the ready queue.
    Retried,
    /// Out of attempts: the caller marks it failed in the state.
    GaveUp(Box<Evaluation>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BrokerError {
    #[error("evaluation {0} is not outstanding (already acked, nacked, or timed out)")]
    NotOutstanding(String),
    #[error("evaluation {0} is outstanding under another token (it timed out and was handed to another worker)")]
    WrongToken(String),
    #[error(
        "the broker is full ({MAX_QUEUED} evaluations); evaluation {0} stays pending in the state"
    )]
    Full(String),
}

/// The broker's queues, with time passed in.
#[derive(Debug, Default)]
pub struct BrokerQueue {
    ready: BTreeSet<ReadyKey>,
    evals: HashMap<String, Evaluation>,
    attempts: HashMap<String, u32>,
    unacked: HashMap<String, Unacked>,
    /// The evaluation in flight for each job.
    inflight_jobs: HashMap<JobKey, String>,
    /// The evaluation in the ready queue for each job (at most one).
    ready_jobs: HashMap<JobKey, String>,
    /// Evaluations waiting for their job's in-flight or ready one to finish.
    waiting: BTreeMap<JobKey, Vec<Evaluation>>,
    /// Evaluations not to run before their `WaitUntil` (Unix nanoseconds), soonest first.
    delayed: BTreeMap<(i64, String), Evaluation>,
    next_token: u64,
    /// The operator paused the broker (`PauseEvalBroker`): nothing is handed out; enqueues,
    /// acks and nacks go on.
    paused: bool,
}

/// What the broker holds, in Nomad's `BrokerStats` words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BrokerStats {
    /// Ready to be handed out.
    pub total_ready: usize,
    /// Handed out, not yet acked or nacked.
    pub total_unacked: usize,
    /// Waiting behind another evaluation of the same job.
    pub total_blocked: usize,
    /// Waiting for their `WaitUntil`.
    pub total_waiting: usize,
    pub paused: bool,
}

fn job_key(eval: &Evaluation) -> JobKey {
    (eval.namespace.clone(), eval.job_id.clone())
}

impl BrokerQueue {
    /// Number of evaluations held (ready, waiting, delayed and unacked).
    pub fn len(&self) -> usize {
        self.evals.len() + self.unacked.len() + self.delayed.len()
    }

    pub fn delayed_len(&self) -> usize {
        self.delayed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Adds an evaluation; an id the broker already holds is ignored. One whose `WaitUntil`
    /// is after `now_unix` (nanoseconds, wall clock) waits in the delayed queue; an
    /// unreadable `WaitUntil` (the servers write only RFC 3339) is "now".
    pub fn enqueue(&mut self, eval: Evaluation, now_unix: i64) -> Result<(), BrokerError> {
        if self.evals.contains_key(&eval.id)
            || self.unacked.contains_key(&eval.id)
            || self.delayed.values().any(|d| d.id == eval.id)
        {
            return Ok(());
        }
        if self.len() >= MAX_QUEUED {
            return Err(BrokerError::Full(eval.id));
        }
        if let Some(at) = crate::model::time::parse_rfc3339(&eval.wait_until) {
            if at > now_unix {
                self.delayed.insert((at, eval.id.clone()), eval);
                return Ok(());
            }
        }
        self.enqueue_now(eval);
        Ok(())
    }

    /// Moves the delayed evaluations whose time has come (`now_unix`) into the queues;
    /// returns how many.
    pub fn promote_due(&mut self, now_unix: i64) -> usize {
        let due: Vec<(i64, String)> = self
            .delayed
            .keys()
            .take_while(|(at, _)| *at <= now_unix)
            .cloned()
            .collect();
        for key in &due {
            if let Some(eval) = self.delayed.remove(key) {
                self.enqueue_now(eval);
            }
        }
        due.len()
    }

    /// When the soonest delayed evaluation is due (Unix nanoseconds).
    pub fn next_due(&self) -> Option<i64> {
        self.delayed.keys().next().map(|(at, _)| *at)
    }

    fn enqueue_now(&mut self, eval: Evaluation) {
        let key = job_key(&eval);
        if self.inflight_jobs.contains_key(&key) || self.ready_jobs.contains_key(&key) {
            self.waiting.entry(key).or_default().push(eval.clone());
            self.evals.insert(eval.id.clone(), eval);
            return;
        }
        self.make_ready(eval);
    }

    fn make_ready(&mut self, eval: Evaluation) {
        self.ready
            .insert((Reverse(eval.priority), eval.create_index, eval.id.clone()));
        self.ready_jobs.insert(job_key(&eval), eval.id.clone());
        self.evals.insert(eval.id.clone(), eval);
    }

    /// Pauses or resumes handing out evaluations.
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    pub fn stats(&self) -> BrokerStats {
        BrokerStats {
            total_ready: self.ready.len(),
            total_unacked: self.unacked.len(),
            total_blocked: self.waiting.values().map(Vec::len).sum(),
            total_waiting: self.delayed.len(),
            paused: self.paused,
        }
    }

    /// Drops an evaluation that is queued, waiting or delayed (the operator deleted it); one
    /// in flight stays with its worker, which finds it gone from the state. Returns whether
    /// it was held.
    pub fn remove(&mut self, id: &str) -> bool {
        if let Some(key) = self.delayed.keys().find(|(_, e)| e == id).cloned() {
            self.delayed.remove(&key);
            return true;
        }
        let Some(eval) = self.evals.remove(id) else {
            return false;
        };
        let job = job_key(&eval);
        if self.ready_jobs.get(&job).is_some_and(|r| r == id) {
            self.ready
                .remove(&(Reverse(eval.priority), eval.create_index, eval.id.clone()));
            self.ready_jobs.remove(&job);
            // The job's next waiting evaluation takes its place, unless one is in flight.
            if !self.inflight_jobs.contains_key(&job) {
                self.release_job(&eval);
            }
        } else if let Some(waiting) = self.waiting.get_mut(&job) {
            waiting.retain(|e| e.id != id);
            if waiting.is_empty() {
                self.waiting.remove(&job);
            }
        }
        self.attempts.remove(id);
        true
    }

    /// Hands out the highest-priority ready evaluation (nothing while paused).
    pub fn dequeue(&mut self, now: Instant) -> Option<Delivery> {
        if self.paused {
            return None;
        }
        let first = self.ready.iter().next().cloned()?;
        self.ready.remove(&first);
        let id = first.2;
        let eval = self.evals.remove(&id)?;
        self.ready_jobs.remove(&job_key(&eval));
        let attempt = self.attempts.entry(id.clone()).or_insert(0);
        *attempt += 1;
        self.next_token += 1;
        let delivery = Delivery {
            eval: eval.clone(),
            token: self.next_token,
            attempt: *attempt,
        };
        self.inflight_jobs.insert(job_key(&eval), id.clone());
        self.unacked.insert(
            id,
            Unacked {
                delivery: delivery.clone(),
                deadline: now + NACK_TIMEOUT,
            },
        );
        Some(delivery)
    }

    fn take_outstanding(&mut self, id: &str, token: u64) -> Result<Unacked, BrokerError> {
        match self.unacked.get(id) {
            None => Err(BrokerError::NotOutstanding(id.to_string())),
            Some(u) if u.delivery.token != token => Err(BrokerError::WrongToken(id.to_string())),
            Some(_) => self
                .unacked
                .remove(id)
                .ok_or_else(|| BrokerError::NotOutstanding(id.to_string())),
        }
    }

    fn release_job(&mut self, eval: &Evaluation) {
        let key = job_key(eval);
        self.inflight_jobs.remove(&key);
        if let Some(mut waiting) = self.waiting.remove(&key) {
            // The newest waiting evaluation supersedes older ones for the same job; the older
            // ones are dropped here (they stay pending in the state and are harmless: a later
            // scheduler run covers the same job).
            waiting.sort_by_key(|e| e.create_index);
            if let Some(next) = waiting.pop() {
                for stale in waiting {
                    self.evals.remove(&stale.id);
                }
                self.make_ready(next);
            }
        }
    }

    /// The worker finished the evaluation.
    pub fn ack(&mut self, id: &str, token: u64) -> Result<(), BrokerError> {
        let done = self.take_outstanding(id, token)?;
        self.attempts.remove(id);
        self.release_job(&done.delivery.eval);
        Ok(())
    }

    /// The worker could not finish it: retry, or give up after [`DELIVERY_LIMIT`] attempts.
    pub fn nack(&mut self, id: &str, token: u64) -> Result<Requeue, BrokerError> {
        let failed = self.take_outstanding(id, token)?;
        Ok(self.requeue(failed))
    }

    fn requeue(&mut self, failed: Unacked) -> Requeue {
        let eval = failed.delivery.eval;
        self.inflight_jobs.remove(&job_key(&eval));
        if failed.delivery.attempt >= DELIVERY_LIMIT {
            self.attempts.remove(&eval.id);
            self.release_job(&eval);
            return Requeue::GaveUp(Box::new(eval));
        }
        // Waiting evaluations of the same job stay behind the retried one.
        self.inflight_jobs.remove(&job_key(&eval));
        self.make_ready(eval);
        Requeue::Retried
    }

    /// Takes back evaluations whose worker went quiet past the nack timeout.
    pub fn expire(&mut self, now: Instant) -> Vec<Requeue> {
        let expired: Vec<String> = self
            .unacked
            .iter()
            .filter(|(_, u)| u.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::new();
        for id in expired {
            if let Some(u) = self.unacked.remove(&id) {
                out.push(self.requeue(u));
            }
        }
        out
    }

    /// Empties the broker (leadership lost).
    pub fn clear(&mut self) {
        *self = BrokerQueue {
            next_token: self.next_token,
            paused: self.paused,
            ..Default::default()
        };
    }
}

/// The broker as async workers use it.
#[derive(Debug, Default)]
pub struct EvalBroker {
    queue: Mutex<BrokerQueue>,
    ready: Notify,
}

impl EvalBroker {
    pub fn new() -> EvalBroker {
        EvalBroker::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut BrokerQueue) -> R) -> R {
        let mut guard = match self.queue.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    pub fn enqueue(&self, eval: Evaluation) -> Result<(), BrokerError> {
        self.with(|q| q.enqueue(eval, crate::model::now_unix_nanos()))?;
        self.ready.notify_waiters();
        self.ready.notify_one();
        Ok(())
    }

    /// Waits up to `timeout` for an evaluation (a delayed one as soon as it is due).
    pub async fn dequeue(&self, timeout: Duration) -> Option<Delivery> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.ready.notified();
            let (delivery, next_due) = self.with(|q| {
                q.promote_due(crate::model::now_unix_nanos());
                (q.dequeue(Instant::now()), q.next_due())
            });
            if let Some(d) = delivery {
                return Some(d);
            }
            // Wake for a delayed evaluation coming due before the deadline, too.
            let wake = match next_due {
                Some(at) => {
                    let wait_ns = at.saturating_sub(crate::model::now_unix_nanos()).max(0);
                    let wait = Duration::from_nanos(u64::try_from(wait_ns).unwrap_or(0));
                    deadline.min(tokio::time::Instant::now() + wait)
                }
                None => deadline,
            };
            if tokio::time::timeout_at(wake, notified).await.is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return None;
            }
        }
    }

    pub fn ack(&self, id: &str, token: u64) -> Result<(), BrokerError> {
        let r = self.with(|q| q.ack(id, token));
        self.ready.notify_one();
        r
    }

    pub fn nack(&self, id: &str, token: u64) -> Result<Requeue, BrokerError> {
        let r = self.with(|q| q.nack(id, token));
        self.ready.notify_one();
        r
    }

    pub fn expire(&self) -> Vec<Requeue> {
        let r = self.with(|q| q.expire(Instant::now()));
        if !r.is_empty() {
            self.ready.notify_one();
        }
        r
    }

    pub fn clear(&self) {
        self.with(BrokerQueue::clear);
    }

    pub fn stats(&self) -> BrokerStats {
        self.with(|q| q.stats())
    }

    /// Pauses or resumes handing out evaluations; resuming wakes the waiting workers.
    pub fn set_paused(&self, paused: bool) {
        let was = self.with(|q| {
            let was = q.paused();
            q.set_paused(paused);
            was
        });
        if was && !paused {
            self.ready.notify_waiters();
        }
    }

    pub fn paused(&self) -> bool {
        self.with(|q| q.paused())
    }

    /// Drops a queued evaluation (see [`BrokerQueue::remove`]).
    pub fn remove(&self, id: &str) -> bool {
        self.with(|q| q.remove(id))
    }

    /// Evaluations waiting for their `WaitUntil`.
    pub fn delayed_len(&self) -> usize {
        self.with(|q| q.delayed_len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(id: &str, job: &str, priority: i32, index: u64) -> Evaluation {
        Evaluation {
            id: id.into(),
            namespace: "default".into(),
            job_id: job.into(),
            priority,
            create_index: index,
            ..Default::default()
        }
    }

    #[test]
    fn higher_priority_first_then_older_first() {
        let mut q = BrokerQueue::default();
        let now = Instant::now();
        q.enqueue(eval("a", "j1", 50, 1), 0).unwrap();
        q.enqueue(eval("b", "j2", 70, 2), 0).unwrap();
        q.enqueue(eval("c", "j3", 50, 0), 0).unwrap();
        let order: Vec<String> = std::iter::from_fn(|| q.dequeue(now))
            .map(|d| d.eval.id)
            .collect();
        assert_eq!(order, vec!["b", "c", "a"]);
    }

    #[test]
    fn one_evaluation_per_job_in_flight_and_the_newest_waiting_one_follows() {
        let mut q = BrokerQueue::default();
        let now = Instant::now();
        q.enqueue(eval("a", "j", 50, 1), 0).unwrap();
        let first = q.dequeue(now).unwrap();
        q.enqueue(eval("b", "j", 50, 2), 0).unwrap();
        q.enqueue(eval("c", "j", 50, 3), 0).unwrap();
        assert!(
            q.dequeue(now).is_none(),
            "job j already has an evaluation in flight"
        );
        q.ack("a", first.token).unwrap();
        let next = q.dequeue(now).unwrap();
        assert_eq!(next.eval.id, "c");
        assert!(q.dequeue(now).is_none());
        q.ack("c", next.token).unwrap();
        assert!(q.is_empty(), "the superseded evaluation is dropped");
    }

    #[test]
    fn duplicates_are_ignored() {
        let mut q = BrokerQueue::default();
        q.enqueue(eval("a", "j", 50, 1), 0).unwrap();
        q.enqueue(eval("a", "j", 50, 1), 0).unwrap();
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn nack_retries_until_the_delivery_limit() {
        let mut q = BrokerQueue::default();
        let now = Instant::now();
        q.enqueue(eval("a", "j", 50, 1), 0).unwrap();
        for attempt in 1..DELIVERY_LIMIT {
            let d = q.dequeue(now).unwrap();
            assert_eq!(d.attempt, attempt);
            assert_eq!(q.nack("a", d.token).unwrap(), Requeue::Retried);
        }
        let d = q.dequeue(now).unwrap();
        assert!(matches!(q.nack("a", d.token).unwrap(), Requeue::GaveUp(e) if e.id == "a"));
        assert!(q.is_empty());
    }

    #[test]
    fn a_quiet_worker_loses_its_evaluation_and_its_token() {
        let mut q = BrokerQueue::default();
        let now = Instant::now();
        q.enqueue(eval("a", "j", 50, 1), 0).unwrap();
        let d = q.dequeue(now).unwrap();
        assert!(q.expire(now).is_empty());
        assert_eq!(q.expire(now + NACK_TIMEOUT), vec![Requeue::Retried]);
        let again = q.dequeue(now + NACK_TIMEOUT).unwrap();
        assert_eq!(
            q.ack("a", d.token),
            Err(BrokerError::WrongToken("a".into()))
        );
        q.ack("a", again.token).unwrap();
        assert_eq!(
            q.ack("a", again.token),
            Err(BrokerError::NotOutstanding("a".into()))
        );
    }

    fn delayed(id: &str, job: &str, wait_until_ns: i64) -> Evaluation {
        Evaluation {
            wait_until: crate::model::time::format_rfc3339(wait_until_ns),
            ..eval(id, job, 50, 1)
        }
    }

    #[test]
    fn a_delayed_evaluation_waits_for_its_time_and_does_not_hold_up_its_job() {
        let mut q = BrokerQueue::default();
        let now = Instant::now();
        let t0 = 1_700_000_000_000_000_000;
        q.enqueue(delayed("later", "j", t0 + 30_000_000_000), t0)
            .unwrap();
        q.enqueue(eval("now", "j", 50, 2), t0).unwrap();
        assert_eq!((q.len(), q.delayed_len()), (2, 1));
        assert_eq!(q.next_due(), Some(t0 + 30_000_000_000));
        let d = q.dequeue(now).unwrap();
        assert_eq!(
            d.eval.id, "now",
            "the job's other evaluation is not held up"
        );
        q.ack("now", d.token).unwrap();
        assert_eq!(q.promote_due(t0 + 29_999_999_999), 0);
        assert!(q.dequeue(now).is_none(), "not before its WaitUntil");
        assert_eq!(q.promote_due(t0 + 30_000_000_000), 1);
        assert_eq!(q.dequeue(now).unwrap().eval.id, "later");
        assert_eq!(q.next_due(), None);
    }

    #[test]
    fn a_past_or_unreadable_wait_until_is_now_and_duplicates_of_delayed_ones_are_ignored() {
        let mut q = BrokerQueue::default();
        let t0 = 1_700_000_000_000_000_000;
        q.enqueue(delayed("past", "a", t0 - 1), t0).unwrap();
        let mut junk = eval("junk", "b", 50, 1);
        junk.wait_until = "tomorrow".into();
        q.enqueue(junk, t0).unwrap();
        assert_eq!((q.ready_len(), q.delayed_len()), (2, 0));
        q.enqueue(delayed("d", "c", t0 + 5), t0).unwrap();
        q.enqueue(delayed("d", "c", t0 + 5), t0).unwrap();
        assert_eq!(q.delayed_len(), 1);
        q.clear();
        assert!(
            q.is_empty(),
            "leadership lost: the state keeps it, the broker forgets it"
        );
    }

    #[test]
    fn a_paused_broker_hands_out_nothing_and_keeps_what_it_holds() {
        let mut q = BrokerQueue::default();
        let now = Instant::now();
        q.enqueue(eval("a", "j1", 50, 1), 0).unwrap();
        q.set_paused(true);
        q.enqueue(eval("b", "j2", 50, 2), 0).unwrap();
        assert!(q.dequeue(now).is_none());
        assert_eq!(q.stats().total_ready, 2);
        assert!(q.stats().paused);
        q.clear();
        assert!(q.paused(), "a pause outlives a leadership change");
        q.enqueue(eval("c", "j3", 50, 3), 0).unwrap();
        q.set_paused(false);
        assert_eq!(q.dequeue(now).unwrap().eval.id, "c");
    }

    #[test]
    fn stats_count_ready_unacked_blocked_and_waiting() {
        let mut q = BrokerQueue::default();
        let now = Instant::now();
        let t0 = 1_700_000_000_000_000_000;
        q.enqueue(eval("a", "j", 50, 1), t0).unwrap();
        q.enqueue(eval("b", "k", 50, 2), t0).unwrap();
        let _ = q.dequeue(now).unwrap();
        q.enqueue(eval("c", "j", 50, 3), t0).unwrap();
        q.enqueue(eval("c2", "k", 50, 4), t0).unwrap();
        q.enqueue(delayed("d", "l", t0 + 1), t0).unwrap();
        assert_eq!(
            q.stats(),
            BrokerStats {
                total_ready: 1,
                total_unacked: 1,
                total_blocked: 2,
                total_waiting: 1,
                paused: false
            }
        );
    }

    #[test]
    fn removed_evaluations_are_gone_and_their_job_moves_on() {
        let mut q = BrokerQueue::default();
        let now = Instant::now();
        let t0 = 1_700_000_000_000_000_000;
        q.enqueue(eval("a", "j", 50, 1), t0).unwrap();
        q.enqueue(eval("b", "j", 50, 2), t0).unwrap();
        q.enqueue(delayed("d", "k", t0 + 1), t0).unwrap();
        assert!(q.remove("d"));
        assert!(q.remove("a"), "the ready one");
        assert!(!q.remove("a"));
        assert_eq!(
            q.dequeue(now).unwrap().eval.id,
            "b",
            "the waiting one follows"
        );
        assert!(!q.remove("b"), "in flight: stays with its worker");
        q.enqueue(eval("c", "j", 50, 3), t0).unwrap();
        assert!(q.remove("c"), "a waiting one");
        assert_eq!(q.stats().total_blocked, 0);
    }

    #[tokio::test]
    async fn async_dequeue_wakes_when_the_broker_is_resumed() {
        let broker = std::sync::Arc::new(EvalBroker::new());
        broker.set_paused(true);
        broker.enqueue(eval("a", "j", 50, 1)).unwrap();
        assert!(broker.dequeue(Duration::from_millis(20)).await.is_none());
        let b = broker.clone();
        let waiter = tokio::spawn(async move { b.dequeue(Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        broker.set_paused(false);
        assert_eq!(waiter.await.unwrap().unwrap().eval.id, "a");
    }

    #[tokio::test]
    async fn async_dequeue_wakes_when_a_delayed_evaluation_comes_due() {
        let broker = EvalBroker::new();
        let due = crate::model::now_unix_nanos() + 150_000_000;
        broker.enqueue(delayed("d", "j", due)).unwrap();
        assert!(broker.dequeue(Duration::from_millis(20)).await.is_none());
        let d = broker.dequeue(Duration::from_secs(5)).await.unwrap();
        assert_eq!(d.eval.id, "d");
        assert!(crate::model::now_unix_nanos() >= due);
    }

    #[tokio::test]
    async fn async_dequeue_wakes_on_enqueue() {
        let broker = std::sync::Arc::new(EvalBroker::new());
        let b = broker.clone();
        let waiter = tokio::spawn(async move { b.dequeue(Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        broker.enqueue(eval("a", "j", 50, 1)).unwrap();
        assert_eq!(waiter.await.unwrap().unwrap().eval.id, "a");
        assert!(broker.dequeue(Duration::from_millis(10)).await.is_none());
    }
}
