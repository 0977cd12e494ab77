//! The plan of a spawn: the validated, fully prepared list of steps the child executes, and
//! what [`super::spawn`] and [`super::enter`] do with it (find or build the jail template,
//! fill in descriptors, turn a child's failure report into an error). Everything that
//! allocates, parses or looks at the host filesystem happens in the parent, while the plan
//! is made:
//! - `build`: a [`SandboxSpec`](super::SandboxSpec) validated and turned into steps, in the
//!   child's order;
//! - `jail`: which mount steps a jail gets, in the child or in a shared template;
//! - `mounts`: the mount steps themselves.

mod build;
mod jail;
mod mounts;

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;

use nix::errno::Errno;

pub(crate) use build::{build, build_with};
use jail::DetachedBind;
pub(crate) use jail::JailMode;

use super::ops::{step_message, Op, PlannedOp};
use super::template::{self, Template, TemplateLayout};
use super::{Report, SpawnError, Step};
use crate::{describe_errno, errno_sentence};

/// The prepared spawn.
#[derive(Debug)]
pub(crate) struct Plan {
    pub ops: Vec<PlannedOp>,
    pub namespace_flags: u64,
    pub clone_into: Option<RawFd>,
    clone_into_path: Option<PathBuf>,
    program: String,
    /// The PATH searched when the program is a bare name.
    search_path: Option<String>,
    exec_candidates: Vec<String>,
    jail: bool,
    /// The template this plan's jail starts from ([`JailMode::Template`]).
    pub template: Option<TemplateLayout>,
    /// Per-task binds attached from detached trees.
    pub detached: Vec<DetachedBind>,
    /// The template entered, kept alive until the child has exec'd.
    held_template: Option<Arc<Template>>,
    /// Strings `argv`/`envp` point into.
    _strings: Vec<CString>,
    /// Descriptors the child dups from or joins; closed when the plan is dropped.
    _fds: Vec<OwnedFd>,
}

/// A plan under construction: its steps, and the strings and descriptors they point to.
struct Builder {
    ops: Vec<PlannedOp>,
    strings: Vec<CString>,
    fds: Vec<OwnedFd>,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            ops: Vec::new(),
            strings: Vec::new(),
            fds: Vec::new(),
        }
    }

    fn push(&mut self, step: Step, target: impl Into<String>, op: Op) {
        self.ops.push(PlannedOp {
            step,
            target: target.into(),
            op,
        });
    }
}

impl Plan {
    /// Marks the program as found inside a task root although the plan builds no jail (it
    /// enters an existing one), so exec errors say where the lookup happened.
    pub(crate) fn set_exec_inside_task_root(&mut self) {
        self.jail = true;
    }

    /// Finds or builds the jail template and opens the per-task binds' detached trees,
    /// filling their fds into the steps that use them. Needs root; a no-op without a
    /// template.
    pub(crate) fn prepare_jail(&mut self) -> Result<(), SpawnError> {
        let Some(layout) = &self.template else {
            return Ok(());
        };
        let template = template::obtain(layout)?;
        let mut trees = Vec::with_capacity(self.detached.len());
        for bind in &self.detached {
            let fd = crate::sys::open_tree_clone(&bind.host, bind.read_only).map_err(|errno| {
                SpawnError::Step {
                    step: Step::BindMount,
                    target: bind.text.clone(),
                    errno,
                    message: format!(
                        "bind mount {}: copy the host mount: {}",
                        bind.text,
                        describe_errno(errno)
                    ),
                }
            })?;
            trees.push(fd);
        }
        for planned in &mut self.ops {
            match &mut planned.op {
                Op::EnterTemplate { fd } => *fd = template.ns_fd(),
                Op::MoveMount { fd, bind, .. } => {
                    if let Some(tree) = trees.get(*bind) {
                        *fd = tree.as_raw_fd();
                    }
                }
                _ => {}
            }
        }
        self._fds.extend(trees);
        self.held_template = Some(template);
        Ok(())
    }

    /// Sets the fd `CloseFrom` keeps (the report pipe's write end).
    pub(crate) fn set_report_fd(&mut self, fd: RawFd) {
        for planned in &mut self.ops {
            if let Op::CloseFrom { keep } = &mut planned.op {
                keep[0] = fd;
            }
        }
    }

    /// Whether the plan starts a small init (`SandboxSpec::init`).
    pub(crate) fn has_init(&self) -> bool {
        self.ops
            .iter()
            .any(|p| matches!(p.op, Op::StartInit { .. }))
    }

    /// Sets the init's status pipe (its write end): kept open by `CloseFrom`, written by the
    /// init.
    pub(crate) fn set_status_fd(&mut self, fd: RawFd) {
        for planned in &mut self.ops {
            match &mut planned.op {
                Op::CloseFrom { keep } => keep[2] = fd,
                Op::StartInit { status_fd } => *status_fd = fd,
                _ => {}
            }
        }
    }

    /// The C strings `argv`/`envp` point into.
    #[cfg(test)]
    pub(crate) fn strings(&self) -> &[CString] {
        &self._strings
    }

    /// The steps in execution order.
    #[cfg(test)]
    pub(crate) fn steps(&self) -> Vec<Step> {
        self.ops.iter().map(|p| p.step).collect()
    }

    pub(crate) fn describe_clone_flags(&self) -> String {
        let mut names = vec!["CLONE_PIDFD"];
        for (flag, name) in [
            (libc::CLONE_NEWNS, "CLONE_NEWNS"),
            (libc::CLONE_NEWPID, "CLONE_NEWPID"),
            (libc::CLONE_NEWIPC, "CLONE_NEWIPC"),
            (libc::CLONE_NEWUTS, "CLONE_NEWUTS"),
        ] {
            if self.namespace_flags & flag as u64 != 0 {
                names.push(name);
            }
        }
        let mut text = names.join("|");
        if let Some(path) = &self.clone_into_path {
            text.push_str(&format!("|CLONE_INTO_CGROUP {}", path.display()));
        }
        text
    }

    /// The error a child's failure report stands for.
    pub(crate) fn error_for(&self, report: &Report) -> SpawnError {
        let errno = Errno::from_raw(report.errno);
        let Some(planned) = usize::try_from(report.index)
            .ok()
            .and_then(|i| self.ops.get(i))
        else {
            return SpawnError::Step {
                step: Step::from_raw(report.step).unwrap_or(Step::Exec),
                target: String::new(),
                errno,
                message: format!(
                    "sandbox child failed at unknown step {} (index {}): {}",
                    report.step,
                    report.index,
                    describe_errno(errno)
                ),
            };
        };
        let step = planned.step;
        let message = if step == Step::Exec {
            let place = if self.jail {
                "inside the task root"
            } else {
                "on the host"
            };
            let candidate = usize::try_from(report.detail)
                .ok()
                .and_then(|i| self.exec_candidates.get(i))
                .cloned()
                .unwrap_or_else(|| self.program.clone());
            match (&self.search_path, errno) {
                (Some(path), Errno::ENOENT | Errno::ENOTDIR) => {
                    format!(
                        "exec {:?}: not found in PATH {path:?} {place}",
                        self.program
                    )
                }
                _ => format!(
                    "exec {candidate:?}: {} {place} ({errno:?})",
                    errno_sentence(errno)
                ),
            }
        } else {
            step_message(planned, errno)
        };
        SpawnError::Step {
            step,
            target: planned.target.clone(),
            errno,
            message,
        }
    }
}
