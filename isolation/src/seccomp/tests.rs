//! Seccomp tests: profile parsing, and the compiled programs run through a small classic-BPF
//! interpreter with synthetic `seccomp_data`.

use super::*;

/// Runs a seccomp program on (arch, nr, args) the way the kernel would.
fn run(program: &[libc::sock_filter], arch: u32, nr: i64, args: [u64; 6]) -> u32 {
    run_counting(program, arch, nr, args).0
}

/// Like [`run`], also returning how many instructions ran.
fn run_counting(program: &[libc::sock_filter], arch: u32, nr: i64, args: [u64; 6]) -> (u32, usize) {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&(nr as u32).to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    let mut steps = 0;
    loop {
        let insn = program[pc];
        steps += 1;
        match insn.code {
            0x20 => {
                acc = u32::from_le_bytes(
                    data[insn.k as usize..insn.k as usize + 4]
                        .try_into()
                        .unwrap(),
                )
            }
            0x54 => acc &= insn.k,
            0x06 => return (insn.k, steps),
            0x05 => pc += insn.k as usize,
            0x15 | 0x35 => {
                let taken = if insn.code == 0x15 {
                    acc == insn.k
                } else {
                    acc >= insn.k
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
            other => panic!("unexpected opcode {other:#x} at {pc}"),
        }
        pc += 1;
        assert!(pc < program.len(), "fell off the end of the program");
    }
}

fn nr(name: &str) -> i64 {
    syscall_number(name).unwrap()
}

const ARCH: u32 = bpf::NATIVE_ARCH;
const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

#[test]
fn default_policy_denies_the_dangerous_and_allows_the_rest() {
    let prog = SeccompPolicy::Default.compile().unwrap().unwrap();
    for name in [
        "mount",
        "umount2",
        "pivot_root",
        "setns",
        "bpf",
        "perf_event_open",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "reboot",
        "swapon",
        "swapoff",
        "keyctl",
        "add_key",
        "request_key",
        "ptrace",
        "open_by_handle_at",
        "userfaultfd",
        "process_vm_readv",
        "process_vm_writev",
        "io_uring_setup",
        "move_mount",
    ] {
        assert_eq!(run(&prog, ARCH, nr(name), [0; 6]), EPERM, "{name}");
    }
    for name in [
        "read",
        "write",
        "execve",
        "openat",
        "clone",
        "unshare",
        "mmap",
        "exit_group",
        "chdir",
        "wait4",
    ] {
        assert_eq!(
            run(&prog, ARCH, nr(name), [0; 6]),
            libc::SECCOMP_RET_ALLOW,
            "{name}"
        );
    }
}

#[test]
fn default_policy_blocks_user_namespaces_only() {
    let prog = SeccompPolicy::Default.compile().unwrap().unwrap();
    let newuser = libc::CLONE_NEWUSER as u64;
    for name in ["clone", "unshare"] {
        assert_eq!(
            run(&prog, ARCH, nr(name), [newuser, 0, 0, 0, 0, 0]),
            EPERM,
            "{name}"
        );
        assert_eq!(
            run(
                &prog,
                ARCH,
                nr(name),
                [newuser | libc::CLONE_NEWNS as u64, 0, 0, 0, 0, 0]
            ),
            EPERM
        );
        // Garbage in the upper half of a 32-bit flags argument does not bypass the check.
        assert_eq!(
            run(&prog, ARCH, nr(name), [newuser | (7 << 32), 0, 0, 0, 0, 0]),
            EPERM
        );
        let thread_flags =
            (libc::CLONE_VM | libc::CLONE_FS | libc::CLONE_FILES | libc::CLONE_THREAD) as u64;
        assert_eq!(
            run(&prog, ARCH, nr(name), [thread_flags, 0, 0, 0, 0, 0]),
            libc::SECCOMP_RET_ALLOW
        );
    }
    assert_eq!(
        run(&prog, ARCH, nr("clone3"), [0; 6]),
        libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
    );
}

#[test]
fn foreign_architectures_are_killed_and_x32_denied() {
    let prog = SeccompPolicy::Default.compile().unwrap().unwrap();
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;
    assert_eq!(
        run(&prog, AUDIT_ARCH_I386, 1, [0; 6]),
        libc::SECCOMP_RET_KILL_PROCESS
    );
    #[cfg(target_arch = "x86_64")]
    assert_eq!(run(&prog, ARCH, 0x4000_0000 + 165, [0; 6]), EPERM);
}

/// What a profile decides for (nr, args), straight from its rules (first match wins).
fn reference(profile: &SeccompProfile, nr: i64, args: [u64; 6]) -> u32 {
    let holds = |c: &ArgCondition| {
        let a = args[usize::from(c.index)];
        match c.op {
            ArgOp::Eq(v) => a == v,
            ArgOp::Ne(v) => a != v,
            ArgOp::MaskedEq { mask, value } => a & mask == value,
        }
    };
    profile
        .rules
        .iter()
        .find(|r| r.nr == nr && r.args.iter().all(holds))
        .map_or(profile.default_action, |r| r.action)
        .ret_value()
}

#[test]
fn compiled_search_tree_agrees_with_the_rules_for_every_syscall_number() {
    let json = r#"{
        "default_action": "errno", "default_errno": 38,
        "syscalls": [
            { "names": ["read", "write", "exit_group", "mmap", "brk", "close"], "action": "allow" },
            { "names": ["openat"], "action": "errno", "errno": 13,
              "args": [ { "index": 2, "op": "masked_eq", "mask": 3, "value": 1 } ] },
            { "names": ["openat"], "action": "allow" },
            { "names": ["kill"], "action": "kill_process",
              "args": [ { "index": 1, "op": "ne", "value": 0 } ] },
            { "names": ["kill"], "action": "log" },
            { "names": ["read"], "action": "trap" }
        ]
    }"#;
    let custom = SeccompProfile::parse(json, Path::new("p.json")).unwrap();
    let argsets: [[u64; 6]; 5] = [
        [0; 6],
        [1, 9, 1, 0, 0, 0],
        [0, 0, 2, 0, 0, 0],
        [u64::MAX; 6],
        [libc::CLONE_NEWUSER as u64, 0, 3, 0, 0, 1 << 33],
    ];
    for profile in [SeccompProfile::default_profile(), custom] {
        let prog = profile.compile().unwrap();
        let mut longest = 0;
        for nr in 0..600i64 {
            for args in argsets {
                let (got, steps) = run_counting(&prog, ARCH, nr, args);
                assert_eq!(got, reference(&profile, nr, args), "nr {nr} args {args:?}");
                longest = longest.max(steps);
            }
        }
        // A search, not a scan: the default profile has ~50 rules, the longest path is the
        // architecture checks, ~2·log2(rules) tree steps and one leaf.
        assert!(longest <= 30, "longest path {longest} instructions");
    }
}

#[test]
fn long_subtrees_and_leaves_reach_past_8_bit_jump_offsets() {
    // Every known syscall with an argument rule (long subtrees), and one syscall with so many
    // rules that its leaf alone is longer than 255 instructions.
    let mut rules: Vec<String> = syscalls::SYSCALLS
        .iter()
        .take(300)
        .map(|(name, _)| {
            format!(
                r#"{{ "names": ["{name}"], "action": "errno", "errno": 5,
                     "args": [ {{ "index": 0, "op": "eq", "value": 7 }} ] }}"#
            )
        })
        .collect();
    for v in 0..80 {
        rules.push(format!(
            r#"{{ "names": ["ioctl"], "action": "errno", "errno": {e},
                 "args": [ {{ "index": 1, "op": "eq", "value": {v} }} ] }}"#,
            e = v + 1
        ));
    }
    let json = format!(
        r#"{{ "default_action": "allow", "syscalls": [{}] }}"#,
        rules.join(",")
    );
    let profile = SeccompProfile::parse(&json, Path::new("big.json")).unwrap();
    let prog = profile.compile().unwrap();
    assert!(prog.len() > 1000, "{} instructions", prog.len());
    assert!(prog.iter().any(|i| i.code == 0x05), "expected a ja");
    for nr in 0..600i64 {
        for args in [
            [7, 0, 0, 0, 0, 0],
            [0, 79, 0, 0, 0, 0],
            [7, 3, 0, 0, 0, 0],
            [0; 6],
        ] {
            assert_eq!(
                run(&prog, ARCH, nr, args),
                reference(&profile, nr, args),
                "nr {nr} args {args:?}"
            );
        }
    }
}

