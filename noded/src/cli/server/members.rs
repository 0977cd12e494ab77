//! `noded server members [-detailed|-verbose] [-json]`.

use anyhow::anyhow;
use clap::Args;
use controlplane::api::Member;

use super::super::format::table;
use super::super::global::ApiCommand;
use super::super::http::ApiClient;
use super::super::output::OutputArgs;
use super::super::Exit;

#[derive(Debug, Args)]
pub struct Members {
    /// Also show the protocol and every tag of each member.
    #[arg(long, alias = "detailed")]
    verbose: bool,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MembersReply {
    members: Vec<Member>,
}

impl ApiCommand for Members {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let reply: MembersReply = api
            .get_now("/v1/agent/members", &[])
            .await
            .map_err(|e| anyhow!("Error querying servers: {e}"))?;
        let leader: String = api
            .get_now("/v1/status/leader", &[])
            .await
            .unwrap_or_default();
        let verbose = self.verbose;
        self.out
            .print(&reply.members, |m| render(m, &leader, verbose))
    }
}

/// Nomad's columns; a member leads when its `rpc_addr:port` tags are the leader's address.
fn render(members: &[Member], leader: &str, verbose: bool) -> String {
    let tag = |m: &Member, k: &str| m.tags.get(k).cloned().unwrap_or_default();
    let mut head: Vec<&str> = vec!["Name", "Address", "Port", "Status", "Leader"];
    if verbose {
        head.push("Protocol");
    }
    head.extend(["Raft Version", "Build", "Datacenter", "Region"]);
    if verbose {
        head.push("Tags");
    }
    let mut rows = vec![head.into_iter().map(String::from).collect::<Vec<_>>()];
    let mut sorted: Vec<&Member> = members.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for m in sorted {
        let rpc = format!(
            "{}:{}",
            m.tags.get("rpc_addr").unwrap_or(&m.addr),
            tag(m, "port")
        );
        let mut row = vec![
            m.name.clone(),
            m.addr.clone(),
            m.port.to_string(),
            m.status.as_str().to_string(),
            (!leader.is_empty() && rpc == leader).to_string(),
        ];
        if verbose {
            row.push(m.protocol_cur.to_string());
        }
        row.extend([
            tag(m, "raft_vsn"),
            tag(m, "build"),
            tag(m, "dc"),
            tag(m, "region"),
        ]);
        if verbose {
            row.push(
                m.tags
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        rows.push(row);
    }
    table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use controlplane::api::SerfStatus;

    #[test]
    fn members_print_nomads_columns_and_mark_the_leader() {
        let member = |name: &str, addr: &str| Member {
            name: name.to_string(),
            addr: addr.to_string(),
            port: 4648,
            tags: [
                ("port", "4647"),
                ("raft_vsn", "3"),
                ("build", "0.1.0"),
                ("dc", "dc1"),
                ("region", "global"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            status: SerfStatus::Alive,
            protocol_min: 1,
            protocol_max: 5,
            protocol_cur: 2,
            delegate_min: 2,
            delegate_max: 5,
            delegate_cur: 4,
        };
        let out = render(
            &[
                member("s2.global", "10.0.0.9"),
                member("s1.global", "10.0.0.8"),
            ],
            "10.0.0.9:4647",
            false,
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "Name       Address   Port  Status  Leader  Raft Version  Build  Datacenter  Region"
        );
        assert_eq!(
            lines[1],
            "s1.global  10.0.0.8  4648  alive   false   3             0.1.0  dc1         global"
        );
        assert!(lines[2].contains("alive   true"));
        let verbose = render(&[member("s1.global", "10.0.0.8")], "", true);
        assert!(verbose.lines().next().unwrap().ends_with("Region  Tags"));
        assert!(verbose.contains("build=0.1.0,dc=dc1,port=4647"));
    }
}
