//! The switch: the one place `production` is flipped.
//!
//! stop → sync → flip `production` → after_switch → start → check → notify,
//! and if anything after the flip fails or is interrupted: stop, flip back,
//! start, mark the release bad (a failure) or leave it ready (an interrupt).
//! Every path that ran `stop` runs `start`, so the daemons are never left
//! down. Promote, rollback, recovery and strict mode's undo call it; it calls
//! nothing above it.

use std::time::{Duration, Instant};

use crate::ctx::Ctx;
use crate::deploy::schema_gate::SchemaPlan;
use crate::error::{Error, Result};
use crate::session::plan::{self, Cause, SwitchPhase, Unwind};
use crate::state::commit::Commit;
use crate::state::journal::{self, Commands, Entry, Event, Outcome};
use crate::state::release::{self, State};
use crate::state::root::PRODUCTION;
use crate::sys::advice;
use crate::sys::output::{self, Stage};
use crate::sys::steps::{self, StepEnv};
use crate::{sys::faults, sys::symlink};

/// A phase of the switch that did not complete, and why: the one shape a
/// failure of the switch has, whichever phase it came from.
#[derive(Debug)]
pub(crate) struct StageFailure {
    /// The phase.
    pub(crate) stage: SwitchPhase,
    /// What went wrong in it.
    pub(crate) error: Error,
}

impl StageFailure {
    /// Failed or interrupted, as the phase decisions see it.
    pub(crate) fn cause(&self) -> Cause {
        match self.error {
            Error::Interrupted { .. } => Cause::Interrupted,
            _ => Cause::Failed,
        }
    }

    /// What failed, said once: a step's error names its stage already.
    pub(crate) fn message(&self) -> String {
        match &self.error {
            Error::Step { .. } => self.error.to_string(),
            e => format!("{} failed: {e}", self.stage.what()),
        }
    }

    /// `phase: error`, for the journal and the release record.
    pub(crate) fn reason(&self) -> String {
        format!("{}: {}", self.stage.what(), self.error)
    }
}

/// The phases of a switch up to the health check, in order; notify follows
/// whatever happened.
pub(crate) const FORWARD: [SwitchPhase; 8] = [
    SwitchPhase::Stop,
    SwitchPhase::Undo,
    SwitchPhase::Sync,
    SwitchPhase::Flip,
    SwitchPhase::Links,
    SwitchPhase::AfterSwitch,
    SwitchPhase::Start,
    SwitchPhase::Check,
];

/// What is left once production points at the new release: what recovery
/// finishes after a crash that came after the flip.
pub(crate) const AFTER_FLIP: [SwitchPhase; 3] = [
    SwitchPhase::AfterSwitch,
    SwitchPhase::Start,
    SwitchPhase::Check,
];

/// Switch production to `commit` through stop/flip/start/check, rolling back by
/// itself if anything after the flip fails or is interrupted (Ctrl-C,
/// SIGTERM: see src/signals.rs). Used by promote and rollback, with a schema
/// plan: its undo steps run in the release being left, after `stop` and
/// before the flip.
pub(crate) fn switch_planned(
    ctx: &Ctx,
    commit: Commit,
    event: Event,
    git_ref: &str,
    plan: SchemaPlan,
) -> Result<()> {
    switch_with(ctx, commit, event, git_ref, None, plan).map(|_| ())
}

