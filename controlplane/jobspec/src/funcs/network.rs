//! IP network functions: `cidrhost`, `cidrnetmask`, `cidrsubnet`, `cidrsubnets`, with
//! Terraform's semantics (which Nomad's HCL2 shares), for IPv4 and IPv6 alike.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Args, R};
use crate::value::Value;

pub(super) fn cidrhost(a: Args<'_>) -> R {
    host(&a.str(0)?, a.int(1)?)
}

pub(super) fn cidrnetmask(a: Args<'_>) -> R {
    netmask(&a.str(0)?)
}

pub(super) fn cidrsubnet(a: Args<'_>) -> R {
    subnet(&a.str(0)?, a.int(1)?, a.int(2)?)
}

pub(super) fn cidrsubnets(a: Args<'_>) -> R {
    let bits = (1..a.len())
        .map(|i| a.int(i))
        .collect::<Result<Vec<_>, _>>()?;
    subnets(&a.str(0)?, &bits)
}

/// A parsed `address/prefix`.
#[derive(Debug, Clone, Copy)]
struct Cidr {
    addr: u128,
    bits: u32,
    prefix: u32,
    v4: bool,
}

fn parse_cidr(text: &str) -> Result<Cidr, String> {
    let (ip, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not a CIDR prefix like \"10.0.0.0/16\""))?;
    let ip: IpAddr = ip
        .trim()
        .parse()
        .map_err(|_| format!("{ip:?} is not an IP address"))?;
    let prefix: u32 = prefix
        .trim()
        .parse()
        .map_err(|_| format!("{prefix:?} is not a prefix length"))?;
    let (addr, bits, v4) = match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32, true),
        IpAddr::V6(a) => (u128::from(a), 128, false),
    };
    if prefix > bits {
        return Err(format!("prefix length {prefix} is longer than {bits} bits"));
    }
    let host_bits = bits - prefix;
    let mask = if host_bits >= 128 {
        0
    } else {
        !((1u128 << host_bits) - 1) & width_mask(bits)
    };
    Ok(Cidr {
        addr: addr & mask,
        bits,
        prefix,
        v4,
    })
}

