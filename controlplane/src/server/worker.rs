//! A scheduler worker: takes an evaluation from the broker, runs the scheduler on a fresh
//! snapshot, submits the plan, and re-plans (bounded) when the applier could not commit all of it.

use std::sync::Arc;
use std::time::Duration;

use super::broker::Requeue;
use super::Server;
use crate::model::{EvalStatus, Evaluation};
use crate::scheduler::{self, SystemEnv};

/// Re-plans of one evaluation before it is handed back to the broker.
const MAX_PLAN_ATTEMPTS: usize = 5;
/// How long a worker waits for its snapshot to reach the evaluation's index.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(5);
/// How long a worker waits for an evaluation before looking again (and at shutdown).
const DEQUEUE_WAIT: Duration = Duration::from_secs(1);

pub(super) async fn run(server: Arc<Server>, n: usize) {
    let mut shutdown = server.shutting_down();
    loop {
        let delivery = tokio::select! {
            d = server.broker.dequeue(DEQUEUE_WAIT) => d,
            _ = shutdown.changed() => return,
        };
        let Some(delivery) = delivery else { continue };
        let id = delivery.eval.id.clone();
        match process(&server, &delivery.eval).await {
            Ok(()) => {
                if let Err(e) = server.broker.ack(&id, delivery.token) {
                    tracing::warn!(worker = n, "ack of evaluation {id}: {e}");
                }
            }
            Err(why) => {
                tracing::warn!(worker = n, "evaluation {id}: {why}");
                match server.broker.nack(&id, delivery.token) {
                    Ok(Requeue::GaveUp(eval)) => give_up(&server, *eval, &why).await,
                    Ok(Requeue::Retried) => {}
                    Err(e) => tracing::warn!(worker = n, "nack of evaluation {id}: {e}"),
                }
            }
        }
    }
}

async fn process(server: &Server, eval: &Evaluation) -> Result<(), String> {
    if !server
        .store
        .wait_applied(eval.modify_index, SNAPSHOT_WAIT)
        .await
    {
        return Err(format!(
            "state did not reach index {} in time",
            eval.modify_index
        ));
    }
    let mut last_rejection = String::new();
    for _ in 0..MAX_PLAN_ATTEMPTS {
        let state = server.store.snapshot();
        // A duplicate delivery of an evaluation that was already handled, or one the
        // operator deleted while it waited: nothing to do.
        if state.eval(&eval.id).is_none_or(|e| e.status.is_terminal()) {
            return Ok(());
        }
        // A run over thousands of nodes takes milliseconds of CPU: on a blocking thread, so
        // that it never stalls the runtime's threads that carry Raft, heartbeats and the API.
        let run = {
            let eval = eval.clone();
            tokio::task::spawn_blocking(move || scheduler::schedule(&state, &eval, &mut SystemEnv))
        };
        let scheduled = run
            .await
            .map_err(|e| format!("the scheduler run stopped: {e}"))?;
        let plan = match scheduled {
            Ok(plan) => plan,
            Err(e) => {
                let mut failed = eval.clone();
                failed.status = EvalStatus::Failed;
                failed.status_description = e.to_string();
                server
                    .update_evals(vec![failed])
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(());
            }
        };
        let applied = server.submit_plan(plan).await.map_err(|e| e.to_string())?;
        if applied.rejected_nodes.is_empty() {
            return Ok(());
        }
        last_rejection = applied
            .rejected_nodes
            .iter()
            .map(|(node, why)| format!("{node}: {why}"))
            .collect::<Vec<_>>()
            .join("; ");
        server
            .store
            .wait_applied(applied.index, SNAPSHOT_WAIT)
            .await;
    }
    Err(format!(
        "plan rejected {MAX_PLAN_ATTEMPTS} times ({last_rejection})"
    ))
}

/// Marks an evaluation failed after the broker gave up on it, and in the same entry creates
/// its follow-up (Nomad's failed-eval follow-up), which runs the job again after a delay.
pub(super) async fn give_up(server: &Server, eval: Evaluation, why: &str) {
    let evals = super::evals::failed_with_follow_up(
        eval,
        why,
        crate::model::now_unix_nanos(),
        super::stagger(),
        crate::model::new_id(),
    );
    if let Err(e) = server.update_evals(evals).await {
        tracing::warn!("could not mark an evaluation failed: {e}");
    }
}
