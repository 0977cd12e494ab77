//! Fuzzer for the jobspec parser and the API JSON decoder, on stable Rust: a structured
//! generator of jobspecs plus a mutation loop over the corpus (`../shared/jobspecs`, the
//! error fixtures and the `job init` example), guided by which outcomes an input reaches.
//! Every input goes through [`check_properties`]; a panic, a violated property or an input
//! taking more than a second stops the run and saves the input under `target/fuzz-jobspec/`.
//!
//! Run by `cargo xtask fuzz jobspec [--runs N] [--seconds S] [--seed X]`.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // fixtures and the corpus are read from disk

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobspec::properties::check_properties;

const SLOW: Duration = Duration::from_secs(1);
const MAX_INPUT: usize = 64 * 1024;

/// A small, fast, seeded generator (xorshift64*), so runs are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "\"",
    "=",
    ",",
    ":",
    "?",
    "...",
    "=>",
    ".",
    "*",
    "[*]",
    "\n",
    " ",
    "${",
    "%{",
    "}",
    "$${",
    "<<EOT\nx\nEOT\n",
    "<<-EOT\n  y\n  EOT\n",
    "#",
    "//",
    "/*",
    "*/",
    "-1",
    "0",
    "1e999",
    "9223372036854775808",
    "3.5",
    "true",
    "null",
    "var.",
    "local.",
    "for",
    "in",
    "if",
    "endif",
    "endfor",
    "dynamic",
    "content",
    "for_each",
    "job",
    "group",
    "task",
    "driver",
    "config",
    "command",
    "args",
    "count",
    "resources",
    "memory",
    "cpu",
    "network",
    "port",
    "service",
    "check",
    "template",
    "meta",
    "env",
    "restart",
    "update",
    "periodic",
    "cron",
    "constraint",
    "affinity",
    "spread",
    "locals",
    "variable",
    "default",
    "type",
    "validation",
    "\"exec\"",
    "\"10s\"",
    "upper(",
    "range(",
    "format(\"%s\",",
    "jsonencode(",
    "try(",
    "can(",
    "\"${attr.kernel.name}\"",
    "\"${NOMAD_PORT_http}\"",
    "{\"Job\":",
    "\"TaskGroups\":",
    "\"Tasks\":",
    "\"Name\":",
    "\"Config\":",
    "\"Count\":",
    "\"KillTimeout\":",
];

const FIELDS: &[(&str, &str)] = &[
    ("count", "3"),
    ("priority", "70"),
    ("type", "\"batch\""),
    ("datacenters", "[\"dc1\", \"dc*\"]"),
    ("kill_timeout", "\"20s\""),
    ("kill_signal", "\"SIGTERM\""),
    ("user", "\"nobody\""),
    ("leader", "true"),
    ("shutdown_delay", "\"5s\""),
    ("max_run_duration", "\"1h\""),
    ("node_pool", "\"prod\""),
    ("region", "\"eu\""),
    ("all_at_once", "false"),
    ("namespace", "var.ns"),
    ("meta", "{ a = \"b\" }"),
];

const BLOCKS: &[&str] = &[
    "restart { attempts = 1\n mode = \"delay\" }", "update { canary = 1\n max_parallel = 2 }",
    "resources { cpu = 200\n memory = 128\n memory_max = 256 }", "logs { max_files = 2 }",
    "constraint { attribute = \"${attr.kernel.name}\"\n value = \"linux\" }", "constraint { distinct_hosts = true }",
    "affinity { attribute = \"${node.datacenter}\"\n value = \"dc1\"\n weight = 50 }",
    "spread { attribute = \"${node.datacenter}\"\n target \"dc1\" { percent = 50 } }",
    "network { port \"http\" { to = 8080 } }", "service { name = \"web\"\n port = \"http\"\n check { type = \"tcp\"\n interval = \"10s\"\n timeout = \"2s\" } }",
    "template { data = \"x\"\n destination = \"local/x\" }", "env { A = \"${NOMAD_ALLOC_ID}\" }",
    "config { command = \"/bin/true\"\n args = [for i in range(3) : tostring(i)] }", "ephemeral_disk { size = 500 }",
    "reschedule { delay = \"30s\"\n unlimited = true }", "periodic { cron = \"*/5 * * * *\" }",
    "dynamic \"meta\" { for_each = [1]\n content { x = \"y\" } }", "lifecycle { hook = \"prestart\" }",
    "vault { role = \"r\" }", "scaling { max = 5 }", "volume \"v\" { type = \"host\"\n source = \"data\" }",
];

