//! The group's membership, seen from one server: how it forms and grows (introductions,
//! joins), who is alive (member probes), and what operators change (removals, leadership
//! transfer), always done by the leader — a follower forwards the request to it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::{ChangeMembers, Raft};
use tokio::sync::watch;

use super::{propose_error, Forwarded, RaftNode};
use crate::raft::error::ProposeError;
use crate::raft::formation::{self, FormationState, Step};
use crate::raft::network::{
    Contacts, HelloReply, PeerStatus, RaftReply, RaftRequest, RaftTransport, ServerInfo,
};
use crate::raft::{RaftConfig, ServerNode, TypeConfig};

/// How long an introduction to another server may take while the region forms.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the leader waits for a joining server to catch up before making it a voter.
const JOIN_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);

impl RaftNode {
    /// Every member as the leader sees it; asked of the leader when this server follows.
    pub async fn peers(&self) -> Result<Vec<PeerStatus>, ProposeError> {
        if self.is_leader() {
            return self.peers_here();
        }
        self.on_leader(RaftRequest::Peers, |r| match r {
            RaftReply::Peers(r) => Some(r),
            _ => None,
        })
        .await
    }

    pub(super) fn peers_here(&self) -> Result<Vec<PeerStatus>, ProposeError> {
        if !self.is_leader() {
            return Err(ProposeError::NotLeader {
                leader: self.leader(),
            });
        }
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let replication = metrics.replication.clone().unwrap_or_default();
        let own_last = metrics
            .last_log_index
            .map(|index| (index, metrics.current_term));
        Ok(membership
            .nodes()
            .map(|(id, node)| {
                let me = *id == self.config.node_id;
                let matched = replication.get(id).copied().flatten();
                let (last_index, last_term) = if me {
                    own_last.unwrap_or((0, 0))
                } else {
                    matched.map_or((0, 0), |l| (l.index, l.leader_id.term))
                };
                PeerStatus {
                    id: *id,
                    node: node.clone(),
                    voter: voters.contains(id),
                    leader: me,
                    last_contact_ms: if me {
                        Some(0)
                    } else {
                        self.contacts
                            .since(*id)
                            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                    },
                    last_index,
                    last_term,
                }
            })
            .collect())
    }

    /// Hands leadership to `to` (or to the most caught-up other voter): this leader stops
    /// sending heartbeats and campaigning, waits out its lease (followers refuse to vote
    /// while it holds), and tells the target to stand for election at once, ahead of the
    /// other followers' timers. Returns the new leader; another server winning instead is an
    /// error that names it.
    pub async fn transfer_leadership(
        &self,
        to: Option<u64>,
    ) -> Result<(u64, String), ProposeError> {
        if self.is_leader() {
            return self.transfer_leadership_here(to).await;
        }
        self.on_leader(RaftRequest::TransferLeadership(to), |r| match r {
            RaftReply::TransferLeadership(r) => Some(r),
            _ => None,
        })
        .await
    }

