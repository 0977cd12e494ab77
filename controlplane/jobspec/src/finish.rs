//! The last common step of both decoders: from a job in Nomad's API shape (a JSON object
//! holding only the fields that were set) to a typed, canonical [`Job`]. Defaults that depend
//! on whether a field was set at all (a group's count, a partial `restart` block merged over
//! the job type's policy) are applied here, while that is still visible; the rest is
//! [`Job::canonicalize`].

use serde_json::{Map, Value as Json};

use super::error::{lookup_pos, JobspecError, JobspecErrors, Positions};
use super::limits::{json_depth, json_depth_limit, Limits};
use model::{defaults, Job, JobType};

const JOB_TYPES: &[&str] = &["service", "batch", "system", "sysbatch"];

pub(crate) fn to_job(
    raw: Json,
    positions: &Positions,
    limits: &Limits,
) -> Result<Job, JobspecErrors> {
    // Nested free-form data (driver config) grows when written as API JSON; refuse a job
    // whose JSON could not be read back.
    let max = json_depth_limit(limits);
    if json_depth(&raw) > max {
        return Err(JobspecErrors::one("", format!("the job nests more than {max} levels deep (counting the [{{…}}] each free-form block becomes); flatten its config")));
    }
    let Json::Object(mut obj) = raw else {
        return Err(JobspecErrors::one("", "a job must be an object"));
    };
    let job_type = match obj.get("Type") {
        None | Some(Json::Null) => JobType::Service,
        Some(Json::String(t)) => match t.as_str() {
            "service" => JobType::Service,
            "batch" => JobType::Batch,
            "system" => JobType::System,
            "sysbatch" => JobType::Sysbatch,
            other => {
                return Err(JobspecErrors(vec![JobspecError::new(
                    lookup_pos(positions, "Type"),
                    "type",
                    format!(
                        "unknown job type {other:?}; use one of {}",
                        JOB_TYPES.join(", ")
                    ),
                )]))
            }
        },
        Some(other) => {
            return Err(JobspecErrors(vec![JobspecError::new(
                lookup_pos(positions, "Type"),
                "type",
                format!("the job type must be a string, got {other}"),
            )]))
        }
    };
    let base = serde_json::to_value(defaults::restart_for(job_type)).unwrap_or(Json::Null);
    if let Some(Json::Array(groups)) = obj.get_mut("TaskGroups") {
        for g in groups {
            let Json::Object(g) = g else { continue };
            if !g.contains_key("Count") {
                let min = g
                    .get("Scaling")
                    .and_then(|s| s.get("Min"))
                    .and_then(Json::as_i64);
                g.insert("Count".into(), Json::from(defaults::group_count(min)));
            }
            let group_restart = merge(&base, g.get("RestartPolicy"));
            if let Some(Json::Array(tasks)) = g.get_mut("Tasks") {
                for t in tasks {
                    if let Json::Object(t) = t {
                        let merged = merge(&group_restart, t.get("RestartPolicy"));
                        t.insert("RestartPolicy".into(), merged);
                    }
                }
            }
            g.insert("RestartPolicy".into(), group_restart);
        }
    }
    let mut job: Job = serde_json::from_value(Json::Object(std::mem::take(&mut obj)))
        .map_err(|e| JobspecErrors::one("", format!("the job does not fit noded's model: {e}")))?;
    job.canonicalize();
    Ok(job)
}

/// `base` with the keys set in `over` replacing its own (Nomad's `RestartPolicy.Merge`).
fn merge(base: &Json, over: Option<&Json>) -> Json {
    let mut out: Map<String, Json> = match base {
        Json::Object(m) => m.clone(),
        _ => Map::new(),
    };
    if let Some(Json::Object(o)) = over {
        for (k, v) in o {
            if !v.is_null() {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Json::Object(out)
}
