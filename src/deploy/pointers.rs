//! Where `warmup`, `production` and the previous production release point,
//! and moving `warmup` (one rename each; `production` is flipped only by
//! [`crate::deploy::switch`]). Taking `warmup` off a release that is not ready any
//! more lives here too, so every path that does it agrees on where it goes.

use crate::ctx::Ctx;
use crate::error::Result;
use crate::state::commit::Commit;
use crate::state::journal::{self, Event, LineKind, Outcome};
use crate::state::release;
use crate::state::root::WARMUP;
use crate::sys::output::{self, Stage};
use crate::sys::symlink;

/// Flip `warmup` to `commit` and repair the static links.
pub(crate) fn point_warmup(ctx: &Ctx, commit: Commit) -> Result<()> {
    let stage = Stage::start("switch warmup");
    flip_warmup(ctx, commit)?;
    stage.done_with(&format!("warmup -> releases/{}", commit.short()));
    output::log_only(&format!("       (full commit: {commit})"));
    Ok(())
}

/// Flip `warmup` to `commit` and repair the static links, with no stage of
/// its own (a rollback moving warmup off a bad release says so itself).
pub(crate) fn flip_warmup(ctx: &Ctx, commit: Commit) -> Result<()> {
    symlink::flip(&ctx.root.dir, WARMUP, &symlink::release_target(commit))?;
    for changed in symlink::ensure_static(&ctx.root.dir, &ctx.config.links)? {
        output::detail(&format!("made link {changed}"));
    }
    Ok(())
}

/// Where production and warmup point now, for the lines after an error.
pub(crate) fn where_now(root: &crate::state::root::Root) -> Vec<String> {
    let name = |c: Option<Commit>| match c {
        Some(c) => format!("releases/{}", c.short()),
        None => "nothing".to_string(),
    };
    vec![
        format!("production -> {}", name(root.production())),
        format!("warmup     -> {}", name(root.warmup())),
    ]
}

/// The production release before a switch, as messages name it.
pub(crate) fn describe(previous: Option<Commit>) -> String {
    previous
        .map(|c| format!("releases/{c}"))
        .unwrap_or_else(|| "nothing (no earlier production)".into())
}

/// Is the commit one git accepted: reachable from a ref? Objects alone prove
/// nothing: git migrates a push's objects before it updates the refs.
pub(crate) fn landed(ctx: &Ctx, commit: Commit) -> bool {
    crate::hook::pending::kept(ctx, commit)
}

/// Move warmup off a rejected commit (if it points there); returns where
/// warmup points now.
pub(crate) fn warmup_off(ctx: &Ctx, rejected: Commit) -> Result<Option<Commit>> {
    if ctx.root.warmup() != Some(rejected) {
        return Ok(ctx.root.warmup());
    }
    let back = fallback_warmup(ctx, rejected);
    match back {
        Some(b) => crate::deploy::pointers::flip_warmup(ctx, b)?,
        None => {
            let _ = std::fs::remove_file(ctx.root.link(crate::state::root::WARMUP));
        }
    }
    Ok(back)
}

/// Where warmup goes back to when it points at a rejected commit: the newest
/// earlier warm-up that is still ready and in the repository, else production.
fn fallback_warmup(ctx: &Ctx, rejected: Commit) -> Option<Commit> {
    let mut found = None;
    journal::for_each_rev(&ctx.root, |e| {
        let Some(c) = e
            .commit
            .and_then(|c| c.main())
            .filter(|_| e.event == Event::Warmup && e.phase == LineKind::End)
        else {
            return std::ops::ControlFlow::Continue(());
        };
        if e.result.as_ref().is_some_and(Outcome::succeeded)
            && c != rejected
            && release::is_ready(&ctx.root, &c.into())
            && landed(ctx, c)
        {
            found = Some(c);
            return std::ops::ControlFlow::Break(());
        }
        std::ops::ControlFlow::Continue(())
    });
    found.or_else(|| ctx.root.production())
}

/// The release rollback would go back to: the newest production release
/// before the current one that is still ready and on disk. Reads
/// `production.json`, never the history.
pub(crate) fn previous_production(ctx: &Ctx) -> Option<Commit> {
    let current = ctx.root.production();
    journal::production_stack(&ctx.root)
        .into_iter()
        .rev()
        .filter_map(|c| c.commit.main())
        .filter(|c| Some(*c) != current)
        .find(|c| release::is_ready(&ctx.root, &(*c).into()))
}
