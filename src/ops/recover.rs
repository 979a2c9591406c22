//! `symdeploy recover`, and the repair every locked operation runs first:
//! finish or undo runs that the journal shows as started and never ended
//! (a SIGKILL, a power cut, an OOM kill).
//!
//! The lock is held while this runs, so no such run is still alive: the
//! kernel dropped its flock when it died.

use crate::error::Result;
use crate::journal::{self, Entry, Event, Outcome, Phase};
use crate::ops::decide::{self, Recovery, Unfinished};
use crate::ops::promote::{self, after_flip, roll_back, start_anyway};
use crate::ops::Ctx;
use crate::output;
use crate::release::{self, State};
use crate::root::short;

/// `symdeploy recover`: take the lock, repair, report.
pub fn run(ctx: &Ctx) -> Result<()> {
    crate::ops::open_run_log(&ctx.root, "recover", "journal");
    crate::signals::install();
    let _lock = crate::lock::acquire(&ctx.root, "recover", ctx.config.lock_timeout)?;
    crate::ops::maintain_journal(ctx);
    let repaired = recover_locked(ctx)?;
    crate::ops::warmup::tidy_leftovers(ctx);
    if repaired == 0 {
        output::success("nothing to recover: every run in the journal finished");
    }
    Ok(())
}

/// Repair interrupted runs; returns how many there were. Call with the lock held.
pub fn recover_locked(ctx: &Ctx) -> Result<usize> {
    // Repairs restart daemons and roll back: no Ctrl-C may cut them short.
    let _unwinding = crate::signals::unwinding("recovering an interrupted run");
    if let Some(note) = crate::steps::end_orphans(&ctx.root) {
        output::header("a deploy step was interrupted");
        output::detail(&note);
    }
    // The open-run files, not the history: the cost does not grow with it.
    let open: Vec<Entry> = journal::open_runs(&ctx.root)
        .into_iter()
        // A strict run whose receive-pack still runs is not interrupted:
        // git has not decided its ref yet, and its own hook ends it.
        .filter(|e| !e.txn.as_ref().is_some_and(|t| t.undecided()))
        .collect();
    for e in &open {
        let lines = run_lines(ctx, e);
        let lines: Vec<&Entry> = lines.iter().collect();
        repair(ctx, e, &lines)?;
    }
    // Whatever a crash interrupted, warmup ends on a ready release (or none).
    if let Some(w) = ctx.root.warmup() {
        if !release::is_ready(&ctx.root, &w) {
            let back = warmup_off(ctx, &w)?;
            output::detail(&format!(
                "warmup pointed at releases/{} ({}); warmup -> {}",
                short(&w),
                release::effective_state(&ctx.root, &w),
                back.as_deref().map(short).unwrap_or("nothing")
            ));
        }
    }
    Ok(open.len())
}

