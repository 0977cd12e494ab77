//! `noded-verify`: runs INSIDE a sandbox and reports what the process actually sees.
//!
//! Used by privileged tests to check isolation from the inside rather than trusting the
//! configuration the host wrote. Subcommands:
//! - (none) or `report`: one JSON object on stdout (identity, namespaces, capabilities,
//!   seccomp, writable paths, cgroup limits, cwd, environment, open fds, network interfaces).
//! - `escape`: tries to break out in many ways and prints one JSON line per attempt:
//!   `{"name": ..., "blocked": bool, "detail": ...}`. Nothing it tries is destructive: device
//!   and `/proc/sys` files are only opened, never written.
//! - `hog MB`: allocates and touches MB MiB, then prints `allocated MB MiB`.
//! - `sleep SECS`: sleeps.
//!
//! Optional hints from the environment: `NODED_VERIFY_HOST_PID` (a pid outside the sandbox),
//! `NODED_VERIFY_HOST_MARKER` (a host path that must stay invisible), `NODED_VERIFY_ALLOWED_ENV`
//! (comma-separated variable names the environment may hold).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use serde_json::{json, Value};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(String::as_str) {
        None | Some("report") => {
            println!("{}", report());
            0
        }
        Some("escape") => {
            escape();
            0
        }
        Some("hog") => match args.get(2).and_then(|s| s.parse::<usize>().ok()) {
            Some(mb) => hog(mb),
            None => usage("hog needs a size in MiB, e.g. `noded-verify hog 256`"),
        },
        Some("sleep") => match args.get(2).and_then(|s| s.parse::<u64>().ok()) {
            Some(secs) => {
                std::thread::sleep(std::time::Duration::from_secs(secs));
                0
            }
            None => usage("sleep needs seconds, e.g. `noded-verify sleep 5`"),
        },
        Some(other) => usage(&format!("unknown subcommand {other:?}")),
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

fn usage(problem: &str) -> i32 {
    eprintln!(
        "noded-verify: {problem}\nusage: noded-verify [report | escape | hog MB | sleep SECS]"
    );
    2
}

/// Unsafe libc calls of the verifier, each wrapped once.
mod sys {
    /// Raw syscall returning `Err(errno)` on failure.
    pub fn syscall6(nr: libc::c_long, a: [libc::c_long; 6]) -> Result<libc::c_long, i32> {
        // SAFETY: the callers pass integer arguments or pointers to live, properly sized
        // buffers for the syscalls they name; the kernel validates everything else.
        let ret = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
        if ret == -1 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            Ok(ret)
        }
    }

    /// fork(); the child runs `child` and exits with its return value.
    pub fn fork_run(child: impl FnOnce() -> i32) -> Result<libc::pid_t, i32> {
        // SAFETY: the verifier is single-threaded, so the child may run arbitrary code.
        let pid = unsafe { libc::fork() };
        match pid {
            -1 => Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)),
            0 => {
                let code = child();
                // SAFETY: leaving the child without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            pid => Ok(pid),
        }
    }

    /// waitpid(pid) → exit code, or 128 + signal.
    pub fn wait(pid: libc::pid_t) -> i32 {
        let mut status = 0;
        // SAFETY: status is a valid int to write to.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret == -1 {
            return -1;
        }
        if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        }
    }

    pub fn errno_text(errno: i32) -> String {
        std::io::Error::from_raw_os_error(errno).to_string()
    }
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn status_field(status: &str, key: &str) -> Value {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .map(Value::String)
        .unwrap_or(Value::Null)
}

/// Whether creating a file in `dir` works (the file is removed again).
fn writable(dir: &str) -> (bool, String) {
    let probe = Path::new(dir).join(format!(".noded-verify-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            (true, "created a file".to_string())
        }
        Err(e) => (false, e.to_string()),
    }
}

