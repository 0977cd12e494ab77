//! `noded-verify`: runs INSIDE a sandbox and reports what the process actually sees.
//!
//! Used by privileged tests to check isolation from the inside rather than trusting the
//! configuration the host wrote. Subcommands:
//! - (none) or `report`: one JSON object on stdout (identity, namespaces, capabilities,
//!   seccomp, writable paths, cgroup limits, cwd, environment, open fds, network interfaces,
//!   terminal, and the same facts about PID 1 of the namespace, so that a process started
//!   with `isolation::sandbox::enter` can be compared with the task it entered).
//! - `escape`: tries to break out in many ways and prints one JSON line per attempt:
//!   `{"name": ..., "blocked": bool, "tried": bool, "detail": ...}`. An attempt only reports
//!   `blocked: true` after it really issued the operation and saw it fail (or saw it have no
//!   effect); an attempt that cannot run here (a missing hint, no setuid binary, ...) reports
//!   `tried: false, blocked: false`, so a caller that expects everything blocked notices.
//!   Nothing it tries is destructive: device and `/proc/sys` files are only opened, never
//!   written; privileged calls use arguments that change nothing even when allowed. Side
//!   effects it leaves on purpose: symlinks named `.noded-escape-*` in `/alloc` (or the first
//!   writable of `/alloc/data`, `/alloc/tmp`, `/local`), for the host side to check that it
//!   does not follow them.
//! - `hog MB`: allocates and touches MB MiB, then prints `allocated MB MiB`.
//! - `sleep SECS`: sleeps.
//! - `serve PORT…`: answers every TCP connection and UDP datagram with `peer=<source>`.
//! - `connect IP:PORT`: connects and prints the answer (exit 1 when it cannot connect).
//! - `health PORT FILE`: creates FILE, then serves HTTP on PORT: `GET /health` answers 200
//!   while FILE exists and 503 once it does not (a test removes it to make a check fail; a
//!   restarted task is healthy again); every other path is 404.
//! - `dns SERVER:PORT NAME A|SRV`: one DNS query over UDP; prints one line per answer
//!   (`A <ip>` or `SRV <port> <target>`) and `rcode=<n>`; exit 0 when it got an answer.
//!
//! Hints from the environment (attempts that need one report `tried: false` without it):
//! - `NODED_VERIFY_HOST_PID`: a pid outside the sandbox;
//! - `NODED_VERIFY_HOST_MARKER`: a host file that must stay invisible;
//! - `NODED_VERIFY_ALLOWED_ENV`: comma-separated variable names the environment may hold
//!   (`NOMAD_*` allows a prefix);
//! - `NODED_VERIFY_HOST_TCP`: `ip:port` of a listener in the host's network namespace;
//! - `NODED_VERIFY_OTHER_ALLOC`: a host directory of another allocation;
//! - `NODED_VERIFY_HOG_MB`: how much the memory hog allocates (default: twice the cgroup
//!   limit, at most 4096; `0` skips it, for runners that count any OOM kill in the task's
//!   cgroup as a task failure, as Nomad and noded do).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(String::as_str) {
        None | Some("report") => {
            println!("{}", report());
            0
        }
        Some("escape") => {
            escape(&Hints::from_env());
            0
        }
        Some("hog") => match args.get(2).and_then(|s| s.parse::<usize>().ok()) {
            Some(mb) => hog(mb),
            None => usage("hog needs a size in MiB, e.g. `noded-verify hog 256`"),
        },
        Some("sleep") => match args.get(2).and_then(|s| s.parse::<u64>().ok()) {
            Some(secs) => {
                std::thread::sleep(Duration::from_secs(secs));
                0
            }
            None => usage("sleep needs seconds, e.g. `noded-verify sleep 5`"),
        },
        Some("serve") => {
            let ports: Option<Vec<u16>> = args[2..].iter().map(|p| p.parse().ok()).collect();
            match ports {
                Some(ports) if !ports.is_empty() => serve(&ports),
                _ => usage("serve needs ports, e.g. `noded-verify serve 8080 9090`"),
            }
        }
        Some("connect") => match args.get(2).and_then(|a| a.parse().ok()) {
            Some(addr) => connect(addr),
            None => usage("connect needs ip:port, e.g. `noded-verify connect 10.0.0.1:80`"),
        },
        Some("health") => match (args.get(2).and_then(|p| p.parse().ok()), args.get(3)) {
            (Some(port), Some(file)) => health(port, file),
            _ => usage("health needs a port and a file, e.g. `noded-verify health 8080 up`"),
        },
        Some("dns") => match (
            args.get(2).and_then(|a| a.parse().ok()),
            args.get(3),
            args.get(4),
        ) {
            (Some(server), Some(name), Some(qtype)) => dns(server, name, qtype),
            _ => usage("dns needs server, name and type, e.g. `noded-verify dns 127.0.0.1:8600 web.service.noded SRV`"),
        },
        Some(other) => usage(&format!("unknown subcommand {other:?}")),
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// Listens on every address on each of `ports`, TCP and UDP, and answers each connection or
/// datagram with `peer=<its source address>` — what a task behind a port mapping sees of its
/// clients. Runs until killed.
fn serve(ports: &[u16]) -> i32 {
    let mut threads = Vec::new();
    for &port in ports {
        let tcp = match std::net::TcpListener::bind(("0.0.0.0", port)) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("noded-verify serve: tcp port {port}: {e}");
                return 1;
            }
        };
        let udp = match std::net::UdpSocket::bind(("0.0.0.0", port)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("noded-verify serve: udp port {port}: {e}");
                return 1;
            }
        };
        threads.push(std::thread::spawn(move || {
            for conn in tcp.incoming().flatten() {
                let mut conn = conn;
                if let Ok(peer) = conn.peer_addr() {
                    let _ = writeln!(conn, "peer={peer}");
                }
            }
        }));
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((_, from)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(format!("peer={from}\n").as_bytes(), from);
            }
        }));
    }
    println!("serving on {ports:?}");
    let _ = std::io::stdout().flush();
    for t in threads {
        let _ = t.join();
    }
    0
}

/// A one-route HTTP/1.1 server: `GET /health` is 200 while `file` exists, 503 after.
fn health(port: u16, file: &str) -> i32 {
    let listener = match std::net::TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("noded-verify health: port {port}: {e}");
            return 1;
        }
    };
    if let Err(e) = std::fs::write(file, b"up") {
        eprintln!("noded-verify health: cannot create {file}: {e}");
        return 1;
    }
    println!("health on {port}, up while {file} exists");
    let _ = std::io::stdout().flush();
    for conn in listener.incoming().flatten() {
        let mut conn = conn;
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 2048];
        let n = conn.read(&mut buf).unwrap_or(0);
        let request = String::from_utf8_lossy(&buf[..n]);
        let path = request.split_whitespace().nth(1).unwrap_or("");
        let (status, body) = match path {
            "/health" if Path::new(file).exists() => ("200 OK", "ok"),
            "/health" => ("503 Service Unavailable", "down"),
            _ => ("404 Not Found", "not found"),
        };
        let _ = write!(
            conn,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
    0
}

/// One DNS query over UDP (RFC 1035 wire form, written here so that the test binary needs no
/// resolver library); prints the answers it understands and the rcode.
fn dns(server: std::net::SocketAddr, name: &str, qtype: &str) -> i32 {
    let qtype_code: u16 = match qtype {
        "A" => 1,
        "SRV" => 33,
        other => return usage(&format!("query type {other:?}: A or SRV")),
    };
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        query.push(u8::try_from(label.len()).unwrap_or(63));
        query.extend_from_slice(label.as_bytes());
    }
    query.push(0);
    query.extend_from_slice(&qtype_code.to_be_bytes());
    query.extend_from_slice(&1u16.to_be_bytes());
    let socket = match std::net::UdpSocket::bind("0.0.0.0:0") {
        Ok(s) => s,
        Err(e) => {
            println!("bind: {e}");
            return 1;
        }
    };
    let _ = socket.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4096];
    let mut got = None;
    for _ in 0..3 {
        if socket.send_to(&query, server).is_err() {
            continue;
        }
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            got = Some(n);
            break;
        }
    }
    let Some(n) = got else {
        println!("no answer from {server}");
        return 1;
    };
    let msg = &buf[..n];
    let be16 = |at: usize| {
        msg.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let (Some(flags), Some(qd), Some(an)) = (be16(2), be16(4), be16(6)) else {
        println!("short answer");
        return 1;
    };
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(msg, at) + 4;
    }
    for _ in 0..an {
        at = skip_name(msg, at);
        let (Some(rtype), Some(len)) = (be16(at), be16(at + 8)) else {
            break;
        };
        let rdata = at + 10;
        match rtype {
            1 if len == 4 => {
                let ip = std::net::Ipv4Addr::new(
                    msg[rdata],
                    msg[rdata + 1],
                    msg[rdata + 2],
                    msg[rdata + 3],
                );
                println!("A {ip}");
            }
            33 => {
                let port = be16(rdata + 4).unwrap_or(0);
                println!("SRV {port} {}", read_name(msg, rdata + 6));
            }
            _ => {}
        }
        at = rdata + usize::from(len);
    }
    println!("rcode={}", flags & 0xf);
    0
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> usize {
    while let Some(&len) = msg.get(at) {
        if len == 0 {
            return at + 1;
        }
        if len & 0xc0 == 0xc0 {
            return at + 2;
        }
        at += 1 + usize::from(len);
    }
    at
}

