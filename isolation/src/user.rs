//! Resolving a task's user to numeric ids from `passwd`/`group` files.
//!
//! Owns parsing `<etc_dir>/passwd` and `<etc_dir>/group` (the host's `/etc` or a task image's).
//! It never calls NSS (`getpwnam`): NSS may load modules, talk to daemons or take locks, none
//! of which is acceptable in a child process or a sandboxed root. It does not decide which user
//! a task runs as: the caller does.

use std::path::{Path, PathBuf};

/// The numeric identity a sandboxed process gets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResolvedUser {
    /// The user name, or the number as text when given numerically without a passwd entry.
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the primary gid first, then every group listing the user).
    pub groups: Vec<u32>,
    /// Home directory from passwd (informational: the sandbox does not set `HOME`).
    pub home: PathBuf,
}

impl ResolvedUser {
    /// `root` (0:0) without consulting any file.
    pub fn root() -> ResolvedUser {
        ResolvedUser {
            name: "root".to_string(),
            uid: 0,
            gid: 0,
            groups: vec![0],
            home: PathBuf::from("/root"),
        }
    }
}

/// Why a user could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user {user:?} is empty: give a name or uid such as \"nobody\" or \"65534\"")]
    Empty { user: String },
    #[error("unknown user {user:?}: no entry in {path}; create the user or use \"uid:gid\"")]
    UnknownUser { user: String, path: PathBuf },
    #[error("unknown group {group:?} (for user {user:?}): no entry in {path}")]
    UnknownGroup {
        user: String,
        group: String,
        path: PathBuf,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: malformed entry for {user:?}: {reason}")]
    Malformed {
        path: PathBuf,
        line: usize,
        user: String,
        reason: String,
    },
}

/// One parsed `passwd` line.
struct PasswdEntry<'a> {
    line: usize,
    name: &'a str,
    uid: Option<u32>,
    gid: Option<u32>,
    home: &'a str,
}

/// Resolves `user` against `<etc_dir>/passwd` and `<etc_dir>/group`.
///
/// `user` is `NAME`, `UID`, `NAME:GROUP`, `UID:GID` (either side a name or a number). A numeric
/// uid without a passwd entry is accepted only with an explicit group (`"1234:1234"`), so a
/// typo never silently runs a task in group 0.
pub fn lookup(user: &str, etc_dir: &Path) -> Result<ResolvedUser, UserError> {
    let spec = user.trim();
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u.trim(), Some(g.trim())),
        None => (spec, None),
    };
    if user_part.is_empty() || group_part.is_some_and(str::is_empty) {
        return Err(UserError::Empty {
            user: user.to_string(),
        });
    }
    let passwd_path = etc_dir.join("passwd");
    let group_path = etc_dir.join("group");
    let passwd = read(&passwd_path)?;
    let numeric_uid = user_part.parse::<u32>().ok();

    let entry = parse_passwd(&passwd).find(|e| match numeric_uid {
        Some(uid) => e.uid == Some(uid),
        None => e.name == user_part,
    });

    let (name, uid, primary_gid, home) = match entry {
        Some(e) => {
            let uid = e.uid.ok_or_else(|| UserError::Malformed {
                path: passwd_path.clone(),
                line: e.line,
                user: user.to_string(),
                reason: "uid is not a number".to_string(),
            })?;
            let gid = e.gid.ok_or_else(|| UserError::Malformed {
                path: passwd_path.clone(),
                line: e.line,
                user: user.to_string(),
                reason: "gid is not a number".to_string(),
            })?;
            (e.name.to_string(), uid, Some(gid), PathBuf::from(e.home))
        }
        None => match (numeric_uid, group_part) {
            (Some(uid), Some(_)) => (uid.to_string(), uid, None, PathBuf::from("/")),
            _ => {
                return Err(UserError::UnknownUser {
                    user: user.to_string(),
                    path: passwd_path,
                })
            }
        },
    };

    let group_text = match read(&group_path) {
        Ok(text) => text,
        // A missing group file only matters when a group must be resolved by name.
        Err(UserError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            String::new()
        }
        Err(e) => return Err(e),
    };
    let gid = match group_part {
        None => primary_gid.unwrap_or(uid),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => parse_group(&group_text)
                .find(|(gname, _, _)| *gname == g)
                .and_then(|(_, gid, _)| gid)
                .ok_or_else(|| UserError::UnknownGroup {
                    user: user.to_string(),
                    group: g.to_string(),
                    path: group_path.clone(),
                })?,
        },
    };

    let mut groups = vec![gid];
    for (_, group_gid, members) in parse_group(&group_text) {
        let Some(group_gid) = group_gid else { continue };
        if members.split(',').any(|m| m.trim() == name) && !groups.contains(&group_gid) {
            groups.push(group_gid);
        }
    }

    Ok(ResolvedUser {
        name,
        uid,
        gid,
        groups,
        home,
    })
}

