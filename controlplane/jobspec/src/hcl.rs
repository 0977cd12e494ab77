//! Parses an HCL2 jobspec file: the top level (`variable`, `variables`, `locals`, `job`),
//! variable values from outside, then the job block through the [`Decoder`].

use std::collections::BTreeMap;

use hcl_edit::structure::{Block, Body, Structure};
use hcl_edit::Span;
use serde_json::Value as Json;

use super::decode::Decoder;
use super::error::{Diagnostics, FieldPath, JobspecError, JobspecErrors, Warning};
use super::eval::{Env, Evaluator};
use super::funcs::FuncCtx;
use super::limits::{nesting_exceeds, Limits};
use super::source::Source;
use super::value::Value;
use super::variables::{self, Assigned};
use super::ParseOptions;

/// Checks size and nesting, then parses HCL text into a syntax tree.
pub(crate) fn parse_syntax(src: &Source<'_>, limits: &Limits) -> Result<Body, JobspecErrors> {
    if src.text.len() > limits.max_bytes {
        return Err(JobspecErrors(vec![JobspecError::new(
            None,
            "",
            format!(
                "{} is {} bytes, more than the limit of {} bytes",
                src.name,
                src.text.len(),
                limits.max_bytes
            ),
        )]));
    }
    if let Some(at) = nesting_exceeds(src.text, limits.max_depth) {
        return Err(JobspecErrors(vec![JobspecError::new(
            Some(src.pos(at)),
            "",
            format!("nesting is deeper than {} levels", limits.max_depth),
        )]));
    }
    hcl_edit::parser::parse_body(src.text).map_err(|e| {
        let pos = src.pos(e.location().offset());
        let line = e.line().trim();
        JobspecErrors(vec![JobspecError::new(
            Some(pos),
            "",
            format!(
                "syntax error: {} (in: {})",
                e.message().to_lowercase(),
                shorten(line)
            ),
        )])
    })
}

