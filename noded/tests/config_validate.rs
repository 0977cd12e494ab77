//! `noded config validate`, run as a user runs it: exit status and what it prints.

// Test helpers fail the test loudly; that is their job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn validate(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_noded"))
        .args(["config", "validate"])
        .args(args)
        .output()
        .expect("run noded")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A server config directory that is valid, its certificates beside it.
fn valid_dir(root: &Path) -> std::path::PathBuf {
    for f in ["ca.pem", "cert.pem", "key.pem"] {
        std::fs::write(root.join(f), "pem").unwrap();
    }
    let dir = root.join("noded.d");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("10-base.hcl"),
        "data_dir  = \"/var/lib/noded\"\nbind_addr = \"192.0.2.10\"\nserver {\n  enabled          = true\n  bootstrap_expect = 3\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("20-tls.json"),
        format!(
            "{{\"tls\": {{\"rpc\": true, \"ca_file\": {:?}, \"cert_file\": {:?}, \"key_file\": {:?}}}}}",
            root.join("ca.pem"),
            root.join("cert.pem"),
            root.join("key.pem")
        ),
    )
    .unwrap();
    dir
}

#[test]
fn a_valid_directory_exits_0_and_says_so() {
    let root = tempfile::tempdir().unwrap();
    let dir = valid_dir(root.path());
    let out = validate(&[&dir]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Configuration is valid!\n");
}

#[test]
fn an_even_bootstrap_expect_is_valid_with_a_warning() {
    let root = tempfile::tempdir().unwrap();
    let dir = valid_dir(root.path());
    let over = root.path().join("four.hcl");
    std::fs::write(&over, "\nserver {\n  bootstrap_expect = 4\n}\n").unwrap();
    let out = validate(&[&dir, &over]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:3: server.bootstrap_expect = 4",
            over.display()
        )),
        "{stderr}"
    );
}

#[test]
fn every_problem_is_printed_with_file_and_line_and_exit_1() {
    let root = tempfile::tempdir().unwrap();
    let dir = valid_dir(root.path());
    let bad = root.path().join("bad.hcl");
    std::fs::write(
        &bad,
        "server {\n  raft_multiplier = 11\n}\nautopilot {\n  last_contact_threshold = \"soon\"\n}\n",
    )
    .unwrap();
    let out = validate(&[&dir, &bad]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    let stderr = text(&out.stderr);
    let shown = bad.display();
    for want in [
        format!("{shown}:2: server.raft_multiplier = 11: must be between 1 and 10"),
        format!("{shown}:5: autopilot.last_contact_threshold = \"soon\""),
        "Configuration is invalid".to_string(),
    ] {
        assert!(stderr.contains(&want), "{want:?} in {stderr}");
    }
    // An unknown key is a parse error: its line, and nothing is built.
    std::fs::write(&bad, "data_dir = \"/d\"\n\nsevrer {}\n").unwrap();
    let out = validate(&[&bad]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{shown}:3: sevrer: unknown field")),
        "{stderr}"
    );
}

#[test]
fn a_server_without_certificates_is_told_the_commands() {
    let root = tempfile::tempdir().unwrap();
    let f = root.path().join("agent.hcl");
    std::fs::write(
        &f,
        "region = \"west\"\ndata_dir = \"/d\"\nbind_addr = \"192.0.2.1\"\nserver {\n  enabled = true\n  bootstrap_expect = 1\n}\n",
    )
    .unwrap();
    let out = validate(&[&f]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("noded tls ca create")
            && stderr.contains("noded tls cert create -server -region west"),
        "{stderr}"
    );
}
