//! Reading seccomp profiles in the OCI runtime-spec / Docker format (`"defaultAction":
//! "SCMP_ACT_ERRNO"`, …), the format runc, crun, Docker and Podman take, into a
//! [`SeccompProfile`].
//!
//! What differs from those runtimes, on purpose:
//! - Syscall names the running architecture does not have are skipped, as libseccomp does
//!   (shared profiles list the names of every architecture).
//! - `architectures`, `archMap`, `flags` and `minKernel` are ignored: the filter always
//!   checks the architecture itself and kills syscalls of a foreign ABI.
//! - Rules are tried in file order and the first match decides, as in noded's own format
//!   (libseccomp merges overlapping rules instead; profiles rarely overlap).
//! - A rule's `includes`/`excludes` are read for a task that holds no capability beyond the
//!   allow-list and runs on this architecture: a rule that `includes` capabilities is left out
//!   (it would grant something to holders of those capabilities only), a rule that `excludes`
//!   them is kept. A profile so read is never more permissive than its authors meant for an
//!   unprivileged task.
//! - Actions with no meaning here (`SCMP_ACT_NOTIFY`, `SCMP_ACT_TRACE`) and argument
//!   comparisons other than `SCMP_CMP_EQ`, `SCMP_CMP_NE` and `SCMP_CMP_MASKED_EQ` are
//!   refused, naming the rule.

use std::path::Path;

use serde::Deserialize;

use super::{
    check_rule_count, conditions, syscall_number, Action, ArgOp, Rule, SeccompError, SeccompProfile,
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciProfile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u16>,
    #[serde(default)]
    syscalls: Vec<OciRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciRule {
    #[serde(default)]
    names: Vec<String>,
    /// Older Docker profiles name one syscall per rule.
    #[serde(default)]
    name: Option<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u16>,
    #[serde(default)]
    args: Vec<OciArg>,
    #[serde(default)]
    includes: Option<Filter>,
    #[serde(default)]
    excludes: Option<Filter>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciArg {
    index: u8,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
}

/// Whether a profile read as JSON is of this format (rather than noded's own).
pub(super) fn looks_like_oci(value: &serde_json::Value) -> bool {
    value.get("defaultAction").is_some()
}

/// The architecture names OCI profiles use for the running one.
fn this_arch() -> &'static [&'static str] {
    match std::env::consts::ARCH {
        "x86_64" => &["SCMP_ARCH_X86_64", "amd64", "x86_64"],
        "aarch64" => &["SCMP_ARCH_AARCH64", "arm64", "aarch64"],
        "riscv64" => &["SCMP_ARCH_RISCV64", "riscv64"],
        "s390x" => &["SCMP_ARCH_S390X", "s390x"],
        "powerpc64" => &["SCMP_ARCH_PPC64LE", "ppc64le"],
        _ => &[],
    }
}

fn action(name: &str, errno: Option<u16>, default_errno: Option<u16>) -> Result<Action, String> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_ERRNO" => {
            let e = errno.or(default_errno).unwrap_or(libc::EPERM as u16);
            if !(1..=4095).contains(&e) {
                return Err(format!("errno {e} is outside 1..=4095"));
            }
            Action::Errno(e)
        }
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_NOTIFY" | "SCMP_ACT_TRACE" => {
            return Err(format!(
                "{name} needs a supervising process, which noded does not run; use SCMP_ACT_ERRNO or SCMP_ACT_KILL_PROCESS"
            ))
        }
        other => return Err(format!("unknown action {other:?}")),
    })
}

/// Parses an OCI/Docker profile; `path` only labels errors.
pub(super) fn parse(text: &str, path: &Path) -> Result<SeccompProfile, SeccompError> {
    let profile: OciProfile = serde_json::from_str(text).map_err(|source| SeccompError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |location: String, reason: String| SeccompError::Invalid {
        path: path.to_path_buf(),
        location,
        reason,
    };
    let default_action = action(&profile.default_action, None, profile.default_errno_ret)
        .map_err(|r| invalid("defaultAction".to_string(), r))?;
    let arch = this_arch();
    let mut rules = Vec::new();
    for (i, rule) in profile.syscalls.iter().enumerate() {
        let includes = rule.includes.as_ref();
        let excludes = rule.excludes.as_ref();
        // Conservative reading (module docs): no extra capabilities, this architecture.
        let for_cap_holders = includes.is_some_and(|f| !f.caps.is_empty());
        let other_arch = includes.is_some_and(|f| {
            !f.arches.is_empty() && !f.arches.iter().any(|a| arch.contains(&a.as_str()))
        }) || excludes
            .is_some_and(|f| f.arches.iter().any(|a| arch.contains(&a.as_str())));
        if for_cap_holders || other_arch {
            continue;
        }
        if rule.names.is_empty() && rule.name.is_none() {
            return Err(invalid(
                format!("syscalls[{i}].names"),
                "is empty".to_string(),
            ));
        }
        let act = action(&rule.action, rule.errno_ret, profile.default_errno_ret)
            .map_err(|r| invalid(format!("syscalls[{i}].action"), r))?;
        let args = conditions(i, &rule.args, |arg| {
            let op = match arg.op.as_str() {
                "SCMP_CMP_EQ" => ArgOp::Eq(arg.value),
                "SCMP_CMP_NE" => ArgOp::Ne(arg.value),
                // The OCI spec's masked comparison: `value` is the mask, `valueTwo` the datum.
                "SCMP_CMP_MASKED_EQ" => ArgOp::MaskedEq {
                    mask: arg.value,
                    value: arg.value_two,
                },
                other => return Err((
                    ".op".to_string(),
                    format!("{other} is not supported (noded compares with SCMP_CMP_EQ, SCMP_CMP_NE and SCMP_CMP_MASKED_EQ)"),
                )),
            };
            Ok((arg.index, op))
        })
        .map_err(|(location, reason)| invalid(location, reason))?;
        for name in rule.names.iter().chain(rule.name.iter()) {
            // Names of other architectures are skipped, as libseccomp does.
            if let Some(nr) = syscall_number(name) {
                rules.push(Rule {
                    name: name.clone(),
                    nr,
                    args: args.clone(),
                    action: act,
                });
            }
        }
    }
    check_rule_count(rules.len()).map_err(|r| invalid("syscalls".to_string(), r))?;
    Ok(SeccompProfile {
        default_action,
        rules,
    })
}
