//! A server's Raft node id: chosen once at random, kept in `<data_dir>/server/node-id`.
//!
//! The id is what the membership records, so it must outlive restarts and never be shared: a
//! second server started on a copy of the data dir would be taken for the first. A data dir
//! written before ids were stored holds a log of the single-server era, whose only member was
//! node 1; it keeps that id.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{RAFT_DB_FILE, SERVER_DIR};

/// The file under `<data_dir>/server/` holding the id, in decimal.
pub const NODE_ID_FILE: &str = "node-id";
/// The id of the only server of regions created before ids were stored.
const LEGACY_SINGLE_SERVER_ID: u64 = 1;

/// Reading or writing the node id file failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeIdError {
    #[error("cannot {op} {path}: {source}; check that the data dir is writable")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} holds {found:?}, which is not a node id (a decimal number above 0); it is \
         damaged: restore it from a backup, or if this server's data dir is otherwise empty \
         delete it to pick a new id"
    )]
    Invalid { path: PathBuf, found: String },
}

/// Returns this server's node id, creating it (random, non-zero) on first start.
pub fn load_or_create(data_dir: &Path) -> Result<u64, NodeIdError> {
    let dir = data_dir.join(SERVER_DIR);
    let path = dir.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return match text.trim().parse::<u64>() {
                Ok(id) if id > 0 => Ok(id),
                _ => Err(NodeIdError::Invalid {
                    path,
                    found: text.chars().take(64).collect(),
                }),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(NodeIdError::Io {
                op: "read",
                path,
                source,
            })
        }
    }
    let id = if dir.join(RAFT_DB_FILE).exists() {
        LEGACY_SINGLE_SERVER_ID
    } else {
        random_id()
    };
    write_atomically(&dir, &path, id)?;
    Ok(id)
}

/// A random id above 0, from the operating system's randomness (through a v4 uuid).
fn random_id() -> u64 {
    loop {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&bytes[..8]);
        // Kept below 2^53 so that it survives any JSON reader as a number.
        let id = u64::from_be_bytes(first) >> 11;
        if id > LEGACY_SINGLE_SERVER_ID {
            return id;
        }
    }
}

fn write_atomically(dir: &Path, path: &Path, id: u64) -> Result<(), NodeIdError> {
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| NodeIdError::Io { op, path, source }
    };
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let temp = dir.join(format!("{NODE_ID_FILE}.tmp"));
    let mut file = std::fs::File::create(&temp).map_err(io("create", &temp))?;
    file.write_all(format!("{id}\n").as_bytes())
        .map_err(io("write", &temp))?;
    file.sync_all().map_err(io("sync", &temp))?;
    std::fs::rename(&temp, path).map_err(io("rename into place", path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_chosen_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let id = load_or_create(dir.path()).unwrap();
        assert!(id > 1);
        assert_eq!(load_or_create(dir.path()).unwrap(), id);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(load_or_create(other.path()).unwrap(), id);
    }

    #[test]
    fn a_data_dir_from_the_single_server_era_keeps_node_1() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(SERVER_DIR)).unwrap();
        std::fs::write(dir.path().join(SERVER_DIR).join(RAFT_DB_FILE), b"").unwrap();
        assert_eq!(load_or_create(dir.path()).unwrap(), 1);
    }

    #[test]
    fn a_damaged_id_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(SERVER_DIR)).unwrap();
        std::fs::write(dir.path().join(SERVER_DIR).join(NODE_ID_FILE), "garbage").unwrap();
        let err = load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("node-id") && err.contains("garbage"), "{err}");
    }
}
