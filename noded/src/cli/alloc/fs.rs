//! `noded alloc fs [-stat] [-json] ID [PATH]`: list a directory or print a file of the
//! allocation directory.

use std::io::Write;

use anyhow::anyhow;
use clap::Args;
use controlplane::api::AllocFileInfo;

use super::super::format::table;
use super::super::global::ApiCommand;
use super::super::http::ApiClient;
use super::super::output::OutputArgs;
use super::super::Exit;
use super::fetch_alloc;

#[derive(Debug, Args)]
pub struct AllocFs {
    /// Show the file's or directory's details rather than its contents.
    #[arg(long)]
    stat: bool,
    #[command(flatten)]
    out: OutputArgs,
    id: String,
    /// A path inside the allocation directory (default: its root).
    path: Option<String>,
}

impl ApiCommand for AllocFs {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let alloc = fetch_alloc(api, &self.id).await?;
        let path = self.path.clone().unwrap_or_else(|| "/".to_string());
        let query = [("path", path.clone())];
        let info: AllocFileInfo = api
            .get_now(&format!("/v1/client/fs/stat/{}", alloc.id), &query)
            .await
            .map_err(|e| anyhow!("Error reading {path:?}: {e}"))?;
        if self.stat || (!info.is_dir && self.out.json) {
            return self.out.print(&info, |i| render(std::slice::from_ref(i)));
        }
        if info.is_dir {
            let entries: Vec<AllocFileInfo> = api
                .get_now(&format!("/v1/client/fs/ls/{}", alloc.id), &query)
                .await
                .map_err(|e| anyhow!("Error listing {path:?}: {e}"))?;
            return self.out.print(&entries, |e| render(e));
        }
        let response = api
            .stream(&format!("/v1/client/fs/cat/{}", alloc.id), &query)
            .await
            .map_err(|e| anyhow!("Error reading {path:?}: {e}"))?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| anyhow!("Error reading {path:?}: {e}"))?;
        std::io::stdout().write_all(&bytes)?;
        Ok(Exit::Ok)
    }
}

/// `ls -l`-style rows; directories end in `/`.
fn render(entries: &[AllocFileInfo]) -> String {
    let mut rows = vec![["Mode", "Size", "Modified Time", "Name"]
        .map(String::from)
        .to_vec()];
    rows.extend(entries.iter().map(|e| {
        let name = if e.is_dir {
            format!("{}/", e.name)
        } else {
            e.name.clone()
        };
        vec![
            e.file_mode.clone(),
            e.size.to_string(),
            e.mod_time.clone(),
            name,
        ]
    }));
    table(&rows)
}
