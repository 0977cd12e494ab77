//! An allocation's services on this node: registered in the native catalog through the
//! servers (`ServerRpc::upsert_services`/`delete_services`) while they run, checked on their
//! `interval`, re-written when their health changes, removed when their task stops, when the
//! allocation stops (before its tasks are killed) and when it fails. Both `provider = "nomad"`
//! and `"consul"` land here: the native catalog is the only one.
//!
//! Pure parts: [`plan`] (which instances exist and how each is checked) and [`status`] (what
//! results make of a status, when `check_restart` restarts). I/O: [`probe`] (the checks) and
//! the per-allocation loop below ([`AllocServices`]), which owns the check loops and the writes.

pub mod plan;
pub mod probe;
pub mod status;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use controlplane::model::{
    Allocation, HealthStatus, ServiceCheckHealth, ServiceRegistration, TaskGroup, TaskState,
};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use super::alloc_control::{control_for, AllocAction, AllocControl};
use super::backoff::{self, Backoff, BackoffPolicy};
use super::ServerRpc;
use crate::supervisor::client::SupervisorClient;
use plan::{Instance, NodeSide, PlannedCheck};
use status::{CheckStatus, Outcome, RestartDecision, RestartWatch};

/// Checks running at once on this node, all allocations together (a probe holds a socket or
/// a script process while it runs).
pub const MAX_CONCURRENT_CHECKS: usize = 64;
/// Check results queued for one allocation's loop before its check loops wait.
const RESULT_QUEUE: usize = 64;
/// The longest one catalog write may take before it counts as failed and is retried.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stopping allocation waits for its services to leave the catalog before its
/// tasks are killed anyway (the servers also drop a finished allocation's registrations).
pub const DEREGISTER_WAIT: Duration = Duration::from_secs(5);
/// Catalog writes are retried from 250 ms, doubling to 10 s: a health change should not wait
/// longer than that once the servers answer again.
const WRITE_RETRY: BackoffPolicy = BackoffPolicy {
    first: Duration::from_millis(250),
    factor: 2,
    cap: Duration::from_secs(10),
    jitter: 0.2,
};

/// The client's side of every allocation's services: where registrations are written, the
/// bound on concurrent checks, and the latest check results for the API.
pub struct ServiceContext {
    server: Arc<dyn ServerRpc>,
    checks: Arc<Semaphore>,
    results: Mutex<HashMap<String, Arc<BTreeMap<String, CheckResult>>>>,
}

impl std::fmt::Debug for ServiceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceContext").finish_non_exhaustive()
    }
}

impl ServiceContext {
    pub fn new(server: Arc<dyn ServerRpc>) -> ServiceContext {
        ServiceContext {
            server,
            checks: Arc::new(Semaphore::new(MAX_CONCURRENT_CHECKS)),
            results: Mutex::new(HashMap::new()),
        }
    }

    /// The latest result of every check of allocation `alloc_id` running on this node, by
    /// check id (`GET /v1/client/allocation/:id/checks`); `None` when this node runs no
    /// services of it.
    pub fn alloc_checks(&self, alloc_id: &str) -> Option<Arc<BTreeMap<String, CheckResult>>> {
        self.results
            .lock()
            .ok()
            .and_then(|r| r.get(alloc_id).cloned())
    }

    fn publish(&self, alloc_id: &str, results: Option<BTreeMap<String, CheckResult>>) {
        let Ok(mut map) = self.results.lock() else {
            return;
        };
        match results {
            Some(r) => {
                map.insert(alloc_id.to_string(), Arc::new(r));
            }
            None => {
                map.remove(alloc_id);
            }
        }
    }
}

/// One check's latest result, in Nomad's `CheckQueryResult` shape (`/v1/client/allocation/
/// :id/checks`), with noded's health word (`Health`: passing, warning, critical) beside
/// Nomad's `Status` (success, failure, pending).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CheckResult {
    #[serde(rename = "ID")]
    pub id: String,
    pub mode: String,
    /// `success` (passing), `failure` (warning or critical), `pending` (not run yet).
    pub status: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub status_code: u16,
    pub output: String,
    /// Seconds since the epoch of the last result.
    pub timestamp: i64,
    pub group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub task: String,
    pub service: String,
    pub check: String,
    /// The check's status after its thresholds: what the catalog holds.
    pub health: HealthStatus,
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

/// How an allocation's health checks stand, for its deployment health
/// (`health_check = "checks"`): only checks that gate updates count (`on_update = "ignore"`
/// ones are readiness checks, as Nomad's `CheckMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChecksHealth {
    /// Checks of registered instances that gate updates.
    pub checks: usize,
    /// Since when every one of them has been passing (Unix nanoseconds), if they all are.
    pub passing_since: Option<i64>,
}

