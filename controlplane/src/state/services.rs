//! The native service catalog: service registrations, written by the clients that run the
//! instances (`ServiceRegistrationUpsert`, `ServiceRegistrationDelete`) and removed by the state
//! itself when what they describe is gone: an allocation that finished or was lost, a node that
//! went down or was purged, an allocation collected.
//!
//! A registration is only ever stored for a live allocation on the node it names: a client's
//! late write about an allocation that already finished is left out, so it cannot bring a
//! dead instance back into DNS.

use std::sync::Arc;

use crate::model::{ServiceRegistration, MAX_SERVICES_PER_WRITE};

use super::{State, Table};

impl State {
    pub fn service_registration(&self, id: &str) -> Option<Arc<ServiceRegistration>> {
        self.services.get(id).cloned()
    }

    /// Every registration, ordered by id.
    pub fn service_registrations(&self) -> Vec<Arc<ServiceRegistration>> {
        self.services.values().cloned().collect()
    }

    /// The instances of one service in one namespace, ordered by id.
    pub fn service_registrations_by_name(
        &self,
        namespace: &str,
        name: &str,
    ) -> Vec<Arc<ServiceRegistration>> {
        self.services_by_name
            .get(&(namespace.to_string(), name.to_string()))
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| self.services.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The registrations of one allocation.
    pub fn service_registrations_by_alloc(&self, alloc_id: &str) -> Vec<Arc<ServiceRegistration>> {
        self.services_by_alloc
            .get(alloc_id)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| self.services.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The registrations of one job's allocations.
    pub fn service_registrations_by_job(
        &self,
        namespace: &str,
        job_id: &str,
    ) -> Vec<Arc<ServiceRegistration>> {
        self.allocs_by_job(namespace, job_id)
            .iter()
            .flat_map(|a| self.service_registrations_by_alloc(&a.id))
            .collect()
    }

    /// Stores registrations of live allocations. Each is checked; one that is malformed, or
    /// names an allocation that is unknown, finished or on another node, is left out and
    /// reported, and the others are stored. Re-writing what is stored changes nothing.
    pub(super) fn apply_service_upsert(
        &mut self,
        index: u64,
        services: &[ServiceRegistration],
    ) -> Result<u64, String> {
        if services.len() > MAX_SERVICES_PER_WRITE {
            return Err(format!(
                "{} service registrations in one write; at most {MAX_SERVICES_PER_WRITE}",
                services.len()
            ));
        }
        let mut refused = Vec::new();
        let mut changed = false;
        for wanted in services {
            if let Some(problem) = wanted.check() {
                refused.push(problem);
                continue;
            }
            if let Err(problem) = self.check_service_owner(wanted) {
                refused.push(problem);
                continue;
            }
            let existing = self.services.get(&wanted.id).cloned();
            if existing.as_ref().is_some_and(|e| e.same_content(wanted)) {
                continue;
            }
            let mut stored = wanted.clone();
            stored.create_index = existing.as_ref().map_or(index, |e| e.create_index);
            stored.modify_index = index;
            if let Some(old) = existing {
                self.unindex_service(&old);
            }
            self.index_service(&stored);
            self.services.insert(stored.id.clone(), Arc::new(stored));
            changed = true;
        }
        if changed {
            self.touch(Table::Services, index);
        }
        if refused.is_empty() {
            Ok(0)
        } else {
            Err(format!(
                "service registrations left out: {}",
                refused.join("; ")
            ))
        }
    }

    /// Whether a registration may be stored now: well formed, of a live allocation on the
    /// node it names.
    pub fn check_service_registration(&self, r: &ServiceRegistration) -> Result<(), String> {
        if let Some(problem) = r.check() {
            return Err(problem);
        }
        self.check_service_owner(r)
    }

    /// Whether the allocation a registration names may hold it.
    fn check_service_owner(&self, r: &ServiceRegistration) -> Result<(), String> {
        let Some(alloc) = self.allocs.get(&r.alloc_id) else {
            return Err(format!(
                "service registration {}: allocation {} is unknown",
                r.id, r.alloc_id
            ));
        };
        if alloc.client_status.is_terminal() {
            return Err(format!(
                "service registration {}: allocation {} has finished ({})",
                r.id,
                r.alloc_id,
                alloc.client_status.as_str()
            ));
        }
        if alloc.node_id != r.node_id || alloc.namespace != r.namespace || alloc.job_id != r.job_id
        {
            return Err(format!(
                "service registration {}: allocation {} runs job {:?} in namespace {:?} on node {}, not what the registration says",
                r.id, r.alloc_id, alloc.job_id, alloc.namespace, alloc.node_id
            ));
        }
        Ok(())
    }

    /// Removes registrations by id and every registration of `alloc_ids`. Unknown ids are
    /// not an error: a client retrying a delete that already happened must succeed.
    pub(super) fn apply_service_delete(
        &mut self,
        index: u64,
        ids: &[String],
        alloc_ids: &[String],
    ) -> Result<u64, String> {
        if ids.len() + alloc_ids.len() > MAX_SERVICES_PER_WRITE {
            return Err(format!(
                "{} service registrations or allocations in one delete; at most {MAX_SERVICES_PER_WRITE}",
                ids.len() + alloc_ids.len()
            ));
        }
        for id in ids {
            self.remove_service(index, id);
        }
        for alloc_id in alloc_ids {
            self.remove_alloc_services(index, alloc_id);
        }
        Ok(0)
    }

    /// Removes every registration of an allocation (it finished, was lost or collected).
    pub(super) fn remove_alloc_services(&mut self, index: u64, alloc_id: &str) {
        let ids: Vec<String> = self
            .services_by_alloc
            .get(alloc_id)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default();
        for id in ids {
            self.remove_service(index, &id);
        }
    }

    /// Removes every registration of the allocations on a node (it went down or was purged).
    pub(super) fn remove_node_services(&mut self, index: u64, node_id: &str) {
        let alloc_ids: Vec<String> = self
            .allocs_by_node
            .get(node_id)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default();
        for alloc_id in alloc_ids {
            self.remove_alloc_services(index, &alloc_id);
        }
    }

    fn remove_service(&mut self, index: u64, id: &str) {
        if let Some(old) = self.services.remove(id) {
            self.unindex_service(&old);
            self.touch(Table::Services, index);
        }
    }

    pub(super) fn index_service(&mut self, r: &ServiceRegistration) {
        self.services_by_alloc
            .entry(r.alloc_id.clone())
            .or_default()
            .insert(r.id.clone());
        self.services_by_name
            .entry((r.namespace.clone(), r.service_name.clone()))
            .or_default()
            .insert(r.id.clone());
    }

    fn unindex_service(&mut self, r: &ServiceRegistration) {
        if let Some(set) = self.services_by_alloc.get_mut(&r.alloc_id) {
            set.remove(&r.id);
            if set.is_empty() {
                self.services_by_alloc.remove(&r.alloc_id);
            }
        }
        let name = (r.namespace.clone(), r.service_name.clone());
        if let Some(set) = self.services_by_name.get_mut(&name) {
            set.remove(&r.id);
            if set.is_empty() {
                self.services_by_name.remove(&name);
            }
        }
    }
}
