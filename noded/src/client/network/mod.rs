//! An allocation's network on this node. `task`: what its tasks see of it (environment,
//! namespace, hostname, `/etc/hosts`, `/etc/resolv.conf`).

pub mod task;
