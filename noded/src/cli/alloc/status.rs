//! `noded alloc status [-stats] ID`: an allocation, its tasks and their events.

use std::fmt::Write;

use anyhow::anyhow;
use clap::Args;
use controlplane::model::{Allocation, Resources, TaskGroup, TaskState};
use serde_json::Value;

use super::super::format::{ago, kv, or_none, short, table, timestamp};
use super::super::global::ApiCommand;
use super::super::http::ApiClient;
use super::super::output::OutputArgs;
use super::super::resolve::node_api;
use super::super::Exit;
use super::fetch_alloc;

#[derive(Debug, Args)]
pub struct AllocStatus {
    #[command(flatten)]
    out: OutputArgs,
    /// Include resource usage.
    #[arg(long)]
    stats: bool,
    id: String,
}

impl ApiCommand for AllocStatus {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let alloc = fetch_alloc(api, &self.id).await?;
        let usage = if self.stats {
            stats(api, &alloc).await
        } else {
            None
        };
        if self.out.json {
            let mut v = serde_json::to_value(&alloc)?;
            if let Some(u) = usage {
                v["Stats"] = u;
            }
            return self.out.print(&v, |_| String::new());
        }
        print!("{}", render(&alloc, usage.as_ref()));
        Ok(Exit::Ok)
    }
}

/// The allocation's resource usage, or `None` (said on stderr) when the node cannot tell.
/// Asked of the node that runs the allocation.
async fn stats(api: &ApiClient, alloc: &Allocation) -> Option<Value> {
    let node = match node_api(api, alloc).await {
        Ok(node) => node,
        Err(e) => {
            eprintln!("Couldn't retrieve stats: {e}");
            return None;
        }
    };
    match node
        .get_now::<Value>(&format!("/v1/client/allocation/{}/stats", alloc.id), &[])
        .await
    {
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!("Couldn't retrieve stats: {}", anyhow!(e));
            None
        }
    }
}

fn render(alloc: &Allocation, usage: Option<&Value>) -> String {
    let mut out = kv(&[
        ("ID", alloc.id.clone()),
        ("Eval ID", short(&alloc.eval_id)),
        ("Name", alloc.name.clone()),
        ("Node ID", short(&alloc.node_id)),
        ("Node Name", alloc.node_name.clone()),
        ("Job ID", alloc.job_id.clone()),
        ("Job Version", alloc.job_version().to_string()),
        ("Client Status", alloc.client_status.as_str().into()),
        ("Client Description", or_none(&alloc.client_description)),
        ("Desired Status", alloc.desired_status.as_str().into()),
        ("Desired Description", or_none(&alloc.desired_description)),
        ("Created", ago(alloc.create_time)),
        ("Modified", ago(alloc.modify_time)),
    ]);
    if let Some(addresses) = render_addresses(alloc) {
        out.push('\n');
        out.push_str(&addresses);
    }
    let group: Option<&TaskGroup> = alloc.job.as_ref().and_then(|j| j.group(&alloc.task_group));
    let mut names: Vec<&String> = alloc.task_states.keys().collect();
    if let (true, Some(g)) = (names.is_empty(), group) {
        let _ = writeln!(
            out,
            "\nNo task has reported yet ({} task(s) in group {:?})",
            g.tasks.len(),
            g.name
        );
    }
    names.sort();
    for name in names {
        let resources = group
            .and_then(|g| g.task(name))
            .and_then(|t| t.resources.clone())
            .unwrap_or_default();
        let task_usage = usage
            .and_then(|u| u["Tasks"].get(name.as_str()))
            .map(|t| &t["ResourceUsage"]);
        out.push_str(&render_task(
            name,
            &alloc.task_states[name],
            &resources,
            task_usage,
        ));
    }
    out
}

/// Nomad's "Allocation Addresses" table: every port of the group network with its host
/// address and, when mapped, the port inside the allocation; the network's mode in the title.
/// `None` when the group network has no ports.
fn render_addresses(alloc: &Allocation) -> Option<String> {
    let shared = &alloc.allocated_resources.shared;
    let network = shared.networks.first()?;
    let row = |label: String, value: i64, to: i64, ip: &str| {
        let mut address = format!("{ip}:{value}");
        if to > 0 {
            address.push_str(&format!(" -> {to}"));
        }
        // Nomad says "yes" for static ports too; kept, so scripts read the same.
        vec![label, "yes".to_string(), address]
    };
    let mut rows = vec![vec![
        "Label".to_string(),
        "Dynamic".to_string(),
        "Address".to_string(),
    ]];
    if shared.ports.is_empty() {
        for p in network.dynamic_ports.iter().chain(&network.reserved_ports) {
            rows.push(row(p.label.clone(), p.value, p.to, &network.ip));
        }
    } else {
        for p in &shared.ports {
            rows.push(row(format!("*{}", p.label), p.value, p.to, &p.host_ip));
        }
    }
    if rows.len() == 1 {
        return None;
    }
    let mode = if network.mode.is_empty() {
        String::new()
    } else {
        format!(" (mode = {:?})", network.mode)
    };
    Some(format!("Allocation Addresses{mode}:\n{}", table(&rows)))
}

