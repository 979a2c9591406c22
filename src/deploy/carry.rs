//! Carry build directories (vendor/, node_modules/) from the previous release
//! into a new one before the build, so composer and npm only update what
//! changed (Deployer's copy_dirs).
//!
//! Copies are real copies: reflinks where the filesystem has them
//! (`reflink-copy`), an in-kernel copy otherwise. Never hard links: a build writing in place into
//! a hard-linked vendor/ would change the running production release.

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::sys::output;

/// Copy each `paths` entry from `previous` into `release`, skipping (with a
/// note) what the previous release does not have.
pub(crate) fn carry(previous: &Path, release: &Path, paths: &[String]) -> Result<()> {
    for path in paths {
        let from = previous.join(path);
        let to = release.join(path);
        match std::fs::symlink_metadata(&from) {
            Ok(m) if m.is_dir() || m.is_file() => {}
            _ => {
                output::detail(&format!(
                    "{path}: not in the previous release, nothing to carry"
                ));
                continue;
            }
        }
        if std::fs::symlink_metadata(&to).is_ok() {
            output::detail(&format!("{path}: the new release has its own, not carried"));
            continue;
        }
        if let Some(parent) = to.parent() {
            ensure_real_dirs(release, parent)?;
        }
        let started = std::time::Instant::now();
        let n = copy_tree(&from, &to)?;
        output::detail(&format!(
            "{path}: carried {n} files from the previous release in {}",
            crate::sys::fs::human_duration(started.elapsed())
        ));
    }
    Ok(())
}

/// Create `dir` (inside `release`) as real directories, refusing symlinks.
fn ensure_real_dirs(release: &Path, dir: &Path) -> Result<()> {
    let rel = dir.strip_prefix(release).unwrap_or(dir);
    let mut cur = release.to_path_buf();
    for part in rel.components() {
        cur.push(part);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::with_help(
                    format!(
                        "cannot carry into {}: it is not a directory in the new release",
                        cur.display()
                    ),
                    "change `carry` in deploy.toml",
                ))
            }
            Err(_) => std::fs::create_dir(&cur).at("create directory", &cur)?,
        }
    }
    Ok(())
}

/// Copy a file or directory tree, keeping modes and symlinks; returns the
/// number of files copied. Symlinks are copied as symlinks, never followed.
/// Directories are made by this thread; files are copied by one thread per
/// core, which matters when reflinks are not available.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> Result<u64> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    let (tx, rx) = crossbeam_channel::bounded::<Vec<(PathBuf, PathBuf, std::fs::Permissions)>>(16);
    let failed = std::sync::Mutex::new(None::<Error>);
    let copied = std::sync::atomic::AtomicU64::new(0);
    let mut dirs = Vec::new();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let rx = rx.clone();
            let (failed, copied) = (&failed, &copied);
            scope.spawn(move || {
                for batch in rx {
                    for (src, dst, perms) in batch {
                        if let Err(e) = copy_file(&src, &dst, perms) {
                            failed
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e);
                            return;
                        }
                        copied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
        drop(rx);
        let mut batch = Vec::new();
        let walked = walk(from, to, &tx, &mut batch, &mut dirs);
        if !batch.is_empty() {
            let _ = tx.send(batch);
        }
        drop(tx);
        if let Err(e) = walked {
            failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(e);
        }
    });
    if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    // Directory modes last: a read-only directory would have refused its files.
    for (dir, perms) in dirs.into_iter().rev() {
        std::fs::set_permissions(&dir, perms).at("set permissions of", &dir)?;
    }
    Ok(copied.into_inner())
}

type Batch = Vec<(PathBuf, PathBuf, std::fs::Permissions)>;

fn walk(
    from: &Path,
    to: &Path,
    tx: &crossbeam_channel::Sender<Batch>,
    batch: &mut Batch,
    dirs: &mut Vec<(PathBuf, std::fs::Permissions)>,
) -> Result<()> {
    let meta = std::fs::symlink_metadata(from).at("inspect", from)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(from).at("read symlink", from)?;
        std::os::unix::fs::symlink(target, to).at("create symlink", to)?;
    } else if ft.is_dir() {
        std::fs::create_dir(to).at("create directory", to)?;
        dirs.push((to.to_path_buf(), meta.permissions()));
        for entry in std::fs::read_dir(from).at("read directory", from)? {
            let entry = entry.at("read directory", from)?;
            walk(&entry.path(), &to.join(entry.file_name()), tx, batch, dirs)?;
        }
    } else if ft.is_file() {
        batch.push((from.to_path_buf(), to.to_path_buf(), meta.permissions()));
        if batch.len() >= 64 {
            // A send fails only when every worker stopped on an error, reported later.
            let _ = tx.send(std::mem::take(batch));
        }
    }
    // Sockets, fifos and devices have no business in a release: skipped.
    Ok(())
}

fn copy_file(from: &Path, to: &Path, perms: std::fs::Permissions) -> Result<()> {
    // A reflink shares the blocks copy-on-write (instant, and safe to
    // modify); where the filesystem has none, an in-kernel copy. Never onto
    // an existing file: that fails, as `create_new` would.
    reflink_copy::reflink_or_copy(from, to).at("copy into", to)?;
    std::fs::set_permissions(to, perms).at("set permissions of", to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn copies_are_independent_of_the_source() {
        let t = tempfile::tempdir().unwrap();
        let prev = t.path().join("prev");
        let new = t.path().join("new");
        std::fs::create_dir_all(prev.join("vendor/bin")).unwrap();
        std::fs::write(prev.join("vendor/autoload.php"), "a").unwrap();
        std::fs::write(prev.join("vendor/bin/tool"), "#!/bin/sh").unwrap();
        std::fs::set_permissions(
            prev.join("vendor/bin/tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink("bin/tool", prev.join("vendor/tool")).unwrap();
        std::fs::create_dir_all(&new).unwrap();
        carry(&prev, &new, &["vendor".into(), "node_modules".into()]).unwrap();
        assert_eq!(
            std::fs::read_link(new.join("vendor/tool")).unwrap(),
            Path::new("bin/tool")
        );
        let mode = std::fs::metadata(new.join("vendor/bin/tool"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        std::fs::write(new.join("vendor/autoload.php"), "changed").unwrap();
        assert_eq!(
            std::fs::read_to_string(prev.join("vendor/autoload.php")).unwrap(),
            "a"
        );
    }
}
