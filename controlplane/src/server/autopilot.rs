//! Autopilot's decisions, as pure functions of facts: which servers are healthy, how many may
//! fail, since when each has been stable. The facts (serf status, last contact, Raft term and
//! index per server) come from the cluster layer through
//! [`crate::api::ClusterEndpoints::server_health`]; the thresholds from the replicated
//! [`AutopilotConfiguration`]. No clock here: "now" is an argument.
//!
//! The rules are Nomad's (its raft-autopilot library): a server is healthy when its gossip
//! status is alive, it heard from the leader within `LastContactThreshold`, it is on the
//! leader's term, and its log is no more than `MaxTrailingLogs` behind the leader's. The
//! region is healthy when every server is; its failure tolerance is how many healthy voters
//! it can lose and keep a quorum.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::duration;
use crate::model::AutopilotConfiguration;

/// A server's state in the gossip pool (Nomad's serf member status words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SerfStatus {
    Alive,
    Leaving,
    Left,
    Failed,
    /// Not in the gossip pool at all (a Raft peer nobody gossips about).
    None,
}

impl SerfStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SerfStatus::Alive => "alive",
            SerfStatus::Leaving => "leaving",
            SerfStatus::Left => "left",
            SerfStatus::Failed => "failed",
            SerfStatus::None => "none",
        }
    }
}

/// What the cluster layer knows about one server of the Raft configuration, raw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHealthFacts {
    /// The Raft server id.
    pub id: String,
    /// The node name (`name.region`), or "(unknown)".
    pub name: String,
    /// The Raft RPC address, `ip:port`.
    pub address: String,
    /// The noded version the server runs.
    pub version: String,
    pub serf_status: SerfStatus,
    pub voter: bool,
    pub leader: bool,
    /// Time since the leader last heard from it (zero for the leader itself); `None` when
    /// it never has.
    pub last_contact: Option<Duration>,
    /// The term of its last log entry.
    pub last_term: u64,
    /// The index of its last log entry.
    pub last_index: u64,
}

/// One server in Nomad's `/v1/operator/autopilot/health` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServerHealth {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub address: String,
    pub serf_status: String,
    pub version: String,
    pub leader: bool,
    /// Go duration text, as Nomad writes it ("13ms"); "-1ns" when never heard from.
    pub last_contact: String,
    pub last_term: u64,
    pub last_index: u64,
    pub healthy: bool,
    pub voter: bool,
    /// RFC 3339, UTC, to the second: since when `healthy` has had its current value.
    pub stable_since: String,
}

/// Nomad's `OperatorHealthReply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OperatorHealthReply {
    pub healthy: bool,
    pub failure_tolerance: u64,
    pub servers: Vec<ServerHealth>,
    /// The leader's server id ("" when there is none).
    pub leader: String,
    /// Server ids of the voters.
    pub voters: Vec<String>,
}

/// Since when each server has been healthy or unhealthy: the one thing autopilot remembers
/// between two looks. Servers no longer reported are forgotten.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StableHistory {
    since: BTreeMap<String, (bool, i64)>,
}

/// Whether one server is healthy by the configuration's thresholds, and why not.
pub fn check_server(
    server: &ServerHealthFacts,
    leader: Option<&ServerHealthFacts>,
    config: &AutopilotConfiguration,
) -> Result<(), String> {
    if server.serf_status != SerfStatus::Alive {
        return Err(format!("gossip status is {}", server.serf_status.as_str()));
    }
    match server.last_contact {
        None => return Err("never heard from the leader".to_string()),
        Some(c) if c > config.last_contact_threshold => {
            return Err(format!(
                "last contact {} ago is over the threshold of {}",
                duration::format_go(c),
                duration::format_go(config.last_contact_threshold)
            ))
        }
        Some(_) => {}
    }
    let Some(leader) = leader else {
        return Err("there is no leader".to_string());
    };
    if server.last_term != leader.last_term {
        return Err(format!(
            "on term {}, the leader on term {}",
            server.last_term, leader.last_term
        ));
    }
    if server.last_index.saturating_add(config.max_trailing_logs) < leader.last_index {
        return Err(format!(
            "log at index {} trails the leader's {} by more than {}",
            server.last_index, leader.last_index, config.max_trailing_logs
        ));
    }
    Ok(())
}

