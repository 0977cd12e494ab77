//! `noded node status`.

use anyhow::{anyhow, bail};
use controlplane::model::{Allocation, Node, NodeListStub};

use super::format::{json, kv, or_none, short, table};
use super::http::ApiClient;
use super::{Exit, Output};

pub async fn status(api: &ApiClient, id: Option<&str>, out: Output) -> anyhow::Result<Exit> {
    let nodes: Vec<NodeListStub> = api
        .get_now(
            "/v1/nodes",
            &id.map(|p| vec![("prefix", p.to_string())])
                .unwrap_or_default(),
        )
        .await
        .map_err(|e| anyhow!("Error querying nodes: {e}"))?;
    let Some(id) = id else {
        if out.json {
            println!("{}", json(&nodes)?);
            return Ok(Exit::Ok);
        }
        if nodes.is_empty() {
            println!("No nodes registered");
            return Ok(Exit::Ok);
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
        for n in &nodes {
            rows.push(vec![
                short(&n.id),
                n.node_pool.clone(),
                n.datacenter.clone(),
                n.name.clone(),
                or_none(&n.node_class),
                n.drain.to_string(),
                n.scheduling_eligibility.clone(),
                n.status.as_str().into(),
            ]);
        }
        print!("{}", table(&rows));
        return Ok(Exit::Ok);
    };
    let node_id = match nodes.len() {
        0 => bail!("No node(s) with prefix or id {id:?} found"),
        1 => nodes[0].id.clone(),
        _ => bail!(
            "Prefix matched multiple nodes: {}",
            nodes
                .iter()
                .map(|n| short(&n.id))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let node: Node = api
        .get_now(&format!("/v1/node/{node_id}"), &[])
        .await
        .map_err(|e| anyhow!("Error querying node: {e}"))?;
    let allocs: Vec<Allocation> = api
        .get_now(&format!("/v1/node/{node_id}/allocations"), &[])
        .await
        .map_err(|e| anyhow!("Error querying node allocations: {e}"))?;
    if out.json {
        println!("{}", json(&node)?);
        return Ok(Exit::Ok);
    }
    let drivers: Vec<String> = node
        .drivers
        .iter()
        .filter(|(_, d)| d.detected && d.healthy)
        .map(|(n, _)| n.clone())
        .collect();
    print!(
        "{}",
        kv(&[
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
        ])
    );
    let r = &node.node_resources;
    let (mut cpu, mut mem) = (0i64, 0i64);
    for a in allocs.iter().filter(|a| a.holds_resources()) {
        let c = a.allocated_resources.comparable();
        cpu += c.cpu_mhz;
        mem += c.memory_mb;
    }
    println!("\nAllocated Resources");
    print!(
        "{}",
        table(&[
            vec!["CPU".into(), "Memory".into()],
            vec![
                format!("{cpu}/{} MHz", r.cpu.cpu_shares),
                format!("{mem} MiB/{} MiB", r.memory.memory_mb)
            ],
        ])
    );
    println!("\nAllocations");
    let mut rows = vec![
        ["ID", "Job ID", "Task Group", "Version", "Desired", "Status"]
            .map(String::from)
            .to_vec(),
    ];
    for a in &allocs {
        rows.push(vec![
            short(&a.id),
            a.job_id.clone(),
            a.task_group.clone(),
            a.job_version().to_string(),
            a.desired_status.as_str().into(),
            a.client_status.as_str().into(),
        ]);
    }
    if allocs.is_empty() {
        println!("No allocations placed");
    } else {
        print!("{}", table(&rows));
    }
    Ok(Exit::Ok)
}
