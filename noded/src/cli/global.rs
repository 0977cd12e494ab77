//! The flags every command that talks to an agent takes, and their environment variables, read
//! in one place: a command is `Api<ItsArgs>` and gets a ready [`ApiClient`].

use std::future::Future;

use clap::Args;

use super::http::{ApiClient, Endpoint};
use super::Exit;

/// How to reach the agent, and as whom.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Address of the agent's HTTP API.
    #[arg(long, env = "NODED_ADDR", default_value = "http://127.0.0.1:4646")]
    pub address: String,
    /// Region of the objects (default: the agent's own).
    #[arg(long, env = "NODED_REGION", default_value = "")]
    pub region: String,
    /// Namespace of the objects.
    #[arg(long, env = "NODED_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// ACL token to send (as X-Nomad-Token).
    #[arg(long, env = "NODED_TOKEN", default_value = "", hide_env_values = true)]
    pub token: String,
}

impl GlobalArgs {
    /// Where the flags point.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            address: self.address.clone(),
            namespace: self.namespace.clone(),
            region: self.region.clone(),
            token: self.token.clone(),
        }
    }
}

/// A command that talks to an agent. Adding one is a file with its `Args` struct and this impl,
/// and a line in its noun's enum.
pub trait ApiCommand: Args {
    fn run(self, api: &ApiClient) -> impl Future<Output = anyhow::Result<Exit>>;
}

/// A command with the global flags.
#[derive(Debug, Args)]
pub struct Api<C: Args> {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(flatten)]
    pub command: C,
}

impl<C: ApiCommand> Api<C> {
    pub async fn run(self) -> anyhow::Result<Exit> {
        let api = ApiClient::new(&self.global.endpoint())?;
        self.command.run(&api).await
    }
}
