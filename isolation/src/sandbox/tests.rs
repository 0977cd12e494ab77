//! Unit tests of the plan (no root needed): step order, validation, prepared data, messages.

use std::path::{Path, PathBuf};

use super::ops::Op;
use super::plan::{build, build_with, JailMode, Plan};
use super::*;
use crate::caps::{Capability, DEFAULT_ALLOW};
use crate::cgroup::JailCgroupMount;

fn staging() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn nobody() -> ResolvedUser {
    ResolvedUser {
        name: "nobody".to_string(),
        uid: 65534,
        gid: 65534,
        groups: vec![65534],
        home: PathBuf::from("/nonexistent"),
    }
}

fn jail_spec(staging: &Path) -> SandboxSpec {
    let mut rootfs = RootfsSpec::new(staging);
    rootfs
        .rw_binds
        .push(Bind::new(staging.parent().unwrap(), "/alloc"));
    rootfs
        .rw_binds
        .push(Bind::new(staging.parent().unwrap(), "/alloc/data/nested"));
    SandboxSpec {
        program: "/bin/true".to_string(),
        args: vec!["a".to_string(), "b c".to_string()],
        env: vec![
            ("PATH".to_string(), "/usr/bin:/bin".to_string()),
            ("X".to_string(), "1".to_string()),
        ],
        work_dir: PathBuf::from("/alloc"),
        user: nobody(),
        filesystem: Filesystem::Jail(rootfs),
        namespaces: NamespaceSpec::isolated(),
        hostname: Some("task".to_string()),
        cgroup: None,
        capabilities: DEFAULT_ALLOW,
        ambient_capabilities: CapabilitySet::EMPTY,
        rlimits: vec![Rlimit {
            resource: RlimitResource::Nofile,
            soft: 1024,
            hard: 4096,
        }],
        seccomp: SeccompPolicy::Default,
        stdin: Stdio::Null,
        stdout: Stdio::Inherit,
        stderr: Stdio::Null,
        go_ahead: None,
        init: false,
    }
}

/// A cgroup join over temp files (the fds are never written in these tests).
fn fake_join(dir: &Path) -> CgroupJoin {
    let mut procs = Vec::new();
    for c in ["memory", "pids"] {
        let path = dir.join(format!("{c}.procs"));
        std::fs::write(&path, "").unwrap();
        procs.push((OwnedFd::from(std::fs::File::create(&path).unwrap()), path));
    }
    CgroupJoin {
        procs,
        clone_into: Some((
            OwnedFd::from(std::fs::File::open(dir).unwrap()),
            dir.join("unified"),
        )),
        jail_mounts: vec![
            JailCgroupMount {
                fstype: "cgroup",
                data: "memory".to_string(),
                dir_name: "memory".to_string(),
            },
            JailCgroupMount {
                fstype: "cgroup2",
                data: String::new(),
                dir_name: "unified".to_string(),
            },
        ],
    }
}

/// The phase of each step in the documented order.
fn phase(step: Step) -> u32 {
    match step {
        // An entry (`enter`) makes itself non-dumpable, joins the cgroup, then the namespaces.
        Step::MakeNonDumpable | Step::JoinCgroup | Step::JoinTaskNamespaces => 0,
        Step::JoinNetNamespace => 1,
        Step::UnshareCgroupNamespace => 2,
        Step::EnterJailTemplate | Step::NewMountNamespace | Step::MakeMountsPrivate => 3,
        Step::MountRootTmpfs => 4,
        Step::MakeDirectory
        | Step::MakeMountPoint
        | Step::MakeSymlink
        | Step::BindMount
        | Step::RemountBind => 5,
        Step::MaskPath => 6,
        Step::RemountRootReadOnly => 7,
        Step::MountProc => 8,
        Step::MaskProcPath => 9,
        Step::ReadOnlyProcPath => 10,
        Step::MountDev | Step::BindDevice | Step::MountDevPts | Step::MountShm => 11,
        Step::MountSys => 12,
        Step::MaskSysPath => 13,
        Step::MountCgroup => 14,
        Step::PivotRoot => 15,
        Step::DetachOldRoot | Step::EnterTaskRoot => 16,
        Step::SetHostname => 17,
        Step::SetRlimit => 18,
        Step::SetupStdio => 19,
        Step::CloseFds => 20,
        Step::ResetSignals | Step::NewSession | Step::SetControllingTerminal => 21,
        Step::DropBoundingSet => 22,
        Step::SetGroups => 23,
        Step::SetGid => 24,
        Step::KeepCapabilities
        | Step::SetUid
        | Step::SetCapabilities
        | Step::SetAmbientCapabilities => 25,
        Step::AwaitGoAhead | Step::StartInit => 26,
        Step::NoNewPrivs => 27,
        Step::InstallSeccomp => 28,
        Step::ChangeDirectory => 29,
        Step::Exec => 30,
    }
}