/// The name at `at`, following compression pointers (a bounded number of them).
fn read_name(msg: &[u8], mut at: usize) -> String {
    let mut labels = Vec::new();
    for _ in 0..64 {
        let Some(&len) = msg.get(at) else { break };
        if len == 0 {
            break;
        }
        if len & 0xc0 == 0xc0 {
            let Some(&low) = msg.get(at + 1) else { break };
            at = (usize::from(len & 0x3f) << 8) | usize::from(low);
            continue;
        }
        let label = msg.get(at + 1..at + 1 + usize::from(len)).unwrap_or(&[]);
        labels.push(String::from_utf8_lossy(label).to_string());
        at += 1 + usize::from(len);
    }
    labels.join(".")
}

/// Connects over TCP to `addr` (3 s at most) and prints what it answers: 0 when it answered,
/// 1 when the connection failed.
fn connect(addr: std::net::SocketAddr) -> i32 {
    match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
        Ok(mut conn) => {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(3)));
            let mut answer = String::new();
            let _ = conn.read_to_string(&mut answer);
            print!("{answer}");
            0
        }
        Err(e) => {
            println!("connect {addr}: {e}");
            1
        }
    }
}

fn usage(problem: &str) -> i32 {
    eprintln!(
        "noded-verify: {problem}\nusage: noded-verify [report | escape | hog MB | sleep SECS | serve PORT... | connect IP:PORT | health PORT FILE | dns SERVER:PORT NAME A|SRV]"
    );
    2
}

/// Unsafe libc calls of the verifier, each wrapped once.
mod sys {
    /// Raw syscall returning `Err(errno)` on failure.
    pub fn syscall6(nr: libc::c_long, a: [libc::c_long; 6]) -> Result<libc::c_long, i32> {
        // SAFETY: the callers pass integer arguments or pointers to live, properly sized
        // buffers for the syscalls they name; the kernel validates everything else.
        let ret = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
        if ret == -1 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            Ok(ret)
        }
    }

    /// fork(); the child runs `child` and exits with its return value.
    pub fn fork_run(child: impl FnOnce() -> i32) -> Result<libc::pid_t, i32> {
        // SAFETY: the verifier is single-threaded, so the child may run arbitrary code.
        let pid = unsafe { libc::fork() };
        match pid {
            -1 => Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)),
            0 => {
                let code = child();
                // SAFETY: leaving the child without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            pid => Ok(pid),
        }
    }

    /// `clone3` with `flags` (no `CLONE_VM`: a fork); the child exits at once with 0.
    /// Returns the child's pid or the errno.
    pub fn clone3_exit_at_once(flags: u64) -> Result<libc::pid_t, i32> {
        // SAFETY: an all-zero clone_args is valid (plain integers).
        let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
        args.flags = flags;
        args.exit_signal = libc::SIGCHLD as u64;
        // SAFETY: args is a valid clone_args of the size passed; without CLONE_VM and with no
        // stack the child runs on a copy of this stack, like fork, and leaves at once.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const libc::clone_args,
                std::mem::size_of::<libc::clone_args>(),
            )
        };
        match ret {
            -1 => Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)),
            // SAFETY: the child leaves without touching the parent's state.
            0 => unsafe { libc::_exit(0) },
            pid => Ok(pid as libc::pid_t),
        }
    }

    /// waitpid(pid) → exit code, or 128 + signal.
    pub fn wait(pid: libc::pid_t) -> i32 {
        let mut status = 0;
        // SAFETY: status is a valid int to write to.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret == -1 {
            return -1;
        }
        if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        }
    }

    /// Whether `pid` (a child) has exited, without reaping it (`WNOWAIT`).
    pub fn exited_unreaped(pid: libc::pid_t) -> bool {
        // SAFETY: an all-zero siginfo_t is valid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: info is a valid, writable siginfo_t.
        let ret = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: waitid filled the SIGCHLD fields or left them zeroed with WNOHANG.
        ret == 0 && unsafe { info.si_pid() } != 0
    }

    /// kill(pid, SIGKILL) and reap.
    pub fn kill_and_reap(pid: libc::pid_t) -> i32 {
        let _ = syscall6(
            libc::SYS_kill,
            [
                pid as libc::c_long,
                libc::SIGKILL as libc::c_long,
                0,
                0,
                0,
                0,
            ],
        );
        wait(pid)
    }

    pub fn errno_text(errno: i32) -> String {
        std::io::Error::from_raw_os_error(errno).to_string()
    }
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn status_field(status: &str, key: &str) -> Value {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .map(Value::String)
        .unwrap_or(Value::Null)
}

/// Whether creating a file in `dir` works (the file is removed again).
fn writable(dir: &str) -> (bool, String) {
    let probe = Path::new(dir).join(format!(".noded-verify-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            (true, "created a file".to_string())
        }
        Err(e) => (false, e.to_string()),
    }
}

/// (memory limit text, pids limit text, layout) as the task's own cgroup shows them.
fn cgroup_limits() -> (Option<String>, Option<String>, &'static str) {
    if Path::new("/sys/fs/cgroup/memory.max").exists()
        || Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
    {
        return (
            read_trim("/sys/fs/cgroup/memory.max"),
            read_trim("/sys/fs/cgroup/pids.max"),
            "v2",
        );
    }
    if Path::new("/sys/fs/cgroup/memory").exists() {
        return (
            read_trim("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
            read_trim("/sys/fs/cgroup/pids/pids.max"),
            "v1",
        );
    }
    (None, None, "none")
}

fn list_dir(path: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(path)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Open fds, without the one used to list them.
fn open_fds() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect();
    // The read_dir handle itself is the highest-numbered fd that points at /proc/self/fd.
    fds.retain(|fd| {
        std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .map(|t| !t.to_string_lossy().ends_with("/fd"))
            .unwrap_or(false)
    });
    fds.sort();
    fds
}

/// The namespace links of `/proc/<who>/ns`, e.g. `{"mnt": "mnt:[4026531841]"}`.
fn namespaces(who: &str) -> Value {
    let mut map = serde_json::Map::new();
    for ns in ["mnt", "pid", "net", "uts", "ipc", "cgroup", "user"] {
        let link = std::fs::read_link(format!("/proc/{who}/ns/{ns}"))
            .map(|t| Value::String(t.display().to_string()))
            .unwrap_or(Value::Null);
        map.insert(ns.to_string(), link);
    }
    Value::Object(map)
}

/// (device, inode) of a path, as text.
fn identity(path: &str) -> Value {
    std::fs::metadata(path)
        .map(|m| Value::String(format!("{}:{}", m.dev(), m.ino())))
        .unwrap_or(Value::Null)
}

/// What `/proc/<who>/status` says about identity and privileges.
fn privileges(who: &str) -> Value {
    let status = std::fs::read_to_string(format!("/proc/{who}/status")).unwrap_or_default();
    json!({
        "uid": status_field(&status, "Uid:"),
        "gid": status_field(&status, "Gid:"),
        "cap_inh": status_field(&status, "CapInh:"),
        "cap_prm": status_field(&status, "CapPrm:"),
        "cap_eff": status_field(&status, "CapEff:"),
        "cap_bnd": status_field(&status, "CapBnd:"),
        "cap_amb": status_field(&status, "CapAmb:"),
        "no_new_privs": status_field(&status, "NoNewPrivs:"),
        "seccomp": status_field(&status, "Seccomp:"),
    })
}

/// The controlling terminal number (field 7 of `/proc/self/stat`), 0 for none.
fn controlling_tty() -> i64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name may hold spaces: fields count from the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(4))
        .and_then(|f| f.parse().ok())
        .unwrap_or(0)
}

