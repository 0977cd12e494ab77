//! (a) An allocation's network made and removed: noded's way (the `netns`/`ebpf` crates' API
//! in the order `NetworkManager::setup_bridge` / `teardown` call it) against the C floor
//! (`floor.c`), in alternating blocks in the same host namespace. The isolation set's nft
//! runs are timed apart: they are per allocation in the client, but a process spawn, not a
//! kernel step the floor could do in microseconds.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use netns::nft::Endpoint;
use netns::{Ipam, Mapping, PortMapBackend, Proto};

use crate::stats::{ratio, Samples};
use crate::topo::{in_ns, Topology, HOST_IP};
use crate::{Context, Options, Result};

/// Consecutive allocations of one path before switching to the other.
const BLOCK: usize = 10;
/// Untimed allocations of each path first.
const WARMUP: usize = 5;
/// The allocation port every bench allocation maps (host ports differ per allocation).
const ALLOC_PORT: u16 = 8080;
const FIRST_HOST_PORT: u16 = 30000;

/// What (a) measured.
#[derive(Debug, Default)]
pub struct SetupFigures {
    pub setup: Samples,
    pub teardown: Samples,
    /// noded's setup, step by step.
    pub steps: [Samples; 4],
    pub nft_allow: Samples,
    pub nft_disallow: Samples,
    pub floor_setup: Samples,
    pub floor_teardown: Samples,
}

const STEP_NAMES: [&str; 4] = [
    "lease (Ipam)",
    "namespace::create",
    "veth::attach",
    "insert ×2 (tcp+udp)",
];

impl SetupFigures {
    pub fn ratio(&self) -> f64 {
        ratio(self.setup.p50(), self.floor_setup.p50())
    }

    pub fn print(&self) {
        println!("(a) allocation network: namespace + veth into the bridge + address + routes + port map entries");
        println!("  noded  setup                {}", self.setup);
        for (name, s) in STEP_NAMES.iter().zip(&self.steps) {
            println!("    {name:<26} {s}");
        }
        println!("  noded  teardown             {}", self.teardown);
        println!("  floor  setup (C)            {}", self.floor_setup);
        println!("  floor  teardown (C)         {}", self.floor_teardown);
        println!(
            "  ratios (p50/p50): setup {:.3}, teardown {:.3}",
            self.ratio(),
            ratio(self.teardown.p50(), self.floor_teardown.p50())
        );
        println!("  isolation set, per allocation (nft -j -f -, apart from the above):");
        println!("    Firewall::allow_endpoints    {}", self.nft_allow);
        println!("    Firewall::disallow_endpoints {}", self.nft_disallow);
    }
}

/// One allocation of the run: its names, address and mappings.
struct Alloc {
    ns: String,
    veth: String,
    addr: std::net::Ipv4Addr,
    mappings: Vec<Mapping>,
}

fn alloc(topo: &Topology, ipam: &Ipam, tag: &str, i: usize) -> Result<Alloc> {
    let host_port = u16::try_from(i)
        .ok()
        .and_then(|i| FIRST_HOST_PORT.checked_add(i))
        .ok_or_else(|| format!("allocation {i}: no host port left"))?;
    // As the client: the lowest free address (every earlier allocation was torn down).
    let addr = ipam
        .lease(&BTreeSet::new())
        .ok_or_else(|| "the bench subnet has no address".to_string())?;
    let mappings = [Proto::Tcp, Proto::Udp]
        .into_iter()
        .map(|proto| Mapping {
            proto,
            host_ip: HOST_IP,
            host_port,
            alloc_ip: addr,
            alloc_port: ALLOC_PORT,
        })
        .collect();
    Ok(Alloc {
        ns: topo.alloc_ns(&format!("{tag}{i}")),
        veth: topo.veth(&format!("{tag}{i}")),
        addr,
        mappings,
    })
}

