//! Unit tests of the cgroup logic on a fake cgroupfs tree (no root needed).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fake::FakeCgroupFs;
use super::*;

/// This host's mountinfo (hybrid: v1 controllers, cpu and cpuacct apart, cgroup2 at unified).
const HYBRID_MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

/// A systemd host on pure v2.
const V2_MOUNTINFO: &str = "\
25 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

/// An older distribution with cpu and cpuacct co-mounted and no cgroup2.
const V1_COMOUNTED_MOUNTINFO: &str = "\
30 24 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
31 24 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,memory
32 24 0:28 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
";

fn limits() -> CgroupLimits {
    CgroupLimits {
        memory_limit_bytes: 256 << 20,
        memory_reservation_bytes: Some(128 << 20),
        cpu_shares_mhz: 500,
        cpu_hard_limit: Some(CpuQuota {
            quota_us: 50_000,
            period_us: 100_000,
        }),
        cpuset_cpus: Some("0-1".to_string()),
        pids_max: Some(64),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    fs: Arc<FakeCgroupFs>,
    manager: CgroupManager,
}

fn fixture(layout_for: impl FnOnce(&Path) -> CgroupLayout) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let layout = layout_for(&root);
    let fs = Arc::new(FakeCgroupFs::new(&layout));
    let manager = CgroupManager::with_fs(layout, "noded", fs.clone()).unwrap();
    Fixture {
        _dir: dir,
        root,
        fs,
        manager,
    }
}

fn v2() -> Fixture {
    fixture(|root| CgroupLayout::v2_at(root))
}

fn hybrid() -> Fixture {
    fixture(|root| CgroupLayout::v1_at(root, &MANAGED_V1_CONTROLLERS, true))
}

fn pure_v1() -> Fixture {
    fixture(|root| CgroupLayout::v1_at(root, &MANAGED_V1_CONTROLLERS, false))
}

