//! `noded service list [-json]` (`-namespace=*` for every namespace).

use anyhow::anyhow;
use clap::Args;
use controlplane::model::ServiceRegistrationListStub;

use super::super::global::ApiCommand;
use super::super::http::ApiClient;
use super::super::output::OutputArgs;
use super::super::Exit;

#[derive(Debug, Args)]
pub struct ServiceList {
    #[command(flatten)]
    out: OutputArgs,
}

impl ApiCommand for ServiceList {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let list: Vec<ServiceRegistrationListStub> = api
            .get_now("/v1/services", &[])
            .await
            .map_err(|e| anyhow!("Error listing service registrations: {e}"))?;
        if list.iter().all(|ns| ns.services.is_empty()) {
            println!("No service registrations found");
            return Ok(Exit::Ok);
        }
        let all = api.namespace() == "*";
        self.out.print(&list, |l| super::render_list(all, l))
    }
}
