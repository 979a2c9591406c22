//! Atomic symlink flips and the static root links.
//!
//! A flip makes a fresh symlink under a temporary name and rename(2)s it over
//! the old one: at every instant the name resolves to either the old target or
//! the new one, never to nothing. Unlink-then-symlink would leave a window in
//! which `www` does not exist and nginx answers 404.

use std::path::Path;

use crate::state::root::TMP_LINK_PREFIX;

use crate::error::{Error, IoContext, Result};

/// Point `dir/name` at `target` (relative text, stored as is) with one rename(2).
pub(crate) fn flip(dir: &Path, name: &str, target: &str) -> Result<()> {
    let link = dir.join(name);
    if let Ok(meta) = std::fs::symlink_metadata(&link) {
        if !meta.file_type().is_symlink() {
            return Err(Error::with_help(
                format!("{} is a real {}, not a symlink, so it cannot be switched", link.display(), if meta.is_dir() { "directory" } else { "file" }),
                format!("move it out of the way (symdeploy never deletes it), then deploy again; it should be a symlink to {target}"),
            ));
        }
    }
    let tmp = dir.join(format!("{TMP_LINK_PREFIX}{name}-{}", std::process::id()));
    // A leftover from a crashed run of the same pid would make symlink() fail.
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).at("create symlink", &tmp)?;
    crate::sys::faults::point(&format!("before-rename-{name}"));
    if let Err(e) = std::fs::rename(&tmp, &link) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io("rename a new symlink over", &link, e));
    }
    // The rename is atomic; syncing the directory makes it durable too.
    sync_dir(dir);
    tracing::info!(link = %link.display(), target, "flipped");
    Ok(())
}

/// The relative target a root link should have for a release.
pub(crate) fn release_target(commit: crate::state::commit::Commit) -> String {
    format!("releases/{commit}")
}

/// Make or repair the static [links] (www, app, www_warmup, ...): they resolve
/// through warmup/production and never flip, but a deploy restores them if
/// someone removed or changed one.
pub(crate) fn ensure_static(dir: &Path, links: &[(String, String)]) -> Result<Vec<String>> {
    let mut changed = Vec::new();
    for (name, target) in links {
        let current = std::fs::read_link(dir.join(name)).ok();
        if current.as_deref() != Some(Path::new(target)) {
            flip(dir, name, target)?;
            changed.push(format!("{name} -> {target}"));
        }
    }
    Ok(changed)
}

/// Remove temporary links left by a crashed run (only ever called under the lock).
pub(crate) fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(TMP_LINK_PREFIX) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// fsync a directory so a rename in it survives a power cut.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flip_replaces_a_link_and_leaves_no_temporary() {
        let t = tempfile::tempdir().unwrap();
        flip(t.path(), "warmup", "releases/a").unwrap();
        flip(t.path(), "warmup", "releases/b").unwrap();
        assert_eq!(
            std::fs::read_link(t.path().join("warmup")).unwrap(),
            Path::new("releases/b")
        );
        let names: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn flip_refuses_to_replace_a_real_directory() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("www")).unwrap();
        let e = flip(t.path(), "www", "production/www")
            .unwrap_err()
            .to_string();
        assert!(e.contains("real directory"), "{e}");
        assert!(t.path().join("www").is_dir());
    }
}
