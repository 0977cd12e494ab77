//! `noded service delete NAME ID`.

use anyhow::anyhow;
use clap::Args;

use super::super::global::ApiCommand;
use super::super::http::{urlencode, ApiClient};
use super::super::Exit;

#[derive(Debug, Args)]
pub struct ServiceDelete {
    /// The service's name.
    service_name: String,
    /// The registration's id (`noded service info -verbose NAME` shows it).
    service_id: String,
}

impl ApiCommand for ServiceDelete {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let path = format!(
            "/v1/service/{}/{}",
            urlencode(&self.service_name),
            urlencode(&self.service_id)
        );
        let _: serde_json::Value = api
            .delete(&path, &[])
            .await
            .map_err(|e| anyhow!("Error deleting service registration: {e}"))?;
        println!("Successfully deleted service registration");
        Ok(Exit::Ok)
    }
}
