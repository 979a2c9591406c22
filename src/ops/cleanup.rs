//! `symdeploy cleanup [--keep N] [--dry-run] [--background]`.

use crate::ctx::Ctx;
use crate::error::Result;
use crate::housekeeping::cleanup::cleanup_locked;
use crate::housekeeping::retention::retention;
use crate::sys::output;

/// `symdeploy cleanup` by hand: takes the lock. `background` is the detached
/// run a promote starts: it only empties the trash and applies retention.
pub(crate) fn run(ctx: &Ctx, keep: Option<usize>, dry_run: bool, background: bool) -> Result<()> {
    let keep = keep.unwrap_or(ctx.config.keep_releases);
    if dry_run {
        return cleanup_locked(ctx, keep, true);
    }
    if background {
        // The session's sweep empties the trash with the lock held.
        let _run = crate::session::begin(
            ctx,
            crate::state::journal::Event::Cleanup,
            "background",
            "cleanup in the background",
        )?;
        retention(ctx, false)?;
        output::success("background cleanup done");
        return Ok(());
    }
    let _run = crate::session::begin(
        ctx,
        crate::state::journal::Event::Cleanup,
        "releases",
        "cleanup",
    )?;
    cleanup_locked(ctx, keep, false)
}
