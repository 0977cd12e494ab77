//! The addresses an agent binds and advertises. `bind_addr` is a literal IP (Nomad also takes
//! go-sockaddr templates; noded does not). An advertised address is what other agents dial,
//! so it is never `0.0.0.0`: unless written, it is the bind address, or — when that is every
//! interface — this host's first private IPv4 (Nomad's `GetPrivateIP`), else its first
//! non-loopback IPv4.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Reads `bind_addr`.
pub fn parse_bind(text: &str) -> Result<IpAddr, String> {
    text.parse::<IpAddr>().map_err(|_| {
        format!("bind_addr = {text:?}: give an IP address (\"0.0.0.0\" for every interface); go-sockaddr templates and host names are not supported")
    })
}

/// Reads a written advertise address: "ip", "ip:port", "[v6]:port"; the port defaults to
/// `port`.
pub fn parse_advertise(key: &str, text: &str, port: u16) -> Result<SocketAddr, String> {
    let addr = match text.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            let bare = text.trim_start_matches('[').trim_end_matches(']');
            let ip = bare.parse::<IpAddr>().map_err(|_| {
                format!("{key} = {text:?}: give an IP address, optionally with a port (\"10.0.0.5\" or \"10.0.0.5:{port}\"); host names and go-sockaddr templates are not supported")
            })?;
            SocketAddr::new(ip, port)
        }
    };
    if addr.ip().is_unspecified() {
        return Err(format!(
            "{key} = {text:?}: other agents cannot dial {}; advertise an address of this host they can reach",
            addr.ip()
        ));
    }
    Ok(addr)
}

/// The address advertised for one protocol (`key` names it in errors: `advertise.rpc`).
pub fn resolve(
    key: &str,
    written: Option<&str>,
    bind: IpAddr,
    port: u16,
    dev: bool,
    host_ipv4s: &mut dyn FnMut() -> Result<Vec<Ipv4Addr>, String>,
) -> Result<SocketAddr, String> {
    if let Some(text) = written {
        return parse_advertise(key, text, port);
    }
    if bind.is_loopback() && !dev {
        return Err(format!(
            "{key} is not set and bind_addr is the loopback address {bind}, which other agents cannot reach; set advertise {{ {} = \"<an IP of this host>\" }}",
            key.trim_start_matches("advertise.")
        ));
    }
    if !bind.is_unspecified() {
        return Ok(SocketAddr::new(bind, port));
    }
    let ips = host_ipv4s()?;
    match pick_host_ipv4(&ips) {
        Some(ip) => Ok(SocketAddr::new(IpAddr::V4(ip), port)),
        // A dev agent talks to itself; a host without a network (a bare namespace) is fine.
        None if dev => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
        None => Err(format!(
            "{key} is not set, bind_addr is {bind} and this host has no non-loopback IPv4 address to advertise instead; set advertise {{ {} = \"<an IP of this host>\" }}",
            key.trim_start_matches("advertise.")
        )),
    }
}

/// A private address first (as Nomad's `GetPrivateIP`), then any other usable one.
pub fn pick_host_ipv4(ips: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    let usable = |ip: &&Ipv4Addr| !ip.is_loopback() && !ip.is_unspecified() && !ip.is_link_local();
    ips.iter()
        .filter(usable)
        .find(|ip| ip.is_private())
        .or_else(|| ips.iter().find(usable))
        .copied()
}

/// The IPv4 addresses of this host's interfaces that are up, in the kernel's order.
pub fn host_ipv4s() -> Result<Vec<Ipv4Addr>, String> {
    use nix::net::if_::InterfaceFlags;
    let addrs = nix::ifaddrs::getifaddrs()
        .map_err(|e| format!("listing this host's network interfaces: {e}"))?;
    Ok(addrs
        .filter(|a| a.flags.contains(InterfaceFlags::IFF_UP))
        .filter_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Result<Vec<Ipv4Addr>, String> {
        Ok(vec![])
    }

    #[test]
    fn a_written_address_takes_the_default_port_when_it_has_none() {
        let bind: IpAddr = "0.0.0.0".parse().unwrap();
        let r = |w| resolve("advertise.rpc", Some(w), bind, 4647, false, &mut none);
        assert_eq!(r("10.0.0.5").unwrap(), "10.0.0.5:4647".parse().unwrap());
        assert_eq!(
            r("10.0.0.5:9000").unwrap(),
            "10.0.0.5:9000".parse().unwrap()
        );
        assert_eq!(r("::1").unwrap(), "[::1]:4647".parse().unwrap());
        assert_eq!(r("[fd00::1]").unwrap(), "[fd00::1]:4647".parse().unwrap());
        assert!(r("0.0.0.0").unwrap_err().contains("cannot dial 0.0.0.0"));
        assert!(r("{{ GetPrivateIP }}").unwrap_err().contains("templates"));
    }

    #[test]
    fn an_unset_address_comes_from_bind_or_the_host() {
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        let mut host = || {
            Ok(vec![
                Ipv4Addr::LOCALHOST,
                "8.8.4.4".parse().unwrap(),
                "192.168.1.9".parse().unwrap(),
            ])
        };
        assert_eq!(
            resolve("advertise.rpc", None, any, 4647, false, &mut host).unwrap(),
            "192.168.1.9:4647".parse().unwrap()
        );
        let ten: IpAddr = "10.1.1.1".parse().unwrap();
        assert_eq!(
            resolve("advertise.http", None, ten, 4646, false, &mut none).unwrap(),
            "10.1.1.1:4646".parse().unwrap()
        );
        let e = resolve("advertise.rpc", None, any, 4647, false, &mut none).unwrap_err();
        assert!(
            e.contains("no non-loopback IPv4") && e.contains("advertise { rpc"),
            "{e}"
        );
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            resolve("advertise.rpc", None, lo, 4647, true, &mut none).unwrap(),
            "127.0.0.1:4647".parse().unwrap()
        );
        let e = resolve("advertise.rpc", None, lo, 4647, false, &mut none).unwrap_err();
        assert!(e.contains("loopback"), "{e}");
    }

    #[test]
    fn a_public_address_is_used_when_there_is_no_private_one() {
        let ips = ["127.0.0.1", "169.254.1.1", "8.8.4.4"].map(|s| s.parse().unwrap());
        assert_eq!(pick_host_ipv4(&ips), Some("8.8.4.4".parse().unwrap()));
        assert_eq!(pick_host_ipv4(&ips[..2]), None);
    }
}
