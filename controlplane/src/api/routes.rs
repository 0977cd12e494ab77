//! The one table of `/v1` routes: method, path, what the caller must be allowed to do, and the
//! handler. A route cannot be added without saying what it requires: [`Routes::add`] is the
//! only way into the router, and it takes a [`Requires`].
//!
//! The requirement travels with every request through [`declared`], the one middleware each
//! route is wrapped in: it puts the [`Requires`] into the request's and the response's
//! extensions. Nothing enforces it yet; the ACL issue fills in that middleware, and the
//! test that walks every route (`api::tests::every_route_declares_what_it_requires`) proves
//! each one passes through it with its declaration. Around the whole router,
//! [`only_declared`] fails closed: a route that got in some other way is refused before its
//! handler runs.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{on, MethodFilter};
use axum::Router;

use super::{
    agent, allocs, autopilot, client, deployments, evals, exec, jobs, node_pools, nodes, operator,
    operator_raft, periodic, services, snapshot, system, versions, ApiContext,
};

/// A namespace capability, in Nomad's ACL words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NamespaceCapability {
    ListJobs,
    ParseJob,
    ReadJob,
    SubmitJob,
    ReadLogs,
    ReadFs,
    AllocExec,
    AllocLifecycle,
    DispatchJob,
    ScaleJob,
    ReadJobScaling,
    ListScalingPolicies,
    ReadScalingPolicy,
}

impl NamespaceCapability {
    pub fn as_str(self) -> &'static str {
        match self {
            NamespaceCapability::ListJobs => "list-jobs",
            NamespaceCapability::ParseJob => "parse-job",
            NamespaceCapability::ReadJob => "read-job",
            NamespaceCapability::SubmitJob => "submit-job",
            NamespaceCapability::ReadLogs => "read-logs",
            NamespaceCapability::ReadFs => "read-fs",
            NamespaceCapability::AllocExec => "alloc-exec",
            NamespaceCapability::AllocLifecycle => "alloc-lifecycle",
            NamespaceCapability::DispatchJob => "dispatch-job",
            NamespaceCapability::ScaleJob => "scale-job",
            NamespaceCapability::ReadJobScaling => "read-job-scaling",
            NamespaceCapability::ListScalingPolicies => "list-scaling-policies",
            NamespaceCapability::ReadScalingPolicy => "read-scaling-policy",
        }
    }
}

/// A node pool capability, in Nomad's ACL words (`node_pool` policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodePoolCapability {
    Read,
    Write,
    Delete,
}

impl NodePoolCapability {
    pub fn as_str(self) -> &'static str {
        match self {
            NodePoolCapability::Read => "read",
            NodePoolCapability::Write => "write",
            NodePoolCapability::Delete => "delete",
        }
    }
}

/// `read` or `write` on a coarse ACL scope (`node`, `agent`, `operator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    Write,
}

/// What a caller must hold to use a route, as Nomad's API documentation lists it per
/// endpoint ("ACL Required").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Requires {
    /// Nothing: anyone who reaches the port (leader status, health).
    Anonymous,
    /// A capability in the request's namespace.
    Namespace(NamespaceCapability),
    Node(Access),
    Agent(Access),
    Operator(Access),
    /// A capability on the node pool named in the request.
    NodePool(NodePoolCapability),
    /// A management token.
    Management,
}

impl std::fmt::Display for Requires {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let access = |a: &Access| match a {
            Access::Read => "read",
            Access::Write => "write",
        };
        match self {
            Requires::Anonymous => f.write_str("anonymous"),
            Requires::Namespace(c) => write!(f, "namespace:{}", c.as_str()),
            Requires::Node(a) => write!(f, "node:{}", access(a)),
            Requires::Agent(a) => write!(f, "agent:{}", access(a)),
            Requires::Operator(a) => write!(f, "operator:{}", access(a)),
            Requires::NodePool(c) => write!(f, "node_pool:{}", c.as_str()),
            Requires::Management => f.write_str("management"),
        }
    }
}

/// One declared route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub requires: Requires,
}

