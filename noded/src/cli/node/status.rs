//! `noded node status [-json] [ID]`: every node, or one node with its resources and
//! allocations.

use anyhow::anyhow;
use clap::Args;
use controlplane::model::{Allocation, Node, NodeListStub};

use super::super::format::{kv, or_none, short, table};
use super::super::global::ApiCommand;
use super::super::http::ApiClient;
use super::super::output::OutputArgs;
use super::super::resolve::resolve;
use super::super::Exit;

#[derive(Debug, Args)]
pub struct NodeStatus {
    #[command(flatten)]
    out: OutputArgs,
    /// A node's ID or a unique prefix of it; all nodes when left out.
    id: Option<String>,
}

impl ApiCommand for NodeStatus {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let Some(id) = &self.id else {
            let nodes: Vec<NodeListStub> = api
                .get_now("/v1/nodes", &[])
                .await
                .map_err(|e| anyhow!("Error querying nodes: {e}"))?;
            return self.out.print(&nodes, |n| render_list(n));
        };
        let stub: NodeListStub = resolve(api, id).await?;
        let node: Node = api
            .get_now(&format!("/v1/node/{}", stub.id), &[])
            .await
            .map_err(|e| anyhow!("Error querying node: {e}"))?;
        if self.out.json {
            return self.out.print(&node, |_| String::new());
        }
        let allocs: Vec<Allocation> = api
            .get_now(&format!("/v1/node/{}/allocations", stub.id), &[])
            .await
            .map_err(|e| anyhow!("Error querying node allocations: {e}"))?;
        print!("{}", render_node(&node, &allocs));
        Ok(Exit::Ok)
    }
}

fn render_list(nodes: &[NodeListStub]) -> String {
    if nodes.is_empty() {
        return "No nodes registered\n".to_string();
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
}

fn render_node(node: &Node, allocs: &[Allocation]) -> String {
    let drivers: Vec<String> = node
        .drivers
        .iter()
        .filter(|(_, d)| d.detected && d.healthy)
        .map(|(n, _)| n.clone())
        .collect();
    let mut out = kv(&[
        ("ID", node.id.clone()),
        ("Name", node.name.clone()),
        ("Node Pool", node.node_pool.clone()),
        ("Class", or_none(&node.node_class)),
        ("DC", node.datacenter.clone()),
        ("Drain", node.drain.to_string()),
        ("Eligibility", node.scheduling_eligibility.clone()),
        ("Status", node.status.as_str().into()),
        ("CSI Controllers", "<none>".into()),
        ("Drivers", drivers.join(",")),
    ]);
    let r = &node.node_resources;
    let (mut cpu, mut mem) = (0i64, 0i64);
    for a in allocs.iter().filter(|a| a.holds_resources()) {
        let c = a.allocated_resources.comparable();
        cpu += c.cpu_mhz;
        mem += c.memory_mb;
    }
    out.push_str("\nAllocated Resources\n");
    out.push_str(&table(&[
        vec!["CPU".into(), "Memory".into()],
        vec![
            format!("{cpu}/{} MHz", r.cpu.cpu_shares),
            format!("{mem} MiB/{} MiB", r.memory.memory_mb),
        ],
    ]));
    out.push_str("\nAllocations\n");
    if allocs.is_empty() {
        out.push_str("No allocations placed\n");
        return out;
    }
    let mut rows = vec![
        ["ID", "Job ID", "Task Group", "Version", "Desired", "Status"]
            .map(String::from)
            .to_vec(),
    ];
    rows.extend(allocs.iter().map(|a| {
        vec![
            short(&a.id),
            a.job_id.clone(),
            a.task_group.clone(),
            a.job_version().to_string(),
            a.desired_status.as_str().into(),
            a.client_status.as_str().into(),
        ]
    }));
    out.push_str(&table(&rows));
    out
}
