//! Promote: the seed's production.sh, made safe.
//!
//! stop → sync → flip `production` → after_switch → start → check, and if
//! anything after the flip fails: stop, flip back, start, mark the release bad.
//! Every path that ran `stop` runs `start`, so the daemons are never left down.

use std::time::{Duration, Instant};

use crate::commit::Commit;

use crate::error::{Error, Result};
use crate::journal::{self, Commands, Entry, Event, Outcome};
use crate::ops::decide::{self, Cause, Phase, Unwind};
use crate::ops::Ctx;
use crate::output::{self, Stage};
use crate::release::{self, State};
use crate::root::{short, PRODUCTION};
use crate::steps::{self, StepEnv};
use crate::{faults, link, repo};

/// `symdeploy promote [--dry-run] [REV]` (default: what warmup points at).
pub fn run(ctx: &Ctx, rev: Option<&str>, dry_run: bool) -> Result<()> {
    let repo = repo::open(&ctx.root.repository())?;
    let (commit, git_ref) = match rev {
        Some(r) => (repo::resolve_commit(&repo, r)?, r.to_string()),
        None => {
            let w = ctx.root.warmup().ok_or_else(|| {
                Error::with_help(
                    "nothing to promote: warmup points at no release",
                    "push the deploy branch first, or name a revision: `symdeploy promote REV`",
                )
            })?;
            let id =
                Commit::parse(&w).map_err(|e| Error::msg(format!("warmup points at {w}: {e}")))?;
            // The objects of a refused push stay in the repository; only a
            // ref says git accepted the commit.
            if !repo::reachable_from_refs(&repo, id.id())? {
                return Err(Error::with_help(
                    format!("warmup points at releases/{w}, whose commit no branch or tag of the repository contains (its push was refused or interrupted); not promoting it"),
                    "run `symdeploy recover` (it moves warmup back), or push the commit again",
                ));
            }
            let git_ref = release::load(&ctx.root, &w)
                .map(|r| r.git_ref)
                .unwrap_or_else(|| "warmup".into());
            (id, git_ref)
        }
    };
    if dry_run {
        return dry(ctx, commit.as_str());
    }
    crate::ops::open_run_log(&ctx.root, "promote", commit.short());
    let _lock = crate::ops::lock_and_recover(ctx, &format!("promote of {}", commit.short()))?;
    promote_locked(ctx, &repo, commit, &git_ref, false)
}

