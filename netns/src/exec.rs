//! Where kernel work runs: every operation that depends on a network namespace runs on a
//! dedicated std thread, so the caller's thread never changes namespace (a tokio worker
//! switched into an allocation's namespace would open later sockets there), and netlink
//! runs on a current-thread tokio runtime owned by that thread, so the caller may itself be
//! inside a runtime.
//!
//! A new thread starts in the namespaces of the thread that spawned it: "the current
//! namespace" of this crate's functions is the calling thread's.

use std::fs::File;
use std::future::Future;
use std::path::Path;

use nix::sched::CloneFlags;

use crate::error::{Error, Result};

/// Runs `f` on a new thread, entered into the network namespace at `ns` first when given.
pub(crate) fn on_thread<R, F>(what: &str, ns: Option<&Path>, f: F) -> Result<R>
where
    R: Send,
    F: FnOnce() -> Result<R> + Send,
{
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("netns-op".to_string())
            .spawn_scoped(scope, move || {
                if let Some(ns) = ns {
                    enter(ns)?;
                }
                f()
            })
            .map_err(|e| Error::Thread {
                what: what.to_string(),
                reason: format!("cannot start a thread: {e}"),
            })?;
        handle.join().map_err(|panic| Error::Thread {
            what: what.to_string(),
            reason: format!("the thread panicked: {}", panic_message(&*panic)),
        })?
    })
}

/// Enters the calling thread into the network namespace bound at `ns`. Only for threads
/// this crate owns.
pub(crate) fn enter(ns: &Path) -> Result<()> {
    let file = File::open(ns).map_err(|e| Error::io("cannot open the network namespace", ns, e))?;
    nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
        .map_err(|e| Error::nix("cannot enter the network namespace", ns, e))
}

/// Runs a future to completion on a current-thread runtime created for it.
pub(crate) fn block_on<F: Future<Output = Result<R>>, R>(what: &str, fut: F) -> Result<R> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| Error::Thread {
            what: what.to_string(),
            reason: format!("cannot build a tokio runtime: {e}"),
        })?;
    runtime.block_on(fut)
}

/// Opens an rtnetlink connection in the calling thread's network namespace (a netlink
/// socket belongs to the namespace of the thread that creates it) and drives it on the
/// current runtime. Must run inside [`block_on`].
pub(crate) fn connect(what: &str) -> Result<rtnetlink::Handle> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(|e| {
        Error::io(
            format!("{what}: cannot open a netlink socket"),
            "/proc/thread-self/ns/net",
            e,
        )
    })?;
    tokio::spawn(connection);
    Ok(handle)
}

/// Runs `f` with a netlink handle in the network namespace `ns` (the calling thread's when
/// `None`), on a dedicated thread.
pub(crate) fn with_netlink<R, F, Fut>(what: &str, ns: Option<&Path>, f: F) -> Result<R>
where
    R: Send,
    F: FnOnce(rtnetlink::Handle) -> Fut + Send,
    Fut: Future<Output = Result<R>>,
{
    on_thread(what, ns, || {
        block_on(what, async {
            let handle = connect(what)?;
            f(handle).await
        })
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}
