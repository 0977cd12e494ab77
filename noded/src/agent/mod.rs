//! `noded agent`: one process that runs a server (Raft, scheduler, HTTP API), a client (node
//! daemon), or — with `-dev` — both, with state in a temporary directory.

pub mod cluster;
pub mod config;
pub mod reload;
pub mod rpc;
pub mod systemd;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use controlplane::api::{self, AgentInfo, ApiContext};
use controlplane::raft::RaftNode;
use controlplane::server::{Server, ServerConfig};
use controlplane::state::StateStore;

use crate::client::remote::RemoteServers;
use crate::client::{Client, ClientApi, ClientConfig, ServerRpc};
use crate::dns::DnsServer;
pub use config::{AgentConfig, Overrides};
pub use reload::{Reload, SetLogLevel};

struct Info {
    config: AgentConfig,
    node: Option<controlplane::model::Node>,
    client: Option<Arc<Client>>,
}

impl AgentInfo for Info {
    fn self_info(&self) -> serde_json::Value {
        let c = &self.config;
        serde_json::json!({
            "config": {
                "Region": c.region,
                "Datacenter": c.datacenter,
                "NodeName": c.name,
                "DataDir": c.data_dir,
                "BindAddr": c.bind_addr,
                "DevMode": c.dev,
                "Ports": { "HTTP": c.http_port, "RPC": c.rpc_port },
                "Server": { "Enabled": c.server_enabled },
                "Client": { "Enabled": c.client_enabled, "NodeClass": c.node_class, "NodePool": c.node_pool },
                "Version": { "Version": env!("CARGO_PKG_VERSION") },
            },
            "member": {
                "Name": c.name,
                "Addr": c.bind_addr,
                "Port": c.rpc_port,
                "Tags": { "region": c.region, "dc": c.datacenter, "role": "nomad" },
                "Status": "alive",
            },
            "node": self.node,
            "client": { "SupervisorPid": self.client.as_ref().and_then(|c| c.supervisor_pid()) },
        })
    }
}

/// A fresh temporary data dir for `agent -dev`.
pub fn temp_data_dir() -> anyhow::Result<PathBuf> {
    let dir = tempfile::Builder::new()
        .prefix("noded-dev-")
        .tempdir()
        .context("creating a temporary data dir for the dev agent")?;
    Ok(dir.keep())
}

/// Reaps every child of the agent that exits, except those a caller waits for itself (the
/// `nft` runs of the network set-up, which would otherwise fail with ECHILD). As a child
/// subreaper the agent inherits the orphans of what it started: the tasks of a supervisor
/// that died (stopped by the next supervisor, see `supervisor::stop_orphaned_tasks`). Without
/// this they would stay zombies for the agent's life. The agent's other children are
/// supervisors, whose exit status nobody needs.
async fn reap_orphans() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::Pid;
    let mut sigchld = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("watching SIGCHLD to reap orphaned processes: {e}");
            return;
        }
    };
    loop {
        sigchld.recv().await;
        for pid in children() {
            if netns::nft::is_awaited(pid) {
                continue;
            }
            let Ok(raw) = i32::try_from(pid) else {
                continue;
            };
            match waitpid(
                Pid::from_raw(raw),
                Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL),
            ) {
                Ok(WaitStatus::StillAlive) | Err(_) => {}
                Ok(status) => tracing::debug!(?status, "reaped an orphaned process"),
            }
        }
    }
}

/// This process's children, from every thread's `/proc/self/task/<tid>/children` (a child
/// is listed under the thread that forked it; orphans under the main thread).
fn children() -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return pids;
    };
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    pids
}

