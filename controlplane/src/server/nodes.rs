//! What the operator asks of nodes, node pools and the servers' housekeeping: drains,
//! eligibility, purges, pools, stopping one allocation, garbage collection. Each checks what it
//! can against the newest state before proposing (so a mistake is a 400/404 with nothing
//! written), and the state machine checks again when it applies.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Server, ServerError};
use crate::model::{
    eligibility, new_id, now_unix_nanos, trigger, DesiredTransition, DrainStrategy, EvalStatus,
    Evaluation, NodePool,
};
use crate::state::{gc, Command, State};

/// Nomad's `NodeDrainUpdateResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeDrainUpdateResponse {
    pub node_modify_index: u64,
    #[serde(rename = "EvalIDs")]
    pub eval_ids: Vec<String>,
    pub eval_create_index: u64,
    pub index: u64,
}

/// Nomad's `NodeEligibilityUpdateResponse` and the `NodeUpdateResponse` of evaluate and
/// purge: the evaluations created and the index written at.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeUpdateResponse {
    #[serde(rename = "EvalIDs")]
    pub eval_ids: Vec<String>,
    pub eval_create_index: u64,
    pub node_modify_index: u64,
    pub index: u64,
}

/// `POST /v1/allocation/:id/stop`'s answer (Nomad's `AllocStopResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocStopResponse {
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub index: u64,
}

/// How often the leader collects garbage (Nomad's `job_gc_interval`).
pub const DEFAULT_GC_INTERVAL: Duration = Duration::from_secs(5 * 60);

fn node_not_found(node_id: &str) -> ServerError {
    ServerError::NotFound(format!("node {node_id:?} not found"))
}

fn eval_ids(evals: &[Evaluation]) -> Vec<String> {
    evals.iter().map(|e| e.id.clone()).collect()
}

fn node_evals(state: &State, node_id: &str, trigger: &str) -> Vec<Evaluation> {
    state.node_update_evals(node_id, trigger, &mut new_id)
}

impl Server {
    /// Starts, updates (`Some`) or cancels (`None`) a node's drain. Starting one creates
    /// node-drain evaluations for the jobs on the node; cancelling with `mark_eligible` on an
    /// ineligible node creates node-update evaluations (its capacity is back).
    pub async fn update_drain(
        &self,
        node_id: &str,
        drain: Option<DrainStrategy>,
        mark_eligible: bool,
        meta: BTreeMap<String, String>,
    ) -> Result<NodeDrainUpdateResponse, ServerError> {
        let state = self.state();
        let node = state.node(node_id).ok_or_else(|| node_not_found(node_id))?;
        let evals = match &drain {
            Some(_) if node.drain_strategy.is_none() => {
                node_evals(&state, node_id, trigger::NODE_DRAIN)
            }
            None if mark_eligible && node.scheduling_eligibility != eligibility::ELIGIBLE => {
                node_evals(&state, node_id, trigger::NODE_UPDATE)
            }
            _ => Vec::new(),
        };
        let ids = eval_ids(&evals);
        let response = self
            .propose(Command::NodeUpdateDrain {
                node_id: node_id.to_string(),
                drain_strategy: drain,
                mark_eligible,
                meta,
                evals,
                now: now_unix_nanos(),
            })
            .await?;
        Ok(NodeDrainUpdateResponse {
            node_modify_index: response.index,
            eval_create_index: if ids.is_empty() { 0 } else { response.index },
            eval_ids: ids,
            index: response.index,
        })
    }

