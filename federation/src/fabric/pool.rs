//! One connection per (address, expected region), shared by every caller, re-dialled once it
//! has closed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{ClientConfig, Connection, Endpoint};

use super::error::CallError;
use crate::identity::{PeerIdentity, Role};

/// The most peers a fabric keeps connections to. A server talks to the few servers of its
/// region (and later one per other region); past this bound something is dialling garbage.
pub const MAX_POOLED_PEERS: usize = 4096;

type Key = (SocketAddr, String);
/// A slot's async lock makes concurrent callers of a peer wait for one dial, not race many.
type Slot = Arc<tokio::sync::Mutex<Option<Connection>>>;

#[derive(Debug)]
pub(crate) struct Pool {
    endpoint: Endpoint,
    /// Replaced when the agent reloads its certificate; a dial takes the current one.
    client_config: Mutex<ClientConfig>,
    handshake_timeout: Duration,
    slots: Mutex<HashMap<Key, Slot>>,
}

impl Pool {
    pub(crate) fn new(
        endpoint: Endpoint,
        client_config: ClientConfig,
        handshake_timeout: Duration,
    ) -> Pool {
        Pool {
            endpoint,
            client_config: Mutex::new(client_config),
            handshake_timeout,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Connections dialled from now on present this configuration's certificate.
    pub(crate) fn set_client_config(&self, config: ClientConfig) {
        match self.client_config.lock() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
    }

    /// The live connection to `addr`, whose certificate must name `server.<region>.noded`,
    /// dialling it if there is none.
    ///
    /// The dial runs on a task of its own that stores what it makes in the slot: a caller
    /// whose deadline is shorter than a handshake on a loaded host (a Raft heartbeat's is
    /// 50 ms) gives up without cancelling the dial, and the next caller finds the
    /// connection. Were the dial cancelled with each caller, such a peer would never be
    /// connected again.
    pub(crate) async fn get(
        &self,
        addr: SocketAddr,
        region: &str,
    ) -> Result<Connection, CallError> {
        let slot = self.slot(addr, region)?;
        if let Ok(guard) = slot.try_lock() {
            if let Some(conn) = guard.as_ref().filter(|c| c.close_reason().is_none()) {
                return Ok(conn.clone());
            }
        }
        let dialer = Dialer {
            endpoint: self.endpoint.clone(),
            config: match self.client_config.lock() {
                Ok(c) => c.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            },
            handshake_timeout: self.handshake_timeout,
        };
        let region = region.to_string();
        let dial = tokio::spawn(async move {
            let mut guard = slot.lock().await;
            if let Some(conn) = guard.as_ref() {
                if conn.close_reason().is_none() {
                    return Ok(conn.clone());
                }
                tracing::debug!(%addr, "pooled connection closed; dialling again");
            }
            *guard = None;
            let conn = dialer.dial(addr, &region).await?;
            *guard = Some(conn.clone());
            Ok(conn)
        });
        dial.await.map_err(|e| {
            CallError::Connect(format!("dialling {addr}: the dialling task ended: {e}"))
        })?
    }

    /// Drops `conn` from the pool if it is still the pooled one (a caller saw it die).
    pub(crate) fn forget(&self, addr: SocketAddr, region: &str, conn: &Connection) {
        let slot = match self.slots.lock() {
            Ok(slots) => slots.get(&(addr, region.to_string())).cloned(),
            Err(poisoned) => poisoned
                .into_inner()
                .get(&(addr, region.to_string()))
                .cloned(),
        };
        if let Some(slot) = slot {
            if let Ok(mut guard) = slot.try_lock() {
                if guard.as_ref().map(Connection::stable_id) == Some(conn.stable_id()) {
                    *guard = None;
                }
            }
        }
    }

    fn slot(&self, addr: SocketAddr, region: &str) -> Result<Slot, CallError> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let key = (addr, region.to_string());
        if let Some(slot) = slots.get(&key) {
            return Ok(slot.clone());
        }
        if slots.len() >= MAX_POOLED_PEERS {
            // Keep the slots that hold a live connection or a dial in progress.
            slots.retain(|_, slot| match slot.try_lock() {
                Ok(guard) => guard.as_ref().is_some_and(|c| c.close_reason().is_none()),
                Err(_) => true,
            });
        }
        if slots.len() >= MAX_POOLED_PEERS {
            return Err(CallError::Connect(format!(
                "not dialling {addr}: already connected to {MAX_POOLED_PEERS} peers \
                 (MAX_POOLED_PEERS)"
            )));
        }
        let slot = Slot::default();
        slots.insert(key, slot.clone());
        Ok(slot)
    }

    /// Closes every pooled connection (the fabric is shutting down).
    pub(crate) fn close_all(&self) {
        let slots: Vec<Slot> = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.drain().map(|(_, slot)| slot).collect()
        };
        for slot in slots {
            if let Ok(guard) = slot.try_lock() {
                if let Some(conn) = guard.as_ref() {
                    conn.close(0u32.into(), b"shutting down");
                }
            }
        }
    }
}

/// What a dial needs, owned, so that it can outlive the caller that started it.
struct Dialer {
    endpoint: Endpoint,
    config: ClientConfig,
    handshake_timeout: Duration,
}

impl Dialer {
    async fn dial(self, addr: SocketAddr, region: &str) -> Result<Connection, CallError> {
        let expected = Role::Server.dns_name(region);
        let config = self.config;
        let connecting = self
            .endpoint
            .connect_with(config, addr, &expected)
            .map_err(|e| CallError::Connect(format!("dialling {addr}: {e}")))?;
        let conn = match tokio::time::timeout(self.handshake_timeout, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(CallError::Connect(format!(
                    "TLS handshake with {addr} (expecting {expected}) failed: {e}"
                )))
            }
            Err(_) => {
                return Err(CallError::Connect(format!(
                    "no handshake with {addr} within {:?} (handshake_timeout): is a noded \
                     server listening there?",
                    self.handshake_timeout
                )))
            }
        };
        // The name check in the handshake already proves this; reading the identity the way
        // the server side does refuses a certificate that names several roles as well.
        match super::peer_identity(&conn) {
            Ok(id) if id == PeerIdentity::new(Role::Server, region) => Ok(conn),
            Ok(id) => {
                conn.close(0u32.into(), b"wrong identity");
                Err(CallError::Connect(format!(
                    "{addr} presented a {id} certificate; expected {expected}"
                )))
            }
            Err(e) => {
                conn.close(0u32.into(), b"no identity");
                Err(CallError::Connect(format!("{addr}: {e}")))
            }
        }
    }
}
