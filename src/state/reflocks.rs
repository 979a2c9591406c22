//! git's ref lock files (`refs/heads/main.lock`, `HEAD.lock`,
//! `packed-refs.lock`): which ones a ref transaction holds, whether a lock
//! is still the very file that was recorded, and every one the repository
//! has now.
//!
//! git creates `<ref>.lock` with O_EXCL while it updates a ref and renames
//! it over the ref (or removes it) when done. A receive-pack killed with
//! SIGKILL in between leaves the file behind, and every later update of
//! that ref fails with "cannot lock ref … File exists". Strict mode runs
//! its flips while git holds these locks, so it records them (path, inode,
//! change time) and recovery removes exactly those files once that
//! receive-pack is gone: a lock file made later by a live git process is
//! another file (another inode or change time) and is never touched.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One lock file git held for a transaction, as it was when recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HeldLock {
    /// Relative to the repository: `refs/heads/main.lock`, `HEAD.lock`.
    pub(crate) path: String,
    /// Its inode and change time: a lock file made later is another file.
    pub(crate) ino: u64,
    /// Seconds of its change time.
    pub(crate) ctime: i64,
    /// Nanoseconds of its change time.
    pub(crate) ctime_nsec: i64,
}

/// A ref name from git's hook input that is safe to join to the repository
/// path: `HEAD` or under `refs/`, without `..` or empty components.
fn safe_ref(name: &[u8]) -> bool {
    (name == b"HEAD" || name.starts_with(b"refs/"))
        && name
            .split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..")
        && !name.contains(&0)
}

pub(crate) fn identity(git_dir: &Path, rel: &str) -> Option<HeldLock> {
    let meta = std::fs::symlink_metadata(git_dir.join(rel)).ok()?;
    if !meta.is_file() {
        return None;
    }
    Some(HeldLock {
        path: rel.to_string(),
        ino: meta.ino(),
        ctime: meta.ctime(),
        ctime_nsec: meta.ctime_nsec(),
    })
}

/// The lock files of a transaction git has `prepared`: one per ref it
/// updates (HEAD too, when it follows the branch), and `packed-refs.lock`
/// when it deletes a ref (git holds it until the deletion is done). Names
/// that are not UTF-8 are kept as they are, byte for byte.
pub(crate) fn held<'a>(
    git_dir: &Path,
    names: impl IntoIterator<Item = &'a [u8]>,
    deletes: bool,
) -> Vec<HeldLock> {
    let mut out = Vec::new();
    let mut rels: Vec<Vec<u8>> = names
        .into_iter()
        .filter(|n| safe_ref(n))
        .map(|n| [n, b".lock"].concat())
        .collect();
    if deletes {
        rels.push(b"packed-refs.lock".to_vec());
    }
    for rel in rels {
        // Recorded as text; a name that is not UTF-8 cannot be, and is skipped.
        let Ok(rel) = String::from_utf8(rel) else {
            continue;
        };
        if let Some(l) = identity(git_dir, &rel) {
            out.push(l);
        }
    }
    out
}

