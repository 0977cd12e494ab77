//! The address a service is advertised at (Nomad's `serviceregistration.GetAddress`):
//! `address_mode` (`auto`, `host`, `alloc`, `alloc_ipv6`, `driver`) with `port` as a port
//! label of the group network or a number, from what the allocation holds on its node (its
//! ports, its group network) and what its client reported (its network status).
//!
//! Pure, so the services registration and its tests share one answer. Nomad keeps the computed
//! addresses in its service registrations, not on the allocation; so does noded: nothing here
//! is stored.

use crate::alloc::{AllocNetworkStatus, Allocation};
use crate::job_parts::Service;
use crate::resources::{AllocatedPortMapping, NetworkResource};

/// `address_mode` values, as Nomad spells them.
pub const ADDRESS_MODE_AUTO: &str = "auto";
pub const ADDRESS_MODE_HOST: &str = "host";
pub const ADDRESS_MODE_DRIVER: &str = "driver";
pub const ADDRESS_MODE_ALLOC: &str = "alloc";
pub const ADDRESS_MODE_ALLOC_IPV6: &str = "alloc_ipv6";

/// Why a service has no address: the message says which setting and what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressError {
    pub message: String,
}

impl std::fmt::Display for AddressError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AddressError {}

fn fail<T>(message: impl Into<String>) -> Result<T, AddressError> {
    Err(AddressError {
        message: message.into(),
    })
}

/// What an address is computed from: the allocation's side of it.
#[derive(Debug, Clone, Copy)]
pub struct AddressInputs<'a> {
    /// The group network as placed (`AllocatedResources.Shared.Networks`).
    pub networks: &'a [NetworkResource],
    /// Every port with its host port (`AllocatedResources.Shared.Ports`).
    pub ports: &'a [AllocatedPortMapping],
    /// What the client reported of the allocation's own network.
    pub network_status: Option<&'a AllocNetworkStatus>,
}

impl<'a> AddressInputs<'a> {
    pub fn of(alloc: &'a Allocation) -> AddressInputs<'a> {
        AddressInputs {
            networks: &alloc.allocated_resources.shared.networks,
            ports: &alloc.allocated_resources.shared.ports,
            network_status: alloc.network_status.as_ref(),
        }
    }

    fn port(&self, label: &str) -> Option<&'a AllocatedPortMapping> {
        self.ports.iter().find(|p| p.label == label)
    }

    /// A port of the group network by label, for allocations placed before `Ports` existed.
    fn network_port(&self, label: &str) -> Option<(String, i64)> {
        self.networks.iter().find_map(|n| {
            n.reserved_ports
                .iter()
                .chain(&n.dynamic_ports)
                .find(|p| p.label == label)
                .map(|p| (n.ip.clone(), p.value))
        })
    }
}

/// Where `service` of `alloc` is reached: (address, port). An empty address means "the
/// agent's own" and port 0 "no port", as in Nomad (a service without `port`).
pub fn service_address(
    service: &Service,
    alloc: &Allocation,
) -> Result<(String, u16), AddressError> {
    get_address(
        &service.address,
        &service.address_mode,
        &service.port_label,
        &AddressInputs::of(alloc),
    )
}

