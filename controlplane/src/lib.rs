//! # controlplane
//!
//! Owns everything a server decides: the data model ([`model`], a crate of its own), the jobspec
//! ([`jobspec`], HCL2/JSON → `Job` and validation, a crate of its own so that the compiler keeps it
//! away from state, network and HTTP), the replicated state store and its Raft state machine, the evaluation broker,
//! the scheduler, the plan applier and the `/v1` HTTP API.
//!
//! Must not touch the kernel: no cgroups, namespaces, mounts or process spawning. Anything a
//! client does on a machine lives in the `noded` and `isolation` crates, and reaches the HTTP
//! API only through the [`api::ClientEndpoints`] trait.
#![forbid(unsafe_code)]

pub use jobspec;
pub use model;

pub mod api;
pub mod drivers;
pub mod jobdiff;
pub mod raft;
pub mod scheduler;
pub mod server;
pub mod state;
