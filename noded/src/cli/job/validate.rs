//! `noded job validate`: parse and check a jobspec locally, without an agent.

use clap::Args;

use super::super::Exit;
use super::spec::SpecArgs;

#[derive(Debug, Args)]
pub struct JobValidate {
    #[command(flatten)]
    spec: SpecArgs,
}

impl JobValidate {
    pub fn run(self) -> anyhow::Result<Exit> {
        let job = self.spec.load_job()?;
        println!(
            "Job validation successful ({:?}, {} group(s))",
            job.id,
            job.task_groups.len()
        );
        Ok(Exit::Ok)
    }
}
