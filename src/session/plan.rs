//! The decisions of a switch and of a recovery, as pure functions: what to
//! do when a phase of a promote fails or is interrupted, and what an
//! unfinished run in the journal needs. Kept apart from the code that acts
//! on them so they can be read, and tested, without running anything.

use crate::state::journal::{Event, Outcome};

/// The phases of a switch, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter)]
pub(crate) enum SwitchPhase {
    /// promote.stop
    Stop,
    /// `rollback.migrate`: undoing migrations the target does not know
    /// (only in a rollback that asked for it).
    Undo,
    /// Flushing the release to disk.
    Sync,
    /// The rename(2) of `production`.
    Flip,
    /// The root's static links.
    Links,
    /// promote.after_switch
    AfterSwitch,
    /// promote.start
    Start,
    /// promote.check, retried.
    Check,
}

impl SwitchPhase {
    /// The phase as the operator reads it in an error.
    pub(crate) fn what(self) -> &'static str {
        match self {
            SwitchPhase::Stop => "stopping the daemons",
            SwitchPhase::Undo => "undoing migrations (rollback.migrate)",
            SwitchPhase::Sync => "syncing the release to disk",
            SwitchPhase::Flip => "switching production",
            SwitchPhase::Links => "the root links",
            SwitchPhase::AfterSwitch => "after_switch",
            SwitchPhase::Start => "start",
            SwitchPhase::Check => "check",
        }
    }
}

/// Why a phase did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// It failed (a step's exit status, an I/O error).
    Failed,
    /// SIGINT or SIGTERM.
    Interrupted,
}

/// How a switch unwinds from a phase that did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unwind {
    /// Production was not touched: start the daemons again, nothing else.
    StartAgain,
    /// Production was flipped: stop, flip back, start; after a failure (not
    /// an interrupt, which says nothing about the release) mark it bad.
    RollBack,
}

/// What to do when `phase` does not complete. The cause does not matter: an
/// interrupt unwinds through the same path as a failure.
pub(crate) fn unwind(phase: SwitchPhase, _cause: Cause) -> Unwind {
    match phase {
        SwitchPhase::Stop | SwitchPhase::Undo | SwitchPhase::Sync | SwitchPhase::Flip => {
            Unwind::StartAgain
        }
        SwitchPhase::Links | SwitchPhase::AfterSwitch | SwitchPhase::Start | SwitchPhase::Check => {
            Unwind::RollBack
        }
    }
}

/// The journal `end` result of a switch that unwound this way.
pub(crate) fn journal_result(unwind: Unwind, cause: Cause) -> Outcome {
    match (unwind, cause) {
        (_, Cause::Interrupted) => Outcome::Interrupted,
        (Unwind::StartAgain, Cause::Failed) => Outcome::Failed,
        (Unwind::RollBack, Cause::Failed) => Outcome::RolledBack,
    }
}

/// What a run that started and never ended left, as recovery sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unfinished<'a> {
    /// Its journal event: warmup, promote, rollback, ...
    pub(crate) event: &'a Event,
    /// Is its commit in the repository (not only in a rejected push)?
    pub(crate) landed: bool,
    /// Does its commit have a ready release?
    pub(crate) ready: bool,
    /// Does `production` point at its commit?
    pub(crate) in_production: bool,
    /// Did it record that it was rolling back (an `undo` line)?
    pub(crate) rolling_back: bool,
    /// Strict mode: did git keep its ref (`None`: not part of a ref
    /// transaction, or git has not decided)?
    pub(crate) git_kept: Option<bool>,
    /// Strict mode: were its flips complete (a `prepared` line)?
    pub(crate) prepared: bool,
}

/// What recovery does for an unfinished run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// It was rolling back: a rollback is one step; do all of it again.
    FinishRollBack,
    /// Strict mode: git did not keep its ref: undo every flip it made.
    UndoRejected,
    /// Strict mode: git kept its ref and its flips were complete: it stands.
    Stands,
    /// A strict-mode warm-up whose push git rejected: mark it failed, move
    /// `warmup` off it.
    RejectWarmup,
    /// A warm-up whose steps all succeeded: point `warmup` at it.
    FinishWarmup,
    /// A warm-up cut short: mark it failed, `warmup` stays.
    FailWarmup,
    /// Production was flipped to a commit git rejected: roll back.
    RollBackRejected,
    /// Production was flipped: run after_switch, start, check (roll back if
    /// they fail).
    FinishSwitch,
    /// Production was not flipped: start the daemons that were stopped.
    StartAgain,
    /// A watch whose watcher died (a reboot, a kill): end it with a warning;
    /// production stays as it is, unwatched.
    EndWatch,
    /// Nothing to repair for this kind of run.
    Nothing,
}

