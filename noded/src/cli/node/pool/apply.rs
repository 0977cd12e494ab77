//! `noded node pool apply [-json] FILE`: create or update a node pool.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use controlplane::model::{NodePool, NodePoolSchedulerConfiguration};
use hcl::{Block, Body, Expression};

use super::super::super::global::ApiCommand;
use super::super::super::http::ApiClient;
use super::super::super::Exit;

/// Largest specification file read.
const MAX_SPEC_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Args)]
pub struct NodePoolApply {
    /// The file is API JSON (a NodePool object) rather than HCL.
    #[arg(long)]
    json: bool,
    /// The specification file (`-` for stdin).
    file: PathBuf,
}

impl ApiCommand for NodePoolApply {
    async fn run(self, api: &ApiClient) -> anyhow::Result<Exit> {
        let text = read_spec(&self.file)?;
        let where_ = self.file.display().to_string();
        let pool = if self.json {
            serde_json::from_str::<NodePool>(&text)
                .map_err(|e| anyhow!("Failed to parse {where_} as JSON: {e}"))?
        } else {
            parse_hcl(&text).map_err(|e| anyhow!("Failed to parse {where_}: {e}"))?
        };
        pool.validate()
            .map_err(|e| anyhow!("Invalid node pool in {where_}: {e}"))?;
        let _: serde_json::Value = api
            .put("/v1/node/pools", &pool)
            .await
            .map_err(|e| anyhow!("Error applying node pool: {e}"))?;
        println!("Successfully applied node pool {:?}!", pool.name);
        Ok(Exit::Ok)
    }
}

fn read_spec(path: &PathBuf) -> anyhow::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .take(MAX_SPEC_BYTES + 1)
            .read_to_string(&mut text)
            .context("reading the node pool specification from stdin")?;
    } else {
        std::fs::File::open(path)
            .with_context(|| format!("opening {}", path.display()))?
            .take(MAX_SPEC_BYTES + 1)
            .read_to_string(&mut text)
            .with_context(|| format!("reading {}", path.display()))?;
    }
    if text.len() as u64 > MAX_SPEC_BYTES {
        bail!("{} is larger than {MAX_SPEC_BYTES} bytes", path.display());
    }
    Ok(text)
}

/// `node_pool "name" { description = "…" meta { k = "v" } scheduler_config { … } }`.
fn parse_hcl(text: &str) -> anyhow::Result<NodePool> {
    let body: Body = hcl::parse(text).map_err(|e| anyhow!("{e}"))?;
    if let Some(attr) = body.attributes().next() {
        bail!(
            "unexpected attribute {:?} outside the node_pool block",
            attr.key()
        );
    }
    let blocks: Vec<&Block> = body.blocks().collect();
    let [block] = blocks.as_slice() else {
        bail!(
            "expected exactly one node_pool block, found {} blocks",
            blocks.len()
        );
    };
    if block.identifier() != "node_pool" {
        bail!(
            "unexpected block {:?}; expected node_pool",
            block.identifier()
        );
    }
    let [label] = block.labels() else {
        bail!("the node_pool block needs one label: its name");
    };
    let mut pool = NodePool {
        name: label.as_str().to_string(),
        ..Default::default()
    };
    for attr in block.body().attributes() {
        match attr.key() {
            "description" => pool.description = string(attr.expr(), "description")?,
            other => bail!("node_pool: unknown attribute {other:?}"),
        }
    }
    for inner in block.body().blocks() {
        match inner.identifier() {
            "meta" => {
                for attr in inner.body().attributes() {
                    pool.meta.insert(
                        attr.key().to_string(),
                        string(attr.expr(), &format!("meta.{}", attr.key()))?,
                    );
                }
            }
            "scheduler_config" => {
                let mut config = NodePoolSchedulerConfiguration::default();
                for attr in inner.body().attributes() {
                    match attr.key() {
                        "scheduler_algorithm" => {
                            config.scheduler_algorithm =
                                string(attr.expr(), "scheduler_config.scheduler_algorithm")?
                        }
                        "memory_oversubscription_enabled" => match attr.expr() {
                            Expression::Bool(b) => {
                                config.memory_oversubscription_enabled = Some(*b)
                            }
                            _ => bail!(
                                "scheduler_config.memory_oversubscription_enabled must be true or false"
                            ),
                        },
                        other => bail!("scheduler_config: unknown attribute {other:?}"),
                    }
                }
                pool.scheduler_configuration = Some(config);
            }
            other => bail!("node_pool: unknown block {other:?}"),
        }
    }
    Ok(pool)
}

fn string(expr: &Expression, field: &str) -> anyhow::Result<String> {
    match expr {
        Expression::String(s) => Ok(s.clone()),
        _ => bail!("{field} must be a string"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_is_read_from_hcl() {
        let pool = parse_hcl(
            r#"
node_pool "gpu" {
  description = "nodes with GPUs"
  meta {
    team = "ml"
  }
  scheduler_config {
    scheduler_algorithm             = "spread"
    memory_oversubscription_enabled = true
  }
}
"#,
        )
        .unwrap();
        assert_eq!(pool.name, "gpu");
        assert_eq!(pool.description, "nodes with GPUs");
        assert_eq!(pool.meta["team"], "ml");
        let config = pool.scheduler_configuration.unwrap();
        assert_eq!(config.scheduler_algorithm, "spread");
        assert_eq!(config.memory_oversubscription_enabled, Some(true));
    }

    #[test]
    fn mistakes_are_named() {
        for (text, needle) in [
            ("node_pool {\n}\n", "one label"),
            ("node_pool \"a\" {\n  colour = \"red\"\n}\n", "colour"),
            ("pool \"a\" {\n}\n", "expected node_pool"),
            (
                "node_pool \"a\" {\n  description = 3\n}\n",
                "description must be a string",
            ),
        ] {
            let e = parse_hcl(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
