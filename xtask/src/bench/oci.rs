//! The peers: crun and runc running the same `/bin/true` from an OCI bundle whose root is
//! made of read-only bind mounts of the host's `/bin /lib /lib64 /usr` (mounts in
//! `config.json`, nothing copied), with pid, ipc, uts, mount and cgroup namespaces and the
//! same cgroup limits noded applies to the bench task (300 MB, 100 cpu shares, 4096 pids).
//!
//! Each runtime runs from a helper process (this xtask binary, hidden sub-command
//! `__oci-helper`) that times `RUNTIME --root STATE run --bundle B ID` (create, start, wait,
//! delete) and answers over a pipe. crun 1.8 refuses hybrid cgroup hosts, so its helper first
//! moves into a private mount namespace (`unshare(CLONE_NEWNS)`, `/` made a recursive slave)
//! and unmounts `/sys/fs/cgroup/unified` there: the host's mounts never change.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;

/// Host directories bound read-only into the bundle's root.
const BUNDLE_BINDS: [&str; 4] = ["/bin", "/lib", "/lib64", "/usr"];
/// Mount points the runtimes need in the (otherwise empty) root directory.
const ROOT_DIRS: [&str; 7] = ["bin", "lib", "lib64", "usr", "proc", "dev", "sys"];
/// The cgroup v2 mount of a hybrid host, hidden from crun inside its helper.
const HYBRID_UNIFIED: &str = "/sys/fs/cgroup/unified";

/// The bundles of one bench run: `/bin/true`, a marker echo and `/bin/false` (validation).
#[derive(Debug, Clone)]
pub struct Bundles {
    pub truth: PathBuf,
    pub marker: PathBuf,
    pub falsity: PathBuf,
    pub marker_text: String,
}

