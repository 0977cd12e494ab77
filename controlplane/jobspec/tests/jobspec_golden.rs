//! Golden tests for error messages: each `tests/fixtures/jobspec/errors/NAME.{hcl,json}` is
//! parsed and validated, and the errors printed must equal `NAME.expected` byte for byte.
//! Run with `UPDATE_GOLDEN=1` to rewrite the expected files after a deliberate change, then
//! review the diff.
#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap fixtures
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // fixtures and the corpus are read from disk

use std::path::Path;

use jobspec::ParseOptions;

#[test]
fn error_messages_match_their_golden_files() {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/jobspec/errors"
    ));
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut inputs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("hcl" | "json")))
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 8,
        "golden inputs are missing from {}",
        dir.display()
    );
    let mut mismatches = Vec::new();
    for input in inputs {
        let name = input.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&input).unwrap();
        let opts = ParseOptions::for_file(name.clone());
        let result = if name.ends_with(".json") {
            jobspec::check_api_json(&text, &opts)
        } else {
            jobspec::check_hcl(&text, &opts)
        };
        let actual = match result {
            Ok(_) => panic!("{name} was accepted; golden inputs must be rejected"),
            Err(e) => format!("{e}\n"),
        };
        let expected_path = input.with_extension("expected");
        if update {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
            panic!(
                "{} is missing; run with UPDATE_GOLDEN=1",
                expected_path.display()
            )
        });
        if actual != expected {
            mismatches.push(format!(
                "{name}:\n--- expected\n{expected}--- actual\n{actual}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
