//! What a node is: CPU, memory, kernel, OS, cgroup layout, hostname — read from `/proc`, `/sys`
//! and `/etc`, reported under Nomad's attribute names (`cpu.numcores`, `kernel.version`, …) so
//! constraints written for Nomad keep working.
//!
//! Parsing is pure (tested on captured text); [`gather`] does the reading.

use std::collections::BTreeMap;
use std::path::Path;

use controlplane::model::{
    NodeCpuResources, NodeDiskResources, NodeMemoryResources, NodeResources,
};

/// CPU facts from `/proc/cpuinfo`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CpuInfo {
    pub cores: u32,
    pub mhz: u32,
    pub model: String,
}

pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut info = CpuInfo::default();
    let mut mhz_sum = 0f64;
    let mut mhz_count = 0u32;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => info.cores += 1,
            "cpu MHz" => {
                if let Ok(v) = value.parse::<f64>() {
                    mhz_sum += v;
                    mhz_count += 1;
                }
            }
            "model name" if info.model.is_empty() => info.model = value.to_string(),
            _ => {}
        }
    }
    if mhz_count > 0 {
        info.mhz = (mhz_sum / f64::from(mhz_count)).round() as u32;
    }
    info
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// `ID` and `VERSION_ID` from `/etc/os-release`.
pub fn parse_os_release(text: &str) -> (String, String) {
    let mut id = String::new();
    let mut version = String::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').to_string();
        match k.trim() {
            "ID" => id = v,
            "VERSION_ID" => version = v,
            _ => {}
        }
    }
    (id, version)
}

/// Everything fingerprinted about this machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprint {
    pub attributes: BTreeMap<String, String>,
    pub resources: NodeResources,
    pub hostname: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Reads the machine. A fact that cannot be read is left out (and says so in the log) rather
/// than guessed, except CPU speed: a VM without `cpu MHz` gets 1000 MHz per core, logged.
pub fn gather(data_dir: &Path, ip_address: &str) -> Fingerprint {
    let mut attrs = BTreeMap::new();
    let cpu = parse_cpuinfo(&read("/proc/cpuinfo"));
    let cores = if cpu.cores == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1)
    } else {
        cpu.cores
    };
    let mhz = if cpu.mhz == 0 {
        tracing::warn!("/proc/cpuinfo gives no CPU speed; assuming 1000 MHz per core");
        1000
    } else {
        cpu.mhz
    };
    let total_compute = u64::from(cores) * u64::from(mhz);
    attrs.insert("cpu.numcores".into(), cores.to_string());
    attrs.insert("cpu.frequency".into(), mhz.to_string());
    attrs.insert("cpu.totalcompute".into(), total_compute.to_string());
    attrs.insert("cpu.arch".into(), std::env::consts::ARCH.to_string());
    if !cpu.model.is_empty() {
        attrs.insert("cpu.modelname".into(), cpu.model);
    }
    let memory = parse_meminfo_total(&read("/proc/meminfo")).unwrap_or(0);
    attrs.insert("memory.totalbytes".into(), memory.to_string());

    let uname = nix::sys::utsname::uname().ok();
    let release = uname
        .as_ref()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let machine = uname
        .as_ref()
        .map(|u| u.machine().to_string_lossy().into_owned())
        .unwrap_or_default();
    attrs.insert("kernel.name".into(), "linux".into());
    attrs.insert(
        "kernel.version".into(),
        release.split('-').next().unwrap_or("").to_string(),
    );
    attrs.insert("kernel.release".into(), release);
    attrs.insert("kernel.arch".into(), machine);
    let (os, os_version) = parse_os_release(&read("/etc/os-release"));
    attrs.insert("os.name".into(), os);
    attrs.insert("os.version".into(), os_version);

    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".to_string());
    attrs.insert("unique.hostname".into(), hostname.clone());
    attrs.insert("unique.network.ip-address".into(), ip_address.to_string());
    attrs.insert(
        "nomad.version".into(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    attrs.insert(
        "noded.version".into(),
        env!("CARGO_PKG_VERSION").to_string(),
    );

    match isolation::cgroup::CgroupLayout::detect() {
        Ok(layout) => {
            let (version, mountpoint) = match &layout {
                isolation::cgroup::CgroupLayout::V2 { root } => ("v2", root.display().to_string()),
                isolation::cgroup::CgroupLayout::V1 { hierarchies, .. } => (
                    "v1",
                    hierarchies
                        .first()
                        .and_then(|h| h.mount_point.parent())
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                ),
            };
            attrs.insert("unique.cgroup.version".into(), version.to_string());
            attrs.insert("unique.cgroup.mountpoint".into(), mountpoint);
        }
        Err(e) => tracing::warn!("cgroup layout: {e}"),
    }

    let mut disk_mb = 0i64;
    if let Ok(stat) = nix::sys::statvfs::statvfs(data_dir) {
        let free = stat.blocks_available().saturating_mul(stat.fragment_size());
        let total = stat.blocks().saturating_mul(stat.fragment_size());
        attrs.insert(
            "unique.storage.volume".into(),
            data_dir.display().to_string(),
        );
        attrs.insert("unique.storage.bytesfree".into(), free.to_string());
        attrs.insert("unique.storage.bytestotal".into(), total.to_string());
        disk_mb = i64::try_from(free / (1024 * 1024)).unwrap_or(i64::MAX);
    }

    let resources = NodeResources {
        cpu: NodeCpuResources {
            cpu_shares: i64::try_from(total_compute).unwrap_or(i64::MAX),
            total_cpu_cores: cores,
            reservable_cpu_cores: (0..cores).collect(),
        },
        memory: NodeMemoryResources {
            memory_mb: i64::try_from(memory / (1024 * 1024)).unwrap_or(i64::MAX),
        },
        disk: NodeDiskResources { disk_mb },
    };
    Fingerprint {
        attributes: attrs,
        resources,
        hostname,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_gives_cores_speed_and_model() {
        let text = "processor\t: 0\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2596.142\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2596.000\n";
        let info = parse_cpuinfo(text);
        assert_eq!(
            info,
            CpuInfo {
                cores: 2,
                mhz: 2596,
                model: "AMD EPYC".into()
            }
        );
        assert_eq!(parse_cpuinfo("garbage"), CpuInfo::default());
    }

    #[test]
    fn meminfo_and_os_release() {
        assert_eq!(
            parse_meminfo_total("MemTotal:       24684084 kB\nMemFree: 1 kB"),
            Some(24684084 * 1024)
        );
        assert_eq!(parse_meminfo_total("nothing"), None);
        let (id, v) = parse_os_release("PRETTY_NAME=\"Debian\"\nID=debian\nVERSION_ID=\"12\"\n");
        assert_eq!((id.as_str(), v.as_str()), ("debian", "12"));
    }
}
