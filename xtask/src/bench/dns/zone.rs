//! The zone every server is measured on: one service with a few instances, and what a correct
//! answer to its A and SRV questions holds.
//!
//! noded serves it from its catalog (the bench reads the instances back from
//! `/v1/service/:name` once the job runs); unbound and dnsmasq are given the same names,
//! addresses and ports as static local data, so every server answers the same questions with
//! the same records.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::wire::{QType, Response};

/// One instance of the service: where it is advertised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instance {
    pub address: Ipv4Addr,
    pub port: u16,
}

/// A service `name` in `domain` (`web`, `noded` → `web.service.noded.`) and its instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub service: String,
    pub domain: String,
    pub instances: Vec<Instance>,
}

impl Zone {
    /// The name asked: `<service>.service.<domain>.`.
    pub fn fqdn(&self) -> String {
        format!("{}.service.{}.", self.service, self.domain)
    }

    /// The SRV target name the peers give instance `index`: `i<index>.<fqdn>`.
    pub fn target(&self, index: usize) -> String {
        format!("i{index}.{}", self.fqdn())
    }

    /// The distinct addresses (an A RRset holds each once, RFC 2181 §5).
    pub fn addresses(&self) -> BTreeSet<Ipv4Addr> {
        self.instances.iter().map(|i| i.address).collect()
    }

    /// Checks `response` answers `qtype` for this zone, completely and with nothing else: the
    /// A set is the instances' addresses; the SRV records are the instances' ports (one per
    /// instance); an SRV target the server also gives an address for (additional section)
    /// must name an instance's address and port. A fast wrong answer is a failure, so this
    /// runs on every answer.
    pub fn check(&self, qtype: QType, response: &Response) -> Result<(), String> {
        if response.rcode != 0 {
            return Err(format!("rcode {} (expected NOERROR)", response.rcode));
        }
        if response.truncated {
            return Err("truncated (TC) answer".into());
        }
        let fqdn = self.fqdn();
        match &response.question {
            Some((name, code)) if *name == fqdn && *code == qtype.code() => {}
            other => {
                return Err(format!(
                    "question echoed as {other:?}, asked {fqdn} {qtype:?}"
                ))
            }
        }
        match qtype {
            QType::A => {
                let got: BTreeSet<Ipv4Addr> = response.a.iter().map(|(_, a)| *a).collect();
                if response.a.iter().any(|(owner, _)| *owner != fqdn) {
                    return Err(format!("A records owned by another name: {:?}", response.a));
                }
                if got != self.addresses() {
                    return Err(format!("A answer {got:?}, expected {:?}", self.addresses()));
                }
            }
            QType::Srv => {
                let mut got: Vec<u16> = response.srv.iter().map(|s| s.port).collect();
                got.sort_unstable();
                let mut want: Vec<u16> = self.instances.iter().map(|i| i.port).collect();
                want.sort_unstable();
                if got != want {
                    return Err(format!("SRV ports {got:?}, expected {want:?}"));
                }
                let instances: BTreeSet<Instance> = self.instances.iter().copied().collect();
                for srv in &response.srv {
                    for (owner, address) in &response.additional_a {
                        if *owner == srv.target {
                            let instance = Instance {
                                address: *address,
                                port: srv.port,
                            };
                            if !instances.contains(&instance) {
                                return Err(format!(
                                    "SRV target {} resolves to {address}:{} which is no instance",
                                    srv.target, srv.port
                                ));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::Srv;
    use super::*;

    fn zone() -> Zone {
        Zone {
            service: "web".into(),
            domain: "noded".into(),
            instances: vec![
                Instance {
                    address: Ipv4Addr::new(10, 0, 0, 1),
                    port: 20001,
                },
                Instance {
                    address: Ipv4Addr::new(10, 0, 0, 2),
                    port: 20002,
                },
            ],
        }
    }

    fn response(qtype: QType) -> Response {
        Response {
            question: Some(("web.service.noded.".into(), qtype.code())),
            ..Response::default()
        }
    }

    #[test]
    fn complete_answers_pass_and_anything_missing_extra_or_wrong_fails() {
        let z = zone();
        let mut a = response(QType::A);
        a.a = vec![
            ("web.service.noded.".into(), Ipv4Addr::new(10, 0, 0, 2)),
            ("web.service.noded.".into(), Ipv4Addr::new(10, 0, 0, 1)),
        ];
        assert_eq!(z.check(QType::A, &a), Ok(()));
        let mut missing = a.clone();
        missing.a.pop();
        assert!(z.check(QType::A, &missing).is_err());
        let mut nx = a.clone();
        nx.rcode = 3;
        assert!(z.check(QType::A, &nx).is_err());
        assert!(z.check(QType::Srv, &a).is_err(), "question type is checked");

        let mut srv = response(QType::Srv);
        srv.srv = vec![
            Srv {
                port: 20002,
                target: "i1.web.service.noded.".into(),
            },
            Srv {
                port: 20001,
                target: "i0.web.service.noded.".into(),
            },
        ];
        srv.additional_a = vec![("i0.web.service.noded.".into(), Ipv4Addr::new(10, 0, 0, 1))];
        assert_eq!(z.check(QType::Srv, &srv), Ok(()));
        let mut crossed = srv.clone();
        crossed.additional_a = vec![("i0.web.service.noded.".into(), Ipv4Addr::new(10, 0, 0, 2))];
        assert!(z.check(QType::Srv, &crossed).is_err());
        let mut extra = srv.clone();
        extra.srv.push(Srv {
            port: 1,
            target: "x.".into(),
        });
        assert!(z.check(QType::Srv, &extra).is_err());
    }
}
