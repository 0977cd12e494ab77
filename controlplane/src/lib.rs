//! # controlplane
//!
//! Owns everything a server decides: the data model ([`model`]), the jobspec (HCL2/JSON → `Job`,
//! validation), the replicated state store and its Raft state machine, the evaluation broker,
//! the scheduler, the plan applier and the `/v1` HTTP API.
//!
//! Must not touch the kernel: no cgroups, namespaces, mounts or process spawning. Anything a
//! client does on a machine lives in the `noded` and `isolation` crates, and reaches the HTTP
//! API only through the [`api::ClientEndpoints`] trait.
#![forbid(unsafe_code)]

pub mod api;
pub mod drivers;
pub mod jobspec;
pub mod model;
pub mod raft;
pub mod scheduler;
pub mod server;
pub mod state;
