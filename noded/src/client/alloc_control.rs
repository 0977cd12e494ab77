//! What can be asked of a running allocation's tasks (signal, restart) and the channel it
//! goes through: shared by the allocation runner, which answers, and by whoever asks (the
//! HTTP API's `alloc signal|restart`, `check_restart`), so that those need not depend on the
//! runner.

use tokio::sync::mpsc;

/// What a user asks of an allocation's tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocAction {
    Signal(i32),
    Restart,
}

/// A request for one task (or every running task when `task` is `None`).
#[derive(Debug)]
pub struct AllocControl {
    pub task: Option<String>,
    pub action: AllocAction,
    pub reply: tokio::sync::oneshot::Sender<Result<(), String>>,
    /// Why, when not a user's request (the task event says it).
    pub reason: Option<String>,
}

/// Signals or restarts a task (or all of them) and waits for the answer.
pub async fn control_via(
    controls: &mpsc::Sender<AllocControl>,
    task: Option<String>,
    action: AllocAction,
) -> Result<(), String> {
    control_for(controls, task, action, None).await
}

/// [`control_via`] on the client's own behalf, `reason` saying why (e.g. `check_restart`).
pub async fn control_for(
    controls: &mpsc::Sender<AllocControl>,
    task: Option<String>,
    action: AllocAction,
    reason: Option<String>,
) -> Result<(), String> {
    let (reply, rx) = tokio::sync::oneshot::channel();
    controls
        .send(AllocControl {
            task,
            action,
            reply,
            reason,
        })
        .await
        .map_err(|_| "the allocation is no longer running on this node".to_string())?;
    rx.await
        .map_err(|_| "the allocation stopped before answering".to_string())?
}