/// A rule whose every condition is at its longest (`masked_eq` reaching the high word), so its
/// block is the longest the generator makes: `arg[i] & mask == (i + 1) << 32 | 1` for all
/// six arguments.
fn longest_rule(name: &str, action: Action) -> Rule {
    let args = (0..MAX_ARG_CONDITIONS)
        .map(|i| ArgCondition {
            index: u8::try_from(i).unwrap(),
            op: ArgOp::MaskedEq {
                mask: 0xff << 32 | 0xff,
                value: (i as u64 + 1) << 32 | 1,
            },
        })
        .collect();
    Rule {
        name: name.to_string(),
        nr: nr(name),
        args,
        action,
    }
}

/// Arguments matching [`longest_rule`]; with `miss` = Some((i, high)), argument `i` differs
/// in its low or high word.
fn longest_rule_args(miss: Option<(usize, bool)>) -> [u64; 6] {
    let mut args = [0u64; 6];
    for (i, a) in args.iter_mut().enumerate() {
        *a = (i as u64 + 1) << 32 | 1 | 0xff00;
    }
    if let Some((i, high)) = miss {
        args[i] ^= if high { 1 << 33 } else { 1 };
    }
    args
}

#[test]
fn a_rule_at_the_condition_limit_jumps_exactly_past_its_block() {
    let profile = SeccompProfile {
        default_action: Action::Allow,
        rules: vec![
            longest_rule("openat", Action::Errno(13)),
            Rule {
                name: "openat".to_string(),
                nr: nr("openat"),
                args: Vec::new(),
                action: Action::Errno(5),
            },
        ],
    };
    let prog = profile.compile().unwrap();
    let block = 1 + MAX_ARG_CONDITIONS * 6;
    assert_eq!(bpf::MAX_RULE_BLOCK, block);
    let openat = nr("openat");
    let errno = |e: u32| libc::SECCOMP_RET_ERRNO | e;
    assert_eq!(run(&prog, ARCH, openat, longest_rule_args(None)), errno(13));
    // A miss in any word of any argument leaves the block exactly at its end: the next rule.
    for i in 0..MAX_ARG_CONDITIONS {
        for high in [false, true] {
            let args = longest_rule_args(Some((i, high)));
            assert_eq!(
                run(&prog, ARCH, openat, args),
                errno(5),
                "arg {i} high {high}"
            );
            assert_eq!(reference(&profile, openat, args), errno(5));
        }
    }
    assert_eq!(
        run(&prog, ARCH, nr("read"), longest_rule_args(None)),
        libc::SECCOMP_RET_ALLOW
    );
}

