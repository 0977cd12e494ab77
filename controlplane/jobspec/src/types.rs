//! HCL type constraints of `variable` blocks (`string`, `list(number)`, `object({…})`, …) and
//! the conversion of a value to one, with HCL's implicit conversions.

use std::collections::BTreeMap;

use hcl_edit::expr::{Expression, ObjectKey};

use super::value::Value;

/// A type constraint.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Type {
    Any,
    String,
    Number,
    Bool,
    List(Box<Type>),
    Set(Box<Type>),
    Map(Box<Type>),
    Object(BTreeMap<String, (Type, bool /* optional */)>),
    Tuple(Vec<Type>),
}

impl std::fmt::Display for Type {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Type::Any => f.write_str("any"),
            Type::String => f.write_str("string"),
            Type::Number => f.write_str("number"),
            Type::Bool => f.write_str("bool"),
            Type::List(t) => write!(f, "list({t})"),
            Type::Set(t) => write!(f, "set({t})"),
            Type::Map(t) => write!(f, "map({t})"),
            Type::Object(fields) => {
                f.write_str("object({")?;
                for (i, (k, (t, opt))) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    if *opt {
                        write!(f, "{k} = optional({t})")?;
                    } else {
                        write!(f, "{k} = {t}")?;
                    }
                }
                f.write_str("})")
            }
            Type::Tuple(ts) => {
                f.write_str("tuple([")?;
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{t}")?;
                }
                f.write_str("])")
            }
        }
    }
}

/// Parses a type expression.
pub(crate) fn parse_type(expr: &Expression) -> Result<Type, String> {
    parse_type_inner(expr, 0, false).map(|(t, _)| t)
}

fn parse_type_inner(
    expr: &Expression,
    depth: usize,
    allow_optional: bool,
) -> Result<(Type, bool), String> {
    if depth > 16 {
        return Err("type constraint nested too deeply".to_string());
    }
    match expr {
        Expression::Variable(v) => match v.as_str() {
            "any" => Ok((Type::Any, false)),
            "string" => Ok((Type::String, false)),
            "number" => Ok((Type::Number, false)),
            "bool" => Ok((Type::Bool, false)),
            "list" => Ok((Type::List(Box::new(Type::Any)), false)),
            "map" => Ok((Type::Map(Box::new(Type::Any)), false)),
            "set" => Ok((Type::Set(Box::new(Type::Any)), false)),
            other => Err(format!(
                "unknown type {other:?}; use string, number, bool, any, list(…), set(…), map(…), object({{…}}) or tuple([…])"
            )),
        },
        Expression::FuncCall(call) => {
            let name = call.name.name.as_str();
            let args: Vec<&Expression> = call.args.iter().collect();
            let one = |what: &str| -> Result<&Expression, String> {
                match args.as_slice() {
                    [a] => Ok(*a),
                    _ => Err(format!("{what}(…) takes exactly one type")),
                }
            };
            match name {
                "list" => Ok((Type::List(Box::new(parse_type_inner(one("list")?, depth + 1, false)?.0)), false)),
                "set" => Ok((Type::Set(Box::new(parse_type_inner(one("set")?, depth + 1, false)?.0)), false)),
                "map" => Ok((Type::Map(Box::new(parse_type_inner(one("map")?, depth + 1, false)?.0)), false)),
                "optional" if allow_optional => Ok((parse_type_inner(one("optional")?, depth + 1, false)?.0, true)),
                "optional" => Err("optional(…) is only allowed for attributes of object({…})".to_string()),
                "object" => match one("object")? {
                    Expression::Object(obj) => {
                        let mut fields = BTreeMap::new();
                        for (k, v) in obj.iter() {
                            let key = match k {
                                ObjectKey::Ident(i) => i.as_str().to_string(),
                                ObjectKey::Expression(Expression::String(s)) => s.value().clone(),
                                ObjectKey::Expression(_) => {
                                    return Err("object type attribute names must be plain names".to_string())
                                }
                            };
                            fields.insert(key, parse_type_inner(v.expr(), depth + 1, true)?);
                        }
                        Ok((Type::Object(fields), false))
                    }
                    _ => Err("object(…) takes an object of attribute types: object({ name = string })".to_string()),
                },
                "tuple" => match one("tuple")? {
                    Expression::Array(items) => Ok((
                        Type::Tuple(
                            items
                                .iter()
                                .map(|e| parse_type_inner(e, depth + 1, false).map(|(t, _)| t))
                                .collect::<Result<_, _>>()?,
                        ),
                        false,
                    )),
                    _ => Err("tuple(…) takes a list of types: tuple([string, number])".to_string()),
                },
                other => Err(format!("unknown type constructor {other:?}")),
            }
        }
        _ => Err("a type constraint must be a type like string or list(number), not a value".to_string()),
    }
}