/// [`switch_planned`], in strict mode part of git's ref transaction (`txn`): on
/// success the run is left `prepared`, not ended, because whether it stands
/// is up to git (`crate::hook::strict` ends or undoes it). Returns the run's entry.
pub(crate) fn switch_with(
    ctx: &Ctx,
    commit: Commit,
    event: Event,
    git_ref: &str,
    txn: Option<crate::state::journal::GitTxn>,
    schema: SchemaPlan,
) -> Result<Entry> {
    let previous = ctx.root.production();
    // Nothing is changed yet, so an earlier interrupt needs no unwinding.
    crate::sys::signals::check(&format!(
        "{event} of {} not started; production stays on {}",
        commit.short(),
        crate::deploy::pointers::describe(previous)
    ))?;
    output::header(&format!(
        "{event}: production {} -> {}",
        previous.as_ref().map_or("(none)", Commit::short),
        commit.short()
    ));
    // Production moves: a watch of the release it leaves has nothing left
    // to watch (and must never roll back what comes next).
    crate::state::watch::end_current(
        &ctx.root,
        Outcome::Ended,
        &format!("production moves to releases/{} ({event})", commit.short()),
    );
    // A manual rollback is its own act: the journal names it, not the
    // branch the release was once built from (the steps still see that).
    let recorded_ref = if event == Event::Rollback {
        "rollback"
    } else {
        git_ref
    };
    let mut entry = Entry::start(event.clone(), Some(&commit.into()), Some(recorded_ref));
    entry.previous = previous.map(Into::into);
    entry.txn = txn;
    entry.commands = Some(Commands::of(&ctx.config.promote));
    entry.schema = schema.note.clone();
    journal::append(&ctx.root, &entry)?;
    let mut run = Switch {
        undo: schema.undo,
        ctx,
        commit,
        event,
        git_ref,
        previous,
        entry,
        started: Instant::now(),
    };
    match run.forward() {
        Ok(()) => run.succeeded(),
        Err(failure) => match plan::unwind(failure.stage, failure.cause()) {
            Unwind::StartAgain => run.not_switched(failure),
            Unwind::RollBack => run.rolled_back(failure),
        },
    }
}

/// One switch under way: what its unwinding and its journal entry need.
struct Switch<'a> {
    ctx: &'a Ctx,
    commit: Commit,
    event: Event,
    git_ref: &'a str,
    /// Production before: where a rollback goes back to.
    previous: Option<Commit>,
    entry: Entry,
    started: Instant,
    /// Migrations to undo before the flip (rollback.migrate), newest first.
    undo: Vec<String>,
}