fn render_task(name: &str, state: &TaskState, res: &Resources, usage: Option<&Value>) -> String {
    let mut out = format!(
        "\nTask \"{name}\" is \"{}\"\nTask Resources:\n",
        state.state.as_str()
    );
    let (cpu, mem) = match usage {
        Some(u) => (
            format!("{:.0}/{} MHz", f64_at(u, "CpuStats", "TotalTicks"), res.cpu),
            format!("{}/{} MiB", mib(u, "RSS"), res.memory_mb),
        ),
        None => (format!("{} MHz", res.cpu), format!("{} MiB", res.memory_mb)),
    };
    out.push_str(&table(&[
        vec!["CPU".into(), "Memory".into()],
        vec![cpu, mem],
    ]));
    if let Some(u) = usage {
        out.push_str(&render_usage(u));
    }
    out.push_str("\nTask Events:\n");
    out.push_str(&kv(&[
        ("Started At", task_time(&state.started_at)),
        ("Finished At", task_time(&state.finished_at)),
        ("Total Restarts", state.restarts.to_string()),
        ("Last Restart", task_time(&state.last_restart)),
    ]));
    out.push_str("\nRecent Events:\n");
    let mut rows = vec![["Time", "Type", "Description"].map(String::from).to_vec()];
    rows.extend(state.events.iter().rev().map(|e| {
        vec![
            timestamp(e.time),
            e.event_type.clone(),
            e.display_message.clone(),
        ]
    }));
    out.push_str(&table(&rows));
    out
}

/// Memory and CPU tables from a task's `ResourceUsage`.
fn render_usage(u: &Value) -> String {
    let mut out = String::from("\nMemory Stats\n");
    out.push_str(&table(&[
        ["Cache", "RSS", "Usage", "Max Usage"]
            .map(String::from)
            .to_vec(),
        ["Cache", "RSS", "Usage", "MaxUsage"]
            .map(|field| format!("{} MiB", mib(u, field)))
            .to_vec(),
    ]));
    out.push_str("\nCPU Stats\n");
    let cpu = &u["CpuStats"];
    out.push_str(&table(&[
        [
            "Percent",
            "System Mode",
            "User Mode",
            "Throttled Periods",
            "Throttled Time",
        ]
        .map(String::from)
        .to_vec(),
        vec![
            format!("{:.2}%", f64_at(u, "CpuStats", "Percent")),
            format!("{:.0} ms", f64_at(u, "CpuStats", "SystemMode")),
            format!("{:.0} ms", f64_at(u, "CpuStats", "UserMode")),
            cpu["ThrottledPeriods"].to_string(),
            cpu["ThrottledTime"].to_string(),
        ],
    ]));
    out
}

fn f64_at(u: &Value, group: &str, field: &str) -> f64 {
    u[group][field].as_f64().unwrap_or(0.0)
}

/// A `MemoryStats` field in MiB with one decimal.
fn mib(u: &Value, field: &str) -> String {
    let bytes = u["MemoryStats"][field].as_u64().unwrap_or(0);
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

fn task_time(t: &Option<String>) -> String {
    t.as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| s.to_string())
        .unwrap_or_else(|| "N/A".to_string())
}

#[cfg(test)]
mod address_tests {
    use super::*;
    use controlplane::model::{AllocatedPortMapping, NetworkResource};

    #[test]
    fn allocation_addresses_as_nomad_prints_them() {
        let mut alloc = Allocation::default();
        assert_eq!(render_addresses(&alloc), None);
        alloc.allocated_resources.shared.networks = vec![NetworkResource {
            mode: "bridge".into(),
            ip: "10.0.0.5".into(),
            ..Default::default()
        }];
        assert_eq!(render_addresses(&alloc), None, "no ports, no table");
        alloc.allocated_resources.shared.ports = vec![
            AllocatedPortMapping {
                label: "http".into(),
                value: 23456,
                to: 8080,
                host_ip: "10.0.0.5".into(),
                ignore_collision: false,
            },
            AllocatedPortMapping {
                label: "metrics".into(),
                value: 9100,
                to: 0,
                host_ip: "10.0.0.5".into(),
                ignore_collision: false,
            },
        ];
        let text = render_addresses(&alloc).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        assert_eq!(lines[0], "Allocation Addresses (mode = \"bridge\"):");
        assert!(
            lines[1].starts_with("Label")
                && lines[1].contains("Dynamic")
                && lines[1].ends_with("Address")
        );
        assert!(
            lines[2].starts_with("*http") && lines[2].ends_with("10.0.0.5:23456 -> 8080"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("*metrics") && lines[3].ends_with("10.0.0.5:9100"),
            "{text}"
        );
        assert!(render(&alloc, None).contains("\nAllocation Addresses (mode = \"bridge\"):\n"));
    }
}