/// Converts a value to a type, or says why it cannot be.
pub(crate) fn convert(v: Value, t: &Type) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    match t {
        Type::Any => Ok(v),
        Type::String => v.to_str().map(Value::String),
        Type::Number => v.to_number().map(Value::Number),
        Type::Bool => v.to_bool().map(Value::Bool),
        Type::List(et) | Type::Set(et) => match v {
            Value::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    out.push(convert(item, et).map_err(|m| format!("element {i}: {m}"))?);
                }
                if matches!(t, Type::Set(_)) {
                    let mut dedup: Vec<Value> = Vec::with_capacity(out.len());
                    for item in out {
                        if !dedup.contains(&item) {
                            dedup.push(item);
                        }
                    }
                    out = dedup;
                }
                Ok(Value::List(out))
            }
            other => Err(format!("a list is required, got {}", other.describe())),
        },
        Type::Map(et) => match v {
            Value::Object(m) => {
                let mut out = BTreeMap::new();
                for (k, item) in m {
                    let c = convert(item, et).map_err(|e| format!("key {k:?}: {e}"))?;
                    out.insert(k, c);
                }
                Ok(Value::Object(out))
            }
            other => Err(format!("a map is required, got {}", other.describe())),
        },
        Type::Object(fields) => match v {
            Value::Object(mut m) => {
                let mut out = BTreeMap::new();
                for (k, (ft, optional)) in fields {
                    match m.remove(k) {
                        Some(item) => {
                            out.insert(
                                k.clone(),
                                convert(item, ft).map_err(|e| format!("attribute {k:?}: {e}"))?,
                            );
                        }
                        None if *optional => {
                            out.insert(k.clone(), Value::Null);
                        }
                        None => return Err(format!("attribute {k:?} is required")),
                    }
                }
                if let Some(extra) = m.keys().next() {
                    return Err(format!(
                        "unexpected attribute {extra:?}; the type allows: {}",
                        fields.keys().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
                Ok(Value::Object(out))
            }
            other => Err(format!("an object is required, got {}", other.describe())),
        },
        Type::Tuple(ts) => match v {
            Value::List(items) if items.len() == ts.len() => items
                .into_iter()
                .zip(ts)
                .enumerate()
                .map(|(i, (item, et))| convert(item, et).map_err(|m| format!("element {i}: {m}")))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::List),
            Value::List(items) => Err(format!(
                "a tuple of {} elements is required, got {}",
                ts.len(),
                items.len()
            )),
            other => Err(format!("a tuple is required, got {}", other.describe())),
        },
    }
}

/// Whether a value given as text (from `-var` or the environment) is taken literally rather
/// than parsed as an HCL expression: so for untyped, string and number variables.
pub(crate) fn takes_literal_text(t: Option<&Type>) -> bool {
    matches!(t, None | Some(Type::String) | Some(Type::Number))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(s: &str) -> Type {
        parse_type(&s.parse::<Expression>().unwrap()).unwrap()
    }

    #[test]
    fn types_parse_and_print() {
        assert_eq!(ty("string"), Type::String);
        assert_eq!(ty("list(number)").to_string(), "list(number)");
        assert_eq!(
            ty("object({ a = string, b = optional(number) })").to_string(),
            "object({a = string, b = optional(number)})"
        );
        assert!(parse_type(&"optional(string)".parse::<Expression>().unwrap()).is_err());
        assert!(parse_type(&"strin".parse::<Expression>().unwrap()).is_err());
    }

    #[test]
    fn conversion_applies_hcl_rules() {
        assert_eq!(
            convert(Value::string("7511"), &Type::Number).unwrap(),
            Value::int(7511)
        );
        assert_eq!(
            convert(
                Value::List(vec![Value::int(1), Value::int(1)]),
                &Type::Set(Box::new(Type::String))
            )
            .unwrap(),
            Value::List(vec![Value::string("1")])
        );
        let err = convert(Value::string("x"), &Type::Bool).unwrap_err();
        assert!(err.contains("bool"), "{err}");
        assert!(convert(Value::List(vec![]), &Type::Map(Box::new(Type::Any))).is_err());
    }
}