/// (memory limit text, pids limit text, layout) as the task's own cgroup shows them.
fn cgroup_limits() -> (Option<String>, Option<String>, &'static str) {
    if Path::new("/sys/fs/cgroup/memory.max").exists()
        || Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
    {
        return (
            read_trim("/sys/fs/cgroup/memory.max"),
            read_trim("/sys/fs/cgroup/pids.max"),
            "v2",
        );
    }
    if Path::new("/sys/fs/cgroup/memory").exists() {
        return (
            read_trim("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
            read_trim("/sys/fs/cgroup/pids/pids.max"),
            "v1",
        );
    }
    (None, None, "none")
}

fn list_dir(path: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(path)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Open fds, without the one used to list them.
fn open_fds() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect();
    // The read_dir handle itself is the highest-numbered fd that points at /proc/self/fd.
    fds.retain(|fd| {
        std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .map(|t| !t.to_string_lossy().ends_with("/fd"))
            .unwrap_or(false)
    });
    fds.sort();
    fds
}

fn report() -> Value {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let pid = std::process::id();
    let visible_pids = list_dir("/proc")
        .iter()
        .filter(|n| n.parse::<u32>().is_ok())
        .count();
    let (memory, pids, layout) = cgroup_limits();
    let (root_writable, root_detail) = writable("/");
    let (usr_writable, usr_detail) = writable("/usr");
    let env: BTreeMap<String, String> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let groups: Vec<u32> = nix::unistd::getgroups()
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default();
    json!({
        "pid": pid,
        "ppid": nix::unistd::getppid().as_raw(),
        "proc1_is_self": pid == 1,
        "proc1_cmdline": std::fs::read("/proc/1/cmdline").ok().map(|b| String::from_utf8_lossy(&b).replace('\0', " ").trim().to_string()),
        "visible_pids": visible_pids,
        "hostname": nix::unistd::gethostname().ok().map(|h| h.to_string_lossy().into_owned()),
        "uid": nix::unistd::getuid().as_raw(),
        "euid": nix::unistd::geteuid().as_raw(),
        "gid": nix::unistd::getgid().as_raw(),
        "egid": nix::unistd::getegid().as_raw(),
        "groups": groups,
        "cap_inh": status_field(&status, "CapInh:"),
        "cap_prm": status_field(&status, "CapPrm:"),
        "cap_eff": status_field(&status, "CapEff:"),
        "cap_bnd": status_field(&status, "CapBnd:"),
        "cap_amb": status_field(&status, "CapAmb:"),
        "no_new_privs": status_field(&status, "NoNewPrivs:"),
        "seccomp": status_field(&status, "Seccomp:"),
        "root_writable": root_writable,
        "root_write_detail": root_detail,
        "usr_writable": usr_writable,
        "usr_write_detail": usr_detail,
        "cgroup_layout": layout,
        "memory_limit": memory,
        "pids_limit": pids,
        "proc_self_cgroup": read_trim("/proc/self/cgroup"),
        "cwd": std::env::current_dir().ok().map(|p| p.display().to_string()),
        "env": env,
        "open_fds": open_fds(),
        "net_interfaces": list_dir("/sys/class/net"),
        "dev": list_dir("/dev"),
        "root_entries": list_dir("/"),
        "mount_count": std::fs::read_to_string("/proc/self/mountinfo").map(|m| m.lines().count()).unwrap_or(0),
    })
}

/// One escape attempt's outcome.
fn attempt(name: &str, blocked: bool, detail: impl Into<String>) {
    let line = json!({"name": name, "blocked": blocked, "detail": detail.into()});
    println!("{line}");
}

fn errno_of(r: Result<libc::c_long, i32>) -> Result<libc::c_long, String> {
    r.map_err(sys::errno_text)
}

fn host_pid() -> Option<i32> {
    std::env::var("NODED_VERIFY_HOST_PID")
        .ok()
        .and_then(|s| s.parse().ok())
}

/// A directory of the sandbox the process can write to, for probes that need one.
fn scratch_dir() -> Option<&'static str> {
    ["/tmp", "/local", "/alloc"]
        .into_iter()
        .find(|d| writable(d).0)
}