#[test]
fn long_programs_of_longest_rules_agree_with_their_rules() {
    // One longest rule for each of the first 90 syscalls: ~3,700 instructions, near the
    // kernel's 4096, with leaves of 39 instructions and subtrees past 8-bit offsets.
    let rules: Vec<Rule> = syscalls::SYSCALLS
        .iter()
        .take(90)
        .map(|(name, _)| longest_rule(name, Action::Errno(7)))
        .collect();
    let profile = SeccompProfile {
        default_action: Action::Errno(38),
        rules,
    };
    let prog = profile.compile().unwrap();
    assert!(prog.len() > 3_000, "{} instructions", prog.len());
    assert!(prog.iter().any(|i| i.code == 0x05), "expected a ja");
    for nr in 0..600i64 {
        for args in [
            longest_rule_args(None),
            longest_rule_args(Some((5, true))),
            longest_rule_args(Some((0, false))),
        ] {
            assert_eq!(
                run(&prog, ARCH, nr, args),
                reference(&profile, nr, args),
                "nr {nr}"
            );
        }
    }
}

#[test]
fn the_largest_profile_the_limits_allow_is_too_large_not_wrong() {
    // MAX_PROFILE_RULES rules at MAX_ARG_CONDITIONS conditions each: the generator's offsets
    // still fit (its assertions hold), and the kernel's limit refuses the program cleanly.
    let rules: Vec<Rule> = syscalls::SYSCALLS
        .iter()
        .cycle()
        .take(MAX_PROFILE_RULES)
        .map(|(name, _)| longest_rule(name, Action::KillProcess))
        .collect();
    let profile = SeccompProfile {
        default_action: Action::Allow,
        rules,
    };
    match profile.compile() {
        Err(SeccompError::TooLarge { instructions }) => {
            assert!(instructions > 4096 * 9, "{instructions}")
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn profiles_built_in_code_must_keep_the_parsers_limits() {
    let openat = |args: Vec<ArgCondition>, action: Action| SeccompProfile {
        default_action: Action::Allow,
        rules: vec![
            Rule {
                name: "read".to_string(),
                nr: nr("read"),
                args: Vec::new(),
                action: Action::Allow,
            },
            Rule {
                name: "openat".to_string(),
                nr: nr("openat"),
                args,
                action,
            },
        ],
    };
    let eq = |index: u8| ArgCondition {
        index,
        op: ArgOp::Eq(1),
    };
    let seven = (0..7).map(|i| eq(i % 6)).collect();
    let errors = [
        (
            openat(seven, Action::Allow),
            "seccomp rule 1 (openat): 7 argument conditions exceed the limit of 6",
        ),
        (
            openat(vec![eq(6)], Action::Allow),
            "seccomp rule 1 (openat): 6 is not an argument index 0..=5",
        ),
        (
            openat(Vec::new(), Action::Errno(0)),
            "seccomp rule 1 (openat): errno 0 is outside 1..=4095",
        ),
        (
            SeccompProfile {
                default_action: Action::Errno(5000),
                rules: Vec::new(),
            },
            "seccomp profile: default action: errno 5000 is outside 1..=4095",
        ),
        (
            SeccompProfile {
                default_action: Action::Allow,
                rules: vec![longest_rule("read", Action::Allow); MAX_PROFILE_RULES + 1],
            },
            "seccomp profile: 1025 rules exceed the limit of 1024",
        ),
    ];
    for (profile, message) in errors {
        let err = profile.compile().unwrap_err();
        assert_eq!(err.to_string(), message);
    }
    // At the limits exactly: compiles.
    let six = (0..6).map(eq).collect();
    assert!(openat(six, Action::Errno(4095)).compile().is_ok());
}

#[test]
fn unconfined_has_no_program() {
    assert!(SeccompPolicy::Unconfined.compile().unwrap().is_none());
}

#[test]
fn profile_rules_apply_in_order_with_arguments() {
    let json = r#"{
        "default_action": "errno", "default_errno": 38,
        "syscalls": [
            { "names": ["read", "write", "exit_group"], "action": "allow" },
            { "names": ["openat"], "action": "errno", "errno": 13,
              "args": [ { "index": 2, "op": "masked_eq", "mask": 3, "value": 1 } ] },
            { "names": ["openat"], "action": "allow" },
            { "names": ["kill"], "action": "kill_process",
              "args": [ { "index": 1, "op": "ne", "value": 0 } ] },
            { "names": ["kill"], "action": "log" },
            { "names": ["ioctl"], "action": "trap",
              "args": [ { "index": 1, "op": "eq", "value": 21522 }, { "index": 0, "op": "eq", "value": 4294967296 } ] }
        ]
    }"#;
    let profile = SeccompProfile::parse(json, Path::new("p.json")).unwrap();
    assert_eq!(profile.rules.len(), 8);
    let prog = profile.compile().unwrap();
    assert_eq!(
        run(&prog, ARCH, nr("read"), [0; 6]),
        libc::SECCOMP_RET_ALLOW
    );
    assert_eq!(
        run(&prog, ARCH, nr("exit_group"), [0; 6]),
        libc::SECCOMP_RET_ALLOW
    );
    // O_WRONLY (1) is refused, O_RDONLY (0) allowed.
    assert_eq!(
        run(&prog, ARCH, nr("openat"), [0, 0, 1, 0, 0, 0]),
        libc::SECCOMP_RET_ERRNO | 13
    );
    assert_eq!(
        run(&prog, ARCH, nr("openat"), [0, 0, 0, 0, 0, 0]),
        libc::SECCOMP_RET_ALLOW
    );
    // ne: signal 0 (a probe) is logged, a real signal kills.
    assert_eq!(
        run(&prog, ARCH, nr("kill"), [1, 9, 0, 0, 0, 0]),
        libc::SECCOMP_RET_KILL_PROCESS
    );
    assert_eq!(
        run(&prog, ARCH, nr("kill"), [1, 1 << 32, 0, 0, 0, 0]),
        libc::SECCOMP_RET_KILL_PROCESS
    );
    assert_eq!(
        run(&prog, ARCH, nr("kill"), [1, 0, 0, 0, 0, 0]),
        libc::SECCOMP_RET_LOG
    );
    // eq compares all 64 bits, every condition must hold.
    assert_eq!(
        run(&prog, ARCH, nr("ioctl"), [1 << 32, 21522, 0, 0, 0, 0]),
        libc::SECCOMP_RET_TRAP
    );
    assert_eq!(
        run(&prog, ARCH, nr("ioctl"), [0, 21522, 0, 0, 0, 0]),
        libc::SECCOMP_RET_ERRNO | 38
    );
    assert_eq!(
        run(&prog, ARCH, nr("ioctl"), [1 << 32, 21523, 0, 0, 0, 0]),
        libc::SECCOMP_RET_ERRNO | 38
    );
    // Anything else takes the default.
    assert_eq!(
        run(&prog, ARCH, nr("mount"), [0; 6]),
        libc::SECCOMP_RET_ERRNO | 38
    );
}

#[test]
fn profile_errors_point_at_the_problem() {
    let path = Path::new("/etc/noded/seccomp.json");
    let cases = [
        (
            r#"{"default_action": "allow", "syscalls": [{"names": ["mount", "frobnicate"], "action": "errno"}]}"#,
            "syscalls[0].names[1]: unknown syscall \"frobnicate\"",
        ),
        (
            r#"{"default_action": "allow", "syscalls": [{"names": [], "action": "allow"}]}"#,
            "syscalls[0].names: is empty",
        ),
        (
            r#"{"default_action": "errno", "default_errno": 0}"#,
            "default_errno: errno 0 is outside",
        ),
        (
            r#"{"default_action": "allow", "syscalls": [{"names": ["read"], "action": "allow", "args": [{"index": 6, "op": "eq", "value": 1}]}]}"#,
            "syscalls[0].args[0].index: 6 is not an argument index",
        ),
        (
            r#"{"default_action": "allow", "syscalls": [{"names": ["read"], "action": "allow", "args": [{"index": 0, "op": "masked_eq", "value": 1}]}]}"#,
            "masked_eq needs a \"mask\"",
        ),
        (
            r#"{"default_action": "allow", "syscalls": [{"names": ["read"], "action": "allow", "args": [{"index": 0, "op": "eq", "value": 1, "mask": 1}]}]}"#,
            "\"mask\" is only valid with masked_eq",
        ),
        (
            r#"{"default_action": "permit"}"#,
            "unknown variant `permit`",
        ),
        (
            r#"{"default_action": "allow", "syscall": []}"#,
            "unknown field `syscall`",
        ),
        (
            "{\n  \"default_action\": \"allow\",\n  oops\n}",
            "line 3 column 3",
        ),
    ];
    for (json, expected) in cases {
        let err = SeccompProfile::parse(json, path).unwrap_err().to_string();
        assert!(
            err.starts_with("seccomp profile /etc/noded/seccomp.json: "),
            "{err}"
        );
        assert!(err.contains(expected), "expected {expected:?} in {err:?}");
    }
}

#[test]
fn profile_file_is_read_and_missing_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.json");
    std::fs::write(&path, r#"{"default_action": "allow", "syscalls": [{"names": ["reboot"], "action": "kill_process"}]}"#).unwrap();
    let policy = SeccompPolicy::from_profile_file(&path).unwrap();
    let prog = policy.compile().unwrap().unwrap();
    assert_eq!(
        run(&prog, ARCH, nr("reboot"), [0; 6]),
        libc::SECCOMP_RET_KILL_PROCESS
    );
    let err = SeccompPolicy::from_profile_file(&dir.path().join("missing.json")).unwrap_err();
    assert!(
        err.to_string().contains("cannot read seccomp profile"),
        "{err}"
    );
    assert!(err.to_string().contains("missing.json"), "{err}");
}

#[test]
fn huge_profiles_are_refused() {
    let names: Vec<String> = (0..MAX_PROFILE_RULES + 1)
        .map(|_| "\"read\"".to_string())
        .collect();
    let json = format!(
        r#"{{"default_action": "allow", "syscalls": [{{"names": [{}], "action": "allow"}}]}}"#,
        names.join(",")
    );
    let err = SeccompProfile::parse(&json, Path::new("big.json")).unwrap_err();
    assert!(err.to_string().contains("exceed the limit"), "{err}");
    // The same in the OCI format.
    let json = format!(
        r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{{"names": [{}], "action": "SCMP_ACT_ALLOW"}}]}}"#,
        names.join(",")
    );
    let err = SeccompProfile::parse(&json, Path::new("big.json")).unwrap_err();
    assert!(
        err.to_string()
            .contains("syscalls: 1025 rules exceed the limit"),
        "{err}"
    );
}

