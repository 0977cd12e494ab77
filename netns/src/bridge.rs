//! The bridge noded owns: allocations' host-side veths are its ports, its address is their
//! default gateway. A bridge is noded's when its alias (`IFLA_IFALIAS`) is `noded`; any
//! other link of the configured name is left alone and refused.

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_route::link::InfoKind;
use rtnetlink::{LinkBridge, LinkUnspec};

pub use crate::cidr::{CidrError, Ipv4Cidr};
use crate::error::{Error, Result};
use crate::{exec, link, sysctl};

/// The alias that marks a link as noded's.
pub const NODED_ALIAS: &str = "noded";
/// Nomad's and noded's default bridge name (`bridge_network_name`).
pub const DEFAULT_NAME: &str = "noded0";
/// noded's default bridge subnet (`bridge_network_subnet`).
pub const DEFAULT_SUBNET: &str = "172.26.64.0/20";

/// What the client's configuration says about the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// `bridge_network_name`.
    pub name: String,
    /// `bridge_network_subnet`.
    pub subnet: Ipv4Cidr,
}

/// A bridge that exists, as [`ensure`] left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    pub name: String,
    pub index: u32,
    pub subnet: Ipv4Cidr,
    /// The bridge's own address: the subnet's first host, the allocations' default route.
    pub gateway: Ipv4Addr,
}

fn config_gateway(config: &BridgeConfig) -> Result<Ipv4Addr> {
    link::validate_ifname("bridge_network_name", &config.name).map_err(|e| Error::Config {
        setting: "bridge_network_name",
        reason: e.to_string(),
    })?;
    if config.subnet.prefix() > 30 {
        return Err(Error::Config {
            setting: "bridge_network_subnet",
            reason: format!(
                "{} leaves no address for allocations besides the gateway; use a prefix of 30 or shorter (default {DEFAULT_SUBNET})",
                config.subnet
            ),
        });
    }
    config.subnet.first_host().ok_or_else(|| Error::Config {
        setting: "bridge_network_subnet",
        reason: format!("{} has no host address", config.subnet),
    })
}

/// Makes the bridge exist as configured, in the calling thread's network namespace: created
/// with alias `noded` if missing, address `gateway/prefix` (other IPv4 addresses on it
/// removed), up; and `net.ipv4.ip_forward=1` in that namespace. Idempotent.
///
/// Refused, with nothing created: a link of that name that is not noded's
/// (`bridge_network_name`), a subnet that overlaps an address of another interface
/// (`bridge_network_subnet`).
pub fn ensure(config: &BridgeConfig) -> Result<Bridge> {
    let gateway = config_gateway(config)?;
    let name = config.name.as_str();
    let subnet = config.subnet;
    exec::with_netlink("ensure the bridge", None, |h| async move {
        let own_index = refuse_conflicts(&h, name, subnet).await?;

        let index = match own_index {
            Some(index) => index,
            None => create(&h, name).await?,
        };
        // Runs again on an existing bridge too: it converges a bridge left half-configured,
        // or configured for another subnet, to this configuration.
        if let Err(e) = configure(&h, name, index, subnet, gateway).await {
            if own_index.is_none() {
                let _ = h.link().del(index).execute().await;
            }
            return Err(e);
        }
        // This thread is in the namespace of the caller: /proc/sys/net is that namespace's.
        sysctl::write("net.ipv4.ip_forward", "1")?;
        Ok(Bridge {
            name: name.to_string(),
            index,
            subnet,
            gateway,
        })
    })
}

/// Whether `config` could be made here, changing nothing: refused like [`ensure`] refuses
/// (a foreign link of that name, a subnet another interface uses). The client checks it at
/// start, so that a node whose settings cannot work does not offer bridge networking.
pub fn check(config: &BridgeConfig) -> Result<()> {
    config_gateway(config)?;
    let name = config.name.as_str();
    let subnet = config.subnet;
    exec::with_netlink("check the bridge settings", None, |h| async move {
        refuse_conflicts(&h, name, subnet).await.map(|_| ())
    })
}

/// Refuses a link named `name` that is not noded's bridge and a `subnet` that overlaps
/// another interface's address; returns the index of noded's bridge when it exists.
async fn refuse_conflicts(
    h: &rtnetlink::Handle,
    name: &str,
    subnet: Ipv4Cidr,
) -> Result<Option<u32>> {
    let existing = link::by_name(h, name).await?;
    if let Some(found) = &existing {
        if link::alias(found) != Some(NODED_ALIAS) || link::kind(found) != Some(&InfoKind::Bridge) {
            return Err(Error::Config {
                setting: "bridge_network_name",
                reason: format!(
                    "a link named {name:?} exists and is not noded's bridge (no alias {NODED_ALIAS:?}); choose another bridge_network_name, or remove that link if nothing uses it"
                ),
            });
        }
    }
    let own_index = existing.as_ref().map(|l| l.header.index);
    refuse_overlap(h, name, subnet, own_index).await?;
    Ok(own_index)
}