/// The region's health from its servers' facts. `history` carries each server's
/// `StableSince` from one call to the next; `now` is Unix nanoseconds.
pub fn compute_health(
    facts: &[ServerHealthFacts],
    config: &AutopilotConfiguration,
    history: &mut StableHistory,
    now: i64,
) -> OperatorHealthReply {
    let leader = facts.iter().find(|s| s.leader);
    let mut servers = Vec::with_capacity(facts.len());
    let mut since = BTreeMap::new();
    for s in facts {
        let healthy = check_server(s, leader, config).is_ok();
        let stable = match history.since.get(&s.id) {
            Some((was, at)) if *was == healthy => *at,
            _ => now,
        };
        since.insert(s.id.clone(), (healthy, stable));
        servers.push(ServerHealth {
            id: s.id.clone(),
            name: s.name.clone(),
            address: s.address.clone(),
            serf_status: s.serf_status.as_str().to_string(),
            version: s.version.clone(),
            leader: s.leader,
            last_contact: s
                .last_contact
                .map(duration::format_go)
                .unwrap_or_else(|| "-1ns".to_string()),
            last_term: s.last_term,
            last_index: s.last_index,
            healthy,
            voter: s.voter,
            // Nomad rounds it to the second.
            stable_since: crate::model::time::format_rfc3339(stable - stable % 1_000_000_000),
        });
    }
    history.since = since;
    let voters: Vec<String> = facts
        .iter()
        .filter(|s| s.voter)
        .map(|s| s.id.clone())
        .collect();
    let healthy_voters = servers.iter().filter(|s| s.voter && s.healthy).count() as u64;
    let quorum = voters.len() as u64 / 2 + 1;
    OperatorHealthReply {
        healthy: !servers.is_empty() && servers.iter().all(|s| s.healthy),
        failure_tolerance: healthy_voters.saturating_sub(quorum),
        servers,
        leader: leader.map(|l| l.id.clone()).unwrap_or_default(),
        voters,
    }
}

