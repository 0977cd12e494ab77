//! `noded node drain -enable|-disable [-deadline D] [-force] [-no-deadline] [-ignore-system]
//! [-keep-ineligible] [-monitor|-detach] [-m MESSAGE] [-meta k=v] [-self] [-yes] NODE`.
//!
//! Without `-detach`, enabling a drain follows it (as `-monitor` does) until the node's last
//! drain is complete or canceled: allocations as they are marked for migration and stop.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::Args;
use controlplane::model::duration::parse_go;
use controlplane::model::{drain_status, now_unix_nanos, time::format_rfc3339, Allocation, Node};
use controlplane::server::NodeDrainUpdateResponse;

use super::super::format::short;
use super::super::global::ApiCommand;
use super::super::http::ApiClient;
use super::super::Exit;
use super::target_node;

/// Nomad's default drain deadline.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(3600);
/// How long one blocking query of the monitor waits.
const MONITOR_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub struct NodeDrain {
    /// Enable draining on the node.
    #[arg(long)]
    enable: bool,
    /// Disable draining on the node.
    #[arg(long)]
    disable: bool,
    /// How long allocations may take to migrate before they are stopped (Go duration).
    #[arg(long)]
    deadline: Option<String>,
    /// Stop every allocation now, without waiting for migrations (deadline -1ns).
    #[arg(long)]
    force: bool,
    /// Wait as long as migrations take (no deadline).
    #[arg(long = "no-deadline")]
    no_deadline: bool,
    /// Leave system jobs' allocations on the node.
    #[arg(long = "ignore-system")]
    ignore_system: bool,
    /// With -disable: leave the node ineligible for new placements.
    #[arg(long = "keep-ineligible")]
    keep_ineligible: bool,
    /// Follow the drain until it ends (also without -enable/-disable).
    #[arg(long)]
    monitor: bool,
    /// Return at once after changing the drain.
    #[arg(long)]
    detach: bool,
    /// A message kept with the drain (its "message" meta).
    #[arg(short = 'm')]
    message: Option<String>,
    /// Metadata kept with the drain, `key=value` (repeatable).
    #[arg(long)]
    meta: Vec<String>,
    /// The node of the agent at -address.
    #[arg(long = "self")]
    self_: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    /// A node's ID or a unique prefix of it.
    id: Option<String>,
}

/// The request body this invocation sends, or why the flags do not make one.
#[derive(Debug, PartialEq)]
struct DrainPlan {
    /// Deadline in nanoseconds when enabling; `None` when disabling.
    deadline_ns: Option<i64>,
    body: serde_json::Value,
}

impl NodeDrain {
    fn plan(&self, node_id: &str) -> anyhow::Result<DrainPlan> {
        if self.enable == self.disable {
            bail!("Either the -enable or the -disable flag must be set, unless only -monitor is given");
        }
        if self.monitor && self.detach {
            bail!("-monitor and -detach are mutually exclusive");
        }
        if self.keep_ineligible && !self.disable {
            bail!("-keep-ineligible only applies with -disable");
        }
        let deadlines = [self.deadline.is_some(), self.force, self.no_deadline]
            .iter()
            .filter(|b| **b)
            .count();
        if deadlines > 1 {
            bail!("only one of -deadline, -force and -no-deadline may be given");
        }
        let mut meta: BTreeMap<String, String> = BTreeMap::new();
        for pair in &self.meta {
            let Some((k, v)) = pair.split_once('=') else {
                bail!("-meta {pair:?} is not key=value");
            };
            meta.insert(k.to_string(), v.to_string());
        }
        if let Some(message) = &self.message {
            meta.insert("message".into(), message.clone());
        }
        if self.disable {
            return Ok(DrainPlan {
                deadline_ns: None,
                body: serde_json::json!({
                    "NodeID": node_id,
                    "DrainSpec": null,
                    "MarkEligible": !self.keep_ineligible,
                    "Meta": meta,
                }),
            });
        }
        let deadline_ns: i64 = if self.force {
            -1
        } else if self.no_deadline {
            0
        } else {
            let d = match &self.deadline {
                Some(text) => parse_go(text).map_err(|e| anyhow!("-deadline: {e}"))?,
                None => DEFAULT_DEADLINE,
            };
            i64::try_from(d.as_nanos()).map_err(|_| anyhow!("-deadline is too long"))?
        };
        Ok(DrainPlan {
            deadline_ns: Some(deadline_ns),
            body: serde_json::json!({
                "NodeID": node_id,
                "DrainSpec": { "Deadline": deadline_ns, "IgnoreSystemJobs": self.ignore_system },
                "MarkEligible": false,
                "Meta": meta,
            }),
        })
    }
}