/// Remove `lock` if it is still the file that was recorded; `Ok(false)`
/// when it is gone or is another file now.
pub(crate) fn remove_if_same(git_dir: &Path, lock: &HeldLock) -> std::io::Result<bool> {
    if !safe_ref(lock.path.trim_end_matches(".lock").as_bytes()) && lock.path != "packed-refs.lock"
    {
        return Ok(false);
    }
    if identity(git_dir, &lock.path).as_ref() != Some(lock) {
        return Ok(false);
    }
    match std::fs::remove_file(git_dir.join(&lock.path)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// How long a lock file no hook recorded must stay unchanged before it may
/// be taken for one a killed push left (see [`unrecorded`]): git holds a
/// ref lock for milliseconds, except during strict mode's flips (recorded).
pub(crate) const SETTLED: Duration = Duration::from_secs(2);

/// A lock file a receive-pack may have taken without its hook recording it
/// (killed between git locking the ref and the hook's first write): the
/// file at `rel`, made no earlier than `not_before`, whose content is what
/// that push wrote into it (`want`: the pushed id, or nothing for HEAD).
/// Returns it with its age.
pub(crate) fn unrecorded(
    git_dir: &Path,
    rel: &str,
    want: &[&str],
    not_before: std::time::SystemTime,
) -> Option<(HeldLock, Duration)> {
    let lock = identity(git_dir, rel)?;
    let meta = std::fs::symlink_metadata(git_dir.join(rel)).ok()?;
    let made = meta.modified().ok()?;
    if made < not_before || meta.len() > 100 {
        return None;
    }
    let content = std::fs::read_to_string(git_dir.join(rel)).ok()?;
    if !want.contains(&content.trim_end()) {
        return None;
    }
    let age = std::time::SystemTime::now()
        .duration_since(made)
        .unwrap_or_default();
    Some((lock, age))
}

/// A lock file the repository has now.
#[derive(Debug, Clone)]
pub(crate) struct Present {
    /// As recorded: relative to the repository.
    pub(crate) lock: HeldLock,
    /// Its full path.
    pub(crate) full: PathBuf,
    /// How long ago it was last changed.
    pub(crate) age: Option<Duration>,
}

/// Every ref lock file of the repository: `HEAD.lock`, `packed-refs.lock`
/// and `*.lock` under `refs/`.
pub(crate) fn present(git_dir: &Path) -> Vec<Present> {
    let mut rels = Vec::new();
    for top in ["HEAD.lock", "packed-refs.lock"] {
        if git_dir.join(top).is_file() {
            rels.push(top.to_string());
        }
    }
    let mut stack = vec![PathBuf::from("refs")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(git_dir.join(&dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let rel = dir.join(e.file_name());
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(rel);
            } else if t.is_file() && e.file_name().as_bytes().ends_with(b".lock") {
                if let Some(s) = rel.to_str() {
                    rels.push(s.to_string());
                }
            }
        }
    }
    rels.sort();
    let now = std::time::SystemTime::now();
    rels.into_iter()
        .filter_map(|rel| {
            let lock = identity(git_dir, &rel)?;
            let age = std::fs::symlink_metadata(git_dir.join(&rel))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| now.duration_since(m).ok());
            Some(Present {
                full: git_dir.join(&rel),
                lock,
                age,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_recorded_file_is_removed() {
        let t = tempfile::tempdir().unwrap();
        let git = t.path();
        std::fs::create_dir_all(git.join("refs/heads")).unwrap();
        std::fs::write(git.join("refs/heads/main.lock"), "x\n").unwrap();
        std::fs::write(git.join("HEAD.lock"), "x\n").unwrap();
        let held = held(
            git,
            [&b"refs/heads/main"[..], b"HEAD", b"refs/heads/other"],
            false,
        );
        let paths: Vec<&str> = held.iter().map(|l| l.path.as_str()).collect();
        assert_eq!(paths, ["refs/heads/main.lock", "HEAD.lock"]);
        assert_eq!(present(git).len(), 2);
        // HEAD.lock is replaced by another process's lock: not ours any more.
        std::fs::write(git.join("HEAD.lock.new"), "y\n").unwrap();
        std::fs::rename(git.join("HEAD.lock.new"), git.join("HEAD.lock")).unwrap();
        let other = identity(git, "HEAD.lock").unwrap();
        assert_ne!(other, held[1]);
        assert!(remove_if_same(git, &held[0]).unwrap());
        assert!(!remove_if_same(git, &held[1]).unwrap());
        assert!(!git.join("refs/heads/main.lock").exists());
        assert!(git.join("HEAD.lock").exists());
        // Gone already: nothing to do.
        assert!(!remove_if_same(git, &held[0]).unwrap());
    }

    #[test]
    fn an_unrecorded_lock_is_a_push_s_only_with_its_content_and_after_its_record() {
        let t = tempfile::tempdir().unwrap();
        let git = t.path();
        std::fs::create_dir_all(git.join("refs/tags")).unwrap();
        let before = std::time::SystemTime::now() - Duration::from_secs(5);
        std::fs::write(git.join("refs/tags/v1.lock"), "abc\n").unwrap();
        std::fs::write(git.join("HEAD.lock"), "").unwrap();
        assert!(unrecorded(git, "refs/tags/v1.lock", &["abc"], before).is_some());
        assert!(unrecorded(git, "HEAD.lock", &["", "abc"], before).is_some());
        // Another value: another process's update of that ref.
        assert!(unrecorded(git, "refs/tags/v1.lock", &["def"], before).is_none());
        // Made before the push recorded what it pushes: not its lock.
        let later = std::time::SystemTime::now() + Duration::from_secs(5);
        assert!(unrecorded(git, "refs/tags/v1.lock", &["abc"], later).is_none());
        assert!(unrecorded(git, "refs/tags/none.lock", &["abc"], before).is_none());
    }

    #[test]
    fn names_that_leave_the_repository_are_never_used() {
        for bad in [
            &b"refs/../config"[..],
            b"refs/heads//x",
            b"/etc/passwd",
            b"config",
            b"refs/./x",
        ] {
            assert!(!safe_ref(bad), "{}", String::from_utf8_lossy(bad));
        }
        assert!(safe_ref(b"refs/heads/caf\xe9"));
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("config.lock"), "x").unwrap();
        let forged = HeldLock {
            path: "config.lock".into(),
            ..identity(t.path(), "config.lock").unwrap()
        };
        assert!(!remove_if_same(t.path(), &forged).unwrap());
        assert!(t.path().join("config.lock").exists());
    }
}
