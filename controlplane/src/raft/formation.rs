//! How servers become a region: the decisions, as pure functions of what a server has heard.
//!
//! A new server knows some addresses (`server_join { retry_join }`) and how many servers the
//! region should start with (`bootstrap_expect`). It introduces itself to every address
//! ([`RaftRequest::Hello`](super::RaftRequest::Hello)) and learns, from each answer, who that
//! server is, whether it already belongs to a formed region, and whom it knows. From that it
//! decides one [`Step`]:
//!
//! - someone already belongs to a formed region with a leader: ask that leader to be added
//!   (a learner first, a voter once it has caught up);
//! - `bootstrap_expect` unformed servers are known: the one with the lowest node id
//!   bootstraps the region with all of them as voters; the others wait, and receive the
//!   membership from the new leader like any follower. Exactly one server calls openraft's
//!   `initialize`, so a region is bootstrapped once, and a server that restarts finds its
//!   membership in its log and never bootstraps again;
//! - otherwise wait and try again after `retry_interval`.
//!
//! The loop that sends the messages and sleeps lives in [`super::node`]; this module only
//! decides, so every case is tested without a network.

use std::collections::BTreeMap;
use std::time::Duration;

use super::network::{HelloReply, ServerInfo};

/// Nomad's default `retry_interval`.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(30);
/// At most this many servers are remembered from introductions: a region has 3 or 5, and a
/// misbehaving peer must not grow the list without bound.
pub const MAX_KNOWN_SERVERS: usize = 64;

/// How a server finds the others (the agent's `server { bootstrap_expect, server_join }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinSettings {
    /// How many servers the region starts with; 1 is a region of one.
    pub bootstrap_expect: u32,
    /// Addresses (`host` or `host:port`) of other servers.
    pub retry_join: Vec<String>,
    /// How long to wait between attempts.
    pub retry_interval: Duration,
    /// Give up after this many attempts; 0 tries forever.
    pub retry_max: u32,
}

impl Default for JoinSettings {
    fn default() -> Self {
        JoinSettings {
            bootstrap_expect: 1,
            retry_join: Vec::new(),
            retry_interval: DEFAULT_RETRY_INTERVAL,
            retry_max: 0,
        }
    }
}

impl JoinSettings {
    /// A region of one that has no one to find: it bootstraps alone at once.
    pub fn is_alone(&self) -> bool {
        self.bootstrap_expect <= 1 && self.retry_join.is_empty()
    }
}

/// Where a server stands in forming its region, for the agent and for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormationState {
    /// Still looking for the other servers.
    Forming,
    /// A member of a formed region (its log holds a membership).
    Formed,
    /// Gave up after `retry_max` attempts; the message says what was missing.
    Failed(String),
}

/// What a forming server does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Ask this leader to add this server to its region.
    Join { leader_id: u64, leader: String },
    /// Bootstrap the region with these servers as its voters.
    Bootstrap { members: Vec<ServerInfo> },
    /// Nothing to do yet; the reason is logged.
    Wait { reason: String },
}

/// Decides the next step of server `me`, given the answers to its introductions and every
/// server it has heard of (from those answers and from introductions it received).
pub fn decide(
    me: &ServerInfo,
    bootstrap_expect: u32,
    replies: &[HelloReply],
    known: &BTreeMap<u64, ServerInfo>,
) -> Step {
    if let Some(formed) = replies.iter().find(|r| r.formed) {
        return match &formed.leader {
            Some((leader_id, leader)) => Step::Join {
                leader_id: *leader_id,
                leader: leader.clone(),
            },
            None => Step::Wait {
                reason: format!(
                    "{} belongs to a formed region that has no leader right now",
                    formed.server.node
                ),
            },
        };
    }
    let mut candidates: BTreeMap<u64, &ServerInfo> = known
        .iter()
        .filter(|(_, s)| s.region == me.region)
        .map(|(id, s)| (*id, s))
        .collect();
    candidates.insert(me.id, me);
    let expect = usize::try_from(bootstrap_expect.max(1)).unwrap_or(usize::MAX);
    if candidates.len() < expect {
        let names: Vec<String> = candidates.values().map(|s| s.node.to_string()).collect();
        return Step::Wait {
            reason: format!(
                "found {} of the {expect} servers bootstrap_expect asks for ({}); waiting for \
                 the others to start or to be reachable through retry_join",
                candidates.len(),
                names.join(", ")
            ),
        };
    }
    let lowest = *candidates.keys().next().unwrap_or(&me.id);
    if lowest == me.id {
        Step::Bootstrap {
            members: candidates.into_values().cloned().collect(),
        }
    } else {
        Step::Wait {
            reason: format!(
                "{} servers found; {} (node {lowest}) bootstraps the region",
                candidates.len(),
                candidates
                    .get(&lowest)
                    .map(|s| s.node.to_string())
                    .unwrap_or_default()
            ),
        }
    }
}

