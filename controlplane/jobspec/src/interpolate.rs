//! Runtime interpolation: what the client does with the `${…}` references the parser kept as
//! text (`${NOMAD_ALLOC_DIR}`, `${attr.kernel.name}`, `${node.unique.id}`, `${meta.rack}`,
//! `${secret.db.password}`), once it knows the node and the allocation.
//!
//! Unknown references are errors naming the reference and what is available, so a typo in a
//! jobspec fails the task visibly instead of running it with a literal `${…}` in its args.

use std::collections::BTreeMap;

/// What `${…}` can refer to on a node, for one task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterpolationContext {
    /// The task's environment: `NOMAD_*` variables and the task's `env` block, by name.
    pub env: BTreeMap<String, String>,
    /// Node attributes without the `attr.` prefix (`kernel.name`, `unique.platform.aws.…`).
    pub node_attrs: BTreeMap<String, String>,
    /// Node fields without the `node.` prefix: `unique.id`, `unique.name`, `datacenter`,
    /// `region`, `class`, `pool`.
    pub node: BTreeMap<String, String>,
    /// Node metadata without the `meta.` prefix.
    pub node_meta: BTreeMap<String, String>,
    /// Secrets as `<secret name>.<key>` (from `secret` blocks).
    pub secrets: BTreeMap<String, String>,
    /// Devices' attributes without the `device.` prefix.
    pub devices: BTreeMap<String, String>,
}

/// Why a template could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolationError {
    #[error("unknown reference ${{{reference}}} at byte {offset}: {hint}")]
    Unknown {
        reference: String,
        offset: usize,
        hint: String,
    },
    #[error("unterminated reference at byte {offset}: a \"${{\" has no closing \"}}\"")]
    Unterminated { offset: usize },
    #[error("empty reference \"${{}}\" at byte {offset}")]
    Empty { offset: usize },
}

/// Replaces every `${reference}` in `template`. A `$` not followed by `{` is kept as is.
pub fn interpolate(
    template: &str,
    ctx: &InterpolationContext,
) -> Result<String, InterpolationError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    let mut base = 0;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            return Err(InterpolationError::Unterminated { offset: base + i });
        };
        let reference = after[..end].trim();
        if reference.is_empty() {
            return Err(InterpolationError::Empty { offset: base + i });
        }
        out.push_str(
            &resolve(reference, ctx).ok_or_else(|| InterpolationError::Unknown {
                reference: reference.to_string(),
                offset: base + i,
                hint: hint(reference, ctx),
            })?,
        );
        let consumed = i + 2 + end + 1;
        base += consumed;
        rest = &rest[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve(reference: &str, ctx: &InterpolationContext) -> Option<String> {
    let (root, key) = split_reference(reference);
    let map = match root {
        "attr" => &ctx.node_attrs,
        "node" => &ctx.node,
        "meta" => &ctx.node_meta,
        "secret" => &ctx.secrets,
        "device" => &ctx.devices,
        _ => return ctx.env.get(reference).cloned(),
    };
    map.get(key?).cloned()
}

/// `attr.kernel.name` → ("attr", "kernel.name"); `attr["a.b"]` → ("attr", "a.b").
fn split_reference(reference: &str) -> (&str, Option<&str>) {
    let dot = reference.find('.');
    let bracket = reference.find('[');
    let dot_first = match (dot, bracket) {
        (Some(d), Some(b)) => d < b,
        (Some(_), None) => true,
        _ => false,
    };
    if dot_first {
        if let Some((root, rest)) = reference.split_once('.') {
            return (root, Some(rest));
        }
    }
    if let Some((root, rest)) = reference.split_once('[') {
        let key = rest.strip_suffix(']').map(|k| k.trim().trim_matches('"'));
        return (root, key);
    }
    (reference, None)
}

fn hint(reference: &str, ctx: &InterpolationContext) -> String {
    let (root, _) = split_reference(reference);
    let (what, map) = match root {
        "attr" => ("node attributes", &ctx.node_attrs),
        "node" => ("node fields", &ctx.node),
        "meta" => ("node meta keys", &ctx.node_meta),
        "secret" => ("secrets", &ctx.secrets),
        "device" => ("device attributes", &ctx.devices),
        _ => {
            let nomad: Vec<&str> = ctx
                .env
                .keys()
                .filter(|k| k.starts_with("NOMAD_"))
                .map(String::as_str)
                .take(8)
                .collect();
            return format!(
                "not a task environment variable (some are: {}), nor attr.*, node.*, meta.*, secret.* or device.*",
                nomad.join(", ")
            );
        }
    };
    let known: Vec<&str> = map.keys().map(String::as_str).take(8).collect();
    if known.is_empty() {
        format!("this node has no {what}")
    } else {
        format!(
            "this node has no such key among its {what} (some are: {})",
            known.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> InterpolationContext {
        let mut c = InterpolationContext::default();
        c.env.insert("NOMAD_ALLOC_DIR".into(), "/alloc".into());
        c.env.insert("NOMAD_PORT_http".into(), "8080".into());
        c.node_attrs.insert("kernel.name".into(), "linux".into());
        c.node_attrs
            .insert("unique.platform.aws.instance-type".into(), "t3".into());
        c.node.insert("unique.id".into(), "n1".into());
        c.node_meta.insert("rack".into(), "r2".into());
        c.secrets.insert("db.password".into(), "s3cret".into());
        c
    }

    #[test]
    fn references_resolve_from_their_roots() {
        let out = interpolate(
            "${NOMAD_ALLOC_DIR}/x:${ NOMAD_PORT_http } ${attr.kernel.name} ${node.unique.id} ${meta.rack} ${secret.db.password} ${attr[\"unique.platform.aws.instance-type\"]} $HOME",
            &ctx(),
        )
        .unwrap();
        assert_eq!(out, "/alloc/x:8080 linux n1 r2 s3cret t3 $HOME");
    }

    #[test]
    fn unknown_and_malformed_references_are_errors() {
        let e = interpolate("a ${NOMAD_PORT_web}", &ctx()).unwrap_err();
        assert!(
            e.to_string().contains("${NOMAD_PORT_web}") && e.to_string().contains("byte 2"),
            "{e}"
        );
        let e = interpolate("${attr.cpu.arch}", &ctx())
            .unwrap_err()
            .to_string();
        assert!(e.contains("kernel.name"), "{e}");
        assert_eq!(
            interpolate("${oops", &ctx()),
            Err(InterpolationError::Unterminated { offset: 0 })
        );
        assert_eq!(
            interpolate("x${}", &ctx()),
            Err(InterpolationError::Empty { offset: 1 })
        );
        assert_eq!(interpolate("no refs", &ctx()).unwrap(), "no refs");
    }
}
