//! The node's registration and heartbeats.
//!
//! Registration is retried by `server_join`'s `retry_interval` and `retry_max` (0: forever);
//! then the node heartbeats within the TTL each answer gives (at nine tenths of it: the leader
//! allows its grace on top). A heartbeat the servers refuse because they do not know the node
//! (purged, or state restored from an older snapshot) is followed by a new registration. When
//! no server answers, the tasks keep running: the client retries with capped backoff and
//! reports once a server answers again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use controlplane::model::Node;

use super::backoff::{self, Backoff, BackoffPolicy};
use super::{HeartbeatError, ServerRpc};

/// How a client keeps trying to register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinPolicy {
    pub retry_interval: Duration,
    /// Attempts before giving up; 0 retries forever.
    pub retry_max: u32,
}

impl Default for JoinPolicy {
    fn default() -> Self {
        // Nomad's `server_join` defaults.
        JoinPolicy {
            retry_interval: Duration::from_secs(30),
            retry_max: 0,
        }
    }
}

/// Heartbeats that fail are retried after 1 s, doubling to at most 10 s (well inside any TTL
/// plus grace, so one server that answers again is found in time), up to a quarter shorter.
const HEARTBEAT_RETRY: BackoffPolicy = BackoffPolicy {
    first: Duration::from_secs(1),
    factor: 2,
    cap: Duration::from_secs(10),
    jitter: 0.25,
};

/// When the last heartbeat was taken (what `stop_on_client_after` is measured from), and
/// whether the client gave up finding a server (`server_join.retry_max`).
#[derive(Debug)]
pub struct ServerContact {
    last: Mutex<Instant>,
    gave_up: watch::Sender<Option<String>>,
}

impl ServerContact {
    pub fn new() -> ServerContact {
        ServerContact {
            last: Mutex::new(Instant::now()),
            gave_up: watch::channel(None).0,
        }
    }

    /// Says why once the client has given up reaching any server.
    pub fn gave_up(&self) -> watch::Receiver<Option<String>> {
        self.gave_up.subscribe()
    }

    fn record(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = Instant::now();
        }
    }

    /// How long since a server last took a heartbeat.
    pub fn since(&self) -> Duration {
        self.last.lock().map(|l| l.elapsed()).unwrap_or_default()
    }
}

impl Default for ServerContact {
    fn default() -> Self {
        ServerContact::new()
    }
}

/// When to send the next heartbeat after one answered with `ttl`.
pub fn next_heartbeat(ttl: Duration) -> Duration {
    ttl.mul_f64(0.9)
}

/// Heartbeats until the task is dropped. Until a server has answered once, failures are
/// retried every `join.retry_interval` and, after `join.retry_max` of them (when not 0), the
/// client gives up ([`ServerContact::gave_up`]); once joined, it never gives up.
pub async fn run(
    server: Arc<dyn ServerRpc>,
    node: Node,
    contact: Arc<ServerContact>,
    join: JoinPolicy,
) {
    let mut retry = Backoff::new(HEARTBEAT_RETRY);
    let mut joined = false;
    let mut join_attempts = 0u32;
    loop {
        if !joined {
            join_attempts += 1;
        }
        let wait = match server.heartbeat(node.id.clone()).await {
            Ok(ttl) => {
                if retry.failures() > 0 {
                    tracing::info!(failures = retry.failures(), "heartbeats answered again");
                }
                retry.succeeded();
                contact.record();
                joined = true;
                next_heartbeat(ttl)
            }
            Err(HeartbeatError::UnknownNode(reason)) => {
                tracing::warn!("{reason}: registering the node again");
                match server.register_node(node.clone()).await {
                    Ok(_) => Duration::ZERO,
                    Err(e) => {
                        tracing::warn!("registering the node again: {e}");
                        retry.failed(backoff::stagger())
                    }
                }
            }
            Err(HeartbeatError::Failed(e)) => {
                let delay = retry.failed(backoff::stagger());
                tracing::warn!(
                    failures = retry.failures(),
                    since_contact_s = contact.since().as_secs(),
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "heartbeat: {e}"
                );
                delay
            }
        };
        if !joined && wait > Duration::ZERO {
            if join.retry_max != 0 && join_attempts >= join.retry_max {
                let reason = format!(
                    "no server answered after {join_attempts} attempts (server_join.retry_max = {}); check client.servers and the network",
                    join.retry_max
                );
                tracing::error!("{reason}");
                contact.gave_up.send_replace(Some(reason));
                return;
            }
            tokio::time::sleep(join.retry_interval).await;
            continue;
        }
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_heartbeat_comes_before_the_ttl_runs_out() {
        assert_eq!(
            next_heartbeat(Duration::from_secs(10)),
            Duration::from_secs(9)
        );
        assert_eq!(next_heartbeat(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn heartbeat_retries_stay_well_inside_a_ttl_and_its_grace() {
        for failures in 1..100 {
            assert!(HEARTBEAT_RETRY.base_delay(failures) <= Duration::from_secs(10));
        }
    }
}
