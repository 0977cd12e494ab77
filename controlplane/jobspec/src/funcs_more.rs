//! More of the function library: YAML, IP networks (`cidr*`) and time (`timestamp`,
//! `formatdate`, `timeadd`), with Terraform's semantics (which Nomad's HCL2 shares).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::value::{Number, Value};
use model::time::{format_rfc3339, parse_rfc3339};

type R = Result<Value, String>;

/// Deepest YAML nesting accepted by `yamldecode`.
const MAX_YAML_DEPTH: usize = 64;

// ---- YAML ----

fn yaml_to_value(y: &yaml_rust2::Yaml, depth: usize) -> R {
    use yaml_rust2::Yaml;
    if depth > MAX_YAML_DEPTH {
        return Err(format!("YAML nested deeper than {MAX_YAML_DEPTH} levels"));
    }
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::int(*i),
        Yaml::Real(text) => {
            let f: f64 = text
                .parse()
                .map_err(|_| format!("YAML number {text:?} is not a number"))?;
            Value::Number(Number::from_f64(f))
        }
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::List(
            items
                .iter()
                .map(|i| yaml_to_value(i, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Hash(map) => {
            let mut out = std::collections::BTreeMap::new();
            for (k, v) in map {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    Yaml::Real(r) => r.clone(),
                    other => return Err(format!("YAML map key {other:?} is not a string")),
                };
                out.insert(key, yaml_to_value(v, depth + 1)?);
            }
            Value::Object(out)
        }
        Yaml::Alias(_) => return Err("YAML aliases are not supported".to_string()),
        Yaml::BadValue => return Err("the YAML holds a value that cannot be read".to_string()),
    })
}

fn value_to_yaml(v: &Value) -> yaml_rust2::Yaml {
    use yaml_rust2::Yaml;
    match v {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(Number::Int(i)) => Yaml::Integer(*i),
        Value::Number(n) => Yaml::Real(n.as_f64().to_string()),
        Value::String(s) => Yaml::String(s.clone()),
        Value::List(items) => Yaml::Array(items.iter().map(value_to_yaml).collect()),
        Value::Object(map) => {
            let mut out = yaml_rust2::yaml::Hash::new();
            for (k, v) in map {
                out.insert(Yaml::String(k.clone()), value_to_yaml(v));
            }
            Yaml::Hash(out)
        }
    }
}

pub(crate) fn yamldecode(text: &str) -> R {
    let docs =
        yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| format!("invalid YAML: {e}"))?;
    match docs.as_slice() {
        [] => Ok(Value::Null),
        [one] => yaml_to_value(one, 0),
        _ => Err(format!(
            "the YAML holds {} documents; yamldecode takes one",
            docs.len()
        )),
    }
}

pub(crate) fn yamlencode(v: &Value) -> R {
    let mut out = String::new();
    yaml_rust2::YamlEmitter::new(&mut out)
        .dump(&value_to_yaml(v))
        .map_err(|e| format!("encoding YAML: {e:?}"))?;
    let body = out
        .strip_prefix("---\n")
        .or_else(|| out.strip_prefix("---"))
        .unwrap_or(&out)
        .trim_start();
    Ok(Value::String(format!("{body}\n")))
}

// ---- IP networks ----

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

