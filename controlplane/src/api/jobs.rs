//! `/v1/jobs`, `/v1/job/:id/...`, `/v1/jobs/parse`, `/v1/validate/job`.

use axum::extract::{Path, State};
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use super::extract::{Body, QueryOptions, RequestBody, WriteOptions};
use super::reply::Reply;
use super::ApiContext;
use crate::model::{Job, DEFAULT_NAMESPACE};
use crate::state::Table;

/// The body of `PUT /v1/jobs` and `/v1/job/:id` (Nomad's `JobRegisterRequest`). The fields
/// noded does not act on are declared, so that they are reported as such rather than as
/// unknown.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct JobRegisterRequest {
    /// Read again from the raw body by the jobspec (so that positions point into what the
    /// client sent); only its presence matters here. A `Value`, not `IgnoredAny`: the body
    /// decoder would report an `IgnoredAny` as an unknown field.
    job: Option<serde_json::Value>,
    enforce_index: bool,
    job_modify_index: u64,
    preserve_counts: bool,
    policy_override: bool,
    eval_priority: i64,
    submission: Option<serde_json::Value>,
    region: String,
    namespace: String,
    #[serde(rename = "SecretID")]
    secret_id: String,
}

impl RequestBody for JobRegisterRequest {
    const WHAT: &'static str = "job register request";
}

impl JobRegisterRequest {
    /// Warnings for what the request asks that noded does not do.
    fn unsupported(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.preserve_counts {
            out.push("PreserveCounts is not acted on yet: the submitted counts are used".into());
        }
        if self.policy_override {
            out.push("PolicyOverride has no effect: noded has no Sentinel policies".into());
        }
        if self.eval_priority != 0 {
            out.push("EvalPriority is not acted on yet: the job's priority is used".into());
        }
        out
    }
}

impl Body<JobRegisterRequest> {
    /// The job, read as API JSON with Nomad's rules from the body as sent: the outer error is
    /// about the request, the inner ones about the job (each naming its field, and its line
    /// and column in the body).
    fn job(&self) -> ApiResult<Result<jobspec::ParsedJob, jobspec::JobspecErrors>> {
        request_job(
            &self.raw,
            self.value.job.is_some(),
            JobRegisterRequest::WHAT,
        )
    }
}

/// The `Job` of a request body, read as API JSON from the body as sent (`what` names the
/// request in errors).
fn request_job(
    raw: &[u8],
    has_job: bool,
    what: &str,
) -> ApiResult<Result<jobspec::ParsedJob, jobspec::JobspecErrors>> {
    if !has_job {
        return Err(ApiError::bad_request(format!(
            "{what}: missing \"Job\" object"
        )));
    }
    let text = std::str::from_utf8(raw)
        .map_err(|e| ApiError::bad_request(format!("{what}: not UTF-8: {e}")))?;
    let mut opts = jobspec::ParseOptions::for_file("request body");
    // The body limit already bounds the text; a job's JSON is larger than its HCL.
    opts.limits.max_bytes = super::MAX_BODY_BYTES;
    Ok(jobspec::check_api_request(text, &opts))
}

/// The body of `POST /v1/job/:id/plan` (Nomad's `JobPlanRequest`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct JobPlanRequest {
    /// Read again from the raw body, as for registration.
    job: Option<serde_json::Value>,
    diff: bool,
    policy_override: bool,
    region: String,
    namespace: String,
    #[serde(rename = "SecretID")]
    secret_id: String,
}

impl RequestBody for JobPlanRequest {
    const WHAT: &'static str = "job plan request";
}

