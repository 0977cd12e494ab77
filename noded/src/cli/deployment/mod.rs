//! `noded deployment list|status|promote|fail|pause|resume|unblock`, Nomad's deployment
//! block (ID, Job ID, Job Version, Status, Description, then the "Deployed" table), and the
//! deployment monitor `deployment status -monitor` and `job run` use.

mod list;
pub mod monitor;
mod status;
mod write;

use clap::Subcommand;
use controlplane::model::time::parse_rfc3339;
use controlplane::model::{Deployment, DeploymentState};

use super::format::{kv, short, table, timestamp};
use super::global::Api;
use super::Exit;

pub use write::JobPromote;

#[derive(Debug, Subcommand)]
pub enum DeploymentCommand {
    /// List deployments.
    List(Api<list::DeploymentList>),
    /// Show one deployment, and follow it with -monitor.
    Status(Api<status::DeploymentStatusCmd>),
    /// Promote a deployment's canaries (all groups, or those named with -group).
    Promote(Api<write::DeploymentPromote>),
    /// Fail a deployment (reverting the job when its groups auto_revert).
    Fail(Api<write::DeploymentFail>),
    /// Pause a deployment.
    Pause(Api<write::DeploymentPause>),
    /// Resume a paused deployment.
    Resume(Api<write::DeploymentResume>),
    /// Unblock a multiregion deployment.
    Unblock(Api<write::DeploymentUnblock>),
}

impl DeploymentCommand {
    pub async fn run(self) -> anyhow::Result<Exit> {
        match self {
            DeploymentCommand::List(c) => c.run().await,
            DeploymentCommand::Status(c) => c.run().await,
            DeploymentCommand::Promote(c) => c.run().await,
            DeploymentCommand::Fail(c) => c.run().await,
            DeploymentCommand::Pause(c) => c.run().await,
            DeploymentCommand::Resume(c) => c.run().await,
            DeploymentCommand::Unblock(c) => c.run().await,
        }
    }
}

fn limit(id: &str, verbose: bool) -> String {
    if verbose {
        id.to_string()
    } else {
        short(id)
    }
}

/// Nomad's deployment listing (`formatDeployments`).
pub fn render_list(deployments: &[Deployment], verbose: bool) -> String {
    if deployments.is_empty() {
        return "No deployments found\n".to_string();
    }
    let mut rows = vec![["ID", "Job ID", "Job Version", "Status", "Description"]
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()];
    for d in deployments {
        rows.push(vec![
            limit(&d.id, verbose),
            d.job_id.clone(),
            d.job_version.to_string(),
            d.status.clone(),
            d.status_description.clone(),
        ]);
    }
    table(&rows)
}

/// Nomad's deployment block (`formatDeployment`).
pub fn render(d: &Deployment, verbose: bool) -> String {
    let mut out = kv(&[
        ("ID", limit(&d.id, verbose)),
        ("Job ID", d.job_id.clone()),
        ("Job Version", d.job_version.to_string()),
        ("Status", d.status.clone()),
        ("Description", d.status_description.clone()),
    ]);
    if !d.task_groups.is_empty() {
        out.push_str("\nDeployed\n");
        out.push_str(&render_groups(d));
    }
    out
}

/// Nomad's "Deployed" table (`formatDeploymentGroups`): Auto Revert, Promoted, Canaries and
/// Progress Deadline only when some group has them.
pub fn render_groups(d: &Deployment) -> String {
    let groups: Vec<(&String, &DeploymentState)> = d.task_groups.iter().collect();
    let auto_revert = groups.iter().any(|(_, g)| g.auto_revert);
    let canaries = groups.iter().any(|(_, g)| g.desired_canaries > 0);
    let deadline = groups.iter().any(|(_, g)| !g.progress_deadline.is_zero());
    let mut header = vec!["Task Group"];
    if auto_revert {
        header.push("Auto Revert");
    }
    if canaries {
        header.push("Promoted");
    }
    header.push("Desired");
    if canaries {
        header.push("Canaries");
    }
    header.extend(["Placed", "Healthy", "Unhealthy"]);
    if deadline {
        header.push("Progress Deadline");
    }
    let mut rows = vec![header.iter().map(|c| c.to_string()).collect::<Vec<_>>()];
    for (name, g) in groups {
        let mut row = vec![name.clone()];
        if auto_revert {
            row.push(g.auto_revert.to_string());
        }
        if canaries {
            row.push(if g.desired_canaries > 0 {
                g.promoted.to_string()
            } else {
                "N/A".to_string()
            });
        }
        row.push(g.desired_total.to_string());
        if canaries {
            row.push(g.desired_canaries.to_string());
        }
        row.push(g.placed_allocs.to_string());
        row.push(g.healthy_allocs.to_string());
        row.push(g.unhealthy_allocs.to_string());
        if deadline {
            row.push(
                parse_rfc3339(&g.require_progress_by)
                    .filter(|t| *t > 0)
                    .map(timestamp)
                    .unwrap_or_else(|| "N/A".to_string()),
            );
        }
        rows.push(row);
    }
    table(&rows)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::monitor::{outcome, EXIT_DEPLOYMENT_FAILED};
    use super::*;

    #[test]
    fn the_deployed_table_has_nomads_columns_only_where_they_apply() {
        let mut d = Deployment {
            id: "0123456789abcdef".into(),
            job_id: "web".into(),
            job_version: 3,
            status: "running".into(),
            status_description: "Deployment is running".into(),
            ..Default::default()
        };
        d.task_groups.insert(
            "web".into(),
            DeploymentState {
                desired_total: 3,
                placed_allocs: 2,
                healthy_allocs: 1,
                ..Default::default()
            },
        );
        let out = render(&d, false);
        assert!(
            out.starts_with("ID          = 01234567\nJob ID      = web\nJob Version = 3\n"),
            "{out}"
        );
        assert!(out.contains("\nDeployed\nTask Group  Desired  Placed  Healthy  Unhealthy\nweb         3        2       1        0\n"), "{out}");

        d.task_groups.insert(
            "api".into(),
            DeploymentState {
                auto_revert: true,
                desired_canaries: 1,
                desired_total: 2,
                progress_deadline: Duration::from_secs(600),
                require_progress_by: "2026-01-02T03:04:05Z".into(),
                ..Default::default()
            },
        );
        let out = render_groups(&d);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>().join(" "),
            "Task Group Auto Revert Promoted Desired Canaries Placed Healthy Unhealthy Progress Deadline"
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "api",
                "true",
                "false",
                "2",
                "1",
                "0",
                "0",
                "0",
                "2026-01-02T03:04:05Z"
            ]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["web", "false", "N/A", "3", "0", "2", "1", "0", "N/A"]
        );
    }

    #[test]
    fn only_success_exits_zero() {
        let d = |s: &str| Deployment {
            status: s.into(),
            ..Default::default()
        };
        assert_eq!(outcome(&d("successful")), Some(Exit::Ok));
        assert_eq!(
            outcome(&d("failed")),
            Some(Exit::Code(EXIT_DEPLOYMENT_FAILED))
        );
        assert_eq!(outcome(&d("running")), None);
        assert_eq!(outcome(&d("paused")), None);
        assert_eq!(render_list(&[], false), "No deployments found\n");
    }
}
