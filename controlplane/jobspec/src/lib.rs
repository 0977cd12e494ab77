//! The jobspec: Nomad's HCL2 and JSON job language turned into a validated
//! [`model::Job`].
//!
//! Owns parsing (HCL2 with variables, locals, functions and `dynamic` blocks; Nomad's API
//! JSON), validation with Nomad's rules, the runtime interpolation resolver, `fmt`, and the
//! `job init` example. Pure: no I/O except [`parse_file`] and var files named in
//! [`ParseOptions`] (and `file()`-style functions, only when allowed), no clock (the time
//! `timestamp()` returns comes in [`ParseOptions::now_unix_nanos`]). Must not touch the
//! state store, the network or the HTTP layer: those call in here.
//!
//! Every entry point returns *all* errors found, each with its field path and, for text
//! input, its file:line:col.
//!
//! A crate of its own (re-exported as `controlplane::jobspec`) so that the compiler keeps it
//! away from the state, the network and the HTTP layer; its `clippy.toml` keeps disk,
//! environment, clock, network and process calls inside `disk.rs`.
#![forbid(unsafe_code)]

pub mod cron;
pub mod error;
pub mod format;
pub mod interpolate;
pub mod limits;
pub mod properties;

pub(crate) mod decode;
mod disk;
pub(crate) mod eval;
pub(crate) mod finish;
pub(crate) mod funcs;
pub(crate) mod hcl;
pub(crate) mod json;
pub(crate) mod schema;
pub(crate) mod source;
pub(crate) mod suggest;
pub(crate) mod types;
pub(crate) mod tz;
pub(crate) mod validate;
pub(crate) mod value;
pub(crate) mod variables;

use std::path::{Path, PathBuf};

pub use error::{JobspecError, JobspecErrors, SourcePos, Warning};
pub use format::format_hcl;
pub use interpolate::{interpolate, InterpolationContext, InterpolationError};
pub use limits::Limits;
pub use validate::{unsupported_warnings, validate, validate_with};

use model::Job;

/// How to parse a jobspec.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    /// The name errors use for the file (`hello.hcl`); its directory is the base for
    /// `file()` and friends when those are allowed.
    pub filename: String,
    /// `-var name=value`, in command-line order (later wins).
    pub vars: Vec<(String, String)>,
    /// `-var-file` paths, HCL or JSON, in command-line order (later wins).
    pub var_files: Vec<PathBuf>,
    /// Variable files given by content rather than path (name for errors, text), read after
    /// `var_files` with the same precedence: how `POST /v1/jobs/parse` passes `Variables`
    /// without the server reading its own disk.
    pub var_file_texts: Vec<(String, String)>,
    /// The caller's environment (or the part of it it wants to pass): entries named
    /// `NOMAD_VAR_<name>` set variable `<name>`; others are ignored.
    pub env_vars: Vec<(String, String)>,
    /// Allow functions that read the filesystem (`file`, `fileexists`, `templatefile`, …).
    /// Off by default: a server must never read its own disk on behalf of a request.
    pub allow_fs_functions: bool,
    pub limits: Limits,
    /// The instant `timestamp()` returns, in Unix nanoseconds. [`Default`] (and so
    /// [`ParseOptions::for_file`]) takes it from the clock when the options are made, at the
    /// caller's edge; parsing itself reads no clock, so the same options always give the
    /// same job. Set it to make a parse reproducible.
    pub now_unix_nanos: i64,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            filename: String::new(),
            vars: Vec::new(),
            var_files: Vec::new(),
            var_file_texts: Vec::new(),
            env_vars: Vec::new(),
            allow_fs_functions: false,
            limits: Limits::default(),
            now_unix_nanos: disk::now_unix_nanos(),
        }
    }
}

impl ParseOptions {
    /// Options for a file name, everything else default.
    pub fn for_file(filename: impl Into<String>) -> Self {
        ParseOptions {
            filename: filename.into(),
            ..Default::default()
        }
    }

    pub(crate) fn base_dir(&self) -> PathBuf {
        Path::new(&self.filename)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// `NOMAD_VAR_` entries of `env_vars`, prefix removed.
    pub(crate) fn nomad_var_env(&self) -> Vec<(String, String)> {
        self.env_vars
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("NOMAD_VAR_")
                    .map(|n| (n.to_string(), v.clone()))
            })
            .collect()
    }
}

/// A parsed job: canonical (Nomad's defaults applied), plus what the reader should know.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedJob {
    pub job: Job,
    pub warnings: Vec<Warning>,
    /// Where each field was written, to place validation errors; empty for jobs built in code.
    pub(crate) positions: error::Positions,
}

impl ParsedJob {
    /// Validates the job with Nomad's rules, errors pointing into the source. On success,
    /// returns this job with validation warnings and the unsupported-field warnings added.
    pub fn validated(mut self, limits: &Limits) -> Result<ParsedJob, JobspecErrors> {
        let warnings = validate::validate_at(&self.job, limits, &self.positions)?;
        self.warnings.extend(warnings);
        self.warnings.extend(unsupported_warnings(&self.job));
        Ok(self)
    }
}