fn terminal() -> Value {
    let is_tty = nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
    let same_devpts = match (
        std::fs::metadata("/proc/self/fd/0"),
        std::fs::metadata("/dev/pts"),
    ) {
        (Ok(stdin), Ok(pts)) => stdin.dev() == pts.dev(),
        _ => false,
    };
    json!({
        "stdin_is_tty": is_tty,
        "stdin": std::fs::read_link("/proc/self/fd/0").ok().map(|p| p.display().to_string()),
        "stdin_on_own_devpts": is_tty && same_devpts,
        "controlling_tty": controlling_tty(),
        "session_leader": nix::unistd::getsid(None).ok() == Some(nix::unistd::getpid()),
    })
}

fn report() -> Value {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let pid = std::process::id();
    let visible_pids = list_dir("/proc")
        .iter()
        .filter(|n| n.parse::<u32>().is_ok())
        .count();
    let (memory, pids, layout) = cgroup_limits();
    let (root_writable, root_detail) = writable("/");
    let (usr_writable, usr_detail) = writable("/usr");
    let env: BTreeMap<String, String> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let groups: Vec<u32> = nix::unistd::getgroups()
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default();
    let mount_count = |who: &str| {
        std::fs::read_to_string(format!("/proc/{who}/mountinfo"))
            .map(|m| m.lines().count())
            .unwrap_or(0)
    };
    let proc1 = json!({
        "privileges": privileges("1"),
        "ns": namespaces("1"),
        "mount_count": mount_count("1"),
        "root_identity": identity("/proc/1/root/"),
        "cgroup": read_trim("/proc/1/cgroup"),
    });
    let terminal = terminal();
    let ns = namespaces("self");
    json!({
        "pid": pid,
        "ppid": nix::unistd::getppid().as_raw(),
        "proc1_is_self": pid == 1,
        "proc1_cmdline": std::fs::read("/proc/1/cmdline").ok().map(|b| String::from_utf8_lossy(&b).replace('\0', " ").trim().to_string()),
        "visible_pids": visible_pids,
        "hostname": nix::unistd::gethostname().ok().map(|h| h.to_string_lossy().into_owned()),
        "uid": nix::unistd::getuid().as_raw(),
        "euid": nix::unistd::geteuid().as_raw(),
        "gid": nix::unistd::getgid().as_raw(),
        "egid": nix::unistd::getegid().as_raw(),
        "groups": groups,
        "cap_inh": status_field(&status, "CapInh:"),
        "cap_prm": status_field(&status, "CapPrm:"),
        "cap_eff": status_field(&status, "CapEff:"),
        "cap_bnd": status_field(&status, "CapBnd:"),
        "cap_amb": status_field(&status, "CapAmb:"),
        "no_new_privs": status_field(&status, "NoNewPrivs:"),
        "seccomp": status_field(&status, "Seccomp:"),
        "root_writable": root_writable,
        "root_write_detail": root_detail,
        "usr_writable": usr_writable,
        "usr_write_detail": usr_detail,
        "cgroup_layout": layout,
        "memory_limit": memory,
        "pids_limit": pids,
        "proc_self_cgroup": read_trim("/proc/self/cgroup"),
        "cwd": std::env::current_dir().ok().map(|p| p.display().to_string()),
        "env": env,
        "open_fds": open_fds(),
        "net_interfaces": list_dir("/sys/class/net"),
        "dev": list_dir("/dev"),
        "root_entries": list_dir("/"),
        "root_identity": identity("/"),
        "mount_count": mount_count("self"),
        "ns": ns,
        "terminal": terminal,
        "proc1": proc1,
    })
}

/// Optional facts from the host that some attempts need.
struct Hints {
    host_pid: Option<i32>,
    host_marker: Option<String>,
    allowed_env: Option<Vec<String>>,
    host_tcp: Option<String>,
    other_alloc: Option<String>,
    hog_mb: Option<usize>,
}

impl Hints {
    fn from_env() -> Hints {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Hints {
            host_pid: var("NODED_VERIFY_HOST_PID").and_then(|s| s.parse().ok()),
            host_marker: var("NODED_VERIFY_HOST_MARKER"),
            allowed_env: var("NODED_VERIFY_ALLOWED_ENV")
                .map(|s| s.split(',').map(str::to_string).collect()),
            host_tcp: var("NODED_VERIFY_HOST_TCP"),
            other_alloc: var("NODED_VERIFY_OTHER_ALLOC"),
            hog_mb: var("NODED_VERIFY_HOG_MB").and_then(|s| s.parse().ok()),
        }
    }
}

/// One escape attempt's outcome: it was tried, and `blocked` says whether it failed.
fn attempt(name: &str, blocked: bool, detail: impl Into<String>) {
    let line = json!({"name": name, "blocked": blocked, "tried": true, "detail": detail.into()});
    println!("{line}");
}

/// An attempt that could not be made here: never counts as blocked.
fn not_tried(name: &str, why: impl Into<String>) {
    let line = json!({"name": name, "blocked": false, "tried": false, "detail": format!("not tried: {}", why.into())});
    println!("{line}");
}

fn errno_of(r: Result<libc::c_long, i32>) -> Result<libc::c_long, String> {
    r.map_err(sys::errno_text)
}

/// A directory of the sandbox the process can write to, for probes that need one.
fn scratch_dir() -> Option<&'static str> {
    ["/tmp", "/local", "/alloc"]
        .into_iter()
        .find(|d| writable(d).0)
}

/// Runs `f` in a forked child: `Ok(0)` when it reports success (exit 0), `Ok(n)` for its
/// other exit codes (128 + signal when killed).
fn in_child(f: impl FnOnce() -> i32) -> Result<i32, String> {
    sys::fork_run(f).map(sys::wait).map_err(sys::errno_text)
}

fn escape(hints: &Hints) {
    processes(hints);
    namespaces_and_mounts(hints);
    writes_and_kernel_files();
    devices();
    network(hints);
    privileges_and_identity();
    kernel_interfaces();
    cgroups();
    host_paths(hints);
    inheritance(hints);
    resources(hints);
    // Last, as it would take /proc away from the checks above.
    let r = nix::mount::umount2("/proc", nix::mount::MntFlags::MNT_DETACH);
    attempt("umount_proc", r.is_err(), format!("{r:?}"));
}

/// Host pids: neither visible in /proc nor signalable nor traceable.
fn processes(hints: &Hints) {
    match hints.host_pid {
        Some(pid) => {
            let visible = Path::new(&format!("/proc/{pid}")).exists();
            attempt(
                "see_host_pid",
                !visible,
                format!("/proc/{pid} exists: {visible}"),
            );
            let r = errno_of(sys::syscall6(
                libc::SYS_kill,
                [pid as libc::c_long, 0, 0, 0, 0, 0],
            ));
            attempt(
                "signal_host_pid",
                r.is_err(),
                format!("kill({pid}, 0): {r:?}"),
            );
            let r = errno_of(sys::syscall6(
                libc::SYS_ptrace,
                [
                    libc::PTRACE_ATTACH as libc::c_long,
                    pid as libc::c_long,
                    0,
                    0,
                    0,
                    0,
                ],
            ));
            attempt(
                "ptrace_attach_host_pid",
                r.is_err(),
                format!("PTRACE_ATTACH {pid}: {r:?}"),
            );
        }
        None => {
            for name in ["see_host_pid", "signal_host_pid", "ptrace_attach_host_pid"] {
                not_tried(name, "NODED_VERIFY_HOST_PID not given");
            }
        }
    }
    let visible = list_dir("/proc")
        .iter()
        .filter(|n| n.parse::<u32>().is_ok())
        .count();
    attempt(
        "few_pids_visible",
        visible <= 4,
        format!("{visible} pids in /proc"),
    );
    // The parent of a task (the supervisor) lives outside the pid namespace: getppid() is 0.
    // Behind the small init the parent is PID 1 of the task's own namespace, inside the same
    // jail and non-dumpable: its /proc entries are closed to the task.
    let ppid = nix::unistd::getppid().as_raw();
    let reach = if ppid == 0 {
        Err("getppid() is 0: the parent is outside this pid namespace".to_string())
    } else {
        std::fs::read_link(format!("/proc/{ppid}/root"))
            .map(|p| p.display().to_string())
            .map_err(|e| e.to_string())
    };
    attempt(
        "reach_parent_process",
        ppid == 0
            || reach.as_ref().is_ok_and(|root| root == "/")
            || (ppid == 1
                && reach
                    .as_ref()
                    .is_err_and(|e| e.contains("Permission denied"))),
        format!("ppid {ppid}; /proc/<ppid>/root: {reach:?}"),
    );

    // PTRACE_TRACEME in a child (it would make us our tracer's tracee).
    let code = in_child(|| {
        match sys::syscall6(
            libc::SYS_ptrace,
            [libc::PTRACE_TRACEME as libc::c_long, 0, 0, 0, 0, 0],
        ) {
            Ok(_) => 0,
            Err(_) => 1,
        }
    });
    attempt(
        "ptrace_traceme",
        code == Ok(1),
        format!("child exit {code:?} (1 = refused)"),
    );
}