/// Runs the agent until SIGINT or SIGTERM; SIGHUP reloads what can be reloaded.
pub async fn run(config: AgentConfig, reload: Reload) -> anyhow::Result<()> {
    if let Err(e) = crate::sys::become_subreaper() {
        tracing::warn!("could not become a child subreaper: {e}");
    }
    tokio::spawn(reap_orphans());
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    tracing::info!(
        data_dir = %config.data_dir.display(),
        dev = config.dev,
        "noded agent {} starting",
        env!("CARGO_PKG_VERSION")
    );
    let http_addr: SocketAddr = format!("{}:{}", config.bind_addr, config.http_port)
        .parse()
        .with_context(|| {
            format!(
                "bind address {:?} with port {}",
                config.bind_addr, config.http_port
            )
        })?;
    // Bind first: a port in use should fail before anything else starts.
    let listener = tokio::net::TcpListener::bind(http_addr)
        .await
        .with_context(|| {
            format!("listening on {http_addr} for HTTP (is another agent running? use -http-port)")
        })?;

    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    if let Some(interval) = systemd::watchdog_interval() {
        tracing::info!(
            interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            "systemd watchdog enabled"
        );
        tokio::spawn(systemd::run_watchdog(interval));
    }
    let result = if config.server_enabled {
        run_server(config, listener, http_addr, reload).await
    } else {
        run_client_only(config, listener, http_addr, reload).await
    };
    if let Err(e) = &result {
        systemd::stopping(&format!("failed: {e}"));
    }
    result
}

/// An agent that runs a server (and, with `client { enabled }` or `-dev`, a client beside it).
async fn run_server(
    config: AgentConfig,
    listener: tokio::net::TcpListener,
    http_addr: SocketAddr,
    reload: Reload,
) -> anyhow::Result<()> {
    let store = Arc::new(StateStore::new());
    let service = rpc::AgentService::new(&config.region, cluster::RaftService::new(&config.region));
    let cluster::ServerRaft { raft, fabric } = cluster::start_raft(
        &config,
        store.clone(),
        Arc::new(service.clone()),
        service.raft_service(),
    )
    .await?;
    service.attach_raft(&raft, &fabric);
    let mut server_config = ServerConfig {
        region: config.region.clone(),
        datacenter: config.datacenter.clone(),
        ..Default::default()
    };
    if let Some(n) = config.server.num_schedulers {
        server_config.num_schedulers = n;
    }
    server_config.heartbeat = config.server.heartbeat;
    server_config.gc_interval = config.server.gc_interval;
    server_config.gc_thresholds = config.server.gc_thresholds;
    server_config.job_tracked_versions = config.server.job_tracked_versions;
    let server = Server::start(server_config, store, raft.clone());

    let mut client = None;
    let mut dns = None;
    if config.client_enabled {
        let exe = std::env::current_exe().context("locating the noded binary")?;
        let rpc: Arc<dyn ServerRpc> = Arc::new(server.clone());
        let started = Client::start(client_config(&config, exe), rpc.clone()).await?;
        dns = start_dns(&config, &started, rpc)?;
        client = Some(started);
    }

    let ctx = ApiContext {
        region: config.region.clone(),
        server: Some(server.clone()),
        forwarder: None,
        cluster: Some(Arc::new(cluster::ClusterApi::new(&config, raft.clone()))
            as Arc<dyn api::ClusterEndpoints>),
        client: client
            .clone()
            .map(|c| Arc::new(ClientApi(c)) as Arc<dyn api::ClientEndpoints>),
        agent: Arc::new(Info {
            config: config.clone(),
            node: client.as_ref().map(|c| c.node().clone()),
            client: client.clone(),
        }),
    };
    let app = api::router(ctx);
    service.attach_server(&server, app.clone());
    tokio::spawn(reload::run(
        reload,
        config.clone(),
        fabric.clone(),
        client.clone(),
    ));
    tracing::info!("HTTP API listening on http://{http_addr}");
    systemd::ready(&format!(
        "serving: HTTP on {http_addr}, server{}",
        if client.is_some() { " and client" } else { "" }
    ));
    if config.dev {
        eprintln!(
            "==> noded dev agent started: HTTP API at http://{http_addr}, data in {}",
            config.data_dir.display()
        );
        eprintln!("==> try: noded job run examples/hello.hcl");
    }
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel();
    let formation = raft.formation();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = shutdown_signal() => {}
                failure = formation_failure(formation) => {
                    let _ = failed_tx.send(failure);
                }
            }
        })
        .await
        .context("serving HTTP")?;

    tracing::info!("shutting down");
    systemd::stopping("shutting down");
    if let Some(client) = &client {
        client.drain_on_shutdown(&server.clone()).await;
    }
    if let Some(dns) = &dns {
        dns.stop();
    }
    stop(&config, client.as_deref(), Some((&server, &raft))).await;
    fabric.close().await;
    match failed_rx.await {
        Ok(failure) => Err(anyhow::anyhow!(failure)),
        Err(_) => Ok(()),
    }
}

