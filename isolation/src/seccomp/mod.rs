//! Syscall filtering: policies, the profile file format, and the BPF compiler.
//!
//! Owns turning a [`SeccompPolicy`] into a classic-BPF program before the sandbox clones (the
//! child only installs the prepared program). Must not: install anything itself.
//!
//! # Default policy
//! [`SeccompPolicy::Default`] allows everything except [`DEFAULT_DENIED`] (mounts, namespaces
//! and `setns`, BPF, perf, kexec and modules, reboot, swap, the kernel keyring, ptrace and
//! cross-process memory access, `open_by_handle_at`, `userfaultfd`, io_uring, clock setting,
//! accounting, quotas, raw I/O ports), which fail with `EPERM`. `clone` and `unshare` fail
//! with `EPERM` when asked for `CLONE_NEWUSER`; `clone3` fails with `ENOSYS` (its flags live
//! in memory a filter cannot read; libc then falls back to `clone`). Syscalls of a foreign ABI
//! (32-bit x86 on x86_64, for example) kill the process, so a denylist cannot be bypassed
//! through them; x32 syscalls fail with `EPERM`.
//!
//! # Profile files
//! A profile is a JSON file (format version 1, all keys lower-case, unknown keys rejected):
//!
//! ```json
//! {
//!   "default_action": "allow",
//!   "syscalls": [
//!     { "names": ["mount", "umount2"], "action": "errno", "errno": 1 },
//!     { "names": ["clone", "unshare"], "action": "errno", "errno": 1,
//!       "args": [ { "index": 0, "op": "masked_eq", "mask": 268435456, "value": 268435456 } ] },
//!     { "names": ["reboot"], "action": "kill_process" }
//!   ]
//! }
//! ```
//!
//! - `default_action` (required) and each rule's `action`: `allow`, `errno` (with `errno`, a
//!   number 1..=4095, default 1 = EPERM; `default_errno` for the default action), `kill_process`,
//!   `kill_thread`, `trap`, `log`.
//! - `names`: syscall names of the running architecture; an unknown name is an error.
//! - `args` (optional, all must match, at most [`MAX_ARG_CONDITIONS`]): `index` 0..=5, `op`
//!   one of `eq`, `ne`, `masked_eq` (`arg & mask == value`), 64-bit `value` and `mask`.
//! - Rules are tried in file order; the first whose name and arguments match decides. At most
//!   [`MAX_PROFILE_RULES`] rules.
//!
//! A profile in the OCI runtime-spec format (as runc, crun, Docker and Podman take it, with
//! `"defaultAction"`) is read too; module `oci` says how its rules are read.
//!
//! The filter is installed just before `chdir` and `execve`, so a profile must allow those
//! (and `write`/`exit_group`, which report a failed step to the parent); otherwise the task
//! dies before it runs, seen by the caller as an exit by signal or errno.

mod oci;
mod syscalls;

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Most rules (syscall names × rule entries) a profile may hold.
pub const MAX_PROFILE_RULES: usize = 1024;

/// Most argument conditions one rule may hold (a syscall has six arguments).
pub const MAX_ARG_CONDITIONS: usize = 6;

/// The errnos a filter may return: the kernel's `MAX_ERRNO` bounds them, and 0 would make a
/// denied syscall look successful without running it.
const ERRNO_RANGE: std::ops::RangeInclusive<u16> = 1..=4095;

/// Syscalls the default policy fails with `EPERM` (names missing on the running architecture
/// are skipped).
pub const DEFAULT_DENIED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pidfd_getfd",
    "pivot_root",
    "process_madvise",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "syslog",
    "umount2",
    "uselib",
    "userfaultfd",
    "ustat",
    "vhangup",
    "_sysctl",
    "adjtimex",
];

/// What a filter does with a syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    /// Fail with this errno (1..=4095).
    Errno(u16),
    KillProcess,
    KillThread,
    Trap,
    Log,
}

