//! Turning a [`SandboxSpec`] into a [`Plan`]: the spec validated, then every step prepared in
//! the order the child runs it (the sandbox module's "Order of steps"): join the cgroup and
//! the network namespace, a new cgroup namespace, the jail (module `jail`), hostname,
//! rlimits, stdio, fds and signals, then identity and privileges, then `chdir` and `execve`.

use std::ffi::CString;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::jail::{jail_ops, JailMode};
use super::{Builder, Plan};
use crate::caps::CapabilitySet;
use crate::describe_errno;
use crate::sandbox::ops::{Op, PlannedOp};
use crate::sandbox::{
    above_stdio, cstring, dup_above_stdio, path_cstring, Filesystem, SandboxSpec, SpawnError,
    Stdio, Step, DEFAULT_PATH, GO_AHEAD_TIMEOUT_MS,
};
use crate::sys::CStrArray;

/// Validates `spec` and prepares every step, the jail as this kernel supports it.
pub(crate) fn build(spec: &SandboxSpec) -> Result<Plan, SpawnError> {
    build_with(spec, JailMode::for_this_kernel())
}

/// [`build`] with the jail built as `mode` says.
pub(crate) fn build_with(spec: &SandboxSpec, mode: JailMode) -> Result<Plan, SpawnError> {
    validate(spec)?;
    let last_cap = cap_last_cap()?;
    let seccomp = spec.seccomp.compile()?;

    let mut b = Builder::new();
    let go_ahead_fd = hold_go_ahead(&mut b, spec)?;
    let exec = ExecTarget::prepare(&mut b, spec)?;
    // 1. cgroup
    let (clone_into, clone_into_path) = join_cgroup_ops(&mut b, spec);
    // 2. network namespace
    join_net_namespace_ops(&mut b, spec)?;
    // 3. cgroup namespace, rooted at the task cgroup joined above
    if spec.namespaces.cgroup {
        b.push(
            Step::UnshareCgroupNamespace,
            "",
            Op::Unshare {
                flags: libc::CLONE_NEWCGROUP,
            },
        );
    }
    // 4. the jail
    let (template, detached) = jail_ops(&mut b, spec, mode)?;
    // 5. hostname, rlimits, stdio, fds, signals
    process_ops(&mut b, spec, go_ahead_fd)?;
    // 6. identity and privileges
    privilege_ops(&mut b, spec, last_cap, go_ahead_fd, seccomp);
    // 6b. the init stays behind: the task is forked right after its go-ahead, with every
    // privilege already dropped; both then set no_new_privs and seccomp (see `Plan::ops`).
    if spec.init {
        let at = b
            .ops
            .iter()
            .position(|o| o.step == Step::NoNewPrivs)
            .unwrap_or(b.ops.len());
        b.ops.insert(
            at,
            PlannedOp {
                step: Step::StartInit,
                target: String::new(),
                op: Op::StartInit { status_fd: -1 },
            },
        );
    }
    // 7. working directory and exec
    b.push(
        Step::ChangeDirectory,
        spec.work_dir.display().to_string(),
        Op::Chdir {
            path: path_cstring("work_dir", &spec.work_dir)?,
        },
    );
    b.push(
        Step::Exec,
        spec.program.clone(),
        Op::Exec {
            candidates: exec.candidate_cstrings,
            argv: exec.argv,
            envp: exec.envp,
        },
    );

    let jail = matches!(spec.filesystem, Filesystem::Jail(_));
    // A template's copy comes from `unshare` in the child, after entering the template.
    let new_mount_namespace = jail && template.is_none();
    Ok(Plan {
        ops: b.ops,
        namespace_flags: namespace_flags(spec, new_mount_namespace),
        clone_into,
        clone_into_path,
        program: spec.program.clone(),
        search_path: exec.search_path,
        exec_candidates: exec.candidates,
        jail,
        template,
        detached,
        held_template: None,
        _strings: b.strings,
        _fds: b.fds,
    })
}