/// The router under construction and what has been declared into it.
#[derive(Debug)]
pub(super) struct Routes {
    router: Router<ApiContext>,
    declared: Vec<Route>,
}

impl Routes {
    fn new() -> Routes {
        Routes {
            router: Router::new(),
            declared: Vec::new(),
        }
    }

    /// Adds `handler` for `methods` on `path`, wrapped in the middleware that carries
    /// `requires`.
    fn add<H, T>(
        mut self,
        methods: &[Method],
        path: &'static str,
        requires: Requires,
        handler: H,
    ) -> Routes
    where
        H: Handler<T, ApiContext>,
        T: 'static,
    {
        for method in methods {
            let route = Route {
                method: method.clone(),
                path,
                requires,
            };
            assert!(
                !self.declared.contains(&route),
                "route {method} {path} is declared twice"
            );
            self.declared.push(route);
            let filter = MethodFilter::try_from(method.clone())
                .unwrap_or_else(|_| panic!("no method filter for {method}"));
            let endpoint = on(filter, handler.clone())
                .route_layer(axum::middleware::from_fn_with_state(requires, declared));
            self.router = self.router.route(path, endpoint);
        }
        self
    }

    pub(super) fn into_parts(self) -> (Router<ApiContext>, Vec<Route>) {
        (self.router, self.declared)
    }
}

/// The middleware around every route: the declared requirement goes into the request (for
/// the handler and, with the ACL issue, the check) and into the response (for the test that
/// walks the routes).
async fn declared(State(requires): State<Requires>, mut request: Request, next: Next) -> Response {
    request.extensions_mut().insert(requires);
    let mut response = next.run(request).await;
    response.extensions_mut().insert(requires);
    response
}