    pub(super) async fn transfer_leadership_here(
        &self,
        to: Option<u64>,
    ) -> Result<(u64, String), ProposeError> {
        let me = self.config.node_id;
        let peers = self.peers_here()?;
        let candidates: Vec<&PeerStatus> = peers.iter().filter(|p| p.voter && p.id != me).collect();
        let target = match to {
            Some(id) => candidates
                .iter()
                .find(|p| p.id == id)
                .copied()
                .ok_or_else(|| {
                    ProposeError::Refused(format!(
                        "node {id} is not another voter of the raft group (voters: {:?})",
                        peers
                            .iter()
                            .filter(|p| p.voter)
                            .map(|p| p.id)
                            .collect::<Vec<_>>()
                    ))
                })?,
            None => candidates
                .iter()
                .max_by_key(|p| p.last_index)
                .copied()
                .ok_or_else(|| {
                    ProposeError::Refused(
                        "there is no other voter to hand leadership to".to_string(),
                    )
                })?,
        };
        let target = target.clone();
        let lease = Duration::from_millis(self.config.election_timeout_max_ms);
        self.raft.runtime_config().heartbeat(false);
        self.raft.runtime_config().elect(false);
        let outcome = async {
            tokio::time::sleep(lease + Duration::from_millis(self.config.heartbeat_interval_ms))
                .await;
            let deadline = Instant::now() + lease * 4;
            match self
                .forward(target.id, &target.node.addr, RaftRequest::Elect, deadline)
                .await
            {
                Forwarded::Reply(RaftReply::Elect(Ok(()))) => {}
                Forwarded::Reply(RaftReply::Elect(Err(e))) | Forwarded::Lost(e) => return Err(e),
                Forwarded::Reply(other) => {
                    return Err(ProposeError::Internal(format!(
                        "node {} answered an election request with a {} reply",
                        target.id,
                        other.kind()
                    )))
                }
                Forwarded::NotDelivered => {
                    return Err(ProposeError::Refused(format!(
                        "node {} at {} cannot be reached; leadership stays here",
                        target.id, target.node.addr
                    )))
                }
            }
            let mut metrics = self.raft.metrics();
            loop {
                let leader = metrics.borrow_and_update().current_leader;
                match leader {
                    Some(id) if id == target.id => return Ok((id, target.node.addr.clone())),
                    Some(id) if id != me => {
                        return Err(ProposeError::Refused(format!(
                            "node {id} won the election instead of node {}; run the transfer \
                             again to move leadership there",
                            target.id
                        )))
                    }
                    _ => {}
                }
                if tokio::time::timeout_at(deadline.into(), metrics.changed())
                    .await
                    .map_or(true, |r| r.is_err())
                {
                    return Err(ProposeError::Timeout {
                        after_ms: u64::try_from((lease * 4).as_millis()).unwrap_or(u64::MAX),
                    });
                }
            }
        }
        .await;
        self.raft.runtime_config().heartbeat(true);
        self.raft.runtime_config().elect(true);
        outcome
    }

    /// Introduces this server to the servers at `addresses` (`noded server join`): each learns
    /// of it, and if one belongs to a formed region while this server does not, this server
    /// asks that region's leader to add it. Returns, per address, whether it answered.
    pub async fn introduce(&self, addresses: &[String]) -> Vec<(String, Result<(), String>)> {
        let me = self.config.server_info();
        let formed = self.raft.is_initialized().await.unwrap_or(false);
        let mut outcome = Vec::new();
        for address in addresses {
            let result = match hello(&self.transport, &self.known, &me, address).await {
                Ok(HelloReply {
                    formed: true,
                    leader: Some((leader_id, leader)),
                    ..
                }) if !formed => ask_to_join(&self.transport, &me, leader_id, &leader).await,
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            };
            outcome.push((address.clone(), result));
        }
        outcome
    }

    /// How long ago `peer` last answered this server (raft replication or a member probe).
    pub fn peer_contact(&self, peer: u64) -> Option<Duration> {
        if peer == self.config.node_id {
            return Some(Duration::ZERO);
        }
        self.contacts.since(peer)
    }

    pub(super) async fn hello(&self, from: ServerInfo) -> HelloReply {
        let me = self.config.server_info();
        let mut known = match self.known.lock() {
            Ok(mut known) => {
                formation::learn(&mut known, &me, std::slice::from_ref(&from));
                known.values().cloned().collect::<Vec<_>>()
            }
            Err(_) => Vec::new(),
        };
        known.push(me.clone());
        let formed = self.raft.is_initialized().await.unwrap_or(false);
        HelloReply {
            server: me,
            formed,
            leader: self.leader(),
            known,
        }
    }

