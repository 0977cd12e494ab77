//! Address management for the bridge subnet. Pure: the client keeps the leases in its state
//! (so a restart neither leaks nor double-leases) and asks for the next free address.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::cidr::Ipv4Cidr;

/// The addresses of one subnet that allocations may lease: every host address but the
/// gateway (the network and broadcast addresses are no host addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipam {
    subnet: Ipv4Cidr,
    gateway: Ipv4Addr,
}

impl Ipam {
    pub fn new(subnet: Ipv4Cidr, gateway: Ipv4Addr) -> Self {
        Ipam { subnet, gateway }
    }

    pub fn subnet(&self) -> Ipv4Cidr {
        self.subnet
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// Whether `addr` is one this IPAM could lease.
    pub fn is_leasable(&self, addr: Ipv4Addr) -> bool {
        self.subnet.contains(addr)
            && addr != self.gateway
            && (self.subnet.prefix() >= 31
                || (addr != self.subnet.network() && addr != self.subnet.broadcast()))
    }

    /// The lowest leasable address not in `leased`, or `None` when the subnet is full.
    /// Leases outside the subnet are ignored.
    pub fn lease(&self, leased: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        // Leases are sorted: walk hosts and leases together rather than probing the set per
        // address, so a full /16 costs one pass.
        let mut taken = leased
            .range(self.subnet.network()..=self.subnet.broadcast())
            .peekable();
        for addr in self.subnet.hosts() {
            if addr == self.gateway {
                continue;
            }
            while taken.peek().is_some_and(|t| **t < addr) {
                taken.next();
            }
            if taken.peek() == Some(&&addr) {
                continue;
            }
            return Some(addr);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ipam(s: &str) -> Ipam {
        let subnet: Ipv4Cidr = s.parse().unwrap();
        Ipam::new(subnet, subnet.first_host().unwrap())
    }

    #[test]
    fn leases_the_lowest_free_host_never_the_gateway() {
        let ipam = ipam("172.26.64.0/20");
        let mut leased = BTreeSet::new();
        assert_eq!(ipam.lease(&leased), Some(Ipv4Addr::new(172, 26, 64, 2)));
        leased.insert(Ipv4Addr::new(172, 26, 64, 2));
        leased.insert(Ipv4Addr::new(172, 26, 64, 4));
        assert_eq!(ipam.lease(&leased), Some(Ipv4Addr::new(172, 26, 64, 3)));
        leased.insert(Ipv4Addr::new(172, 26, 64, 3));
        assert_eq!(ipam.lease(&leased), Some(Ipv4Addr::new(172, 26, 64, 5)));
    }

    #[test]
    fn a_full_subnet_leases_nothing() {
        let ipam = ipam("10.0.0.0/29"); // hosts .1-.6, gateway .1
        let leased: BTreeSet<_> = (2..=6).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        assert_eq!(ipam.lease(&leased), None);
        assert!(!ipam.is_leasable(Ipv4Addr::new(10, 0, 0, 7)));
        assert!(!ipam.is_leasable(Ipv4Addr::new(10, 0, 0, 0)));
        assert!(!ipam.is_leasable(Ipv4Addr::new(10, 0, 0, 1)));
    }

    proptest! {
        /// Leasing one address after another never hands out one twice, never the network,
        /// broadcast or gateway address, and always one inside the subnet, until it is full.
        #[test]
        fn no_double_lease(prefix in 24u8..=30, base in any::<u32>(), pre in proptest::collection::btree_set(any::<u8>(), 0..40)) {
            let subnet = Ipv4Cidr::containing(Ipv4Addr::from(base), prefix);
            let gateway = subnet.first_host().unwrap();
            let ipam = Ipam::new(subnet, gateway);
            let mut leased: BTreeSet<Ipv4Addr> = pre
                .iter()
                .map(|o| Ipv4Addr::from(u32::from(subnet.network()) | (u32::from(*o) & !u32::from(subnet.netmask()))))
                .filter(|a| ipam.is_leasable(*a))
                .collect();
            let capacity = subnet.hosts().count() - 1;
            while let Some(addr) = ipam.lease(&leased) {
                prop_assert!(subnet.contains(addr));
                prop_assert!(addr != subnet.network() && addr != subnet.broadcast() && addr != gateway);
                prop_assert!(leased.insert(addr), "{} leased twice", addr);
            }
            prop_assert_eq!(leased.len(), capacity);
        }
    }
}
