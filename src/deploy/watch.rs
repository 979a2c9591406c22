//! The watch after a promote: with `promote.watch = SECONDS`, a successful
//! promote starts a detached watcher (its own session, its own log, nothing
//! of the pusher's connection) and returns. Every `watch_interval` the
//! watcher runs `watch_check` against production (retried as `check` is, for
//! `check_timeout`). A failure rolls production back through the switch's
//! own rollback (stop, flip back, start, the release marked bad, notify
//! `rolled-back`). Anything else that moves production ends the watch first
//! (see [`crate::state::watch`]); the watcher rolls back only with the lock
//! held and its watch still the current one, so it never rolls back a
//! release it was not watching.

use std::time::{Duration, Instant};

use crate::ctx::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::state::commit::Commit;
use crate::state::journal::{self, Commands, Entry, Event, Outcome};
use crate::state::release::State;
use crate::state::release_name::Recorded;
use crate::state::root::WATCH_STAGE;
use crate::state::watch::{self as wstate, Current, Progress};
use crate::sys::output;

/// After a successful promote of `hex` (lock held): start watching it, if
/// `promote.watch` says so. A watcher that cannot start is a warning: the
/// promote itself is done.
pub(crate) fn start(ctx: &Ctx, commit: Commit, git_ref: &str, previous: Option<Commit>) {
    let p = &ctx.config.promote;
    if p.watch.is_zero() || ctx.root.production() != Some(commit) {
        return;
    }
    if let Err(e) = spawn(ctx, commit, git_ref, previous) {
        output::warning(&format!(
            "production is not watched: {e} (the promote itself is done)"
        ));
    }
}

fn spawn(ctx: &Ctx, commit: Commit, git_ref: &str, previous: Option<Commit>) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let root = &ctx.root;
    let p = &ctx.config.promote;
    let mut entry = Entry::start(Event::Watch, Some(&commit.into()), Some(git_ref));
    entry.previous = previous.map(Into::into);
    entry.commands = Some(Commands::of(p));
    entry.log = None;
    let now = jiff::Timestamp::now().as_second();
    let mut current = Current {
        entry: entry.clone(),
        pid: 0,
        pid_start: None,
        until: now + p.watch.as_secs() as i64,
        interval: p.watch_interval.as_secs(),
        total: (p.watch.as_secs() / p.watch_interval.as_secs().max(1)).max(1),
    };
    // Recorded before the watcher exists, so that it finds itself; the lock
    // keeps recovery from taking the pid 0 for a dead watcher meanwhile.
    journal::append(root, &entry)?;
    wstate::save(root, &current)?;
    let exe = std::env::current_exe().at("find", "the symdeploy binary")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--root")
        .arg(&root.dir)
        .args(["watch", "run", &entry.run])
        .current_dir(&root.dir)
        .stdin(std::process::Stdio::null())
        // Its own run log keeps what it says; the pusher's connection
        // (git waits for the hook's stdout and stderr to close) is not its.
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: setsid(2) is async-signal-safe; nothing else runs in the child
    // before exec. A session of its own: no SIGHUP when the pusher hangs up,
    // and no process group a killed hook's receive-pack signals.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let mut end = entry.end(Outcome::Failed);
            end.error = Some(format!("cannot start the watcher: {e}"));
            let _ = journal::append(root, &end);
            wstate::clear(root, &entry.run);
            return Err(Error::io("start", "the watcher", e));
        }
    };
    current.pid = child.id();
    current.pid_start = crate::sys::fs::start_time(child.id());
    wstate::save(root, &current)?;
    // Not waited for: it outlives us, and init reaps it.
    drop(child);
    output::detail(&format!(
        "watching production (releases/{}) until {} UTC: a check every {}s; `symdeploy status` shows it, `symdeploy watch stop` ends it",
        commit.short(),
        current.until_clock(),
        current.interval
    ));
    Ok(())
}

/// `symdeploy watch run RUN`: the detached watcher of the watch `run`.
pub(crate) fn run(ctx: &Ctx, run: &str) -> Result<()> {
    let root = &ctx.root;
    let Some(current) = wstate::current(root).filter(|c| c.entry.run == run) else {
        return Ok(());
    };
    // A watch names the release it watches; one that does not was not
    // written by this version and is left to `watch stop`.
    let Some(commit) = current.commit() else {
        return Ok(());
    };
    crate::session::open_run_log(root, "watch", commit.short());
    // SIGTERM (a newer promote, `watch stop`, a shutdown) interrupts the
    // check and the sleep; SIGHUP is ignored.
    crate::sys::signals::install();
    let git_ref = current.entry.git_ref.clone().unwrap_or_default();
    output::header(&format!(
        "watching releases/{} until {} UTC ({} checks, every {}s)",
        commit.short(),
        current.until_clock(),
        current.total,
        current.interval
    ));
    let p = &ctx.config.promote;
    let env = crate::deploy::switch::step_env(
        ctx,
        commit,
        current.entry.previous.as_ref().and_then(Recorded::main),
        &git_ref,
        vec![],
    );
    let interval = Duration::from_secs(current.interval.max(1));
    let until = current.until;
    let mut progress = Progress::default();
    let mut next = Instant::now() + interval;
    loop {
        // Sleep to the next check, cut short by SIGTERM.
        let left = next.saturating_duration_since(Instant::now());
        let _ = crate::sys::signals::wakeups().recv_timeout(left);
        if crate::sys::signals::interrupted().is_some() {
            return interrupted(ctx, &current, progress);
        }
        if !still_watching(ctx, &current) {
            return Ok(());
        }
        if jiff::Timestamp::now().as_second() > until {
            break;
        }
        next = Instant::now() + interval;
        match crate::deploy::switch::check_until(
            WATCH_STAGE,
            &p.watch_check,
            &env,
            p.check_timeout,
            "check_timeout",
        ) {
            Ok(()) => {
                progress.done += 1;
                progress.ok += 1;
                let _ = wstate::save_progress(root, run, progress);
            }
            Err(Error::Interrupted { .. }) => return interrupted(ctx, &current, progress),
            Err(e) => {
                progress.done += 1;
                let _ = wstate::save_progress(root, run, progress);
                return roll_back(ctx, &current, progress, e);
            }
        }
        if jiff::Timestamp::now().as_second() + current.interval as i64 > until {
            break;
        }
    }
    // The window passed with every check ok: end it, with the lock, so that
    // it is still ours to end.
    let _lock = crate::session::lock_and_recover(ctx, "the end of a watch")?;
    if !still_watching(ctx, &current) {
        return Ok(());
    }
    let mut end = current.entry.end(Outcome::Ok);
    end.pid = std::process::id();
    counts(&mut end, progress);
    journal::append(root, &end)?;
    wstate::clear(root, run);
    output::success(&format!(
        "releases/{} passed its watch ({}/{} checks ok)",
        commit.short(),
        progress.ok,
        progress.done
    ));
    Ok(())
}

