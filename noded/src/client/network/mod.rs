//! An allocation's network on this node. `manager`: the kernel objects (namespace, veth,
//! leased address, port mappings) made and removed per allocation, and reconciled at start;
//! `record`: what the client state keeps of them; `task`: what its tasks see of it (environment,
//! namespace, hostname, `/etc/hosts`, `/etc/resolv.conf`).

pub mod manager;
pub mod record;
pub mod task;