/// `POST /v1/job/:id/plan`: the job checked as registration checks it, then a dry run of the
/// scheduler on a private copy of the state; nothing is written.
pub async fn plan(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    _w: WriteOptions,
    body: Body<JobPlanRequest>,
) -> ApiResult<Reply> {
    let parsed = request_job(&body.raw, body.value.job.is_some(), JobPlanRequest::WHAT)?
        .map_err(|errors| ApiError::bad_request(errors.to_string()))?;
    let job = parsed.job;
    if id != job.id {
        return Err(ApiError::bad_request(format!(
            "job ID {:?} in the body does not match {id:?} in the URL",
            job.id
        )));
    }
    check_job(&job)?;
    let mut warnings = body.ignored_warnings();
    if body.value.policy_override {
        warnings.push("PolicyOverride has no effect: noded has no Sentinel policies".into());
    }
    warnings.extend(parsed.warnings.iter().map(|w| w.to_string()));
    let server = ctx.server()?;
    let oversubscription = server
        .state()
        .scheduler_config()
        .memory_oversubscription_enabled;
    warnings.extend(memory_max_warnings(&job, oversubscription));
    let mut response = server.plan_job(job, body.value.diff)?;
    if !response.warnings.is_empty() {
        warnings.push(std::mem::take(&mut response.warnings));
    }
    response.warnings = warnings.join("\n");
    Reply::json(&response)
}

pub async fn list(State(ctx): State<ApiContext>, q: QueryOptions) -> ApiResult<Reply> {
    let (state, meta) = ctx
        .read(&q, &[Table::Jobs, Table::Allocs, Table::Evals])
        .await?;
    let every_namespace = q.namespace == "*";
    let key = |namespace: &str, id: &str| {
        if every_namespace {
            format!("{namespace}.{id}")
        } else {
            id.to_string()
        }
    };
    let mut stubs: Vec<_> = state
        .jobs(None)
        .into_iter()
        .filter(|j| q.covers(&j.namespace) && j.id.starts_with(&q.prefix))
        .map(|j| j.stub(state.job_summary(&j)))
        .collect();
    stubs.sort_by_cached_key(|s| key(&s.namespace, &s.id));
    Reply::page(stubs, |s| key(&s.namespace, &s.id), &q, meta)
}

pub async fn register(
    State(ctx): State<ApiContext>,
    _w: WriteOptions,
    body: Body<JobRegisterRequest>,
) -> ApiResult<Reply> {
    register_job(&ctx, body, None).await
}

pub async fn register_one(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    _w: WriteOptions,
    body: Body<JobRegisterRequest>,
) -> ApiResult<Reply> {
    register_job(&ctx, body, Some(id)).await
}

async fn register_job(
    ctx: &ApiContext,
    body: Body<JobRegisterRequest>,
    path_id: Option<String>,
) -> ApiResult<Reply> {
    let parsed = body
        .job()?
        .map_err(|errors| ApiError::bad_request(errors.to_string()))?;
    let request = &body.value;
    let job = parsed.job;
    if let Some(id) = path_id {
        if id != job.id {
            return Err(ApiError::bad_request(format!(
                "job ID {:?} in the body does not match {id:?} in the URL",
                job.id
            )));
        }
    }
    check_job(&job)?;
    let mut warnings = body.ignored_warnings();
    warnings.extend(request.unsupported());
    warnings.extend(parsed.warnings.iter().map(|w| w.to_string()));
    let oversubscription = ctx
        .server()?
        .state()
        .scheduler_config()
        .memory_oversubscription_enabled;
    warnings.extend(memory_max_warnings(&job, oversubscription));
    // Checked here for a fast answer, and again when the entry is applied (the check that
    // counts: two submitters may pass this one at once).
    let enforce_index = request.enforce_index.then_some(request.job_modify_index);
    if let Some(expected) = enforce_index {
        check_modify_index(ctx, &job, expected)?;
    }
    let mut response = ctx
        .server()?
        .register_job_enforced(job, enforce_index)
        .await?;
    if !response.warnings.is_empty() {
        warnings.push(std::mem::take(&mut response.warnings));
    }
    response.warnings = warnings.join("\n");
    Reply::write(&response, response.index)
}

/// `EnforceIndex`: the job's current modify index (0 when it does not exist) must be the
/// one the caller saw.
fn check_modify_index(ctx: &ApiContext, job: &Job, expected: u64) -> ApiResult<()> {
    let current = ctx
        .server()?
        .state()
        .job(namespace_of(job), &job.id)
        .map(|j| j.job_modify_index)
        .unwrap_or(0);
    crate::state::check_enforce_index(&job.id, expected, current).map_err(ApiError::bad_request)
}

