//! What a node daemon asks of the servers, and what they answer: the client's RPC.
//!
//! These are wire types (they travel between a client and a server of possibly different
//! versions, as JSON bodies of fabric calls), pinned by golden fixtures: variants and fields
//! are only ever added. Which server answers is the transport's concern: reads (a node's
//! allocations) are answered by whichever server is asked, from its own state, as Nomad's
//! clients read with `AllowStale`; writes go through Raft from any server; a heartbeat must
//! reach the leader, whose timers it resets, so a follower forwards it.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{AllocClientUpdate, Allocation, DrainStrategy, Node, ServiceRegistration};

/// The longest a node's allocation query may block (a longer wait asked is cut to this).
pub const MAX_ALLOCS_WAIT: Duration = Duration::from_secs(300);

/// A client's request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NodeRequest {
    /// Register or re-register the node with its fingerprint.
    Register { node: Box<Node> },
    /// "This node is alive"; answered with the TTL within which the next one must come.
    Heartbeat {
        node_id: String,
        /// Set by the follower that forwarded it to the leader (one hop at most).
        #[serde(default)]
        forwarded: bool,
    },
    /// The node's allocations once the allocation index passes `min_index`, or after
    /// `wait_ms` (a blocking query).
    GetAllocs {
        node_id: String,
        min_index: u64,
        wait_ms: u64,
    },
    /// The node reports its allocations' state.
    UpdateAllocs { updates: Vec<AllocClientUpdate> },
    /// The node drains itself (`client.drain_on_shutdown`, on SIGTERM): answered `Updated`.
    DrainSelf {
        node_id: String,
        drain_strategy: Option<DrainStrategy>,
    },
    /// The node registers its allocations' service instances (or their new health):
    /// answered `Updated`.
    UpsertServices { services: Vec<ServiceRegistration> },
    /// The node removes service instances, by id or every one of some allocations:
    /// answered `Updated`.
    DeleteServices {
        ids: Vec<String>,
        alloc_ids: Vec<String>,
    },
    /// The whole service catalog once its index passes `min_index`, or after `wait_ms`
    /// (a blocking query; the agent's DNS server follows it): answered `Services`.
    GetServices { min_index: u64, wait_ms: u64 },
}

impl NodeRequest {
    /// A short name for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            NodeRequest::Register { .. } => "register",
            NodeRequest::Heartbeat { .. } => "heartbeat",
            NodeRequest::GetAllocs { .. } => "get-allocs",
            NodeRequest::UpdateAllocs { .. } => "update-allocs",
            NodeRequest::DrainSelf { .. } => "drain-self",
            NodeRequest::UpsertServices { .. } => "upsert-services",
            NodeRequest::DeleteServices { .. } => "delete-services",
            NodeRequest::GetServices { .. } => "get-services",
        }
    }
}

/// A server's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NodeReply {
    /// The Raft index the registration was applied at.
    Registered { index: u64 },
    /// The leader took the heartbeat: the next must come within `ttl_ms` (the leader allows
    /// its grace on top). `servers` are the region's servers' RPC addresses, leader first,
    /// so a client learns servers it was not configured with.
    Heartbeat {
        ttl_ms: u64,
        leader: String,
        servers: Vec<String>,
    },
    /// The node's allocations at `index`.
    Allocs {
        allocs: Vec<Arc<Allocation>>,
        index: u64,
    },
    /// The Raft index the report was applied at.
    Updated { index: u64 },
    /// The service catalog at `index`.
    Services {
        services: Vec<Arc<ServiceRegistration>>,
        index: u64,
    },
}
