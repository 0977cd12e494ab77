//! The data model shared by every part of the control plane: jobs, allocations, evaluations and
//! nodes, in the shape Nomad's `/v1` API gives them (PascalCase JSON, durations in nanoseconds).
//!
//! These types are also the payload of Raft entries and snapshots, so a change to a field's name
//! or meaning is a wire change: add fields with `#[serde(default)]`, never repurpose one.
//!
//! A crate of its own (re-exported as `controlplane::model`): it depends on nothing of noded's,
//! so everything else can depend on it, the jobspec included.
#![forbid(unsafe_code)]

// Modules by concept. They use each other in one direction only (checked by `cargo xtask
// cycles`), and reach this file only for what it defines itself, never through the
// re-exports below:
//   placement ← resources ← job_parts ← job ← alloc
//   placement ← eval;  resources ← node;  node_pool (alone);  duration ← job_parts, job
//   job ← scaling (periodic launches, dispatch, scaling events)
//   alloc, job_parts ← service_address (where a service is advertised)
//   service (catalog records; alone)
//   job ← deployment (rollouts of a job version; plan annotations)
// `placement` and `resources` are what jobs, allocations, evaluations and nodes share, so
// none of those has to use another's file for them.
pub mod alloc;
pub mod deployment;
pub mod duration;
pub mod eval;
pub mod job;
pub mod job_parts;
pub mod node;
pub mod node_pool;
pub mod operator;
pub mod placement;
pub mod resources;
pub mod scaling;
pub mod service;
pub mod service_address;
pub mod time;

// Every public name stays reachable as `model::X`, wherever it lives.
pub use alloc::*;
pub use deployment::*;
pub use eval::*;
pub use job::*;
pub use job_parts::*;
pub use node::*;
pub use node_pool::*;
pub use operator::*;
pub use placement::*;
pub use resources::*;
pub use scaling::*;
pub use service::*;
pub use service_address::*;

/// The namespace every object lives in unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "default";
/// The region a single-region cluster calls itself.
pub const DEFAULT_REGION: &str = "global";

/// A new random identifier in Nomad's form (a UUID v4, lower-case, hyphenated).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The first 8 characters of an id, as the CLI shows them.
pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// Nanoseconds since the Unix epoch, the unit Nomad uses for `CreateTime`, event times, etc.
pub fn now_unix_nanos() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_nanos()).unwrap_or(i64::MAX)
}
