//! `symdeploy warmup [--rebuild] [REV]`: the warm-up by hand.

use crate::ctx::Ctx;
use crate::deploy::warmup::warm;
use crate::error::Result;
use crate::state::repo;

/// `symdeploy warmup [--rebuild] [REV]`: the warm-up by hand.
pub(crate) fn run(ctx: &Ctx, rev: Option<&str>, rebuild: bool) -> Result<()> {
    let branch_ref = ctx.config.branch_ref();
    let rev = rev.unwrap_or(&branch_ref);
    // Recovery first, whatever the arguments; the log's name is a best
    // guess made before (the resolved commit, never the input).
    let label = repo::open(&ctx.root.repository())
        .ok()
        .and_then(|r| repo::resolve_commit(&r, rev).ok())
        .map(|c| c.short().to_string())
        .unwrap_or_else(|| "unresolved".into());
    let _run = crate::session::begin(
        ctx,
        crate::state::journal::Event::Warmup,
        &label,
        &format!("warm-up of {label} ({})", crate::sys::output::escape(rev)),
    )?;
    let repo = repo::open(&ctx.root.repository())?;
    let commit = repo::resolve_commit(&repo, rev)?;
    let git_ref = if rev == branch_ref {
        branch_ref.clone()
    } else {
        rev.to_string()
    };
    warm(ctx, &repo, commit, &git_ref, rebuild, false).map(|_| ())
}