fn namespaces_and_mounts(hints: &Hints) {
    // Mounting.
    let r = nix::mount::mount(
        Some("tmpfs"),
        "/tmp",
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    );
    attempt(
        "mount_tmpfs",
        r.is_err(),
        format!("mount tmpfs on /tmp: {r:?}"),
    );
    let r = nix::mount::mount(
        Some("/"),
        "/mnt",
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    );
    attempt("bind_mount", r.is_err(), format!("bind / on /mnt: {r:?}"));
    let r = nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    );
    let (still_writable, detail) = writable("/");
    attempt(
        "remount_root_read_write",
        r.is_err() && !still_writable,
        format!("mount -o remount,bind,rw /: {r:?}; root writable afterwards: {still_writable} ({detail})"),
    );
    let fs = CString::new("tmpfs").unwrap_or_default();
    let r = errno_of(sys::syscall6(
        libc::SYS_fsopen,
        [fs.as_ptr() as libc::c_long, 0, 0, 0, 0, 0],
    ));
    if let Ok(fd) = r {
        let _ = sys::syscall6(libc::SYS_close, [fd, 0, 0, 0, 0, 0]);
    }
    attempt(
        "new_mount_api",
        r.is_err(),
        format!("fsopen(\"tmpfs\"): {r:?}"),
    );

    // New user namespace, which would give every capability inside it.
    let code = in_child(
        || match nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER) {
            Ok(()) => 0,
            Err(_) => 1,
        },
    );
    attempt(
        "unshare_user_namespace",
        code == Ok(1),
        format!("child exit {code:?} (1 = refused)"),
    );
    let code = in_child(|| {
        let flags = (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_long;
        match sys::syscall6(libc::SYS_clone, [flags, 0, 0, 0, 0, 0]) {
            Ok(0) => {
                // The cloned grandchild: leave at once.
                std::process::exit(0)
            }
            Ok(pid) => {
                sys::wait(pid as libc::pid_t);
                0
            }
            Err(_) => 1,
        }
    });
    attempt(
        "clone_user_namespace",
        code == Ok(1),
        format!("child exit {code:?} (1 = refused)"),
    );
    let r = sys::clone3_exit_at_once(libc::CLONE_NEWUSER as u64);
    if let Ok(pid) = r {
        sys::wait(pid);
    }
    attempt(
        "clone3_user_namespace",
        r.is_err(),
        format!("clone3(CLONE_NEWUSER): {:?}", r.map_err(sys::errno_text)),
    );
    // Other namespaces need CAP_SYS_ADMIN, which no task has.
    let mut created = Vec::new();
    for (name, flag) in [
        ("mnt", libc::CLONE_NEWNS),
        ("net", libc::CLONE_NEWNET),
        ("uts", libc::CLONE_NEWUTS),
        ("ipc", libc::CLONE_NEWIPC),
        ("pid", libc::CLONE_NEWPID),
        ("cgroup", libc::CLONE_NEWCGROUP),
        ("time", libc::CLONE_NEWTIME),
    ] {
        let code = in_child(|| {
            match sys::syscall6(libc::SYS_unshare, [flag as libc::c_long, 0, 0, 0, 0, 0]) {
                Ok(_) => 0,
                Err(_) => 1,
            }
        });
        if code != Ok(1) {
            created.push(format!("{name}: child exit {code:?}"));
        }
    }
    attempt(
        "unshare_other_namespaces",
        created.is_empty(),
        format!("created: {created:?}"),
    );

    // Joining other namespaces: PID 1's (the task's own), then a host process's.
    for ns in ["mnt", "net", "pid", "uts", "ipc", "cgroup", "user"] {
        let path = format!("/proc/1/ns/{ns}");
        let result = std::fs::File::open(&path)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                nix::sched::setns(f, nix::sched::CloneFlags::empty()).map_err(|e| e.to_string())
            });
        attempt(
            &format!("setns_{ns}"),
            result.is_err(),
            format!("setns {path}: {result:?}"),
        );
    }
    match hints.host_pid {
        Some(pid) => {
            let path = format!("/proc/{pid}/ns/mnt");
            let by_path = std::fs::File::open(&path)
                .map_err(|e| e.to_string())
                .and_then(|f| {
                    nix::sched::setns(f, nix::sched::CloneFlags::empty()).map_err(|e| e.to_string())
                });
            let by_pidfd = errno_of(sys::syscall6(
                libc::SYS_pidfd_open,
                [pid as libc::c_long, 0, 0, 0, 0, 0],
            ))
            .and_then(|fd| {
                let all =
                    (libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWPID) as libc::c_long;
                let r = errno_of(sys::syscall6(libc::SYS_setns, [fd, all, 0, 0, 0, 0]));
                let _ = sys::syscall6(libc::SYS_close, [fd, 0, 0, 0, 0, 0]);
                r
            });
            attempt(
                "setns_host_namespaces",
                by_path.is_err() && by_pidfd.is_err(),
                format!("setns {path}: {by_path:?}; pidfd_open({pid}) + setns: {by_pidfd:?}"),
            );
        }
        None => not_tried("setns_host_namespaces", "NODED_VERIFY_HOST_PID not given"),
    }

    // The classic chroot escape: chroot into a subdirectory while the working directory stays
    // outside it, climb with "..", chroot there. Harmless against pivot_root + detach: ".."
    // stops at the jail root, which sits on the root of its mount namespace.
    let before = identity("/");
    let jail = match scratch_dir() {
        Some(dir) => format!("{dir}/.noded-verify-chroot"),
        None => "/usr".to_string(),
    };
    let _ = std::fs::create_dir(&jail);
    let marker = hints.host_marker.clone();
    let before_in_child = before.clone();
    let code = in_child(|| {
        if nix::unistd::chroot(jail.as_str()).is_err() {
            return 1;
        }
        for _ in 0..64 {
            let _ = std::env::set_current_dir("..");
        }
        if nix::unistd::chroot(".").is_err() {
            return 1;
        }
        let marker_seen = marker.as_deref().is_some_and(|m| Path::new(m).exists());
        if marker_seen || identity("/") != before_in_child {
            0
        } else {
            2
        }
    });
    if jail != "/usr" {
        let _ = std::fs::remove_dir(&jail);
    }
    attempt(
        "chroot_escape",
        code != Ok(0),
        format!("child exit {code:?} (0 = left the root {before}, 1 = chroot refused, 2 = stayed inside)"),
    );
}

/// Opens `path` for writing only (never writes); `Ok` means it could have been written.
fn open_for_write(path: &str) -> Result<(), std::io::Error> {
    std::fs::OpenOptions::new().write(true).open(path).map(drop)
}

fn first_existing<'a>(paths: &[&'a str]) -> Option<&'a str> {
    paths.iter().copied().find(|p| Path::new(p).exists())
}

