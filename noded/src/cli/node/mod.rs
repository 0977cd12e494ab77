//! `noded node ...`: status, drain, eligibility, purge, and `node pool ...`.

mod drain;
mod eligibility;
mod pool;
mod purge;
mod status;

use anyhow::{anyhow, bail};
use clap::Subcommand;
use controlplane::model::NodeListStub;

use super::global::Api;
use super::http::ApiClient;
use super::resolve::resolve;
use super::Exit;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes, or show one.
    Status(Api<status::NodeStatus>),
    /// Toggle a node's drain mode: move its allocations elsewhere and keep new ones off it.
    Drain(Api<drain::NodeDrain>),
    /// Toggle whether new allocations may be placed on a node.
    Eligibility(Api<eligibility::NodeEligibility>),
    /// Remove a node from the servers' state.
    Purge(Api<purge::NodePurge>),
    /// Create, inspect and delete node pools.
    #[command(subcommand)]
    Pool(pool::NodePoolCommand),
}

impl NodeCommand {
    pub async fn run(self) -> anyhow::Result<Exit> {
        match self {
            NodeCommand::Status(c) => c.run().await,
            NodeCommand::Drain(c) => c.run().await,
            NodeCommand::Eligibility(c) => c.run().await,
            NodeCommand::Purge(c) => c.run().await,
            NodeCommand::Pool(c) => c.run().await,
        }
    }
}

/// The id of the node the agent at the address runs (`-self`), from `/v1/agent/self`.
pub(super) async fn self_node_id(api: &ApiClient) -> anyhow::Result<String> {
    let info: serde_json::Value = api
        .get_now("/v1/agent/self", &[])
        .await
        .map_err(|e| anyhow!("Error querying agent info: {e}"))?;
    let id = info["node"]["ID"]
        .as_str()
        .or_else(|| info["stats"]["client"]["node_id"].as_str())
        .unwrap_or("");
    if id.is_empty() {
        bail!("Node ID not found: the agent at this address runs no client (-self needs a client agent)");
    }
    Ok(id.to_string())
}

/// The node a command means: `-self`, or the one an id prefix names.
pub(super) async fn target_node(
    api: &ApiClient,
    self_: bool,
    id: Option<&str>,
) -> anyhow::Result<NodeListStub> {
    match (self_, id) {
        (true, Some(_)) => bail!("-self and a node ID are mutually exclusive; give one"),
        (true, None) => {
            let id = self_node_id(api).await?;
            resolve(api, &id).await
        }
        (false, Some(id)) => resolve(api, id).await,
        (false, None) => bail!("This command takes a node ID, or -self for the local node"),
    }
}