    /// Adds a server to the region (the leader only): as a learner first, which receives the
    /// log (or a snapshot) until it has caught up, then as a voter. A server already in the
    /// group is left as it is. A server that comes back with a new id at the address of a
    /// member (its data dir was lost) replaces that member.
    pub async fn add_server(&self, server: ServerInfo) -> Result<(), ProposeError> {
        let node_id = self.config.node_id;
        if server.region != self.config.region {
            return Err(ProposeError::Refused(format!(
                "server {} of region {:?} cannot join region {:?}",
                server.node, server.region, self.config.region
            )));
        }
        if !self.is_leader() {
            return Err(ProposeError::NotLeader {
                leader: self.leader(),
            });
        }
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let membership = membership.membership();
        if membership.voter_ids().any(|id| id == server.id) {
            return Ok(());
        }
        let replaced: BTreeSet<u64> = membership
            .nodes()
            .filter(|(id, node)| **id != server.id && node.addr == server.node.addr)
            .map(|(id, _)| *id)
            .collect();
        tracing::info!(
            node_id,
            joining = server.id,
            server = %server.node,
            "adding a server to the region as a learner until it has caught up"
        );
        let added = tokio::time::timeout(
            JOIN_CATCH_UP_TIMEOUT,
            self.raft.add_learner(server.id, server.node.clone(), true),
        )
        .await;
        match added {
            Err(_) => {
                return Err(ProposeError::Timeout {
                    after_ms: u64::try_from(JOIN_CATCH_UP_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
                })
            }
            Ok(Err(e)) => return Err(propose_error(e, |id| self.address_of(id))),
            Ok(Ok(_)) => {}
        }
        let voters = BTreeSet::from([server.id]);
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(voters), false)
            .await
            .map_err(|e| propose_error(e, |id| self.address_of(id)))?;
        tracing::info!(node_id, joined = server.id, server = %server.node, "server is now a voter");
        if !replaced.is_empty() {
            tracing::info!(
                node_id,
                replaced = ?replaced,
                "removing the old id of a server that rejoined at the same address"
            );
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(replaced), false)
                .await
                .map_err(|e| propose_error(e, |id| self.address_of(id)))?;
        }
        Ok(())
    }

    /// Removes a server from the group, through the leader. Refuses to remove the last voter
    /// and an id that is not a member.
    pub async fn remove_server(&self, id: u64) -> Result<(), ProposeError> {
        if self.is_leader() {
            return self.remove_server_here(id).await;
        }
        self.on_leader(RaftRequest::RemoveServer(id), |r| match r {
            RaftReply::RemoveServer(r) => Some(r),
            _ => None,
        })
        .await
    }

    pub(super) async fn remove_server_here(&self, id: u64) -> Result<(), ProposeError> {
        if !self.is_leader() {
            return Err(ProposeError::NotLeader {
                leader: self.leader(),
            });
        }
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let membership = membership.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let learners: BTreeSet<u64> = membership.learner_ids().collect();
        if !voters.contains(&id) && !learners.contains(&id) {
            return Err(ProposeError::Refused(format!(
                "node {id} is not a member of the raft group (voters {voters:?}, non-voters \
                 {learners:?}); nothing was changed"
            )));
        }
        if voters.len() == 1 && voters.contains(&id) {
            return Err(ProposeError::Refused(format!(
                "node {id} is the last voter of the raft group; removing it would leave the \
                 region without servers, so nothing was changed"
            )));
        }
        let change = if voters.contains(&id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| propose_error(e, |id| self.address_of(id)))?;
        if voters.contains(&id) {
            // A removed voter becomes a learner; drop it entirely.
            let _ = self
                .raft
                .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                .await;
        }
        if let Ok(mut known) = self.known.lock() {
            known.remove(&id);
        }
        Ok(())
    }
}