impl Bundles {
    /// With `netns`, the containers get a network namespace of their own (`{"type":
    /// "network"}`: a new, empty one, loopback only, as crun/runc make it).
    pub fn create(dir: &Path, netns: bool) -> anyhow::Result<Bundles> {
        let rootfs = dir.join("rootfs");
        for sub in ROOT_DIRS {
            let p = rootfs.join(sub);
            std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        }
        let marker_text = format!("noded-bench-oci-marker-{}", std::process::id());
        let bundle = |name: &str, args: &[&str]| -> anyhow::Result<PathBuf> {
            let path = dir.join(name);
            std::fs::create_dir_all(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            let config = serde_json::to_string_pretty(&config_json(&rootfs, args, netns))?;
            std::fs::write(path.join("config.json"), config)
                .with_context(|| format!("writing {}/config.json", path.display()))?;
            Ok(path)
        };
        let echo = format!("echo {marker_text}");
        Ok(Bundles {
            truth: bundle("true", &["/bin/true"])?,
            marker: bundle("marker", &["/bin/sh", "-c", &echo])?,
            falsity: bundle("false", &["/bin/false"])?,
            marker_text,
        })
    }
}

/// An OCI runtime spec (1.0.2) close to `crun spec`/`runc spec` defaults, without a terminal,
/// with the bind-mounted root and noded's bench-task limits; a network namespace only with
/// `netns` (`--netns`).
fn config_json(rootfs: &Path, args: &[&str], netns: bool) -> serde_json::Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ];
    for dir in BUNDLE_BINDS {
        mounts.push(json!({"destination": dir, "type": "bind", "source": dir,
                           "options": ["rbind", "ro", "nosuid", "nodev"]}));
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    if netns {
        namespaces.push(json!({"type": "network"}));
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "ambient": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": rootfs, "readonly": true},
        "hostname": "bench",
        "mounts": mounts,
        "linux": {
            "resources": {
                "devices": [{"allow": false, "access": "rwm"}],
                "memory": {"limit": 300_u64 << 20},
                "cpu": {"shares": 100},
                "pids": {"limit": 4096}
            },
            "namespaces": namespaces,
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// One timed `run` of a runtime.
#[derive(Debug, Clone)]
pub struct OciRun {
    pub elapsed: Duration,
    pub exit_code: i32,
    pub stdout: String,
}

/// A runtime behind its helper process; the helper exits (deleting any container it left)
/// when this is dropped, and is killed by pid if it does not.
#[derive(Debug)]
pub struct OciRuntime {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    prefix: String,
    counter: u64,
}

impl OciRuntime {
    /// Starts the helper for `runtime` (a command on PATH) with its state under `state_root`.
    pub fn spawn(
        xtask: &Path,
        runtime: &str,
        state_root: &Path,
        private_mount_ns: bool,
        prefix: &str,
    ) -> anyhow::Result<OciRuntime> {
        std::fs::create_dir_all(state_root)
            .with_context(|| format!("creating {}", state_root.display()))?;
        let mut child = Command::new(xtask)
            .args(["bench", super::OCI_HELPER, runtime])
            .arg(state_root)
            .arg(if private_mount_ns { "private" } else { "host" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting the {runtime} helper ({})", xtask.display()))?;
        let stdin = child.stdin.take().context("helper stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("helper stdout")?);
        let mut rt = OciRuntime {
            name: runtime.to_string(),
            child,
            stdin: Some(stdin),
            stdout,
            prefix: prefix.to_string(),
            counter: 0,
        };
        match rt.exchange("ready")?.as_str() {
            "ready" => Ok(rt),
            other => bail!("the {runtime} helper did not start: {other}"),
        }
    }

    fn exchange(&mut self, line: &str) -> anyhow::Result<String> {
        let stdin = self.stdin.as_mut().context("helper stdin closed")?;
        writeln!(stdin, "{line}")
            .with_context(|| format!("writing to the {} helper", self.name))?;
        stdin.flush()?;
        let mut answer = String::new();
        self.stdout
            .read_line(&mut answer)
            .with_context(|| format!("reading from the {} helper", self.name))?;
        if answer.is_empty() {
            bail!("the {} helper exited (see its error above)", self.name);
        }
        Ok(answer.trim_end().to_string())
    }

    /// Runs the bundle once; `capture` keeps the container's stdout.
    pub fn run(&mut self, bundle: &Path, capture: bool) -> anyhow::Result<OciRun> {
        self.counter += 1;
        let id = format!("{}-{}-{}", self.prefix, self.name, self.counter);
        let bundle_text = bundle
            .to_str()
            .context("bundle path is not UTF-8")?
            .to_string();
        let answer = self.exchange(&format!("{id} {} {bundle_text}", u8::from(capture)))?;
        let mut parts = answer.splitn(4, ' ');
        match parts.next() {
            Some("ok") => {
                let nanos: u64 = parts.next().unwrap_or("").parse()?;
                let exit_code: i32 = parts.next().unwrap_or("").parse()?;
                let stdout = unhex(parts.next().unwrap_or(""));
                Ok(OciRun {
                    elapsed: Duration::from_nanos(nanos),
                    exit_code,
                    stdout,
                })
            }
            _ => bail!("{} run of {id}: {answer}", self.name),
        }
    }

    /// Runs `/bin/true`; fails unless it exited 0.
    pub fn run_true(&mut self, bundles: &Bundles) -> anyhow::Result<Duration> {
        let run = self.run(&bundles.truth, false)?;
        if run.exit_code != 0 {
            bail!(
                "{} run of /bin/true exited {} (a peer that fails is not measured)",
                self.name,
                run.exit_code
            );
        }
        Ok(run.elapsed)
    }

    /// Proves the runtime really runs the container: the marker comes out, `/bin/false`
    /// gives exit code 1.
    pub fn validate(&mut self, bundles: &Bundles) -> anyhow::Result<()> {
        let run = self.run(&bundles.marker, true)?;
        if run.exit_code != 0 || run.stdout.trim() != bundles.marker_text {
            bail!(
                "{} validation run failed: exit {}, stdout {:?} (expected {:?})",
                self.name,
                run.exit_code,
                run.stdout,
                bundles.marker_text
            );
        }
        let run = self.run(&bundles.falsity, false)?;
        if run.exit_code != 1 {
            bail!(
                "{} validation: /bin/false should exit 1, got {}",
                self.name,
                run.exit_code
            );
        }
        Ok(())
    }
}

impl Drop for OciRuntime {
    fn drop(&mut self) {
        // EOF makes the helper delete leftovers and exit.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => break,
            }
        }
        eprintln!("warning: the {} helper did not exit; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "-".to_string();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> String {
    let bytes: Vec<u8> = (0..text.len() / 2)
        .filter_map(|i| text.get(2 * i..2 * i + 2))
        .filter_map(|pair| u8::from_str_radix(pair, 16).ok())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The helper process: `xtask bench __oci-helper RUNTIME STATE_ROOT private|host`. Reads
/// `ID CAPTURE BUNDLE` lines, answers `ok NANOS EXIT_CODE HEX_STDOUT` or `err MESSAGE`.
pub fn helper_main(args: &[String]) -> anyhow::Result<()> {
    let [runtime, state_root, ns] = args else {
        bail!(
            "usage: xtask bench {} RUNTIME STATE_ROOT private|host",
            super::OCI_HELPER
        );
    };
    let state_root = PathBuf::from(state_root);
    match ns.as_str() {
        "private" => enter_private_mount_namespace()?,
        "host" => {}
        other => bail!("namespace mode {other:?}: expected private or host"),
    }
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        if line == "ready" {
            writeln!(out, "ready")?;
            out.flush()?;
            continue;
        }
        let mut parts = line.splitn(3, ' ');
        let (Some(id), Some(capture), Some(bundle)) = (parts.next(), parts.next(), parts.next())
        else {
            writeln!(out, "err malformed request {line:?}")?;
            out.flush()?;
            continue;
        };
        let mut cmd = Command::new(runtime);
        cmd.arg("--root")
            .arg(&state_root)
            .args(["run", "--bundle", bundle, id])
            .stdin(Stdio::null())
            .stdout(if capture == "1" {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped());
        let started = Instant::now();
        let output = cmd.output();
        let elapsed = started.elapsed();
        match output {
            Ok(output) => {
                let code = output.status.code().unwrap_or_else(|| {
                    128 + std::os::unix::process::ExitStatusExt::signal(&output.status).unwrap_or(0)
                });
                if code != 0 && !output.stderr.is_empty() && code != 1 {
                    eprintln!(
                        "{runtime}: {}",
                        String::from_utf8_lossy(&output.stderr).trim()
                    );
                }
                writeln!(
                    out,
                    "ok {} {code} {}",
                    elapsed.as_nanos(),
                    hex(&output.stdout)
                )?;
            }
            Err(e) => writeln!(out, "err starting {runtime}: {e}")?,
        }
        out.flush()?;
    }
    delete_leftovers(runtime, &state_root);
    Ok(())
}

/// Force-deletes every container still recorded under `state_root` (a run that failed half
/// way); the runtime removes its cgroups with it.
fn delete_leftovers(runtime: &str, state_root: &Path) {
    let Ok(entries) = std::fs::read_dir(state_root) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let id = entry.file_name().to_string_lossy().into_owned();
        let status = Command::new(runtime)
            .arg("--root")
            .arg(state_root)
            .args(["delete", "--force", &id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("warning: {runtime} delete --force {id} failed");
        }
    }
}

/// Moves this (single-threaded, helper) process into its own mount namespace and hides the
/// hybrid host's cgroup2 mount there, so crun sees a pure v1 host.
fn enter_private_mount_namespace() -> anyhow::Result<()> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let before = std::fs::read_link("/proc/self/ns/mnt").context("reading /proc/self/ns/mnt")?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .context("unshare(CLONE_NEWNS) for the crun helper")?;
    let after = std::fs::read_link("/proc/self/ns/mnt").context("reading /proc/self/ns/mnt")?;
    if before == after {
        bail!("unshare(CLONE_NEWNS) left the helper in the host's mount namespace; refusing to unmount anything");
    }
    // Slave: the host's mount events still reach us, ours never reach the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .context("making / a recursive slave in the helper's mount namespace")?;
    let unified = Path::new(HYBRID_UNIFIED);
    if isolation::mount::is_mount_point(unified).unwrap_or(false) {
        umount2(unified, MntFlags::MNT_DETACH)
            .with_context(|| format!("unmounting {HYBRID_UNIFIED} in the helper's namespace"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_survives_the_hex_round_trip() {
        assert_eq!(unhex(&hex(b"marker 1\n")), "marker 1\n");
        assert_eq!(unhex(&hex(b"")), "");
    }

    #[test]
    fn the_bundle_binds_the_system_dirs_read_only_and_has_a_network_namespace_only_when_asked() {
        let c = config_json(Path::new("/b/rootfs"), &["/bin/true"], false);
        assert_eq!(c["root"]["readonly"], true);
        let binds: Vec<&serde_json::Value> = c["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["type"] == "bind")
            .collect();
        assert_eq!(binds.len(), BUNDLE_BINDS.len());
        assert!(binds
            .iter()
            .all(|m| m["options"].as_array().unwrap().contains(&json!("ro"))));
        let ns: Vec<&str> = c["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert!(!ns.contains(&"network"));
        assert!(ns.contains(&"pid") && ns.contains(&"mount"));
        let with = config_json(Path::new("/b/rootfs"), &["/bin/true"], true);
        let ns: Vec<&str> = with["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "ipc", "uts", "mount", "cgroup", "network"]);
    }
}