    /// Marks a node eligible or ineligible for new placements.
    pub async fn update_eligibility(
        &self,
        node_id: &str,
        wanted: &str,
    ) -> Result<NodeUpdateResponse, ServerError> {
        if wanted != eligibility::ELIGIBLE && wanted != eligibility::INELIGIBLE {
            return Err(ServerError::BadRequest(format!(
                "invalid scheduling eligibility {wanted:?}: use \"eligible\" or \"ineligible\""
            )));
        }
        let state = self.state();
        let node = state.node(node_id).ok_or_else(|| node_not_found(node_id))?;
        if node.drain_strategy.is_some() && wanted == eligibility::ELIGIBLE {
            return Err(ServerError::BadRequest(format!(
                "can not set node {node_id:?}'s scheduling eligibility to eligible while it is draining; disable the drain with -mark-eligible instead"
            )));
        }
        if node.scheduling_eligibility == wanted {
            return Ok(NodeUpdateResponse {
                node_modify_index: node.modify_index,
                index: state.latest_index(),
                ..Default::default()
            });
        }
        let evals = if wanted == eligibility::ELIGIBLE {
            node_evals(&state, node_id, trigger::NODE_UPDATE)
        } else {
            Vec::new()
        };
        let ids = eval_ids(&evals);
        let response = self
            .propose(Command::NodeUpdateEligibility {
                node_id: node_id.to_string(),
                eligibility: wanted.to_string(),
                evals,
                now: now_unix_nanos(),
            })
            .await?;
        Ok(NodeUpdateResponse {
            eval_create_index: if ids.is_empty() { 0 } else { response.index },
            eval_ids: ids,
            node_modify_index: response.index,
            index: response.index,
        })
    }

    /// Creates a node-update evaluation for every job with allocations on the node
    /// (`node eval`, Nomad's `Node.Evaluate`).
    pub async fn evaluate_node(&self, node_id: &str) -> Result<NodeUpdateResponse, ServerError> {
        let state = self.state();
        let node = state.node(node_id).ok_or_else(|| node_not_found(node_id))?;
        let evals = node_evals(&state, node_id, trigger::NODE_UPDATE);
        if evals.is_empty() {
            return Ok(NodeUpdateResponse {
                node_modify_index: node.modify_index,
                index: state.latest_index(),
                ..Default::default()
            });
        }
        let ids = eval_ids(&evals);
        let index = self.update_evals(evals).await?;
        Ok(NodeUpdateResponse {
            eval_ids: ids,
            eval_create_index: index,
            node_modify_index: node.modify_index,
            index,
        })
    }

    /// Removes a node from the state. Refused while allocations on it have not finished,
    /// unless `force`: they are then marked lost and replaced.
    pub async fn purge_node(
        &self,
        node_id: &str,
        force: bool,
    ) -> Result<NodeUpdateResponse, ServerError> {
        let state = self.state();
        state.node(node_id).ok_or_else(|| node_not_found(node_id))?;
        let live: Vec<String> = state
            .allocs_by_node(node_id)
            .iter()
            .filter(|a| !a.is_terminal())
            .map(|a| crate::model::short_id(&a.id).to_string())
            .collect();
        if !live.is_empty() && !force {
            return Err(ServerError::BadRequest(format!(
                "node {node_id:?} has {} allocation(s) that have not finished ({}); drain the node first (noded node drain -enable), or purge with -force to mark them lost",
                live.len(),
                live.join(", ")
            )));
        }
        let evals = if force {
            node_evals(&state, node_id, trigger::NODE_UPDATE)
        } else {
            Vec::new()
        };
        let ids = eval_ids(&evals);
        let response = self
            .propose(Command::NodeDeregister {
                node_ids: vec![node_id.to_string()],
                force,
                evals,
                now: now_unix_nanos(),
            })
            .await?;
        Ok(NodeUpdateResponse {
            eval_create_index: if ids.is_empty() { 0 } else { response.index },
            eval_ids: ids,
            node_modify_index: response.index,
            index: response.index,
        })
    }

    /// Creates or updates node pools.
    pub async fn upsert_node_pools(&self, pools: Vec<NodePool>) -> Result<u64, ServerError> {
        if pools.is_empty() {
            return Err(ServerError::BadRequest(
                "must specify at least one node pool".to_string(),
            ));
        }
        for pool in &pools {
            if pool.is_built_in() {
                return Err(ServerError::BadRequest(format!(
                    "modifying node pool {:?} is not allowed",
                    pool.name
                )));
            }
            pool.validate().map_err(ServerError::BadRequest)?;
        }
        Ok(self.propose(Command::NodePoolUpsert { pools }).await?.index)
    }