impl Action {
    fn ret_value(self) -> u32 {
        match self {
            Action::Allow => libc::SECCOMP_RET_ALLOW,
            Action::Errno(e) => libc::SECCOMP_RET_ERRNO | u32::from(e),
            Action::KillProcess => libc::SECCOMP_RET_KILL_PROCESS,
            Action::KillThread => libc::SECCOMP_RET_KILL_THREAD,
            Action::Trap => libc::SECCOMP_RET_TRAP,
            Action::Log => libc::SECCOMP_RET_LOG,
        }
    }
}

/// A comparison of one syscall argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgOp {
    Eq(u64),
    Ne(u64),
    /// `arg & mask == value`
    MaskedEq {
        mask: u64,
        value: u64,
    },
}

/// A condition on syscall argument `index` (0..=5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgCondition {
    pub index: u8,
    pub op: ArgOp,
}

/// One rule: a syscall number, optional argument conditions (all must hold), an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub nr: i64,
    pub args: Vec<ArgCondition>,
    pub action: Action,
}

/// A validated filter: rules tried in order, then the default action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompProfile {
    pub default_action: Action,
    pub rules: Vec<Rule>,
}

/// Which filter a sandboxed process gets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SeccompPolicy {
    /// The built-in denylist (see the module docs).
    #[default]
    Default,
    /// No filter.
    Unconfined,
    /// A parsed profile (see [`SeccompPolicy::from_profile_file`]).
    Profile(SeccompProfile),
}

/// Why a profile was rejected.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("cannot read seccomp profile {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("seccomp profile {path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("seccomp profile {path}: {location}: {reason}")]
    Invalid {
        path: PathBuf,
        location: String,
        reason: String,
    },
    #[error("seccomp filter too large: {instructions} BPF instructions (the kernel takes at most 4096); use fewer rules")]
    TooLarge { instructions: usize },
    /// A profile built in code breaks a limit the profile parsers enforce (and the code
    /// generator relies on); `index` is the rule's position in [`SeccompProfile::rules`].
    #[error("seccomp rule {index} ({name}): {reason}")]
    Rule {
        index: usize,
        name: String,
        reason: String,
    },
    /// As [`SeccompError::Rule`], for the profile as a whole.
    #[error("seccomp profile: {reason}")]
    Profile { reason: String },
}

