//! Input variables: `variable` and `variables` blocks, and their values from (lowest to highest
//! precedence, as Nomad documents) the declared default, `NOMAD_VAR_<name>` environment
//! variables, `-var-file` files in the order given, and `-var name=value` flags in the order
//! given. Each value is converted to the declared type and checked by the variable's
//! `validation` blocks; a variable left without any value is an error naming how to set it.

use std::collections::BTreeMap;
use std::ops::Range;

use hcl_edit::expr::Expression;
use hcl_edit::structure::{Block, Body, Structure};
use hcl_edit::Span;

use super::error::{Diagnostics, FieldPath, SourcePos};
use super::eval::{Env, Evaluator};
use super::funcs::FuncCtx;
use super::source::Source;
use super::types::{self, Type};
use super::value::Value;

/// One declared variable.
#[derive(Debug)]
pub(crate) struct Declared<'a> {
    pub name: String,
    pub ty: Option<Type>,
    pub default: Option<Value>,
    pub validations: Vec<(&'a Expression, &'a Expression, Option<Range<usize>>)>,
    pub span: Option<Range<usize>>,
    /// The declaration itself is wrong (already reported): do not report it again.
    pub broken: bool,
}

/// A value for a variable from outside the file.
#[derive(Debug, Clone)]
pub(crate) struct Assigned {
    pub value: Value,
    /// Where it came from, for messages: `-var`, `NOMAD_VAR_x`, `file.hcl:3:1`.
    pub from: String,
    pub pos: Option<SourcePos>,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Reads the `variable` and `variables` blocks of a file.
pub(crate) fn declare<'a>(
    blocks: &[&'a Block],
    ev: &Evaluator<'_>,
    src: &Source<'_>,
    diags: &mut Diagnostics,
) -> BTreeMap<String, Declared<'a>> {
    let mut out: BTreeMap<String, Declared<'a>> = BTreeMap::new();
    for b in blocks {
        match b.ident.as_str() {
            "variables" => {
                for s in b.body.iter() {
                    match s {
                        Structure::Attribute(a) => {
                            let name = a.key.as_str().to_string();
                            let path = FieldPath::root().field("variables").field(&name);
                            let default = match ev.eval(&a.value, &Env::Empty) {
                                Ok(v) => Some(v),
                                Err(e) => {
                                    diags.error(
                                        src.span_pos(e.span.or(a.value.span())),
                                        &path.to_string(),
                                        e.message,
                                    );
                                    None
                                }
                            };
                            insert(
                                &mut out,
                                Declared {
                                    name,
                                    ty: None,
                                    default,
                                    validations: Vec::new(),
                                    span: a.key.span(),
                                    broken: false,
                                },
                                src,
                                diags,
                            );
                        }
                        Structure::Block(inner) => diags.error(
                            src.span_pos(inner.ident.span()),
                            "variables",
                            "a variables block holds only name = value arguments",
                        ),
                    }
                }
            }
            _ => {
                let Some(name) = (match b.labels.as_slice() {
                    [l] => Some(l.as_str().to_string()),
                    _ => None,
                }) else {
                    diags.error(
                        src.span_pos(b.ident.span()),
                        "variable",
                        "a variable block takes one label, its name: variable \"image\" { … }",
                    );
                    continue;
                };
                let path = FieldPath::root().labeled("variable", &name);
                if !valid_name(&name) {
                    diags.error(src.span_pos(b.ident.span()), &path.to_string(), "a variable name must start with a letter or underscore and hold only letters, digits, underscores and dashes");
                    continue;
                }
                let mut d = Declared {
                    name: name.clone(),
                    ty: None,
                    default: None,
                    validations: Vec::new(),
                    span: b.ident.span(),
                    broken: false,
                };
                read_variable_body(&b.body, &mut d, &path, ev, src, diags);
                if let (Some(ty), Some(def)) = (d.ty.clone(), d.default.clone()) {
                    match types::convert(def, &ty) {
                        Ok(v) => d.default = Some(v),
                        Err(m) => {
                            d.broken = true;
                            diags.error(
                                src.span_pos(b.ident.span()),
                                &path.field("default").to_string(),
                                format!("the default does not match type {ty}: {m}"),
                            )
                        }
                    }
                }
                insert(&mut out, d, src, diags);
            }
        }
    }
    out
}

fn insert<'a>(
    out: &mut BTreeMap<String, Declared<'a>>,
    d: Declared<'a>,
    src: &Source<'_>,
    diags: &mut Diagnostics,
) {
    if let Some(prev) = out.get(&d.name) {
        let at = src
            .span_pos(prev.span.clone())
            .map(|p| format!(" (first declared at line {})", p.line))
            .unwrap_or_default();
        diags.error(
            src.span_pos(d.span.clone()),
            &format!("variable {:?}", d.name),
            format!("variable {:?} is declared twice{at}", d.name),
        );
        return;
    }
    out.insert(d.name.clone(), d);
}

