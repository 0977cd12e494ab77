//! The properties every input must keep, checked by the fuzzer (`cargo xtask fuzz jobspec`)
//! on millions of generated and mutated inputs: no panic anywhere, and for anything that
//! parses, the API JSON round trip and `fmt` preserve the job exactly.

use super::{
    format_hcl, parse_api_json, parse_hcl, to_api_json, unsupported_warnings, validate,
    ParseOptions,
};

/// Runs every entry point on `input`. Errors are fine (bad input is expected); a violated
/// property is returned as `Err` with what went wrong. Panics propagate to the caller.
pub fn check_properties(input: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(input) else {
        return Ok(());
    };
    let opts = ParseOptions::for_file("fuzz.hcl");
    if let Ok(parsed) = parse_hcl(text, &opts) {
        let _ = validate(&parsed.job);
        let _ = unsupported_warnings(&parsed.job);
        let json = to_api_json(&parsed.job).to_string();
        match parse_api_json(&json, &opts) {
            Ok(again) if again.job == parsed.job => {}
            Ok(_) => return Err(format!("the API JSON round trip changed the job:\n{json}")),
            Err(e) => {
                return Err(format!(
                    "the API JSON of a parsed job does not parse:\n{e}\n{json}"
                ))
            }
        }
        if let Ok(formatted) = format_hcl(text) {
            match parse_hcl(&formatted, &opts) {
                Ok(f) if f.job == parsed.job => {}
                Ok(_) => return Err(format!("fmt changed the job:\n{formatted}")),
                Err(e) => return Err(format!("fmt output does not parse:\n{e}\n{formatted}")),
            }
            match format_hcl(&formatted) {
                Ok(twice) if twice == formatted => {}
                _ => return Err(format!("fmt is not idempotent:\n{formatted}")),
            }
        }
    } else {
        let _ = format_hcl(text);
    }
    if let Ok(parsed) = parse_api_json(text, &opts) {
        let _ = validate(&parsed.job);
        let json = to_api_json(&parsed.job).to_string();
        match parse_api_json(&json, &opts) {
            Ok(again) if again.job == parsed.job => {}
            _ => {
                return Err(format!(
                    "the API JSON round trip changed a JSON job:\n{json}"
                ))
            }
        }
    }
    Ok(())
}