fn read(path: &Path) -> Result<String, UserError> {
    std::fs::read_to_string(path).map_err(|source| UserError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// `passwd` entries; comments, NIS compat lines (`+`/`-`) and lines with too few fields are
/// skipped, as glibc's files backend does.
fn parse_passwd(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().enumerate().filter_map(|(i, line)| {
        if line.starts_with('#') || line.starts_with('+') || line.starts_with('-') {
            return None;
        }
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 7 {
            return None;
        }
        Some(PasswdEntry {
            line: i + 1,
            name: fields.first()?,
            uid: fields.get(2)?.parse().ok(),
            gid: fields.get(3)?.parse().ok(),
            home: fields.get(5)?,
        })
    })
}

/// `group` entries as (name, gid, members).
fn parse_group(text: &str) -> impl Iterator<Item = (&str, Option<u32>, &str)> {
    text.lines().filter_map(|line| {
        if line.starts_with('#') || line.starts_with('+') || line.starts_with('-') {
            return None;
        }
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 4 {
            return None;
        }
        Some((
            *fields.first()?,
            fields.get(2)?.parse().ok(),
            *fields.get(3)?,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("passwd"),
            "# comment\n\
             root:x:0:0:root:/root:/bin/bash\n\
             daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
             +nisuser::::::\n\
             broken:x:notanumber:1::/:/bin/sh\n\
             short:x:5\n\
             app:x:1000:1000:App,,,:/home/app:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("group"),
            "root:x:0:\n\
             daemon:x:1:\n\
             tty:x:5:app\n\
             docker:x:999:app,other\n\
             app:x:1000:\n\
             nogroup:x:65534:\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn resolves_by_name_with_supplementary_groups() {
        let etc = fixture();
        let u = lookup("app", etc.path()).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.groups, vec![1000, 5, 999]);
        assert_eq!(u.home, PathBuf::from("/home/app"));
        assert_eq!(u.name, "app");
    }

    #[test]
    fn resolves_nobody_by_name_and_by_uid() {
        let etc = fixture();
        let by_name = lookup("nobody", etc.path()).unwrap();
        let by_uid = lookup("65534", etc.path()).unwrap();
        assert_eq!(by_name, by_uid);
        assert_eq!(
            (by_name.uid, by_name.gid, by_name.groups.clone()),
            (65534, 65534, vec![65534])
        );
    }

    #[test]
    fn explicit_group_by_name_or_number() {
        let etc = fixture();
        let u = lookup("app:docker", etc.path()).unwrap();
        assert_eq!(u.gid, 999);
        assert_eq!(u.groups, vec![999, 5]);
        let u = lookup("nobody:1", etc.path()).unwrap();
        assert_eq!(u.gid, 1);
    }

    #[test]
    fn numeric_uid_without_entry_needs_a_group() {
        let etc = fixture();
        let err = lookup("4242", etc.path()).unwrap_err();
        assert!(matches!(err, UserError::UnknownUser { .. }), "{err}");
        assert!(err.to_string().contains("passwd"), "{err}");
        let u = lookup("4242:4243", etc.path()).unwrap();
        assert_eq!((u.uid, u.gid, u.name.as_str()), (4242, 4243, "4242"));
    }

    #[test]
    fn unknown_names_and_bad_entries_are_clear_errors() {
        let etc = fixture();
        let err = lookup("ghost", etc.path()).unwrap_err();
        assert!(
            err.to_string().starts_with("unknown user \"ghost\""),
            "{err}"
        );
        let err = lookup("app:ghosts", etc.path()).unwrap_err();
        assert!(
            err.to_string().contains("unknown group \"ghosts\""),
            "{err}"
        );
        let err = lookup("broken", etc.path()).unwrap_err();
        assert!(
            err.to_string().contains("passwd:5: malformed entry"),
            "{err}"
        );
        assert!(matches!(
            lookup("", etc.path()),
            Err(UserError::Empty { .. })
        ));
        assert!(matches!(
            lookup("app:", etc.path()),
            Err(UserError::Empty { .. })
        ));
        // NIS compat and short lines never match.
        assert!(lookup("+nisuser", etc.path()).is_err());
        assert!(lookup("short", etc.path()).is_err());
    }

    #[test]
    fn missing_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = lookup("root", dir.path()).unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
        assert!(err.to_string().contains("passwd"), "{err}");
    }
}
