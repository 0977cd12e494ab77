//! Job-level rules: identity, the list of groups, the periodic and parameterized blocks,
//! multiregion.

use std::collections::BTreeSet;

use model::{defaults, Job, JobType};

use super::Validator;
use crate::cron;
use crate::error::FieldPath;

impl Validator<'_> {
    pub(super) fn job(&mut self, job: &Job) {
        let root = FieldPath::root();
        let jp = if job.id.is_empty() {
            root.clone()
        } else {
            root.labeled("job", &job.id)
        };
        self.job_identity(job, &jp);
        self.job_groups(job, &jp);
        self.consul_provider(job, &jp);
        self.constraints(&job.constraints, &jp);
        self.affinities(&job.affinities, &jp);
        self.spreads(&job.spreads, &jp);
        if let Some(u) = &job.update {
            if matches!(job.job_type, JobType::Service | JobType::System) {
                self.update(u, &jp.field("update").key("Update"));
            } else {
                self.err(
                    &jp.field("update").key("Update"),
                    format!(
                        "job type {:?} does not allow an update block (rolling updates are for service and system jobs); remove it",
                        job.job_type.as_str()
                    ),
                );
            }
        }
        self.periodic(job, &jp);
        self.parameterized(job, &jp);
        self.multiregion(job, &jp);
    }

    fn job_identity(&mut self, job: &Job, jp: &FieldPath) {
        if job.id.is_empty() {
            self.err(
                &jp.field("id").key("ID"),
                "the job has no id; name it: job \"example\" { … }",
            );
        } else {
            self.id_like(&jp.field("id").key("ID"), "job id", &job.id);
        }
        if job.name.is_empty() {
            self.err(
                &jp.field("name").key("Name"),
                "the job name must not be empty",
            );
        } else if job.name.contains('\0') {
            self.err(
                &jp.field("name").key("Name"),
                "the job name contains a null character",
            );
        }
        if job.namespace.is_empty() {
            self.err(
                &jp.field("namespace").key("Namespace"),
                "the namespace must not be empty",
            );
        }
        if !(defaults::MIN_PRIORITY..=defaults::MAX_PRIORITY).contains(&job.priority) {
            self.err(
                &jp.field("priority").key("Priority"),
                format!(
                    "priority must be between {} and {} (got {})",
                    defaults::MIN_PRIORITY,
                    defaults::MAX_PRIORITY,
                    job.priority
                ),
            );
        }
        for (i, dc) in job.datacenters.iter().enumerate() {
            if dc.is_empty() || dc.contains(char::is_whitespace) {
                self.err(&jp.field("datacenters").index(i).key("Datacenters"), format!("datacenter {dc:?} is not valid: use a name like \"dc1\", or a glob like \"dc*\""));
            }
        }
    }

    fn job_groups(&mut self, job: &Job, jp: &FieldPath) {
        if job.task_groups.is_empty() {
            self.err(
                &jp.key("TaskGroups"),
                "the job has no groups: add a group \"name\" { task \"name\" { … } } block",
            );
        }
        if job.task_groups.len() > self.limits.max_groups {
            self.err(
                &jp.key("TaskGroups"),
                format!(
                    "the job has {} groups, more than the limit of {}",
                    job.task_groups.len(),
                    self.limits.max_groups
                ),
            );
        }
        let mut names = BTreeSet::new();
        for (gi, g) in job.task_groups.iter().enumerate() {
            let gp = jp
                .labeled("group", &g.name)
                .key("TaskGroups")
                .key(&gi.to_string());
            if !g.name.is_empty() && !names.insert(g.name.as_str()) {
                self.err(
                    &gp,
                    format!(
                        "group {:?} is defined twice; group names must be unique",
                        g.name
                    ),
                );
            }
            self.group(job, g, &gp);
        }
    }

    fn periodic(&mut self, job: &Job, jp: &FieldPath) {
        let Some(p) = &job.periodic else {
            return;
        };
        let pp = jp.field("periodic").key("Periodic");
        if !matches!(job.job_type, JobType::Batch | JobType::Sysbatch) {
            self.err(
                &pp,
                format!(
                    "periodic jobs must be of type batch or sysbatch (this one is {})",
                    job.job_type.as_str()
                ),
            );
        }
        if p.enabled != Some(false) {
            let specs: Vec<&String> = if p.spec.is_empty() {
                p.specs.iter().collect()
            } else {
                std::iter::once(&p.spec).chain(p.specs.iter()).collect()
            };
            if specs.is_empty() {
                self.err(
                    &pp,
                    "a periodic block needs cron = \"…\" (or crons = [\"…\"])",
                );
            }
            for (i, spec) in specs.iter().enumerate() {
                let key = if p.spec.is_empty() || i > 0 {
                    "Specs"
                } else {
                    "Spec"
                };
                if let Err(m) = cron::check(spec) {
                    self.err(
                        &pp.field(if key == "Spec" { "cron" } else { "crons" })
                            .key(key),
                        format!("cron expression {spec:?}: {m}"),
                    );
                }
            }
            if p.spec_type != "cron" {
                self.err(
                    &pp,
                    format!(
                        "unknown periodic spec type {:?}; only cron is supported",
                        p.spec_type
                    ),
                );
            }
        }
        if !crate::tz::is_valid(&p.time_zone) {
            self.err(
                &pp.field("time_zone").key("TimeZone"),
                format!(
                    "unknown time zone {:?}; use an IANA name like \"America/New_York\" or \"UTC\"",
                    p.time_zone
                ),
            );
        }
    }

    fn parameterized(&mut self, job: &Job, jp: &FieldPath) {
        let Some(p) = &job.parameterized_job else {
            return;
        };
        let pp = jp.field("parameterized").key("ParameterizedJob");
        if !matches!(job.job_type, JobType::Batch | JobType::Sysbatch) {
            self.err(
                &pp,
                format!(
                    "parameterized jobs must be of type batch or sysbatch (this one is {})",
                    job.job_type.as_str()
                ),
            );
        }
        if !["", "optional", "required", "forbidden"].contains(&p.payload.as_str()) {
            self.err(
                &pp.field("payload").key("Payload"),
                format!(
                    "payload must be \"optional\", \"required\" or \"forbidden\" (got {:?})",
                    p.payload
                ),
            );
        }
        let req: BTreeSet<&String> = p.meta_required.iter().collect();
        for k in &p.meta_optional {
            if req.contains(k) {
                self.err(
                    &pp.field("meta_optional").key("MetaOptional"),
                    format!("meta key {k:?} is both required and optional"),
                );
            }
        }
    }

    fn multiregion(&mut self, job: &Job, jp: &FieldPath) {
        let Some(m) = &job.multiregion else {
            return;
        };
        let mp = jp.field("multiregion").key("Multiregion");
        let mut seen = BTreeSet::new();
        for (i, r) in m.regions.iter().enumerate() {
            let rp = mp
                .labeled("region", &r.name)
                .key("Regions")
                .key(&i.to_string());
            if r.name.is_empty() {
                self.err(&rp, "a multiregion region needs a name");
            } else if !seen.insert(&r.name) {
                self.err(&rp, format!("region {:?} is listed twice", r.name));
            }
            if r.count.unwrap_or(0) < 0 {
                self.err(
                    &rp.field("count").key("Count"),
                    "count must not be negative",
                );
            }
        }
        if let Some(s) = &m.strategy {
            if !["", "fail_all", "fail_local"].contains(&s.on_failure.as_str()) {
                self.err(
                    &mp.field("strategy")
                        .field("on_failure")
                        .key("Strategy")
                        .key("OnFailure"),
                    format!(
                        "on_failure must be \"fail_all\" or \"fail_local\" (got {:?})",
                        s.on_failure
                    ),
                );
            }
            if s.max_parallel < 0 {
                self.err(
                    &mp.field("strategy")
                        .field("max_parallel")
                        .key("Strategy")
                        .key("MaxParallel"),
                    "max_parallel must not be negative",
                );
            }
        }
    }
}