/// noded's setup of one allocation, step by step, as `NetworkManager::setup_bridge` and
/// `make_bridge_objects` do it; runs on a thread of the host namespace.
fn noded_setup(topo: &Topology, ipam: &Ipam, a: &Alloc, steps: &mut [Duration; 4]) -> Result<()> {
    let mut mark = Instant::now();
    let mut lap = |i: usize, steps: &mut [Duration; 4]| {
        let now = Instant::now();
        steps[i] = now - mark;
        mark = now;
    };
    let leased = ipam.lease(&BTreeSet::new());
    if leased != Some(a.addr) {
        return Err(format!("the IPAM leased {leased:?}, expected {}", a.addr));
    }
    lap(0, steps);
    netns::namespace::create(&a.ns).ctx(|| format!("namespace {}", a.ns))?;
    lap(1, steps);
    // As the client: attach refuses an existing link itself (`Exists`), which the client
    // takes as made by an earlier daemon.
    match netns::veth::attach(&topo.bridge, &a.ns, &a.veth, a.addr) {
        Ok(_) | Err(netns::Error::Exists { .. }) => {}
        Err(e) => return Err(e).ctx(|| format!("veth {} into {}", a.veth, topo.bridge.name)),
    }
    lap(2, steps);
    for m in &a.mappings {
        topo.mapper.insert(m).ctx(|| format!("mapping {m}"))?;
    }
    lap(3, steps);
    Ok(())
}

/// noded's teardown (`NetworkManager::teardown`), without the isolation set's update.
fn noded_teardown(topo: &Topology, a: &Alloc) -> Result<()> {
    for m in &a.mappings {
        topo.mapper
            .remove(m)
            .ctx(|| format!("removing mapping {m}"))?;
    }
    netns::veth::detach(&a.veth).ctx(|| format!("removing veth {}", a.veth))?;
    netns::namespace::delete(&a.ns).ctx(|| format!("removing namespace {}", a.ns))
}

/// One full noded allocation: (setup, steps, allow, disallow, teardown).
fn noded_run(topo: &Topology, ipam: &Ipam, i: usize, f: Option<&mut SetupFigures>) -> Result<()> {
    let a = alloc(topo, ipam, "a", i)?;
    let endpoints: Vec<Endpoint> = a.mappings.iter().map(Endpoint::of).collect();
    let mut steps = [Duration::ZERO; 4];
    let started = Instant::now();
    noded_setup(topo, ipam, &a, &mut steps)?;
    let setup = started.elapsed();
    let t = Instant::now();
    topo.firewall
        .allow_endpoints(&endpoints)
        .ctx(|| "opening the mapped ports to other allocations".into())?;
    let allow = t.elapsed();
    // Proof that the allocation was really made: its map entries are in the kernel's map.
    let listed = topo.mapper.list().ctx(|| "listing the port map".into())?;
    if !a.mappings.iter().all(|m| listed.contains(m)) {
        return Err(format!(
            "allocation {i}: the port map lacks its entries after setup"
        ));
    }
    let t = Instant::now();
    noded_teardown(topo, &a)?;
    let teardown_a = t.elapsed();
    let t = Instant::now();
    topo.firewall
        .disallow_endpoints(&endpoints)
        .ctx(|| "closing the mapped ports".into())?;
    let disallow = t.elapsed();
    if netns::namespace::exists(&a.ns) {
        return Err(format!(
            "allocation {i}: namespace {} left after teardown",
            a.ns
        ));
    }
    if let Some(f) = f {
        f.setup.push(setup);
        for (s, d) in f.steps.iter_mut().zip(steps) {
            s.push(d);
        }
        f.nft_allow.push(allow);
        f.nft_disallow.push(disallow);
        f.teardown.push(teardown_a);
    }
    Ok(())
}

/// The C floor behind its pipe; its process is ended (EOF, then kill by pid) on drop.
struct Floor {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    _dir: TempDir,
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const FLOOR_C: &str = include_str!("floor.c");

impl Floor {
    /// Compiles `floor.c` (cc, else clang) into a temp dir and starts it in the host
    /// namespace.
    fn start(topo: &Topology) -> Result<Floor> {
        let dir = TempDir(std::env::temp_dir().join(format!("{}-floor", topo.run_id)));
        std::fs::create_dir_all(&dir.0).ctx(|| format!("creating {}", dir.0.display()))?;
        let src = dir.0.join("floor.c");
        let exe = dir.0.join("netbench-floor");
        std::fs::write(&src, FLOOR_C).ctx(|| format!("writing {}", src.display()))?;
        compile(&src, &exe)?;
        let (bridge, pins) = (topo.bridge.name.clone(), topo.floor_pin_dir.clone());
        // Spawned from a thread of the host namespace: the child starts there.
        let mut child = in_ns(&topo.host_ns, || {
            Command::new(&exe)
                .arg(&bridge)
                .arg(&pins)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .ctx(|| format!("starting {}", exe.display()))
        })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
            return Err("the floor's pipes are missing".into());
        };
        let mut floor = Floor {
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            _dir: dir,
        };
        match floor.read_line()?.as_str() {
            "ready" => Ok(floor),
            other => Err(format!("the floor did not start: {other:?}")),
        }
    }