fn escape() {
    // Host pids: neither visible in /proc nor signalable.
    match host_pid() {
        Some(pid) => {
            let visible = Path::new(&format!("/proc/{pid}")).exists();
            attempt(
                "see_host_pid",
                !visible,
                format!("/proc/{pid} exists: {visible}"),
            );
            let r = errno_of(sys::syscall6(
                libc::SYS_kill,
                [pid as libc::c_long, 0, 0, 0, 0, 0],
            ));
            attempt(
                "signal_host_pid",
                r.is_err(),
                format!("kill({pid}, 0): {r:?}"),
            );
            let r = errno_of(sys::syscall6(
                libc::SYS_ptrace,
                [
                    libc::PTRACE_ATTACH as libc::c_long,
                    pid as libc::c_long,
                    0,
                    0,
                    0,
                    0,
                ],
            ));
            attempt(
                "ptrace_attach_host_pid",
                r.is_err(),
                format!("PTRACE_ATTACH {pid}: {r:?}"),
            );
        }
        None => attempt(
            "see_host_pid",
            true,
            "NODED_VERIFY_HOST_PID not given; skipped",
        ),
    }
    let visible = list_dir("/proc")
        .iter()
        .filter(|n| n.parse::<u32>().is_ok())
        .count();
    attempt(
        "few_pids_visible",
        visible <= 4,
        format!("{visible} pids in /proc"),
    );

    // PTRACE_TRACEME in a child (it would make the supervisor our tracer).
    let code = sys::fork_run(|| {
        match sys::syscall6(
            libc::SYS_ptrace,
            [libc::PTRACE_TRACEME as libc::c_long, 0, 0, 0, 0, 0],
        ) {
            Ok(_) => 0,
            Err(_) => 1,
        }
    })
    .map(sys::wait);
    attempt(
        "ptrace_traceme",
        code == Ok(1),
        format!("child exit {code:?} (1 = refused)"),
    );

    // Mounting.
    let r = nix::mount::mount(
        Some("tmpfs"),
        "/tmp",
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    );
    attempt(
        "mount_tmpfs",
        r.is_err(),
        format!("mount tmpfs on /tmp: {r:?}"),
    );
    let r = nix::mount::mount(
        Some("/"),
        "/mnt",
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    );
    attempt("bind_mount", r.is_err(), format!("bind / on /mnt: {r:?}"));

    // New user namespace, then a look at the capabilities it would give.
    let code = sys::fork_run(
        || match nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER) {
            Ok(()) => 0,
            Err(_) => 1,
        },
    )
    .map(sys::wait);
    attempt(
        "unshare_user_namespace",
        code == Ok(1),
        format!("child exit {code:?} (1 = refused)"),
    );
    let code = sys::fork_run(|| {
        let flags = (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_long;
        match sys::syscall6(libc::SYS_clone, [flags, 0, 0, 0, 0, 0]) {
            Ok(0) => {
                // The cloned grandchild: leave at once.
                std::process::exit(0)
            }
            Ok(pid) => {
                sys::wait(pid as libc::pid_t);
                0
            }
            Err(_) => 1,
        }
    })
    .map(sys::wait);
    attempt(
        "clone_user_namespace",
        code == Ok(1),
        format!("child exit {code:?} (1 = refused)"),
    );

    // Joining other namespaces.
    for ns in ["mnt", "net", "pid", "uts", "ipc", "cgroup", "user"] {
        let path = format!("/proc/1/ns/{ns}");
        let result = std::fs::File::open(&path)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                nix::sched::setns(f, nix::sched::CloneFlags::empty()).map_err(|e| e.to_string())
            });
        attempt(
            &format!("setns_{ns}"),
            result.is_err(),
            format!("setns {path}: {result:?}"),
        );
    }

    // Writing where it must not.
    for (name, dir) in [
        ("write_root", "/"),
        ("write_usr", "/usr"),
        ("write_etc", "/etc"),
    ] {
        let (ok, detail) = writable(dir);
        attempt(name, !ok, detail);
    }
    for (name, path) in [
        ("open_proc_sys_for_write", "/proc/sys/kernel/hostname"),
        ("open_sysrq_trigger_for_write", "/proc/sysrq-trigger"),
        ("open_sys_for_write", "/sys/kernel/uevent_helper"),
    ] {
        // Opened only: never written.
        let r = std::fs::OpenOptions::new().write(true).open(path);
        attempt(
            name,
            r.is_err(),
            format!("open {path} O_WRONLY: {:?}", r.map(|_| "opened")),
        );
    }
    let r = nix::unistd::sethostname("escaped");
    attempt("sethostname", r.is_err(), format!("{r:?}"));

    // Kernel memory and host devices.
    let kcore = std::fs::File::open("/proc/kcore").and_then(|mut f| {
        let mut buf = [0u8; 16];
        f.read(&mut buf)
    });
    attempt(
        "read_kcore",
        !matches!(kcore, Ok(n) if n > 0),
        format!("read /proc/kcore: {kcore:?} bytes"),
    );
    let shadow = std::fs::read("/etc/shadow");
    attempt(
        "read_etc_shadow",
        !matches!(&shadow, Ok(b) if !b.is_empty()),
        format!("{:?}", shadow.map(|b| b.len())),
    );
    match scratch_dir() {
        Some(dir) => {
            let node = format!("{dir}/.noded-verify-sda");
            let made = nix::sys::stat::mknod(
                node.as_str(),
                nix::sys::stat::SFlag::S_IFBLK,
                nix::sys::stat::Mode::from_bits_truncate(0o600),
                nix::sys::stat::makedev(8, 0),
            );
            let detail = match made {
                Err(e) => (true, format!("mknod {node}: {e}")),
                Ok(()) => {
                    let opened = std::fs::File::open(&node);
                    let _ = std::fs::remove_file(&node);
                    (
                        opened.is_err(),
                        format!("mknod {node} worked; open: {:?}", opened.map(|_| "opened")),
                    )
                }
            };
            attempt("mknod_block_device", detail.0, detail.1);
        }
        None => attempt(
            "mknod_block_device",
            true,
            "no writable directory to try in",
        ),
    }
    let mut opened = Vec::new();
    for dev in [
        "/dev/vda",
        "/dev/sda",
        "/dev/nvme0n1",
        "/dev/xvda",
        "/dev/mem",
        "/dev/kmsg",
    ] {
        if std::fs::File::open(dev).is_ok() {
            opened.push(dev);
        }
    }
    attempt(
        "open_host_devices",
        opened.is_empty(),
        format!("opened: {opened:?}"),
    );
    let dev_blocks: Vec<String> = std::fs::read_dir("/dev")
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().map(|t| t.is_block_device()).unwrap_or(false))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    attempt(
        "no_block_devices_in_dev",
        dev_blocks.is_empty(),
        format!("{dev_blocks:?}"),
    );

    // Network privileges.
    let raw = errno_of(sys::syscall6(
        libc::SYS_socket,
        [
            libc::AF_INET as libc::c_long,
            libc::SOCK_RAW as libc::c_long,
            libc::IPPROTO_ICMP as libc::c_long,
            0,
            0,
            0,
        ],
    ));
    let packet = errno_of(sys::syscall6(
        libc::SYS_socket,
        [
            libc::AF_PACKET as libc::c_long,
            libc::SOCK_RAW as libc::c_long,
            0,
            0,
            0,
            0,
        ],
    ));
    attempt(
        "raw_socket",
        raw.is_err() && packet.is_err(),
        format!("AF_INET/SOCK_RAW: {raw:?}; AF_PACKET: {packet:?}"),
    );
    let start = read_trim("/proc/sys/net/ipv4/ip_unprivileged_port_start");
    let bound = std::net::TcpListener::bind("127.0.0.1:80");
    attempt(
        "bind_low_port",
        bound.is_err(),
        format!(
            "bind 127.0.0.1:80: {:?} (ip_unprivileged_port_start = {start:?})",
            bound.map(|_| "bound")
        ),
    );

    // setuid binaries: nosuid mounts and no_new_privs keep them from granting anything.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let nnp = status
        .lines()
        .any(|l| l.starts_with("NoNewPrivs:") && l.trim_end().ends_with('1'));
    let mut suid_mounts = Vec::new();
    for dir in [
        "/usr/bin",
        "/bin",
        "/sbin",
        "/usr/sbin",
        "/tmp",
        "/local",
        "/alloc",
        "/secrets",
    ] {
        if let Ok(st) = nix::sys::statvfs::statvfs(dir) {
            if !st.flags().contains(nix::sys::statvfs::FsFlags::ST_NOSUID) {
                suid_mounts.push(dir);
            }
        }
    }
    let su_present = ["/usr/bin/su", "/usr/bin/passwd", "/bin/su"]
        .iter()
        .any(|p| Path::new(p).exists());
    attempt(
        "setuid_binary",
        nnp && suid_mounts.is_empty(),
        format!("no_new_privs={nnp}, mounts without nosuid: {suid_mounts:?}, su/passwd present: {su_present}"),
    );

    // Leaving the cgroup: every cgroup.procs visible is the task's own, on a read-only mount.
    let pid = std::process::id().to_string();
    let mut written = Vec::new();
    let mut candidates = vec![
        "/sys/fs/cgroup/cgroup.procs".to_string(),
        "/sys/fs/cgroup/../cgroup.procs".to_string(),
    ];
    for entry in list_dir("/sys/fs/cgroup") {
        candidates.push(format!("/sys/fs/cgroup/{entry}/cgroup.procs"));
        candidates.push(format!("/sys/fs/cgroup/{entry}/../cgroup.procs"));
    }
    for c in &candidates {
        if std::fs::OpenOptions::new()
            .write(true)
            .open(c)
            .and_then(|mut f| f.write_all(pid.as_bytes()))
            .is_ok()
        {
            written.push(c.clone());
        }
    }
    let cgroup_paths = read_trim("/proc/self/cgroup").unwrap_or_default();
    let rooted = cgroup_paths.lines().all(|l| l.ends_with(":/"));
    attempt(
        "leave_cgroup",
        written.is_empty() && rooted,
        format!("wrote to {written:?}; /proc/self/cgroup: {cgroup_paths:?}"),
    );
    let r = nix::mount::mount(
        Some("cgroup2"),
        "/mnt",
        Some("cgroup2"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    );
    attempt("mount_cgroupfs", r.is_err(), format!("{r:?}"));

    // Host paths out of reach, also through `..`.
    let mut reached = Vec::new();
    let mut probes = vec![
        "/var/lib/noded".to_string(),
        "/alloc/../../../../../var/lib/noded".to_string(),
        "/local/../../../../../var/lib/noded".to_string(),
    ];
    if let Ok(marker) = std::env::var("NODED_VERIFY_HOST_MARKER") {
        probes.push(marker.clone());
        probes.push(format!("/alloc/../../../../..{marker}"));
    }
    for p in &probes {
        if Path::new(p).exists() {
            reached.push(p.clone());
        }
    }
    attempt(
        "reach_host_paths",
        reached.is_empty(),
        format!("reached {reached:?} of {probes:?}"),
    );

    // The classic chroot escape (works against chroot, not against pivot_root + detach).
    let marker = std::env::var("NODED_VERIFY_HOST_MARKER").ok();
    let code = scratch_dir().map(|dir| {
        sys::fork_run(|| {
            let jail = format!("{dir}/.noded-verify-chroot");
            let _ = std::fs::create_dir(&jail);
            if nix::unistd::chroot(jail.as_str()).is_err() {
                return 1;
            }
            for _ in 0..64 {
                let _ = std::env::set_current_dir("..");
            }
            let _ = nix::unistd::chroot(".");
            let escaped = match &marker {
                Some(m) => Path::new(m).exists(),
                None => Path::new("/var/lib/noded").exists() || Path::new("/work").exists(),
            };
            if escaped {
                0
            } else {
                2
            }
        })
        .map(sys::wait)
    });
    if let Some(dir) = scratch_dir() {
        let _ = std::fs::remove_dir(format!("{dir}/.noded-verify-chroot"));
    }
    attempt(
        "chroot_escape",
        code != Some(Ok(0)),
        format!("child exit {code:?} (0 = escaped, 1 = chroot refused, 2 = stayed inside)"),
    );

    // Kernel interfaces seccomp/capabilities close.
    let mut attr = [0u32; 32];
    attr[0] = 2; // BPF_MAP_TYPE_ARRAY
    attr[1] = 4; // key size
    attr[2] = 4; // value size
    attr[3] = 1; // max entries
    let r = errno_of(sys::syscall6(
        libc::SYS_bpf,
        [
            0,
            attr.as_mut_ptr() as libc::c_long,
            std::mem::size_of_val(&attr) as libc::c_long,
            0,
            0,
            0,
        ],
    ));
    if let Ok(fd) = r {
        let _ = sys::syscall6(libc::SYS_close, [fd, 0, 0, 0, 0, 0]);
    }
    attempt("bpf", r.is_err(), format!("BPF_MAP_CREATE: {r:?}"));
    let r = errno_of(sys::syscall6(
        libc::SYS_keyctl,
        [1 /* KEYCTL_JOIN_SESSION_KEYRING */, 0, 0, 0, 0, 0],
    ));
    attempt("keyctl", r.is_err(), format!("{r:?}"));
    let mut handle = [0u8; 136];
    handle[0..4].copy_from_slice(&128u32.to_ne_bytes());
    let mut mount_id: libc::c_int = 0;
    let root = CString::new("/").unwrap_or_default();
    let named = errno_of(sys::syscall6(
        libc::SYS_name_to_handle_at,
        [
            libc::AT_FDCWD as libc::c_long,
            root.as_ptr() as libc::c_long,
            handle.as_mut_ptr() as libc::c_long,
            &mut mount_id as *mut libc::c_int as libc::c_long,
            0,
            0,
        ],
    ));
    let opened = errno_of(sys::syscall6(
        libc::SYS_open_by_handle_at,
        [
            libc::AT_FDCWD as libc::c_long,
            handle.as_mut_ptr() as libc::c_long,
            libc::O_RDONLY as libc::c_long,
            0,
            0,
            0,
        ],
    ));
    if let Ok(fd) = opened {
        let _ = sys::syscall6(libc::SYS_close, [fd, 0, 0, 0, 0, 0]);
    }
    attempt(
        "open_by_handle_at",
        opened.is_err(),
        format!("name_to_handle_at: {named:?}; open_by_handle_at: {opened:?}"),
    );
    let r = errno_of(sys::syscall6(libc::SYS_finit_module, [-1, 0, 0, 0, 0, 0]));
    attempt(
        "load_kernel_module",
        matches!(r, Err(ref e) if e.contains("not permitted")),
        format!("finit_module: {r:?}"),
    );

    // Inherited descriptors and environment.
    let extra: Vec<i32> = open_fds().into_iter().filter(|fd| *fd > 2).collect();
    attempt(
        "inherited_fds",
        extra.is_empty(),
        format!("fds above 2: {extra:?}"),
    );
    let allowed: Option<Vec<String>> = std::env::var("NODED_VERIFY_ALLOWED_ENV")
        .ok()
        .map(|s| s.split(',').map(str::to_string).collect());
    let keys: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    match allowed {
        Some(allowed) => {
            let unexpected: Vec<&String> = keys
                .iter()
                .filter(|k| !allowed.contains(k) && k.as_str() != "NODED_VERIFY_ALLOWED_ENV")
                .collect();
            attempt(
                "environment",
                unexpected.is_empty(),
                format!("unexpected variables: {unexpected:?}"),
            );
        }
        None => attempt(
            "environment",
            true,
            format!("variables: {keys:?} (NODED_VERIFY_ALLOWED_ENV not given)"),
        ),
    }

    // A fork bomb must stop at the pids limit.
    fork_bomb();

    // Last, as it would take /proc away from the checks above.
    let r = nix::mount::umount2("/proc", nix::mount::MntFlags::MNT_DETACH);
    attempt("umount_proc", r.is_err(), format!("{r:?}"));
}

