//! `symdeploy rollback [RELEASE]`: back to the previous good production
//! release, through the same stop/flip/start/check path as promote.

use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::state::commit::Commit;
use crate::state::release;

/// Roll production back to `target` (a commit prefix) or to the previous good
/// production release from the journal, by the rollback rule for the schema
/// (`keep_schema`: the operator vouches for a release behind it). A target
/// whose files changed since its warm-up is refused unless `force`.
pub(crate) fn run(ctx: &Ctx, target: Option<&str>, keep_schema: bool, force: bool) -> Result<()> {
    crate::access::require(ctx, crate::access::Role::Release, "roll production back")?;
    // The log's name comes from the resolved commit, never from the argument:
    // user input is not a path component (`releases/abc` has a slash).
    let label = match target {
        Some(t) => resolve_release(ctx, t)
            .map(|c| c.short().to_string())
            .unwrap_or_else(|_| "unresolved".into()),
        None => "previous".into(),
    };
    let _run = crate::session::begin(
        ctx,
        crate::state::journal::Event::Rollback,
        &label,
        "rollback",
    )?;
    let current = ctx.root.production();
    let to = match target {
        Some(prefix) => {
            let c = resolve_release(ctx, prefix)?;
            if !release::is_ready(&ctx.root, &c.into()) {
                return Err(Error::with_help(
                    format!("releases/{c} is {}, not ready; production only ever points at ready releases", release::effective_state(&ctx.root, &c.into())),
                    "pick a ready release (`symdeploy releases` lists them), or warm this commit up again with `symdeploy warmup --rebuild`",
                ));
            }
            c
        }
        None => crate::deploy::pointers::previous_production(ctx).ok_or_else(|| {
            Error::with_help(
                "nothing to roll back to: no earlier production release that is still ready and on disk",
                "`symdeploy releases` lists what there is; `symdeploy rollback RELEASE` picks one by hand",
            )
        })?,
    };
    if current == Some(to) {
        return Err(Error::with_help(
            format!("production already is releases/{}", to.short()),
            "nothing to do",
        ));
    }
    crate::deploy::verify::before_switch(
        ctx,
        to,
        crate::deploy::verify::Before::Rollback { force },
    )?;
    // Steps see the ref the release was built from, as they did when it was promoted.
    let git_ref = release::load(&ctx.root, &to.into())
        .map(|r| r.git_ref)
        .unwrap_or_else(|| "rollback".into());
    let plan = crate::deploy::schema_gate::plan(ctx, to, keep_schema)?;
    crate::deploy::switch::switch_planned(
        ctx,
        to,
        crate::state::journal::Event::Rollback,
        &git_ref,
        plan,
    )
}

/// A release directory named by a unique prefix of its commit.
pub(crate) fn resolve_release(ctx: &Ctx, prefix: &str) -> Result<Commit> {
    let prefix = prefix.trim_start_matches("releases/").trim_end_matches('/');
    let matches: Vec<Commit> = ctx
        .root
        .release_dirs()?
        .into_iter()
        .filter(|c| c.as_str().starts_with(prefix))
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::with_help(
            format!("no release matches `{prefix}`"),
            "`symdeploy releases` lists the releases on this host",
        )),
        _ => Err(Error::with_help(
            format!("`{prefix}` matches {} releases", matches.len()),
            "give more characters of the commit",
        )),
    }
}