impl ApiCommand for NodeDrain {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let node = target_node(api, self.self_, self.id.as_deref()).await?;
        if self.monitor && !self.enable && !self.disable {
            monitor(api, &node.id, 0).await?;
            return Ok(Exit::Ok);
        }
        let plan = self.plan(&node.id)?;
        if !self.yes && std::io::stdin().is_terminal() {
            let verb = if self.enable { "enable" } else { "disable" };
            print!(
                "Are you sure you want to {verb} drain mode for node {:?}? [y/N] ",
                node.id
            );
            std::io::stdout().flush()?;
            let mut answer = String::new();
            std::io::stdin().lock().read_line(&mut answer)?;
            if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
                println!("Canceling drain toggle");
                return Ok(Exit::Code(1));
            }
        }
        let response: NodeDrainUpdateResponse = api
            .put(&format!("/v1/node/{}/drain", node.id), &plan.body)
            .await
            .map_err(|e| anyhow!("Error updating drain specification: {e}"))?;
        if plan.deadline_ns.is_none() {
            println!("Node {:?} drain strategy unset", node.id);
            return Ok(Exit::Ok);
        }
        println!("Node {:?} drain strategy set", node.id);
        if self.detach {
            return Ok(Exit::Ok);
        }
        monitor(api, &node.id, response.index).await?;
        Ok(Exit::Ok)
    }
}

fn stamp(text: &str) -> String {
    format!(
        "{}: {text}",
        format_rfc3339(now_unix_nanos() - now_unix_nanos().rem_euclid(1_000_000_000))
    )
}

/// Follows a node's drain until its last drain is complete or canceled, printing what
/// happens to its allocations.
async fn monitor(api: &ApiClient, node_id: &str, from_index: u64) -> anyhow::Result<()> {
    println!(
        "{}",
        stamp("Ctrl-C to stop monitoring: will not cancel the node drain")
    );
    let mut seen: HashMap<String, (bool, String)> = HashMap::new();
    let mut alloc_index = from_index.saturating_sub(1);
    let mut reported_marked = false;
    loop {
        let node: Node = api
            .get_now(&format!("/v1/node/{node_id}"), &[])
            .await
            .map_err(|e| anyhow!("Error monitoring node: {e}"))?;
        let allocs = api
            .get::<Vec<Allocation>>(
                &format!("/v1/node/{node_id}/allocations"),
                &[],
                alloc_index.max(1),
                MONITOR_WAIT,
            )
            .await
            .map_err(|e| anyhow!("Error monitoring allocations: {e}"))?;
        alloc_index = allocs.index;
        for line in alloc_changes(&allocs.value, &mut seen) {
            println!("{}", stamp(&line));
        }
        let live: Vec<&Allocation> = allocs.value.iter().filter(|a| !a.is_terminal()).collect();
        if !reported_marked
            && !live.is_empty()
            && live.iter().all(|a| a.desired_transition.should_migrate())
        {
            reported_marked = true;
            println!(
                "{}",
                stamp(&format!(
                    "Node {node_id:?} has marked all allocations for migration"
                ))
            );
        }
        match node.last_drain.as_ref().map(|d| d.status.as_str()) {
            Some(drain_status::COMPLETE) => {
                if live.is_empty() {
                    println!(
                        "{}",
                        stamp(&format!("All allocations on node {node_id:?} have stopped"))
                    );
                }
                println!("{}", stamp(&format!("Drain complete for node {node_id}")));
                return Ok(());
            }
            Some(drain_status::CANCELED) => {
                println!("{}", stamp(&format!("Drain canceled for node {node_id}")));
                return Ok(());
            }
            _ if node.drain_strategy.is_none() => {
                println!(
                    "{}",
                    stamp(&format!("No drain strategy set for node {node_id}"))
                );
                return Ok(());
            }
            _ => {}
        }
    }
}