impl Switch<'_> {
    /// Run [`FORWARD`] until a phase does not complete.
    fn forward(&mut self) -> std::result::Result<(), StageFailure> {
        let env = step_env(self.ctx, self.commit, self.previous, self.git_ref, vec![]);
        let mut phases = Phases::new(self.ctx, self.commit, env);
        phases.undo = self.undo.clone();
        phases.leaving = self.previous;
        for phase in FORWARD {
            phases.run(phase)?;
            if phase == SwitchPhase::Flip {
                faults::point("after-flip-production");
                // Seconds from the run's start to the flip: with the end
                // entry's time and `total` this dates the flip to the
                // millisecond (fleet skew, --json).
                self.entry
                    .durations
                    .insert("flip".into(), self.started.elapsed().as_secs_f64());
                output::log_only(&format!("       production -> releases/{}", self.commit));
            }
        }
        Ok(())
    }

    /// Production is on the new release and healthy: notify, then end the
    /// run (or, in strict mode, leave it `prepared` for git to decide).
    fn succeeded(mut self) -> Result<Entry> {
        let (ctx, commit, event, git_ref) =
            (self.ctx, self.commit, self.event.clone(), self.git_ref);
        // Also when notify is interrupted: the promote itself is done.
        notify(ctx, commit, self.previous, git_ref, Outcome::Ok, None);
        let took = self.started.elapsed();
        self.entry
            .durations
            .insert("total".into(), took.as_secs_f64());
        let took = crate::sys::fs::human_duration(took);
        if self.entry.txn.is_some() {
            journal::append(&ctx.root, &crate::hook::pending::prepared(&self.entry))?;
            output::success_last(&format!(
                "production -> releases/{} ({event} took {took}); git updates {git_ref} next",
                commit.short(),
            ));
            return Ok(self.entry);
        }
        journal::append(&ctx.root, &self.entry.end(Outcome::Ok))?;
        crate::state::schema::served(ctx, commit);
        output::success_last(&format!(
            "production -> releases/{} (was {}; {event} took {took})",
            commit.short(),
            self.previous
                .map(|c| format!("releases/{}", c.short()))
                .unwrap_or_else(|| "nothing".into()),
        ));
        Ok(self.entry)
    }

    /// A phase before the flip did not complete: production was not touched;
    /// the daemons are started again.
    fn not_switched(mut self, failure: StageFailure) -> Result<Entry> {
        let (ctx, commit, event, git_ref) =
            (self.ctx, self.commit, self.event.clone(), self.git_ref);
        let previous = self.previous;
        let cause = failure.cause();
        let back = previous.unwrap_or(commit);
        start_anyway(
            &ctx.config.promote.start,
            &step_env(ctx, back, previous, git_ref, vec![]),
        );
        self.entry.error = Some(failure.error.to_string());
        journal::append(
            &ctx.root,
            &self
                .entry
                .end(plan::journal_result(Unwind::StartAgain, cause)),
        )?;
        if cause == Cause::Interrupted {
            return Err(crate::sys::signals::error(format!(
                "{event} of {} stopped during {}, before the switch; production stays on {}, and the daemons were started again",
                commit.short(),
                failure.stage.what(),
                crate::deploy::pointers::describe(previous)
            )));
        }
        // Nothing was switched: `failed`, and chat and CI hear of it.
        let e = &failure.error;
        notify(ctx, commit, previous, git_ref, Outcome::Failed, Some(e));
        let message = format!(
            "{event} of {} failed: {} (production was not switched)",
            commit.short(),
            failure.message()
        );
        Err(Error::Failed {
            code: e.exit_code(),
            message,
            now: crate::deploy::pointers::where_now(&ctx.root),
            help: Some(promote_advice(&failure, commit, &event, false)),
            source: Some(Box::new(failure.error)),
        })
    }

    /// A phase after the flip did not complete: roll back. A failure marks
    /// the release bad; an interrupt says nothing about the release, which
    /// stays ready (and warmup on it) for the next promote.
    fn rolled_back(mut self, failure: StageFailure) -> Result<Entry> {
        let (ctx, commit, event, git_ref) =
            (self.ctx, self.commit, self.event.clone(), self.git_ref);
        let previous = self.previous;
        let cause = failure.cause();
        // Production is failing: the rollback happens whatever the schema,
        // and says so loudly when the release it goes back to is behind it.
        let ahead = previous.and_then(|p| crate::deploy::schema_gate::ahead_note(ctx, p));
        // flip_back says it on screen; the journal and notify say it here.
        if let Some(note) = &ahead {
            self.entry.schema = Some(note.clone());
        }
        if cause == Cause::Interrupted {
            let stage = Stage::start("roll back");
            flip_back(ctx, commit, previous, git_ref);
            stage.done();
        } else {
            let why = failure.reason();
            roll_back(ctx, &self.entry, commit, previous, git_ref, State::Bad, why);
        }
        let told = match &ahead {
            Some(note) => Error::msg(format!("{}; {note}", failure.error)),
            None => Error::msg(failure.error.to_string()),
        };
        notify(
            ctx,
            commit,
            previous,
            git_ref,
            Outcome::RolledBack,
            Some(if ahead.is_some() {
                &told
            } else {
                &failure.error
            }),
        );
        self.entry
            .durations
            .insert("total".into(), self.started.elapsed().as_secs_f64());
        self.entry.error = Some(failure.reason());
        journal::append(
            &ctx.root,
            &self
                .entry
                .end(plan::journal_result(Unwind::RollBack, cause)),
        )?;
        if cause == Cause::Interrupted {
            return Err(crate::sys::signals::error(format!(
                "{event} of {} stopped during {} and rolled back; production is back on {}, and the daemons were started again (releases/{} stays ready)",
                commit.short(),
                failure.stage.what(),
                crate::deploy::pointers::describe(previous),
                commit.short()
            )));
        }
        let message = format!(
            "{event} of {} rolled back: {}",
            commit.short(),
            failure.message()
        );
        // 1, as any rollback: the step's own code (3) would say "nothing
        // happened", and scripts (the fleet playbook) tell them apart.
        Err(Error::Failed {
            code: 1,
            message,
            now: crate::deploy::pointers::where_now(&ctx.root),
            help: Some(promote_advice(&failure, commit, &event, true)),
            source: Some(Box::new(failure.error)),
        })
    }
}

/// Runs the phases of a switch for one release, each shown as a stage.
struct Phases<'a> {
    ctx: &'a Ctx,
    commit: Commit,
    env: StepEnv,
    /// `switch production` spans the sync and the flip.
    flip_stage: Option<Stage>,
    /// Migrations to undo (newest first) in `leaving`, the release being left.
    undo: Vec<String>,
    leaving: Option<Commit>,
}

