//! The only part of the jobspec that reads the machine: jobspec and variable files named on
//! the command line, `file()`-style functions when [`crate::ParseOptions::allow_fs_functions`]
//! allows them, `$HOME` for `pathexpand`, and the clock for [`crate::ParseOptions`]'s default
//! "now". Everything else in this crate is a pure function of its input; the crate's
//! `clippy.toml` refuses disk, environment, clock, network and process calls anywhere but
//! here, so that stays true.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::io::Read;
use std::path::Path;

/// Reads a UTF-8 file, refusing it without reading it all when it is larger than `max`.
pub(crate) fn read_text_bounded(path: &Path, max: usize) -> Result<String, String> {
    let bytes = read_bytes_bounded(path, max)?;
    String::from_utf8(bytes)
        .map_err(|_| format!("cannot read {}: it is not UTF-8 text", path.display()))
}

/// Reads a file's bytes, refusing it without reading it all when it is larger than `max`.
/// The size is checked on the open file and again on what was read, so a file that grows
/// between the two is refused too.
pub(crate) fn read_bytes_bounded(path: &Path, max: usize) -> Result<Vec<u8>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > max as u64 {
        return Err(format!(
            "{} is {len} bytes, more than the limit of {max} bytes",
            path.display()
        ));
    }
    let mut bytes = Vec::new();
    file.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() > max {
        return Err(format!(
            "{} is more than the limit of {max} bytes",
            path.display()
        ));
    }
    Ok(bytes)
}

/// Whether `path` names a regular file (following links), as HCL's `fileexists` means it.
pub(crate) fn is_file(path: &Path) -> bool {
    path.is_file()
}

/// The user's home directory for `~` in paths (empty when unset).
pub(crate) fn home_dir() -> String {
    std::env::var("HOME").unwrap_or_default()
}

/// The clock, read once when [`crate::ParseOptions`] are made (never while parsing).
pub(crate) fn now_unix_nanos() -> i64 {
    model::now_unix_nanos()
}
