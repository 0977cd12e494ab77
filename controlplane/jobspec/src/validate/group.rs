//! Group-level rules: name and count, the tasks (each checked by [`super::task`]), the
//! group's blocks (update, migrate, reschedule, ephemeral disk, disconnect, scaling,
//! volumes), and its network and services, whose port labels tasks share.

use std::collections::{BTreeMap, BTreeSet};

use model::{defaults, Job, JobType, TaskGroup};

use super::Validator;
use crate::error::FieldPath;

impl Validator<'_> {
    pub(super) fn group(&mut self, job: &Job, g: &TaskGroup, gp: &FieldPath) {
        self.group_name_and_count(job, g, gp);
        self.group_tasks(job, g, gp);
        if let Some(r) = &g.restart_policy {
            self.restart(r, &gp.field("restart").key("RestartPolicy"));
        }
        if let Some(u) = &g.update {
            if matches!(job.job_type, JobType::Service | JobType::System) {
                self.update(u, &gp.field("update").key("Update"));
                if u.auto_promote == Some(true) && u.canary.unwrap_or(0) == 0 {
                    self.err(
                        &gp.field("update")
                            .field("auto_promote")
                            .key("Update")
                            .key("AutoPromote"),
                        "auto_promote needs canary > 0",
                    );
                }
            } else if job.update.is_none() {
                // Nomad's rule: only service and system jobs roll out under deployments. (A
                // job-level block is reported once, at the job.)
                self.err(
                    &gp.field("update").key("Update"),
                    format!(
                        "job type {:?} does not allow an update block (rolling updates are for service and system jobs); remove it",
                        job.job_type.as_str()
                    ),
                );
            }
        }
        self.migrate(g, gp);
        self.group_reschedule(job, g, gp);
        self.group_max_run_duration(job, g, gp);
        self.ephemeral_disk(g, gp);
        self.disconnect(g, gp);
        self.group_scaling(g, gp);
        self.volumes(g, gp);
        self.group_networks_and_services(g, gp);
        self.constraints(&g.constraints, gp);
        self.affinities(&g.affinities, gp);
        self.spreads(&g.spreads, gp);
    }

    /// `max_run_duration`: positive, and only for batch and sysbatch jobs (Nomad's rules).
    fn group_max_run_duration(&mut self, job: &Job, g: &TaskGroup, gp: &FieldPath) {
        let Some(d) = g.max_run_duration else {
            return;
        };
        let p = gp.field("max_run_duration").key("MaxRunDuration");
        if d.is_zero() {
            self.err(
                &p,
                "max_run_duration must be greater than zero (e.g. \"1h\"); leave it out for no limit",
            );
        }
        if !matches!(job.job_type, JobType::Batch | JobType::Sysbatch) {
            self.err(
                &p,
                format!(
                    "job type {:?} does not allow max_run_duration: only batch and sysbatch jobs have one",
                    job.job_type.as_str()
                ),
            );
        }
    }

    fn group_name_and_count(&mut self, job: &Job, g: &TaskGroup, gp: &FieldPath) {
        if g.name.is_empty() {
            self.err(gp, "the group needs a name: group \"web\" { … }");
        } else {
            self.id_like(gp, "group name", &g.name);
        }
        let cp = gp.field("count").key("Count");
        if g.count < 0 {
            self.err(&cp, format!("count must not be negative (got {})", g.count));
        } else if g.count > self.limits.max_count {
            self.err(
                &cp,
                format!(
                    "count {} is more than the limit of {}",
                    g.count, self.limits.max_count
                ),
            );
        }
        if job.job_type == JobType::System && g.count > 1 {
            self.err(
                &cp,
                format!(
                    "system jobs run one allocation per node; remove count (got {})",
                    g.count
                ),
            );
        }
    }

    fn group_tasks(&mut self, job: &Job, g: &TaskGroup, gp: &FieldPath) {
        if g.tasks.is_empty() {
            self.err(
                &gp.key("Tasks"),
                "the group has no tasks: add task \"name\" { driver = … }",
            );
        }
        if g.tasks.len() > self.limits.max_groups {
            self.err(
                &gp.key("Tasks"),
                format!(
                    "the group has {} tasks, more than the limit of {}",
                    g.tasks.len(),
                    self.limits.max_groups
                ),
            );
        }
        let mut names = BTreeSet::new();
        let mut leaders = 0;
        for (ti, t) in g.tasks.iter().enumerate() {
            let tp = gp
                .labeled("task", &t.name)
                .key("Tasks")
                .key(&ti.to_string());
            if !t.name.is_empty() && !names.insert(t.name.as_str()) {
                self.err(
                    &tp,
                    format!(
                        "task {:?} is defined twice in this group; task names must be unique",
                        t.name
                    ),
                );
            }
            if t.leader {
                leaders += 1;
            }
            self.task(job, g, t, &tp);
        }
        if leaders > 1 {
            self.err(
                gp,
                format!("only one task may be the leader (found {leaders})"),
            );
        }
    }

    fn group_reschedule(&mut self, job: &Job, g: &TaskGroup, gp: &FieldPath) {
        let Some(r) = &g.reschedule_policy else {
            return;
        };
        let rp = gp.field("reschedule").key("ReschedulePolicy");
        if matches!(job.job_type, JobType::System | JobType::Sysbatch) {
            let disabled = r.attempts.unwrap_or(0) == 0 && r.unlimited != Some(true);
            if !disabled {
                self.err(
                    &rp,
                    "system and sysbatch jobs are not rescheduled; remove the reschedule block",
                );
            }
        } else {
            self.reschedule(r, &rp);
        }
    }

    fn ephemeral_disk(&mut self, g: &TaskGroup, gp: &FieldPath) {
        let Some(d) = &g.ephemeral_disk else {
            return;
        };
        let size = d.size_mb.unwrap_or(defaults::EPHEMERAL_DISK_MB);
        if size < 0 {
            self.err(
                &gp.field("ephemeral_disk")
                    .field("size")
                    .key("EphemeralDisk")
                    .key("SizeMB"),
                "size must not be negative",
            );
        }
        for (ti, t) in g.tasks.iter().enumerate() {
            let Some(l) = t.log_config.as_ref().filter(|l| !l.disabled) else {
                continue;
            };
            let logs = l.max_files.saturating_mul(l.max_file_size_mb);
            if size > 0 && logs >= size {
                let lp = gp
                    .labeled("task", &t.name)
                    .key("Tasks")
                    .key(&ti.to_string())
                    .field("logs")
                    .key("LogConfig");
                self.err(&lp, format!("the task's logs may take {logs} MB (max_files × max_file_size), not less than the group's {size} MB ephemeral disk; grow the disk or shrink the logs"));
            }
        }
    }

    fn disconnect(&mut self, g: &TaskGroup, gp: &FieldPath) {
        let Some(d) = &g.disconnect else {
            return;
        };
        let dp = gp.field("disconnect").key("Disconnect");
        if let Some(r) = &d.reconcile {
            if ![
                "best_score",
                "keep_original",
                "keep_replacement",
                "longest_running",
            ]
            .contains(&r.as_str())
            {
                self.err(&dp.field("reconcile").key("Reconcile"), format!("reconcile must be best_score, keep_original, keep_replacement or longest_running (got {r:?})"));
            }
        }
        if d.lost_after.is_some() && d.stop_on_client_after.is_some() {
            self.err(
                &dp,
                "lost_after and stop_on_client_after cannot both be set",
            );
        }
        if g.max_client_disconnect.is_some() || g.stop_after_client_disconnect.is_some() {
            self.err(&dp, "use either the disconnect block or the older max_client_disconnect/stop_after_client_disconnect, not both");
        }
    }

    fn group_scaling(&mut self, g: &TaskGroup, gp: &FieldPath) {
        let Some(s) = &g.scaling else {
            return;
        };
        let cp = gp.field("count").key("Count");
        let sp = gp.field("scaling").key("Scaling");
        let (min, max) = (s.min.unwrap_or(g.count), s.max.unwrap_or(0));
        if s.max.is_none() {
            self.err(&sp.field("max").key("Max"), "scaling needs max");
        }
        if min < 0 || max < 0 {
            self.err(&sp, "scaling min and max must not be negative");
        } else if min > max && s.max.is_some() {
            self.err(
                &sp.field("min").key("Min"),
                format!("scaling min ({min}) must not be more than max ({max})"),
            );
        } else if s.max.is_some() && (g.count < min || g.count > max) {
            self.err(
                &cp,
                format!(
                    "count ({}) must be between scaling min ({min}) and max ({max})",
                    g.count
                ),
            );
        }
    }

    fn volumes(&mut self, g: &TaskGroup, gp: &FieldPath) {
        for (name, vr) in &g.volumes {
            let vp = gp.labeled("volume", name).key("Volumes").key(name);
            match vr.volume_type.as_str() {
                "host" | "csi" => {}
                other => self.err(
                    &vp.field("type").key("Type"),
                    format!("volume type must be \"host\" or \"csi\" (got {other:?})"),
                ),
            }
            if vr.source.is_empty() {
                self.err(&vp.field("source").key("Source"), "a volume needs a source");
            }
            if vr.per_alloc && vr.volume_type != "csi" {
                self.err(
                    &vp.field("per_alloc").key("PerAlloc"),
                    "per_alloc is only for csi volumes",
                );
            }
            if vr.volume_type == "csi" {
                if ![
                    "",
                    "single-node-reader-only",
                    "single-node-writer",
                    "multi-node-reader-only",
                    "multi-node-single-writer",
                    "multi-node-multi-writer",
                ]
                .contains(&vr.access_mode.as_str())
                {
                    self.err(
                        &vp.field("access_mode").key("AccessMode"),
                        format!("unknown access_mode {:?}", vr.access_mode),
                    );
                }
                if !["", "file-system", "block-device"].contains(&vr.attachment_mode.as_str()) {
                    self.err(&vp.field("attachment_mode").key("AttachmentMode"), format!("attachment_mode must be \"file-system\" or \"block-device\" (got {:?})", vr.attachment_mode));
                }
            }
        }
    }

    /// The group's network, networks left in tasks' resources (deprecated), then the
    /// group's services, which may name any of their port labels.
    fn group_networks_and_services(&mut self, g: &TaskGroup, gp: &FieldPath) {
        if g.networks.len() > 1 {
            self.err(
                &gp.key("Networks"),
                format!(
                    "a group takes one network block (found {})",
                    g.networks.len()
                ),
            );
        }
        let mut labels: BTreeMap<String, String> = BTreeMap::new();
        for (ni, n) in g.networks.iter().enumerate() {
            self.network(
                n,
                &gp.field("network").key("Networks").key(&ni.to_string()),
                &mut labels,
                true,
            );
        }
        for (ti, t) in g.tasks.iter().enumerate() {
            if let Some(r) = &t.resources {
                for (ni, n) in r.networks.iter().enumerate() {
                    let np = gp
                        .labeled("task", &t.name)
                        .key("Tasks")
                        .key(&ti.to_string())
                        .field("resources")
                        .field("network")
                        .key("Resources")
                        .key("Networks")
                        .key(&ni.to_string());
                    self.network(n, &np, &mut labels, false);
                }
            }
        }
        for (si, s) in g.services.iter().enumerate() {
            self.service(
                s,
                &gp.field("service")
                    .index(si)
                    .key("Services")
                    .key(&si.to_string()),
                &labels,
                g,
                None,
            );
        }
    }
}