/// What changed since the last look: an allocation marked for migration, or whose client
/// status moved.
fn alloc_changes(allocs: &[Allocation], seen: &mut HashMap<String, (bool, String)>) -> Vec<String> {
    let mut lines = Vec::new();
    for alloc in allocs {
        let migrating = alloc.desired_transition.should_migrate();
        let status = alloc.client_status.as_str().to_string();
        let id = short(&alloc.id);
        match seen.get(&alloc.id) {
            None => {
                if migrating && !alloc.is_terminal() {
                    lines.push(format!("Alloc {id:?} marked for migration"));
                }
            }
            Some((was_migrating, was_status)) => {
                if migrating && !was_migrating {
                    lines.push(format!("Alloc {id:?} marked for migration"));
                }
                if *was_status != status {
                    lines.push(format!("Alloc {id:?} status {was_status} -> {status}"));
                }
            }
        }
        seen.insert(alloc.id.clone(), (migrating, status));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        drain: NodeDrain,
    }

    fn parse(args: &[&str]) -> NodeDrain {
        let mut all = vec!["drain".to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        Wrap::try_parse_from(crate::cli::normalize_args(all))
            .unwrap()
            .drain
    }

    #[test]
    fn flags_make_nomads_drain_request() {
        let p = parse(&["-enable", "n1"]).plan("n1").unwrap();
        assert_eq!(p.deadline_ns, Some(3_600_000_000_000));
        assert_eq!(p.body["DrainSpec"]["Deadline"], 3_600_000_000_000i64);
        let p = parse(&[
            "-enable",
            "-deadline",
            "5m",
            "-ignore-system",
            "-m",
            "kernel",
            "-meta",
            "ticket=42",
            "n1",
        ])
        .plan("n1")
        .unwrap();
        assert_eq!(p.body["DrainSpec"]["Deadline"], 300_000_000_000i64);
        assert_eq!(p.body["DrainSpec"]["IgnoreSystemJobs"], true);
        assert_eq!(p.body["Meta"]["message"], "kernel");
        assert_eq!(p.body["Meta"]["ticket"], "42");
        assert_eq!(
            parse(&["-enable", "-force", "n"])
                .plan("n")
                .unwrap()
                .deadline_ns,
            Some(-1)
        );
        assert_eq!(
            parse(&["-enable", "-no-deadline", "n"])
                .plan("n")
                .unwrap()
                .deadline_ns,
            Some(0)
        );
        let p = parse(&["-disable", "n"]).plan("n").unwrap();
        assert!(p.body["DrainSpec"].is_null());
        assert_eq!(p.body["MarkEligible"], true);
        let p = parse(&["-disable", "-keep-ineligible", "n"])
            .plan("n")
            .unwrap();
        assert_eq!(p.body["MarkEligible"], false);
    }

    #[test]
    fn contradictory_flags_are_refused() {
        for args in [
            &["n"][..],
            &["-enable", "-disable", "n"],
            &["-enable", "-force", "-no-deadline", "n"],
            &["-enable", "-keep-ineligible", "n"],
            &["-enable", "-monitor", "-detach", "n"],
            &["-enable", "-deadline", "soon", "n"],
            &["-enable", "-meta", "novalue", "n"],
        ] {
            assert!(parse(args).plan("n").is_err(), "{args:?}");
        }
    }

    #[test]
    fn the_monitor_reports_migrations_and_status_changes() {
        let mut alloc = Allocation {
            id: "abcdef12-0000".into(),
            ..Default::default()
        };
        let mut seen = HashMap::new();
        assert!(alloc_changes(std::slice::from_ref(&alloc), &mut seen).is_empty());
        alloc.desired_transition.migrate = Some(true);
        assert_eq!(
            alloc_changes(std::slice::from_ref(&alloc), &mut seen),
            vec!["Alloc \"abcdef12\" marked for migration"]
        );
        alloc.client_status = controlplane::model::ClientStatus::Complete;
        assert_eq!(
            alloc_changes(std::slice::from_ref(&alloc), &mut seen),
            vec!["Alloc \"abcdef12\" status pending -> complete"]
        );
    }
}
