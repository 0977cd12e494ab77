//! What the servers do for the native service catalog: clients write their instances (and
//! their health) through here, the operator deletes one, and agents that answer DNS follow the
//! whole catalog with a blocking query.

use std::sync::Arc;
use std::time::Duration;

use crate::model::{ServiceRegistration, MAX_SERVICES_PER_WRITE};
use crate::state::{Command, Table};

use super::{node_rpc, Server, ServerError};

impl Server {
    /// A client writes its allocations' registrations (new ones, or new health). Those the
    /// state would refuse (an allocation that finished or is unknown) are left out here with a
    /// warning rather than failing the write: the client retries a refused write whole, and
    /// they would never become acceptable.
    pub async fn upsert_services(
        &self,
        mut services: Vec<ServiceRegistration>,
    ) -> Result<u64, ServerError> {
        if services.len() > MAX_SERVICES_PER_WRITE {
            return Err(ServerError::BadRequest(format!(
                "{} service registrations in one write; at most {MAX_SERVICES_PER_WRITE}",
                services.len()
            )));
        }
        let state = self.store.snapshot();
        if let Some(problem) = services.iter().find_map(ServiceRegistration::check) {
            return Err(ServerError::BadRequest(problem));
        }
        services.retain(|r| match state.check_service_registration(r) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(service_id = %r.id, "ignoring a service registration: {e}");
                false
            }
        });
        let unchanged = |r: &ServiceRegistration| {
            state
                .service_registration(&r.id)
                .is_some_and(|stored| stored.same_content(r))
        };
        services.retain(|r| !unchanged(r));
        if services.is_empty() {
            return Ok(state.latest_index());
        }
        let response = self
            .propose(Command::ServiceRegistrationUpsert { services })
            .await?;
        Ok(response.index)
    }

    /// A client removes registrations (by id, or every one of some allocations). Unknown ones
    /// are not an error: the write is retried until it lands.
    pub async fn delete_services(
        &self,
        ids: Vec<String>,
        alloc_ids: Vec<String>,
    ) -> Result<u64, ServerError> {
        if ids.len() + alloc_ids.len() > MAX_SERVICES_PER_WRITE {
            return Err(ServerError::BadRequest(format!(
                "{} registrations or allocations in one delete; at most {MAX_SERVICES_PER_WRITE}",
                ids.len() + alloc_ids.len()
            )));
        }
        let state = self.store.snapshot();
        let known = ids
            .iter()
            .any(|id| state.service_registration(id).is_some())
            || alloc_ids
                .iter()
                .any(|a| !state.service_registrations_by_alloc(a).is_empty());
        if !known {
            return Ok(state.latest_index());
        }
        let response = self
            .propose(Command::ServiceRegistrationDelete { ids, alloc_ids })
            .await?;
        Ok(response.index)
    }

    /// The operator removes one instance (`DELETE /v1/service/:name/:id`): it must exist under
    /// that name in that namespace. A client still running it registers it again.
    pub async fn delete_service(
        &self,
        namespace: &str,
        name: &str,
        id: &str,
    ) -> Result<u64, ServerError> {
        let state = self.store.snapshot();
        let found = state
            .service_registration(id)
            .filter(|r| r.namespace == namespace && r.service_name == name);
        if found.is_none() {
            return Err(ServerError::NotFound(format!(
                "service registration {id:?} of service {name:?} not found in namespace {namespace:?}"
            )));
        }
        let response = self
            .propose(Command::ServiceRegistrationDelete {
                ids: vec![id.to_string()],
                alloc_ids: Vec::new(),
            })
            .await?;
        Ok(response.index)
    }

    /// Every registration once the catalog's index passes `min_index`, or after `wait` (a
    /// blocking query, cut to [`node_rpc::MAX_ALLOCS_WAIT`]); with the catalog's index.
    pub async fn watch_services(
        &self,
        min_index: u64,
        wait: Duration,
    ) -> (Vec<Arc<ServiceRegistration>>, u64) {
        let table = [Table::Services];
        let wait = wait.min(node_rpc::MAX_ALLOCS_WAIT);
        let (state, _) = self.store.wait_for(&table, min_index, wait).await;
        (
            state.service_registrations(),
            state.max_index(&table).max(1),
        )
    }
}
