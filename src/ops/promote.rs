//! `symdeploy promote [--dry-run] [REV]`, and the promote a release tag
//! asks for: warm up first if needed, then the switch, then cleanup.

use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::state::commit::Commit;
use crate::state::journal::Event;
use crate::state::release;
use crate::sys::output;
use crate::{deploy::switch, state::repo};

/// `symdeploy promote [--dry-run] [REV]` (default: what warmup points at).
pub(crate) fn run(
    ctx: &Ctx,
    rev: Option<&str>,
    dry_run: bool,
    unsigned: bool,
    keep_schema: bool,
) -> Result<()> {
    crate::access::require(ctx, crate::access::Role::Release, "promote")?;
    if dry_run {
        let repo = repo::open(&ctx.root.repository())?;
        let (commit, _) = target(ctx, &repo, rev)?;
        return dry(ctx, commit);
    }
    // A promote without the signature promote.signers asks for is refused
    // before the lock and the run log: a refusal changes nothing. (Checked
    // again once the target is certain.)
    if let Some((commit, _)) = repo::open(&ctx.root.repository())
        .ok()
        .and_then(|r| target(ctx, &r, rev).ok())
    {
        crate::access::precheck_promote(ctx, commit, unsigned)?;
    }
    // Recovery first, whatever the arguments: what warmup points at (and
    // whether a ref keeps it) is only known once an interrupted run is
    // repaired. The log's name is a best guess made before; never input.
    let label = repo::open(&ctx.root.repository())
        .ok()
        .and_then(|r| target(ctx, &r, rev).ok())
        .map(|(c, _)| c.short().to_string())
        .unwrap_or_else(|| "unresolved".into());
    let _run = crate::session::begin(ctx, Event::Promote, &label, &format!("promote of {label}"))?;
    let repo = repo::open(&ctx.root.repository())?;
    let (commit, git_ref) = target(ctx, &repo, rev)?;
    crate::access::authorize_promote(
        ctx,
        commit,
        None,
        unsigned,
        "symdeploy promote",
        "symdeploy promote --unsigned",
    )?;
    promote_with(ctx, &repo, commit, &git_ref, false, keep_schema, false)
}

/// What `promote [REV]` promotes: REV, or what warmup points at if some
/// ref of the repository keeps its commit; and the ref its steps see.
fn target(ctx: &Ctx, repo: &gix::Repository, rev: Option<&str>) -> Result<(Commit, String)> {
    match rev {
        Some(r) => Ok((repo::resolve_commit(repo, r)?, r.to_string())),
        None => {
            let w = ctx.root.warmup().ok_or_else(|| {
                Error::with_help(
                    "nothing to promote: warmup points at no release",
                    "push the deploy branch first, or name a revision: `symdeploy promote REV`",
                )
            })?;
            let id = w;
            // The objects of a refused push stay in the repository; only a
            // ref says git accepted the commit.
            if !repo::reachable_from_refs(repo, id.id())? {
                return Err(Error::with_help(
                    format!("warmup points at releases/{w}, whose commit no branch or tag of the repository contains (its push was refused or interrupted); not promoting it"),
                    "run `symdeploy recover` (it moves warmup back), or push the commit again",
                ));
            }
            let git_ref = release::load(&ctx.root, &w.into())
                .map(|r| r.git_ref)
                .unwrap_or_else(|| "warmup".into());
            Ok((id, git_ref))
        }
    }
}

fn dry(ctx: &Ctx, commit: Commit) -> Result<()> {
    let p = &ctx.config.promote;
    output::header(&format!(
        "promote {} (dry run: nothing is changed)",
        commit.short()
    ));
    if ctx.root.production() == Some(commit) {
        output::detail("it is already production; a promote would do nothing");
        return Ok(());
    }
    if !release::is_ready(&ctx.root, &commit.into()) {
        output::detail("it has no ready release: it would be warmed up first");
    }
    let cur = ctx
        .root
        .production()
        .map(|c| format!("releases/{}", c.short()))
        .unwrap_or_else(|| "nothing".into());
    for (stage, cmds) in [("stop", &p.stop)] {
        for c in cmds.iter() {
            output::detail(&format!("{stage}: {c}"));
        }
    }
    output::detail(&format!(
        "flip production: {cur} -> releases/{}",
        commit.short()
    ));
    for (stage, cmds) in [
        ("after_switch", &p.after_switch),
        ("start", &p.start),
        ("check", &p.check),
        ("notify", &p.notify),
    ] {
        for c in cmds.iter() {
            output::detail(&format!("{stage}: {c}"));
        }
    }
    output::detail(&format!(
        "then cleanup, keeping {} ready releases",
        ctx.config.keep_releases
    ));
    Ok(())
}

/// Promote `commit` with the lock held. A commit without a ready release is
/// warmed up first. `via_tag` only changes wording. `built_now`: this
/// process built its release a moment ago (`-o promote`), so its files are
/// the ones its manifest was just made from and are not hashed again.
pub(crate) fn promote_locked(
    ctx: &Ctx,
    repo: &gix::Repository,
    commit: Commit,
    git_ref: &str,
    via_tag: bool,
    built_now: bool,
) -> Result<()> {
    promote_with(ctx, repo, commit, git_ref, via_tag, false, built_now)
}

/// [`promote_locked`], by the rollback rule for the schema: a release
/// behind the database's schema goes live only with undo or `keep_schema`.
fn promote_with(
    ctx: &Ctx,
    repo: &gix::Repository,
    commit: Commit,
    git_ref: &str,
    via_tag: bool,
    keep_schema: bool,
    built_now: bool,
) -> Result<()> {
    if ctx.root.production() == Some(commit) {
        output::line(&format!(
            "-----> {} is already production; nothing to do",
            commit.short()
        ));
        if via_tag {
            output::success(&format!("production -> releases/{commit} (unchanged)"));
        }
        return Ok(());
    }
    if !release::is_ready(&ctx.root, &commit.into()) {
        output::header(&format!(
            "promoting {} ({git_ref}): it has no ready release yet, so it is warmed up first",
            commit.short()
        ));
        crate::deploy::warmup::warm(ctx, repo, commit, git_ref, false, true)?;
        // Its manifest was written a moment ago, by this process, from
        // these very files: checking it again would only cost time.
    } else if built_now {
        // Said in the run log only: the screen is as it was before the check existed.
        output::log_only(
            "       verify: skipped, its manifest was made from these files a moment ago by this run",
        );
    } else {
        crate::deploy::verify::before_switch(ctx, commit, crate::deploy::verify::Before::Promote)?;
    }
    let previous = ctx.root.production();
    let plan = crate::deploy::schema_gate::plan(ctx, commit, keep_schema)?;
    switch::switch_planned(ctx, commit, Event::Promote, git_ref, plan)?;
    crate::deploy::watch::start(ctx, commit, git_ref, previous);
    // Production has moved: a cleanup problem is a warning, never a failure.
    crate::housekeeping::cleanup::after_promote(ctx);
    output::show_verdict();
    Ok(())
}