async fn refuse_overlap(
    h: &rtnetlink::Handle,
    name: &str,
    subnet: Ipv4Cidr,
    own: Option<u32>,
) -> Result<()> {
    let addresses = link::ipv4_addresses(h, None).await?;
    let clash = addresses
        .iter()
        .filter(|a| Some(a.index) != own)
        .find(|a| Ipv4Cidr::containing(a.addr, a.prefix).overlaps(&subnet));
    let Some(clash) = clash else { return Ok(()) };
    let links = link::all(h).await?;
    let iface = links
        .iter()
        .find(|l| l.header.index == clash.index)
        .and_then(link::name)
        .map_or_else(|| format!("index {}", clash.index), str::to_string);
    Err(Error::Config {
        setting: "bridge_network_subnet",
        reason: format!(
            "{subnet} for bridge {name} overlaps address {}/{} of interface {iface}; choose a subnet no interface of this host uses",
            clash.addr, clash.prefix
        ),
    })
}

async fn create(h: &rtnetlink::Handle, name: &str) -> Result<u32> {
    h.link()
        .add(LinkBridge::new(name).build())
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("cannot create bridge {name}"), e))?;
    let created = link::by_name(h, name)
        .await?
        .ok_or_else(|| Error::NotFound {
            what: format!("bridge {name}"),
            hint: "it vanished right after creation; is another agent managing it?".to_string(),
        })?;
    let index = created.header.index;
    // The alias is set by RTM_SETLINK: the kernel applies IFLA_IFALIAS on change, not on
    // creation.
    if let Err(e) = h
        .link()
        .set(LinkUnspec::new_with_index(index).alias(NODED_ALIAS).build())
        .execute()
        .await
    {
        let _ = h.link().del(index).execute().await;
        return Err(Error::netlink(
            format!("cannot set the alias of bridge {name}"),
            e,
        ));
    }
    Ok(index)
}

async fn configure(
    h: &rtnetlink::Handle,
    name: &str,
    index: u32,
    subnet: Ipv4Cidr,
    gateway: Ipv4Addr,
) -> Result<()> {
    let mut has_gateway = false;
    for a in link::ipv4_addresses(h, Some(index)).await? {
        if a.addr == gateway && a.prefix == subnet.prefix() {
            has_gateway = true;
        } else {
            h.address().del(a.message).execute().await.map_err(|e| {
                Error::netlink(
                    format!(
                        "cannot remove stale address {}/{} from bridge {name}",
                        a.addr, a.prefix
                    ),
                    e,
                )
            })?;
        }
    }
    if !has_gateway {
        h.address()
            .add(index, IpAddr::V4(gateway), subnet.prefix())
            .execute()
            .await
            .map_err(|e| {
                Error::netlink(
                    format!(
                        "cannot add address {gateway}/{} to bridge {name}",
                        subnet.prefix()
                    ),
                    e,
                )
            })?;
    }
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("cannot set bridge {name} up"), e))
}

/// The bridge `name` if it exists and is noded's (for a restarted agent).
pub fn get(name: &str) -> Result<Option<Bridge>> {
    exec::with_netlink("look up the bridge", None, |h| async move {
        let Some(found) = link::by_name(&h, name).await? else {
            return Ok(None);
        };
        if link::alias(&found) != Some(NODED_ALIAS) {
            return Ok(None);
        }
        let index = found.header.index;
        let addr = link::ipv4_addresses(&h, Some(index))
            .await?
            .into_iter()
            .next();
        Ok(addr.map(|a| Bridge {
            name: name.to_string(),
            index,
            subnet: Ipv4Cidr::containing(a.addr, a.prefix),
            gateway: a.addr,
        }))
    })
}

/// Deletes the bridge `name` if it is noded's; a missing one is fine; one that is not
/// noded's is refused.
pub fn remove(name: &str) -> Result<()> {
    exec::with_netlink("remove the bridge", None, |h| async move {
        let Some(found) = link::by_name(&h, name).await? else {
            return Ok(());
        };
        if link::alias(&found) != Some(NODED_ALIAS) {
            return Err(Error::Config {
                setting: "bridge_network_name",
                reason: format!("link {name:?} is not noded's bridge (no alias {NODED_ALIAS:?}); not removing it"),
            });
        }
        match h.link().del(found.header.index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if crate::error::netlink_errno(&e) == Some(libc::ENODEV) => Ok(()),
            Err(e) => Err(Error::netlink(format!("cannot delete bridge {name}"), e)),
        }
    })
}
