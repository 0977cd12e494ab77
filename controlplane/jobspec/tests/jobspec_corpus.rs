//! The Nomad jobspec corpus (`../shared/jobspecs`, beside the repository): every valid file
//! parses, survives the API JSON round trip unchanged, and every `[parse]`/`[validation]`
//! file in `invalid/` is rejected with a message naming the offending field.
//!
//! The corpus is not part of the repository. A clone without it (a user's machine) passes
//! these tests with a loud SKIPPED line; where `CI=true` its absence is a failure, so CI can
//! never pass by not looking.
#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap fixtures
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // fixtures and the corpus are read from disk

use std::io::Write;
use std::path::{Path, PathBuf};

use jobspec::ParseOptions;

/// The corpus directory, or `None` (after saying SKIPPED) when it is not beside the checkout.
fn corpus(test: &str) -> Option<PathBuf> {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/jobspecs"
    ))
    .to_path_buf();
    if dir.is_dir() {
        return Some(dir);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    assert!(
        !ci,
        "{test}: the jobspec corpus is required where CI=true, and {} does not exist",
        dir.display()
    );
    // Straight to the stderr handle: libtest captures `eprintln!` of passing tests, and a
    // skip must stay visible.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {test} needs the jobspec corpus at {} (beside the repository, in shared/jobspecs)",
        dir.display()
    );
    None
}

fn files(corpus: &Path, dir: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(corpus.join(dir))
        .unwrap_or_else(|e| panic!("cannot read the corpus at {}: {e}", corpus.display()))
        .map(|e| e.unwrap().path())
        .collect();
    out.sort();
    out
}

/// Variables the corpus files need and do not default (as `nomad job run -var` would give).
fn vars_for(name: &str) -> Vec<(String, String)> {
    let v = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    match name {
        "e2e-cni-config_format.nomad.hcl" => v(&[("format", "json")]),
        "e2e-jobsubmissions-xyz.hcl" => v(&[("X", "x"), ("Y", "2"), ("Z", "true")]),
        "e2e-e2eutil-restart-node.nomad" => v(&[("nodeID", "abc"), ("time", "0")]),
        "e2e-servicediscovery-checks_task_restart_main.nomad" => v(&[("filename", "x")]),
        "e2e-task_schedule-schedule.nomad.hcl" => {
            v(&[("start", "0 0 * * *"), ("end", "0 1 * * *")])
        }
        "e2e-docker-auth_basic.hcl" => v(&[
            ("registry_address", "localhost"),
            ("registry_username", "u"),
            ("registry_password", "p"),
        ]),
        "e2e-connect-demo.nomad" => v(&[("network_mode", "bridge")]),
        "e2e-secret-nomad_secret.hcl" => v(&[("secret_path", "secret/data/x")]),
        _ => Vec::new(),
    }
}

/// Files that cannot parse here, with the reason.
const EXPECTED_TO_FAIL: &[(&str, &str)] = &[(
    "demo-csi-kadalu-csi-controller.nomad",
    "reads ~/.ssh/id_rsa through file(pathexpand(…)): needs filesystem functions and a key file",
)];

fn parse(path: &Path) -> Result<jobspec::ParsedJob, jobspec::JobspecErrors> {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let opts = ParseOptions {
        filename: name.clone(),
        vars: vars_for(&name),
        ..Default::default()
    };
    let text = std::fs::read_to_string(path).unwrap();
    if name.ends_with(".json") {
        jobspec::parse_api_json(&text, &opts)
    } else {
        jobspec::parse_hcl(&text, &opts)
    }
}

