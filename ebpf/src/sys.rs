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