fn content(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

#[test]
fn detects_this_hybrid_host() {
    let layout = CgroupLayout::from_mountinfo(HYBRID_MOUNTINFO).unwrap();
    let CgroupLayout::V1 {
        hierarchies,
        unified,
    } = &layout
    else {
        panic!("expected v1: {layout:?}")
    };
    assert_eq!(
        unified.as_deref(),
        Some(Path::new("/sys/fs/cgroup/unified"))
    );
    assert_eq!(hierarchies.len(), 9);
    let cpu = hierarchies.iter().find(|h| h.has("cpu")).unwrap();
    assert_eq!(cpu.controllers, vec!["cpu"]);
    assert_eq!(cpu.mount_options, "cpu");
    assert_eq!(cpu.mount_point, PathBuf::from("/sys/fs/cgroup/cpu"));
    let managed: Vec<_> = layout
        .managed_v1()
        .iter()
        .map(|h| h.controllers.join(","))
        .collect();
    assert_eq!(
        managed,
        vec!["cpu", "cpuacct", "cpuset", "memory", "freezer", "pids"]
    );
    let systemd = hierarchies.iter().find(|h| h.has("name=systemd")).unwrap();
    assert_eq!(systemd.mount_options, "name=systemd");
}

#[test]
fn detects_pure_v2_and_co_mounted_v1() {
    let layout = CgroupLayout::from_mountinfo(V2_MOUNTINFO).unwrap();
    assert_eq!(layout, CgroupLayout::v2_at("/sys/fs/cgroup"));
    assert!(layout.is_v2());

    let layout = CgroupLayout::from_mountinfo(V1_COMOUNTED_MOUNTINFO).unwrap();
    let CgroupLayout::V1 {
        hierarchies,
        unified,
    } = &layout
    else {
        panic!()
    };
    assert!(unified.is_none());
    let cpu = hierarchies.iter().find(|h| h.has("cpuacct")).unwrap();
    assert_eq!(cpu.controllers, vec!["cpu", "cpuacct"]);
    assert_eq!(cpu.mount_options, "cpu,cpuacct");
    let systemd = hierarchies.iter().find(|h| h.has("name=systemd")).unwrap();
    assert_eq!(
        systemd.mount_options,
        "xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd"
    );
    assert_eq!(systemd.controllers, vec!["name=systemd"]);
}

#[test]
fn no_cgroup_mount_is_a_clear_error() {
    let err = CgroupLayout::from_mountinfo("22 27 0:21 / /proc rw - proc proc rw\n").unwrap_err();
    assert!(err.to_string().contains("no cgroup filesystem"), "{err}");
}

#[test]
fn v2_parent_gets_controllers_enabled() {
    let f = v2();
    assert_eq!(
        content(&f.root.join("cgroup.subtree_control")),
        "cpu cpuset memory pids"
    );
    assert_eq!(
        content(&f.root.join("noded/cgroup.subtree_control")),
        "cpu cpuset memory pids"
    );
    // A second manager on the same tree writes nothing new.
    let writes_before = f.fs.written().len();
    CgroupManager::with_fs(f.manager.layout().clone(), "noded", f.fs.clone()).unwrap();
    assert_eq!(f.fs.written().len(), writes_before);
}

#[test]
fn v2_limits_become_files() {
    let f = v2();
    let task = f.manager.create("alloc1-web", &limits()).unwrap();
    let dir = f.root.join("noded/alloc1-web");
    assert_eq!(task.paths(), vec![dir.clone()]);
    assert_eq!(content(&dir.join("memory.max")), (256u64 << 20).to_string());
    assert_eq!(content(&dir.join("memory.low")), (128u64 << 20).to_string());
    assert_eq!(content(&dir.join("memory.swap.max")), "0");
    // 500 MHz → 1 + 498 * 9999 / 262142 = 19
    assert_eq!(content(&dir.join("cpu.weight")), "19");
    assert_eq!(content(&dir.join("cpu.max")), "50000 100000");
    assert_eq!(content(&dir.join("cpuset.cpus")), "0-1");
    assert_eq!(content(&dir.join("pids.max")), "64");
}

#[test]
fn v2_defaults_leave_cpu_max_and_use_unlimited_pids() {
    let f = v2();
    let mut l = limits();
    l.cpu_hard_limit = None;
    l.pids_max = None;
    l.cpuset_cpus = None;
    l.memory_reservation_bytes = None;
    l.cpu_shares_mhz = 1;
    f.manager.create("t", &l).unwrap();
    let dir = f.root.join("noded/t");
    assert_eq!(content(&dir.join("cpu.max")), "max 100000");
    assert_eq!(content(&dir.join("pids.max")), "max");
    assert_eq!(content(&dir.join("memory.low")), "0");
    assert_eq!(content(&dir.join("cpu.weight")), "1");
}

#[test]
fn cpu_weight_mapping_covers_the_range() {
    let mut l = limits();
    for (mhz, weight) in [(0, 1), (2, 1), (1024, 39), (262_144, 10_000)] {
        l.cpu_shares_mhz = mhz;
        assert_eq!(l.v2_cpu_weight(), weight, "{mhz} MHz");
    }
    l.cpu_shares_mhz = 1;
    assert_eq!(l.v1_cpu_shares(), 2);
}

#[test]
fn v2_missing_controller_fails_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let layout = CgroupLayout::v2_at(dir.path());
    let fs = Arc::new(FakeCgroupFs::new(&layout));
    fs.set(&dir.path().join("cgroup.controllers"), "cpu pids");
    let manager = CgroupManager::with_fs(layout, "noded", fs.clone()).unwrap();
    let err = manager.create("t", &limits()).unwrap_err();
    assert!(
        matches!(
            err,
            CgroupError::MissingController {
                controller: "memory",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("noded/t"), "{err}");
    assert!(!dir.path().join("noded/t").exists());
    assert_eq!(manager.list().unwrap(), Vec::<String>::new());
}

#[test]
fn v1_limits_become_files_in_order_and_never_touch_kmem() {
    let f = hybrid();
    let task = f.manager.create("t1", &limits()).unwrap();
    let mem = f.root.join("memory/noded/t1");
    assert_eq!(
        content(&mem.join("memory.limit_in_bytes")),
        (256u64 << 20).to_string()
    );
    assert_eq!(
        content(&mem.join("memory.memsw.limit_in_bytes")),
        (256u64 << 20).to_string()
    );
    assert_eq!(
        content(&mem.join("memory.soft_limit_in_bytes")),
        (128u64 << 20).to_string()
    );
    assert_eq!(content(&mem.join("memory.swappiness")), "0");
    let cpu = f.root.join("cpu/noded/t1");
    assert_eq!(content(&cpu.join("cpu.shares")), "500");
    assert_eq!(content(&cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(content(&cpu.join("cpu.cfs_quota_us")), "50000");
    let cpuset = f.root.join("cpuset/noded/t1");
    assert_eq!(content(&cpuset.join("cpuset.cpus")), "0-1");
    assert_eq!(content(&cpuset.join("cpuset.mems")), "0");
    assert_eq!(content(&f.root.join("pids/noded/t1/pids.max")), "64");

    let writes = f.fs.written();
    let pos = |suffix: &str| {
        writes
            .iter()
            .position(|(p, _)| p.ends_with(suffix))
            .unwrap()
    };
    assert!(pos("t1/memory.limit_in_bytes") < pos("t1/memory.memsw.limit_in_bytes"));
    assert!(pos("t1/cpu.cfs_period_us") < pos("t1/cpu.cfs_quota_us"));
    assert!(!writes
        .iter()
        .any(|(p, _)| p.to_string_lossy().contains("kmem")));

    // memory, cpu, cpuset (cpus were asked for), pids and the v2 tree; the v2 tree does the
    // jobs of cpuacct and freezer.
    let dirs: Vec<String> = task
        .paths()
        .iter()
        .map(|p| p.strip_prefix(&f.root).unwrap().display().to_string())
        .collect();
    assert_eq!(
        dirs,
        [
            "memory/noded/t1",
            "cpu/noded/t1",
            "cpuset/noded/t1",
            "pids/noded/t1",
            "unified/noded/t1"
        ]
    );
}

#[test]
fn v1_cpuset_is_copied_from_the_parent_and_made_only_when_asked_for() {
    let f = pure_v1();
    // The parent got the root's cpus and mems when the manager was made.
    assert_eq!(content(&f.root.join("cpuset/noded/cpuset.cpus")), "0-3");
    assert_eq!(content(&f.root.join("cpuset/noded/cpuset.mems")), "0");
    let mut l = limits();
    l.cpuset_cpus = Some("1".to_string());
    l.cpu_shares_mhz = 0;
    let task = f.manager.create("t", &l).unwrap();
    assert_eq!(content(&f.root.join("cpuset/noded/t/cpuset.cpus")), "1");
    assert_eq!(content(&f.root.join("cpuset/noded/t/cpuset.mems")), "0");
    assert_eq!(content(&f.root.join("cpu/noded/t/cpu.shares")), "2");
    assert_eq!(
        content(&f.root.join("cpu/noded/t/cpu.cfs_quota_us")),
        "50000"
    );
    // Pure v1: cpuacct and freezer stand in for the missing v2 tree.
    assert_eq!(task.paths().len(), 6);

    l.cpuset_cpus = None;
    let task = f.manager.create("u", &l).unwrap();
    assert!(!f.root.join("cpuset/noded/u").exists());
    assert_eq!(task.paths().len(), 5);
}

#[test]
fn v2_cpuset_of_a_running_task_can_be_narrowed_and_widened() {
    let f = v2();
    let task = f.manager.create("shared", &limits()).unwrap();
    let cpus = f.root.join("noded/shared/cpuset.cpus");
    assert_eq!(task.cpuset().unwrap().as_deref(), Some("0-1"));
    task.set_cpuset("1").unwrap();
    assert_eq!(content(&cpus), "1");
    assert_eq!(task.cpuset().unwrap().as_deref(), Some("1"));
    task.set_cpuset(" 0-1 ").unwrap();
    assert_eq!(content(&cpus), "0-1");
    // Reattached handles (after a daemon restart) work the same.
    let reopened = f.manager.open("shared").unwrap().unwrap();
    reopened.set_cpuset("0").unwrap();
    assert_eq!(content(&cpus), "0");
}

#[test]
fn bad_cpu_lists_are_refused_before_anything_is_written() {
    let f = v2();
    let task = f.manager.create("t", &limits()).unwrap();
    let before = f.fs.written().len();
    for bad in ["", "  ", "all", "0;1", "1 2"] {
        let err = task.set_cpuset(bad).unwrap_err();
        assert!(
            matches!(
                err,
                CgroupError::InvalidLimits {
                    field: "cpuset_cpus",
                    ..
                }
            ),
            "{bad:?}: {err}"
        );
    }
    assert_eq!(f.fs.written().len(), before);
    assert_eq!(content(&f.root.join("noded/t/cpuset.cpus")), "0-1");
}

#[test]
fn v2_set_cpuset_without_the_cpuset_controller_names_the_cgroup() {
    let dir = tempfile::tempdir().unwrap();
    let layout = CgroupLayout::v2_at(dir.path());
    let fs = Arc::new(FakeCgroupFs::new(&layout));
    fs.set(&dir.path().join("cgroup.controllers"), "cpu memory pids");
    let manager = CgroupManager::with_fs(layout, "noded", fs.clone()).unwrap();
    let mut l = limits();
    l.cpuset_cpus = None;
    let task = manager.create("t", &l).unwrap();
    assert_eq!(task.cpuset().unwrap(), None);
    let err = task.set_cpuset("1").unwrap_err();
    assert!(
        matches!(
            err,
            CgroupError::MissingController {
                controller: "cpuset",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("noded/t"), "{err}");
}

#[test]
fn v1_cpuset_of_a_running_task_changes_and_keeps_its_mems() {
    let f = hybrid();
    let mut l = limits();
    l.cpuset_cpus = Some("0-3".to_string());
    let task = f.manager.create("shared", &l).unwrap();
    let dir = f.root.join("cpuset/noded/shared");
    task.set_cpuset("2-3").unwrap();
    assert_eq!(content(&dir.join("cpuset.cpus")), "2-3");
    assert_eq!(content(&dir.join("cpuset.mems")), "0");
    assert_eq!(task.cpuset().unwrap().as_deref(), Some("2-3"));

    // Should mems have been lost, they come back from the parent before the cpus are written.
    f.fs.set(&dir.join("cpuset.mems"), "");
    let before = f.fs.written().len();
    task.set_cpuset("0-3").unwrap();
    let writes: Vec<(PathBuf, String)> = f.fs.written()[before..].to_vec();
    assert_eq!(
        writes,
        vec![
            (dir.join("cpuset.mems"), "0".to_string()),
            (dir.join("cpuset.cpus"), "0-3".to_string()),
        ]
    );

    // Cpus outside the parent's are refused by the kernel; the error names the file.
    let err = task.set_cpuset("4-5").unwrap_err();
    assert!(
        err.to_string().contains("cpuset/noded/shared/cpuset.cpus"),
        "{err}"
    );
    assert_eq!(content(&dir.join("cpuset.cpus")), "0-3");
}

#[test]
fn v1_task_made_without_cpus_has_no_cpuset_to_change() {
    let f = hybrid();
    let mut l = limits();
    l.cpuset_cpus = None;
    let task = f.manager.create("pinned-nowhere", &l).unwrap();
    assert_eq!(task.cpuset().unwrap(), None);
    let err = task.set_cpuset("1").unwrap_err();
    assert!(matches!(err, CgroupError::NoCpuset { .. }), "{err}");
    assert!(err.to_string().contains("pinned-nowhere"), "{err}");
    assert!(!f.root.join("cpuset/noded/pinned-nowhere").exists());
}

#[test]
fn join_handle_on_hybrid_has_v1_procs_and_a_v2_dir() {
    let f = hybrid();
    let task = f.manager.create("t", &limits()).unwrap();
    let join = task.join_handle().unwrap();
    let procs: Vec<&Path> = join.procs_fds().map(|(_, p)| p).collect();
    assert_eq!(procs.len(), 4);
    // `tasks`, not `cgroup.procs`: the single-thread join skips the global threadgroup lock.
    assert!(procs.iter().all(|p| p.ends_with("noded/t/tasks")));
    assert_eq!(
        join.clone_into_path(),
        Some(f.root.join("unified/noded/t").as_path())
    );
    let mounts: Vec<(&str, &str, &str)> = join
        .jail_mounts()
        .iter()
        .map(|m| (m.fstype, m.data.as_str(), m.dir_name.as_str()))
        .collect();
    assert!(mounts.contains(&("cgroup", "memory", "memory")));
    assert!(mounts.contains(&("cgroup", "pids", "pids")));
    assert!(mounts.contains(&("cgroup2", "", "unified")));
    assert!(!mounts
        .iter()
        .any(|(_, data, _)| *data == "freezer" || *data == "cpuacct"));
    assert_eq!(mounts.len(), 5);
}

#[test]
fn join_handle_on_v2_is_one_directory() {
    let f = v2();
    let task = f.manager.create("t", &limits()).unwrap();
    let join = task.join_handle().unwrap();
    assert_eq!(join.procs_fds().count(), 0);
    assert!(join.clone_into_fd().is_some());
    assert_eq!(join.jail_mounts().len(), 1);
    assert_eq!(join.jail_mounts()[0].dir_name, "");
}

#[test]
fn v2_stats_are_parsed() {
    let f = v2();
    let task = f.manager.create("t", &limits()).unwrap();
    let dir = f.root.join("noded/t");
    f.fs.set(
        &dir.join("cpu.stat"),
        "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 10\nnr_throttled 3\nthrottled_usec 250\n",
    );
    f.fs.set(&dir.join("memory.current"), "4096000\n");
    f.fs.set(&dir.join("memory.peak"), "8192000\n");
    f.fs.set(
        &dir.join("memory.stat"),
        "anon 3000000\nfile 1000000\nkernel 96000\n",
    );
    f.fs.set(&dir.join("pids.current"), "3\n");
    let stats = task.stats().unwrap();
    assert_eq!(
        stats,
        CgroupStats {
            cpu_usage_ns: 1_500_000,
            cpu_user_ns: 1_000_000,
            cpu_system_ns: 500_000,
            cpu_periods: 10,
            cpu_throttled_periods: 3,
            cpu_throttled_time_ns: 250_000,
            memory_usage_bytes: 4_096_000,
            memory_rss_bytes: 3_000_000,
            memory_cache_bytes: 1_000_000,
            memory_max_usage_bytes: Some(8_192_000),
            memory_failcnt: None,
            pids_current: 3,
        }
    );
}

#[test]
fn v1_stats_are_parsed() {
    let f = pure_v1();
    let task = f.manager.create("t", &limits()).unwrap();
    let at = |c: &str, file: &str| f.root.join(c).join("noded/t").join(file);
    f.fs.set(&at("cpuacct", "cpuacct.usage"), "123456789\n");
    f.fs.set(&at("cpuacct", "cpuacct.usage_user"), "100000000\n");
    f.fs.set(&at("cpuacct", "cpuacct.usage_sys"), "23456789\n");
    f.fs.set(
        &at("cpu", "cpu.stat"),
        "nr_periods 7\nnr_throttled 2\nthrottled_time 999\n",
    );
    f.fs.set(&at("memory", "memory.usage_in_bytes"), "5000\n");
    f.fs.set(&at("memory", "memory.max_usage_in_bytes"), "9000\n");
    f.fs.set(&at("memory", "memory.failcnt"), "4\n");
    f.fs.set(
        &at("memory", "memory.stat"),
        "cache 100\nrss 200\ntotal_cache 110\ntotal_rss 220\n",
    );
    f.fs.set(&at("pids", "pids.current"), "2\n");
    let stats = task.stats().unwrap();
    assert_eq!(stats.cpu_usage_ns, 123_456_789);
    assert_eq!(stats.cpu_user_ns, 100_000_000);
    assert_eq!(stats.cpu_system_ns, 23_456_789);
    assert_eq!(
        (
            stats.cpu_periods,
            stats.cpu_throttled_periods,
            stats.cpu_throttled_time_ns
        ),
        (7, 2, 999)
    );
    assert_eq!(stats.memory_usage_bytes, 5000);
    assert_eq!(stats.memory_max_usage_bytes, Some(9000));
    assert_eq!(stats.memory_failcnt, Some(4));
    assert_eq!(
        (stats.memory_rss_bytes, stats.memory_cache_bytes),
        (220, 110)
    );
    assert_eq!(stats.pids_current, 2);

    // Kernels without usage_user/usage_sys: USER_HZ ticks from cpuacct.stat.
    std::fs::remove_file(at("cpuacct", "cpuacct.usage_user")).unwrap();
    f.fs.set(&at("cpuacct", "cpuacct.stat"), "user 3\nsystem 1\n");
    let stats = task.stats().unwrap();
    assert_eq!(
        (stats.cpu_user_ns, stats.cpu_system_ns),
        (30_000_000, 10_000_000)
    );
}

#[test]
fn hybrid_cpu_usage_comes_from_the_v2_tree() {
    let f = hybrid();
    let task = f.manager.create("t", &limits()).unwrap();
    f.fs.set(
        &f.root.join("unified/noded/t/cpu.stat"),
        "usage_usec 700\nuser_usec 500\nsystem_usec 200\n",
    );
    f.fs.set(
        &f.root.join("cpu/noded/t/cpu.stat"),
        "nr_periods 3\nnr_throttled 1\nthrottled_time 50\n",
    );
    let stats = task.stats().unwrap();
    assert_eq!(
        (stats.cpu_usage_ns, stats.cpu_user_ns, stats.cpu_system_ns),
        (700_000, 500_000, 200_000)
    );
    assert_eq!(
        (
            stats.cpu_periods,
            stats.cpu_throttled_periods,
            stats.cpu_throttled_time_ns
        ),
        (3, 1, 50)
    );
}

#[test]
fn garbage_in_a_stats_file_names_the_file() {
    let f = v2();
    let task = f.manager.create("t", &limits()).unwrap();
    f.fs.set(&f.root.join("noded/t/memory.current"), "lots\n");
    let err = task.stats().unwrap_err();
    assert!(err.to_string().contains("noded/t/memory.current"), "{err}");
    assert!(err.to_string().contains("expected a number"), "{err}");
}

#[test]
fn oom_kills_are_counted_on_v1_and_v2() {
    let f = v2();
    let task = f.manager.create("t", &limits()).unwrap();
    assert_eq!(task.oom_kill_count().unwrap(), 0);
    f.fs.set(
        &f.root.join("noded/t/memory.events"),
        "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n",
    );
    assert_eq!(task.oom_kill_count().unwrap(), 2);

    let f = hybrid();
    let task = f.manager.create("t", &limits()).unwrap();
    assert_eq!(task.oom_kill_count().unwrap(), 0);
    f.fs.set(
        &f.root.join("memory/noded/t/memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
    );
    assert_eq!(task.oom_kill_count().unwrap(), 1);
}

#[test]
fn sigkill_uses_cgroup_kill_where_there_is_a_v2_tree() {
    let f = hybrid();
    let task = f.manager.create("t", &limits()).unwrap();
    for dir in task.paths() {
        f.fs.add_process(&dir, 4242);
    }
    assert_eq!(task.pids().unwrap(), vec![4242]);
    task.signal_all(libc::SIGKILL).unwrap();
    assert!(f
        .fs
        .written()
        .iter()
        .any(|(p, v)| p.ends_with("unified/noded/t/cgroup.kill") && v == "1"));
    assert!(f.fs.signals.lock().unwrap().is_empty());
    assert_eq!(task.pids().unwrap(), Vec::<i32>::new());
}

#[test]
fn other_signals_freeze_signal_thaw_on_v2() {
    let f = v2();
    let task = f.manager.create("t", &limits()).unwrap();
    let dir = f.root.join("noded/t");
    f.fs.add_process(&dir, 10);
    f.fs.add_process(&dir, 11);
    task.signal_all(libc::SIGTERM).unwrap();
    assert_eq!(
        *f.fs.signals.lock().unwrap(),
        vec![(10, libc::SIGTERM), (11, libc::SIGTERM)]
    );
    let freezes: Vec<String> =
        f.fs.written()
            .into_iter()
            .filter(|(p, _)| p.ends_with("cgroup.freeze"))
            .map(|(_, v)| v)
            .collect();
    assert_eq!(freezes, vec!["1", "0"]);
    assert_eq!(content(&dir.join("cgroup.freeze")), "0");
}

#[test]
fn pure_v1_uses_the_freezer() {
    let f = pure_v1();
    let task = f.manager.create("t", &limits()).unwrap();
    for dir in task.paths() {
        f.fs.add_process(&dir, 77);
    }
    task.signal_all(libc::SIGKILL).unwrap();
    let states: Vec<String> =
        f.fs.written()
            .into_iter()
            .filter(|(p, _)| p.ends_with("freezer.state"))
            .map(|(_, v)| v)
            .collect();
    assert_eq!(states, vec!["FROZEN", "THAWED"]);
    assert_eq!(*f.fs.signals.lock().unwrap(), vec![(77, libc::SIGKILL)]);
    assert!(task.pids().unwrap().is_empty());
}

#[test]
fn destroy_kills_leftovers_and_removes_every_directory() {
    for f in [v2(), hybrid(), pure_v1()] {
        let task = f.manager.create("t", &limits()).unwrap();
        for dir in task.paths() {
            f.fs.add_process(&dir, 500);
        }
        assert_eq!(f.manager.list().unwrap(), vec!["t"]);
        task.destroy().unwrap();
        for dir in task.paths() {
            assert!(!dir.exists(), "{} left behind", dir.display());
        }
        assert!(f.manager.list().unwrap().is_empty());
        assert!(f.manager.open("t").unwrap().is_none());
        // Idempotent.
        task.destroy().unwrap();
        f.manager.remove_parent().unwrap();
    }
}

#[test]
fn destroy_reports_processes_that_will_not_die() {
    let f = hybrid();
    let task = f.manager.create("t", &limits()).unwrap();
    f.fs.immortal.lock().unwrap().insert(9);
    for dir in task.paths() {
        f.fs.add_process(&dir, 9);
    }
    let err = task.destroy().unwrap_err();
    assert!(
        matches!(err, CgroupError::Busy { ref pids, attempts: DESTROY_ATTEMPTS, .. } if pids == &vec![9]),
        "{err}"
    );
    assert!(
        err.to_string().contains("still holds processes [9]"),
        "{err}"
    );
}

#[test]
fn open_reattaches_and_list_finds_partial_leftovers() {
    let f = hybrid();
    let task = f.manager.create("t", &limits()).unwrap();
    let reopened = f.manager.open("t").unwrap().unwrap();
    assert_eq!(reopened.paths(), task.paths());
    // A crash halfway through destroy leaves the cgroup on some hierarchies only.
    std::fs::remove_dir_all(f.root.join("memory/noded/t")).unwrap();
    let partial = f.manager.open("t").unwrap().unwrap();
    assert_eq!(partial.paths().len(), task.paths().len() - 1);
    assert_eq!(f.manager.list().unwrap(), vec!["t"]);
    partial.destroy().unwrap();
    assert!(f.manager.list().unwrap().is_empty());
}

#[test]
fn create_refuses_an_existing_cgroup_and_bad_names() {
    let f = v2();
    f.manager.create("t", &limits()).unwrap();
    let err = f.manager.create("t", &limits()).unwrap_err();
    assert!(matches!(err, CgroupError::AlreadyExists { .. }), "{err}");
    for bad in ["", "..", "../x", "a/b", ".hidden", "sp ace"] {
        let err = f.manager.create(bad, &limits()).unwrap_err();
        assert!(
            matches!(err, CgroupError::InvalidName { .. }),
            "{bad}: {err}"
        );
    }
    let fs = Arc::new(FakeCgroupFs::new(f.manager.layout()));
    assert!(CgroupManager::with_fs(f.manager.layout().clone(), "a/../b", fs).is_err());
}

#[test]
fn bad_limits_are_rejected_before_anything_is_written() {
    let f = v2();
    type Mutation = Box<dyn Fn(&mut CgroupLimits)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("memory_limit_bytes", Box::new(|l| l.memory_limit_bytes = 0)),
        (
            "memory_reservation_bytes",
            Box::new(|l| l.memory_reservation_bytes = Some(1 << 40)),
        ),
        ("cpu_shares_mhz", Box::new(|l| l.cpu_shares_mhz = 1_000_000)),
        (
            "cpu_hard_limit.period_us",
            Box::new(|l| {
                l.cpu_hard_limit = Some(CpuQuota {
                    quota_us: 5000,
                    period_us: 10,
                })
            }),
        ),
        (
            "cpu_hard_limit.quota_us",
            Box::new(|l| {
                l.cpu_hard_limit = Some(CpuQuota {
                    quota_us: 5,
                    period_us: 100_000,
                })
            }),
        ),
        (
            "cpuset_cpus",
            Box::new(|l| l.cpuset_cpus = Some("all".to_string())),
        ),
        ("pids_max", Box::new(|l| l.pids_max = Some(0))),
    ];
    let writes_before = f.fs.written().len();
    for (field, mutate) in cases {
        let mut l = limits();
        mutate(&mut l);
        let err = f.manager.create("t", &l).unwrap_err();
        assert!(
            matches!(err, CgroupError::InvalidLimits { field: f, .. } if f == field),
            "{field}: {err}"
        );
    }
    assert_eq!(f.fs.written().len(), writes_before);
    assert!(f.manager.list().unwrap().is_empty());
}

/// The directories of `name` under the parent, on every hierarchy of the fake tree.
fn dirs_named(root: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for hierarchy in std::fs::read_dir(root).unwrap() {
        let candidate = hierarchy.unwrap().path().join("noded").join(name);
        if candidate.is_dir() {
            found.push(candidate);
        }
    }
    found.sort();
    found
}

fn spare_names(root: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for hierarchy in std::fs::read_dir(root).unwrap() {
        let parent = hierarchy.unwrap().path().join("noded");
        if let Ok(children) = std::fs::read_dir(parent) {
            for child in children {
                let name = child.unwrap().file_name().to_string_lossy().into_owned();
                if name.starts_with(".spare-") {
                    names.insert(name);
                }
            }
        }
    }
    names
}

#[test]
fn spares_become_task_cgroups_by_rename_with_the_task_limits() {
    let f = hybrid();
    assert!(f.manager.uses_spares());
    f.manager.fill_spares().unwrap();
    assert_eq!(f.manager.spares_ready(), SPARE_CGROUPS);
    let spares = spare_names(&f.root);
    assert_eq!(spares.len(), SPARE_CGROUPS);
    // A spare spans the v1 hierarchies of a task with a cpuset, not the v2 tree (which
    // cannot be renamed), and its cpuset can take tasks already.
    let one = spares.iter().next().unwrap();
    let spare_dirs = dirs_named(&f.root, one);
    assert_eq!(spare_dirs.len(), 4, "{spare_dirs:?}");
    assert!(!spare_dirs
        .iter()
        .any(|d| d.starts_with(f.root.join("unified"))));
    assert!(!content(&f.root.join("cpuset/noded").join(one).join("cpuset.mems")).is_empty());
    // Spares are no task cgroups.
    assert!(f.manager.list().unwrap().is_empty());

    let task = f.manager.create("t1", &limits()).unwrap();
    assert_eq!(f.manager.spares_ready(), SPARE_CGROUPS - 1);
    assert_eq!(spare_names(&f.root).len(), SPARE_CGROUPS - 1);
    assert_eq!(dirs_named(&f.root, "t1").len(), 5);
    assert_eq!(task.paths().len(), 5);
    let memory = f.root.join("memory/noded/t1");
    assert_eq!(
        content(&memory.join("memory.limit_in_bytes")),
        (256u64 << 20).to_string()
    );
    assert_eq!(content(&f.root.join("cpuset/noded/t1/cpuset.cpus")), "0-1");
    assert_eq!(content(&f.root.join("pids/noded/t1/pids.max")), "64");
    assert_eq!(f.manager.list().unwrap(), vec!["t1".to_string()]);

    // Refilled, then everything (spares included) goes with the parent.
    f.manager.fill_spares().unwrap();
    assert_eq!(f.manager.spares_ready(), SPARE_CGROUPS);
    task.destroy().unwrap();
    f.manager.remove_parent().unwrap();
    assert!(spare_names(&f.root).is_empty());
    assert!(!f.root.join("memory/noded").exists());
    // A closed manager makes no spares any more.
    f.manager.fill_spares().unwrap();
    assert_eq!(f.manager.spares_ready(), 0);
}

#[test]
fn a_taken_name_fails_without_leaving_the_spare_half_renamed() {
    let f = pure_v1();
    f.manager.fill_spares().unwrap();
    let before = spare_names(&f.root);
    // "t1" exists on one hierarchy only (a half-removed task): the rename stops there.
    std::fs::create_dir_all(f.root.join("pids/noded/t1")).unwrap();
    let err = f.manager.create("t1", &limits()).unwrap_err();
    assert!(matches!(err, CgroupError::AlreadyExists { .. }), "{err}");
    // The spare that was tried is gone entirely; the other one is untouched.
    let after = spare_names(&f.root);
    assert_eq!(after.len(), before.len() - 1);
    for name in &after {
        assert_eq!(dirs_named(&f.root, name).len(), 6, "{name}");
    }
    assert_eq!(
        dirs_named(&f.root, "t1"),
        vec![f.root.join("pids/noded/t1")]
    );
}

#[test]
fn a_vanished_spare_falls_back_to_mkdir_and_tasks_without_cpuset_never_take_one() {
    let f = hybrid();
    f.manager.fill_spares().unwrap();
    for name in spare_names(&f.root) {
        for dir in dirs_named(&f.root, &name) {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
    let task = f.manager.create("t1", &limits()).unwrap();
    assert_eq!(dirs_named(&f.root, "t1").len(), 5);
    task.destroy().unwrap();

    f.manager.fill_spares().unwrap();
    let ready = f.manager.spares_ready();
    let no_cpuset = CgroupLimits {
        cpuset_cpus: None,
        ..limits()
    };
    f.manager.create("t2", &no_cpuset).unwrap();
    assert_eq!(f.manager.spares_ready(), ready);
    assert!(!f.root.join("cpuset/noded/t2").exists());
}

#[test]
fn pure_v2_makes_no_spares_and_a_new_manager_clears_old_ones() {
    let f = v2();
    assert!(!f.manager.uses_spares());
    f.manager.fill_spares().unwrap();
    assert_eq!(f.manager.spares_ready(), 0);

    let f = hybrid();
    f.manager.fill_spares().unwrap();
    assert_eq!(spare_names(&f.root).len(), SPARE_CGROUPS);
    // The next process on this parent (a restarted supervisor) starts clean.
    let layout = CgroupLayout::v1_at(&f.root, &MANAGED_V1_CONTROLLERS, true);
    let again = CgroupManager::with_fs(layout, "noded", f.fs.clone()).unwrap();
    assert!(spare_names(&f.root).is_empty());
    assert_eq!(again.spares_ready(), 0);
}

#[test]
fn spares_are_made_with_the_latest_limits_and_a_matching_one_needs_no_writes() {
    let f = hybrid();
    // Before any start, spares carry no limits: the first start writes them all.
    f.manager.fill_spares().unwrap();
    let before = f.fs.written().len();
    f.manager.create("t1", &limits()).unwrap();
    let first_writes = f.fs.written().len() - before;
    assert!(first_writes >= 8, "{first_writes} writes");

    // The refill makes its spare with t1's limits, off the start path.
    f.manager.fill_spares().unwrap();
    let made = f.fs.written();
    let spare_memory = made
        .iter()
        .find(|(path, _)| {
            path.to_string_lossy().contains("/.spare-") && path.ends_with("memory.limit_in_bytes")
        })
        .expect("the refill wrote the memory limit into its spare");
    assert_eq!(spare_memory.1, (256u64 << 20).to_string());

    // A start with the same limits takes that spare and writes nothing into its v1 dirs.
    let before = f.fs.written().len();
    f.manager.create("t2", &limits()).unwrap();
    let v1_writes: Vec<_> = f.fs.written()[before..]
        .iter()
        .filter(|(path, _)| !path.starts_with(f.root.join("unified")))
        .cloned()
        .collect();
    assert!(v1_writes.is_empty(), "{v1_writes:?}");
    let t2 = f.root.join("memory/noded/t2");
    assert_eq!(
        content(&t2.join("memory.limit_in_bytes")),
        (256u64 << 20).to_string()
    );
    assert_eq!(
        content(&t2.join("memory.soft_limit_in_bytes")),
        (128u64 << 20).to_string()
    );
    assert_eq!(
        content(&f.root.join("cpu/noded/t2/cpu.shares")),
        limits().v1_cpu_shares().to_string()
    );
    assert_eq!(content(&f.root.join("cpuset/noded/t2/cpuset.cpus")), "0-1");
    assert_eq!(content(&f.root.join("pids/noded/t2/pids.max")), "64");

    // Other limits: whatever spare is left gets every limit written.
    f.manager.fill_spares().unwrap();
    let other = CgroupLimits {
        memory_limit_bytes: 64 << 20,
        memory_reservation_bytes: None,
        pids_max: Some(10),
        ..limits()
    };
    let before = f.fs.written().len();
    f.manager.create("t3", &other).unwrap();
    assert!(f.fs.written().len() - before >= 5);
    let t3 = f.root.join("memory/noded/t3");
    assert_eq!(
        content(&t3.join("memory.limit_in_bytes")),
        (64u64 << 20).to_string()
    );
    assert_eq!(content(&f.root.join("pids/noded/t3/pids.max")), "10");
}

#[test]
fn a_spare_made_for_other_limits_gets_exactly_the_new_ones() {
    let f = hybrid();
    // The first start writes its limits; the refill then makes spares with them: a low
    // memory limit, a reservation and a CPU quota.
    let small = CgroupLimits {
        memory_limit_bytes: 50 << 20,
        memory_reservation_bytes: Some(40 << 20),
        ..limits()
    };
    f.manager.fill_spares().unwrap();
    f.manager.create("t1", &small).unwrap();
    f.manager.fill_spares().unwrap();
    // The next task asks for more memory, no reservation and no quota (seen on this host:
    // raising memory.limit_in_bytes above a spare's memsw limit is EINVAL, and the old
    // reservation and quota stayed).
    let big = CgroupLimits {
        memory_limit_bytes: 300 << 20,
        memory_reservation_bytes: None,
        cpu_hard_limit: None,
        ..limits()
    };
    let ready = f.manager.spares_ready();
    f.manager.create("t2", &big).unwrap();
    assert_eq!(f.manager.spares_ready(), ready - 1, "t2 took a spare");
    let memory = f.root.join("memory/noded/t2");
    let big_bytes = (300u64 << 20).to_string();
    assert_eq!(content(&memory.join("memory.limit_in_bytes")), big_bytes);
    assert_eq!(
        content(&memory.join("memory.memsw.limit_in_bytes")),
        big_bytes
    );
    assert_eq!(content(&memory.join("memory.soft_limit_in_bytes")), "-1");
    assert_eq!(content(&f.root.join("cpu/noded/t2/cpu.cfs_quota_us")), "-1");
    // And back down: a spare made for `big` takes `small`.
    f.manager.fill_spares().unwrap();
    f.manager.create("t3", &small).unwrap();
    let memory = f.root.join("memory/noded/t3");
    let small_bytes = (50u64 << 20).to_string();
    assert_eq!(content(&memory.join("memory.limit_in_bytes")), small_bytes);
    assert_eq!(
        content(&memory.join("memory.memsw.limit_in_bytes")),
        small_bytes
    );
    assert_eq!(
        content(&memory.join("memory.soft_limit_in_bytes")),
        (40u64 << 20).to_string()
    );
    assert_eq!(
        content(&f.root.join("cpu/noded/t3/cpu.cfs_quota_us")),
        "50000"
    );
}

#[test]
fn a_parent_has_one_claim_at_a_time() {
    let f = hybrid();
    let first = f.manager.claim_parent().unwrap();
    let err = f.manager.claim_parent().unwrap_err();
    assert!(matches!(err, CgroupError::ParentClaimed { .. }), "{err}");
    assert!(
        err.to_string().contains("one supervisor per cgroup parent"),
        "{err}"
    );
    drop(first);
    f.manager.claim_parent().unwrap();
}
