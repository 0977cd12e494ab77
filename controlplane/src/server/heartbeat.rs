//! Node heartbeats: the leader's timers that notice a client has gone silent.
//!
//! A client heartbeats within the TTL the leader gave it; the leader keeps one deadline per
//! node (TTL + grace) and, when a deadline passes, proposes the node `down` (or
//! `disconnected`, when some of its allocations may outlive a disconnect) with the evaluations
//! that replace its work. Timers live only on the leader and only in memory: a new leader
//! starts every ready node at the long failover TTL, so that an election never marks the fleet
//! down while clients find the new leader.
//!
//! [`HeartbeatTimers`] is pure (time comes in as an argument); the async loop in `server/mod.rs`
//! drives it.

use std::collections::HashMap;
use std::time::Duration;

/// Heartbeat tunables, Nomad's server settings of the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatConfig {
    /// The shortest TTL a node gets (`min_heartbeat_ttl`, 10 s).
    pub min_ttl: Duration,
    /// The TTL grows with the number of nodes so the leader handles at most this many
    /// heartbeats per second (`max_heartbeats_per_second`, 50).
    pub max_per_second: u32,
    /// Added to the TTL before a node counts as missed (`heartbeat_grace`, 10 s): the network
    /// and a busy client get this much slack.
    pub grace: Duration,
    /// Every node's first deadline after a leader change (`failover_heartbeat_ttl`, 5 min).
    pub failover_ttl: Duration,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            min_ttl: Duration::from_secs(10),
            max_per_second: 50,
            grace: Duration::from_secs(10),
            failover_ttl: Duration::from_secs(300),
        }
    }
}

impl HeartbeatConfig {
    /// The TTL to give a node when `nodes` nodes heartbeat: at least `min_ttl`, and long
    /// enough that `nodes` heartbeats spread over it stay under `max_per_second`; plus a
    /// stagger of up to the same again (`stagger` in `[0, 1)`), so that nodes registered
    /// together do not heartbeat together forever.
    pub fn ttl(&self, nodes: usize, stagger: f64) -> Duration {
        let per_second = u64::from(self.max_per_second.max(1));
        let nodes = u64::try_from(nodes).unwrap_or(u64::MAX);
        // nodes / per_second seconds, in milliseconds without losing the remainder.
        let rate_scaled = Duration::from_millis(nodes.saturating_mul(1000) / per_second);
        let base = self.min_ttl.max(rate_scaled);
        let stagger = stagger.clamp(0.0, 1.0);
        base + base.mul_f64(stagger)
    }
}

/// The leader's deadline per node. Times are offsets from any fixed origin (the loop uses the
/// time since it started); only their order matters.
#[derive(Debug, Default)]
pub struct HeartbeatTimers {
    deadlines: HashMap<String, Duration>,
}

impl HeartbeatTimers {
    /// A node heartbeat (or registered) at `now` with this TTL: it is missed after `ttl + grace`.
    pub fn beat(&mut self, node_id: &str, now: Duration, ttl: Duration, grace: Duration) {
        self.deadlines
            .insert(node_id.to_string(), now + ttl + grace);
    }

    /// Starts a timer for each of `nodes` that has none, running out at `now + ttl`. The
    /// loop calls this for the ready nodes of the state: with the failover TTL when
    /// leadership is gained, with a normal TTL for nodes that registered through another
    /// server since.
    pub fn ensure<'a>(
        &mut self,
        nodes: impl IntoIterator<Item = &'a str>,
        now: Duration,
        ttl: Duration,
    ) {
        for node in nodes {
            self.deadlines.entry(node.to_string()).or_insert(now + ttl);
        }
    }

    /// Forgets a node (it is down, purged, or no longer ready).
    pub fn remove(&mut self, node_id: &str) {
        self.deadlines.remove(node_id);
    }

    /// Keeps only the timers of `nodes`.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.deadlines.retain(|id, _| keep(id));
    }

    /// The nodes whose deadline passed by `now`, removed from the timers (they are reported
    /// once; a node that comes back gets a new timer with its next heartbeat).
    pub fn expired(&mut self, now: Duration) -> Vec<String> {
        let mut missed: Vec<String> = self
            .deadlines
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        missed.sort();
        for id in &missed {
            self.deadlines.remove(id);
        }
        missed
    }

    pub fn len(&self) -> usize {
        self.deadlines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }

    pub fn clear(&mut self) {
        self.deadlines.clear();
    }

    pub fn deadline(&self, node_id: &str) -> Option<Duration> {
        self.deadlines.get(node_id).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_ttl_is_the_minimum_for_a_small_fleet_and_scales_with_a_large_one() {
        let c = HeartbeatConfig::default();
        assert_eq!(c.ttl(1, 0.0), secs(10));
        assert_eq!(c.ttl(500, 0.0), secs(10));
        // 10,000 nodes at 50/s: 200 s.
        assert_eq!(c.ttl(10_000, 0.0), secs(200));
        assert_eq!(c.ttl(10_001, 0.0), Duration::from_millis(200_020));
        // The stagger adds up to the TTL again.
        assert_eq!(c.ttl(1, 0.5), secs(15));
        assert_eq!(
            c.ttl(1, 7.0),
            secs(20),
            "a stagger outside [0, 1) is clamped"
        );
        let zero = HeartbeatConfig {
            max_per_second: 0,
            ..c
        };
        assert_eq!(zero.ttl(100, 0.0), secs(100), "0 per second is read as 1");
    }

    #[test]
    fn a_node_is_missed_once_after_ttl_and_grace() {
        let mut t = HeartbeatTimers::default();
        t.beat("a", secs(0), secs(10), secs(10));
        t.beat("b", secs(5), secs(10), secs(10));
        assert!(t.expired(secs(19)).is_empty());
        assert_eq!(t.expired(secs(20)), vec!["a".to_string()]);
        assert!(t.expired(secs(21)).is_empty(), "reported once");
        // b heartbeats in time and moves its deadline.
        t.beat("b", secs(24), secs(10), secs(10));
        assert!(t.expired(secs(30)).is_empty());
        assert_eq!(t.expired(secs(44)), vec!["b".to_string()]);
        assert!(t.is_empty());
    }

    #[test]
    fn ensure_starts_only_missing_timers() {
        let mut t = HeartbeatTimers::default();
        t.beat("a", secs(0), secs(10), secs(10));
        t.ensure(["a", "b"], secs(1), secs(300));
        assert_eq!(t.deadline("a"), Some(secs(20)), "a running timer is kept");
        assert_eq!(t.deadline("b"), Some(secs(301)));
        t.retain(|id| id == "b");
        assert_eq!(t.len(), 1);
        t.remove("b");
        assert!(t.is_empty());
    }
}
