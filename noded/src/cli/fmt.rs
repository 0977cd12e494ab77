//! `noded fmt [-check] FILE...`: canonical formatting of jobspecs.

use std::path::PathBuf;

use clap::Args;

use super::Exit;

#[derive(Debug, Args)]
pub struct FmtArgs {
    /// Only check; exit 1 if a file is not formatted.
    #[arg(long)]
    check: bool,
    files: Vec<PathBuf>,
}

impl FmtArgs {
    pub fn run(self) -> anyhow::Result<Exit> {
        fmt(self.check, &self.files)
    }
}

fn fmt(check: bool, files: &[PathBuf]) -> anyhow::Result<Exit> {
    if files.is_empty() {
        anyhow::bail!("name at least one file to format");
    }
    let mut unformatted = false;
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
        let formatted = controlplane::jobspec::format_hcl(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        if formatted == text {
            continue;
        }
        if check {
            println!("{}", file.display());
            unformatted = true;
        } else {
            std::fs::write(file, formatted)
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", file.display()))?;
            println!("{}", file.display());
        }
    }
    Ok(if unformatted { Exit::Code(1) } else { Exit::Ok })
}