#[test]
fn every_valid_corpus_file_parses() {
    let Some(corpus) = corpus("every_valid_corpus_file_parses") else {
        return;
    };
    let mut failures = Vec::new();
    let mut parsed = 0;
    for path in files(&corpus, "valid") {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let expected_fail = EXPECTED_TO_FAIL.iter().any(|(n, _)| *n == name);
        match (parse(&path), expected_fail) {
            (Ok(_), false) => parsed += 1,
            (Err(e), true) => eprintln!("expected failure {name}: {e}"),
            (Ok(_), true) => {
                failures.push(format!("{name}: listed as expected to fail, but parsed"))
            }
            (Err(e), false) => failures.push(format!("{name}:\n{e}")),
        }
    }
    eprintln!(
        "corpus: {parsed} valid files parsed, {} listed exceptions",
        EXPECTED_TO_FAIL.len()
    );
    assert!(
        failures.is_empty(),
        "{} files failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_parsed_corpus_job_survives_the_api_json_round_trip() {
    let Some(corpus) = corpus("every_parsed_corpus_job_survives_the_api_json_round_trip") else {
        return;
    };
    let mut checked = 0;
    for path in files(&corpus, "valid") {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Ok(parsed) = parse(&path) else { continue };
        let json = jobspec::to_api_json(&parsed.job).to_string();
        let again = jobspec::parse_api_json(&json, &ParseOptions::for_file("inspect.json"))
            .unwrap_or_else(|e| {
                panic!("{name}: the API JSON of the parsed job does not parse again:\n{e}\n{json}")
            });
        assert_eq!(
            again.job, parsed.job,
            "{name}: the job changed through the API JSON round trip"
        );
        checked += 1;
    }
    eprintln!("round trip: {checked} jobs identical after HCL → API JSON → job");
    assert!(checked >= 75, "only {checked} jobs were checked");
}

/// Every `[parse]` and `[validation]` file of invalid/ (and the two `[HCL1-only]` port files,
/// where noded is as strict as HCL1 was), with words the error must contain.
const INVALID: &[(&str, &[&str])] = &[
    (
        "jobspec-fixtures-bad-artifact.hcl",
        &["artifact", "\"bad\""],
    ),
    (
        "jobspec-fixtures-basic_wrong_key.hcl",
        &["\"nterval\"", "did you mean \"interval\""],
    ),
    ("jobspec-fixtures-multi-network.hcl", &["reserved_ports"]),
    (
        "jobspec-fixtures-multi-resource.hcl",
        &["ephemeral_disk", "only one"],
    ),
    ("jobspec-fixtures-multi-vault.hcl", &["vault", "only one"]),
    (
        "jobspec-fixtures-service-check-bad-header.hcl",
        &["header.Authorization", "list of strings"],
    ),
    (
        "jobspec-fixtures-tg-scaling-policy-missing-max.hcl",
        &["scaling.max", "needs max"],
    ),
    (
        "jobspec-fixtures-tg-scaling-policy-invalid-type.hcl",
        &["scaling.type", "horizontal"],
    ),
    (
        "jobspec-fixtures-tg-scaling-policy-with-label.hcl",
        &["scaling", "no-label-allowed"],
    ),
    (
        "jobspec-fixtures-tg-scaling-policy-multi-policy.hcl",
        &["policy", "only one"],
    ),
    (
        "jobspec-fixtures-task-scaling-policy-missing-name.hcl",
        &["scaling", "needs a label"],
    ),
    (
        "jobspec-fixtures-task-scaling-policy-multi-name.hcl",
        &["scaling", "one label"],
    ),
    (
        "jobspec-fixtures-task-scaling-policy-multi-cpu.hcl",
        &["scaling \"cpu\"", "only one"],
    ),
    (
        "jobspec-fixtures-task-scaling-policy-invalid-type.hcl",
        &["vertical_cpu", "vertical_mem"],
    ),
    (
        "jobspec-fixtures-task-scaling-policy-invalid-resource.hcl",
        &["\"wrong\"", "\"cpu\" or \"mem\""],
    ),
    (
        "command-example-short-bad.json",
        &["id", "\"bad example\"", "space"],
    ),
    ("jobspec-fixtures-bad-ports.hcl", &["port", "label"]),
    (
        "jobspec-fixtures-overlapping-ports.hcl",
        &["port label", "collides"],
    ),
];

#[test]
fn every_invalid_corpus_file_is_rejected_naming_the_field() {
    let Some(corpus) = corpus("every_invalid_corpus_file_is_rejected_naming_the_field") else {
        return;
    };
    let mut rejected = 0;
    for path in files(&corpus, "invalid") {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Some((_, words)) = INVALID.iter().find(|(n, _)| *n == name) else {
            // [HCL1-only] files HCL2 accepts (service-check-bad-header-2: 840 converts to "840").
            eprintln!("not asserted: {name}");
            continue;
        };
        let opts = ParseOptions::for_file(name.clone());
        let text = std::fs::read_to_string(&path).unwrap();
        let result = if name.ends_with(".json") {
            jobspec::check_api_json(&text, &opts)
        } else {
            jobspec::check_hcl(&text, &opts)
        };
        let err = match result {
            Ok(_) => panic!("{name} was accepted; it must be rejected"),
            Err(e) => e.to_string(),
        };
        for w in *words {
            assert!(
                err.contains(w),
                "{name}: the error does not mention {w:?}:\n{err}"
            );
        }
        if !name.ends_with(".json") {
            assert!(
                err.starts_with(&format!("{name}:")),
                "{name}: the error has no file:line:col:\n{err}"
            );
        }
        rejected += 1;
    }
    eprintln!("invalid corpus: {rejected} files rejected with the field named");
    assert_eq!(rejected, INVALID.len());
}

/// Parser fixtures that parse but are not complete jobs, so Nomad's validation rejects them
/// too: the reason for each.
const NOT_RUNNABLE: &[(&str, &str)] = &[
    ("jobspec-fixtures-basic.hcl", "kitchen-sink parser fixture: change_mode \"foo\", access_mode \"single-mode-writer\", logs larger than the disk"),
    ("jobspec-fixtures-default-job.hcl", "no groups"),
    ("jobspec-fixtures-distinctHosts-constraint.hcl", "no groups"),
    ("jobspec-fixtures-multiregion.hcl", "no groups"),
    ("jobspec-fixtures-parameterized_job.hcl", "parameterized service job"),
    ("jobspec-fixtures-parse-ports.hcl", "group without tasks"),
    ("jobspec-fixtures-periodic-crons.hcl", "no groups, 4-field crons"),
    ("jobspec-fixtures-service-check-driver-address.hcl", "no driver, checks without interval"),
    ("jobspec-fixtures-service-check-restart.hcl", "no driver, checks without interval"),
    ("jobspec-fixtures-specify-job.hcl", "no groups"),
    ("jobspec-fixtures-tg-scaling-policy.hcl", "group without tasks"),
    ("jobspec-fixtures-vault_inheritance.hcl", "tasks without a driver"),
    ("jobspec-fixtures-version-constraint.hcl", "no groups"),
    ("jobspec2-fixtures-config-compatibility.hcl", "task without a driver"),
    ("jobspec2-fixtures-restart-render-templates.hcl", "tasks without a driver"),
    ("jobspec2-fixtures-template-err-missing-key.hcl", "no driver, template without data"),
    ("jobspec2-fixtures-template-wait-config.hcl", "no driver, template without data"),
];

/// Nomad jobs noded refuses on purpose, with the words the error must hold: a port's `to`
/// in host mode, which Nomad accepts and ignores (its `job init` example has one), is refused
/// so that nobody believes a port is mapped when it is not (issue 17's bad input).
const REFUSED_BY_NODED: &[(&str, &str)] = &[
    (
        "command-asset-example.nomad.hcl",
        "to = 6379 only applies in bridge mode",
    ),
    (
        "command-example-short.json",
        "to = 6379 only applies in bridge mode",
    ),
    (
        "e2e-consul-on_update_check_restart.nomad",
        "to = 6379 only applies in bridge mode",
    ),
    (
        "jobspec2-fixtures-identity-compat.nomad.hcl",
        "to = 6379 only applies in bridge mode",
    ),
];

#[test]
fn every_complete_corpus_job_validates() {
    let Some(corpus) = corpus("every_complete_corpus_job_validates") else {
        return;
    };
    let mut valid = 0;
    let mut failures = Vec::new();
    for path in files(&corpus, "valid") {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Ok(parsed) = parse(&path) else { continue };
        let not_runnable = NOT_RUNNABLE.iter().any(|(n, _)| *n == name);
        if let Some((_, words)) = REFUSED_BY_NODED.iter().find(|(n, _)| *n == name) {
            match parsed.validated(&Default::default()) {
                Ok(_) => failures.push(format!("{name}: accepted; noded refuses it ({words})")),
                Err(e) if !e.to_string().contains(words) => {
                    failures.push(format!("{name}: refused, but not for {words:?}:\n{e}"))
                }
                Err(_) => {}
            }
            continue;
        }
        match (parsed.validated(&Default::default()), not_runnable) {
            (Ok(_), false) => valid += 1,
            (Err(_), true) => {}
            (Ok(_), true) => failures.push(format!("{name}: listed as not runnable but validates")),
            (Err(e), false) => failures.push(format!("{name}:\n{e}")),
        }
    }
    eprintln!(
        "validation: {valid} corpus jobs valid, {} parser fixtures rejected as incomplete",
        NOT_RUNNABLE.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn fmt_output_is_canonical_idempotent_and_means_the_same_job() {
    let Some(corpus) = corpus("fmt_output_is_canonical_idempotent_and_means_the_same_job") else {
        return;
    };
    let input = std::fs::read_to_string(corpus.join("valid/command-fmt-job.in.hcl")).unwrap();
    let expected = "# Copyright IBM Corp. 2015, 2026
# SPDX-License-Identifier: BUSL-1.1

job \"job1\" {
  type        = \"service\"
  datacenters = [\"dc1\"]
  group \"group1\" {
    count = 1
    task \"task1\" {
      driver = \"exec\"
      config {
        command = \"/bin/sleep\"
      }
      resources {
        cpu    = 1000
        memory = 512
      }
    }
  }
}
";
    assert_eq!(jobspec::format_hcl(&input).unwrap(), expected);
    let mut checked = 0;
    for path in files(&corpus, "valid") {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let once = jobspec::format_hcl(&text).unwrap_or_else(|e| panic!("{name}: fmt failed: {e}"));
        let twice = jobspec::format_hcl(&once).unwrap();
        assert_eq!(twice, once, "{name}: fmt is not idempotent");
        if let Ok(before) = parse(&path) {
            let opts = ParseOptions {
                filename: name.clone(),
                vars: vars_for(&name),
                ..Default::default()
            };
            let after = jobspec::parse_hcl(&once, &opts)
                .unwrap_or_else(|e| panic!("{name}: formatted text does not parse: {e}\n{once}"));
            assert_eq!(after.job, before.job, "{name}: formatting changed the job");
            checked += 1;
        }
    }
    eprintln!("fmt: {checked} corpus files formatted idempotently to the same job");
}
