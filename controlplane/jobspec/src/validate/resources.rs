//! A task's `resources`: cpu or cores, memory and its ceiling, NUMA, devices.

use model::Resources;

use super::Validator;
use crate::error::FieldPath;

/// Least cpu a task may ask for.
const MIN_CPU_MHZ: i64 = 1;
/// Least memory a task may ask for.
const MIN_MEMORY_MB: i64 = 10;

impl Validator<'_> {
    pub(super) fn resources(&mut self, r: &Resources, rp: &FieldPath) {
        if r.cpu != 0 && r.cores != 0 {
            self.err(
                &rp.field("cores").key("Cores"),
                format!(
                    "ask for cpu or cores, not both (cpu = {}, cores = {})",
                    r.cpu, r.cores
                ),
            );
        }
        if r.cores < 0 {
            self.err(
                &rp.field("cores").key("Cores"),
                format!("cores must not be negative (got {})", r.cores),
            );
        }
        if r.cores == 0 && r.cpu < MIN_CPU_MHZ {
            self.err(
                &rp.field("cpu").key("CPU"),
                format!("cpu must be at least {MIN_CPU_MHZ} MHz (got {})", r.cpu),
            );
        }
        if r.memory_mb < MIN_MEMORY_MB {
            self.err(
                &rp.field("memory").key("MemoryMB"),
                format!("must be at least {MIN_MEMORY_MB} MB (got {})", r.memory_mb),
            );
        }
        if r.memory_max_mb != 0 && r.memory_max_mb != -1 && r.memory_max_mb < r.memory_mb {
            self.err(
                &rp.field("memory_max").key("MemoryMaxMB"),
                format!(
                    "memory_max ({} MB) must be at least memory ({} MB), or -1 for no limit",
                    r.memory_max_mb, r.memory_mb
                ),
            );
        }
        if r.disk_mb.is_some() {
            self.warn(
                &rp.field("disk").key("DiskMB"),
                "disk in resources is deprecated and ignored; use the group's ephemeral_disk",
            );
        }
        if let Some(n) = &r.numa {
            if !["none", "prefer", "require"].contains(&n.affinity.as_str()) {
                self.err(
                    &rp.field("numa")
                        .field("affinity")
                        .key("NUMA")
                        .key("Affinity"),
                    format!(
                        "numa affinity must be none, prefer or require (got {:?})",
                        n.affinity
                    ),
                );
            }
        }
        for (i, d) in r.devices.iter().enumerate() {
            let dp = rp
                .labeled("device", &d.name)
                .key("Devices")
                .key(&i.to_string());
            if d.name.is_empty() {
                self.err(&dp, "a device needs a name: device \"nvidia/gpu\" { … }");
            }
            if d.count.unwrap_or(1) < 0 {
                self.err(
                    &dp.field("count").key("Count"),
                    "device count must not be negative",
                );
            }
            self.constraints(&d.constraints, &dp);
            self.affinities(&d.affinities, &dp);
        }
    }
}