    fn read_line(&mut self) -> Result<String> {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .ctx(|| "reading from the floor".into())?;
        if line.is_empty() {
            return Err("the floor exited (see its error above)".into());
        }
        Ok(line.trim_end().to_string())
    }

    /// One allocation set up and torn down by the floor: (setup, teardown).
    fn run(
        &mut self,
        topo: &Topology,
        a: &Alloc,
        gateway: std::net::Ipv4Addr,
    ) -> Result<(Duration, Duration)> {
        let m = a
            .mappings
            .first()
            .ok_or_else(|| "an allocation without mappings".to_string())?;
        let request = format!(
            "run {} {} {} {} {gateway} {} {} {}",
            netns::namespace::path(&a.ns).display(),
            a.veth,
            a.addr,
            topo.bridge.subnet.prefix(),
            m.host_ip,
            m.host_port,
            m.alloc_port
        );
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| "the floor's stdin is closed".to_string())?;
        writeln!(stdin, "{request}").ctx(|| "writing to the floor".into())?;
        stdin.flush().ctx(|| "writing to the floor".into())?;
        let answer = self.read_line()?;
        let mut parts = answer.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("ok"), Some(s), Some(t)) => {
                let ns = |v: &str| {
                    v.parse::<f64>()
                        .map(|n| Duration::from_nanos(n as u64))
                        .ctx(|| format!("the floor's answer {answer:?}"))
                };
                Ok((ns(s)?, ns(t)?))
            }
            _ => Err(format!("floor: {answer}")),
        }
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        // EOF: the floor unpins its maps and exits.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("warning: the floor did not exit; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn compile(src: &Path, exe: &Path) -> Result<()> {
    let mut last = String::new();
    for cc in ["cc", "clang"] {
        match Command::new(cc)
            .args(["-O2", "-Wall", "-o"])
            .arg(exe)
            .arg(src)
            .output()
        {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => {
                return Err(format!(
                    "compiling the floor with {cc} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
            Err(e) => last = format!("{cc}: {e}"),
        }
    }
    Err(format!(
        "no C compiler to build the floor ({last}); install gcc or clang (cargo xtask deps)"
    ))
}

/// Runs (a): warm-up, then `allocs` allocations of each path in alternating blocks.
pub fn measure(topo: &Topology, o: &Options) -> Result<SetupFigures> {
    eprintln!(
        "==> (a) setup/teardown: {} allocations each, noded and the C floor, blocks of {BLOCK}",
        o.allocs
    );
    let ipam = Ipam::new(topo.bridge.subnet, topo.bridge.gateway);
    let mut floor = Floor::start(topo)?;
    let mut figures = SetupFigures::default();
    let gateway = topo.bridge.gateway;
    // The noded path runs on one thread of the host namespace (the client calls it from a
    // blocking thread of the agent's); the floor is a process started there.
    in_ns(&topo.host_ns, || {
        let mut floor_run = |i: usize, f: Option<&mut SetupFigures>| -> Result<()> {
            let a = alloc(topo, &ipam, "f", i)?;
            let (s, t) = floor.run(topo, &a, gateway)?;
            if netns::namespace::exists(&a.ns) {
                return Err(format!("floor allocation {i}: namespace {} left", a.ns));
            }
            if let Some(f) = f {
                f.floor_setup.push(s);
                f.floor_teardown.push(t);
            }
            Ok(())
        };
        for i in 0..WARMUP {
            noded_run(topo, &ipam, i, None)?;
            floor_run(i, None)?;
        }
        let mut done = 0;
        while done < o.allocs {
            let n = BLOCK.min(o.allocs - done);
            for i in done..done + n {
                noded_run(topo, &ipam, WARMUP + i, Some(&mut figures))?;
            }
            for i in done..done + n {
                floor_run(WARMUP + i, Some(&mut figures))?;
            }
            done += n;
        }
        Ok(())
    })?;
    Ok(figures)
}
