//! `/v1/jobs` and `/v1/job/:id/...`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use super::{decode_body, json_with_index, ApiContext, QueryOptions};
use crate::model::{Job, DEFAULT_NAMESPACE};
use crate::state::Table;

/// The body of `PUT /v1/jobs`, in Nomad's shape.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JobRegisterRequest {
    job: Option<serde_json::Value>,
    #[serde(default)]
    enforce_index: bool,
    #[serde(default)]
    job_modify_index: u64,
}

fn known_leader(ctx: &ApiContext) -> bool {
    ctx.server.consensus().leader_address().is_some()
}

pub async fn list(
    State(ctx): State<ApiContext>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let q = QueryOptions::parse(params)?;
    let (state, index) = q
        .block(
            ctx.server.store(),
            &[Table::Jobs, Table::Allocs, Table::Evals],
        )
        .await;
    let stubs: Vec<_> = state
        .jobs(None)
        .into_iter()
        .filter(|j| q.covers(&j.namespace) && j.id.starts_with(&q.prefix))
        .map(|j| j.stub(state.job_summary(&j)))
        .collect();
    Ok(json_with_index(&stubs, index, known_leader(&ctx)))
}

pub async fn register(State(ctx): State<ApiContext>, body: Bytes) -> ApiResult<Response> {
    register_body(&ctx, &body, None).await
}

pub async fn register_one(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    register_body(&ctx, &body, Some(id)).await
}

async fn register_body(
    ctx: &ApiContext,
    body: &[u8],
    path_id: Option<String>,
) -> ApiResult<Response> {
    let request: JobRegisterRequest = decode_body(body, "job register request")?;
    let Some(job_value) = request.job else {
        return Err(ApiError::bad_request(
            "job register request: missing \"Job\" object",
        ));
    };
    let job_text = serde_json::to_string(&job_value)
        .map_err(|e| ApiError::bad_request(format!("job register request: {e}")))?;
    let opts = crate::jobspec::ParseOptions::for_file("request body \"Job\"");
    let parsed = crate::jobspec::check_api_json(&job_text, &opts)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let job = parsed.job;
    if let Some(id) = path_id {
        if id != job.id {
            return Err(ApiError::bad_request(format!(
                "job ID {:?} in the body does not match {id:?} in the URL",
                job.id
            )));
        }
    }
    let mut warnings: Vec<String> = parsed.warnings.iter().map(|w| w.to_string()).collect();
    warnings.extend(check_job(&job)?);
    let oversubscription = ctx
        .server
        .state()
        .scheduler_config()
        .memory_oversubscription_enabled;
    warnings.extend(memory_max_warnings(&job, oversubscription));
    if request.enforce_index {
        let current = ctx
            .server
            .state()
            .job(
                if job.namespace.is_empty() {
                    DEFAULT_NAMESPACE
                } else {
                    &job.namespace
                },
                &job.id,
            )
            .map(|j| j.job_modify_index)
            .unwrap_or(0);
        if current != request.job_modify_index {
            return Err(ApiError::bad_request(format!(
                "enforcing job modify index {}: job {:?} exists with a conflicting job modify index: {current}",
                request.job_modify_index, job.id
            )));
        }
    }
    let mut response = ctx.server.register_job(job).await?;
    response.warnings = warnings.join("\n");
    let index = response.index;
    Ok(json_with_index(&response, index, true))
}

/// A warning per task that sets `memory_max` while the scheduler configuration does not allow
/// memory oversubscription: the scheduler then grants `memory` as the hard limit (as Nomad
/// does), and the job's author should hear so rather than find out from an OOM kill.
fn memory_max_warnings(job: &Job, oversubscription: bool) -> Vec<String> {
    if oversubscription {
        return Vec::new();
    }
    job.task_groups
        .iter()
        .flat_map(|group| group.tasks.iter().map(move |task| (group, task)))
        .filter(|(_, task)| task.resources.as_ref().is_some_and(|r| r.memory_max_mb != 0))
        .map(|(group, task)| {
            format!(
                "memory oversubscription is not enabled: task \"{}.{}\" gets its memory as the hard limit and its memory_max is ignored; enable it with `noded operator scheduler set-config -memory-oversubscription=true`",
                group.name, task.name
            )
        })
        .collect()
}

