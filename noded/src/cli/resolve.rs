//! Objects named by an id or a unique prefix of one, for every command: an exact id wins; one
//! match is it; several are an error that lists them, as Nomad's CLI does.
//!
//! And the agent that answers for an allocation ([`node_api`]): a node's own endpoints
//! (logs, fs, stats, exec, signal, restart) are asked of the agent on the node that runs it,
//! at the node's `HTTPAddr`, falling back to the agent the CLI was given when that node
//! cannot be reached — Nomad's `api` package (`queryClientNode`, `GetNodeClient`).

use std::future::Future;
use std::time::Duration;

use anyhow::{anyhow, bail};
use controlplane::model::{
    AllocListStub, Allocation, Deployment, Evaluation, JobListStub, Node, NodeListStub, NodeStatus,
};
use serde::de::DeserializeOwned;

use super::format::{short, table};
use super::http::{ApiCallError, ApiClient};

/// How long connecting to a node's agent may take before the given agent is asked instead
/// (Nomad's `ClientConnTimeout`).
pub const NODE_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Something a list endpoint returns and a prefix can name.
pub trait Listed: DeserializeOwned {
    /// "allocation", "evaluation", "node", "job".
    const NOUN: &'static str;
    /// The list endpoint that takes `?prefix=`.
    const LIST: &'static str;
    /// Shortest prefix accepted (ids are UUIDs: one character matches too much).
    const MIN_PREFIX: usize;
    /// Columns of the ambiguity listing.
    const COLUMNS: &'static [&'static str];
    fn id(&self) -> &str;
    fn row(&self) -> Vec<String>;
}

impl Listed for AllocListStub {
    const NOUN: &'static str = "allocation";
    const LIST: &'static str = "/v1/allocations";
    const MIN_PREFIX: usize = 2;
    const COLUMNS: &'static [&'static str] =
        &["ID", "Eval ID", "Job ID", "Task Group", "Desired", "Status"];
    fn id(&self) -> &str {
        &self.id
    }
    fn row(&self) -> Vec<String> {
        vec![
            short(&self.id),
            short(&self.eval_id),
            self.job_id.clone(),
            self.task_group.clone(),
            self.desired_status.as_str().into(),
            self.client_status.as_str().into(),
        ]
    }
}

impl Listed for Evaluation {
    const NOUN: &'static str = "evaluation";
    const LIST: &'static str = "/v1/evaluations";
    const MIN_PREFIX: usize = 2;
    const COLUMNS: &'static [&'static str] =
        &["ID", "Priority", "Triggered By", "Job ID", "Status"];
    fn id(&self) -> &str {
        &self.id
    }
    fn row(&self) -> Vec<String> {
        vec![
            short(&self.id),
            self.priority.to_string(),
            self.triggered_by.clone(),
            self.job_id.clone(),
            self.status.as_str().into(),
        ]
    }
}

impl Listed for Deployment {
    const NOUN: &'static str = "deployment";
    const LIST: &'static str = "/v1/deployments";
    const MIN_PREFIX: usize = 1;
    const COLUMNS: &'static [&'static str] =
        &["ID", "Job ID", "Job Version", "Status", "Description"];
    fn id(&self) -> &str {
        &self.id
    }
    fn row(&self) -> Vec<String> {
        vec![
            short(&self.id),
            self.job_id.clone(),
            self.job_version.to_string(),
            self.status.clone(),
            self.status_description.clone(),
        ]
    }
}

impl Listed for NodeListStub {
    const NOUN: &'static str = "node";
    const LIST: &'static str = "/v1/nodes";
    const MIN_PREFIX: usize = 1;
    const COLUMNS: &'static [&'static str] = &["ID", "DC", "Name", "Status"];
    fn id(&self) -> &str {
        &self.id
    }
    fn row(&self) -> Vec<String> {
        vec![
            short(&self.id),
            self.datacenter.clone(),
            self.name.clone(),
            self.status.as_str().into(),
        ]
    }
}