/// Every journal line of the open run `e`, oldest first: read backwards from
/// the end only as far as the run's start, so the cost is that of the lines
/// written since it started, not of the history.
fn run_lines(ctx: &Ctx, e: &Entry) -> Vec<Entry> {
    let mut out = Vec::new();
    journal::for_each_rev(&ctx.root, |x| {
        if x.run != e.run {
            return std::ops::ControlFlow::Continue(());
        }
        let start = x.phase == Phase::Start;
        out.push(x);
        if start {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    });
    out.reverse();
    out
}

/// Is the commit one git accepted: reachable from a ref? Objects alone prove
/// nothing: git migrates a push's objects before it updates the refs.
fn landed(ctx: &Ctx, commit: &str) -> bool {
    crate::strict::kept(ctx, commit)
}

/// Move warmup off a rejected commit (if it points there); returns where
/// warmup points now.
pub(crate) fn warmup_off(ctx: &Ctx, rejected: &str) -> Result<Option<String>> {
    if ctx.root.warmup().as_deref() != Some(rejected) {
        return Ok(ctx.root.warmup());
    }
    let back = fallback_warmup(ctx, rejected);
    match &back {
        Some(b) => crate::ops::warmup::flip_warmup(ctx, b)?,
        None => {
            let _ = std::fs::remove_file(ctx.root.link(crate::root::WARMUP));
        }
    }
    Ok(back)
}

/// Where warmup goes back to when it points at a rejected commit: the newest
/// earlier warm-up that is still ready and in the repository, else production.
fn fallback_warmup(ctx: &Ctx, rejected: &str) -> Option<String> {
    let mut found = None;
    journal::for_each_rev(&ctx.root, |e| {
        let Some(c) = e
            .commit
            .filter(|_| e.event == Event::Warmup && e.phase == Phase::End)
        else {
            return std::ops::ControlFlow::Continue(());
        };
        if e.result.as_ref().is_some_and(Outcome::succeeded)
            && c != rejected
            && release::is_ready(&ctx.root, &c)
            && landed(ctx, &c)
        {
            found = Some(c);
            return std::ops::ControlFlow::Break(());
        }
        std::ops::ControlFlow::Continue(())
    });
    found.or_else(|| ctx.root.production())
}

fn repair(ctx: &Ctx, e: &Entry, lines: &[&Entry]) -> Result<()> {
    let root = &ctx.root;
    let commit = e.commit.clone().unwrap_or_default();
    let git_ref = e.git_ref.clone().unwrap_or_default();
    output::header(&format!(
        "recovering an interrupted {} of {} (started {} by {}, pid {})",
        e.event,
        short(&commit),
        e.time,
        e.user,
        e.pid
    ));
    if e.event == crate::ops::preview::EVENT || e.event == crate::ops::preview::REMOVE_EVENT {
        return match crate::ops::preview::repair(ctx, e, lines)? {
            Some(mut end) => {
                end.time = crate::fsutil::now_rfc3339();
                end.pid = std::process::id();
                journal::append(root, &end)
            }
            None => Ok(()),
        };
    }
    let mut end = e.end(Outcome::Interrupted);
    let undo_line = lines.iter().rev().find(|x| x.phase == promote::UNDO_PHASE);
    let prepared = lines
        .iter()
        .any(|x| x.phase == crate::strict::PREPARED_PHASE);
    let git_kept = e
        .txn
        .as_ref()
        .map(|_| crate::strict::ref_kept(ctx, &git_ref, &commit));
    let decision = decide::recovery(Unfinished {
        event: &e.event,
        landed: landed(ctx, &commit),
        ready: release::is_ready(root, &commit),
        in_production: root.production().as_deref() == Some(commit.as_str()),
    });
    // The interrupted run's own commands: the daemons it stopped are the ones
    // its start starts, whatever deploy.toml says now.
    let runs_daemons = undo_line.is_some()
        || git_kept == Some(false)
        || matches!(
            decision,
            Recovery::RollBackRejected | Recovery::FinishSwitch | Recovery::StartAgain
        );
    let recorded;
    let ctx = match &e.commands {
        Some(commands) if runs_daemons => {
            recorded = Ctx {
                root: ctx.root.clone(),
                config: crate::config::Config {
                    promote: commands.apply(&ctx.config.promote),
                    ..ctx.config.clone()
                },
            };
            output::detail(&format!(
                "running the commands recorded by the interrupted run{} (start: {})",
                if recorded.config.promote != ctx.config.promote {
                    ", not deploy.toml's current ones"
                } else {
                    ""
                },
                if commands.start.is_empty() {
                    "none".to_string()
                } else {
                    commands.start.join("; ")
                }
            ));
            &recorded
        }
        _ => ctx,
    };
    if let Some(u) = undo_line {
        // Killed while rolling back: the rollback is one step; do it all again.
        let state = match u.result {
            Some(Outcome::Failed) => State::Failed,
            _ => State::Bad,
        };
        let why = u.error.clone().unwrap_or_else(|| "interrupted".into());
        output::detail(&format!(
            "it was rolling back ({why}); finishing the rollback"
        ));
        roll_back(ctx, e, e.previous.as_deref(), &git_ref, state, why);
        end = e.end(Outcome::RolledBack);
    } else if git_kept == Some(false) {
        output::detail(&format!(
            "git did not update {} to {} (the push was refused, or killed before git decided); undoing",
            output::escape(&git_ref),
            short(&commit)
        ));
        crate::strict::undo(ctx, e, "interrupted before git updated the ref");
        return Ok(());
    } else if git_kept == Some(true) && prepared {
        output::detail(&format!(
            "git updated {} to {}; its flips were complete, so the run stands",
            output::escape(&git_ref),
            short(&commit)
        ));
        end = e.end(Outcome::Ok);
    } else {
        match decision {
            Recovery::RejectWarmup => {
                // A strict-mode (pre-receive) hook died: git rejected the push and
                // dropped its objects. Nothing may stay pointed at that commit.
                if release::load(root, &commit).is_some() {
                    release::set_state(
                        root,
                        &commit,
                        State::Failed,
                        Some("interrupted; the push was rejected".into()),
                    )?;
                }
                let back = warmup_off(ctx, &commit)?;
                output::detail(&format!(
                "the push of {} was rejected (its hook was killed), so releases/{} is marked failed; warmup -> {}",
                short(&commit),
                short(&commit),
                back.as_deref().map(short).unwrap_or("nothing")
            ));
            }
            Recovery::FinishWarmup => {
                // Every step had succeeded; only the flip (or what follows it) was cut short.
                if root.warmup().as_deref() != Some(commit.as_str()) {
                    crate::ops::warmup::point_warmup(ctx, &commit)?;
                }
                output::detail(&format!(
                "releases/{} had been warmed up completely; warmup -> releases/{} (its notify step did not run)",
                short(&commit),
                short(&commit)
            ));
                end = e.end(Outcome::Ok);
            }
            Recovery::FailWarmup => {
                if release::load(root, &commit).is_some_and(|r| r.state == State::Building) {
                    release::set_state(root, &commit, State::Failed, Some("interrupted".into()))?;
                }
                output::detail(&format!(
                    "releases/{} was never warmed up (marked failed); warmup stays on {}",
                    short(&commit),
                    root.warmup().as_deref().map(short).unwrap_or("nothing")
                ));
            }
            Recovery::RollBackRejected | Recovery::FinishSwitch | Recovery::StartAgain => {
                let previous = e.previous.as_deref();
                if decision == Recovery::RollBackRejected {
                    // A strict-mode tag push whose hook died: git rejected it, so
                    // production must not stay on it.
                    output::detail(&format!(
                    "production had been switched, but the push of {} was rejected (its hook was killed); switching back",
                    short(&commit)
                ));
                    let why = "interrupted; the push was rejected".to_string();
                    roll_back(ctx, e, previous, &git_ref, State::Failed, why);
                    end = e.end(Outcome::RolledBack);
                } else if decision == Recovery::FinishSwitch {
                    output::detail(
                    "production had already been switched; finishing: after_switch, start, check",
                );
                    let env = promote::step_env(ctx, &commit, previous, &git_ref, vec![]);
                    match after_flip(ctx, &env) {
                        None => {
                            output::success(&format!(
                                "production -> releases/{commit} (finished after the interruption)"
                            ));
                            end = e.end(Outcome::Ok);
                        }
                        Some(f) => {
                            output::error(&format!("{} failed: {}; rolling back", f.what, f.error));
                            let why = format!("{}: {}", f.what, f.error);
                            roll_back(ctx, e, previous, &git_ref, State::Bad, why);
                            end = e.end(Outcome::RolledBack);
                        }
                    }
                } else {
                    output::detail(&format!(
                    "production was not switched (still {}); starting the daemons that were stopped",
                    promote::describe(&root.production())
                ));
                    let back = root.production().unwrap_or(commit.clone());
                    start_anyway(
                        &ctx.config.promote.start,
                        &promote::step_env(ctx, &back, None, &git_ref, vec![]),
                    );
                }
            }
            Recovery::Nothing => output::detail("nothing to repair for this kind of run"),
        }
    }
    end.time = crate::fsutil::now_rfc3339();
    end.pid = std::process::id();
    journal::append(root, &end)
}