/// A client-only agent: the node daemon, talking to the region's servers over the fabric with
/// its `client.<region>` certificate. Its HTTP API answers the node's own endpoints and
/// forwards the rest to a server.
async fn run_client_only(
    config: AgentConfig,
    listener: tokio::net::TcpListener,
    http_addr: SocketAddr,
    reload: Reload,
) -> anyhow::Result<()> {
    let fabric = cluster::start_client_fabric(&config).await?;
    // `servers` first, then `server_join.retry_join` (Nomad reads both).
    let mut servers = config.client_servers.clone();
    servers.extend(config.client_join.retry_join.iter().cloned());
    let remote = Arc::new(RemoteServers::new(fabric.clone(), servers));
    let exe = std::env::current_exe().context("locating the noded binary")?;
    let rpc: Arc<dyn ServerRpc> = remote.clone();
    let remote_rpc = rpc.clone();
    let client = Client::start(client_config(&config, exe), rpc.clone()).await?;
    let dns = start_dns(&config, &client, rpc)?;
    let ctx = ApiContext {
        region: config.region.clone(),
        server: None,
        forwarder: Some(remote as Arc<dyn api::ServerForwarder>),
        cluster: None,
        client: Some(Arc::new(ClientApi(client.clone())) as Arc<dyn api::ClientEndpoints>),
        agent: Arc::new(Info {
            config: config.clone(),
            node: Some(client.node().clone()),
            client: Some(client.clone()),
        }),
    };
    let app = api::router(ctx);
    tokio::spawn(reload::run(
        reload,
        config.clone(),
        fabric.clone(),
        Some(client.clone()),
    ));
    tracing::info!(
        "HTTP API listening on http://{http_addr} (client only; other requests go to the servers)"
    );
    systemd::ready(&format!(
        "serving: HTTP on {http_addr}, client of {:?}",
        config.client_servers
    ));
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel();
    let mut join_failure = client.join_failure();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = shutdown_signal() => {}
                Ok(reason) = join_failure.wait_for(Option::is_some) => {
                    let _ = failed_tx.send(reason.clone().unwrap_or_default());
                }
            }
        })
        .await
        .context("serving HTTP")?;
    tracing::info!("shutting down");
    systemd::stopping("shutting down");
    let gave_up = failed_rx.await.ok();
    if gave_up.is_none() {
        // No server to drain through when the client never found one.
        client.drain_on_shutdown(remote_rpc.as_ref()).await;
    }
    if let Some(dns) = &dns {
        dns.stop();
    }
    stop(&config, Some(&client), None).await;
    fabric.close().await;
    match gave_up {
        Some(reason) => Err(anyhow::anyhow!(reason)),
        None => Ok(()),
    }
}

