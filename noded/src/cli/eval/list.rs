//! `noded eval list`.

use anyhow::anyhow;
use clap::Args;
use controlplane::model::Evaluation;

use super::super::global::ApiCommand;
use super::super::http::ApiClient;
use super::super::output::OutputArgs;
use super::super::Exit;

#[derive(Debug, Args)]
pub struct EvalList {
    /// Show full ids.
    #[arg(long)]
    verbose: bool,
    #[command(flatten)]
    out: OutputArgs,
    /// Only evaluations matching this filter expression (`Status == "blocked"`).
    #[arg(long)]
    filter: Option<String>,
    /// Only evaluations of this job.
    #[arg(long)]
    job: Option<String>,
    /// Only evaluations with this status (pending, blocked, complete, failed, canceled).
    #[arg(long)]
    status: Option<String>,
    /// At most this many per page.
    #[arg(long = "per-page")]
    per_page: Option<u32>,
    /// The page to start at (from the previous page's output).
    #[arg(long = "page-token")]
    page_token: Option<String>,
}

impl ApiCommand for EvalList {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let mut query: Vec<(&str, String)> = Vec::new();
        for (name, value) in [
            ("filter", self.filter.clone()),
            ("job", self.job.clone()),
            ("status", self.status.clone()),
            ("next_token", self.page_token.clone()),
            ("per_page", self.per_page.map(|n| n.to_string())),
        ] {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                query.push((name, v));
            }
        }
        let (evals, next) = api
            .get_page::<Vec<Evaluation>>("/v1/evaluations", &query)
            .await
            .map_err(|e| anyhow!("Error querying evaluations: {e}"))?;
        if self.out.json {
            return self.out.print(&evals, |_| String::new());
        }
        if evals.is_empty() {
            println!("No evals found");
            return Ok(Exit::Ok);
        }
        print!("{}", super::eval_table(&evals, self.verbose));
        if let Some(next) = next {
            println!(
                "\nResults have been paginated. To get the next page run:\n\nnoded eval list -page-token {next}"
            );
        }
        Ok(Exit::Ok)
    }
}
