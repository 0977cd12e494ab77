//! `noded node eligibility -enable|-disable [-self] NODE`.

use anyhow::{anyhow, bail};
use clap::Args;
use controlplane::server::NodeUpdateResponse;

use super::super::global::ApiCommand;
use super::super::http::ApiClient;
use super::super::Exit;
use super::target_node;

#[derive(Debug, Args)]
pub struct NodeEligibility {
    /// Mark the node eligible for new allocations.
    #[arg(long)]
    enable: bool,
    /// Mark the node ineligible: what runs there stays, nothing new is placed.
    #[arg(long)]
    disable: bool,
    /// The node of the agent at -address.
    #[arg(long = "self")]
    self_: bool,
    /// A node's ID or a unique prefix of it.
    id: Option<String>,
}

impl NodeEligibility {
    fn wanted(&self) -> anyhow::Result<&'static str> {
        match (self.enable, self.disable) {
            (true, false) => Ok("eligible"),
            (false, true) => Ok("ineligible"),
            _ => bail!("Either the -enable or the -disable flag must be set, not both"),
        }
    }
}

impl ApiCommand for NodeEligibility {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let wanted = self.wanted()?;
        let node = target_node(api, self.self_, self.id.as_deref()).await?;
        let _: NodeUpdateResponse = api
            .put(
                &format!("/v1/node/{}/eligibility", node.id),
                &serde_json::json!({ "NodeID": node.id, "Eligibility": wanted }),
            )
            .await
            .map_err(|e| anyhow!("Error updating scheduling eligibility: {e}"))?;
        println!(
            "Node {:?} scheduling eligibility set: {wanted} for scheduling",
            node.id
        );
        Ok(Exit::Ok)
    }
}
