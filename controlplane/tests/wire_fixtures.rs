//! Golden fixtures for what servers write to disk and send each other.
//!
//! A rolling upgrade mixes versions: a new server replays a log an old one wrote, installs an old
//! server's snapshot, and answers an old server's Raft messages (and the other way round). Each
//! fixture in `tests/fixtures/wire/` holds the exact bytes the production encoder wrote for a
//! value built below. Every run decodes the checked-in bytes with the production decoder and
//! compares the result with the value built here, checks that the value round-trips, and that
//! encoding it now gives the same bytes (the encoding is deterministic: every map is ordered).
//!
//! Values fill their fields with non-default values: the model's structs read a missing field
//! as its default, so only a non-default value makes a renamed field visible.
//!
//! `NODED_BLESS_FIXTURES=1 cargo test -p controlplane --test wire_fixtures` (re)writes them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use controlplane::model::{
    Affinity, AllocClientUpdate, AllocDeploymentStatus, AllocMetric, AllocNetworkStatus,
    AllocState, AllocatedCpuResources, AllocatedMemoryResources, AllocatedPortMapping,
    AllocatedResources, AllocatedSharedResources, AllocatedTaskResources, Allocation,
    AutopilotConfiguration, ClientHostVolumeConfig, ClientStatus, Constraint, Deployment,
    DeploymentState, DeploymentStatusUpdate, DesiredStatus, DesiredTransition, DisconnectStrategy,
    DnsConfig, DrainMetadata, DrainStrategy, DriverInfo, EphemeralDisk, EvalStatus, Evaluation,
    HealthStatus, Job, JobStatus, JobType, JobUiConfig, JobUiLink, JobVersionTag, LogConfig,
    MigrateStrategy, Multiregion, MultiregionRegion, MultiregionStrategy, NetworkResource, Node,
    NodeCpuResources, NodeDiskResources, NodeEvent, NodeMemoryResources, NodeNetworkAddress,
    NodeNetworkResource, NodePool, NodePoolSchedulerConfiguration, NodeReservedNetworkResources,
    NodeResources, NodeScoreMeta, NodeStatus, ParameterizedJobConfig, PeriodicConfig, Port,
    PreemptionConfig, RescheduleEvent, ReschedulePolicy, RescheduleTracker, Resources,
    RestartPolicy, ScalingEvent, SchedulerConfiguration, ServiceCheckHealth, ServiceRegistration,
    Spread, SpreadTarget, Task, TaskEvent, TaskGroup, TaskLifecycle, TaskLifecycleState, TaskState,
    UpdateStrategy,
};
use controlplane::raft::{
    codec, decode_snapshot_file, encode_snapshot_file, Entry, HelloReply, LogId, PeerStatus,
    ProposeError, RaftReply, RaftRequest, ServerInfo, ServerNode, SnapshotMeta, StoredMembership,
    TypeConfig,
};
use controlplane::state::{
    AllocPreemption, AllocStop, Command, CommandResponse, PlanResult, SnapshotFile, State,
    SNAPSHOT_FORMAT_VERSION,
};
use openraft::error::{Fatal, InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{CommittedLeaderId, EntryPayload, Membership, SnapshotSegmentId, Vote};

const BLESS_ENV: &str = "NODED_BLESS_FIXTURES";

const UPGRADE_HINT: &str = "if this change is intended and older servers/supervisors can still \
read what this version writes, bless with NODED_BLESS_FIXTURES=1 and say so in the commit; \
otherwise this breaks rolling upgrades";

// ---------------------------------------------------------------------------------------------
// The checker

/// Checks fixtures one by one and reports every failure at the end, so one run names them all.
struct Fixtures {
    dir: PathBuf,
    bless: bool,
    failures: Vec<String>,
}

impl Fixtures {
    fn new() -> Fixtures {
        Fixtures {
            dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wire"),
            bless: std::env::var_os(BLESS_ENV).is_some_and(|v| v == "1"),
            failures: Vec::new(),
        }
    }

    /// `encoded`: what the production encoder writes for the value now. `check`: decodes bytes
    /// with the production decoder and says how the result differs from the value, if it does.
    fn check(&mut self, name: &str, encoded: Vec<u8>, check: impl Fn(&[u8]) -> Result<(), String>) {
        let path = self.dir.join(name);
        if let Err(e) = check(&encoded) {
            self.failures.push(format!(
                "{name}: the value built in the test does not survive its own encoding: {e}"
            ));
            return;
        }
        if self.bless {
            let current = std::fs::read(&path).ok();
            if current.as_deref() != Some(&encoded[..]) {
                if let Err(e) = std::fs::write(&path, &encoded) {
                    self.failures
                        .push(format!("{name}: cannot write {}: {e}", path.display()));
                } else {
                    eprintln!("blessed {}", path.display());
                }
            }
            return;
        }
        let stored = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                self.failures.push(format!(
                    "{name}: the fixture {} cannot be read ({e}); a new fixture is written by \
                     blessing",
                    path.display()
                ));
                return;
            }
        };
        if let Err(e) = check(&stored) {
            self.failures.push(format!(
                "{name}: the checked-in bytes ({}) no longer decode to the value this version \
                 builds: {e}",
                path.display()
            ));
        }
        if stored != encoded {
            self.failures.push(format!(
                "{name}: this version encodes the value differently: {}",
                first_difference(&stored, &encoded)
            ));
        }
    }

    fn finish(self) {
        if self.failures.is_empty() {
            return;
        }
        panic!(
            "{} wire fixture failure(s):\n- {}\n\n{UPGRADE_HINT}",
            self.failures.len(),
            self.failures.join("\n- ")
        );
    }
}

/// Where two byte strings first differ, with some context from both.
fn first_difference(stored: &[u8], now: &[u8]) -> String {
    let at = stored
        .iter()
        .zip(now)
        .position(|(a, b)| a != b)
        .unwrap_or(stored.len().min(now.len()));
    let window = |bytes: &[u8]| {
        let start = at.saturating_sub(40);
        let end = (at + 80).min(bytes.len());
        String::from_utf8_lossy(&bytes[start..end]).into_owned()
    };
    format!(
        "first difference at byte {at} (fixture {} bytes, now {} bytes)\n    fixture: …{}…\n    now:     …{}…",
        stored.len(),
        now.len(),
        window(stored),
        window(now)
    )
}

/// Compares a decoded value with the expected one; the error shows where their debug forms
/// first differ.
fn same<T: PartialEq + std::fmt::Debug>(decoded: &T, expected: &T) -> Result<(), String> {
    if decoded == expected {
        return Ok(());
    }
    let (a, b) = (format!("{decoded:?}"), format!("{expected:?}"));
    let at = a
        .char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map(|((i, _), _)| i)
        .unwrap_or(a.len().min(b.len()));
    let window = |s: &str| {
        let start = (0..=at.saturating_sub(60))
            .rev()
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(0);
        let end = (at + 100..=s.len())
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(s.len());
        s.get(start..end).unwrap_or(s).to_string()
    };
    Err(format!(
        "the decoded value differs from the expected one\n    decoded:  …{}…\n    expected: …{}…",
        window(&a),
        window(&b)
    ))
}

/// A value stored through `raft::codec` (log entries, votes, log ids).
fn check_codec<T>(fixtures: &mut Fixtures, name: &str, value: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let encoded =
        codec::encode(value).unwrap_or_else(|e| panic!("{name}: cannot encode the value: {e}"));
    fixtures.check(name, encoded, |bytes| {
        let decoded: T = codec::decode(bytes).map_err(|e| e.to_string())?;
        same(&decoded, value)
    });
}

// ---------------------------------------------------------------------------------------------
// Values, with fixed ids and times

const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z in nanoseconds
const JOB_ID: &str = "web";
const NODE_ID: &str = "4b8a3f8e-2f6c-4d1b-9a77-0c5d7e1f2a30";
const EVAL_ID: &str = "9c1d2e3f-4a5b-4c6d-8e7f-a0b1c2d3e4f5";
const ALLOC_ID: &str = "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9";

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn constraint() -> Constraint {
    Constraint {
        l_target: "${attr.kernel.name}".into(),
        r_target: "linux".into(),
        operand: "=".into(),
    }
}

