//! Network blocks (the group's, or one left in a task's resources): mode and ports, port
//! labels unique across the group, static ports not taken twice.

use std::collections::BTreeMap;

use model::NetworkResource;

use super::Validator;
use crate::error::FieldPath;

/// Highest port number.
const PORT_MAX: i64 = 65_535;

impl Validator<'_> {
    pub(super) fn network(
        &mut self,
        n: &NetworkResource,
        np: &FieldPath,
        labels: &mut BTreeMap<String, String>,
        group: bool,
    ) {
        let mode = n.mode.as_str();
        if !(mode.is_empty()
            || ["host", "bridge", "none"].contains(&mode)
            || mode.starts_with("cni/"))
        {
            self.err(
                &np.field("mode").key("Mode"),
                format!("network mode must be host, bridge, none or cni/<name> (got {mode:?})"),
            );
        }
        if !group {
            self.warn(
                np,
                "a network block inside resources is deprecated; move it to the group",
            );
        }
        let mut statics: BTreeMap<(i64, String), String> = BTreeMap::new();
        for ports in [&n.reserved_ports, &n.dynamic_ports] {
            for p in ports {
                let pp = np.labeled("port", &p.label).key("Port").key(&p.label);
                if p.label.is_empty() {
                    self.err(&pp, "a port needs a label: port \"http\" { … }");
                    continue;
                }
                if let Some(prev) = labels.insert(p.label.to_lowercase(), p.label.clone()) {
                    self.err(&pp, format!("port label {:?} collides with {prev:?} (labels are compared ignoring case); rename one", p.label));
                }
                if p.value < 0 || p.value > PORT_MAX {
                    self.err(
                        &pp.field("static").key("Value"),
                        format!("static port {} is out of range; use 1-{PORT_MAX}", p.value),
                    );
                }
                if p.to < -1 || p.to > PORT_MAX {
                    self.err(&pp.field("to").key("To"), format!("to = {} is out of range; use 0-{PORT_MAX}, or -1 for the same as the host port", p.to));
                }
                if p.value > 0 {
                    if let Some(prev) =
                        statics.insert((p.value, p.host_network.clone()), p.label.clone())
                    {
                        if !p.ignore_collision {
                            self.err(
                                &pp.field("static").key("Value"),
                                format!("static port {} is also used by port {prev:?}", p.value),
                            );
                        }
                    }
                }
            }
        }
        if n.mbits.is_some() {
            self.warn(
                &np.field("mbits").key("MBits"),
                "mbits is deprecated and ignored",
            );
        }
    }
}
