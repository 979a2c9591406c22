//! Removing a release: checked first (a release that cannot be removed
//! keeps its name, files and record), then renamed away in one rename(2),
//! then deleted, possibly later from `.symdeploy/trash/`.

use crate::ctx::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::state::release;
use crate::state::release_name::ReleaseName;
use crate::sys::output;

/// `.symdeploy/trash`: releases moved aside, waiting for deletion.
pub(crate) fn trash_dir(root: &crate::state::root::Root) -> std::path::PathBuf {
    root.trash()
}

pub(crate) fn trash_entries(ctx: &Ctx) -> usize {
    std::fs::read_dir(trash_dir(&ctx.root)).map_or(0, |d| d.count())
}

/// Delete what was moved aside; with the lock held.
pub(crate) fn empty_trash(ctx: &Ctx) {
    let Ok(entries) = std::fs::read_dir(trash_dir(&ctx.root)) else {
        return;
    };
    for e in entries.flatten() {
        let started = std::time::Instant::now();
        match std::fs::remove_dir_all(e.path()) {
            Ok(()) => output::detail(&format!(
                "deleted {} in {}",
                e.file_name().to_string_lossy(),
                crate::sys::fs::human_duration(started.elapsed())
            )),
            Err(err) => output::warning(&format!("cannot delete {}: {err}", e.path().display())),
        }
    }
}

/// Move a release out of releases/ (one rename) and forget its record.
pub(crate) fn move_aside(ctx: &Ctx, name: &ReleaseName) -> Result<()> {
    let dir = ctx.root.release(name);
    let trash = trash_dir(&ctx.root);
    std::fs::create_dir_all(&trash).at("create directory", &trash)?;
    let target = trash.join(format!("{name}-{}", crate::sys::fs::unique_token()));
    match std::fs::rename(&dir, &target) {
        Ok(()) => {}
        // releases/ on its own filesystem: aside within it, as a temporary
        // that the next sweep of leftovers deletes (`crate::session::sweep`).
        Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => {
            let doomed = ctx.root.doomed_release(name);
            std::fs::rename(&dir, &doomed).at("move away", &dir)?;
        }
        Err(e) => return Err(crate::error::Error::io("move away", &dir, e)),
    }
    crate::sys::symlink::sync_dir(&ctx.root.releases());
    release::forget(&ctx.root, name);
    crate::state::schema::forget(ctx, name);
    Ok(())
}

/// Remove one release directory and its record. It is checked first, so a
/// release that cannot be removed keeps its name, its files and its record;
/// then it is renamed to a temporary name, so a half-removed release never
/// shows under its own name. Should removal still fail halfway (a race, a
/// cause the check does not know), the name is restored and the release
/// marked failed: never a ready record on missing files.
pub(crate) fn remove_release(ctx: &Ctx, name: &ReleaseName) -> Result<()> {
    let dir = ctx.root.release(name);
    let place = name.place();
    if let Err(blocker) = removable(&dir) {
        return Err(blocker.error(&place));
    }
    let doomed = ctx.root.doomed_release(name);
    std::fs::rename(&dir, &doomed).at("move away", &dir)?;
    if let Err(e) = std::fs::remove_dir_all(&doomed) {
        let restored = std::fs::rename(&doomed, &dir);
        let _ = release::set_state(
            &ctx.root,
            name,
            release::State::Failed,
            Some(format!("cleanup removed part of it: {e}")),
        );
        return Err(Error::with_help(
            format!(
                "could not remove {place}: {e}; part of it is gone, so it is marked failed{}",
                match restored {
                    Ok(()) => String::new(),
                    Err(r) => format!(" (and it stays at {}: {r})", doomed.display()),
                }
            ),
            "find what holds it (`lsattr -R`, owners, mounts), fix that, and run `symdeploy cleanup`",
        ));
    }
    release::forget(&ctx.root, name);
    crate::state::schema::forget(ctx, name);
    Ok(())
}

/// What keeps a release directory from being removed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Blocker {
    /// The file or directory in the way.
    pub(crate) path: std::path::PathBuf,
    /// Why.
    pub(crate) kind: BlockerKind,
}

/// Why a path blocks a removal.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BlockerKind {
    /// chattr +i
    Immutable,
    /// chattr +a
    AppendOnly,
    /// A directory whose entries we may not unlink, with the OS's reason.
    NotWritable(String),
    /// A directory we cannot read, with the OS's reason.
    Unreadable(String),
}