/// Parses an HCL2 jobspec. Does not validate: see [`validate`] or [`check_hcl`].
pub fn parse_hcl(src: &str, opts: &ParseOptions) -> Result<ParsedJob, JobspecErrors> {
    let (raw, positions, warnings) = hcl::parse(src, opts)?;
    let job = finish::to_job(raw, &positions, &opts.limits)?;
    Ok(ParsedJob {
        job,
        warnings,
        positions,
    })
}

/// Parses Nomad's API JSON form: `{"Job": {…}}`, or the job object alone.
pub fn parse_api_json(src: &str, opts: &ParseOptions) -> Result<ParsedJob, JobspecErrors> {
    parse_json_in(src, opts, json::Envelope::File)
}

fn parse_json_in(
    src: &str,
    opts: &ParseOptions,
    envelope: json::Envelope,
) -> Result<ParsedJob, JobspecErrors> {
    let name = if opts.filename.is_empty() {
        "<json>"
    } else {
        opts.filename.as_str()
    };
    let source = source::Source::new(name, src);
    let (raw, positions, warnings) = json::decode(&source, &opts.limits, envelope)?;
    let job = finish::to_job(raw, &positions, &opts.limits)?;
    Ok(ParsedJob {
        job,
        warnings,
        positions,
    })
}

/// Parses and validates an HCL2 jobspec: what `job validate` and `job run` need, in one call.
pub fn check_hcl(src: &str, opts: &ParseOptions) -> Result<ParsedJob, JobspecErrors> {
    parse_hcl(src, opts)?.validated(&opts.limits)
}

/// Parses and validates an API JSON job: what `POST /v1/validate/job` needs, in one call.
pub fn check_api_json(src: &str, opts: &ParseOptions) -> Result<ParsedJob, JobspecErrors> {
    parse_api_json(src, opts)?.validated(&opts.limits)
}

/// Parses and validates the job of an API request body (`{"Job": {…}, "EnforceIndex": …}`):
/// the request's own keys are left to the caller, and every position points into the body
/// as the client sent it.
pub fn check_api_request(src: &str, opts: &ParseOptions) -> Result<ParsedJob, JobspecErrors> {
    parse_json_in(src, opts, json::Envelope::Request)?.validated(&opts.limits)
}

/// Reads and parses a jobspec file: JSON when the file starts with `{`, HCL otherwise.
/// The size is checked before reading, so a huge file is refused without loading it.
/// `opts.filename` defaults to the path.
pub fn parse_file(path: &Path, opts: &ParseOptions) -> Result<ParsedJob, JobspecErrors> {
    let text = disk::read_text_bounded(path, opts.limits.max_bytes)
        .map_err(|m| JobspecErrors::one("", m))?;
    let mut opts = opts.clone();
    if opts.filename.is_empty() {
        opts.filename = path.display().to_string();
    }
    if text.trim_start().starts_with('{') {
        parse_api_json(&text, &opts)
    } else {
        parse_hcl(&text, &opts)
    }
}

/// Reads a jobspec from a stream (stdin for `job run -`, a request body), refusing it as soon
/// as it passes `limits.max_bytes` instead of buffering all of it.
pub fn read_limited(reader: impl std::io::Read, limits: &Limits) -> Result<String, JobspecErrors> {
    use std::io::Read;
    let mut text = String::new();
    reader
        .take(limits.max_bytes as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| {
            JobspecErrors::one(
                "",
                format!("cannot read the jobspec: {e} (is it UTF-8 text?)"),
            )
        })?;
    if text.len() > limits.max_bytes {
        return Err(JobspecErrors::one(
            "",
            format!(
                "the jobspec is more than the limit of {} bytes",
                limits.max_bytes
            ),
        ));
    }
    Ok(text)
}

/// The job in Nomad's API JSON form, `{"Job": {…}}`, as `job inspect -json` prints it;
/// [`parse_api_json`] reads it back to the same job.
pub fn to_api_json(job: &Job) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert(
        "Job".into(),
        serde_json::to_value(job).unwrap_or(serde_json::Value::Null),
    );
    serde_json::Value::Object(m)
}

/// A commented example job for `job init`: an exec service that noded runs as written.
pub fn example_job() -> &'static str {
    include_str!("example.nomad.hcl")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_cut_off_at_the_size_limit() {
        let limits = Limits {
            max_bytes: 8,
            ..Default::default()
        };
        assert_eq!(read_limited(&b"job {}"[..], &limits).unwrap(), "job {}");
        let endless = std::io::repeat(b'x');
        let e = read_limited(endless, &limits).unwrap_err().to_string();
        assert!(e.contains("more than the limit of 8 bytes"), "{e}");
    }

    #[test]
    fn the_example_job_parses_validates_and_warns_about_nothing() {
        let parsed =
            check_hcl(example_job(), &ParseOptions::for_file("example.nomad.hcl")).unwrap();
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        assert_eq!(
            parsed.job.task_groups[0].tasks[0].env["GREETING"],
            "hello from noded"
        );
        assert_eq!(
            format_hcl(example_job()).unwrap(),
            example_job(),
            "the example must be formatted"
        );
    }
}