fn affinity() -> Affinity {
    Affinity {
        l_target: "${node.datacenter}".into(),
        r_target: "dc1".into(),
        operand: "=".into(),
        weight: Some(50),
    }
}

fn spread() -> Spread {
    Spread {
        attribute: "${node.datacenter}".into(),
        weight: Some(70),
        spread_target: vec![SpreadTarget {
            value: "dc1".into(),
            percent: 60,
        }],
    }
}

fn restart_policy() -> RestartPolicy {
    RestartPolicy {
        attempts: 3,
        interval: secs(1800),
        delay: secs(15),
        mode: "delay".into(),
        render_templates: true,
    }
}

fn update_strategy() -> UpdateStrategy {
    UpdateStrategy {
        stagger: Some(secs(30)),
        max_parallel: Some(2),
        health_check: Some("task_states".into()),
        min_healthy_time: Some(secs(10)),
        healthy_deadline: Some(secs(300)),
        progress_deadline: Some(secs(600)),
        canary: Some(1),
        auto_revert: Some(true),
        auto_promote: Some(true),
    }
}

fn migrate_strategy() -> MigrateStrategy {
    MigrateStrategy {
        max_parallel: Some(1),
        health_check: Some("checks".into()),
        min_healthy_time: Some(secs(10)),
        healthy_deadline: Some(secs(300)),
    }
}

fn reschedule_policy() -> ReschedulePolicy {
    ReschedulePolicy {
        attempts: Some(2),
        interval: Some(secs(3600)),
        delay: Some(secs(30)),
        delay_function: Some("exponential".into()),
        max_delay: Some(secs(3600)),
        unlimited: Some(true),
    }
}

fn network() -> NetworkResource {
    NetworkResource {
        mode: "host".into(),
        device: "eth0".into(),
        cidr: "10.0.0.0/24".into(),
        ip: "10.0.0.7".into(),
        dns: None,
        reserved_ports: vec![Port {
            label: "admin".into(),
            value: 9000,
            to: 9001,
            host_network: "public".into(),
            ignore_collision: true,
        }],
        dynamic_ports: vec![Port {
            label: "http".into(),
            value: 23456,
            to: 8080,
            host_network: "default".into(),
            ignore_collision: false,
        }],
        hostname: "web-0".into(),
        mbits: Some(10),
        cni: None,
    }
}

fn task() -> Task {
    let mut config = serde_json::Map::new();
    config.insert("command".into(), serde_json::json!("/bin/sleep"));
    config.insert(
        "args".into(),
        serde_json::json!(["1000", {"nested": [1.5, null, true]}]),
    );
    Task {
        name: "server".into(),
        driver: "exec".into(),
        user: "nobody".into(),
        config,
        env: map(&[("PORT", "8080")]),
        resources: Some(Resources {
            cpu: 500,
            cores: 1,
            memory_mb: 256,
            memory_max_mb: 512,
            disk_mb: Some(300),
            networks: vec![network()],
            devices: Vec::new(),
            numa: None,
            secrets_mb: Some(1),
            iops: Some(5),
        }),
        restart_policy: Some(restart_policy()),
        meta: map(&[("tier", "frontend")]),
        kill_timeout: Some(secs(5)),
        kill_signal: "SIGTERM".into(),
        log_config: Some(LogConfig {
            max_files: 3,
            max_file_size_mb: 5,
            disabled: true,
            enabled: Some(false),
        }),
        leader: true,
        lifecycle: Some(TaskLifecycle {
            hook: "prestart".into(),
            sidecar: true,
        }),
        constraints: vec![constraint()],
        affinities: vec![affinity()],
        kind: "connect-proxy:web".into(),
        shutdown_delay: secs(2),
        ..Default::default()
    }
}

fn task_group() -> TaskGroup {
    TaskGroup {
        name: "frontend".into(),
        count: 2,
        tasks: vec![task()],
        restart_policy: Some(restart_policy()),
        meta: map(&[("group", "a")]),
        constraints: vec![constraint()],
        affinities: vec![affinity()],
        spreads: vec![spread()],
        disconnect: Some(DisconnectStrategy {
            lost_after: Some(secs(60)),
            stop_on_client_after: Some(secs(120)),
            replace: Some(true),
            reconcile: Some("best_score".into()),
        }),
        reschedule_policy: Some(reschedule_policy()),
        ephemeral_disk: Some(EphemeralDisk {
            sticky: Some(true),
            migrate: Some(true),
            size_mb: Some(300),
        }),
        update: Some(update_strategy()),
        migrate: Some(migrate_strategy()),
        networks: vec![network()],
        shutdown_delay: Some(secs(3)),
        max_run_duration: Some(secs(7200)),
        stop_after_client_disconnect: Some(secs(90)),
        max_client_disconnect: Some(secs(300)),
        prevent_reschedule_on_lost: true,
        ..Default::default()
    }
}

fn job() -> Job {
    Job {
        region: "eu-west".into(),
        namespace: "prod".into(),
        id: JOB_ID.into(),
        name: "web-name".into(),
        job_type: JobType::Batch,
        priority: 70,
        all_at_once: true,
        datacenters: strings(&["dc1", "dc2"]),
        node_pool: "edge".into(),
        task_groups: vec![task_group()],
        meta: map(&[("owner", "team-a")]),
        constraints: vec![constraint()],
        affinities: vec![affinity()],
        spreads: vec![spread()],
        update: Some(update_strategy()),
        multiregion: Some(Multiregion {
            strategy: Some(MultiregionStrategy {
                max_parallel: 1,
                on_failure: "fail_all".into(),
            }),
            regions: vec![MultiregionRegion {
                name: "eu-west".into(),
                count: Some(2),
                datacenters: strings(&["dc1"]),
                node_pool: "edge".into(),
                meta: map(&[("m", "1")]),
            }],
        }),
        periodic: Some(PeriodicConfig {
            enabled: Some(true),
            spec: "*/15 * * * *".into(),
            specs: strings(&["*/15 * * * *"]),
            spec_type: "cron".into(),
            prohibit_overlap: true,
            time_zone: "Europe/Paris".into(),
        }),
        parameterized_job: Some(ParameterizedJobConfig {
            payload: "optional".into(),
            meta_required: strings(&["who"]),
            meta_optional: strings(&["why"]),
        }),
        reschedule: Some(reschedule_policy()),
        migrate: Some(migrate_strategy()),
        ui: Some(JobUiConfig {
            description: "the web tier".into(),
            links: vec![JobUiLink {
                label: "docs".into(),
                url: "https://example.invalid/docs".into(),
            }],
        }),
        consul_namespace: "consul-ns".into(),
        vault_namespace: "vault-ns".into(),
        parent_id: "web-parent".into(),
        dispatched: true,
        dispatch_idempotency_token: "token-1".into(),
        payload: Some("cGF5bG9hZA==".into()),
        nomad_token_id: "accessor-1".into(),
        version_tag: Some(JobVersionTag {
            name: "golden".into(),
            description: "pinned".into(),
            tagged_time: T0 + 5,
        }),
        stop: true,
        status: JobStatus::Running,
        status_description: "running fine".into(),
        stable: true,
        version: 3,
        submit_time: T0,
        create_index: 10,
        modify_index: 12,
        job_modify_index: 11,
    }
}

fn alloc_metric() -> AllocMetric {
    AllocMetric {
        nodes_evaluated: 3,
        nodes_filtered: 1,
        nodes_in_pool: 4,
        nodes_available: BTreeMap::from([("dc1".to_string(), 3)]),
        class_filtered: BTreeMap::from([("small".to_string(), 1)]),
        constraint_filtered: BTreeMap::from([("${attr.kernel.name} = linux".to_string(), 1)]),
        nodes_exhausted: 1,
        dimension_exhausted: BTreeMap::from([("memory".to_string(), 1)]),
        scores: BTreeMap::from([(format!("{NODE_ID}.binpack"), 0.625)]),
        coalesced_failures: 2,
        class_exhausted: BTreeMap::from([("large".to_string(), 1)]),
        score_meta_data: vec![NodeScoreMeta {
            node_id: NODE_ID.into(),
            scores: BTreeMap::from([("binpack".to_string(), 0.625)]),
            norm_score: 0.625,
        }],
    }
}