fn namespace_of(job: &Job) -> &str {
    if job.namespace.is_empty() {
        DEFAULT_NAMESPACE
    } else {
        &job.namespace
    }
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
fn check_job(job: &Job) -> ApiResult<()> {
    let config_errors = crate::drivers::check_job(job);
    if !config_errors.is_empty() {
        return Err(ApiError::bad_request(config_errors.join("\n")));
    }
    let namespace = namespace_of(job);
    if namespace != DEFAULT_NAMESPACE {
        return Err(ApiError::bad_request(format!(
            "job {:?}: namespace {namespace:?} does not exist (only {DEFAULT_NAMESPACE:?} exists)",
            job.id
        )));
    }
    Ok(())
}

pub async fn read(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::Jobs]).await?;
    let job = state
        .job(&q.namespace, &id)
        .ok_or_else(|| job_not_found(&id))?;
    Reply::read(&*job, meta)
}

fn job_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("job {id:?} not found"))
}

pub async fn deregister(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    w: WriteOptions,
) -> ApiResult<Reply> {
    let purge = w.flag("purge")?;
    let response = ctx
        .server()?
        .deregister_job(&w.namespace, &id, purge)
        .await?;
    Reply::write(&response, response.index)
}

pub async fn allocations(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::Allocs]).await?;
    let mut stubs: Vec<_> = state
        .allocs_by_job(&q.namespace, &id)
        .iter()
        .map(|a| a.stub())
        .collect();
    stubs.sort_by(|a, b| b.create_index.cmp(&a.create_index).then(a.id.cmp(&b.id)));
    Reply::read(&stubs, meta)
}

pub async fn evaluations(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::Evals]).await?;
    let mut evals: Vec<_> = state
        .evals_by_job(&q.namespace, &id)
        .iter()
        .map(|e| (**e).clone())
        .collect();
    evals.sort_by(|a, b| b.create_index.cmp(&a.create_index).then(a.id.cmp(&b.id)));
    Reply::read(&evals, meta)
}

pub async fn summary(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::Jobs, Table::Allocs]).await?;
    let job = state
        .job(&q.namespace, &id)
        .ok_or_else(|| job_not_found(&id))?;
    Reply::read(&state.job_summary(&job), meta)
}

pub async fn versions(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    q: QueryOptions,
) -> ApiResult<Reply> {
    let (state, meta) = ctx.read(&q, &[Table::JobVersions]).await?;
    let versions: Vec<Job> = state
        .job_versions(&q.namespace, &id)
        .iter()
        .map(|j| (**j).clone())
        .collect();
    if versions.is_empty() {
        return Err(job_not_found(&id));
    }
    let diffs = if q.flag("diffs")? {
        Some(version_diffs(
            &versions,
            q.string("diff_tag"),
            q.string("diff_version"),
        )?)
    } else {
        None
    };
    Reply::read(
        &serde_json::json!({ "Versions": versions, "Diffs": diffs }),
        meta,
    )
}

/// Nomad's order: `Diffs[i]` compares `versions[i + 1]` (older) to `versions[i]`, so the
/// oldest version has none; with `diff_tag` or `diff_version`, every version is compared to
/// that one instead.
fn version_diffs(
    versions: &[Job],
    diff_tag: &str,
    diff_version: &str,
) -> ApiResult<Vec<crate::jobdiff::JobDiff>> {
    let base = if !diff_tag.is_empty() {
        let found = versions
            .iter()
            .find(|v| v.version_tag.as_ref().is_some_and(|t| t.name == diff_tag));
        Some(found.ok_or_else(|| ApiError::bad_request(format!("tag {diff_tag:?} not found")))?)
    } else if !diff_version.is_empty() {
        let wanted: u64 = diff_version.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "diff_version {diff_version:?} is not a version number"
            ))
        })?;
        let found = versions.iter().find(|v| v.version == wanted);
        Some(found.ok_or_else(|| ApiError::bad_request(format!("version {wanted} not found")))?)
    } else {
        None
    };
    let mut out = Vec::with_capacity(versions.len());
    for (i, new) in versions.iter().enumerate() {
        let old = match base {
            Some(base) => base,
            None => match versions.get(i + 1) {
                Some(older) => older,
                None => break,
            },
        };
        let diff = crate::jobdiff::job_diff(Some(old), Some(new), true)
            .map_err(|e| ApiError::internal(format!("failed to create job diff: {e}")))?;
        out.push(diff);
    }
    Ok(out)
}