/// A random, mostly well-formed jobspec built from the schema's vocabulary.
fn generate(rng: &mut Rng) -> String {
    let mut s = String::new();
    if rng.chance(30) {
        s.push_str("variable \"ns\" { default = \"default\" }\n");
    } else {
        s.push_str("locals { ns = upper(\"x\") }\nvariable \"ns\" {\n  type = string\n  default = local.ns\n}\n");
    }
    s.push_str("job \"fuzz\" {\n");
    for _ in 0..rng.below(4) {
        let (k, v) = FIELDS[rng.below(FIELDS.len())];
        s.push_str(&format!("  {k} = {v}\n"));
    }
    for g in 0..1 + rng.below(3) {
        s.push_str(&format!("  group \"g{g}\" {{\n"));
        for _ in 0..rng.below(3) {
            s.push_str(&format!("    {}\n", BLOCKS[rng.below(BLOCKS.len())]));
        }
        for t in 0..1 + rng.below(2) {
            s.push_str(&format!("    task \"t{t}\" {{\n      driver = \"exec\"\n"));
            for _ in 0..rng.below(5) {
                if rng.chance(50) {
                    let (k, v) = FIELDS[rng.below(FIELDS.len())];
                    s.push_str(&format!("      {k} = {v}\n"));
                } else {
                    s.push_str(&format!("      {}\n", BLOCKS[rng.below(BLOCKS.len())]));
                }
            }
            s.push_str("    }\n");
        }
        s.push_str("  }\n");
    }
    s.push_str("}\n");
    s
}

fn mutate(rng: &mut Rng, input: &[u8], pool: &[Vec<u8>]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                let i = rng.below(len + 1);
                v.splice(i..i, t.iter().copied());
            }
            2 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                v.drain(a..b);
            }
            3 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(256)).min(len);
                let chunk = v[a..b].to_vec();
                let i = rng.below(len + 1);
                v.splice(i..i, chunk);
            }
            4 if !pool.is_empty() => {
                let other = &pool[rng.below(pool.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = (a + 1 + rng.below(512)).min(other.len());
                    let i = rng.below(len + 1);
                    v.splice(i..i, other[a..b].iter().copied());
                }
            }
            5 if len > 0 => v.truncate(rng.below(len)),
            6 => {
                // Nesting bombs and long repeats.
                let t = ["[", "{", "(", "${", "a.", "-", "!"][rng.below(7)];
                let i = rng.below(len + 1);
                let n = 1 + rng.below(200);
                v.splice(i..i, t.repeat(n).into_bytes());
            }
            7 if len > 0 => {
                let i = rng.below(len);
                v[i] = b" \n{}[]\"=$%<>#/*,.:?0a-"[rng.below(22)];
            }
            _ => {
                let i = rng.below(len + 1);
                let n = ["0", "-1", "99999999999999999999", "1.5", "\"\""][rng.below(5)];
                v.splice(i..i, n.bytes());
            }
        }
    }
    v.truncate(MAX_INPUT);
    v
}

/// What an input reached, coarsely: keeps inputs that reach something new in the pool.
fn outcome(input: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let Ok(text) = std::str::from_utf8(input) else {
        return 0;
    };
    let opts = jobspec::ParseOptions::default();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match jobspec::parse_hcl(text, &opts) {
        Ok(p) => {
            "ok".hash(&mut h);
            match jobspec::validate(&p.job) {
                Ok(w) => w.len().hash(&mut h),
                Err(e) => {
                    for err in e.iter() {
                        err.message.split(':').next().hash(&mut h);
                    }
                }
            }
        }
        Err(e) => {
            if let Some(first) = e.iter().next() {
                let m: String = first
                    .message
                    .chars()
                    .filter(|c| c.is_alphabetic() || *c == ' ')
                    .take(40)
                    .collect();
                m.hash(&mut h);
            }
        }
    }
    h.finish()
}

fn seeds(root: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dir in [
        "../../../shared/jobspecs/valid",
        "../../../shared/jobspecs/invalid",
        "tests/fixtures/jobspec/errors",
    ] {
        if let Ok(rd) = std::fs::read_dir(root.join(dir)) {
            let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            for p in paths {
                if let Ok(b) = std::fs::read(&p) {
                    out.push(b);
                }
            }
        }
    }
    out.push(jobspec::example_job().as_bytes().to_vec());
    out
}

