//! Linux capabilities by name and number: the one table noded uses when a job is submitted
//! (`controlplane`'s driver config checks), on the node (`noded`'s agent config and exec
//! driver) and for the kernel (`isolation::caps`), Nomad's default allow-list of the exec
//! driver, and the reading of a capability name as a user writes it.
//!
//! A crate of its own because `controlplane` must not depend on `isolation` (it never
//! touches the kernel) and both need the same names. No dependencies, no `unsafe`.
//!
//! # Names
//! Names are lower-case without the `CAP_` prefix, as in capabilities(7) (`net_bind_service`).
//! [`parse`] also takes `CAP_NET_BIND_SERVICE`, `cap_net_bind_service`, `NET_BIND_SERVICE`
//! and surrounding whitespace, and `all` (any spelling, `cap_all` too) for every capability
//! in [`NAMES`].

#![forbid(unsafe_code)]

/// Capability names, indexed by their number in `<linux/capability.h>` (Linux 6.x).
pub const NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// The highest capability number in [`NAMES`].
pub const LAST_KNOWN: u8 = (NAMES.len() - 1) as u8;

/// Nomad's default `allow_caps` for the exec driver (Docker's default set without
/// `net_raw`), sorted by name: what root in a task keeps unless the job drops it.
pub const NOMAD_DEFAULT_ALLOW: [&str; 13] = [
    "audit_write",
    "chown",
    "dac_override",
    "fowner",
    "fsetid",
    "kill",
    "mknod",
    "net_bind_service",
    "setfcap",
    "setgid",
    "setpcap",
    "setuid",
    "sys_chroot",
];

/// The name of capability `number`, if it is in [`NAMES`].
pub fn name(number: u8) -> Option<&'static str> {
    NAMES.get(usize::from(number)).copied()
}

/// The number of `name`, spelled exactly as in [`NAMES`]. A `const fn`, so that constants
/// can be written by name and checked when compiled.
pub const fn number(name: &str) -> Option<u8> {
    let mut i = 0;
    while i < NAMES.len() {
        if bytes_eq(NAMES[i].as_bytes(), name.as_bytes()) {
            return Some(i as u8);
        }
        i += 1;
    }
    None
}

/// The kernel's 64-bit mask of `names`, each spelled exactly as in [`NAMES`].
///
/// # Panics
/// On a name not in [`NAMES`]; in a constant, that fails the build instead.
pub const fn mask(names: &[&str]) -> u64 {
    let mut bits = 0u64;
    let mut i = 0;
    while i < names.len() {
        match number(names[i]) {
            Some(n) => bits |= 1u64 << n,
            None => panic!("not a capability name of capabilities::NAMES"),
        }
        i += 1;
    }
    bits
}

const fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// What a capability name, as a user writes it, stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// `all`: every capability in [`NAMES`].
    All,
    /// One capability, by number.
    One(u8),
}

/// Reads a capability name as a user writes it: whitespace around it and case are ignored,
/// and one `cap_` prefix is optional (`CAP_NET_RAW`, `net_raw`, ` Net_Raw `); `all` stands
/// for every capability. `None` for anything else.
pub fn parse(text: &str) -> Option<Parsed> {
    let lower = text.trim().to_ascii_lowercase();
    let bare = lower.strip_prefix("cap_").unwrap_or(&lower);
    if bare == "all" {
        return Some(Parsed::All);
    }
    number(bare).map(Parsed::One)
}

/// [`parse`], answered with the canonical spelling (`"net_raw"`, `"all"`).
pub fn normalize(text: &str) -> Option<&'static str> {
    match parse(text)? {
        Parsed::All => Some("all"),
        Parsed::One(n) => name(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_the_kernels() {
        for (name, number) in [
            ("chown", 0),
            ("net_bind_service", 10),
            ("net_raw", 13),
            ("sys_admin", 21),
            ("mknod", 27),
            ("audit_write", 29),
            ("setfcap", 31),
            ("checkpoint_restore", 40),
        ] {
            assert_eq!(super::number(name), Some(number), "{name}");
            assert_eq!(super::name(number), Some(name));
        }
        assert_eq!(LAST_KNOWN, 40);
        assert_eq!(super::name(41), None);
        assert_eq!(
            super::number("CAP_CHOWN"),
            None,
            "number() takes exact names only"
        );
    }

    #[test]
    fn names_are_read_in_every_spelling() {
        for text in [
            "net_raw",
            "NET_RAW",
            "cap_net_raw",
            "CAP_NET_RAW",
            " Cap_Net_Raw ",
        ] {
            assert_eq!(parse(text), Some(Parsed::One(13)), "{text:?}");
            assert_eq!(normalize(text), Some("net_raw"), "{text:?}");
        }
        for text in ["all", "ALL", " All ", "cap_all", "CAP_ALL"] {
            assert_eq!(parse(text), Some(Parsed::All), "{text:?}");
            assert_eq!(normalize(text), Some("all"), "{text:?}");
        }
        for text in [
            "",
            "cap_",
            "net_bind",
            "superpowers",
            "cap_cap_chown",
            "chown,kill",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn nomads_default_allow_list_is_known_sorted_and_without_net_raw() {
        let mut sorted = NOMAD_DEFAULT_ALLOW;
        sorted.sort_unstable();
        assert_eq!(sorted, NOMAD_DEFAULT_ALLOW);
        assert!(NOMAD_DEFAULT_ALLOW.iter().all(|n| number(n).is_some()));
        assert!(!NOMAD_DEFAULT_ALLOW.contains(&"net_raw"));
        assert!(!NOMAD_DEFAULT_ALLOW.contains(&"sys_admin"));
        const MASK: u64 = mask(&NOMAD_DEFAULT_ALLOW);
        assert_eq!(MASK.count_ones(), 13);
        assert_eq!(MASK & (1 << 13), 0);
        assert_ne!(MASK & (1 << 10), 0);
    }
}
