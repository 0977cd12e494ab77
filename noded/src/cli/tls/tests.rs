//! The operator's two-minute TLS setup, end to end: CA, certificates, and two fabric
//! endpoints built from the files that talk to each other.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use federation::{
    Fabric, FabricConfig, Handler, Limits, PeerIdentity, RemoteError, Role, TlsMaterial,
};
use futures::future::BoxFuture;

use super::{CaCommand, CertCommand, TlsCommand};
use crate::cli::{normalize_args, Cli, Command};

fn parse(args: &[&str]) -> Result<TlsCommand, clap::Error> {
    let argv = normalize_args(args.iter().map(|s| s.to_string()).collect());
    match Cli::try_parse_from(argv)?.command {
        Command::Tls(t) => Ok(t),
        other => panic!("{other:?}"),
    }
}

fn run(dir: &std::path::Path, args: &[&str]) -> anyhow::Result<Vec<String>> {
    match parse(args)? {
        TlsCommand::Ca(CaCommand::Create(c)) => c.run_in(dir),
        TlsCommand::Cert(CertCommand::Create(c)) => c.run_in(dir),
    }
}

struct Whoami;

impl Handler for Whoami {
    fn handle(
        &self,
        peer: PeerIdentity,
        _: u16,
        _: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, RemoteError>> {
        Box::pin(async move { Ok(Bytes::from(peer.to_string())) })
    }
}

#[test]
fn ca_and_certificates_are_written_once_with_private_keys_private() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = run(d, &["noded", "tls", "ca", "create", "-days", "30"]).unwrap();
    assert_eq!(
        out,
        [
            "==> CA certificate saved to: noded-agent-ca.pem",
            "==> CA certificate key saved to: noded-agent-ca-key.pem"
        ]
    );
    let err = run(d, &["noded", "tls", "ca", "create"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("'noded-agent-ca.pem' already exists"), "{err}");

    let out = run(
        d,
        &[
            "noded",
            "tls",
            "cert",
            "create",
            "-server",
            "-region",
            "eu",
            "-additional-dnsname",
            "srv1.example.com",
            "-additional-ipaddress",
            "10.1.2.3",
        ],
    )
    .unwrap();
    assert!(out[0].starts_with("==> WARNING"), "{out:?}");
    assert_eq!(
        out[1],
        "==> Using CA file noded-agent-ca.pem and CA key noded-agent-ca-key.pem"
    );
    assert_eq!(
        out[2],
        "==> Server Certificate saved to eu-server-noded.pem"
    );
    assert_eq!(
        out[3],
        "==> Server Certificate key saved to eu-server-noded-key.pem"
    );
    let out = run(d, &["noded", "tls", "cert", "create", "-cli"]).unwrap();
    assert_eq!(
        out.last().unwrap(),
        "==> CLI Certificate key saved to global-cli-noded-key.pem"
    );

    for key in [
        "noded-agent-ca-key.pem",
        "eu-server-noded-key.pem",
        "global-cli-noded-key.pem",
    ] {
        let mode = std::fs::metadata(d.join(key)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    let material = TlsMaterial::load(
        d.join("noded-agent-ca.pem"),
        d.join("eu-server-noded.pem"),
        d.join("eu-server-noded-key.pem"),
    )
    .unwrap();
    assert_eq!(
        material.identity().unwrap(),
        PeerIdentity::new(Role::Server, "eu")
    );

    let err = run(d, &["noded", "tls", "cert", "create", "-cli"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'global-cli-noded.pem' already exists"),
        "{err}"
    );
}

#[test]
fn cert_create_wants_exactly_one_role_and_a_ca() {
    assert!(parse(&["noded", "tls", "cert", "create"]).is_err());
    assert!(parse(&["noded", "tls", "cert", "create", "-server", "-client"]).is_err());
    assert!(parse(&[
        "noded",
        "tls",
        "cert",
        "create",
        "-client",
        "-additional-ipaddress",
        "nope"
    ])
    .is_err());
    let dir = tempfile::tempdir().unwrap();
    let err = run(dir.path(), &["noded", "tls", "cert", "create", "-client"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("noded-agent-ca.pem") && err.contains("noded tls ca create"),
        "{err}"
    );
}

#[tokio::test]
async fn two_servers_from_the_written_files_talk() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(d, &["noded", "tls", "ca", "create"]).unwrap();
    run(d, &["noded", "tls", "cert", "create", "-server"]).unwrap();
    run(d, &["noded", "tls", "cert", "create", "-client"]).unwrap();
    let load = |role: &str| {
        TlsMaterial::load(
            d.join("noded-agent-ca.pem"),
            d.join(format!("global-{role}-noded.pem")),
            d.join(format!("global-{role}-noded-key.pem")),
        )
        .unwrap()
    };
    let config = |role: Role, tls: TlsMaterial| FabricConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        region: "global".into(),
        role,
        tls,
        limits: Limits::default(),
    };
    let server = Fabric::bind(config(Role::Server, load("server")), Some(Arc::new(Whoami)))
        .await
        .unwrap();
    let client = Fabric::bind(config(Role::Client, load("client")), None)
        .await
        .unwrap();
    let reply = client
        .call(
            server.local_addr(),
            1,
            Bytes::new(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(&reply[..], b"client.global.noded");
    client.close().await;
    server.close().await;
}