impl<'a> Phases<'a> {
    fn new(ctx: &'a Ctx, commit: Commit, env: StepEnv) -> Self {
        Phases {
            ctx,
            commit,
            env,
            flip_stage: None,
            undo: Vec::new(),
            leaving: None,
        }
    }

    /// Run one phase; a failure names it.
    fn run(&mut self, phase: SwitchPhase) -> std::result::Result<(), StageFailure> {
        self.phase(phase).map_err(|error| {
            // A stage header never shown must not turn up above the unwinding.
            self.flip_stage = None;
            StageFailure {
                stage: phase,
                error,
            }
        })
    }

    fn phase(&mut self, phase: SwitchPhase) -> Result<()> {
        let p = &self.ctx.config.promote;
        match phase {
            SwitchPhase::Stop => self.steps("stop", &p.stop),
            SwitchPhase::Undo if self.undo.is_empty() => Ok(()),
            SwitchPhase::Undo => self.undo_migrations(),
            SwitchPhase::Sync => {
                self.flip_stage = Some(Stage::start("switch production"));
                // A power cut after the flip must not leave production on empty files.
                crate::sys::fs::sync_filesystem(&self.ctx.root.main_release(self.commit))
            }
            SwitchPhase::Flip => {
                // The last moment an interrupt leaves production untouched.
                crate::sys::signals::check("production was not switched")?;
                faults::point("before-flip-production");
                symlink::flip(
                    &self.ctx.root.dir,
                    PRODUCTION,
                    &symlink::release_target(self.commit),
                )?;
                if let Some(stage) = self.flip_stage.take() {
                    stage.done_with(&format!("production -> releases/{}", self.commit.short()));
                }
                Ok(())
            }
            SwitchPhase::Links => {
                symlink::ensure_static(&self.ctx.root.dir, &self.ctx.config.links).map(|_| ())
            }
            SwitchPhase::AfterSwitch => self.steps("after_switch", &p.after_switch),
            SwitchPhase::Start => self.steps("start", &p.start),
            SwitchPhase::Check if p.check.is_empty() => Ok(()),
            SwitchPhase::Check => {
                let stage = Stage::start("check");
                check_until(
                    "check",
                    &p.check,
                    &self.env,
                    p.check_timeout,
                    "check_timeout",
                )?;
                stage.done();
                Ok(())
            }
        }
    }

    /// `rollback.migrate` in the release being left (it has the down
    /// migrations), told what to undo and where production goes; then the
    /// schema record drops what was undone.
    fn undo_migrations(&self) -> Result<()> {
        let leaving = self.leaving.unwrap_or(self.commit);
        let stage = Stage::start("rollback.migrate");
        faults::point("rollback-migrate");
        let env = step_env(
            self.ctx,
            leaving,
            None,
            &self.env.git_ref,
            vec![
                ("SYMDEPLOY_MIGRATIONS_UNDO".into(), self.undo.join(" ")),
                (
                    "SYMDEPLOY_TARGET".into(),
                    self.ctx
                        .root
                        .main_release(self.commit)
                        .display()
                        .to_string(),
                ),
            ],
        );
        steps::run_stage(
            "rollback.migrate",
            &self.ctx.config.schema.rollback_migrate,
            &env,
        )?;
        crate::state::schema::after_undo(self.ctx, &self.undo)?;
        stage.done_with(&format!("undid {}", self.undo.join(" ")));
        Ok(())
    }

    /// A phase that runs the configured commands `cmds` of `name`.
    fn steps(&self, name: &str, cmds: &[String]) -> Result<()> {
        let stage = (!cmds.is_empty()).then(|| Stage::start(name));
        faults::point(name);
        steps::run_stage(name, cmds, &self.env)?;
        if let Some(stage) = stage {
            stage.done();
        }
        Ok(())
    }
}

/// Finish a switch whose flip was done (recovery after a crash): run
/// [`AFTER_FLIP`] for `commit`; the first phase that does not complete is
/// returned, and the caller rolls back.
pub(crate) fn finish_after_flip(
    ctx: &Ctx,
    commit: Commit,
    env: StepEnv,
) -> std::result::Result<(), StageFailure> {
    let mut phases = Phases::new(ctx, commit, env);
    AFTER_FLIP
        .into_iter()
        .try_for_each(|phase| phases.run(phase))
}