fn shorten(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    if cut.len() < s.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// Parses a jobspec into Nomad's API job object (not yet typed or canonicalized).
pub(crate) fn parse(
    text: &str,
    opts: &ParseOptions,
) -> Result<(Json, super::error::Positions, Vec<Warning>), JobspecErrors> {
    let name = if opts.filename.is_empty() {
        "<jobspec>"
    } else {
        opts.filename.as_str()
    };
    let src = Source::new(name, text);
    let body = parse_syntax(&src, &opts.limits)?;
    let fctx = FuncCtx {
        allow_fs: opts.allow_fs_functions,
        base_dir: opts.base_dir(),
        now_unix_nanos: opts.now_unix_nanos,
    };
    let mut ev = Evaluator::new(&src, fctx.clone());
    let mut diags = Diagnostics::default();

    let mut var_blocks: Vec<&Block> = Vec::new();
    let mut jobs: Vec<&Block> = Vec::new();
    for s in body.iter() {
        match s {
            Structure::Block(b) => match b.ident.as_str() {
                "variable" | "variables" => var_blocks.push(b),
                "locals" => {
                    for ls in b.body.iter() {
                        match ls {
                            Structure::Attribute(a) => {
                                if !ev.declare_local(a.key.as_str(), &a.value) {
                                    diags.error(
                                        src.span_pos(a.key.span()),
                                        &format!("local.{}", a.key.as_str()),
                                        format!("local {:?} is defined twice; keep one", a.key.as_str()),
                                    );
                                }
                            }
                            Structure::Block(inner) => diags.error(
                                src.span_pos(inner.ident.span()),
                                "locals",
                                "a locals block holds only name = value arguments",
                            ),
                        }
                    }
                }
                "job" => jobs.push(b),
                other => diags.error(
                    src.span_pos(b.ident.span()),
                    "",
                    format!("unknown top-level block {other:?}; a jobspec holds one job block and optional variable, variables and locals blocks"),
                ),
            },
            Structure::Attribute(a) => diags.error(
                src.span_pos(a.key.span()),
                "",
                format!("unexpected argument {:?} at the top level; put it inside the job block", a.key.as_str()),
            ),
        }
    }

    let declared = variables::declare(&var_blocks, &ev, &src, &mut diags);
    let assigned = collect_assignments(opts, &declared, &fctx, &mut diags);
    variables::resolve(&declared, &assigned, &mut ev, &src, &mut diags);
    if diags.has_errors() {
        return Err(diags.into_errors());
    }
    for (name, e) in ev.force_locals() {
        diags.error(src.span_pos(e.span), &format!("local.{name}"), e.message);
    }

    let mut positions = super::error::Positions::new();
    let job = match jobs.as_slice() {
        [] => {
            diags.error(
                None,
                "",
                format!("{name} has no job block; write job \"name\" {{ … }}"),
            );
            Json::Null
        }
        [job, rest @ ..] => {
            for extra in rest {
                let at = src.span_pos(job.ident.span()).map(|p| p.line).unwrap_or(0);
                diags.error(
                    src.span_pos(extra.ident.span()),
                    "",
                    format!("only one job block is allowed per file (the first is at line {at})"),
                );
            }
            let mut dec = Decoder::new(&ev, &opts.limits);
            let job = dec.decode_job(job);
            diags.errors.append(&mut dec.diags.errors);
            diags.warnings.append(&mut dec.diags.warnings);
            positions = std::mem::take(&mut dec.positions);
            job
        }
    };
    if diags.has_errors() {
        return Err(diags.into_errors());
    }
    Ok((job, positions, diags.warnings))
}

/// Gathers variable values from outside the file, later sources overriding earlier ones:
/// environment, then var files in order, then -var flags in order.
fn collect_assignments(
    opts: &ParseOptions,
    declared: &BTreeMap<String, variables::Declared<'_>>,
    fctx: &FuncCtx,
    diags: &mut Diagnostics,
) -> BTreeMap<String, Assigned> {
    let mut out = BTreeMap::new();
    for (name, text) in &opts.nomad_var_env() {
        let Some(d) = declared.get(name) else {
            continue;
        };
        let from = format!("NOMAD_VAR_{name}");
        match variables::value_from_text(text, d.ty.as_ref(), fctx) {
            Ok(value) => {
                out.insert(
                    name.clone(),
                    Assigned {
                        value,
                        from,
                        pos: None,
                    },
                );
            }
            Err(m) => diags.error(None, &from, m),
        }
    }
    let mut files: Vec<(String, String)> = Vec::new();
    for file in &opts.var_files {
        let shown = file.display().to_string();
        match super::disk::read_text_bounded(file, opts.limits.max_bytes) {
            Ok(t) => files.push((shown, t)),
            Err(m) => diags.error(None, &shown, m),
        }
    }
    for (shown, text) in &opts.var_file_texts {
        if text.len() > opts.limits.max_bytes {
            diags.error(
                None,
                shown,
                format!(
                    "{shown} is {} bytes, more than the limit of {} bytes",
                    text.len(),
                    opts.limits.max_bytes
                ),
            );
            continue;
        }
        files.push((shown.clone(), text.clone()));
    }
    for (shown, text) in files {
        for (name, value, pos) in parse_var_file(&shown, &text, fctx, &opts.limits, diags) {
            if !declared.contains_key(&name) {
                diags.error(
                    pos,
                    &name,
                    format!("{shown} sets {name:?}, which the jobspec does not declare; declare it with variable \"{name}\" {{}} or remove it"),
                );
                continue;
            }
            out.insert(
                name,
                Assigned {
                    value,
                    from: shown.clone(),
                    pos: None,
                },
            );
        }
    }
    for (name, text) in &opts.vars {
        let Some(d) = declared.get(name) else {
            diags.error(
                None,
                &format!("-var {name}"),
                format!("-var sets {name:?}, which the jobspec does not declare; declare it with variable \"{name}\" {{}}"),
            );
            continue;
        };
        match variables::value_from_text(text, d.ty.as_ref(), fctx) {
            Ok(value) => {
                out.insert(
                    name.clone(),
                    Assigned {
                        value,
                        from: format!("-var {name}"),
                        pos: None,
                    },
                );
            }
            Err(m) => diags.error(None, &format!("-var {name}"), m),
        }
    }
    out
}

/// A variable file: HCL `name = value` lines, or a JSON object when it starts with `{`.
fn parse_var_file(
    name: &str,
    text: &str,
    fctx: &FuncCtx,
    limits: &Limits,
    diags: &mut Diagnostics,
) -> Vec<(String, Value, Option<super::error::SourcePos>)> {
    let src = Source::new(name, text);
    if text.trim_start().starts_with('{') {
        return match serde_json::from_str::<serde_json::Map<String, Json>>(text) {
            Ok(m) => m
                .iter()
                .map(|(k, v)| (k.clone(), Value::from_json(v), None))
                .collect(),
            Err(e) => {
                diags.error(
                    Some(super::error::SourcePos {
                        file: name.to_string(),
                        line: e.line(),
                        col: e.column(),
                    }),
                    "",
                    format!("invalid JSON variable file: {e}"),
                );
                Vec::new()
            }
        };
    }
    let body = match parse_syntax(&src, limits) {
        Ok(b) => b,
        Err(errs) => {
            diags.errors.extend(errs.0);
            return Vec::new();
        }
    };
    let ev = Evaluator::new(&src, fctx.clone());
    let mut out = Vec::new();
    for s in body.iter() {
        match s {
            Structure::Attribute(a) => match ev.eval(&a.value, &Env::Empty) {
                Ok(v) => out.push((a.key.as_str().to_string(), v, src.span_pos(a.key.span()))),
                Err(e) => diags.error(
                    src.span_pos(e.span.or(a.value.span())),
                    &FieldPath::root().field(a.key.as_str()).to_string(),
                    e.message,
                ),
            },
            Structure::Block(b) => diags.error(
                src.span_pos(b.ident.span()),
                "",
                format!("a variable file assigns values (name = value); it cannot hold a {:?} block — declare variables in the jobspec", b.ident.as_str()),
            ),
        }
    }
    out
}
