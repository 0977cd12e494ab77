//! Port mapping in eBPF: `host_ip:host_port` → `alloc_ip:alloc_port`, TCP and UDP.
//!
//! One BPF object per node (`src/bpf/portmap.bpf.c`, CO-RE against the committed
//! `vmlinux.h`): `cgroup/connect4`, `cgroup/sendmsg4` and `cgroup/recvmsg4` on the cgroup2
//! root translate host-local clients (only for sockets of the agent's network namespace);
//! tc ingress/egress on the node's external interfaces translate other hosts' traffic and the
//! replies. Maps, links and programs are pinned under the node's pin directory, so traffic
//! keeps flowing when the agent dies and a restarted agent reopens the pins.
//!
//! **Architecture invariant:** the programs are loaded once per node and never for an
//! allocation; an allocation only adds and removes map entries. `unsafe` lives in `sys` only
//! (and in the generated skeleton).
//!
//! **API boundary:** [`PortMapper`] (a [`netns::portmap::PortMapBackend`]),
//! [`PortMapperConfig`], [`EbpfError`], [`probe`] / [`Unavailable`], [`cgroup2_root`].

mod mapper;
pub mod maps;
mod probe;
mod sys;

#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_debug_implementations,
    missing_docs,
    unsafe_op_in_unsafe_fn,
    unused_imports
)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/portmap.skel.rs"));
}

pub use mapper::{EbpfError, Opened, PortMapper, PortMapperConfig, TC_HANDLE, TC_PRIORITY};
pub use probe::{cgroup2_root, probe, Unavailable, BPFFS, VMLINUX_BTF};
pub use sys::netns_cookie;
#[doc(hidden)]
pub use sys::tc_test_run;
