//! The git hooks: read `<old> <new> <ref>` lines, route each ref.
//!
//! The whole of stdin is parsed and checked before anything runs, so a
//! malformed line means nothing is half-processed. Branch pushes warm up,
//! release tags promote, branches matching `previews.branches` get (or, when
//! deleted, lose) a preview, everything else is reported and ignored.

pub(crate) mod files;
pub(crate) mod pending;
pub(crate) mod push;
pub(crate) mod quarantine;
pub(crate) mod strict;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::hook::push::{parse_id, parse_input, push_options, route, Action, RefUpdate};
use crate::hook::quarantine::HookObjects;
use crate::state::config::Hook;
use crate::state::root::{short, Root};
use crate::sys::output;

/// The push option a fleet sends to every host but the one that migrates
/// the shared database (ansible/deploy.yml, `symdeploy_migrate_host`).
const SKIP_MIGRATE: &str = "skip-migrate";

/// The root of the repository git runs this hook in, and the pushed updates
/// (`warn`: say which lines were skipped; the hook that deploys says it).
fn hook_input(warn: bool) -> Result<(Root, Vec<RefUpdate>)> {
    let git_dir = std::env::var_os("GIT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let root = Root::from_repository(&git_dir)?;
    crate::sys::advice::in_hook_of(root.dir.clone());
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| Error::msg(format!("cannot read the hook input: {e}")))?;
    let parsed = parse_input(&input)?;
    if warn {
        crate::hook::push::warn_skipped(&parsed.skipped);
    }
    Ok((root, parsed.updates))
}

/// `symdeploy hook access`: post-receive mode's pre-receive hook. It only
/// authorizes; a refusal rejects the push before any ref moves. A broken
/// deploy.toml is left to post-receive, which records and reports it.
pub(crate) fn access() -> Result<ExitCode> {
    let (root, updates) = hook_input(false)?;
    let Ok(ctx) = Ctx::load(root) else {
        return Ok(ExitCode::SUCCESS);
    };
    crate::access::check_push(&ctx, &updates, &push_options())?;
    Ok(ExitCode::SUCCESS)
}

/// `symdeploy hook post-receive|pre-receive`.
pub(crate) fn run(kind: Hook) -> Result<ExitCode> {
    let (root, updates) = hook_input(true)?;
    let ctx = match Ctx::load(root.clone()) {
        Ok(ctx) => ctx,
        Err(e) => return config_broken(&root, &updates, e, kind),
    };
    if ctx.config.hook != kind {
        output::warning(&format!(
            "this is the {} hook, but deploy.toml says hook = \"{}\"; deploying anyway (run `symdeploy init` to install the configured hook)",
            kind.file_name(),
            ctx.config.hook.file_name()
        ));
    }
    let options = push_options();
    let promote_option = options.iter().any(|o| o == "promote");
    if options.iter().any(|o| o == SKIP_MIGRATE) {
        crate::deploy::warmup::migrate_elsewhere();
    }
    for o in options
        .iter()
        .filter(|o| *o != "promote" && *o != "unsigned" && *o != SKIP_MIGRATE)
    {
        output::warning(&format!(
            "unknown push option `{}` ignored (symdeploy knows: promote, unsigned, {SKIP_MIGRATE})",
            output::escape(o)
        ));
    }
    if kind == Hook::PreReceive || !crate::hook::files::access_checked(&ctx.root) {
        // Strict mode checks here, before it builds. In post-receive mode the
        // access hook has checked already; a root whose pre-receive predates
        // it gets it installed for the next push, and this push (its refs
        // already moved) deploys nothing it may not.
        if kind == Hook::PostReceive && ctx.config.access.is_some() {
            install_access_check(&ctx.root);
        }
        crate::access::check_push(&ctx, &updates, &options)?;
    }

    let objects = HookObjects::open(&ctx.root)?;
    if kind == Hook::PreReceive {
        // Strict mode: build now, flip once git has the refs locked.
        return crate::hook::strict::pre_receive(&ctx, &objects.repo, &updates, promote_option);
    }
    let mut first_failure = None;
    for update in &updates {
        let result = match route(&ctx, update) {
            Action::Ignore(why) => {
                output::line(&format!("-----> ignored: {why}"));
                continue;
            }
            Action::Warmup => deploy(&ctx, &objects.repo, update, promote_option),
            Action::Promote => promote(&ctx, &objects.repo, update),
            Action::Preview => {
                if promote_option {
                    output::warning(&format!(
                        "-o promote does not apply to {}: a preview branch never moves production",
                        output::escape(&update.name)
                    ));
                }
                parse_id(&update.new)
                    .and_then(|id| {
                        crate::state::repo::peel_to_commit(&objects.repo, id, &update.name)
                    })
                    .and_then(|c| crate::ops::preview::deploy(&ctx, &objects.repo, c, &update.name))
            }
            Action::RemovePreview => crate::ops::preview::delete_branch(&ctx, &update.name),
        };
        // Each ref is a run of its own: its failure is told as it ends.
        if let Some(code) = crate::session::close_run(result) {
            first_failure.get_or_insert(code);
        }
    }
    if first_failure.is_some() {
        accepted_anyway(&ctx.root);
    }
    Ok(first_failure.map_or(ExitCode::SUCCESS, crate::error::exit))
}

