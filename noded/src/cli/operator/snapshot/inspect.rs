//! `noded operator snapshot inspect FILE [-json]`: read locally, checksum verified.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Args;
use controlplane::state::archive::{read_archive, Archive};

use super::super::super::format::{kv, table};
use super::super::super::output::OutputArgs;
use super::super::super::Exit;

#[derive(Debug, Args)]
pub struct Inspect {
    /// The snapshot file.
    file: PathBuf,
    #[command(flatten)]
    out: OutputArgs,
}

impl Inspect {
    pub fn run(self) -> anyhow::Result<Exit> {
        let bytes = std::fs::read(&self.file)
            .with_context(|| format!("Error opening snapshot file {}", self.file.display()))?;
        let archive = read_archive(&bytes)
            .map_err(|e| anyhow!("Error verifying snapshot {}: {e}", self.file.display()))?;
        let json = serde_json::json!({
            "Meta": archive.meta,
            "Size": archive.size,
            "Checksum": format!("sha256:{}", archive.checksum),
        });
        self.out.print(&json, |_| render(&archive))
    }
}

fn render(a: &Archive) -> String {
    let m = &a.meta;
    let mut out = kv(&[
        (
            "Created",
            controlplane::model::time::format_rfc3339(m.created),
        ),
        ("ID", m.id.clone()),
        ("Size", a.size.to_string()),
        ("Index", m.index.to_string()),
        ("Term", m.term.to_string()),
        ("Version", m.version.to_string()),
        ("Checksum", format!("sha256:{}", a.checksum)),
    ]);
    out.push('\n');
    let mut rows = vec![vec!["Type".to_string(), "Count".to_string()]];
    for (what, n) in [
        ("Job", m.jobs),
        ("Alloc", m.allocs),
        ("Node", m.nodes),
        ("Eval", m.evals),
    ] {
        rows.push(vec![what.to_string(), n.to_string()]);
    }
    out.push_str(&table(&rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_prints_the_header_and_counts() {
        let bytes = controlplane::state::archive::write_archive(
            &controlplane::state::State::default(),
            2,
            1_000_000_000,
        )
        .unwrap();
        let out = render(&read_archive(&bytes).unwrap());
        assert!(out.contains("ID       = 2-0-1000\n"), "{out}");
        assert!(out.contains("Term     = 2\n"));
        assert!(out.contains("Checksum = sha256:"));
        assert!(out.contains("Job    0\n"), "{out}");
    }
}
