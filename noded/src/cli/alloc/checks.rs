//! `noded alloc checks [-json] [-verbose] ALLOC`: the latest result of each service check of
//! an allocation, asked of the node that runs it (Nomad's `alloc checks`).

use std::collections::BTreeMap;

use anyhow::anyhow;
use clap::Args;
use serde::Deserialize;

use super::super::format::{kv, timestamp};
use super::super::global::ApiCommand;
use super::super::http::ApiClient;
use super::super::output::OutputArgs;
use super::super::resolve::node_api;
use super::super::Exit;
use super::fetch_alloc;

#[derive(Debug, Args)]
pub struct AllocChecks {
    #[command(flatten)]
    out: OutputArgs,
    /// Show full ids.
    #[arg(long)]
    verbose: bool,
    id: String,
}

/// One check's result, as `/v1/client/allocation/:id/checks` answers it.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CheckStatus {
    #[serde(rename = "ID")]
    pub id: String,
    pub check: String,
    pub group: String,
    pub task: String,
    pub service: String,
    pub status: String,
    pub status_code: u16,
    pub health: String,
    pub mode: String,
    pub timestamp: i64,
    pub output: String,
}

impl ApiCommand for AllocChecks {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let alloc = fetch_alloc(api, &self.id).await?;
        let checks: serde_json::Value = node_api(api, &alloc)
            .await?
            .get_now(&format!("/v1/client/allocation/{}/checks", alloc.id), &[])
            .await
            .map_err(|e| anyhow!("Error querying allocation checks: {e}"))?;
        if self.out.json {
            return self.out.print(&checks, |_| String::new());
        }
        let checks: BTreeMap<String, CheckStatus> = serde_json::from_value(checks)
            .map_err(|e| anyhow!("Error reading allocation checks: {e}"))?;
        print!("{}", render(&checks, self.verbose));
        Ok(Exit::Ok)
    }
}

/// Nomad's layout: a count, then one block of fields per check.
pub fn render(checks: &BTreeMap<String, CheckStatus>, verbose: bool) -> String {
    let mut out = format!("Status of {} Nomad Service Checks\n\n", checks.len());
    for c in checks.values() {
        let id = if verbose {
            c.id.clone()
        } else {
            c.id.chars().take(8).collect()
        };
        let mut pairs = vec![
            ("ID", id),
            ("Name", c.check.clone()),
            ("Group", c.group.clone()),
            (
                "Task",
                if c.task.is_empty() {
                    "(group)".to_string()
                } else {
                    c.task.clone()
                },
            ),
            ("Service", c.service.clone()),
            ("Status", c.status.clone()),
            ("Health", c.health.clone()),
        ];
        if c.status_code > 0 {
            pairs.push(("StatusCode", c.status_code.to_string()));
        }
        pairs.push(("Mode", c.mode.clone()));
        pairs.push((
            "Timestamp",
            timestamp(c.timestamp.saturating_mul(1_000_000_000)),
        ));
        pairs.push(("Output", c.output.clone()));
        out.push_str(&kv(&pairs));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_render_as_nomad_lists_them() {
        let json = serde_json::json!({
            "0a1b2c3d4e5f": {
                "ID": "0a1b2c3d4e5f", "Check": "alive", "Group": "web", "Task": "",
                "Service": "api", "Status": "failure", "StatusCode": 500, "Health": "critical",
                "Mode": "healthiness", "Timestamp": 1700000000, "Output": "HTTP GET ...: 500"
            }
        });
        let checks: BTreeMap<String, CheckStatus> = serde_json::from_value(json).unwrap();
        let text = render(&checks, false);
        assert!(
            text.starts_with("Status of 1 Nomad Service Checks\n\n"),
            "{text}"
        );
        for want in [
            "0a1b2c3d\n",
            "(group)",
            "failure",
            "critical",
            "StatusCode",
            "500",
            "2023-11-14T22:13:20Z",
        ] {
            assert!(text.contains(want), "{want} missing in {text}");
        }
        assert!(render(&checks, true).contains("0a1b2c3d4e5f"));
    }
}
