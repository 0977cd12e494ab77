//! Filesystem functions: `abspath`, `basename`, `dirname`, `pathexpand`, `file`,
//! `filebase64`, `fileexists`. All of them refuse to run unless the caller allows the
//! filesystem ([`FuncCtx::allow_fs`](super::FuncCtx)): the command line does, a server
//! parsing a submitted job never does. Reads go through [`crate::disk`], the one module
//! that touches the machine.

use std::path::{Path, PathBuf};

use super::{Args, MAX_STRING, R};
use crate::value::Value;

/// The path argument, once the caller's permission is checked.
fn path_arg(name: &str, a: &Args<'_>) -> Result<String, String> {
    if !a.ctx.allow_fs {
        return Err(format!("{name}() reads the filesystem, which is disabled here; on the command line it is allowed, over the API it never is"));
    }
    a.str(0)
}

/// `~` and `~/…` become the home directory.
fn expand(p: &str) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => PathBuf::from(crate::disk::home_dir()).join(rest),
        None if p == "~" => PathBuf::from(crate::disk::home_dir()),
        None => PathBuf::from(p),
    }
}

/// Relative paths are taken from the jobspec's directory.
fn resolve(a: &Args<'_>, p: &str) -> PathBuf {
    let e = expand(p);
    if e.is_absolute() {
        e
    } else {
        a.ctx.base_dir.join(e)
    }
}

pub(super) fn pathexpand(a: Args<'_>) -> R {
    let p = path_arg("pathexpand", &a)?;
    Ok(Value::String(expand(&p).display().to_string()))
}

pub(super) fn basename(a: Args<'_>) -> R {
    let p = path_arg("basename", &a)?;
    Ok(Value::String(
        Path::new(&p)
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default(),
    ))
}

pub(super) fn dirname(a: Args<'_>) -> R {
    let p = path_arg("dirname", &a)?;
    Ok(Value::String(
        Path::new(&p)
            .parent()
            .map(|f| f.display().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| ".".into()),
    ))
}

pub(super) fn abspath(a: Args<'_>) -> R {
    let p = path_arg("abspath", &a)?;
    Ok(Value::String(resolve(&a, &p).display().to_string()))
}

pub(super) fn fileexists(a: Args<'_>) -> R {
    let p = path_arg("fileexists", &a)?;
    Ok(Value::Bool(crate::disk::is_file(&resolve(&a, &p))))
}

pub(super) fn file(a: Args<'_>) -> R {
    let path = resolve(&a, &path_arg("file", &a)?);
    let bytes = crate::disk::read_bytes_bounded(&path, MAX_STRING)?;
    String::from_utf8(bytes)
        .map(Value::String)
        .map_err(|_| format!("{} is not UTF-8 text; use filebase64", path.display()))
}

pub(super) fn filebase64(a: Args<'_>) -> R {
    let path = resolve(&a, &path_arg("filebase64", &a)?);
    let bytes = crate::disk::read_bytes_bounded(&path, MAX_STRING)?;
    Ok(Value::String(super::encoding::base64_encode(&bytes)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // the test writes a file for file() to read
    use super::super::tests::{run, s};
    use super::super::{call, FuncCtx};
    use crate::value::Value;

    #[test]
    fn filesystem_functions_need_permission() {
        let err = run("file", vec![s("/etc/hostname")]).unwrap_err();
        assert!(err.contains("disabled"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.txt"), "hi").unwrap();
        let ctx = FuncCtx {
            allow_fs: true,
            base_dir: dir.path().to_path_buf(),
            ..FuncCtx::default()
        };
        assert_eq!(
            call("file", &ctx, vec![s("f.txt")]).unwrap().unwrap(),
            s("hi")
        );
        assert_eq!(
            call("filebase64", &ctx, vec![s("f.txt")]).unwrap().unwrap(),
            s("aGk=")
        );
        assert_eq!(
            call("fileexists", &ctx, vec![s("nope")]).unwrap().unwrap(),
            Value::Bool(false)
        );
        assert_eq!(
            call("basename", &ctx, vec![s("/a/b.txt")])
                .unwrap()
                .unwrap(),
            s("b.txt")
        );
        assert_eq!(
            call("dirname", &ctx, vec![s("/a/b.txt")]).unwrap().unwrap(),
            s("/a")
        );
        assert!(call("pathexpand", &ctx, vec![s("~/x")])
            .unwrap()
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("/x"));
    }
}
