//! A dispatched job's payload, written into the task's `local/` directory before the task
//! starts (Nomad's `dispatch_payload` task hook): `local/<dispatch_payload.file>`, owned by
//! the task's user. The path is resolved beneath `local/` (no `..`, no symlinks), since the
//! job's author chose it and the directory may be the task's own from an earlier run.

use std::io::Write;
use std::os::unix::fs::{fchown, PermissionsExt};
use std::path::Path;

use base64::Engine;
use isolation::path::{create_dir_all_beneath, create_file_beneath, Resolve};

/// Writes `payload_base64` (as the job carries it) to `file` beneath `local_dir`, owned by
/// `uid`/`gid`. Errors say which file and why, for the task's setup failure event.
pub fn write(
    local_dir: &Path,
    file: &str,
    payload_base64: &str,
    uid: u32,
    gid: u32,
) -> Result<(), String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload_base64.as_bytes())
        .map_err(|e| format!("dispatch payload: not base64 ({e}); dispatch the job again"))?;
    let rel = Path::new(file);
    if rel.is_absolute() || file.is_empty() {
        return Err(format!(
            "dispatch_payload.file {file:?} must be a relative path inside the task's local/ directory"
        ));
    }
    if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all_beneath(local_dir, parent, 0o755)
            .map_err(|e| format!("dispatch payload: {e}"))?;
    }
    let mut out = create_file_beneath(local_dir, rel, 0o644, Resolve::STRICT)
        .map_err(|e| format!("dispatch payload: {e}"))?;
    let target = local_dir.join(rel);
    out.write_all(&bytes)
        .and_then(|()| out.set_permissions(std::fs::Permissions::from_mode(0o644)))
        .and_then(|()| fchown(&out, Some(uid), Some(gid)))
        .map_err(|e| format!("dispatch payload: writing {}: {e}", target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_lands_in_local_and_cannot_leave_it() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("local");
        std::fs::create_dir(&local).unwrap();
        let (uid, gid) = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        write(&local, "in/put.txt", "aGVsbG8=", uid, gid).unwrap();
        assert_eq!(std::fs::read(local.join("in/put.txt")).unwrap(), b"hello");
        for bad in ["../escape", "/etc/x", ""] {
            assert!(write(&local, bad, "aGVsbG8=", uid, gid).is_err(), "{bad}");
        }
        assert!(!dir.path().join("escape").exists());
        std::os::unix::fs::symlink("/tmp", local.join("link")).unwrap();
        assert!(write(&local, "link/x", "aGVsbG8=", uid, gid).is_err());
        assert!(write(&local, "bad", "%%%", uid, gid).is_err());
    }
}
