//! The agent's DNS server: service discovery by name, answered from the native catalog.
//!
//! - [`view`]: an immutable index of one catalog version, answers pre-encoded;
//! - [`answer`]: the pure function (view, query bytes) → reply;
//! - [`server`]: the UDP and TCP sockets (loopback, and the node bridge's gateway);
//! - [`forward`]: names outside the domain go to the host's resolvers, or are refused;
//! - [`follow_catalog`]: the blocking query that keeps the view current.
//!
//! Names answered (`<domain>` is `noded` unless `dns.domain` says otherwise):
//! `<service>.service.<domain>`, `<tag>.<service>.service.<domain>` (namespace `default`),
//! `<service>.service.<namespace>.<domain>`, `<tag>.<service>.service.<namespace>.<domain>`
//! (A, AAAA, SRV) and `<hex ip>.addr.<domain>` (the SRV targets).
//!
//! **Architecture invariant:** the listeners bind only loopback addresses and the bridge's
//! gateway, never a public interface, so the forwarder is never an open resolver.

pub mod answer;
pub mod forward;
pub mod server;
pub mod settings;
pub mod view;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::client::backoff::{stagger, Backoff, BackoffPolicy};
use crate::client::ServerRpc;
pub use forward::Forwarder;
pub use server::{Listener, Shared};
pub use settings::DnsSettings;
pub use view::{View, ViewCell, ViewSettings};

/// The port tasks in bridge mode reach the DNS server on, at the bridge's gateway.
pub const BRIDGE_DNS_PORT: u16 = 53;
/// How long one blocking catalog query waits for a change.
pub const CATALOG_WAIT: Duration = Duration::from_secs(60);
/// The least time between two catalog queries that found nothing new.
const UNCHANGED_PACE: Duration = Duration::from_millis(250);

/// The running DNS server: the loopback listener, the bridge listener while the node's
/// bridge exists, and the view they answer from.
#[derive(Debug)]
pub struct DnsServer {
    shared: Arc<Shared>,
    loopback: Mutex<Option<Listener>>,
    bridge: Mutex<Option<Listener>>,
    bridge_port: u16,
    udp_threads: usize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DnsServer {
    /// Binds `settings.bind:port` and serves an empty view until [`follow_catalog`] fills
    /// it. `bridge_port` is where the bridge's gateway is served (53; tests use 0).
    pub fn start(
        settings: &DnsSettings,
        runtime: tokio::runtime::Handle,
        bridge_port: u16,
    ) -> anyhow::Result<Arc<DnsServer>> {
        use anyhow::Context;
        let local = SocketAddr::new(settings.bind, settings.port);
        let forwarder = settings.forward.then(|| {
            let upstreams = if settings.recursors.is_empty() {
                let own = [local, SocketAddr::new(settings.bind, BRIDGE_DNS_PORT)];
                match crate::client::network::task::host_resolv_conf() {
                    Ok(text) => forward::upstreams_from_resolv_conf(&text, &own),
                    Err(e) => {
                        tracing::warn!("dns: no host resolvers to forward to: {e}");
                        Vec::new()
                    }
                }
            } else {
                settings.recursors.clone()
            };
            tracing::info!(
                ?upstreams,
                "dns: names outside .{} are forwarded",
                settings.domain
            );
            Arc::new(Forwarder::new(upstreams, forward::FORWARD_TIMEOUT))
        });
        let shared = Arc::new(Shared {
            cell: Arc::new(ViewCell::new(View::empty(settings.view_settings()))),
            forwarder,
            runtime,
            refuse_forwarding: false,
        });
        // Bound outside loopback (to answer the catalog to other machines), the listener
        // refuses names outside the domain: never an open resolver on a reachable address.
        let local_shared = if settings.bind.is_loopback() {
            shared.clone()
        } else {
            Arc::new(Shared {
                cell: shared.cell.clone(),
                forwarder: None,
                runtime: shared.runtime.clone(),
                refuse_forwarding: true,
            })
        };
        let udp_threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(server::MAX_UDP_THREADS);
        let listener = Listener::bind(local, &local_shared, udp_threads).with_context(|| {
            format!("dns: listening on {local} (UDP and TCP): is another agent running? set dns {{ port }} or dns {{ enabled = false }}")
        })?;
        tracing::info!(addr = %listener.addr, domain = %settings.domain, "dns: serving");
        Ok(Arc::new(DnsServer {
            shared,
            loopback: Mutex::new(Some(listener)),
            bridge: Mutex::new(None),
            bridge_port,
            udp_threads,
        }))
    }

    /// The view cell the catalog follower writes.
    pub fn cell(&self) -> Arc<ViewCell> {
        self.shared.cell.clone()
    }

    /// Where the loopback listener is (its port, when 0 was asked).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        lock(&self.loopback).as_ref().map(|l| l.addr)
    }