fn eval() -> Evaluation {
    Evaluation {
        id: EVAL_ID.into(),
        namespace: "prod".into(),
        priority: 70,
        eval_type: "batch".into(),
        triggered_by: "job-register".into(),
        job_id: JOB_ID.into(),
        job_modify_index: 11,
        node_id: NODE_ID.into(),
        status: EvalStatus::Blocked,
        status_description: "blocked on memory".into(),
        previous_eval: "prev-eval".into(),
        next_eval: "next-eval".into(),
        blocked_eval: "blocked-eval".into(),
        failed_tg_allocs: BTreeMap::from([("frontend".to_string(), alloc_metric())]),
        queued_allocations: BTreeMap::from([("frontend".to_string(), 1)]),
        snapshot_index: 9,
        wait_until: "2026-01-01T00:10:00Z".into(),
        class_eligibility: BTreeMap::from([
            ("v1:1".to_string(), true),
            ("v1:2".to_string(), false),
        ]),
        escaped_computed_class: false,
        create_index: 10,
        modify_index: 13,
        create_time: T0,
        modify_time: T0 + 1_000,
    }
}

fn node() -> Node {
    Node {
        id: NODE_ID.into(),
        name: "client-1".into(),
        datacenter: "dc1".into(),
        node_pool: "edge".into(),
        node_class: "small".into(),
        http_addr: "10.0.0.7:4646".into(),
        attributes: map(&[
            ("kernel.name", "linux"),
            ("unique.network.ip-address", "10.0.0.7"),
        ]),
        meta: map(&[("rack", "r1")]),
        node_resources: NodeResources {
            cpu: NodeCpuResources {
                cpu_shares: 8000,
                total_cpu_cores: 4,
                reservable_cpu_cores: vec![1, 2, 3],
            },
            memory: NodeMemoryResources { memory_mb: 16_384 },
            disk: NodeDiskResources { disk_mb: 100_000 },
            min_dynamic_port: 21_000,
            max_dynamic_port: 31_000,
            networks: None,
            node_networks: vec![
                NodeNetworkResource {
                    mode: "host".into(),
                    device: "eth0".into(),
                    addresses: vec![NodeNetworkAddress {
                        family: "ipv4".into(),
                        alias: "default".into(),
                        address: "10.0.0.7".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                NodeNetworkResource {
                    mode: "bridge".into(),
                    device: "noded0".into(),
                    ..Default::default()
                },
            ],
        },
        reserved_resources: NodeResources {
            cpu: NodeCpuResources {
                cpu_shares: 500,
                total_cpu_cores: 1,
                reservable_cpu_cores: vec![0],
            },
            memory: NodeMemoryResources { memory_mb: 512 },
            disk: NodeDiskResources { disk_mb: 1_000 },
            min_dynamic_port: 0,
            max_dynamic_port: 0,
            networks: Some(NodeReservedNetworkResources {
                reserved_host_ports: "22,8000-8100".into(),
            }),
            node_networks: Vec::new(),
        },
        drivers: BTreeMap::from([(
            "exec".to_string(),
            DriverInfo {
                attributes: map(&[("driver.exec", "true")]),
                detected: true,
                healthy: true,
                health_description: "Healthy".into(),
                update_time: "2026-01-01T00:00:00Z".into(),
            },
        )]),
        status: NodeStatus::Ready,
        status_description: "ready since boot".into(),
        status_updated_at: T0 + 2,
        scheduling_eligibility: "ineligible".into(),
        drain: true,
        drain_strategy: Some(DrainStrategy {
            deadline: 3_600_000_000_000,
            ignore_system_jobs: true,
            force_deadline: "2026-01-01T01:00:00Z".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
        }),
        last_drain: Some(DrainMetadata {
            started_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-01T00:00:05Z".into(),
            status: "draining".into(),
            accessor_id: "accessor".into(),
            meta: map(&[("message", "rack r1 maintenance")]),
        }),
        events: vec![NodeEvent {
            message: "Node registered".into(),
            subsystem: "Cluster".into(),
            details: map(&[("reason", "first")]),
            timestamp: "2026-01-01T00:00:00Z".into(),
            create_index: 5,
        }],
        host_volumes: BTreeMap::from([(
            "data".to_string(),
            ClientHostVolumeConfig {
                name: "data".into(),
                path: "/srv/data".into(),
                read_only: true,
            },
        )]),
        computed_class: "v1:14695981039346656037".into(),
        create_index: 5,
        modify_index: 6,
    }
}

fn task_state() -> TaskState {
    TaskState {
        state: TaskLifecycleState::Dead,
        failed: true,
        restarts: 2,
        last_restart: Some("2026-01-01T00:00:03Z".into()),
        started_at: Some("2026-01-01T00:00:01Z".into()),
        finished_at: Some("2026-01-01T00:00:09Z".into()),
        events: vec![TaskEvent {
            event_type: "Terminated".into(),
            time: T0 + 9,
            display_message: "Exit Code: 2".into(),
            details: map(&[("exit_code", "2")]),
            message: "exited".into(),
            exit_code: 2,
            signal: 9,
            kill_reason: "oom".into(),
            driver_error: "driver said no".into(),
            setup_error: "setup said no".into(),
            restart_reason: "policy".into(),
            start_delay: 15,
            fails_task: true,
        }],
    }
}

fn alloc() -> Allocation {
    Allocation {
        id: ALLOC_ID.into(),
        namespace: "prod".into(),
        eval_id: EVAL_ID.into(),
        name: "web.frontend[0]".into(),
        node_id: NODE_ID.into(),
        node_name: "client-1".into(),
        job_id: JOB_ID.into(),
        job: Some(Arc::new(job())),
        task_group: "frontend".into(),
        allocated_resources: AllocatedResources {
            tasks: BTreeMap::from([(
                "server".to_string(),
                AllocatedTaskResources {
                    cpu: AllocatedCpuResources {
                        cpu_shares: 500,
                        reserved_cores: vec![2],
                    },
                    memory: AllocatedMemoryResources {
                        memory_mb: 256,
                        memory_max_mb: 512,
                    },
                },
            )]),
            shared: AllocatedSharedResources {
                disk_mb: 300,
                networks: vec![NetworkResource {
                    ip: "10.0.0.5".into(),
                    dynamic_ports: vec![Port {
                        label: "http".into(),
                        value: 23456,
                        to: 8080,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ports: vec![AllocatedPortMapping {
                    label: "http".into(),
                    value: 23456,
                    to: 8080,
                    host_ip: "10.0.0.5".into(),
                    ignore_collision: false,
                }],
            },
        },
        metrics: alloc_metric(),
        desired_status: DesiredStatus::Stop,
        desired_description: "alloc is being updated".into(),
        client_status: ClientStatus::Failed,
        client_description: "tasks failed".into(),
        task_states: BTreeMap::from([("server".to_string(), task_state())]),
        previous_allocation: "prev-alloc".into(),
        next_allocation: "next-alloc".into(),
        deployment_id: "deploy-1".into(),
        reschedule_tracker: Some(RescheduleTracker {
            events: vec![RescheduleEvent {
                reschedule_time: T0 + 2,
                prev_alloc_id: "prev-alloc".into(),
                prev_node_id: "prev-node".into(),
                delay: 30_000_000_000,
            }],
        }),
        followup_eval_id: "followup-eval".into(),
        desired_transition: DesiredTransition {
            migrate: Some(true),
            reschedule: Some(false),
            force_reschedule: None,
            no_shutdown_delay: Some(true),
        },
        deployment_status: Some(AllocDeploymentStatus {
            healthy: Some(true),
            timestamp: "2026-01-01T00:00:09Z".into(),
            canary: false,
            modify_index: 15,
        }),
        alloc_states: vec![AllocState {
            field: "ClientStatus".into(),
            value: "unknown".into(),
            time: "2026-01-01T00:00:08Z".into(),
        }],
        preempted_allocations: vec!["victim-alloc".into()],
        preempted_by_allocation: "preempting-alloc".into(),
        network_status: Some(AllocNetworkStatus {
            interface_name: "eth0".into(),
            address: "172.26.64.9".into(),
            address_ipv6: String::new(),
            dns: None,
        }),
        create_index: 14,
        modify_index: 16,
        alloc_modify_index: 15,
        create_time: T0 + 3,
        modify_time: T0 + 4,
    }
}

fn scheduler_config() -> SchedulerConfiguration {
    SchedulerConfiguration {
        scheduler_algorithm: "spread".into(),
        preemption_config: PreemptionConfig {
            system_scheduler_enabled: false,
            sysbatch_scheduler_enabled: true,
            batch_scheduler_enabled: true,
            service_scheduler_enabled: true,
        },
        memory_oversubscription_enabled: true,
        reject_job_registration: true,
        pause_eval_broker: true,
        create_index: 2,
        modify_index: 3,
    }
}

/// One value of every [`Command`] variant, with its fixture name.
fn commands() -> Vec<(&'static str, Command)> {
    vec![
        (
            "command-job-register",
            Command::JobRegister {
                job: Box::new(job()),
                eval: Some(eval()),
                now: T0 + 10,
                enforce_index: None,
                tracked_versions: None,
            },
        ),
        (
            "command-job-deregister",
            Command::JobDeregister {
                namespace: "prod".into(),
                job_id: JOB_ID.into(),
                purge: true,
                eval: Some(eval()),
                now: T0 + 11,
            },
        ),
        (
            "command-node-register",
            Command::NodeRegister {
                node: Box::new(node()),
                now: T0 + 12,
            },
        ),
        (
            "command-node-register-with-evals",
            Command::NodeRegisterWithEvals {
                node: Box::new(node()),
                evals: vec![eval()],
                now: T0 + 12,
            },
        ),
        (
            "command-node-update-status",
            Command::NodeUpdateStatus {
                node_id: NODE_ID.into(),
                status: NodeStatus::Down,
                evals: vec![eval()],
                now: T0 + 13,
            },
        ),
        (
            "command-alloc-client-update",
            Command::AllocClientUpdate {
                updates: vec![AllocClientUpdate {
                    id: ALLOC_ID.into(),
                    client_status: ClientStatus::Running,
                    client_description: "tasks are running".into(),
                    task_states: BTreeMap::from([("server".to_string(), task_state())]),
                    deployment_status: Some(AllocDeploymentStatus {
                        healthy: Some(true),
                        timestamp: "2024-05-01T12:00:30Z".into(),
                        ..Default::default()
                    }),

                    network_status: Some(AllocNetworkStatus {
                        interface_name: "eth0".into(),
                        address: "172.26.64.7".into(),
                        address_ipv6: String::new(),
                        dns: Some(DnsConfig {
                            servers: vec!["10.0.0.53".into()],
                            searches: vec!["service.consul".into()],
                            options: vec!["ndots:2".into()],
                        }),
                    }),
                }],
                evals: vec![eval()],
                now: T0 + 14,
            },
        ),
        (
            "command-plan-apply",
            Command::PlanApply(Box::new(PlanResult {
                eval: Some(eval()),
                allocs: vec![alloc()],
                stops: vec![AllocStop {
                    alloc_id: "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d".into(),
                    desired_status: DesiredStatus::Evict,
                    desired_description: "alloc is being evicted".into(),
                    client_status: Some(ClientStatus::Lost),
                }],
                created_evals: vec![eval()],
                now: T0 + 15,
                preemptions: vec![AllocPreemption {
                    alloc_id: "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e".into(),
                    preempted_by_allocation: ALLOC_ID.into(),
                }],
                job: None,
                deployment: Some(deployment()),
                deployment_updates: vec![deployment_update()],
            })),
        ),
        (
            // A normalized plan: the job once, the allocations without it.
            "command-plan-apply-normalized",
            Command::PlanApply(Box::new(PlanResult {
                eval: Some(eval()),
                allocs: vec![Allocation {
                    job: None,
                    ..alloc()
                }],
                now: T0 + 15,
                job: Some(std::sync::Arc::new(job())),
                ..Default::default()
            })),
        ),
        (
            "command-eval-update",
            Command::EvalUpdate {
                evals: vec![eval()],
                now: T0 + 16,
            },
        ),
        (
            "command-scheduler-set-config",
            Command::SchedulerSetConfig {
                config: scheduler_config(),
                cas: None,
            },
        ),
        (
            "command-scheduler-set-config-cas",
            Command::SchedulerSetConfig {
                config: scheduler_config(),
                cas: Some(23),
            },
        ),
        (
            "command-autopilot-set-config",
            Command::AutopilotSetConfig {
                config: autopilot_config(),
                cas: Some(17),
            },
        ),
        (
            "command-restore-state",
            Command::RestoreState {
                snapshot: Box::new(snapshot_state()),
            },
        ),
        (
            "command-alloc-update-desired-transition",
            Command::AllocUpdateDesiredTransition {
                transitions: BTreeMap::from([(
                    ALLOC_ID.to_string(),
                    DesiredTransition {
                        migrate: Some(true),
                        ..Default::default()
                    },
                )]),
                evals: vec![eval()],
                now: T0 + 18,
            },
        ),
        (
            "command-node-drain-complete",
            Command::NodeDrainComplete {
                node_id: NODE_ID.into(),
                now: T0 + 19,
            },
        ),
        (
            "command-node-update-drain",
            Command::NodeUpdateDrain {
                node_id: NODE_ID.into(),
                drain_strategy: Some(DrainStrategy {
                    deadline: 3_600_000_000_000,
                    ignore_system_jobs: true,
                    force_deadline: "2024-05-01T13:00:00Z".into(),
                    started_at: "2024-05-01T12:00:00Z".into(),
                }),
                mark_eligible: true,
                meta: map(&[("message", "kernel upgrade")]),
                evals: vec![eval()],
                now: T0 + 22,
            },
        ),
        (
            "command-node-update-eligibility",
            Command::NodeUpdateEligibility {
                node_id: NODE_ID.into(),
                eligibility: "ineligible".into(),
                evals: vec![eval()],
                now: T0 + 19,
            },
        ),
        (
            "command-node-deregister",
            Command::NodeDeregister {
                node_ids: vec![NODE_ID.into()],
                force: true,
                evals: vec![eval()],
                now: T0 + 20,
            },
        ),
        (
            "command-node-pool-upsert",
            Command::NodePoolUpsert {
                pools: vec![node_pool()],
            },
        ),
        (
            "command-node-pool-delete",
            Command::NodePoolDelete {
                names: strings(&["gpu", "batch"]),
            },
        ),
        (
            "command-garbage-collect",
            Command::GarbageCollect {
                jobs: vec![("prod".into(), JOB_ID.into())],
                eval_ids: strings(&["e0000000-0000-4000-8000-000000000001"]),
                alloc_ids: strings(&[ALLOC_ID]),
                node_ids: strings(&[NODE_ID]),
                deployment_ids: strings(&[DEPLOYMENT_ID]),
            },
        ),
        (
            "command-deployment-status-update",
            Command::DeploymentStatusUpdate {
                update: deployment_update(),
                job: Some(Box::new(job())),
                eval: Some(eval()),
                now: T0 + 30,
            },
        ),
        (
            "command-deployment-promote",
            Command::DeploymentPromote {
                deployment_id: DEPLOYMENT_ID.into(),
                all: false,
                groups: strings(&["frontend"]),
                eval: Some(eval()),
                now: T0 + 31,
            },
        ),
        (
            "command-deployment-alloc-health",
            Command::DeploymentAllocHealth {
                deployment_id: DEPLOYMENT_ID.into(),
                healthy: strings(&[ALLOC_ID]),
                unhealthy: strings(&["0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"]),
                update: Some(deployment_update()),
                job: None,
                eval: Some(eval()),
                now: T0 + 32,
            },
        ),
        (
            "command-eval-delete",
            Command::EvalDelete {
                eval_ids: strings(&["e0000000-0000-4000-8000-000000000001"]),
                now: T0 + 20,
            },
        ),
        (
            "command-periodic-launch",
            Command::PeriodicLaunch {
                child: Box::new(child_job("/periodic-1700000000")),
                eval: eval(),
                launch: 1_700_000_000_000_000_000,
                now: T0 + 21,
            },
        ),
        (
            "command-job-dispatch",
            Command::JobDispatch {
                child: Box::new({
                    let mut child = child_job("/dispatch-1700000000-0a1b2c3d");
                    child.dispatched = true;
                    child.dispatch_idempotency_token = "once".into();
                    child.payload = Some("aGVsbG8=".into());
                    child
                }),
                eval: Some(eval()),
                now: T0 + 22,
            },
        ),
        (
            "command-job-scale",
            Command::JobScale {
                namespace: "prod".into(),
                job_id: JOB_ID.into(),
                group: "web".into(),
                count: Some(4),
                event: ScalingEvent {
                    time: T0 + 23,
                    count: Some(4),
                    previous_count: 2,
                    message: "busy".into(),
                    error: true,
                    meta: Some(serde_json::Map::from_iter([(
                        "by".to_string(),
                        serde_json::json!("autoscaler"),
                    )])),
                    eval_id: Some("e0000000-0000-4000-8000-000000000001".into()),
                    create_index: 44,
                },
                eval: Some(eval()),
                now: T0 + 23,
            },
        ),
        (
            "command-service-registration-upsert",
            Command::ServiceRegistrationUpsert {
                services: vec![service_registration()],
            },
        ),
        (
            "command-service-registration-delete",
            Command::ServiceRegistrationDelete {
                ids: vec![service_registration().id],
                alloc_ids: strings(&[ALLOC_ID]),
            },
        ),
        (
            // `command-job-register` pins the entry without the optional fields (as older
            // servers write it); this one pins them.
            "command-job-register-enforced",
            Command::JobRegister {
                job: Box::new(job()),
                eval: Some(eval()),
                now: T0 + 24,
                enforce_index: Some(17),
                tracked_versions: Some(12),
            },
        ),
        (
            "command-job-stability",
            Command::JobStability {
                namespace: "prod".into(),
                job_id: JOB_ID.into(),
                version: 3,
                stable: true,
            },
        ),
        (
            "command-job-version-tag",
            Command::JobVersionTag {
                namespace: "prod".into(),
                job_id: JOB_ID.into(),
                version: 2,
                name: "golden".into(),
                tag: Some(JobVersionTag {
                    name: "golden".into(),
                    description: "the one to go back to".into(),
                    tagged_time: T0 + 25,
                }),
            },
        ),
        (
            "command-job-version-tag-unset",
            Command::JobVersionTag {
                namespace: "prod".into(),
                job_id: JOB_ID.into(),
                version: 2,
                name: "golden".into(),
                tag: None,
            },
        ),
    ]
}

/// A child of the golden job, as a periodic launch or a dispatch makes it.
fn child_job(suffix: &str) -> Job {
    let mut child = job();
    child.parent_id = child.id.clone();
    child.id = format!("{}{suffix}", child.id);
    child.name = child.id.clone();
    child
}

fn node_pool() -> NodePool {
    NodePool {
        name: "gpu".into(),
        description: "nodes with GPUs".into(),
        meta: map(&[("team", "ml")]),
        scheduler_configuration: Some(NodePoolSchedulerConfiguration {
            scheduler_algorithm: "spread".into(),
            memory_oversubscription_enabled: Some(true),
        }),
        create_index: 30,
        modify_index: 31,
    }
}

fn autopilot_config() -> AutopilotConfiguration {
    AutopilotConfiguration {
        cleanup_dead_servers: false,
        last_contact_threshold: Duration::from_millis(350),
        max_trailing_logs: 400,
        min_quorum: 3,
        server_stabilization_time: Duration::from_secs(15),
        enable_redundancy_zones: true,
        disable_upgrade_migration: true,
        enable_custom_upgrades: true,
        create_index: 5,
        modify_index: 9,
    }
}

/// Names a command's variant, so that adding one without a fixture fails to compile here.
fn variant(command: &Command) -> &'static str {
    match command {
        Command::JobRegister { .. } => "JobRegister",
        Command::JobDeregister { .. } => "JobDeregister",
        Command::NodeRegister { .. } => "NodeRegister",
        Command::NodeUpdateStatus { .. } => "NodeUpdateStatus",
        Command::AllocClientUpdate { .. } => "AllocClientUpdate",
        Command::PlanApply(_) => "PlanApply",
        Command::EvalUpdate { .. } => "EvalUpdate",
        Command::SchedulerSetConfig { .. } => "SchedulerSetConfig",
        Command::AutopilotSetConfig { .. } => "AutopilotSetConfig",
        Command::RestoreState { .. } => "RestoreState",
        Command::AllocUpdateDesiredTransition { .. } => "AllocUpdateDesiredTransition",
        Command::NodeDrainComplete { .. } => "NodeDrainComplete",
        Command::NodeUpdateDrain { .. } => "NodeUpdateDrain",
        Command::NodeUpdateEligibility { .. } => "NodeUpdateEligibility",
        Command::NodeDeregister { .. } => "NodeDeregister",
        Command::NodePoolUpsert { .. } => "NodePoolUpsert",
        Command::NodePoolDelete { .. } => "NodePoolDelete",
        Command::GarbageCollect { .. } => "GarbageCollect",
        Command::NodeRegisterWithEvals { .. } => "NodeRegisterWithEvals",
        Command::EvalDelete { .. } => "EvalDelete",
        Command::PeriodicLaunch { .. } => "PeriodicLaunch",
        Command::JobDispatch { .. } => "JobDispatch",
        Command::JobScale { .. } => "JobScale",
        Command::ServiceRegistrationUpsert { .. } => "ServiceRegistrationUpsert",
        Command::ServiceRegistrationDelete { .. } => "ServiceRegistrationDelete",
        Command::DeploymentStatusUpdate { .. } => "DeploymentStatusUpdate",
        Command::DeploymentPromote { .. } => "DeploymentPromote",
        Command::DeploymentAllocHealth { .. } => "DeploymentAllocHealth",
        Command::JobStability { .. } => "JobStability",
        Command::JobVersionTag { .. } => "JobVersionTag",
    }
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 2), index)
}

fn server(id: u64) -> ServerNode {
    ServerNode::new(format!("10.0.0.{id}:4647"), format!("server-{id}"))
}

fn membership() -> Membership<u64, ServerNode> {
    // Two voters and a learner (3), so both halves of the configuration are pinned.
    Membership::new(
        vec![BTreeSet::from([1, 2])],
        BTreeMap::from([(1, server(1)), (2, server(2)), (3, server(3))]),
    )
}

fn command_entry() -> Entry {
    Entry {
        log_id: log_id(7, 42),
        payload: EntryPayload::Normal(Command::SchedulerSetConfig {
            config: scheduler_config(),
            cas: None,
        }),
    }
}

fn membership_entry() -> Entry {
    Entry {
        log_id: log_id(7, 43),
        payload: EntryPayload::Membership(membership()),
    }
}

fn blank_entry() -> Entry {
    Entry {
        log_id: log_id(7, 44),
        payload: EntryPayload::Blank,
    }
}

fn server_info(id: u64) -> ServerInfo {
    ServerInfo {
        id,
        node: server(id),
        region: "eu-west".into(),
    }
}

fn snapshot_meta() -> SnapshotMeta {
    SnapshotMeta {
        last_log_id: Some(log_id(7, 40)),
        last_membership: StoredMembership::new(Some(log_id(6, 30)), membership()),
        snapshot_id: "7-2-40-golden".into(),
    }
}

fn snapshot_state() -> SnapshotFile {
    let mut previous = job();
    previous.version = 2;
    SnapshotFile {
        format_version: SNAPSHOT_FORMAT_VERSION,
        latest_index: 40,
        table_index: BTreeMap::from([
            ("allocs".to_string(), 16),
            ("evals".to_string(), 13),
            ("job_versions".to_string(), 12),
            ("jobs".to_string(), 12),
            ("node_pools".to_string(), 31),
            ("nodes".to_string(), 6),
            ("scheduler_config".to_string(), 3),
        ]),
        jobs: vec![job()],
        job_versions: vec![previous, job()],
        evals: vec![eval()],
        allocs: vec![alloc()],
        nodes: vec![node()],
        node_pools: vec![node_pool()],
        scheduler_config: Some(scheduler_config()),
        autopilot_config: Some(autopilot_config()),
        periodic_launches: Vec::new(),
        scaling_events: Vec::new(),
        service_registrations: Vec::new(),
        // Unset: a snapshot without it is byte for byte what older servers write.
        job_tracked_versions: None,
        deployments: vec![deployment()],
    }
}

const DEPLOYMENT_ID: &str = "d0000000-0000-4000-8000-000000000001";

/// A canary rollout half way: one canary placed and healthy, not promoted.
fn deployment() -> Deployment {
    Deployment {
        id: DEPLOYMENT_ID.into(),
        namespace: "prod".into(),
        job_id: JOB_ID.into(),
        job_version: 3,
        job_modify_index: 12,
        job_spec_modify_index: 11,
        job_create_index: 7,
        is_multiregion: false,
        task_groups: BTreeMap::from([(
            "frontend".to_string(),
            DeploymentState {
                auto_revert: true,
                auto_promote: false,
                progress_deadline: Duration::from_secs(600),
                require_progress_by: "2026-01-02T03:14:05Z".into(),
                promoted: false,
                placed_canaries: strings(&[ALLOC_ID]),
                desired_canaries: 1,
                desired_total: 3,
                placed_allocs: 1,
                healthy_allocs: 1,
                unhealthy_allocs: 0,
            },
        )]),
        status: "running".into(),
        status_description: "Deployment is running but requires manual promotion".into(),
        eval_priority: 50,
        create_index: 14,
        modify_index: 16,
        create_time: T0 + 20,
        modify_time: T0 + 21,
    }
}

fn deployment_update() -> DeploymentStatusUpdate {
    DeploymentStatusUpdate {
        deployment_id: DEPLOYMENT_ID.into(),
        status: "failed".into(),
        status_description: "Failed due to unhealthy allocations - rolling back to job version 2"
            .into(),
        updated_at: T0 + 22,
    }
}

/// A registered instance with a failing check, as a client writes it.
fn service_registration() -> ServiceRegistration {
    ServiceRegistration {
        id: ServiceRegistration::make_id(ALLOC_ID, "server", "api", "http"),
        service_name: "api".into(),
        namespace: "prod".into(),
        node_id: NODE_ID.into(),
        datacenter: "dc1".into(),
        job_id: JOB_ID.into(),
        alloc_id: ALLOC_ID.into(),
        tags: vec!["v2".into(), "primary".into()],
        address: "172.26.64.7".into(),
        port: 21_000,
        meta: map(&[("team", "web")]),
        status: HealthStatus::Critical,
        checks: vec![ServiceCheckHealth {
            name: "alive".into(),
            check_type: "http".into(),
            status: HealthStatus::Critical,
            output: "HTTP GET http://172.26.64.7:8080/health: 503 Service Unavailable".into(),
            timestamp: T0 + 30,
        }],
        create_index: 45,
        modify_index: 46,
    }
}

// ---------------------------------------------------------------------------------------------
// Raft messages: openraft's request types are not `PartialEq`, so they are compared part by part.

fn same_request(decoded: &RaftRequest, expected: &RaftRequest) -> Result<(), String> {
    match (decoded, expected) {
        (RaftRequest::AppendEntries(a), RaftRequest::AppendEntries(b)) => {
            same(&a.vote, &b.vote)?;
            same(&a.prev_log_id, &b.prev_log_id)?;
            same(&a.entries, &b.entries)?;
            same(&a.leader_commit, &b.leader_commit)
        }
        (RaftRequest::Vote(a), RaftRequest::Vote(b)) => same(a, b),
        (RaftRequest::InstallSnapshot(a), RaftRequest::InstallSnapshot(b)) => same(a, b),
        (RaftRequest::Propose(a), RaftRequest::Propose(b)) => same(a, b),
        (RaftRequest::ReadIndex, RaftRequest::ReadIndex) => Ok(()),
        (RaftRequest::Hello(a), RaftRequest::Hello(b)) => same(a, b),
        (RaftRequest::Join(a), RaftRequest::Join(b)) => same(a, b),
        (RaftRequest::RemoveServer(a), RaftRequest::RemoveServer(b)) => same(a, b),
        (RaftRequest::Peers, RaftRequest::Peers) => Ok(()),
        (RaftRequest::Elect, RaftRequest::Elect) => Ok(()),
        (RaftRequest::TransferLeadership(a), RaftRequest::TransferLeadership(b)) => same(a, b),
        (a, b) => Err(format!(
            "decoded a {} request, expected {}",
            a.kind(),
            b.kind()
        )),
    }
}

fn same_reply(decoded: &RaftReply, expected: &RaftReply) -> Result<(), String> {
    match (decoded, expected) {
        (RaftReply::AppendEntries(a), RaftReply::AppendEntries(b)) => same(a, b),
        (RaftReply::Vote(a), RaftReply::Vote(b)) => same(a, b),
        (RaftReply::InstallSnapshot(a), RaftReply::InstallSnapshot(b)) => same(a, b),
        (RaftReply::Propose(a), RaftReply::Propose(b)) => same(a, b),
        (RaftReply::ReadIndex(a), RaftReply::ReadIndex(b)) => same(a, b),
        (RaftReply::Hello(a), RaftReply::Hello(b)) => same(a, b),
        (RaftReply::Join(a), RaftReply::Join(b)) => same(a, b),
        (RaftReply::RemoveServer(a), RaftReply::RemoveServer(b)) => same(a, b),
        (RaftReply::Peers(a), RaftReply::Peers(b)) => same(a, b),
        (RaftReply::Elect(a), RaftReply::Elect(b)) => same(a, b),
        (RaftReply::TransferLeadership(a), RaftReply::TransferLeadership(b)) => same(a, b),
        (a, b) => Err(format!(
            "decoded a {} reply, expected {}",
            a.kind(),
            b.kind()
        )),
    }
}

fn requests() -> Vec<(&'static str, RaftRequest)> {
    vec![
        (
            "request-append-entries",
            RaftRequest::AppendEntries(AppendEntriesRequest::<TypeConfig> {
                vote: Vote::new_committed(7, 2),
                prev_log_id: Some(log_id(7, 41)),
                entries: vec![command_entry(), membership_entry(), blank_entry()],
                leader_commit: Some(log_id(7, 40)),
            }),
        ),
        (
            "request-vote",
            RaftRequest::Vote(VoteRequest::new(Vote::new(8, 3), Some(log_id(7, 44)))),
        ),
        (
            "request-install-snapshot",
            RaftRequest::InstallSnapshot(InstallSnapshotRequest::<TypeConfig> {
                vote: Vote::new_committed(7, 2),
                meta: snapshot_meta(),
                offset: 1024,
                data: b"NODEDSNP\x01{\"meta\"".to_vec(),
                done: true,
            }),
        ),
        (
            "request-propose",
            RaftRequest::Propose(Box::new(Command::EvalUpdate {
                evals: vec![eval()],
                now: T0 + 20,
            })),
        ),
        ("request-read-index", RaftRequest::ReadIndex),
        ("request-hello", RaftRequest::Hello(server_info(1))),
        ("request-join", RaftRequest::Join(server_info(3))),
        ("request-remove-server", RaftRequest::RemoveServer(3)),
        ("request-peers", RaftRequest::Peers),
        ("request-elect", RaftRequest::Elect),
        (
            "request-transfer-leadership",
            RaftRequest::TransferLeadership(Some(2)),
        ),
    ]
}

/// Names a request's variant, so that adding one without a fixture fails to compile here.
fn request_variant(request: &RaftRequest) -> &'static str {
    match request {
        RaftRequest::AppendEntries(_)
        | RaftRequest::Vote(_)
        | RaftRequest::InstallSnapshot(_)
        | RaftRequest::Propose(_)
        | RaftRequest::ReadIndex
        | RaftRequest::Hello(_)
        | RaftRequest::Join(_)
        | RaftRequest::RemoveServer(_)
        | RaftRequest::Peers
        | RaftRequest::Elect
        | RaftRequest::TransferLeadership(_) => request.kind(),
    }
}

fn replies() -> Vec<(&'static str, RaftReply)> {
    vec![
        (
            "reply-append-entries-conflict",
            RaftReply::AppendEntries(Ok(AppendEntriesResponse::Conflict)),
        ),
        (
            "reply-append-entries-higher-vote",
            RaftReply::AppendEntries(Ok(AppendEntriesResponse::HigherVote(Vote::new(9, 3)))),
        ),
        (
            "reply-append-entries-error",
            RaftReply::AppendEntries(Err(RaftError::Fatal(Fatal::Stopped))),
        ),
        (
            "reply-vote",
            RaftReply::Vote(Ok(VoteResponse::new(
                Vote::new_committed(8, 3),
                Some(log_id(7, 44)),
                true,
            ))),
        ),
        (
            "reply-install-snapshot",
            RaftReply::InstallSnapshot(Ok(InstallSnapshotResponse {
                vote: Vote::new_committed(7, 2),
            })),
        ),
        (
            "reply-install-snapshot-mismatch",
            RaftReply::InstallSnapshot(Err(RaftError::APIError(
                InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
                    expect: SnapshotSegmentId {
                        id: "7-2-40-golden".into(),
                        offset: 0,
                    },
                    got: SnapshotSegmentId {
                        id: "7-2-40-golden".into(),
                        offset: 2048,
                    },
                }),
            ))),
        ),
        (
            "reply-propose",
            RaftReply::Propose(Ok(CommandResponse {
                index: 45,
                error: Some("job \"web\" not found".into()),
                job_modify_index: 12,
                cas_mismatch: true,
            })),
        ),
        (
            "reply-propose-not-leader",
            RaftReply::Propose(Err(ProposeError::NotLeader {
                leader: Some((2, "10.0.0.2:4647".into())),
            })),
        ),
        ("reply-read-index", RaftReply::ReadIndex(Ok(Some(44)))),
        (
            "reply-read-index-timeout",
            RaftReply::ReadIndex(Err(ProposeError::Timeout { after_ms: 5000 })),
        ),
        (
            "reply-hello",
            RaftReply::Hello(HelloReply {
                server: server_info(2),
                formed: true,
                leader: Some((2, "10.0.0.2:4647".into())),
                known: vec![server_info(1), server_info(2), server_info(3)],
            }),
        ),
        ("reply-join", RaftReply::Join(Ok(()))),
        (
            "reply-join-refused",
            RaftReply::Join(Err(ProposeError::Refused(
                "server 3 is in region eu-west, this region is us-east".into(),
            ))),
        ),
        (
            "reply-remove-server-refused",
            RaftReply::RemoveServer(Err(ProposeError::Refused(
                "node 2 is the last voter of the raft group".into(),
            ))),
        ),
        (
            "reply-peers",
            RaftReply::Peers(Ok(vec![PeerStatus {
                id: 2,
                node: server(2),
                voter: true,
                leader: true,
                last_contact_ms: Some(0),
                last_index: 44,
                last_term: 7,
            }])),
        ),
        ("reply-elect", RaftReply::Elect(Ok(()))),
        (
            "reply-transfer-leadership",
            RaftReply::TransferLeadership(Ok((3, "10.0.0.3:4647".into()))),
        ),
    ]
}

/// Names a reply's variant, so that adding one without a fixture fails to compile here.
fn reply_variant(reply: &RaftReply) -> &'static str {
    match reply {
        RaftReply::AppendEntries(_)
        | RaftReply::Vote(_)
        | RaftReply::InstallSnapshot(_)
        | RaftReply::Propose(_)
        | RaftReply::ReadIndex(_)
        | RaftReply::Hello(_)
        | RaftReply::Join(_)
        | RaftReply::RemoveServer(_)
        | RaftReply::Peers(_)
        | RaftReply::Elect(_)
        | RaftReply::TransferLeadership(_) => reply.kind(),
    }
}

