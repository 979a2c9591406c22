//! The repair every locked operation runs first: finish or undo runs that
//! the journal shows as started and never ended (a SIGKILL, a power cut, an
//! OOM kill), and strict-mode runs git did not keep.
//!
//! The lock is held while this runs, so no such run is still alive: the
//! kernel dropped its flock when it died. What to do is decided by
//! [`crate::session::plan`]; the switch and the pointers do it.

use crate::ctx::Ctx;
use crate::deploy::pointers::warmup_off;
use crate::deploy::switch::{self, roll_back, start_anyway};
use crate::error::Result;
use crate::hook::pending::kept;
use crate::session::plan::{self, Recovery, Unfinished};
use crate::state::commit::Commit;
use crate::state::journal::{self, Entry, Event, LineKind, Outcome};
use crate::state::release::{self, State};
use crate::state::release_name::Recorded;
use crate::sys::output;

/// Repair interrupted runs; returns how many there were. Call with the lock held.
pub(crate) fn recover_locked(ctx: &Ctx) -> Result<usize> {
    // Repairs restart daemons and roll back: no Ctrl-C may cut them short.
    let _unwinding = crate::sys::signals::unwinding("recovering an interrupted run");
    if let Some(note) = crate::sys::steps::end_orphans(&ctx.root) {
        output::header("a deploy step was interrupted");
        output::detail(&note);
    }
    // The open-run files, not the history: the cost does not grow with it.
    let open: Vec<Entry> = journal::open_runs(&ctx.root)
        .into_iter()
        // A strict run whose receive-pack still runs is not interrupted:
        // git has not decided its ref yet, and its own hook ends it.
        .filter(|e| !e.txn.as_ref().is_some_and(|t| t.undecided()))
        // A watch whose watcher lives is not interrupted, only long.
        .filter(|e| !crate::state::watch::watching(&ctx.root, e))
        .collect();
    // Newest first, as an undo goes: a strict push's promote puts production
    // back before the warm-up under it marks the release failed, so a kill
    // in between never leaves production on a failed release.
    for e in open.iter().rev() {
        let lines = run_lines(ctx, e);
        let lines: Vec<&Entry> = lines.iter().collect();
        repair(ctx, e, &lines)?;
    }
    // Whatever a crash interrupted, warmup ends on a ready release (or none).
    if let Some(w) = ctx.root.warmup() {
        if !release::is_ready(&ctx.root, &w.into()) {
            let back = warmup_off(ctx, w)?;
            output::detail(&format!(
                "warmup pointed at releases/{} ({}); warmup -> {}",
                w.short(),
                release::effective_state(&ctx.root, &w.into()),
                back.as_ref().map_or("nothing", Commit::short)
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
        let start = x.phase == LineKind::Start;
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

fn repair(ctx: &Ctx, e: &Entry, lines: &[&Entry]) -> Result<()> {
    let root = &ctx.root;
    let git_ref = e.git_ref.clone().unwrap_or_default();
    output::header(&format!(
        "recovering an interrupted {} of {} (started {} by {}, pid {})",
        e.event,
        e.commit.as_ref().map(Recorded::label).unwrap_or_default(),
        e.time,
        e.user,
        e.pid
    ));
    if e.event == crate::deploy::preview::EVENT || e.event == crate::deploy::preview::REMOVE_EVENT {
        return match crate::deploy::preview::repair(ctx, e, lines)? {
            Some(mut end) => {
                end.time = crate::sys::time::Time::now();
                end.pid = std::process::id();
                journal::append(root, &end)
            }
            None => Ok(()),
        };
    }
    let Some(commit) = e.commit.as_ref().and_then(Recorded::main) else {
        return end_unnamed(ctx, e);
    };
    let undo_line = lines.iter().rev().find(|x| x.phase == switch::UNDO_PHASE);
    let decision = plan::recovery(Unfinished {
        event: &e.event,
        landed: kept(ctx, commit),
        ready: release::is_ready(root, &commit.into()),
        in_production: root.production() == Some(commit),
        rolling_back: undo_line.is_some(),
        git_kept: e
            .txn
            .as_ref()
            .map(|_| crate::hook::pending::ref_kept(ctx, &git_ref, commit)),
        prepared: lines
            .iter()
            .any(|x| x.phase == crate::hook::pending::PREPARED_PHASE),
    });
    let recorded;
    let ctx = match &e.commands {
        Some(commands) if decision.runs_daemons() => {
            recorded = Ctx {
                root: ctx.root.clone(),
                config: crate::state::config::Config {
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
    let Some(result) = act(ctx, e, decision, undo_line.copied(), commit, &git_ref)? else {
        return Ok(());
    };
    let mut end = e.end(result);
    end.time = crate::sys::time::Time::now();
    end.pid = std::process::id();
    journal::append(root, &end)
}

/// End a run whose journal line names no release symdeploy can act on (an
/// odd value an older version or a hand edit left): nothing is changed for
/// it, except that the daemons are started if it was a switch, since its
/// `stop` may have run.
fn end_unnamed(ctx: &Ctx, e: &Entry) -> Result<()> {
    output::warning(&format!(
        "the interrupted {} run {} names no release (`{}`); nothing is done for it but end it as interrupted",
        e.event,
        e.run,
        e.commit.as_ref().map(Recorded::label).unwrap_or_default()
    ));
    if matches!(e.event, Event::Promote | Event::Rollback) {
        if let Some(p) = ctx.root.production() {
            let git_ref = e.git_ref.clone().unwrap_or_default();
            start_anyway(
                &ctx.config.promote.start,
                &switch::step_env(ctx, p, None, &git_ref, vec![]),
            );
        }
    }
    let mut end = e.end(Outcome::Interrupted);
    end.time = crate::sys::time::Time::now();
    end.pid = std::process::id();
    journal::append(&ctx.root, &end)
}

/// Carry out `decision` for the unfinished run `e` (of `commit`, pushed as
/// `git_ref`); returns the result its end entry records, or `None` when the
/// repair ended the run itself.
fn act(
    ctx: &Ctx,
    e: &Entry,
    decision: Recovery,
    undo_line: Option<&Entry>,
    commit: Commit,
    git_ref: &str,
) -> Result<Option<Outcome>> {
    let root = &ctx.root;
    let previous = e.previous.as_ref().and_then(Recorded::main);
    match decision {
        Recovery::FinishRollBack => {
            let u = undo_line.unwrap_or(e);
            let state = match u.result {
                Some(Outcome::Failed) => State::Failed,
                _ => State::Bad,
            };
            let why = u.error.clone().unwrap_or_else(|| "interrupted".into());
            output::detail(&format!(
                "it was rolling back ({why}); finishing the rollback"
            ));
            roll_back(ctx, e, commit, previous, git_ref, state, why);
            crate::state::watch::clear(root, &e.run);
        }
        Recovery::UndoRejected => {
            output::detail(&format!(
                "git did not update {} to {} (the push was refused, or killed before git decided); undoing",
                output::escape(git_ref),
                commit.short()
            ));
            undo(ctx, e, "interrupted before git updated the ref");
        }
        Recovery::Stands => output::detail(&format!(
            "git updated {} to {}; its flips were complete, so the run stands",
            output::escape(git_ref),
            commit.short()
        )),
        Recovery::RejectWarmup => {
            // A strict-mode (pre-receive) hook died: git rejected the push and
            // dropped its objects. Nothing may stay pointed at that commit.
            if release::load(root, &commit.into()).is_some() {
                release::set_state(
                    root,
                    &commit.into(),
                    State::Failed,
                    Some("interrupted; the push was rejected".into()),
                )?;
            }
            let back = warmup_off(ctx, commit)?;
            output::detail(&format!(
                "the push of {} was rejected (its hook was killed), so releases/{} is marked failed; warmup -> {}",
                commit.short(),
                commit.short(),
                back.as_ref().map_or("nothing", Commit::short)
            ));
        }
        Recovery::FinishWarmup => {
            // Every step had succeeded; only the flip (or what follows it) was cut short.
            if root.warmup() != Some(commit) {
                crate::deploy::pointers::point_warmup(ctx, commit)?;
            }
            output::detail(&format!(
                "releases/{} had been warmed up completely; warmup -> releases/{} (its notify step did not run)",
                commit.short(),
                commit.short()
            ));
        }
        Recovery::FailWarmup => {
            let name = commit.into();
            if release::load(root, &name).is_some_and(|r| r.state == State::Building) {
                release::set_state(root, &name, State::Failed, Some("interrupted".into()))?;
            }
            output::detail(&format!(
                "releases/{} was never warmed up (marked failed); warmup stays on {}",
                commit.short(),
                root.warmup().as_ref().map_or("nothing", Commit::short)
            ));
        }
        Recovery::RollBackRejected => {
            // A strict-mode tag push whose hook died: git rejected it, so
            // production must not stay on it.
            output::detail(&format!(
                "production had been switched, but the push of {} was rejected (its hook was killed); switching back",
                commit.short()
            ));
            let why = "interrupted; the push was rejected".to_string();
            roll_back(ctx, e, commit, previous, git_ref, State::Failed, why);
        }
        Recovery::FinishSwitch => {
            output::detail(
                "production had already been switched; finishing: after_switch, start, check",
            );
            let env = switch::step_env(ctx, commit, previous, git_ref, vec![]);
            if let Err(f) = switch::finish_after_flip(ctx, commit, env) {
                output::error(&format!(
                    "{} failed: {}; rolling back",
                    f.stage.what(),
                    f.error
                ));
                roll_back(ctx, e, commit, previous, git_ref, State::Bad, f.reason());
                return Ok(Some(Outcome::RolledBack));
            }
            output::success(&format!(
                "production -> releases/{commit} (finished after the interruption)"
            ));
        }
        Recovery::StartAgain => {
            output::detail(&format!(
                "production was not switched (still {}); starting the daemons that were stopped",
                crate::deploy::pointers::describe(root.production())
            ));
            let back = root.production().unwrap_or(commit);
            start_anyway(
                &ctx.config.promote.start,
                &switch::step_env(ctx, back, None, git_ref, vec![]),
            );
        }
        Recovery::EndWatch => {
            crate::state::watch::clear(root, &e.run);
            output::warning(&format!(
                "the watch of releases/{} was cut short (its watcher died: a reboot or a kill); production stays on {}, no longer watched (`symdeploy rollback` if it misbehaves)",
                commit.short(),
                crate::deploy::pointers::describe(root.production())
            ));
        }
        Recovery::Nothing => output::detail("nothing to repair for this kind of run"),
    }
    Ok(decision.journal_result())
}

/// Undo a strict run git did not keep: production back (for a promote),
/// warmup back to where it was, the release marked failed unless some ref
/// keeps its commit, and the run ended `rejected`. Never fails: every step is
/// reported, and it is safe to repeat (recovery repeats it after a kill).
pub(crate) fn undo(ctx: &Ctx, run: &Entry, why: &str) {
    if run.event == crate::deploy::preview::EVENT {
        let before = run
            .txn
            .as_ref()
            .and_then(|t| t.preview_before.as_ref())
            .and_then(Recorded::release);
        return crate::deploy::preview::undo(ctx, run, before, why);
    }
    let root = &ctx.root;
    let git_ref = run.git_ref.clone().unwrap_or_default();
    let Some(commit) = run.commit.as_ref().and_then(Recorded::main) else {
        if let Err(e) = end_unnamed(ctx, run) {
            output::error(&format!("could not end the run in the journal: {e}"));
        }
        return;
    };
    if run.event == Event::Promote {
        let previous = run.previous.as_ref().and_then(Recorded::main);
        if root.production() == Some(commit) {
            crate::deploy::switch::flip_back(ctx, commit, previous, &git_ref);
        } else {
            // It may have been killed after `stop`.
            let back = root.production().unwrap_or(commit);
            crate::deploy::switch::start_anyway(
                &ctx.config.promote.start,
                &crate::deploy::switch::step_env(ctx, back, None, &git_ref, vec![]),
            );
        }
    }
    let before = run
        .txn
        .as_ref()
        .and_then(|t| t.warmup_before.as_ref())
        .and_then(Recorded::main);
    // Warmup is only moved back if this run moved it there.
    if root.warmup() == Some(commit) && before != Some(commit) {
        let before = before
            .filter(|b| *b != commit && release::is_ready(root, &(*b).into()) && kept(ctx, *b));
        let moved = match before {
            Some(b) => crate::deploy::pointers::point_warmup(ctx, b).map(|_| before),
            None => crate::deploy::pointers::warmup_off(ctx, commit),
        };
        match moved {
            Ok(w) => output::detail(&format!(
                "warmup -> {} (back)",
                w.map(|c| format!("releases/{c}"))
                    .unwrap_or_else(|| "nothing".into())
            )),
            Err(e) => output::error(&format!("could not move warmup back: {e}")),
        }
    }
    if !kept(ctx, commit) && release::is_ready(root, &commit.into()) {
        if let Err(e) = release::set_state(
            root,
            &commit.into(),
            State::Failed,
            Some(format!("{git_ref} was not updated: {why}")),
        ) {
            output::warning(&format!("could not mark releases/{commit} failed: {e}"));
        }
    }
    if let Err(e) = journal::append(root, &run.rejected(&git_ref, why)) {
        output::warning(&format!("could not end the run in the journal: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::release::Record;
    use crate::state::root::{Root, PRODUCTION};

    /// An interrupted promote whose journal line names no release (an odd
    /// value an older version or a hand edit left) is read and ended, never
    /// acted on: production stays, and only the daemons are started (its
    /// `stop` may have run), in the release production serves.
    #[test]
    fn a_run_naming_no_release_is_ended_not_acted_on() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path()).unwrap();
        root.ensure_state_dirs().unwrap();
        let prod = Commit::parse(&"1".repeat(40)).unwrap();
        std::fs::create_dir_all(root.main_release(prod)).unwrap();
        crate::state::release::save(
            &root,
            &Record::building(prod, "refs/heads/main", String::new()),
        )
        .unwrap();
        release::set_state(&root, &prod.into(), State::Ready, None).unwrap();
        let target = crate::sys::symlink::release_target(prod);
        crate::sys::symlink::flip(&root.dir, PRODUCTION, &target).unwrap();
        let trace = t.path().join("trace");
        std::fs::write(
            root.config_file(),
            format!(
                "[promote]\nstop = []\nstart = [\"echo start $SYMDEPLOY_COMMIT >> '{}'\"]\n",
                trace.display()
            ),
        )
        .unwrap();
        let ctx = Ctx::load(root).unwrap();
        let odd = Entry {
            commit: Some(Recorded::from("c1")),
            ..Entry::start(Event::Promote, None, Some("refs/tags/release-1"))
        };
        journal::append(&ctx.root, &odd).unwrap();
        assert_eq!(recover_locked(&ctx).unwrap(), 1);
        assert_eq!(ctx.root.production(), Some(prod), "production untouched");
        assert_eq!(
            std::fs::read_to_string(&trace).unwrap(),
            format!("start {prod}\n"),
            "the daemons started in production's release"
        );
        assert!(journal::open_runs(&ctx.root).is_empty(), "the run is ended");
        let end = journal::read(&ctx.root).pop().unwrap();
        assert_eq!(end.result, Some(Outcome::Interrupted));
        assert_eq!(
            end.commit,
            Some(Recorded::Unknown("c1".into())),
            "kept as written"
        );
    }
}
