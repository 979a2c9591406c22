//! `symdeploy cleanup [--keep N] [--dry-run]`, also run after each successful
//! promote. Keeps the newest N ready releases plus production, warmup and the
//! previous production release; removes failed, bad and incomplete releases
//! older than the newest ready one. Never touches common/.
//!
//! Retention: the records of releases no longer on disk go, and run logs
//! beyond the newest `keep_logs` unless they belong to a release still on
//! disk. The journal is never trimmed (it is compressed; see journal.rs).
//!
//! After a promote the pusher does not wait for deletions: doomed releases
//! are renamed into `.symdeploy/trash/` (one rename(2) each), and a detached
//! `symdeploy cleanup --background` deletes them once it gets the deploy
//! lock, so it never races a deploy. Whatever a killed one leaves there, the
//! next locked command deletes.

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
    pub state: release::Effective,
    /// Kept or removed, and why.
    pub keep: bool,
    /// Why.
    pub why: String,
}

/// `symdeploy cleanup` by hand: takes the lock. `background` is the detached
/// run a promote starts: it only empties the trash and applies retention.
pub fn run(ctx: &Ctx, keep: Option<usize>, dry_run: bool, background: bool) -> Result<()> {
    let keep = keep.unwrap_or(ctx.config.keep_releases);
    if dry_run {
        return cleanup_locked(ctx, keep, true);
    }
    if background {
        crate::ops::open_run_log(&ctx.root, "cleanup", "background");
        // lock_and_recover empties the trash (tidy_leftovers) with the lock held.
        let _lock = crate::ops::lock_and_recover(ctx, "cleanup in the background")?;
        retention(ctx, false)?;
        output::success("background cleanup done");
        return Ok(());
    }
    crate::ops::open_run_log(&ctx.root, "cleanup", "releases");
    let _lock = crate::ops::lock_and_recover(ctx, "cleanup")?;
    cleanup_locked(ctx, keep, false)
}

/// The cleanup after a successful promote, with the lock held: decide as
/// `cleanup` does, move the doomed releases aside (cheap), and leave their
/// deletion and the retention of logs and records to a detached process.
///
/// Production has moved and notify has run: nothing found here may fail the
/// promote (or make git reject a strict-mode tag push), so every problem is a
/// `warning:` saying what was left, why, and what to run. A release that
/// cannot be removed is checked before it is moved, so it keeps its name,
/// its files and its record.
pub fn after_promote(ctx: &Ctx) {
    let decisions = match plan(ctx, ctx.config.keep_releases) {
        Ok(d) => d,
        Err(e) => {
            output::warning(&format!(
                "cleanup skipped: {e}; the promote itself succeeded (run `symdeploy cleanup` once that is fixed)"
            ));
            return;
        }
    };
    let removing: Vec<&Decision> = decisions.iter().filter(|d| !d.keep).collect();
    // After a promote only removals are news; what is kept, and why, is in
    // the run log (and `symdeploy cleanup --dry-run` shows it any time).
    if !removing.is_empty() {
        output::header(&format!(
            "cleanup: removing {} of {}",
            removing.len(),
            output::count(decisions.len() as u64, "release", "releases")
        ));
    }
    for d in &decisions {
        let verb = if d.keep { "keep  " } else { "remove" };
        let text = format!("       {verb} {} ({})", short(&d.commit), d.why);
        if d.keep {
            output::log_only(&text);
        } else {
            output::line(&text);
        }
    }
    let mut moved = 0;
    for d in &removing {
        let name = format!("releases/{}", short(&d.commit));
        let moved_now = removable(&ctx.root.release(&d.commit))
            .map_err(|blocker| blocker.error(&name))
            .and_then(|()| move_aside(ctx, &d.commit));
        match moved_now {
            Ok(()) => moved += 1,
            Err(e) => {
                output::warning(&format!(
                    "{e}; the promote itself succeeded, production is unchanged by this"
                ));
                if let Some(help) = e.help() {
                    output::warning(&help);
                }
            }
        }
    }
    // Moved aside into releases/ itself (its own filesystem) counts too.
    if moved == 0 && trash_entries(ctx) == 0 && !retention_due(ctx) {
        return;
    }
    match spawn_background(ctx) {
        Ok(pid) => output::detail(&format!(
            "deleting in the background (pid {pid}, log .symdeploy/logs/*-cleanup-background-{pid}.log); deploys wait for it"
        )),
        Err(e) => {
            // Not worth failing a promote over: the next locked command
            // empties the trash and the next cleanup applies retention.
            output::warning(&format!(
                "cannot start the background cleanup ({e}); the next deploy or `symdeploy cleanup` finishes it"
            ));
        }
    }
}

fn spawn_background(ctx: &Ctx) -> std::io::Result<u32> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--root")
        .arg(&ctx.root.dir)
        .args(["cleanup", "--background"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        // Its own process group: the pusher's hang-up or ^C is not for it.
        .process_group(0);
    // Nothing of the hook's git environment (quarantine, push options).
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(k);
        }
    }
    // Not waited for: it outlives us, and init reaps it.
    let child = cmd.spawn()?;
    Ok(child.id())
}

/// `.symdeploy/trash`: releases moved aside, waiting for deletion.
pub fn trash_dir(root: &crate::root::Root) -> std::path::PathBuf {
    root.state_dir().join("trash")
}

fn trash_entries(ctx: &Ctx) -> usize {
    std::fs::read_dir(trash_dir(&ctx.root)).map_or(0, |d| d.count())
}

