//! IPv4 networks in CIDR notation (`172.26.64.0/20`).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: a network address (host bits zero) and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

/// Why a CIDR string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IPv4 CIDR {input:?}: {reason}")]
pub struct CidrError {
    pub input: String,
    pub reason: String,
}

impl Ipv4Cidr {
    /// A network from its address and prefix; refuses host bits and prefixes over 32.
    pub fn new(network: Ipv4Addr, prefix: u8) -> Result<Self, CidrError> {
        let input = format!("{network}/{prefix}");
        if prefix > 32 {
            return Err(CidrError {
                input,
                reason: "the prefix length must be 0 to 32".to_string(),
            });
        }
        let cidr = Ipv4Cidr { network, prefix };
        let masked = Ipv4Addr::from(u32::from(network) & cidr.mask_bits());
        if masked != network {
            return Err(CidrError {
                input,
                reason: format!("host bits are set; the network is {masked}/{prefix}"),
            });
        }
        Ok(cidr)
    }

    /// The network containing `addr` with the given prefix (host bits cleared).
    pub fn containing(addr: Ipv4Addr, prefix: u8) -> Self {
        let prefix = prefix.min(32);
        let mask = mask(prefix);
        Ipv4Cidr {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn mask_bits(&self) -> u32 {
        mask(self.prefix)
    }

    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask_bits())
    }

    /// The last address of the network (the broadcast address when prefix < 31).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !self.mask_bits())
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask_bits() == u32::from(self.network)
    }

    /// Whether the two networks share an address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        let shorter = self.prefix.min(other.prefix);
        let m = mask(shorter);
        u32::from(self.network) & m == u32::from(other.network) & m
    }

    /// The usable host addresses: all but the network and broadcast addresses (for /31 and
    /// /32, every address, as RFC 3021 has it).
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.network);
        let last = u32::from(self.broadcast());
        let (lo, hi) = if self.prefix >= 31 {
            (first, last)
        } else {
            (first + 1, last - 1)
        };
        (lo..=hi).map(Ipv4Addr::from)
    }

    /// The first host address (the gateway noded sets on its bridge).
    pub fn first_host(&self) -> Option<Ipv4Addr> {
        self.hosts().next()
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let err = |reason: String| CidrError {
            input: s.to_string(),
            reason,
        };
        let (addr, prefix) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| err("expected ADDRESS/PREFIX, e.g. 172.26.64.0/20".to_string()))?;
        let network: Ipv4Addr = addr
            .parse()
            .map_err(|_| err(format!("{addr:?} is not an IPv4 address")))?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(|| {
            err(format!(
                "prefix length {prefix:?} is not a number from 0 to 32"
            ))
        })?;
        Ipv4Cidr::new(network, prefix).map_err(|e| err(e.reason))
    }
}

impl serde::Serialize for Ipv4Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints() {
        let n = c("172.26.64.0/20");
        assert_eq!(n.network(), Ipv4Addr::new(172, 26, 64, 0));
        assert_eq!(n.prefix(), 20);
        assert_eq!(n.broadcast(), Ipv4Addr::new(172, 26, 79, 255));
        assert_eq!(n.netmask(), Ipv4Addr::new(255, 255, 240, 0));
        assert_eq!(n.first_host(), Some(Ipv4Addr::new(172, 26, 64, 1)));
        assert_eq!(n.to_string(), "172.26.64.0/20");
        assert_eq!(c("0.0.0.0/0").broadcast(), Ipv4Addr::BROADCAST);
    }

    #[test]
    fn refuses_bad_input_with_the_reason() {
        let e = "172.26.64.1/20".parse::<Ipv4Cidr>().unwrap_err();
        assert!(
            e.to_string()
                .contains("host bits are set; the network is 172.26.64.0/20"),
            "{e}"
        );
        let e = "172.26.64.0".parse::<Ipv4Cidr>().unwrap_err();
        assert!(e.to_string().contains("expected ADDRESS/PREFIX"), "{e}");
        let e = "172.26.64.0/33".parse::<Ipv4Cidr>().unwrap_err();
        assert!(e.to_string().contains("0 to 32"), "{e}");
        let e = "172.26.640.0/20".parse::<Ipv4Cidr>().unwrap_err();
        assert!(e.to_string().contains("not an IPv4 address"), "{e}");
    }

    #[test]
    fn contains_and_overlaps() {
        let n = c("10.0.0.0/8");
        assert!(n.contains(Ipv4Addr::new(10, 255, 0, 1)));
        assert!(!n.contains(Ipv4Addr::new(11, 0, 0, 0)));
        assert!(n.overlaps(&c("10.1.0.0/16")));
        assert!(c("10.1.0.0/16").overlaps(&n));
        assert!(!c("10.1.0.0/16").overlaps(&c("10.2.0.0/16")));
        assert!(c("0.0.0.0/0").overlaps(&c("192.168.1.0/24")));
    }

    #[test]
    fn hosts_skip_network_and_broadcast() {
        let hosts: Vec<_> = c("192.168.1.0/30").hosts().collect();
        assert_eq!(
            hosts,
            vec![Ipv4Addr::new(192, 168, 1, 1), Ipv4Addr::new(192, 168, 1, 2)]
        );
        assert_eq!(c("192.168.1.0/31").hosts().count(), 2);
        assert_eq!(c("192.168.1.7/32").hosts().count(), 1);
        assert_eq!(c("172.26.64.0/20").hosts().count(), 4094);
    }

    #[test]
    fn serde_round_trip() {
        let n = c("172.26.64.0/20");
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(json, "\"172.26.64.0/20\"");
        assert_eq!(serde_json::from_str::<Ipv4Cidr>(&json).unwrap(), n);
        assert!(serde_json::from_str::<Ipv4Cidr>("\"1.2.3.4/20\"").is_err());
    }
}
