//! `noded job history`: a job's stored versions, newest first, with `-p` the difference each
//! made to the one before it.

use anyhow::{anyhow, bail};
use clap::Args;
use controlplane::jobdiff::{DiffType, JobDiff};
use controlplane::model::{Job, JobListStub};
use serde::Deserialize;

use super::super::global::ApiCommand;
use super::super::http::{urlencode, ApiClient};
use super::super::output::json;
use super::super::Exit;
use super::diff::{format_job_diff, Style};

#[derive(Debug, Args)]
pub struct JobHistory {
    /// Show the difference each version made to the one before it.
    #[arg(short = 'p')]
    diff: bool,
    /// Show each version whole, as JSON.
    #[arg(long)]
    full: bool,
    /// Show only this version.
    #[arg(long)]
    version: Option<u64>,
    /// Print the versions as JSON.
    #[arg(long)]
    json: bool,
    /// Compare every version with the one carrying this tag (with -p).
    #[arg(long = "diff-tag")]
    diff_tag: Option<String>,
    /// Compare every version with this one (with -p).
    #[arg(long = "diff-version")]
    diff_version: Option<u64>,
    /// No colours, even at a terminal.
    #[arg(long = "no-color")]
    no_color: bool,
    /// The job's id or a unique prefix of it.
    job: String,
}

/// `GET /v1/job/:id/versions`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VersionsResponse {
    pub versions: Vec<Job>,
    pub diffs: Option<Vec<JobDiff>>,
}

impl ApiCommand for JobHistory {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        if self.json && (self.diff || self.full) {
            bail!("-json is exclusive with -p and -full");
        }
        if (self.diff_tag.is_some() || self.diff_version.is_some()) && !self.diff {
            bail!("-diff-tag and -diff-version can only be used with -p");
        }
        if self.diff_tag.is_some() && self.diff_version.is_some() {
            bail!("-diff-tag and -diff-version are mutually exclusive");
        }
        let stub: JobListStub = super::super::resolve::resolve(api, &self.job).await?;
        let mut query = vec![("diffs", self.diff.to_string())];
        if let Some(tag) = &self.diff_tag {
            query.push(("diff_tag", tag.clone()));
        }
        if let Some(v) = self.diff_version {
            query.push(("diff_version", v.to_string()));
        }
        let response: VersionsResponse = api
            .get_now(&format!("/v1/job/{}/versions", urlencode(&stub.id)), &query)
            .await
            .map_err(|e| anyhow!("Error retrieving job versions: {e}"))?;
        let diffs = response.diffs.unwrap_or_default();
        let style = Style::for_stdout(self.no_color);
        if let Some(wanted) = self.version {
            let Some(i) = response.versions.iter().position(|v| v.version == wanted) else {
                bail!("job {:?} has no version {wanted} (stored versions are kept only up to the job's tracked number)", stub.id);
            };
            let job = &response.versions[i];
            if self.json {
                println!("{}", json(job)?);
            } else {
                print!("{}", format_version(job, diffs.get(i), self.full, style)?);
            }
            return Ok(Exit::Ok);
        }
        if self.json {
            println!("{}", json(&response.versions)?);
            return Ok(Exit::Ok);
        }
        print!(
            "{}",
            format_versions(&response.versions, &diffs, self.full, style)?
        );
        Ok(Exit::Ok)
    }
}

/// Every version, a blank line between them; `diffs[i]` belongs to `versions[i]`.
pub fn format_versions(
    versions: &[Job],
    diffs: &[JobDiff],
    full: bool,
    style: Style,
) -> anyhow::Result<String> {
    let mut blocks = Vec::with_capacity(versions.len());
    for (i, v) in versions.iter().enumerate() {
        blocks.push(format_version(v, diffs.get(i), full, style)?);
    }
    Ok(blocks.join("\n"))
}

/// One version as `Key = Value` lines: version, stability, submit date, tag, and with a
/// difference, the diff below `Diff =`.
pub fn format_version(
    job: &Job,
    diff: Option<&JobDiff>,
    full: bool,
    style: Style,
) -> anyhow::Result<String> {
    let mut pairs: Vec<(&str, String)> = vec![
        ("Version", job.version.to_string()),
        ("Stable", job.stable.to_string()),
        (
            "Submit Date",
            super::super::format::timestamp(job.submit_time),
        ),
    ];
    if let Some(tag) = &job.version_tag {
        pairs.push(("Tag Name", tag.name.clone()));
        if !tag.description.is_empty() {
            pairs.push(("Tag Description", tag.description.clone()));
        }
    }
    if let Some(diff) = diff.filter(|d| d.diff_type != DiffType::None) {
        pairs.push((
            "Diff",
            format!("\n{}", format_job_diff(diff, false, style).trim()),
        ));
    }
    if full {
        pairs.push(("Full", format!("JSON Job:\n{}", json(job)?)));
    }
    Ok(super::super::format::kv(&pairs))
}