fn writes_and_kernel_files() {
    for (name, dir) in [
        ("write_root", "/"),
        ("write_usr", "/usr"),
        ("write_etc", "/etc"),
        ("write_dev", "/dev"),
    ] {
        let (ok, detail) = writable(dir);
        attempt(name, !ok, detail);
    }
    // Host-wide kernel knobs, several of them classic container escapes (core_pattern and
    // modprobe run a helper as host root; uevent_helper likewise).
    for (name, candidates) in [
        (
            "open_proc_sys_for_write",
            &["/proc/sys/kernel/hostname"][..],
        ),
        (
            "open_core_pattern_for_write",
            &["/proc/sys/kernel/core_pattern"][..],
        ),
        (
            "open_modprobe_path_for_write",
            &["/proc/sys/kernel/modprobe"][..],
        ),
        ("open_sysrq_trigger_for_write", &["/proc/sysrq-trigger"][..]),
        (
            "open_sys_for_write",
            &[
                "/sys/kernel/uevent_helper",
                "/sys/kernel/mm/transparent_hugepage/enabled",
                "/sys/kernel/profiling",
                "/sys/power/state",
            ][..],
        ),
    ] {
        // A knob this kernel lacks (no modules, no magic SysRq) cannot be opened either: the
        // open is still issued and reported, with the reason.
        let path = first_existing(candidates).unwrap_or(candidates[0]);
        let r = open_for_write(path);
        let absent = matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::NotFound);
        attempt(
            name,
            r.is_err(),
            format!(
                "open {path} O_WRONLY: {:?}{}",
                r.map(|()| "opened"),
                if absent {
                    " (this kernel does not have it)"
                } else {
                    ""
                }
            ),
        );
    }
    // binfmt_misc: registering an interpreter would run it for host executables.
    let register = "/proc/sys/fs/binfmt_misc/register";
    let opened = open_for_write(register);
    let mounted = scratch_dir().map(|dir| {
        nix::mount::mount(
            Some("binfmt_misc"),
            dir,
            Some("binfmt_misc"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
    });
    attempt(
        "register_binfmt_misc",
        opened.is_err() && !matches!(mounted, Some(Ok(()))),
        format!(
            "open {register} O_WRONLY: {:?}; mount binfmt_misc: {mounted:?}",
            opened.map(|()| "opened")
        ),
    );
    let r = nix::unistd::sethostname("escaped");
    attempt("sethostname", r.is_err(), format!("{r:?}"));

    // Kernel memory and masked /proc files.
    match std::fs::File::open("/proc/kcore") {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => attempt(
            "read_kcore",
            true,
            "open /proc/kcore: not found (this kernel has no /proc/kcore; where it exists the jail masks it)",
        ),
        opened => {
            let read = opened.and_then(|mut f| {
                let mut buf = [0u8; 16];
                f.read(&mut buf)
            });
            attempt(
                "read_kcore",
                !matches!(read, Ok(n) if n > 0),
                format!("read /proc/kcore: {read:?} bytes"),
            );
        }
    }
    let masked = [
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
        "/proc/timer_stats",
    ];
    let present: Vec<&str> = masked
        .iter()
        .copied()
        .filter(|p| Path::new(p).exists())
        .collect();
    if present.is_empty() {
        not_tried(
            "read_masked_proc_files",
            format!("none of {masked:?} exists here"),
        );
    } else {
        let leaked: Vec<String> = present
            .iter()
            .filter_map(|p| match std::fs::read(p) {
                Ok(b) if !b.is_empty() => Some(format!("{p}: {} bytes", b.len())),
                _ => None,
            })
            .collect();
        attempt(
            "read_masked_proc_files",
            leaked.is_empty(),
            format!("read {present:?}; with content: {leaked:?}"),
        );
    }
    private_host_files();
    match std::fs::read("/etc/shadow") {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            not_tried("read_etc_shadow", "there is no /etc/shadow here")
        }
        shadow => attempt(
            "read_etc_shadow",
            !matches!(&shadow, Ok(b) if !b.is_empty()),
            format!("{:?}", shadow.map(|b| b.len())),
        ),
    }
}

/// Reads the files of the host's `/etc` (bound read-only into the jail) that the host keeps
/// from other users (private keys, for example). Root in a task with `dac_override` can read
/// them: a known limit (docs/threat-model.md); everyone else must be refused.
fn private_host_files() {
    const MAX_ENTRIES: usize = 20_000;
    const MAX_DEPTH: usize = 6;
    let mut pending = vec![(std::path::PathBuf::from("/etc"), 0usize)];
    let mut seen = 0usize;
    let mut private = Vec::new();
    while let Some((dir, depth)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                break;
            }
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() && depth < MAX_DEPTH {
                pending.push((entry.path(), depth + 1));
            } else if meta.is_file() && meta.permissions().mode() & 0o004 == 0 {
                private.push(entry.path());
            }
        }
    }
    let mut read = Vec::new();
    for path in &private {
        let mut buf = [0u8; 1];
        if let Ok(1) = std::fs::File::open(path).and_then(|mut f| f.read(&mut buf)) {
            read.push(path.display().to_string());
        }
    }
    attempt(
        "read_private_host_files",
        read.is_empty(),
        format!(
            "{} files under /etc are not world-readable; read: {read:?}",
            private.len()
        ),
    );
}

/// mknod in every writable directory of the sandbox (or `/` when there is none), then open
/// what was made: a device node is only dangerous where a mount lacks `nodev`.
fn mknod_and_open(name: &str, kind: nix::sys::stat::SFlag, major: u64, minor: u64) {
    let mut dirs: Vec<&str> = ["/tmp", "/local", "/alloc", "/secrets", "/dev/shm"]
        .into_iter()
        .filter(|d| writable(d).0)
        .collect();
    if dirs.is_empty() {
        dirs.push("/");
    }
    let mut opened = Vec::new();
    let mut outcomes = Vec::new();
    for dir in dirs {
        let node = format!("{}/.noded-verify-{name}", dir.trim_end_matches('/'));
        let made = nix::sys::stat::mknod(
            node.as_str(),
            kind,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(major, minor),
        );
        match made {
            Err(e) => outcomes.push(format!("mknod {node}: {e}")),
            Ok(()) => {
                let open = std::fs::File::open(&node);
                let _ = std::fs::remove_file(&node);
                outcomes.push(format!(
                    "mknod {node} worked, open: {:?}",
                    open.as_ref().map(|_| "opened")
                ));
                if open.is_ok() {
                    opened.push(node);
                }
            }
        }
    }
    attempt(
        name,
        opened.is_empty(),
        format!("device {major}:{minor}: {}", outcomes.join("; ")),
    );
}

fn devices() {
    mknod_and_open("mknod_block_device", nix::sys::stat::SFlag::S_IFBLK, 8, 0);
    mknod_and_open(
        "mknod_char_mem_device",
        nix::sys::stat::SFlag::S_IFCHR,
        1,
        1,
    );
    let mut opened = Vec::new();
    for dev in [
        "/dev/vda",
        "/dev/sda",
        "/dev/nvme0n1",
        "/dev/xvda",
        "/dev/mem",
        "/dev/kmsg",
        "/dev/port",
    ] {
        if std::fs::File::open(dev).is_ok() {
            opened.push(dev);
        }
    }
    attempt(
        "open_host_devices",
        opened.is_empty(),
        format!("opened: {opened:?}"),
    );
    let dev_blocks: Vec<String> = std::fs::read_dir("/dev")
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().map(|t| t.is_block_device()).unwrap_or(false))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    attempt(
        "no_block_devices_in_dev",
        dev_blocks.is_empty(),
        format!("{dev_blocks:?}"),
    );
}

fn network(hints: &Hints) {
    let raw = errno_of(sys::syscall6(
        libc::SYS_socket,
        [
            libc::AF_INET as libc::c_long,
            libc::SOCK_RAW as libc::c_long,
            libc::IPPROTO_ICMP as libc::c_long,
            0,
            0,
            0,
        ],
    ));
    let packet = errno_of(sys::syscall6(
        libc::SYS_socket,
        [
            libc::AF_PACKET as libc::c_long,
            libc::SOCK_RAW as libc::c_long,
            0,
            0,
            0,
            0,
        ],
    ));
    for fd in [&raw, &packet].into_iter().flatten() {
        let _ = sys::syscall6(libc::SYS_close, [*fd, 0, 0, 0, 0, 0]);
    }
    attempt(
        "raw_socket",
        raw.is_err() && packet.is_err(),
        format!("AF_INET/SOCK_RAW: {raw:?}; AF_PACKET: {packet:?}"),
    );
    let start = read_trim("/proc/sys/net/ipv4/ip_unprivileged_port_start");
    let bound = std::net::TcpListener::bind("127.0.0.1:80");
    attempt(
        "bind_low_port",
        bound.is_err(),
        format!(
            "bind 127.0.0.1:80: {:?} (ip_unprivileged_port_start = {start:?})",
            bound.map(|_| "bound")
        ),
    );
    match &hints.host_tcp {
        Some(addr) => match addr.parse::<std::net::SocketAddr>() {
            Ok(sock) => {
                let r = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(1));
                attempt(
                    "connect_host_loopback",
                    r.is_err(),
                    format!("connect {sock}: {:?}", r.map(|_| "connected")),
                );
            }
            Err(e) => not_tried(
                "connect_host_loopback",
                format!("NODED_VERIFY_HOST_TCP {addr:?} is not ip:port: {e}"),
            ),
        },
        None => not_tried("connect_host_loopback", "NODED_VERIFY_HOST_TCP not given"),
    }
}

/// `CapEff` of `/proc/<who>/status` as a mask.
fn cap_mask(who: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{who}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

fn status_line(who: &str, field: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{who}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_string()))
}

