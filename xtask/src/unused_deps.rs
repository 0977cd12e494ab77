//! `cargo xtask unused-deps`: dependencies a workspace crate declares and never names.
//!
//! What `cargo machete` does, without installing it on every fresh CI machine: for each
//! workspace package, every dependency (normal, dev, build) must be named somewhere in the
//! package's Rust files as `name::`, `use name` or `extern crate name` (its library name, as
//! `cargo metadata` resolves renames and `-` → `_`). A dependency needed only for linking or
//! for its features is listed, with the reason, under `[package.metadata.cargo-machete]
//! ignored = [...]`: the same key machete reads, so either tool agrees.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// A workspace package: where it lives and the crate names of what it depends on.
struct Package {
    name: String,
    dir: PathBuf,
    deps: BTreeSet<String>,
    ignored: BTreeSet<String>,
}

pub fn run(args: &[String]) -> Result<()> {
    if !args.is_empty() {
        bail!("usage: cargo xtask unused-deps");
    }
    let packages = packages()?;
    let package_dirs: Vec<PathBuf> = packages.iter().map(|p| p.dir.clone()).collect();
    let mut unused: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for package in &packages {
        let text = sources_of(&package.dir, &package_dirs)?;
        for dep in &package.deps {
            if !package.ignored.contains(dep) && !names(&text, dep) {
                unused
                    .entry(package.name.clone())
                    .or_default()
                    .push(dep.clone());
            }
        }
    }
    if unused.is_empty() {
        eprintln!("==> every declared dependency is used");
        return Ok(());
    }
    for (package, deps) in &unused {
        eprintln!("{package}: declares {} and never uses it", deps.join(", "));
    }
    bail!("unused dependencies: remove them from the Cargo.toml, or list one needed only for linking under [package.metadata.cargo-machete] ignored, saying why")
}

fn packages() -> Result<Vec<Package>> {
    let meta = super::metadata()?;
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let nodes = meta["resolve"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for package in meta["packages"].as_array().into_iter().flatten() {
        let id = package["id"].as_str().unwrap_or_default();
        if !members.contains(id) {
            continue;
        }
        let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
        let deps = nodes
            .iter()
            .find(|n| n["id"].as_str() == Some(id))
            .and_then(|n| n["deps"].as_array())
            .map(|deps| {
                deps.iter()
                    .filter_map(|d| d["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let ignored = package["metadata"]["cargo-machete"]["ignored"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(|s| s.replace('-', "_")))
                    .collect()
            })
            .unwrap_or_default();
        out.push(Package {
            name: package["name"].as_str().unwrap_or_default().to_string(),
            dir: manifest.parent().map(Path::to_path_buf).unwrap_or_default(),
            deps,
            ignored,
        });
    }
    Ok(out)
}

/// The text of every `.rs` file of the package in `dir`, leaving out packages nested inside it.
fn sources_of(dir: &Path, package_dirs: &[PathBuf]) -> Result<String> {
    let mut text = String::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in
            std::fs::read_dir(&current).with_context(|| format!("listing {}", current.display()))?
        {
            let path = entry?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if path.is_dir() {
                let nested = package_dirs.iter().any(|d| d == &path);
                if !nested && name != "target" && !name.starts_with('.') {
                    pending.push(path);
                }
            } else if name.ends_with(".rs") {
                text.push_str(
                    &std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?,
                );
                text.push('\n');
            }
        }
    }
    Ok(text)
}

/// Whether `text` names the crate `name` (`name::`, `use name`, `extern crate name`).
fn names(text: &str, name: &str) -> bool {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text[from..].find(name) {
        let start = from + at;
        let end = start + name.len();
        from = end;
        let before_ok = start == 0 || !is_ident(bytes[start - 1]) && bytes[start - 1] != b':';
        let after_ok = end >= bytes.len() || !is_ident(bytes[end]);
        if !before_ok || !after_ok {
            continue;
        }
        let rest = text[end..].trim_start();
        let prefix = text[..start].trim_end();
        if rest.starts_with("::")
            || prefix.ends_with("use")
            || prefix.ends_with("extern crate")
            || (prefix.ends_with("use {") || prefix.ends_with(','))
                && rest.starts_with([',', '}', ';'])
        {
            return true;
        }
    }
    false
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crate_is_named_by_a_path_a_use_or_extern_crate() {
        assert!(names("let x = serde_json::to_string(&y);", "serde_json"));
        assert!(names("use tokio_uring;", "tokio_uring"));
        assert!(names("extern crate libc;", "libc"));
        assert!(names("#[derive(thiserror::Error)]", "thiserror"));
        assert!(!names("let serde_json_thing = 1;", "serde_json"));
        assert!(!names("crate::model::Job", "model"));
        assert!(!names("// uses regex for this", "regex"));
        assert!(!names("my_regex::x()", "regex"));
    }
}
