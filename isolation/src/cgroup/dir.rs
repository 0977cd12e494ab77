//! One directory of a task cgroup (its path and the hierarchy it is in), and reading and
//! writing control files with errors that name them. Shared by the backends (`v1`, `v2`),
//! the manager and the task handle.

use std::path::{Path, PathBuf};

use super::{CgroupError, CgroupFs};

/// One directory of a task cgroup.
#[derive(Debug, Clone)]
pub(super) struct CgroupDir {
    pub(super) path: PathBuf,
    pub(super) kind: DirKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DirKind {
    /// A v1 hierarchy with these controllers.
    V1 {
        controllers: Vec<String>,
        mount_options: String,
        mount_name: String,
    },
    /// The controller-less cgroup2 tree of a hybrid host.
    Unified,
    /// The cgroup2 tree of a pure-v2 host.
    V2,
}

impl CgroupDir {
    pub(super) fn has(&self, controller: &str) -> bool {
        match &self.kind {
            DirKind::V1 { controllers, .. } => controllers.iter().any(|c| c == controller),
            DirKind::V2 => true,
            DirKind::Unified => false,
        }
    }

    pub(super) fn is_v2_tree(&self) -> bool {
        matches!(self.kind, DirKind::V2 | DirKind::Unified)
    }

    pub(super) fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

pub(super) fn read(fs: &dyn CgroupFs, path: &Path) -> Result<String, CgroupError> {
    fs.read(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

pub(super) fn write(fs: &dyn CgroupFs, path: &Path, value: &str) -> Result<(), CgroupError> {
    fs.write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

pub(super) fn parse_u64(path: &Path, text: &str) -> Result<u64, CgroupError> {
    text.trim().parse::<u64>().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        reason: format!("expected a number, found {:?}", text.trim()),
    })
}

/// The value of `key` in a flat-keyed file (`key value` per line), if present.
pub(super) fn keyed(path: &Path, text: &str, key: &str) -> Result<Option<u64>, CgroupError> {
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if parts.next() == Some(key) {
            let value = parts.next().unwrap_or("");
            return parse_u64(path, value).map(Some);
        }
    }
    Ok(None)
}

pub(super) fn read_u64(fs: &dyn CgroupFs, path: &Path) -> Result<u64, CgroupError> {
    let text = read(fs, path)?;
    parse_u64(path, &text)
}