/// Records what an introduction taught: the server itself and whom it knows, in `me`'s region,
/// at most [`MAX_KNOWN_SERVERS`].
pub fn learn(known: &mut BTreeMap<u64, ServerInfo>, me: &ServerInfo, heard: &[ServerInfo]) {
    for server in heard {
        if server.id == me.id || server.region != me.region {
            continue;
        }
        if known.len() >= MAX_KNOWN_SERVERS && !known.contains_key(&server.id) {
            continue;
        }
        known.insert(server.id, server.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::ServerNode;

    fn server(id: u64) -> ServerInfo {
        ServerInfo {
            id,
            node: ServerNode::new(format!("10.0.0.{id}:4647"), format!("s{id}")),
            region: "global".into(),
        }
    }

    fn reply(id: u64, formed: bool, leader: Option<u64>) -> HelloReply {
        HelloReply {
            server: server(id),
            formed,
            leader: leader.map(|l| (l, format!("10.0.0.{l}:4647"))),
            known: vec![server(id)],
        }
    }

    fn known(ids: &[u64]) -> BTreeMap<u64, ServerInfo> {
        ids.iter().map(|id| (*id, server(*id))).collect()
    }

    #[test]
    fn the_lowest_id_bootstraps_once_enough_servers_are_known_and_the_others_wait() {
        let replies = [reply(20, false, None), reply(30, false, None)];
        let step = decide(&server(10), 3, &replies, &known(&[20, 30]));
        let Step::Bootstrap { members } = step else {
            panic!("expected a bootstrap, got {step:?}");
        };
        let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
        assert_eq!(ids, [10, 20, 30]);

        let step = decide(&server(20), 3, &replies, &known(&[10, 30]));
        assert!(
            matches!(&step, Step::Wait { reason } if reason.contains("node 10")),
            "{step:?}"
        );
    }

    #[test]
    fn too_few_servers_means_waiting_with_a_reason_that_counts_them() {
        let step = decide(&server(10), 3, &[reply(20, false, None)], &known(&[20]));
        assert!(
            matches!(&step, Step::Wait { reason } if reason.contains("found 2 of the 3")),
            "{step:?}"
        );
    }

    #[test]
    fn a_formed_region_is_joined_through_its_leader_never_bootstrapped_again() {
        let replies = [reply(20, true, Some(30)), reply(40, false, None)];
        let step = decide(&server(10), 3, &replies, &known(&[20, 30, 40]));
        assert_eq!(
            step,
            Step::Join {
                leader_id: 30,
                leader: "10.0.0.30:4647".into()
            }
        );
        let step = decide(&server(10), 1, &[reply(20, true, None)], &known(&[20]));
        assert!(matches!(step, Step::Wait { .. }), "{step:?}");
    }

    #[test]
    fn servers_of_another_region_never_count() {
        let mut other = known(&[20, 30]);
        for s in other.values_mut() {
            s.region = "eu".into();
        }
        let step = decide(&server(10), 3, &[], &other);
        assert!(matches!(step, Step::Wait { .. }), "{step:?}");
        let mut learned = BTreeMap::new();
        learn(
            &mut learned,
            &server(10),
            &other.values().cloned().collect::<Vec<_>>(),
        );
        assert!(learned.is_empty());
    }

    #[test]
    fn what_is_learned_is_bounded_and_never_includes_oneself() {
        let mut learned = BTreeMap::new();
        let heard: Vec<ServerInfo> = (0..200).map(server).collect();
        learn(&mut learned, &server(5), &heard);
        assert_eq!(learned.len(), MAX_KNOWN_SERVERS);
        assert!(!learned.contains_key(&5));
    }
}
