//! `noded job dispatch [-meta k=v]… [-id-prefix-template T] [-idempotency-token T] [-detach]
//! [-verbose] [-json] JOB [FILE|-]`: start an instance of a parameterized job.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use clap::Args;
use controlplane::model::{JobListStub, DISPATCH_PAYLOAD_SIZE_LIMIT};
use controlplane::server::dispatch::JobDispatchResponse;

use super::super::format::short;
use super::super::global::ApiCommand;
use super::super::http::{urlencode, ApiClient};
use super::super::output::json;
use super::super::resolve::resolve;
use super::super::Exit;
use super::monitor::monitor;

/// How long a dispatch is followed before the command gives up (the job keeps running).
const DISPATCH_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Args)]
pub struct JobDispatch {
    /// Meta key/value for the dispatched job (`-meta key=value`, repeatable).
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    meta: Vec<String>,
    /// Prefix for the dispatched job's id (`<job>/dispatch-<prefix>-<time>-<random>`).
    #[arg(long = "id-prefix-template", default_value = "")]
    id_prefix_template: String,
    /// Dispatch at most once for this token while its job lives.
    #[arg(long = "idempotency-token", default_value = "")]
    idempotency_token: String,
    /// Return after dispatching, without following the evaluation.
    #[arg(long)]
    detach: bool,
    /// Show full ids.
    #[arg(long)]
    verbose: bool,
    /// Print the answer as JSON (implies -detach).
    #[arg(long)]
    json: bool,
    /// The parameterized job's ID (or a unique prefix).
    job: String,
    /// The payload: a file, or `-` for standard input.
    input: Option<String>,
}

/// `-meta` values as a map; a flag without `=` is refused, naming it.
fn parse_meta(flags: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut meta = BTreeMap::new();
    for flag in flags {
        let Some((k, v)) = flag.split_once('=') else {
            bail!("-meta {flag:?} must be of the form key=value");
        };
        if meta.insert(k.to_string(), v.to_string()).is_some() {
            bail!("-meta key {k:?} given twice");
        }
    }
    Ok(meta)
}

/// Reads the payload, refusing one larger than the servers accept before sending it.
fn read_payload(input: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let mut payload = Vec::new();
    let limit = (DISPATCH_PAYLOAD_SIZE_LIMIT + 1) as u64;
    match input {
        None => return Ok(payload),
        Some("-") => {
            std::io::stdin()
                .take(limit)
                .read_to_end(&mut payload)
                .context("Error reading the payload from standard input")?;
        }
        Some(path) => {
            std::fs::File::open(path)
                .and_then(|f| f.take(limit).read_to_end(&mut payload))
                .with_context(|| format!("Error reading the payload file {path:?}"))?;
        }
    }
    if payload.len() > DISPATCH_PAYLOAD_SIZE_LIMIT {
        bail!(
            "Payload exceeds maximum size: more than {DISPATCH_PAYLOAD_SIZE_LIMIT} bytes; dispatch a reference to the data instead"
        );
    }
    Ok(payload)
}

impl ApiCommand for JobDispatch {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let meta = parse_meta(&self.meta)?;
        let payload = read_payload(self.input.as_deref())?;
        let job: JobListStub = resolve(api, &self.job).await?;
        let body = serde_json::json!({
            "JobID": job.id,
            "Payload": base64::engine::general_purpose::STANDARD.encode(&payload),
            "Meta": meta,
            "IdPrefixTemplate": self.id_prefix_template,
            "IdempotencyToken": self.idempotency_token,
        });
        let response: JobDispatchResponse = api
            .put(&format!("/v1/job/{}/dispatch", urlencode(&job.id)), &body)
            .await
            .map_err(|e| anyhow!("Failed to dispatch job: {e}"))?;
        if self.json {
            println!("{}", json(&response)?);
            return Ok(Exit::Ok);
        }
        let id = |s: &str| {
            if self.verbose {
                s.to_string()
            } else {
                short(s).to_string()
            }
        };
        println!("Dispatched Job ID = {}", response.dispatched_job_id);
        if response.eval_id.is_empty() {
            // A periodic parameterized job's child, or an earlier dispatch with this token.
            return Ok(Exit::Ok);
        }
        println!("Evaluation ID     = {}", id(&response.eval_id));
        if self.detach {
            return Ok(Exit::Ok);
        }
        println!();
        monitor(api, &response.eval_id, job.job_type, DISPATCH_TIMEOUT).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_flags_are_key_value_pairs() {
        let m = parse_meta(&["a=1".into(), "b=x=y".into()]).unwrap();
        assert_eq!(m["a"], "1");
        assert_eq!(m["b"], "x=y");
        assert!(parse_meta(&["nope".into()]).is_err());
        assert!(parse_meta(&["a=1".into(), "a=2".into()]).is_err());
    }
}