impl Blocker {
    pub(crate) fn error(&self, name: &str) -> Error {
        let p = self.path.display();
        let (why, fix) = match &self.kind {
            BlockerKind::Immutable => (
                "it is immutable (chattr +i)".to_string(),
                format!("`chattr -i {p}`"),
            ),
            BlockerKind::AppendOnly => (
                "it is append-only (chattr +a)".to_string(),
                format!("`chattr -a {p}`"),
            ),
            BlockerKind::NotWritable(e) => (
                format!("its entries cannot be removed ({e})"),
                format!(
                    "give user {} write access to it (`chown -R {} {p}`)",
                    crate::sys::fs::current_user(),
                    crate::sys::fs::current_user()
                ),
            ),
            BlockerKind::Unreadable(e) => (
                format!("it cannot be read ({e})"),
                format!("give user {} access to it", crate::sys::fs::current_user()),
            ),
        };
        Error::with_help(
            format!("could not remove {name}: {p}: {why}; it keeps its name and record"),
            format!("run {fix}, then `symdeploy cleanup`"),
        )
    }
}

/// Walk `dir` (never following symlinks) for the first thing that would
/// stop `remove_dir_all` halfway.
pub(crate) fn removable(dir: &std::path::Path) -> std::result::Result<(), Blocker> {
    use nix::unistd::{access, AccessFlags};
    let blocker = |path: &std::path::Path, kind| Blocker {
        path: path.to_path_buf(),
        kind,
    };
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        if let Some(kind) = attribute_blocker(&d) {
            return Err(blocker(&d, kind));
        }
        // Unlinking an entry needs write and search permission on its directory.
        if let Err(e) = access(&d, AccessFlags::W_OK | AccessFlags::X_OK) {
            return Err(blocker(&d, BlockerKind::NotWritable(e.desc().to_string())));
        }
        let entries = std::fs::read_dir(&d)
            .map_err(|e| blocker(&d, BlockerKind::Unreadable(e.to_string())))?;
        for entry in entries {
            let entry = entry.map_err(|e| blocker(&d, BlockerKind::Unreadable(e.to_string())))?;
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => todo.push(path),
                _ => {
                    if let Some(kind) = attribute_blocker(&path) {
                        return Err(blocker(&path, kind));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The immutable or append-only attribute of `path` (not followed), from
/// statx: one call, no need to open the file.
fn attribute_blocker(path: &std::path::Path) -> Option<BlockerKind> {
    use nix::libc;
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statx only writes into `buf`, which is a plain C struct of the
    // right size; `c` is a valid NUL-terminated path for the call's duration.
    let mut buf: libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_BASIC_STATS,
            &mut buf,
        )
    };
    if rc != 0 {
        return None;
    }
    let known = buf.stx_attributes_mask;
    let set = buf.stx_attributes & known;
    if set & (libc::STATX_ATTR_IMMUTABLE as u64) != 0 {
        Some(BlockerKind::Immutable)
    } else if set & (libc::STATX_ATTR_APPEND as u64) != 0 {
        Some(BlockerKind::AppendOnly)
    } else {
        None
    }
}

/// Sweep what an interrupted run left of releases (lock held): the trash,
/// and directories in releases/ under the temporary prefix (an export cut
/// short, a removal cut short). Never a release under its own name.
pub(crate) fn sweep(ctx: &Ctx) {
    empty_trash(ctx);
    let Ok(entries) = std::fs::read_dir(ctx.root.releases()) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name()
            .to_string_lossy()
            .starts_with(crate::state::root::TMP_PREFIX)
        {
            output::detail(&format!(
                "removing {}, left by an interrupted deploy",
                e.path().display()
            ));
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ordinary_tree_is_removable() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        std::fs::write(t.path().join("a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", t.path().join("a/link")).unwrap();
        assert_eq!(removable(t.path()), Ok(()));
    }

    #[test]
    fn an_immutable_file_is_found_before_anything_is_removed() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        let stuck = t.path().join("a/b/f");
        std::fs::write(&stuck, "x").unwrap();
        let set = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&stuck)
            .output();
        if !set.is_ok_and(|o| o.status.success()) {
            eprintln!("SKIPPED: chattr +i does not work on {}", t.path().display());
            return;
        }
        let found = removable(t.path());
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&stuck)
            .status();
        assert_eq!(
            found,
            Err(Blocker {
                path: stuck,
                kind: BlockerKind::Immutable
            })
        );
        let e = Blocker {
            path: "/r/x".into(),
            kind: BlockerKind::Immutable,
        }
        .error("releases/abc");
        assert!(e.to_string().contains("immutable"), "{e}");
        assert!(e.help().unwrap().contains("chattr -i /r/x"));
    }
}
