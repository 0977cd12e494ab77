//! Netlink queries shared by the bridge and veth modules.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::AddressFamily;
use rtnetlink::Handle;

use crate::error::{netlink_errno, Error, Result};

/// `IFNAMSIZ - 1`: the longest interface name the kernel accepts.
pub const MAX_IFNAME_LEN: usize = 15;

/// Refuses an interface name the kernel would refuse, naming `setting`.
pub(crate) fn validate_ifname(what: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() || name.len() > MAX_IFNAME_LEN {
        Some(format!("an interface name is 1 to {MAX_IFNAME_LEN} bytes"))
    } else if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        Some("an interface name has no '/', ':' or blanks and is not '.' or '..'".to_string())
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::Invalid {
            what,
            value: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The link named `name`, or `None` when there is none.
pub(crate) async fn by_name(h: &Handle, name: &str) -> Result<Option<LinkMessage>> {
    match h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(link) => Ok(link),
        Err(e) if netlink_errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(Error::netlink(format!("cannot look up link {name}"), e)),
    }
}

/// Every link of the namespace.
pub(crate) async fn all(h: &Handle) -> Result<Vec<LinkMessage>> {
    h.link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| Error::netlink("cannot list links", e))
}

pub(crate) fn name(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

pub(crate) fn alias(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfAlias(n) => Some(n.as_str()),
        _ => None,
    })
}

pub(crate) fn master(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(i) => Some(*i),
        _ => None,
    })
}

pub(crate) fn kind(link: &LinkMessage) -> Option<&InfoKind> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k),
            _ => None,
        }),
        _ => None,
    })
}

/// One IPv4 address of an interface.
#[derive(Debug, Clone)]
pub(crate) struct Addr4 {
    pub index: u32,
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub message: AddressMessage,
}

/// The IPv4 addresses of the namespace, of one link when `index` is given.
pub(crate) async fn ipv4_addresses(h: &Handle, index: Option<u32>) -> Result<Vec<Addr4>> {
    let mut req = h.address().get();
    if let Some(index) = index {
        req = req.set_link_index_filter(index);
    }
    let messages: Vec<AddressMessage> = req
        .execute()
        .try_collect()
        .await
        .map_err(|e| Error::netlink("cannot list addresses", e))?;
    let mut out = Vec::new();
    for m in messages {
        if m.header.family != AddressFamily::Inet || index.is_some_and(|i| i != m.header.index) {
            continue;
        }
        // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer on a
        // point-to-point link); they are equal elsewhere.
        let local = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(a)) => Some(*a),
            _ => None,
        });
        let address = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(IpAddr::V4(a)) => Some(*a),
            _ => None,
        });
        if let Some(addr) = local.or(address) {
            out.push(Addr4 {
                index: m.header.index,
                addr,
                prefix: m.header.prefix_len,
                message: m,
            });
        }
    }
    Ok(out)
}
