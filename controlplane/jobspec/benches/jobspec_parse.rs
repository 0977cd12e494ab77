//! Parse time of jobspecs: the largest file of the Nomad corpus (and the whole corpus), HCL
//! and API JSON, reported as median and p99 of many runs. `cargo bench -p controlplane --bench
//! jobspec_parse` (or `cargo xtask bench jobspec_parse`).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // fixtures and the corpus are read from disk

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jobspec::ParseOptions;

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let median = samples[samples.len() / 2];
    let p99 = samples[(samples.len() * 99 / 100).min(samples.len() - 1)];
    (median, p99)
}

fn time(runs: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..runs / 10 {
        f();
    }
    let samples = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    stats(samples)
}

fn main() {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/jobspecs/valid"
    ));
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => {
            eprintln!(
                "jobspec_parse: cannot read the corpus at {}: {e}",
                dir.display()
            );
            std::process::exit(1);
        }
    };
    files.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)));
    let Some(largest) = files
        .iter()
        .find(|p| !p.to_string_lossy().ends_with(".json"))
    else {
        eprintln!("jobspec_parse: no HCL file in the corpus");
        std::process::exit(1);
    };
    let text = std::fs::read_to_string(largest).unwrap_or_default();
    let name = largest
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let opts = ParseOptions::for_file(name.clone());
    let (median, p99) = time(2000, || {
        let _ = jobspec::parse_hcl(&text, &opts);
    });
    println!(
        "parse_hcl {name} ({} bytes): median {median:?}, p99 {p99:?}",
        text.len()
    );
    let (median, p99) = time(2000, || {
        let _ = jobspec::check_hcl(&text, &opts);
    });
    println!("check_hcl (parse + validate + warnings) {name}: median {median:?}, p99 {p99:?}");
    if let Ok(parsed) = jobspec::parse_hcl(&text, &opts) {
        let json = jobspec::to_api_json(&parsed.job).to_string();
        let (median, p99) = time(2000, || {
            let _ = jobspec::parse_api_json(&json, &opts);
        });
        println!(
            "parse_api_json of the same job ({} bytes): median {median:?}, p99 {p99:?}",
            json.len()
        );
    }
    let (median, p99) = time(2000, || {
        let _ = jobspec::format_hcl(&text);
    });
    println!("format_hcl {name}: median {median:?}, p99 {p99:?}");
    let texts: Vec<(String, String)> = files
        .iter()
        .filter_map(|p| {
            Some((
                p.file_name()?.to_string_lossy().to_string(),
                std::fs::read_to_string(p).ok()?,
            ))
        })
        .collect();
    let t = Instant::now();
    for (n, text) in &texts {
        let o = ParseOptions::for_file(n.clone());
        let _ = if n.ends_with(".json") {
            jobspec::parse_api_json(text, &o)
        } else {
            jobspec::parse_hcl(text, &o)
        };
    }
    println!(
        "whole corpus ({} files), one pass: {:?}",
        texts.len(),
        t.elapsed()
    );
}
