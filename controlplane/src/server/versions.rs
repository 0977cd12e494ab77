//! What a server does with a job's stored versions: mark one stable, revert to one, tag one
//! (Nomad's `Job.Stable`, `Job.Revert`, `Job.TagVersion`). Each checks the newest state first
//! (a 400/404 with nothing written) and the state machine checks again when it applies.

use serde::{Deserialize, Serialize};

use super::{JobRegisterResponse, Server, ServerError};
use crate::model::{now_unix_nanos, JobVersionTag};
use crate::state::{check_enforce_index, check_version_tag, Command};

/// `PUT /v1/job/:id/stable` answer (Nomad's `JobStabilityResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct JobStabilityResponse {
    pub index: u64,
}

/// `PUT|DELETE /v1/job/:id/versions/:name/tag` answer (Nomad's `JobTagResponse`): the tag
/// set (empty description and time when one was removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct JobTagResponse {
    pub name: String,
    pub description: String,
    pub tagged_time: i64,
    pub index: u64,
}

impl Server {
    /// Marks `version` of a job stable (or not): the deployment watcher calls it when a
    /// deployment succeeds, the operator through `PUT /v1/job/:id/stable`.
    pub async fn set_job_stability(
        &self,
        namespace: &str,
        job_id: &str,
        version: u64,
        stable: bool,
    ) -> Result<JobStabilityResponse, ServerError> {
        let state = self.state();
        if state.job_version(namespace, job_id, version).is_none() {
            return Err(not_found_version(&state, namespace, job_id, version));
        }
        let response = self
            .propose(Command::JobStability {
                namespace: namespace.to_string(),
                job_id: job_id.to_string(),
                version,
                stable,
            })
            .await?;
        Ok(JobStabilityResponse {
            index: response.index,
        })
    }

    /// Registers a kept version's spec again as a new version (Nomad's `Job.Revert`): the
    /// deployment watcher calls it to auto-revert, the operator through
    /// `POST /v1/job/:id/revert`. With `enforce_prior_version`, only while the job is at that
    /// version (checked when the entry is applied, through the job's modify index).
    pub async fn revert_job(
        &self,
        namespace: &str,
        job_id: &str,
        version: u64,
        enforce_prior_version: Option<u64>,
    ) -> Result<JobRegisterResponse, ServerError> {
        self.revert_job_checked(namespace, job_id, version, enforce_prior_version, None)
            .await
    }

    /// [`Server::revert_job`] that also enforces the job's `JobModifyIndex`
    /// (`noded job revert -check-index N`).
    pub async fn revert_job_checked(
        &self,
        namespace: &str,
        job_id: &str,
        version: u64,
        enforce_prior_version: Option<u64>,
        enforce_index: Option<u64>,
    ) -> Result<JobRegisterResponse, ServerError> {
        let state = self.state();
        let Some(current) = state.job(namespace, job_id) else {
            return Err(ServerError::NotFound(format!(
                "job {job_id:?} not found in namespace {namespace:?}"
            )));
        };
        if let Some(expected) = enforce_index {
            check_enforce_index(job_id, expected, current.job_modify_index)
                .map_err(ServerError::BadRequest)?;
        }
        if version == current.version {
            return Err(ServerError::BadRequest(format!(
                "can't revert to current version: job {job_id:?} is at version {version}; \
                 name an earlier one (`noded job history {job_id}` lists them)"
            )));
        }
        let Some(target) = state.job_version(namespace, job_id, version) else {
            return Err(not_found_version(&state, namespace, job_id, version));
        };
        if let Some(prior) = enforce_prior_version {
            if current.version != prior {
                return Err(ServerError::BadRequest(format!(
                    "Current job has version {}; enforcing version {prior}",
                    current.version
                )));
            }
        }
        // The prior version holds when applied only if the job did not move since it was
        // read here: its modify index says so (Nomad enforces it the same way).
        let enforce = enforce_index.or(enforce_prior_version.map(|_| current.job_modify_index));
        let mut job = (*target).clone();
        // A new registration: no tag (tags are unique) and not yet stable (its deployment
        // decides), as in Nomad.
        job.version_tag = None;
        job.stable = false;
        self.register_job_enforced(job, enforce).await
    }

    /// Tags `version` of a job (the current one when `None`) with `name`; tagging a version
    /// again with its own name replaces the description.
    pub async fn tag_job_version(
        &self,
        namespace: &str,
        job_id: &str,
        name: &str,
        version: Option<u64>,
        description: &str,
    ) -> Result<JobTagResponse, ServerError> {
        check_version_tag(name, description).map_err(ServerError::BadRequest)?;
        let state = self.state();
        let Some(current) = state.job(namespace, job_id) else {
            return Err(ServerError::NotFound(format!(
                "job {job_id:?} not found in namespace {namespace:?}"
            )));
        };
        let version = version.unwrap_or(current.version);
        if state.job_version(namespace, job_id, version).is_none() {
            return Err(not_found_version(&state, namespace, job_id, version));
        }
        if let Some(other) = state
            .job_version_by_tag(namespace, job_id, name)
            .filter(|j| j.version != version)
        {
            return Err(ServerError::BadRequest(format!(
                "tag {name:?} already exists on a different version of the job {job_id:?} \
                 (version {}); unset it there first with `noded job tag unset -name {name:?} {job_id}`",
                other.version
            )));
        }
        let tag = JobVersionTag {
            name: name.to_string(),
            description: description.to_string(),
            tagged_time: now_unix_nanos(),
        };
        let response = self
            .propose(Command::JobVersionTag {
                namespace: namespace.to_string(),
                job_id: job_id.to_string(),
                version,
                name: name.to_string(),
                tag: Some(tag.clone()),
            })
            .await?;
        Ok(JobTagResponse {
            name: tag.name,
            description: tag.description,
            tagged_time: tag.tagged_time,
            index: response.index,
        })
    }

    /// Removes the tag `name` from whichever version of a job carries it.
    pub async fn untag_job_version(
        &self,
        namespace: &str,
        job_id: &str,
        name: &str,
    ) -> Result<JobTagResponse, ServerError> {
        let state = self.state();
        if state.job(namespace, job_id).is_none() {
            return Err(ServerError::NotFound(format!(
                "job {job_id:?} not found in namespace {namespace:?}"
            )));
        }
        let Some(tagged) = state.job_version_by_tag(namespace, job_id, name) else {
            return Err(ServerError::NotFound(format!(
                "tag {name:?} not found on job {job_id:?}"
            )));
        };
        let response = self
            .propose(Command::JobVersionTag {
                namespace: namespace.to_string(),
                job_id: job_id.to_string(),
                version: tagged.version,
                name: name.to_string(),
                tag: None,
            })
            .await?;
        Ok(JobTagResponse {
            name: name.to_string(),
            index: response.index,
            ..Default::default()
        })
    }
}

/// A missing job (404 naming it) or a missing version of it (404 naming what is kept).
fn not_found_version(
    state: &crate::state::State,
    namespace: &str,
    job_id: &str,
    version: u64,
) -> ServerError {
    if state.job(namespace, job_id).is_none() {
        return ServerError::NotFound(format!(
            "job {job_id:?} not found in namespace {namespace:?}"
        ));
    }
    ServerError::NotFound(state.job_version_not_found(namespace, job_id, version))
}
