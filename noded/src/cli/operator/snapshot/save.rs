//! `noded operator snapshot save FILE`: written atomically (a temporary file beside it,
//! then renamed), and only after the archive checked out.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Args;
use controlplane::state::archive::read_archive;

use super::super::super::global::ApiCommand;
use super::super::super::http::ApiClient;
use super::super::super::Exit;
use super::PATH;

#[derive(Debug, Args)]
pub struct Save {
    /// Let a server without a leader answer.
    #[arg(long)]
    stale: bool,
    /// Where to write the snapshot.
    file: PathBuf,
}

impl ApiCommand for Save {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let query = if self.stale {
            vec![("stale", "true".to_string())]
        } else {
            Vec::new()
        };
        let response = api
            .stream(PATH, &query)
            .await
            .map_err(|e| anyhow!("Failed to get snapshot file: {e}"))?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| anyhow!("Failed to get snapshot file: {e}"))?;
        read_archive(&bytes).map_err(|e| anyhow!("The agent sent a bad snapshot: {e}"))?;
        write_atomically(&self.file, &bytes)?;
        println!("State file written to {}", self.file.display());
        Ok(Exit::Ok)
    }
}

/// A temporary file in the same directory, synced, then renamed over `path`: a crash leaves
/// the old file or the new one, never half of one.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing the snapshot beside {}", path.display()))?;
    tmp.persist(path).map_err(|e| {
        anyhow!(
            "moving the snapshot into place at {}: {}",
            path.display(),
            e.error
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup.snap");
        std::fs::write(&path, b"old").unwrap();
        write_atomically(&path, b"new contents").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new contents");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
        assert!(write_atomically(&dir.path().join("missing/dir/x"), b"x").is_err());
    }
}
