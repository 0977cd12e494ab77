//! `noded node status [-self] [-allocs] [-verbose] [-json] [ID]`: every node, or one node
//! with its drain, events, resources and allocations (Nomad's layout).

use anyhow::anyhow;
use clap::Args;
use controlplane::model::{Allocation, Node, NodeListStub};

use super::super::format::{kv, or_none, short, table};
use super::super::global::ApiCommand;
use super::super::http::ApiClient;
use super::super::output::OutputArgs;
use super::super::Exit;
use super::target_node;

#[derive(Debug, Args)]
pub struct NodeStatus {
    #[command(flatten)]
    out: OutputArgs,
    /// The node of the agent at -address.
    #[arg(long = "self")]
    self_: bool,
    /// In the list: a column with each node's running allocations.
    #[arg(long)]
    allocs: bool,
    /// Full ids, and the node's attributes and meta.
    #[arg(long)]
    verbose: bool,
    /// A node's ID or a unique prefix of it; all nodes when left out.
    id: Option<String>,
}

impl ApiCommand for NodeStatus {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        if self.id.is_none() && !self.self_ {
            let nodes: Vec<NodeListStub> = api
                .get_now("/v1/nodes", &[])
                .await
                .map_err(|e| anyhow!("Error querying nodes: {e}"))?;
            if self.out.json {
                return self.out.print(&nodes, |_| String::new());
            }
            let mut running = Vec::new();
            if self.allocs {
                for n in &nodes {
                    let allocs: Vec<Allocation> = api
                        .get_now(&format!("/v1/node/{}/allocations", n.id), &[])
                        .await
                        .map_err(|e| anyhow!("Error querying node allocations: {e}"))?;
                    running.push(
                        allocs
                            .iter()
                            .filter(|a| a.client_status.as_str() == "running")
                            .count(),
                    );
                }
            }
            print!(
                "{}",
                render_list(&nodes, self.allocs.then_some(&running[..]), self.verbose)
            );
            return Ok(Exit::Ok);
        }
        let stub: NodeListStub = target_node(api, self.self_, self.id.as_deref()).await?;
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
        print!("{}", render_node(&node, &allocs, self.verbose));
        Ok(Exit::Ok)
    }
}

fn render_list(nodes: &[NodeListStub], running: Option<&[usize]>, verbose: bool) -> String {
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
    if running.is_some() {
        rows[0].push("Running Allocs".into());
    }
    rows.extend(nodes.iter().enumerate().map(|(i, n)| {
        let mut row = vec![
            if verbose { n.id.clone() } else { short(&n.id) },
            n.node_pool.clone(),
            n.datacenter.clone(),
            n.name.clone(),
            or_none(&n.node_class),
            n.drain.to_string(),
            n.scheduling_eligibility.clone(),
            n.status.as_str().into(),
        ];
        if let Some(running) = running {
            row.push(running.get(i).copied().unwrap_or(0).to_string());
        }
        row
    }));
    table(&rows)
}

/// Nomad's drain cell: `false`, or `true` with the deadline.
fn drain_text(node: &Node) -> String {
    match &node.drain_strategy {
        None => node.drain.to_string(),
        Some(s) if s.deadline < 0 => "true; force drain".into(),
        Some(s) if s.force_deadline.is_empty() => "true; no deadline".into(),
        Some(s) => format!("true; {} deadline", s.force_deadline),
    }
}

fn render_node(node: &Node, allocs: &[Allocation], verbose: bool) -> String {
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
        ("Drain", drain_text(node)),
        ("Eligibility", node.scheduling_eligibility.clone()),
        ("Status", node.status.as_str().into()),
        ("CSI Controllers", "<none>".into()),
        ("Host Volumes", {
            let v: Vec<&str> = node.host_volumes.keys().map(String::as_str).collect();
            if v.is_empty() {
                "<none>".into()
            } else {
                v.join(",")
            }
        }),
        ("Drivers", drivers.join(",")),
    ]);
    if let Some(last) = &node.last_drain {
        out.push_str("\nLast Drain\n");
        out.push_str(&kv(&[
            ("Status", last.status.clone()),
            ("Started At", last.started_at.clone()),
            ("Updated At", last.updated_at.clone()),
        ]));
    }
    out.push_str("\nNode Events\n");
    let mut events = vec![["Time", "Subsystem", "Message"].map(String::from).to_vec()];
    events.extend(
        node.events
            .iter()
            .rev()
            .map(|e| vec![e.timestamp.clone(), e.subsystem.clone(), e.message.clone()]),
    );
    out.push_str(&table(&events));
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
    } else {
        let mut rows = vec![
            ["ID", "Job ID", "Task Group", "Version", "Desired", "Status"]
                .map(String::from)
                .to_vec(),
        ];
        rows.extend(allocs.iter().map(|a| {
            vec![
                if verbose { a.id.clone() } else { short(&a.id) },
                a.job_id.clone(),
                a.task_group.clone(),
                a.job_version().to_string(),
                a.desired_status.as_str().into(),
                a.client_status.as_str().into(),
            ]
        }));
        out.push_str(&table(&rows));
    }
    if verbose {
        out.push_str("\nAttributes\n");
        let attrs: Vec<(&str, String)> = node
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        out.push_str(&kv(&attrs));
        out.push_str("\nMeta\n");
        let meta: Vec<(&str, String)> = node
            .meta
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        out.push_str(&kv(&meta));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use controlplane::model::{DrainMetadata, DrainStrategy, NodeEvent};

    #[test]
    fn the_detail_view_shows_drain_events_and_with_verbose_attributes() {
        let mut node = Node {
            id: "1f3a0000-0000-4000-8000-000000000000".into(),
            name: "n1".into(),
            drain: true,
            drain_strategy: Some(DrainStrategy {
                deadline: 3_600_000_000_000,
                force_deadline: "2024-05-01T13:00:00Z".into(),
                ..Default::default()
            }),
            last_drain: Some(DrainMetadata {
                status: "draining".into(),
                ..Default::default()
            }),
            events: vec![
                NodeEvent::new("Cluster", "Node registered", 1_714_564_800_000_000_000),
                NodeEvent::new(
                    "Drain",
                    "Node drain strategy set",
                    1_714_564_900_000_000_000,
                ),
            ],
            ..Default::default()
        };
        node.attributes.insert("os.name".into(), "debian".into());
        let out = render_node(&node, &[], false);
        assert!(
            out.contains("Drain           = true; 2024-05-01T13:00:00Z deadline"),
            "{out}"
        );
        assert!(out.contains("Node Events"), "{out}");
        let set = out.find("Node drain strategy set").unwrap();
        let registered = out.find("Node registered").unwrap();
        assert!(set < registered, "newest event first:\n{out}");
        assert!(out.contains("No allocations placed"));
        assert!(!out.contains("os.name"));
        assert!(render_node(&node, &[], true).contains("os.name = debian"));
        node.drain_strategy.as_mut().unwrap().deadline = -1;
        assert_eq!(drain_text(&node), "true; force drain");
    }
}
