//! `/proc/sys` for the network namespace of the calling thread: `/proc/sys/net` shows the
//! namespace of the thread that opens the file, so writes happen on the thread that is in
//! the namespace they are meant for.

use std::path::PathBuf;

use crate::error::{Error, Result};

fn sysctl_path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

/// Reads a sysctl of the calling thread's namespace (`key` in dotted form,
/// `net.ipv4.ip_forward`; interface names must not contain dots).
pub fn read(key: &str) -> Result<String> {
    let path = sysctl_path(key);
    std::fs::read_to_string(&path)
        .map(|v| v.trim().to_string())
        .map_err(|e| Error::io("cannot read sysctl", path, e))
}

/// Writes a sysctl of the calling thread's namespace.
pub fn write(key: &str, value: &str) -> Result<()> {
    let path = sysctl_path(key);
    std::fs::write(&path, value)
        .map_err(|e| Error::io(format!("cannot set sysctl to {value:?}"), path, e))
}

/// Sets `net.ipv4.conf.<iface>.<key>` in the calling thread's namespace (interface names may
/// contain dots, which the dotted form cannot carry).
pub fn write_ipv4_conf(iface: &str, key: &str, value: &str) -> Result<()> {
    crate::link::validate_ifname("interface name", iface)?;
    let path = PathBuf::from("/proc/sys/net/ipv4/conf")
        .join(iface)
        .join(key);
    std::fs::write(&path, value)
        .map_err(|e| Error::io(format!("cannot set sysctl to {value:?}"), path, e))
}

/// Reads `net.ipv4.conf.<iface>.<key>` of the calling thread's namespace.
pub fn read_ipv4_conf(iface: &str, key: &str) -> Result<String> {
    crate::link::validate_ifname("interface name", iface)?;
    let path = PathBuf::from("/proc/sys/net/ipv4/conf")
        .join(iface)
        .join(key);
    std::fs::read_to_string(&path)
        .map(|v| v.trim().to_string())
        .map_err(|e| Error::io("cannot read sysctl", path, e))
}
