//! Blocked evaluations, by computed node class (Nomad's `BlockedEvals`): evaluations the
//! scheduler could not fully place wait here until capacity appears on a node they may use.
//!
//! Pure (no clock, no I/O); the leader feeds it the apply effects and enqueues what it
//! returns. It lives on the leader only and is rebuilt from the state when leadership is
//! gained, like the broker.
//!
//! - One blocked evaluation per job: a newer one for the same job replaces the older, which
//!   the caller marks `canceled` in the state.
//! - An evaluation *escaped* the class index when the scheduler could not judge nodes by class
//!   alone (`escaped_computed_class`, or no `class_eligibility` recorded at all): any capacity
//!   unblocks it. A *captured* one is unblocked by capacity on a class its `class_eligibility`
//!   does not say is ineligible; a class it never saw counts as possibly eligible.
//! - A capacity change that raced the scheduler run (on a class the evaluation may use, at an
//!   index after the snapshot it was scheduled from) unblocks it as soon as it arrives, so it
//!   does not wait for the next change (Nomad's "missed unblock").

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::model::Evaluation;

/// Upper bound on blocked evaluations held (one per job; beyond it the newest are refused and
/// stay blocked in the state until the next leadership change rebuilds the tracker).
pub const MAX_BLOCKED: usize = 100_000;
/// Upper bound on the classes whose last unblock index is remembered for the missed-unblock
/// check; the oldest is forgotten first.
pub const MAX_UNBLOCK_INDEXES: usize = 10_000;

type JobKey = (String, String);

/// What [`BlockedEvals::block`] did with an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Blocked {
    /// Tracked; `superseded` is the job's older blocked evaluation it replaces, for the caller
    /// to cancel.
    Tracked { superseded: Option<Box<Evaluation>> },
    /// Capacity it may use arrived after its snapshot: enqueue it now.
    Unblocked(Box<Evaluation>),
    /// The job already has a newer blocked evaluation: this one is superseded (cancel it).
    Stale(Box<Evaluation>),
    /// The tracker is full ([`MAX_BLOCKED`]).
    Full,
}

/// Nomad's blocked-evaluation stats (`/v1/agent/self` → `stats.nomad.blocked_evals`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BlockedStats {
    pub total_blocked: usize,
    pub total_escaped: usize,
    pub total_captured: usize,
}

/// The tracker.
#[derive(Debug, Default)]
pub struct BlockedEvals {
    by_job: BTreeMap<JobKey, Evaluation>,
    /// Ids of the escaped ones (any capacity unblocks them).
    escaped: BTreeSet<String>,
    /// The Raft index of the last capacity change per class, for the missed-unblock check.
    unblock_indexes: BTreeMap<String, u64>,
    /// The index of the last change whose classes were not known (every class).
    unblock_all_index: u64,
}

/// Whether `eval` may use capacity on `class`.
fn may_use(eval: &Evaluation, class: &str) -> bool {
    escaped(eval) || eval.class_eligibility.get(class) != Some(&false)
}

fn escaped(eval: &Evaluation) -> bool {
    eval.escaped_computed_class || eval.class_eligibility.is_empty()
}

impl BlockedEvals {
    pub fn len(&self) -> usize {
        self.by_job.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_job.is_empty()
    }

    pub fn contains(&self, eval_id: &str) -> bool {
        self.by_job.values().any(|e| e.id == eval_id)
    }

    pub fn stats(&self) -> BlockedStats {
        BlockedStats {
            total_blocked: self.by_job.len(),
            total_escaped: self.escaped.len(),
            total_captured: self.by_job.len() - self.escaped.len(),
        }
    }

