//! `symdeploy preview list|rm`, and the hook's preview of a pushed branch
//! and removal of a deleted one: each a locked session around
//! [`crate::deploy::preview`].

use crate::ctx::Ctx;
use crate::deploy::preview::{
    all_meta, meta_of_branch, print_rows, remove, remove_unpointed, rows, EVENT, REMOVE_EVENT,
};
use crate::error::{Error, Result};
use crate::state::commit::Commit;
use crate::sys::output;

/// The hook's preview warm-up of a pushed branch: run log, lock, warm,
/// flip, and the preview's releases it replaces removed.
pub(crate) fn deploy(
    ctx: &Ctx,
    repo: &gix::Repository,
    commit: Commit,
    git_ref: &str,
) -> Result<()> {
    let _run = crate::session::begin(
        ctx,
        EVENT,
        commit.short(),
        &format!("preview of {} ({git_ref})", commit.short()),
    )?;
    // git updated the branch before this hook ran, but a deletion pushed
    // while this waited for the lock may have gone first: its removal found
    // no preview then, so none may appear now for a branch that is gone.
    let gone = crate::state::repo::open(&ctx.root.repository())
        .ok()
        .is_some_and(|r| matches!(r.try_find_reference(git_ref), Ok(None)));
    if gone {
        output::line(&format!(
            "-----> ignored: {} was deleted while this push waited for the lock; no preview is built for it",
            output::escape(git_ref)
        ));
        return Ok(());
    }
    let slug = crate::deploy::warmup::preview(ctx, repo, commit, git_ref, true)?;
    // The releases the new one replaces are not served any more.
    for e in remove_unpointed(ctx, &slug) {
        output::warning(&e.to_string());
    }
    Ok(())
}

/// The hook's handling of a deleted preview branch: lock, remove.
pub(crate) fn delete_branch(ctx: &Ctx, git_ref: &str) -> Result<()> {
    let branch = git_ref.trim_start_matches("refs/heads/");
    // Looked up under the lock: a first push of the branch waiting for it
    // either built its preview before (removed here) or sees the branch
    // gone after (and builds nothing). The log is named by the slug if
    // there is one yet, never by the branch.
    let label = meta_of_branch(&ctx.root, branch)
        .map(|m| m.slug)
        .unwrap_or_else(|| "deleted-branch".into());
    let _run = crate::session::begin(
        ctx,
        REMOVE_EVENT,
        &label,
        &format!(
            "removal of the preview of {} (deleted)",
            output::escape(git_ref)
        ),
    )?;
    let Some(meta) = meta_of_branch(&ctx.root, branch) else {
        output::line(&format!(
            "-----> ignored: {} deleted; it had no preview",
            output::escape(git_ref)
        ));
        return Ok(());
    };
    remove(ctx, &meta, false, &format!("{git_ref} was deleted"))
}

/// `symdeploy preview rm SLUG [--data]`.
pub(crate) fn run_rm(ctx: &Ctx, slug: &str, data: bool) -> Result<()> {
    let _run = crate::session::begin(
        ctx,
        REMOVE_EVENT,
        slug,
        &format!("removal of preview {slug}"),
    )?;
    let metas = all_meta(&ctx.root);
    let Some(meta) = metas.iter().find(|m| m.slug == slug) else {
        let known: Vec<&str> = metas.iter().map(|m| m.slug.as_str()).collect();
        return Err(Error::with_help(
            format!("there is no preview {slug:?}"),
            if known.is_empty() {
                "there are no previews at all (`symdeploy preview list`)".to_string()
            } else {
                format!("previews here: {}", known.join(", "))
            },
        ));
    };
    remove(ctx, meta, data, "removed by hand")
}

/// `symdeploy preview list [--json]`.
pub(crate) fn run_list(ctx: &Ctx, json: bool) -> Result<()> {
    let rows = rows(ctx);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return Ok(());
    }
    if rows.is_empty() {
        match &ctx.config.previews.branches {
            Some(glob) => println!("no previews yet: push a branch matching \"{glob}\""),
            None => println!("previews are off: set `branches` in [previews] of deploy.toml"),
        }
    }
    print_rows(&rows);
    Ok(())
}