// ---------------------------------------------------------------------------------------------
// The tests

#[test]
fn every_command_variant_decodes_from_the_log_bytes_this_version_pins() {
    let mut fixtures = Fixtures::new();
    let commands = commands();
    let variants: BTreeSet<&str> = commands.iter().map(|(_, c)| variant(c)).collect();
    assert_eq!(variants.len(), 30, "a fixture per Command variant");
    for (name, command) in &commands {
        // A command is stored inside a log entry; the command alone is pinned here, in the
        // same codec, so that a failure names the variant.
        check_codec(&mut fixtures, &format!("{name}.bin"), command);
    }
    fixtures.finish();
}

#[test]
fn log_entries_votes_and_log_ids_decode_from_the_bytes_the_log_store_writes() {
    let mut fixtures = Fixtures::new();
    check_codec(&mut fixtures, "entry-command.bin", &command_entry());
    check_codec(&mut fixtures, "entry-membership.bin", &membership_entry());
    check_codec(&mut fixtures, "entry-blank.bin", &blank_entry());
    check_codec(&mut fixtures, "vote.bin", &Vote::new_committed(7, 2));
    check_codec(&mut fixtures, "log-id.bin", &log_id(7, 42));
    fixtures.finish();
}

#[test]
fn every_raft_request_and_reply_decodes_from_the_json_servers_exchange() {
    let mut fixtures = Fixtures::new();
    let requests = requests();
    let kinds: BTreeSet<&str> = requests.iter().map(|(_, r)| request_variant(r)).collect();
    assert_eq!(kinds.len(), 11, "a fixture per RaftRequest variant");
    for (name, request) in &requests {
        let encoded = serde_json::to_vec(request).unwrap();
        fixtures.check(&format!("{name}.json"), encoded, |bytes| {
            let decoded: RaftRequest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
            same_request(&decoded, request)
        });
    }
    let replies = replies();
    let kinds: BTreeSet<&str> = replies.iter().map(|(_, r)| reply_variant(r)).collect();
    assert_eq!(kinds.len(), 11, "a fixture per RaftReply variant");
    for (name, reply) in &replies {
        let encoded = serde_json::to_vec(reply).unwrap();
        fixtures.check(&format!("{name}.json"), encoded, |bytes| {
            let decoded: RaftReply = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
            same_reply(&decoded, reply)
        });
    }
    fixtures.finish();
}

