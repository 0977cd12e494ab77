//! The values HCL expressions evaluate to, and the conversions between them that HCL (cty)
//! applies implicitly: a number where a string is wanted becomes its decimal text, `"true"`
//! where a bool is wanted becomes `true`, and so on.

use std::collections::BTreeMap;
use std::fmt;

/// An HCL number. Integers stay exact (HCL1 compatibility for driver config: `21474836470`
/// must come out as that integer); anything fractional is a float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    /// A float that happens to be integral becomes an integer, so `4 / 2` is `2` like in cty.
    pub fn from_f64(f: f64) -> Number {
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            Number::Int(f as i64)
        } else {
            Number::Float(f)
        }
    }

    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }

    /// The integer value, if this number is one.
    pub fn as_i64(self) -> Option<i64> {
        match self {
            Number::Int(i) => Some(i),
            Number::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Some(f as i64),
            Number::Float(_) => None,
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Int(i) => write!(f, "{i}"),
            Number::Float(x) if x.is_infinite() => {
                f.write_str(if *x > 0.0 { "Infinity" } else { "-Infinity" })
            }
            Number::Float(x) => write!(f, "{x}"),
        }
    }
}

/// A value. Lists, tuples and sets are all `List`; objects and maps are both `Object` (keys
/// sorted, as cty orders them).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    List(Vec<Value>),
    Object(BTreeMap<String, Value>),
}

impl Value {
    pub fn int(i: i64) -> Value {
        Value::Number(Number::Int(i))
    }

    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Converts to a string as HCL does where a string is required: numbers and bools become
    /// their text; null, lists and objects cannot.
    pub fn to_str(&self) -> Result<String, String> {
        match self {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(format!("a string is required, got {}", other.describe())),
        }
    }

    /// Converts to a number: numbers, and strings holding a decimal number.
    pub fn to_number(&self) -> Result<Number, String> {
        match self {
            Value::Number(n) => Ok(*n),
            Value::String(s) => parse_number(s.trim())
                .ok_or_else(|| format!("a number is required, got the string {s:?}")),
            other => Err(format!("a number is required, got {}", other.describe())),
        }
    }

    /// Converts to a whole number.
    pub fn to_i64(&self) -> Result<i64, String> {
        let n = self.to_number()?;
        n.as_i64()
            .ok_or_else(|| format!("a whole number is required, got {n}"))
    }

    /// Converts to a bool: bools, and the strings "true" and "false".
    pub fn to_bool(&self) -> Result<bool, String> {
        match self {
            Value::Bool(b) => Ok(*b),
            Value::String(s) if s == "true" => Ok(true),
            Value::String(s) if s == "false" => Ok(false),
            other => Err(format!("a bool is required, got {}", other.describe())),
        }
    }

    /// A short description for messages: the type and, for scalars, the value.
    pub fn describe(&self) -> String {
        match self {
            Value::Null => "null".to_string(),
            Value::Bool(b) => format!("the bool {b}"),
            Value::Number(n) => format!("the number {n}"),
            Value::String(s) => {
                let shown: String = s.chars().take(40).collect();
                if shown.len() < s.len() {
                    format!("the string {shown:?}…")
                } else {
                    format!("the string {s:?}")
                }
            }
            Value::List(l) if l.len() == 1 => "a list of 1 element".to_string(),
            Value::List(l) => format!("a list of {} elements", l.len()),
            Value::Object(o) if o.len() == 1 => "an object with 1 attribute".to_string(),
            Value::Object(o) => format!("an object with {} attributes", o.len()),
        }
    }

    /// The JSON form. Non-finite floats have none in JSON.
    pub fn to_json(&self) -> Result<serde_json::Value, String> {
        Ok(match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(Number::Int(i)) => serde_json::Value::from(*i),
            Value::Number(Number::Float(f)) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .ok_or_else(|| format!("the number {f} cannot be represented in JSON"))?,
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::List(items) => serde_json::Value::Array(
                items.iter().map(Value::to_json).collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => {
                let mut out = serde_json::Map::new();
                for (k, v) in map {
                    out.insert(k.clone(), v.to_json()?);
                }
                serde_json::Value::Object(out)
            }
        })
    }

    pub fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::int(i),
                None => Value::Number(Number::from_f64(n.as_f64().unwrap_or(f64::NAN))),
            },
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(a) => Value::List(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// How many values this one holds, counting itself: the unit of the evaluation budget.
    pub fn weight(&self) -> u64 {
        match self {
            Value::List(l) => 1 + l.iter().map(Value::weight).sum::<u64>(),
            Value::Object(o) => 1 + o.values().map(Value::weight).sum::<u64>(),
            Value::String(s) => 1 + (s.len() as u64) / 64,
            _ => 1,
        }
    }
}

/// Parses a decimal number as HCL writes them (`12`, `-3.5`, `1e3`).
pub fn parse_number(s: &str) -> Option<Number> {
    if s.is_empty() || s.len() > 400 {
        return None;
    }
    let body = s.strip_prefix('-').unwrap_or(s);
    if !body.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    if let Ok(i) = s.parse::<i64>() {
        return Some(Number::Int(i));
    }
    s.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Number::from_f64)
}

impl fmt::Display for Value {
    /// The text a value becomes inside a template.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => write!(f, "{n}"),
            Value::String(s) => f.write_str(s),
            other => match other.to_json() {
                Ok(j) => write!(f, "{j}"),
                Err(e) => f.write_str(&e),
            },
        }
    }
}

/// Structural equality with numbers compared by value (`1 == 1.0`).
pub(crate) fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && values_equal(va, vb))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implicit_conversions_follow_hcl() {
        assert_eq!(Value::int(840).to_str().unwrap(), "840");
        assert_eq!(Value::Bool(true).to_str().unwrap(), "true");
        assert_eq!(Value::string("500").to_i64().unwrap(), 500);
        assert!(Value::string("true").to_bool().unwrap());
        assert!(Value::string("yes").to_bool().is_err());
        assert!(Value::string("5x").to_number().is_err());
        assert!(Value::List(vec![]).to_str().is_err());
        assert_eq!(Number::from_f64(4.0), Number::Int(4));
        assert_eq!(Number::from_f64(3.2).to_string(), "3.2");
        assert_eq!(parse_number("1e3"), Some(Number::Int(1000)));
        assert_eq!(parse_number("inf"), None);
    }

    #[test]
    fn json_round_trip_keeps_integers_exact() {
        let v = Value::int(21_474_836_470);
        assert_eq!(v.to_json().unwrap(), serde_json::json!(21474836470i64));
        assert_eq!(Value::from_json(&v.to_json().unwrap()), v);
    }
}