/// What a submitted job must pass, beyond the jobspec rules, before anything is written.
fn check_job(job: &Job) -> ApiResult<Vec<String>> {
    let config_errors = crate::drivers::check_job(job);
    if !config_errors.is_empty() {
        return Err(ApiError::bad_request(config_errors.join("\n")));
    }
    let namespace = if job.namespace.is_empty() {
        DEFAULT_NAMESPACE
    } else {
        &job.namespace
    };
    if namespace != DEFAULT_NAMESPACE {
        return Err(ApiError::bad_request(format!(
            "job {:?}: namespace {namespace:?} does not exist (only {DEFAULT_NAMESPACE:?} exists)",
            job.id
        )));
    }
    Ok(Vec::new())
}

pub async fn read(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let q = QueryOptions::parse(params)?;
    let (state, index) = q.block(ctx.server.store(), &[Table::Jobs]).await;
    let job = state
        .job(&q.namespace, &id)
        .ok_or_else(|| ApiError::not_found(format!("job {id:?} not found")))?;
    Ok(json_with_index(&*job, index, known_leader(&ctx)))
}

pub async fn deregister(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let q = QueryOptions::parse(params)?;
    let purge = q.flag("purge")?;
    let response = ctx.server.deregister_job(&q.namespace, &id, purge).await?;
    let index = response.index;
    Ok(json_with_index(&response, index, true))
}

pub async fn allocations(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let q = QueryOptions::parse(params)?;
    let (state, index) = q.block(ctx.server.store(), &[Table::Allocs]).await;
    let mut stubs: Vec<_> = state
        .allocs_by_job(&q.namespace, &id)
        .iter()
        .map(|a| a.stub())
        .collect();
    stubs.sort_by(|a, b| b.create_index.cmp(&a.create_index).then(a.id.cmp(&b.id)));
    Ok(json_with_index(&stubs, index, known_leader(&ctx)))
}

pub async fn evaluations(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let q = QueryOptions::parse(params)?;
    let (state, index) = q.block(ctx.server.store(), &[Table::Evals]).await;
    let mut evals: Vec<_> = state
        .evals_by_job(&q.namespace, &id)
        .iter()
        .map(|e| (**e).clone())
        .collect();
    evals.sort_by(|a, b| b.create_index.cmp(&a.create_index).then(a.id.cmp(&b.id)));
    Ok(json_with_index(&evals, index, known_leader(&ctx)))
}

pub async fn summary(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let q = QueryOptions::parse(params)?;
    let (state, index) = q
        .block(ctx.server.store(), &[Table::Jobs, Table::Allocs])
        .await;
    let job = state
        .job(&q.namespace, &id)
        .ok_or_else(|| ApiError::not_found(format!("job {id:?} not found")))?;
    Ok(json_with_index(
        &state.job_summary(&job),
        index,
        known_leader(&ctx),
    ))
}

pub async fn versions(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let q = QueryOptions::parse(params)?;
    let (state, index) = q.block(ctx.server.store(), &[Table::JobVersions]).await;
    let versions: Vec<Job> = state
        .job_versions(&q.namespace, &id)
        .iter()
        .map(|j| (**j).clone())
        .collect();
    if versions.is_empty() {
        return Err(ApiError::not_found(format!("job {id:?} not found")));
    }
    let body = serde_json::json!({ "Versions": versions, "Diffs": null });
    Ok(json_with_index(&body, index, known_leader(&ctx)))
}

