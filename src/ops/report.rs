//! `symdeploy report --html DIR [-n N]`: the HTML report, on demand.

use std::path::Path;

use crate::ctx::Ctx;
use crate::error::Result;

/// Write the page and say where it is.
pub(crate) fn run(ctx: &Ctx, dir: &Path, runs: usize) -> Result<()> {
    let index = crate::housekeeping::report::write(ctx, dir, runs)?;
    crate::sys::output::success(&format!("wrote {}", index.display()));
    Ok(())
}
