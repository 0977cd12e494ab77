//! Unit tests of an entry's preparation, against the test process itself (no root needed
//! except for the pty, which opens the host's `/dev/pts/ptmx`).

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use super::*;
use crate::caps::DEFAULT_ALLOW;
use crate::sandbox::{Report, RlimitResource};

fn nobody() -> ResolvedUser {
    ResolvedUser {
        name: "nobody".to_string(),
        uid: 65534,
        gid: 65534,
        groups: vec![65534],
        home: PathBuf::from("/nonexistent"),
    }
}

fn entry(target_pid: i32) -> EnterSpec {
    EnterSpec {
        target_pid,
        program: "/bin/sh".to_string(),
        args: vec!["-c".to_string(), "true".to_string()],
        env: vec![("PATH".to_string(), "/usr/bin:/bin".to_string())],
        work_dir: PathBuf::from("/"),
        user: nobody(),
        cgroup: None,
        capabilities: DEFAULT_ALLOW,
        ambient_capabilities: CapabilitySet::EMPTY,
        rlimits: vec![Rlimit {
            resource: RlimitResource::Nofile,
            soft: 1024,
            hard: 4096,
        }],
        seccomp: SeccompPolicy::Default,
        io: EnterIo::default(),
    }
}

fn own_pid() -> i32 {
    std::process::id() as i32
}

/// A cgroup join over temp files (never written in these tests).
fn fake_join(dir: &std::path::Path) -> CgroupJoin {
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
        jail_mounts: Vec::new(),
    }
}

fn steps(plan: &plan::Plan) -> Vec<Step> {
    plan.ops.iter().map(|p| p.step).collect()
}

#[test]
fn an_entry_joins_cgroup_then_namespaces_then_root_and_drops_like_spawn() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = entry(own_pid());
    spec.cgroup = Some(fake_join(dir.path()));
    let target = Target::open(own_pid()).unwrap();
    let plan = build_plan(&spec, &target, None).unwrap();
    assert_eq!(
        steps(&plan),
        vec![
            Step::MakeNonDumpable,
            Step::JoinCgroup,
            Step::JoinCgroup,
            Step::JoinTaskNamespaces,
            Step::EnterTaskRoot,
            Step::EnterTaskRoot,
            Step::SetRlimit,
            Step::SetupStdio,
            Step::SetupStdio,
            Step::SetupStdio,
            Step::CloseFds,
            Step::ResetSignals,
            Step::NewSession,
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
        ]
    );
    // The namespaces are joined in one atomic setns on the pidfd, the user namespace left out.
    let join = plan
        .ops
        .iter()
        .find(|p| p.step == Step::JoinTaskNamespaces)
        .unwrap();
    match &join.op {
        Op::SetNs { fd, nstype } => {
            assert_eq!(*fd, target.pidfd.as_raw_fd());
            assert_eq!(*nstype & libc::CLONE_NEWUSER, 0);
            for ns in [
                libc::CLONE_NEWNS,
                libc::CLONE_NEWIPC,
                libc::CLONE_NEWUTS,
                libc::CLONE_NEWNET,
                libc::CLONE_NEWCGROUP,
                libc::CLONE_NEWPID,
            ] {
                assert_ne!(*nstype & ns, 0, "{ns:#x} missing");
            }
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        join.target,
        format!("pid {} (mnt, ipc, uts, net, cgroup, pid)", own_pid())
    );
    // The root is entered through the fd opened in the parent.
    let root_ops: Vec<&Op> = plan
        .ops
        .iter()
        .filter(|p| p.step == Step::EnterTaskRoot)
        .map(|p| &p.op)
        .collect();
    assert!(matches!(root_ops[0], Op::Fchdir { fd } if *fd == target.root.as_raw_fd()));
    assert!(matches!(root_ops[1], Op::Chroot { path } if path.as_bytes() == b"."));
}

