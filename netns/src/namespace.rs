//! Named network namespaces under `/run/netns`, as `ip netns` keeps them: the namespace of a
//! thread that `unshare(CLONE_NEWNET)`'d, bind-mounted onto `/run/netns/NAME`, so it outlives
//! every process in it and a restarted agent finds it by name.
//!
//! Never `ip netns exec` (it remounts `/sys`, hiding the cgroup trees) and never a fork: the
//! namespace is made by a dedicated thread that exits right after the bind mount.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use crate::error::{Error, Result};
use crate::exec;

/// Where named network namespaces live (the directory `ip netns` uses).
pub const NETNS_DIR: &str = "/run/netns";

/// The longest name accepted: a file name, with room to spare.
pub const MAX_NAME_LEN: usize = 200;

/// The path of the namespace `name` (whether it exists or not).
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Whether `name` is a live namespace: its file is a bind mount of a namespace (nsfs), not an
/// empty file left behind (after a reboot, or a crash between create and mount).
pub fn exists(name: &str) -> bool {
    is_nsfs(&path(name))
}

fn is_nsfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

fn validate(name: &str) -> Result<()> {
    let bad = |reason: &str| Error::Invalid {
        what: "network namespace name",
        value: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(bad(&format!("must be 1 to {MAX_NAME_LEN} characters")));
    }
    if name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(bad("must be a file name (no '/', not '.' or '..')"));
    }
    Ok(())
}

/// Creates the namespace `name` and returns its path; a live one is kept as it is, a dead
/// name (a file that is no namespace) is made anew.
pub fn create(name: &str) -> Result<PathBuf> {
    validate(name)?;
    let target = path(name);
    if is_nsfs(&target) {
        return Ok(target);
    }
    ensure_dir()?;
    // The mount point: an empty file. A stale one (no namespace mounted) is reused.
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&target)
        .map_err(|e| Error::io("cannot create the namespace mount point", &target, e))?;
    let made = exec::on_thread("create network namespace", None, || {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::nix("cannot unshare a network namespace for", &target, e))?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            Error::nix(
                "cannot bind-mount the new network namespace onto",
                &target,
                e,
            )
        })
    });
    if let Err(e) = made {
        let _ = std::fs::remove_file(&target);
        return Err(e);
    }
    Ok(target)
}

/// `/run/netns` as `ip netns add` prepares it: a shared mount point (a bind mount onto itself
/// if it is not a mount point yet), so namespaces mounted there propagate into mount
/// namespaces created later (a task's) and their unmount does too.
fn ensure_dir() -> Result<()> {
    // Once per process: two mount calls on every allocation's path are not free.
    static SHARED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if SHARED.get().is_some() {
        return Ok(());
    }
    make_shared_dir()?;
    let _ = SHARED.set(());
    Ok(())
}

fn make_shared_dir() -> Result<()> {
    let dir = Path::new(NETNS_DIR);
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
    let shared = || {
        nix::mount::mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        // EINVAL: not a mount point yet.
        Err(nix::Error::EINVAL) => {
            nix::mount::mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| Error::nix("cannot bind-mount onto itself", dir, e))?;
            shared().map_err(|e| Error::nix("cannot make a shared mount", dir, e))
        }
        Err(e) => Err(Error::nix("cannot make a shared mount", dir, e)),
    }
}

/// Deletes the namespace `name`: unmounts and unlinks it. Processes still inside keep it
/// alive until they exit. Deleting a missing name succeeds.
pub fn delete(name: &str) -> Result<()> {
    validate(name)?;
    let target = path(name);
    // MNT_DETACH: a process that has the file open (a task entering the namespace right now)
    // must not make the delete fail.
    match nix::mount::umount2(&target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => {
            return Err(Error::nix(
                "cannot unmount the network namespace",
                &target,
                e,
            ))
        }
    }
    match std::fs::remove_file(&target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(
            "cannot remove the network namespace file",
            &target,
            e,
        )),
    }
}

/// The names under `/run/netns` that start with `prefix`, live or dead (a reconcile deletes
/// both), sorted.
pub fn list(prefix: &str) -> Result<Vec<String>> {
    let dir = Path::new(NETNS_DIR);
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("cannot list", dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("cannot list", dir, e))?;
        if let Some(name) = entry.file_name().to_str() {
            if name.starts_with(prefix) {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Runs `f` on a dedicated thread inside the namespace `name` and returns its result; the
/// calling thread stays where it is. Sockets `f` opens belong to that namespace; a process
/// `f` spawns starts in it.
pub fn run_in<R: Send>(name: &str, f: impl FnOnce() -> R + Send) -> Result<R> {
    validate(name)?;
    let target = path(name);
    if !is_nsfs(&target) {
        return Err(Error::NotFound {
            what: format!("network namespace {}", target.display()),
            hint: "create it first".to_string(),
        });
    }
    exec::on_thread("run in network namespace", Some(&target), || Ok(f()))
}

/// Sets `lo` up in the namespace `name` (what network mode `none` leaves a task; `bridge`
/// mode's [`crate::veth::attach`] does it too).
pub fn loopback_up(name: &str) -> Result<()> {
    validate(name)?;
    let target = path(name);
    exec::with_netlink("set lo up", Some(&target), |h| async move {
        let lo = crate::link::by_name(&h, "lo")
            .await?
            .ok_or_else(|| Error::NotFound {
                what: format!("link lo in network namespace {name}"),
                hint: "a network namespace always has lo; is this one?".to_string(),
            })?;
        h.link()
            .set(
                rtnetlink::LinkUnspec::new_with_index(lo.header.index)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("cannot set lo up in network namespace {name}"), e))
    })
}
