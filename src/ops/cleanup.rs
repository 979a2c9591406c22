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
    let mut all: Vec<(String, &'static str, String)> = root
        .release_dirs()?
        .into_iter()
        .map(|c| {
            let state = release::effective_state(root, &c);
            let when = release::load(root, &c)
                .map(|r| r.ready_at.unwrap_or(r.created))
                .unwrap_or_else(|| mtime_rfc3339(&root.release(&c)));
            (c, state, when)
        })
        .collect();
    // Newest first; RFC 3339 UTC strings sort by time.
    all.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    let newest_ready = all.iter().find(|r| r.1 == "ready").map(|r| r.2.clone());
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

fn mtime_rfc3339(path: &std::path::Path) -> String {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| jiff::Timestamp::try_from(t).ok())
        .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
        .unwrap_or_default()
}
