//! `noded eval delete`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{anyhow, bail};
use clap::Args;
use controlplane::model::Evaluation;

use super::super::global::ApiCommand;
use super::super::http::ApiClient;
use super::super::resolve::resolve;
use super::super::Exit;

#[derive(Debug, Args)]
pub struct EvalDelete {
    /// Delete the evaluations matching this filter expression instead of one id.
    #[arg(long)]
    filter: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    /// The evaluation (id or unique prefix).
    eval_id: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Deleted {
    count: u64,
}

impl ApiCommand for EvalDelete {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let body = match (&self.eval_id, &self.filter) {
            (Some(_), Some(_)) => {
                bail!("Error validating command args: evaluation ID or filter flag, not both")
            }
            (None, None) => {
                bail!("Error validating command args: evaluation ID or filter flag required")
            }
            (Some(prefix), None) => {
                let eval: Evaluation = resolve(api, prefix).await?;
                serde_json::json!({ "EvalIDs": [eval.id] })
            }
            (None, Some(filter)) => {
                let count: serde_json::Value = api
                    .get_now("/v1/evaluations/count", &[("filter", filter.clone())])
                    .await
                    .map_err(|e| anyhow!("Error querying evaluations: {e}"))?;
                let n = count["Count"].as_u64().unwrap_or(0);
                if n == 0 {
                    println!("No evaluations match the filter; nothing deleted");
                    return Ok(Exit::Ok);
                }
                if !self.yes && !confirm(n)? {
                    println!("Cancelling eval deletion");
                    return Ok(Exit::Ok);
                }
                serde_json::json!({ "Filter": filter })
            }
        };
        let deleted: Deleted = api
            .delete_json("/v1/evaluations", &body)
            .await
            .map_err(|e| anyhow!("Error deleting evaluations: {e}"))?;
        let noun = if deleted.count == 1 {
            "evaluation"
        } else {
            "evaluations"
        };
        println!("Successfully deleted {} {noun}", deleted.count);
        Ok(Exit::Ok)
    }
}

/// Asks before deleting many; without a terminal to ask on, `-yes` is required.
fn confirm(n: u64) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "Are you sure you want to delete {n} evaluations? Not a terminal to ask on: pass -yes"
        );
    }
    print!("Are you sure you want to delete {n} evaluations? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES"))
}