/// The checks of a spec that need nothing but the spec; the first problem is the error.
fn validate(spec: &SandboxSpec) -> Result<(), SpawnError> {
    if spec.program.is_empty() {
        return Err(SpawnError::invalid("program", "is empty"));
    }
    if !spec.work_dir.is_absolute() {
        return Err(SpawnError::invalid(
            "work_dir",
            format!("{} is not an absolute path", spec.work_dir.display()),
        ));
    }
    if spec.init && !spec.namespaces.pid {
        return Err(SpawnError::invalid(
            "init",
            "needs a new pid namespace (namespaces.pid): outside one there is no PID 1 to stand in for",
        ));
    }
    if spec.hostname.is_some() && !spec.namespaces.uts {
        return Err(SpawnError::invalid(
            "hostname",
            "needs a new UTS namespace (namespaces.uts); it would rename the host",
        ));
    }
    if let Some(h) = &spec.hostname {
        if h.is_empty() || h.len() > 64 {
            return Err(SpawnError::invalid(
                "hostname",
                format!("{h:?} must be 1 to 64 bytes long"),
            ));
        }
    }
    let jail = matches!(spec.filesystem, Filesystem::Jail(_));
    if !jail && (spec.namespaces.pid || spec.namespaces.cgroup) {
        return Err(SpawnError::invalid(
            "namespaces",
            "pid and cgroup namespaces need Filesystem::Jail (a fresh /proc and /sys/fs/cgroup)",
        ));
    }
    if !spec.ambient_capabilities.is_subset(spec.capabilities) {
        return Err(SpawnError::invalid(
            "ambient_capabilities",
            format!(
                "{} are not in the allowed capabilities",
                spec.ambient_capabilities.difference(spec.capabilities)
            ),
        ));
    }
    if spec.user.groups.len() > 65_536 {
        return Err(SpawnError::invalid(
            "user.groups",
            "more than 65536 supplementary groups",
        ));
    }
    for (i, r) in spec.rlimits.iter().enumerate() {
        if r.soft > r.hard {
            return Err(SpawnError::invalid(
                format!("rlimits[{i}]"),
                format!("soft limit {} exceeds hard limit {}", r.soft, r.hard),
            ));
        }
    }
    Ok(())
}

/// A copy of the go-ahead fd for the child (-1 without one), held by the plan (above stdio,
/// so the stdio dups cannot close it) until the child execs.
fn hold_go_ahead(b: &mut Builder, spec: &SandboxSpec) -> Result<RawFd, SpawnError> {
    let Some(fd) = &spec.go_ahead else {
        return Ok(-1);
    };
    let fd = dup_above_stdio(std::os::fd::AsFd::as_fd(fd), "duplicate the go-ahead fd")?;
    let raw = fd.as_raw_fd();
    b.fds.push(fd);
    Ok(raw)
}

/// What `execve` gets: argv and envp, and the paths to try.
struct ExecTarget {
    /// Pointers into strings the builder keeps.
    argv: CStrArray,
    envp: CStrArray,
    /// The paths tried in turn: the program, or each PATH entry joined with a bare name.
    candidates: Vec<String>,
    candidate_cstrings: Vec<CString>,
    /// The PATH searched when the program is a bare name.
    search_path: Option<String>,
}