/// `POST /v1/jobs/parse`: HCL in, the job as API JSON out (Nomad's `JobsParseRequest`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct JobsParseRequest {
    #[serde(rename = "JobHCL")]
    job_hcl: String,
    #[serde(rename = "HCLv1")]
    hcl_v1: bool,
    variables: String,
    canonicalize: bool,
}

impl RequestBody for JobsParseRequest {
    const WHAT: &'static str = "job parse request";
}

pub async fn parse(_w: WriteOptions, body: Body<JobsParseRequest>) -> ApiResult<Reply> {
    let request = body.value;
    if request.hcl_v1 {
        return Err(ApiError::bad_request(
            "HCLv1 jobspecs are not supported (Nomad removed HCL1 too); send HCL2",
        ));
    }
    if request.job_hcl.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{}: missing \"JobHCL\"",
            JobsParseRequest::WHAT
        )));
    }
    let mut opts = jobspec::ParseOptions::for_file("JobHCL");
    if !request.variables.is_empty() {
        opts.var_file_texts
            .push(("Variables".to_string(), request.variables));
    }
    // The server never reads its own disk on behalf of a request: no file() and friends.
    opts.allow_fs_functions = false;
    let parsed = jobspec::parse_hcl(&request.job_hcl, &opts)
        .map_err(|errors| ApiError::bad_request(errors.to_string()))?;
    // noded's parser always applies Nomad's defaults; `Canonicalize = false` gets the same
    // canonical job (a superset of what Nomad would return).
    let _ = request.canonicalize;
    Reply::json(&parsed.job)
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

pub async fn validate(
    State(ctx): State<ApiContext>,
    _w: WriteOptions,
    body: Body<JobRegisterRequest>,
) -> ApiResult<Reply> {
    let mut response = JobValidateResponse {
        driver_config_validated: true,
        validation_errors: Vec::new(),
        error: String::new(),
        warnings: String::new(),
    };
    let mut warnings = body.ignored_warnings();
    match body.job()? {
        Ok(parsed) => {
            response.validation_errors = crate::drivers::check_job(&parsed.job);
            let oversubscription = ctx
                .server()?
                .state()
                .scheduler_config()
                .memory_oversubscription_enabled;
            warnings.extend(parsed.warnings.iter().map(|w| w.to_string()));
            warnings.extend(memory_max_warnings(&parsed.job, oversubscription));
        }
        Err(errors) => {
            response.validation_errors = errors.iter().map(|e| e.to_string()).collect();
        }
    }
    response.warnings = warnings.join("\n");
    if !response.validation_errors.is_empty() {
        response.error = format!("{} validation error(s)", response.validation_errors.len());
    }
    Reply::json(&response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_max_is_reported_ignored_only_without_oversubscription() {
        let hcl = "job \"m\" {\n  group \"g\" {\n    task \"a\" {\n      driver = \"exec\"\n      config { command = \"/bin/true\" }\n      resources {\n        memory     = 64\n        memory_max = 128\n      }\n    }\n    task \"b\" {\n      driver = \"exec\"\n      config { command = \"/bin/true\" }\n    }\n  }\n}\n";
        let opts = jobspec::ParseOptions::for_file("m.hcl");
        let job = jobspec::check_hcl(hcl, &opts).unwrap().job;
        let warnings = memory_max_warnings(&job, false);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("\"g.a\""), "{}", warnings[0]);
        assert!(warnings[0].contains("-memory-oversubscription=true"));
        assert!(memory_max_warnings(&job, true).is_empty());
    }
}
