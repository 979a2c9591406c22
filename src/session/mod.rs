//! A locked session: the run log, the deploy lock and the repair of what
//! a crashed run left, which every operation that changes the root goes
//! through first.

pub(crate) mod lock;
pub(crate) mod plan;
pub(crate) mod recovery;
pub(crate) mod sweep;

use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::session::lock::DeployLock;
use crate::state::journal::Event;
use crate::state::root::Root;

/// A locked session: the deploy lock, held until this is dropped. Every
/// operation that changes the root holds one, got from [`begin`], so none
/// can skip the recovery or the sweep.
pub(crate) struct Run {
    _lock: DeployLock,
}

/// Start a locked session for `event` (its run log is named by `label`;
/// `purpose` is what a deploy waiting for the lock is told): open the run
/// log, take the lock, repair what crashed runs left, sweep leftovers.
pub(crate) fn begin(ctx: &Ctx, event: Event, label: &str, purpose: &str) -> Result<Run> {
    let event = event.as_ref();
    open_run_log(&ctx.root, event, label);
    lock_and_recover(ctx, purpose)
}

/// Start the per-run log file `.symdeploy/logs/<time>-<event>-<label>.log`;
/// from here on every line people see is also kept there.
pub(crate) fn open_run_log(root: &Root, event: &str, label: &str) {
    if root.ensure_state_dirs().is_err() {
        return; // the operation itself will report the unwritable root
    }
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let path = root.logs().join(format!(
        "{stamp}-{event}-{label}-{}.log",
        std::process::id()
    ));
    match crate::sys::output::open_log(&path) {
        // Who started it, first: the log may outlive the journal's segment.
        Ok(()) => crate::sys::output::log_only(&format!(
            "# symdeploy {} {event} {label} by {} ({}@{})",
            env!("CARGO_PKG_VERSION"),
            crate::sys::deployer::by(),
            crate::sys::fs::current_user(),
            crate::sys::fs::hostname()
        )),
        Err(e) => crate::sys::output::warning(&format!(
            "cannot write the deploy log {}: {e}",
            path.display()
        )),
    }
}

/// End a run that had its own log (each ref of a hook is one): a failure is
/// rendered here, once, while the log is still open so it keeps the error
/// lines too; then the log is closed. Returns the failure's exit code.
/// Besides `main`, this is the one place an error is printed.
pub(crate) fn close_run(result: Result<()>) -> Option<i32> {
    let code = result.err().map(|e: Error| {
        crate::sys::output::report(&e);
        e.exit_code()
    });
    crate::sys::output::close_log();
    code
}

/// Take the deploy lock, then repair whatever a crashed run left (interrupted
/// promotes, temporary exports and links), with the run log already open
/// (strict mode's second hook, which names its log before it knows what it
/// locks for). Every operation that changes the root starts here, so no
/// crash needs a manual step.
pub(crate) fn lock_and_recover(ctx: &Ctx, purpose: &str) -> Result<Run> {
    ctx.root.ensure_state_dirs()?;
    // From here on Ctrl-C, SIGTERM and SIGHUP unwind or detach (src/signals.rs)
    // instead of killing us halfway.
    crate::sys::signals::install();
    let lock = lock::acquire(&ctx.root, purpose, ctx.config.lock_timeout)?;
    maintain_journal(ctx);
    crate::session::recovery::recover_locked(ctx)?;
    crate::session::sweep::sweep(ctx);
    // Interrupted while waiting or recovering: the operation itself never starts.
    crate::sys::signals::check(&format!("{purpose} not started; nothing was changed"))?;
    Ok(Run { _lock: lock })
}

/// With the lock held: carry an older root's single-file journal forward and
/// compress the current segment once it is big (before recovery, which reads
/// only the open-run files, so a run interrupted before a rotation is still
/// found). Failures are warnings: the journal stays readable as it is.
pub(crate) fn maintain_journal(ctx: &Ctx) {
    if let Err(e) = crate::state::journal::migrate(&ctx.root) {
        crate::sys::output::warning(&format!("cannot carry the journal forward: {e}"));
        return;
    }
    let max = ctx.config.journal_segment_kib.saturating_mul(1024);
    if let Err(e) = crate::state::journal::rotate(&ctx.root, max) {
        crate::sys::output::warning(&format!(
            "cannot compress the journal's older entries: {e} (they stay in {})",
            ctx.root.journal().display()
        ));
    }
}