impl ChecksHealth {
    fn of<'a>(checks: impl Iterator<Item = &'a LiveCheck>) -> ChecksHealth {
        let mut out = ChecksHealth {
            checks: 0,
            passing_since: Some(0),
        };
        for c in checks.filter(|c| c.planned.mode == "healthiness") {
            out.checks += 1;
            out.passing_since = match out.passing_since {
                Some(since) if c.status.ran && c.status.status() == HealthStatus::Passing => {
                    Some(since.max(c.changed_ns))
                }
                _ => None,
            };
        }
        out
    }
}

/// What an allocation's services follow.
#[derive(Debug, Clone)]
pub struct View {
    /// The newest allocation, with the network status this node made for it.
    pub alloc: Arc<Allocation>,
    pub states: BTreeMap<String, TaskState>,
}

/// Resolves `${…}` in a value with an environment.
pub type Interpolator =
    Arc<dyn Fn(&str, &BTreeMap<String, String>) -> Result<String, String> + Send + Sync>;

/// How an allocation's services are built.
pub struct Setup {
    pub group: TaskGroup,
    pub node: NodeSide,
    /// Each task's environment (what `${NOMAD_*}` in its services resolve to), and the
    /// allocation's (group services).
    pub task_envs: BTreeMap<String, BTreeMap<String, String>>,
    pub alloc_env: BTreeMap<String, String>,
    /// Resolves `${…}` with an environment (node attributes and meta included).
    pub interpolate: Interpolator,
    /// The allocation runner's controls: `check_restart` restarts a task through them.
    pub controls: mpsc::Sender<AllocControl>,
    pub supervisor: SupervisorClient,
}

