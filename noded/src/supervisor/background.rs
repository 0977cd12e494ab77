//! Work no request waits for, on one thread of its own at a lower CPU priority (nice
//! [`BACKGROUND_NICE`]): making spare cgroups, and the teardown of exited tasks' mount
//! namespaces. On a small host that work lands while a task starts or exits. perf showed it,
//! run on a blocking thread, woken onto the CPU of the task just started: the task (whose
//! cgroup has the small CPU weight of its `cpu` MHz) then got a fraction of that CPU for
//! ~0.3 ms while the other CPU idled. So a job can be pinned to a CPU (the one the
//! supervisor's main thread is leaving), and the nice value makes it yield to that thread.

use std::sync::mpsc;

/// The background thread's queue.
#[derive(Debug)]
pub(super) struct Background {
    jobs: mpsc::SyncSender<BackgroundJob>,
}

/// A background job, and the CPU to run it on.
type BackgroundJob = (Option<usize>, Box<dyn FnOnce() + Send>);

/// Nice value of the background thread: low enough to yield to starts and exits, not so low
/// that it starves while holding a kernel lock (cgroup creation takes `cgroup_mutex`).
const BACKGROUND_NICE: i32 = 10;

/// Jobs queued for the background thread at most. A job is a spare-cgroup refill (one per
/// start, and a refill that finds the spares made does nothing) or a mount namespace to let
/// go (one per exit), and each takes a few milliseconds; a thousand queued means the thread
/// is hopelessly behind, and doing the work on the caller's thread instead is the back
/// pressure. The queue's slots are allocated up front (~40 KiB), so not `MAX_TASKS`.
const BACKGROUND_QUEUE: usize = 1024;

impl Background {
    pub(super) fn start() -> std::io::Result<Background> {
        let (jobs, queue) = mpsc::sync_channel::<BackgroundJob>(BACKGROUND_QUEUE);
        std::thread::Builder::new()
            .name("background".to_string())
            .spawn(move || {
                if let Err(e) = crate::sys::set_thread_nice(BACKGROUND_NICE) {
                    tracing::debug!("lowering the background thread's priority: {e}");
                }
                for (cpu, job) in queue {
                    let restore = cpu.and_then(crate::sys::pin_to_cpu);
                    job();
                    if let Some(previous) = restore {
                        crate::sys::restore_affinity(&previous);
                    }
                }
            })?;
        Ok(Background { jobs })
    }

    /// Queues `job`, to run on `cpu` when given (and allowed). Never blocks: a job the queue
    /// refuses (full, or the thread gone) is dropped here, on the caller's thread, so what it
    /// owns is released now (a mount namespace fd is closed, with its teardown) and what it
    /// would have done is skipped (a spare refill: the next start makes its cgroup itself).
    pub(super) fn run(&self, cpu: Option<usize>, job: impl FnOnce() + Send + 'static) {
        match self.jobs.try_send((cpu, Box::new(job))) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => tracing::debug!(
                "{BACKGROUND_QUEUE} background jobs are queued; this one is done or skipped here"
            ),
            Err(mpsc::TrySendError::Disconnected(_)) => {
                tracing::warn!("the background thread is gone; background work is skipped")
            }
        }
    }
}
