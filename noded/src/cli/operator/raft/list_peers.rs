//! `noded operator raft list-peers [-stale]`.

use anyhow::anyhow;
use clap::Args;
use controlplane::api::RaftConfiguration;

use super::super::super::format::table;
use super::super::super::global::ApiCommand;
use super::super::super::http::ApiClient;
use super::super::super::output::OutputArgs;
use super::super::super::Exit;

#[derive(Debug, Args)]
pub struct ListPeers {
    /// Let a server without a leader answer.
    #[arg(long)]
    stale: bool,
    #[command(flatten)]
    out: OutputArgs,
}

impl ApiCommand for ListPeers {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let query = if self.stale {
            vec![("stale", "true".to_string())]
        } else {
            Vec::new()
        };
        let config: RaftConfiguration = api
            .get_now("/v1/operator/raft/configuration", &query)
            .await
            .map_err(|e| anyhow!("Failed to retrieve raft configuration: {e}"))?;
        self.out.print(&config, render)
    }
}

fn render(config: &RaftConfiguration) -> String {
    let mut rows = vec![["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]
        .map(String::from)
        .to_vec()];
    for s in &config.servers {
        rows.push(vec![
            s.node.clone(),
            s.id.clone(),
            s.address.clone(),
            if s.leader { "leader" } else { "follower" }.to_string(),
            s.voter.to_string(),
            s.raft_protocol.clone(),
        ]);
    }
    table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use controlplane::api::RaftServer;

    #[test]
    fn peers_print_as_nomad_prints_them() {
        let config = RaftConfiguration {
            index: 3,
            servers: vec![RaftServer {
                id: "id-1".into(),
                node: "s1.global".into(),
                address: "10.0.0.1:4647".into(),
                leader: true,
                voter: true,
                raft_protocol: "3".into(),
            }],
        };
        assert_eq!(
            render(&config),
            "Node       ID    Address        State   Voter  RaftProtocol\ns1.global  id-1  10.0.0.1:4647  leader  true   3\n"
        );
    }
}
