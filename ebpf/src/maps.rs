//! The Rust mirror of the BPF maps' keys and values (`src/bpf/portmap.bpf.c`), their byte
//! encoding, and the one implementation of how a mapping is added and removed — run against
//! the kernel's maps by [`crate::PortMapper`] and against a userspace model in the unit tests.
//!
//! Byte order: addresses and ports are stored in **network byte order** in the maps (as they
//! sit in packets and in `struct bpf_sock_addr`); the structs here hold them in host order
//! and [`encode`](PmKey::encode) / `decode` convert. `proto` is the IP protocol number.
//! Padding bytes are always zero so that userspace and the programs hash the same key.
//! The layouts are `#[repr(C)]` with the C structs' sizes (checked below); nothing is
//! transmuted: the byte arrays are built field by field.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use netns::portmap::{Mapping, Proto};

/// `max_entries` of `portmap` and `portmap_rev` (`PORTMAP_MAX_ENTRIES` in the C).
pub const PORTMAP_MAX_ENTRIES: usize = 65536;

/// Key of `portmap`: `struct pm_key { u8 proto; u8 pad; __be16 host_port; }`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PmKey {
    pub proto: u8,
    pub host_port: u16,
}

/// Value of `portmap`: `struct pm_val { __be32 host_ip; __be32 alloc_ip; __be16 alloc_port; u16 pad; }`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmVal {
    pub host_ip: Ipv4Addr,
    pub alloc_ip: Ipv4Addr,
    pub alloc_port: u16,
    pad: [u8; 2],
}

/// Key of `portmap_rev`: `struct rev_key { __be32 alloc_ip; __be16 alloc_port; u8 proto; u8 pad; }`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RevKey {
    pub alloc_ip: Ipv4Addr,
    pub alloc_port: u16,
    pub proto: u8,
}

/// Value of `portmap_rev`: `struct rev_val { __be32 host_ip; __be16 host_port; u16 pad; }`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevVal {
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pad: [u8; 2],
}

// The C structs' sizes, which the `#[repr(C)]` mirrors have too.
pub const PM_KEY_SIZE: usize = 4;
pub const PM_VAL_SIZE: usize = 12;
pub const REV_KEY_SIZE: usize = 8;
pub const REV_VAL_SIZE: usize = 8;
const _: () = assert!(std::mem::size_of::<PmKey>() == PM_KEY_SIZE);
const _: () = assert!(std::mem::size_of::<PmVal>() == PM_VAL_SIZE);
const _: () = assert!(std::mem::size_of::<RevKey>() == REV_KEY_SIZE);
const _: () = assert!(std::mem::size_of::<RevVal>() == REV_VAL_SIZE);

impl PmKey {
    pub fn of(m: &Mapping) -> Self {
        PmKey {
            proto: m.proto.ip_proto(),
            host_port: m.host_port,
        }
    }

    pub fn encode(&self) -> [u8; PM_KEY_SIZE] {
        let p = self.host_port.to_be_bytes();
        [self.proto, 0, p[0], p[1]]
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let b: &[u8; PM_KEY_SIZE] = b.try_into().ok()?;
        Some(PmKey {
            proto: b[0],
            host_port: u16::from_be_bytes([b[2], b[3]]),
        })
    }
}

impl PmVal {
    pub fn of(m: &Mapping) -> Self {
        PmVal {
            host_ip: m.host_ip,
            alloc_ip: m.alloc_ip,
            alloc_port: m.alloc_port,
            pad: [0; 2],
        }
    }

    pub fn encode(&self) -> [u8; PM_VAL_SIZE] {
        let mut b = [0u8; PM_VAL_SIZE];
        b[0..4].copy_from_slice(&self.host_ip.octets());
        b[4..8].copy_from_slice(&self.alloc_ip.octets());
        b[8..10].copy_from_slice(&self.alloc_port.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let b: &[u8; PM_VAL_SIZE] = b.try_into().ok()?;
        Some(PmVal {
            host_ip: Ipv4Addr::new(b[0], b[1], b[2], b[3]),
            alloc_ip: Ipv4Addr::new(b[4], b[5], b[6], b[7]),
            alloc_port: u16::from_be_bytes([b[8], b[9]]),
            pad: [0; 2],
        })
    }
}

impl RevKey {
    pub fn of(m: &Mapping) -> Self {
        RevKey {
            alloc_ip: m.alloc_ip,
            alloc_port: m.alloc_port,
            proto: m.proto.ip_proto(),
        }
    }

    pub fn encode(&self) -> [u8; REV_KEY_SIZE] {
        let mut b = [0u8; REV_KEY_SIZE];
        b[0..4].copy_from_slice(&self.alloc_ip.octets());
        b[4..6].copy_from_slice(&self.alloc_port.to_be_bytes());
        b[6] = self.proto;
        b
    }
}

impl RevVal {
    pub fn of(m: &Mapping) -> Self {
        RevVal {
            host_ip: m.host_ip,
            host_port: m.host_port,
            pad: [0; 2],
        }
    }

