//! `noded node pool nodes [-json] NAME`.

use anyhow::anyhow;
use clap::Args;
use controlplane::model::NodeListStub;

use super::super::super::format::{or_none, short, table};
use super::super::super::global::ApiCommand;
use super::super::super::http::ApiClient;
use super::super::super::output::OutputArgs;
use super::super::super::Exit;
use super::pool_path;

#[derive(Debug, Args)]
pub struct NodePoolNodes {
    #[command(flatten)]
    out: OutputArgs,
    /// The node pool's name.
    name: String,
}

impl ApiCommand for NodePoolNodes {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let nodes: Vec<NodeListStub> = api
            .get_now(&format!("{}/nodes", pool_path(&self.name)), &[])
            .await
            .map_err(|e| anyhow!("Error listing node pool nodes: {e}"))?;
        self.out.print(&nodes, |nodes| {
            if nodes.is_empty() {
                return format!("No nodes in node pool {:?}\n", self.name);
            }
            let mut rows = vec![[
                "ID",
                "Node Pool",
                "DC",
                "Name",
                "Class",
                "Drain",
                "Eligibility",
                "Status",
            ]
            .map(String::from)
            .to_vec()];
            rows.extend(nodes.iter().map(|n| {
                vec![
                    short(&n.id),
                    n.node_pool.clone(),
                    n.datacenter.clone(),
                    n.name.clone(),
                    or_none(&n.node_class),
                    n.drain.to_string(),
                    n.scheduling_eligibility.clone(),
                    n.status.as_str().into(),
                ]
            }));
            table(&rows)
        })
    }
}
