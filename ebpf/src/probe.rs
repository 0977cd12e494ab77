//! Whether eBPF port mapping can work on this host, and where the cgroup2 hierarchy is.
//!
//! The client asks [`probe`] once at start: on `Err` it falls back to the nftables backend and
//! puts the reason in the node's fingerprint, so a node is never silently without mapping.

use std::fs;
use std::path::{Path, PathBuf};

/// Where the kernel exposes its own BTF; CO-RE relocations need it.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
/// Where bpffs is (or gets) mounted.
pub const BPFFS: &str = "/sys/fs/bpf";
/// `bpf_get_netns_cookie` in cgroup sock_addr programs and bpf_link for cgroups: Linux 5.7.
const MIN_KERNEL: (u32, u32) = (5, 7);

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// Why eBPF port mapping cannot work here; the reason names what is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("eBPF port mapping unavailable: {reason}")]
pub struct Unavailable {
    pub reason: String,
}

impl Unavailable {
    fn new(reason: impl Into<String>) -> Self {
        Unavailable {
            reason: reason.into(),
        }
    }
}

/// Checks what [`crate::PortMapper::open`] needs: kernel BTF, a recent enough kernel,
/// CAP_BPF (or CAP_SYS_ADMIN) and CAP_NET_ADMIN, bpffs mounted or mountable, a cgroup2
/// mount. Cheap (reads a few files); loads nothing.
pub fn probe() -> Result<(), Unavailable> {
    if !Path::new(VMLINUX_BTF).exists() {
        return Err(Unavailable::new(format!(
            "no kernel BTF at {VMLINUX_BTF} (the kernel was built without CONFIG_DEBUG_INFO_BTF)"
        )));
    }
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .map_err(|e| Unavailable::new(format!("uname failed: {e}")))?;
    match kernel_version(&release) {
        Some(v) if v >= MIN_KERNEL => {}
        _ => {
            return Err(Unavailable::new(format!(
                "kernel {release} is older than {}.{} (needs bpf_get_netns_cookie in cgroup sock_addr programs)",
                MIN_KERNEL.0, MIN_KERNEL.1
            )))
        }
    }
    let status = fs::read_to_string("/proc/self/status")
        .map_err(|e| Unavailable::new(format!("reading /proc/self/status: {e}")))?;
    let caps = effective_caps(&status).unwrap_or(0);
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    if !(has(CAP_BPF) || has(CAP_SYS_ADMIN)) || !has(CAP_NET_ADMIN) {
        return Err(Unavailable::new(
            "the agent lacks CAP_BPF (or CAP_SYS_ADMIN) and CAP_NET_ADMIN: run the client as root",
        ));
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Unavailable::new(format!("reading /proc/self/mountinfo: {e}")))?;
    if !bpffs_mounted(&mountinfo, Path::new(BPFFS)) {
        let filesystems = fs::read_to_string("/proc/filesystems").unwrap_or_default();
        let known = filesystems
            .lines()
            .any(|l| l.split_whitespace().last() == Some("bpf"));
        if !known || !Path::new(BPFFS).is_dir() {
            return Err(Unavailable::new(format!(
                "bpffs is not mounted at {BPFFS} and cannot be (no `bpf` filesystem in /proc/filesystems or no {BPFFS} directory)"
            )));
        }
    }
    if cgroup2_root_in(&mountinfo).is_none() {
        return Err(Unavailable::new(
            "no cgroup2 mount in /proc/self/mountinfo (mount one at /sys/fs/cgroup/unified or /sys/fs/cgroup)",
        ));
    }
    Ok(())
}

/// The mount point of the cgroup2 hierarchy's root: `/sys/fs/cgroup/unified` on hybrid
/// hosts, `/sys/fs/cgroup` on pure-v2 hosts (read from /proc/self/mountinfo).
pub fn cgroup2_root() -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    cgroup2_root_in(&mountinfo)
}

/// One mountinfo line: `(root, mount point, fstype)`, octal escapes decoded.
fn mounts(mountinfo: &str) -> impl Iterator<Item = (String, PathBuf, &str)> + '_ {
    mountinfo.lines().filter_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut l = left.split(' ');
        let root = unescape(l.nth(3)?);
        let mount_point = PathBuf::from(unescape(l.next()?));
        let fstype = right.split(' ').next()?;
        Some((root, mount_point, fstype))
    })
}

pub(crate) fn cgroup2_root_in(mountinfo: &str) -> Option<PathBuf> {
    // The hierarchy's root only: a bind mount of a sub-cgroup (root != "/", as inside a
    // container) would attach the programs to a subtree and miss the rest of the host.
    let roots: Vec<PathBuf> = mounts(mountinfo)
        .filter(|(root, _, fstype)| *fstype == "cgroup2" && root == "/")
        .map(|(_, mp, _)| mp)
        .collect();
    for preferred in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        if let Some(p) = roots.iter().find(|p| p.as_path() == Path::new(preferred)) {
            return Some(p.clone());
        }
    }
    roots.into_iter().next()
}

pub(crate) fn bpffs_mounted(mountinfo: &str, at: &Path) -> bool {
    mounts(mountinfo).any(|(_, mp, fstype)| fstype == "bpf" && mp == at)
}

/// `\040` and friends in mountinfo paths.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn effective_caps(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw
33 25 0:28 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
34 33 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
35 33 0:30 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
40 25 0:35 / /sys/fs/bpf rw - bpf bpf rw
";

    #[test]
    fn cgroup2_root_on_hybrid_and_pure_v2_hosts() {
        assert_eq!(
            cgroup2_root_in(HYBRID),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let pure = "33 25 0:28 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_root_in(pure), Some(PathBuf::from("/sys/fs/cgroup")));
        // A container's view: a sub-cgroup bind-mounted is not the root.
        let sub = "33 25 0:28 /kubepods/x /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_root_in(sub), None);
        let spaced = "33 25 0:28 / /mnt/my\\040cg rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_root_in(spaced), Some(PathBuf::from("/mnt/my cg")));
        assert_eq!(cgroup2_root_in("garbage\n"), None);
    }

    #[test]
    fn bpffs_mount_is_found_only_at_its_mount_point() {
        assert!(bpffs_mounted(HYBRID, Path::new("/sys/fs/bpf")));
        assert!(!bpffs_mounted(HYBRID, Path::new("/sys/fs/cgroup")));
        assert!(!bpffs_mounted("", Path::new("/sys/fs/bpf")));
    }

    #[test]
    fn kernel_versions_and_capabilities_parse() {
        assert_eq!(kernel_version("6.18.44-fc-v1252"), Some((6, 18)));
        assert_eq!(kernel_version("5.4.0"), Some((5, 4)));
        assert_eq!(kernel_version("x"), None);
        assert_eq!(
            effective_caps("Name:\tx\nCapEff:\t000001ffffffffff\n"),
            Some(0x1ff_ffff_ffff)
        );
        assert_eq!(effective_caps("Name:\tx\n"), None);
    }

    #[test]
    fn probe_agrees_with_the_privilege_of_the_test() {
        // As root on a BTF kernel with cgroup2 (this project's dev hosts) the probe passes;
        // without root it must name the capability.
        match probe() {
            Ok(()) => assert!(nix::unistd::geteuid().is_root()),
            Err(e) => {
                if !nix::unistd::geteuid().is_root() {
                    assert!(e.reason.contains("CAP_BPF"), "{e}");
                } else {
                    assert!(!e.reason.is_empty());
                }
            }
        }
    }
}