/// The (method, path) pairs the table declares, for the guard around the whole router.
#[derive(Debug)]
pub(super) struct Declared(HashSet<(Method, &'static str)>);

impl Declared {
    pub(super) fn new(routes: &[Route]) -> Declared {
        Declared(routes.iter().map(|r| (r.method.clone(), r.path)).collect())
    }

    fn contains(&self, method: &Method, path: &str) -> bool {
        // axum answers HEAD with the GET handler.
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.0.contains(&(method.clone(), path))
    }

    /// The methods declared on `path`, sorted.
    fn methods(&self, path: &str) -> Vec<&str> {
        let mut methods: Vec<&str> = self
            .0
            .iter()
            .filter(|(_, p)| *p == path)
            .map(|(m, _)| m.as_str())
            .collect();
        methods.sort_unstable();
        methods
    }
}

/// The guard around every route: a route that reached the router other than through
/// [`Routes::add`] has no declaration, and is refused (fail closed) before its handler runs;
/// a method the table does not declare on a declared path is a 405 naming those it does.
pub(super) async fn only_declared(
    State(declared): State<Arc<Declared>>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let path = matched.as_ref().map(MatchedPath::as_str).unwrap_or("");
    if declared.contains(request.method(), path) {
        return next.run(request).await;
    }
    let allowed = declared.methods(path);
    if !allowed.is_empty() {
        return axum::response::IntoResponse::into_response(super::ApiError {
            status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
            message: format!(
                "{} is not allowed on {path}; use {}",
                request.method(),
                allowed.join(" or ")
            ),
        });
    }
    tracing::error!(method = %request.method(), path, "a route with no declared requirement was called");
    axum::response::IntoResponse::into_response(super::ApiError::internal(format!(
        "{} {path} declares no requirement, so it is refused; this is a bug in noded",
        request.method()
    )))
}

const GET: &[Method] = &[Method::GET];
const DELETE: &[Method] = &[Method::DELETE];
/// Nomad accepts PUT and POST alike for its writes.
const WRITE: &[Method] = &[Method::PUT, Method::POST];
/// A write Nomad's own API client sends as a GET (the client GC endpoints).
const ANY: &[Method] = &[Method::GET, Method::PUT, Method::POST];

/// Every `/v1` route. Adding an endpoint is one line here and one handler.
pub(super) fn table() -> Routes {
    use Access::{Read, Write};
    use NamespaceCapability::*;
    use Requires::{Agent, Anonymous, Management, Namespace as Ns, Node, NodePool, Operator};
    let pool = |c| NodePool(c);
    use NodePoolCapability as Pool;
    Routes::new()
        // Jobs.
        .add(GET, "/v1/jobs", Ns(ListJobs), jobs::list)
        .add(WRITE, "/v1/jobs", Ns(SubmitJob), jobs::register)
        .add(WRITE, "/v1/jobs/parse", Ns(ParseJob), jobs::parse)
        .add(WRITE, "/v1/validate/job", Ns(ReadJob), jobs::validate)
        .add(GET, "/v1/job/{id}", Ns(ReadJob), jobs::read)
        .add(WRITE, "/v1/job/{id}", Ns(SubmitJob), jobs::register_one)
        .add(DELETE, "/v1/job/{id}", Ns(SubmitJob), jobs::deregister)
        .add(
            GET,
            "/v1/job/{id}/allocations",
            Ns(ReadJob),
            jobs::allocations,
        )
        .add(
            GET,
            "/v1/job/{id}/evaluations",
            Ns(ReadJob),
            jobs::evaluations,
        )
        .add(GET, "/v1/job/{id}/summary", Ns(ReadJob), jobs::summary)
        .add(GET, "/v1/job/{id}/versions", Ns(ReadJob), jobs::versions)
        // Deployments: reads, and the operator's promote, fail, pause/resume, health, unblock.
        .add(
            GET,
            "/v1/job/{id}/deployments",
            Ns(ReadJob),
            deployments::by_job,
        )
        .add(
            GET,
            "/v1/job/{id}/deployment",
            Ns(ReadJob),
            deployments::latest_by_job,
        )
        .add(GET, "/v1/deployments", Ns(ReadJob), deployments::list)
        .add(GET, "/v1/deployment/{id}", Ns(ReadJob), deployments::read)
        .add(
            GET,
            "/v1/deployment/allocations/{id}",
            Ns(ReadJob),
            deployments::allocations,
        )
        .add(
            WRITE,
            "/v1/deployment/promote/{id}",
            Ns(SubmitJob),
            deployments::promote,
        )
        .add(
            WRITE,
            "/v1/deployment/fail/{id}",
            Ns(SubmitJob),
            deployments::fail,
        )
        .add(
            WRITE,
            "/v1/deployment/pause/{id}",
            Ns(SubmitJob),
            deployments::pause,
        )
        .add(
            WRITE,
            "/v1/deployment/allocation-health/{id}",
            Ns(SubmitJob),
            deployments::alloc_health,
        )
        .add(
            WRITE,
            "/v1/deployment/unblock/{id}",
            Ns(SubmitJob),
            deployments::unblock,
        )
        // A job's stored versions: revert, stability, tags.
        .add(
            WRITE,
            "/v1/job/{id}/revert",
            Ns(SubmitJob),
            versions::revert,
        )
        .add(
            WRITE,
            "/v1/job/{id}/stable",
            Ns(SubmitJob),
            versions::stable,
        )
        .add(
            WRITE,
            "/v1/job/{id}/versions/{name}/tag",
            Ns(SubmitJob),
            versions::tag_apply,
        )
        .add(
            DELETE,
            "/v1/job/{id}/versions/{name}/tag",
            Ns(SubmitJob),
            versions::tag_unset,
        )
        .add(WRITE, "/v1/job/{id}/plan", Ns(SubmitJob), jobs::plan)
        // Periodic, parameterized and scaled jobs.
        .add(
            WRITE,
            "/v1/job/{id}/periodic/force",
            Ns(SubmitJob),
            periodic::force,
        )
        .add(
            WRITE,
            "/v1/job/{id}/dispatch",
            Ns(DispatchJob),
            periodic::dispatch,
        )
        .add(
            GET,
            "/v1/job/{id}/scale",
            Ns(ReadJobScaling),
            periodic::scale_status_read,
        )
        .add(WRITE, "/v1/job/{id}/scale", Ns(ScaleJob), periodic::scale)
        .add(
            GET,
            "/v1/scaling/policies",
            Ns(ListScalingPolicies),
            periodic::policies,
        )
        .add(
            GET,
            "/v1/scaling/policy/{id}",
            Ns(ReadScalingPolicy),
            periodic::policy,
        )
        // Allocations and evaluations.
        .add(GET, "/v1/allocations", Ns(ReadJob), allocs::list)
        .add(GET, "/v1/allocation/{id}", Ns(ReadJob), allocs::read)
        .add(
            WRITE,
            "/v1/allocation/{id}/stop",
            Ns(AllocLifecycle),
            allocs::stop,
        )
        .add(
            WRITE,
            "/v1/job/{id}/evaluate",
            Ns(SubmitJob),
            evals::job_evaluate,
        )
        .add(GET, "/v1/evaluations", Ns(ReadJob), evals::list)
        .add(GET, "/v1/evaluations/count", Ns(ReadJob), evals::count)
        // Nomad: deleting evaluations alters the scheduler's core state; management only.
        .add(DELETE, "/v1/evaluations", Management, evals::delete)
        .add(GET, "/v1/evaluation/{id}", Ns(ReadJob), evals::read)
        .add(
            GET,
            "/v1/evaluation/{id}/allocations",
            Ns(ReadJob),
            evals::allocations,
        )
        // The native service catalog: Nomad's read-job to read, submit-job to delete.
        .add(GET, "/v1/services", Ns(ReadJob), services::list)
        .add(GET, "/v1/service/{name}", Ns(ReadJob), services::read)
        .add(
            DELETE,
            "/v1/service/{name}/{id}",
            Ns(SubmitJob),
            services::delete,
        )
        .add(
            GET,
            "/v1/allocation/{id}/services",
            Ns(ReadJob),
            services::alloc_services,
        )
        .add(
            GET,
            "/v1/job/{id}/services",
            Ns(ReadJob),
            services::job_services,
        )
        // Nodes.
        .add(GET, "/v1/nodes", Node(Read), nodes::list)
        .add(GET, "/v1/node/{id}", Node(Read), nodes::read)
        .add(
            GET,
            "/v1/node/{id}/allocations",
            Node(Read),
            nodes::allocations,
        )
        .add(WRITE, "/v1/node/{id}/drain", Node(Write), nodes::drain)
        .add(
            WRITE,
            "/v1/node/{id}/eligibility",
            Node(Write),
            nodes::eligibility,
        )
        .add(
            WRITE,
            "/v1/node/{id}/evaluate",
            Node(Write),
            nodes::evaluate,
        )
        .add(WRITE, "/v1/node/{id}/purge", Node(Write), nodes::purge)
        // Node pools.
        .add(GET, "/v1/node/pools", pool(Pool::Read), node_pools::list)
        .add(
            WRITE,
            "/v1/node/pools",
            pool(Pool::Write),
            node_pools::upsert,
        )
        .add(
            GET,
            "/v1/node/pool/{name}",
            pool(Pool::Read),
            node_pools::read,
        )
        .add(
            DELETE,
            "/v1/node/pool/{name}",
            pool(Pool::Delete),
            node_pools::delete,
        )
        .add(
            GET,
            "/v1/node/pool/{name}/nodes",
            pool(Pool::Read),
            node_pools::nodes,
        )
        .add(
            GET,
            "/v1/node/pool/{name}/jobs",
            pool(Pool::Read),
            node_pools::jobs,
        )
        // Housekeeping: a management token, as Nomad requires.
        .add(WRITE, "/v1/system/gc", Management, system::gc)
        .add(
            WRITE,
            "/v1/system/reconcile/summaries",
            Management,
            system::reconcile_summaries,
        )
        // Status and agent.
        .add(GET, "/v1/status/leader", Anonymous, agent::leader)
        .add(GET, "/v1/status/peers", Anonymous, agent::peers)
        .add(GET, "/v1/agent/self", Agent(Read), agent::self_info)
        .add(GET, "/v1/agent/health", Anonymous, agent::health)
        .add(GET, "/v1/regions", Anonymous, agent::regions)
        // Nomad's docs: members needs node:read; join is documented "none" but Nomad's
        // handler checks agent:write, which is what it should be.
        .add(GET, "/v1/agent/members", Node(Read), agent::members)
        .add(GET, "/v1/agent/servers", Agent(Read), agent::servers)
        .add(WRITE, "/v1/agent/servers", Agent(Write), agent::set_servers)
        .add(WRITE, "/v1/agent/join", Agent(Write), agent::join)
        .add(
            WRITE,
            "/v1/agent/force-leave",
            Agent(Write),
            agent::force_leave,
        )
        // Operator.
        .add(
            GET,
            "/v1/operator/scheduler/configuration",
            Operator(Read),
            operator::scheduler_config,
        )
        .add(
            WRITE,
            "/v1/operator/scheduler/configuration",
            Operator(Write),
            operator::set_scheduler_config,
        )
        // Raft peers: a management token, as Nomad requires.
        .add(
            GET,
            "/v1/operator/raft/configuration",
            Management,
            operator_raft::configuration,
        )
        .add(
            DELETE,
            "/v1/operator/raft/peer",
            Management,
            operator_raft::remove_peer,
        )
        .add(
            WRITE,
            "/v1/operator/raft/transfer-leadership",
            Management,
            operator_raft::transfer_leadership,
        )
        .add(
            GET,
            "/v1/operator/autopilot/configuration",
            Operator(Read),
            autopilot::configuration,
        )
        .add(
            WRITE,
            "/v1/operator/autopilot/configuration",
            Operator(Write),
            autopilot::set_configuration,
        )
        .add(
            GET,
            "/v1/operator/autopilot/health",
            Operator(Read),
            autopilot::health,
        )
        .add(GET, "/v1/operator/snapshot", Management, snapshot::save)
        .add(
            WRITE,
            "/v1/operator/snapshot",
            Management,
            snapshot::restore,
        )
        // What the node running an allocation answers.
        .add(
            GET,
            "/v1/client/fs/logs/{alloc}",
            Ns(ReadLogs),
            client::logs,
        )
        .add(GET, "/v1/client/fs/ls/{alloc}", Ns(ReadFs), client::fs_ls)
        .add(
            GET,
            "/v1/client/fs/stat/{alloc}",
            Ns(ReadFs),
            client::fs_stat,
        )
        .add(GET, "/v1/client/fs/cat/{alloc}", Ns(ReadFs), client::fs_cat)
        .add(
            GET,
            "/v1/client/fs/stream/{alloc}",
            Ns(ReadFs),
            client::fs_stream,
        )
        .add(
            GET,
            "/v1/client/fs/readat/{alloc}",
            Ns(ReadFs),
            client::fs_readat,
        )
        .add(
            GET,
            "/v1/client/allocation/{alloc}/stats",
            Ns(ReadJob),
            client::alloc_stats,
        )
        .add(
            GET,
            "/v1/client/allocation/{alloc}/checks",
            Ns(ReadJob),
            client::alloc_checks,
        )
        .add(
            WRITE,
            "/v1/client/allocation/{alloc}/signal",
            Ns(AllocLifecycle),
            client::alloc_signal,
        )
        .add(
            WRITE,
            "/v1/client/allocation/{alloc}/restart",
            Ns(AllocLifecycle),
            client::alloc_restart,
        )
        .add(
            GET,
            "/v1/client/allocation/{alloc}/exec",
            Ns(AllocExec),
            exec::alloc_exec,
        )
        // Nomad: node:write for the whole node; submit-job in the allocation's namespace
        // for one allocation.
        .add(ANY, "/v1/client/gc", Node(Write), client::gc_all)
        .add(
            ANY,
            "/v1/client/allocation/{alloc}/gc",
            Ns(SubmitJob),
            client::alloc_gc,
        )
}
