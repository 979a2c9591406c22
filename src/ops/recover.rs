//! `symdeploy recover`: take the lock, repair what crashed runs left, report.

use crate::ctx::Ctx;
use crate::error::Result;
use crate::sys::output;

/// `symdeploy recover`: take the lock, repair, report.
pub(crate) fn run(ctx: &Ctx) -> Result<()> {
    crate::session::open_run_log(&ctx.root, "recover", "journal");
    crate::sys::signals::install();
    let _lock = crate::session::lock::acquire(&ctx.root, "recover", ctx.config.lock_timeout)?;
    crate::session::maintain_journal(ctx);
    let repaired = crate::session::recovery::recover_locked(ctx)?;
    crate::session::sweep::sweep(ctx);
    // Previews from older versions move to their own roots, data and all.
    let moved = crate::deploy::preview_root::adopt_all(ctx)?;
    if repaired == 0 && moved.is_empty() {
        output::success("nothing to recover: every run in the journal finished");
    }
    Ok(())
}