#[test]
fn syscall_table_knows_the_common_names() {
    for name in [
        "read",
        "execve",
        "clone",
        "clone3",
        "openat2",
        "close_range",
        "pidfd_open",
    ] {
        assert!(syscall_number(name).is_some(), "{name}");
    }
    assert_eq!(syscall_number("read"), Some(libc::SYS_read));
    assert!(syscall_number("no_such_call").is_none());
}

#[test]
fn oci_profiles_are_read_conservatively() {
    // The shape of Docker's default profile: an allow-list, a conditional personality rule, a
    // rule for capability holders only, one for other architectures, names of other
    // architectures, a masked clone rule for tasks without CAP_SYS_ADMIN.
    let json = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            { "names": ["read", "write", "exit_group", "arm_fadvise64_64"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["personality"], "action": "SCMP_ACT_ALLOW",
              "args": [ { "index": 0, "value": 0, "valueTwo": 0, "op": "SCMP_CMP_EQ" } ] },
            { "names": ["mount", "umount2"], "action": "SCMP_ACT_ALLOW",
              "includes": { "caps": ["CAP_SYS_ADMIN"] } },
            { "names": ["sync_file_range2"], "action": "SCMP_ACT_ALLOW",
              "includes": { "arches": ["ppc64le"] } },
            { "names": ["clone"], "action": "SCMP_ACT_ALLOW",
              "args": [ { "index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ" } ],
              "excludes": { "caps": ["CAP_SYS_ADMIN"] } },
            { "name": "kill", "action": "SCMP_ACT_KILL_PROCESS" },
            { "names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "comment": "x" }
        ]
    }"#;
    let profile = SeccompProfile::parse(json, Path::new("docker.json")).unwrap();
    let prog = profile.compile().unwrap();
    let allow = libc::SECCOMP_RET_ALLOW;
    let eperm = libc::SECCOMP_RET_ERRNO | 1;
    assert_eq!(run(&prog, ARCH, nr("read"), [0; 6]), allow);
    assert_eq!(run(&prog, ARCH, nr("personality"), [0; 6]), allow);
    assert_eq!(
        run(&prog, ARCH, nr("personality"), [8, 0, 0, 0, 0, 0]),
        eperm
    );
    // Capability holders' rules do not apply: mount takes the default.
    assert_eq!(run(&prog, ARCH, nr("mount"), [0; 6]), eperm);
    // clone without namespace flags is allowed, with CLONE_NEWUSER it is not.
    assert_eq!(run(&prog, ARCH, nr("clone"), [0x11, 0, 0, 0, 0, 0]), allow);
    assert_eq!(
        run(
            &prog,
            ARCH,
            nr("clone"),
            [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0]
        ),
        eperm
    );
    assert_eq!(
        run(&prog, ARCH, nr("kill"), [0; 6]),
        libc::SECCOMP_RET_KILL_PROCESS
    );
    assert_eq!(
        run(&prog, ARCH, nr("mkdir"), [0; 6]),
        libc::SECCOMP_RET_ERRNO | 13
    );
    // Names of other architectures were skipped, not refused.
    assert!(!profile.rules.iter().any(|r| r.name == "arm_fadvise64_64"));

    // What cannot be honoured is refused, naming the rule.
    let path = Path::new("/etc/noded/docker.json");
    for (text, expected) in [
        (
            r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#,
            "defaultAction: SCMP_ACT_NOTIFY needs a supervising process",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_GT"}]}]}"#,
            "syscalls[0].args[0].op: SCMP_CMP_GT is not supported",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]}"#,
            "syscalls[0].names: is empty",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5000}]}"#,
            "syscalls[0].action: errno 5000 is outside 1..=4095",
        ),
    ] {
        let e = SeccompProfile::parse(text, path).unwrap_err().to_string();
        assert!(e.contains(expected), "{e}");
        assert!(e.contains("/etc/noded/docker.json"), "{e}");
    }
    // noded's own format still reports the line of a JSON error.
    let e = SeccompProfile::parse("{\n\"default_action\": \"allow\",\n\"x\": 1}", path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 3"), "{e}");
}
