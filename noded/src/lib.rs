//! # noded (the binary's library)
//!
//! Owns the `noded` binary: the CLI, the agent (config, wiring of server and client), the
//! client (node daemon: fingerprint, registration, allocation and task runners), the task
//! drivers, and the per-node task supervisor that keeps tasks running across node daemon
//! restarts.
//!
//! Must not decide placement (the `controlplane` crate does) and must not touch the kernel's
//! isolation primitives directly (the `isolation` crate does); its own `unsafe` is confined to
//! [`sys`].

// `unsafe` lives in `sys` alone, behind small safe functions; everywhere else it is an error.
#![deny(unsafe_code)]

pub mod agent;
pub mod cli;
pub mod client;
pub mod dns;
pub mod driver;
pub mod rpc_wire;
pub mod supervisor;
#[allow(unsafe_code)]
pub mod sys;
mod terminal;