    /// Tracks a blocked evaluation (see [`Blocked`]).
    pub fn block(&mut self, eval: Evaluation) -> Blocked {
        if self.missed_unblock(&eval) {
            self.remove(&eval.id);
            return Blocked::Unblocked(Box::new(eval));
        }
        let key = (eval.namespace.clone(), eval.job_id.clone());
        let superseded = match self.by_job.get(&key) {
            Some(existing) if existing.id == eval.id => None,
            // Newer means created later; the same create index (one plan) breaks ties by id.
            Some(existing)
                if (existing.create_index, &existing.id) > (eval.create_index, &eval.id) =>
            {
                return Blocked::Stale(Box::new(eval));
            }
            Some(existing) => Some(Box::new(existing.clone())),
            None if self.by_job.len() >= MAX_BLOCKED => return Blocked::Full,
            None => None,
        };
        if let Some(old) = &superseded {
            self.escaped.remove(&old.id);
        }
        self.escaped.remove(&eval.id);
        if escaped(&eval) {
            self.escaped.insert(eval.id.clone());
        }
        self.by_job.insert(key, eval);
        Blocked::Tracked { superseded }
    }

    /// Whether capacity `eval` may use changed after the snapshot it was scheduled from (an
    /// evaluation that says nothing of its snapshot is not judged).
    fn missed_unblock(&self, eval: &Evaluation) -> bool {
        let snapshot = eval.snapshot_index;
        if snapshot == 0 {
            return false;
        }
        if self.unblock_all_index > snapshot {
            return true;
        }
        self.unblock_indexes
            .iter()
            .any(|(class, &index)| index > snapshot && may_use(eval, class))
    }

    /// Capacity appeared at `index` on nodes of `classes` (empty: which is not known, so
    /// every class): takes out and returns the evaluations that may use it.
    pub fn unblock(&mut self, classes: &BTreeSet<String>, index: u64) -> Vec<Evaluation> {
        if classes.is_empty() {
            self.unblock_all_index = self.unblock_all_index.max(index);
            return self.take_where(|_| true);
        }
        for class in classes {
            let slot = self.unblock_indexes.entry(class.clone()).or_insert(0);
            *slot = (*slot).max(index);
        }
        while self.unblock_indexes.len() > MAX_UNBLOCK_INDEXES {
            let oldest = self
                .unblock_indexes
                .iter()
                .min_by_key(|(_, &i)| i)
                .map(|(c, _)| c.clone());
            match oldest {
                Some(c) => self.unblock_indexes.remove(&c),
                None => break,
            };
        }
        self.take_where(|e| classes.iter().any(|c| may_use(e, c)))
    }

