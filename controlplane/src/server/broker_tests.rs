//! The broker's operator features and the blocked-evaluation tracker, end to end through a
//! leader on the in-process log: pause, delete, check-and-set, registration rejection,
//! failed-evaluation follow-ups, and blocked evaluations released by capacity on a class they
//! may use.

use std::time::Duration;

use super::*;
use crate::model::*;

fn start() -> Arc<Server> {
    super::testing::start_in_process()
}

fn node(id: &str, class: &str, cpu: i64) -> Node {
    Node {
        id: id.into(),
        name: id.into(),
        datacenter: "dc1".into(),
        node_pool: "default".into(),
        node_class: class.into(),
        status: NodeStatus::Ready,
        scheduling_eligibility: eligibility::ELIGIBLE.into(),
        node_resources: NodeResources {
            cpu: NodeCpuResources {
                cpu_shares: cpu,
                ..Default::default()
            },
            memory: NodeMemoryResources { memory_mb: 2048 },
            disk: crate::model::NodeDiskResources { disk_mb: 100_000 },
            ..Default::default()
        },
        drivers: [(
            "exec".to_string(),
            DriverInfo {
                detected: true,
                healthy: true,
                ..Default::default()
            },
        )]
        .into(),
        ..Default::default()
    }
}

fn job(id: &str, cpu: i64) -> Job {
    Job {
        id: id.into(),
        task_groups: vec![TaskGroup {
            name: "g".into(),
            count: 1,
            tasks: vec![Task {
                name: "t".into(),
                driver: "exec".into(),
                resources: Some(Resources {
                    cpu,
                    memory_mb: 64,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn eventually<F: Fn(&State) -> bool>(server: &Server, what: &str, f: F) -> State {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state = server.state();
        if f(&state) {
            return state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn set_config(server: &Server, f: impl FnOnce(&mut SchedulerConfiguration)) -> u64 {
    let mut config = (*server.state().scheduler_config()).clone();
    f(&mut config);
    if config.scheduler_algorithm.is_empty() {
        config.scheduler_algorithm = "binpack".into();
    }
    let (written, index) = server.set_scheduler_config(config, None).await.unwrap();
    assert!(written);
    index
}

fn eval_status(state: &State, id: &str) -> Option<EvalStatus> {
    state.eval(id).map(|e| e.status)
}

#[tokio::test]
async fn a_paused_broker_holds_evaluations_until_it_is_resumed() {
    let server = start();
    server.register_node(node("n1", "", 4000)).await.unwrap();
    set_config(&server, |c| c.pause_eval_broker = true).await;
    eventually(&server, "the broker follows the pause", |_| {
        server.broker().paused()
    })
    .await;
    let eval = server.register_job(job("web", 100)).await.unwrap().eval_id;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        eval_status(&server.state(), &eval),
        Some(EvalStatus::Pending)
    );
    assert_eq!(server.broker().stats().total_ready, 1);
    set_config(&server, |c| c.pause_eval_broker = false).await;
    eventually(&server, "the evaluation runs once resumed", |s| {
        eval_status(s, &eval) == Some(EvalStatus::Complete)
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn evaluations_are_deleted_only_while_the_broker_is_paused() {
    let server = start();
    let first = server.register_job(job("a", 100)).await.unwrap().eval_id;
    let refused = server
        .delete_evals(EvalSelection::Ids(vec![first.clone()]))
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("eval broker must be paused to delete evals"),
        "{refused}"
    );
    // The first one runs before the pause (no node: it completes, with a blocked one).
    eventually(&server, "the first evaluation ran", |s| {
        eval_status(s, &first).is_some_and(EvalStatus::is_terminal)
    })
    .await;
    set_config(&server, |c| c.pause_eval_broker = true).await;
    eventually(&server, "paused", |_| server.broker().paused()).await;
    let second = server.register_job(job("b", 100)).await.unwrap().eval_id;
    let third = server.register_job(job("c", 100)).await.unwrap().eval_id;
    let missing = server
        .delete_evals(EvalSelection::Ids(vec!["nope".into()]))
        .await
        .unwrap_err();
    assert!(matches!(missing, ServerError::NotFound(_)), "{missing}");
    let (count, _) = server
        .delete_evals(EvalSelection::Ids(vec![second.clone()]))
        .await
        .unwrap();
    assert_eq!(count, 1);
    let filter = crate::api::filter::Filter::parse(r#"JobID == "c""#).unwrap();
    let (count, _) = server
        .delete_evals(EvalSelection::Filter(filter))
        .await
        .unwrap();
    assert_eq!(count, 1);
    let state = server.state();
    assert!(state.eval(&second).is_none() && state.eval(&third).is_none());
    assert!(state.eval(&first).is_some());
    eventually(&server, "the broker dropped them", |_| {
        server.broker().stats().total_ready == 0
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn scheduler_configuration_check_and_set() {
    let server = start();
    let index = set_config(&server, |c| c.scheduler_algorithm = "spread".into()).await;
    let mut config = (*server.state().scheduler_config()).clone();
    config.memory_oversubscription_enabled = true;
    let (written, _) = server
        .set_scheduler_config(config.clone(), Some(index - 1))
        .await
        .unwrap();
    assert!(!written, "a stale check index writes nothing");
    assert!(
        !server
            .state()
            .scheduler_config()
            .memory_oversubscription_enabled
    );
    let (written, _) = server
        .set_scheduler_config(config, Some(index))
        .await
        .unwrap();
    assert!(written);
    let stored = server.state().scheduler_config();
    assert!(stored.memory_oversubscription_enabled);
    assert_eq!(stored.scheduler_algorithm, "spread");
    server.shutdown().await;
}

#[tokio::test]
async fn rejected_registrations_say_so_in_nomads_words() {
    let server = start();
    set_config(&server, |c| c.reject_job_registration = true).await;
    let e = server.register_job(job("web", 100)).await.unwrap_err();
    assert!(matches!(e, ServerError::Forbidden(_)), "{e:?}");
    assert!(e.to_string().starts_with(REGISTRATION_DISABLED), "{e}");
    assert!(
        server.check_registrations_allowed(true).is_ok(),
        "management"
    );
    set_config(&server, |c| c.reject_job_registration = false).await;
    server.register_job(job("web", 100)).await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn an_evaluation_given_up_on_gets_a_delayed_follow_up() {
    let server = start();
    let eval_id = server.register_job(job("web", 100)).await.unwrap().eval_id;
    let eval = eventually(&server, "evaluated", |s| s.eval(&eval_id).is_some())
        .await
        .eval(&eval_id)
        .unwrap();
    worker::give_up(&server, (*eval).clone(), "plan rejected 5 times").await;
    let state = server.state();
    let failed = state.eval(&eval_id).unwrap();
    assert_eq!(failed.status, EvalStatus::Failed);
    let follow_up = state.eval(&failed.next_eval).unwrap();
    assert_eq!(follow_up.triggered_by, trigger::FAILED_FOLLOW_UP);
    assert_eq!(follow_up.previous_eval, eval_id);
    assert_eq!(follow_up.status, EvalStatus::Pending);
    let at = time::parse_rfc3339(&follow_up.wait_until).unwrap();
    assert!(
        at >= now_unix_nanos() + 55_000_000_000,
        "a minute or more away"
    );
    eventually(&server, "the follow-up waits in the broker", |_| {
        server.broker().stats().total_waiting == 1
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn capacity_on_an_ineligible_class_leaves_a_blocked_evaluation_waiting() {
    let server = start();
    // Too small for the job: its evaluation blocks.
    server.register_node(node("small", "", 1000)).await.unwrap();
    let eval_id = server.register_job(job("big", 3000)).await.unwrap().eval_id;
    let state = eventually(&server, "a blocked evaluation", |s| {
        s.eval(&eval_id).is_some_and(|e| !e.blocked_eval.is_empty())
    })
    .await;
    let blocked_id = state.eval(&eval_id).unwrap().blocked_eval.clone();
    eventually(&server, "the tracker holds it", |_| {
        server.blocked_stats().total_blocked == 1
    })
    .await;
    // Say what the placement engineer's scheduler will say: nodes of the small node's
    // class cannot take it.
    let class = state.node("small").unwrap().computed_class.clone();
    let mut blocked = (*state.eval(&blocked_id).unwrap()).clone();
    blocked.class_eligibility = [(class.clone(), false)].into();
    server.update_evals(vec![blocked]).await.unwrap();
    eventually(&server, "captured by class", |_| {
        server.blocked_stats().total_captured == 1
    })
    .await;
    // A node of that class arrives: not for this evaluation.
    server
        .register_node(node("small-2", "", 8000))
        .await
        .unwrap();
    assert_eq!(
        server.state().node("small-2").unwrap().computed_class,
        class
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        eval_status(&server.state(), &blocked_id),
        Some(EvalStatus::Blocked)
    );
    assert_eq!(server.blocked_stats().total_blocked, 1);
    // One of another class: the evaluation runs and places.
    server
        .register_node(node("big", "large", 8000))
        .await
        .unwrap();
    let state = eventually(&server, "the blocked evaluation ran", |s| {
        eval_status(s, &blocked_id) == Some(EvalStatus::Complete)
    })
    .await;
    assert_eq!(
        state
            .allocs_by_job(DEFAULT_NAMESPACE, "big")
            .iter()
            .filter(|a| !a.is_terminal())
            .count(),
        1
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_newer_blocked_evaluation_of_a_job_cancels_the_older() {
    let server = start();
    // Registered while paused, so the scheduler never touches them.
    set_config(&server, |c| c.pause_eval_broker = true).await;
    server.register_job(job("web", 100)).await.unwrap();
    let blocked = |id: &str| Evaluation {
        id: id.into(),
        namespace: DEFAULT_NAMESPACE.into(),
        job_id: "web".into(),
        eval_type: "service".into(),
        status: EvalStatus::Blocked,
        class_eligibility: [("v1:none".to_string(), false)].into(),
        ..Default::default()
    };
    server.update_evals(vec![blocked("old")]).await.unwrap();
    server.update_evals(vec![blocked("new")]).await.unwrap();
    let state = eventually(&server, "the older one canceled", |s| {
        eval_status(s, "old") == Some(EvalStatus::Canceled)
    })
    .await;
    assert!(state
        .eval("old")
        .unwrap()
        .status_description
        .contains("existing blocked evaluation exists for job \"web\""));
    assert_eq!(eval_status(&state, "new"), Some(EvalStatus::Blocked));
    assert_eq!(server.blocked_stats().total_blocked, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn job_evaluate_creates_an_evaluation_and_refuses_unknown_jobs() {
    let server = start();
    server.register_node(node("n1", "", 4000)).await.unwrap();
    server.register_job(job("web", 100)).await.unwrap();
    let response = server
        .evaluate_job(DEFAULT_NAMESPACE, "web", true)
        .await
        .unwrap();
    let state = server.state();
    let eval = state.eval(&response.eval_id).unwrap();
    assert_eq!(eval.triggered_by, trigger::JOB_REGISTER);
    assert_eq!(eval.job_id, "web");
    let e = server
        .evaluate_job(DEFAULT_NAMESPACE, "nope", false)
        .await
        .unwrap_err();
    assert!(matches!(e, ServerError::NotFound(_)), "{e}");
    let mut periodic = job("cron", 100);
    periodic.periodic = Some(PeriodicConfig {
        spec: "*/5 * * * *".into(),
        ..Default::default()
    });
    server.register_job(periodic).await.unwrap();
    let e = server
        .evaluate_job(DEFAULT_NAMESPACE, "cron", false)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("can't evaluate periodic job"), "{e}");
    server.shutdown().await;
}