fn dry(ctx: &Ctx, hex: &str) -> Result<()> {
    let p = &ctx.config.promote;
    output::header(&format!(
        "promote {} (dry run: nothing is changed)",
        short(hex)
    ));
    if ctx.root.production().as_deref() == Some(hex) {
        output::detail("it is already production; a promote would do nothing");
        return Ok(());
    }
    if !release::is_ready(&ctx.root, hex) {
        output::detail("it has no ready release: it would be warmed up first");
    }
    let cur = ctx
        .root
        .production()
        .map(|c| format!("releases/{}", short(&c)))
        .unwrap_or_else(|| "nothing".into());
    for (stage, cmds) in [("stop", &p.stop)] {
        for c in cmds.iter() {
            output::detail(&format!("{stage}: {c}"));
        }
    }
    output::detail(&format!(
        "flip production: {cur} -> releases/{}",
        short(hex)
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
/// warmed up first. `via_tag` only changes wording.
pub fn promote_locked(
    ctx: &Ctx,
    repo: &gix::Repository,
    commit: Commit,
    git_ref: &str,
    via_tag: bool,
) -> Result<()> {
    let hex = commit.to_string();
    if ctx.root.production().as_deref() == Some(hex.as_str()) {
        output::line(&format!(
            "-----> {} is already production; nothing to do",
            short(&hex)
        ));
        if via_tag {
            output::success(&format!("production -> releases/{hex} (unchanged)"));
        }
        return Ok(());
    }
    if !release::is_ready(&ctx.root, &hex) {
        output::header(&format!(
            "promoting {} ({git_ref}): it has no ready release yet, so it is warmed up first",
            short(&hex)
        ));
        crate::ops::warmup::warm(ctx, repo, commit, git_ref, false, true)?;
    }
    switch(ctx, &hex, Event::Promote, git_ref)?;
    // Production has moved: a cleanup problem is a warning, never a failure.
    crate::ops::cleanup::after_promote(ctx);
    Ok(())
}

/// What can go wrong after the flip, for the rollback message.
pub(crate) struct Failure {
    /// Which stage failed.
    pub what: String,
    /// How.
    pub error: Error,
}

/// Failed or interrupted, as the phase decisions see it.
fn cause(error: &Error) -> Cause {
    match error {
        Error::Interrupted { .. } => Cause::Interrupted,
        _ => Cause::Failed,
    }
}

/// Switch production to `hex` through stop/flip/start/check, rolling back by
/// itself if anything after the flip fails or is interrupted (Ctrl-C,
/// SIGTERM: see src/signals.rs). Used by promote and rollback.
pub fn switch(ctx: &Ctx, hex: &str, event: Event, git_ref: &str) -> Result<()> {
    switch_with(ctx, hex, event, git_ref, None).map(|_| ())
}

/// [`switch`], in strict mode part of git's ref transaction (`txn`): on
/// success the run is left `prepared`, not ended, because whether it stands
/// is up to git (`crate::strict` ends or undoes it). Returns the run's entry.
pub(crate) fn switch_with(
    ctx: &Ctx,
    hex: &str,
    event: Event,
    git_ref: &str,
    txn: Option<crate::strict::GitTxn>,
) -> Result<Entry> {
    let root = &ctx.root;
    let p = &ctx.config.promote;
    let previous = root.production();
    // Nothing is changed yet, so an earlier interrupt needs no unwinding.
    crate::signals::check(&format!(
        "{event} of {} not started; production stays on {}",
        short(hex),
        describe(&previous)
    ))?;
    output::header(&format!(
        "{event}: production {} -> {}",
        previous.as_deref().map(short).unwrap_or("(none)"),
        short(hex)
    ));
    let mut entry = Entry::start(event.clone(), Some(hex), Some(git_ref));
    entry.previous = previous.clone();
    entry.txn = txn;
    entry.commands = Some(Commands::of(p));
    journal::append(root, &entry)?;
    let started = Instant::now();
    let env = |release: &str, prev: Option<&String>, extra: Vec<(String, String)>| {
        step_env(ctx, release, prev.map(String::as_str), git_ref, extra)
    };
    let new_env = env(hex, previous.as_ref(), vec![]);

    // 1-2. stop, make durable, flip. A failure here leaves production as it
    // was; the daemons are started again.
    if let Err((phase, what, e)) = stop_sync_flip(ctx, hex, &new_env) {
        let cause = cause(&e);
        debug_assert_eq!(decide::unwind(phase, cause), Unwind::StartAgain);
        let back = previous.as_deref().unwrap_or(hex);
        start_anyway(&p.start, &env(back, previous.as_ref(), vec![]));
        entry.error = Some(e.to_string());
        journal::append(
            root,
            &entry.end(decide::journal_result(Unwind::StartAgain, cause)),
        )?;
        if cause != Cause::Interrupted {
            // Nothing was switched: `failed`, and chat and CI hear of it.
            notify(ctx, hex, previous.as_ref(), git_ref, "failed", Some(&e));
            let message = format!(
                "{event} of {} failed: {} (production was not switched)",
                short(hex),
                failed(what, &e)
            );
            let help = promote_advice(&e, hex, &event, false);
            output::failure(&message, &crate::ops::warmup::where_now(&ctx.root), &help);
            return Err(Error::Shown {
                code: e.exit_code(),
                message,
                help: Some(help),
            });
        }
        if cause == Cause::Interrupted {
            return Err(crate::signals::error(format!(
                "{event} of {} stopped during {what}, before the switch; production stays on {}, and the daemons were started again",
                short(hex),
                describe(&previous)
            )));
        }
        return Err(e);
    }
    faults::point("after-flip-production");
    // Seconds from the run's start to the flip: with the end entry's time and
    // `total` this dates the flip to the millisecond (fleet skew, --json).
    entry
        .durations
        .insert("flip".into(), started.elapsed().as_secs_f64());
    output::log_only(&format!("       production -> releases/{hex}"));
    // From here on every failure goes through the rollback, which starts the daemons.
    let links = link::ensure_static(&root.dir, &ctx.config.links);

    // 3. after_switch, start, check
    let failure = match links {
        Err(error) => Some(Failure {
            what: "the root links".to_string(),
            error,
        }),
        Ok(_) => after_flip(ctx, &new_env),
    };
    let result = match failure {
        None => Outcome::Ok,
        Some(ref f) => {
            if cause(&f.error) == Cause::Interrupted {
                // An interrupt says nothing about the release: it stays
                // ready, and warmup on it, for the next promote.
                let stage = Stage::start("roll back");
                flip_back(ctx, hex, previous.as_deref(), git_ref);
                stage.done();
            } else {
                let why = format!("{}: {}", f.what, f.error);
                roll_back(ctx, &entry, previous.as_deref(), git_ref, State::Bad, why);
            }
            Outcome::RolledBack
        }
    };

    // 4. notify, journal. After an interrupt notify is not started: the
    // operator asked to stop, and all that matters is done.
    notify(
        ctx,
        hex,
        previous.as_ref(),
        git_ref,
        result.as_str(),
        failure.as_ref().map(|f| &f.error),
    );
    entry
        .durations
        .insert("total".into(), started.elapsed().as_secs_f64());
    match failure {
        None if entry.txn.is_some() => {
            journal::append(root, &crate::strict::prepared(&entry))?;
            output::success(&format!(
                "production -> releases/{} ({event} took {}); git updates {} next",
                short(hex),
                crate::fsutil::human_duration(started.elapsed()),
                git_ref
            ));
            Ok(entry)
        }
        None => {
            // Also when notify was interrupted: the promote itself is done.
            journal::append(root, &entry.end(Outcome::Ok))?;
            output::success(&format!(
                "production -> releases/{} (was {}; {event} took {})",
                short(hex),
                previous
                    .as_deref()
                    .map(|c| format!("releases/{}", short(c)))
                    .unwrap_or_else(|| "nothing".into()),
                crate::fsutil::human_duration(started.elapsed())
            ));
            Ok(entry)
        }
        Some(f) => {
            let cause = cause(&f.error);
            entry.error = Some(format!("{}: {}", f.what, f.error));
            journal::append(
                root,
                &entry.end(decide::journal_result(Unwind::RollBack, cause)),
            )?;
            if cause == Cause::Interrupted {
                return Err(crate::signals::error(format!(
                    "{event} of {} stopped during {} and rolled back; production is back on {}, and the daemons were started again (releases/{} stays ready)",
                    short(hex),
                    f.what,
                    describe(&previous),
                    short(hex)
                )));
            }
            let message = format!(
                "{event} of {} rolled back: {}",
                short(hex),
                failed(&f.what, &f.error)
            );
            let help = promote_advice(&f.error, hex, &event, true);
            output::failure(&message, &crate::ops::warmup::where_now(&ctx.root), &help);
            // 1, as any rollback: the step's own code (3) would say "nothing
            // happened", and scripts (the fleet playbook) tell them apart.
            Err(Error::Shown {
                code: 1,
                message,
                help: Some(help),
            })
        }
    }
}

/// Stop the daemons, sync the release to disk, flip production: the part of a
/// switch whose failure needs no rollback. An error names its phase.
fn stop_sync_flip(
    ctx: &Ctx,
    hex: &str,
    env: &StepEnv,
) -> std::result::Result<(), (Phase, &'static str, Error)> {
    let stage = (!ctx.config.promote.stop.is_empty()).then(|| Stage::start("stop"));
    faults::point("stop");
    steps::run_stage("stop", &ctx.config.promote.stop, env)
        .map_err(|e| (Phase::Stop, "stopping the daemons", e))?;
    if let Some(stage) = stage {
        stage.done();
    }
    let stage = Stage::start("switch production");
    // A power cut after the flip must not leave production on empty files.
    crate::fsutil::sync_filesystem(&ctx.root.release(hex))
        .map_err(|e| (Phase::Sync, "syncing the release to disk", e))?;
    // The last moment an interrupt leaves production untouched.
    crate::signals::check("production was not switched")
        .map_err(|e| (Phase::Flip, "switching production", e))?;
    faults::point("before-flip-production");
    link::flip(&ctx.root.dir, PRODUCTION, &link::release_target(hex))
        .map_err(|e| (Phase::Flip, "switching production", e))?;
    stage.done_with(&format!("production -> releases/{}", short(hex)));
    Ok(())
}

/// The environment of promote steps run in `release`.
pub fn step_env(
    ctx: &Ctx,
    release: &str,
    previous: Option<&str>,
    git_ref: &str,
    extra: Vec<(String, String)>,
) -> StepEnv {
    StepEnv {
        root: ctx.root.dir.clone(),
        release: ctx.root.release(release),
        commit: release.to_string(),
        git_ref: git_ref.to_string(),
        previous: previous.map(|c| ctx.root.release(c)),
        extra,
        timeout: ctx.config.step_timeout,
    }
}

/// after_switch, start and check; the first failure is returned.
pub(crate) fn after_flip(ctx: &Ctx, env: &StepEnv) -> Option<Failure> {
    let p = &ctx.config.promote;
    for (name, cmds) in [("after_switch", &p.after_switch), ("start", &p.start)] {
        if cmds.is_empty() {
            faults::point(name);
            continue;
        }
        let stage = Stage::start(name);
        faults::point(name);
        if let Err(error) = steps::run_stage(name, cmds, env) {
            return Some(Failure {
                what: name.to_string(),
                error,
            });
        }
        stage.done();
    }
    if !p.check.is_empty() {
        let stage = Stage::start("check");
        if let Err(error) = check_until(&p.check, env, p.check_timeout) {
            return Some(Failure {
                what: "check".to_string(),
                error,
            });
        }
        stage.done();
    }
    None
}

/// Retry all checks until they pass together or the time is up. The screen
/// gets the first failure's output, one line per attempt at most every few
/// seconds, and the last attempt's output; the run log gets every attempt.
fn check_until(checks: &[String], env: &StepEnv, timeout: Duration) -> Result<()> {
    const PROGRESS_EVERY: Duration = Duration::from_secs(5);
    let started = Instant::now();
    let deadline = started + timeout;
    let mut attempt = 1;
    let mut last_line = Instant::now();
    loop {
        // A hanging check (curl without -m) must not outlive check_timeout.
        let left = deadline.saturating_duration_since(Instant::now());
        let env = StepEnv {
            timeout: env.timeout.min(left.max(Duration::from_secs(1))),
            ..env.clone()
        };
        let (result, lines) = steps::run_stage_captured("check", checks, &env);
        if attempt == 1 {
            for l in &lines {
                output::detail(l);
            }
        }
        match result {
            Ok(()) => {
                if attempt > 1 {
                    output::detail(&format!(
                        "passed on attempt {attempt}, after {}",
                        crate::fsutil::human_duration(started.elapsed())
                    ));
                }
                return Ok(());
            }
            Err(e @ Error::Interrupted { .. }) => return Err(e),
            Err(e) if Instant::now() >= deadline => {
                if attempt > 1 {
                    output::detail("last attempt:");
                    for l in &lines {
                        output::detail(&format!("  {l}"));
                    }
                    output::log_only(&format!("       ({attempt} attempts in all)"));
                }
                return Err(e);
            }
            Err(e) => {
                if attempt == 1 {
                    output::detail(&format!(
                        "check failed; retrying for up to {}s (check_timeout)",
                        timeout.as_secs()
                    ));
                } else if last_line.elapsed() >= PROGRESS_EVERY {
                    output::detail(&format!(
                        "attempt {attempt} failed too ({e}); {}s left",
                        deadline.saturating_duration_since(Instant::now()).as_secs()
                    ));
                    last_line = Instant::now();
                }
                output::log_only(&format!("       attempt {attempt} failed: {e}"));
                attempt += 1;
                // A second between attempts (never past the deadline), cut
                // short by an interrupt.
                let pause =
                    Duration::from_secs(1).min(deadline.saturating_duration_since(Instant::now()));
                let _ = crate::signals::wakeups().recv_timeout(pause);
                crate::signals::check("the check was retrying")?;
            }
        }
    }
}

/// What failed, said once: a step's error names its stage already.
fn failed(what: &str, e: &Error) -> String {
    match e {
        Error::Step { .. } => e.to_string(),
        _ => format!("{what} failed: {e}"),
    }
}

/// Run promote.notify with `SYMDEPLOY_RESULT` (ok, rolled-back or failed)
/// and, after a failure, `SYMDEPLOY_ERROR` (one line). Its failure is a
/// warning: the outcome above stands.
pub(crate) fn notify(
    ctx: &Ctx,
    hex: &str,
    previous: Option<&String>,
    git_ref: &str,
    result: &str,
    error: Option<&Error>,
) {
    let p = &ctx.config.promote;
    if p.notify.is_empty() {
        return;
    }
    let mut extra = vec![("SYMDEPLOY_RESULT".to_string(), result.to_string())];
    if let Some(e) = error {
        extra.push((
            "SYMDEPLOY_ERROR".into(),
            crate::ops::warmup::one_line(&e.to_string()),
        ));
    }
    let stage = Stage::start("notify");
    let env = step_env(ctx, hex, previous.map(String::as_str), git_ref, extra);
    if let Err(e) = steps::run_stage("notify", &p.notify, &env) {
        output::warning(&format!("{e} (the {result} outcome above stands)"));
        return;
    }
    stage.done();
}

/// The one piece of advice after a failed promote: a fault of the commit
/// needs a new commit, pushed and promoted; a fault of the server (a missing
/// program, deploy.toml, a daemon) is fixed there, then promoted again by hand.
fn promote_advice(e: &Error, hex: &str, event: &Event, marked_bad: bool) -> String {
    let log = output::log_path()
        .map(|p| format!("the whole output is in {}; ", p.display()))
        .unwrap_or_default();
    let bad = if marked_bad {
        format!("releases/{} is marked bad; ", short(hex))
    } else {
        String::new()
    };
    let again = if *event == Event::Rollback {
        "`symdeploy rollback` again".to_string()
    } else {
        format!("`symdeploy promote {}`", short(hex))
    };
    match e {
        Error::Step { stage, status, .. }
            if status == "exit status 127" || stage == "stop" || stage == "start" =>
        {
            format!("{log}{bad}the server is at fault ({stage}): fix it there, then run {again}")
        }
        Error::Step { .. } if marked_bad => format!(
            "{log}{bad}fix the commit, push it and promote the new one (if the server was at fault, fix it and run {again})"
        ),
        Error::Step { .. } => format!("{log}fix the cause, then run {again}"),
        other => match other.help() {
            Some(h) => format!("{h}; then run {again}"),
            None => format!("{log}fix the cause on the server, then run {again}"),
        },
    }
}

/// Undo a flip: stop, production back to `previous` (or removed if there was
/// none), start; then mark the release `state` (bad, or failed when its push
/// was rejected) for `why`, and move `warmup` off it. Never fails: it runs on
/// an error path, and every failure is reported.
///
/// The whole of it is one recoverable step: an `undo` line in `run`'s journal
/// records the intent first, and a recovery that finds it does all of this
/// again (every part is idempotent), so a kill between marking the release
/// and moving warmup off it never leaves warmup on a release that is not ready.
pub(crate) fn roll_back(
    ctx: &Ctx,
    run: &Entry,
    previous: Option<&str>,
    git_ref: &str,
    state: State,
    why: String,
) {
    let _unwinding = crate::signals::unwinding("rolling back and starting the daemons again");
    let root = &ctx.root;
    let hex = run.commit.as_deref().unwrap_or_default();
    let intent = Entry {
        time: crate::fsutil::now_rfc3339(),
        phase: UNDO_PHASE,
        // Read back by recovery: `failed` marks it failed, anything else bad.
        result: Some(match state {
            State::Failed => Outcome::Failed,
            _ => Outcome::Bad,
        }),
        error: Some(why.clone()),
        pid: std::process::id(),
        ..run.clone()
    };
    if let Err(e) = journal::append(root, &intent) {
        output::warning(&format!(
            "could not record the rollback in the journal: {e}"
        ));
    }
    let stage = Stage::start("roll back");
    flip_back(ctx, hex, previous, git_ref);
    mark_and_move_warmup_off(ctx, hex, state, why);
    stage.done();
}

/// Stop, production back to `previous` (removed if there was none), start.
pub(crate) fn flip_back(ctx: &Ctx, hex: &str, previous: Option<&str>, git_ref: &str) {
    let _unwinding = crate::signals::unwinding("rolling back and starting the daemons again");
    let root = &ctx.root;
    let p = &ctx.config.promote;
    if let Err(e) = steps::run_stage(
        "stop",
        &p.stop,
        &step_env(ctx, hex, previous, git_ref, vec![]),
    ) {
        output::warning(&format!("stop during rollback: {e}"));
    }
    match previous {
        Some(prev) => match link::flip(&root.dir, PRODUCTION, &link::release_target(prev)) {
            Ok(()) => output::detail_full(
                &format!("production -> releases/{} (back)", short(prev)),
                prev,
            ),
            Err(e) => output::error(&format!("could not flip production back: {e}")),
        },
        None => {
            // Nothing served before this promote; serving nothing beats serving a bad release.
            let _ = std::fs::remove_file(root.link(PRODUCTION));
            output::detail("production removed (there was no earlier production release)");
        }
    }
    let back = previous.unwrap_or(hex);
    start_anyway(&p.start, &step_env(ctx, back, Some(hex), git_ref, vec![]));
}

/// The journal phase recording that a run is being rolled back (state and
/// reason in `result` and `error`), written before the rollback starts.
pub(crate) const UNDO_PHASE: journal::Phase = journal::Phase::Undo;

/// Mark `hex` `state` and move warmup off it: the end of a rollback.
pub(crate) fn mark_and_move_warmup_off(ctx: &Ctx, hex: &str, state: State, why: String) {
    let root = &ctx.root;
    if let Err(e) = release::set_state(root, hex, state, Some(why)) {
        output::warning(&format!(
            "could not mark releases/{hex} {}: {e}",
            state.as_str()
        ));
    }
    faults::point("after-mark-bad");
    // A release that just failed in production must not stay the one a
    // promote without arguments (or www_warmup) would pick.
    if root.warmup().as_deref() == Some(hex) {
        match crate::ops::recover::warmup_off(ctx, hex) {
            Ok(back) => output::detail(&format!(
                "warmup -> {} (off the {} release)",
                back.as_deref()
                    .map(|c| format!("releases/{}", short(c)))
                    .unwrap_or_else(|| "nothing".into()),
                state.as_str()
            )),
            Err(e) => output::warning(&format!("warmup still points at releases/{hex}: {e}")),
        }
    }
}

/// Run `start` whatever happens; its failure is reported, not raised, because
/// we are already on an error path.
pub(crate) fn start_anyway(start: &[String], env: &StepEnv) {
    let _unwinding = crate::signals::unwinding("starting the daemons again");
    if start.is_empty() {
        return;
    }
    let stage = Stage::start("start (restoring the daemons)");
    if let Err(e) = steps::run_stage("start", start, env) {
        output::error(&format!(
            "starting the daemons failed too: {e}; start them by hand"
        ));
    }
    stage.done();
}

pub(crate) fn describe(previous: &Option<String>) -> String {
    previous
        .as_deref()
        .map(|c| format!("releases/{c}"))
        .unwrap_or_else(|| "nothing (no earlier production)".into())
}