#[test]
fn a_snapshot_file_decodes_and_rebuilds_the_state_it_was_written_from() {
    let mut fixtures = Fixtures::new();
    let meta = snapshot_meta();
    let state = snapshot_state();
    let mut encoded = Vec::new();
    encode_snapshot_file(&mut encoded, &meta, &state).unwrap();
    fixtures.check("snapshot.snap", encoded, |bytes| {
        let (decoded_meta, decoded_state) =
            decode_snapshot_file(bytes).map_err(|e| e.to_string())?;
        same(&decoded_meta, &meta)?;
        same(&decoded_state, &state)?;
        // And the server can start from it: the state rebuilds and holds what was written.
        let rebuilt = State::from_snapshot(decoded_state)?;
        same(&rebuilt.to_snapshot(), &state)
    });
    fixtures.finish();
}

/// What servers before `ServerNode` wrote: openraft's `BasicNode` (`{"addr": …}`) as the
/// membership's node type. Encoded here with that very type, so the bytes are what they wrote.
mod legacy {
    use openraft::BasicNode;

    use super::*;

    openraft::declare_raft_types!(
        pub BasicNodeConfig:
            D = Command,
            R = CommandResponse,
            NodeId = u64,
            Node = BasicNode,
            Entry = openraft::Entry<BasicNodeConfig>,
            SnapshotData = std::io::Cursor<Vec<u8>>,
            AsyncRuntime = openraft::TokioRuntime,
    );

