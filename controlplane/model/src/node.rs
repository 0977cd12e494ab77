//! Nodes: the machines clients run on, as they fingerprint and register themselves.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::resources::ComparableResources;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    #[default]
    Initializing,
    Ready,
    Down,
    Disconnected,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Initializing => "initializing",
            NodeStatus::Ready => "ready",
            NodeStatus::Down => "down",
            NodeStatus::Disconnected => "disconnected",
        }
    }
}

/// Whether the scheduler may place new work on a node.
pub mod eligibility {
    pub const ELIGIBLE: &str = "eligible";
    pub const INELIGIBLE: &str = "ineligible";
}

/// What a node reports of one task driver.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DriverInfo {
    pub attributes: BTreeMap<String, String>,
    pub detected: bool,
    pub healthy: bool,
    pub health_description: String,
    /// RFC 3339.
    pub update_time: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeCpuResources {
    /// Total MHz: cores × MHz per core.
    pub cpu_shares: i64,
    pub total_cpu_cores: u32,
    pub reservable_cpu_cores: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeMemoryResources {
    #[serde(rename = "MemoryMB")]
    pub memory_mb: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeDiskResources {
    #[serde(rename = "DiskMB")]
    pub disk_mb: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeResources {
    pub cpu: NodeCpuResources,
    pub memory: NodeMemoryResources,
    pub disk: NodeDiskResources,
}

impl NodeResources {
    pub fn comparable(&self) -> ComparableResources {
        ComparableResources {
            cpu_mhz: self.cpu.cpu_shares,
            memory_mb: self.memory.memory_mb,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub datacenter: String,
    pub node_pool: String,
    pub node_class: String,
    #[serde(rename = "HTTPAddr")]
    pub http_addr: String,
    pub attributes: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
    pub node_resources: NodeResources,
    pub reserved_resources: NodeResources,
    pub drivers: BTreeMap<String, DriverInfo>,
    pub status: NodeStatus,
    pub status_description: String,
    /// Unix seconds.
    pub status_updated_at: i64,
    pub scheduling_eligibility: String,
    pub drain: bool,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Node {
    /// Whether this node has `driver` detected and healthy.
    pub fn has_driver(&self, driver: &str) -> bool {
        self.drivers
            .get(driver)
            .is_some_and(|d| d.detected && d.healthy)
    }

    /// What placement may use: total minus reserved.
    pub fn allocatable(&self) -> ComparableResources {
        let total = self.node_resources.comparable();
        let reserved = self.reserved_resources.comparable();
        ComparableResources {
            cpu_mhz: total.cpu_mhz - reserved.cpu_mhz,
            memory_mb: total.memory_mb - reserved.memory_mb,
        }
    }

    pub fn is_schedulable(&self) -> bool {
        self.status == NodeStatus::Ready
            && !self.drain
            && self.scheduling_eligibility != eligibility::INELIGIBLE
    }

    pub fn stub(&self) -> NodeListStub {
        NodeListStub {
            address: self
                .attributes
                .get("unique.network.ip-address")
                .cloned()
                .unwrap_or_default(),
            id: self.id.clone(),
            datacenter: self.datacenter.clone(),
            name: self.name.clone(),
            node_class: self.node_class.clone(),
            node_pool: self.node_pool.clone(),
            version: self
                .attributes
                .get("nomad.version")
                .cloned()
                .unwrap_or_default(),
            drain: self.drain,
            scheduling_eligibility: self.scheduling_eligibility.clone(),
            status: self.status,
            status_description: self.status_description.clone(),
            drivers: self.drivers.clone(),
            create_index: self.create_index,
            modify_index: self.modify_index,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeListStub {
    pub address: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub datacenter: String,
    pub name: String,
    pub node_class: String,
    pub node_pool: String,
    pub version: String,
    pub drain: bool,
    pub scheduling_eligibility: String,
    pub status: NodeStatus,
    pub status_description: String,
    pub drivers: BTreeMap<String, DriverInfo>,
    pub create_index: u64,
    pub modify_index: u64,
}