/// The last line of a post-receive push whose deploy failed: git has already
/// updated the refs and ignores this hook's exit status, so `git push` will
/// report success; the pusher must not read that as a deploy.
fn accepted_anyway(root: &Root) {
    output::error(&format!(
        "the push was accepted, but its deploy failed (above): git ignores a post-receive hook's exit status, so git push exits 0; in strict mode it would fail (set hook = \"pre-receive\" in deploy.toml, then run `symdeploy init {}`)",
        root.dir.display()
    ));
}

/// deploy.toml cannot be read: nothing can be routed or run, but the push
/// must not go unnoticed. The failure gets a run log and a failed run in the
/// journal (so `status` and `log` show it), and one error with its fix.
fn config_broken(root: &Root, updates: &[RefUpdate], e: Error, kind: Hook) -> Result<ExitCode> {
    let Some(update) = updates.iter().find(|u| !u.is_deletion()) else {
        return Err(e);
    };
    crate::session::open_run_log(root, "warmup", short(&update.new));
    let recorded = crate::session::lock::acquire(
        root,
        "recording a push refused by a broken deploy.toml",
        std::time::Duration::from_secs(600),
    )
    .and_then(|_lock| {
        let pushed = crate::state::commit::Commit::parse_stored(&update.new)
            .map(crate::state::release_name::ReleaseName::Main);
        let mut entry = crate::state::journal::Entry::start(
            crate::state::journal::Event::Warmup,
            pushed.as_ref(),
            Some(&update.name),
        );
        crate::state::journal::append(root, &entry)?;
        entry.error = Some(e.to_string());
        crate::state::journal::append(root, &entry.end(crate::state::journal::Outcome::Failed))
    });
    if let Err(j) = recorded {
        output::warning(&format!("could not record the failure in the journal: {j}"));
    }
    let what = updates
        .iter()
        .filter(|u| !u.is_deletion())
        .map(|u| format!("{} ({})", short(&u.new), u.name))
        .collect::<Vec<_>>()
        .join(", ");
    let failure = Error::Failed {
        code: e.exit_code(),
        message: format!("deploy.toml is broken, so nothing was deployed for {what}: {e}"),
        now: crate::deploy::pointers::where_now(root),
        help: Some(format!(
            "fix {} on the server (`{}` validates it), then run `{}` there (pushing the same commit again runs no hook)",
            root.config_file().display(),
            crate::sys::advice::command("check"),
            crate::sys::advice::command(&format!("warmup {}", short(&update.new)))
        )),
        source: Some(Box::new(e)),
    };
    let code = failure.exit_code();
    crate::session::close_run(Err(failure));
    if kind == Hook::PostReceive {
        accepted_anyway(root);
    }
    Ok(crate::error::exit(code))
}

fn deploy(ctx: &Ctx, repo: &gix::Repository, update: &RefUpdate, and_promote: bool) -> Result<()> {
    let new = parse_id(&update.new)?;
    let commit = crate::state::repo::peel_to_commit(repo, new, &update.name)?;
    let _run = crate::session::begin(
        ctx,
        crate::state::journal::Event::Warmup,
        commit.short(),
        &format!("warm-up of {} ({})", short(&update.new), update.name),
    )?;
    if and_promote {
        // Checked before the build too: a refused promote builds nothing.
        crate::access::authorize_promote(
            ctx,
            commit,
            None,
            push_options().iter().any(|o| o == "unsigned"),
            "-o promote",
            "git push -o promote -o unsigned",
        )?;
    }
    let built = crate::deploy::warmup::warm(ctx, repo, commit, &update.name, false, and_promote)?;
    if and_promote {
        crate::ops::promote::promote_locked(ctx, repo, commit, &update.name, false, built)?;
    }
    Ok(())
}

fn promote(ctx: &Ctx, repo: &gix::Repository, update: &RefUpdate) -> Result<()> {
    let new = parse_id(&update.new)?;
    let commit = crate::state::repo::peel_to_commit(repo, new, &update.name)?;
    let _run = crate::session::begin(
        ctx,
        crate::state::journal::Event::Promote,
        commit.short(),
        &format!("promote of {} ({})", commit.short(), update.name),
    )?;
    crate::access::authorize_promote(
        ctx,
        commit,
        Some((&update.new, &update.name)),
        false,
        "a release tag",
        "symdeploy promote --unsigned",
    )?;
    crate::ops::promote::promote_locked(ctx, repo, commit, &update.name, true, false)
}

fn install_access_check(root: &Root) {
    let binary = match std::env::current_exe().and_then(std::fs::canonicalize) {
        Ok(b) => b,
        Err(_) => return,
    };
    match crate::hook::files::install_access_hook(&root.repository().join("hooks"), &binary) {
        Ok(crate::hook::files::HookInstall::Installed(path)) => output::warning(&format!(
            "installed {} (the access check an older `symdeploy init` did not install): from the next push on, refusals come before git moves a ref",
            path.display()
        )),
        Ok(crate::hook::files::HookInstall::Foreign(path)) => output::warning(&format!(
            "{} is not symdeploy's access check: [access] is only enforced after git moved the refs (make it call `symdeploy hook access` too)",
            path.display()
        )),
        _ => {}
    }
}
