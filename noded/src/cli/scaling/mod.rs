//! `noded scaling policy list|info`: the `scaling` blocks of the jobs, as policies.

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use controlplane::model::ScalingPolicy;

use super::format::{kv, table};
use super::global::{Api, ApiCommand};
use super::http::{urlencode, ApiClient};
use super::output::{json, OutputArgs};
use super::Exit;

#[derive(Debug, Subcommand)]
pub enum ScalingCommand {
    /// List or show scaling policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// List scaling policies.
    List(Api<PolicyList>),
    /// Show one scaling policy.
    Info(Api<PolicyInfo>),
}

impl ScalingCommand {
    pub async fn run(self) -> anyhow::Result<Exit> {
        match self {
            ScalingCommand::Policy(PolicyCommand::List(c)) => c.run().await,
            ScalingCommand::Policy(PolicyCommand::Info(c)) => c.run().await,
        }
    }
}

#[derive(Debug, Args)]
pub struct PolicyList {
    /// Only the policies of this job.
    #[arg(long, default_value = "")]
    job: String,
    /// Only policies of this type (`horizontal`, `vertical_cpu`, `vertical_mem`).
    #[arg(long = "type", default_value = "")]
    policy_type: String,
    /// Show full ids.
    #[arg(long)]
    verbose: bool,
    #[command(flatten)]
    out: OutputArgs,
}

impl ApiCommand for PolicyList {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let mut query = Vec::new();
        if !self.job.is_empty() {
            query.push(("job", self.job.clone()));
        }
        if !self.policy_type.is_empty() {
            query.push(("type", self.policy_type.clone()));
        }
        let policies: Vec<ScalingPolicy> = api
            .get_now("/v1/scaling/policies", &query)
            .await
            .map_err(|e| anyhow!("Error listing scaling policies: {e}"))?;
        let verbose = self.verbose;
        self.out.print(&policies, |policies| {
            if policies.is_empty() {
                return "No policies found\n".to_string();
            }
            let mut rows = vec![["ID", "Enabled", "Type", "Target"]
                .map(String::from)
                .to_vec()];
            rows.extend(policies.iter().map(|p| {
                vec![
                    if verbose {
                        p.id.clone()
                    } else {
                        controlplane::model::short_id(&p.id).to_string()
                    },
                    p.enabled.unwrap_or(false).to_string(),
                    p.policy_type.clone(),
                    target(p),
                ]
            }));
            table(&rows)
        })
    }
}

/// "Namespace:default,Job:web,Group:g", as Nomad lists a target.
fn target(p: &ScalingPolicy) -> String {
    ["Namespace", "Job", "Group", "Task"]
        .iter()
        .filter_map(|k| p.target.get(*k).map(|v| format!("{k}:{v}")))
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Debug, Args)]
pub struct PolicyInfo {
    #[command(flatten)]
    out: OutputArgs,
    /// The policy's ID or a unique prefix of it.
    id: String,
}

impl ApiCommand for PolicyInfo {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let policies: Vec<ScalingPolicy> = api
            .get_now("/v1/scaling/policies", &[])
            .await
            .map_err(|e| anyhow!("Error listing scaling policies: {e}"))?;
        let matches: Vec<&ScalingPolicy> = policies
            .iter()
            .filter(|p| p.id == self.id || p.id.starts_with(&self.id))
            .collect();
        let id = match matches.as_slice() {
            [] => bail!("No scaling policy with ID prefix {:?} found", self.id),
            [one] => one.id.clone(),
            several => match several.iter().find(|p| p.id == self.id) {
                Some(exact) => exact.id.clone(),
                None => bail!(
                    "Prefix {:?} matched multiple policies: {}",
                    self.id,
                    several
                        .iter()
                        .map(|p| p.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        };
        let policy: ScalingPolicy = api
            .get_now(&format!("/v1/scaling/policy/{}", urlencode(&id)), &[])
            .await
            .map_err(|e| anyhow!("Error reading scaling policy: {e}"))?;
        if self.out.json {
            println!("{}", json(&policy)?);
            return Ok(Exit::Ok);
        }
        let bound = |b: Option<i64>| b.map_or_else(|| "<none>".to_string(), |v| v.to_string());
        print!(
            "{}",
            kv(&[
                ("ID", policy.id.clone()),
                ("Enabled", policy.enabled.unwrap_or(false).to_string()),
                ("Target", target(&policy)),
                ("Min", bound(policy.min)),
                ("Max", bound(policy.max)),
            ])
        );
        println!("\nPolicy:\n{}", json(&policy.policy)?);
        Ok(Exit::Ok)
    }
}