/// Forks sleeping children until fork fails (at most 2000), then kills and reaps them.
fn fork_bomb() {
    const CAP: usize = 2000;
    let mut children = Vec::new();
    let mut failure = None;
    while children.len() < CAP {
        match sys::fork_run(|| {
            std::thread::sleep(std::time::Duration::from_secs(30));
            0
        }) {
            Ok(pid) => children.push(pid),
            Err(errno) => {
                failure = Some(sys::errno_text(errno));
                break;
            }
        }
    }
    for pid in &children {
        let _ = sys::syscall6(
            libc::SYS_kill,
            [
                *pid as libc::c_long,
                libc::SIGKILL as libc::c_long,
                0,
                0,
                0,
                0,
            ],
        );
    }
    for pid in &children {
        sys::wait(*pid);
    }
    attempt(
        "fork_bomb",
        failure.is_some(),
        format!(
            "{} forks before failure {failure:?} (cap {CAP})",
            children.len()
        ),
    );
}

fn hog(mb: usize) -> i32 {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    for i in 0..mb {
        let mut chunk = vec![0u8; 1 << 20];
        for page in chunk.iter_mut().step_by(4096) {
            *page = (i % 251) as u8 + 1;
        }
        chunks.push(chunk);
    }
    let touched: usize = chunks.iter().map(|c| usize::from(c[0])).sum();
    println!("allocated {mb} MiB (checksum {touched})");
    0
}
