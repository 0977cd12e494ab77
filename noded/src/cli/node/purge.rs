//! `noded node purge [-force] NODE`.

use anyhow::anyhow;
use clap::Args;
use controlplane::server::NodeUpdateResponse;

use super::super::global::ApiCommand;
use super::super::http::ApiClient;
use super::super::resolve::resolve;
use super::super::Exit;

#[derive(Debug, Args)]
pub struct NodePurge {
    /// Purge even while allocations on the node have not finished: they are marked lost and
    /// replaced elsewhere (noded's; Nomad always purges).
    #[arg(long)]
    force: bool,
    /// A node's ID or a unique prefix of it.
    id: String,
}

impl ApiCommand for NodePurge {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let node: controlplane::model::NodeListStub = resolve(api, &self.id).await?;
        let query = if self.force {
            vec![("force", "true".to_string())]
        } else {
            Vec::new()
        };
        let response: NodeUpdateResponse = api
            .put_query::<(), _>(&format!("/v1/node/{}/purge", node.id), &query, None)
            .await
            .map_err(|e| anyhow!("Error purging node: {e}"))?;
        println!("Purged node {:?}", node.id);
        for id in &response.eval_ids {
            println!("Evaluation ID: {id}");
        }
        Ok(Exit::Ok)
    }
}
