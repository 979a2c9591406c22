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

use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::hook::push::{parse_id, parse_input, push_options, route, Action, RefUpdate};
use crate::hook::quarantine::HookObjects;
use crate::state::config::HookKind;
use crate::state::root::{short, Root};
use crate::sys::output;

/// `symdeploy hook post-receive|pre-receive`.
pub(crate) fn run(kind: HookKind) -> Result<()> {
    let git_dir = std::env::var_os("GIT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let root = Root::from_repository(&git_dir)?;
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).map_err(|e| {
        Error::with_help(
            format!("cannot read the hook input: {e}"),
            "ref names and ids must be UTF-8",
        )
    })?;
    let updates = parse_input(&input)?;
    let ctx = match Ctx::load(root.clone()) {
        Ok(ctx) => ctx,
        Err(e) => return config_broken(&root, &updates, e),
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
    for o in options.iter().filter(|o| *o != "promote") {
        output::warning(&format!(
            "unknown push option `{o}` ignored (symdeploy knows: promote)"
        ));
    }

    let objects = HookObjects::open(&ctx.root)?;
    if kind == HookKind::PreReceive {
        // Strict mode: build now, flip once git has the refs locked.
        return crate::hook::strict::pre_receive(&ctx, &objects.repo, &updates, promote_option);
    }
    let mut failures = Vec::new();
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
        // Each ref's failure is rendered once, here, while its run log is
        // still open, so the log keeps the error lines too.
        if let Err(e) = result {
            render(&e);
            failures.push(e);
        }
        output::close_log();
    }
    match failures.first() {
        // Already reported above; the exit code is what matters to git now.
        Some(e) => Err(Error::Reported {
            code: e.exit_code(),
        }),
        None => Ok(()),
    }
}

/// deploy.toml cannot be read: nothing can be routed or run, but the push
/// must not go unnoticed. The failure gets a run log and a failed run in the
/// journal (so `status` and `log` show it), and one error with its fix.
fn config_broken(root: &Root, updates: &[RefUpdate], e: Error) -> Result<()> {
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
        let mut entry = crate::state::journal::Entry::start(
            crate::state::journal::Event::Warmup,
            Some(&update.new),
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
            "fix {} on the server (`symdeploy check` validates it), then run `symdeploy warmup {}` there (pushing the same commit again runs no hook)",
            root.config_file().display(),
            short(&update.new)
        )),
    };
    // Rendered here, while the run log is open, so the log has it too.
    output::report(&failure);
    output::close_log();
    Err(Error::Reported {
        code: failure.exit_code(),
    })
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
    crate::deploy::warmup::warm(ctx, repo, commit, &update.name, false, and_promote)?;
    if and_promote {
        crate::ops::promote::promote_locked(ctx, repo, commit, &update.name, false)?;
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
    crate::ops::promote::promote_locked(ctx, repo, commit, &update.name, true)
}

/// Show a ref's failure: the one place a post-receive failure is printed.
fn render(e: &Error) {
    if !e.is_reported() {
        output::report(e);
    }
}