struct Args {
    runs: u64,
    seconds: Option<u64>,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        runs: 1_000_000,
        seconds: None,
        seed: 0x5eed,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or(format!("{name} needs a number"))
        };
        match flag.as_str() {
            "--runs" => a.runs = value("--runs")?,
            "--seconds" => a.seconds = Some(value("--seconds")?),
            "--seed" => a.seed = value("--seed")?.max(1),
            other => {
                return Err(format!(
                    "unknown argument {other:?}; use --runs N, --seconds S, --seed X"
                ))
            }
        }
    }
    Ok(a)
}

fn save(dir: &Path, what: &str, input: &[u8]) -> PathBuf {
    let _ = std::fs::create_dir_all(dir);
    let path = dir.join(format!("{what}-{}.input", std::process::id()));
    let _ = std::fs::write(&path, input);
    path
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("jobspec fuzz: {e}");
            std::process::exit(2);
        }
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out_dir = root.join("../../target/fuzz-jobspec");
    let mut pool = seeds(&root);
    eprintln!(
        "jobspec fuzz: {} seeds, seed {:#x}, up to {} runs{}",
        pool.len(),
        args.seed,
        args.runs,
        args.seconds
            .map(|s| format!(" or {s} s"))
            .unwrap_or_default()
    );
    let mut seen: HashSet<u64> = pool.iter().map(|s| outcome(s)).collect();
    let mut rng = Rng(args.seed);

    // A watchdog: an input running longer than SLOW is saved and the run fails.
    let started_ms = Arc::new(AtomicU64::new(u64::MAX));
    let current: Arc<Mutex<Vec<u8>>> = Arc::new(Mutex::new(Vec::new()));
    let epoch = Instant::now();
    {
        let started_ms = Arc::clone(&started_ms);
        let current = Arc::clone(&current);
        let out_dir = out_dir.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100));
            let s = started_ms.load(Ordering::Relaxed);
            if s != u64::MAX && epoch.elapsed().as_millis() as u64 > s + SLOW.as_millis() as u64 {
                let input = current.lock().map(|c| c.clone()).unwrap_or_default();
                let path = save(&out_dir, "slow", &input);
                eprintln!(
                    "jobspec fuzz: FAIL an input took more than {SLOW:?}; saved to {}",
                    path.display()
                );
                std::process::exit(1);
            }
        });
    }
    std::panic::set_hook(Box::new(|_| {}));
    let deadline = args
        .seconds
        .map(|s| Instant::now() + Duration::from_secs(s));
    let t0 = Instant::now();
    let mut runs = 0u64;
    let mut slowest = Duration::ZERO;
    while runs < args.runs && deadline.is_none_or(|d| Instant::now() < d) {
        let input = match rng.below(10) {
            0 => generate(&mut rng).into_bytes(),
            1 => {
                let g = generate(&mut rng);
                mutate(&mut rng, g.as_bytes(), &pool)
            }
            _ => {
                let base = pool[rng.below(pool.len())].clone();
                mutate(&mut rng, &base, &pool)
            }
        };
        if let Ok(mut c) = current.lock() {
            c.clone_from(&input);
        }
        started_ms.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        let one = Instant::now();
        let result = std::panic::catch_unwind(|| check_properties(&input));
        let took = one.elapsed();
        started_ms.store(u64::MAX, Ordering::Relaxed);
        slowest = slowest.max(took);
        match result {
            Ok(Ok(())) => {}
            Ok(Err(violation)) => {
                let path = save(&out_dir, "property", &input);
                eprintln!(
                    "jobspec fuzz: FAIL after {runs} runs: {violation}\ninput saved to {}",
                    path.display()
                );
                std::process::exit(1);
            }
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let path = save(&out_dir, "panic", &input);
                eprintln!(
                    "jobspec fuzz: FAIL panic after {runs} runs: {msg}\ninput saved to {}",
                    path.display()
                );
                std::process::exit(1);
            }
        }
        if rng.chance(5) && pool.len() < 5_000 {
            let o = outcome(&input);
            if seen.insert(o) {
                pool.push(input);
            }
        }
        runs += 1;
        if runs.is_multiple_of(100_000) {
            eprintln!(
                "jobspec fuzz: {runs} runs, {:.0}/s, pool {}",
                runs as f64 / t0.elapsed().as_secs_f64(),
                pool.len()
            );
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "jobspec fuzz: ok: {runs} inputs in {secs:.1} s ({:.0} executions/s), no panic, no property violated, slowest input {:.1} ms, {} distinct outcomes kept",
        runs as f64 / secs,
        slowest.as_secs_f64() * 1000.0,
        seen.len()
    );
}