    /// Deletes a node pool.
    pub async fn delete_node_pool(&self, name: &str) -> Result<u64, ServerError> {
        let state = self.state();
        if !crate::model::is_built_in_pool(name) && state.node_pool(name).is_none() {
            return Err(ServerError::NotFound(format!(
                "node pool {name:?} not found"
            )));
        }
        let response = self
            .propose(Command::NodePoolDelete {
                names: vec![name.to_string()],
            })
            .await?;
        Ok(response.index)
    }

    /// Stops one allocation: its desired transition becomes "migrate" and an evaluation of
    /// its job lets the scheduler replace it (Nomad's `Alloc.Stop`).
    pub async fn stop_alloc(
        &self,
        alloc_id: &str,
        no_shutdown_delay: bool,
    ) -> Result<AllocStopResponse, ServerError> {
        let state = self.state();
        let alloc = state
            .alloc(alloc_id)
            .ok_or_else(|| ServerError::NotFound(format!("allocation {alloc_id:?} not found")))?;
        let job = state.job(&alloc.namespace, &alloc.job_id);
        let (priority, eval_type, job_modify_index) = match (&job, &alloc.job) {
            (Some(j), _) | (None, Some(j)) => (
                j.priority,
                j.job_type.as_str().to_string(),
                j.job_modify_index,
            ),
            (None, None) => (crate::model::job::defaults::PRIORITY, "service".into(), 0),
        };
        let eval = Evaluation {
            id: new_id(),
            namespace: alloc.namespace.clone(),
            priority,
            eval_type,
            triggered_by: trigger::ALLOC_STOP.to_string(),
            job_id: alloc.job_id.clone(),
            job_modify_index,
            status: EvalStatus::Pending,
            ..Default::default()
        };
        let eval_id = eval.id.clone();
        let transition = DesiredTransition {
            migrate: Some(true),
            no_shutdown_delay: no_shutdown_delay.then_some(true),
            ..Default::default()
        };
        let response = self
            .propose(Command::AllocUpdateDesiredTransition {
                transitions: BTreeMap::from([(alloc.id.clone(), transition)]),
                evals: vec![eval],
                now: now_unix_nanos(),
            })
            .await?;
        Ok(AllocStopResponse {
            eval_id,
            index: response.index,
        })
    }

    /// Collects garbage now: with `force`, whatever has finished, whatever its age
    /// (`PUT /v1/system/gc`); otherwise what is older than the configured thresholds. Returns
    /// the index written at (the state's, when there was nothing to collect).
    pub async fn garbage_collect(&self, force: bool) -> Result<u64, ServerError> {
        let state = self.state();
        match gc::collect(&state, now_unix_nanos(), &self.config.gc_thresholds, force) {
            Some(command) => Ok(self.propose(command).await?.index),
            None => Ok(state.latest_index()),
        }
    }

    /// `PUT /v1/system/reconcile/summaries`: noded computes a job's summary from its
    /// allocations on every read ([`State::job_summary`]), so no stored summary can drift
    /// and there is nothing to rewrite; answers the index the summaries are current at.
    pub fn reconcile_summaries(&self) -> u64 {
        self.state().latest_index()
    }

    /// The leader's periodic collection, every `gc_interval`.
    pub(super) async fn run_gc(self: std::sync::Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.gc_interval.max(Duration::from_secs(1)));
        // The first tick fires at once; a server that just started has nothing old to collect.
        tick.tick().await;
        let leadership = self.consensus.leadership();
        loop {
            tick.tick().await;
            if !*leadership.borrow() {
                continue;
            }
            if let Err(e) = self.garbage_collect(false).await {
                tracing::warn!("garbage collection failed (retried next interval): {e}");
            }
        }
    }
}
