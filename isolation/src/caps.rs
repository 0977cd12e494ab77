//! Linux capabilities as names and sets.
//!
//! Owns capabilities as typed values and set arithmetic over the kernel's 64-bit masks. The
//! names, their numbers and how a user may spell them (`"net_bind_service"`,
//! `"CAP_NET_BIND_SERVICE"`, `"all"`) come from the `capabilities` crate, the one table the
//! control plane shares. It does not apply anything to a process: `sandbox` turns a
//! [`CapabilitySet`] into prepared `prctl`/`capset` calls for the child.

use std::fmt;
use std::str::FromStr;

use capabilities::Parsed;

/// One Linux capability, numbered as in `<linux/capability.h>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Capability(u8);

impl Capability {
    /// The highest capability number this crate knows by name.
    pub const LAST_KNOWN: u8 = capabilities::LAST_KNOWN;

    pub const CHOWN: Capability = Capability::named("chown");
    pub const DAC_OVERRIDE: Capability = Capability::named("dac_override");
    pub const FOWNER: Capability = Capability::named("fowner");
    pub const FSETID: Capability = Capability::named("fsetid");
    pub const KILL: Capability = Capability::named("kill");
    pub const SETGID: Capability = Capability::named("setgid");
    pub const SETUID: Capability = Capability::named("setuid");
    pub const SETPCAP: Capability = Capability::named("setpcap");
    pub const NET_BIND_SERVICE: Capability = Capability::named("net_bind_service");
    pub const NET_ADMIN: Capability = Capability::named("net_admin");
    pub const NET_RAW: Capability = Capability::named("net_raw");
    pub const SYS_CHROOT: Capability = Capability::named("sys_chroot");
    pub const SYS_PTRACE: Capability = Capability::named("sys_ptrace");
    pub const SYS_ADMIN: Capability = Capability::named("sys_admin");
    pub const MKNOD: Capability = Capability::named("mknod");
    pub const AUDIT_WRITE: Capability = Capability::named("audit_write");
    pub const SETFCAP: Capability = Capability::named("setfcap");

    /// The capability of a name in the table, for the constants above (a misspelt name fails
    /// the build).
    const fn named(name: &str) -> Capability {
        match capabilities::number(name) {
            Some(number) => Capability(number),
            None => panic!("not a capability name of capabilities::NAMES"),
        }
    }

    /// The capability with this number, if the kernel ABI can hold it (0..=63).
    pub fn from_number(number: u8) -> Option<Capability> {
        (number < 64).then_some(Capability(number))
    }

    /// The capability number.
    pub fn number(self) -> u8 {
        self.0
    }

    /// Lower-case name without `CAP_`, e.g. `net_bind_service` (`cap_41` for unnamed ones).
    pub fn name(self) -> String {
        match capabilities::name(self.0) {
            Some(name) => name.to_string(),
            None => format!("cap_{}", self.0),
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A capability name that is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability {name:?}: use a name from capabilities(7) such as \"net_bind_service\" or \"CAP_CHOWN\", or \"all\"")]
pub struct CapsError {
    pub name: String,
}

impl FromStr for Capability {
    type Err = CapsError;

    /// Accepts `net_bind_service`, `NET_BIND_SERVICE`, `cap_net_bind_service` and
    /// `CAP_NET_BIND_SERVICE`. (`"all"` is a set, see [`CapabilitySet::parse_list`].)
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match capabilities::parse(s) {
            Some(Parsed::One(number)) => Ok(Capability(number)),
            Some(Parsed::All) | None => Err(CapsError {
                name: s.to_string(),
            }),
        }
    }
}

/// A set of capabilities, as the kernel's 64-bit mask.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CapabilitySet(u64);

/// Nomad's default `allow_caps` for the exec driver: Docker's default set without `NET_RAW`
/// ([`capabilities::NOMAD_DEFAULT_ALLOW`]).
pub const DEFAULT_ALLOW: CapabilitySet =
    CapabilitySet(capabilities::mask(&capabilities::NOMAD_DEFAULT_ALLOW));

impl CapabilitySet {
    /// No capabilities.
    pub const EMPTY: CapabilitySet = CapabilitySet(0);

    /// Every capability this crate knows by name (`"all"`). The sandbox further clips a set to
    /// the running kernel's `cap_last_cap`.
    pub fn all() -> CapabilitySet {
        CapabilitySet(mask_up_to(Capability::LAST_KNOWN))
    }

    /// The set of the given raw kernel mask.
    pub fn from_mask(mask: u64) -> CapabilitySet {
        CapabilitySet(mask)
    }

    /// The raw kernel mask.
    pub fn mask(self) -> u64 {
        self.0
    }

