//! A job's stored versions: how many are kept (`job_tracked_versions`), which are never pruned
//! (tagged ones, the current one, the newest stable one), `Stable`, version tags, and the
//! `EnforceIndex` check a registration makes when it is applied — Nomad's `upsertJobVersion`,
//! `UpdateJobStability` and `UpdateJobVersionTag`.

use std::sync::Arc;

use super::{key, JobKey, State, Table, JOB_TRACKED_VERSIONS};
use crate::model::{Job, JobVersionTag};

/// The most versions without a tag a server may be configured to keep (`job_tracked_versions`):
/// every kept version is a whole job in memory, in every snapshot and in `job history`.
pub const MAX_JOB_TRACKED_VERSIONS: u64 = 1000;

/// The longest tag description, in characters (Nomad's `MaxDescriptionCharacters`).
pub const MAX_VERSION_TAG_DESCRIPTION_CHARS: usize = 1000;

/// The longest tag name, in bytes. Nomad sets no bound; a name travels in URL paths and is
/// printed in `job history`, so noded keeps it to a line.
pub const MAX_VERSION_TAG_NAME_BYTES: usize = 128;

/// Nomad's `EnforceIndex`: `Ok` when the job's current `JobModifyIndex` (0 when the job does
/// not exist) is the one the caller saw. The same words at the API (the early answer) and in
/// the state machine (the one that counts).
pub fn check_enforce_index(job_id: &str, expected: u64, current: u64) -> Result<(), String> {
    if expected == current {
        return Ok(());
    }
    Err(format!(
        "enforcing job modify index {expected}: job {job_id:?} exists with a conflicting job modify index: {current}"
    ))
}

/// What a tag must be to be stored: a name that fits in a line, a description within Nomad's
/// bound.
pub fn check_version_tag(name: &str, description: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a version tag name is required (-name)".into());
    }
    if name.len() > MAX_VERSION_TAG_NAME_BYTES {
        return Err(format!(
            "version tag name is {} bytes long: it must be at most {MAX_VERSION_TAG_NAME_BYTES}",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "version tag name {name:?} holds a control character: use printable text"
        ));
    }
    let chars = description.chars().count();
    if chars > MAX_VERSION_TAG_DESCRIPTION_CHARS {
        return Err(format!(
            "Tagged version description must be under {MAX_VERSION_TAG_DESCRIPTION_CHARS} characters, currently {chars}"
        ));
    }
    Ok(())
}

impl State {
    /// How many versions without a tag are kept per job (Nomad's `job_tracked_versions`).
    pub fn job_tracked_versions(&self) -> u64 {
        self.job_tracked_versions.unwrap_or(JOB_TRACKED_VERSIONS)
    }

    /// A proposer's `job_tracked_versions`, bounded as the configuration is (a limit of 0
    /// would prune the version being written; the proposer refuses it, and the state machine
    /// must not trust that).
    pub(super) fn set_job_tracked_versions(&mut self, limit: u64) {
        self.job_tracked_versions = Some(limit.clamp(1, MAX_JOB_TRACKED_VERSIONS));
    }

    /// One stored version of a job.
    pub fn job_version(&self, namespace: &str, id: &str, version: u64) -> Option<Arc<Job>> {
        self.job_versions
            .get(&(key(namespace, id), version))
            .cloned()
    }

    /// The stored version of a job that carries the tag `name`.
    pub fn job_version_by_tag(&self, namespace: &str, id: &str, name: &str) -> Option<Arc<Job>> {
        self.job_versions(namespace, id)
            .into_iter()
            .find(|j| j.version_tag.as_ref().is_some_and(|t| t.name == name))
    }

    /// Why `version` of a job cannot be found, in Nomad's words, with what is kept.
    pub fn job_version_not_found(&self, namespace: &str, id: &str, version: u64) -> String {
        let kept: Vec<String> = self
            .job_versions(namespace, id)
            .iter()
            .rev()
            .map(|j| j.version.to_string())
            .collect();
        format!(
            "job {id:?} at version {version} not found in namespace {namespace:?} (kept versions: {}; \
             the newest {} without a tag are kept, and tagged ones: see `noded job history {id}`)",
            if kept.is_empty() {
                "none".to_string()
            } else {
                kept.join(", ")
            },
            self.job_tracked_versions()
        )
    }

