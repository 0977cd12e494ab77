//! Veth pairs between the bridge and an allocation's namespace: the host side is a bridge
//! port, the peer is `eth0` inside the namespace with the allocation's address and a default
//! route via the bridge's gateway.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::bridge::Bridge;
use crate::error::{netlink_errno, Error, Result};
use crate::{exec, link, namespace};

/// The name of the peer inside the allocation's namespace.
pub const PEER_NAME: &str = "eth0";

/// A veth pair that [`attach`] set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub host_veth: String,
    pub host_index: u32,
    pub ns_name: String,
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

/// A link of the calling thread's namespace, for reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub name: String,
    pub index: u32,
    /// The index of the bridge (or other controller) the link is a port of.
    pub master: Option<u32>,
}

/// Connects the namespace `ns_name` to `bridge`: a veth pair `host_veth` (a port of the
/// bridge, up) ↔ `eth0` in the namespace with `addr/prefix`, `eth0` and `lo` up, default
/// route via the bridge's gateway. On failure, what this call created is removed.
pub fn attach(
    bridge: &Bridge,
    ns_name: &str,
    host_veth: &str,
    addr: Ipv4Addr,
) -> Result<Attachment> {
    link::validate_ifname("host veth name", host_veth)?;
    if !bridge.subnet.contains(addr) || addr == bridge.gateway {
        return Err(Error::Invalid {
            what: "allocation address",
            value: addr.to_string(),
            reason: format!(
                "not a host address of {} other than the gateway {}",
                bridge.subnet, bridge.gateway
            ),
        });
    }
    if !namespace::exists(ns_name) {
        return Err(Error::NotFound {
            what: format!("network namespace {}", namespace::path(ns_name).display()),
            hint: "create the namespace before attaching it".to_string(),
        });
    }
    let ns_path = namespace::path(ns_name);
    let ns_file = File::open(&ns_path)
        .map_err(|e| Error::io("cannot open the network namespace", &ns_path, e))?;
    let what = format!("attach namespace {ns_name} to bridge {}", bridge.name);
    exec::on_thread(&what, None, || {
        exec::block_on(&what, async {
            let host = exec::connect(&what)?;
            if link::by_name(&host, host_veth).await?.is_some() {
                return Err(Error::Exists {
                    what: format!("link {host_veth}"),
                    hint: "detach it first (a leftover of an earlier allocation with the same id prefix?)".to_string(),
                });
            }
            // One message creates the pair with the peer already in the namespace under its
            // final name, the host side already a bridge port and up: no rename, no window in
            // which a half-made pair is visible under a temporary name.
            let peer = LinkMessageBuilder::<LinkUnspec>::new()
                .name(PEER_NAME)
                .setns_by_fd(ns_file.as_raw_fd())
                .build();
            let message = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
                .name(host_veth.to_string())
                .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
                .controller(bridge.index)
                .up()
                .build();
            host.link().add(message).execute().await.map_err(|e| {
                Error::netlink(
                    format!("cannot create veth {host_veth} into bridge {}", bridge.name),
                    e,
                )
            })?;
            let result = async {
                let host_index = link::by_name(&host, host_veth)
                    .await?
                    .map(|l| l.header.index)
                    .ok_or_else(|| Error::NotFound {
                        what: format!("veth {host_veth}"),
                        hint: "it vanished right after creation".to_string(),
                    })?;
                // This thread now moves into the allocation's namespace; `host` stays bound
                // to the host namespace (a netlink socket keeps its creator's namespace).
                exec::enter(&ns_path)?;
                let inner = exec::connect(&what)?;
                configure_inside(&inner, ns_name, addr, bridge).await?;
                Ok(host_index)
            }
            .await;
            match result {
                Ok(host_index) => Ok(Attachment {
                    host_veth: host_veth.to_string(),
                    host_index,
                    ns_name: ns_name.to_string(),
                    addr,
                    prefix: bridge.subnet.prefix(),
                    gateway: bridge.gateway,
                }),
                Err(e) => {
                    // Deleting the host side deletes the peer too.
                    if let Ok(Some(l)) = link::by_name(&host, host_veth).await {
                        let _ = host.link().del(l.header.index).execute().await;
                    }
                    Err(e)
                }
            }
        })
    })
}

async fn configure_inside(
    h: &Handle,
    ns_name: &str,
    addr: Ipv4Addr,
    bridge: &Bridge,
) -> Result<()> {
    let in_ns = |what: String| format!("{what} in namespace {ns_name}");
    let eth0 = link::by_name(h, PEER_NAME)
        .await?
        .ok_or_else(|| Error::NotFound {
            what: in_ns(format!("link {PEER_NAME}")),
            hint: "the veth peer did not arrive in the namespace".to_string(),
        })?;
    let lo = link::by_name(h, "lo")
        .await?
        .ok_or_else(|| Error::NotFound {
            what: in_ns("link lo".to_string()),
            hint: "a network namespace always has lo; is this one?".to_string(),
        })?;
    let prefix = bridge.subnet.prefix();
    h.address()
        .add(eth0.header.index, IpAddr::V4(addr), prefix)
        .execute()
        .await
        .map_err(|e| {
            Error::netlink(
                in_ns(format!("cannot add address {addr}/{prefix} to {PEER_NAME}")),
                e,
            )
        })?;
    for (name, index) in [(PEER_NAME, eth0.header.index), ("lo", lo.header.index)] {
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| Error::netlink(in_ns(format!("cannot set {name} up")), e))?;
    }
    h.route()
        .add(
            RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(bridge.gateway)
                .output_interface(eth0.header.index)
                .build(),
        )
        .execute()
        .await
        .map_err(|e| {
            Error::netlink(
                in_ns(format!(
                    "cannot add the default route via {}",
                    bridge.gateway
                )),
                e,
            )
        })
}

/// Deletes the veth `host_veth` (and so its peer) from the calling thread's namespace; a
/// missing one is fine.
pub fn detach(host_veth: &str) -> Result<()> {
    link::validate_ifname("host veth name", host_veth)?;
    exec::with_netlink("detach veth", None, |h| async move {
        let Some(found) = link::by_name(&h, host_veth).await? else {
            return Ok(());
        };
        match h.link().del(found.header.index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if netlink_errno(&e) == Some(libc::ENODEV) => Ok(()),
            Err(e) => Err(Error::netlink(format!("cannot delete veth {host_veth}"), e)),
        }
    })
}

/// The links of the calling thread's namespace whose name starts with `prefix`, sorted by
/// name.
pub fn list(prefix: &str) -> Result<Vec<LinkInfo>> {
    exec::with_netlink("list links", None, |h| async move {
        let mut out: Vec<LinkInfo> = link::all(&h)
            .await?
            .iter()
            .filter_map(|l| {
                let name = link::name(l)?;
                name.starts_with(prefix).then(|| LinkInfo {
                    name: name.to_string(),
                    index: l.header.index,
                    master: link::master(l),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    })
}
