//! `noded job revert [-check-index N] [-detach] [-verbose] JOB VERSION|TAG`: register a kept
//! version of a job again, as a new version, and follow its evaluation like `job run`.

use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use controlplane::model::Job;
use controlplane::server::JobRegisterResponse;

use super::super::global::ApiCommand;
use super::super::http::{urlencode, ApiClient};
use super::super::Exit;
use super::fetch_job;
use super::monitor::monitor;

const REVERT_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Args)]
pub struct JobRevert {
    /// Revert only if the job's modify index is still this one (as `job run -check-index`:
    /// `job status` and `job plan` show it); refused, with nothing changed, if the job moved.
    #[arg(long = "check-index", value_name = "N")]
    check_index: Option<u64>,
    /// Return after reverting, without following the evaluation.
    #[arg(long)]
    detach: bool,
    /// Show full ids.
    #[arg(long)]
    verbose: bool,
    /// The job (id or unique prefix).
    job: String,
    /// The version to go back to: its number, or the name of its tag.
    #[arg(value_name = "VERSION|TAG")]
    version: String,
}

/// The `/v1/versions` answer, as far as a revert reads it.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Versions {
    pub versions: Vec<Job>,
}

/// The version `given` names: a number, or a tag of one of `versions` (Nomad's order: a
/// number first, so a tag named "3" is reached only through its number).
pub(super) fn resolve_version(job_id: &str, given: &str, versions: &[Job]) -> anyhow::Result<u64> {
    if let Ok(number) = given.parse::<u64>() {
        return Ok(number);
    }
    versions
        .iter()
        .find(|v| v.version_tag.as_ref().is_some_and(|t| t.name == given))
        .map(|v| v.version)
        .ok_or_else(|| {
            let tags: Vec<String> = versions
                .iter()
                .filter_map(|v| v.version_tag.as_ref().map(|t| format!("{:?} (version {})", t.name, v.version)))
                .collect();
            anyhow!(
                "version tag {given} not found for job {job_id}: tagged versions are {}; give a version number or a tag (`noded job history {job_id}`)",
                if tags.is_empty() { "none".to_string() } else { tags.join(", ") }
            )
        })
}

/// Nomad's `JobRevertRequest`, with `-check-index` as `EnforceIndex`/`JobModifyIndex`.
fn revert_body(job_id: &str, version: u64, check_index: Option<u64>) -> serde_json::Value {
    let mut body = serde_json::json!({ "JobID": job_id, "JobVersion": version });
    if let Some(index) = check_index {
        body["EnforceIndex"] = true.into();
        body["JobModifyIndex"] = index.into();
    }
    body
}

impl ApiCommand for JobRevert {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let job = fetch_job(api, &self.job).await?;
        let version = match self.version.parse::<u64>() {
            Ok(v) => v,
            Err(_) => {
                let listed: Versions = api
                    .get_now(&format!("/v1/job/{}/versions", urlencode(&job.id)), &[])
                    .await
                    .map_err(|e| anyhow!("Error retrieving job versions: {e}"))?;
                resolve_version(&job.id, &self.version, &listed.versions)?
            }
        };
        let response: JobRegisterResponse = api
            .put(
                &format!("/v1/job/{}/revert", urlencode(&job.id)),
                &revert_body(&job.id, version, self.check_index),
            )
            .await
            .map_err(|e| anyhow!("Error reverting job: {e}"))?;
        if !response.warnings.is_empty() {
            eprintln!("Job Warnings:\n{}\n", response.warnings);
        }
        // A periodic or parameterized job has no evaluation to follow.
        if response.eval_id.is_empty() {
            return Ok(Exit::Ok);
        }
        if self.detach {
            println!("Evaluation ID: {}", response.eval_id);
            return Ok(Exit::Ok);
        }
        let _ = self.verbose;
        monitor(api, &response.eval_id, job.job_type, REVERT_TIMEOUT).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use controlplane::model::JobVersionTag;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        revert: JobRevert,
    }

    fn parse(args: &[&str]) -> Result<JobRevert, clap::Error> {
        let mut all = vec!["revert".to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        Wrap::try_parse_from(crate::cli::normalize_args(all)).map(|w| w.revert)
    }

    #[test]
    fn flags_and_arguments_are_nomads() {
        let r = parse(&["-check-index", "42", "-detach", "-verbose", "web", "3"]).unwrap();
        assert_eq!(r.check_index, Some(42));
        assert!(r.detach && r.verbose);
        assert_eq!((r.job.as_str(), r.version.as_str()), ("web", "3"));
        let r = parse(&["-check-index=7", "web", "golden"]).unwrap();
        assert_eq!(r.check_index, Some(7));
        assert!(!r.detach);
        assert!(parse(&["web"]).is_err(), "the version is required");
        assert!(parse(&["-check-index", "x", "web", "1"]).is_err());
    }

    #[test]
    fn a_version_is_a_number_or_a_tag_name() {
        let tagged = |version, name: &str| Job {
            version,
            version_tag: (!name.is_empty()).then(|| JobVersionTag {
                name: name.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let versions = vec![tagged(4, ""), tagged(3, "golden"), tagged(1, "first")];
        assert_eq!(resolve_version("web", "2", &versions).unwrap(), 2);
        assert_eq!(resolve_version("web", "golden", &versions).unwrap(), 3);
        let error = resolve_version("web", "nope", &versions)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("version tag nope not found for job web"),
            "{error}"
        );
        assert!(
            error.contains("\"golden\" (version 3), \"first\" (version 1)"),
            "{error}"
        );
    }

    #[test]
    fn check_index_becomes_enforce_index() {
        let body = revert_body("web", 3, Some(9));
        assert_eq!(
            body,
            serde_json::json!({"JobID": "web", "JobVersion": 3, "EnforceIndex": true, "JobModifyIndex": 9})
        );
        assert_eq!(
            revert_body("web", 0, None),
            serde_json::json!({"JobID": "web", "JobVersion": 0})
        );
    }
}