impl ExecTarget {
    /// Checks and converts the program, arguments and environment. The strings go into
    /// `b.strings` (which the plan keeps), so argv and envp stay valid.
    fn prepare(b: &mut Builder, spec: &SandboxSpec) -> Result<ExecTarget, SpawnError> {
        let program = cstring("program", spec.program.as_bytes())?;
        let mut argv_strings = vec![program];
        for (i, a) in spec.args.iter().enumerate() {
            argv_strings.push(cstring(&format!("args[{i}]"), a.as_bytes())?);
        }
        let mut env_strings = Vec::new();
        let mut env_path = None;
        for (i, (k, v)) in spec.env.iter().enumerate() {
            if k.is_empty() || k.contains('=') {
                return Err(SpawnError::invalid(
                    format!("env[{i}]"),
                    format!("{k:?} is not a valid variable name"),
                ));
            }
            if k == "PATH" {
                env_path = Some(v.clone());
            }
            env_strings.push(cstring(&format!("env[{i}] ({k})"), format!("{k}={v}"))?);
        }
        // The pointers stay valid when the strings move into `b.strings`: a CString's bytes
        // live on the heap.
        let argv = CStrArray::new(argv_strings.iter().map(CString::as_c_str));
        let envp = CStrArray::new(env_strings.iter().map(CString::as_c_str));
        b.strings.extend(argv_strings);
        b.strings.extend(env_strings);

        let (candidates, search_path) = exec_candidates(&spec.program, env_path)?;
        let candidate_cstrings = candidates
            .iter()
            .map(|c| cstring("program", c.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ExecTarget {
            argv,
            envp,
            candidates,
            candidate_cstrings,
            search_path,
        })
    }
}

/// The paths to exec: `program` itself when it has a `/`, else `program` in each directory
/// of `env_path` ([`DEFAULT_PATH`] when the environment has none), with the PATH searched.
fn exec_candidates(
    program: &str,
    env_path: Option<String>,
) -> Result<(Vec<String>, Option<String>), SpawnError> {
    if program.contains('/') {
        return Ok((vec![program.to_string()], None));
    }
    let path = env_path.unwrap_or_else(|| DEFAULT_PATH.to_string());
    let list: Vec<String> = path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| format!("{}/{}", d.trim_end_matches('/'), program))
        .collect();
    if list.is_empty() {
        return Err(SpawnError::invalid(
            "env PATH",
            format!("{path:?} lists no directory to find {program:?} in"),
        ));
    }
    Ok((list, Some(path)))
}

/// Writes into the task cgroup's v1 `tasks` files; returns the cgroup2 directory fd (and its
/// path, for errors) that `clone3` places the child in.
fn join_cgroup_ops(b: &mut Builder, spec: &SandboxSpec) -> (Option<RawFd>, Option<PathBuf>) {
    let Some(join) = &spec.cgroup else {
        return (None, None);
    };
    for (fd, path) in join.procs_fds() {
        b.push(
            Step::JoinCgroup,
            path.display().to_string(),
            Op::WriteFd { fd, data: b"0" },
        );
    }
    (
        join.clone_into_fd(),
        join.clone_into_path().map(Path::to_path_buf),
    )
}

/// `setns` into the network namespace the spec names (opened here, held by the plan).
fn join_net_namespace_ops(b: &mut Builder, spec: &SandboxSpec) -> Result<(), SpawnError> {
    let Some(net) = &spec.namespaces.net else {
        return Ok(());
    };
    let fd = nix::fcntl::open(
        net,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|errno| {
        SpawnError::invalid(
            "namespaces.net",
            format!("{}: {}", net.display(), describe_errno(errno)),
        )
    })?;
    b.push(
        Step::JoinNetNamespace,
        net.display().to_string(),
        Op::SetNs {
            fd: fd.as_raw_fd(),
            nstype: libc::CLONE_NEWNET,
        },
    );
    b.fds.push(fd);
    Ok(())
}