    /// Drops the versions of a job past what is kept: the newest `job_tracked_versions`
    /// versions without a tag, plus every tagged version, the current one, and the newest
    /// stable one (the one an auto-revert goes back to, as Nomad keeps it: it takes the place
    /// of the oldest of the newest, so the count stays at the limit).
    pub(super) fn prune_job_versions(&mut self, k: &JobKey) {
        let limit = usize::try_from(self.job_tracked_versions()).unwrap_or(usize::MAX);
        let current = self.jobs.get(k).map(|j| j.version);
        // Newest first.
        let untagged: Vec<(u64, bool)> = self
            .job_versions
            .range((k.clone(), 0)..=(k.clone(), u64::MAX))
            .rev()
            .filter(|(_, j)| j.version_tag.is_none())
            .map(|((_, v), j)| (*v, j.stable))
            .collect();
        if untagged.len() <= limit {
            return;
        }
        let mut keep: Vec<u64> = untagged.iter().take(limit).map(|(v, _)| *v).collect();
        let newest_stable = untagged.iter().find(|(_, stable)| *stable).map(|(v, _)| *v);
        if let Some(stable) = newest_stable.filter(|s| !keep.contains(s)) {
            // keep[0] is the newest (the current one, if untagged): never the one replaced.
            if keep.len() > 1 {
                keep.pop();
            }
            keep.push(stable);
        }
        for (version, _) in untagged {
            if !keep.contains(&version) && Some(version) != current {
                self.job_versions.remove(&(k.clone(), version));
            }
        }
    }

    /// `Command::JobStability`: marks a kept version stable (or not), and the current job too
    /// when it is that version. Nothing is written when it already is.
    pub(super) fn apply_job_stability(
        &mut self,
        index: u64,
        namespace: &str,
        job_id: &str,
        version: u64,
        stable: bool,
    ) -> Result<u64, String> {
        let k = key(namespace, job_id);
        let Some(stored) = self.kept_version(&k, version) else {
            return Err(self.job_version_not_found(namespace, job_id, version));
        };
        if stored.stable == stable {
            return Ok(stored.job_modify_index);
        }
        let mut updated = (*stored).clone();
        updated.stable = stable;
        updated.modify_index = index;
        let job_modify_index = updated.job_modify_index;
        self.write_version(index, &k, updated);
        Ok(job_modify_index)
    }

    /// `Command::JobVersionTag`: sets a tag on a kept version (replacing its description if
    /// it already carries that name), or removes one.
    pub(super) fn apply_job_version_tag(
        &mut self,
        index: u64,
        namespace: &str,
        job_id: &str,
        version: u64,
        name: &str,
        tag: Option<&JobVersionTag>,
    ) -> Result<u64, String> {
        let k = key(namespace, job_id);
        if !self.jobs.contains_key(&k) {
            return Err(format!(
                "job {job_id:?} not found in namespace {namespace:?}"
            ));
        }
        let Some(stored) = self.kept_version(&k, version) else {
            return Err(match tag {
                Some(_) => self.job_version_not_found(namespace, job_id, version),
                None => format!("tag {name:?} not found on job {job_id:?}"),
            });
        };
        let mut updated = (*stored).clone();
        match tag {
            Some(tag) => {
                if tag.name != name {
                    return Err(format!(
                        "tag name {:?} does not match the name {name:?} it is applied as",
                        tag.name
                    ));
                }
                check_version_tag(&tag.name, &tag.description)?;
                if let Some(other) = self
                    .job_version_by_tag(namespace, job_id, name)
                    .filter(|j| j.version != version)
                {
                    return Err(format!(
                        "tag {name:?} already exists on a different version of the job {job_id:?} \
                         (version {}); unset it there first with `noded job tag unset -name {name:?} {job_id}`",
                        other.version
                    ));
                }
                updated.version_tag = Some(tag.clone());
            }
            None => {
                if stored.version_tag.as_ref().is_none_or(|t| t.name != name) {
                    return Err(format!("tag {name:?} not found on job {job_id:?}"));
                }
                updated.version_tag = None;
            }
        }
        updated.modify_index = index;
        let job_modify_index = updated.job_modify_index;
        self.write_version(index, &k, updated);
        // An untagged version counts against the limit again.
        self.prune_job_versions(&k);
        Ok(job_modify_index)
    }

    /// A kept version: the current job itself when it is that version (its status is the
    /// newest), else the stored copy.
    fn kept_version(&self, k: &JobKey, version: u64) -> Option<Arc<Job>> {
        match self.jobs.get(k) {
            Some(current) if current.version == version => Some(current.clone()),
            _ => self.job_versions.get(&(k.clone(), version)).cloned(),
        }
    }

    /// Writes a changed copy of a stored version back, and into the jobs table when it is the
    /// current version; the version number and its spec stay.
    fn write_version(&mut self, index: u64, k: &JobKey, job: Job) {
        let version = job.version;
        let job = Arc::new(job);
        let is_current = self.jobs.get(k).is_some_and(|j| j.version == version);
        if is_current {
            self.jobs.insert(k.clone(), job.clone());
            self.touch(Table::Jobs, index);
        }
        self.job_versions.insert((k.clone(), version), job);
        self.touch(Table::JobVersions, index);
    }
}