    pub fn membership_entry() -> openraft::Entry<BasicNodeConfig> {
        openraft::Entry {
            log_id: log_id(5, 20),
            payload: EntryPayload::Membership(Membership::new(
                vec![BTreeSet::from([1, 2])],
                BTreeMap::from([
                    (1, BasicNode::new("10.0.0.1:4647")),
                    (2, BasicNode::new("10.0.0.2:4647")),
                ]),
            )),
        }
    }

    pub fn snapshot_meta() -> openraft::SnapshotMeta<u64, BasicNode> {
        openraft::SnapshotMeta {
            last_log_id: Some(log_id(5, 20)),
            last_membership: openraft::StoredMembership::new(
                Some(log_id(5, 20)),
                Membership::new(
                    vec![BTreeSet::from([1])],
                    BTreeMap::from([(1, BasicNode::new("10.0.0.1:4647"))]),
                ),
            ),
            snapshot_id: "5-2-20-legacy".into(),
        }
    }
}

#[test]
fn memberships_written_with_openraft_basic_node_still_decode_with_empty_names() {
    let mut fixtures = Fixtures::new();

    // A log entry.
    let expected = Entry {
        log_id: log_id(5, 20),
        payload: EntryPayload::Membership(Membership::new(
            vec![BTreeSet::from([1, 2])],
            BTreeMap::from([
                (1, ServerNode::new("10.0.0.1:4647", "")),
                (2, ServerNode::new("10.0.0.2:4647", "")),
            ]),
        )),
    };
    let encoded = codec::encode(&legacy::membership_entry()).unwrap();
    fixtures.check("legacy-basic-node-entry.bin", encoded, |bytes| {
        let decoded: Entry = codec::decode(bytes).map_err(|e| e.to_string())?;
        same(&decoded, &expected)
    });

    // A snapshot whose metadata holds such a membership.
    let expected_meta = SnapshotMeta {
        last_log_id: Some(log_id(5, 20)),
        last_membership: StoredMembership::new(
            Some(log_id(5, 20)),
            Membership::new(
                vec![BTreeSet::from([1])],
                BTreeMap::from([(1, ServerNode::new("10.0.0.1:4647", ""))]),
            ),
        ),
        snapshot_id: "5-2-20-legacy".into(),
    };
    let mut state = State::default().to_snapshot();
    state.latest_index = 20;
    let mut encoded = Vec::new();
    encoded.extend_from_slice(controlplane::raft::SNAPSHOT_MAGIC);
    encoded.push(controlplane::raft::SNAPSHOT_FILE_FORMAT);
    #[derive(serde::Serialize)]
    struct Envelope<'a> {
        meta: &'a openraft::SnapshotMeta<u64, openraft::BasicNode>,
        state: &'a SnapshotFile,
    }
    codec::encode_into(
        &mut encoded,
        &Envelope {
            meta: &legacy::snapshot_meta(),
            state: &state,
        },
    )
    .unwrap();
    fixtures.check("legacy-basic-node-snapshot.snap", encoded, |bytes| {
        let (meta, decoded_state) = decode_snapshot_file(bytes).map_err(|e| e.to_string())?;
        same(&meta, &expected_meta)?;
        same(&decoded_state, &state)
    });
    fixtures.finish();
}

