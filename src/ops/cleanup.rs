//! `symdeploy cleanup [--keep N] [--dry-run]`, also run after each successful
//! promote. Keeps the newest N ready releases plus production, warmup and the
//! previous production release; removes failed, bad and incomplete releases
//! older than the newest ready one. Never touches common/.

use crate::error::{IoContext, Result};
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
    for d in removing {
        remove_release(ctx, &d.commit)?;
    }
    Ok(())
}

/// Remove one release directory and its record. The directory is first
/// renamed to a temporary name, so a half-removed release never shows under
/// its own name.
fn remove_release(ctx: &Ctx, commit: &str) -> Result<()> {
    let dir = ctx.root.release(commit);
    let doomed = ctx
        .root
        .releases()
        .join(format!("{}delete-{commit}", crate::root::TMP_PREFIX));
    std::fs::rename(&dir, &doomed).at("move away", &dir)?;
    release::forget(&ctx.root, commit);
    std::fs::remove_dir_all(&doomed).at("remove", &doomed)?;
    Ok(())
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