    /// Where the bridge listener is, while the bridge exists.
    pub fn bridge_addr(&self) -> Option<SocketAddr> {
        lock(&self.bridge).as_ref().map(|l| l.addr)
    }

    /// The node's bridge appeared at `gateway` (serve it) or went away (`None`: stop).
    /// Called by the network manager as it makes or removes the bridge, before any task of
    /// the allocation starts, so a task's first query finds the server listening.
    pub fn bridge_changed(&self, gateway: Option<Ipv4Addr>) {
        let mut slot = lock(&self.bridge);
        let wanted = gateway.map(|gw| SocketAddr::new(IpAddr::V4(gw), self.bridge_port));
        if let (Some(current), Some(want)) = (slot.as_ref(), wanted) {
            if current.addr.ip() == want.ip() {
                return;
            }
        }
        if let Some(old) = slot.take() {
            tracing::info!(addr = %old.addr, "dns: the bridge is gone; no longer serving it");
            old.stop();
        }
        if let Some(addr) = wanted {
            match Listener::bind(addr, &self.shared, self.udp_threads) {
                Ok(l) => {
                    tracing::info!(addr = %l.addr, "dns: serving tasks on the bridge");
                    *slot = Some(l);
                }
                Err(e) => tracing::warn!("dns: cannot listen on the bridge's gateway {addr}: {e}; tasks in bridge mode will not resolve services"),
            }
        }
    }

    /// Stops every listener (the ports are free when this returns).
    pub fn stop(&self) {
        if let Some(l) = lock(&self.bridge).take() {
            l.stop();
        }
        if let Some(l) = lock(&self.loopback).take() {
            l.stop();
        }
    }
}

/// Keeps `cell` at the catalog's newest version: a blocking query per change, a new view
/// per index. On errors it retries with capped backoff and keeps serving the last good
/// view. Runs until the task is dropped.
pub async fn follow_catalog(rpc: Arc<dyn ServerRpc>, cell: Arc<ViewCell>, settings: ViewSettings) {
    let mut backoff = Backoff::new(BackoffPolicy {
        first: Duration::from_millis(250),
        factor: 2,
        cap: Duration::from_secs(15),
        jitter: 0.25,
    });
    let mut index = 0u64;
    let mut built_once = false;
    loop {
        let asked = std::time::Instant::now();
        match rpc.watch_services(index, CATALOG_WAIT).await {
            Ok((services, at)) => {
                backoff.succeeded();
                if built_once && at == index {
                    // A blocking query comes back unchanged only after its wait; one that
                    // comes back at once would spin this loop, so pace it.
                    if asked.elapsed() < UNCHANGED_PACE {
                        tokio::time::sleep(UNCHANGED_PACE).await;
                    }
                    continue;
                }
                let settings = settings.clone();
                let built =
                    tokio::task::spawn_blocking(move || View::build(settings, &services, at)).await;
                match built {
                    Ok(view) => {
                        tracing::debug!(
                            index = at,
                            instances = view.instances,
                            "dns: catalog view updated"
                        );
                        cell.store(view);
                        built_once = true;
                    }
                    Err(e) => tracing::error!("dns: building the catalog view: {e}"),
                }
                index = at;
            }
            Err(e) => {
                let wait = backoff.failed(stagger());
                tracing::warn!(failures = backoff.failures(), "dns: reading the service catalog: {e}; keeping the last view, retrying in {wait:?}");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