fn assert_in_order(plan: &Plan) {
    let steps = plan.steps();
    assert_steps_in_order(&steps);
    assert_eq!(steps.last(), Some(&Step::Exec));
}

fn assert_steps_in_order(steps: &[Step]) {
    for pair in steps.windows(2) {
        assert!(
            phase(pair[0]) <= phase(pair[1]),
            "{:?} comes after {:?}; full order: {steps:?}",
            pair[1],
            pair[0]
        );
    }
}

fn position(plan: &Plan, step: Step) -> usize {
    plan.steps()
        .iter()
        .position(|s| *s == step)
        .unwrap_or_else(|| panic!("{step:?} missing"))
}

#[test]
fn jail_steps_run_in_the_documented_order() {
    let dir = staging();
    let mut spec = jail_spec(dir.path());
    spec.cgroup = Some(fake_join(dir.path()));
    let plan = build_with(&spec, JailMode::Legacy).unwrap();
    assert!(plan.template.is_none());
    assert_in_order(&plan);
    for step in [
        Step::JoinCgroup,
        Step::UnshareCgroupNamespace,
        Step::MakeMountsPrivate,
        Step::MountRootTmpfs,
        Step::BindMount,
        Step::RemountBind,
        Step::RemountRootReadOnly,
        Step::MountProc,
        Step::MountDev,
        Step::BindDevice,
        Step::MountDevPts,
        Step::MountShm,
        Step::MountSys,
        Step::MountCgroup,
        Step::PivotRoot,
        Step::DetachOldRoot,
        Step::SetHostname,
        Step::SetRlimit,
        Step::SetupStdio,
        Step::CloseFds,
        Step::ResetSignals,
        Step::DropBoundingSet,
        Step::SetGroups,
        Step::SetGid,
        Step::SetUid,
        Step::SetCapabilities,
        Step::SetAmbientCapabilities,
        Step::NoNewPrivs,
        Step::InstallSeccomp,
        Step::ChangeDirectory,
        Step::Exec,
    ] {
        position(&plan, step);
    }
    // The cgroup is joined before anything else, the cgroup namespace made after joining.
    assert_eq!(plan.steps()[0], Step::JoinCgroup);
    assert_eq!(
        plan.clone_into,
        spec.cgroup.as_ref().unwrap().clone_into_fd()
    );
    let flags = plan.namespace_flags;
    for f in [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUTS,
    ] {
        assert_ne!(flags & f as u64, 0);
    }
    // The cgroup namespace is not made by clone3: its root must be the joined cgroup.
    assert_eq!(flags & libc::CLONE_NEWCGROUP as u64, 0);
}