/// Delete what was moved aside; with the lock held.
pub fn empty_trash(ctx: &Ctx) {
    let Ok(entries) = std::fs::read_dir(trash_dir(&ctx.root)) else {
        return;
    };
    for e in entries.flatten() {
        let started = std::time::Instant::now();
        match std::fs::remove_dir_all(e.path()) {
            Ok(()) => output::detail(&format!(
                "deleted {} in {}",
                e.file_name().to_string_lossy(),
                crate::fsutil::human_duration(started.elapsed())
            )),
            Err(err) => output::warning(&format!("cannot delete {}: {err}", e.path().display())),
        }
    }
}

/// Move a release out of releases/ (one rename) and forget its record.
fn move_aside(ctx: &Ctx, commit: &str) -> Result<()> {
    let dir = ctx.root.release(commit);
    let trash = trash_dir(&ctx.root);
    std::fs::create_dir_all(&trash).at("create directory", &trash)?;
    let target = trash.join(format!("{commit}-{}", crate::fsutil::unique_token()));
    match std::fs::rename(&dir, &target) {
        Ok(()) => {}
        // releases/ on its own filesystem: aside within it, as a temporary
        // that tidy_leftovers deletes.
        Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => {
            let doomed = ctx
                .root
                .releases()
                .join(format!("{}delete-{commit}", crate::root::TMP_PREFIX));
            std::fs::rename(&dir, &doomed).at("move away", &dir)?;
        }
        Err(e) => return Err(crate::error::Error::io("move away", &dir, e)),
    }
    crate::link::sync_dir(&ctx.root.releases());
    release::forget(&ctx.root, commit);
    Ok(())
}

/// What retention would remove: run logs, release records.
struct Retention {
    logs: Vec<std::path::PathBuf>,
    records: Vec<std::path::PathBuf>,
}

fn retention_plan(ctx: &Ctx) -> Retention {
    let root = &ctx.root;
    let on_disk: std::collections::HashSet<String> = root
        .release_dirs()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let shorts: std::collections::HashSet<&str> = on_disk.iter().map(|c| short(c)).collect();
    let mut records = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root.states()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(commit) = name.strip_suffix(".json") else {
                continue;
            };
            if crate::root::is_commit_hash(commit) && !on_disk.contains(commit) {
                records.push(e.path());
            }
        }
    }
    // Log names start with a UTC timestamp: name order is time order.
    let mut logs: Vec<String> = std::fs::read_dir(root.logs())
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".log"))
                .collect()
        })
        .unwrap_or_default();
    logs.sort();
    let old = logs.len().saturating_sub(ctx.config.keep_logs.max(1));
    let logs = logs
        .into_iter()
        .take(old)
        // <time>-<event>-<label>-<pid>.log: the label of a warm-up or promote
        // is the release's short commit.
        .filter(|n| n.split('-').nth(2).is_none_or(|l| !shorts.contains(l)))
        .map(|n| root.logs().join(n))
        .collect();
    Retention { logs, records }
}

fn retention_due(ctx: &Ctx) -> bool {
    let r = retention_plan(ctx);
    !r.logs.is_empty() || !r.records.is_empty()
}

/// Remove the run logs and release records retention lets go (with the lock
/// held), or say what would go.
pub fn retention(ctx: &Ctx, dry_run: bool) -> Result<()> {
    let r = retention_plan(ctx);
    if r.logs.is_empty() && r.records.is_empty() {
        return Ok(());
    }
    output::detail(&format!(
        "{} {} run logs (keeping the newest {} and those of releases on disk) and {} records of removed releases",
        if dry_run { "would remove" } else { "removing" },
        r.logs.len(),
        ctx.config.keep_logs,
        r.records.len()
    ));
    if dry_run {
        return Ok(());
    }
    for p in r.logs.iter().chain(&r.records) {
        match std::fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(crate::error::Error::io("remove", p, e)),
        }
    }
    crate::link::sync_dir(&ctx.root.states());
    Ok(())
}

/// Decide what to keep; pure apart from reading state.
pub fn plan(ctx: &Ctx, keep: usize) -> Result<Vec<Decision>> {
    let root = &ctx.root;
    let production = root.production();
    let warmup = root.warmup();
    let previous = crate::ops::status::previous_production(ctx);
    let mut all: Vec<(String, release::Effective, MadeAt)> = root
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
    let newest_ready = all
        .iter()
        .find(|r| r.1 == release::Effective::Ready)
        .map(|r| r.2);
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
        let (keep_it, why) = if state == release::Effective::Ready {
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
        "cleanup{}: {}, removing {}",
        if dry_run {
            " (dry run: nothing is removed)"
        } else {
            ""
        },
        output::count(decisions.len() as u64, "release", "releases"),
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
        crate::ops::preview::cleanup(ctx, true)?;
        return retention(ctx, true);
    }
    let previews = crate::ops::preview::cleanup(ctx, false);
    // Every release is tried: one that is in the way does not keep the
    // others (or retention) from being cleaned up; the run still fails.
    let mut failed = Vec::new();
    for d in removing {
        if let Err(e) = remove_release(ctx, &d.commit) {
            output::report(&e);
            failed.push(short(&d.commit).to_string());
        }
    }
    retention(ctx, false)?;
    previews?;
    match failed.len() {
        0 => Ok(()),
        n => Err(Error::with_help(
            format!(
                "cleanup could not remove {n} release{}: {}",
                if n == 1 { "" } else { "s" },
                failed.join(", ")
            ),
            "see the errors above; each says what is in the way and what to run",
        )),
    }
}

/// Remove one release directory and its record. It is checked first, so a
/// release that cannot be removed keeps its name, its files and its record;
/// then it is renamed to a temporary name, so a half-removed release never
/// shows under its own name. Should removal still fail halfway (a race, a
/// cause the check does not know), the name is restored and the release
/// marked failed: never a ready record on missing files.
pub(crate) fn remove_release(ctx: &Ctx, commit: &str) -> Result<()> {
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