/// Resolves with the reason when this server gives up forming its region (`retry_max`);
/// never otherwise.
async fn formation_failure(
    mut formation: tokio::sync::watch::Receiver<controlplane::raft::FormationState>,
) -> String {
    loop {
        if let controlplane::raft::FormationState::Failed(reason) = &*formation.borrow_and_update()
        {
            return reason.clone();
        }
        if formation.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// The DNS server of an agent that runs a client (`dns { enabled }`, on by default): on
/// `dns.bind:dns.port`, and on the bridge's gateway while the node has a bridge; its view
/// follows the catalog. A port in use is an error when the config has a `dns` block, a
/// warning otherwise (dev agents side by side on one host still start).
fn start_dns(
    config: &AgentConfig,
    client: &Arc<Client>,
    rpc: Arc<dyn ServerRpc>,
) -> anyhow::Result<Option<Arc<DnsServer>>> {
    if !config.dns.enabled {
        return Ok(None);
    }
    let server = match DnsServer::start(
        &config.dns,
        tokio::runtime::Handle::current(),
        crate::dns::BRIDGE_DNS_PORT,
    ) {
        Ok(s) => s,
        Err(e) if config.dns.required => return Err(e),
        Err(e) => {
            tracing::warn!("{e:#}; the agent runs without its DNS server");
            return Ok(None);
        }
    };
    tokio::spawn(crate::dns::follow_catalog(
        rpc,
        server.cell(),
        config.dns.view_settings(),
    ));
    let observer = server.clone();
    client.observe_bridge(Box::new(move |gateway| {
        observer.bridge_changed(gateway);
        gateway.is_some() && observer.bridge_addr().is_some()
    }));
    if config.dev {
        if let Some(addr) = server.local_addr() {
            eprintln!(
                "==> DNS at {addr}: dig @{} -p {} <service>.service.{}",
                addr.ip(),
                addr.port(),
                config.dns.domain
            );
        }
    }
    Ok(Some(server))
}

/// What the client runs with, from the agent's settings.
fn client_config(config: &AgentConfig, noded_exe: PathBuf) -> ClientConfig {
    ClientConfig {
        state_dir: config.client_state_dir(),
        allocs_root: config.client_alloc_dir(),
        node_name: config.name.clone(),
        datacenter: config.datacenter.clone(),
        region: config.region.clone(),
        node_pool: config.node_pool.clone(),
        node_class: config.node_class.clone(),
        meta: config.meta.clone(),
        // The node's `HTTPAddr`: the CLI dials it for the allocation's own endpoints, so it
        // is the advertised address, never a bind address like 0.0.0.0.
        http_addr: config.advertise_http_addr().to_string(),
        // The advertised RPC address: never 0.0.0.0 (that is a bind address, not one a
        // server or task could reach). `network_interface` overrides it in the client.
        ip_address: config.advertise_rpc_addr().ip().to_string(),
        network_interface: config.network_interface.clone(),
        servers: config.client_servers.clone(),
        server_join: config.client_join.clone(),
        reserved: config.reserved.clone(),
        host_volumes: config.host_volumes.clone(),
        min_dynamic_port: config.min_dynamic_port,
        max_dynamic_port: config.max_dynamic_port,
        max_kill_timeout: config.max_kill_timeout,
        drain_on_shutdown: config.drain_on_shutdown.clone(),
        network: config.network.clone(),
        exec: crate::driver::ExecSettings {
            chroot_env: config
                .chroot_env
                .clone()
                .unwrap_or_else(crate::driver::ExecDriver::default_chroot_env),
            allow_caps: config.allow_caps.clone(),
            denied_uids: config.denied_uids.clone(),
            denied_gids: config.denied_gids.clone(),
            default_pid_mode: config.default_pid_mode,
            default_ipc_mode: config.default_ipc_mode,
            // Filled in by the client from its fingerprint.
            mhz_per_core: 0,
        },
        raw_exec_enabled: config.raw_exec_enabled,
        gc: config.gc.clone(),
        ephemeral: config.ephemeral,
        cgroup_parent: config.cgroup_parent.clone(),
        noded_exe,
        join: crate::client::heartbeat::JoinPolicy {
            retry_interval: config.client_join.retry_interval,
            retry_max: config.client_join.retry_max,
        },
    }
}

/// Stops what `run` started, in reverse order; a temporary dev agent leaves nothing behind.
async fn stop(config: &AgentConfig, client: Option<&Client>, server: Option<(&Server, &RaftNode)>) {
    if let Some(client) = client {
        if config.ephemeral {
            // Nothing could reattach to a temporary data dir: stop the tasks now.
            client.stop_all().await;
        }
        client.remove_spare_alloc_dirs();
    }
    if let Some((server, raft)) = server {
        server.shutdown().await;
        if let Err(e) = raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
    }
    if config.ephemeral {
        if let Err(e) = std::fs::remove_dir_all(&config.data_dir) {
            tracing::warn!(
                "removing the dev data dir {}: {e}",
                config.data_dir.display()
            );
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