pub(crate) fn cidrhost(prefix: &str, hostnum: i64) -> R {
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

pub(crate) fn cidrnetmask(prefix: &str) -> R {
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

pub(crate) fn cidrsubnet(prefix: &str, newbits: i64, netnum: i64) -> R {
    let c = parse_cidr(prefix)?;
    let newbits = u32::try_from(newbits).map_err(|_| "newbits must not be negative".to_string())?;
    let new_prefix = c.prefix + newbits;
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

pub(crate) fn cidrsubnets(prefix: &str, newbits: &[i64]) -> R {
    let c = parse_cidr(prefix)?;
    let mut next: u128 = c.addr;
    let end: u128 = c.addr
        + if c.bits - c.prefix >= 128 {
            u128::MAX
        } else {
            (1u128 << (c.bits - c.prefix)) - 1
        };
    let mut out = Vec::new();
    for (i, nb) in newbits.iter().enumerate() {
        let nb = u32::try_from(*nb)
            .map_err(|_| format!("argument {}: newbits must not be negative", i + 2))?;
        let len = c.prefix + nb;
        if len > c.bits {
            return Err(format!(
                "argument {}: /{len} is longer than {} bits",
                i + 2,
                c.bits
            ));
        }
        let size: u128 = 1u128 << (c.bits - len);
        let aligned = next.div_ceil(size) * size;
        if aligned + size - 1 > end {
            return Err(format!(
                "not enough room in {prefix} for subnet {} (/{len})",
                i + 1
            ));
        }
        out.push(Value::String(format!("{}/{len}", render(aligned, c.v4))));
        next = aligned + size;
    }
    Ok(Value::List(out))
}

// ---- time ----

pub(crate) fn timestamp(now_unix_nanos: i64) -> R {
    Ok(Value::String(format_rfc3339(
        now_unix_nanos - now_unix_nanos.rem_euclid(1_000_000_000),
    )))
}

pub(crate) fn timeadd(ts: &str, duration: &str) -> R {
    let base = parse_rfc3339(ts).ok_or_else(|| format!("{ts:?} is not an RFC 3339 timestamp"))?;
    let (negative, text) = match duration.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, duration),
    };
    let d = model::duration::parse_go(text)?;
    let nanos = i64::try_from(d.as_nanos()).map_err(|_| "duration too large".to_string())?;
    let t = if negative {
        base.checked_sub(nanos)
    } else {
        base.checked_add(nanos)
    }
    .ok_or_else(|| "the result is out of range".to_string())?;
    timestamp(t)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];

/// Terraform's `formatdate(spec, timestamp)`: YYYY YY MMMM MMM MM M DD D EEEE EEE hh h HH H
/// mm m ss s AA aa ZZZZZ ZZZZ ZZZ Z, text in single quotes, `''` for a quote.
pub(crate) fn formatdate(spec: &str, ts: &str) -> R {
    let t = parse_rfc3339(ts).ok_or_else(|| format!("{ts:?} is not an RFC 3339 timestamp"))?;
    let secs = t.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let text = format_rfc3339(days * 86_400 * 1_000_000_000);
    let year: i64 = text.get(0..4).and_then(|s| s.parse().ok()).unwrap_or(1970);
    let month: usize = text.get(5..7).and_then(|s| s.parse().ok()).unwrap_or(1);
    let day: u32 = text.get(8..10).and_then(|s| s.parse().ok()).unwrap_or(1);
    let (hour, minute, second) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let weekday = DAYS[usize::try_from(days.rem_euclid(7)).unwrap_or(0)];
    let month_name = MONTHS[month.saturating_sub(1).min(11)];
    let chars: Vec<char> = spec.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            // Quoted text; `''` inside it is a literal quote too.
            i += 1;
            loop {
                match (chars.get(i), chars.get(i + 1)) {
                    (None, _) => return Err("unterminated quoted text in the format".to_string()),
                    (Some('\''), Some('\'')) => {
                        out.push('\'');
                        i += 2;
                    }
                    (Some('\''), _) => {
                        i += 1;
                        break;
                    }
                    (Some(ch), _) => {
                        out.push(*ch);
                        i += 1;
                    }
                }
            }
            continue;
        }
        if !c.is_ascii_alphabetic() {
            out.push(c);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        let token: String = std::iter::repeat_n(c, run).collect();
        let h12 = if hour % 12 == 0 { 12 } else { hour % 12 };
        let piece = match token.as_str() {
            "YYYY" => format!("{year:04}"),
            "YY" => format!("{:02}", year.rem_euclid(100)),
            "MMMM" => month_name.to_string(),
            "MMM" => month_name[..3].to_string(),
            "MM" => format!("{month:02}"),
            "M" => month.to_string(),
            "DD" => format!("{day:02}"),
            "D" => day.to_string(),
            "EEEE" => weekday.to_string(),
            "EEE" => weekday[..3].to_string(),
            "hh" => format!("{hour:02}"),
            "h" => hour.to_string(),
            "HH" => format!("{h12:02}"),
            "H" => h12.to_string(),
            "mm" => format!("{minute:02}"),
            "m" => minute.to_string(),
            "ss" => format!("{second:02}"),
            "s" => second.to_string(),
            "AA" => if hour < 12 { "AM" } else { "PM" }.to_string(),
            "aa" => if hour < 12 { "am" } else { "pm" }.to_string(),
            "ZZZZZ" => "+00:00".to_string(),
            "ZZZZ" => "+0000".to_string(),
            "ZZZ" => "UTC".to_string(),
            "Z" => "Z".to_string(),
            other => {
                return Err(format!(
                    "invalid date format verb {other:?} (quote literal text with single quotes)"
                ))
            }
        };
        out.push_str(&piece);
        i += run;
    }
    Ok(Value::String(out))
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
        assert_eq!(s(cidrhost("10.12.112.0/20", 16)), "10.12.112.16");
        assert_eq!(s(cidrhost("10.12.112.0/20", 268)), "10.12.113.12");
        assert_eq!(s(cidrhost("10.12.112.0/20", -1)), "10.12.127.255");
        assert_eq!(
            s(cidrhost("fd00:fd12:3456:7890:00a2::/72", 34)),
            "fd00:fd12:3456:7890::22"
        );
        assert!(cidrhost("10.0.0.0/30", 4)
            .unwrap_err()
            .contains("no host number 4"));
        assert_eq!(s(cidrnetmask("172.16.0.0/12")), "255.240.0.0");
        assert_eq!(s(cidrsubnet("172.16.0.0/12", 4, 2)), "172.18.0.0/16");
        assert_eq!(s(cidrsubnet("10.1.2.0/24", 4, 15)), "10.1.2.240/28");
        assert_eq!(
            s(cidrsubnet("fd00:fd12:3456:7890::/56", 16, 162)),
            "fd00:fd12:3456:7800:a200::/72"
        );
        assert!(cidrsubnet("10.0.0.0/8", 4, 16)
            .unwrap_err()
            .contains("does not fit"));
        let subnets = cidrsubnets("10.1.0.0/16", &[4, 4, 8, 4]).unwrap();
        let got: Vec<String> = match subnets {
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
        assert!(parse_cidr("10.0.0.0/33").is_err());
    }

    #[test]
    fn time_functions() {
        let t = "2018-01-02T23:12:01Z";
        assert_eq!(
            s(formatdate("DD MMM YYYY hh:mm ZZZ", t)),
            "02 Jan 2018 23:12 UTC"
        );
        assert_eq!(
            s(formatdate("EEEE, DD-MMM-YY hh:mm:ss ZZZ", t)),
            "Tuesday, 02-Jan-18 23:12:01 UTC"
        );
        assert_eq!(s(formatdate("h:mm aa", t)), "23:12 pm");
        assert_eq!(s(formatdate("HH:mm AA", t)), "11:12 PM");
        assert_eq!(s(formatdate("MMMM 'o''clock' D", t)), "January o'clock 2");
        assert!(formatdate("QQ", t).unwrap_err().contains("QQ"));
        assert_eq!(
            s(timeadd("2017-11-22T00:00:00Z", "10m")),
            "2017-11-22T00:10:00Z"
        );
        assert_eq!(
            s(timeadd("2017-11-22T00:00:00Z", "-1h")),
            "2017-11-21T23:00:00Z"
        );
        assert_eq!(
            s(timestamp(1_700_000_000_123_456_789)),
            "2023-11-14T22:13:20Z"
        );
    }

    #[test]
    fn yaml_round_trips_and_bad_yaml_is_an_error() {
        let v = yamldecode("a: 1\nb:\n  - x\n  - true\nc: 2.5\nd: null\n").unwrap();
        match &v {
            Value::Object(m) => {
                assert_eq!(m["a"], Value::int(1));
                assert_eq!(
                    m["b"],
                    Value::List(vec![Value::string("x"), Value::Bool(true)])
                );
                assert_eq!(m["d"], Value::Null);
            }
            other => panic!("{other:?}"),
        }
        let text = s(yamlencode(&v));
        assert_eq!(yamldecode(&text).unwrap(), v, "{text}");
        assert!(yamldecode("a: [1, 2").unwrap_err().contains("invalid YAML"));
        assert!(yamldecode("--- 1\n--- 2\n")
            .unwrap_err()
            .contains("2 documents"));
    }
}
