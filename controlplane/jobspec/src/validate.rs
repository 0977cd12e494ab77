//! Nomad's validation rules for a job, all applied in one pass so every problem is reported
//! together. Each error names the field (`group "web" → task "api" → resources.memory`), what
//! is wrong and what would be valid; when the job came from a file, the decoder's position
//! table places it at file:line:col.
//!
//! Also [`unsupported_warnings`]: the fields noded keeps but its runtime does not act on yet.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::cron;
use super::error::{
    lookup_pos, sort_errors, FieldPath, JobspecError, JobspecErrors, Positions, Warning,
};
use super::limits::Limits;
use super::schema::{self, Kind, Schema};
use model::duration::format_go;
use model::{
    defaults, Affinity, Constraint, Job, JobType, NetworkResource, Resources, RestartPolicy,
    Service, Spread, Task, TaskGroup, UpdateStrategy,
};

/// Validates a job with noded's default limits. Pure; the server runs it on every register.
pub fn validate(job: &Job) -> Result<Vec<Warning>, JobspecErrors> {
    validate_with(job, &Limits::default())
}

/// Validates a job with the given limits (for `count`, list lengths).
pub fn validate_with(job: &Job, limits: &Limits) -> Result<Vec<Warning>, JobspecErrors> {
    validate_at(job, limits, &Positions::new())
}

pub(crate) fn validate_at(
    job: &Job,
    limits: &Limits,
    positions: &Positions,
) -> Result<Vec<Warning>, JobspecErrors> {
    let mut v = Validator {
        errors: Vec::new(),
        warnings: Vec::new(),
        positions,
        limits,
    };
    v.job(job);
    if v.errors.is_empty() {
        Ok(v.warnings)
    } else {
        sort_errors(&mut v.errors);
        Err(JobspecErrors(v.errors))
    }
}

struct Validator<'a> {
    errors: Vec<JobspecError>,
    warnings: Vec<Warning>,
    positions: &'a Positions,
    limits: &'a Limits,
}

const PORT_MAX: i64 = 65_535;
const MIN_CPU_MHZ: i64 = 1;
const MIN_MEMORY_MB: i64 = 10;
const RESTART_MIN_INTERVAL: Duration = Duration::from_secs(5);
const RESCHEDULE_MIN_DELAY: Duration = Duration::from_secs(5);
const MAX_ID_LEN: usize = 128;

const CONSTRAINT_OPERATORS: &[&str] = &[
    "=",
    "==",
    "is",
    "!=",
    "not",
    ">",
    ">=",
    "<",
    "<=",
    "regexp",
    "version",
    "semver",
    "distinct_hosts",
    "distinct_property",
    "set_contains",
    "set_contains_all",
    "set_contains_any",
    "is_set",
    "is_not_set",
];
const AFFINITY_OPERATORS: &[&str] = &[
    "=",
    "==",
    "is",
    "!=",
    "not",
    ">",
    ">=",
    "<",
    "<=",
    "regexp",
    "version",
    "semver",
    "set_contains",
    "set_contains_all",
    "set_contains_any",
];

