//! `symdeploy cleanup [--keep N] [--dry-run]`, also run after each successful
//! promote. Keeps the newest N ready releases plus production, warmup and the
//! previous production release; removes failed, bad and incomplete releases
//! older than the newest ready one. Never touches common/.

use crate::error::{Error, IoContext, Result};
use crate::ops::Ctx;
use crate::output;
use crate::release;
use crate::root::short;

/// One release and what cleanup decided for it.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The commit.
    pub commit: String,
    /// Its effective state.
    pub state: &'static str,
    /// Kept or removed, and why.
    pub keep: bool,
    /// Why.
    pub why: String,
}

/// `symdeploy cleanup` by hand: takes the lock.
pub fn run(ctx: &Ctx, keep: Option<usize>, dry_run: bool) -> Result<()> {
    let keep = keep.unwrap_or(ctx.config.keep_releases);
    if dry_run {
        return cleanup_locked(ctx, keep, true);
    }
    crate::ops::open_run_log(&ctx.root, "cleanup", "releases");
    let _lock = crate::ops::lock_and_recover(ctx, "cleanup")?;
    cleanup_locked(ctx, keep, false)
}

/// Decide what to keep; pure apart from reading state.
pub fn plan(ctx: &Ctx, keep: usize) -> Result<Vec<Decision>> {
    let root = &ctx.root;
    let production = root.production();
    let warmup = root.warmup();
    let previous = crate::ops::status::previous_production(ctx);
    let mut all: Vec<(String, &'static str, MadeAt)> = root
        .release_dirs()?
        .into_iter()
        .map(|c| {
            let state = release::effective_state(root, &c);
            let when = made_at(root, &c);
            (c, state, when)
        })
        .collect();
    // Newest first.
    all.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    let newest_ready = all.iter().find(|r| r.1 == "ready").map(|r| r.2);
    let mut ready_seen = 0;
    let mut out = Vec::new();
    for (commit, state, when) in all {
        let protected = if Some(&commit) == production.as_ref() {
            Some("production")
        } else if Some(&commit) == warmup.as_ref() {
            Some("warmup")
        } else if Some(&commit) == previous.as_ref() {
            Some("previous production")
        } else {
            None
        };
        let (keep_it, why) = if state == "ready" {
            ready_seen += 1;
            match protected {
                Some(p) => (true, p.to_string()),
                None if ready_seen <= keep => {
                    (true, format!("one of the {keep} newest ready releases"))
                }
                None => (
                    false,
                    format!("older than the {keep} newest ready releases"),
                ),
            }
        } else if let Some(p) = protected {
            (true, p.to_string())
        } else if newest_ready.as_ref().is_some_and(|n| when < *n) {
            (
                false,
                format!("{state}, older than the newest ready release"),
            )
        } else {
            (
                true,
                format!("{state}, newer than every ready release (kept for inspection)"),
            )
        };
        out.push(Decision {
            commit,
            state,
            keep: keep_it,
            why,
        });
    }
    Ok(out)
}

/// Clean up with the lock held (or, for a dry run, without changing anything).
pub fn cleanup_locked(ctx: &Ctx, keep: usize, dry_run: bool) -> Result<()> {
    let decisions = plan(ctx, keep)?;
    let removing: Vec<&Decision> = decisions.iter().filter(|d| !d.keep).collect();
    output::header(&format!(
        "cleanup{}: {} releases, removing {}",
        if dry_run {
            " (dry run: nothing is removed)"
        } else {
            ""
        },
        decisions.len(),
        removing.len()
    ));
    for d in &decisions {
        let verb = match (d.keep, dry_run) {
            (true, _) => "keep  ",
            (false, true) => "would remove",
            (false, false) => "remove",
        };
        output::detail(&format!("{verb} {} ({})", short(&d.commit), d.why));
    }
    if dry_run {
        return Ok(());
    }
    let mut failed = Vec::new();
    for d in removing {
        if let Err(e) = remove_release(ctx, &d.commit) {
            output::report(&e);
            failed.push(short(&d.commit).to_string());
        }
    }
    match failed.len() {
        0 => Ok(()),
        _ => Err(Error::with_help(
            format!(
                "cleanup could not remove {} release(s): {}",
                failed.len(),
                failed.join(", ")
            ),
            "see the errors above; each says what is in the way and what to run",
        )),
    }
}

/// The cleanup after a successful switch. Production has moved and notify
/// has run: nothing found here may fail the promote (or make git reject a
/// strict-mode tag push), so every problem becomes a `warning:` saying what
/// was left, why, and what to run.
pub fn cleanup_after_switch(ctx: &Ctx) {
    let keep = ctx.config.keep_releases;
    let decisions = match plan(ctx, keep) {
        Ok(d) => d,
        Err(e) => {
            output::warning(&format!(
                "cleanup skipped: {e}; the promote itself succeeded (run `symdeploy cleanup` once that is fixed)"
            ));
            return;
        }
    };
    let removing: Vec<&Decision> = decisions.iter().filter(|d| !d.keep).collect();
    output::header(&format!(
        "cleanup: {} releases, removing {}",
        decisions.len(),
        removing.len()
    ));
    for d in &decisions {
        let verb = if d.keep { "keep  " } else { "remove" };
        output::detail(&format!("{verb} {} ({})", short(&d.commit), d.why));
    }
    for d in removing {
        if let Err(e) = remove_release(ctx, &d.commit) {
            output::warning(&format!(
                "{e}; the promote itself succeeded, production is unchanged by this"
            ));
            if let Some(help) = e.help() {
                output::warning(&help);
            }
        }
    }
}

/// Remove one release directory and its record. It is checked first, so a
/// release that cannot be removed keeps its name, its files and its record;
/// then it is renamed to a temporary name, so a half-removed release never
/// shows under its own name. Should removal still fail halfway (a race, a
/// cause the check does not know), the name is restored and the release
/// marked failed: never a ready record on missing files.
fn remove_release(ctx: &Ctx, commit: &str) -> Result<()> {
    let dir = ctx.root.release(commit);
    let name = format!("releases/{}", short(commit));
    if let Err(blocker) = removable(&dir) {
        return Err(blocker.error(&name));
    }
    let doomed = ctx
        .root
        .releases()
        .join(format!("{}delete-{commit}", crate::root::TMP_PREFIX));
    std::fs::rename(&dir, &doomed).at("move away", &dir)?;
    if let Err(e) = std::fs::remove_dir_all(&doomed) {
        let restored = std::fs::rename(&doomed, &dir);
        let _ = release::set_state(
            &ctx.root,
            commit,
            release::State::Failed,
            Some(format!("cleanup removed part of it: {e}")),
        );
        return Err(Error::with_help(
            format!(
                "could not remove {name}: {e}; part of it is gone, so it is marked failed{}",
                match restored {
                    Ok(()) => String::new(),
                    Err(r) => format!(" (and it stays at {}: {r})", doomed.display()),
                }
            ),
            "find what holds it (`lsattr -R`, owners, mounts), fix that, and run `symdeploy cleanup`",
        ));
    }
    release::forget(&ctx.root, commit);
    Ok(())
}

/// What keeps a release directory from being removed.
#[derive(Debug, PartialEq, Eq)]
pub struct Blocker {
    /// The file or directory in the way.
    pub path: std::path::PathBuf,
    /// Why.
    pub kind: BlockerKind,
}

/// Why a path blocks a removal.
#[derive(Debug, PartialEq, Eq)]
pub enum BlockerKind {
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
    fn error(&self, name: &str) -> Error {
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
                    crate::fsutil::current_user(),
                    crate::fsutil::current_user()
                ),
            ),
            BlockerKind::Unreadable(e) => (
                format!("it cannot be read ({e})"),
                format!("give user {} access to it", crate::fsutil::current_user()),
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
pub fn removable(dir: &std::path::Path) -> std::result::Result<(), Blocker> {
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

/// When a release was made, for "newest first": its recorded time (ready,
/// else created; whole seconds), then its directory's mtime, which has
/// sub-second precision and orders releases made within the same second.
/// A release without a record is dated by its directory alone.
pub type MadeAt = (jiff::Timestamp, std::time::SystemTime);

/// The `MadeAt` of one release.
pub fn made_at(root: &crate::root::Root, commit: &str) -> MadeAt {
    let mtime = std::fs::symlink_metadata(root.release(commit))
        .and_then(|m| m.modified())
        .unwrap_or(std::time::UNIX_EPOCH);
    let recorded = release::load(root, commit).and_then(|r| {
        r.ready_at
            .unwrap_or(r.created)
            .parse::<jiff::Timestamp>()
            .ok()
    });
    let from_mtime = || {
        jiff::Timestamp::try_from(mtime)
            .ok()
            .and_then(|t| t.round(jiff::Unit::Second).ok())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    };
    (recorded.unwrap_or_else(from_mtime), mtime)
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