    pub fn encode(&self) -> [u8; REV_VAL_SIZE] {
        let mut b = [0u8; REV_VAL_SIZE];
        b[0..4].copy_from_slice(&self.host_ip.octets());
        b[4..6].copy_from_slice(&self.host_port.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let b: &[u8; REV_VAL_SIZE] = b.try_into().ok()?;
        Some(RevVal {
            host_ip: Ipv4Addr::new(b[0], b[1], b[2], b[3]),
            host_port: u16::from_be_bytes([b[4], b[5]]),
            pad: [0; 2],
        })
    }
}

/// The protocol of an IP protocol number found in a map, if it is one noded writes.
pub fn proto_of(ip_proto: u8) -> Option<Proto> {
    match ip_proto {
        6 => Some(Proto::Tcp),
        17 => Some(Proto::Udp),
        _ => None,
    }
}

/// The mapping a `portmap` entry describes.
pub fn mapping_of(k: &PmKey, v: &PmVal) -> Option<Mapping> {
    Some(Mapping {
        proto: proto_of(k.proto)?,
        host_ip: v.host_ip,
        host_port: k.host_port,
        alloc_ip: v.alloc_ip,
        alloc_port: v.alloc_port,
    })
}

/// The two maps as operations: the kernel's (`PortMapper`) and the model's ([`Model`]).
pub trait Maps {
    type Error;
    fn fwd_get(&self, k: &PmKey) -> Result<Option<PmVal>, Self::Error>;
    fn fwd_put(&mut self, k: &PmKey, v: &PmVal) -> Result<(), Self::Error>;
    fn fwd_del(&mut self, k: &PmKey) -> Result<(), Self::Error>;
    fn rev_get(&self, k: &RevKey) -> Result<Option<RevVal>, Self::Error>;
    fn rev_put(&mut self, k: &RevKey, v: &RevVal) -> Result<(), Self::Error>;
    fn rev_del(&mut self, k: &RevKey) -> Result<(), Self::Error>;
}

/// Adds `m` to both maps. Idempotent. A host port already mapped elsewhere is taken over
/// (the scheduler hands each host port to one allocation; a stale entry from a dead one must
/// not block the new one), and the old target's reverse entry goes with it when it pointed
/// back at this host port. The reverse entry is written last: `tc egress` must never rewrite
/// replies of a flow `tc ingress` does not yet translate.
pub fn insert<M: Maps>(maps: &mut M, m: &Mapping) -> Result<(), M::Error> {
    let key = PmKey::of(m);
    let val = PmVal::of(m);
    if let Some(old) = maps.fwd_get(&key)? {
        if old != val {
            let old_m = Mapping {
                host_ip: old.host_ip,
                alloc_ip: old.alloc_ip,
                alloc_port: old.alloc_port,
                ..*m
            };
            remove_rev_if_points_at(maps, &old_m)?;
        }
    }
    maps.fwd_put(&key, &val)?;
    maps.rev_put(&RevKey::of(m), &RevVal::of(m))?;
    debug_assert!(maps.fwd_get(&key).ok().flatten().is_some());
    Ok(())
}

/// Removes `m` from both maps. Idempotent. An entry for the same host port that maps
/// elsewhere (another allocation took the port over) is left alone, and so is a reverse
/// entry that points at another host port.
pub fn remove<M: Maps>(maps: &mut M, m: &Mapping) -> Result<(), M::Error> {
    let key = PmKey::of(m);
    // Reverse first: the mirror image of insert's order.
    remove_rev_if_points_at(maps, m)?;
    if maps.fwd_get(&key)? == Some(PmVal::of(m)) {
        maps.fwd_del(&key)?;
    }
    Ok(())
}

fn remove_rev_if_points_at<M: Maps>(maps: &mut M, m: &Mapping) -> Result<(), M::Error> {
    let rkey = RevKey::of(m);
    if maps.rev_get(&rkey)? == Some(RevVal::of(m)) {
        maps.rev_del(&rkey)?;
    }
    Ok(())
}

/// A userspace model of the two maps, with the kernel maps' capacity. Used to check the
/// insert/remove rules without root, and as the expected state in the privileged tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Model {
    pub fwd: BTreeMap<PmKey, PmVal>,
    pub rev: BTreeMap<RevKey, RevVal>,
}

/// The model refuses what the kernel refuses: a new key in a full map (`E2BIG`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFull;

impl Maps for Model {
    type Error = ModelFull;
    fn fwd_get(&self, k: &PmKey) -> Result<Option<PmVal>, ModelFull> {
        Ok(self.fwd.get(k).copied())
    }
    fn fwd_put(&mut self, k: &PmKey, v: &PmVal) -> Result<(), ModelFull> {
        if !self.fwd.contains_key(k) && self.fwd.len() >= PORTMAP_MAX_ENTRIES {
            return Err(ModelFull);
        }
        self.fwd.insert(*k, *v);
        Ok(())
    }
    fn fwd_del(&mut self, k: &PmKey) -> Result<(), ModelFull> {
        self.fwd.remove(k);
        Ok(())
    }
    fn rev_get(&self, k: &RevKey) -> Result<Option<RevVal>, ModelFull> {
        Ok(self.rev.get(k).copied())
    }
    fn rev_put(&mut self, k: &RevKey, v: &RevVal) -> Result<(), ModelFull> {
        if !self.rev.contains_key(k) && self.rev.len() >= PORTMAP_MAX_ENTRIES {
            return Err(ModelFull);
        }
        self.rev.insert(*k, *v);
        Ok(())
    }
    fn rev_del(&mut self, k: &RevKey) -> Result<(), ModelFull> {
        self.rev.remove(k);
        Ok(())
    }
}

impl Model {
    /// The mappings the model holds, as `list` reports them from the kernel.
    pub fn mappings(&self) -> Vec<Mapping> {
        self.fwd
            .iter()
            .filter_map(|(k, v)| mapping_of(k, v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(proto: Proto, host_port: u16, alloc_last: u8, alloc_port: u16) -> Mapping {
        Mapping {
            proto,
            host_ip: Ipv4Addr::new(10, 0, 0, 1),
            host_port,
            alloc_ip: Ipv4Addr::new(172, 26, 64, alloc_last),
            alloc_port,
        }
    }

    #[test]
    fn encoding_is_network_byte_order_with_zero_padding() {
        let x = m(Proto::Udp, 0x1234, 2, 0xabcd);
        assert_eq!(PmKey::of(&x).encode(), [17, 0, 0x12, 0x34]);
        assert_eq!(
            PmVal::of(&x).encode(),
            [10, 0, 0, 1, 172, 26, 64, 2, 0xab, 0xcd, 0, 0]
        );
        assert_eq!(RevKey::of(&x).encode(), [172, 26, 64, 2, 0xab, 0xcd, 17, 0]);
        assert_eq!(RevVal::of(&x).encode(), [10, 0, 0, 1, 0x12, 0x34, 0, 0]);
        assert_eq!(PmKey::decode(&PmKey::of(&x).encode()), Some(PmKey::of(&x)));
        assert_eq!(PmVal::decode(&PmVal::of(&x).encode()), Some(PmVal::of(&x)));
        assert_eq!(
            RevVal::decode(&RevVal::of(&x).encode()),
            Some(RevVal::of(&x))
        );
        assert_eq!(PmKey::decode(&[1, 2, 3]), None);
    }

    #[test]
    fn insert_and_remove_are_idempotent_and_keep_both_maps_in_step() {
        let mut model = Model::default();
        let a = m(Proto::Tcp, 20000, 2, 8080);
        insert(&mut model, &a).unwrap();
        insert(&mut model, &a).unwrap();
        assert_eq!(model.mappings(), vec![a]);
        assert_eq!(model.rev.len(), 1);
        remove(&mut model, &a).unwrap();
        remove(&mut model, &a).unwrap();
        assert_eq!(model, Model::default());
    }

    #[test]
    fn tcp_and_udp_on_one_port_are_two_mappings() {
        let mut model = Model::default();
        let t = m(Proto::Tcp, 20000, 2, 53);
        let u = m(Proto::Udp, 20000, 2, 53);
        insert(&mut model, &t).unwrap();
        insert(&mut model, &u).unwrap();
        assert_eq!(model.mappings().len(), 2);
        remove(&mut model, &t).unwrap();
        assert_eq!(model.mappings(), vec![u]);
        assert_eq!(model.rev.len(), 1);
    }

    #[test]
    fn a_taken_over_host_port_drops_the_old_reverse_entry_and_survives_the_old_remove() {
        let mut model = Model::default();
        let old = m(Proto::Tcp, 20000, 2, 8080);
        let new = m(Proto::Tcp, 20000, 3, 9090);
        insert(&mut model, &old).unwrap();
        insert(&mut model, &new).unwrap();
        assert_eq!(model.mappings(), vec![new]);
        assert_eq!(
            model.rev.keys().copied().collect::<Vec<_>>(),
            vec![RevKey::of(&new)]
        );
        // The dead allocation's cleanup must not remove the new owner's mapping.
        remove(&mut model, &old).unwrap();
        assert_eq!(model.mappings(), vec![new]);
        assert_eq!(model.rev.len(), 1);
    }

    #[test]
    fn a_full_map_refuses_new_keys_but_accepts_updates() {
        let mut model = Model::default();
        for port in 0..PORTMAP_MAX_ENTRIES {
            let p = u16::try_from(port).unwrap();
            model.fwd.insert(
                PmKey {
                    proto: 6,
                    host_port: p,
                },
                PmVal::of(&m(Proto::Tcp, p, 2, 1)),
            );
        }
        assert_eq!(insert(&mut model, &m(Proto::Udp, 1, 2, 1)), Err(ModelFull));
        insert(&mut model, &m(Proto::Tcp, 1, 9, 1)).unwrap();
    }
}