impl Validator<'_> {
    fn err(&mut self, path: &FieldPath, msg: impl Into<String>) {
        let pos = lookup_pos(self.positions, path.api_key());
        self.errors
            .push(JobspecError::new(pos, path.to_string(), msg));
    }

    fn warn(&mut self, path: &FieldPath, msg: impl Into<String>) {
        let pos = lookup_pos(self.positions, path.api_key());
        self.warnings.push(Warning::new(pos, path.to_string(), msg));
    }

    fn job(&mut self, job: &Job) {
        let root = FieldPath::root();
        let jp = if job.id.is_empty() {
            root.clone()
        } else {
            root.labeled("job", &job.id)
        };
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
        self.constraints(&job.constraints, &jp);
        self.affinities(&job.affinities, &jp);
        self.spreads(&job.spreads, &jp);
        if let Some(u) = &job.update {
            if matches!(job.job_type, JobType::Service | JobType::System) {
                self.update(u, &jp.field("update").key("Update"));
            }
        }
        if let Some(p) = &job.periodic {
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
            if !super::tz::is_valid(&p.time_zone) {
                self.err(&pp.field("time_zone").key("TimeZone"), format!("unknown time zone {:?}; use an IANA name like \"America/New_York\" or \"UTC\"", p.time_zone));
            }
        }
        if let Some(p) = &job.parameterized_job {
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
        if let Some(m) = &job.multiregion {
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

    fn id_like(&mut self, path: &FieldPath, what: &str, id: &str) {
        if id.contains(' ') {
            self.err(
                path,
                format!("the {what} {id:?} contains a space; use letters, digits, '-', '_' or '.'"),
            );
        }
        if id.contains('\0') {
            self.err(path, format!("the {what} contains a null character"));
        }
        if id.chars().count() > MAX_ID_LEN {
            self.err(
                path,
                format!("the {what} is longer than {MAX_ID_LEN} characters"),
            );
        }
    }

    fn group(&mut self, job: &Job, g: &TaskGroup, gp: &FieldPath) {
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
            }
        }
        if let Some(m) = &g.migrate {
            let mp = gp.field("migrate").key("Migrate");
            if let Some(hc) = &m.health_check {
                if !["checks", "task_states"].contains(&hc.as_str()) {
                    self.err(
                        &mp.field("health_check").key("HealthCheck"),
                        format!("health_check must be \"checks\" or \"task_states\" (got {hc:?})"),
                    );
                }
            }
            if m.max_parallel.unwrap_or(1) < 0 {
                self.err(
                    &mp.field("max_parallel").key("MaxParallel"),
                    "max_parallel must not be negative",
                );
            }
            if let (Some(min), Some(dl)) = (m.min_healthy_time, m.healthy_deadline) {
                if min >= dl && !dl.is_zero() {
                    self.err(
                        &mp.field("min_healthy_time").key("MinHealthyTime"),
                        format!(
                            "min_healthy_time ({}) must be less than healthy_deadline ({})",
                            format_go(min),
                            format_go(dl)
                        ),
                    );
                }
            }
        }
        if let Some(r) = &g.reschedule_policy {
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
        if let Some(d) = &g.ephemeral_disk {
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
        if let Some(d) = &g.disconnect {
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
        if let Some(s) = &g.scaling {
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
        // Volumes.
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
        self.constraints(&g.constraints, gp);
        self.affinities(&g.affinities, gp);
        self.spreads(&g.spreads, gp);
    }

    fn network(
        &mut self,
        n: &NetworkResource,
        np: &FieldPath,
        labels: &mut BTreeMap<String, String>,
        group: bool,
    ) {
        let mode = n.mode.as_str();
        if !(mode.is_empty()
            || ["host", "bridge", "none"].contains(&mode)
            || mode.starts_with("cni/"))
        {
            self.err(
                &np.field("mode").key("Mode"),
                format!("network mode must be host, bridge, none or cni/<name> (got {mode:?})"),
            );
        }
        if !group {
            self.warn(
                np,
                "a network block inside resources is deprecated; move it to the group",
            );
        }
        let mut statics: BTreeMap<(i64, String), String> = BTreeMap::new();
        for ports in [&n.reserved_ports, &n.dynamic_ports] {
            for p in ports {
                let pp = np.labeled("port", &p.label).key("Port").key(&p.label);
                if p.label.is_empty() {
                    self.err(&pp, "a port needs a label: port \"http\" { … }");
                    continue;
                }
                if let Some(prev) = labels.insert(p.label.to_lowercase(), p.label.clone()) {
                    self.err(&pp, format!("port label {:?} collides with {prev:?} (labels are compared ignoring case); rename one", p.label));
                }
                if p.value < 0 || p.value > PORT_MAX {
                    self.err(
                        &pp.field("static").key("Value"),
                        format!("static port {} is out of range; use 1-{PORT_MAX}", p.value),
                    );
                }
                if p.to < -1 || p.to > PORT_MAX {
                    self.err(&pp.field("to").key("To"), format!("to = {} is out of range; use 0-{PORT_MAX}, or -1 for the same as the host port", p.to));
                }
                if p.value > 0 {
                    if let Some(prev) =
                        statics.insert((p.value, p.host_network.clone()), p.label.clone())
                    {
                        if !p.ignore_collision {
                            self.err(
                                &pp.field("static").key("Value"),
                                format!("static port {} is also used by port {prev:?}", p.value),
                            );
                        }
                    }
                }
            }
        }
        if n.mbits.is_some() {
            self.warn(
                &np.field("mbits").key("MBits"),
                "mbits is deprecated and ignored",
            );
        }
    }

    fn task(&mut self, job: &Job, g: &TaskGroup, t: &Task, tp: &FieldPath) {
        if t.name.is_empty() {
            self.err(tp, "the task needs a name: task \"api\" { … }");
        } else if t.name.contains('/') || t.name.contains('\0') {
            self.err(
                tp,
                format!(
                    "task name {:?} must not contain '/' or a null character",
                    t.name
                ),
            );
        }
        if t.driver.is_empty() {
            self.err(
                &tp.field("driver").key("Driver"),
                "the task has no driver; set driver = \"exec\" (or raw_exec, docker, …)",
            );
        }
        if matches!(t.driver.as_str(), "exec" | "raw_exec" | "exec2") {
            let cp = tp.field("config").key("Config");
            match t.config.get("command") {
                None => self.err(
                    &cp,
                    format!(
                        "the {} driver needs config {{ command = \"/path/to/program\" }}",
                        t.driver
                    ),
                ),
                Some(serde_json::Value::String(s)) if s.is_empty() => {
                    self.err(&cp.field("command"), "command must not be empty")
                }
                Some(serde_json::Value::String(_)) => {}
                Some(other) => self.err(
                    &cp.field("command"),
                    format!("command must be a string, got {other}"),
                ),
            }
            if let Some(args) = t.config.get("args") {
                let ok = args
                    .as_array()
                    .is_some_and(|a| a.iter().all(serde_json::Value::is_string));
                if !ok {
                    self.err(
                        &cp.field("args"),
                        "args must be a list of strings, like args = [\"-c\", \"echo hi\"]",
                    );
                }
            }
        }
        if let Some(r) = &t.resources {
            self.resources(r, &tp.field("resources").key("Resources"));
        }
        // A task inherits the group's policy; only its own changes need checking again.
        if let Some(r) = t
            .restart_policy
            .as_ref()
            .filter(|r| Some(*r) != g.restart_policy.as_ref())
        {
            self.restart(r, &tp.field("restart").key("RestartPolicy"));
        }
        if let Some(l) = &t.log_config {
            let lp = tp.field("logs").key("LogConfig");
            if l.max_files < 1 {
                self.err(
                    &lp.field("max_files").key("MaxFiles"),
                    format!("max_files must be at least 1 (got {})", l.max_files),
                );
            }
            if l.max_file_size_mb < 1 {
                self.err(
                    &lp.field("max_file_size").key("MaxFileSizeMB"),
                    format!(
                        "max_file_size must be at least 1 MB (got {})",
                        l.max_file_size_mb
                    ),
                );
            }
        }
        if let Some(l) = &t.lifecycle {
            let lp = tp.field("lifecycle").key("Lifecycle");
            match l.hook.as_str() {
                "prestart" | "poststart" => {}
                "poststop" if l.sidecar => self.err(
                    &lp.field("sidecar").key("Sidecar"),
                    "a poststop task cannot be a sidecar",
                ),
                "poststop" => {}
                "" => self.err(
                    &lp.field("hook").key("Hook"),
                    "lifecycle needs hook = \"prestart\", \"poststart\" or \"poststop\"",
                ),
                other => self.err(
                    &lp.field("hook").key("Hook"),
                    format!(
                        "hook must be \"prestart\", \"poststart\" or \"poststop\" (got {other:?})"
                    ),
                ),
            }
        }
        for (ai, a) in t.artifacts.iter().enumerate() {
            let ap = tp
                .field("artifact")
                .index(ai)
                .key("Artifacts")
                .key(&ai.to_string());
            if a.getter_source.is_empty() {
                self.err(
                    &ap.field("source").key("GetterSource"),
                    "an artifact needs a source URL",
                );
            }
            if !["any", "file", "dir"].contains(&a.getter_mode.as_str()) {
                self.err(
                    &ap.field("mode").key("GetterMode"),
                    format!(
                        "mode must be \"any\", \"file\" or \"dir\" (got {:?})",
                        a.getter_mode
                    ),
                );
            }
            if let Some(dest) = &a.relative_dest {
                if escapes_alloc_dir(dest) {
                    self.err(
                        &ap.field("destination").key("RelativeDest"),
                        format!("destination {dest:?} escapes the allocation directory"),
                    );
                }
            }
        }
        for (i, tm) in t.templates.iter().enumerate() {
            let tmp = tp
                .field("template")
                .index(i)
                .key("Templates")
                .key(&i.to_string());
            if tm.source_path.is_empty() && tm.embedded_tmpl.is_empty() {
                self.err(&tmp, "a template needs data = \"…\" or source = \"path\"");
            }
            if !tm.source_path.is_empty() && !tm.embedded_tmpl.is_empty() {
                self.err(&tmp, "a template takes data or source, not both");
            }
            if tm.dest_path.is_empty() {
                self.err(
                    &tmp.field("destination").key("DestPath"),
                    "a template needs a destination",
                );
            } else if escapes_alloc_dir(&tm.dest_path) {
                self.err(
                    &tmp.field("destination").key("DestPath"),
                    format!(
                        "destination {:?} escapes the allocation directory",
                        tm.dest_path
                    ),
                );
            }
            match tm.change_mode.as_str() {
                "noop" | "restart" => {}
                "signal" if tm.change_signal.is_empty() => self.err(
                    &tmp.field("change_signal").key("ChangeSignal"),
                    "change_mode \"signal\" needs change_signal",
                ),
                "signal" => {}
                "script" if tm.change_script.is_none() => self.err(
                    &tmp.field("change_script").key("ChangeScript"),
                    "change_mode \"script\" needs a change_script block",
                ),
                "script" => {}
                other => self.err(
                    &tmp.field("change_mode").key("ChangeMode"),
                    format!("change_mode must be noop, restart, signal or script (got {other:?})"),
                ),
            }
            if let Some(cs) = &tm.change_script {
                if cs.command.is_empty() {
                    self.err(
                        &tmp.field("change_script")
                            .field("command")
                            .key("ChangeScript")
                            .key("Command"),
                        "change_script needs a command",
                    );
                }
            }
            if u32::from_str_radix(&tm.perms, 8).is_err() || tm.perms.len() > 4 {
                self.err(
                    &tmp.field("perms").key("Perms"),
                    format!(
                        "perms must be an octal mode like \"0644\" (got {:?})",
                        tm.perms
                    ),
                );
            }
            if let Some(w) = &tm.wait {
                if let (Some(min), Some(max)) = (w.min, w.max) {
                    if min > max {
                        self.err(
                            &tmp.field("wait").key("Wait"),
                            format!(
                                "wait min ({}) must not be more than max ({})",
                                format_go(min),
                                format_go(max)
                            ),
                        );
                    }
                }
            }
        }
        if let Some(v) = &t.vault {
            let vp = tp.field("vault").key("Vault");
            match v.change_mode.as_str() {
                "noop" | "restart" => {}
                "signal" if v.change_signal.is_empty() => self.err(
                    &vp.field("change_signal").key("ChangeSignal"),
                    "change_mode \"signal\" needs change_signal",
                ),
                "signal" => {}
                other => self.err(
                    &vp.field("change_mode").key("ChangeMode"),
                    format!("change_mode must be noop, restart or signal (got {other:?})"),
                ),
            }
        }
        if t.dispatch_payload.is_some() && job.parameterized_job.is_none() {
            self.err(
                &tp.field("dispatch_payload").key("DispatchPayload"),
                "dispatch_payload is only for parameterized jobs (add a parameterized block)",
            );
        }
        for (i, vm) in t.volume_mounts.iter().enumerate() {
            let vp = tp
                .field("volume_mount")
                .index(i)
                .key("VolumeMounts")
                .key(&i.to_string());
            if !g.volumes.contains_key(&vm.volume) {
                let known: Vec<&String> = g.volumes.keys().collect();
                self.err(&vp.field("volume").key("Volume"), format!("volume_mount refers to volume {:?}, which the group does not declare (declared: {known:?})", vm.volume));
            }
            if vm.destination.is_empty() {
                self.err(
                    &vp.field("destination").key("Destination"),
                    "a volume_mount needs a destination",
                );
            }
            if !["", "private", "host-to-task", "bidirectional"]
                .contains(&vm.propagation_mode.as_str())
            {
                self.err(&vp.field("propagation_mode").key("PropagationMode"), format!("propagation_mode must be private, host-to-task or bidirectional (got {:?})", vm.propagation_mode));
            }
        }
        if let Some(c) = &t.csi_plugin_config {
            let cp = tp.field("csi_plugin").key("CSIPluginConfig");
            if c.id.is_empty() {
                self.err(&cp.field("id").key("ID"), "csi_plugin needs an id");
            }
            if !["controller", "node", "monolith"].contains(&c.plugin_type.as_str()) {
                self.err(
                    &cp.field("type").key("Type"),
                    format!(
                        "csi_plugin type must be controller, node or monolith (got {:?})",
                        c.plugin_type
                    ),
                );
            }
        }
        for (i, s) in t.scaling_policies.iter().enumerate() {
            let sp = tp
                .field("scaling")
                .index(i)
                .key("ScalingPolicies")
                .key(&i.to_string());
            if let (Some(min), Some(max)) = (s.min, s.max) {
                if min > max {
                    self.err(
                        &sp,
                        format!("scaling min ({min}) must not be more than max ({max})"),
                    );
                }
            }
        }
        let mut ids = BTreeSet::new();
        for (i, id) in t.identities.iter().chain(t.identity.iter()).enumerate() {
            let ip = tp.field("identity").index(i).key("Identities");
            let name = if id.name.is_empty() {
                "default"
            } else {
                id.name.as_str()
            };
            if !ids.insert(name.to_string()) {
                self.err(&ip, format!("identity {name:?} is defined twice"));
            }
            if !["", "noop", "restart", "signal"].contains(&id.change_mode.as_str()) {
                self.err(
                    &ip.field("change_mode"),
                    format!(
                        "change_mode must be noop, restart or signal (got {:?})",
                        id.change_mode
                    ),
                );
            }
        }
        let mut secret_names = BTreeSet::new();
        for (i, s) in t.secrets.iter().enumerate() {
            let sp = tp
                .labeled("secret", &s.name)
                .key("Secrets")
                .key(&i.to_string());
            if !secret_names.insert(&s.name) {
                self.err(&sp, format!("secret {:?} is defined twice", s.name));
            }
            if s.provider.is_empty() {
                self.err(
                    &sp.field("provider").key("Provider"),
                    "a secret needs a provider",
                );
            }
        }
        for k in t.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                self.err(
                    &tp.field("env").key("Env"),
                    format!("environment variable name {k:?} is not valid"),
                );
            }
        }
        let labels: BTreeMap<String, String> = g
            .networks
            .iter()
            .chain(t.resources.iter().flat_map(|r| r.networks.iter()))
            .flat_map(|n| n.reserved_ports.iter().chain(n.dynamic_ports.iter()))
            .map(|p| (p.label.to_lowercase(), p.label.clone()))
            .collect();
        for (si, s) in t.services.iter().enumerate() {
            self.service(
                s,
                &tp.field("service")
                    .index(si)
                    .key("Services")
                    .key(&si.to_string()),
                &labels,
                g,
                Some(t),
            );
        }
        self.constraints(&t.constraints, tp);
        self.affinities(&t.affinities, tp);
    }

    fn resources(&mut self, r: &Resources, rp: &FieldPath) {
        if r.cpu != 0 && r.cores != 0 {
            self.err(
                &rp.field("cores").key("Cores"),
                format!(
                    "ask for cpu or cores, not both (cpu = {}, cores = {})",
                    r.cpu, r.cores
                ),
            );
        }
        if r.cores < 0 {
            self.err(
                &rp.field("cores").key("Cores"),
                format!("cores must not be negative (got {})", r.cores),
            );
        }
        if r.cores == 0 && r.cpu < MIN_CPU_MHZ {
            self.err(
                &rp.field("cpu").key("CPU"),
                format!("cpu must be at least {MIN_CPU_MHZ} MHz (got {})", r.cpu),
            );
        }
        if r.memory_mb < MIN_MEMORY_MB {
            self.err(
                &rp.field("memory").key("MemoryMB"),
                format!("must be at least {MIN_MEMORY_MB} MB (got {})", r.memory_mb),
            );
        }
        if r.memory_max_mb != 0 && r.memory_max_mb != -1 && r.memory_max_mb < r.memory_mb {
            self.err(
                &rp.field("memory_max").key("MemoryMaxMB"),
                format!(
                    "memory_max ({} MB) must be at least memory ({} MB), or -1 for no limit",
                    r.memory_max_mb, r.memory_mb
                ),
            );
        }
        if r.disk_mb.is_some() {
            self.warn(
                &rp.field("disk").key("DiskMB"),
                "disk in resources is deprecated and ignored; use the group's ephemeral_disk",
            );
        }
        if let Some(n) = &r.numa {
            if !["none", "prefer", "require"].contains(&n.affinity.as_str()) {
                self.err(
                    &rp.field("numa")
                        .field("affinity")
                        .key("NUMA")
                        .key("Affinity"),
                    format!(
                        "numa affinity must be none, prefer or require (got {:?})",
                        n.affinity
                    ),
                );
            }
        }
        for (i, d) in r.devices.iter().enumerate() {
            let dp = rp
                .labeled("device", &d.name)
                .key("Devices")
                .key(&i.to_string());
            if d.name.is_empty() {
                self.err(&dp, "a device needs a name: device \"nvidia/gpu\" { … }");
            }
            if d.count.unwrap_or(1) < 0 {
                self.err(
                    &dp.field("count").key("Count"),
                    "device count must not be negative",
                );
            }
            self.constraints(&d.constraints, &dp);
            self.affinities(&d.affinities, &dp);
        }
    }

    fn restart(&mut self, r: &RestartPolicy, rp: &FieldPath) {
        match r.mode.as_str() {
            "fail" | "delay" => {}
            other => {
                self.err(
                    &rp.field("mode").key("Mode"),
                    format!("mode must be \"fail\" or \"delay\" (got {other:?})"),
                );
                return;
            }
        }
        if r.attempts < 0 {
            self.err(
                &rp.field("attempts").key("Attempts"),
                format!("attempts must not be negative (got {})", r.attempts),
            );
            return;
        }
        if r.attempts == 0 && r.mode != "fail" {
            self.err(&rp.field("attempts").key("Attempts"), "attempts = 0 with mode \"delay\" would never restart; use mode = \"fail\" or attempts > 0");
        }
        if r.attempts > 0 && r.interval < RESTART_MIN_INTERVAL {
            self.err(
                &rp.field("interval").key("Interval"),
                format!(
                    "interval must be at least {} (got {})",
                    format_go(RESTART_MIN_INTERVAL),
                    format_go(r.interval)
                ),
            );
        }
        let needed = r
            .delay
            .saturating_mul(u32::try_from(r.attempts).unwrap_or(u32::MAX));
        if r.attempts > 0 && needed > r.interval {
            self.err(rp, format!("{} restarts {} apart do not fit in an interval of {}; lengthen interval or lower attempts or delay", r.attempts, format_go(r.delay), format_go(r.interval)));
        }
    }

    fn reschedule(&mut self, r: &model::ReschedulePolicy, rp: &FieldPath) {
        let attempts = r.attempts.unwrap_or(0);
        let unlimited = r.unlimited.unwrap_or(false);
        if attempts < 0 {
            self.err(
                &rp.field("attempts").key("Attempts"),
                "attempts must not be negative",
            );
        }
        if attempts == 0 && !unlimited {
            return; // rescheduling disabled
        }
        let delay = r.delay.unwrap_or_default();
        let func = r.delay_function.as_deref().unwrap_or("");
        if !["constant", "exponential", "fibonacci"].contains(&func) {
            self.err(
                &rp.field("delay_function").key("DelayFunction"),
                format!("delay_function must be constant, exponential or fibonacci (got {func:?})"),
            );
        }
        if delay < RESCHEDULE_MIN_DELAY {
            self.err(
                &rp.field("delay").key("Delay"),
                format!(
                    "delay must be at least {} (got {})",
                    format_go(RESCHEDULE_MIN_DELAY),
                    format_go(delay)
                ),
            );
        }
        if func != "constant" {
            if let Some(max) = r.max_delay {
                if max < delay {
                    self.err(
                        &rp.field("max_delay").key("MaxDelay"),
                        format!(
                            "max_delay ({}) must be at least delay ({})",
                            format_go(max),
                            format_go(delay)
                        ),
                    );
                }
            }
        }
        if !unlimited {
            let interval = r.interval.unwrap_or_default();
            if interval.is_zero() {
                self.err(
                    &rp.field("interval").key("Interval"),
                    "a limited reschedule policy needs an interval (or set unlimited = true)",
                );
            }
        }
    }

    fn update(&mut self, u: &UpdateStrategy, up: &FieldPath) {
        if let Some(hc) = &u.health_check {
            if !["checks", "task_states", "manual"].contains(&hc.as_str()) {
                self.err(&up.field("health_check").key("HealthCheck"), format!("health_check must be \"checks\", \"task_states\" or \"manual\" (got {hc:?})"));
            }
        }
        if u.max_parallel.unwrap_or(1) < 0 {
            self.err(
                &up.field("max_parallel").key("MaxParallel"),
                "max_parallel must not be negative",
            );
        }
        if u.canary.unwrap_or(0) < 0 {
            self.err(
                &up.field("canary").key("Canary"),
                "canary must not be negative",
            );
        }
        if u.canary.unwrap_or(0) > 0 && u.max_parallel == Some(0) {
            self.err(
                &up.field("canary").key("Canary"),
                "canaries need max_parallel > 0 to roll out",
            );
        }
        if let (Some(min), Some(dl)) = (u.min_healthy_time, u.healthy_deadline) {
            if min >= dl {
                self.err(
                    &up.field("min_healthy_time").key("MinHealthyTime"),
                    format!(
                        "min_healthy_time ({}) must be less than healthy_deadline ({})",
                        format_go(min),
                        format_go(dl)
                    ),
                );
            }
        }
        if let (Some(dl), Some(pd)) = (u.healthy_deadline, u.progress_deadline) {
            if !pd.is_zero() && dl > pd {
                self.err(&up.field("progress_deadline").key("ProgressDeadline"), format!("progress_deadline ({}) must be at least healthy_deadline ({}), or 0 to disable", format_go(pd), format_go(dl)));
            }
        }
        if u.stagger.is_some_and(|s| s.is_zero()) {
            self.err(
                &up.field("stagger").key("Stagger"),
                "stagger must be more than 0",
            );
        }
    }

    fn service(
        &mut self,
        s: &Service,
        sp: &FieldPath,
        labels: &BTreeMap<String, String>,
        g: &TaskGroup,
        task: Option<&Task>,
    ) {
        if !s.name.contains("${") && !valid_service_name(&s.name) {
            self.err(&sp.field("name").key("Name"), format!("service name {:?} is not valid: use letters, digits and dashes, at most 63 characters, not starting or ending with a dash", s.name));
        }
        if !["consul", "nomad"].contains(&s.provider.as_str()) {
            self.err(
                &sp.field("provider").key("Provider"),
                format!(
                    "provider must be \"consul\" or \"nomad\" (got {:?})",
                    s.provider
                ),
            );
        }
        if s.provider == "nomad" && s.connect.is_some() {
            self.err(
                &sp.field("connect").key("Connect"),
                "connect needs provider = \"consul\"",
            );
        }
        if !["auto", "host", "driver", "alloc"].contains(&s.address_mode.as_str()) {
            self.err(
                &sp.field("address_mode").key("AddressMode"),
                format!(
                    "address_mode must be auto, host, driver or alloc (got {:?})",
                    s.address_mode
                ),
            );
        }
        if !["require_healthy", "ignore_warnings", "ignore"].contains(&s.on_update.as_str()) {
            self.err(
                &sp.field("on_update").key("OnUpdate"),
                format!(
                    "on_update must be require_healthy, ignore_warnings or ignore (got {:?})",
                    s.on_update
                ),
            );
        }
        self.port_ref(&s.port_label, &sp.field("port").key("PortLabel"), labels);
        if task.is_none() && !s.task_name.is_empty() && g.task(&s.task_name).is_none() {
            self.err(
                &sp.field("task").key("TaskName"),
                format!(
                    "service refers to task {:?}, which is not in the group",
                    s.task_name
                ),
            );
        }
        for (ci, c) in s.checks.iter().enumerate() {
            let cp = sp
                .field("check")
                .index(ci)
                .key("Checks")
                .key(&ci.to_string());
            match c.check_type.as_str() {
                "http" if c.path.is_empty() => {
                    self.err(&cp.field("path").key("Path"), "an http check needs a path")
                }
                "script" if c.command.is_empty() => self.err(
                    &cp.field("command").key("Command"),
                    "a script check needs a command",
                ),
                "script" if task.is_none() && c.task_name.is_empty() => self.err(
                    &cp.field("task").key("TaskName"),
                    "a group-level script check needs task = \"<task name>\" to run in",
                ),
                "http" | "tcp" | "script" | "grpc" => {}
                "" => self.err(
                    &cp.field("type").key("Type"),
                    "a check needs a type: http, tcp, script or grpc",
                ),
                other => self.err(
                    &cp.field("type").key("Type"),
                    format!("check type must be http, tcp, script or grpc (got {other:?})"),
                ),
            }
            if c.interval.is_zero() {
                self.err(
                    &cp.field("interval").key("Interval"),
                    "a check needs an interval, like interval = \"10s\"",
                );
            }
            if c.timeout.is_zero() {
                self.err(
                    &cp.field("timeout").key("Timeout"),
                    "a check needs a timeout, like timeout = \"2s\"",
                );
            }
            if !["", "require_healthy", "ignore_warnings", "ignore"].contains(&c.on_update.as_str())
            {
                self.err(
                    &cp.field("on_update").key("OnUpdate"),
                    format!(
                        "on_update must be require_healthy, ignore_warnings or ignore (got {:?})",
                        c.on_update
                    ),
                );
            }
            self.port_ref(&c.port_label, &cp.field("port").key("PortLabel"), labels);
            if let Some(cr) = &c.check_restart {
                if cr.limit < 0 {
                    self.err(
                        &cp.field("check_restart")
                            .field("limit")
                            .key("CheckRestart")
                            .key("Limit"),
                        "limit must not be negative",
                    );
                }
            }
        }
    }

    /// A service or check port is a port label of the group's network, or a number.
    fn port_ref(&mut self, port: &str, path: &FieldPath, labels: &BTreeMap<String, String>) {
        if port.is_empty() || port.contains("${") || port.parse::<u16>().is_ok() {
            return;
        }
        if !labels.contains_key(&port.to_lowercase()) {
            let known: Vec<&String> = labels.values().collect();
            self.err(path, format!("port {port:?} is not a port label of the group's network (labels: {known:?}); add port \"{port}\" {{}} to the network block"));
        }
    }

    fn constraints(&mut self, cs: &[Constraint], parent: &FieldPath) {
        for (i, c) in cs.iter().enumerate() {
            let cp = parent
                .field("constraint")
                .index(i)
                .key("Constraints")
                .key(&i.to_string());
            let op = c.operand.as_str();
            if !CONSTRAINT_OPERATORS.contains(&op) {
                self.err(
                    &cp.field("operator").key("Operand"),
                    format!(
                        "unknown operator {op:?}; use one of {}",
                        CONSTRAINT_OPERATORS.join(" ")
                    ),
                );
                continue;
            }
            self.operator_values(op, &c.l_target, &c.r_target, &cp);
        }
    }

    fn affinities(&mut self, afs: &[Affinity], parent: &FieldPath) {
        for (i, a) in afs.iter().enumerate() {
            let ap = parent
                .field("affinity")
                .index(i)
                .key("Affinities")
                .key(&i.to_string());
            let op = a.operand.as_str();
            if !AFFINITY_OPERATORS.contains(&op) {
                self.err(
                    &ap.field("operator").key("Operand"),
                    format!(
                        "unknown affinity operator {op:?}; use one of {}",
                        AFFINITY_OPERATORS.join(" ")
                    ),
                );
            } else {
                self.operator_values(op, &a.l_target, &a.r_target, &ap);
            }
            let w = a.weight.unwrap_or(defaults::AFFINITY_WEIGHT);
            if w == 0 || !(-100..=100).contains(&w) {
                self.err(
                    &ap.field("weight").key("Weight"),
                    format!("weight must be between -100 and 100 and not 0 (got {w})"),
                );
            }
        }
    }

    fn operator_values(&mut self, op: &str, l: &str, r: &str, p: &FieldPath) {
        match op {
            "distinct_hosts" => {
                if !["", "true", "false"].contains(&r) {
                    self.err(
                        &p.field("value").key("RTarget"),
                        format!("distinct_hosts takes true or false (got {r:?})"),
                    );
                }
            }
            "distinct_property" => {
                if l.is_empty() {
                    self.err(
                        &p.field("attribute").key("LTarget"),
                        "distinct_property needs the attribute to spread over",
                    );
                }
                if !r.is_empty() && r.parse::<u64>().map_or(true, |n| n == 0) {
                    self.err(&p.field("value").key("RTarget"), format!("distinct_property's value is how many allocations may share a value: a positive number (got {r:?})"));
                }
            }
            "is_set" | "is_not_set" => {
                if l.is_empty() {
                    self.err(
                        &p.field("attribute").key("LTarget"),
                        format!("{op} needs an attribute"),
                    );
                }
            }
            "regexp" => {
                if let Err(m) = check_regex(r) {
                    self.err(
                        &p.field("value").key("RTarget"),
                        format!("regular expression {r:?} is not valid: {m}"),
                    );
                }
            }
            "version" | "semver" => {
                if let Err(m) = check_version_constraint(r) {
                    self.err(&p.field("value").key("RTarget"), format!("version constraint {r:?} is not valid: {m}; write it like \">= 1.2, < 2.0\""));
                }
            }
            "set_contains" | "set_contains_all" | "set_contains_any" => {
                if r.is_empty() {
                    self.err(
                        &p.field("value").key("RTarget"),
                        format!("{op} needs a comma-separated list of values"),
                    );
                }
            }
            _ => {
                if l.is_empty() && r.is_empty() {
                    self.err(p, format!("operator {op:?} needs an attribute and a value"));
                }
            }
        }
    }

    fn spreads(&mut self, ss: &[Spread], parent: &FieldPath) {
        for (i, s) in ss.iter().enumerate() {
            let sp = parent
                .field("spread")
                .index(i)
                .key("Spreads")
                .key(&i.to_string());
            if s.attribute.is_empty() {
                self.err(
                    &sp.field("attribute").key("Attribute"),
                    "a spread needs an attribute, like attribute = \"${node.datacenter}\"",
                );
            }
            let w = s.weight.unwrap_or(defaults::SPREAD_WEIGHT);
            if !(0..=100).contains(&w) {
                self.err(
                    &sp.field("weight").key("Weight"),
                    format!("spread weight must be between 0 and 100 (got {w})"),
                );
            }
            let mut sum = 0;
            let mut seen = BTreeSet::new();
            for (ti, t) in s.spread_target.iter().enumerate() {
                let tp = sp
                    .labeled("target", &t.value)
                    .key("SpreadTarget")
                    .key(&ti.to_string());
                if !seen.insert(&t.value) {
                    self.err(&tp, format!("spread target {:?} is listed twice", t.value));
                }
                if !(0..=100).contains(&t.percent) {
                    self.err(
                        &tp.field("percent").key("Percent"),
                        format!("percent must be between 0 and 100 (got {})", t.percent),
                    );
                }
                sum += t.percent;
            }
            if sum > 100 {
                self.err(
                    &sp,
                    format!("spread target percentages add up to {sum}, more than 100"),
                );
            }
        }
    }
}

fn valid_service_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether a task-relative path leaves the allocation directory (`../alloc` is fine; `../../x`
/// is not). Interpolations are taken as staying inside.
fn escapes_alloc_dir(p: &str) -> bool {
    if p.starts_with("${") {
        return false;
    }
    let mut depth: i64 = 1; // relative paths start in the task directory, one below the alloc dir
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

/// Regular expressions compile with the `regex` crate, whose syntax matches Go's RE2 for
/// everything a constraint needs.
fn check_regex(r: &str) -> Result<(), String> {
    if r.is_empty() {
        return Err("it is empty".into());
    }
    match super::funcs::regex_error(r) {
        Some(e) => Err(e.lines().last().unwrap_or("invalid").trim().to_string()),
        None => Ok(()),
    }
}

/// Version constraints as Nomad's go-version reads them: comma-separated `[op] version`.
fn check_version_constraint(r: &str) -> Result<(), String> {
    if r.contains("${") {
        return Ok(());
    }
    if r.trim().is_empty() {
        return Err("it is empty".into());
    }
    for part in r.split(',') {
        let p = part.trim();
        let v = ["~>", ">=", "<=", "!=", "=", ">", "<"]
            .iter()
            .find_map(|op| p.strip_prefix(op))
            .unwrap_or(p)
            .trim();
        let v = v.strip_prefix('v').unwrap_or(v);
        let core = v.split(['-', '+']).next().unwrap_or("");
        let ok = !core.is_empty()
            && core.split('.').count() <= 4
            && core
                .split('.')
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !ok {
            return Err(format!("{p:?} is not an operator followed by a version"));
        }
    }
    Ok(())
}

/// The API fields noded's runtime acts on, as `Struct.Field` type paths (lists are looked
/// through). Everything else a job sets is kept, and reported by [`unsupported_warnings`].
/// The lead maintains this list as the runtime grows.
pub const ACTED_ON: &[&str] = &[
    "Job.ID",
    "Job.Name",
    "Job.Region",
    "Job.Namespace",
    "Job.Type",
    "Job.Datacenters",
    "Job.Priority",
    "Job.Meta",
    "Job.NodePool",
    "Job.TaskGroups",
    "TaskGroups.Name",
    "TaskGroups.Count",
    "TaskGroups.Meta",
    "TaskGroups.RestartPolicy",
    "TaskGroups.Tasks",
    "Tasks.Name",
    "Tasks.Driver",
    "Tasks.Config.command",
    "Tasks.Config.args",
    "Tasks.Config.work_dir",
    "Tasks.Config.pid_mode",
    "Tasks.Config.ipc_mode",
    "Tasks.Config.cap_add",
    "Tasks.Config.cap_drop",
    "Tasks.Config.rlimits",
    "Tasks.Config.seccomp",
    "Tasks.Config.cpu_hard_limit",
    "Tasks.Config.readonly_rootfs",
    "Tasks.Resources.Cores",
    "Tasks.Env",
    "Tasks.User",
    "Tasks.Meta",
    "Tasks.Resources.CPU",
    "Tasks.Resources.MemoryMB",
    "Tasks.Resources.MemoryMaxMB",
    "Tasks.Leader",
    "Tasks.KillTimeout",
    "Tasks.KillSignal",
    "Tasks.LogConfig",
    "Tasks.RestartPolicy",
];

/// Drivers noded runs.
pub const SUPPORTED_DRIVERS: &[&str] = &["exec", "raw_exec"];

/// Warnings naming every field this job sets that noded keeps but does not act on yet.
/// A field counts as set when it differs from what the same job would hold without it (so
/// defaults Nomad fills in do not warn).
pub fn unsupported_warnings(job: &Job) -> Vec<Warning> {
    let mut out = Vec::new();
    let baseline = baseline_of(job);
    let (Ok(actual), Ok(base)) = (serde_json::to_value(job), serde_json::to_value(&baseline))
    else {
        return out;
    };
    let jp = FieldPath::root().labeled("job", &job.id);
    diff(&actual, &base, &schema::JOB, "Job", &jp, &mut out);
    for (gi, g) in job.task_groups.iter().enumerate() {
        for t in &g.tasks {
            if !SUPPORTED_DRIVERS.contains(&t.driver.as_str()) && !t.driver.is_empty() {
                let p = jp
                    .labeled("group", &g.name)
                    .labeled("task", &t.name)
                    .field("driver");
                out.push(Warning::new(
                    None,
                    p.to_string(),
                    format!(
                        "driver {:?} is kept but noded runs only {}; this task will not be placed",
                        t.driver,
                        SUPPORTED_DRIVERS.join(" and ")
                    ),
                ));
            }
        }
        let _ = gi;
    }
    out
}

/// The job with only what noded acts on: names, types, counts, drivers, commands, resources.
fn baseline_of(job: &Job) -> Job {
    let mut b = Job {
        id: job.id.clone(),
        name: job.name.clone(),
        region: job.region.clone(),
        namespace: job.namespace.clone(),
        job_type: job.job_type,
        priority: job.priority,
        datacenters: job.datacenters.clone(),
        node_pool: job.node_pool.clone(),
        meta: job.meta.clone(),
        ..Default::default()
    };
    for g in &job.task_groups {
        let mut bg = TaskGroup {
            name: g.name.clone(),
            count: g.count,
            meta: g.meta.clone(),
            restart_policy: g.restart_policy.clone(),
            ..Default::default()
        };
        for t in &g.tasks {
            let mut config = serde_json::Map::new();
            // The exec/raw_exec options noded acts on (see crate::drivers).
            for k in [
                "command",
                "args",
                "work_dir",
                "pid_mode",
                "ipc_mode",
                "cap_add",
                "cap_drop",
                "rlimits",
                "seccomp",
                "cpu_hard_limit",
                "readonly_rootfs",
            ] {
                if let Some(v) = t.config.get(k) {
                    config.insert(k.to_string(), v.clone());
                }
            }
            bg.tasks.push(Task {
                name: t.name.clone(),
                driver: t.driver.clone(),
                user: t.user.clone(),
                config,
                env: t.env.clone(),
                meta: t.meta.clone(),
                kill_timeout: t.kill_timeout,
                kill_signal: t.kill_signal.clone(),
                log_config: t.log_config.clone(),
                leader: t.leader,
                restart_policy: t.restart_policy.clone(),
                resources: t.resources.as_ref().map(|r| Resources {
                    cpu: r.cpu,
                    memory_mb: r.memory_mb,
                    memory_max_mb: r.memory_max_mb,
                    cores: r.cores,
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        b.task_groups.push(bg);
    }
    b.canonicalize();
    b
}

/// Reports the outermost fields where `actual` differs from `base`.
fn diff(
    actual: &serde_json::Value,
    base: &serde_json::Value,
    schema: &'static Schema,
    type_path: &str,
    path: &FieldPath,
    out: &mut Vec<Warning>,
) {
    use serde_json::Value as J;
    let (J::Object(a), b) = (actual, base) else {
        return;
    };
    let empty = serde_json::Map::new();
    let b = b.as_object().unwrap_or(&empty);
    for field in schema.fields {
        let av = a.get(field.api).unwrap_or(&J::Null);
        let bv = b.get(field.api).unwrap_or(&J::Null);
        if av == bv || is_empty(av) && is_empty(bv) {
            continue;
        }
        let tp = format!("{type_path}.{}", field.api);
        let short = format!(
            "{}.{}",
            type_path.rsplit('.').next().unwrap_or(type_path),
            field.api
        );
        let acted = ACTED_ON
            .iter()
            .any(|a| *a == tp || *a == short || a.starts_with(&format!("{short}.")));
        let hcl = if field.hcl.is_empty() {
            field.api
        } else {
            field.hcl
        };
        match (field.kind, acted) {
            (Kind::Block(s), true) => diff(av, bv, s, field.api, &path.field(hcl), out),
            (Kind::Labeled(s), true) | (Kind::Blocks(s), true) => {
                let (Some(al), Some(bl)) = (av.as_array(), bv.as_array()) else {
                    continue;
                };
                for (i, item) in al.iter().enumerate() {
                    let name = item.get("Name").and_then(J::as_str).unwrap_or("");
                    let ip = if s.label.is_some() {
                        path.labeled(hcl, name)
                    } else {
                        path.field(hcl).index(i)
                    };
                    diff(item, bl.get(i).unwrap_or(&J::Null), s, field.api, &ip, out);
                }
            }
            (Kind::FreeForm, true) => {
                let (Some(am), bm) = (av.as_object(), bv.as_object()) else {
                    continue;
                };
                for (k, v) in am {
                    if bm.and_then(|m| m.get(k)) != Some(v) {
                        out.push(Warning::new(
                            None,
                            path.field(hcl).field(k).to_string(),
                            format!("{hcl}.{k} is kept but noded does not act on it yet"),
                        ));
                    }
                }
            }
            (_, true) => {}
            (_, false) => {
                out.push(Warning::new(
                    None,
                    path.field(hcl).to_string(),
                    format!("{hcl} is kept but noded does not act on it yet"),
                ));
            }
        }
    }
}

fn is_empty(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Object(o) => o.is_empty(),
        _ => false,
    }
}