/// The environment of promote steps run in `release`.
pub(crate) fn step_env(
    ctx: &Ctx,
    release: Commit,
    previous: Option<Commit>,
    git_ref: &str,
    extra: Vec<(String, String)>,
) -> StepEnv {
    StepEnv {
        root: ctx.root.dir.clone(),
        release: ctx.root.main_release(release),
        commit: release,
        git_ref: git_ref.to_string(),
        previous: previous.map(|c| ctx.root.main_release(c)),
        extra,
        timeout: ctx.config.step_timeout,
    }
}

/// Retry all checks until they pass together or the time is up. The screen
/// gets the first failure's output, one line per attempt at most every few
/// seconds, and the last attempt's output; the run log gets every attempt.
pub(crate) fn check_until(
    stage: &str,
    checks: &[String],
    env: &StepEnv,
    timeout: Duration,
    timeout_key: &str,
) -> Result<()> {
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
        let (result, lines) = steps::run_stage_captured(stage, checks, &env);
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
                        crate::sys::fs::human_duration(started.elapsed())
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
                        "check failed; retrying for up to {}s ({timeout_key})",
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
                let _ = crate::sys::signals::wakeups().recv_timeout(pause);
                crate::sys::signals::check("the check was retrying")?;
            }
        }
    }
}

/// Run promote.notify with `SYMDEPLOY_RESULT` (ok, rolled-back or failed)
/// and, after a failure, `SYMDEPLOY_ERROR` (one line). Its failure is a
/// warning: the outcome above stands.
pub(crate) fn notify(
    ctx: &Ctx,
    commit: Commit,
    previous: Option<Commit>,
    git_ref: &str,
    result: Outcome,
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
            crate::sys::output::one_line(&e.to_string()),
        ));
    }
    let stage = Stage::start("notify");
    let env = step_env(ctx, commit, previous, git_ref, extra);
    if let Err(e) = steps::run_stage("notify", &p.notify, &env) {
        output::warning(&format!("{e} (the {result} outcome above stands)"));
        return;
    }
    stage.done();
}

