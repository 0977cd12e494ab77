//! Nomad's validation rules for a job, all applied in one pass so every problem is reported
//! together. Each error names the field (`group "web" → task "api" → resources.memory`), what
//! is wrong and what would be valid; when the job came from a file, the decoder's position
//! table places it at file:line:col.
//!
//! One module per level of the job — [`job`], [`group`], [`task`] — and one per block that
//! several levels share: [`network`], [`resources`], [`policies`] (restart, reschedule,
//! update, migrate), [`service`], [`placement`] (constraints, affinities, spreads). Each adds
//! its checks to [`Validator`]; a level calls the levels and blocks below it, never above.
//!
//! Also [`unsupported_warnings`] ([`unsupported`]): the fields noded keeps but its runtime
//! does not act on yet.

mod group;
mod job;
mod network;
mod placement;
mod policies;
mod resources;
mod service;
mod task;
mod unsupported;

use super::error::{
    lookup_pos, sort_errors, FieldPath, JobspecError, JobspecErrors, Positions, Warning,
};
use super::limits::Limits;
use model::Job;

pub use unsupported::unsupported_warnings;

/// Validates a job with noded's default limits. Pure; the server runs it on every register.
pub fn validate(job: &Job) -> Result<Vec<Warning>, JobspecErrors> {
    validate_with(job, &Limits::default())
}

/// Validates a job with the given limits (for `count`, list lengths).
pub fn validate_with(job: &Job, limits: &Limits) -> Result<Vec<Warning>, JobspecErrors> {
    validate_at(job, limits, &Positions::new())
}

pub(crate) fn validate_at(
    job: &Job,
    limits: &Limits,
    positions: &Positions,
) -> Result<Vec<Warning>, JobspecErrors> {
    let mut v = Validator {
        errors: Vec::new(),
        warnings: Vec::new(),
        positions,
        limits,
    };
    v.job(job);
    if v.errors.is_empty() {
        Ok(v.warnings)
    } else {
        sort_errors(&mut v.errors);
        Err(JobspecErrors(v.errors))
    }
}

/// One validation pass: the errors and warnings found so far, and where the job's fields
/// were written (to give each error its file:line:col).
struct Validator<'a> {
    errors: Vec<JobspecError>,
    warnings: Vec<Warning>,
    positions: &'a Positions,
    limits: &'a Limits,
}

/// Longest job id, group name or other identifier.
const MAX_ID_LEN: usize = 128;

impl Validator<'_> {
    fn err(&mut self, path: &FieldPath, msg: impl Into<String>) {
        let pos = lookup_pos(self.positions, path.api_key());
        self.errors
            .push(JobspecError::new(pos, path.to_string(), msg));
    }

    fn warn(&mut self, path: &FieldPath, msg: impl Into<String>) {
        let pos = lookup_pos(self.positions, path.api_key());
        self.warnings.push(Warning::new(pos, path.to_string(), msg));
    }

    /// Ids and names that end up in paths and URLs: no space, no NUL, bounded length.
    fn id_like(&mut self, path: &FieldPath, what: &str, id: &str) {
        if id.contains(' ') {
            self.err(
                path,
                format!("the {what} {id:?} contains a space; use letters, digits, '-', '_' or '.'"),
            );
        }
        if id.contains('\0') {
            self.err(path, format!("the {what} contains a null character"));
        }
        if id.chars().count() > MAX_ID_LEN {
            self.err(
                path,
                format!("the {what} is longer than {MAX_ID_LEN} characters"),
            );
        }
    }
}
