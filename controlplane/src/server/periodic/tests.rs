//! The dispatcher's policy on a simulated clock: each test applies what [`decide`] asks for
//! to a [`State`] directly and moves "now" to the wake-up time it returns.

use super::*;
use crate::model::time::{format_rfc3339, parse_rfc3339};
use crate::model::{EvalStatus, Job, JobType, PeriodicConfig, Task, TaskGroup};
use crate::state::{Command, State};

fn at(text: &str) -> i64 {
    parse_rfc3339(text).unwrap_or_else(|| panic!("bad time {text}"))
}

fn periodic_job(id: &str, specs: &[&str], zone: &str) -> Job {
    let mut job = Job {
        id: id.into(),
        job_type: JobType::Batch,
        periodic: Some(PeriodicConfig {
            specs: specs.iter().map(|s| s.to_string()).collect(),
            time_zone: zone.into(),
            ..Default::default()
        }),
        task_groups: vec![TaskGroup {
            name: "g".into(),
            count: 1,
            tasks: vec![Task {
                name: "t".into(),
                driver: "exec".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    job.canonicalize();
    job
}

/// A state and the next Raft index to apply at.
struct Sim {
    state: State,
    index: u64,
    skipped: BTreeMap<JobKey, i64>,
    launches: Vec<i64>,
    ids: u64,
}

impl Sim {
    fn new() -> Sim {
        Sim {
            state: State::default(),
            index: 0,
            skipped: BTreeMap::new(),
            launches: Vec::new(),
            ids: 0,
        }
    }

    fn apply(&mut self, command: &Command) -> crate::state::CommandResponse {
        self.index += 1;
        self.state.apply(self.index, command).0
    }

    fn register(&mut self, job: Job, now: i64) {
        let r = self.apply(&Command::JobRegister {
            job: Box::new(job),
            eval: None,
            now,
            enforce_index: None,
            tracked_versions: None,
        });
        assert_eq!(r.error, None);
    }

    /// One look of the dispatcher at `now`: launches (or skips) what is due, as the leader
    /// loop does. Returns when to look next.
    fn step(&mut self, now: i64) -> Option<i64> {
        let decision = decide(&self.state, &self.skipped, now, "UTC");
        assert!(decision.errors.is_empty(), "{:?}", decision.errors);
        for due in decision.due {
            if due.overlap {
                self.skipped
                    .insert((due.namespace.clone(), due.job_id.clone()), due.launch);
                continue;
            }
            let job = self.state.job(&due.namespace, &due.job_id).unwrap();
            self.ids += 1;
            let command = launch_command(&job, due.launch, format!("eval-{}", self.ids), now);
            let r = self.apply(&command);
            assert_eq!(r.error, None, "launch at {}", format_rfc3339(due.launch));
            self.launches.push(due.launch);
        }
        decision.wake_at
    }

    /// Runs the dispatcher from `from` until `until`, sleeping as it asks.
    fn run(&mut self, from: i64, until: i64) {
        let mut now = from;
        while now <= until {
            match self.step(now) {
                Some(next) => {
                    assert!(next > now, "the dispatcher must move forward");
                    now = next;
                }
                None => return,
            }
        }
    }

    fn launched(&self) -> Vec<String> {
        self.launches.iter().map(|t| format_rfc3339(*t)).collect()
    }
}

#[test]
fn a_daily_launch_keeps_its_wall_clock_time_across_both_dst_changes() {
    // 02:00 in New York: on 8 March 2026 the clocks jump from 02:00 to 03:00 (the launch
    // runs at 03:00 EDT, one gap later), on 1 November they fall back from 02:00 to 01:00
    // (02:00 EST happens once).
    let mut sim = Sim::new();
    let job = periodic_job("nightly", &["0 2 * * *"], "America/New_York");
    sim.register(job, at("2026-03-06T12:00:00Z"));
    sim.run(at("2026-03-06T12:00:00Z"), at("2026-03-10T00:00:00Z"));
    assert_eq!(
        sim.launched(),
        [
            "2026-03-07T07:00:00Z", // 02:00 EST
            "2026-03-08T07:00:00Z", // 03:00 EDT: 02:00 does not exist that night
            "2026-03-09T06:00:00Z", // 02:00 EDT
        ]
    );
    let mut sim = Sim::new();
    let job = periodic_job("nightly", &["0 2 * * *"], "America/New_York");
    sim.register(job, at("2026-10-30T12:00:00Z"));
    sim.run(at("2026-10-30T12:00:00Z"), at("2026-11-03T00:00:00Z"));
    assert_eq!(
        sim.launched(),
        [
            "2026-10-31T06:00:00Z", // 02:00 EDT
            "2026-11-01T07:00:00Z", // 02:00 EST, once
            "2026-11-02T07:00:00Z",
        ]
    );
    // The children are named by launch second and scheduled as the parent's type.
    let child = sim
        .state
        .job("default", "nightly/periodic-1793602800")
        .expect("the 2 November child");
    assert_eq!(child.parent_id, "nightly");
    assert_eq!(child.job_type, JobType::Batch);
    assert!(child.periodic.is_none());
    let evals = sim.state.evals_by_job("default", &child.id);
    assert_eq!(evals.len(), 1);
    assert_eq!(evals[0].triggered_by, "periodic-job");
    assert_eq!(evals[0].status, EvalStatus::Pending);
    // The parent itself is never evaluated, and is "running" while it launches.
    assert!(sim.state.evals_by_job("default", "nightly").is_empty());
    assert_eq!(
        sim.state.job("default", "nightly").unwrap().status,
        crate::model::JobStatus::Running
    );
}

#[test]
fn a_new_leader_launches_missed_instants_once_and_never_twice() {
    let mut sim = Sim::new();
    sim.register(
        periodic_job("minutely", &["* * * * *"], "UTC"),
        at("2026-05-01T10:00:30Z"),
    );
    sim.run(at("2026-05-01T10:00:30Z"), at("2026-05-01T10:02:00Z"));
    assert_eq!(
        sim.launched(),
        ["2026-05-01T10:01:00Z", "2026-05-01T10:02:00Z"]
    );
    // No leader for ten minutes; a new one looks at 10:12:30: the nine missed instants are
    // launched once, now.
    let now = at("2026-05-01T10:12:30Z");
    let decision = decide(&sim.state, &BTreeMap::new(), now, "UTC");
    assert_eq!(decision.due.len(), 1, "{decision:?}");
    assert_eq!(decision.due[0].launch, now);
    let job = sim.state.job("default", "minutely").unwrap();
    let launch = launch_command(&job, now, "late".into(), now);
    assert_eq!(sim.apply(&launch).error, None);
    // The old leader's decision arriving late, or the same launch proposed again, is refused.
    let again = sim.apply(&launch);
    assert!(
        again
            .error
            .as_deref()
            .is_some_and(|e| e.contains("not after")),
        "{again:?}"
    );
    let stale = launch_command(&job, at("2026-05-01T10:03:00Z"), "stale".into(), now);
    assert!(sim.apply(&stale).error.is_some());
    // Nothing is due until the next minute.
    let decision = decide(&sim.state, &BTreeMap::new(), now, "UTC");
    assert!(decision.due.is_empty());
    assert_eq!(decision.wake_at, Some(at("2026-05-01T10:13:00Z")));
    assert_eq!(
        sim.state
            .children("default", "minutely")
            .iter()
            .map(|c| c.id.clone())
            .collect::<Vec<_>>(),
        [
            "minutely/periodic-1777629660",
            "minutely/periodic-1777629720",
            "minutely/periodic-1777630350",
        ]
    );
}

#[test]
fn a_leader_elected_before_the_first_launch_knows_it_from_the_registration() {
    let mut sim = Sim::new();
    sim.register(
        periodic_job("hourly", &["0 * * * *"], "UTC"),
        at("2026-05-01T10:20:00Z"),
    );
    let recorded = sim.state.periodic_launch("default", "hourly").unwrap();
    assert_eq!(recorded.launch, at("2026-05-01T10:20:00Z"));
    // 10:40: nothing missed.
    let d = decide(
        &sim.state,
        &BTreeMap::new(),
        at("2026-05-01T10:40:00Z"),
        "UTC",
    );
    assert!(d.due.is_empty());
    assert_eq!(d.wake_at, Some(at("2026-05-01T11:00:00Z")));
    // 11:05: the 11:00 launch was missed; it is launched at its own time.
    let d = decide(
        &sim.state,
        &BTreeMap::new(),
        at("2026-05-01T11:05:00Z"),
        "UTC",
    );
    assert_eq!(d.due.len(), 1);
    assert_eq!(d.due[0].launch, at("2026-05-01T11:00:00Z"));
    // The launch table survives a snapshot (a follower catching up, a restart).
    let back = State::from_snapshot(sim.state.to_snapshot()).unwrap();
    assert_eq!(back.periodic_launch("default", "hourly"), Some(recorded));
}

#[test]
fn every_cron_of_a_job_launches_and_disabled_or_stopped_jobs_do_not() {
    let mut sim = Sim::new();
    let t0 = at("2026-05-01T09:50:00Z");
    sim.register(periodic_job("two", &["0 * * * *", "30 * * * *"], "UTC"), t0);
    let mut disabled = periodic_job("off", &["* * * * *"], "UTC");
    disabled.periodic.as_mut().unwrap().enabled = Some(false);
    sim.register(disabled, t0);
    let mut stopped = periodic_job("stopped", &["* * * * *"], "UTC");
    stopped.stop = true;
    sim.register(stopped, t0);
    let mut template = periodic_job("template", &["* * * * *"], "UTC");
    template.parameterized_job = Some(Default::default());
    sim.register(template, t0);
    sim.run(t0, at("2026-05-01T11:10:00Z"));
    assert_eq!(
        sim.launched(),
        [
            "2026-05-01T10:00:00Z",
            "2026-05-01T10:30:00Z",
            "2026-05-01T11:00:00Z",
        ]
    );
    assert!(sim.state.children("default", "off").is_empty());
    assert!(sim.state.children("default", "stopped").is_empty());
    assert!(sim.state.children("default", "template").is_empty());
    // A disabled job cannot be launched by a command either.
    let off = sim.state.job("default", "off").unwrap();
    let r = sim.apply(&launch_command(
        &off,
        at("2026-05-01T11:11:00Z"),
        "x".into(),
        0,
    ));
    assert!(r
        .error
        .is_some_and(|e| e.contains("not an active periodic job")));
}

#[test]
fn prohibit_overlap_skips_launches_while_a_child_is_still_at_work() {
    let mut sim = Sim::new();
    let t0 = at("2026-05-01T10:00:30Z");
    let mut job = periodic_job("serial", &["* * * * *"], "UTC");
    job.periodic.as_mut().unwrap().prohibit_overlap = true;
    sim.register(job, t0);
    // 10:01 launches; the child's evaluation stays pending, so 10:02 and 10:03 are skipped.
    sim.run(t0, at("2026-05-01T10:03:00Z"));
    assert_eq!(sim.launched(), ["2026-05-01T10:01:00Z"]);
    assert_eq!(
        sim.skipped.values().copied().collect::<Vec<_>>(),
        [at("2026-05-01T10:03:00Z")]
    );
    // The child finishes: the next instant launches.
    let child = "serial/periodic-1777629660";
    let mut eval = (*sim.state.evals_by_job("default", child)[0]).clone();
    eval.status = EvalStatus::Complete;
    sim.apply(&Command::EvalUpdate {
        evals: vec![eval],
        now: 0,
    });
    sim.run(at("2026-05-01T10:03:10Z"), at("2026-05-01T10:04:00Z"));
    assert_eq!(
        sim.launched(),
        ["2026-05-01T10:01:00Z", "2026-05-01T10:04:00Z"]
    );
}

#[test]
fn a_seven_field_cron_launches_every_second() {
    let mut sim = Sim::new();
    let t0 = at("2026-05-01T10:00:00.5Z");
    sim.register(periodic_job("fast", &["*/1 * * * * * *"], "UTC"), t0);
    sim.run(t0, at("2026-05-01T10:00:03Z"));
    assert_eq!(
        sim.launched(),
        [
            "2026-05-01T10:00:01Z",
            "2026-05-01T10:00:02Z",
            "2026-05-01T10:00:03Z"
        ]
    );
}

#[test]
fn the_zone_local_is_the_servers_own() {
    let job = periodic_job("local", &["0 2 * * *"], "Local");
    let after = at("2026-01-01T00:00:00Z");
    assert_eq!(
        next_launch(&job, after, "Asia/Tokyo").unwrap(),
        Some(at("2026-01-01T17:00:00Z"))
    );
    assert!(next_launch(&job, after, "Not/AZone").is_err());
}

#[test]
fn a_changed_schedule_or_a_job_enabled_again_counts_from_its_registration() {
    let mut sim = Sim::new();
    let job = periodic_job("hourly", &["0 * * * *"], "UTC");
    sim.register(job.clone(), at("2026-05-01T09:59:00Z"));
    sim.run(at("2026-05-01T09:59:00Z"), at("2026-05-01T10:00:00Z"));
    assert_eq!(sim.launched(), ["2026-05-01T10:00:00Z"]);
    // 10:30: the schedule becomes ":15 past". Nomad waits for 11:15; an old record must not
    // make 10:15 look missed.
    let mut changed = job.clone();
    changed.periodic.as_mut().unwrap().specs = vec!["15 * * * *".into()];
    sim.register(changed.clone(), at("2026-05-01T10:30:00Z"));
    let d = decide(
        &sim.state,
        &BTreeMap::new(),
        at("2026-05-01T10:30:01Z"),
        "UTC",
    );
    assert!(d.due.is_empty(), "{d:?}");
    assert_eq!(d.wake_at, Some(at("2026-05-01T11:15:00Z")));
    // Disabled at 10:40, enabled again at 13:20: nothing is launched for the hours between.
    let mut off = changed.clone();
    off.periodic.as_mut().unwrap().enabled = Some(false);
    sim.register(off, at("2026-05-01T10:40:00Z"));
    sim.register(changed, at("2026-05-01T13:20:00Z"));
    let d = decide(
        &sim.state,
        &BTreeMap::new(),
        at("2026-05-01T13:20:01Z"),
        "UTC",
    );
    assert!(d.due.is_empty(), "{d:?}");
    assert_eq!(d.wake_at, Some(at("2026-05-01T14:15:00Z")));
}