/// Whether a server has been healthy for at least the stabilization time: a new server is
/// promoted to voter only then.
pub fn is_stable(server: &ServerHealth, config: &AutopilotConfiguration, now: i64) -> bool {
    let Some(since) = crate::model::time::parse_rfc3339(&server.stable_since) else {
        return false;
    };
    let stabilization =
        i64::try_from(config.server_stabilization_time.as_nanos()).unwrap_or(i64::MAX);
    server.healthy && now.saturating_sub(since) >= stabilization
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    fn server(
        id: &str,
        leader: bool,
        contact_ms: Option<u64>,
        term: u64,
        index: u64,
    ) -> ServerHealthFacts {
        ServerHealthFacts {
            id: id.to_string(),
            name: format!("{id}.global"),
            address: format!("10.0.0.{}:4647", id.len()),
            version: "0.1.0".to_string(),
            serf_status: SerfStatus::Alive,
            voter: true,
            leader,
            last_contact: contact_ms.map(Duration::from_millis),
            last_term: term,
            last_index: index,
        }
    }

    fn three() -> Vec<ServerHealthFacts> {
        vec![
            server("a", true, Some(0), 2, 1000),
            server("b", false, Some(50), 2, 990),
            server("c", false, Some(80), 2, 900),
        ]
    }

    #[test]
    fn three_healthy_servers_tolerate_one_failure() {
        let mut history = StableHistory::default();
        let reply = compute_health(&three(), &Default::default(), &mut history, 100 * SEC);
        assert!(reply.healthy);
        assert_eq!(reply.failure_tolerance, 1);
        assert_eq!(reply.leader, "a");
        assert_eq!(reply.voters, ["a", "b", "c"]);
        assert!(reply.servers.iter().all(|s| s.healthy));
        assert_eq!(reply.servers[1].last_contact, "50ms");
        assert_eq!(reply.servers[0].stable_since, "1970-01-01T00:01:40Z");
    }

    #[test]
    fn each_threshold_makes_a_server_unhealthy() {
        let config = AutopilotConfiguration::default();
        type Change = Box<dyn Fn(&mut ServerHealthFacts)>;
        let cases: Vec<(&str, Change)> = vec![
            ("failed", Box::new(|s| s.serf_status = SerfStatus::Failed)),
            (
                "slow contact",
                Box::new(|s| s.last_contact = Some(Duration::from_millis(201))),
            ),
            ("never contacted", Box::new(|s| s.last_contact = None)),
            ("old term", Box::new(|s| s.last_term = 1)),
            ("trailing", Box::new(|s| s.last_index = 749)),
        ];
        for (what, change) in cases {
            let mut facts = three();
            change(&mut facts[2]);
            let reply = compute_health(&facts, &config, &mut StableHistory::default(), 0);
            assert!(!reply.healthy, "{what}");
            assert!(!reply.servers[2].healthy, "{what}");
            assert!(reply.servers[1].healthy, "{what}");
            // Two healthy voters of three: exactly a quorum, nothing to spare.
            assert_eq!(reply.failure_tolerance, 0, "{what}");
        }
        // Exactly at the limits is still healthy.
        let mut facts = three();
        facts[2].last_contact = Some(Duration::from_millis(200));
        facts[2].last_index = 750;
        assert!(compute_health(&facts, &config, &mut StableHistory::default(), 0).healthy);
    }

    #[test]
    fn without_a_leader_nobody_is_healthy() {
        let mut facts = three();
        facts[0].leader = false;
        let reply = compute_health(
            &facts,
            &Default::default(),
            &mut StableHistory::default(),
            0,
        );
        assert!(!reply.healthy);
        assert_eq!(reply.leader, "");
        assert_eq!(reply.failure_tolerance, 0);
    }

    #[test]
    fn stable_since_moves_only_when_health_changes() {
        let config = AutopilotConfiguration::default();
        let mut history = StableHistory::default();
        compute_health(&three(), &config, &mut history, 10 * SEC);
        let reply = compute_health(&three(), &config, &mut history, 30 * SEC);
        assert_eq!(reply.servers[2].stable_since, "1970-01-01T00:00:10Z");
        assert!(is_stable(&reply.servers[2], &config, 30 * SEC));
        assert!(!is_stable(&reply.servers[2], &config, 15 * SEC));
        let mut sick = three();
        sick[2].serf_status = SerfStatus::Failed;
        let reply = compute_health(&sick, &config, &mut history, 40 * SEC);
        assert_eq!(reply.servers[2].stable_since, "1970-01-01T00:00:40Z");
        assert_eq!(reply.servers[1].stable_since, "1970-01-01T00:00:10Z");
        assert!(!is_stable(&reply.servers[2], &config, 100 * SEC));
    }

    #[test]
    fn five_servers_tolerate_two() {
        let mut facts = three();
        facts.push(server("d", false, Some(10), 2, 1000));
        facts.push(server("e", false, Some(10), 2, 1000));
        let reply = compute_health(
            &facts,
            &Default::default(),
            &mut StableHistory::default(),
            0,
        );
        assert_eq!(reply.failure_tolerance, 2);
        facts[4].voter = false;
        let reply = compute_health(
            &facts,
            &Default::default(),
            &mut StableHistory::default(),
            0,
        );
        // Four voters need three: one to spare.
        assert_eq!(reply.failure_tolerance, 1);
    }
}