/// The syscall number of `name` on the running architecture.
pub fn syscall_number(name: &str) -> Option<i64> {
    syscalls::SYSCALLS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, nr)| *nr)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum JsonAction {
    Allow,
    Errno,
    KillProcess,
    KillThread,
    Trap,
    Log,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum JsonOp {
    Eq,
    Ne,
    MaskedEq,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonArg {
    index: u8,
    op: JsonOp,
    value: u64,
    #[serde(default)]
    mask: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRule {
    names: Vec<String>,
    action: JsonAction,
    #[serde(default)]
    errno: Option<u16>,
    #[serde(default)]
    args: Vec<JsonArg>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonProfile {
    default_action: JsonAction,
    #[serde(default)]
    default_errno: Option<u16>,
    #[serde(default)]
    syscalls: Vec<JsonRule>,
}

fn action(json: &JsonAction, errno: Option<u16>) -> Result<Action, String> {
    Ok(match json {
        JsonAction::Allow => Action::Allow,
        JsonAction::Errno => {
            let e = errno.unwrap_or(libc::EPERM as u16);
            check_errno(e)?;
            Action::Errno(e)
        }
        JsonAction::KillProcess => Action::KillProcess,
        JsonAction::KillThread => Action::KillThread,
        JsonAction::Trap => Action::Trap,
        JsonAction::Log => Action::Log,
    })
}

/// An errno a filter may return ([`ERRNO_RANGE`]).
fn check_errno(errno: u16) -> Result<(), String> {
    if !ERRNO_RANGE.contains(&errno) {
        return Err(format!("errno {errno} is outside 1..=4095"));
    }
    Ok(())
}

/// At most [`MAX_PROFILE_RULES`] rules (syscall names × rule entries), in either format.
fn check_rule_count(rules: usize) -> Result<(), String> {
    if rules > MAX_PROFILE_RULES {
        return Err(format!(
            "{rules} rules exceed the limit of {MAX_PROFILE_RULES}"
        ));
    }
    Ok(())
}

/// The argument conditions of rule `i`, in either profile format: at most
/// [`MAX_ARG_CONDITIONS`], each on an argument index 0..=5. `read` gives one condition's
/// (index, comparison), or a reason and the location suffix (`.op`, or empty for the
/// condition itself) it is about. Errors are (location, reason).
fn conditions<A>(
    i: usize,
    args: &[A],
    read: impl Fn(&A) -> Result<(u8, ArgOp), (String, String)>,
) -> Result<Vec<ArgCondition>, (String, String)> {
    if args.len() > MAX_ARG_CONDITIONS {
        return Err((
            format!("syscalls[{i}].args"),
            format!("has more than {MAX_ARG_CONDITIONS} conditions"),
        ));
    }
    let mut out = Vec::with_capacity(args.len());
    for (j, arg) in args.iter().enumerate() {
        let (index, op) = read(arg)
            .map_err(|(suffix, reason)| (format!("syscalls[{i}].args[{j}]{suffix}"), reason))?;
        if index > 5 {
            return Err((
                format!("syscalls[{i}].args[{j}].index"),
                format!("{index} is not an argument index 0..=5"),
            ));
        }
        out.push(ArgCondition { index, op });
    }
    Ok(out)
}

impl SeccompPolicy {
    /// Reads and validates a profile file (format in the module docs).
    pub fn from_profile_file(path: &Path) -> Result<SeccompPolicy, SeccompError> {
        let text = std::fs::read_to_string(path).map_err(|source| SeccompError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        SeccompProfile::parse(&text, path).map(SeccompPolicy::Profile)
    }

    /// The BPF program for this policy; `None` for [`SeccompPolicy::Unconfined`].
    pub fn compile(&self) -> Result<Option<Vec<libc::sock_filter>>, SeccompError> {
        match self {
            SeccompPolicy::Unconfined => Ok(None),
            SeccompPolicy::Default => {
                // The built-in program never changes: compile it once per process.
                static DEFAULT: std::sync::OnceLock<Vec<libc::sock_filter>> =
                    std::sync::OnceLock::new();
                if let Some(program) = DEFAULT.get() {
                    return Ok(Some(program.clone()));
                }
                let program = SeccompProfile::default_profile().compile()?;
                Ok(Some(DEFAULT.get_or_init(|| program).clone()))
            }
            SeccompPolicy::Profile(p) => p.compile().map(Some),
        }
    }
}

impl SeccompProfile {
    /// Parses profile JSON, in noded's format or the OCI/Docker one; `path` only labels
    /// errors.
    pub fn parse(text: &str, path: &Path) -> Result<SeccompProfile, SeccompError> {
        let json_error = |source| SeccompError::Json {
            path: path.to_path_buf(),
            source,
        };
        // Parsed twice (to tell the formats apart, then typed) so errors keep their line.
        let value: serde_json::Value = serde_json::from_str(text).map_err(json_error)?;
        if oci::looks_like_oci(&value) {
            return oci::parse(text, path);
        }
        let json: JsonProfile = serde_json::from_str(text).map_err(json_error)?;
        let invalid = |location: String, reason: String| SeccompError::Invalid {
            path: path.to_path_buf(),
            location,
            reason,
        };
        let default_action = action(&json.default_action, json.default_errno)
            .map_err(|r| invalid("default_errno".to_string(), r))?;
        let mut rules = Vec::new();
        for (i, rule) in json.syscalls.iter().enumerate() {
            let act = action(&rule.action, rule.errno)
                .map_err(|r| invalid(format!("syscalls[{i}].errno"), r))?;
            if rule.names.is_empty() {
                return Err(invalid(
                    format!("syscalls[{i}].names"),
                    "is empty".to_string(),
                ));
            }
            let args = conditions(i, &rule.args, |arg| {
                let op = match (&arg.op, arg.mask) {
                    (JsonOp::Eq, None) => ArgOp::Eq(arg.value),
                    (JsonOp::Ne, None) => ArgOp::Ne(arg.value),
                    (JsonOp::MaskedEq, Some(mask)) => ArgOp::MaskedEq {
                        mask,
                        value: arg.value,
                    },
                    (JsonOp::MaskedEq, None) => {
                        return Err((String::new(), "masked_eq needs a \"mask\"".to_string()))
                    }
                    (_, Some(_)) => {
                        return Err((
                            String::new(),
                            "\"mask\" is only valid with masked_eq".to_string(),
                        ))
                    }
                };
                Ok((arg.index, op))
            })
            .map_err(|(location, reason)| invalid(location, reason))?;
            for (k, name) in rule.names.iter().enumerate() {
                let nr = syscall_number(name).ok_or_else(|| {
                    invalid(
                        format!("syscalls[{i}].names[{k}]"),
                        format!("unknown syscall {name:?} on {}", std::env::consts::ARCH),
                    )
                })?;
                rules.push(Rule {
                    name: name.clone(),
                    nr,
                    args: args.clone(),
                    action: act,
                });
            }
        }
        check_rule_count(rules.len()).map_err(|r| invalid("syscalls".to_string(), r))?;
        Ok(SeccompProfile {
            default_action,
            rules,
        })
    }

    /// The built-in policy (module docs).
    pub fn default_profile() -> SeccompProfile {
        let eperm = Action::Errno(libc::EPERM as u16);
        let mut rules = Vec::new();
        let newuser = ArgCondition {
            index: 0,
            op: ArgOp::MaskedEq {
                mask: libc::CLONE_NEWUSER as u64,
                value: libc::CLONE_NEWUSER as u64,
            },
        };
        for name in ["clone", "unshare"] {
            if let Some(nr) = syscall_number(name) {
                rules.push(Rule {
                    name: name.to_string(),
                    nr,
                    args: vec![newuser],
                    action: eperm,
                });
            }
        }
        if let Some(nr) = syscall_number("clone3") {
            rules.push(Rule {
                name: "clone3".to_string(),
                nr,
                args: Vec::new(),
                action: Action::Errno(libc::ENOSYS as u16),
            });
        }
        for name in DEFAULT_DENIED {
            if let Some(nr) = syscall_number(name) {
                rules.push(Rule {
                    name: (*name).to_string(),
                    nr,
                    args: Vec::new(),
                    action: eperm,
                });
            }
        }
        SeccompProfile {
            default_action: Action::Allow,
            rules,
        }
    }

    /// Compiles to classic BPF for `SECCOMP_SET_MODE_FILTER`. A profile built in code must
    /// keep the parsers' limits ([`MAX_PROFILE_RULES`], [`MAX_ARG_CONDITIONS`], argument
    /// indexes 0..=5, errnos 1..=4095): the generator's jump offsets are only sure to fit
    /// within them, so a profile beyond them is refused rather than compiled.
    pub fn compile(&self) -> Result<Vec<libc::sock_filter>, SeccompError> {
        self.check_limits()?;
        let program = bpf::compile(self);
        if program.len() > libc::BPF_MAXINSNS as usize {
            return Err(SeccompError::TooLarge {
                instructions: program.len(),
            });
        }
        bpf::assert_well_formed(&program);
        Ok(program)
    }

    /// The limits [`SeccompProfile::compile`] relies on, which `rules`' public fields do not
    /// enforce by themselves.
    fn check_limits(&self) -> Result<(), SeccompError> {
        check_rule_count(self.rules.len()).map_err(|reason| SeccompError::Profile { reason })?;
        if let Action::Errno(e) = self.default_action {
            check_errno(e).map_err(|r| SeccompError::Profile {
                reason: format!("default action: {r}"),
            })?;
        }
        for (index, rule) in self.rules.iter().enumerate() {
            let refuse = |reason: String| SeccompError::Rule {
                index,
                name: rule.name.clone(),
                reason,
            };
            if rule.args.len() > MAX_ARG_CONDITIONS {
                return Err(refuse(format!(
                    "{} argument conditions exceed the limit of {MAX_ARG_CONDITIONS}",
                    rule.args.len()
                )));
            }
            if let Some(c) = rule.args.iter().find(|c| c.index > 5) {
                return Err(refuse(format!(
                    "{} is not an argument index 0..=5",
                    c.index
                )));
            }
            if let Action::Errno(e) = rule.action {
                check_errno(e).map_err(refuse)?;
            }
        }
        Ok(())
    }
}

/// The classic-BPF code generator.
///
/// Jump offsets: a conditional jump reaches at most 255 instructions ahead (8 bits), `ja`
/// 2^32 - 1. Within a rule block every conditional jump stays inside the block, which
/// `MAX_RULE_BLOCK` bounds; a leaf or subtree longer than 255 instructions is jumped over
/// through a `ret` or a `ja`. So every offset fits by construction, given the limits
/// `SeccompProfile::compile` checks first; where an offset is emitted, an assertion says so
/// (a bug here must stop the program, never install a filter that jumps elsewhere).
mod bpf {
    use std::collections::BTreeMap;

    use super::{Action, ArgOp, Rule, SeccompProfile, MAX_ARG_CONDITIONS, MAX_PROFILE_RULES};

    const LD_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;

    /// Offsets in `struct seccomp_data`.
    const OFF_NR: u32 = 0;
    const OFF_ARCH: u32 = 4;
    fn off_arg_lo(index: u8) -> u32 {
        16 + 8 * u32::from(index)
    }
    fn off_arg_hi(index: u8) -> u32 {
        off_arg_lo(index) + 4
    }

    #[cfg(target_arch = "x86_64")]
    pub(crate) const NATIVE_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    pub(crate) const NATIVE_ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64
    #[cfg(target_arch = "x86_64")]
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;

    /// Instructions of the longest argument test: `masked_eq` on both words (load, and,
    /// jeq, twice).
    const MAX_CONDITION_LEN: usize = 6;

    /// The longest rule block: every condition at its longest, then the `ret`.
    pub(super) const MAX_RULE_BLOCK: usize = MAX_ARG_CONDITIONS * MAX_CONDITION_LEN + 1;

    /// The longest program the limits allow, far beyond what the kernel takes: the
    /// architecture checks (6), every rule at its longest, per leaf its test and two `ret`s
    /// (3), per tree node a `jge` and a `ja` (2).
    const MAX_PROGRAM: usize = 6 + MAX_PROFILE_RULES * (MAX_RULE_BLOCK + 3 + 2);

    // Offsets inside a rule block fit a conditional jump, offsets anywhere a `ja`.
    const _: () = assert!(MAX_RULE_BLOCK - 1 <= u8::MAX as usize);
    const _: () = assert!(MAX_PROGRAM <= u32::MAX as usize);

    /// A conditional jump offset that must fit 8 bits.
    fn offset_u8(over: usize) -> u8 {
        match u8::try_from(over) {
            Ok(offset) => offset,
            Err(_) => panic!("seccomp: conditional jump over {over} instructions (limit 255): the rule limits should have prevented this"),
        }
    }

    /// A `ja` offset (32 bits).
    fn offset_u32(over: usize) -> u32 {
        match u32::try_from(over) {
            Ok(offset) => offset,
            Err(_) => panic!("seccomp: jump over {over} instructions exceeds 32 bits"),
        }
    }

    fn stmt(code: u16, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }

    fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
        libc::sock_filter { code, jt, jf, k }
    }

    /// A conditional jump inside a rule block whose false branch goes to the block's end
    /// (patched once the block length is known).
    enum Insn {
        Plain(libc::sock_filter),
        /// jeq k: true → next instruction, false → end of block.
        JeqOrFail(u32),
        /// jeq k: true → end of block, false → next instruction.
        JeqThenFail(u32),
        /// jeq k: true → next instruction, false → skip `n` instructions.
        JeqOrSkip(u32, u8),
    }

    /// The program: the architecture checks, then a binary search over the syscall numbers
    /// that have rules, each leaf holding that number's rules in profile order.
    ///
    /// Only rules for the same number can compete for a syscall, so grouping them by number
    /// (keeping their order) keeps first-match semantics. A search tree instead of one test per
    /// rule matters twice: every syscall of the task runs the filter, and the kernel runs it
    /// once per syscall number when the filter is installed, to build its allow cache
    /// (`seccomp_cache_prepare`, with the task's signal lock held) — a linear filter made that
    /// the largest part of installing it.
    pub(super) fn compile(profile: &SeccompProfile) -> Vec<libc::sock_filter> {
        let mut out = vec![
            stmt(LD_ABS, OFF_ARCH),
            jump(JEQ_K, NATIVE_ARCH, 1, 0),
            stmt(RET_K, Action::KillProcess.ret_value()),
            stmt(LD_ABS, OFF_NR),
        ];
        #[cfg(target_arch = "x86_64")]
        {
            out.push(jump(JGE_K, X32_SYSCALL_BIT, 0, 1));
            out.push(stmt(RET_K, Action::Errno(libc::EPERM as u16).ret_value()));
        }

        let mut by_nr: BTreeMap<u32, Vec<&Rule>> = BTreeMap::new();
        for rule in &profile.rules {
            by_nr.entry(rule.nr as u32).or_default().push(rule);
        }
        let leaves: Vec<(u32, Vec<libc::sock_filter>)> = by_nr
            .into_iter()
            .map(|(nr, rules)| (nr, leaf(nr, &rules, profile.default_action)))
            .collect();
        if leaves.is_empty() {
            out.push(stmt(RET_K, profile.default_action.ret_value()));
        } else {
            out.extend(tree(&leaves));
        }
        out
    }

    /// The search over `leaves` (sorted by number, non-empty). The accumulator holds the
    /// syscall number on entry. `jge` jumps over the lower half to the upper one; when the
    /// lower half is longer than a conditional jump's 8-bit offset reaches, through a `ja`
    /// (32-bit offset).
    fn tree(leaves: &[(u32, Vec<libc::sock_filter>)]) -> Vec<libc::sock_filter> {
        if let [(_, code)] = leaves {
            return code.clone();
        }
        let (lower, upper) = leaves.split_at(leaves.len() / 2);
        let lower = tree(lower);
        let upper_code = tree(upper);
        let mut out = Vec::with_capacity(2 + lower.len() + upper_code.len());
        match u8::try_from(lower.len()) {
            Ok(over) => out.push(jump(JGE_K, upper[0].0, over, 0)),
            Err(_) => {
                // nr >= first upper number → the `ja` over the lower half; else skip it.
                out.push(jump(JGE_K, upper[0].0, 0, 1));
                out.push(stmt(JA, offset_u32(lower.len())));
            }
        }
        out.extend(lower);
        out.extend(upper_code);
        out
    }

    /// One number's code: not this number → the default; else its rules in order (a rule
    /// whose arguments do not match falls through to the next), then the default.
    fn leaf(nr: u32, rules: &[&Rule], default: Action) -> Vec<libc::sock_filter> {
        let mut out = Vec::new();
        for rule in rules {
            let mut block: Vec<Insn> = Vec::new();
            for cond in &rule.args {
                let lo = off_arg_lo(cond.index);
                let hi = off_arg_hi(cond.index);
                match cond.op {
                    ArgOp::Eq(v) => {
                        block.push(Insn::Plain(stmt(LD_ABS, lo)));
                        block.push(Insn::JeqOrFail(v as u32));
                        block.push(Insn::Plain(stmt(LD_ABS, hi)));
                        block.push(Insn::JeqOrFail((v >> 32) as u32));
                    }
                    ArgOp::MaskedEq { mask, value } => {
                        block.push(Insn::Plain(stmt(LD_ABS, lo)));
                        block.push(Insn::Plain(stmt(AND_K, mask as u32)));
                        block.push(Insn::JeqOrFail(value as u32));
                        // The high word only matters when the mask or value reaches it.
                        if (mask >> 32) != 0 || (value >> 32) != 0 {
                            block.push(Insn::Plain(stmt(LD_ABS, hi)));
                            block.push(Insn::Plain(stmt(AND_K, (mask >> 32) as u32)));
                            block.push(Insn::JeqOrFail((value >> 32) as u32));
                        }
                    }
                    ArgOp::Ne(v) => {
                        // Passes when either half differs.
                        block.push(Insn::Plain(stmt(LD_ABS, lo)));
                        block.push(Insn::JeqOrSkip(v as u32, 2));
                        block.push(Insn::Plain(stmt(LD_ABS, hi)));
                        block.push(Insn::JeqThenFail((v >> 32) as u32));
                    }
                }
            }
            block.push(Insn::Plain(stmt(RET_K, rule.action.ret_value())));

            let len = block.len();
            assert!(
                len <= MAX_RULE_BLOCK,
                "seccomp rule {} compiled to {len} instructions (at most {MAX_RULE_BLOCK})",
                rule.name
            );
            for (i, insn) in block.into_iter().enumerate() {
                // Instructions to skip to land just past the block (fits: see
                // MAX_RULE_BLOCK).
                let to_end = offset_u8(len - i - 1);
                out.push(match insn {
                    Insn::Plain(s) => s,
                    Insn::JeqOrFail(k) => jump(JEQ_K, k, 0, to_end),
                    Insn::JeqThenFail(k) => jump(JEQ_K, k, to_end, 0),
                    Insn::JeqOrSkip(k, n) => jump(JEQ_K, k, 0, n),
                });
            }
        }
        // Not this number → over the rules to the default (through a `ret` of the default
        // right after the test when the rules are too long for an 8-bit offset).
        let mut leaf = match u8::try_from(out.len()) {
            Ok(over) => vec![jump(JEQ_K, nr, 0, over)],
            Err(_) => vec![jump(JEQ_K, nr, 1, 0), stmt(RET_K, default.ret_value())],
        };
        leaf.extend(out);
        leaf.push(stmt(RET_K, default.ret_value()));
        leaf
    }

    /// Asserts what the kernel's checker would refuse, and what it would not notice: only
    /// the instructions this generator emits, loads inside `struct seccomp_data` (64 bytes),
    /// every jump landing inside the program, and a `ret` at the end (nothing falls off).
    pub(super) fn assert_well_formed(program: &[libc::sock_filter]) {
        assert!(
            !program.is_empty() && program.len() <= libc::BPF_MAXINSNS as usize,
            "seccomp program of {} instructions",
            program.len()
        );
        let last = program.len() - 1;
        for (pc, insn) in program.iter().enumerate() {
            let lands = |skip: usize| pc + 1 + skip <= last;
            let ok = match insn.code {
                LD_ABS => insn.k % 4 == 0 && insn.k < 64,
                AND_K | RET_K => true,
                JA => lands(insn.k as usize),
                JEQ_K | JGE_K => lands(usize::from(insn.jt)) && lands(usize::from(insn.jf)),
                _ => false,
            };
            assert!(
                ok,
                "seccomp program: bad instruction {insn:?} at {pc} of {}",
                program.len()
            );
        }
        assert_eq!(
            program[last].code, RET_K,
            "seccomp program does not end with a ret"
        );
    }
}

#[cfg(test)]
mod tests;