fn read_variable_body<'a>(
    body: &'a Body,
    d: &mut Declared<'a>,
    path: &FieldPath,
    ev: &Evaluator<'_>,
    src: &Source<'_>,
    diags: &mut Diagnostics,
) {
    for s in body.iter() {
        match s {
            Structure::Attribute(a) => match a.key.as_str() {
                "type" => match types::parse_type(&a.value) {
                    Ok(t) => d.ty = Some(t),
                    Err(m) => diags.error(src.span_pos(a.value.span()), &path.field("type").to_string(), m),
                },
                "default" => match ev.eval(&a.value, &Env::Empty) {
                    Ok(v) => d.default = Some(v),
                    Err(e) => diags.error(src.span_pos(e.span.or(a.value.span())), &path.field("default").to_string(), e.message),
                },
                "description" | "sensitive" | "nullable" => {}
                other => diags.error(
                    src.span_pos(a.key.span()),
                    &path.to_string(),
                    format!("unknown argument {other:?} in a variable block; use type, default, description or a validation block"),
                ),
            },
            Structure::Block(b) if b.ident.as_str() == "validation" => {
                let mut cond = None;
                let mut msg = None;
                for vs in b.body.iter() {
                    match vs {
                        Structure::Attribute(a) if a.key.as_str() == "condition" => cond = Some(&a.value),
                        Structure::Attribute(a) if a.key.as_str() == "error_message" => msg = Some(&a.value),
                        other => diags.error(
                            src.span_pos(other.span()),
                            &path.field("validation").to_string(),
                            "a validation block holds condition and error_message",
                        ),
                    }
                }
                match (cond, msg) {
                    (Some(c), Some(m)) => d.validations.push((c, m, b.ident.span())),
                    _ => diags.error(
                        src.span_pos(b.ident.span()),
                        &path.field("validation").to_string(),
                        "a validation block needs both condition and error_message",
                    ),
                }
            }
            Structure::Block(b) => diags.error(
                src.span_pos(b.ident.span()),
                &path.to_string(),
                format!("unexpected block {:?} in a variable block; only validation blocks are allowed", b.ident.as_str()),
            ),
        }
    }
}

/// Turns text from `-var` or the environment into a value for a variable of this type.
pub(crate) fn value_from_text(
    text: &str,
    ty: Option<&Type>,
    fctx: &FuncCtx,
) -> Result<Value, String> {
    if types::takes_literal_text(ty) {
        return Ok(Value::String(text.to_string()));
    }
    let expr: Expression = hcl_edit::parser::parse_expr(text)
        .map_err(|e| format!("{text:?} is not a valid HCL value: {}", e.message()))?;
    let src = Source::new("<value>", text);
    let ev = Evaluator::new(&src, fctx.clone());
    ev.eval(&expr, &Env::Empty).map_err(|e| e.message)
}

/// Resolves every declared variable's value, in Nomad's precedence, converts and validates it.
pub(crate) fn resolve(
    declared: &BTreeMap<String, Declared<'_>>,
    assigned: &BTreeMap<String, Assigned>,
    ev: &mut Evaluator<'_>,
    src: &Source<'_>,
    diags: &mut Diagnostics,
) {
    let mut values = BTreeMap::new();
    for (name, d) in declared {
        if d.broken {
            continue;
        }
        let path = FieldPath::root().labeled("variable", name).to_string();
        let (value, from, pos) = match assigned.get(name) {
            Some(a) => (a.value.clone(), a.from.clone(), a.pos.clone()),
            None => match &d.default {
                Some(v) => (
                    v.clone(),
                    "default".to_string(),
                    src.span_pos(d.span.clone()),
                ),
                None => {
                    diags.error(
                        src.span_pos(d.span.clone()),
                        &path,
                        format!("has no value: give it a default, or set it with -var {name}=…, a -var-file, or the environment variable NOMAD_VAR_{name}"),
                    );
                    continue;
                }
            },
        };
        let value = match &d.ty {
            Some(t) => match types::convert(value, t) {
                Ok(v) => v,
                Err(m) => {
                    diags.error(
                        pos,
                        &path,
                        format!("the value from {from} does not match type {t}: {m}"),
                    );
                    continue;
                }
            },
            None => value,
        };
        values.insert(name.clone(), value);
    }
    // Validations see only their own variable, as in Nomad.
    for (name, d) in declared {
        let Some(v) = values.get(name) else { continue };
        for (cond, msg, span) in &d.validations {
            let path = FieldPath::root()
                .labeled("variable", name)
                .field("validation")
                .to_string();
            let mut only = BTreeMap::new();
            only.insert(name.clone(), v.clone());
            ev.set_vars(only);
            let ok = match ev.eval(cond, &Env::Empty) {
                Ok(Value::Bool(b)) => b,
                Ok(other) => {
                    diags.error(
                        src.span_pos(cond.span()),
                        &path,
                        format!(
                            "the condition must be true or false, got {}",
                            other.describe()
                        ),
                    );
                    continue;
                }
                Err(e) => {
                    diags.error(src.span_pos(e.span.or(cond.span())), &path, e.message);
                    continue;
                }
            };
            if !ok {
                let text = match ev.eval(msg, &Env::Empty) {
                    Ok(m) => m.to_str().unwrap_or_default(),
                    Err(e) => e.message,
                };
                let from = match assigned.get(name) {
                    Some(a) => a.from.clone(),
                    None => "its default".to_string(),
                };
                diags.error(
                    src.span_pos(span.clone()),
                    &FieldPath::root().labeled("variable", name).to_string(),
                    format!("invalid value from {from}: {text}"),
                );
            }
        }
    }
    ev.set_vars(values);
}