/// Nomad's `GetAddress`: a custom `address`, the `address_mode` (empty reads as `auto`) and
/// `port_label` (a label of the group network, or a number).
pub fn get_address(
    address: &str,
    address_mode: &str,
    port_label: &str,
    inputs: &AddressInputs<'_>,
) -> Result<(String, u16), AddressError> {
    match address_mode {
        "" | ADDRESS_MODE_AUTO => {
            if address.is_empty() {
                // noded's drivers have no network of their own to advertise (Nomad's
                // `DriverNetwork.Advertise()` is false for exec and raw_exec): auto is host.
                return get_address("", ADDRESS_MODE_HOST, port_label, inputs);
            }
            if port_label.is_empty() {
                return Ok((address.to_string(), 0));
            }
            // A custom address with a port of the group network: its host port (routing
            // from the custom address to the node is the operator's).
            if let Some(mapping) = inputs.port(port_label) {
                return Ok((address.to_string(), port_number(mapping.value, port_label)?));
            }
            match port_label.parse::<i64>() {
                Ok(n) => Ok((address.to_string(), positive(n, port_label)?)),
                Err(_) => fail(format!(
                    "invalid port: {port_label:?}: not a valid port mapping or numeric port"
                )),
            }
        }
        ADDRESS_MODE_HOST => {
            no_custom_address(address, ADDRESS_MODE_HOST)?;
            if port_label.is_empty() {
                // One network: its address without a port; none or several: nothing, and the
                // registry advertises the agent's address (Nomad's pre-0.7.1 behaviour).
                return Ok(match inputs.networks {
                    [one] => (one.ip.clone(), 0),
                    _ => (String::new(), 0),
                });
            }
            if let Some(mapping) = inputs.port(port_label) {
                return Ok((
                    mapping.host_ip.clone(),
                    port_number(mapping.value, port_label)?,
                ));
            }
            if let Some((ip, value)) = inputs.network_port(port_label) {
                if value > 0 {
                    return Ok((ip, port_number(value, port_label)?));
                }
            }
            match port_label.parse::<i64>() {
                // A number: the agent's address with that port.
                Ok(n) => Ok((String::new(), positive(n, port_label)?)),
                Err(_) => fail(format!("invalid port {port_label:?}: port label not found")),
            }
        }
        ADDRESS_MODE_DRIVER => {
            no_custom_address(address, ADDRESS_MODE_DRIVER)?;
            fail(
                "cannot use address_mode=\"driver\": no driver network exists (the exec and \
                 raw_exec drivers have none); use \"host\" or, with a bridge network, \"alloc\"",
            )
        }
        ADDRESS_MODE_ALLOC | ADDRESS_MODE_ALLOC_IPV6 => {
            no_custom_address(address, ADDRESS_MODE_ALLOC)?;
            let Some(status) = inputs.network_status else {
                return fail(
                    "cannot use address_mode=\"alloc\": no allocation network status reported \
                     (the group needs network { mode = \"bridge\" })",
                );
            };
            let ip = if address_mode == ADDRESS_MODE_ALLOC_IPV6 {
                status.address_ipv6.clone()
            } else {
                status.address.clone()
            };
            if port_label.is_empty() {
                return Ok((ip, 0));
            }
            if let Some(mapping) = inputs.port(port_label) {
                // The port inside the allocation: `to` when set, else the host port.
                let port = if mapping.to > 0 {
                    mapping.to
                } else {
                    mapping.value
                };
                return Ok((ip, port_number(port, port_label)?));
            }
            match port_label.parse::<i64>() {
                Ok(n) => Ok((ip, positive(n, port_label)?)),
                Err(_) => fail(format!(
                    "invalid port {port_label:?}: port label not found or is not numeric"
                )),
            }
        }
        other => fail(format!(
            "invalid address mode {other:?}: use auto, host, alloc, alloc_ipv6 or driver"
        )),
    }
}

fn no_custom_address(address: &str, mode: &str) -> Result<(), AddressError> {
    if address.is_empty() {
        Ok(())
    } else {
        fail(format!(
            "cannot use custom advertise address with {mode:?} address mode"
        ))
    }
}

fn positive(n: i64, label: &str) -> Result<u16, AddressError> {
    if n <= 0 {
        return fail(format!("invalid port: {label:?}: port must be >0"));
    }
    port_number(n, label)
}