/// Is `current` still the watch under way, and production still its release?
fn still_watching(ctx: &Ctx, current: &Current) -> bool {
    let root = &ctx.root;
    if !wstate::is_current(root, &current.entry.run) {
        output::detail("the watch was ended from outside (a newer switch, `watch stop`)");
        return false;
    }
    current.commit().is_some() && root.production() == current.commit()
}

fn counts(end: &mut Entry, progress: Progress) {
    end.durations.insert("checks".into(), progress.done as f64);
    end.durations.insert("checks_ok".into(), progress.ok as f64);
}

/// SIGTERM, SIGINT: if the watch was not ended from outside (a shutdown, a
/// kill by hand), end it `interrupted`; production stays.
fn interrupted(ctx: &Ctx, current: &Current, progress: Progress) -> Result<()> {
    let root = &ctx.root;
    let _unwinding = crate::sys::signals::unwinding("ending the watch");
    if !wstate::is_current(root, &current.entry.run) {
        return Ok(());
    }
    let mut end = current.entry.end(Outcome::Interrupted);
    end.pid = std::process::id();
    end.error = Some("the watcher was stopped by a signal".into());
    counts(&mut end, progress);
    journal::append(root, &end)?;
    wstate::clear(root, &current.entry.run);
    output::warning(&format!(
        "the watch of releases/{} was interrupted; production stays on it, unwatched",
        current.commit().as_ref().map_or("?", Commit::short)
    ));
    Ok(())
}

/// A failed check: with the lock, and only if the watch is still ours and
/// production still its release, roll back as a failed promote check does.
fn roll_back(ctx: &Ctx, current: &Current, progress: Progress, e: Error) -> Result<()> {
    let root = &ctx.root;
    let Some(commit) = current.commit() else {
        return Err(e);
    };
    let git_ref = current.entry.git_ref.clone().unwrap_or_default();
    let previous = current.entry.previous.as_ref().and_then(Recorded::main);
    output::error(&format!(
        "the watch check of releases/{} failed: {e}; rolling back",
        commit.short()
    ));
    let _lock = crate::session::lock_and_recover(ctx, "a watch rolling back")?;
    if !still_watching(ctx, current) {
        output::detail("production moved meanwhile; not rolling back");
        return Ok(());
    }
    // The commands recorded when the watch started, as recovery would run.
    let recorded = Ctx {
        root: ctx.root.clone(),
        config: crate::state::config::Config {
            promote: current
                .entry
                .commands
                .as_ref()
                .map(|c| c.apply(&ctx.config.promote))
                .unwrap_or_else(|| ctx.config.promote.clone()),
            ..ctx.config.clone()
        },
    };
    let why = format!("watch: {e}");
    crate::deploy::switch::roll_back(
        &recorded,
        &current.entry,
        commit,
        previous,
        &git_ref,
        State::Bad,
        why.clone(),
    );
    crate::deploy::switch::notify(
        &recorded,
        commit,
        previous,
        &git_ref,
        Outcome::RolledBack,
        Some(&Error::msg(why.clone())),
    );
    let mut end = current.entry.end(Outcome::RolledBack);
    end.pid = std::process::id();
    end.error = Some(why);
    counts(&mut end, progress);
    journal::append(root, &end)?;
    output::error(&format!(
        "releases/{} failed its watch and was rolled back; production is on {} (releases/{} is marked bad)",
        commit.short(),
        crate::deploy::pointers::describe(root.production()),
        commit.short()
    ));
    wstate::clear(root, &current.entry.run);
    Ok(())
}

/// `symdeploy watch stop`: end the watch under way by hand (journaled).
pub(crate) fn stop(ctx: &Ctx) -> Result<()> {
    let _run = crate::session::begin(ctx, Event::Watch, "stop", "stopping the watch")?;
    match wstate::current(&ctx.root) {
        None => {
            output::line("-----> no watch is under way; nothing to stop");
            Ok(())
        }
        Some(_) => {
            let user = crate::sys::machine::current_user();
            if let Some(c) = wstate::end_current(
                &ctx.root,
                Outcome::Ended,
                &format!("stopped by hand (`symdeploy watch stop`, {user})"),
            ) {
                output::success(&format!(
                    "the watch of releases/{} is stopped; production stays on {}",
                    c.short(),
                    crate::deploy::pointers::describe(ctx.root.production())
                ));
            }
            Ok(())
        }
    }
}
