//! The one place the supervisor waits for children. On SIGCHLD it reaps every child that has
//! exited and routes the status: a task's main process gets its exit recorded, an exec
//! session's its own; anything else is an orphan of a task (reparented to us as the child
//! subreaper) and is just reaped, so no zombie outlives its task. One place calls wait, so no
//! status is ever taken twice.

use std::rc::Rc;
use std::time::Duration;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use super::{Child, Supervisor};

/// SIGCHLD can coalesce and be missed around the handler's install: the reaper also looks
/// this often without one.
const REAP_FALLBACK: Duration = Duration::from_secs(1);
/// How often the reaper looks when SIGCHLD cannot be watched at all.
const REAP_POLL: Duration = Duration::from_millis(100);

/// Reaps exited children for the supervisor's whole life.
pub(super) async fn reap_children(supervisor: Rc<Supervisor>) {
    let mut sigchld = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("watching SIGCHLD ({e}); reaping on a 100 ms timer instead");
            None
        }
    };
    loop {
        reap_exited(&supervisor);
        match sigchld.as_mut() {
            Some(s) => {
                let _ = tokio::time::timeout(REAP_FALLBACK, s.recv()).await;
            }
            None => tokio::time::sleep(REAP_POLL).await,
        }
    }
}

/// Reaps every child that has exited by now, without blocking.
fn reap_exited(supervisor: &Supervisor) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return,
            Ok(status) => route(supervisor, status),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::warn!("reaping children: {e}");
                return;
            }
        }
    }
}

/// Hands a child's status to its task or exec session, if it has one.
fn route(supervisor: &Supervisor, status: WaitStatus) {
    let Some(pid) = status.pid() else { return };
    let child = supervisor.by_pid.borrow_mut().remove(&pid.as_raw());
    let (exit_code, signal) = exit_code_of(status);
    match child {
        Some(Child::Task(task)) => task.record_exit(exit_code, signal, &supervisor.background),
        Some(Child::Exec(exec)) => exec.record_exit(exit_code, signal),
        None => tracing::debug!(pid = pid.as_raw(), "reaped an orphan of a task"),
    }
}

/// (exit code, signal) of a wait status; a signal death reads as 128 + signal, as shells say.
fn exit_code_of(status: WaitStatus) -> (i32, i32) {
    match status {
        WaitStatus::Exited(_, code) => (code, 0),
        WaitStatus::Signaled(_, sig, _) => (128 + sig as i32, sig as i32),
        _ => (-1, 0),
    }
}

#[cfg(test)]
mod tests {
    use nix::sys::signal::Signal;
    use nix::unistd::Pid;

    use super::*;

    #[test]
    fn a_signal_death_reads_as_128_plus_the_signal() {
        let pid = Pid::from_raw(42);
        assert_eq!(exit_code_of(WaitStatus::Exited(pid, 3)), (3, 0));
        assert_eq!(
            exit_code_of(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            (137, 9)
        );
        assert_eq!(exit_code_of(WaitStatus::StillAlive), (-1, 0));
    }
}
