//! Node pools: named partitions of the nodes a job may be placed on (Nomad's `NodePool`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The built-in pool every node belongs to.
pub const NODE_POOL_ALL: &str = "all";
pub const NODE_POOL_ALL_DESCRIPTION: &str = "Node pool with all nodes in the cluster.";
/// The built-in pool of nodes that name none.
pub const NODE_POOL_DEFAULT: &str = "default";
pub const NODE_POOL_DEFAULT_DESCRIPTION: &str = "Default node pool.";
/// Longest description a pool may have (Nomad's limit).
pub const MAX_NODE_POOL_DESCRIPTION_LEN: usize = 256;
/// Longest pool name (Nomad's `^[a-zA-Z0-9-_]{1,128}$`).
pub const MAX_NODE_POOL_NAME_LEN: usize = 128;
/// Most meta entries a pool may carry (a bound of noded's; Nomad has none).
pub const MAX_NODE_POOL_META: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodePool {
    pub name: String,
    pub description: String,
    pub meta: BTreeMap<String, String>,
    /// Overrides of the cluster's scheduler configuration for this pool's nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler_configuration: Option<NodePoolSchedulerConfiguration>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Nomad's `NodePoolSchedulerConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodePoolSchedulerConfiguration {
    /// `binpack` or `spread`; empty for the cluster's.
    pub scheduler_algorithm: String,
    /// `None` for the cluster's setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_oversubscription_enabled: Option<bool>,
}

impl NodePool {
    /// Whether this is `all` or `default`, which always exist and never change.
    pub fn is_built_in(&self) -> bool {
        is_built_in_pool(&self.name)
    }

    /// The two built-in pools, as Nomad describes them.
    pub fn built_ins() -> [NodePool; 2] {
        [
            NodePool {
                name: NODE_POOL_ALL.to_string(),
                description: NODE_POOL_ALL_DESCRIPTION.to_string(),
                ..Default::default()
            },
            NodePool {
                name: NODE_POOL_DEFAULT.to_string(),
                description: NODE_POOL_DEFAULT_DESCRIPTION.to_string(),
                ..Default::default()
            },
        ]
    }

    /// Nomad's rules: a valid name, a description of at most 256 bytes, a known scheduler
    /// algorithm. Every problem, each naming the field.
    pub fn validate(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        if let Err(e) = validate_node_pool_name(&self.name) {
            errors.push(e);
        }
        if self.description.len() > MAX_NODE_POOL_DESCRIPTION_LEN {
            errors.push(format!(
                "description longer than {MAX_NODE_POOL_DESCRIPTION_LEN}"
            ));
        }
        if self.meta.len() > MAX_NODE_POOL_META {
            errors.push(format!(
                "meta has {} entries; at most {MAX_NODE_POOL_META} are allowed",
                self.meta.len()
            ));
        }
        if let Some(config) = &self.scheduler_configuration {
            match config.scheduler_algorithm.as_str() {
                "" | "binpack" | "spread" => {}
                other => errors.push(format!(
                    "invalid scheduler algorithm {other:?}: use \"binpack\" or \"spread\""
                )),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("node pool {:?}: {}", self.name, errors.join("; ")))
        }
    }
}

pub fn is_built_in_pool(name: &str) -> bool {
    name == NODE_POOL_ALL || name == NODE_POOL_DEFAULT
}

/// Nomad's `ValidateNodePoolName`: `^[a-zA-Z0-9-_]{1,128}$`.
pub fn validate_node_pool_name(name: &str) -> Result<(), String> {
    let ok = (1..=MAX_NODE_POOL_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid name {name:?}, must match regex ^[a-zA-Z0-9-_]{{1,128}}$"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_nomads_pattern() {
        for good in ["a", "prod-eu_1", &"x".repeat(128)] {
            assert_eq!(validate_node_pool_name(good), Ok(()), "{good}");
        }
        for bad in ["", "has space", "dot.ted", "ü", &"x".repeat(129)] {
            let e = validate_node_pool_name(bad).unwrap_err();
            assert!(e.contains("must match regex"), "{e}");
        }
    }

    #[test]
    fn validation_names_every_problem() {
        let pool = NodePool {
            name: "bad name".into(),
            description: "d".repeat(257),
            scheduler_configuration: Some(NodePoolSchedulerConfiguration {
                scheduler_algorithm: "random".into(),
                memory_oversubscription_enabled: None,
            }),
            ..Default::default()
        };
        let e = pool.validate().unwrap_err();
        assert!(e.contains("invalid name"), "{e}");
        assert!(e.contains("description longer than 256"), "{e}");
        assert!(e.contains("\"random\""), "{e}");
        assert!(NodePool::built_ins().iter().all(NodePool::is_built_in));
    }
}
