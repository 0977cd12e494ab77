//! `noded operator autopilot health [-json]`.

use anyhow::anyhow;
use clap::Args;
use controlplane::server::autopilot::OperatorHealthReply;
use reqwest::StatusCode;

use super::super::super::format::table;
use super::super::super::global::ApiCommand;
use super::super::super::http::{ApiCallError, ApiClient};
use super::super::super::output::OutputArgs;
use super::super::super::Exit;

#[derive(Debug, Args)]
pub struct Health {
    #[command(flatten)]
    out: OutputArgs,
}

impl ApiCommand for Health {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        // The agent answers 429 with the same body when the region is unhealthy.
        let reply: OperatorHealthReply =
            match api.get_now("/v1/operator/autopilot/health", &[]).await {
                Ok(r) => r,
                Err(ApiCallError::Status { status, message })
                    if status == StatusCode::TOO_MANY_REQUESTS =>
                {
                    serde_json::from_str(&message)
                        .map_err(|e| anyhow!("Error querying Autopilot health: {e}"))?
                }
                Err(e) => return Err(anyhow!("Error querying Autopilot health: {e}")),
            };
        self.out.print(&reply, render)
    }
}

fn render(r: &OperatorHealthReply) -> String {
    let mut out = format!(
        "Healthy: {}\nFailureTolerance: {}\nLeader: {}\nVoters:\n",
        r.healthy, r.failure_tolerance, r.leader
    );
    for v in &r.voters {
        out.push_str(&format!("\t{v}\n"));
    }
    out.push_str("Servers:\n");
    let mut rows = vec![[
        "ID",
        "Name",
        "Address",
        "SerfStatus",
        "Version",
        "Leader",
        "Voter",
        "Healthy",
        "LastContact",
        "LastTerm",
        "LastIndex",
        "StableSince",
    ]
    .map(String::from)
    .to_vec()];
    for s in &r.servers {
        rows.push(vec![
            s.id.clone(),
            s.name.clone(),
            s.address.clone(),
            s.serf_status.clone(),
            s.version.clone(),
            s.leader.to_string(),
            s.voter.to_string(),
            s.healthy.to_string(),
            s.last_contact.clone(),
            s.last_term.to_string(),
            s.last_index.to_string(),
            s.stable_since.clone(),
        ]);
    }
    out.push_str(&table(&rows));
    out
}