fn width_mask(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

fn render(addr: u128, v4: bool) -> String {
    if v4 {
        Ipv4Addr::from(u32::try_from(addr & 0xffff_ffff).unwrap_or(0)).to_string()
    } else {
        Ipv6Addr::from(addr).to_string()
    }
}

fn host(prefix: &str, hostnum: i64) -> R {
    let c = parse_cidr(prefix)?;
    let host_bits = c.bits - c.prefix;
    let size: u128 = if host_bits >= 128 {
        u128::MAX
    } else {
        1u128 << host_bits
    };
    let index: u128 = if hostnum >= 0 {
        u128::from(hostnum.unsigned_abs())
    } else {
        let back = u128::from(hostnum.unsigned_abs());
        if back > size {
            return Err(format!(
                "prefix {prefix} has no host {hostnum} (only {size} addresses)"
            ));
        }
        size - back
    };
    if index >= size {
        return Err(format!(
            "prefix {prefix} has no host number {hostnum} (only {size} addresses)"
        ));
    }
    Ok(Value::String(render(c.addr + index, c.v4)))
}

fn netmask(prefix: &str) -> R {
    let c = parse_cidr(prefix)?;
    if !c.v4 {
        return Err("cidrnetmask only works with IPv4 prefixes".to_string());
    }
    let mask = if c.prefix == 0 {
        0u32
    } else {
        u32::MAX << (32 - c.prefix)
    };
    Ok(Value::String(Ipv4Addr::from(mask).to_string()))
}

fn subnet(prefix: &str, newbits: i64, netnum: i64) -> R {
    let c = parse_cidr(prefix)?;
    let newbits = u32::try_from(newbits).map_err(|_| "newbits must not be negative".to_string())?;
    let new_prefix = c.prefix.saturating_add(newbits);
    if new_prefix > c.bits {
        return Err(format!(
            "adding {newbits} bits to /{} would need more than {} bits",
            c.prefix, c.bits
        ));
    }
    let netnum = u128::try_from(netnum).map_err(|_| "netnum must not be negative".to_string())?;
    if newbits < 128 && netnum >= (1u128 << newbits) {
        return Err(format!("netnum {netnum} does not fit in {newbits} bits"));
    }
    let shift = c.bits - new_prefix;
    let addr = c.addr | if shift >= 128 { 0 } else { netnum << shift };
    Ok(Value::String(format!(
        "{}/{new_prefix}",
        render(addr, c.v4)
    )))
}

/// Consecutive subnets of the given sizes, each aligned to its size. Addresses are `u128`
/// and can reach the very end of IPv6's space, so every step is checked arithmetic.
fn subnets(prefix: &str, newbits: &[i64]) -> R {
    let c = parse_cidr(prefix)?;
    let last = c.addr | width_mask(c.bits - c.prefix);
    // The first free address; `None` once the space is used up to its end.
    let mut next = Some(c.addr);
    let mut out = Vec::new();
    for (i, nb) in newbits.iter().enumerate() {
        let nb = u32::try_from(*nb)
            .map_err(|_| format!("argument {}: newbits must not be negative", i + 2))?;
        let len = c.prefix.saturating_add(nb);
        if len > c.bits {
            return Err(format!(
                "argument {}: /{len} is longer than {} bits",
                i + 2,
                c.bits
            ));
        }
        // The subnet's host part: its size minus one.
        let host = width_mask(c.bits - len);
        let start = next
            .and_then(|n| n.checked_add(host))
            .map(|n| n & !host)
            .filter(|s| s.checked_add(host).is_some_and(|end| end <= last))
            .ok_or_else(|| format!("not enough room in {prefix} for subnet {} (/{len})", i + 1))?;
        out.push(Value::String(format!("{}/{len}", render(start, c.v4))));
        next = (start | host).checked_add(1);
    }
    Ok(Value::List(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: R) -> String {
        match v.unwrap() {
            Value::String(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cidr_functions_match_terraform() {
        assert_eq!(s(host("10.12.112.0/20", 16)), "10.12.112.16");
        assert_eq!(s(host("10.12.112.0/20", 268)), "10.12.113.12");
        assert_eq!(s(host("10.12.112.0/20", -1)), "10.12.127.255");
        assert_eq!(
            s(host("fd00:fd12:3456:7890:00a2::/72", 34)),
            "fd00:fd12:3456:7890::22"
        );
        assert!(host("10.0.0.0/30", 4)
            .unwrap_err()
            .contains("no host number 4"));
        assert_eq!(s(netmask("172.16.0.0/12")), "255.240.0.0");
        assert_eq!(s(subnet("172.16.0.0/12", 4, 2)), "172.18.0.0/16");
        assert_eq!(s(subnet("10.1.2.0/24", 4, 15)), "10.1.2.240/28");
        assert_eq!(
            s(subnet("fd00:fd12:3456:7890::/56", 16, 162)),
            "fd00:fd12:3456:7800:a200::/72"
        );
        assert!(subnet("10.0.0.0/8", 4, 16)
            .unwrap_err()
            .contains("does not fit"));
        let four = subnets("10.1.0.0/16", &[4, 4, 8, 4]).unwrap();
        let got: Vec<String> = match four {
            Value::List(l) => l.into_iter().map(|v| s(Ok(v))).collect(),
            _ => vec![],
        };
        assert_eq!(
            got,
            vec![
                "10.1.0.0/20",
                "10.1.16.0/20",
                "10.1.32.0/24",
                "10.1.48.0/20"
            ]
        );
        assert!(parse_cidr("10.0.0.0").is_err());
        // The end of IPv6's space, and sizes that would overflow, are errors, not panics.
        let whole = subnets("::/0", &[1, 1]).unwrap();
        assert_eq!(
            whole,
            Value::List(vec![Value::string("::/1"), Value::string("8000::/1")])
        );
        assert!(subnets("::/0", &[1, 1, 1])
            .unwrap_err()
            .contains("not enough room"));
        assert_eq!(
            subnets("::/0", &[0]).unwrap(),
            Value::List(vec![Value::string("::/0")])
        );
        assert!(subnets("10.0.0.0/8", &[i64::from(u32::MAX)]).is_err());
        assert!(subnet("10.0.0.0/8", i64::from(u32::MAX), 0).is_err());
        assert!(parse_cidr("10.0.0.0/33").is_err());
    }
}
