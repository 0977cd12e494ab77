//! The one leaf that talks to the kernel without a safe wrapper: the network namespace cookie
//! of the calling thread (`getsockopt(SO_NETNS_COOKIE)`, which neither nix nor libbpf-rs wrap).

use std::io;
use std::os::fd::AsRawFd;

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

/// `SO_NETNS_COOKIE` from `<asm-generic/socket.h>` (the value on every architecture noded
/// builds for: x86_64, aarch64). Not all libc versions export it at the crate root.
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The cookie of the network namespace the calling thread is in: what
/// `bpf_get_netns_cookie()` returns for a socket of that namespace. A fresh socket is created
/// in the thread's current namespace, which is the one we want (not the process's first one).
pub fn netns_cookie() -> io::Result<u64> {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `sock` is an open socket owned by this function for the whole call; `cookie`
    // and `len` are valid, writable and live for the call, and `len` holds the exact size of
    // `cookie`, so the kernel writes at most 8 bytes into it.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != std::mem::size_of::<u64>() || cookie == 0 {
        return Err(io::Error::other(format!(
            "SO_NETNS_COOKIE returned {len} bytes, cookie {cookie}"
        )));
    }
    Ok(cookie)
}

/// Runs a loaded tc program once on `packet` (an Ethernet frame) with `BPF_PROG_TEST_RUN`
/// and returns its verdict and the packet as the program left it. For the tests that check
/// the programs' rewrites and checksums against the userspace model; libbpf-rs only offers
/// test runs on a skeleton's programs, not on a pinned one.
#[doc(hidden)]
pub fn tc_test_run(prog: std::os::fd::BorrowedFd<'_>, packet: &[u8]) -> io::Result<(u32, Vec<u8>)> {
    use libbpf_rs::libbpf_sys;
    // Room for the packet plus anything a program might push; ours never grow it.
    let mut out = vec![0u8; packet.len() + 256];
    let mut opts = libbpf_sys::bpf_test_run_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as libbpf_sys::size_t,
        data_in: packet.as_ptr().cast(),
        data_size_in: u32::try_from(packet.len()).map_err(io::Error::other)?,
        data_out: out.as_mut_ptr().cast(),
        data_size_out: u32::try_from(out.len()).map_err(io::Error::other)?,
        repeat: 1,
        ..Default::default()
    };
    // SAFETY: `opts.sz` is the size of the struct we pass; `data_in` points to
    // `data_size_in` readable bytes and `data_out` to `data_size_out` writable bytes, both
    // borrowed for the whole call; the other pointers are null (zeroed by Default), which
    // the kernel reads as absent. The fd is a valid program fd borrowed for the call.
    let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    out.truncate(opts.data_size_out as usize);
    Ok((opts.retval, out))
}
