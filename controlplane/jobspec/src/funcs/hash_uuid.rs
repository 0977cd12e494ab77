//! Hash and id functions: `sha256`, `sha512`, `uuidv4`, `uuidv5`. (`bcrypt` and
//! `rsadecrypt` are in the table as functions noded does not provide.)

use sha2::Digest;

use super::{Args, R};
use crate::value::Value;

/// The digest in lower-case hex, as Terraform prints it (`sha2`'s output formats itself).
pub(super) fn sha256(a: Args<'_>) -> R {
    Ok(Value::String(format!(
        "{:x}",
        sha2::Sha256::digest(a.str(0)?.as_bytes())
    )))
}

pub(super) fn sha512(a: Args<'_>) -> R {
    Ok(Value::String(format!(
        "{:x}",
        sha2::Sha512::digest(a.str(0)?.as_bytes())
    )))
}

/// A random UUID: like Terraform's, a different value on every parse.
pub(super) fn uuidv4(_: Args<'_>) -> R {
    Ok(Value::String(uuid::Uuid::new_v4().to_string()))
}

/// `uuidv5(namespace, name)`: the namespace is `dns`, `url`, `oid`, `x500` or a UUID.
pub(super) fn uuidv5(a: Args<'_>) -> R {
    let ns = match a.str(0)?.as_str() {
        "dns" => uuid::Uuid::NAMESPACE_DNS,
        "url" => uuid::Uuid::NAMESPACE_URL,
        "oid" => uuid::Uuid::NAMESPACE_OID,
        "x500" => uuid::Uuid::NAMESPACE_X500,
        other => uuid::Uuid::parse_str(other).map_err(|_| {
            format!("namespace must be dns, url, oid, x500 or a UUID (got {other:?})")
        })?,
    };
    Ok(Value::String(
        uuid::Uuid::new_v5(&ns, a.str(1)?.as_bytes()).to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{run, s};

    #[test]
    fn hash_and_uuid_functions() {
        assert_eq!(
            run("sha256", vec![s("")]).unwrap(),
            s("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert!(run("sha512", vec![s("")])
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("cf83e135"));
        assert_eq!(run("uuidv4", vec![]).unwrap().to_str().unwrap().len(), 36);
        assert_eq!(
            run("uuidv5", vec![s("dns"), s("example.com")]).unwrap(),
            s("cfbff0d1-9375-5685-968c-48ce8b15ae17")
        );
    }
}