/// What node daemons and servers exchange (`NodeRequest` → `NodeReply`, JSON), a fixture per
/// variant: a client of one version talks to servers of another during a rolling upgrade.
#[test]
fn every_node_request_and_reply_decodes_from_the_json_clients_and_servers_exchange() {
    use controlplane::server::node_rpc::{NodeReply, NodeRequest};
    let mut fixtures = Fixtures::new();
    let requests = [
        (
            "node-request-register",
            NodeRequest::Register {
                node: Box::new(node()),
            },
        ),
        (
            "node-request-heartbeat",
            NodeRequest::Heartbeat {
                node_id: NODE_ID.into(),
                forwarded: true,
            },
        ),
        (
            "node-request-get-allocs",
            NodeRequest::GetAllocs {
                node_id: NODE_ID.into(),
                min_index: 41,
                wait_ms: 300_000,
            },
        ),
        (
            "node-request-update-allocs",
            NodeRequest::UpdateAllocs {
                updates: vec![AllocClientUpdate {
                    id: ALLOC_ID.into(),
                    client_status: ClientStatus::Running,
                    client_description: "Tasks are running".into(),
                    task_states: BTreeMap::from([("server".to_string(), task_state())]),
                    deployment_status: Some(AllocDeploymentStatus {
                        healthy: Some(true),
                        timestamp: "2026-01-01T00:00:09Z".into(),
                        canary: false,
                        modify_index: 0,
                    }),

                    network_status: Some(AllocNetworkStatus {
                        interface_name: "eth0".into(),
                        address: "172.26.64.7".into(),
                        address_ipv6: String::new(),
                        dns: Some(DnsConfig {
                            servers: vec!["10.0.0.53".into()],
                            searches: vec!["service.consul".into()],
                            options: vec!["ndots:2".into()],
                        }),
                    }),
                }],
            },
        ),
        (
            "node-request-drain-self",
            NodeRequest::DrainSelf {
                node_id: NODE_ID.into(),
                drain_strategy: Some(DrainStrategy {
                    deadline: 3_600_000_000_000,
                    ignore_system_jobs: false,
                    force_deadline: "2026-01-01T01:00:00Z".into(),
                    started_at: "2026-01-01T00:00:00Z".into(),
                }),
            },
        ),
        (
            "node-request-upsert-services",
            NodeRequest::UpsertServices {
                services: vec![service_registration()],
            },
        ),
        (
            "node-request-delete-services",
            NodeRequest::DeleteServices {
                ids: vec![service_registration().id],
                alloc_ids: strings(&[ALLOC_ID]),
            },
        ),
        (
            "node-request-get-services",
            NodeRequest::GetServices {
                min_index: 46,
                wait_ms: 300_000,
            },
        ),
    ];
    let kinds: BTreeSet<&str> = requests.iter().map(|(_, r)| r.kind()).collect();
    assert_eq!(kinds.len(), 8, "a fixture per NodeRequest variant");
    for (name, request) in &requests {
        let encoded = serde_json::to_vec(request).unwrap();
        fixtures.check(&format!("{name}.json"), encoded, |bytes| {
            let decoded: NodeRequest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
            (decoded == *request)
                .then_some(())
                .ok_or_else(|| format!("decoded {decoded:?}"))
        });
    }
    let replies = [
        ("node-reply-registered", NodeReply::Registered { index: 42 }),
        (
            "node-reply-heartbeat",
            NodeReply::Heartbeat {
                ttl_ms: 17_500,
                leader: "10.0.0.1:4647".into(),
                servers: vec!["10.0.0.1:4647".into(), "10.0.0.2:4647".into()],
            },
        ),
        (
            "node-reply-allocs",
            NodeReply::Allocs {
                allocs: vec![Arc::new(alloc())],
                index: 43,
            },
        ),
        ("node-reply-updated", NodeReply::Updated { index: 44 }),
        (
            "node-reply-services",
            NodeReply::Services {
                services: vec![Arc::new(service_registration())],
                index: 46,
            },
        ),
    ];
    for (name, reply) in &replies {
        let encoded = serde_json::to_vec(reply).unwrap();
        fixtures.check(&format!("{name}.json"), encoded, |bytes| {
            let decoded: NodeReply = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
            (decoded == *reply)
                .then_some(())
                .ok_or_else(|| format!("decoded {decoded:?}"))
        });
    }
    fixtures.finish();
}