/// Executes a setuid-root binary in a child and reads the credentials it ran with.
fn setuid_exec() {
    const CANDIDATES: [&str; 8] = [
        "/usr/bin/su",
        "/bin/su",
        "/usr/bin/newgrp",
        "/usr/bin/passwd",
        "/usr/bin/chsh",
        "/usr/bin/chfn",
        "/usr/bin/gpasswd",
        "/usr/bin/mount",
    ];
    let Some(binary) = CANDIDATES.iter().copied().find(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.uid() == 0 && m.permissions().mode() & 0o4000 != 0)
    }) else {
        not_tried(
            "setuid_binary_exec",
            format!("no setuid-root binary among {CANDIDATES:?}"),
        );
        return;
    };
    let own_euid = nix::unistd::geteuid().as_raw();
    let own_eff = cap_mask("self", "CapEff:").unwrap_or(0);
    let path = CString::new(binary).unwrap_or_default();
    let help = CString::new("--help").unwrap_or_default();
    let child = sys::fork_run(|| {
        if let Ok(null) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        {
            use std::os::fd::AsRawFd;
            for to in 0..3 {
                let _ = sys::syscall6(
                    libc::SYS_dup3,
                    [null.as_raw_fd() as libc::c_long, to, 0, 0, 0, 0],
                );
            }
        }
        let argv = [path.as_ptr(), help.as_ptr(), std::ptr::null()];
        let envp: [*const libc::c_char; 1] = [std::ptr::null()];
        let r = sys::syscall6(
            libc::SYS_execve,
            [
                path.as_ptr() as libc::c_long,
                argv.as_ptr() as libc::c_long,
                envp.as_ptr() as libc::c_long,
                0,
                0,
                0,
            ],
        );
        100 + r.err().unwrap_or(0).min(100)
    });
    let pid = match child {
        Ok(pid) => pid,
        Err(errno) => {
            not_tried(
                "setuid_binary_exec",
                format!("fork: {}", sys::errno_text(errno)),
            );
            return;
        }
    };
    // Wait until the child runs the binary (its name changes), exited or not; a zombie keeps
    // its credentials readable until it is reaped.
    let who = pid.to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen: Option<(String, Option<u64>)> = None;
    while Instant::now() < deadline {
        let name = status_line(&who, "Name:").unwrap_or_default();
        if !name.is_empty() && name != "noded-verify" {
            seen = Some((
                status_line(&who, "Uid:").unwrap_or_default(),
                cap_mask(&who, "CapEff:"),
            ));
            break;
        }
        if sys::exited_unreaped(pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let code = sys::kill_and_reap(pid);
    match seen {
        Some((uids, eff)) => {
            let euid = uids
                .split_whitespace()
                .nth(1)
                .and_then(|e| e.parse::<u32>().ok());
            let gained = eff.map(|e| e & !own_eff);
            attempt(
                "setuid_binary_exec",
                euid == Some(own_euid) && gained == Some(0),
                format!(
                    "{binary} ran with Uid {uids:?} (ours: {own_euid}), capabilities gained: {}",
                    gained.map_or("unknown".to_string(), |g| format!("{g:#x}"))
                ),
            );
        }
        None => attempt(
            "setuid_binary_exec",
            true,
            format!("{binary} could not be executed (child exit {code}, 100 + errno)"),
        ),
    }
}

fn privileges_and_identity() {
    // setuid binaries: nosuid mounts and no_new_privs keep them from granting anything.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let nnp = status
        .lines()
        .any(|l| l.starts_with("NoNewPrivs:") && l.trim_end().ends_with('1'));
    let mut suid_mounts = Vec::new();
    for dir in [
        "/usr/bin",
        "/bin",
        "/sbin",
        "/usr/sbin",
        "/tmp",
        "/local",
        "/alloc",
        "/secrets",
    ] {
        if let Ok(st) = nix::sys::statvfs::statvfs(dir) {
            if !st.flags().contains(nix::sys::statvfs::FsFlags::ST_NOSUID) {
                suid_mounts.push(dir);
            }
        }
    }
    attempt(
        "setuid_binary",
        nnp && suid_mounts.is_empty(),
        format!("no_new_privs={nnp}, mounts without nosuid: {suid_mounts:?}"),
    );
    setuid_exec();

    // Raising capabilities beyond what we hold (capset, ambient).
    let before = cap_mask("self", "CapEff:");
    let header = [0x2008_0522u32, 0]; // _LINUX_CAPABILITY_VERSION_3, this process
    let data = [u32::MAX; 6]; // effective, permitted, inheritable × 2 words
    let capset = errno_of(sys::syscall6(
        libc::SYS_capset,
        [
            header.as_ptr() as libc::c_long,
            data.as_ptr() as libc::c_long,
            0,
            0,
            0,
            0,
        ],
    ));
    let ambient = errno_of(sys::syscall6(
        libc::SYS_prctl,
        [
            libc::PR_CAP_AMBIENT as libc::c_long,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_long,
            21, // CAP_SYS_ADMIN
            0,
            0,
            0,
        ],
    ));
    let after = cap_mask("self", "CapEff:");
    attempt(
        "raise_capabilities",
        capset.is_err() && ambient.is_err() && before == after,
        format!("capset(all): {capset:?}; ambient raise sys_admin: {ambient:?}; CapEff {before:x?} -> {after:x?}"),
    );
    let r = errno_of(sys::syscall6(
        libc::SYS_prctl,
        [libc::PR_SET_NO_NEW_PRIVS as libc::c_long, 0, 0, 0, 0, 0],
    ));
    let nnp_after = status_line("self", "NoNewPrivs:");
    attempt(
        "clear_no_new_privs",
        nnp_after.as_deref() == Some("1"),
        format!("prctl(PR_SET_NO_NEW_PRIVS, 0): {r:?}; NoNewPrivs now {nnp_after:?}"),
    );
    let mode_before = status_line("self", "Seccomp:");
    let code = in_child(|| {
        let _ = sys::syscall6(
            libc::SYS_prctl,
            [libc::PR_SET_SECCOMP as libc::c_long, 0, 0, 0, 0, 0],
        );
        match status_line("self", "Seccomp:").as_deref() {
            Some("0") => 0,
            _ => 1,
        }
    });
    attempt(
        "disable_seccomp",
        mode_before.as_deref() != Some("0") && code == Ok(1),
        format!("Seccomp mode {mode_before:?}; child after PR_SET_SECCOMP(disabled): exit {code:?} (0 = filter gone)"),
    );

    // Resource limits and priority above what was granted.
    let mut tried = None;
    for resource in [libc::RLIMIT_NOFILE, libc::RLIMIT_NPROC, libc::RLIMIT_CORE] {
        let Ok((soft, hard)) = nix::sys::resource::getrlimit(rlimit_resource(resource)) else {
            continue;
        };
        if hard == libc::RLIM_INFINITY {
            continue;
        }
        let r = nix::sys::resource::setrlimit(rlimit_resource(resource), soft, hard + 1);
        if r.is_ok() {
            let _ = nix::sys::resource::setrlimit(rlimit_resource(resource), soft, hard);
        }
        tried = Some((resource, hard, r));
        break;
    }
    match tried {
        Some((resource, hard, r)) => attempt(
            "raise_rlimit",
            r.is_err(),
            format!("raise hard limit of resource {resource} above {hard}: {r:?}"),
        ),
        None => not_tried("raise_rlimit", "no finite hard limit to raise"),
    }
    let r = errno_of(sys::syscall6(
        libc::SYS_setpriority,
        [libc::PRIO_PROCESS as libc::c_long, 0, -20, 0, 0, 0],
    ));
    if r.is_ok() {
        let _ = sys::syscall6(
            libc::SYS_setpriority,
            [libc::PRIO_PROCESS as libc::c_long, 0, 0, 0, 0, 0],
        );
    }
    attempt(
        "raise_priority",
        r.is_err(),
        format!("setpriority(self, -20): {r:?}"),
    );
}

fn rlimit_resource(raw: u32) -> nix::sys::resource::Resource {
    use nix::sys::resource::Resource;
    match raw {
        libc::RLIMIT_NPROC => Resource::RLIMIT_NPROC,
        libc::RLIMIT_CORE => Resource::RLIMIT_CORE,
        _ => Resource::RLIMIT_NOFILE,
    }
}

/// Kernel interfaces seccomp and capabilities close. Every call uses arguments that change
/// nothing even if it were allowed.
fn kernel_interfaces() {
    let mut attr = [0u32; 32];
    attr[0] = 2; // BPF_MAP_TYPE_ARRAY
    attr[1] = 4; // key size
    attr[2] = 4; // value size
    attr[3] = 1; // max entries
    let r = errno_of(sys::syscall6(
        libc::SYS_bpf,
        [
            0,
            attr.as_mut_ptr() as libc::c_long,
            std::mem::size_of_val(&attr) as libc::c_long,
            0,
            0,
            0,
        ],
    ));
    if let Ok(fd) = r {
        let _ = sys::syscall6(libc::SYS_close, [fd, 0, 0, 0, 0, 0]);
    }
    attempt("bpf", r.is_err(), format!("BPF_MAP_CREATE: {r:?}"));
    let r = errno_of(sys::syscall6(
        libc::SYS_keyctl,
        [1 /* KEYCTL_JOIN_SESSION_KEYRING */, 0, 0, 0, 0, 0],
    ));
    attempt("keyctl", r.is_err(), format!("{r:?}"));
    let mut handle = [0u8; 136];
    handle[0..4].copy_from_slice(&128u32.to_ne_bytes());
    let mut mount_id: libc::c_int = 0;
    let root = CString::new("/").unwrap_or_default();
    let named = errno_of(sys::syscall6(
        libc::SYS_name_to_handle_at,
        [
            libc::AT_FDCWD as libc::c_long,
            root.as_ptr() as libc::c_long,
            handle.as_mut_ptr() as libc::c_long,
            &mut mount_id as *mut libc::c_int as libc::c_long,
            0,
            0,
        ],
    ));
    let opened = errno_of(sys::syscall6(
        libc::SYS_open_by_handle_at,
        [
            libc::AT_FDCWD as libc::c_long,
            handle.as_mut_ptr() as libc::c_long,
            libc::O_RDONLY as libc::c_long,
            0,
            0,
            0,
        ],
    ));
    if let Ok(fd) = opened {
        let _ = sys::syscall6(libc::SYS_close, [fd, 0, 0, 0, 0, 0]);
    }
    attempt(
        "open_by_handle_at",
        opened.is_err(),
        format!("name_to_handle_at: {named:?}; open_by_handle_at: {opened:?}"),
    );
    let r = errno_of(sys::syscall6(libc::SYS_finit_module, [-1, 0, 0, 0, 0, 0]));
    attempt(
        "load_kernel_module",
        matches!(r, Err(ref e) if e.contains("not permitted")),
        format!("finit_module(-1): {r:?} (EPERM = refused before looking at the fd)"),
    );
    // perf_event_open of our own task clock.
    let mut perf = [0u64; 16];
    perf[0] = 1 | (128 << 32); // type PERF_TYPE_SOFTWARE, size 128
    perf[1] = 1; // PERF_COUNT_SW_TASK_CLOCK
    let r = errno_of(sys::syscall6(
        libc::SYS_perf_event_open,
        [perf.as_mut_ptr() as libc::c_long, 0, -1, -1, 0, 0],
    ));
    if let Ok(fd) = r {
        let _ = sys::syscall6(libc::SYS_close, [fd, 0, 0, 0, 0, 0]);
    }
    attempt("perf_event_open", r.is_err(), format!("{r:?}"));
    // io_uring runs its operations outside the seccomp filter.
    let mut params = [0u32; 30];
    let r = errno_of(sys::syscall6(
        libc::SYS_io_uring_setup,
        [1, params.as_mut_ptr() as libc::c_long, 0, 0, 0, 0],
    ));
    if let Ok(fd) = r {
        let _ = sys::syscall6(libc::SYS_close, [fd, 0, 0, 0, 0, 0]);
    }
    attempt("io_uring", r.is_err(), format!("io_uring_setup(1): {r:?}"));
    let r = errno_of(sys::syscall6(
        libc::SYS_userfaultfd,
        [libc::O_CLOEXEC as libc::c_long, 0, 0, 0, 0, 0],
    ));
    if let Ok(fd) = r {
        let _ = sys::syscall6(libc::SYS_close, [fd, 0, 0, 0, 0, 0]);
    }
    attempt("userfaultfd", r.is_err(), format!("{r:?}"));
    // settimeofday(NULL, NULL) changes nothing, yet still needs CAP_SYS_TIME.
    let r = errno_of(sys::syscall6(libc::SYS_settimeofday, [0, 0, 0, 0, 0, 0]));
    attempt(
        "set_clock",
        r.is_err(),
        format!("settimeofday(NULL, NULL): {r:?}"),
    );
    // reboot with an invalid command: EPERM without CAP_SYS_BOOT, EINVAL with it.
    let r = errno_of(sys::syscall6(
        libc::SYS_reboot,
        [
            libc::LINUX_REBOOT_MAGIC1 as libc::c_long,
            libc::LINUX_REBOOT_MAGIC2 as libc::c_long,
            0x0bad_c0de,
            0,
            0,
            0,
        ],
    ));
    attempt(
        "reboot",
        matches!(r, Err(ref e) if e.contains("not permitted")),
        format!("reboot(invalid command): {r:?} (EPERM = refused, EINVAL = would be allowed)"),
    );
    let mut buf = [0u8; 256];
    let r = errno_of(sys::syscall6(
        libc::SYS_syslog,
        [
            3, /* SYSLOG_ACTION_READ_ALL */
            buf.as_mut_ptr() as libc::c_long,
            buf.len() as libc::c_long,
            0,
            0,
            0,
        ],
    ));
    attempt(
        "read_kernel_log",
        r.is_err(),
        format!("syslog(READ_ALL): {r:?}"),
    );
    #[cfg(target_arch = "x86_64")]
    {
        let r = errno_of(sys::syscall6(libc::SYS_iopl, [3, 0, 0, 0, 0, 0]));
        attempt("raw_io_ports", r.is_err(), format!("iopl(3): {r:?}"));
    }
}

fn cgroups() {
    // Leaving the cgroup: every cgroup.procs visible is the task's own, on a read-only mount.
    let pid = std::process::id().to_string();
    let mut written = Vec::new();
    let mut candidates = vec![
        "/sys/fs/cgroup/cgroup.procs".to_string(),
        "/sys/fs/cgroup/../cgroup.procs".to_string(),
    ];
    for entry in list_dir("/sys/fs/cgroup") {
        candidates.push(format!("/sys/fs/cgroup/{entry}/cgroup.procs"));
        candidates.push(format!("/sys/fs/cgroup/{entry}/../cgroup.procs"));
    }
    for c in &candidates {
        if std::fs::OpenOptions::new()
            .write(true)
            .open(c)
            .and_then(|mut f| f.write_all(pid.as_bytes()))
            .is_ok()
        {
            written.push(c.clone());
        }
    }
    let cgroup_paths = read_trim("/proc/self/cgroup").unwrap_or_default();
    let rooted = !cgroup_paths.is_empty() && cgroup_paths.lines().all(|l| l.ends_with(":/"));
    attempt(
        "leave_cgroup",
        written.is_empty() && rooted,
        format!("wrote to {written:?}; /proc/self/cgroup: {cgroup_paths:?}"),
    );
    // Raising the task's own limits or creating a child cgroup without them.
    let limit_files = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/pids.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/pids/pids.max",
        "/sys/fs/cgroup/cpu/cpu.shares",
    ];
    let present: Vec<&str> = limit_files
        .iter()
        .copied()
        .filter(|p| Path::new(p).exists())
        .collect();
    if present.is_empty() {
        not_tried("write_cgroup_limits", "no cgroup limit file is visible");
    } else {
        let opened: Vec<&str> = present
            .iter()
            .copied()
            .filter(|p| open_for_write(p).is_ok())
            .collect();
        attempt(
            "write_cgroup_limits",
            opened.is_empty(),
            format!("opened for write: {opened:?} of {present:?}"),
        );
    }
    let parent = if Path::new("/sys/fs/cgroup/memory").is_dir() {
        "/sys/fs/cgroup/memory"
    } else {
        "/sys/fs/cgroup"
    };
    let child = format!("{parent}/noded-escape-{pid}");
    let r = std::fs::create_dir(&child);
    if r.is_ok() {
        let _ = std::fs::remove_dir(&child);
    }
    attempt(
        "create_child_cgroup",
        r.is_err(),
        format!("mkdir {child}: {:?}", r.map(|()| "created")),
    );
    // Mounting a cgroup hierarchy of our own, v2 or v1 (CVE-2022-0492 used v1's release_agent).
    let target = scratch_dir().unwrap_or("/mnt");
    let v2 = nix::mount::mount(
        Some("cgroup2"),
        target,
        Some("cgroup2"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    );
    let v1 = nix::mount::mount(
        Some("cgroup"),
        target,
        Some("cgroup"),
        nix::mount::MsFlags::empty(),
        Some("memory"),
    );
    attempt(
        "mount_cgroupfs",
        v2.is_err() && v1.is_err(),
        format!("mount cgroup2 at {target}: {v2:?}; cgroup (memory) at {target}: {v1:?}"),
    );
    let mut agents = vec!["/sys/fs/cgroup/release_agent".to_string()];
    for entry in list_dir("/sys/fs/cgroup") {
        agents.push(format!("/sys/fs/cgroup/{entry}/release_agent"));
    }
    let visible: Vec<&String> = agents.iter().filter(|p| Path::new(p).exists()).collect();
    let writable_agents: Vec<&&String> = visible
        .iter()
        .filter(|p| open_for_write(p).is_ok())
        .collect();
    attempt(
        "cgroup_release_agent",
        writable_agents.is_empty(),
        format!("release_agent files visible: {visible:?}; opened for write: {writable_agents:?}"),
    );
}

fn host_paths(hints: &Hints) {
    let mut reached = Vec::new();
    let mut probes = vec![
        "/var/lib/noded".to_string(),
        "/alloc/../../../../../var/lib/noded".to_string(),
        "/local/../../../../../var/lib/noded".to_string(),
        "/proc/1/root/../../../var/lib/noded".to_string(),
        "/run/noded".to_string(),
    ];
    if let Some(marker) = &hints.host_marker {
        probes.push(marker.clone());
        probes.push(format!("/alloc/../../../../..{marker}"));
        probes.push(format!("/proc/self/root/../..{marker}"));
    }
    for p in &probes {
        if Path::new(p).exists() {
            reached.push(p.clone());
        }
    }
    attempt(
        "reach_host_paths",
        reached.is_empty(),
        format!("reached {reached:?} of {probes:?}"),
    );
    match &hints.other_alloc {
        Some(other) => {
            // The other allocation's last two path components (e.g. `<alloc id>/alloc`), as a
            // sibling of ours would be reached with `..`.
            let tail: Vec<String> = Path::new(other)
                .components()
                .rev()
                .take(2)
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let sibling = format!(
                "{}/{}",
                tail.get(1).map(String::as_str).unwrap_or(""),
                tail.first().map(String::as_str).unwrap_or("")
            );
            let probes = [
                other.clone(),
                format!("/alloc/../../../../..{other}"),
                format!("/alloc/../{sibling}"),
                format!("/alloc/../../{sibling}"),
                format!("/proc/1/root{other}"),
            ];
            let reached: Vec<&String> = probes.iter().filter(|p| Path::new(p).exists()).collect();
            attempt(
                "reach_other_allocation",
                reached.is_empty(),
                format!("reached {reached:?} of {probes:?}"),
            );
        }
        None => not_tried(
            "reach_other_allocation",
            "NODED_VERIFY_OTHER_ALLOC not given",
        ),
    }
    // Symlinks planted where the host reads on the task's behalf (logs, the alloc fs API):
    // the first writable of the allocation's dirs. Inside, they resolve within the jail; they
    // stay behind for the host-side check.
    let candidates = ["/alloc", "/alloc/data", "/alloc/tmp", "/local"];
    let Some(dir) = candidates.into_iter().find(|d| writable(d).0) else {
        not_tried(
            "plant_symlinks_in_alloc",
            format!("none of {candidates:?} is writable here"),
        );
        return;
    };
    let target = hints
        .host_marker
        .clone()
        .unwrap_or_else(|| "/var/lib/noded".to_string());
    let links = [
        (".noded-escape-absolute", target.clone()),
        (
            ".noded-escape-dotdot",
            format!("../../../../../../..{target}"),
        ),
        (
            ".noded-escape-proc",
            format!("/proc/1/root/../../..{target}"),
        ),
        (
            ".noded-escape-proc-self",
            "/proc/self/root/etc/hostname".to_string(),
        ),
    ];
    let mut planted = Vec::new();
    let mut reached = Vec::new();
    for (name, to) in &links {
        let link = format!("{dir}/{name}");
        let _ = std::fs::remove_file(&link);
        if std::os::unix::fs::symlink(to, &link).is_ok() {
            planted.push(link.clone());
        }
        if name != &".noded-escape-proc-self" && Path::new(&link).exists() {
            reached.push(link);
        }
    }
    attempt(
        "plant_symlinks_in_alloc",
        !planted.is_empty() && reached.is_empty(),
        format!("planted {planted:?} (left for the host side to refuse); resolved from inside: {reached:?}"),
    );
}

fn inheritance(hints: &Hints) {
    let extra: Vec<String> = open_fds()
        .into_iter()
        .filter(|fd| *fd > 2)
        .map(|fd| {
            let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            format!("{fd} -> {target}")
        })
        .collect();
    attempt(
        "inherited_fds",
        extra.is_empty(),
        format!("fds above 2: {extra:?}"),
    );
    let keys: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    match &hints.allowed_env {
        Some(allowed) => {
            // An entry ending in `*` allows every name with that prefix (`NOMAD_*`).
            let is_allowed = |key: &str| {
                key == "NODED_VERIFY_ALLOWED_ENV"
                    || allowed.iter().any(|a| match a.strip_suffix('*') {
                        Some(prefix) => key.starts_with(prefix),
                        None => a == key,
                    })
            };
            let unexpected: Vec<&String> = keys.iter().filter(|k| !is_allowed(k)).collect();
            attempt(
                "environment",
                unexpected.is_empty(),
                format!("unexpected variables: {unexpected:?}"),
            );
        }
        None => not_tried(
            "environment",
            format!("NODED_VERIFY_ALLOWED_ENV not given (variables: {keys:?})"),
        ),
    }
}

fn resources(hints: &Hints) {
    fork_bomb();
    memory_hog(hints);
}

/// Volunteers the calling process for the OOM killer (raising one's own score needs no
/// privilege), so that an OOM in the cgroup takes the bomb or the hog, not the reporter.
fn volunteer_for_oom_kill() {
    let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
}

/// Forks sleeping children until fork fails (at most [`FORK_BOMB_CAP`]), then kills and
/// reaps them. Only meaningful under a pids limit below the cap: a higher one is reported as
/// not tried rather than forking thousands of processes.
fn fork_bomb() {
    const FORK_BOMB_CAP: usize = 2000;
    let (_, pids_max, _) = cgroup_limits();
    if let Some(limit) = pids_max
        .as_deref()
        .and_then(|m| m.parse::<usize>().ok())
        .filter(|m| *m >= FORK_BOMB_CAP)
    {
        not_tried(
            "fork_bomb",
            format!("the cgroup's pids limit {limit} is above the {FORK_BOMB_CAP} forks this attempt makes"),
        );
        return;
    }
    let mut children = Vec::new();
    let mut failure = None;
    while children.len() < FORK_BOMB_CAP {
        match sys::fork_run(|| {
            volunteer_for_oom_kill();
            std::thread::sleep(Duration::from_secs(30));
            0
        }) {
            Ok(pid) => children.push(pid),
            Err(errno) => {
                failure = Some(sys::errno_text(errno));
                break;
            }
        }
    }
    for pid in &children {
        let _ = sys::syscall6(
            libc::SYS_kill,
            [
                *pid as libc::c_long,
                libc::SIGKILL as libc::c_long,
                0,
                0,
                0,
                0,
            ],
        );
    }
    for pid in &children {
        sys::wait(*pid);
    }
    attempt(
        "fork_bomb",
        failure.is_some(),
        format!(
            "{} forks before failure {failure:?} (cgroup pids limit {pids_max:?}, cap {FORK_BOMB_CAP})",
            children.len()
        ),
    );
}

/// A child allocates far past the cgroup's memory limit; the OOM killer of the cgroup must
/// kill it (and only it: this process survives to report).
fn memory_hog(hints: &Hints) {
    if hints.hog_mb == Some(0) {
        not_tried(
            "memory_hog",
            "disabled with NODED_VERIFY_HOG_MB=0 (an OOM kill in the cgroup fails the task)",
        );
        return;
    }
    let (limit, _, _) = cgroup_limits();
    let limit_mb = limit
        .and_then(|l| l.parse::<u64>().ok())
        .map(|bytes| bytes >> 20)
        .filter(|mb| *mb < (1 << 20));
    let target_mb = hints
        .hog_mb
        .unwrap_or_else(|| limit_mb.map_or(4096, |mb| (mb * 2).min(4096) as usize));
    let start = Instant::now();
    let code = in_child(|| {
        volunteer_for_oom_kill();
        touch_memory(target_mb);
        0
    });
    attempt(
        "memory_hog",
        code == Ok(128 + libc::SIGKILL),
        format!(
            "child allocating {target_mb} MiB (cgroup limit {limit_mb:?} MiB): exit {code:?} after {} ms ({} = killed)",
            start.elapsed().as_millis(),
            128 + libc::SIGKILL
        ),
    );
}

fn hog(mb: usize) -> i32 {
    let touched = touch_memory(mb);
    println!("allocated {mb} MiB (checksum {touched})");
    0
}

/// Allocates `mb` MiB and touches every page; returns a checksum so nothing is optimised away.
fn touch_memory(mb: usize) -> usize {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    for i in 0..mb {
        let mut chunk = vec![0u8; 1 << 20];
        for page in chunk.iter_mut().step_by(4096) {
            *page = (i % 251) as u8 + 1;
        }
        chunks.push(chunk);
    }
    chunks.iter().map(|c| usize::from(c[0])).sum()
}