/// Introduces `me` to the server at `address` and records whom it knows.
async fn hello(
    transport: &Arc<dyn RaftTransport>,
    known: &Mutex<BTreeMap<u64, ServerInfo>>,
    me: &ServerInfo,
    address: &str,
) -> Result<HelloReply, String> {
    match transport
        .send(0, address, RaftRequest::Hello(me.clone()), HELLO_TIMEOUT)
        .await
    {
        Ok(RaftReply::Hello(reply)) => {
            if let Ok(mut known) = known.lock() {
                formation::learn(&mut known, me, &reply.known);
                formation::learn(&mut known, me, std::slice::from_ref(&reply.server));
            }
            Ok(reply)
        }
        Ok(other) => Err(format!(
            "{address} answered an introduction with a {} reply; is it a noded server?",
            other.kind()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Asks the leader of a formed region to add `me`.
async fn ask_to_join(
    transport: &Arc<dyn RaftTransport>,
    me: &ServerInfo,
    leader_id: u64,
    leader: &str,
) -> Result<(), String> {
    match transport
        .send(
            leader_id,
            leader,
            RaftRequest::Join(me.clone()),
            JOIN_CATCH_UP_TIMEOUT,
        )
        .await
    {
        Ok(RaftReply::Join(Ok(()))) => Ok(()),
        Ok(RaftReply::Join(Err(e))) => Err(e.to_string()),
        Ok(other) => Err(format!(
            "the leader answered a join with a {} reply",
            other.kind()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// How often every server checks that the other members answer.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Every [`PROBE_INTERVAL`], introduces this server to every other member of the group and
/// records who answered: the liveness `/v1/agent/members` reports, on every server (Raft
/// itself only tells the leader about its followers).
pub(super) async fn probe_members(
    raft: Raft<TypeConfig>,
    transport: Arc<dyn RaftTransport>,
    me: ServerInfo,
    contacts: Contacts,
) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let members: Vec<(u64, String)> = raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != me.id)
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect();
        let probes = members.into_iter().map(|(id, address)| {
            let transport = transport.clone();
            let me = me.clone();
            let contacts = contacts.clone();
            async move {
                if let Ok(RaftReply::Hello(_)) = transport
                    .send(id, &address, RaftRequest::Hello(me), PROBE_INTERVAL)
                    .await
                {
                    contacts.record(id);
                }
            }
        });
        futures::future::join_all(probes).await;
    }
}

/// The background loop of a new server that has others to find (see [`formation`]): introduce
/// itself to every `retry_join` address and every server heard of, decide, act, and try again
/// after `retry_interval` until the region is formed or `retry_max` attempts are used up.
pub(super) async fn form_region(
    raft: Raft<TypeConfig>,
    transport: Arc<dyn RaftTransport>,
    config: RaftConfig,
    known: Arc<Mutex<BTreeMap<u64, ServerInfo>>>,
    state: watch::Sender<FormationState>,
) {
    let me = config.server_info();
    let join = &config.join;
    let mut attempt: u32 = 0;
    loop {
        attempt = attempt.saturating_add(1);
        if raft.is_initialized().await.unwrap_or(false) {
            tracing::info!(node_id = me.id, "this server is a member of its region");
            state.send_replace(FormationState::Formed);
            return;
        }
        let mut addresses: BTreeSet<String> = join.retry_join.iter().cloned().collect();
        if let Ok(known) = known.lock() {
            addresses.extend(known.values().map(|s| s.node.addr.clone()));
        }
        addresses.remove(&me.node.addr);
        let mut replies = Vec::new();
        for address in &addresses {
            match hello(&transport, &known, &me, address).await {
                Ok(reply) => replies.push(reply),
                Err(e) => tracing::warn!(
                    %address,
                    attempt,
                    "retry_join: cannot reach server at {address}: {e}; retrying in {:?}",
                    join.retry_interval
                ),
            }
        }
        let snapshot = known.lock().map(|k| k.clone()).unwrap_or_default();
        match formation::decide(&me, join.bootstrap_expect, &replies, &snapshot) {
            Step::Join { leader_id, leader } => {
                match ask_to_join(&transport, &me, leader_id, &leader).await {
                    Ok(()) => {
                        tracing::info!(node_id = me.id, leader_id, %leader, "joined the region")
                    }
                    Err(e) => {
                        tracing::warn!(leader_id, %leader, "joining the region through {leader}: {e}")
                    }
                }
            }
            Step::Bootstrap { members } => {
                let names: Vec<String> = members.iter().map(|m| m.node.to_string()).collect();
                tracing::info!(
                    node_id = me.id,
                    "bootstrapping the region with {} servers: {}",
                    members.len(),
                    names.join(", ")
                );
                let members: BTreeMap<u64, ServerNode> =
                    members.into_iter().map(|m| (m.id, m.node)).collect();
                if let Err(e) = raft.initialize(members).await {
                    tracing::warn!(node_id = me.id, "bootstrapping the region: {e}");
                }
            }
            Step::Wait { reason } => tracing::info!(node_id = me.id, attempt, "{reason}"),
        }
        if raft.is_initialized().await.unwrap_or(false) {
            continue;
        }
        if join.retry_max > 0 && attempt >= join.retry_max {
            let message = format!(
                "gave up forming the region after {attempt} attempts (retry_max = {}): could \
                 not find {} servers through retry_join {:?}; check that the other servers run \
                 and that their rpc port is reachable from here",
                join.retry_max, join.bootstrap_expect, join.retry_join
            );
            tracing::error!("{message}");
            state.send_replace(FormationState::Failed(message));
            return;
        }
        tokio::time::sleep(join.retry_interval).await;
    }
}