#[test]
fn a_pty_entry_takes_the_terminal_after_its_new_session() {
    let target = Target::open(own_pid()).unwrap();
    let (_r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut spec = entry(own_pid());
    spec.io = EnterIo::Pty(PtySpec::default());
    let plan = build_plan(&spec, &target, Some(&w)).unwrap();
    let s = steps(&plan);
    let session = s.iter().position(|x| *x == Step::NewSession).unwrap();
    assert_eq!(s[session + 1], Step::SetControllingTerminal);
    assert_eq!(s[session - 1], Step::ResetSignals);
    assert!(matches!(
        plan.ops[session + 1].op,
        Op::ControllingTty { fd: 0 }
    ));
    // All three streams come from the slave.
    assert_eq!(s.iter().filter(|x| **x == Step::SetupStdio).count(), 3);
}

#[test]
fn exec_errors_of_an_entry_say_inside_the_task_root() {
    let target = Target::open(own_pid()).unwrap();
    let mut spec = entry(own_pid());
    spec.program = "/no/such/program".to_string();
    let plan = build_plan(&spec, &target, None).unwrap();
    let index = plan.ops.len() - 1;
    let err = plan.error_for(&Report {
        step: Step::Exec as u32,
        index: index as u32,
        errno: libc::ENOENT,
        detail: 0,
    });
    assert_eq!(
        err.to_string(),
        "exec \"/no/such/program\": no such file or directory inside the task root (ENOENT)"
    );
    let err = plan.error_for(&Report {
        step: Step::JoinTaskNamespaces as u32,
        index: 1,
        errno: libc::EPERM,
        detail: 0,
    });
    assert_eq!(
        err.to_string(),
        format!(
            "join the namespaces of pid {} (mnt, ipc, uts, net, cgroup, pid): operation not permitted (EPERM)",
            own_pid()
        )
    );
}

#[test]
fn bad_targets_are_refused_before_anything_runs() {
    for pid in [0, -1, -42] {
        let err = enter(&entry(pid)).err().unwrap();
        assert!(
            matches!(err, SpawnError::Invalid { ref field, .. } if field == "target_pid"),
            "{err}"
        );
    }
    // A pid that was reaped a moment ago.
    let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
    let pid = child.id() as i32;
    child.wait().unwrap();
    match enter(&entry(pid)) {
        Err(SpawnError::TargetGone { pid: gone }) => assert_eq!(gone, pid),
        other => panic!("expected TargetGone, got {other:?}"),
    }
    let text = SpawnError::TargetGone { pid }.to_string();
    assert!(
        text.starts_with(&format!("task process {pid} is not running")),
        "{text}"
    );
    // An exited but not yet reaped process (a zombie) is gone as well.
    let child = std::process::Command::new("/bin/true").spawn().unwrap();
    let pid = child.id() as i32;
    let pidfd = sys::pidfd_open(pid).unwrap();
    let mut fds = [nix::poll::PollFd::new(
        pidfd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(5000u16)).unwrap();
    assert!(matches!(
        enter(&entry(pid)),
        Err(SpawnError::TargetGone { .. })
    ));
    let mut child = child;
    child.wait().unwrap();
}

#[test]
fn inherited_streams_and_an_empty_program_are_refused() {
    let mut spec = entry(own_pid());
    spec.io = EnterIo::Streams {
        stdin: Stdio::Null,
        stdout: Stdio::Inherit,
        stderr: Stdio::Null,
    };
    let err = enter(&spec).err().unwrap();
    assert!(
        err.to_string()
            .starts_with("invalid sandbox spec: io.stdout: Stdio::Inherit"),
        "{err}"
    );
    let mut spec = entry(own_pid());
    spec.program.clear();
    assert!(enter(&spec)
        .err()
        .unwrap()
        .to_string()
        .contains("program: is empty"));
    let mut spec = entry(own_pid());
    spec.work_dir = PathBuf::from("relative");
    let target = Target::open(own_pid()).unwrap();
    let err = build_plan(&spec, &target, None).err().unwrap();
    assert!(err.to_string().contains("work_dir"), "{err}");
}

#[test]
fn matching_copies_the_tasks_identity_and_policy() {
    let task = SandboxSpec {
        program: "/bin/task".to_string(),
        args: Vec::new(),
        env: vec![("A".to_string(), "1".to_string())],
        work_dir: PathBuf::from("/local"),
        user: nobody(),
        filesystem: Filesystem::Host,
        namespaces: NamespaceSpec::default(),
        hostname: None,
        cgroup: None,
        capabilities: DEFAULT_ALLOW,
        ambient_capabilities: CapabilitySet::EMPTY,
        rlimits: vec![Rlimit {
            resource: RlimitResource::Nproc,
            soft: 10,
            hard: 20,
        }],
        seccomp: SeccompPolicy::Unconfined,
        stdin: Stdio::Null,
        stdout: Stdio::Null,
        stderr: Stdio::Null,
        go_ahead: None,
        init: false,
    };
    let e = EnterSpec::matching(&task, None, 77, "/bin/sh", vec!["-i".to_string()]);
    assert_eq!(e.target_pid, 77);
    assert_eq!(e.program, "/bin/sh");
    assert_eq!(e.env, task.env);
    assert_eq!(e.work_dir, task.work_dir);
    assert_eq!(e.user, task.user);
    assert_eq!(e.capabilities, task.capabilities);
    assert_eq!(e.rlimits, task.rlimits);
    assert_eq!(e.seccomp, SeccompPolicy::Unconfined);
    assert!(e.cgroup.is_none());
}

#[test]
fn a_pty_opened_through_a_root_fd_carries_data_and_resizes() {
    if !crate::privileged::require_root("opening /dev/pts/ptmx (mode 000 on most hosts)") {
        return;
    }
    let target = Target::open(own_pid()).unwrap();
    let (master, slave) = open_pty(
        &target,
        PtySpec {
            rows: 30,
            cols: 100,
        },
        65534,
    )
    .unwrap();
    assert_eq!(
        pty_size(slave.as_fd()).unwrap(),
        PtySpec {
            rows: 30,
            cols: 100
        }
    );
    set_pty_size(
        master.as_fd(),
        PtySpec {
            rows: 40,
            cols: 120,
        },
    )
    .unwrap();
    assert_eq!(
        pty_size(slave.as_fd()).unwrap(),
        PtySpec {
            rows: 40,
            cols: 120
        }
    );
    let stat = nix::sys::stat::fstat(slave.as_fd()).unwrap();
    assert_eq!(stat.st_uid, 65534);
    let mut slave_file = std::fs::File::from(slave);
    slave_file.write_all(b"hello\n").unwrap();
    let mut master_file = std::fs::File::from(master);
    let mut buf = [0u8; 16];
    let n = master_file.read(&mut buf).unwrap();
    // The line discipline turns "\n" into "\r\n" on output.
    assert_eq!(&buf[..n], b"hello\r\n");
    let (not_a_tty, _w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let err = set_pty_size(not_a_tty.as_fd(), PtySpec { rows: 1, cols: 1 }).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "set the size of pty fd {} to 1x1: ",
            not_a_tty.as_raw_fd()
        )),
        "{err}"
    );
}