    fn take_where(&mut self, unblocks: impl Fn(&Evaluation) -> bool) -> Vec<Evaluation> {
        let keys: Vec<JobKey> = self
            .by_job
            .iter()
            .filter(|(_, e)| unblocks(e))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(eval) = self.by_job.remove(&key) {
                self.escaped.remove(&eval.id);
                out.push(eval);
            }
        }
        out
    }

    /// Forgets one evaluation (deleted, or no longer blocked in the state).
    pub fn remove(&mut self, eval_id: &str) -> Option<Evaluation> {
        let key = self
            .by_job
            .iter()
            .find(|(_, e)| e.id == eval_id)
            .map(|(k, _)| k.clone())?;
        self.escaped.remove(eval_id);
        self.by_job.remove(&key)
    }

    /// Keeps only the evaluations `keep` accepts (those the state still holds blocked).
    pub fn retain(&mut self, keep: impl Fn(&Evaluation) -> bool) {
        let escaped = &mut self.escaped;
        self.by_job.retain(|_, e| {
            let kept = keep(e);
            if !kept {
                escaped.remove(&e.id);
            }
            kept
        });
    }

    /// Empties the tracker (leadership lost, or a snapshot installed).
    pub fn clear(&mut self) {
        *self = BlockedEvals::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(id: &str, job: &str, index: u64, elig: &[(&str, bool)]) -> Evaluation {
        Evaluation {
            id: id.into(),
            namespace: "default".into(),
            job_id: job.into(),
            status: crate::model::EvalStatus::Blocked,
            create_index: index,
            class_eligibility: elig.iter().map(|(c, e)| (c.to_string(), *e)).collect(),
            ..Default::default()
        }
    }

    fn classes(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn ids(evals: Vec<Evaluation>) -> Vec<String> {
        let mut ids: Vec<String> = evals.into_iter().map(|e| e.id).collect();
        ids.sort();
        ids
    }

    #[test]
    fn capacity_on_a_class_unblocks_only_what_may_use_it() {
        let mut b = BlockedEvals::default();
        b.block(blocked(
            "gpu-only",
            "j1",
            1,
            &[("gpu", true), ("cpu", false)],
        ));
        b.block(blocked(
            "cpu-only",
            "j2",
            2,
            &[("gpu", false), ("cpu", true)],
        ));
        b.block(blocked("escaped", "j3", 3, &[]));
        let mut esc = blocked("escaped-flag", "j4", 4, &[("gpu", false)]);
        esc.escaped_computed_class = true;
        b.block(esc);
        assert_eq!(
            b.stats(),
            BlockedStats {
                total_blocked: 4,
                total_escaped: 2,
                total_captured: 2
            }
        );
        assert_eq!(
            ids(b.unblock(&classes(&["gpu"]), 10)),
            vec!["escaped", "escaped-flag", "gpu-only"]
        );
        assert_eq!(b.len(), 1);
        assert!(b.unblock(&classes(&["gpu"]), 11).is_empty());
        // A class the evaluation never saw may fit it.
        assert_eq!(ids(b.unblock(&classes(&["new"]), 12)), vec!["cpu-only"]);
        assert!(b.is_empty());
    }

    #[test]
    fn unknown_classes_unblock_everything() {
        let mut b = BlockedEvals::default();
        b.block(blocked("a", "j1", 1, &[("gpu", false)]));
        b.block(blocked("b", "j2", 2, &[("cpu", false)]));
        assert_eq!(ids(b.unblock(&BTreeSet::new(), 5)), vec!["a", "b"]);
    }

    #[test]
    fn one_blocked_evaluation_per_job_the_newest_wins() {
        let mut b = BlockedEvals::default();
        assert_eq!(
            b.block(blocked("old", "j", 5, &[])),
            Blocked::Tracked { superseded: None }
        );
        match b.block(blocked("new", "j", 9, &[("gpu", false)])) {
            Blocked::Tracked {
                superseded: Some(old),
            } => assert_eq!(old.id, "old"),
            other => panic!("{other:?}"),
        }
        assert_eq!(b.stats().total_escaped, 0, "the escaped old one is gone");
        assert!(matches!(
            b.block(blocked("older", "j", 3, &[])),
            Blocked::Stale(e) if e.id == "older"
        ));
        // The same evaluation blocked again is an update, not a duplicate.
        assert_eq!(
            b.block(blocked("new", "j", 9, &[])),
            Blocked::Tracked { superseded: None }
        );
        assert_eq!((b.len(), b.stats().total_escaped), (1, 1));
        assert!(b.contains("new") && !b.contains("old"));
    }

    #[test]
    fn a_change_after_the_snapshot_unblocks_at_once() {
        let mut b = BlockedEvals::default();
        assert!(b.unblock(&classes(&["gpu"]), 20).is_empty());
        let mut late = blocked("late", "j1", 25, &[("gpu", true)]);
        late.snapshot_index = 15;
        assert!(matches!(b.block(late), Blocked::Unblocked(e) if e.id == "late"));
        let mut ineligible = blocked("no-gpu", "j2", 25, &[("gpu", false)]);
        ineligible.snapshot_index = 15;
        assert!(matches!(b.block(ineligible), Blocked::Tracked { .. }));
        let mut current = blocked("current", "j3", 25, &[("gpu", true)]);
        current.snapshot_index = 20;
        assert!(matches!(b.block(current), Blocked::Tracked { .. }));
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn remove_retain_clear_and_the_bound() {
        let mut b = BlockedEvals::default();
        b.block(blocked("a", "j1", 1, &[]));
        b.block(blocked("b", "j2", 2, &[]));
        assert_eq!(b.remove("a").map(|e| e.id), Some("a".to_string()));
        assert_eq!(b.remove("a"), None);
        b.retain(|e| e.id != "b");
        assert!(b.is_empty());
        assert_eq!(b.stats(), BlockedStats::default());
        for i in 0..MAX_BLOCKED {
            b.block(blocked(&format!("e{i}"), &format!("j{i}"), 1, &[]));
        }
        assert_eq!(b.block(blocked("x", "jx", 1, &[])), Blocked::Full);
        b.clear();
        assert!(b.is_empty());
    }
}