/// Hostname, rlimits, stdio onto 0/1/2, every other fd closed (but the report and go-ahead
/// pipes), signals reset.
fn process_ops(b: &mut Builder, spec: &SandboxSpec, go_ahead_fd: RawFd) -> Result<(), SpawnError> {
    if let Some(h) = &spec.hostname {
        b.push(
            Step::SetHostname,
            h.clone(),
            Op::SetHostname {
                name: h.as_bytes().to_vec(),
            },
        );
    }
    for r in &spec.rlimits {
        let resource = r.resource.raw();
        b.push(
            Step::SetRlimit,
            format!("{} {}/{}", rlimit_name(resource), r.soft, r.hard),
            Op::SetRlimit {
                resource,
                soft: r.soft,
                hard: r.hard,
            },
        );
    }
    stdio_ops(b, spec)?;
    // The report fd is filled in by `spawn` (it is created after the plan); see
    // Plan::set_report_fd.
    b.push(
        Step::CloseFds,
        "3..",
        Op::CloseFrom {
            keep: [-1, go_ahead_fd, -1],
        },
    );
    b.push(Step::ResetSignals, "", Op::ResetSignals);
    Ok(())
}

/// Capability bounding set, groups, gid, uid, capabilities (root: effective = permitted =
/// inheritable = the allow-list; others: none, or the ambient set, kept across `setuid` by
/// `PR_SET_KEEPCAPS`), the go-ahead, `no_new_privs` and seccomp.
fn privilege_ops(
    b: &mut Builder,
    spec: &SandboxSpec,
    last_cap: u8,
    go_ahead_fd: RawFd,
    seccomp: Option<Vec<libc::sock_filter>>,
) {
    let allowed = spec.capabilities.clip_to(last_cap);
    let ambient = spec.ambient_capabilities.clip_to(last_cap);
    let uid = spec.user.uid;
    b.push(
        Step::DropBoundingSet,
        allowed.to_string(),
        Op::DropBounding {
            keep: allowed.mask(),
            last_cap,
        },
    );
    let gids: Vec<libc::gid_t> = spec.user.groups.clone();
    b.push(Step::SetGroups, format!("{gids:?}"), Op::SetGroups { gids });
    b.push(
        Step::SetGid,
        spec.user.gid.to_string(),
        Op::SetGid { gid: spec.user.gid },
    );
    let keep_ambient = uid != 0 && !ambient.is_empty();
    if keep_ambient {
        b.push(Step::KeepCapabilities, "on", Op::KeepCaps { on: true });
    }
    b.push(Step::SetUid, uid.to_string(), Op::SetUid { uid });
    let granted = if uid == 0 { allowed } else { ambient };
    b.push(
        Step::SetCapabilities,
        granted.to_string(),
        Op::Capset {
            effective: granted.mask(),
            permitted: granted.mask(),
            inheritable: granted.mask(),
        },
    );
    let raise = if uid == 0 {
        CapabilitySet::EMPTY
    } else {
        ambient
    };
    b.push(
        Step::SetAmbientCapabilities,
        raise.to_string(),
        Op::Ambient {
            raise: raise.mask(),
            last_cap,
        },
    );
    if keep_ambient {
        b.push(Step::KeepCapabilities, "off", Op::KeepCaps { on: false });
    }
    if go_ahead_fd >= 0 {
        b.push(
            Step::AwaitGoAhead,
            "",
            Op::AwaitByte {
                fd: go_ahead_fd,
                timeout_ms: GO_AHEAD_TIMEOUT_MS,
            },
        );
    }
    b.push(Step::NoNewPrivs, "", Op::NoNewPrivs);
    if let Some(program) = seccomp {
        // `SeccompPolicy::compile` refuses a longer program; checked again where the plan
        // takes it, since the child can only report the kernel's EINVAL.
        assert!(
            !program.is_empty() && program.len() <= libc::BPF_MAXINSNS as usize,
            "seccomp program of {} instructions",
            program.len()
        );
        b.push(
            Step::InstallSeccomp,
            format!("({} instructions)", program.len()),
            Op::Seccomp { program },
        );
    }
}

