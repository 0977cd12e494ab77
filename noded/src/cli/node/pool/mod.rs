//! `noded node pool ...`: create, inspect and delete node pools.

mod apply;
mod delete;
mod info;
mod jobs;
mod list;
mod nodes;

use clap::Subcommand;
use controlplane::model::NodePool;

use super::super::format::{kv, or_none, table};
use super::super::global::Api;
use super::super::http::urlencode;
use super::super::Exit;

#[derive(Debug, Subcommand)]
pub enum NodePoolCommand {
    /// Create or update a node pool from a specification file (HCL, or JSON with -json).
    Apply(Api<apply::NodePoolApply>),
    /// Delete a node pool (it must have no nodes and no unfinished jobs).
    Delete(Api<delete::NodePoolDelete>),
    /// Show one node pool.
    Info(Api<info::NodePoolInfo>),
    /// List node pools.
    List(Api<list::NodePoolList>),
    /// List the nodes of a node pool.
    Nodes(Api<nodes::NodePoolNodes>),
    /// List the jobs that ask for a node pool.
    Jobs(Api<jobs::NodePoolJobs>),
}

impl NodePoolCommand {
    pub async fn run(self) -> anyhow::Result<Exit> {
        match self {
            NodePoolCommand::Apply(c) => c.run().await,
            NodePoolCommand::Delete(c) => c.run().await,
            NodePoolCommand::Info(c) => c.run().await,
            NodePoolCommand::List(c) => c.run().await,
            NodePoolCommand::Nodes(c) => c.run().await,
            NodePoolCommand::Jobs(c) => c.run().await,
        }
    }
}

fn pool_path(name: &str) -> String {
    format!("/v1/node/pool/{}", urlencode(name))
}

fn render_pool(pool: &NodePool) -> String {
    let mut out = kv(&[
        ("Name", pool.name.clone()),
        ("Description", or_none(&pool.description)),
    ]);
    if !pool.meta.is_empty() {
        out.push_str("\nMetadata\n");
        let meta: Vec<(&str, String)> = pool
            .meta
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        out.push_str(&kv(&meta));
    }
    if let Some(config) = &pool.scheduler_configuration {
        out.push_str("\nScheduler Configuration\n");
        out.push_str(&kv(&[
            ("Scheduler Algorithm", or_none(&config.scheduler_algorithm)),
            (
                "Memory Oversubscription Enabled",
                config
                    .memory_oversubscription_enabled
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "<none>".into()),
            ),
        ]));
    }
    out
}

fn render_pools(pools: &[NodePool]) -> String {
    if pools.is_empty() {
        return "No node pools found\n".into();
    }
    let mut rows = vec![vec!["Name".to_string(), "Description".to_string()]];
    rows.extend(
        pools
            .iter()
            .map(|p| vec![p.name.clone(), or_none(&p.description)]),
    );
    table(&rows)
}