/// The one piece of advice after a failed promote: a fault of the commit
/// needs a new commit, pushed and promoted; a fault of the server (a missing
/// program, deploy.toml, a daemon) is fixed there, then promoted again by hand.
fn promote_advice(
    failure: &StageFailure,
    commit: Commit,
    event: &Event,
    marked_bad: bool,
) -> String {
    let e = &failure.error;
    let log = output::log_path()
        .map(|p| format!("the whole output is in {}; ", p.display()))
        .unwrap_or_default();
    let bad = if marked_bad {
        format!("releases/{} is marked bad; ", commit.short())
    } else {
        String::new()
    };
    let again = if *event == Event::Rollback {
        format!("`{}` again", advice::command("rollback"))
    } else {
        format!(
            "`{}`",
            advice::command(&format!("promote {}", commit.short()))
        )
    };
    match e {
        Error::Step { stage, status, .. }
            if status.not_found()
                || matches!(failure.stage, SwitchPhase::Stop | SwitchPhase::Start) =>
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
    commit: Commit,
    previous: Option<Commit>,
    git_ref: &str,
    state: State,
    why: String,
) {
    let _unwinding = crate::sys::signals::unwinding("rolling back and starting the daemons again");
    let root = &ctx.root;
    let intent = Entry {
        time: crate::sys::time::Time::now(),
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
    flip_back(ctx, commit, previous, git_ref);
    mark_and_move_warmup_off(ctx, commit, state, why);
    stage.done();
}

/// Stop, production back to `previous` (removed if there was none), start.
pub(crate) fn flip_back(ctx: &Ctx, commit: Commit, previous: Option<Commit>, git_ref: &str) {
    let _unwinding = crate::sys::signals::unwinding("rolling back and starting the daemons again");
    let root = &ctx.root;
    let p = &ctx.config.promote;
    // Every automatic rollback (a failed check, a crash recovered, git's
    // refusal) happens whatever the schema, and says so when it is behind.
    if let Some(note) = previous.and_then(|prev| crate::deploy::schema_gate::ahead_note(ctx, prev))
    {
        output::error(&format!(
            "{note}; rolling back all the same (production is failing)"
        ));
    }
    if let Err(e) = steps::run_stage(
        "stop",
        &p.stop,
        &step_env(ctx, commit, previous, git_ref, vec![]),
    ) {
        output::warning(&format!("stop during rollback: {e}"));
    }
    match previous {
        Some(prev) => match symlink::flip(&root.dir, PRODUCTION, &symlink::release_target(prev)) {
            Ok(()) => output::detail_full(
                &format!("production -> releases/{} (back)", prev.short()),
                prev.as_str(),
            ),
            Err(e) => output::error(&format!("could not flip production back: {e}")),
        },
        None => {
            // Nothing served before this promote; serving nothing beats serving a bad release.
            let _ = std::fs::remove_file(root.link(PRODUCTION));
            output::detail("production removed (there was no earlier production release)");
        }
    }
    let back = previous.unwrap_or(commit);
    start_anyway(
        &p.start,
        &step_env(ctx, back, Some(commit), git_ref, vec![]),
    );
}

/// The journal phase recording that a run is being rolled back (state and
/// reason in `result` and `error`), written before the rollback starts.
pub(crate) const UNDO_PHASE: journal::LineKind = journal::LineKind::Undo;

/// Mark `commit` `state` and move warmup off it: the end of a rollback.
pub(crate) fn mark_and_move_warmup_off(ctx: &Ctx, commit: Commit, state: State, why: String) {
    let root = &ctx.root;
    if let Err(e) = release::set_state(root, &commit.into(), state, Some(why)) {
        output::warning(&format!("could not mark releases/{commit} {state}: {e}"));
    }
    faults::point("after-mark-bad");
    // A release that just failed in production must not stay the one a
    // promote without arguments (or www_warmup) would pick.
    if root.warmup() == Some(commit) {
        match crate::deploy::pointers::warmup_off(ctx, commit) {
            Ok(back) => output::detail(&format!(
                "warmup -> {} (off the {} release)",
                back.map(|c| format!("releases/{}", c.short()))
                    .unwrap_or_else(|| "nothing".into()),
                state
            )),
            Err(e) => output::warning(&format!("warmup still points at releases/{commit}: {e}")),
        }
    }
}

/// Run `start` whatever happens; its failure is reported, not raised, because
/// we are already on an error path.
pub(crate) fn start_anyway(start: &[String], env: &StepEnv) {
    let _unwinding = crate::sys::signals::unwinding("starting the daemons again");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::release::Record;
    use crate::state::root::Root;

    const OLD: &str = "1111111111111111111111111111111111111111";
    const NEW: &str = "2222222222222222222222222222222222222222";

    fn id(hex: &str) -> Commit {
        Commit::parse(hex).unwrap()
    }

    /// A root with two ready releases, production on OLD, and promote steps
    /// that append their name to `trace` (after_switch/check as given).
    fn root_with(after_switch: &str, stop: &str) -> (tempfile::TempDir, Ctx) {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path()).unwrap();
        root.ensure_state_dirs().unwrap();
        for c in [OLD, NEW] {
            std::fs::create_dir_all(root.main_release(id(c))).unwrap();
            release::save(
                &root,
                &Record::building(id(c), "refs/heads/main", String::new()),
            )
            .unwrap();
            release::set_state(&root, &id(c).into(), State::Ready, None).unwrap();
        }
        symlink::flip(&root.dir, PRODUCTION, &symlink::release_target(id(OLD))).unwrap();
        let trace = t.path().join("trace");
        let step = |name: &str, extra: &str| {
            format!(
                "[\"echo {name} $SYMDEPLOY_COMMIT >> '{}'{extra}\"]",
                trace.display()
            )
        };
        std::fs::write(
            root.config_file(),
            format!(
                "[promote]\nstop = {}\nafter_switch = {}\nstart = {}\ncheck = []\nnotify = []\n",
                step("stop", stop),
                step("after_switch", after_switch),
                step("start", ""),
            ),
        )
        .unwrap();
        let ctx = Ctx::load(root).unwrap();
        (t, ctx)
    }

    fn trace(t: &tempfile::TempDir) -> Vec<String> {
        std::fs::read_to_string(t.path().join("trace"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.replace(OLD, "OLD").replace(NEW, "NEW"))
            .collect()
    }

    fn last_result(ctx: &Ctx) -> Option<Outcome> {
        crate::state::journal::read(&ctx.root)
            .last()
            .and_then(|e| e.result.clone())
    }

    #[test]
    fn the_sequence_never_needs_a_rollback_before_the_flip_and_always_after_it() {
        let flip = FORWARD
            .iter()
            .position(|p| *p == SwitchPhase::Flip)
            .unwrap();
        for (i, phase) in FORWARD.iter().enumerate() {
            for cause in [Cause::Failed, Cause::Interrupted] {
                let wanted = if i <= flip {
                    Unwind::StartAgain
                } else {
                    Unwind::RollBack
                };
                assert_eq!(plan::unwind(*phase, cause), wanted, "{phase:?}");
            }
        }
        assert_eq!(
            FORWARD[0],
            SwitchPhase::Stop,
            "the daemons stop before anything moves"
        );
        assert!(FORWARD.ends_with(&AFTER_FLIP));
    }

    #[test]
    fn a_good_switch_flips_production_and_ends_ok() {
        let (t, ctx) = root_with("", "");
        let entry = switch_with(
            &ctx,
            id(NEW),
            Event::Promote,
            "refs/tags/release-1",
            None,
            SchemaPlan::default(),
        )
        .unwrap();
        assert_eq!(ctx.root.production(), Some(id(NEW)));
        assert_eq!(trace(&t), ["stop NEW", "after_switch NEW", "start NEW"]);
        assert_eq!(last_result(&ctx), Some(Outcome::Ok));
        assert!(entry.durations.contains_key("flip"));
        assert!(entry.durations["flip"] <= entry.durations["total"]);
    }

    #[test]
    fn a_failed_stop_starts_the_daemons_again_and_leaves_production() {
        let (t, ctx) = root_with("", "; exit 7");
        let err = switch_with(
            &ctx,
            id(NEW),
            Event::Promote,
            "refs/tags/release-1",
            None,
            SchemaPlan::default(),
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 3, "a step's failure: {err}");
        assert_eq!(ctx.root.production(), Some(id(OLD)));
        // Started in the release production still serves.
        assert_eq!(trace(&t), ["stop NEW", "start OLD"]);
        assert_eq!(last_result(&ctx), Some(Outcome::Failed));
        assert!(
            release::is_ready(&ctx.root, &id(NEW).into()),
            "nothing says the release is bad"
        );
    }

    #[test]
    fn a_failed_after_switch_rolls_back_marks_the_release_bad_and_starts_again() {
        let (t, ctx) = root_with("; exit 1", "");
        let err = switch_with(
            &ctx,
            id(NEW),
            Event::Promote,
            "refs/tags/release-1",
            None,
            SchemaPlan::default(),
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert_eq!(ctx.root.production(), Some(id(OLD)));
        assert_eq!(
            trace(&t),
            ["stop NEW", "after_switch NEW", "stop NEW", "start OLD"]
        );
        assert_eq!(last_result(&ctx), Some(Outcome::RolledBack));
        assert_eq!(
            release::effective_state(&ctx.root, &id(NEW).into()).to_string(),
            "bad",
            "a failure after the flip is the release's"
        );
    }

    #[test]
    fn finishing_after_a_crash_names_the_phase_that_failed() {
        let (t, ctx) = root_with("; exit 1", "");
        let env = step_env(&ctx, id(NEW), Some(id(OLD)), "refs/tags/release-1", vec![]);
        let failure = finish_after_flip(&ctx, id(NEW), env).unwrap_err();
        assert_eq!(failure.stage, SwitchPhase::AfterSwitch);
        assert_eq!(failure.cause(), Cause::Failed);
        assert!(
            failure.reason().starts_with("after_switch: "),
            "{}",
            failure.reason()
        );
        // The start was not reached: the caller rolls back, which starts.
        assert_eq!(trace(&t), ["after_switch NEW"]);
    }
}
