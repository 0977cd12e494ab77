//! Reading agent config files: `-config` paths (a file, or a directory whose `*.hcl` and
//! `*.json` files are read in lexical order, as Nomad does), parsed strictly, every error with
//! its file and line.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::error::{ConfigError, ConfigErrors};
use super::positions::{strip_indices, KeyLines};
use super::FileConfig;

/// The largest config file read; agent configs are a few kilobytes.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// The most config files read from one directory.
pub const MAX_DIR_FILES: usize = 1000;

/// Reads every path in order (directories expanded); all the errors of all the files.
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<FileConfig>, ConfigErrors> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match expand(path) {
            Ok(list) => {
                for file in list {
                    match load_file(&file) {
                        Ok(f) => files.push(f),
                        Err(e) => errors.extend(e.0),
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// A file is itself; a directory is its `*.hcl` and `*.json` files, sorted, without
/// subdirectories and editor leftovers (`name~`, `.#name`, `#name#`).
pub fn expand(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| {
        ConfigError::at(
            &shown,
            None,
            format!("cannot read agent config: {e}; check the -config path"),
        )
    })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| ConfigError::at(&shown, None, format!("cannot list config directory: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| {
            ConfigError::at(&shown, None, format!("cannot list config directory: {e}"))
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let wanted = (name.ends_with(".hcl") || name.ends_with(".json"))
            && !(name.ends_with('~')
                || name.starts_with(".#")
                || (name.starts_with('#') && name.ends_with('#')));
        // Follows symlinks, as Nomad's stat does.
        if !wanted || entry.path().is_dir() {
            continue;
        }
        files.push(entry.path());
        if files.len() > MAX_DIR_FILES {
            return Err(ConfigError::at(
                &shown,
                None,
                format!("more than {MAX_DIR_FILES} config files; combine them"),
            ));
        }
    }
    files.sort();
    Ok(files)
}

/// Reads and parses one config file (JSON when its name ends in `.json`, else HCL).
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigErrors> {
    let shown = path.display().to_string();
    let fail = |m: String| ConfigErrors::from(ConfigError::at(&shown, None, m));
    let meta = std::fs::metadata(path).map_err(|e| {
        fail(format!(
            "cannot read agent config: {e}; check the -config path"
        ))
    })?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(fail(format!(
            "{} bytes is more than an agent config may hold ({MAX_FILE_BYTES})",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(format!("cannot read agent config: {e}")))?;
    parse(&text, &shown)
}

/// Parses one config file's text; `name` is how errors name it (and `.json` picks JSON).
pub fn parse(text: &str, name: &str) -> Result<FileConfig, ConfigErrors> {
    let mut config: FileConfig = if name.ends_with(".json") {
        let mut de = serde_json::Deserializer::from_str(text);
        let config = decode(
            &mut de,
            name,
            &KeyLines::default(),
            |e: &serde_json::Error| (e.line() > 0).then_some(e.line()),
        )?;
        de.end()
            .map_err(|e| ConfigError::at(name, Some(e.line()), e.to_string()))?;
        FileConfig {
            lines: KeyLines::of_json(text),
            ..config
        }
    } else {
        let body = hcl::edit::parser::parse_body(text).map_err(|e| {
            ConfigError::at(
                name,
                Some(e.location().line()),
                format!(
                    "syntax error: {} (in: {})",
                    e.message().to_lowercase(),
                    e.line().trim()
                ),
            )
        })?;
        let lines = KeyLines::of_hcl(text, &body);
        let de = hcl::de::Deserializer::from_body(hcl::Body::from(body));
        let config: FileConfig = decode(de, name, &lines, |_: &hcl::Error| None)?;
        FileConfig { lines, ..config }
    };
    config.source = name.to_string();
    check_plugins(&config)?;
    Ok(config)
}

/// Deserializes with the path of the key that failed, and places it: the deserializer's own
/// line when it has one (JSON), else the line the key is written on.
fn decode<'de, D, T>(
    de: D,
    name: &str,
    lines: &KeyLines,
    own_line: impl Fn(&D::Error) -> Option<usize>,
) -> Result<T, ConfigError>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = key_path(e.path());
        let line = own_line(e.inner()).or_else(|| lines.line_of(&path));
        let message = e.inner().to_string();
        if path.is_empty() {
            ConfigError::at(name, line, message)
        } else {
            // The line says which of several blocks it is; the message shows the key as written.
            ConfigError::at(name, line, format!("{}: {message}", strip_indices(&path)))
        }
    })
}

/// `server[1].server_join.retry_join[0]`, as [`KeyLines`] records paths.
fn key_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        let key = match segment {
            Segment::Map { key } => key.as_str(),
            Segment::Enum { variant } => variant.as_str(),
            Segment::Seq { index } => {
                out.push_str(&format!("[{index}]"));
                continue;
            }
            Segment::Unknown => continue,
        };
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(key);
    }
    out
}

/// The plugins noded has, and the options each takes.
fn check_plugins(config: &FileConfig) -> Result<(), ConfigErrors> {
    let name = &config.source;
    let mut errors = Vec::new();
    for (plugin, block) in &config.plugin {
        let known: &[&str] = match plugin.as_str() {
            "raw_exec" => &["enabled"],
            "exec" => &[
                "allow_caps",
                "denied_host_uids",
                "denied_host_gids",
                "default_pid_mode",
                "default_ipc_mode",
            ],
            other => {
                errors.push(ConfigError::at(
                    name,
                    config.lines.line_of(&format!("plugin.{other}")),
                    format!(
                        "plugin {other:?} is unknown (noded has plugins \"exec\" and \"raw_exec\")"
                    ),
                ));
                continue;
            }
        };
        for key in block.config.keys() {
            if !known.contains(&key.as_str()) {
                errors.push(ConfigError::at(
                    name,
                    config
                        .lines
                        .line_of(&format!("plugin.{plugin}.config.{key}")),
                    format!(
                        "plugin {plugin:?} config: unknown option {key:?} (known: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}