impl Recovery {
    /// Does this repair run the daemons' commands? Then it runs the ones the
    /// interrupted run recorded: the daemons it stopped are the ones its own
    /// `start` starts, whatever deploy.toml says now.
    pub(crate) fn runs_daemons(self) -> bool {
        matches!(
            self,
            Recovery::FinishRollBack
                | Recovery::UndoRejected
                | Recovery::RollBackRejected
                | Recovery::FinishSwitch
                | Recovery::StartAgain
        )
    }

    /// The journal `end` result the repair records; `None` when the repair
    /// ends the run itself (an undo ends it `rejected`).
    pub(crate) fn journal_result(self) -> Option<Outcome> {
        match self {
            Recovery::UndoRejected => None,
            Recovery::FinishRollBack | Recovery::RollBackRejected => Some(Outcome::RolledBack),
            Recovery::Stands | Recovery::FinishWarmup => Some(Outcome::Ok),
            // FinishSwitch ends ok or rolled back, as its health decides.
            Recovery::FinishSwitch => Some(Outcome::Ok),
            Recovery::RejectWarmup
            | Recovery::FailWarmup
            | Recovery::StartAgain
            | Recovery::EndWatch
            | Recovery::Nothing => Some(Outcome::Interrupted),
        }
    }
}

/// Decide what recovery does for `run`. What git decided about a strict run
/// comes first (a rollback already under way before that: its intent is on
/// record), then what the run's kind and the pointers say.
pub(crate) fn recovery(run: Unfinished<'_>) -> Recovery {
    if run.rolling_back {
        return Recovery::FinishRollBack;
    }
    match run.git_kept {
        Some(false) => return Recovery::UndoRejected,
        Some(true) if run.prepared => return Recovery::Stands,
        _ => {}
    }
    match run.event {
        Event::Warmup if !run.landed => Recovery::RejectWarmup,
        Event::Warmup if run.ready => Recovery::FinishWarmup,
        Event::Warmup => Recovery::FailWarmup,
        Event::Promote | Event::Rollback if run.in_production && !run.landed => {
            Recovery::RollBackRejected
        }
        Event::Promote | Event::Rollback if run.in_production => Recovery::FinishSwitch,
        Event::Promote | Event::Rollback => Recovery::StartAgain,
        // Not resumed: the next locked run may come long after the window,
        // and checks right after a reboot judge the reboot, not the release.
        Event::Watch => Recovery::EndWatch,
        _ => Recovery::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use strum::IntoEnumIterator;

    #[test]
    fn before_the_flip_only_start_again_after_it_roll_back() {
        let got: Vec<Unwind> = SwitchPhase::iter()
            .map(|p| unwind(p, Cause::Failed))
            .collect();
        use Unwind::*;
        assert_eq!(
            got,
            [
                StartAgain, StartAgain, StartAgain, StartAgain, RollBack, RollBack, RollBack,
                RollBack
            ]
        );
    }

    #[test]
    fn an_interrupt_unwinds_exactly_like_a_failure() {
        for p in SwitchPhase::iter() {
            assert_eq!(
                unwind(p, Cause::Interrupted),
                unwind(p, Cause::Failed),
                "{p:?}"
            );
        }
    }

    #[test]
    fn journal_results() {
        use Unwind::*;
        assert_eq!(journal_result(StartAgain, Cause::Failed), Outcome::Failed);
        assert_eq!(journal_result(RollBack, Cause::Failed), Outcome::RolledBack);
        assert_eq!(
            journal_result(StartAgain, Cause::Interrupted),
            Outcome::Interrupted
        );
        assert_eq!(
            journal_result(RollBack, Cause::Interrupted),
            Outcome::Interrupted
        );
        // Only notify was left: the promote happened, whatever stopped notify.
    }

    fn run(event: Event, landed: bool, ready: bool, in_production: bool) -> Recovery {
        recovery(Unfinished {
            event: &event,
            landed,
            ready,
            in_production,
            rolling_back: false,
            git_kept: None,
            prepared: false,
        })
    }

    /// A promote in production, landed and ready, with what strict mode and
    /// an `undo` line add.
    fn strict(rolling_back: bool, git_kept: Option<bool>, prepared: bool) -> Recovery {
        recovery(Unfinished {
            event: &Event::Promote,
            landed: true,
            ready: true,
            in_production: true,
            rolling_back,
            git_kept,
            prepared,
        })
    }

    #[test]
    fn a_rollback_under_way_is_finished_whatever_git_decided() {
        for kept in [None, Some(true), Some(false)] {
            for prepared in [false, true] {
                assert_eq!(strict(true, kept, prepared), Recovery::FinishRollBack);
            }
        }
    }

    #[test]
    fn git_decides_a_strict_run_before_the_pointers_do() {
        assert_eq!(strict(false, Some(false), true), Recovery::UndoRejected);
        assert_eq!(strict(false, Some(false), false), Recovery::UndoRejected);
        assert_eq!(strict(false, Some(true), true), Recovery::Stands);
        // Kept but not all flips done (killed before `prepared`): finish the switch.
        assert_eq!(strict(false, Some(true), false), Recovery::FinishSwitch);
        // Not a strict run: the pointers decide.
        assert_eq!(strict(false, None, true), Recovery::FinishSwitch);
    }

    #[test]
    fn which_repairs_run_the_recorded_daemon_commands_and_how_runs_end() {
        use Recovery::*;
        let all = [
            FinishRollBack,
            UndoRejected,
            Stands,
            RejectWarmup,
            FinishWarmup,
            FailWarmup,
            RollBackRejected,
            FinishSwitch,
            StartAgain,
            Nothing,
        ];
        let daemons: Vec<Recovery> = all.into_iter().filter(|r| r.runs_daemons()).collect();
        assert_eq!(
            daemons,
            [
                FinishRollBack,
                UndoRejected,
                RollBackRejected,
                FinishSwitch,
                StartAgain
            ]
        );
        // The undo ends its run itself (`rejected`); every other repair
        // leaves an end entry to write: a repaired run is never left open.
        for r in all {
            assert_eq!(r.journal_result().is_none(), r == UndoRejected, "{r:?}");
        }
        assert_eq!(Stands.journal_result(), Some(Outcome::Ok));
        assert_eq!(FailWarmup.journal_result(), Some(Outcome::Interrupted));
        assert_eq!(RollBackRejected.journal_result(), Some(Outcome::RolledBack));
    }

    #[test]
    fn recovery_of_warmups() {
        assert_eq!(
            run(Event::Warmup, false, true, false),
            Recovery::RejectWarmup
        );
        assert_eq!(
            run(Event::Warmup, true, true, false),
            Recovery::FinishWarmup
        );
        assert_eq!(run(Event::Warmup, true, false, false), Recovery::FailWarmup);
    }

    #[test]
    fn recovery_of_switches() {
        for event in [Event::Promote, Event::Rollback] {
            assert_eq!(run(event.clone(), true, true, true), Recovery::FinishSwitch);
            assert_eq!(
                run(event.clone(), false, true, true),
                Recovery::RollBackRejected
            );
            assert_eq!(run(event.clone(), true, true, false), Recovery::StartAgain);
            // Not flipped and rejected: production never moved, only the daemons matter.
            assert_eq!(run(event, false, true, false), Recovery::StartAgain);
        }
    }

    #[test]
    fn a_dead_watch_is_ended_not_resumed_unless_it_was_rolling_back() {
        for in_production in [true, false] {
            assert_eq!(
                run(Event::Watch, true, true, in_production),
                Recovery::EndWatch
            );
        }
        assert!(!Recovery::EndWatch.runs_daemons());
        assert_eq!(
            Recovery::EndWatch.journal_result(),
            Some(Outcome::Interrupted)
        );
        // Killed halfway through its rollback: the rollback is finished.
        let rolling = recovery(Unfinished {
            event: &Event::Watch,
            landed: true,
            ready: false,
            in_production: true,
            rolling_back: true,
            git_kept: None,
            prepared: false,
        });
        assert_eq!(rolling, Recovery::FinishRollBack);
    }

    #[test]
    fn other_runs_need_nothing() {
        assert_eq!(run(Event::Cleanup, true, true, false), Recovery::Nothing);
        assert_eq!(run(Event::Recover, true, true, true), Recovery::Nothing);
    }
}
