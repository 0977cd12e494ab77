//! `noded job tag apply [-name N] [-description D] [-version V] JOB` and
//! `noded job tag unset -name N JOB`: name a version of a job, so that it is never pruned and
//! can be reverted to (and compared with) by name.

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use controlplane::server::JobTagResponse;

use super::super::global::{Api, ApiCommand};
use super::super::http::{urlencode, ApiClient};
use super::super::Exit;
use super::fetch_job;

#[derive(Debug, Subcommand)]
pub enum TagCommand {
    /// Tag a version of a job (the current one unless -version is given).
    Apply(Api<TagApply>),
    /// Remove a tag from a version of a job.
    Unset(Api<TagUnset>),
}

impl TagCommand {
    pub async fn run(self) -> anyhow::Result<Exit> {
        match self {
            TagCommand::Apply(c) => c.run().await,
            TagCommand::Unset(c) => c.run().await,
        }
    }
}

#[derive(Debug, Args)]
pub struct TagApply {
    /// The tag's name, unique among the job's versions (required).
    #[arg(long)]
    name: Option<String>,
    /// What the version is, for whoever reverts to it.
    #[arg(long, default_value = "")]
    description: String,
    /// The version to tag; the current one when left out.
    #[arg(long)]
    version: Option<u64>,
    /// The job (id or unique prefix).
    job: String,
}

#[derive(Debug, Args)]
pub struct TagUnset {
    /// The name of the tag to remove (required).
    #[arg(long)]
    name: Option<String>,
    /// The job (id or unique prefix).
    job: String,
}

/// Nomad's words when `-name` is missing.
fn required_name(name: Option<String>) -> anyhow::Result<String> {
    match name {
        Some(n) if !n.is_empty() => Ok(n),
        _ => bail!("A version tag name is required: give it with -name"),
    }
}

fn tag_path(job_id: &str, name: &str) -> String {
    format!(
        "/v1/job/{}/versions/{}/tag",
        urlencode(job_id),
        urlencode(name)
    )
}

impl ApiCommand for TagApply {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let name = required_name(self.name)?;
        let job = fetch_job(api, &self.job).await?;
        let version = self.version.unwrap_or(job.version);
        let _: JobTagResponse = api
            .put(
                &tag_path(&job.id, &name),
                &serde_json::json!({ "Version": version, "Description": self.description }),
            )
            .await
            .map_err(|e| anyhow!("Error tagging job version: {e}"))?;
        println!("Job version {version} tagged with name \"{name}\"");
        Ok(Exit::Ok)
    }
}

impl ApiCommand for TagUnset {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let name = required_name(self.name)?;
        let job = fetch_job(api, &self.job).await?;
        let _: JobTagResponse = api
            .delete(&tag_path(&job.id, &name), &[])
            .await
            .map_err(|e| anyhow!("Error removing the tag from the job version: {e}"))?;
        println!("Tag \"{name}\" removed from job \"{}\"", self.job);
        Ok(Exit::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(subcommand)]
        tag: TagCommand,
    }

    fn parse(args: &[&str]) -> Result<TagCommand, clap::Error> {
        let mut all = vec!["tag".to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        Wrap::try_parse_from(crate::cli::normalize_args(all)).map(|w| w.tag)
    }

    #[test]
    fn apply_takes_nomads_flags_and_defaults_to_the_current_version() {
        let Ok(TagCommand::Apply(a)) = parse(&[
            "apply",
            "-name",
            "golden",
            "-description",
            "known good",
            "-version",
            "3",
            "web",
        ]) else {
            panic!("apply did not parse");
        };
        let a = a.command;
        assert_eq!(a.name.as_deref(), Some("golden"));
        assert_eq!(a.description, "known good");
        assert_eq!((a.version, a.job.as_str()), (Some(3), "web"));
        let Ok(TagCommand::Apply(a)) = parse(&["apply", "-name=v1", "web"]) else {
            panic!("apply did not parse");
        };
        assert_eq!(a.command.version, None);
        assert!(parse(&["apply", "-version", "x", "-name", "n", "web"]).is_err());
        let error = required_name(None).unwrap_err().to_string();
        assert!(error.contains("A version tag name is required"), "{error}");
        assert!(required_name(Some(String::new())).is_err());
    }

    #[test]
    fn unset_names_the_tag_and_the_job() {
        let Ok(TagCommand::Unset(u)) = parse(&["unset", "-name", "golden", "web"]) else {
            panic!("unset did not parse");
        };
        assert_eq!(u.command.name.as_deref(), Some("golden"));
        assert_eq!(u.command.job, "web");
        assert!(
            parse(&["unset", "-name", "golden"]).is_err(),
            "the job is required"
        );
    }

    #[test]
    fn a_tag_name_is_escaped_in_the_path() {
        assert_eq!(
            tag_path("web", "my golden/v"),
            "/v1/job/web/versions/my%20golden%2Fv/tag"
        );
    }
}
