//! Encoding functions: `base64encode`, `base64decode`, `jsonencode`, `jsondecode`,
//! `urlencode`, `csvdecode`, `yamlencode`, `yamldecode`.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{DecodeError, Engine};

use super::{Args, R};
use crate::value::{Number, Value};

/// Deepest YAML nesting accepted by `yamldecode`.
const MAX_YAML_DEPTH: usize = 64;

pub(super) fn base64encode(a: Args<'_>) -> R {
    Ok(Value::String(base64_encode(a.str(0)?.as_bytes())))
}

pub(super) fn base64decode(a: Args<'_>) -> R {
    let bytes = base64_decode(&a.str(0)?)?;
    String::from_utf8(bytes)
        .map(Value::String)
        .map_err(|_| "the decoded bytes are not UTF-8 text".to_string())
}

pub(super) fn jsonencode(a: Args<'_>) -> R {
    a.get(0)?.to_json().map(|j| Value::String(j.to_string()))
}

pub(super) fn jsondecode(a: Args<'_>) -> R {
    serde_json::from_str::<serde_json::Value>(&a.str(0)?)
        .map(|j| Value::from_json(&j))
        .map_err(|e| format!("invalid JSON: {e}"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub(super) fn urlencode(a: Args<'_>) -> R {
    let s = a.str(0)?;
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(Value::String(out))
}

pub(super) fn csvdecode(a: Args<'_>) -> R {
    csv_decode(&a.str(0)?)
}

pub(super) fn yamldecode(a: Args<'_>) -> R {
    yaml_decode(&a.str(0)?)
}

pub(super) fn yamlencode(a: Args<'_>) -> R {
    yaml_encode(a.get(0)?)
}

/// Go's `base64.StdEncoding`, which Terraform's `base64decode` uses: the standard alphabet,
/// padding required and canonical (`"===="`, `"YQ"`, `"YQ="` are errors), and the unused
/// bits of the last symbol ignored (Go's non-strict mode: `"YR=="` is `"a"`).
const GO_STD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

pub(super) fn base64_encode(data: &[u8]) -> String {
    GO_STD.encode(data)
}

/// Decodes like Go's `StdEncoding.DecodeString`, which skips line breaks (`\r`, `\n`) and
/// nothing else.
fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let clean: Vec<u8> = s.bytes().filter(|b| !matches!(b, b'\r' | b'\n')).collect();
    GO_STD.decode(&clean).map_err(|e| {
        let why = match e {
            DecodeError::InvalidByte(at, b'=') => format!("misplaced padding at byte {at}"),
            DecodeError::InvalidByte(at, b) => {
                format!("unexpected {:?} at byte {at}", char::from(b))
            }
            DecodeError::InvalidLength(_) => "the length is not a multiple of 4".to_string(),
            DecodeError::InvalidLastSymbol(at, b) => {
                format!("unexpected {:?} at byte {at}", char::from(b))
            }
            DecodeError::InvalidPadding => "the padding is missing or wrong".to_string(),
        };
        format!("not valid base64 ({why})")
    })
}

fn csv_decode(s: &str) -> R {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => row.push(std::mem::take(&mut field)),
            ('\n', false) => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            ('\r', false) => {}
            (c, _) => field.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    let mut it = rows.into_iter();
    let header = it.next().ok_or("the CSV has no header row")?;
    let mut out = Vec::new();
    for (i, r) in it.enumerate() {
        if r.len() != header.len() {
            return Err(format!(
                "row {} has {} fields, the header has {}",
                i + 2,
                r.len(),
                header.len()
            ));
        }
        out.push(Value::Object(
            header
                .iter()
                .cloned()
                .zip(r.into_iter().map(Value::String))
                .collect(),
        ));
    }
    Ok(Value::List(out))
}

fn yaml_to_value(y: &yaml_rust2::Yaml, depth: usize) -> R {
    use yaml_rust2::Yaml;
    if depth > MAX_YAML_DEPTH {
        return Err(format!("YAML nested deeper than {MAX_YAML_DEPTH} levels"));
    }
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::int(*i),
        Yaml::Real(text) => {
            let f: f64 = text
                .parse()
                .map_err(|_| format!("YAML number {text:?} is not a number"))?;
            Value::Number(Number::from_f64(f))
        }
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::List(
            items
                .iter()
                .map(|i| yaml_to_value(i, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Hash(map) => {
            let mut out = std::collections::BTreeMap::new();
            for (k, v) in map {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    Yaml::Real(r) => r.clone(),
                    other => return Err(format!("YAML map key {other:?} is not a string")),
                };
                out.insert(key, yaml_to_value(v, depth + 1)?);
            }
            Value::Object(out)
        }
        Yaml::Alias(_) => return Err("YAML aliases are not supported".to_string()),
        Yaml::BadValue => return Err("the YAML holds a value that cannot be read".to_string()),
    })
}

fn value_to_yaml(v: &Value) -> yaml_rust2::Yaml {
    use yaml_rust2::Yaml;
    match v {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(Number::Int(i)) => Yaml::Integer(*i),
        Value::Number(n) => Yaml::Real(n.as_f64().to_string()),
        Value::String(s) => Yaml::String(s.clone()),
        Value::List(items) => Yaml::Array(items.iter().map(value_to_yaml).collect()),
        Value::Object(map) => {
            let mut out = yaml_rust2::yaml::Hash::new();
            for (k, v) in map {
                out.insert(Yaml::String(k.clone()), value_to_yaml(v));
            }
            Yaml::Hash(out)
        }
    }
}

fn yaml_decode(text: &str) -> R {
    let docs =
        yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| format!("invalid YAML: {e}"))?;
    match docs.as_slice() {
        [] => Ok(Value::Null),
        [one] => yaml_to_value(one, 0),
        _ => Err(format!(
            "the YAML holds {} documents; yamldecode takes one",
            docs.len()
        )),
    }
}

fn yaml_encode(v: &Value) -> R {
    let mut out = String::new();
    yaml_rust2::YamlEmitter::new(&mut out)
        .dump(&value_to_yaml(v))
        .map_err(|e| format!("encoding YAML: {e:?}"))?;
    let body = out
        .strip_prefix("---\n")
        .or_else(|| out.strip_prefix("---"))
        .unwrap_or(&out)
        .trim_start();
    Ok(Value::String(format!("{body}\n")))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{i, l, run, s};
    use super::*;

    #[test]
    fn encoding_functions() {
        assert_eq!(
            run("base64encode", vec![s("user:pass")]).unwrap(),
            s("dXNlcjpwYXNz")
        );
        assert_eq!(
            run("base64decode", vec![s("dXNlcjpwYXNz")]).unwrap(),
            s("user:pass")
        );
        for text in ["", "a", "ab", "abc", "abcd"] {
            assert_eq!(
                run(
                    "base64decode",
                    vec![run("base64encode", vec![s(text)]).unwrap()]
                )
                .unwrap(),
                s(text)
            );
        }
        assert_eq!(
            run("jsonencode", vec![l(vec![i(1), s("a")])]).unwrap(),
            s("[1,\"a\"]")
        );
        assert_eq!(
            run("jsondecode", vec![s("{\"a\":[1]}")])
                .unwrap()
                .to_json()
                .unwrap(),
            serde_json::json!({"a": [1]})
        );
        assert_eq!(run("urlencode", vec![s("a b&c")]).unwrap(), s("a%20b%26c"));
        assert_eq!(
            run("csvdecode", vec![s("a,b\n1,\"x,y\"\n")])
                .unwrap()
                .to_json()
                .unwrap(),
            serde_json::json!([{"a": "1", "b": "x,y"}])
        );
    }

    #[test]
    fn base64_padding_is_checked_as_go_does() {
        let decode = |text: &str| run("base64decode", vec![s(text)]);
        for (text, want) in [
            ("", ""),
            ("YQ==", "a"),
            ("YWI=", "ab"),
            ("YWJj", "abc"),
            ("YWJjZA==", "abcd"),
            // Go's StdEncoding is not strict: the unused bits of the last symbol are ignored.
            ("YR==", "a"),
            // Line breaks are skipped, as Go does.
            ("YW\r\nJj\n", "abc"),
        ] {
            assert_eq!(decode(text).unwrap(), s(want), "{text:?}");
        }
        for bad in [
            "====", "=", "==", "YQ", "YQ=", "YQ===", "YQ==YQ==", "=YQ=", "Y Q==", "YQ==\t", "Y-Q=",
        ] {
            let e = decode(bad).unwrap_err();
            assert!(e.starts_with("not valid base64 ("), "{bad:?}: {e}");
        }
        assert!(decode("/w==").unwrap_err().contains("not UTF-8"));
        assert_eq!(base64_encode(&[0xff]), "/w==");
    }

    #[test]
    fn yaml_round_trips_and_bad_yaml_is_an_error() {
        let v = yaml_decode("a: 1\nb:\n  - x\n  - true\nc: 2.5\nd: null\n").unwrap();
        match &v {
            Value::Object(m) => {
                assert_eq!(m["a"], Value::int(1));
                assert_eq!(
                    m["b"],
                    Value::List(vec![Value::string("x"), Value::Bool(true)])
                );
                assert_eq!(m["d"], Value::Null);
            }
            other => panic!("{other:?}"),
        }
        let text = match yaml_encode(&v).unwrap() {
            Value::String(t) => t,
            other => panic!("{other:?}"),
        };
        assert_eq!(yaml_decode(&text).unwrap(), v, "{text}");
        assert!(yaml_decode("a: [1, 2")
            .unwrap_err()
            .contains("invalid YAML"));
        assert!(yaml_decode("--- 1\n--- 2\n")
            .unwrap_err()
            .contains("2 documents"));
    }
}
