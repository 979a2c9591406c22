//! The decisions of a switch and of a recovery, as pure functions: what to
//! do when a phase of a promote fails or is interrupted, and what an
//! unfinished run in the journal needs. Kept apart from the code that acts
//! on them so they can be read, and tested, without running anything.

use crate::journal::{Event, Outcome};

/// The phases of a switch, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// promote.stop
    Stop,
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
    /// promote.notify
    Notify,
}

impl Phase {
    /// The phase as the operator reads it in an error.
    pub fn what(self) -> &'static str {
        match self {
            Phase::Stop => "stopping the daemons",
            Phase::Sync => "syncing the release to disk",
            Phase::Flip => "switching production",
            Phase::Links => "the root links",
            Phase::AfterSwitch => "after_switch",
            Phase::Start => "start",
            Phase::Check => "check",
            Phase::Notify => "notify",
        }
    }
}

/// Why a phase did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// It failed (a step's exit status, an I/O error).
    Failed,
    /// SIGINT or SIGTERM.
    Interrupted,
}

/// How a switch unwinds from a phase that did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unwind {
    /// Production was not touched: start the daemons again, nothing else.
    StartAgain,
    /// Production was flipped: stop, flip back, start; after a failure (not
    /// an interrupt, which says nothing about the release) mark it bad.
    RollBack,
    /// Everything that matters is done: finish, production stays new.
    Finish,
}

/// What to do when `phase` does not complete. The cause does not matter: an
/// interrupt unwinds through the same path as a failure.
pub fn unwind(phase: Phase, _cause: Cause) -> Unwind {
    match phase {
        Phase::Stop | Phase::Sync | Phase::Flip => Unwind::StartAgain,
        Phase::Links | Phase::AfterSwitch | Phase::Start | Phase::Check => Unwind::RollBack,
        Phase::Notify => Unwind::Finish,
    }
}

/// The journal `end` result of a switch that unwound this way.
pub fn journal_result(unwind: Unwind, cause: Cause) -> Outcome {
    match (unwind, cause) {
        (Unwind::Finish, _) => Outcome::Ok,
        (_, Cause::Interrupted) => Outcome::Interrupted,
        (Unwind::StartAgain, Cause::Failed) => Outcome::Failed,
        (Unwind::RollBack, Cause::Failed) => Outcome::RolledBack,
    }
}

/// What a run that started and never ended left, as recovery sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unfinished<'a> {
    /// Its journal event: warmup, promote, rollback, ...
    pub event: &'a Event,
    /// Is its commit in the repository (not only in a rejected push)?
    pub landed: bool,
    /// Does its commit have a ready release?
    pub ready: bool,
    /// Does `production` point at its commit?
    pub in_production: bool,
}

/// What recovery does for an unfinished run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
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
    /// Nothing to repair for this kind of run.
    Nothing,
}

/// Decide what recovery does for `run`.
pub fn recovery(run: Unfinished<'_>) -> Recovery {
    match run.event {
        Event::Warmup if !run.landed => Recovery::RejectWarmup,
        Event::Warmup if run.ready => Recovery::FinishWarmup,
        Event::Warmup => Recovery::FailWarmup,
        Event::Promote | Event::Rollback if run.in_production && !run.landed => {
            Recovery::RollBackRejected
        }
        Event::Promote | Event::Rollback if run.in_production => Recovery::FinishSwitch,
        Event::Promote | Event::Rollback => Recovery::StartAgain,
        _ => Recovery::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Phase; 8] = [
        Phase::Stop,
        Phase::Sync,
        Phase::Flip,
        Phase::Links,
        Phase::AfterSwitch,
        Phase::Start,
        Phase::Check,
        Phase::Notify,
    ];

    #[test]
    fn before_the_flip_only_start_again_after_it_roll_back_notify_finishes() {
        let got: Vec<Unwind> = ALL.iter().map(|&p| unwind(p, Cause::Failed)).collect();
        use Unwind::*;
        assert_eq!(
            got,
            [StartAgain, StartAgain, StartAgain, RollBack, RollBack, RollBack, RollBack, Finish]
        );
    }

    #[test]
    fn an_interrupt_unwinds_exactly_like_a_failure() {
        for p in ALL {
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
        assert_eq!(journal_result(Finish, Cause::Interrupted), Outcome::Ok);
        assert_eq!(journal_result(Finish, Cause::Failed), Outcome::Ok);
    }

    fn run(event: Event, landed: bool, ready: bool, in_production: bool) -> Recovery {
        recovery(Unfinished {
            event: &event,
            landed,
            ready,
            in_production,
        })
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
    fn other_runs_need_nothing() {
        assert_eq!(run(Event::Cleanup, true, true, false), Recovery::Nothing);
        assert_eq!(run(Event::Recover, true, true, true), Recovery::Nothing);
    }
}
