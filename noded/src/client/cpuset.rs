//! Which cpus the tasks without reserved cores may run on: the node's *shared* cores, every
//! usable core minus the cores reserved (`resources { cores = N }`) by the allocations this node
//! runs. Tasks with reserved cores are pinned to them by their own cpuset; this keeps everyone
//! else off those cores, as Nomad does, and follows reservations as allocations come and go.
//!
//! Owns the computation (pure, unit-tested); the client publishes its result on a watch
//! channel and each task runner applies it to its task through the supervisor. Must not touch
//! cgroups itself.

use controlplane::model::{Allocation, DesiredStatus, NodeCpuResources};

/// The cpus tasks without reserved cores should run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedCores {
    /// The node reported no cores: tasks keep their cgroup parent's cpus, untouched.
    Unknown,
    /// The usable cores no allocation reserved (never empty).
    Shared(Vec<u32>),
    /// Reservations cover every usable core. A cpuset cannot be empty, and a task without
    /// reserved cores must still run somewhere, so such tasks stay on all usable cores (held
    /// here) and share them with the reservations; the client logs a warning.
    AllReserved(Vec<u32>),
}

impl SharedCores {
    /// The cpus to confine shared tasks to; `None` = leave them alone.
    pub fn cpus(&self) -> Option<&[u32]> {
        match self {
            SharedCores::Unknown => None,
            SharedCores::Shared(cpus) | SharedCores::AllReserved(cpus) => Some(cpus),
        }
    }
}

/// The cores tasks may run on at all: the reservable cores the node fingerprinted, or, from a
/// node that lists none, `0..total_cpu_cores`.
pub fn usable_cores(cpu: &NodeCpuResources) -> Vec<u32> {
    let mut cores = if cpu.reservable_cpu_cores.is_empty() {
        (0..cpu.total_cpu_cores).collect()
    } else {
        cpu.reservable_cpu_cores.clone()
    };
    cores.sort_unstable();
    cores.dedup();
    cores
}

/// Whether `alloc` keeps its reserved cores on this node now: it has not reached a terminal
/// client status, and it is either still wanted or still has tasks running here
/// (`runner_live`: its allocation runner is stopping them, or the supervisor still holds them
/// after a node daemon restart). An allocation stopped before it ever ran reserves nothing.
pub fn holds_cores(alloc: &Allocation, runner_live: bool) -> bool {
    alloc.holds_resources() && (alloc.desired_status == DesiredStatus::Run || runner_live)
}

/// Every core reserved by one of the allocation's tasks.
pub fn reserved_cores(alloc: &Allocation) -> impl Iterator<Item = u32> + '_ {
    alloc
        .allocated_resources
        .tasks
        .values()
        .flat_map(|t| t.cpu.reserved_cores.iter().copied())
}

/// The shared cores: `usable` minus every core in `reserved` (cores outside `usable` are
/// ignored).
pub fn shared_cores(usable: &[u32], reserved: impl IntoIterator<Item = u32>) -> SharedCores {
    if usable.is_empty() {
        return SharedCores::Unknown;
    }
    let reserved: std::collections::BTreeSet<u32> = reserved.into_iter().collect();
    let mut shared: Vec<u32> = usable
        .iter()
        .copied()
        .filter(|c| !reserved.contains(c))
        .collect();
    shared.sort_unstable();
    shared.dedup();
    if shared.is_empty() {
        let mut all = usable.to_vec();
        all.sort_unstable();
        all.dedup();
        SharedCores::AllReserved(all)
    } else {
        SharedCores::Shared(shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use controlplane::model::{AllocatedTaskResources, ClientStatus};

    fn alloc(cores: &[&[u32]], desired: DesiredStatus, client: ClientStatus) -> Allocation {
        let mut a = Allocation {
            desired_status: desired,
            client_status: client,
            ..Default::default()
        };
        for (i, c) in cores.iter().enumerate() {
            let mut t = AllocatedTaskResources::default();
            t.cpu.reserved_cores = c.to_vec();
            a.allocated_resources.tasks.insert(format!("t{i}"), t);
        }
        a
    }

    #[test]
    fn shared_is_usable_minus_every_reservation() {
        let usable = [0, 1, 2, 3];
        assert_eq!(
            shared_cores(&usable, []),
            SharedCores::Shared(vec![0, 1, 2, 3])
        );
        assert_eq!(
            shared_cores(&usable, [2, 0]),
            SharedCores::Shared(vec![1, 3])
        );
        // Overlapping and out-of-range reservations change nothing more.
        assert_eq!(
            shared_cores(&usable, [1, 1, 7]),
            SharedCores::Shared(vec![0, 2, 3])
        );
        assert_eq!(shared_cores(&usable, [1]).cpus(), Some(&[0, 2, 3][..]));
    }

    #[test]
    fn every_core_reserved_leaves_shared_tasks_on_all_cores() {
        let s = shared_cores(&[0, 1], [1, 0]);
        assert_eq!(s, SharedCores::AllReserved(vec![0, 1]));
        assert_eq!(s.cpus(), Some(&[0, 1][..]), "never an empty cpuset");
    }

    #[test]
    fn a_node_without_cores_confines_nothing() {
        let s = shared_cores(&[], [0]);
        assert_eq!(s, SharedCores::Unknown);
        assert_eq!(s.cpus(), None);
    }

    #[test]
    fn usable_cores_fall_back_to_the_core_count() {
        let mut cpu = NodeCpuResources {
            total_cpu_cores: 3,
            ..Default::default()
        };
        assert_eq!(usable_cores(&cpu), vec![0, 1, 2]);
        cpu.reservable_cpu_cores = vec![3, 1, 1];
        assert_eq!(usable_cores(&cpu), vec![1, 3]);
        assert_eq!(
            usable_cores(&NodeCpuResources::default()),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn which_allocations_hold_their_cores() {
        use ClientStatus::*;
        use DesiredStatus::{Run, Stop};
        let running = alloc(&[&[1]], Run, Running);
        assert!(holds_cores(&running, false));
        assert!(holds_cores(&alloc(&[&[1]], Run, Pending), false));
        // Being stopped: held while its tasks still run here.
        let stopping = alloc(&[&[1]], Stop, Running);
        assert!(holds_cores(&stopping, true));
        assert!(!holds_cores(&stopping, false));
        // Finished: released whatever the runner says.
        assert!(!holds_cores(&alloc(&[&[1]], Run, Complete), true));
        assert!(!holds_cores(&alloc(&[&[1]], Stop, Failed), true));
        assert!(!holds_cores(&alloc(&[&[1]], Run, Lost), true));
    }

    #[test]
    fn reserved_cores_span_every_task() {
        let a = alloc(
            &[&[0, 2], &[], &[5]],
            DesiredStatus::Run,
            ClientStatus::Running,
        );
        let mut cores: Vec<u32> = reserved_cores(&a).collect();
        cores.sort_unstable();
        assert_eq!(cores, vec![0, 2, 5]);
        assert_eq!(
            shared_cores(&[0, 1, 2, 3, 4, 5], reserved_cores(&a)),
            SharedCores::Shared(vec![1, 3, 4])
        );
    }
}
