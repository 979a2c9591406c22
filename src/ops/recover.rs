//! `symdeploy recover`: take the lock, repair what crashed runs left, report.

use crate::ctx::Ctx;
use crate::error::Result;
use crate::output;

/// `symdeploy recover`: take the lock, repair, report.
pub fn run(ctx: &Ctx) -> Result<()> {
    crate::session::open_run_log(&ctx.root, "recover", "journal");
    crate::signals::install();
    let _lock = crate::lock::acquire(&ctx.root, "recover", ctx.config.lock_timeout)?;
    crate::session::maintain_journal(ctx);
    let repaired = crate::recovery::recover_locked(ctx)?;
    crate::leftovers::sweep(ctx);
    // Previews from older versions move to their own roots, data and all.
    let moved = crate::preview_root::adopt_all(ctx)?;
    if repaired == 0 && moved.is_empty() {
        output::success("nothing to recover: every run in the journal finished");
    }
    Ok(())
}