impl Listed for JobListStub {
    const NOUN: &'static str = "job";
    const LIST: &'static str = "/v1/jobs";
    const MIN_PREFIX: usize = 1;
    const COLUMNS: &'static [&'static str] = &["ID", "Type", "Priority", "Status"];
    fn id(&self) -> &str {
        &self.id
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.job_type.as_str().into(),
            self.priority.to_string(),
            self.status.as_str().into(),
        ]
    }
}

/// The one object `prefix` names.
pub async fn resolve<T: Listed>(api: &ApiClient, prefix: &str) -> anyhow::Result<T> {
    if prefix.chars().count() < T::MIN_PREFIX {
        bail!(
            "{} ID must contain at least {} characters",
            capitalised(T::NOUN),
            T::MIN_PREFIX
        );
    }
    let matches: Vec<T> = api
        .get_now(T::LIST, &[("prefix", prefix.to_string())])
        .await
        .map_err(|e| anyhow!("Error querying {}s: {e}", T::NOUN))?;
    choose(matches, prefix)
}

/// The exact match, or the only match, or an error listing the candidates.
fn choose<T: Listed>(mut matches: Vec<T>, prefix: &str) -> anyhow::Result<T> {
    if let Some(exact) = matches.iter().position(|m| m.id() == prefix) {
        return Ok(matches.swap_remove(exact));
    }
    match matches.len() {
        0 => bail!("No {}(s) with prefix or id {prefix:?} found", T::NOUN),
        1 => Ok(matches.swap_remove(0)),
        n => {
            let mut rows = vec![T::COLUMNS.iter().map(|c| c.to_string()).collect()];
            rows.extend(matches.iter().map(T::row));
            bail!(
                "Prefix {prefix:?} matched {n} {}s; give more of the ID:\n\n{}",
                T::NOUN,
                table(&rows).trim_end()
            )
        }
    }
}

fn capitalised(noun: &str) -> String {
    let mut chars = noun.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Where a node's own endpoints are asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRoute {
    /// The agent the CLI was given: it is the node, or the node cannot be dialled (why).
    Given { why: String },
    /// The node's agent at this address (`http://host:port`), then the given one.
    Direct { address: String },
}

/// Nomad's choice (`getNodeClientImpl`), as a pure function of what the servers said about
/// the node: a node that could not be looked up, is down, or advertises no HTTP address is
/// not dialled; a node whose address is the given agent's is not dialled twice.
pub fn route_to_node(given: &str, node: Result<&Node, &ApiCallError>) -> NodeRoute {
    let node = match node {
        Ok(node) => node,
        Err(e) => {
            return NodeRoute::Given {
                why: format!("looking up the allocation's node failed: {e}"),
            }
        }
    };
    if node.status == NodeStatus::Down {
        return NodeRoute::Given {
            why: format!("node {} ({}) is down", node.name, short(&node.id)),
        };
    }
    if node.http_addr.is_empty() {
        return NodeRoute::Given {
            why: format!(
                "node {} ({}) does not advertise its HTTP address",
                node.name,
                short(&node.id)
            ),
        };
    }
    let scheme = if given.starts_with("https://") {
        "https"
    } else {
        "http"
    };
    let address = format!("{scheme}://{}", node.http_addr);
    if same_agent(given, &address) {
        return NodeRoute::Given {
            why: "the given agent runs the allocation".to_string(),
        };
    }
    NodeRoute::Direct { address }
}

/// Whether two `http://host:port` addresses name the same listener (default port filled in,
/// host compared without case).
fn same_agent(a: &str, b: &str) -> bool {
    let key = |s: &str| {
        reqwest::Url::parse(s).ok().and_then(|u| {
            Some((
                u.scheme().to_string(),
                u.host_str()?.to_ascii_lowercase(),
                u.port_or_known_default()?,
            ))
        })
    };
    matches!((key(a), key(b)), (Some(x), Some(y)) if x == y)
}

/// The agent(s) that answer for one allocation: its node's, then the given one.
#[derive(Debug, Clone)]
pub struct NodeApi {
    /// The node's own agent, when it is worth dialling.
    direct: Option<ApiClient>,
    given: ApiClient,
}