/// The `CLONE_NEW*` flags of the spec's namespaces; `CLONE_NEWNS` when the child builds the
/// whole jail in a copy of the caller's mount table.
fn namespace_flags(spec: &SandboxSpec, new_mount_namespace: bool) -> u64 {
    let mut flags = 0u64;
    for (wanted, flag) in [
        (new_mount_namespace, libc::CLONE_NEWNS),
        (spec.namespaces.pid, libc::CLONE_NEWPID),
        (spec.namespaces.ipc, libc::CLONE_NEWIPC),
        (spec.namespaces.uts, libc::CLONE_NEWUTS),
    ] {
        if wanted {
            flags |= flag as u64;
        }
    }
    flags
}

/// The running kernel's highest capability number (`/proc/sys/kernel/cap_last_cap`).
fn cap_last_cap() -> Result<u8, SpawnError> {
    static LAST: OnceLock<u8> = OnceLock::new();
    if let Some(v) = LAST.get() {
        return Ok(*v);
    }
    let path = "/proc/sys/kernel/cap_last_cap";
    let text = std::fs::read_to_string(path).map_err(|source| SpawnError::Prepare {
        what: format!("read {path}"),
        source,
    })?;
    let value = text
        .trim()
        .parse::<u8>()
        .ok()
        .filter(|v| *v < 64)
        .ok_or_else(|| SpawnError::Prepare {
            what: format!("parse {path}"),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{:?} is not a capability number", text.trim()),
            ),
        })?;
    Ok(*LAST.get_or_init(|| value))
}

/// Each standard stream the spec does not inherit, `dup`ed onto 0/1/2 from a copy above
/// fd 2 (held by the plan).
fn stdio_ops(b: &mut Builder, spec: &SandboxSpec) -> Result<(), SpawnError> {
    for (to, stdio, name) in [
        (0, &spec.stdin, "stdin"),
        (1, &spec.stdout, "stdout"),
        (2, &spec.stderr, "stderr"),
    ] {
        let fd = match stdio {
            Stdio::Inherit => continue,
            Stdio::Null => {
                let null = nix::fcntl::open(
                    "/dev/null",
                    nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(|errno| SpawnError::Prepare {
                    what: format!("open /dev/null for {name}"),
                    source: errno.into(),
                })?;
                above_stdio(null, "move /dev/null above fd 2")?
            }
            Stdio::Fd(fd) => dup_above_stdio(
                std::os::fd::AsFd::as_fd(fd),
                &format!("duplicate the {name} fd"),
            )?,
        };
        b.push(
            Step::SetupStdio,
            name,
            Op::Dup {
                from: fd.as_raw_fd(),
                to,
            },
        );
        b.fds.push(fd);
    }
    Ok(())
}

/// `RLIMIT_NOFILE` and so on, for errors.
fn rlimit_name(resource: u32) -> String {
    let names = [
        (libc::RLIMIT_AS, "RLIMIT_AS"),
        (libc::RLIMIT_CORE, "RLIMIT_CORE"),
        (libc::RLIMIT_CPU, "RLIMIT_CPU"),
        (libc::RLIMIT_DATA, "RLIMIT_DATA"),
        (libc::RLIMIT_FSIZE, "RLIMIT_FSIZE"),
        (libc::RLIMIT_LOCKS, "RLIMIT_LOCKS"),
        (libc::RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK"),
        (libc::RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE"),
        (libc::RLIMIT_NICE, "RLIMIT_NICE"),
        (libc::RLIMIT_NOFILE, "RLIMIT_NOFILE"),
        (libc::RLIMIT_NPROC, "RLIMIT_NPROC"),
        (libc::RLIMIT_RSS, "RLIMIT_RSS"),
        (libc::RLIMIT_RTPRIO, "RLIMIT_RTPRIO"),
        (libc::RLIMIT_RTTIME, "RLIMIT_RTTIME"),
        (libc::RLIMIT_SIGPENDING, "RLIMIT_SIGPENDING"),
        (libc::RLIMIT_STACK, "RLIMIT_STACK"),
    ];
    names
        .iter()
        .find(|(r, _)| *r == resource)
        .map(|(_, n)| (*n).to_string())
        .unwrap_or_else(|| format!("resource {resource}"))
}