#[test]
fn template_jails_split_the_steps_between_template_and_task() {
    let dir = staging();
    let mut spec = jail_spec(dir.path());
    spec.cgroup = Some(fake_join(dir.path()));
    let plan = build_with(&spec, JailMode::Template).unwrap();
    assert_in_order(&plan);
    let template = plan.template.as_ref().expect("a template layout");
    let template_steps: Vec<Step> = template.ops.iter().map(|p| p.step).collect();
    assert_steps_in_order(&template_steps);
    // The template holds the read-only tree and ends in its own root.
    for step in [
        Step::MakeMountsPrivate,
        Step::MountRootTmpfs,
        Step::BindMount,
        Step::RemountBind,
        Step::RemountRootReadOnly,
        Step::MountDev,
        Step::BindDevice,
        Step::MountSys,
        Step::MountCgroup,
        Step::PivotRoot,
        Step::DetachOldRoot,
    ] {
        assert!(
            template_steps.contains(&step),
            "{step:?}: {template_steps:?}"
        );
    }
    for step in [Step::MountProc, Step::MountDevPts, Step::MountShm] {
        assert!(
            !template
                .ops
                .iter()
                .any(|p| p.step == step && matches!(p.op, Op::Mount { .. })),
            "{step:?} is per task"
        );
    }
    // The task enters a copy of it and adds only its own mounts, with no pivot_root.
    let steps = plan.steps();
    let enter = position(&plan, Step::EnterJailTemplate);
    assert_eq!(steps.get(enter + 1), Some(&Step::NewMountNamespace));
    assert!(position(&plan, Step::UnshareCgroupNamespace) < enter);
    for step in [
        Step::BindMount,
        Step::MountProc,
        Step::MountDevPts,
        Step::MountShm,
        Step::MountCgroup,
    ] {
        position(&plan, step);
    }
    for step in [
        Step::MountRootTmpfs,
        Step::RemountBind,
        Step::PivotRoot,
        Step::DetachOldRoot,
        Step::MountSys,
    ] {
        assert!(!steps.contains(&step), "{step:?} is the template's");
    }
    // Its mount namespace comes from unshare after entering the template, not from clone3.
    assert_eq!(plan.namespace_flags & libc::CLONE_NEWNS as u64, 0);
    assert_ne!(plan.namespace_flags & libc::CLONE_NEWPID as u64, 0);

    // The read-write binds are attached per task from detached trees, parents first; the
    // nested one's mount point is made inside its parent bind, after that is attached.
    let moves: Vec<(String, usize)> = plan
        .ops
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match &p.op {
            Op::MoveMount { target, .. } => Some((target.to_string_lossy().into_owned(), i)),
            _ => None,
        })
        .collect();
    let targets: Vec<&str> = moves.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(targets, ["/alloc", "/alloc/data/nested"]);
    let nested_dir = plan
        .ops
        .iter()
        .position(
            |p| matches!(&p.op, Op::Mkdir { path, .. } if path.to_bytes() == b"/alloc/data/nested"),
        )
        .expect("nested mount point made per task");
    assert!(moves[0].1 < nested_dir && nested_dir < moves[1].1);
    assert_eq!(plan.detached.len(), 2);
    assert!(plan.detached.iter().all(|d| !d.read_only));
    // Only the top-level bind's mount point is in the template.
    let template_dirs: Vec<String> = template
        .ops
        .iter()
        .filter_map(|p| match &p.op {
            Op::Mkdir { path, .. } => Some(
                path.to_string_lossy()
                    .replace(&dir.path().display().to_string(), ""),
            ),
            _ => None,
        })
        .collect();
    assert!(
        template_dirs.contains(&"/alloc".to_string()),
        "{template_dirs:?}"
    );
    assert!(
        !template_dirs.iter().any(|d| d.starts_with("/alloc/")),
        "{template_dirs:?}"
    );

    // A task in another network namespace mounts its own /sys (sysfs shows the mounter's).
    spec.namespaces.net = Some(PathBuf::from("/proc/self/ns/net"));
    let plan = build_with(&spec, JailMode::Template).unwrap();
    position(&plan, Step::MountSys);
    let template = plan.template.as_ref().unwrap();
    assert!(!template.ops.iter().any(|p| p.step == Step::MountSys));
}

#[test]
fn host_mode_has_no_mount_steps() {
    let dir = staging();
    let mut spec = jail_spec(dir.path());
    spec.filesystem = Filesystem::Host;
    spec.namespaces = NamespaceSpec::default();
    spec.hostname = None;
    spec.cgroup = Some(fake_join(dir.path()));
    let plan = build(&spec).unwrap();
    assert_in_order(&plan);
    assert!(
        plan.steps().iter().all(|s| phase(*s) < 3 || phase(*s) > 16),
        "{:?}",
        plan.steps()
    );
    assert_eq!(plan.namespace_flags, 0);
    assert_eq!(plan.steps()[0], Step::JoinCgroup);
}