impl std::fmt::Debug for AllocServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AllocServices")
            .field("alloc_id", &self.alloc_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("group", &self.group.name)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// An allocation's services while it lives on this node.
pub struct AllocServices {
    ctx: Arc<ServiceContext>,
    alloc_id: String,
    view: watch::Sender<View>,
    checks: watch::Receiver<ChecksHealth>,
    stop: mpsc::Sender<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl AllocServices {
    pub fn start(ctx: Arc<ServiceContext>, setup: Setup, view: View) -> AllocServices {
        let alloc_id = view.alloc.id.clone();
        let (view_tx, view_rx) = watch::channel(view);
        let (stop_tx, stop_rx) = mpsc::channel(1);
        let (checks_tx, checks_rx) = watch::channel(ChecksHealth::default());
        let task =
            tokio::spawn(Registrar::new(ctx.clone(), setup, checks_tx).run(view_rx, stop_rx));
        AllocServices {
            ctx,
            alloc_id,
            view: view_tx,
            checks: checks_rx,
            stop: stop_tx,
            task: Some(task),
        }
    }

    /// How the allocation's update-gating checks stand, as they change (the deployment
    /// health watch follows it).
    pub fn checks(&self) -> watch::Receiver<ChecksHealth> {
        self.checks.clone()
    }

    /// The allocation or its tasks changed.
    pub fn update(&self, view: View) {
        self.view.send_replace(view);
    }

    /// Removes every registration of the allocation (waiting at most `wait`); no service of
    /// it is registered again.
    pub async fn deregister(&self, wait: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.stop.try_send(tx).is_ok() {
            let _ = tokio::time::timeout(wait, rx).await;
        }
    }

    /// Deregisters (if not done yet) and ends the allocation's service loop.
    pub async fn finish(mut self) {
        self.deregister(DEREGISTER_WAIT).await;
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for AllocServices {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        // The loop may have been aborted before it could say so: its results go with it.
        self.ctx.publish(&self.alloc_id, None);
    }
}

/// A check loop's result, tagged with the loop that sent it (a stale loop's are ignored).
struct CheckEvent {
    generation: u64,
    outcome: Outcome,
}

/// A check of a registered instance, with its loop.
struct LiveCheck {
    planned: PlannedCheck,
    generation: u64,
    status: CheckStatus,
    restart: Option<RestartWatch>,
    /// When the status last changed / the last result came (ns since the epoch).
    changed_ns: i64,
    result_ns: i64,
    _loop: AbortOnDrop,
}

/// A registered instance: what was planned and the task run it belongs to.
struct LiveInstance {
    instance: Instance,
    /// The owning task's restart count when registered: a restart makes a new instance (its
    /// checks start over), as Nomad re-registers on a task restart.
    task_restarts: Option<u64>,
    checks: Vec<LiveCheck>,
}

impl LiveInstance {
    fn registration(&self) -> ServiceRegistration {
        let mut r = self.instance.registration.clone();
        r.checks = self
            .checks
            .iter()
            .map(|c| ServiceCheckHealth {
                name: c.planned.name.clone(),
                check_type: c.planned.check_type.clone(),
                status: c.status.status(),
                output: c.status.output.clone(),
                timestamp: c.changed_ns,
            })
            .collect();
        r.status = HealthStatus::worst(r.checks.iter().map(|c| c.status));
        r
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Registrar {
    ctx: Arc<ServiceContext>,
    setup: Setup,
    alloc_id: String,
    live: BTreeMap<String, LiveInstance>,
    /// What the catalog holds of this allocation, as far as this loop knows (`None` before
    /// its first write: a restarted daemon re-writes everything, a no-op where unchanged).
    written: Option<BTreeMap<String, ServiceRegistration>>,
    next_generation: u64,
    results_tx: mpsc::Sender<CheckEvent>,
    results_rx: mpsc::Receiver<CheckEvent>,
    retry: Backoff,
    /// When the next write is due (`None`: nothing to write).
    write_at: Option<tokio::time::Instant>,
    stopped: bool,
    /// Where the checks' standing goes for the deployment health watch.
    checks_tx: watch::Sender<ChecksHealth>,
}

impl Registrar {
    fn new(
        ctx: Arc<ServiceContext>,
        setup: Setup,
        checks_tx: watch::Sender<ChecksHealth>,
    ) -> Registrar {
        let (results_tx, results_rx) = mpsc::channel(RESULT_QUEUE);
        Registrar {
            ctx,
            setup,
            alloc_id: String::new(),
            live: BTreeMap::new(),
            written: None,
            next_generation: 0,
            results_tx,
            results_rx,
            retry: Backoff::new(WRITE_RETRY),
            write_at: None,
            stopped: false,
            checks_tx,
        }
    }

    async fn run(
        mut self,
        mut view: watch::Receiver<View>,
        mut stop: mpsc::Receiver<oneshot::Sender<()>>,
    ) {
        let first = view.borrow_and_update().clone();
        self.alloc_id = first.alloc.id.clone();
        self.plan(&first);
        loop {
            let due = self.write_at;
            tokio::select! {
                changed = view.changed(), if !self.stopped => {
                    if changed.is_err() {
                        break;
                    }
                    let v = view.borrow_and_update().clone();
                    self.plan(&v);
                }
                Some(event) = self.results_rx.recv() => self.observe(event),
                _ = sleep_until(due), if due.is_some() => self.write().await,
                Some(ack) = stop.recv() => {
                    self.stop_all().await;
                    let _ = ack.send(());
                }
            }
        }
        self.ctx.publish(&self.alloc_id, None);
    }

    /// Makes the live instances what the plan says: new ones registered with their checks
    /// started, gone ones (task stopped, restarted, service removed) dropped.
    fn plan(&mut self, view: &View) {
        if self.stopped {
            return;
        }
        let setup = &self.setup;
        let resolve = |task: Option<&str>, value: &str| -> Result<String, String> {
            if !value.contains("${") {
                return Ok(value.to_string());
            }
            let env = task
                .and_then(|t| setup.task_envs.get(t))
                .unwrap_or(&setup.alloc_env);
            (setup.interpolate)(value, env)
        };
        let (instances, errors) = plan::instances(
            &view.alloc,
            &setup.group,
            &view.states,
            &setup.node,
            &resolve,
        );
        for e in errors {
            tracing::warn!(alloc = %self.alloc_id, "not registering {e}");
        }
        let restarts = |task: &Option<String>| {
            task.as_ref()
                .and_then(|t| view.states.get(t))
                .map(|s| s.restarts)
        };
        let mut next = BTreeMap::new();
        let mut changed = false;
        for instance in instances {
            let id = instance.registration.id.clone();
            let task_restarts = restarts(&instance.task);
            match self.live.remove(&id) {
                Some(live) if live.instance == instance && live.task_restarts == task_restarts => {
                    next.insert(id, live);
                }
                // Same checks, same task run, other tags or meta (a canary promoted): the
                // record changes, the checks and their status go on.
                Some(mut live)
                    if live.instance.checks == instance.checks
                        && live.task_restarts == task_restarts =>
                {
                    changed = true;
                    live.instance = instance;
                    next.insert(id, live);
                }
                _ => {
                    changed = true;
                    let live = self.start_instance(instance, task_restarts);
                    next.insert(id, live);
                }
            }
        }
        // Whatever is left is gone: dropping it ends its check loops.
        changed |= !self.live.is_empty();
        self.live = next;
        if changed || self.written.is_none() {
            self.write_soon();
            self.publish();
        }
    }

    fn start_instance(&mut self, instance: Instance, task_restarts: Option<u64>) -> LiveInstance {
        let now = controlplane::model::now_unix_nanos();
        let checks = instance
            .checks
            .iter()
            .map(|planned| {
                self.next_generation += 1;
                let generation = self.next_generation;
                let handle = tokio::spawn(check_loop(
                    planned.probe.clone(),
                    planned.interval,
                    planned.timeout,
                    self.ctx.checks.clone(),
                    self.setup.supervisor.clone(),
                    self.results_tx.clone(),
                    generation,
                ));
                LiveCheck {
                    planned: planned.clone(),
                    generation,
                    status: CheckStatus::new(planned.thresholds),
                    restart: planned
                        .restart
                        .as_ref()
                        .and_then(|(_, r)| RestartWatch::new(r, now)),
                    changed_ns: now,
                    result_ns: 0,
                    _loop: AbortOnDrop(handle),
                }
            })
            .collect();
        LiveInstance {
            instance,
            task_restarts,
            checks,
        }
    }

    fn observe(&mut self, event: CheckEvent) {
        let now = controlplane::model::now_unix_nanos();
        let Some(check) = self
            .live
            .values_mut()
            .flat_map(|l| l.checks.iter_mut())
            .find(|c| c.generation == event.generation)
        else {
            return;
        };
        check.result_ns = now;
        let before = check.status.status();
        check.status.observe(&event.outcome);
        let status = check.status.status();
        if status != before {
            check.changed_ns = now;
            // The first line of the output, shortened: a body can be 4 KiB of HTML.
            let said: String = check
                .status
                .output
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect();
            tracing::info!(
                alloc = %self.alloc_id,
                check = %check.planned.name,
                "check is now {status}: {said}"
            );
        }
        let write = status != before;
        if let (Some(watch), Some((task, _))) = (&mut check.restart, &check.planned.restart) {
            if watch.observe(status, now) == RestartDecision::Restart {
                watch.restarted(now);
                let task = task.clone();
                let name = check.planned.name.clone();
                let controls = self.setup.controls.clone();
                let alloc = self.alloc_id.clone();
                let which = task.clone().unwrap_or_else(|| "every task".into());
                tracing::info!(alloc = %alloc, task = %which, check = %name, "check_restart: restarting, the check is unhealthy");
                // Not awaited: the restart waits for the task's kill, and this loop must go
                // on taking results meanwhile.
                tokio::spawn(async move {
                    // Nomad's words for it.
                    let reason = format!("healthcheck: check {name:?} unhealthy");
                    if let Err(e) =
                        control_for(&controls, task, AllocAction::Restart, Some(reason)).await
                    {
                        tracing::warn!(alloc = %alloc, task = %which, "check_restart of check {name:?}: {e}");
                    }
                });
            }
        }
        if write {
            self.write_soon();
        }
        self.publish();
    }

    /// Whether the group declares any service (else nothing is ever written).
    fn has_services(&self) -> bool {
        !self.setup.group.services.is_empty()
            || self
                .setup
                .group
                .tasks
                .iter()
                .any(|t| !t.services.is_empty())
    }

    /// The results the API shows.
    fn publish(&self) {
        let group = self.setup.group.name.clone();
        let results = self
            .live
            .values()
            .flat_map(|l| {
                let group = group.clone();
                l.checks.iter().map(move |c| {
                    let status = if !c.status.ran {
                        "pending"
                    } else if c.status.status() == HealthStatus::Passing {
                        "success"
                    } else {
                        "failure"
                    };
                    (
                        c.planned.id.clone(),
                        CheckResult {
                            id: c.planned.id.clone(),
                            mode: c.planned.mode.to_string(),
                            status: status.to_string(),
                            status_code: c.status.status_code,
                            output: c.status.output.clone(),
                            timestamp: c.result_ns / 1_000_000_000,
                            group: group.clone(),
                            task: c.planned.task.clone().unwrap_or_default(),
                            service: l.instance.registration.service_name.clone(),
                            check: c.planned.name.clone(),
                            health: c.status.status(),
                        },
                    )
                })
            })
            .collect();
        self.ctx.publish(&self.alloc_id, Some(results));
        let health = ChecksHealth::of(self.live.values().flat_map(|l| l.checks.iter()));
        self.checks_tx.send_if_modified(|old| {
            let changed = *old != health;
            *old = health;
            changed
        });
    }

    fn write_soon(&mut self) {
        self.retry.succeeded();
        self.write_at = Some(tokio::time::Instant::now());
    }

    /// Writes what changed since the last write: new and changed registrations, then the
    /// removal of those gone. A failure is retried with backoff; newer changes are folded in.
    async fn write(&mut self) {
        self.write_at = None;
        let desired: BTreeMap<String, ServiceRegistration> = self
            .live
            .iter()
            .map(|(id, l)| (id.clone(), l.registration()))
            .collect();
        let known = self.written.clone().unwrap_or_default();
        let upserts: Vec<ServiceRegistration> = desired
            .values()
            .filter(|r| known.get(&r.id).is_none_or(|k| !k.same_content(r)))
            .cloned()
            .collect();
        let deletes: Vec<String> = known
            .keys()
            .filter(|id| !desired.contains_key(*id))
            .cloned()
            .collect();
        // A daemon restarted while none of the allocation's services runs clears what it may
        // have left (the servers answer a delete of nothing without a Raft write). Once
        // something runs, a leftover is either written again (same id) or dropped by the
        // servers when the allocation ends.
        let clear_alloc = self.written.is_none() && desired.is_empty() && self.has_services();
        match self.send(upserts, deletes, clear_alloc).await {
            Ok(()) => {
                self.retry.succeeded();
                self.written = Some(desired);
            }
            Err(e) => {
                let delay = self.retry.failed(backoff::stagger());
                tracing::warn!(
                    alloc = %self.alloc_id,
                    failures = self.retry.failures(),
                    retry_in_ms = delay.as_millis() as u64,
                    "writing the allocation's service registrations: {e}"
                );
                self.write_at = Some(tokio::time::Instant::now() + delay);
            }
        }
    }

    async fn send(
        &self,
        upserts: Vec<ServiceRegistration>,
        deletes: Vec<String>,
        clear_alloc: bool,
    ) -> Result<(), String> {
        let server = &self.ctx.server;
        let timed = |what: &'static str| {
            move |_| format!("{what}: no answer within {}s", WRITE_TIMEOUT.as_secs())
        };
        if !upserts.is_empty() {
            tokio::time::timeout(WRITE_TIMEOUT, server.upsert_services(upserts))
                .await
                .map_err(timed("registering"))??;
        }
        if !deletes.is_empty() || clear_alloc {
            let alloc_ids = if clear_alloc {
                vec![self.alloc_id.clone()]
            } else {
                Vec::new()
            };
            tokio::time::timeout(WRITE_TIMEOUT, server.delete_services(deletes, alloc_ids))
                .await
                .map_err(timed("deregistering"))??;
        }
        Ok(())
    }

    /// The allocation stops: every instance leaves the catalog (retried until the wait of
    /// whoever asked ends), and no check runs any more.
    async fn stop_all(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.live.clear();
        self.publish();
        if !self.has_services() {
            // Nothing was ever registered: no write.
            return;
        }
        let ids: Vec<String> = self
            .written
            .as_ref()
            .map(|w| w.keys().cloned().collect())
            .unwrap_or_default();
        let mut retry = Backoff::new(WRITE_RETRY);
        loop {
            // By allocation too: whatever an earlier daemon registered for it goes as well.
            match self.send(Vec::new(), ids.clone(), true).await {
                Ok(()) => {
                    self.written = Some(BTreeMap::new());
                    self.write_at = None;
                    return;
                }
                Err(e) => {
                    let delay = retry.failed(backoff::stagger());
                    tracing::warn!(alloc = %self.alloc_id, "deregistering the allocation's services: {e}");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs one check every `interval` (the first at once), each under the node's bound on
/// concurrent checks, and sends its results until the receiver is gone or the loop aborted.
async fn check_loop(
    probe: probe::Probe,
    interval: Duration,
    timeout: Duration,
    limit: Arc<Semaphore>,
    supervisor: SupervisorClient,
    results: mpsc::Sender<CheckEvent>,
    generation: u64,
) {
    loop {
        let started = tokio::time::Instant::now();
        let outcome = {
            let Ok(_permit) = limit.acquire().await else {
                return;
            };
            probe.run(timeout, &supervisor).await
        };
        if results
            .send(CheckEvent {
                generation,
                outcome,
            })
            .await
            .is_err()
        {
            return;
        }
        tokio::time::sleep_until(started + interval).await;
    }
}