fn port_number(n: i64, label: &str) -> Result<u16, AddressError> {
    u16::try_from(n).or_else(|_| fail(format!("invalid port: {label:?}: {n} is not a port")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Port;

    /// A bridge network with a mapped port (`to`), an unmapped one, and an old-style port
    /// known only from the network.
    fn fixtures() -> (Vec<NetworkResource>, Vec<AllocatedPortMapping>) {
        let networks = vec![NetworkResource {
            mode: "bridge".into(),
            ip: "10.0.0.5".into(),
            reserved_ports: vec![Port {
                label: "old".into(),
                value: 7000,
                ..Default::default()
            }],
            ..Default::default()
        }];
        let mapping = |label: &str, value, to| AllocatedPortMapping {
            label: label.into(),
            value,
            to,
            host_ip: "10.0.0.5".into(),
            ignore_collision: false,
        };
        let ports = vec![mapping("http", 23456, 8080), mapping("admin", 9000, 0)];
        (networks, ports)
    }

    #[test]
    fn every_mode_as_nomads_get_address() {
        let status = AllocNetworkStatus {
            interface_name: "eth0".into(),
            address: "172.26.64.3".into(),
            address_ipv6: "fd00::3".into(),
            dns: None,
        };
        let (networks, ports) = fixtures();
        let with = AddressInputs {
            networks: &networks,
            ports: &ports,
            network_status: Some(&status),
        };
        let without = AddressInputs {
            network_status: None,
            ..with
        };
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a str,
            bool,
            Result<(&'a str, u16), &'a str>,
        );
        let table: &[Case] = &[
            // auto = host for exec/raw_exec.
            ("", "auto", "http", true, Ok(("10.0.0.5", 23456))),
            ("", "", "admin", true, Ok(("10.0.0.5", 9000))),
            ("", "auto", "", true, Ok(("10.0.0.5", 0))),
            ("", "auto", "8500", true, Ok(("", 8500))),
            ("", "auto", "nope", true, Err("port label not found")),
            // A custom address keeps the host port of a label, or takes a number.
            (
                "example.com",
                "auto",
                "http",
                true,
                Ok(("example.com", 23456)),
            ),
            ("example.com", "auto", "443", true, Ok(("example.com", 443))),
            ("example.com", "auto", "", true, Ok(("example.com", 0))),
            (
                "example.com",
                "auto",
                "x",
                true,
                Err("not a valid port mapping"),
            ),
            (
                "example.com",
                "host",
                "http",
                true,
                Err("custom advertise address"),
            ),
            // host.
            ("", "host", "http", true, Ok(("10.0.0.5", 23456))),
            ("", "host", "old", true, Ok(("10.0.0.5", 7000))),
            ("", "host", "0", true, Err("port must be >0")),
            // alloc: the allocation's address and the port inside it.
            ("", "alloc", "http", true, Ok(("172.26.64.3", 8080))),
            ("", "alloc", "admin", true, Ok(("172.26.64.3", 9000))),
            ("", "alloc", "", true, Ok(("172.26.64.3", 0))),
            ("", "alloc", "5000", true, Ok(("172.26.64.3", 5000))),
            (
                "",
                "alloc",
                "nope",
                true,
                Err("not found or is not numeric"),
            ),
            ("", "alloc_ipv6", "http", true, Ok(("fd00::3", 8080))),
            (
                "",
                "alloc",
                "http",
                false,
                Err("no allocation network status"),
            ),
            ("", "driver", "http", true, Err("no driver network exists")),
            ("", "sideways", "http", true, Err("invalid address mode")),
        ];
        for (address, mode, port, has_status, want) in table {
            let inputs = if *has_status { &with } else { &without };
            let got = get_address(address, mode, port, inputs);
            match (want, &got) {
                (Ok((ip, p)), Ok((gip, gp))) => {
                    assert_eq!(
                        (ip, p),
                        (&gip.as_str(), gp),
                        "{address:?} {mode:?} {port:?}"
                    )
                }
                (Err(needle), Err(e)) => {
                    assert!(e.message.contains(needle), "{mode:?} {port:?}: {e}")
                }
                _ => panic!("{address:?} {mode:?} {port:?}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn host_mode_without_a_port_and_several_networks_gives_the_agents_address() {
        let inputs = AddressInputs {
            networks: &[],
            ports: &[],
            network_status: None,
        };
        assert_eq!(get_address("", "host", "", &inputs), Ok((String::new(), 0)));
    }

    #[test]
    fn a_service_of_an_allocation() {
        let alloc = Allocation {
            allocated_resources: crate::resources::AllocatedResources {
                shared: crate::resources::AllocatedSharedResources {
                    ports: vec![AllocatedPortMapping {
                        label: "http".into(),
                        value: 20001,
                        to: 80,
                        host_ip: "192.168.1.4".into(),
                        ignore_collision: false,
                    }],
                    ..Default::default()
                },
                ..Default::default()
            },
            network_status: Some(AllocNetworkStatus {
                address: "172.26.64.9".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut service = Service {
            port_label: "http".into(),
            address_mode: "alloc".into(),
            ..Default::default()
        };
        assert_eq!(
            service_address(&service, &alloc),
            Ok(("172.26.64.9".to_string(), 80))
        );
        service.address_mode = "host".into();
        assert_eq!(
            service_address(&service, &alloc),
            Ok(("192.168.1.4".to_string(), 20001))
        );
    }
}