    /// Parses a list of names (spelled as [`capabilities::parse`] reads them); `"all"`
    /// stands for [`CapabilitySet::all`].
    pub fn parse_list<I, S>(names: I) -> Result<CapabilitySet, CapsError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = CapabilitySet::EMPTY;
        for name in names {
            let name = name.as_ref();
            match capabilities::parse(name) {
                Some(Parsed::All) => set = set.union(CapabilitySet::all()),
                Some(Parsed::One(number)) => set.insert(Capability(number)),
                None => {
                    return Err(CapsError {
                        name: name.to_string(),
                    })
                }
            }
        }
        Ok(set)
    }

    pub fn contains(self, cap: Capability) -> bool {
        self.0 & (1u64 << cap.0) != 0
    }

    pub fn insert(&mut self, cap: Capability) {
        self.0 |= 1u64 << cap.0;
    }

    pub fn remove(&mut self, cap: Capability) {
        self.0 &= !(1u64 << cap.0);
    }

    pub fn union(self, other: CapabilitySet) -> CapabilitySet {
        CapabilitySet(self.0 | other.0)
    }

    pub fn intersection(self, other: CapabilitySet) -> CapabilitySet {
        CapabilitySet(self.0 & other.0)
    }

    pub fn difference(self, other: CapabilitySet) -> CapabilitySet {
        CapabilitySet(self.0 & !other.0)
    }

    pub fn is_subset(self, other: CapabilitySet) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The members, lowest number first.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        (0u8..64)
            .filter(move |n| self.0 & (1u64 << n) != 0)
            .map(Capability)
    }

    /// Only the capabilities numbered `0..=last_cap` (the running kernel's `cap_last_cap`).
    pub fn clip_to(self, last_cap: u8) -> CapabilitySet {
        CapabilitySet(self.0 & mask_up_to(last_cap))
    }
}

/// Mask with bits `0..=last` set.
fn mask_up_to(last: u8) -> u64 {
    if last >= 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    }
}

impl fmt::Debug for CapabilitySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(|c| c.name()))
            .finish()
    }
}

impl fmt::Display for CapabilitySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.iter().map(|c| c.name()).collect();
        f.write_str(&names.join(","))
    }
}

impl FromIterator<Capability> for CapabilitySet {
    fn from_iter<T: IntoIterator<Item = Capability>>(iter: T) -> Self {
        let mut set = CapabilitySet::EMPTY;
        for cap in iter {
            set.insert(cap);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_in_every_spelling() {
        for s in [
            "net_bind_service",
            "NET_BIND_SERVICE",
            "cap_net_bind_service",
            "CAP_NET_BIND_SERVICE",
            " Cap_Net_Bind_Service ",
        ] {
            assert_eq!(
                s.parse::<Capability>().unwrap(),
                Capability::NET_BIND_SERVICE,
                "{s}"
            );
        }
        assert_eq!(
            "checkpoint_restore".parse::<Capability>().unwrap().number(),
            40
        );
        assert_eq!("chown".parse::<Capability>().unwrap().number(), 0);
    }

    #[test]
    fn unknown_name_is_a_clear_error() {
        let err = "net_bind".parse::<Capability>().unwrap_err();
        assert!(
            err.to_string().contains("unknown capability \"net_bind\""),
            "{err}"
        );
        let err = CapabilitySet::parse_list(["chown", "nope"]).unwrap_err();
        assert_eq!(err.name, "nope");
    }

    #[test]
    fn default_allow_is_nomads_exec_default() {
        let expected = CapabilitySet::parse_list([
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
        ])
        .unwrap();
        assert_eq!(DEFAULT_ALLOW, expected);
        assert_eq!(DEFAULT_ALLOW.iter().count(), 13);
        assert!(!DEFAULT_ALLOW.contains(Capability::NET_RAW));
        assert!(!DEFAULT_ALLOW.contains(Capability::SYS_ADMIN));
    }

    #[test]
    fn all_and_set_arithmetic() {
        let all = CapabilitySet::parse_list(["ALL"]).unwrap();
        assert_eq!(all.iter().count(), 41);
        // Read as the control plane reads it (`capabilities::parse`): `cap_all` too; but
        // "all" is a set, not one capability.
        assert_eq!(CapabilitySet::parse_list([" cap_all "]).unwrap(), all);
        assert!("all".parse::<Capability>().is_err());
        assert_eq!(all.clip_to(37).iter().count(), 38);
        let dropped = all.difference(DEFAULT_ALLOW);
        assert!(!dropped.contains(Capability::CHOWN));
        assert!(dropped.contains(Capability::SYS_ADMIN));
        assert!(DEFAULT_ALLOW.is_subset(all));
        assert!(!all.is_subset(DEFAULT_ALLOW));
        assert_eq!(DEFAULT_ALLOW.intersection(dropped), CapabilitySet::EMPTY);
        assert_eq!(CapabilitySet::all().clip_to(63), CapabilitySet::all());
        assert_eq!(
            CapabilitySet::from_mask(u64::MAX).clip_to(63).mask(),
            u64::MAX
        );
    }

    #[test]
    fn display_lists_names() {
        let set: CapabilitySet = [Capability::KILL, Capability::CHOWN].into_iter().collect();
        assert_eq!(set.to_string(), "chown,kill");
        assert_eq!(format!("{set:?}"), "{\"chown\", \"kill\"}");
    }
}
