//! What `job status` shows of a periodic or parameterized parent instead of allocations
//! (it has none): its schedule or dispatch settings, its children by status, and the
//! children themselves, newest first.

use anyhow::anyhow;
use controlplane::model::{Job, JobListStub, JobSummary};
use controlplane::server::periodic::{local_zone_name, next_launch};

use super::super::format::{kv, table, timestamp};
use super::super::http::ApiClient;

/// The children of `job`, newest first (`GET /v1/jobs?prefix=<job>/`, those naming it as
/// their parent).
pub(super) async fn fetch_children(api: &ApiClient, job: &Job) -> anyhow::Result<Vec<JobListStub>> {
    let stubs: Vec<JobListStub> = api
        .get_now("/v1/jobs", &[("prefix", format!("{}/", job.id))])
        .await
        .map_err(|e| anyhow!("Error querying the children of job {:?}: {e}", job.id))?;
    let mut children: Vec<JobListStub> = stubs
        .into_iter()
        .filter(|c| c.parent_id == job.id)
        .collect();
    children.sort_by(|a, b| b.submit_time.cmp(&a.submit_time).then(b.id.cmp(&a.id)));
    Ok(children)
}

/// The parent's sections: for a periodic job its next launch and previously launched jobs,
/// for a parameterized one its settings and dispatched jobs; `now` in Unix nanoseconds.
pub(super) fn render_parent(
    job: &Job,
    summary: &JobSummary,
    children: &[JobListStub],
    now: i64,
) -> String {
    let mut out = String::new();
    if job.is_periodic() {
        out.push_str(&kv(&[("Next Periodic Launch", next_launch_text(job, now))]));
    }
    if let Some(p) = job
        .parameterized_job
        .as_ref()
        .filter(|_| job.is_parameterized())
    {
        out.push_str("\nParameterized Job\n");
        out.push_str(&kv(&[
            ("Payload", p.payload.clone()),
            ("Required Metadata", p.meta_required.join(", ")),
            ("Optional Metadata", p.meta_optional.join(", ")),
        ]));
    }
    let (summary_title, list_title) = if job.is_parameterized() {
        ("Parameterized Job Summary", "Dispatched Jobs")
    } else {
        ("Children Job Summary", "Previously Launched Jobs")
    };
    let counts = summary.children.clone().unwrap_or_default();
    out.push_str(&format!("\n{summary_title}\n"));
    out.push_str(&table(&[
        vec!["Pending".into(), "Running".into(), "Dead".into()],
        vec![
            counts.pending.to_string(),
            counts.running.to_string(),
            counts.dead.to_string(),
        ],
    ]));
    out.push_str(&format!("\n{list_title}\n"));
    if children.is_empty() {
        out.push_str(if job.is_parameterized() {
            "No dispatched instances of parameterized job found\n"
        } else {
            "No instances of periodic job found\n"
        });
        return out;
    }
    let mut rows = vec![vec!["ID".to_string(), "Status".to_string()]];
    rows.extend(
        children
            .iter()
            .map(|c| vec![c.id.clone(), c.status.as_str().to_string()]),
    );
    out.push_str(&table(&rows));
    out
}

/// "2026-05-01T10:00:00Z (12s from now)", or why there is none.
fn next_launch_text(job: &Job, now: i64) -> String {
    if !job.is_periodic_active() {
        return "none (the job is stopped or its periodic block disabled)".into();
    }
    match next_launch(job, now, &local_zone_name()) {
        Ok(Some(next)) => {
            let secs = (next - now).div_euclid(1_000_000_000);
            format!("{} ({}s from now)", timestamp(next), secs)
        }
        Ok(None) => "none (the schedule never runs again)".into(),
        Err(e) => format!("unknown: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use controlplane::model::{
        JobChildrenSummary, JobStatus, ParameterizedJobConfig, PeriodicConfig,
    };

    fn stub(id: &str, parent: &str, status: JobStatus) -> JobListStub {
        let mut job = Job {
            id: id.into(),
            parent_id: parent.into(),
            status,
            ..Default::default()
        };
        job.canonicalize();
        job.stub(Default::default())
    }

    #[test]
    fn a_periodic_parent_shows_its_next_launch_and_previous_children() {
        let mut job = Job {
            id: "tick".into(),
            periodic: Some(PeriodicConfig {
                specs: vec!["0 * * * *".into()],
                time_zone: "UTC".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        job.canonicalize();
        let summary = JobSummary {
            children: Some(JobChildrenSummary {
                pending: 0,
                running: 1,
                dead: 2,
            }),
            ..Default::default()
        };
        let children = [stub("tick/periodic-3600", "tick", JobStatus::Running)];
        // 00:59:30 UTC: the next launch is 30 s away.
        let out = render_parent(&job, &summary, &children, 3_570_000_000_000);
        assert!(out.contains("Next Periodic Launch"), "{out}");
        assert!(out.contains("(30s from now)"), "{out}");
        assert!(out.contains("Children Job Summary"), "{out}");
        assert!(out.contains("Previously Launched Jobs"), "{out}");
        assert!(out.contains("tick/periodic-3600"), "{out}");
    }

    #[test]
    fn a_parameterized_parent_shows_its_settings_and_dispatched_jobs() {
        let job = Job {
            id: "work".into(),
            parameterized_job: Some(ParameterizedJobConfig {
                payload: "required".into(),
                meta_required: vec!["input".into()],
                meta_optional: vec![],
            }),
            ..Default::default()
        };
        let out = render_parent(&job, &JobSummary::default(), &[], 0);
        assert!(out.contains("Parameterized Job\n"), "{out}");
        assert!(out.contains("required"), "{out}");
        assert!(out.contains("Dispatched Jobs"), "{out}");
        assert!(out.contains("No dispatched instances"), "{out}");
    }
}
