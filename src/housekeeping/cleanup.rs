//! Cleanup, by hand (`symdeploy cleanup`) and after each successful promote.
//! Keeps the newest N ready releases plus production, warmup and the
//! previous production release; removes failed, bad and incomplete releases
//! older than the newest ready one. Never touches common/. What is kept is
//! decided in [`crate::housekeeping::retention`]; removing is [`crate::housekeeping::trash`]'s.
//!
//! After a promote the pusher does not wait for deletions: doomed releases
//! are renamed into `.symdeploy/trash/` (one rename(2) each), and a detached
//! `symdeploy cleanup --background` deletes them once it gets the deploy
//! lock, so it never races a deploy. Whatever a killed one leaves there, the
//! next locked command deletes.

use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::housekeeping::retention::{plan, retention, retention_due, Decision};
use crate::housekeeping::trash::{move_aside, removable, remove_release, trash_entries};
use crate::sys::output;

/// The cleanup after a successful promote, with the lock held: decide as
/// `cleanup` does, move the doomed releases aside (cheap), and leave their
/// deletion and the retention of logs and records to a detached process.
///
/// Production has moved and notify has run: nothing found here may fail the
/// promote (or make git reject a strict-mode tag push), so every problem is a
/// `warning:` saying what was left, why, and what to run. A release that
/// cannot be removed is checked before it is moved, so it keeps its name,
/// its files and its record.
pub(crate) fn after_promote(ctx: &Ctx) {
    let decisions = match plan(ctx, ctx.config.keep_releases) {
        Ok(d) => d,
        Err(e) => {
            output::warning(&format!(
                "cleanup skipped: {e}; the promote itself succeeded (run `symdeploy cleanup` once that is fixed)"
            ));
            return;
        }
    };
    let removing: Vec<&Decision> = decisions.iter().filter(|d| !d.keep).collect();
    // After a promote only removals are news; what is kept, and why, is in
    // the run log (and `symdeploy cleanup --dry-run` shows it any time).
    if !removing.is_empty() {
        output::header(&format!(
            "cleanup: removing {} of {}",
            removing.len(),
            output::count(decisions.len() as u64, "release", "releases")
        ));
    }
    for d in &decisions {
        let verb = if d.keep { "keep  " } else { "remove" };
        let text = format!("       {verb} {} ({})", d.commit.short(), d.why);
        if d.keep {
            output::log_only(&text);
        } else {
            output::line(&text);
        }
    }
    let mut moved = 0;
    for d in &removing {
        let name = format!("releases/{}", d.commit.short());
        let moved_now = removable(&ctx.root.main_release(d.commit))
            .map_err(|blocker| blocker.error(&name))
            .and_then(|()| move_aside(ctx, &d.commit.into()));
        match moved_now {
            Ok(()) => moved += 1,
            Err(e) => {
                output::warning(&format!(
                    "{e}; the promote itself succeeded, production is unchanged by this"
                ));
                if let Some(help) = e.help() {
                    output::warning(&help);
                }
            }
        }
    }
    // Moved aside into releases/ itself (its own filesystem) counts too.
    if moved == 0 && trash_entries(ctx) == 0 && !retention_due(ctx) {
        return;
    }
    match spawn_background(ctx) {
        Ok(pid) => output::detail(&format!(
            "deleting in the background (pid {pid}, log .symdeploy/logs/*-cleanup-background-{pid}.log); deploys wait for it"
        )),
        Err(e) => {
            // Not worth failing a promote over: the next locked command
            // empties the trash and the next cleanup applies retention.
            output::warning(&format!(
                "cannot start the background cleanup ({e}); the next deploy or `symdeploy cleanup` finishes it"
            ));
        }
    }
}

fn spawn_background(ctx: &Ctx) -> std::io::Result<u32> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--root")
        .arg(&ctx.root.dir)
        .args(["cleanup", "--background"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        // Its own process group: the pusher's hang-up or ^C is not for it.
        .process_group(0);
    // Nothing of the hook's git environment (quarantine, push options).
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(k);
        }
    }
    // Not waited for: it outlives us, and init reaps it.
    let child = cmd.spawn()?;
    Ok(child.id())
}

/// Clean up with the lock held (or, for a dry run, without changing anything).
pub(crate) fn cleanup_locked(ctx: &Ctx, keep: usize, dry_run: bool) -> Result<()> {
    let decisions = plan(ctx, keep)?;
    let removing: Vec<&Decision> = decisions.iter().filter(|d| !d.keep).collect();
    output::header(&format!(
        "cleanup{}: {}, removing {}",
        if dry_run {
            " (dry run: nothing is removed)"
        } else {
            ""
        },
        output::count(decisions.len() as u64, "release", "releases"),
        removing.len()
    ));
    for d in &decisions {
        let verb = match (d.keep, dry_run) {
            (true, _) => "keep  ",
            (false, true) => "would remove",
            (false, false) => "remove",
        };
        output::detail(&format!("{verb} {} ({})", d.commit.short(), d.why));
    }
    if dry_run {
        crate::deploy::preview::cleanup(ctx, true)?;
        return retention(ctx, true);
    }
    // Every release is tried: one that is in the way does not keep the
    // others (or retention) from being cleaned up; the run still fails, with
    // one error that lists each failure and what is in its way.
    let mut failed: Vec<Error> = crate::deploy::preview::cleanup(ctx, false)
        .err()
        .into_iter()
        .collect();
    for d in removing {
        if let Err(e) = remove_release(ctx, &d.commit.into()) {
            failed.push(e);
        }
    }
    retention(ctx, false)?;
    match Error::gather(failed, |n| format!("cleanup could not remove {n} releases")) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