/// Looks up the allocation's node (`/v1/node/:id` → `HTTPAddr`) and decides where its
/// endpoints are asked ([`route_to_node`]).
pub async fn node_api(given: &ApiClient, alloc: &Allocation) -> anyhow::Result<NodeApi> {
    let node: Result<Node, ApiCallError> = given
        .get_now(&format!("/v1/node/{}", alloc.node_id), &[])
        .await;
    let route = route_to_node(given.address(), node.as_ref());
    let direct = match route {
        NodeRoute::Direct { address } => Some(given.elsewhere(&address, NODE_CONNECT_TIMEOUT)?),
        NodeRoute::Given { why } => {
            tracing::debug!(
                "asking {} for allocation {}: {why}",
                given.address(),
                alloc.id
            );
            None
        }
    };
    Ok(NodeApi {
        direct,
        given: given.clone(),
    })
}

impl NodeApi {
    /// `call` on the node's agent; when that agent cannot be reached (see
    /// [`ApiCallError::falls_back`]), on the given agent. If both fail, the given agent's
    /// answer is the error, with why the node was not asked.
    pub async fn call<'a, T, F, Fut>(&'a self, idempotent: bool, call: F) -> Result<T, ApiCallError>
    where
        F: Fn(&'a ApiClient) -> Fut,
        Fut: Future<Output = Result<T, ApiCallError>>,
    {
        let Some(direct) = &self.direct else {
            return call(&self.given).await;
        };
        let first = match call(direct).await {
            Err(e) if e.falls_back(idempotent) => e,
            done => return done,
        };
        tracing::debug!(
            "the allocation's node did not answer ({first}); asking {}",
            self.given.address()
        );
        call(&self.given).await.map_err(|e| match e {
            ApiCallError::Status { status, message } => ApiCallError::Status {
                status,
                message: format!(
                    "{message} (the allocation's node at {} could not be reached: {})",
                    direct.address(),
                    unreachable_detail(&first)
                ),
            },
            other => other,
        })
    }

    /// A GET of JSON.
    pub async fn get_now<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ApiCallError> {
        self.call(true, |api| api.get_now(path, query)).await
    }

    /// A streaming GET (logs, file contents).
    pub async fn stream(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<reqwest::Response, ApiCallError> {
        self.call(true, |api| api.stream(path, query)).await
    }

    /// A PUT of JSON (signal, restart): sent to the given agent only if the node's was not
    /// reached at all.
    pub async fn put<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiCallError> {
        self.call(false, |api| api.put(path, body)).await
    }

    /// The exec websocket, opened on the node's agent or else the given one.
    pub async fn open_websocket(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<super::http::Socket, ApiCallError> {
        self.call(false, |api| api.open_websocket(path, query))
            .await
    }
}

fn unreachable_detail(e: &ApiCallError) -> String {
    match e {
        ApiCallError::Unreachable { detail, .. } => detail.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Thing {
        id: String,
        name: String,
    }

    impl Listed for Thing {
        const NOUN: &'static str = "node";
        const LIST: &'static str = "/v1/things";
        const MIN_PREFIX: usize = 1;
        const COLUMNS: &'static [&'static str] = &["ID", "Name"];
        fn id(&self) -> &str {
            &self.id
        }
        fn row(&self) -> Vec<String> {
            vec![self.id.clone(), self.name.clone()]
        }
    }

    fn node(id: &str, name: &str) -> Thing {
        Thing {
            id: id.into(),
            name: name.into(),
        }
    }

    #[test]
    fn an_exact_id_wins_and_an_ambiguous_prefix_lists_the_matches() {
        let nodes = vec![node("ab", "one"), node("abc", "two")];
        assert_eq!(choose(nodes, "ab").unwrap().name, "one");
        let nodes = vec![node("abc1", "one"), node("abc2", "two")];
        let e = choose(nodes, "abc").unwrap_err().to_string();
        assert!(e.contains("matched 2 nodes"), "{e}");
        assert!(e.contains("one") && e.contains("two"), "{e}");
        assert!(e.contains("ID"), "{e}");
        let e = choose(Vec::<Thing>::new(), "zz").unwrap_err().to_string();
        assert_eq!(e, "No node(s) with prefix or id \"zz\" found");
        assert_eq!(choose(vec![node("abc1", "x")], "a").unwrap().name, "x");
        assert_eq!(capitalised("allocation"), "Allocation");
    }

    fn ready_node(http_addr: &str) -> Node {
        Node {
            id: "0123456789abcdef".into(),
            name: "c1".into(),
            http_addr: http_addr.into(),
            status: NodeStatus::Ready,
            ..Node::default()
        }
    }

    #[test]
    fn the_node_is_dialled_directly_unless_it_is_the_given_agent_or_cannot_be() {
        let given = "http://10.0.0.1:4646";
        assert_eq!(
            route_to_node(given, Ok(&ready_node("10.0.0.2:4646"))),
            NodeRoute::Direct {
                address: "http://10.0.0.2:4646".into()
            }
        );
        // The given agent is the node: no second hop.
        for same in ["10.0.0.1:4646", "10.0.0.1:4646/"] {
            assert!(matches!(
                route_to_node(given, Ok(&ready_node(same))),
                NodeRoute::Given { .. }
            ));
        }
        assert!(matches!(
            route_to_node("http://10.0.0.1", Ok(&ready_node("10.0.0.1:80"))),
            NodeRoute::Given { .. }
        ));
        let mut down = ready_node("10.0.0.2:4646");
        down.status = NodeStatus::Down;
        let NodeRoute::Given { why } = route_to_node(given, Ok(&down)) else {
            panic!("a down node is not dialled");
        };
        assert!(why.contains("down"), "{why}");
        let NodeRoute::Given { why } = route_to_node(given, Ok(&ready_node(""))) else {
            panic!("a node without an address is not dialled");
        };
        assert!(why.contains("HTTP address"), "{why}");
        let forbidden = ApiCallError::Status {
            status: reqwest::StatusCode::FORBIDDEN,
            message: "Permission denied".into(),
        };
        let NodeRoute::Given { why } = route_to_node(given, Err(&forbidden)) else {
            panic!("a node that cannot be looked up is not dialled");
        };
        assert!(why.contains("Permission denied"), "{why}");
    }

    #[test]
    fn only_an_unreachable_node_sends_the_request_to_the_given_agent() {
        let refused = ApiCallError::Unreachable {
            address: "http://10.0.0.2:4646".into(),
            detail: "Connection refused".into(),
            request_sent: false,
        };
        let lost = ApiCallError::Unreachable {
            address: "http://10.0.0.2:4646".into(),
            detail: "the request timed out".into(),
            request_sent: true,
        };
        let answered = ApiCallError::Status {
            status: reqwest::StatusCode::NOT_FOUND,
            message: "no such file".into(),
        };
        assert!(refused.falls_back(true) && refused.falls_back(false));
        assert!(lost.falls_back(true), "a read is asked again");
        assert!(
            !lost.falls_back(false),
            "a write that may have arrived is not sent twice"
        );
        assert!(!answered.falls_back(true) && !answered.falls_back(false));
        assert!(!ApiCallError::Other("bad json".into()).falls_back(true));
    }

    /// A listener that accepts nothing: connecting to a closed port on loopback is refused.
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn a_call_falls_back_to_the_given_agent_when_the_node_refuses_the_connection() {
        let given = ApiClient::new(&super::super::http::Endpoint {
            address: format!("http://127.0.0.1:{}", closed_port()),
            ..Default::default()
        })
        .unwrap();
        let node = given
            .elsewhere(
                &format!("http://127.0.0.1:{}", closed_port()),
                NODE_CONNECT_TIMEOUT,
            )
            .unwrap();
        let api = NodeApi {
            direct: Some(node.clone()),
            given: given.clone(),
        };
        let asked = std::sync::Mutex::new(Vec::new());
        let r: Result<(), ApiCallError> = api
            .call(false, |a| {
                asked.lock().unwrap().push(a.address().to_string());
                a.get_now::<()>("/v1/agent/self", &[])
            })
            .await;
        assert_eq!(
            *asked.lock().unwrap(),
            vec![node.address().to_string(), given.address().to_string()],
            "the node first, then the given agent"
        );
        assert!(matches!(r, Err(ApiCallError::Unreachable { .. })), "{r:?}");
    }
}
