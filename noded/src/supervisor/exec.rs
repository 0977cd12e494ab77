//! `alloc exec` sessions: a command started inside a running task (its namespaces, root,
//! cgroup, user, capabilities and seccomp filter), whose descriptors (a pty master, or three
//! pipes) are handed to the node daemon; resizing its terminal; waiting for its end.

use std::cell::RefCell;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;

use isolation::sandbox::{self, Stdio};
use tokio::sync::Notify;

use super::protocol::{ExitInfo, Response};
use super::server::Reply;
use super::spec::sandbox_spec;
use super::tasks::{pipe_pair, TaskEntry};
use super::{err, spawn_err, step_err, Child, Supervisor, MAX_EXECS};

/// A command run inside a task by `alloc exec`.
pub(super) struct ExecEntry {
    exec_id: String,
    pub(super) pid: i32,
    exit: RefCell<Option<ExitInfo>>,
    exited: Notify,
    /// Kept to resize the terminal; the session's user holds its own copy.
    pty_master: Option<OwnedFd>,
}

impl ExecEntry {
    /// Records how the session's process ended and wakes its waiter (called by the reaper).
    pub(super) fn record_exit(&self, exit_code: i32, signal: i32) {
        tracing::info!(exec = %self.exec_id, pid = self.pid, code = exit_code, "exec session exited");
        *self.exit.borrow_mut() = Some(ExitInfo {
            exit_code,
            signal,
            oom_killed: false,
            finished_at: controlplane::model::now_unix_nanos(),
        });
        self.exited.notify_waiters();
    }

    /// How the session ended, once it has.
    async fn exit(&self) -> ExitInfo {
        loop {
            let notified = self.exited.notified();
            if let Some(exit) = *self.exit.borrow() {
                return exit;
            }
            notified.await;
        }
    }
}

impl Supervisor {
    fn exec_session(&self, exec_id: &str) -> Option<Rc<ExecEntry>> {
        self.execs.borrow().get(exec_id).cloned()
    }

    /// `alloc exec`: runs `command` inside the running task and hands the session's
    /// descriptors to the caller.
    pub(super) fn exec(&self, task_id: &str, command: &[String], tty: bool) -> Reply {
        let Some(task) = self.get(task_id) else {
            return err(format!("no task {task_id:?} on this supervisor")).into();
        };
        if task.has_exited() {
            return err(format!("task {task_id:?} is not running")).into();
        }
        let Some((program, args)) = command.split_first() else {
            return err("exec needs a command").into();
        };
        if self.execs.borrow().len() >= MAX_EXECS {
            return err(format!("{MAX_EXECS} exec sessions are already running")).into();
        }
        let (entered, handed) = match self.enter(&task, program, args, tty) {
            Ok(entered) => entered,
            Err(failure) => return failure.into(),
        };
        let mut handed = handed;
        let mut pty_master = None;
        if let Some(master) = entered.pty_master {
            match master.try_clone() {
                Ok(copy) => {
                    handed = vec![master];
                    pty_master = Some(copy);
                }
                Err(e) => return step_err("pty", e.to_string()).into(),
            }
        }
        let exec = Rc::new(ExecEntry {
            exec_id: controlplane::model::new_id(),
            pid: entered.child.pid,
            exit: RefCell::new(None),
            exited: Notify::new(),
            pty_master,
        });
        tracing::info!(task = task_id, exec = %exec.exec_id, pid = exec.pid, "exec session started");
        self.by_pid
            .borrow_mut()
            .insert(exec.pid, Child::Exec(exec.clone()));
        self.execs
            .borrow_mut()
            .insert(exec.exec_id.clone(), exec.clone());
        Reply {
            response: Response::ExecStarted {
                exec_id: exec.exec_id.clone(),
                pid: exec.pid,
                fds: u32::try_from(handed.len()).unwrap_or(0),
            },
            fds: handed,
        }
    }

    /// Starts `program` inside `task` with the task's own sandbox settings (the same spec
    /// its start used) in its cgroup: its limits, its accounting, and its end. Returns the
    /// session and the descriptors for the caller (three pipe ends; none with a terminal,
    /// whose master comes with the session).
    fn enter(
        &self,
        task: &TaskEntry,
        program: &str,
        args: &[String],
        tty: bool,
    ) -> Result<(sandbox::Entered, Vec<OwnedFd>), Response> {
        let join = task
            .cgroup
            .join_handle()
            .map_err(|e| step_err("cgroup", e.to_string()))?;
        let mut spec = sandbox_spec(
            &task.launch,
            &self.staging_dir,
            join,
            Stdio::Null,
            Stdio::Null,
        )
        .map_err(|(step, message)| step_err(step, message))?;
        let cgroup = spec.cgroup.take();
        let mut enter = sandbox::EnterSpec::matching(
            &spec,
            cgroup,
            task.pid,
            program.to_string(),
            args.to_vec(),
        );
        let mut handed: Vec<OwnedFd> = Vec::new();
        if tty {
            enter.io = sandbox::EnterIo::Pty(sandbox::PtySpec::default());
        } else {
            let pipes = (pipe_pair(), pipe_pair(), pipe_pair());
            let ((in_r, in_w), (out_r, out_w), (err_r, err_w)) = match pipes {
                (Ok(a), Ok(b), Ok(c)) => (a, b, c),
                _ => return Err(step_err("stdio", "cannot create pipes")),
            };
            enter.io = sandbox::EnterIo::Streams {
                stdin: Stdio::Fd(in_r),
                stdout: Stdio::Fd(out_w),
                stderr: Stdio::Fd(err_w),
            };
            handed = vec![in_w, out_r, err_r];
        }
        // The spec (and our copies of the session's ends in it) goes when this returns.
        let entered = sandbox::enter(&enter).map_err(|e| spawn_err(&e))?;
        Ok((entered, handed))
    }

    /// `ExecResize`: the session's terminal size.
    pub(super) fn exec_resize(&self, exec_id: &str, rows: u16, cols: u16) -> Response {
        let Some(exec) = self.exec_session(exec_id) else {
            return err(format!("no exec session {exec_id:?}"));
        };
        let Some(master) = &exec.pty_master else {
            return err(format!(
                "exec session {exec_id:?} has no terminal to resize"
            ));
        };
        match sandbox::set_pty_size(master.as_fd(), sandbox::PtySpec { rows, cols }) {
            Ok(()) => Response::Ok,
            Err(e) => err(format!("resizing the terminal of {exec_id:?}: {e}")),
        }
    }

    /// `ExecWait`: answers when the session has ended, and forgets it.
    pub(super) async fn exec_wait(&self, exec_id: &str) -> Response {
        let Some(exec) = self.exec_session(exec_id) else {
            return err(format!("no exec session {exec_id:?}"));
        };
        let exit = exec.exit().await;
        self.execs.borrow_mut().remove(exec_id);
        Response::Exited { exit }
    }
}
