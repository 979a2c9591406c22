//! `symdeploy warmup [--rebuild] [REV]`: the warm-up by hand.

use crate::ctx::Ctx;
use crate::deploy::warmup::warm;
use crate::error::Result;
use crate::state::repo;

/// `symdeploy warmup [--rebuild] [REV]`: the warm-up by hand.
pub(crate) fn run(ctx: &Ctx, rev: Option<&str>, rebuild: bool) -> Result<()> {
    let repo = repo::open(&ctx.root.repository())?;
    let branch_ref = ctx.config.branch_ref();
    let rev = rev.unwrap_or(&branch_ref);
    let commit = repo::resolve_commit(&repo, rev)?;
    let git_ref = if rev == branch_ref {
        branch_ref.clone()
    } else {
        rev.to_string()
    };
    let _run = crate::session::begin(
        ctx,
        crate::state::journal::Event::Warmup,
        commit.short(),
        &format!("warm-up of {} ({git_ref})", commit.short()),
    )?;
    warm(ctx, &repo, commit, &git_ref, rebuild, false).map(|_| ())
}