/// `POST /v1/jobs/parse`: HCL in, the job as API JSON out (Nomad's `JobsParseRequest`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JobsParseRequest {
    #[serde(rename = "JobHCL")]
    job_hcl: String,
    #[serde(default, rename = "HCLv1")]
    hcl_v1: bool,
    #[serde(default)]
    variables: String,
    #[serde(default)]
    canonicalize: bool,
}

pub async fn parse(body: Bytes) -> ApiResult<Response> {
    let request: JobsParseRequest = decode_body(&body, "job parse request")?;
    if request.hcl_v1 {
        return Err(ApiError::bad_request(
            "HCLv1 jobspecs are not supported (Nomad removed HCL1 too); send HCL2",
        ));
    }
    let mut opts = crate::jobspec::ParseOptions::for_file("JobHCL");
    if !request.variables.is_empty() {
        opts.var_file_texts
            .push(("Variables".to_string(), request.variables));
    }
    // The server never reads its own disk on behalf of a request: no file() and friends.
    opts.allow_fs_functions = false;
    let parsed = crate::jobspec::parse_hcl(&request.job_hcl, &opts)
        .map_err(|errors| ApiError::bad_request(errors.to_string()))?;
    // noded's parser always applies Nomad's defaults; `Canonicalize = false` gets the same
    // canonical job (a superset of what Nomad would return).
    let _ = request.canonicalize;
    Ok(json_with_index(&parsed.job, 0, true))
}

/// `POST /v1/validate/job`: Nomad's `JobValidateResponse`, with every problem listed.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct JobValidateResponse {
    driver_config_validated: bool,
    validation_errors: Vec<String>,
    error: String,
    warnings: String,
}

pub async fn validate(State(ctx): State<ApiContext>, body: Bytes) -> ApiResult<Response> {
    let request: JobRegisterRequest = decode_body(&body, "job validate request")?;
    let Some(job_value) = request.job else {
        return Err(ApiError::bad_request(
            "job validate request: missing \"Job\" object",
        ));
    };
    let job_text = serde_json::to_string(&job_value)
        .map_err(|e| ApiError::bad_request(format!("job validate request: {e}")))?;
    let opts = crate::jobspec::ParseOptions::for_file("request body \"Job\"");
    let mut response = JobValidateResponse {
        driver_config_validated: true,
        validation_errors: Vec::new(),
        error: String::new(),
        warnings: String::new(),
    };
    match crate::jobspec::check_api_json(&job_text, &opts) {
        Ok(parsed) => {
            response.validation_errors = crate::drivers::check_job(&parsed.job);
            let oversubscription = ctx
                .server
                .state()
                .scheduler_config()
                .memory_oversubscription_enabled;
            response.warnings = parsed
                .warnings
                .iter()
                .map(|w| w.to_string())
                .chain(memory_max_warnings(&parsed.job, oversubscription))
                .collect::<Vec<_>>()
                .join("\n");
        }
        Err(errors) => {
            response.validation_errors = errors.iter().map(|e| e.to_string()).collect();
        }
    }
    if !response.validation_errors.is_empty() {
        response.error = format!("{} validation error(s)", response.validation_errors.len());
    }
    Ok(json_with_index(&response, 0, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_max_is_reported_ignored_only_without_oversubscription() {
        let hcl = "job \"m\" {\n  group \"g\" {\n    task \"a\" {\n      driver = \"exec\"\n      config { command = \"/bin/true\" }\n      resources {\n        memory     = 64\n        memory_max = 128\n      }\n    }\n    task \"b\" {\n      driver = \"exec\"\n      config { command = \"/bin/true\" }\n    }\n  }\n}\n";
        let opts = crate::jobspec::ParseOptions::for_file("m.hcl");
        let job = crate::jobspec::check_hcl(hcl, &opts).unwrap().job;
        let warnings = memory_max_warnings(&job, false);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("\"g.a\""), "{}", warnings[0]);
        assert!(warnings[0].contains("-memory-oversubscription=true"));
        assert!(memory_max_warnings(&job, true).is_empty());
    }
}