#[test]
fn binds_are_prepared_parents_first_with_safe_flags() {
    let dir = staging();
    let spec = jail_spec(dir.path());
    let plan = build_with(&spec, JailMode::Legacy).unwrap();
    let staging = dir.path().display().to_string();
    let binds: Vec<(String, libc::c_ulong)> = plan
        .ops
        .iter()
        .filter(|p| p.step == Step::RemountBind)
        .map(|p| match &p.op {
            Op::Mount { target, flags, .. } => {
                (target.to_string_lossy().replace(&staging, ""), *flags)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    let targets: Vec<&str> = binds.iter().map(|(t, _)| t.as_str()).collect();
    let alloc = targets.iter().position(|t| *t == "/alloc").unwrap();
    let nested = targets
        .iter()
        .position(|t| *t == "/alloc/data/nested")
        .unwrap();
    assert!(alloc < nested, "{targets:?}");
    for (target, flags) in &binds {
        let f = MsFlags::from_bits_truncate(*flags);
        assert!(
            f.contains(
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_BIND | MsFlags::MS_REMOUNT
            ),
            "{target}"
        );
        let read_only = target == "/usr" || target == "/etc";
        assert_eq!(f.contains(MsFlags::MS_RDONLY), read_only, "{target}");
    }
    // Host symlinks such as /bin -> usr/bin are recreated, never bound.
    for p in &plan.ops {
        if let Op::Symlink { link, .. } = &p.op {
            let link = link.to_string_lossy().replace(&staging, "");
            assert!(
                !targets.contains(&link.as_str()),
                "{link} both bound and linked"
            );
        }
    }
}

use nix::mount::MsFlags;

#[test]
fn exec_gets_exactly_the_callers_argv_and_env() {
    let dir = staging();
    let spec = jail_spec(dir.path());
    let plan = build(&spec).unwrap();
    let Some(Op::Exec {
        candidates,
        argv,
        envp,
    }) = plan.ops.last().map(|p| &p.op)
    else {
        panic!()
    };
    assert_eq!(candidates.len(), 1);
    assert_eq!(candidates[0].to_str().unwrap(), "/bin/true");
    // argv/envp point at the plan's own strings, NULL-terminated.
    let strings = plan.strings();
    let texts = |v: &crate::sys::CStrArray| -> Vec<String> {
        let v = v.as_slice();
        assert!(v.last().unwrap().is_null());
        v[..v.len() - 1]
            .iter()
            .map(|p| {
                let s = strings
                    .iter()
                    .find(|s| s.as_ptr() == *p)
                    .expect("pointer into the plan");
                s.to_string_lossy().into_owned()
            })
            .collect()
    };
    assert_eq!(texts(argv), ["/bin/true", "a", "b c"]);
    assert_eq!(texts(envp), ["PATH=/usr/bin:/bin", "X=1"]);
}

#[test]
fn bare_program_names_are_searched_in_path() {
    let dir = staging();
    let mut spec = jail_spec(dir.path());
    spec.program = "env".to_string();
    let plan = build(&spec).unwrap();
    let Some(Op::Exec { candidates, .. }) = plan.ops.last().map(|p| &p.op) else {
        panic!()
    };
    let c: Vec<&str> = candidates.iter().map(|c| c.to_str().unwrap()).collect();
    assert_eq!(c, ["/usr/bin/env", "/bin/env"]);
    spec.env.clear();
    let plan = build(&spec).unwrap();
    let Some(Op::Exec { candidates, .. }) = plan.ops.last().map(|p| &p.op) else {
        panic!()
    };
    assert_eq!(candidates.len(), DEFAULT_PATH.split(':').count());
}

#[test]
fn capabilities_follow_the_user() {
    let dir = staging();
    let caps_of = |plan: &Plan| -> (u64, u64, Vec<Step>) {
        let capset = plan
            .ops
            .iter()
            .find_map(|p| match p.op {
                Op::Capset { permitted, .. } => Some(permitted),
                _ => None,
            })
            .unwrap();
        let ambient = plan
            .ops
            .iter()
            .find_map(|p| match p.op {
                Op::Ambient { raise, .. } => Some(raise),
                _ => None,
            })
            .unwrap();
        let steps = plan
            .steps()
            .into_iter()
            .filter(|s| matches!(s, Step::KeepCapabilities | Step::SetUid))
            .collect();
        (capset, ambient, steps)
    };
    // nobody: nothing.
    let plan = build(&jail_spec(dir.path())).unwrap();
    assert_eq!(caps_of(&plan), (0, 0, vec![Step::SetUid]));
    // root: the allow-list, no ambient.
    let mut spec = jail_spec(dir.path());
    spec.user = ResolvedUser::root();
    let plan = build(&spec).unwrap();
    assert_eq!(
        caps_of(&plan),
        (DEFAULT_ALLOW.mask(), 0, vec![Step::SetUid])
    );
    // nobody with an ambient capability: kept across setuid, then raised.
    let mut spec = jail_spec(dir.path());
    spec.ambient_capabilities = [Capability::NET_BIND_SERVICE].into_iter().collect();
    let plan = build(&spec).unwrap();
    let bit = 1u64 << Capability::NET_BIND_SERVICE.number();
    assert_eq!(
        caps_of(&plan),
        (
            bit,
            bit,
            vec![Step::KeepCapabilities, Step::SetUid, Step::KeepCapabilities]
        )
    );
    // The bounding set is the allow-list.
    let keep = plan
        .ops
        .iter()
        .find_map(|p| match p.op {
            Op::DropBounding { keep, .. } => Some(keep),
            _ => None,
        })
        .unwrap();
    assert_eq!(keep, DEFAULT_ALLOW.mask());
}

#[test]
fn unconfined_has_no_seccomp_step() {
    let dir = staging();
    let mut spec = jail_spec(dir.path());
    spec.seccomp = SeccompPolicy::Unconfined;
    let plan = build(&spec).unwrap();
    assert!(!plan.steps().contains(&Step::InstallSeccomp));
}

#[test]
fn bad_specs_are_refused_with_the_field_named() {
    let dir = staging();
    type Mutation = Box<dyn Fn(&mut SandboxSpec)>;
    let bind = |host: &str, sandbox: &str| {
        let host = host.to_string();
        let sandbox = sandbox.to_string();
        Box::new(move |s: &mut SandboxSpec| {
            if let Filesystem::Jail(r) = &mut s.filesystem {
                r.rw_binds.push(Bind::new(&host, &sandbox));
            }
        }) as Mutation
    };
    let tmp = dir.path().display().to_string();
    let cases: Vec<(&str, Mutation)> = vec![
        ("program: is empty", Box::new(|s| s.program.clear())),
        (
            "work_dir: local is not an absolute path",
            Box::new(|s| s.work_dir = PathBuf::from("local")),
        ),
        (
            "hostname: needs a new UTS namespace",
            Box::new(|s| s.namespaces.uts = false),
        ),
        (
            "namespaces: pid and cgroup namespaces need Filesystem::Jail",
            Box::new(|s| s.filesystem = Filesystem::Host),
        ),
        (
            "ambient_capabilities: net_raw are not in the allowed",
            Box::new(|s| s.ambient_capabilities = [Capability::NET_RAW].into_iter().collect()),
        ),
        (
            "args[0]: contains a NUL byte",
            Box::new(|s| s.args[0] = "a\0b".to_string()),
        ),
        (
            "env[1]: \"X=Y\" is not a valid variable name",
            Box::new(|s| s.env[1].0 = "X=Y".to_string()),
        ),
        (
            "rlimits[0]: soft limit 1024 exceeds hard limit 10",
            Box::new(|s| s.rlimits[0].hard = 10),
        ),
        (
            "rw_binds[2].sandbox: alloc is not an absolute path",
            bind(&tmp, "alloc"),
        ),
        (
            "rw_binds[2].sandbox: /a/../b may not contain '.' or '..'",
            bind(&tmp, "/a/../b"),
        ),
        (
            "rw_binds[2].sandbox: /proc/x is inside /proc",
            bind(&tmp, "/proc/x"),
        ),
        (
            "rw_binds[2].sandbox: the sandbox root itself",
            bind(&tmp, "/"),
        ),
        (
            "rw_binds[2].sandbox: /alloc is the target of another bind",
            bind(&tmp, "/alloc"),
        ),
        (
            "rw_binds[2].sandbox: /usr is already a system dir",
            bind(&tmp, "/usr"),
        ),
        (
            "rw_binds[2].host: /no/such/host/dir: No such file",
            bind("/no/such/host/dir", "/x"),
        ),
        (
            "rw_binds[2].host: rel is not an absolute path",
            bind("rel", "/x"),
        ),
        (
            "filesystem.staging_dir: /no/such/staging is not an existing directory",
            Box::new(|s| {
                if let Filesystem::Jail(r) = &mut s.filesystem {
                    r.staging_dir = PathBuf::from("/no/such/staging");
                }
            }),
        ),
        (
            "namespaces.net: /no/such/netns: no such file",
            Box::new(|s| s.namespaces.net = Some(PathBuf::from("/no/such/netns"))),
        ),
    ];
    for (expected, mutate) in cases {
        let mut spec = jail_spec(dir.path());
        mutate(&mut spec);
        let err = build(&spec).unwrap_err();
        assert!(
            matches!(err, SpawnError::Invalid { .. }),
            "{expected}: {err}"
        );
        let text = err.to_string();
        assert!(text.starts_with("invalid sandbox spec: "), "{text}");
        assert!(text.contains(expected), "expected {expected:?} in {text:?}");
    }
}

#[test]
fn reports_round_trip() {
    let r = Report {
        step: Step::BindMount as u32,
        index: 7,
        errno: libc::ENOENT,
        detail: 3,
    };
    assert_eq!(Report::decode(&r.encode()), r);
}

fn report_at(plan: &Plan, step: Step, errno: i32, detail: u32) -> String {
    let index = plan.steps().iter().position(|s| *s == step).unwrap() as u32;
    plan.error_for(&Report {
        step: step as u32,
        index,
        errno,
        detail,
    })
    .to_string()
}

#[test]
fn child_failures_become_messages_naming_step_and_path() {
    let dir = staging();
    let staging = dir.path().display().to_string();
    let mut spec = jail_spec(dir.path());
    spec.program = "/bin/nonexistent".to_string();
    let template = build_with(&spec, JailMode::Template).unwrap();
    assert_eq!(
        report_at(&template, Step::EnterJailTemplate, libc::EINVAL, 0),
        format!("enter the jail template built on {staging}: invalid argument (EINVAL)")
    );
    assert_eq!(
        report_at(&template, Step::BindMount, libc::ENOENT, 0),
        format!(
            "bind mount {} at /alloc: no such file or directory (ENOENT) (the host path disappeared after validation)",
            dir.path().parent().unwrap().display()
        )
    );
    let plan = build_with(&spec, JailMode::Legacy).unwrap();
    assert_eq!(
        report_at(&plan, Step::Exec, libc::ENOENT, 0),
        "exec \"/bin/nonexistent\": no such file or directory inside the task root (ENOENT)"
    );
    assert_eq!(
        report_at(&plan, Step::Exec, libc::EACCES, 0),
        "exec \"/bin/nonexistent\": permission denied inside the task root (EACCES)"
    );
    let bind = report_at(&plan, Step::BindMount, libc::EPERM, 0);
    assert!(
        bind.starts_with("bind mount /etc at /etc: operation not permitted (EPERM)")
            || bind.starts_with("bind mount /usr at /usr"),
        "{bind}"
    );
    assert_eq!(
        report_at(&plan, Step::SetUid, libc::EPERM, 0),
        "setuid 65534: operation not permitted (EPERM)"
    );
    assert_eq!(
        report_at(&plan, Step::ChangeDirectory, libc::ENOENT, 0),
        "chdir /alloc: no such file or directory (ENOENT) (the working directory must exist inside the sandbox)"
    );
    assert_eq!(
        report_at(&plan, Step::PivotRoot, libc::EINVAL, 0),
        format!("pivot_root {staging}: invalid argument (EINVAL) (pivot_root needs the host root to be a real mount, not a ramdisk)")
    );
    assert_eq!(
        report_at(&plan, Step::SetRlimit, libc::EPERM, 0),
        "setrlimit RLIMIT_NOFILE 1024/4096: operation not permitted (EPERM)"
    );

    let mut spec = jail_spec(dir.path());
    spec.program = "frobnicate".to_string();
    let plan = build(&spec).unwrap();
    assert_eq!(
        report_at(&plan, Step::Exec, libc::ENOENT, 1),
        "exec \"frobnicate\": not found in PATH \"/usr/bin:/bin\" inside the task root"
    );
    assert_eq!(
        report_at(&plan, Step::Exec, libc::EACCES, 1),
        "exec \"/bin/frobnicate\": permission denied inside the task root (EACCES)"
    );

    let mut spec = jail_spec(dir.path());
    spec.filesystem = Filesystem::Host;
    spec.namespaces = NamespaceSpec::default();
    spec.hostname = None;
    spec.program = "/opt/x".to_string();
    let plan = build(&spec).unwrap();
    assert_eq!(
        report_at(&plan, Step::Exec, libc::ENOENT, 0),
        "exec \"/opt/x\": no such file or directory on the host (ENOENT)"
    );
    // A garbled report still gives a message.
    let text = plan
        .error_for(&Report {
            step: 999,
            index: 10_000,
            errno: libc::EIO,
            detail: 0,
        })
        .to_string();
    assert!(text.contains("unknown step 999"), "{text}");
}

#[test]
fn jail_cgroup_mounts_need_a_cgroup_namespace() {
    let dir = staging();
    let mut spec = jail_spec(dir.path());
    spec.cgroup = Some(fake_join(dir.path()));
    let cgroup_mounts = |plan: &Plan| {
        plan.ops
            .iter()
            .filter(|p| p.step == Step::MountCgroup && matches!(p.op, Op::Mount { .. }))
            .count()
    };
    // With a template the per-task part is one mount per hierarchy.
    let template = build_with(&spec, JailMode::Template).unwrap();
    assert_eq!(cgroup_mounts(&template), 2);
    let with_ns = build_with(&spec, JailMode::Legacy)
        .unwrap()
        .steps()
        .iter()
        .filter(|s| **s == Step::MountCgroup)
        .count();
    assert!(
        with_ns >= 4,
        "tmpfs + 2 × (mkdir + mount) + remount, got {with_ns}"
    );
    spec.namespaces.cgroup = false;
    assert_eq!(
        cgroup_mounts(&build_with(&spec, JailMode::Template).unwrap()),
        0
    );
    let without_ns = build_with(&spec, JailMode::Legacy)
        .unwrap()
        .steps()
        .iter()
        .filter(|s| **s == Step::MountCgroup)
        .count();
    assert_eq!(without_ns, 0);
}

#[test]
fn step_ids_are_distinct_and_ordered() {
    for (i, step) in Step::ALL.iter().enumerate() {
        assert_eq!(*step as u32, i as u32 + 1);
        assert_eq!(Step::from_raw(*step as u32), Some(*step));
        assert!(!step.phrase().is_empty());
    }
    assert_eq!(Step::from_raw(0), None);
}

#[test]
fn a_current_cached_template_gives_the_task_the_same_steps_unprepared() {
    if !crate::privileged::require_root("building a jail template (mount namespace)") {
        return;
    }
    let dir = staging();
    let source = dir
        .path()
        .parent()
        .unwrap()
        .join(format!("noded-template-source-{}", std::process::id()));
    std::fs::create_dir_all(&source).unwrap();
    let mut spec = jail_spec(dir.path());
    if let Filesystem::Jail(rootfs) = &mut spec.filesystem {
        rootfs.ro_binds.push(Bind::new(&source, "/opt/data"));
        rootfs.masked_paths.push(PathBuf::from("/etc/hostname"));
    }
    let task_steps = |plan: &Plan| -> Vec<(Step, String)> {
        plan.ops
            .iter()
            .map(|p| (p.step, p.target.clone()))
            .collect()
    };

    let mut first = build_with(&spec, JailMode::Template).unwrap();
    let layout = first.template.as_ref().unwrap();
    assert!(layout.ready.is_none() && !layout.ops.is_empty());
    let first_steps = task_steps(&first);
    first.prepare_jail().unwrap();

    // Same layout, sources unchanged: the cached template, and no template steps prepared.
    let second = build_with(&spec, JailMode::Template).unwrap();
    let layout = second.template.as_ref().unwrap();
    assert!(layout.ready.is_some(), "the cached template is used");
    assert!(layout.ops.is_empty(), "its steps are not prepared again");
    assert_eq!(task_steps(&second), first_steps);
    assert!(first_steps
        .iter()
        .any(|(step, target)| *step == Step::MaskPath && target.ends_with("/etc/hostname")));

    // A replaced source makes it stale: the next plan prepares a new template.
    let replacement = source.with_extension("new");
    std::fs::create_dir_all(&replacement).unwrap();
    std::fs::rename(&replacement, &source).unwrap_or_else(|_| {
        std::fs::remove_dir(&source).unwrap();
        std::fs::rename(&replacement, &source).unwrap();
    });
    let third = build_with(&spec, JailMode::Template).unwrap();
    let layout = third.template.as_ref().unwrap();
    assert!(layout.ready.is_none() && !layout.ops.is_empty());
    assert_eq!(task_steps(&third), first_steps);
    drop((first, second, third));
    std::fs::remove_dir(&source).unwrap();
}

#[test]
fn a_go_ahead_is_awaited_after_the_capabilities_and_kept_through_close_fds() {
    let dir = staging();
    let mut spec = jail_spec(dir.path());
    let (go_r, _go_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    spec.go_ahead = Some(go_r);
    let plan = build(&spec).unwrap();
    assert_in_order(&plan);
    let wait = position(&plan, Step::AwaitGoAhead);
    assert_eq!(plan.steps().get(wait + 1), Some(&Step::NoNewPrivs));
    assert!(position(&plan, Step::SetCapabilities) < wait);
    let Op::AwaitByte { fd, timeout_ms } = &plan.ops[wait].op else {
        panic!("not a wait: {:?}", plan.ops[wait].op)
    };
    assert!(*fd > 2);
    assert_eq!(*timeout_ms, GO_AHEAD_TIMEOUT_MS);
    let close = &plan.ops[position(&plan, Step::CloseFds)].op;
    assert!(
        matches!(close, Op::CloseFrom { keep } if keep.contains(fd)),
        "{close:?}"
    );

    // Without one, nothing waits.
    spec.go_ahead = None;
    let plan = build(&spec).unwrap();
    assert!(!plan.steps().contains(&Step::AwaitGoAhead));
}

#[test]
fn a_read_only_task_bind_is_attached_per_task_and_read_only() {
    let dir = staging();
    let mut spec = jail_spec(dir.path());
    let Filesystem::Jail(rootfs) = &mut spec.filesystem else {
        unreachable!()
    };
    rootfs
        .task_ro_binds
        .push(Bind::new(dir.path().parent().unwrap(), "/local"));
    let plan = build_with(&spec, JailMode::Template).unwrap();
    let template = plan.template.as_ref().expect("a template layout");
    // Only its mount point is shared: the template of a task with a writable /local is the
    // same one.
    assert!(template
        .key
        .mount_points
        .contains(&(PathBuf::from("/local"), true)));
    assert!(!template
        .key
        .binds
        .iter()
        .any(|(_, sandbox, _)| sandbox == Path::new("/local")));
    let local: Vec<_> = plan
        .detached
        .iter()
        .filter(|d| d.text.ends_with(" at /local"))
        .collect();
    assert_eq!(local.len(), 1);
    assert!(local[0].read_only);
    assert!(plan
        .ops
        .iter()
        .any(|p| matches!(&p.op, Op::MoveMount { target, .. } if target.to_bytes() == b"/local")));

    // Without a template it is a bind remounted read-only.
    let plan = build_with(&spec, JailMode::Legacy).unwrap();
    let remount = plan
        .ops
        .iter()
        .find(|p| p.step == Step::RemountBind && p.target.ends_with(" at /local"))
        .expect("a remount of /local");
    assert!(
        matches!(&remount.op, Op::Mount { flags, .. } if flags & libc::MS_RDONLY != 0),
        "{remount:?}"
    );

    // A bad one is refused naming its list.
    rootfs_of(&mut spec)
        .task_ro_binds
        .push(Bind::new("rel", "/x"));
    let e = build_with(&spec, JailMode::Template)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("task_ro_binds[1].host: rel is not an absolute path"),
        "{e}"
    );
}

fn rootfs_of(spec: &mut SandboxSpec) -> &mut RootfsSpec {
    match &mut spec.filesystem {
        Filesystem::Jail(rootfs) => rootfs,
        Filesystem::Host => panic!("not a jail"),
    }
}

#[test]
fn only_errors_that_would_repeat_are_permanent() {
    let step = |step: Step, errno: Errno| SpawnError::Step {
        step,
        target: String::new(),
        errno,
        message: String::new(),
    };
    for permanent in [
        SpawnError::invalid("work_dir", "relative"),
        step(Step::Exec, Errno::ENOENT),
        step(Step::Exec, Errno::EACCES),
        step(Step::ChangeDirectory, Errno::ENOTDIR),
        step(Step::SetRlimit, Errno::EPERM),
    ] {
        assert!(permanent.is_permanent(), "{permanent:?}");
    }
    for transient in [
        step(Step::Exec, Errno::ENOMEM),
        step(Step::MountProc, Errno::EBUSY),
        step(Step::JoinCgroup, Errno::ENOSPC),
        SpawnError::Clone {
            flags: String::new(),
            errno: Errno::EAGAIN,
        },
        SpawnError::Report { pid: 1, bytes: 3 },
    ] {
        assert!(!transient.is_permanent(), "{transient:?}");
    }
}
